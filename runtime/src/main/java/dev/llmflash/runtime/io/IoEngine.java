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
import java.util.Arrays;
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

import static java.lang.foreign.ValueLayout.JAVA_LONG;

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
    /** Submission entries of the io_uring ring (the kernel rounds to a power of two). */
    static final int RING_ENTRIES = 1024;
    /** Most iovecs in one scattered read (the kernel's IOV_MAX). */
    static final int MAX_IOVECS = 1024;
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
    /** The io_uring ring for {@link ReadPlan}s, or null (thread pool only). */
    private final Uring ring;
    private final String ringRefusal;
    private final Object ringLock = new Object();
    /** In-flight plan submissions by id (user data high half); null where free. */
    private PlanPending[] slots = new PlanPending[8];
    private int inFlight;
    private final AtomicLong ringCpuNanos = new AtomicLong();
    /** Submits the ring's queued entries (see {@link #ringLoop}); null without a ring. */
    private final Thread ringThread;
    /** Under the ring lock. */
    private boolean ringClosing;
    /** The submitter's failure, reported by every later wait and submission. Under the ring lock. */
    private String ringFailure;
    private final Uring.Completion sink = this::completed;
    /** The pool's threads, for their CPU time. */
    private final java.util.List<Thread> poolThreads = new java.util.concurrent.CopyOnWriteArrayList<>();

    private IoEngine(Path file, FileChannel channel, boolean direct, String mode, long size, int block,
                     int threads, int maxGap, int maxRunBytes, Uring ring, String ringRefusal, long readStep) {
        this.ring = ring;
        this.slotRunBytes = Math.min(maxRunBytes, readStep > 0 ? Math.max(readStep, block) : SLOT_RUN_BYTES);
        this.readStep = readStep;
        this.ringRefusal = ringRefusal;
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
        if (ring != null) {
            ringThread = new Thread(this::ringLoop, "llmflash-uring");
            ringThread.setDaemon(true);
            ringThread.start();
        } else {
            ringThread = null;
        }
    }

    /**
     * The submitter: hands what {@link #submit(ReadPlan)} queued to the kernel. Submitting a direct read
     * is where its cost lies (the kernel builds and issues the block request inside io_uring_enter), so
     * it runs here, beside the compute threads, instead of stalling the thread that computes: measured
     * on opt-6.7b at 50%, submitting on the compute thread made the token ~20% slower than the thread
     * pool. Completions are reaped by whoever waits (or submits next).
     */
    private void ringLoop() {
        MemorySegment capture = ring.newCapture();
        while (true) {
            int toSubmit;
            synchronized (ringLock) {
                while (!ringClosing && ring.queued() == 0) {
                    try {
                        ringLock.wait();
                    } catch (InterruptedException e) {
                        ringClosing = true;
                    }
                }
                if (ringClosing) {
                    return;
                }
                toSubmit = ring.publish();
            }
            int r = ring.submitOnly(toSubmit, capture);
            synchronized (ringLock) {
                if (r >= 0) {
                    // 0 when a waiter submitted them first (it enters the kernel itself)
                    ring.consumed(r);
                } else if (r == EAGAIN || r == EBUSY) {
                    // the kernel is short of room: reap what has completed, give a waiter 1 ms, retry
                    ring.reap(sink);
                    try {
                        ringLock.wait(1);
                    } catch (InterruptedException e) {
                        ringClosing = true;
                    }
                } else {
                    ringFailure = "io_uring_enter failed in the submitter (errno " + -r + ")";
                    return;
                }
            }
        }
    }

    private static final int EAGAIN = -11, EBUSY = -16;

    /** Ring entries queued and not yet handed to the kernel (tests). */
    int ringQueued() {
        synchronized (ringLock) {
            return ring == null ? 0 : ring.queued();
        }
    }

    private void checkRingAlive() {
        if (ringFailure != null) {
            throw new FormatException(file, ringFailure, "run with --io-backend threads, and report this");
        }
    }

    /**
     * How {@link ReadPlan}s are read.
     * <ul>
     *   <li>{@code URING}: one Linux io_uring ring; the calling thread submits a whole plan with one system
     *       call and reaps completions when it waits. No Java thread per read, no objects per read.</li>
     *   <li>{@code THREADS}: the pool of I/O threads, one positional read per run.</li>
     *   <li>{@code AUTO}: io_uring where the kernel offers it, else threads ({@link #mode()} says which).</li>
     * </ul>
     * Lists of {@link Read}s always use the thread pool.
     */
    public enum Backend { AUTO, URING, THREADS }

    /** {@link #open(Path, int, boolean, int, int)} with the default gap and run size. */
    public static IoEngine open(Path file, int threads, boolean direct) {
        return open(file, threads, direct, DEFAULT_MAX_GAP, DEFAULT_MAX_RUN_BYTES);
    }

    /** {@link #open(Path, int, boolean, int, int, Backend)} with the thread pool only. */
    public static IoEngine open(Path file, int threads, boolean direct, int maxGap, int maxRunBytes) {
        return open(file, threads, direct, maxGap, maxRunBytes, Backend.THREADS);
    }

    /**
     * Opens {@code file} for reading.
     *
     * @param threads     I/O threads, {@code >= 1}
     * @param direct      try O_DIRECT (falls back to buffered if refused; see {@link #mode()})
     * @param maxGap      largest gap in bytes read through to merge two reads, {@code >= 0}
     * @param maxRunBytes largest merged read; rounded up to a multiple of the block size
     * @param backend     how {@link ReadPlan}s are read
     * @throws FormatException if the file cannot be opened, or {@code URING} was asked for and the kernel
     *                         refuses it
     */
    public static IoEngine open(Path file, int threads, boolean direct, int maxGap, int maxRunBytes, Backend backend) {
        return open(file, threads, direct, maxGap, maxRunBytes, backend, 0);
    }

    /**
     * Like {@link #open(Path, int, boolean, int, int, Backend)}, told the step of the reads to come
     * ({@code readStep}: the bundle stride; 0 = unknown), which sizes the ring's bounce slots for direct
     * reads whose step is not block-aligned (quantized and Falcon bundles). {@code AUTO} takes io_uring
     * for those too (not for steps below a block, the small test models, where each read would take a
     * slot: the thread pool): with one slot per ring entry nothing waits for a slot (opt-6.7b at 50%, flash
     * {@code all}, 2026-12-04: q8 398 ms/token against 456 with the thread pool, q4 410 against 433).
     * Before the slots, with 32 chunks of 1 MiB, the thread pool was faster (Falcon-7B shape, 18176-byte
     * bundles: 673 ms/token through the ring against 416, 2026-12-03), and AUTO then took it.
     */
    public static IoEngine open(Path file, int threads, boolean direct, int maxGap, int maxRunBytes, Backend backend,
                                long readStep) {
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
            Uring ring = null;
            String refusal = null;
            if (backend == Backend.AUTO && isDirect && readStep > 0 && readStep < block) {
                refusal = "direct reads of " + readStep + "-byte bundles, below the " + block
                        + "-byte block, go to the thread pool: through the ring each would take a bounce slot";
            } else if (backend != Backend.THREADS) {
                try {
                    ring = Uring.open(file, isDirect, RING_ENTRIES);
                } catch (UnsupportedOperationException | IllegalStateException e) {
                    refusal = e.getMessage();
                    if (backend == Backend.URING) {
                        closeQuietly(ch);
                        throw new FormatException(file, "io_uring is not available: " + refusal,
                                "use --io-backend threads");
                    }
                }
            } else {
                refusal = "not asked for";
            }
            return new IoEngine(file, ch, isDirect, mode, size, block, threads, maxGap, run, ring, refusal, readStep);
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
        java.lang.management.ThreadMXBean mx = CPU;  // looked up once: each lookup allocates
        if (!mx.isThreadCpuTimeSupported()) {
            return 0;
        }
        long sum = 0;
        for (int i = 0; i < poolThreads.size(); i++) {
            sum += Math.max(0, mx.getThreadCpuTime(poolThreads.get(i).threadId()));
        }
        if (ringThread != null) {
            sum += Math.max(0, mx.getThreadCpuTime(ringThread.threadId()));
        }
        return sum + ringCpuNanos.get();
    }

    /** Heap bytes the I/O threads have allocated so far (HotSpot's per-thread counters), or 0. */
    public long threadAllocatedBytes() {
        if (!(CPU instanceof com.sun.management.ThreadMXBean mx)
                || !mx.isThreadAllocatedMemorySupported()) {
            return 0;
        }
        long sum = 0;
        for (int i = 0; i < poolThreads.size(); i++) {
            sum += Math.max(0, mx.getThreadAllocatedBytes(poolThreads.get(i).threadId()));
        }
        if (ringThread != null) {
            sum += Math.max(0, mx.getThreadAllocatedBytes(ringThread.threadId()));
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

    /** How read plans go: "io_uring", "threads", or "threads (io_uring: why it was refused)". */
    public String backend() {
        return ring != null ? "io_uring" : "threads" + ("not asked for".equals(ringRefusal) ? "" : " (io_uring: " + ringRefusal + ")");
    }

    /** True when {@link ReadPlan}s go through io_uring. */
    public boolean uring() {
        return ring != null;
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

    /**
     * The most bounce-buffer memory the engine may allocate, made on first use: one buffer per I/O thread,
     * and with io_uring in direct mode {@value #RING_CHUNKS} chunks for unaligned direct reads, plus
     * {@value #RING_SLOTS} bounce slots where the read step is not block-aligned (or unknown).
     */
    public long maxBufferBytes() {
        long perThread = (long) maxRunBytes + 2L * block;
        boolean slots = ring != null && direct && (readStep <= 0 || readStep % block != 0);
        return threads * perThread + (ring != null && direct ? RING_CHUNKS * perThread : 0)
                + (slots ? RING_SLOTS * slotBytes() : 0);
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
     * Reads in flight from one {@code submit}. Not thread-safe: one thread awaits it.
     */
    public abstract static sealed class Pending permits ThreadPending, PlanPending {
        long waitedNanos;
        long latencyNanos;

        /**
         * Waits until every read finished; idempotent.
         *
         * @throws FormatException   the file ended early or the OS reported an I/O error
         * @throws LlmflashException the calling thread was interrupted (its interrupt flag is set again)
         */
        public abstract void await();

        /** Time {@link #await()} blocked: the I/O not hidden behind the caller's work. */
        public long waitedNanos() {
            return waitedNanos;
        }

        /**
         * From submit to the last read's completion (planning included). With io_uring a completion is
         * seen when the engine next looks at the ring (at the end of a submit, or in {@code await}), so
         * reads that finished while nobody looked count until then.
         */
        public long latencyNanos() {
            return latencyNanos;
        }
    }

    private final class ThreadPending extends Pending {
        private final List<Future<?>> futures;
        private final AtomicBoolean failed;
        private final AtomicLong lastDone;
        private final long started;
        private boolean done;

        private ThreadPending(List<Future<?>> futures, AtomicBoolean failed, AtomicLong lastDone, long started) {
            this.futures = futures;
            this.failed = failed;
            this.lastDone = lastDone;
            this.started = started;
        }

        @Override
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
    }

    /** The {@link Pending} of a {@link ReadPlan}: one per plan, reused by each submit of it. */
    static final class PlanPending extends Pending {
        private final ReadPlan plan;

        private PlanPending(ReadPlan plan) {
            this.plan = plan;
        }

        @Override
        public void await() {
            ReadPlan p = plan;
            if (!p.inFlight) {
                return;
            }
            IoEngine e = p.engine;
            long t0 = System.nanoTime();
            try {
                if (p.threads != null) {
                    p.threads.await();
                } else {
                    e.awaitRing(p);
                }
            } finally {
                p.inFlight = false;
                long now = System.nanoTime();
                if (p.threads != null) {
                    latencyNanos = p.threads.latencyNanos();
                    p.threads = null;
                } else {
                    latencyNanos = (p.lastDone == 0 ? now : p.lastDone) - p.started;
                    e.stats.addNanos(latencyNanos);
                }
                waitedNanos = now - t0;
            }
            if (p.error != null) {
                String why = p.error;
                p.error = null;
                throw new FormatException(e.file, why, p.errorHint);
            }
        }
    }

    /**
     * A reusable list of reads into native memory, for the hot path: filling and submitting it allocates
     * nothing once its arrays have grown to the largest plan (with the io_uring backend). Each plan owns
     * one {@link Pending}; a plan is submitted again only after that was awaited. Not thread-safe.
     *
     * <p>Destinations are given as a native segment and an offset into it; their memory must stay alive
     * until the plan is awaited (the kernel writes it by address).
     */
    public static final class ReadPlan {
        private long[] offsets;
        private int[] lengths;
        private long[] addresses;
        private int n;
        private long[] keys = new long[0];
        private long[] scratchOffsets = new long[0];
        private int[] scratchLengths = new int[0];
        private long[] scratchAddresses = new long[0];
        private int[] scratchOrder = new int[0];
        /** Per ring request: bytes that must arrive, first read, reads, bounce chunk (-1: none), aligned file start. */
        private int[] requestBytes = new int[0];
        private int[] requestFirst = new int[0];
        private int[] requestCount = new int[0];
        private int[] requestChunk = new int[0];
        private long[] requestFrom = new long[0];
        private MemorySegment iovecs = MemorySegment.NULL;
        private final PlanPending pending = new PlanPending(this);
        private IoEngine engine;
        private Pending threads;
        private boolean inFlight;
        private int remaining;
        private long started;
        private long lastDone;
        private String error;
        private String errorHint;

        public ReadPlan() {
            this(64);
        }

        public ReadPlan(int capacity) {
            int c = Math.max(1, capacity);
            offsets = new long[c];
            lengths = new int[c];
            addresses = new long[c];
        }

        /** Forgets every read; the plan must not be in flight. */
        public void clear() {
            checkIdle();
            n = 0;
        }

        public int size() {
            return n;
        }

        /**
         * Adds a read of {@code length} bytes at file {@code offset} into {@code dst} at byte {@code at}.
         *
         * @throws IllegalArgumentException a negative offset or length, a destination too small, on the
         *                                  heap, or confined to one thread
         */
        public void add(long offset, int length, MemorySegment dst, long at) {
            checkIdle();
            if (offset < 0 || length < 0 || at < 0 || at > dst.byteSize() - length) {
                throw new IllegalArgumentException("read of " + length + " bytes at " + offset + " into byte " + at
                        + " of a " + dst.byteSize() + "-byte destination");
            }
            if (!dst.isNative() || !dst.isAccessibleBy(SOME_OTHER_THREAD)) {
                throw new IllegalArgumentException("a read plan's destinations must be native memory from a shared arena");
            }
            if (n == offsets.length) {
                int c = n * 2;
                offsets = Arrays.copyOf(offsets, c);
                lengths = Arrays.copyOf(lengths, c);
                addresses = Arrays.copyOf(addresses, c);
            }
            offsets[n] = offset;
            lengths[n] = length;
            addresses[n] = dst.address() + at;
            n++;
        }

        private void checkIdle() {
            if (inFlight) {
                throw new IllegalStateException("the read plan is in flight: await its Pending first");
            }
        }

        private List<Read> toReads() {
            List<Read> reads = new ArrayList<>(n);
            for (int i = 0; i < n; i++) {
                reads.add(new Read(offsets[i], lengths[i], MemorySegment.ofAddress(addresses[i]).reinterpret(lengths[i])));
            }
            return reads;
        }
    }

    /**
     * Starts every read of {@code plan} and returns its {@link Pending} at once. With io_uring (see
     * {@link Backend}) the plan is sorted by offset, touching reads become one scattered read
     * ({@code READV}, up to {@code maxRunBytes}), and the whole plan is handed to the kernel with one
     * system call (more only when the ring is full). A run that is not block-aligned in direct mode is
     * read, expanded to its aligned span, into one of {@value #RING_SLOTS} bounce slots (runs of up to
     * one read step; a wider single read: one of {@value #RING_CHUNKS} chunks) and copied out
     * when it completes (by the thread that reaps it). Without io_uring the plan goes to the thread pool
     * like {@link #submit(List)}.
     *
     * @throws FormatException       a read lies beyond the file size seen at open (nothing starts)
     * @throws IllegalStateException the plan is already in flight
     */
    public Pending submit(ReadPlan plan) {
        return submit(plan, false);
    }

    /**
     * Like {@link #submit(ReadPlan)}, for reads that are needed later (a look-ahead): with io_uring the
     * system call that issues them is made by the engine's submitter thread, so that the calling
     * thread goes on computing at once. Measured on opt-6.7b at 50% (2 cores): issuing a layer's
     * look-ahead on the compute thread cost ~20% of the token; issuing its own misses through the
     * submitter instead made the compute wait ~2 ms a layer for that thread to be scheduled. Without
     * io_uring the same as {@link #submit(ReadPlan)}.
     */
    public Pending submitAhead(ReadPlan plan) {
        return submit(plan, true);
    }

    private Pending submit(ReadPlan plan, boolean ahead) {
        plan.checkIdle();
        long t0 = System.nanoTime();
        int n = plan.n;
        long bytes = 0;
        for (int i = 0; i < n; i++) {
            long end = plan.offsets[i] + plan.lengths[i];
            if (end > size) {
                throw new FormatException(file, "read of " + plan.lengths[i] + " bytes at offset " + plan.offsets[i]
                        + " ends at byte " + end + " but the file has " + size + " bytes",
                        "the file is shorter than its header says; re-convert");
            }
            bytes += plan.lengths[i];
        }
        plan.engine = this;
        plan.started = t0;
        plan.lastDone = 0;
        plan.error = null;
        if (ring == null) {
            plan.threads = submit(plan.toReads());
            plan.inFlight = true;
            return plan.pending;
        }
        stats.addRequested(n, bytes);
        if (direct) {
            splitLongReads(plan);
        }
        sortByOffset(plan);
        plan.inFlight = true;
        synchronized (ringLock) {
            long c0 = cpuNow();
            try {
                submitRing(plan, ahead);
            } catch (RuntimeException e) {
                // A ring failure mid-plan: what was queued may still land; wait for it if the ring still answers.
                try {
                    awaitRingLocked(plan);
                } catch (RuntimeException again) {
                    e.addSuppressed(again);
                }
                plan.inFlight = false;
                throw e;
            } finally {
                ringCpuNanos.addAndGet(cpuNow() - c0);
            }
        }
        return plan.pending;
    }

    /**
     * Cuts every read longer than {@code maxRunBytes} into pieces of at most that (appended to the plan),
     * so that an unaligned one fits a bounce chunk; aligned pieces stay aligned. A no-op for the usual
     * plan of bundles.
     */
    private void splitLongReads(ReadPlan p) {
        int n = p.n;
        for (int i = 0; i < n; i++) {
            int len = p.lengths[i];
            if (len <= maxRunBytes) {
                continue;
            }
            p.lengths[i] = maxRunBytes;
            for (long done = maxRunBytes; done < len; done += maxRunBytes) {
                int piece = (int) Math.min(maxRunBytes, len - done);
                if (p.n == p.offsets.length) {
                    int c = p.n * 2;
                    p.offsets = Arrays.copyOf(p.offsets, c);
                    p.lengths = Arrays.copyOf(p.lengths, c);
                    p.addresses = Arrays.copyOf(p.addresses, c);
                }
                p.offsets[p.n] = p.offsets[i] + done;
                p.lengths[p.n] = piece;
                p.addresses[p.n] = p.addresses[i] + done;
                p.n++;
            }
        }
    }

    /** Orders the plan's reads by file offset (a no-op for the usual, already ordered plan). */
    private static void sortByOffset(ReadPlan p) {
        int n = p.n;
        boolean sorted = true;
        for (int i = 1; i < n && sorted; i++) {
            sorted = p.offsets[i] >= p.offsets[i - 1];
        }
        if (sorted) {
            return;
        }
        if (p.keys.length < n) {
            p.keys = new long[Math.max(n, p.keys.length * 2)];
        }
        long maxOffset = 0;
        for (int i = 0; i < n; i++) {
            maxOffset = Math.max(maxOffset, p.offsets[i]);
        }
        if (n > (1 << 20) || maxOffset >= (1L << 43)) {
            Integer[] perm = new Integer[n];
            for (int i = 0; i < n; i++) {
                perm[i] = i;
            }
            Arrays.sort(perm, Comparator.comparingLong(i -> p.offsets[i]));
            int[] order = new int[n];
            for (int i = 0; i < n; i++) {
                order[i] = perm[i];
            }
            permute(p, order);
            return;
        }
        for (int i = 0; i < n; i++) {
            p.keys[i] = p.offsets[i] << 20 | i;
        }
        Arrays.sort(p.keys, 0, n);
        growScratch(p, n);
        int[] order = p.scratchOrder;
        for (int i = 0; i < n; i++) {
            order[i] = (int) (p.keys[i] & ((1 << 20) - 1));
        }
        permute(p, order);
    }

    /** The plan's scratch for reordering, kept with it: a look-ahead plan is rarely in offset order. */
    private static void growScratch(ReadPlan p, int n) {
        if (p.scratchOffsets.length < n) {
            int c = Math.max(n, p.scratchOffsets.length * 2);
            p.scratchOffsets = new long[c];
            p.scratchLengths = new int[c];
            p.scratchAddresses = new long[c];
            p.scratchOrder = new int[c];
        }
    }

    /** Reorders the plan's reads: read i becomes the old read {@code order[i]}. */
    private static void permute(ReadPlan p, int[] order) {
        int n = p.n;
        growScratch(p, n);
        long[] o = p.scratchOffsets;
        int[] l = p.scratchLengths;
        long[] a = p.scratchAddresses;
        for (int i = 0; i < n; i++) {
            int j = order[i];
            o[i] = p.offsets[j];
            l[i] = p.lengths[j];
            a[i] = p.addresses[j];
        }
        System.arraycopy(o, 0, p.offsets, 0, n);
        System.arraycopy(l, 0, p.lengths, 0, n);
        System.arraycopy(a, 0, p.addresses, 0, n);
    }

    private void submitRing(ReadPlan p, boolean ahead) {
        checkRingAlive();
        int n = p.n;
        if (p.iovecs.byteSize() < 16L * n) {
            p.iovecs = Arena.ofAuto().allocate(16L * Math.max(n, p.iovecs.byteSize() / 8), 16);
        }
        if (p.requestBytes.length < n) {
            int c = Math.max(n, p.requestBytes.length * 2);
            p.requestBytes = new int[c];
            p.requestFirst = new int[c];
            p.requestCount = new int[c];
            p.requestChunk = new int[c];
            p.requestFrom = new long[c];
        }
        int id = takeSlot(p);
        long iov = p.iovecs.address();
        int requests = 0;
        // One guard count until every request is queued: completions reaped while making room must not
        // see the plan finished (and free its slot) half-way.
        p.remaining = 1;
        long[] off = p.offsets;
        int[] len = p.lengths;
        long[] addr = p.addresses;
        for (int i = 0; i < n; ) {
            if (len[i] == 0) {
                i++;
                continue;
            }
            int j = i + 1;
            long bytesInRun = len[i];
            boolean aligned = ((off[i] | len[i] | addr[i]) & (block - 1)) == 0;
            // A run that needs a bounce slot (unaligned, direct) stays within a slot's span, so that many
            // are in flight at once; aligned runs go up to maxRunBytes straight into their destinations.
            while (j < n && len[j] > 0 && off[j] == off[j - 1] + len[j - 1] && j - i < MAX_IOVECS) {
                boolean stillAligned = aligned && ((len[j] | addr[j]) & (block - 1)) == 0;
                long cap = !direct || stillAligned ? maxRunBytes : slotRunBytes();
                if (bytesInRun + len[j] > cap) {
                    break;
                }
                aligned = stillAligned;
                bytesInRun += len[j];
                j++;
            }
            long userData = (long) id << 32 | requests;
            p.requestFirst[requests] = i;
            p.requestCount[requests] = j - i;
            if (!direct || aligned) {
                roomForOne();
                p.requestChunk[requests] = -1;
                p.requestBytes[requests] = (int) bytesInRun;
                if (j - i == 1) {
                    ring.prepRead(off[i], addr[i], len[i], userData);
                } else {
                    for (int k = i; k < j; k++) {
                        p.iovecs.set(JAVA_LONG, 16L * k, addr[k]);
                        p.iovecs.set(JAVA_LONG, 16L * k + 8, len[k]);
                    }
                    ring.prepReadv(off[i], iov + 16L * i, j - i, userData);
                }
            } else {
                // Direct I/O needs block-aligned offset, length and address: read the aligned span into a
                // bounce chunk and copy the wanted bytes out when it completes.
                long end = off[j - 1] + len[j - 1];
                long from = alignDown(off[i], block);
                long span = alignUp(end, block) - from;
                int chunk = span <= slotBytes() ? takeSlotChunk() : takeChunk();
                roomForOne();
                p.requestChunk[requests] = chunk;
                p.requestFrom[requests] = from;
                p.requestBytes[requests] = (int) (end - from);
                ring.prepRead(from, chunkAddress(chunk), (int) span, userData);
            }
            requests++;
            p.remaining++;
            inFlight++;
            i = j;
        }
        if (--p.remaining == 0) {
            releaseSlot(id);
            p.lastDone = System.nanoTime();
            return;
        }
        if (ahead) {
            ringLock.notifyAll();   // the submitter (ringLoop) hands them to the kernel
        } else {
            check(ring.enter(0));
        }
        ring.reap(sink);
    }

    /**
     * Bounce chunks for unaligned direct reads through the ring wider than a slot (a single read
     * longer than the read step): fixed count, one run each, ids from {@link #RING_SLOTS} on.
     */
    static final int RING_CHUNKS = 4;
    /**
     * Bounce slots for the usual unaligned direct read through the ring (a bundle of a quantized or
     * Falcon bundle file): runs of up to one read step (the bundle stride given at open; else
     * {@value #SLOT_RUN_BYTES}) of wanted bytes, each in a slot of that rounded up plus one block, as
     * many as the ring has entries, so that a layer's misses and look-ahead are all in flight at once
     * (with a few 1 MiB chunks, or 256 slots, the compute thread waited for reads to come back
     * before it could submit the rest: opt-6.7b q8 at 50%). Ids 0 .. RING_SLOTS - 1.
     */
    static final int RING_SLOTS = RING_ENTRIES;
    static final int SLOT_RUN_BYTES = 32 << 10;
    /** Wanted bytes of a run read through a slot: the read step (one bundle) where known, else {@link #SLOT_RUN_BYTES}. */
    private final long slotRunBytes;
    /** The read step told at open (0: unknown). */
    private final long readStep;
    private MemorySegment slotArea;
    private int[] freeSlots;
    private int freeSlotCount;

    private long slotRunBytes() {
        return slotRunBytes;
    }

    /** Any run of up to {@link #slotRunBytes} wanted bytes, wherever it starts, spans at most this. */
    private long slotBytes() {
        return alignUp(slotRunBytes, block) + block;
    }

    /** Where bounce chunk or slot {@code id} starts. */
    private long chunkAddress(int id) {
        return id < RING_SLOTS ? slotArea.address() + (long) id * slotBytes()
                : chunks.address() + (long) (id - RING_SLOTS) * chunkBytes;
    }

    /** A free bounce slot, waiting for completions when all are in use. Under the ring lock. */
    private int takeSlotChunk() {
        if (slotArea == null) {
            slotArea = bounceArena.allocate(slotBytes() * RING_SLOTS, block);
            freeSlots = new int[RING_SLOTS];
            for (int c = 0; c < RING_SLOTS; c++) {
                freeSlots[c] = RING_SLOTS - 1 - c;
            }
            freeSlotCount = RING_SLOTS;
        }
        while (freeSlotCount == 0) {
            check(ring.enter(1));
            ring.reap(sink);
        }
        return freeSlots[--freeSlotCount];
    }
    private MemorySegment chunks;
    private long chunkBytes;
    private int[] freeChunks;
    private int freeChunkCount;
    /** Every byte of the address space: the target of copies out of bounce chunks, by address. */
    private static final MemorySegment EVERYWHERE = MemorySegment.NULL.reinterpret(Long.MAX_VALUE);

    /** A free bounce chunk, waiting for completions when all are in use. Under the ring lock. */
    private int takeChunk() {
        if (chunks == null) {
            chunkBytes = (long) maxRunBytes + 2L * block;
            chunks = bounceArena.allocate(chunkBytes * RING_CHUNKS, block);
            freeChunks = new int[RING_CHUNKS];
            for (int c = 0; c < RING_CHUNKS; c++) {
                freeChunks[c] = RING_CHUNKS - 1 - c;
            }
            freeChunkCount = RING_CHUNKS;
        }
        while (freeChunkCount == 0) {
            check(ring.enter(1));
            ring.reap(sink);
        }
        return RING_SLOTS + freeChunks[--freeChunkCount];
    }

    /** Makes room for one more request: a free submission entry, and a completion entry it can post to. */
    private void roomForOne() {
        while (ring.space() == 0 || inFlight >= ring.completionEntries()) {
            check(ring.enter(inFlight >= ring.completionEntries() ? 1 : 0));
            ring.reap(sink);
        }
    }

    private void check(int entered) {
        if (entered < 0) {
            throw new FormatException(file, "io_uring_enter failed (errno " + -entered + ")",
                    "run with --io-backend threads, and report this");
        }
    }

    private int takeSlot(ReadPlan p) {
        for (int i = 0; i < slots.length; i++) {
            if (slots[i] == null) {
                slots[i] = p.pending;
                return i;
            }
        }
        int i = slots.length;
        slots = Arrays.copyOf(slots, i * 2);
        slots[i] = p.pending;
        return i;
    }

    private void releaseSlot(int id) {
        slots[id] = null;
    }

    /** One completion from the ring: counts it against its plan. Called under the ring lock. */
    private void completed(long userData, int result) {
        int id = (int) (userData >>> 32);
        int request = (int) userData;
        ReadPlan p = slots[id].plan;
        inFlight--;
        int chunk = p.requestChunk[request];
        if (result < 0) {
            if (p.error == null) {
                p.error = "read failed (errno " + -result + ")";
                p.errorHint = "check the disk; if it persists, re-convert";
            }
        } else {
            stats.addIssued(result);
            if (result < p.requestBytes[request]) {
                if (p.error == null) {
                    p.error = "read of " + p.requestBytes[request] + " bytes got only " + result;
                    p.errorHint = RECONVERT;
                }
            } else if (chunk >= 0) {
                long base = chunkAddress(chunk) - p.requestFrom[request];
                for (int k = p.requestFirst[request], end = k + p.requestCount[request]; k < end; k++) {
                    MemorySegment.copy(EVERYWHERE, base + p.offsets[k], EVERYWHERE, p.addresses[k], p.lengths[k]);
                }
            }
        }
        if (chunk >= RING_SLOTS) {
            freeChunks[freeChunkCount++] = chunk - RING_SLOTS;
        } else if (chunk >= 0) {
            freeSlots[freeSlotCount++] = chunk;
        }
        if (--p.remaining == 0) {
            p.lastDone = System.nanoTime();
            releaseSlot(id);
        }
    }

    private void awaitRing(ReadPlan p) {
        synchronized (ringLock) {
            long c0 = cpuNow();
            try {
                awaitRingLocked(p);
            } finally {
                ringCpuNanos.addAndGet(cpuNow() - c0);
            }
        }
    }

    private void awaitRingLocked(ReadPlan p) {
        ring.reap(sink);
        while (p.remaining > 0) {
            // wait for as many completions as this plan still needs (others' count too: loop)
            int r = ring.enter(Math.max(1, Math.min(p.remaining, inFlight)));
            if (r < 0) {
                throw new FormatException(file, "io_uring_enter failed while waiting (errno " + -r + ")",
                        "run with --io-backend threads, and report this");
            }
            ring.reap(sink);
        }
    }

    private static long cpuNow() {
        return CPU.isCurrentThreadCpuTimeSupported() ? CPU.getCurrentThreadCpuTime() : 0;
    }

    private static final java.lang.management.ThreadMXBean CPU = java.lang.management.ManagementFactory.getThreadMXBean();

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
        return new ThreadPending(futures, failed, lastDone, t0);
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
        if (ring != null) {
            synchronized (ringLock) {
                ringClosing = true;
                ringLock.notifyAll();
            }
            try {
                ringThread.join(10_000);
            } catch (InterruptedException e) {
                Thread.currentThread().interrupt();
            }
            synchronized (ringLock) {
                ring.close();
            }
        }
        bounceArena.close();
    }
}
