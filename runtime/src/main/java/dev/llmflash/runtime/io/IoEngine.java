package dev.llmflash.runtime.io;

import com.sun.nio.file.ExtendedOpenOption;
import dev.llmflash.formats.FormatException;
import dev.llmflash.formats.LlmflashException;

import java.io.IOException;
import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.nio.ByteBuffer;
import java.nio.channels.FileChannel;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.StandardOpenOption;
import java.util.ArrayList;
import java.util.Comparator;
import java.util.List;
import java.util.concurrent.ExecutionException;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;
import java.util.concurrent.Future;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicBoolean;
import java.util.concurrent.atomic.AtomicInteger;
import java.util.concurrent.atomic.AtomicLong;

/**
 * Parallel positional reads of one file into caller-owned memory: the loader of FFN bundles
 * ("LLM in a flash", technique 5: many concurrent reads, chunks of 32 KiB or more where the layout
 * allows, page cache bypassed so that what is measured is the SSD).
 *
 * <h2>Modes</h2>
 * {@link #open} first tries {@code O_DIRECT} ({@link ExtendedOpenOption#DIRECT}). The JDK then
 * requires every read's file offset, length and buffer address to be multiples of the filesystem
 * block size ({@link java.nio.file.FileStore#getBlockSize()}, 4096 on ext4). If the filesystem refuses
 * the flag (tmpfs, some overlay filesystems) the engine falls back to an ordinary channel and says so
 * in {@link #mode()}. In buffered mode no {@code posix_fadvise(POSIX_FADV_RANDOM)} is issued: the
 * advice applies to an open file description, and a {@link FileChannel} does not expose its descriptor
 * without opening JDK internals, so readahead stays the kernel's default.
 *
 * <h2>Read plans</h2>
 * {@link #readAll} takes a list of {@link Read}s and:
 * <ol>
 *   <li>checks each against the file size seen at open, and splits reads longer than
 *       {@code maxRunBytes} into pieces (so pieces spread over threads and fit a bounce buffer);</li>
 *   <li>sorts by offset and groups neighbours into <em>runs</em>: the next read joins a run when the
 *       gap from the run's end is at most {@code maxGap} bytes (0 = only touching reads) and the run
 *       stays within {@code maxRunBytes};</li>
 *   <li>reads each run with one positional read (resumed until complete). A run lands straight in the
 *       destinations when it has no gaps, its destinations are native and contiguous in memory, and - in
 *       direct mode - its offset, length and address are block-aligned. Otherwise it is read, expanded
 *       to the block-aligned span in direct mode, into the calling I/O thread's aligned bounce buffer and
 *       the wanted bytes are copied out;</li>
 *   <li>spreads the runs over a fixed pool of {@code threads} daemon platform threads
 *       ({@code llmflash-io-N}); the caller waits for all of them. The first failure stops the others
 *       from starting new runs and is thrown once every thread has finished its current read.</li>
 * </ol>
 *
 * <h2>Ownership, threads, close</h2>
 * The engine owns its channel, thread pool and bounce buffers (one per I/O thread, {@code maxRunBytes}
 * plus two blocks, freed by {@link #close()}). Destinations belong to the caller and must stay alive
 * during {@code readAll} and be accessible from the I/O threads; the engine writes only the first {@code length} bytes of each. {@code readAll}
 * is thread-safe (concurrent calls share the pool); {@link #close()} must not race with it.
 */
public final class IoEngine implements AutoCloseable {

    /**
     * One wanted range of the file.
     *
     * @param offset file offset of the first byte, {@code >= 0}
     * @param length bytes wanted, {@code >= 0}
     * @param dst    where the bytes land (its first {@code length} bytes); at least {@code length} long
     *               and accessible from other threads (global, automatic or shared arena, or heap;
     *               not a confined arena: the I/O threads write it)
     */
    public record Read(long offset, int length, MemorySegment dst) {
        public Read {
            if (offset < 0 || length < 0) {
                throw new IllegalArgumentException("negative offset or length: " + offset + ", " + length);
            }
            if (dst.byteSize() < length) {
                throw new IllegalArgumentException("destination of " + dst.byteSize() + " bytes for a read of " + length);
            }
            if (!dst.isAccessibleBy(SOME_OTHER_THREAD)) {
                throw new IllegalArgumentException("destination is confined to one thread; allocate it from a shared arena");
            }
        }

