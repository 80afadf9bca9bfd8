package dev.llmflash.runtime.bench;

import com.sun.nio.file.ExtendedOpenOption;
import dev.llmflash.formats.FormatException;
import dev.llmflash.formats.LlmflashException;
import dev.llmflash.runtime.io.IoEngine;

import java.io.IOException;
import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.nio.ByteBuffer;
import java.nio.channels.FileChannel;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.StandardOpenOption;
import java.util.ArrayList;
import java.util.List;
import java.util.SplittableRandom;
import java.util.concurrent.CountDownLatch;
import java.util.concurrent.atomic.AtomicBoolean;
import java.util.concurrent.atomic.AtomicLong;
import java.util.concurrent.atomic.AtomicReference;
import java.util.function.LongUnaryOperator;

/**
 * Reference figures of this machine's disk, measured in the same run as a benchmark: sequential read
 * speed, random-read throughput at one chunk size and thread count, and a sweep of random-read
 * throughput over chunk sizes x thread counts ("LLM in a flash", Figure 2b: throughput grows with
 * chunk size and with the number of concurrent reads).
 *
 * <h2>Why plain loops</h2>
 * Every measurement is a plain read loop: each thread claims the next chunk from a shared cursor and
 * reads it with one positional read ({@code pread}) into its own buffer; nothing is merged, split,
 * sorted or copied. This is the yardstick {@link IoEngine} is compared against: what the disk gives
 * to the simplest reader with the same chunk size and threads. It deliberately does not use
 * {@link IoEngine}, so that a regression there cannot hide in its own reference.
 *
 * <h2>Threads and timing</h2>
 * A measurement starts {@code threads} platform threads (not virtual threads: a blocking
 * {@code pread} pins a carrier, and the point is {@code threads} reads in flight at once). Each
 * thread allocates its block-aligned buffer of one chunk from its own confined arena (freed when the
 * thread ends), then all wait at a gate; the clock starts when the gate opens and stops at the last
 * thread's completion, so thread start-up and allocation are not timed. Threads claim chunk indices
 * from one {@link AtomicLong}, so a slow read does not leave other threads idle at the end.
 *
 * <h2>Direct and buffered</h2>
 * With {@code direct = true} the file is opened with {@code O_DIRECT}
 * ({@link ExtendedOpenOption#DIRECT}) as {@link IoEngine} does: reads bypass the page cache, and file
 * offset, length and buffer address must be multiples of the filesystem block size (4096 on ext4),
 * so chunk sizes must be multiples of 4096 ({@link IllegalArgumentException} otherwise; offsets are
 * whole chunks). If the filesystem refuses {@code O_DIRECT} (tmpfs, some overlays) the probe reads
 * buffered instead and reports {@link Result#direct()} {@code false}. Buffered figures may be served
 * partly or wholly from the page cache (RAM) when the file was read recently, and then say nothing
 * about the disk: the direct figure is the honest one.
 *
 * <h2>Errors and threads</h2>
 * A missing or unreadable file, a file smaller than one chunk, a read that fails or returns fewer
 * bytes than asked (the file shrank while probing) throw {@link FormatException} with one line; the
 * first failure stops the other threads from starting new reads. The methods are stateless and may
 * be called from any thread; each opens and closes the file itself.
 */
public final class DiskProbe {

    /** The alignment O_DIRECT asks for on common filesystems; chunk sizes must be multiples of it. */
    public static final int DIRECT_ALIGNMENT = 4096;
    /** Fewest reads per sweep point, so a point with large chunks is not one or two reads. */
    public static final int MIN_SWEEP_READS = 64;

    /**
     * One measurement.
     *
     * @param pattern    "sequential" or "random"
     * @param chunkBytes bytes per read
     * @param threads    reading threads
     * @param bytes      bytes read (every read was complete, so reads x chunkBytes)
     * @param nanos      from the gate opening to the last thread's completion, {@code >= 1}
     * @param direct     true if the reads bypassed the page cache (O_DIRECT accepted)
     */
    public record Result(String pattern, int chunkBytes, int threads, long bytes, long nanos, boolean direct) {
        /** Throughput in GB/s (1 GB = 1e9 bytes). */
        public double gbps() {
            return bytes / (double) nanos;
        }

        /** Number of reads: {@code bytes / chunkBytes}. */
        public long reads() {
            return bytes / chunkBytes;
        }
    }

