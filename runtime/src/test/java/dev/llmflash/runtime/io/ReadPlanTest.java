package dev.llmflash.runtime.io;

import dev.llmflash.formats.FormatException;
import dev.llmflash.runtime.io.IoEngine.Backend;
import dev.llmflash.runtime.io.IoEngine.ReadPlan;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.CsvSource;

import java.io.IOException;
import java.io.RandomAccessFile;
import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.Random;

import static org.junit.jupiter.api.Assertions.*;

/**
 * Read plans through both backends. Oracle: the file's bytes as written, compared with what every read
 * delivers, for aligned and unaligned reads (offset, length, destination), touching runs (one scattered
 * read with io_uring), unsorted plans, zero-length reads, plans larger than the ring and than its
 * bounce chunks, and two plans in flight at once.
 */
class ReadPlanTest {
    private static final int BLOCK = 4096;
    private static final Duration NO_HANG = Duration.ofSeconds(30);

    @TempDir
    Path dir;

    private byte[] data;

    private Path randomFile(int size, long seed) throws IOException {
        data = new byte[size];
        new Random(seed).nextBytes(data);
        Path f = dir.resolve("ffn.bin");
        Files.write(f, data);
        return f;
    }

    /** A read the test checks afterwards: file range and where it landed. */
    private record Want(long offset, int length, MemorySegment base, long at) {
    }

    private void assertLanded(List<Want> wants) {
        for (Want w : wants) {
            byte[] want = new byte[w.length()];
            System.arraycopy(data, (int) w.offset(), want, 0, w.length());
            byte[] got = w.base().asSlice(w.at(), w.length()).toArray(ValueLayout.JAVA_BYTE);
            assertArrayEquals(want, got, "bytes of read at offset " + w.offset() + " length " + w.length());
        }
    }

    private static IoEngine open(Path f, Backend backend, boolean direct) {
        IoEngine io = IoEngine.open(f, 4, direct, 0, 64 * 1024, backend);
        assertEquals(backend == Backend.URING, io.uring(), io.backend());
        assertEquals(direct, io.direct(), "the test's temporary directory must accept O_DIRECT: " + io.mode());
        return io;
    }

    /** Random plans: a mix of aligned bundles, unaligned pieces, touching runs and the unaligned tail. */
    private List<Want> randomPlan(Random rnd, ReadPlan plan, MemorySegment dst, int reads, int size) {
        plan.clear();
        List<Want> wants = new ArrayList<>();
        long next = 0;
        for (int i = 0; i < reads; i++) {
            switch (rnd.nextInt(5)) {
                case 0 -> { // aligned bundle into an aligned slot
                    int len = BLOCK * (1 + rnd.nextInt(4));
                    long off = (long) BLOCK * rnd.nextInt((size - len) / BLOCK);
                    wants.add(new Want(off, len, dst, next));
                    next += len;
                }
                case 1 -> { // unaligned offset, length and destination (now and then wider than a bounce slot)
                    int len = rnd.nextInt(12) == 0 ? 40_000 + rnd.nextInt(60_000) : rnd.nextInt(20_000);
                    long off = rnd.nextInt(size - len + 1);
                    wants.add(new Want(off, len, dst, next + 1 + rnd.nextInt(7)));
                    next += len + 8 + BLOCK - (len + 8) % BLOCK;
                }
                case 2 -> { // touching aligned ranges into scattered slots: one READV
                    int n = 2 + rnd.nextInt(6), len = BLOCK * (1 + rnd.nextInt(2));
                    long off = (long) BLOCK * rnd.nextInt((size - n * len) / BLOCK);
                    for (int k = 0; k < n; k++) {
                        wants.add(new Want(off + (long) k * len, len, dst, next + (long) (n - 1 - k) * len));
                    }
                    next += (long) n * len;
                }
                case 3 -> { // touching unaligned ranges (an 18176-byte Falcon-7B bundle stride)
                    int n = 2 + rnd.nextInt(3), len = 18_176;
                    long off = (long) len * rnd.nextInt((size - n * len) / len);
                    for (int k = 0; k < n; k++) {
                        wants.add(new Want(off + (long) k * len, len, dst, next + (long) k * (len + 64)));
                    }
                    next += (long) n * (len + 64) + BLOCK;
                }
                default -> { // the file's tail, through its unaligned end
                    int len = 1 + rnd.nextInt(9000);
                    wants.add(new Want(size - len, len, dst, next));
                    next += len + BLOCK;
                }
            }
            next = (next + BLOCK - 1) & -BLOCK;
        }
        assertTrue(next <= dst.byteSize(), "test destination too small: " + next);
        List<Want> shuffled = new ArrayList<>(wants);
        java.util.Collections.shuffle(shuffled, rnd);
        for (Want w : shuffled) {
            plan.add(w.offset(), w.length(), w.base(), w.at());
        }
        return wants;
    }