        long end() {
            return offset + length;
        }
    }

    /** Default largest run: 1 MiB, far above the paper's 32 KiB knee, small enough to spread over threads. */
    public static final int DEFAULT_MAX_RUN_BYTES = 1 << 20;
    /** Default largest gap read through to merge two reads: 0, only touching reads are merged. */
    public static final int DEFAULT_MAX_GAP = 0;

    /** Never started: stands for "an I/O thread" when checking that destinations are shareable. */
    private static final Thread SOME_OTHER_THREAD = Thread.ofPlatform().unstarted(() -> { });

    private static final String RECONVERT = "the file was truncated or changed while running; re-convert";

    private final Path file;
    private final FileChannel channel;
    private final boolean direct;
    private final String mode;
    private final long size;
    private final int block;
    private final int threads;
    private final int maxGap;
    private final int maxRunBytes;
    private final ExecutorService pool;
    private final Arena bounceArena = Arena.ofShared();
    private final ThreadLocal<MemorySegment> bounce;
    private final IoStats stats = new IoStats();
    /** The pool's threads, for their CPU time. */
    private final java.util.List<Thread> poolThreads = new java.util.concurrent.CopyOnWriteArrayList<>();

    private IoEngine(Path file, FileChannel channel, boolean direct, String mode, long size, int block,
                     int threads, int maxGap, int maxRunBytes) {
        this.file = file;
        this.channel = channel;
        this.direct = direct;
        this.mode = mode;
        this.size = size;
        this.block = block;
        this.threads = threads;
        this.maxGap = maxGap;
        this.maxRunBytes = maxRunBytes;
        AtomicInteger n = new AtomicInteger();
        this.pool = Executors.newFixedThreadPool(threads, r -> {
            Thread t = new Thread(r, "llmflash-io-" + n.incrementAndGet());
            t.setDaemon(true);
            poolThreads.add(t);
            return t;
        });
        long bounceBytes = (long) maxRunBytes + 2L * block;
        this.bounce = ThreadLocal.withInitial(() -> bounceArena.allocate(bounceBytes, block));
    }

    /** {@link #open(Path, int, boolean, int, int)} with the default gap and run size. */
    public static IoEngine open(Path file, int threads, boolean direct) {
        return open(file, threads, direct, DEFAULT_MAX_GAP, DEFAULT_MAX_RUN_BYTES);
    }

    /**
     * Opens {@code file} for reading.
     *
     * @param threads     I/O threads, {@code >= 1}
     * @param direct      try O_DIRECT (falls back to buffered if refused; see {@link #mode()})
     * @param maxGap      largest gap in bytes read through to merge two reads, {@code >= 0}
     * @param maxRunBytes largest merged read; rounded up to a multiple of the block size
     * @throws FormatException if the file cannot be opened
     */
    public static IoEngine open(Path file, int threads, boolean direct, int maxGap, int maxRunBytes) {
        if (threads < 1 || maxGap < 0 || maxRunBytes < 1) {
            throw new IllegalArgumentException("threads " + threads + ", maxGap " + maxGap + ", maxRunBytes " + maxRunBytes);
        }
        int block;
        try {
            long bs = Files.getFileStore(file).getBlockSize();
            block = bs > 0 && bs <= (1 << 20) && Long.bitCount(bs) == 1 ? (int) bs : 4096;
        } catch (IOException | UnsupportedOperationException e) {
            block = 4096;
        }
        int run = (int) Math.min(Integer.MAX_VALUE - 2L * block, alignUp(maxRunBytes, block));
        FileChannel ch = null;
        String mode = "direct";
        boolean isDirect = false;
        if (direct) {
            try {
                ch = FileChannel.open(file, StandardOpenOption.READ, ExtendedOpenOption.DIRECT);
                isDirect = true;
            } catch (IOException | UnsupportedOperationException e) {
                mode = "buffered (O_DIRECT refused: " + e + ")";
            }
        } else {
            mode = "buffered";
        }
        try {
            if (ch == null) {
                ch = FileChannel.open(file, StandardOpenOption.READ);
            }
            long size = ch.size();
            return new IoEngine(file, ch, isDirect, mode, size, block, threads, maxGap, run);
        } catch (IOException e) {
            closeQuietly(ch);
            throw new FormatException(file, "cannot open for reading: " + e, "check that the file exists and is readable");
        }
    }

