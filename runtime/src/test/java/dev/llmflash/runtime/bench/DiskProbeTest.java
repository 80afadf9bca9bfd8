package dev.llmflash.runtime.bench;

import com.sun.nio.file.ExtendedOpenOption;
import dev.llmflash.formats.FormatException;
import dev.llmflash.runtime.bench.DiskProbe.Result;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.CsvSource;

import java.io.IOException;
import java.lang.foreign.ValueLayout;
import java.nio.channels.FileChannel;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.StandardOpenOption;
import java.util.Collections;
import java.util.List;
import java.util.Map;
import java.util.Random;
import java.util.TreeMap;
import java.util.concurrent.ConcurrentHashMap;
import java.util.concurrent.atomic.AtomicBoolean;

import static org.junit.jupiter.api.Assertions.*;

/**
 * Oracle: a temp file of known random bytes. Through the package-private sink every chunk the probe
 * reads is compared with the file's bytes at its offset, and the offsets are counted (sequential:
 * each whole chunk once; random: chunk-aligned, reproducible from the seed).
 */
class DiskProbeTest {
    private static final int SIZE = 3 * 1024 * 1024 + 123; // not a multiple of any chunk
    private static final int CHUNK = 64 * 1024;

    @TempDir
    Path dir;

    private byte[] data;

    private Path file() throws IOException {
        data = new byte[SIZE];
        new Random(7).nextBytes(data);
        Path f = dir.resolve("probe.bin");
        Files.write(f, data);
        return f;
    }

    /** Checks the chunk's bytes against the file and counts its offset; runs on the probe's threads. */
    private DiskProbe.ChunkSink checking(Map<Long, Integer> seen) {
        return (offset, bytes) -> {
            int len = (int) bytes.byteSize();
            byte[] want = new byte[len];
            System.arraycopy(data, (int) offset, want, 0, len);
            assertArrayEquals(want, bytes.toArray(ValueLayout.JAVA_BYTE), "bytes at offset " + offset);
            seen.merge(offset, 1, Integer::sum);
        };
    }

    /** Whether this filesystem accepts O_DIRECT for f: what Result.direct() must say when asked for it. */
    private static boolean directAccepted(Path f) {
        try (FileChannel ch = FileChannel.open(f, StandardOpenOption.READ, ExtendedOpenOption.DIRECT)) {
            return ch.isOpen();
        } catch (IOException | UnsupportedOperationException e) {
            return false;
        }
    }

    private static void assertSane(Result r) {
        assertTrue(r.nanos() >= 1, "nanos " + r.nanos());
        assertTrue(r.gbps() > 0 && Double.isFinite(r.gbps()), "gbps " + r.gbps());
        assertEquals(r.bytes() / (double) r.nanos(), r.gbps());
    }

    @ParameterizedTest
    @CsvSource({"true,1", "true,4", "false,1", "false,4"})
    void sequentialReadsEveryWholeChunkOnceWithTheFileBytes(boolean direct, int threads) throws IOException {
        Path f = file();
        Map<Long, Integer> seen = new ConcurrentHashMap<>();
        Result r = DiskProbe.sequential(f, CHUNK, threads, Long.MAX_VALUE, direct, checking(seen));
        long chunks = SIZE / CHUNK; // the 123-byte tail is not a whole chunk
        assertEquals("sequential", r.pattern());
        assertEquals(CHUNK, r.chunkBytes());
        assertEquals(threads, r.threads());
        assertEquals(chunks * CHUNK, r.bytes());
        assertEquals(chunks, r.reads());
        assertEquals(direct && directAccepted(f), r.direct());
        Map<Long, Integer> want = new TreeMap<>();
        for (long k = 0; k < chunks; k++) {
            want.put(k * CHUNK, 1);
        }
        assertEquals(want, new TreeMap<>(seen));
        assertSane(r);
    }

    @Test
    void sequentialStopsAtMaxBytesRoundedDownToWholeChunks() throws IOException {
        Path f = file();
        Map<Long, Integer> seen = new ConcurrentHashMap<>();
        Result r = DiskProbe.sequential(f, CHUNK, 3, 5L * CHUNK + 100, true, checking(seen));
        assertEquals(5L * CHUNK, r.bytes());
        assertEquals(Map.of(0L, 1, (long) CHUNK, 1, 2L * CHUNK, 1, 3L * CHUNK, 1, 4L * CHUNK, 1), seen);
        assertSane(r);
        // The public overload counts the same bytes.
        assertEquals(5L * CHUNK, DiskProbe.sequential(f, CHUNK, 2, 5L * CHUNK + 4095, false).bytes());
    }

