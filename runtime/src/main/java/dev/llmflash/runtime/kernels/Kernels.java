package dev.llmflash.runtime.kernels;

import dev.llmflash.formats.tensor.DType;

import java.lang.foreign.MemorySegment;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.atomic.AtomicInteger;

/**
 * The matrix kernels the forward passes call, with the parallelism they may use. Weight matrices are
 * row-major {@code rows x cols} in their stored dtype (F32, F16 or BF16, little-endian, any byte
 * alignment: slices of memory-mapped files), exactly as HF stores a Linear weight {@code [out, in]};
 * activations are f32 arrays. The arithmetic is {@link VectorKernels}; this class splits rows over
 * threads.
 * <p>Legend: r = rows (output features), c = cols (input features), n = number of input vectors.
 * <p>Parallelism: {@code threads} is the total number of threads that compute, the caller included:
 * the object owns {@code threads - 1} daemon platform threads ({@code llmflash-kernels-N-k}) and the
 * calling thread computes too. Rows are cut into contiguous chunks that the threads claim as they
 * come (see {@link WorkerTeam}). Problems smaller than {@link #PARALLEL_MIN_ELEMENTS} multiply-adds
 * run on the caller alone: below that a fork/join hand-off costs more than it saves (measured on a
 * 2-core AMD EPYC, see docs/BENCHMARKS.md).
 * <p>Ownership and thread-safety: one caller at a time (the forward pass); a concurrent or nested call
 * throws {@link IllegalStateException}. The weights segment must stay open during a call and be
 * readable from the pool's threads (a shared, global or automatic arena; a confined segment is
 * rejected when a call would split). Close when done (stops the threads; the object is then
 * unusable).
 */
public final class Kernels implements AutoCloseable {

    /**
     * Multiply-adds (r * c * n) below which a call runs on the calling thread only. Measured with 2
     * threads (f16 matvec, calls back to back and 3 us apart): a split costs ~0.5 us, 16K
     * multiply-adds (64 x 256) lose a little, 32K (128 x 256, ~2.3 us on one core) break even, and
     * a d=256 model's 256 x 256 (64K) and 256 x 1024 (256K) matrices gain 1.0-1.6x.
     */
    public static final long PARALLEL_MIN_ELEMENTS = 32 * 1024;

    /**
     * Rows are cut into this many chunks per thread, claimed dynamically: a thread that the OS does
     * not run in time (a busy machine) leaves its share to the others instead of holding up the call.
     */
    static final int CHUNKS_PER_THREAD = 4;

    private static final AtomicInteger INSTANCES = new AtomicInteger();

    private final int threads;
    private final long parallelMinElements;
    private final WorkerTeam team;
    /** matmul's per-thread f32 copy of 4 weight rows; participant k uses scratch[k] (one call at a time). */
    private final float[][] scratch;
    /** matvec's x after {@link VectorKernels#splitPairs} (16-bit weights). */
    private float[] xs = new float[0];
    private volatile boolean closed;

    public Kernels(int threads) {
        this(threads, PARALLEL_MIN_ELEMENTS);
    }

    /** As {@link #Kernels(int)} with another serial threshold (tests use 0 to split tiny problems). */
    Kernels(int threads, long parallelMinElements) {
        if (threads < 1) {
            throw new IllegalArgumentException("threads must be >= 1, got " + threads);
        }
        this.threads = threads;
        this.parallelMinElements = parallelMinElements;
        this.team = new WorkerTeam(threads, "llmflash-kernels-" + INSTANCES.incrementAndGet());
        this.scratch = new float[threads][];
    }

    public int threads() {
        return threads;
    }

    /** y[i] = sum_j W[i, j] * x[j] for i in [0, r). {@code x.length >= c}, {@code y.length >= r}. */
    public void matvec(MemorySegment w, DType dt, int r, int c, float[] x, float[] y) {
        checkShapes(w, dt, r, c, x, c, y, r);
        float[] xs = dt == DType.F32 ? null : VectorKernels.splitPairs(x, c, splitInput(c));
        if (threads == 1 || (long) r * c < parallelMinElements) {
            VectorKernels.matvecRows(w, dt, c, x, xs, y, 0, r);
            return;
        }
        checkShared(w);
        team.run((k, chunks, who) -> VectorKernels.matvecRows(w, dt, c, x, xs, y,
                lo(r, k, chunks), lo(r, k + 1, chunks)), chunks(r));
    }