    /**
     * CPU time the I/O threads have used so far (user + system, from the JVM's thread CPU clock; 0 where
     * the JVM does not measure it): what the reads take from the cores that compute (syscalls, copies
     * out of bounce buffers, the pool's hand-offs).
     */
    public long threadCpuNanos() {
        java.lang.management.ThreadMXBean mx = java.lang.management.ManagementFactory.getThreadMXBean();
        if (!mx.isThreadCpuTimeSupported()) {
            return 0;
        }
        long sum = 0;
        for (Thread t : poolThreads) {
            long c = mx.getThreadCpuTime(t.threadId());
            sum += Math.max(0, c);
        }
        return sum;
    }

    /** Heap bytes the I/O threads have allocated so far (HotSpot's per-thread counters), or 0. */
    public long threadAllocatedBytes() {
        if (!(java.lang.management.ManagementFactory.getThreadMXBean() instanceof com.sun.management.ThreadMXBean mx)
                || !mx.isThreadAllocatedMemorySupported()) {
            return 0;
        }
        long sum = 0;
        for (Thread t : poolThreads) {
            sum += Math.max(0, mx.getThreadAllocatedBytes(t.threadId()));
        }
        return sum;
    }

    /** True when reads bypass the page cache (O_DIRECT accepted). */
    public boolean direct() {
        return direct;
    }

    /** "direct", "buffered", or "buffered (O_DIRECT refused: reason)". */
    public String mode() {
        return mode;
    }

    /** File size in bytes when opened; reads beyond it are refused. */
    public long size() {
        return size;
    }

    /** The alignment direct reads need (filesystem block size). */
    public int blockSize() {
        return block;
    }

    public int threads() {
        return threads;
    }

    /** The largest single read (merged run or piece of a long range), a multiple of the block size. */
    public int maxRunBytes() {
        return maxRunBytes;
    }

    /** The most bounce-buffer memory the engine may allocate: one buffer per I/O thread, made on first use. */
    public long maxBufferBytes() {
        return (long) threads * ((long) maxRunBytes + 2L * block);
    }

    public Path file() {
        return file;
    }

    /** Live counters; the caller may {@link IoStats#reset()} them. */
    public IoStats stats() {
        return stats;
    }

    /**
     * Reads every range into its destination and returns when all are done.
     *
     * @throws FormatException   a range lies beyond the file size seen at open, the file ends early
     *                           (truncated after open), or the OS reports an I/O error
     * @throws LlmflashException the calling thread was interrupted (its interrupt flag is set again)
     */
    public void readAll(List<Read> reads) {
        submit(reads).await();
    }

    /**
     * Starts reading every range and returns at once, so that the caller can compute while the reads
     * are in flight; {@link Pending#await()} waits for them (and must be called, also on the error
     * path of the caller, before the destinations are reused or freed). Ranges beyond the file size
     * seen at open are refused here, before anything starts.
     *
     * @throws FormatException a range lies beyond the file size seen at open
     */
    public Pending submit(List<Read> reads) {
        long t0 = System.nanoTime();
        List<Read> pieces = plan(reads);
        List<List<Read>> runs = group(pieces);
        return start(runs, t0);
    }

