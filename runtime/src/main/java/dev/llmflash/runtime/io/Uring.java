package dev.llmflash.runtime.io;

import java.lang.foreign.Arena;
import java.lang.foreign.FunctionDescriptor;
import java.lang.foreign.Linker;
import java.lang.foreign.MemoryLayout;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.StructLayout;
import java.lang.foreign.SymbolLookup;
import java.lang.invoke.MethodHandle;
import java.lang.invoke.VarHandle;
import java.nio.file.Path;
import java.util.Locale;

import static java.lang.foreign.ValueLayout.ADDRESS;
import static java.lang.foreign.ValueLayout.JAVA_INT;
import static java.lang.foreign.ValueLayout.JAVA_LONG;

/**
 * One Linux io_uring instance, driven through the FFM API with raw system calls (no liburing): a
 * submission ring of 64-byte entries and a completion ring of 16-byte entries shared with the kernel.
 * One system call submits a whole batch of reads and, when asked, waits for completions: the reads cost
 * the kernel's block-layer work and nothing per read in Java threads, hand-offs or objects.
 *
 * <p>Only what the I/O engine needs: {@code IORING_OP_READ} and {@code IORING_OP_READV} on one file
 * descriptor opened here (with {@code O_DIRECT} when asked). Not thread-safe: the {@link IoEngine}
 * serializes every call under its lock. Memory ordering follows the kernel's ABI: entries are written,
 * then the submission tail is published with a release store; the completion tail is read with an
 * acquire load and the head given back with a release store.
 */
final class Uring implements AutoCloseable {

    private static final int SYS_IO_URING_SETUP = 425;   // the same number on every architecture
    private static final int SYS_IO_URING_ENTER = 426;
    private static final int IORING_ENTER_GETEVENTS = 1;
    private static final int IORING_FEAT_SINGLE_MMAP = 1;
    /** Completions wait for this thread's next entry into the kernel instead of interrupting it (5.19+). */
    private static final int IORING_SETUP_COOP_TASKRUN = 1 << 8;
    private static final int EINVAL = 22;
    private static final long IORING_OFF_SQ_RING = 0L;
    private static final long IORING_OFF_CQ_RING = 0x8000000L;
    private static final long IORING_OFF_SQES = 0x10000000L;
    static final byte IORING_OP_READV = 1;
    static final byte IORING_OP_READ = 22;
    private static final int PROT_READ_WRITE = 0x1 | 0x2;
    private static final int MAP_SHARED_POPULATE = 0x01 | 0x8000;
    private static final int O_CLOEXEC = 0x80000;
    private static final int EINTR = 4;
    private static final int SQE = 64;
    private static final int CQE = 16;

    private static final Linker LINKER = Linker.nativeLinker();
    private static final StructLayout CAPTURE = Linker.Option.captureStateLayout();
    private static final VarHandle ERRNO = CAPTURE.varHandle(MemoryLayout.PathElement.groupElement("errno"));
    private static final VarHandle INT_ACQ_REL = JAVA_INT.varHandle();
    private static final MethodHandle SYSCALL;
    private static final MethodHandle MMAP;
    private static final MethodHandle MUNMAP;
    private static final MethodHandle OPEN;
    private static final MethodHandle CLOSE;
    private static final int O_DIRECT;
    private static final String UNAVAILABLE;