    /** Test hook: sees every chunk read, its file offset and its bytes (valid only during the call). */
    @FunctionalInterface
    interface ChunkSink {
        void accept(long offset, MemorySegment bytes);
    }

    private DiskProbe() {
    }

    /**
     * Sequential read throughput: reads {@code [0, min(size, maxBytes))} rounded down to whole chunks,
     * each chunk once, chunk k by whichever thread claims it next (with several threads the disk sees
     * a few neighbouring streams, as a parallel loader would issue).
     *
     * @param chunkBytes bytes per read, {@code >= 1}; in direct mode a multiple of 4096
     * @param threads    reading threads, {@code >= 1}
     * @param maxBytes   most bytes to read, {@code >= chunkBytes}
     * @param direct     try O_DIRECT (falls back to buffered if refused; see {@link Result#direct()})
     * @throws IllegalArgumentException a parameter is out of range
     * @throws FormatException          the file is missing, unreadable, smaller than one chunk, or shrank
     */
    public static Result sequential(Path file, int chunkBytes, int threads, long maxBytes, boolean direct) {
        return sequential(file, chunkBytes, threads, maxBytes, direct, null);
    }

    static Result sequential(Path file, int chunkBytes, int threads, long maxBytes, boolean direct, ChunkSink sink) {
        checkChunk(chunkBytes, direct);
        checkThreads(threads);
        if (maxBytes < chunkBytes) {
            throw new IllegalArgumentException("maxBytes " + maxBytes + " is less than one chunk of " + chunkBytes + " bytes");
        }
        try (Source src = Source.open(file, direct)) {
            long chunks = src.chunks(chunkBytes);
            long count = Math.min(chunks, maxBytes / chunkBytes);
            return src.measure("sequential", chunkBytes, threads, count, k -> k * chunkBytes, sink);
        }
    }

    /**
     * Random read throughput: {@code reads} reads of {@code chunkBytes} at uniformly random
     * chunk-aligned offsets (chunk index drawn from {@code [0, size / chunkBytes)} with a
     * {@link SplittableRandom} seeded with {@code seed}; drawn before the clock starts), spread over
     * {@code threads} threads. With 16 KiB chunks this is the FFN-bundle read pattern of the flash runtime.
     *
     * @param chunkBytes bytes per read, {@code >= 1}; in direct mode a multiple of 4096
     * @param threads    reading threads, {@code >= 1}
     * @param reads      number of reads, {@code >= 1}
     * @param direct     try O_DIRECT (falls back to buffered if refused; see {@link Result#direct()})
     * @throws IllegalArgumentException a parameter is out of range
     * @throws FormatException          the file is missing, unreadable, smaller than one chunk, or shrank
     */
    public static Result random(Path file, int chunkBytes, int threads, int reads, long seed, boolean direct) {
        return random(file, chunkBytes, threads, reads, seed, direct, null);
    }

    static Result random(Path file, int chunkBytes, int threads, int reads, long seed, boolean direct, ChunkSink sink) {
        checkChunk(chunkBytes, direct);
        checkThreads(threads);
        checkReads(reads);
        try (Source src = Source.open(file, direct)) {
            return src.random(chunkBytes, threads, reads, seed, sink);
        }
    }

    /**
     * Random read throughput for every (chunk size, thread count) pair, chunk-major: for each
     * {@code chunkBytes[i]} in order, for each {@code threads[j]} in order, one "random" {@link Result}.
     * Each point makes {@code max(64, bytesPerPoint / chunk)} reads (about {@code bytesPerPoint}
     * bytes), with its own seed derived from {@code seed} and the point's index, so that buffered
     * points do not re-read exactly the offsets of the point before. All arguments are checked before
     * the first point runs.
     *
     * @param bytesPerPoint about how many bytes each point reads, {@code >= 1}
     * @throws IllegalArgumentException an array is empty or a value is out of range
     * @throws FormatException          the file is missing, unreadable, smaller than a chunk, or shrank
     */
    public static List<Result> sweep(Path file, int[] chunkBytes, int[] threads, long bytesPerPoint, long seed,
                                     boolean direct) {
        if (chunkBytes.length == 0 || threads.length == 0) {
            throw new IllegalArgumentException("sweep needs at least one chunk size and one thread count");
        }
        for (int c : chunkBytes) {
            checkChunk(c, direct);
        }
        for (int t : threads) {
            checkThreads(t);
        }
        if (bytesPerPoint < 1) {
            throw new IllegalArgumentException("bytesPerPoint must be >= 1, got " + bytesPerPoint);
        }
        List<Result> results = new ArrayList<>(chunkBytes.length * threads.length);
        try (Source src = Source.open(file, direct)) {
            for (int c : chunkBytes) {
                src.chunks(c); // a chunk larger than the file fails before any point runs
            }
            int point = 0;
            for (int c : chunkBytes) {
                int reads = (int) Math.min(Integer.MAX_VALUE, Math.max(MIN_SWEEP_READS, bytesPerPoint / c));
                for (int t : threads) {
                    // Golden-ratio step: distinct, well-spread seeds per point.
                    long pointSeed = seed + (point++) * 0x9E3779B97F4A7C15L;
                    results.add(src.random(c, t, reads, pointSeed, null));
                }
            }
        }
        return List.copyOf(results);
    }

