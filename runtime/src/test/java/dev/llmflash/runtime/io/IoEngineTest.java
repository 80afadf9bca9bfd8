package dev.llmflash.runtime.io;

import com.sun.nio.file.ExtendedOpenOption;
import dev.llmflash.formats.FormatException;
import dev.llmflash.runtime.io.IoEngine.Read;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.CsvSource;

import java.io.IOException;
import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.nio.channels.FileChannel;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.StandardOpenOption;
import java.time.Duration;
import java.util.ArrayList;
import java.util.Collections;
import java.util.List;
import java.util.Random;

import static org.junit.jupiter.api.Assertions.*;

/** Oracle: the file's bytes as written, compared with what every read plan delivers. */
class IoEngineTest {
    private static final int BLOCK = 4096;
    private static final Duration NO_HANG = Duration.ofSeconds(20);

    @TempDir
    Path dir;

    private byte[] data;

    /** A file of random bytes whose size is deliberately not a multiple of the block size. */
    private Path randomFile(int size, long seed) throws IOException {
        data = new byte[size];
        new Random(seed).nextBytes(data);
        Path f = dir.resolve("ffn.bin");
        Files.write(f, data);
        return f;
    }

    private void assertLanded(Read r) {
        byte[] want = new byte[r.length()];
        System.arraycopy(data, (int) r.offset(), want, 0, r.length());
        byte[] got = r.dst().asSlice(0, r.length()).toArray(ValueLayout.JAVA_BYTE);
        assertArrayEquals(want, got, "bytes of read at offset " + r.offset() + " length " + r.length());
    }

    @ParameterizedTest
    @CsvSource({"true,1,0", "true,8,0", "false,1,0", "false,8,0", "true,8,8192", "false,8,8192"})
    void randomPlansDeliverExactlyTheFileBytes(boolean direct, int threads, int maxGap) throws IOException {
        int size = 3 * 1024 * 1024 + 123;
        Path f = randomFile(size, 42);
        Random rnd = new Random(threads * 31L + (direct ? 1 : 0) + maxGap);
        try (IoEngine io = IoEngine.open(f, threads, direct, maxGap, 64 * 1024); Arena arena = Arena.ofShared()) {
            assertEquals(size, io.size());
            for (int round = 0; round < 5; round++) {
                List<Read> plan = new ArrayList<>();
                for (int i = 0; i < 150; i++) {
                    switch (rnd.nextInt(4)) {
                        case 0 -> { // fully aligned: lands straight in dst in direct mode
                            int len = BLOCK * (1 + rnd.nextInt(8));
                            long off = (long) BLOCK * rnd.nextInt((size - len) / BLOCK);
                            plan.add(new Read(off, len, arena.allocate(len, BLOCK)));
                        }
                        case 1 -> { // unaligned offset, length and destination
                            int len = rnd.nextInt(40_000);
                            long off = rnd.nextInt(size - len + 1);
                            MemorySegment buf = arena.allocate(len + 8L, BLOCK);
                            plan.add(new Read(off, len, buf.asSlice(1 + rnd.nextInt(7), len)));
                        }
                        case 2 -> { // consecutive ranges into consecutive slices of one buffer
                            int n = 2 + rnd.nextInt(5), len = BLOCK * (1 + rnd.nextInt(4));
                            long off = (long) BLOCK * rnd.nextInt((size - n * len) / BLOCK);
                            MemorySegment buf = arena.allocate((long) n * len, BLOCK);
                            for (int k = 0; k < n; k++) {
                                plan.add(new Read(off + (long) k * len, len, buf.asSlice((long) k * len, len)));
                            }
                        }
                        default -> { // the file's tail, through its unaligned end
                            int len = 1 + rnd.nextInt(9000);
                            plan.add(new Read(size - len, len, arena.allocate(len, BLOCK)));
                        }
                    }
                }
                Collections.shuffle(plan, rnd);
                io.readAll(plan);
                plan.forEach(this::assertLanded);
            }
            IoStats s = io.stats();
            // Reads are at most 40,000 bytes, below the 64 KiB run limit: nothing is split, and
            // coalescing can only lower the count.
            assertTrue(s.readsIssued() > 0 && s.readsIssued() <= s.readsRequested(), s.toString());
            long plans = s.readsRequested();
            assertTrue(plans >= 5 * 150, s.toString());
        }
    }