    static {
        MethodHandle sys = null, mmap = null, munmap = null, open = null, close = null;
        String why = null;
        String os = System.getProperty("os.name", "").toLowerCase(Locale.ROOT);
        String arch = System.getProperty("os.arch", "").toLowerCase(Locale.ROOT);
        int direct = arch.equals("amd64") || arch.equals("x86_64") ? 0x4000 : arch.equals("aarch64") ? 0x10000 : 0;
        if (!os.contains("linux") || direct == 0) {
            why = "io_uring needs Linux on x86_64 or aarch64 (this is " + os + "/" + arch + ")";
        } else {
            try {
                SymbolLookup libc = LINKER.defaultLookup();
                // long syscall(long number, ...): every variadic argument passed as a long.
                sys = LINKER.downcallHandle(libc.find("syscall").orElseThrow(),
                        FunctionDescriptor.of(JAVA_LONG, JAVA_LONG, JAVA_LONG, JAVA_LONG, JAVA_LONG, JAVA_LONG, JAVA_LONG, JAVA_LONG),
                        Linker.Option.firstVariadicArg(1), Linker.Option.captureCallState("errno"));
                mmap = LINKER.downcallHandle(libc.find("mmap").orElseThrow(),
                        FunctionDescriptor.of(JAVA_LONG, JAVA_LONG, JAVA_LONG, JAVA_INT, JAVA_INT, JAVA_INT, JAVA_LONG),
                        Linker.Option.captureCallState("errno"));
                munmap = LINKER.downcallHandle(libc.find("munmap").orElseThrow(),
                        FunctionDescriptor.of(JAVA_INT, JAVA_LONG, JAVA_LONG));
                open = LINKER.downcallHandle(libc.find("open").orElseThrow(),
                        FunctionDescriptor.of(JAVA_INT, ADDRESS, JAVA_INT, JAVA_INT),
                        Linker.Option.firstVariadicArg(2), Linker.Option.captureCallState("errno"));
                close = LINKER.downcallHandle(libc.find("close").orElseThrow(),
                        FunctionDescriptor.of(JAVA_INT, JAVA_INT));
            } catch (RuntimeException | LinkageError e) {
                why = "io_uring calls could not be linked: " + e;
            }
        }
        SYSCALL = sys;
        MMAP = mmap;
        MUNMAP = munmap;
        OPEN = open;
        CLOSE = close;
        O_DIRECT = direct;
        UNAVAILABLE = why;
    }

    private final Arena arena = Arena.ofShared();
    private final MemorySegment capture = arena.allocate(CAPTURE);
    private final int ringFd;
    private final int fileFd;
    private final int entries;
    private final long sqMapBytes, cqMapBytes, sqeMapBytes;
    private final MemorySegment sqRing, cqRing, sqes;
    private final long sqHead, sqTail, cqHead, cqTail, cqes;
    private final int sqMask, cqMask, cqEntries;
    /** Entries written but not yet handed to the kernel. */
    private int queued;
    private int localTail;
    private boolean closed;

    private Uring(Path file, boolean direct, int wanted) {
        if (UNAVAILABLE != null) {
            throw new UnsupportedOperationException(UNAVAILABLE);
        }
        MemorySegment params = arena.allocate(120, 8);
        // COOP_TASKRUN: a completed read is posted when the submitting thread next enters the kernel
        // (it waits through io_uring_enter anyway) rather than by an inter-processor interrupt into
        // whatever it is computing; on a VM each such interrupt is a VM exit.
        params.set(JAVA_INT, 8, IORING_SETUP_COOP_TASKRUN);
        long fd = syscall(SYS_IO_URING_SETUP, wanted, params.address(), 0, 0, 0, 0);
        if (fd < 0 && errno() == EINVAL) {
            params.fill((byte) 0);
            fd = syscall(SYS_IO_URING_SETUP, wanted, params.address(), 0, 0, 0, 0);
        }
        if (fd < 0) {
            int errno = errno();
            arena.close();
            throw new UnsupportedOperationException("io_uring_setup refused (errno " + errno + ")");
        }
        ringFd = (int) fd;
        entries = params.get(JAVA_INT, 0);
        cqEntries = params.get(JAVA_INT, 4);
        int features = params.get(JAVA_INT, 20);
        int sqOffHead = params.get(JAVA_INT, 40), sqOffTail = params.get(JAVA_INT, 44), sqOffMask = params.get(JAVA_INT, 48);
        int sqOffArray = params.get(JAVA_INT, 64);
        int cqOffHead = params.get(JAVA_INT, 80), cqOffTail = params.get(JAVA_INT, 84), cqOffMask = params.get(JAVA_INT, 88);
        int cqOffCqes = params.get(JAVA_INT, 100);
        long sqBytes = sqOffArray + 4L * entries;
        long cqBytes = cqOffCqes + (long) CQE * cqEntries;
        boolean single = (features & IORING_FEAT_SINGLE_MMAP) != 0;
        if (single) {
            sqBytes = cqBytes = Math.max(sqBytes, cqBytes);
        }
        long sq = 0, cq = 0, se = 0;
        int fileFd = -1;
        try {
            sq = map(sqBytes, IORING_OFF_SQ_RING);
            cq = single ? sq : map(cqBytes, IORING_OFF_CQ_RING);
            se = map((long) SQE * entries, IORING_OFF_SQES);
            fileFd = openFile(file, direct);
        } catch (RuntimeException e) {
            if (se != 0) {
                unmap(se, (long) SQE * entries);
            }
            if (cq != 0 && !single) {
                unmap(cq, cqBytes);
            }
            if (sq != 0) {
                unmap(sq, sqBytes);
            }
            closeFd(ringFd);
            arena.close();
            throw e;
        }
        this.fileFd = fileFd;
        sqMapBytes = sqBytes;
        cqMapBytes = single ? 0 : cqBytes;
        sqeMapBytes = (long) SQE * entries;
        sqRing = MemorySegment.ofAddress(sq).reinterpret(sqBytes);
        cqRing = single ? sqRing : MemorySegment.ofAddress(cq).reinterpret(cqBytes);
        sqes = MemorySegment.ofAddress(se).reinterpret(sqeMapBytes);
        sqHead = sqOffHead;
        sqTail = sqOffTail;
        sqMask = sqRing.get(JAVA_INT, sqOffMask);
        cqHead = cqOffHead;
        cqTail = cqOffTail;
        cqMask = cqRing.get(JAVA_INT, cqOffMask);
        cqes = cqOffCqes;
        // Entry i of the ring always names SQE i: the array is the identity, written once.
        for (int i = 0; i < entries; i++) {
            sqRing.set(JAVA_INT, sqOffArray + 4L * i, i);
        }
        localTail = sqRing.get(JAVA_INT, sqTail);
    }