    /**
     * Reads in flight from one {@link #submit}. Not thread-safe: one thread awaits it.
     */
    public final class Pending {
        private final List<Future<?>> futures;
        private final AtomicBoolean failed;
        private final AtomicLong lastDone;
        private final long started;
        private long waitedNanos;
        private long latencyNanos;
        private boolean done;

        private Pending(List<Future<?>> futures, AtomicBoolean failed, AtomicLong lastDone, long started) {
            this.futures = futures;
            this.failed = failed;
            this.lastDone = lastDone;
            this.started = started;
        }

        /**
         * Waits until every read finished; idempotent.
         *
         * @throws FormatException   the file ended early or the OS reported an I/O error
         * @throws LlmflashException the calling thread was interrupted (its interrupt flag is set again)
         */
        public void await() {
            if (done) {
                return;
            }
            done = true;
            long t0 = System.nanoTime();
            try {
                finish(futures, failed);
            } finally {
                long now = System.nanoTime();
                waitedNanos = now - t0;
                long last = lastDone.get();
                latencyNanos = (futures.isEmpty() ? t0 : last == 0 ? now : last) - started;
                stats.addNanos(latencyNanos);
            }
        }

        /** Time {@link #await()} blocked: the I/O not hidden behind the caller's work. */
        public long waitedNanos() {
            return waitedNanos;
        }

        /** From {@link #submit} to the last read's completion (planning included). */
        public long latencyNanos() {
            return latencyNanos;
        }
    }

    private List<Read> plan(List<Read> reads) {
        List<Read> pieces = new ArrayList<>(reads.size());
        long bytes = 0;
        for (Read r : reads) {
            if (r.end() > size) {
                throw new FormatException(file, "read of " + r.length() + " bytes at offset " + r.offset()
                        + " ends at byte " + r.end() + " but the file has " + size + " bytes",
                        "the file is shorter than its header says; re-convert");
            }
            bytes += r.length();
            if (r.length() == 0) {
                continue;
            }
            for (long done = 0; done < r.length(); done += maxRunBytes) {
                int len = (int) Math.min(maxRunBytes, r.length() - done);
                pieces.add(done == 0 && len == r.length() ? r : new Read(r.offset() + done, len, r.dst().asSlice(done, len)));
            }
        }
        stats.addRequested(reads.size(), bytes);
        pieces.sort(Comparator.comparingLong(Read::offset));
        return pieces;
    }

    private List<List<Read>> group(List<Read> sorted) {
        List<List<Read>> runs = new ArrayList<>();
        List<Read> cur = null;
        long start = 0, end = 0;
        for (Read r : sorted) {
            if (cur != null && r.offset() - end <= maxGap && Math.max(end, r.end()) - start <= maxRunBytes) {
                cur.add(r);
                end = Math.max(end, r.end());
            } else {
                cur = new ArrayList<>();
                cur.add(r);
                runs.add(cur);
                start = r.offset();
                end = r.end();
            }
        }
        return runs;
    }

    private Pending start(List<List<Read>> runs, long t0) {
        AtomicInteger next = new AtomicInteger();
        AtomicBoolean failed = new AtomicBoolean();
        AtomicLong lastDone = new AtomicLong();
        int tasks = Math.min(threads, runs.size());
        List<Future<?>> futures = new ArrayList<>(tasks);
        for (int t = 0; t < tasks; t++) {
            futures.add(pool.submit(() -> {
                try {
                    for (int i; !failed.get() && (i = next.getAndIncrement()) < runs.size(); ) {
                        try {
                            readRun(runs.get(i));
                        } catch (RuntimeException e) {
                            failed.set(true);
                            throw e;
                        }
                    }
                } finally {
                    lastDone.accumulateAndGet(System.nanoTime(), Math::max);
                }
                return null;
            }));
        }
        return new Pending(futures, failed, lastDone, t0);
    }

