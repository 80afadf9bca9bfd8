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

    /**
     * {@link #sparseBundleFfn} converts its block to f32 once when the tokens use at least this many
     * rows per block row on average (one conversion costs about one use of a row read in place).
     */
    static final int BUNDLE_CONVERT_MIN = 2;

    /** Column ranges of {@link #matmulTransposedAcc} start at multiples of this (whole vector blocks). */
    static final int COLUMN_BLOCK = 64;

    private static final AtomicInteger INSTANCES = new AtomicInteger();

    private final int threads;
    private final long parallelMinElements;
    private final WorkerTeam team;
    /**
     * Participant k's scratch (one call at a time): matmul's f32 copy of a panel of weight rows, the transposed
     * kernels' partial sums or converted row slices.
     */
    private final float[][] scratch;
    /** matvec's x after {@link VectorKernels#splitPairs} (16-bit weights). */
    private float[] xs = new float[0];
    /** The transposed kernels' active rows (indices) and, for one vector, their h values. */
    private int[] active = new int[0];
    private float[] activeH = new float[0];
    /** sparseBundleFfn: the block in f32, the per-use activations and surviving rows, per-thread rows. */
    private float[] ffnBlock = new float[0];
    private float[] ffnA = new float[0];
    private int[] ffnPick = new int[0];
    private final float[][][] tokenBufs;
    /** accumulateByRows' partial sum and Inf/NaN flag per chunk. */
    private float[][] chunkAcc = new float[0][];
    private boolean[] chunkNonFinite = new boolean[0];
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
        this.tokenBufs = new float[threads][][];
    }

    public int threads() {
        return threads;
    }

    /** y[i] = sum_j W[i, j] * x[j] for i in [0, r). {@code x.length >= c}, {@code y.length >= r}. */
    public void matvec(MemorySegment w, DType dt, int r, int c, float[] x, float[] y) {
        matvecStrided(w, dt, r, c, rowBytes(dt, c), x, y);
    }

    /**
     * y[i] = sum_j W[i, j] * x[j] for i in [0, r): r rows of c elements, row i starting at byte
     * {@code i * strideBytes} of w ({@code strideBytes >= c * dt.bytes()}; rows may start at any byte).
     * {@link #matvec} is the case {@code strideBytes = c * dt.bytes()}; a larger stride reads rows of a
     * padded layout such as the flash bundles (up row, down column, padding per neuron) in place.
     */
    public void matvecStrided(MemorySegment weights, DType dt, int r, int c, long strideBytes, float[] x, float[] y) {
        MemorySegment w = oneSegmentKind(weights);
        checkStrided(w, dt, r, c, strideBytes);
        checkArrays(x, c, y, r);
        float[] xs = VectorKernels.splitOrder(dt) ? VectorKernels.splitPairs(x, c, splitInput(c)) : null;
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
        matmulStrided(w, dt, r, c, rowBytes(dt, c), x, n, y);
    }

    /**
     * The n-vector form of {@link #matvecStrided}: Y[t, i] = sum_j W[i, j] * X[t, j] with X n x c and
     * Y n x r row-major, rows of W at {@code strideBytes}. Each weight row is converted to f32 once
     * and used for all n vectors.
     */
    public void matmulStrided(MemorySegment weights, DType dt, int r, int c, long strideBytes, float[] x, int n,
                              float[] y) {
        MemorySegment w = oneSegmentKind(weights);
        checkCount(n);
        checkStrided(w, dt, r, c, strideBytes);
        checkArrays(x, (long) n * c, y, (long) n * r);
        if (n == 0) {
            return;
        }
        int need = VectorKernels.PANEL * c;
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
    public void matvecTransposedAcc(MemorySegment weights, DType dt, int r, int c, long strideBytes, float[] h,
                                    float[] y) {
        MemorySegment w = oneSegmentKind(weights);
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
        accumulate(w, dt, c, stride, active, activeH, m, y, yOff);
    }

    /** y[yOff + j] += sum_{k < m} hv[k] W[rows[k], j]: on the caller or split by rows (checked). */
    private void accumulate(MemorySegment w, DType dt, int c, long stride, int[] rows, float[] hv, int m,
                            float[] y, int yOff) {
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
    public void matmulTransposedAcc(MemorySegment weights, DType dt, int r, int c, long strideBytes, float[] h, int n,
                                    float[] y) {
        MemorySegment w = oneSegmentKind(weights);
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

    /**
     * y[k] = sum_j W[rows[k], j] * x[j] for k in [0, count): {@link #matvecStrided} over an explicit
     * list of rows (any order, repeats allowed), row i being the c elements at byte
     * {@code i * strideBytes} of w. The flash FFN's up projection over only the rows the predictor
     * chose, read in place from the cache. Same arithmetic (four rows share each x load), Inf/NaN
     * handling and thread split as matvecStrided, the list instead of a range being cut into chunks.
     */
    public void matvecGather(MemorySegment weights, DType dt, int c, long strideBytes, int[] rows, int count, float[] x,
                             float[] y) {
        MemorySegment w = oneSegmentKind(weights);
        checkRowList(w, dt, c, strideBytes, rows, count);
        checkArrays(x, c, y, count);
        if (count == 0) {
            return;
        }
        float[] xs = VectorKernels.splitOrder(dt) ? VectorKernels.splitPairs(x, c, splitInput(c)) : null;
        if (threads == 1 || (long) count * c < parallelMinElements) {
            VectorKernels.gatherRows(w, dt, c, strideBytes, rows, 0, count, x, xs, y);
            return;
        }
        checkShared(w);
        team.run((k, chunks, who) -> VectorKernels.gatherRows(w, dt, c, strideBytes, rows,
                lo(count, k, chunks), lo(count, k + 1, chunks), x, xs, y), chunks(count));
    }

    /**
     * y[j] += sum_{k < count, hv[k] != 0} hv[k] * W[rows[k], j] for j in [0, c): the down projection
     * over an explicit row list (any order, repeats allowed; rows as in {@link #matvecGather}). Rows
     * whose hv[k] is zero are skipped and not read (a NaN hv[k] counts as non-zero), exactly as in
     * {@link #matvecTransposedAcc}, whose machinery (row split with per-thread partial sums, the exact
     * redo for Inf/NaN f16 weights) this is, given the list instead of finding it.
     */
    public void accumulateGather(MemorySegment weights, DType dt, int c, long strideBytes, int[] rows, float[] hv,
                                 int count, float[] y) {
        MemorySegment w = oneSegmentKind(weights);
        checkRowList(w, dt, c, strideBytes, rows, count);
        checkArrays(hv, count, y, c);
        if (count == 0 || c == 0) {
            return;
        }
        int m = 0;
        for (int k = 0; k < count && m == k; k++) {
            if (hv[k] != 0f) {
                m++;
            }
        }
        int[] list = rows;
        float[] h = hv;
        if (m < count) { // pack the non-zero entries (the caller's arrays stay as they are)
            list = activeRows(count);
            h = activeH;
            m = 0;
            for (int k = 0; k < count; k++) {
                if (hv[k] != 0f) {
                    list[m] = rows[k];
                    h[m++] = hv[k];
                }
            }
            if (m == 0) {
                return;
            }
        }
        accumulate(w, dt, c, strideBytes, list, h, m, y, 0);
    }

    /**
     * The flash prompt-prefill FFN over one block of {@code blockRows} neuron bundles, for n tokens
     * that each use their own rows of it: bundle r holds its up row (c elements at byte
     * {@code r * strideBytes} of w) and its down column (c elements at byte
     * {@code r * strideBytes + downOffsetBytes}). For every token t in [0, n) and k in
     * [rowStart[t], rowStart[t + 1]), with r = rows[k] in [0, blockRows):
     * <pre>
     *   a = max(dot(up(r), X[t]) + (bias == null ? 0 : bias[biasOff + r]), 0)     (ReLU; NaN stays NaN)
     *   Y[t, j] += a * down(r)[j]   for j in [0, c), skipped when a == 0 (0 * Inf would be NaN)
     * </pre>
     * X and Y ({@code x}, {@code out}) are n x c row-major; {@code rowStart} has n + 1 non-decreasing
     * entries into {@code rows} (per token ascending rows read the block in order; any order and
     * repeats compute the same sum).
     * <p>Why one block for all tokens: a prompt's tokens share most of their rows, so when on average
     * each block row is used by at least {@link #BUNDLE_CONVERT_MIN} tokens the block (sized by the
     * caller to stay in L2, e.g. 16-64 bundles) is converted to f32 once, split over the threads, and
     * every token's dots and sums then run on f32 from cache; with fewer tokens per row the dots and
     * sums read the stored dtype directly (converting would cost about one use per row). Tokens are
     * cut into chunks of about equal row counts that the threads claim; each token's Y row belongs to
     * the thread that computes it, so no partial sums are reduced. Within a token the dots go four
     * rows at a time sharing each x load and the surviving rows are added four per pass over Y[t].
     * Inf/NaN weights reach Y as IEEE arithmetic says.
     */
    public void sparseBundleFfn(MemorySegment weights, DType dt, int c, long strideBytes, long downOffsetBytes,
                                int blockRows, int n, int[] rowStart, int[] rows, float[] bias, int biasOff,
                                float[] x, float[] out) {
        MemorySegment w = oneSegmentKind(weights);
        checkCount(n);
        if (blockRows < 0) {
            throw new IllegalArgumentException("blockRows must be >= 0, got " + blockRows);
        }
        checkStrided(w, dt, blockRows, c, strideBytes);
        if (downOffsetBytes < 0) {
            throw new IllegalArgumentException("downOffsetBytes must be >= 0, got " + downOffsetBytes);
        }
        long rowBytes = rowBytes(dt, c);
        if (blockRows > 0 && (downOffsetBytes > Long.MAX_VALUE / 2
                || w.byteSize() < (blockRows - 1L) * strideBytes + downOffsetBytes + rowBytes)) {
            throw new IllegalArgumentException("weights hold " + w.byteSize() + " bytes, too few for " + blockRows
                    + " down columns of " + c + " " + dt + " at offset " + downOffsetBytes + " and stride "
                    + strideBytes);
        }
        if (rowStart.length < n + 1L) {
            throw new IllegalArgumentException("rowStart holds " + rowStart.length + " entries, needs n + 1 = "
                    + (n + 1L));
        }
        if (rowStart[0] < 0) {
            throw new IllegalArgumentException("rowStart[0] must be >= 0, got " + rowStart[0]);
        }
        for (int t = 0; t < n; t++) {
            if (rowStart[t + 1] < rowStart[t]) {
                throw new IllegalArgumentException("rowStart must not decrease: rowStart[" + t + "] = " + rowStart[t]
                        + ", rowStart[" + (t + 1) + "] = " + rowStart[t + 1]);
            }
        }
        int k0 = rowStart[0];
        int k1 = rowStart[n];
        if (rows.length < k1) {
            throw new IllegalArgumentException("rows holds " + rows.length + " entries, rowStart[n] = " + k1);
        }
        for (int k = k0; k < k1; k++) {
            if (rows[k] < 0 || rows[k] >= blockRows) {
                throw new IllegalArgumentException("rows[" + k + "] = " + rows[k] + " is outside the block's "
                        + blockRows + " rows");
            }
        }
        if (bias != null && (biasOff < 0 || bias.length < (long) biasOff + blockRows)) {
            throw new IllegalArgumentException("bias holds " + bias.length + " floats, needs biasOff + blockRows = "
                    + ((long) biasOff + blockRows) + " (biasOff " + biasOff + ")");
        }
        checkArrays(x, (long) n * c, out, (long) n * c);
        int uses = k1 - k0;
        if (uses == 0 || c == 0) {
            return;
        }
        if (ffnA.length < k1) {
            ffnA = new float[k1];
            ffnPick = new int[k1];
        }
        float[] a = ffnA;
        int[] pick = ffnPick;
        boolean serial = threads == 1 || 2L * uses * c < parallelMinElements;
        if (!serial) {
            checkShared(w);
        }
        if (uses >= (long) BUNDLE_CONVERT_MIN * blockRows) {
            long need = 2L * blockRows * c;
            if (need > Integer.MAX_VALUE - 8) {
                throw new IllegalArgumentException("block of " + blockRows + " x 2 x " + c + " too large to convert");
            }
            if (ffnBlock.length < need) {
                ffnBlock = new float[(int) need];
            }
            float[] block = ffnBlock;
            if (serial) {
                convertBundles(w, dt, c, strideBytes, downOffsetBytes, block, 0, blockRows);
                VectorKernels.bundleConverted(block, c, 0, n, rowStart, rows, bias, biasOff, x, out, a, pick);
                return;
            }
            team.run((k, parts, who) -> convertBundles(w, dt, c, strideBytes, downOffsetBytes, block,
                    lo(blockRows, k, parts), lo(blockRows, k + 1, parts)), Math.min(blockRows, threads));
            team.run((k, parts, who) -> VectorKernels.bundleConverted(block, c, tokenLo(rowStart, n, k, parts),
                    tokenLo(rowStart, n, k + 1, parts), rowStart, rows, bias, biasOff, x, out, a, pick),
                    chunks(n));
            return;
        }
        MemorySegment down = w.asSlice(downOffsetBytes);
        if (serial) {
            float[][] b = tokenScratch(0, c);
            VectorKernels.bundleDirect(w, down, dt, c, strideBytes, 0, n, rowStart, rows, bias, biasOff, x, out, a,
                    pick, b[0], b[1], b[2], b[3]);
            return;
        }
        for (int k = 0; k < threads; k++) {
            tokenScratch(k, c);
        }
        team.run((k, parts, who) -> {
            float[][] b = tokenBufs[who];
            VectorKernels.bundleDirect(w, down, dt, c, strideBytes, tokenLo(rowStart, n, k, parts),
                    tokenLo(rowStart, n, k + 1, parts), rowStart, rows, bias, biasOff, x, out, a, pick,
                    b[0], b[1], b[2], b[3]);
        }, chunks(n));
    }

    /** Bundles [r0, r1) to f32: up row of r at block[r 2c ..], its down column at block[r 2c + c ..]. */
    private static void convertBundles(MemorySegment w, DType dt, int c, long stride, long downOffset, float[] block,
                                       int r0, int r1) {
        int r = r0;
        for (; r + 2 <= r1; r += 2) { // up, down, up, down: four streams in step (VectorKernels.toF32x4)
            long o = r * stride;
            VectorKernels.toF32x4(w, dt, o, o + downOffset, o + stride, o + stride + downOffset, block, 2 * r * c, c);
        }
        for (; r < r1; r++) {
            VectorKernels.toF32At(w, dt, r * stride, block, 2 * r * c, c);
            VectorKernels.toF32At(w, dt, r * stride + downOffset, block, 2 * r * c + c, c);
        }
    }

    /**
     * First token of chunk {@code part} of {@code parts} when tokens are cut by work: the first t
     * whose rows start at or after {@code part / parts} of all rows (rowStart is their prefix sum), so
     * chunks hold about equally many rows whatever the tokens' counts; empty chunks are fine.
     */
    static int tokenLo(int[] rowStart, int n, int part, int parts) {
        if (part >= parts) {
            return n;
        }
        long target = rowStart[0] + (long) (rowStart[n] - rowStart[0]) * part / parts;
        int lo = 0;
        int hi = n;
        while (lo < hi) { // first t in [0, n] with rowStart[t] >= target
            int mid = (lo + hi) >>> 1;
            if (rowStart[mid] < target) {
                lo = mid + 1;
            } else {
                hi = mid;
            }
        }
        return lo;
    }

    /** Participant k's four c-float arrays of {@link VectorKernels#bundleDirect}. */
    private float[][] tokenScratch(int part, int c) {
        float[][] b = tokenBufs[part];
        if (b == null || b[0].length < c) {
            b = new float[][]{new float[c], new float[c], new float[c], new float[c]};
            tokenBufs[part] = b;
        }
        return b;
    }

    /** out[0..c) = W[row, 0..c) as f32 (embedding lookup); exact. */
    public void row(MemorySegment weights, DType dt, int row, int c, float[] out) {
        MemorySegment w = oneSegmentKind(weights);
        if (row < 0) {
            throw new IllegalArgumentException("row must be >= 0, got " + row);
        }
        checkStrided(w, dt, row + 1L, c, rowBytes(dt, c));
        checkArrays(out, 0, out, c);
        // Once per token: too rarely for C2 to compile a Vector API loop early, and the Vector API run
        // uncompiled boxes every vector (~50 KB per token on opt-1.3b, JFR). The scalar conversion
        // (an intrinsic) is exact and costs microseconds here.
        ScalarKernels.row(w, dt, row, c, out);
    }

    /** The transposed sum on the calling thread (16-bit: into a split-order scratch, then into y). */
    private void accumulateSerial(MemorySegment w, DType dt, int c, long stride, int[] rows, float[] hv, int m,
                                  float[] y, int yOff) {
        if (!VectorKernels.splitOrder(dt)) { // F32 and the quantized dtypes sum in natural order, never Inf/NaN-redone
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
     * Row split: chunks of the active rows; each chunk is summed into its own partial (whichever thread
     * claims it), then the caller adds the partials in chunk order and into y. If any chunk met an
     * Inf/NaN f16 weight, y is still untouched and the caller redoes the whole sum exactly.
     */
    private void accumulateByRows(MemorySegment w, DType dt, int c, long stride, int[] rows, float[] hv, int m,
                                  float[] y, int yOff) {
        checkShared(w);
        int chunks = Math.clamp(m / 4, 1, threads * CHUNKS_PER_THREAD);
        // One partial sum per chunk, added in chunk order: the result does not depend on which thread
        // happened to claim which chunk (a loaded machine changes that), so it is reproducible.
        if (chunkAcc.length < chunks || chunkAcc[0].length < c) {
            chunkAcc = new float[chunks][Math.max(c, chunkAcc.length == 0 ? 0 : chunkAcc[0].length)];
            chunkNonFinite = new boolean[chunks];
        }
        float[][] acc = chunkAcc;
        boolean[] bad = chunkNonFinite;
        team.run((k, parts, who) -> {
            Arrays.fill(acc[k], 0, c, 0f);
            bad[k] = !VectorKernels.accumulateRows(w, dt, stride, rows, hv, lo(m, k, parts), lo(m, k + 1, parts),
                    0, c, acc[k], 0);
        }, chunks);
        for (int k = 0; k < chunks; k++) {
            if (bad[k]) {
                VectorKernels.accumulateRowsExact(w, dt, stride, rows, hv, 0, m, c, y, yOff, scratch(0, c));
                return;
            }
        }
        for (int k = 1; k < chunks; k++) {
            VectorOps.add(acc[0], acc[k], c);
        }
        VectorKernels.addSplit(dt, acc[0], 0, y, yOff, c);
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

    /**
     * A file-mapped segment as a plain native segment over the same memory, with the same lifetime
     * (reinterpret keeps the scope); any other segment as it is. The kernels then only ever see one
     * implementation class: when C2 has seen both the mapped resident weights and the native neuron
     * cache at a vector load, the quantized loops ran 1.5x slower (DecodeKernels --mapped: Q4_0 140 ms
     * against 96 ms per opt-6.7b token's kernels, Q8_0 196 against 132).
     */
    static MemorySegment oneSegmentKind(MemorySegment w) {
        return w.isMapped() ? w.reinterpret(w.byteSize()) : w;
    }

    /** Bytes of a row of c weights; a quantized row must be whole blocks of 32 (IllegalArgumentException). */
    private static long rowBytes(DType dt, int c) {
        if (!dt.fitsRow(c)) {
            throw new IllegalArgumentException(dt + " rows hold whole blocks of " + dt.blockSize() + " weights; c = " + c
                    + " is not a multiple of " + dt.blockSize());
        }
        return dt.rowBytes(c);
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
        if (!dt.isWeightType()) {
            throw new IllegalArgumentException("kernels compute on F32, F16, BF16, Q8_0, Q4_0; got " + dt);
        }
        if (r < 0 || c < 0) {
            throw new IllegalArgumentException("negative shape " + r + " x " + c);
        }
        long rowBytes = rowBytes(dt, c);
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

    /** A row list: count >= 0 entries of rows, each a row of c elements at stride bytes inside w. */
    private void checkRowList(MemorySegment w, DType dt, int c, long stride, int[] rows, int count) {
        if (count < 0) {
            throw new IllegalArgumentException("count must be >= 0, got " + count);
        }
        if (rows.length < count) {
            throw new IllegalArgumentException("rows holds " + rows.length + " entries, count is " + count);
        }
        int max = -1;
        for (int k = 0; k < count; k++) {
            if (rows[k] < 0) {
                throw new IllegalArgumentException("rows[" + k + "] = " + rows[k] + " is negative");
            }
            max = Math.max(max, rows[k]);
        }
        checkStrided(w, dt, max + 1L, c, stride);
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