    @ParameterizedTest
    @CsvSource({"true,1,16384", "true,8,16384", "false,8,16384", "false,3,1000"})
    void randomReadsNChunkAlignedChunksWithTheFileBytes(boolean direct, int threads, int chunk) throws IOException {
        Path f = file();
        int reads = 500;
        Map<Long, Integer> seen = new ConcurrentHashMap<>();
        Result r = DiskProbe.random(f, chunk, threads, reads, 11, direct, checking(seen));
        assertEquals("random", r.pattern());
        assertEquals((long) reads * chunk, r.bytes());
        assertEquals(reads, r.reads());
        assertEquals(threads, r.threads());
        assertEquals(direct && directAccepted(f), r.direct());
        assertEquals(reads, seen.values().stream().mapToInt(Integer::intValue).sum());
        for (long off : seen.keySet()) {
            assertEquals(0, off % chunk, "offset " + off + " is not chunk-aligned");
            assertTrue(off + chunk <= SIZE, "offset " + off + " reads past the end");
        }
        // Uniform over the whole chunks: many distinct offsets, in both halves of the file.
        assertTrue(seen.size() > Math.min(SIZE / chunk, reads) / 2, seen.size() + " distinct offsets");
        assertTrue(Collections.min(seen.keySet()) < SIZE / 2 && Collections.max(seen.keySet()) > SIZE / 2);
        assertSane(r);
    }

    @Test
    void randomOffsetsDependOnlyOnTheSeed() throws IOException {
        Path f = file();
        Map<Long, Integer> one = new ConcurrentHashMap<>();
        Map<Long, Integer> four = new ConcurrentHashMap<>();
        Map<Long, Integer> other = new ConcurrentHashMap<>();
        DiskProbe.random(f, 4096, 1, 300, 5, false, checking(one));
        DiskProbe.random(f, 4096, 4, 300, 5, true, checking(four));
        DiskProbe.random(f, 4096, 4, 300, 6, true, checking(other));
        assertEquals(one, four, "same seed, same offsets, whatever the threads and mode");
        assertNotEquals(one, other, "another seed, other offsets");
    }

    @Test
    void sweepReturnsOneRandomResultPerPairChunkMajor() throws IOException {
        Path f = file();
        int[] chunks = {4096, 16384, 262144};
        int[] threads = {1, 3};
        List<Result> results = DiskProbe.sweep(f, chunks, threads, 1 << 20, 3, true);
        assertEquals(6, results.size());
        int i = 0;
        for (int c : chunks) {
            for (int t : threads) {
                Result r = results.get(i++);
                assertEquals("random", r.pattern());
                assertEquals(c, r.chunkBytes());
                assertEquals(t, r.threads());
                // About 1 MiB per point, at least 64 reads (262144-byte chunks: 4 would be too few).
                assertEquals(Math.max(64, (1 << 20) / c), r.reads());
                assertEquals(r.reads() * c, r.bytes());
                assertEquals(directAccepted(f), r.direct());
                assertSane(r);
            }
        }
    }

    @Test
    void directRefusesChunksThatAreNotWholeBlocks() throws IOException {
        Path f = file();
        List<IllegalArgumentException> errors = List.of(
                assertThrows(IllegalArgumentException.class, () -> DiskProbe.sequential(f, 5000, 1, 1 << 20, true)),
                assertThrows(IllegalArgumentException.class, () -> DiskProbe.random(f, 5000, 1, 10, 1, true)),
                assertThrows(IllegalArgumentException.class,
                        () -> DiskProbe.sweep(f, new int[] {4096, 5000}, new int[] {1}, 1 << 20, 1, true)));
        for (IllegalArgumentException e : errors) {
            assertTrue(e.getMessage().contains("5000") && e.getMessage().contains("multiple of 4096")
                    && e.getMessage().contains("O_DIRECT"), e.getMessage());
        }
        // Buffered reads take any chunk size.
        assertEquals(10L * 5000, DiskProbe.random(f, 5000, 2, 10, 1, false).bytes());
    }