    /**
     * Y = X W^T for n input vectors: X is n x c row-major, Y is n x r row-major,
     * Y[t, i] = sum_j W[i, j] * X[t, j]. Reads each weight row once for all n vectors (prompt
     * processing, perplexity).
     */
    public void matmul(MemorySegment w, DType dt, int r, int c, float[] x, int n, float[] y) {
        if (n < 0) {
            throw new IllegalArgumentException("n must be >= 0, got " + n);
        }
        checkShapes(w, dt, r, c, x, (long) n * c, y, (long) n * r);
        if (n == 0) {
            return;
        }
        int need = 4 * c;
        if (threads == 1 || (long) r * c * n < parallelMinElements) {
            VectorKernels.matmulRows(w, dt, r, c, x, n, y, 0, r, scratch(0, need));
            return;
        }
        checkShared(w);
        for (int k = 0; k < threads; k++) {
            scratch(k, need);
        }
        team.run((k, chunks, who) -> VectorKernels.matmulRows(w, dt, r, c, x, n, y,
                lo(r, k, chunks), lo(r, k + 1, chunks), scratch[who]), chunks(r));
    }

    /** out[0..c) = W[row, 0..c) as f32 (embedding lookup); exact. */
    public void row(MemorySegment w, DType dt, int row, int c, float[] out) {
        if (row < 0) {
            throw new IllegalArgumentException("row must be >= 0, got " + row);
        }
        checkShapes(w, dt, row + 1L, c, out, 0, out, c);
        VectorKernels.toF32(w, dt, (long) row * c, out, 0, c);
    }

    @Override
    public void close() {
        closed = true;
        team.close();
    }

    /** Chunks for r rows: {@link #CHUNKS_PER_THREAD} per thread, at most one per row. */
    private int chunks(int r) {
        return Math.max(1, Math.min(r, threads * CHUNKS_PER_THREAD));
    }

    /** First row of chunk {@code part} of {@code parts}: contiguous, sizes differ by at most one. */
    static int lo(int r, int part, int parts) {
        return (int) ((long) r * part / parts);
    }

    /** The pool's threads (tests). */
    List<Thread> workerThreads() {
        List<Thread> list = new ArrayList<>();
        for (int k = 1; k < threads; k++) {
            list.add(team.worker(k));
        }
        return list;
    }

    private void checkShared(MemorySegment w) {
        if (!w.isAccessibleBy(team.worker(1))) {
            throw new IllegalArgumentException("the weights segment is confined to one thread; map it with"
                    + " a shared arena (Arena.ofShared()) so the kernel threads can read it");
        }
    }

    private float[] splitInput(int c) {
        if (xs.length < c) {
            xs = new float[c];
        }
        return xs;
    }

    private float[] scratch(int part, int need) {
        float[] s = scratch[part];
        if (s == null || s.length < need) {
            s = new float[need];
            scratch[part] = s;
        }
        return s;
    }

    private void checkShapes(MemorySegment w, DType dt, long r, int c, float[] x, long needX,
                             float[] y, long needY) {
        if (closed) {
            throw new IllegalStateException("kernels already closed");
        }
        if (!dt.isComputeType()) {
            throw new IllegalArgumentException("kernels compute on F32, F16, BF16; got " + dt);
        }
        if (r < 0 || c < 0) {
            throw new IllegalArgumentException("negative shape " + r + " x " + c);
        }
        long bytes = r * c * dt.bytes();
        if (w.byteSize() < bytes) {
            throw new IllegalArgumentException("weights hold " + w.byteSize() + " bytes, a " + r + " x " + c
                    + " " + dt + " matrix needs " + bytes);
        }
        if (x.length < needX) {
            throw new IllegalArgumentException("input holds " + x.length + " floats, needs " + needX);
        }
        if (y.length < needY) {
            throw new IllegalArgumentException("output holds " + y.length + " floats, needs " + needY);
        }
    }
}