    private static void checkChunk(int chunkBytes, boolean direct) {
        if (chunkBytes < 1) {
            throw new IllegalArgumentException("chunk size must be >= 1 byte, got " + chunkBytes);
        }
        if (direct && chunkBytes % DIRECT_ALIGNMENT != 0) {
            throw new IllegalArgumentException("chunk size " + chunkBytes + " is not a multiple of "
                    + DIRECT_ALIGNMENT + " bytes, which direct (O_DIRECT) reads need; use e.g. "
                    + Math.max(DIRECT_ALIGNMENT, chunkBytes / DIRECT_ALIGNMENT * DIRECT_ALIGNMENT)
                    + " or read buffered");
        }
    }

    private static void checkThreads(int threads) {
        if (threads < 1) {
            throw new IllegalArgumentException("threads must be >= 1, got " + threads);
        }
    }

    private static void checkReads(int reads) {
        if (reads < 1) {
            throw new IllegalArgumentException("reads must be >= 1, got " + reads);
        }
    }

    /** The open file: channel, whether O_DIRECT was accepted, size at open, buffer alignment. */
    private record Source(Path file, FileChannel channel, boolean direct, long size, int block)
            implements AutoCloseable {

        /** Opens like {@link IoEngine#open}: O_DIRECT if asked and accepted, else buffered. */
        static Source open(Path file, boolean direct) {
            int block = DIRECT_ALIGNMENT;
            try {
                long bs = Files.getFileStore(file).getBlockSize();
                if (bs > DIRECT_ALIGNMENT && bs <= (1 << 20) && Long.bitCount(bs) == 1) {
                    block = (int) bs;
                }
            } catch (IOException | UnsupportedOperationException e) {
                // Missing file: reported by the open below. Unknown block size: 4096 as IoEngine assumes.
            }
            FileChannel ch = null;
            if (direct) {
                try {
                    ch = FileChannel.open(file, StandardOpenOption.READ, ExtendedOpenOption.DIRECT);
                } catch (IOException | UnsupportedOperationException e) {
                    // Refused (tmpfs, overlay) or missing: the buffered open says which.
                }
            }
            boolean isDirect = ch != null;
            try {
                if (ch == null) {
                    ch = FileChannel.open(file, StandardOpenOption.READ);
                }
                return new Source(file, ch, isDirect, ch.size(), block);
            } catch (IOException e) {
                if (ch != null) {
                    try {
                        ch.close();
                    } catch (IOException ignored) {
                        // Already failing; the open error is the one to report.
                    }
                }
                throw new FormatException(file, "cannot open for reading: " + e,
                        "check that the file exists and is readable");
            }
        }

        /** Whole chunks in the file; refuses a file smaller than one chunk or a chunk the block does not divide. */
        long chunks(int chunkBytes) {
            if (direct && chunkBytes % block != 0) {
                throw new IllegalArgumentException("chunk size " + chunkBytes + " is not a multiple of the "
                        + block + "-byte filesystem block that direct (O_DIRECT) reads of " + file + " need");
            }
            if (size < chunkBytes) {
                throw new FormatException(file, "file has " + size + " bytes, less than one chunk of "
                        + chunkBytes + " bytes", "probe a larger file or a smaller chunk size");
            }
            return size / chunkBytes;
        }

        Result random(int chunkBytes, int threads, int reads, long seed, ChunkSink sink) {
            long slots = chunks(chunkBytes);
            SplittableRandom rnd = new SplittableRandom(seed);
            long[] offsets = new long[reads];
            for (int i = 0; i < reads; i++) {
                offsets[i] = rnd.nextLong(slots) * chunkBytes;
            }
            return measure("random", chunkBytes, threads, reads, k -> offsets[(int) k], sink);
        }

        /**
         * Reads chunks 0 .. count-1 at {@code offsetOf(k)} with {@code threads} threads, each claiming
         * the next k from a shared cursor; times from the gate opening to the last completion.
         */
        Result measure(String pattern, int chunkBytes, int threads, long count, LongUnaryOperator offsetOf,
                       ChunkSink sink) {
            AtomicLong cursor = new AtomicLong();
            AtomicLong bytesRead = new AtomicLong();
            AtomicLong lastEnd = new AtomicLong(Long.MIN_VALUE);
            AtomicBoolean failed = new AtomicBoolean();
            AtomicReference<Throwable> failure = new AtomicReference<>();
            CountDownLatch ready = new CountDownLatch(threads);
            CountDownLatch gate = new CountDownLatch(1);
            Thread[] team = new Thread[threads];
            for (int i = 0; i < threads; i++) {
                team[i] = Thread.ofPlatform().daemon(true).name("llmflash-probe-" + (i + 1)).unstarted(() -> {
                    long mine = 0;
                    try (Arena arena = Arena.ofConfined()) {
                        MemorySegment buf;
                        try {
                            buf = arena.allocate(chunkBytes, block);
                        } finally {
                            ready.countDown();
                        }
                        gate.await();
                        ByteBuffer bb = buf.asByteBuffer();
                        for (long k; !failed.get() && (k = cursor.getAndIncrement()) < count; ) {
                            long offset = offsetOf.applyAsLong(k);
                            readFully(bb, offset);
                            mine += chunkBytes;
                            if (sink != null) {
                                sink.accept(offset, buf);
                            }
                        }
                    } catch (Throwable e) {
                        failed.set(true);
                        failure.compareAndSet(null, e);
                    } finally {
                        bytesRead.addAndGet(mine);
                        lastEnd.accumulateAndGet(System.nanoTime(), Math::max);
                    }
                });
            }
            for (Thread t : team) {
                t.start();
            }
            boolean interrupted = false;
            try {
                ready.await();
            } catch (InterruptedException e) {
                interrupted = true;
                failed.set(true); // threads pass the gate and stop at once
            }
            long t0 = System.nanoTime();
            gate.countDown();
            for (Thread t : team) {
                while (true) {
                    try {
                        t.join();
                        break;
                    } catch (InterruptedException e) {
                        // Keep waiting: the threads must be done before the file is closed.
                        interrupted = true;
                        failed.set(true);
                    }
                }
            }
            Throwable e = failure.get();
            if (interrupted) {
                Thread.currentThread().interrupt();
                if (e == null) {
                    throw new LlmflashException(file + ": disk probe was interrupted");
                }
            }
            if (e instanceof RuntimeException re) {
                throw re;
            }
            if (e instanceof Error err) {
                throw err;
            }
            if (e != null) {
                throw new LlmflashException(file + ": disk probe thread failed: " + e, e);
            }
            return new Result(pattern, chunkBytes, threads, bytesRead.get(), Math.max(1, lastEnd.get() - t0), direct);
        }

        /** One chunk at {@code offset} into {@code bb} (its whole capacity), resumed until complete. */
        private void readFully(ByteBuffer bb, long offset) {
            bb.clear();
            try {
                while (bb.hasRemaining()) {
                    int n = channel.read(bb, offset + bb.position());
                    // In direct mode a partial block means end of file: resuming at an unaligned
                    // offset would be refused, and there is nothing more to read anyway.
                    if (n <= 0 || (direct && n % block != 0 && bb.hasRemaining())) {
                        break;
                    }
                }
            } catch (IOException e) {
                throw new FormatException(file, "read of " + bb.capacity() + " bytes at offset " + offset
                        + " failed: " + e, "check the disk");
            }
            if (bb.hasRemaining()) {
                throw new FormatException(file, "read of " + bb.capacity() + " bytes at offset " + offset
                        + " got only " + bb.position() + " (the file has " + size + " bytes at open)",
                        "the file shrank while probing; probe a file that is not being written");
            }
        }

        @Override
        public void close() {
            try {
                channel.close();
            } catch (IOException ignored) {
                // Read-only channel: nothing was written that a failed close could lose.
            }
        }
    }
}