    @Test
    void aFileSmallerThanOneChunkIsAOneLineFormatExceptionNamingTheFile() throws IOException {
        Path f = dir.resolve("small.bin");
        Files.write(f, new byte[10_000]);
        List<FormatException> errors = List.of(
                assertThrows(FormatException.class, () -> DiskProbe.sequential(f, 16384, 2, 1 << 20, true)),
                assertThrows(FormatException.class, () -> DiskProbe.random(f, 16384, 2, 10, 1, false)),
                assertThrows(FormatException.class,
                        () -> DiskProbe.sweep(f, new int[] {4096, 16384}, new int[] {1}, 1 << 16, 1, true)));
        for (FormatException e : errors) {
            assertEquals(f, e.file());
            assertTrue(e.getMessage().startsWith(f + ": "), e.getMessage());
            assertTrue(e.getMessage().contains("10000 bytes") && e.getMessage().contains("16384"), e.getMessage());
            assertFalse(e.getMessage().contains("\n"), e.getMessage());
        }
    }

    @Test
    void aMissingFileIsAOneLineFormatException() {
        Path f = dir.resolve("missing.bin");
        for (boolean direct : new boolean[] {true, false}) {
            FormatException e = assertThrows(FormatException.class, () -> DiskProbe.random(f, 4096, 1, 1, 1, direct));
            assertEquals(f, e.file());
            assertTrue(e.getMessage().startsWith(f + ": cannot open"), e.getMessage());
            assertFalse(e.getMessage().contains("\n"), e.getMessage());
        }
    }

    @ParameterizedTest
    @CsvSource({"true", "false"})
    void aFileThatShrinksWhileProbingIsAShortReadFormatException(boolean direct) throws IOException {
        Path f = file();
        AtomicBoolean cut = new AtomicBoolean();
        DiskProbe.ChunkSink truncateOnce = (offset, bytes) -> {
            if (cut.compareAndSet(false, true)) {
                try (FileChannel ch = FileChannel.open(f, StandardOpenOption.WRITE)) {
                    ch.truncate(2L * CHUNK);
                } catch (IOException e) {
                    throw new AssertionError(e);
                }
            }
        };
        FormatException e = assertThrows(FormatException.class,
                () -> DiskProbe.sequential(f, CHUNK, 1, Long.MAX_VALUE, direct, truncateOnce));
        assertEquals(f, e.file());
        assertTrue(e.getMessage().contains("got only 0") && e.getMessage().contains("shrank"), e.getMessage());
        assertFalse(e.getMessage().contains("\n"), e.getMessage());
    }

    @Test
    void parametersOutOfRangeAreRefused() throws IOException {
        Path f = file();
        assertThrows(IllegalArgumentException.class, () -> DiskProbe.sequential(f, CHUNK, 0, 1 << 20, false));
        assertThrows(IllegalArgumentException.class, () -> DiskProbe.sequential(f, CHUNK, 1, CHUNK - 1, false));
        assertThrows(IllegalArgumentException.class, () -> DiskProbe.sequential(f, 0, 1, 1 << 20, false));
        assertThrows(IllegalArgumentException.class, () -> DiskProbe.random(f, CHUNK, 1, 0, 1, false));
        assertThrows(IllegalArgumentException.class, () -> DiskProbe.random(f, CHUNK, -1, 10, 1, false));
        assertThrows(IllegalArgumentException.class, () -> DiskProbe.sweep(f, new int[0], new int[] {1}, 1, 1, false));
        assertThrows(IllegalArgumentException.class,
                () -> DiskProbe.sweep(f, new int[] {4096}, new int[] {1, 0}, 1 << 20, 1, false));
        assertThrows(IllegalArgumentException.class,
                () -> DiskProbe.sweep(f, new int[] {4096}, new int[] {1}, 0, 1, false));
    }

    @Test
    void sweepMakesAtLeast64ReadsPerPointAndReturnsAnImmutableList() throws IOException {
        Path f = file();
        List<Result> results = DiskProbe.sweep(f, new int[] {4096}, new int[] {2}, 1, 1, false);
        assertEquals(64, results.getFirst().reads());
        assertEquals(64L * 4096, results.getFirst().bytes());
        assertThrows(UnsupportedOperationException.class, () -> results.add(results.getFirst()));
    }
}