    @Test
    void modeIsDirectExactlyWhenTheFilesystemAcceptsODirect() throws IOException {
        Path f = randomFile(64 * 1024, 1);
        boolean accepted;
        try (FileChannel probe = FileChannel.open(f, StandardOpenOption.READ, ExtendedOpenOption.DIRECT)) {
            accepted = probe.isOpen();
        } catch (IOException | UnsupportedOperationException e) {
            accepted = false;
        }
        try (IoEngine io = IoEngine.open(f, 2, true)) {
            assertEquals(accepted, io.direct(), io.mode());
            if (accepted) {
                assertEquals("direct", io.mode());
            } else {
                assertTrue(io.mode().startsWith("buffered (O_DIRECT refused: "), io.mode());
            }
        }
        try (IoEngine io = IoEngine.open(f, 2, false)) {
            assertFalse(io.direct());
            assertEquals("buffered", io.mode());
        }
    }

    @ParameterizedTest
    @CsvSource({"true", "false"})
    void adjacentReadsAreCoalesced(boolean direct) throws IOException {
        Path f = randomFile(1024 * 1024, 7);
        try (IoEngine io = IoEngine.open(f, 4, direct, 0, 1 << 20); Arena arena = Arena.ofShared()) {
            int n = 16, len = 16 * 1024;
            // Adjacent in the file and in memory: one positional read, no bounce.
            MemorySegment buf = arena.allocate((long) n * len, BLOCK);
            List<Read> contiguous = new ArrayList<>();
            for (int k = 0; k < n; k++) {
                contiguous.add(new Read(65536 + (long) k * len, len, buf.asSlice((long) k * len, len)));
            }
            Collections.reverse(contiguous);
            io.readAll(contiguous);
            contiguous.forEach(this::assertLanded);
            assertEquals(1, io.stats().readsIssued(), io.stats().toString());
            assertEquals((long) n * len, io.stats().bytesRead());

            // Adjacent in the file, separate buffers: still one read, through the bounce buffer.
            io.stats().reset();
            List<Read> separate = new ArrayList<>();
            for (int k = 0; k < n; k++) {
                separate.add(new Read((long) k * len, len, arena.allocate(len, BLOCK)));
            }
            io.readAll(separate);
            separate.forEach(this::assertLanded);
            assertEquals(1, io.stats().readsIssued(), io.stats().toString());

            // 4 KiB gaps with maxGap 0: one read each.
            io.stats().reset();
            List<Read> gapped = new ArrayList<>();
            for (int k = 0; k < n; k++) {
                gapped.add(new Read((long) k * (len + BLOCK), len, arena.allocate(len, BLOCK)));
            }
            io.readAll(gapped);
            gapped.forEach(this::assertLanded);
            assertEquals(n, io.stats().readsIssued(), io.stats().toString());
            assertEquals(n, io.stats().readsRequested());
        }
        try (IoEngine io = IoEngine.open(f, 4, direct, 8192, 1 << 20); Arena arena = Arena.ofShared()) {
            // The same gaps read through when maxGap allows: one read, gap bytes counted.
            int n = 16, len = 16 * 1024;
            List<Read> gapped = new ArrayList<>();
            for (int k = 0; k < n; k++) {
                gapped.add(new Read((long) k * (len + BLOCK), len, arena.allocate(len, BLOCK)));
            }
            io.readAll(gapped);
            gapped.forEach(this::assertLanded);
            assertEquals(1, io.stats().readsIssued(), io.stats().toString());
            assertEquals((long) n * len, io.stats().bytesRequested());
            assertEquals((long) n * len + (n - 1) * BLOCK, io.stats().bytesRead());
        }
    }