    @ParameterizedTest
    @CsvSource({"URING,true", "URING,false", "THREADS,true", "THREADS,false"})
    void randomPlansDeliverExactlyTheFileBytes(Backend backend, boolean direct) throws IOException {
        int size = 3 * 1024 * 1024 + 123;
        Path f = randomFile(size, 7);
        Random rnd = new Random(backend.ordinal() * 2L + (direct ? 1 : 0));
        try (IoEngine io = open(f, backend, direct); Arena arena = Arena.ofShared()) {
            MemorySegment dst = arena.allocate(64L << 20, BLOCK);
            ReadPlan plan = new ReadPlan(4);
            for (int round = 0; round < 6; round++) {
                // Rounds 4 and 5 hold more reads than the ring has entries and more unaligned runs than
                // it has bounce slots and chunks.
                int reads = round < 4 ? 40 + rnd.nextInt(100) : 1500;
                List<Want> wants = randomPlan(rnd, plan, dst, reads, size);
                boolean ahead = round % 2 == 1;  // look-ahead submission: the engine's submitter issues it
                assertTimeoutPreemptively(NO_HANG, () -> (ahead ? io.submitAhead(plan) : io.submit(plan)).await());
                assertLanded(wants);
            }
            assertTrue(io.stats().readsIssued() > 0 && io.stats().readsIssued() <= io.stats().readsRequested(), io.stats().toString());
        }
    }

    @Test
    void touchingAlignedReadsBecomeOneRequestWithIoUring() throws IOException {
        Path f = randomFile(1 << 20, 3);
        try (IoEngine io = open(f, Backend.URING, true); Arena arena = Arena.ofShared()) {
            MemorySegment dst = arena.allocate(16L * BLOCK, BLOCK);
            ReadPlan plan = new ReadPlan();
            List<Want> wants = new ArrayList<>();
            for (int k = 0; k < 8; k++) {  // file blocks 10..17 into slots 15..8, given in reverse
                wants.add(new Want((10L + 7 - k) * BLOCK, BLOCK, dst, (8L + k) * BLOCK));
            }
            for (Want w : wants) {
                plan.add(w.offset(), w.length(), w.base(), w.at());
            }
            io.submit(plan).await();
            assertLanded(wants);
            assertEquals(8, io.stats().readsRequested());
            assertEquals(1, io.stats().readsIssued(), "one READV for the run of 8 touching blocks");
            assertEquals(8L * BLOCK, io.stats().bytesRead());
        }
    }

    @Test
    void twoPlansInFlightAtOnceAwaitedInEitherOrder() throws IOException {
        int size = 2 << 20;
        Path f = randomFile(size, 5);
        try (IoEngine io = open(f, Backend.URING, true); Arena arena = Arena.ofShared()) {
            MemorySegment a = arena.allocate(32L << 20, BLOCK), b = arena.allocate(32L << 20, BLOCK);
            ReadPlan pa = new ReadPlan(), pb = new ReadPlan();
            Random rnd = new Random(11);
            for (int round = 0; round < 4; round++) {
                List<Want> wa = randomPlan(rnd, pa, a, 300, size);
                List<Want> wb = randomPlan(rnd, pb, b, 300, size);
                IoEngine.Pending first = io.submit(pa);
                IoEngine.Pending second = round < 2 ? io.submit(pb) : io.submitAhead(pb);
                assertThrows(IllegalStateException.class, () -> io.submit(pa), "a plan in flight is not submitted twice");
                assertThrows(IllegalStateException.class, pa::clear);
                boolean secondFirst = round % 2 == 0;
                assertTimeoutPreemptively(NO_HANG, () -> {
                    if (secondFirst) {
                        second.await();
                        first.await();
                    } else {
                        first.await();
                        second.await();
                    }
                });
                first.await();  // idempotent
                assertLanded(wa);
                assertLanded(wb);
                assertTrue(first.latencyNanos() > 0 && first.waitedNanos() >= 0);
            }
        }
    }

    @Test
    void autoTakesIoUringForDirectReadsInAlignedAndUnalignedSteps() throws IOException {
        Path f = randomFile(1 << 20, 19);
        try (IoEngine falconLike = IoEngine.open(f, 2, true, 0, 64 * 1024, Backend.AUTO, 18_176);
             IoEngine optLike = IoEngine.open(f, 2, true, 0, 64 * 1024, Backend.AUTO, 16_384);
             IoEngine tiny = IoEngine.open(f, 2, true, 0, 64 * 1024, Backend.AUTO, 1024);
             IoEngine buffered = IoEngine.open(f, 2, false, 0, 64 * 1024, Backend.AUTO, 18_176);
             IoEngine asked = IoEngine.open(f, 2, true, 0, 64 * 1024, Backend.URING, 18_176)) {
            assertTrue(falconLike.uring(), "unaligned steps read through bounce slots: " + falconLike.backend());
            assertFalse(tiny.uring(), tiny.backend());
            assertTrue(tiny.backend().contains("1024-byte bundles, below the 4096-byte block"), tiny.backend());
            assertTrue(optLike.uring(), optLike.backend());
            assertTrue(buffered.uring(), "buffered reads need no alignment: " + buffered.backend());
            assertTrue(asked.uring(), "an explicit URING is kept: " + asked.backend());
        }
    }