    /**
     * Opens a ring of about {@code entries} entries on {@code file}.
     *
     * @throws UnsupportedOperationException io_uring is not available here (not Linux, the kernel or a
     *                                       seccomp filter refuses it); the message says why
     * @throws IllegalStateException         the file cannot be opened
     */
    static Uring open(Path file, boolean direct, int entries) {
        return new Uring(file, direct, entries);
    }

    /** Why io_uring cannot be used in this JVM, or null when it may be tried. */
    static String unavailable() {
        return UNAVAILABLE;
    }

    /** Submission entries: the most requests that can be queued before {@link #submit}. */
    int entries() {
        return entries;
    }

    /** Completion entries: the most requests that may be in flight at once. */
    int completionEntries() {
        return cqEntries;
    }

    /** Free submission entries. */
    int space() {
        int head = (int) INT_ACQ_REL.getAcquire(sqRing, sqHead);
        return entries - (localTail - head);
    }

    /** Queues a read of {@code length} bytes at {@code offset} into native memory at {@code address}. */
    void prepRead(long offset, long address, int length, long userData) {
        prep(IORING_OP_READ, offset, address, length, userData);
    }

    /** Queues a scattered read of {@code count} iovecs (native array at {@code iovecs}) from {@code offset}. */
    void prepReadv(long offset, long iovecs, int count, long userData) {
        prep(IORING_OP_READV, offset, iovecs, count, userData);
    }

    private void prep(byte op, long offset, long addr, int len, long userData) {
        int idx = localTail & sqMask;
        long base = (long) idx * SQE;
        for (int i = 0; i < SQE; i += 8) {
            sqes.set(JAVA_LONG, base + i, 0L);
        }
        sqes.set(java.lang.foreign.ValueLayout.JAVA_BYTE, base, op);
        sqes.set(JAVA_INT, base + 4, fileFd);
        sqes.set(JAVA_LONG, base + 8, offset);
        sqes.set(JAVA_LONG, base + 16, addr);
        sqes.set(JAVA_INT, base + 24, len);
        sqes.set(JAVA_LONG, base + 32, userData);
        localTail++;
        queued++;
    }

    /** Entries queued and not yet submitted. */
    int queued() {
        return queued;
    }

    /**
     * Hands the queued entries to the kernel and, when {@code waitFor > 0}, waits until at least that
     * many completions are posted.
     *
     * @return the system call's result (entries consumed), or the negated errno
     */
    int enter(int waitFor) {
        int toSubmit = publish();
        while (true) {
            long r = syscall(SYS_IO_URING_ENTER, ringFd, toSubmit, waitFor, waitFor > 0 ? IORING_ENTER_GETEVENTS : 0, 0, 0);
            if (r >= 0) {
                queued -= (int) Math.min(r, toSubmit);
                return (int) r;
            }
            int errno = errno();
            if (errno != EINTR) {
                return -errno;
            }
        }
    }

    /** Makes every queued entry visible to the kernel; returns how many are queued. Under the owner's lock. */
    int publish() {
        INT_ACQ_REL.setRelease(sqRing, sqTail, localTail);
        return queued;
    }