    @Test
    void unalignedDirectReadExpandsToTheAlignedSpan() throws IOException {
        Path f = randomFile(256 * 1024, 3);
        try (IoEngine io = IoEngine.open(f, 1, true); Arena arena = Arena.ofShared()) {
            Read r = new Read(5000, 100, arena.allocate(100));
            io.readAll(List.of(r));
            assertLanded(r);
            assertEquals(io.direct() ? BLOCK : 100, io.stats().bytesRead(), io.mode());
        }
    }

    @Test
    void largeReadIsSplitAcrossThreadsAndLandsExactly() throws IOException {
        Path f = randomFile(2 * 1024 * 1024, 9);
        try (IoEngine io = IoEngine.open(f, 8, true, 0, 64 * 1024); Arena arena = Arena.ofShared()) {
            Read r = new Read(BLOCK, 2 * 1024 * 1024 - 2 * BLOCK, arena.allocate(2 * 1024 * 1024, BLOCK));
            io.readAll(List.of(r));
            assertLanded(r);
            assertEquals(32, io.stats().readsIssued(), "2 MiB - 8 KiB in 64 KiB pieces");
        }
    }

    @ParameterizedTest
    @CsvSource({"true", "false"})
    void readPastEndOfFileFailsWithOneClearLine(boolean direct) throws IOException {
        Path f = randomFile(100_000, 5);
        try (IoEngine io = IoEngine.open(f, 8, direct); Arena arena = Arena.ofShared()) {
            List<Read> plan = List.of(new Read(0, 4096, arena.allocate(4096, BLOCK)),
                    new Read(98_000, 16384, arena.allocate(16384, BLOCK)));
            FormatException e = assertTimeoutPreemptively(NO_HANG,
                    () -> assertThrows(FormatException.class, () -> io.readAll(plan)));
            assertEquals(f + ": read of 16384 bytes at offset 98000 ends at byte 114384 but the file has 100000 bytes"
                    + " (the file is shorter than its header says; re-convert)", e.getMessage());
        }
    }

    @ParameterizedTest
    @CsvSource({"true,1", "true,8", "false,1", "false,8"})
    void fileTruncatedAfterOpenFailsWithoutHanging(boolean direct, int threads) throws IOException {
        Path f = randomFile(4 * 1024 * 1024, 11);
        try (IoEngine io = IoEngine.open(f, threads, direct); Arena arena = Arena.ofShared()) {
            try (FileChannel ch = FileChannel.open(f, StandardOpenOption.WRITE)) {
                ch.truncate(1024 * 1024);
            }
            List<Read> plan = new ArrayList<>();
            for (int k = 0; k < 200; k++) { // most succeed, those beyond 1 MiB fail
                plan.add(new Read((long) k * 20_480, 16384, arena.allocate(16384, BLOCK)));
            }
            FormatException e = assertTimeoutPreemptively(NO_HANG,
                    () -> assertThrows(FormatException.class, () -> io.readAll(plan)));
            assertTrue(e.getMessage().matches("\\Q" + f + "\\E: read of \\d+ bytes at offset \\d+ got only \\d+ "
                    + "\\(the file was truncated or changed while running; re-convert\\)"), e.getMessage());
            assertFalse(e.getMessage().contains("\n"));
            // The engine stays usable after a failed call.
            Read ok = new Read(0, 8192, arena.allocate(8192, BLOCK));
            io.readAll(List.of(ok));
            assertLanded(ok);
        }
    }

    @Test
    void confinedDestinationIsRefusedUpFront() {
        try (Arena arena = Arena.ofConfined()) {
            MemorySegment seg = arena.allocate(16);
            assertThrows(IllegalArgumentException.class, () -> new Read(0, 16, seg));
        }
    }

    @Test
    void missingFileIsAClearError() {
        Path f = dir.resolve("nope.bin");
        FormatException e = assertThrows(FormatException.class, () -> IoEngine.open(f, 1, true));
        assertTrue(e.getMessage().startsWith(f + ": cannot open for reading: "), e.getMessage());
    }
}
