package dev.llmflash.runtime.kernels;

import dev.llmflash.formats.tensor.DType;

import java.lang.foreign.MemorySegment;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import java.util.concurrent.atomic.AtomicInteger;

/**
 * The matrix kernels the forward passes call, with the parallelism they may use. Weight matrices are
 * row-major {@code rows x cols} in their stored dtype (F32, F16 or BF16, little-endian, any byte
 * alignment: slices of memory-mapped files), exactly as HF stores a Linear weight {@code [out, in]};
 * activations are f32 arrays. The arithmetic is {@link VectorKernels}; this class splits the work over
 * threads.
 * <p>Row strides: the {@code ...Strided} and {@code ...TransposedAcc} kernels take rows that start
 * every {@code strideBytes} bytes ({@code >= c * dtype bytes}; rows of c elements, padding between
 * them never read). That is how the flash bundles store the FFN neuron-major: bundle i = neuron i's
 * up row (d elements) then its down column (d elements) then padding, so the up projection is
 * {@link #matvecStrided} on the segment and the down projection is {@link #matvecTransposedAcc} on
 * the segment sliced at byte d * bytes, both with the bundle size as stride.
 * <p>Legend: r = rows (output features; FFN: neurons), c = cols (input features; FFN: d), n = number
 * of input vectors, h = per-row weights of the transposed kernels (FFN: activations after ReLU).
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

    /**
     * The transposed kernels split only from this many times {@link #PARALLEL_MIN_ELEMENTS}
     * multiply-adds on: their per-thread partial sums and the reduction make a split cost more.
     */
    static final int TRANSPOSED_SERIAL_FACTOR = 4;

    /**
     * {@link #matmulTransposedAcc} converts each active row once for all vectors only when on average
     * at least this many vectors use an active row; below, one fused single-vector pass per vector
     * ({@link #matvecTransposedAcc}) reads its rows again but is faster (measured: see there).
     */
    static final int SHARED_MIN = 2;

    /** Column ranges of {@link #matmulTransposedAcc} start at multiples of this (whole vector blocks). */
    static final int COLUMN_BLOCK = 64;

    private static final AtomicInteger INSTANCES = new AtomicInteger();

    private final int threads;
    private final long parallelMinElements;
    private final WorkerTeam team;
    /**
     * Participant k's scratch (one call at a time): matmul's f32 copy of 4 weight rows, the transposed
     * kernels' partial sums or converted row slices.
     */
    private final float[][] scratch;
    /** matvec's x after {@link VectorKernels#splitPairs} (16-bit weights). */
    private float[] xs = new float[0];
    /** The transposed kernels' active rows (indices) and, for one vector, their h values. */
    private int[] active = new int[0];
    private float[] activeH = new float[0];
    /** Per participant, in one transposed call: its partial sums were zeroed / it met an Inf or NaN. */
    private final boolean[] touched;
    private final boolean[] nonFinite;
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
        this.touched = new boolean[threads];
        this.nonFinite = new boolean[threads];
    }

    public int threads() {
        return threads;
    }

    /** y[i] = sum_j W[i, j] * x[j] for i in [0, r). {@code x.length >= c}, {@code y.length >= r}. */
    public void matvec(MemorySegment w, DType dt, int r, int c, float[] x, float[] y) {
        matvecStrided(w, dt, r, c, (long) c * dt.bytes(), x, y);
    }

    /**
     * y[i] = sum_j W[i, j] * x[j] for i in [0, r): r rows of c elements, row i starting at byte
     * {@code i * strideBytes} of w ({@code strideBytes >= c * dt.bytes()}; rows may start at any byte).
     * {@link #matvec} is the case {@code strideBytes = c * dt.bytes()}; a larger stride reads rows of a
     * padded layout such as the flash bundles (up row, down column, padding per neuron) in place.
     */
    public void matvecStrided(MemorySegment w, DType dt, int r, int c, long strideBytes, float[] x, float[] y) {
        checkStrided(w, dt, r, c, strideBytes);
        checkArrays(x, c, y, r);
        float[] xs = dt == DType.F32 ? null : VectorKernels.splitPairs(x, c, splitInput(c));
        if (threads == 1 || (long) r * c < parallelMinElements) {
            VectorKernels.matvecRows(w, dt, c, strideBytes, x, xs, y, 0, r);
            return;
        }
        checkShared(w);
        team.run((k, chunks, who) -> VectorKernels.matvecRows(w, dt, c, strideBytes, x, xs, y,
                lo(r, k, chunks), lo(r, k + 1, chunks)), chunks(r));
    }

    /**
     * Y = X W^T for n input vectors: X is n x c row-major, Y is n x r row-major,
     * Y[t, i] = sum_j W[i, j] * X[t, j]. Reads each weight row once for all n vectors (prompt
     * processing, perplexity).
     */
    public void matmul(MemorySegment w, DType dt, int r, int c, float[] x, int n, float[] y) {
        matmulStrided(w, dt, r, c, (long) c * dt.bytes(), x, n, y);
    }

    /**
     * The n-vector form of {@link #matvecStrided}: Y[t, i] = sum_j W[i, j] * X[t, j] with X n x c and
     * Y n x r row-major, rows of W at {@code strideBytes}. Each weight row is converted to f32 once
     * and used for all n vectors.
     */
    public void matmulStrided(MemorySegment w, DType dt, int r, int c, long strideBytes, float[] x, int n,
                              float[] y) {
        checkCount(n);
        checkStrided(w, dt, r, c, strideBytes);
        checkArrays(x, (long) n * c, y, (long) n * r);
        if (n == 0) {
            return;
        }
        int need = 4 * c;
        if (threads == 1 || (long) r * c * n < parallelMinElements) {
            VectorKernels.matmulRows(w, dt, r, c, strideBytes, x, n, y, 0, r, scratch(0, need));
            return;
        }
        checkShared(w);
        for (int k = 0; k < threads; k++) {
            scratch(k, need);
        }
        team.run((k, chunks, who) -> VectorKernels.matmulRows(w, dt, r, c, strideBytes, x, n, y,
                lo(r, k, chunks), lo(r, k + 1, chunks), scratch[who]), chunks(r));
    }

    /**
     * Accumulates the rows of W weighted by h: y[j] += sum_{i : h[i] != 0} h[i] * W[i, j] for j in
     * [0, c), rows as in {@link #matvecStrided} ({@code h.length >= r}, {@code y.length >= c}). This
     * is the FFN down projection stored neuron-major (row i = neuron i's down column): rows with
     * h[i] == 0 (ReLU sparsity) are skipped and not even read, and a NaN h[i] counts as non-zero.
     * <p>Work split: the active rows are cut into chunks that the threads claim; each thread sums its
     * rows into a private c-vector and the caller adds those into y at the end. The alternative, each
     * thread owning a column range of y and reading its slice of every active row, needs no reduction
     * but was slower or no faster (f16, d = 4096, 16384 neurons at 16 KB stride, 2 threads: with 4
     * column ranges per thread 1.5x slower at 3% active and 1.7-1.8x at 25% and 100%; with 1 per
     * thread 1.0-1.7x slower at 3% and within 5% at 25-100%; d = 256, 1024 neurons: 1.06-2.2x slower;
     * docs/BENCHMARKS.md). Problems of fewer than 4 x {@link #PARALLEL_MIN_ELEMENTS} multiply-adds
     * (active rows x c) stay on the caller: a d = 256 model's 256 active rows (64K) ran 1.1-1.5x
     * slower split in two, 1024 rows within 12% either way.
     * Inf/NaN f16 weights are detected and the sum redone exactly, so they reach y as IEEE arithmetic
     * says.
     */
    public void matvecTransposedAcc(MemorySegment w, DType dt, int r, int c, long strideBytes, float[] h,
                                    float[] y) {
        checkStrided(w, dt, r, c, strideBytes);
        checkArrays(h, r, y, c);
        transposedAcc(w, dt, r, c, strideBytes, h, 0, y, 0);
    }

    /** {@link #matvecTransposedAcc} on h[hOff .. hOff + r) and y[yOff .. yOff + c) (checked). */
    private void transposedAcc(MemorySegment w, DType dt, int r, int c, long stride, float[] h, int hOff,
                               float[] y, int yOff) {
        int m = VectorKernels.nonZeros(h, hOff, r, activeRows(r), activeH);
        if (m == 0 || c == 0) {
            return;
        }
        int[] rows = active;
        float[] hv = activeH;
        if (threads == 1 || (long) m * c < TRANSPOSED_SERIAL_FACTOR * parallelMinElements) {
            accumulateSerial(w, dt, c, stride, rows, hv, m, y, yOff);
        } else {
            accumulateByRows(w, dt, c, stride, rows, hv, m, y, yOff);
        }
    }

    /**
     * The n-vector form of {@link #matvecTransposedAcc}: Y[t, j] += sum_{i : H[t, i] != 0} H[t, i] * W[i, j]
     * with H n x r and Y n x c row-major ({@code h.length >= n r}, {@code y.length >= n c}).
     * <p>When the vectors share their active rows (on average at least {@link #SHARED_MIN} vectors per
     * row active for any), each such row is read and converted to f32 once, 16 rows at a time, and
     * added into every Y[t] whose H[t, i] is non-zero, four rows per pass over Y[t] where it can.
     * Otherwise each vector gets its own {@link #matvecTransposedAcc} pass: its fused loop (no f32
     * copy of the row) beat converting once when few vectors share a row (f16, d = 4096, 16384
     * neurons, 2 threads, µs per call: n = 17 at 3% active each, 1.3 vectors per active row: 3340
     * per vector vs 4896 converted once; n = 8 at 10%, 1.4: 5290 vs 6631; n = 17 at 10%, 2.05: a
     * tie; n = 8 at 25%, 2.2: 13300 vs 11497; n = 17 at 25%, 4.25: 24336 vs 16170).
     * <p>Converted once, the work is split by column ranges of Y, one per thread: each thread owns
     * its columns of every Y row, so no reduction (and no n x c partial per thread) is needed; with 4
     * narrower ranges per thread the 1 KB slices of each row read DRAM 1.3-1.6x slower, and a row
     * split with an n x c partial per thread was no faster (n = 3 and 17, 3% and 25% active).
     */
    public void matmulTransposedAcc(MemorySegment w, DType dt, int r, int c, long strideBytes, float[] h, int n,
                                    float[] y) {
        checkCount(n);
        checkStrided(w, dt, r, c, strideBytes);
        checkArrays(h, (long) n * r, y, (long) n * c);
        if (n == 0 || c == 0) {
            return;
        }
        if (n == 1) {
            transposedAcc(w, dt, r, c, strideBytes, h, 0, y, 0);
            return;
        }
        int m = VectorKernels.nonZeroColumns(h, n, r, activeRows(r));
        if (m == 0) {
            return;
        }
        if (VectorKernels.countNonZeros(h, n * r) < (long) SHARED_MIN * m) {
            for (int t = 0; t < n; t++) {
                transposedAcc(w, dt, r, c, strideBytes, h, t * r, y, t * c);
            }
            return;
        }
        int[] rows = active;
        if (threads == 1 || (long) m * c * n < TRANSPOSED_SERIAL_FACTOR * parallelMinElements) {
            VectorKernels.matmulAccumulateRows(w, dt, strideBytes, rows, 0, m, h, n, r, 0, c, y, c,
                    scratch(0, VectorKernels.GROUP * c));
            return;
        }
        checkShared(w);
        int blocks = (c + COLUMN_BLOCK - 1) / COLUMN_BLOCK;
        int chunks = Math.min(blocks, threads);
        int need = VectorKernels.GROUP * COLUMN_BLOCK * ((blocks + chunks - 1) / chunks);
        for (int k = 0; k < threads; k++) {
            scratch(k, need);
        }
        team.run((k, parts, who) -> VectorKernels.matmulAccumulateRows(w, dt, strideBytes, rows, 0, m, h, n, r,
                columnLo(c, blocks, k, parts), columnLo(c, blocks, k + 1, parts), y, c, scratch[who]), chunks);
    }

    /** out[0..c) = W[row, 0..c) as f32 (embedding lookup); exact. */
    public void row(MemorySegment w, DType dt, int row, int c, float[] out) {
        if (row < 0) {
            throw new IllegalArgumentException("row must be >= 0, got " + row);
        }
        checkStrided(w, dt, row + 1L, c, (long) c * dt.bytes());
        checkArrays(out, 0, out, c);
        VectorKernels.toF32(w, dt, (long) row * c, out, 0, c);
    }

    /** The transposed sum on the calling thread (16-bit: into a split-order scratch, then into y). */
    private void accumulateSerial(MemorySegment w, DType dt, int c, long stride, int[] rows, float[] hv, int m,
                                  float[] y, int yOff) {
        if (dt == DType.F32) {
            VectorKernels.accumulateRows(w, dt, stride, rows, hv, 0, m, 0, c, y, yOff);
            return;
        }
        float[] acc = scratch(0, c);
        Arrays.fill(acc, 0, c, 0f);
        if (VectorKernels.accumulateRows(w, dt, stride, rows, hv, 0, m, 0, c, acc, 0)) {
            VectorKernels.addSplit(dt, acc, 0, y, yOff, c);
        } else {
            VectorKernels.accumulateRowsExact(w, dt, stride, rows, hv, 0, m, c, y, yOff, acc);
        }
    }

    /**
     * Row split: chunks of the active rows; participant p sums its chunks into scratch[p] (zeroed at
     * its first chunk), then the caller adds the partials together and into y. If any participant
     * met an Inf/NaN f16 weight, y is still untouched and the caller redoes the whole sum exactly.
     */
    private void accumulateByRows(MemorySegment w, DType dt, int c, long stride, int[] rows, float[] hv, int m,
                                  float[] y, int yOff) {
        checkShared(w);
        for (int k = 0; k < threads; k++) {
            scratch(k, c);
            touched[k] = false;
            nonFinite[k] = false;
        }
        int chunks = Math.clamp(m / 4, 1, threads * CHUNKS_PER_THREAD);
        team.run((k, parts, who) -> {
            float[] acc = scratch[who];
            if (!touched[who]) {
                Arrays.fill(acc, 0, c, 0f);
                touched[who] = true;
            }
            if (!VectorKernels.accumulateRows(w, dt, stride, rows, hv, lo(m, k, parts), lo(m, k + 1, parts),
                    0, c, acc, 0)) {
                nonFinite[who] = true;
            }
        }, chunks);
        float[] sum = null;
        for (int k = 0; k < threads; k++) {
            if (nonFinite[k]) {
                VectorKernels.accumulateRowsExact(w, dt, stride, rows, hv, 0, m, c, y, yOff, scratch[0]);
                return;
            }
        }
        for (int k = 0; k < threads; k++) {
            if (touched[k]) {
                if (sum == null) {
                    sum = scratch[k];
                } else {
                    VectorOps.add(sum, scratch[k], c);
                }
            }
        }
        VectorKernels.addSplit(dt, sum, 0, y, yOff, c);
    }

    /** First column of chunk {@code part} of {@code parts} over c columns in {@code blocks} blocks. */
    static int columnLo(int c, int blocks, int part, int parts) {
        return Math.min(c, lo(blocks, part, parts) * COLUMN_BLOCK);
    }

    /** The active-row buffers, grown to hold r rows. */
    private int[] activeRows(int r) {
        if (active.length < r) {
            active = new int[r];
            activeH = new float[r];
        }
        return active;
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

    private static void checkCount(int n) {
        if (n < 0) {
            throw new IllegalArgumentException("n must be >= 0, got " + n);
        }
    }

    /** The weights: a compute dtype, r rows of c elements at {@code stride} bytes, all inside w. */
    private void checkStrided(MemorySegment w, DType dt, long r, int c, long stride) {
        if (closed) {
            throw new IllegalStateException("kernels already closed");
        }
        if (!dt.isComputeType()) {
            throw new IllegalArgumentException("kernels compute on F32, F16, BF16; got " + dt);
        }
        if (r < 0 || c < 0) {
            throw new IllegalArgumentException("negative shape " + r + " x " + c);
        }
        long rowBytes = (long) c * dt.bytes();
        if (stride < rowBytes) {
            throw new IllegalArgumentException("row stride " + stride + " bytes is shorter than a row of " + c
                    + " " + dt + " (" + rowBytes + " bytes)");
        }
        long bytes;
        try {
            bytes = r == 0 ? 0 : Math.addExact(Math.multiplyExact(r - 1, stride), rowBytes);
        } catch (ArithmeticException e) {
            bytes = Long.MAX_VALUE;
        }
        if (w.byteSize() < bytes) {
            throw new IllegalArgumentException("weights hold " + w.byteSize() + " bytes, " + r + " rows of " + c
                    + " " + dt + " at a stride of " + stride + " bytes need " + bytes);
        }
    }

    private static void checkArrays(float[] x, long needX, float[] y, long needY) {
        if (x.length < needX) {
            throw new IllegalArgumentException("input holds " + x.length + " floats, needs " + needX);
        }
        if (y.length < needY) {
            throw new IllegalArgumentException("output holds " + y.length + " floats, needs " + needY);
        }
    }
}