    /**
     * Submits up to {@code toSubmit} published entries without waiting. Unlike the other methods this
     * may run outside the owner's lock, concurrently with {@link #prepRead} (the kernel reads only up
     * to the published tail) and with another thread's {@link #enter}: {@code errnoCapture} is the
     * calling thread's own (from {@link #newCapture}). Report the result with {@link #consumed} under
     * the lock.
     *
     * @return entries the kernel consumed, or the negated errno
     */
    int submitOnly(int toSubmit, MemorySegment errnoCapture) {
        while (true) {
            long r;
            try {
                r = (long) SYSCALL.invokeExact(errnoCapture, (long) SYS_IO_URING_ENTER, (long) ringFd, (long) toSubmit,
                        0L, 0L, 0L, 0L);
            } catch (Throwable t) {
                throw new IllegalStateException("io_uring system call failed: " + t, t);
            }
            if (r >= 0) {
                return (int) r;
            }
            int errno = (int) ERRNO.get(errnoCapture, 0L);
            if (errno != EINTR) {
                return -errno;
            }
        }
    }

    /** Records that {@code submitted} queued entries were consumed by {@link #submitOnly}. Under the lock. */
    void consumed(int submitted) {
        queued -= Math.min(Math.max(submitted, 0), queued);
    }

    /** A capture segment for {@link #submitOnly} on another thread, freed with the ring. */
    MemorySegment newCapture() {
        return arena.allocate(CAPTURE);
    }

    /** Receives one completion. */
    interface Completion {
        void complete(long userData, int result);
    }

    /** Hands every posted completion to {@code sink}; returns how many. */
    int reap(Completion sink) {
        int head = cqRing.get(JAVA_INT, cqHead);
        int tail = (int) INT_ACQ_REL.getAcquire(cqRing, cqTail);
        int n = 0;
        while (head != tail) {
            long base = cqes + (long) (head & cqMask) * CQE;
            long userData = cqRing.get(JAVA_LONG, base);
            int res = cqRing.get(JAVA_INT, base + 8);
            head++;
            n++;
            sink.complete(userData, res);
        }
        INT_ACQ_REL.setRelease(cqRing, cqHead, head);
        return n;
    }

    @Override
    public void close() {
        if (closed) {
            return;
        }
        closed = true;
        unmap(sqes.address(), sqeMapBytes);
        if (cqMapBytes != 0) {
            unmap(cqRing.address(), cqMapBytes);
        }
        unmap(sqRing.address(), sqMapBytes);
        closeFd(fileFd);
        closeFd(ringFd);
        arena.close();
    }

    private long syscall(long nr, long a, long b, long c, long d, long e, long f) {
        try {
            return (long) SYSCALL.invokeExact(capture, nr, a, b, c, d, e, f);
        } catch (Throwable t) {
            throw new IllegalStateException("io_uring system call failed: " + t, t);
        }
    }

    private int errno() {
        return (int) ERRNO.get(capture, 0L);
    }

    private long map(long bytes, long offset) {
        long addr;
        try {
            addr = (long) MMAP.invokeExact(capture, 0L, bytes, PROT_READ_WRITE, MAP_SHARED_POPULATE, ringFd, offset);
        } catch (Throwable t) {
            throw new IllegalStateException("mmap of the io_uring rings failed: " + t, t);
        }
        if (addr == -1L) {
            throw new UnsupportedOperationException("mmap of the io_uring rings refused (errno " + errno() + ")");
        }
        return addr;
    }

    private static void unmap(long addr, long bytes) {
        try {
            int ignored = (int) MUNMAP.invokeExact(addr, bytes);
        } catch (Throwable t) {
            throw new IllegalStateException("munmap failed: " + t, t);
        }
    }

    private int openFile(Path file, boolean direct) {
        int fd;
        try (Arena a = Arena.ofConfined()) {
            MemorySegment name = a.allocateFrom(file.toAbsolutePath().toString());
            fd = (int) OPEN.invokeExact(capture, name, (direct ? O_DIRECT : 0) | O_CLOEXEC, 0);
        } catch (Throwable t) {
            throw new IllegalStateException("open failed: " + t, t);
        }
        if (fd < 0) {
            throw new IllegalStateException("cannot open " + file + " (errno " + errno() + ")");
        }
        return fd;
    }

    private static void closeFd(int fd) {
        if (fd >= 0) {
            try {
                int ignored = (int) CLOSE.invokeExact(fd);
            } catch (Throwable t) {
                throw new IllegalStateException("close failed: " + t, t);
            }
        }
    }
}