    @Test
    void aLookAheadPlanIsIssuedByTheSubmitterWithoutAnyoneWaiting() throws IOException {
        int size = 2 << 20;
        Path f = randomFile(size, 13);
        try (IoEngine io = open(f, Backend.URING, true); Arena arena = Arena.ofShared()) {
            MemorySegment dst = arena.allocate(32L << 20, BLOCK);
            ReadPlan plan = new ReadPlan();
            Random rnd = new Random(17);
            for (int round = 0; round < 3; round++) {
                List<Want> wants = randomPlan(rnd, plan, dst, 200, size);
                IoEngine.Pending p = io.submitAhead(plan);
                // Nobody enters the kernel for this plan but the submitter thread: its entries must drain.
                long deadline = System.nanoTime() + NO_HANG.toNanos();
                while (io.ringQueued() > 0) {
                    assertTrue(System.nanoTime() < deadline, "the submitter never issued the look-ahead plan");
                    Thread.onSpinWait();
                }
                assertTimeoutPreemptively(NO_HANG, p::await);
                assertLanded(wants);
            }
        }
    }

    @ParameterizedTest
    @CsvSource({"URING", "THREADS"})
    void aReadBeyondTheFileIsRefusedBeforeAnythingStarts(Backend backend) throws IOException {
        Path f = randomFile(100_000, 9);
        try (IoEngine io = open(f, backend, true); Arena arena = Arena.ofShared()) {
            MemorySegment dst = arena.allocate(1 << 20, BLOCK);
            ReadPlan plan = new ReadPlan();
            plan.add(0, BLOCK, dst, 0);
            plan.add(99_000, 2000, dst, BLOCK);
            FormatException e = assertThrows(FormatException.class, () -> io.submit(plan));
            assertTrue(e.getMessage().contains("ffn.bin") && e.getMessage().contains("100000 bytes"), e.getMessage());
            assertEquals(0, io.stats().readsIssued());
            plan.clear();  // not in flight: the refused plan can be reused
            plan.add(0, BLOCK, dst, 0);
            io.submit(plan).await();
            assertLanded(List.of(new Want(0, BLOCK, dst, 0)));
        }
    }

    @ParameterizedTest
    @CsvSource({"URING", "THREADS"})
    void aFileTruncatedAfterOpenIsAClearErrorNotGarbage(Backend backend) throws IOException {
        Path f = randomFile(1 << 20, 13);
        try (IoEngine io = open(f, backend, true); Arena arena = Arena.ofShared()) {
            try (RandomAccessFile raf = new RandomAccessFile(f.toFile(), "rw")) {
                raf.setLength(1 << 19);
            }
            MemorySegment dst = arena.allocate(1 << 20, BLOCK);
            ReadPlan plan = new ReadPlan();
            plan.add((1 << 20) - 4 * BLOCK, 4 * BLOCK, dst, 0);
            FormatException e = assertThrows(FormatException.class, () -> io.submit(plan).await());
            assertTrue(e.getMessage().contains("got only") && e.getMessage().contains("re-convert"), e.getMessage());
            plan.clear();  // awaited, even though it failed
        }
    }

    @Test
    void destinationsMustBeNativeSharedAndLargeEnough() {
        ReadPlan plan = new ReadPlan();
        MemorySegment heap = MemorySegment.ofArray(new byte[BLOCK]);
        assertThrows(IllegalArgumentException.class, () -> plan.add(0, 16, heap, 0));
        try (Arena confined = Arena.ofConfined(); Arena shared = Arena.ofShared()) {
            assertThrows(IllegalArgumentException.class, () -> plan.add(0, 16, confined.allocate(64), 0));
            MemorySegment s = shared.allocate(64);
            assertThrows(IllegalArgumentException.class, () -> plan.add(0, 16, s, 56));
            assertThrows(IllegalArgumentException.class, () -> plan.add(-1, 16, s, 0));
            plan.add(0, 16, s, 48);
            assertEquals(1, plan.size());
        }
    }

    @Test
    void anEmptyPlanCompletesAtOnce() throws IOException {
        Path f = randomFile(10_000, 1);
        try (IoEngine io = open(f, Backend.URING, true)) {
            ReadPlan plan = new ReadPlan();
            io.submit(plan).await();
            try (Arena arena = Arena.ofShared()) {
                plan.add(0, 0, arena.allocate(16), 0);
                io.submit(plan).await();
            }
            assertEquals(0, io.stats().readsIssued());
        }
    }
}