    private void finish(List<Future<?>> futures, AtomicBoolean failed) {
        RuntimeException first = null;
        boolean interrupted = false;
        for (Future<?> f : futures) {
            while (true) {
                try {
                    f.get();
                    break;
                } catch (InterruptedException e) {
                    // Stop the workers from starting new runs, but still wait: the destinations must not be
                    // written after we return.
                    interrupted = true;
                    failed.set(true);
                } catch (ExecutionException e) {
                    if (first == null) {
                        first = e.getCause() instanceof RuntimeException re ? re
                                : new LlmflashException(file + ": I/O thread failed: " + e.getCause(), e.getCause());
                    }
                    break;
                }
            }
        }
        if (interrupted) {
            Thread.currentThread().interrupt();
            if (first == null) {
                throw new LlmflashException(file + ": reading was interrupted");
            }
        }
        if (first != null) {
            throw first;
        }
    }

    /** Reads one run: straight into the destinations when possible, else through the bounce buffer. */
    private void readRun(List<Read> run) {
        Read head = run.getFirst();
        long start = head.offset();
        long end = start;
        boolean contiguous = head.dst().isNative();
        for (int i = 0; i < run.size(); i++) {
            Read r = run.get(i);
            if (i > 0) {
                Read prev = run.get(i - 1);
                contiguous &= r.offset() == end && r.dst().isNative()
                        && r.dst().address() == prev.dst().address() + prev.length();
            }
            end = Math.max(end, r.end());
        }
        long span = end - start;
        if (contiguous && (!direct || (start % block == 0 && span % block == 0 && head.dst().address() % block == 0))) {
            MemorySegment dst = run.size() == 1 ? head.dst().asSlice(0, span)
                    : MemorySegment.ofAddress(head.dst().address()).reinterpret(span);
            readFully(dst, start, span, span);
            return;
        }
        long from = direct ? alignDown(start, block) : start;
        long to = direct ? alignUp(end, block) : end;
        MemorySegment buf = bounce.get().asSlice(0, to - from);
        readFully(buf, from, to - from, end - from);
        for (Read r : run) {
            MemorySegment.copy(buf, r.offset() - from, r.dst(), 0, r.length());
        }
    }

    /**
     * Positional read of up to {@code length} bytes at {@code pos} into {@code dst}, resumed until at
     * least {@code needed} bytes arrived (more than {@code needed} only matter as alignment padding).
     */
    private void readFully(MemorySegment dst, long pos, long length, long needed) {
        ByteBuffer bb = dst.asByteBuffer();
        long got = 0;
        try {
            while (got < needed) {
                bb.limit((int) length).position((int) got);
                int n = channel.read(bb, pos + got);
                if (n <= 0) {
                    break;
                }
                stats.addIssued(n);
                got += n;
                // In direct mode a partial block means end of file: resuming at an unaligned offset
                // would be refused, and there is nothing more to read anyway.
                if (direct && n % block != 0) {
                    break;
                }
            }
        } catch (IOException e) {
            throw new FormatException(file, "read of " + needed + " bytes at offset " + pos + " failed: " + e,
                    "check the disk; if it persists, re-convert");
        }
        if (got < needed) {
            throw new FormatException(file, "read of " + needed + " bytes at offset " + pos + " got only " + got,
                    RECONVERT);
        }
    }

    static long alignDown(long x, long a) {
        return x & -a;
    }

    static long alignUp(long x, long a) {
        return (x + a - 1) & -a;
    }

    private static void closeQuietly(FileChannel ch) {
        if (ch != null) {
            try {
                ch.close();
            } catch (IOException ignored) {
                // Already failing; the open error is the one to report.
            }
        }
    }

    /** Stops the I/O threads, closes the file and frees the bounce buffers. */
    @Override
    public void close() {
        pool.shutdownNow();
        try {
            pool.awaitTermination(10, TimeUnit.SECONDS);
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
        }
        closeQuietly(channel);
        bounceArena.close();
    }
}
