package dev.llmflash.runtime.kernels;

import dev.llmflash.formats.tensor.DType;
import jdk.incubator.vector.FloatVector;
import jdk.incubator.vector.IntVector;
import jdk.incubator.vector.ShortVector;
import jdk.incubator.vector.VectorOperators;
import jdk.incubator.vector.VectorShape;
import jdk.incubator.vector.VectorShuffle;
import jdk.incubator.vector.VectorSpecies;

import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.nio.ByteOrder;
import java.util.Arrays;

/**
 * Single-threaded Vector API primitives over weights stored row-major in a {@link MemorySegment}
 * (usually a slice of a memory-mapped checkpoint: any byte alignment, little-endian) in F32, F16 or
 * BF16; activations are f32 arrays. {@link Kernels} splits rows over threads and calls these.
 * <p>Legend: r = rows, c = cols, i = row index, j = column index, n = number of input vectors,
 * t = input-vector index, L = f32 lanes per vector ({@link #F}), {@code off}/{@code b}/{@code o0..o3}
 * = byte offsets into the weight segment, {@code rowBytes} = bytes from one row's start to the next
 * (c * dtype bytes for a dense matrix, more for padded rows such as FFN neuron bundles). Transposed
 * kernels: {@code rows[k]} = the k-th active row (neuron), {@code hv[k]} / h = its weight (activation),
 * acc = partial sums over a column range [j0, j1). Every dot accumulates in FMA lanes (f32) and
 * reduces the lanes at the end, so it sums in a different order than {@link ScalarKernels} (tests
 * allow for that); the {@code c mod L} tail columns run scalar.
 * <p>f16 to f32 (no half-float vector type or conversion exists in the JDK 25 Vector API): the 16-bit
 * lanes are sign-extended to 32 bits, shifted left by 13 and masked to sign | exponent | mantissa, so
 * the half's 5-bit exponent e and 10-bit mantissa m land in the f32's exponent and mantissa fields
 * (sign stays bit 31). Read as an f32 that is 2^(e-127) * 1.m (or 2^-126 * 0.m for e = 0);
 * multiplying by 2^112 rebiases it to the half's value 2^(e-15) * 1.m, exactly (a power-of-two scale
 * whose result is a normal f32), which also makes half subnormals right. e = 31 (Inf/NaN) comes out
 * as a finite value >= 2^16; those lanes get their exponent field forced to all-ones, keeping the
 * mantissa (Inf stays Inf, NaN payloads and the quiet bit survive). Tested exact for all 65536 halves.
 * bf16 to f32 is the upper half of the f32: shift left 16.
 * <p>matvec on 16-bit weights (the hot path, memory-bound) avoids the widening shuffle: it loads L
 * 32-bit lanes = 2L weights at once, so lane k holds weight 2k in its low half and weight 2k+1 in its
 * high half. The low halves become one f32 vector, the high halves another, and they are dotted with
 * x's even and odd entries, which {@link #splitPairs} rearranges once per call (xs). For f16 that is
 * {@code (v << 16) >> 3} resp. {@code v >> 3} (arithmetic shifts), masked, which puts sign,
 * exponent and mantissa where the rebias above wants them. Instead of fixing e = 31 per lane, the loop
 * ORs {@code (v & 0x7C007C00) + 0x04000400} into a flag vector (bit 15 / bit 31 of a lane set iff a
 * half there has e = 31) and recomputes the rows exactly if any is set: real checkpoints hold no
 * Inf/NaN, so that costs nothing, yet a NaN weight still yields NaN. The transposed accumulate
 * ({@link #accumulateRows}) reads rows the same way; there the even/odd split stays in its partial
 * sums (split order) and is undone once, when they are added into y ({@link #addSplit}).
 * <p>C2 note: the 4-row loops spell the conversions out instead of calling helper methods. Vector API
 * methods are force-inlined, but a helper of ours is refused inlining once the parse exceeds C2's
 * node-count cutoff ({@code NodeCountInliningCutoff}), and a not-inlined helper boxes every vector
 * (10x slower). Check with {@code -XX:+UnlockDiagnosticVMOptions -XX:+PrintInlining}.
 * <p>Thread-safety: stateless; safe from any thread.
 */
public final class VectorKernels {

    /** The f32 species: the widest the CPU has (16 lanes on AVX-512, 8 on AVX2). */
    static final VectorSpecies<Float> F = FloatVector.SPECIES_PREFERRED;
    /** Same-shape int species: a 16-bit value widened per f32 lane. */
    static final VectorSpecies<Integer> I = VectorSpecies.of(int.class, F.vectorShape());
    /** Half-width short species: L 16-bit values, loaded then widened to {@link #I}. */
    static final VectorSpecies<Short> S =
            VectorSpecies.of(short.class, VectorShape.forBitSize(F.vectorBitSize() / 2));
    static final int L = F.length();
    /** Rows converted per group in {@link #matmulAccumulateRows}: four from each quarter of the list. */
    static final int GROUP = 16;
    /** Weight rows converted per panel in {@link #matmulRows} (a multiple of 4). */
    static final int PANEL = 16;

    private static final ByteOrder LE = ByteOrder.LITTLE_ENDIAN;
    private static final ValueLayout.OfFloat F32_LE = ValueLayout.JAVA_FLOAT_UNALIGNED;
    private static final ValueLayout.OfShort U16_LE = ValueLayout.JAVA_SHORT_UNALIGNED;

    /** f16 sign | exponent | mantissa after the 13-bit shift. */
    private static final int HALF_BITS_MASK = 0x8FFF_E000;
    /** 2^(127 - 15): moves the half's exponent bias to the f32's. */
    private static final float HALF_REBIAS = 0x1.0p112f;
    /** Smallest magnitude a rebiased e = 31 (Inf/NaN) lane has: 2^(31 - 15). */
    private static final float HALF_INF_NAN_MIN = 0x1.0p16f;
    private static final int F32_EXPONENT = 0x7F80_0000;
    /** Both halves' f16 exponent fields in a 32-bit lane, and the carry that flags e = 31 in each. */
    private static final int HALF_PAIR_EXPONENTS = 0x7C00_7C00;
    private static final int HALF_PAIR_EXPONENT_ONE = 0x0400_0400;
    private static final int HALF_PAIR_CARRIES = 0x8000_8000;
    /** The same for one half per lane (sign-extended to 32 bits). */
    private static final int HALF_EXPONENT = 0x7C00;
    private static final int HALF_EXPONENT_ONE = 0x0400;
    private static final int HALF_CARRY = 0x8000;
    private static final int BF16_HIGH = 0xFFFF_0000;
    /**
     * Interleave an even vector e and an odd vector o back into column order (two-vector rearrange:
     * indexes L.. pick from o): ZIP_LOW gives e0 o0 e1 o1 ..., ZIP_HIGH the upper halves.
     */
    private static final VectorShuffle<Float> ZIP_LOW = VectorShuffle.fromOp(F, k -> (k & 1) * L + k / 2);
    private static final VectorShuffle<Float> ZIP_HIGH = VectorShuffle.fromOp(F, k -> (k & 1) * L + L / 2 + k / 2);

    private VectorKernels() {
    }

    // ---------------------------------------------------------------- loads: L weights -> f32 lanes

    /** L f16 values at byte {@code off} as f32 lanes (exact; see the class comment). */
    static FloatVector loadF16(MemorySegment w, long off) {
        IntVector h = (IntVector) ShortVector.fromMemorySegment(S, w, off, LE)
                .convertShape(VectorOperators.S2I, I, 0);
        FloatVector v = h.lanewise(VectorOperators.LSHL, 13).and(HALF_BITS_MASK)
                .reinterpretAsFloats().mul(HALF_REBIAS);
        return v.reinterpretAsInts()
                .lanewise(VectorOperators.OR, F32_EXPONENT,
                        v.abs().compare(VectorOperators.GE, HALF_INF_NAN_MIN).cast(I))
                .reinterpretAsFloats();
    }

    /** L bf16 values at byte {@code off} as f32 lanes (exact). */
    static FloatVector loadBf16(MemorySegment w, long off) {
        IntVector h = (IntVector) ShortVector.fromMemorySegment(S, w, off, LE)
                .convertShape(VectorOperators.S2I, I, 0);
        return h.lanewise(VectorOperators.LSHL, 16).reinterpretAsFloats();
    }

    static FloatVector loadF32(MemorySegment w, long off) {
        return FloatVector.fromMemorySegment(F, w, off, LE);
    }

    private static float f16(MemorySegment w, long off) {
        return Float.float16ToFloat(w.get(U16_LE, off));
    }

    private static float bf16(MemorySegment w, long off) {
        return Float.intBitsToFloat((w.get(U16_LE, off) & 0xffff) << 16);
    }

    private static float f32(MemorySegment w, long off) {
        return w.get(F32_LE, off);
    }

    // ---------------------------------------------------------------- public entry points

    /**
     * y[i] = dot(W[i, 0..c), x[0..c)) for i in [r0, r1), row i of W being c elements starting at byte
     * {@code i * rowBytes} of {@code w} ({@code rowBytes >= c * dt.bytes()}: a dense matrix when equal,
     * padded rows such as neuron bundles otherwise). {@code xs} is {@code x} after {@link #splitPairs} (read for F16 and BF16;
     * may be null for F32).
     * <p>Four rows at a time share each x load, but not four adjacent rows: the range is cut into
     * quarters of q rows and step i computes rows i, i+q, i+2q, i+3q. Each quarter is then read as
     * one long sequential stream, which the hardware prefetchers follow; four adjacent rows would be
     * four short streams interleaved within the same pages, and measured up to 2x slower from DRAM
     * (2 KB rows). The {@code (r1 - r0) mod 4} last rows go one at a time.
     */
    public static void matvecRows(MemorySegment w, DType dt, int c, long rowBytes, float[] x, float[] xs,
                                  float[] y, int r0, int r1) {
        if (dt.isQuantized()) {
            QuantKernels.matvecRows(w, dt, c, rowBytes, x, y, r0, r1);
            return;
        }
        int q = (r1 - r0) / 4;
        long stride = q * rowBytes;
        int end = r0 + q;
        switch (dt) {
            case F32 -> {
                for (int i = r0; i < end; i++) {
                    long o = i * rowBytes;
                    dot4F32(w, o, o + stride, o + 2 * stride, o + 3 * stride, c, x, y, i, q);
                }
            }
            case F16 -> {
                for (int i = r0; i < end; i++) {
                    long o = i * rowBytes;
                    if (!dot4F16(w, o, o + stride, o + 2 * stride, o + 3 * stride, c, x, xs, y, i, q)) {
                        for (int k = i; k < r0 + 4 * q; k += q) { // a weight is Inf/NaN: redo exactly
                            y[k] = dotF16(w, k * rowBytes, x, 0, c);
                        }
                    }
                }
            }
            case BF16 -> {
                for (int i = r0; i < end; i++) {
                    long o = i * rowBytes;
                    dot4Bf16(w, o, o + stride, o + 2 * stride, o + 3 * stride, c, x, xs, y, i, q);
                }
            }
            default -> throw unsupported(dt);
        }
        for (int i = r0 + 4 * q; i < r1; i++) {
            y[i] = dotAt(w, dt, i * rowBytes, x, 0, c);
        }
    }

    /**
     * y[k] = dot(W[rows[k], 0..c), x[0..c)) for k in [k0, k1): {@link #matvecRows} over a list of rows
     * (any order, repeats allowed) instead of a range; row i of W starts at byte {@code i * rowBytes}.
     * Four rows share each x load, rows k, k+q, k+2q, k+3q of the list as in {@link #accumulateRows}
     * (a sorted dense list then reads four long streams), the {@code (k1 - k0) mod 4} last rows one at
     * a time; an Inf/NaN f16 weight makes its four rows be redone exactly, as in matvecRows.
     */
    public static void gatherRows(MemorySegment w, DType dt, int c, long rowBytes, int[] rows, int k0, int k1,
                                  float[] x, float[] xs, float[] y) {
        if (dt.isQuantized()) {
            QuantKernels.gatherRows(w, dt, c, rowBytes, rows, k0, k1, x, y);
            return;
        }
        int q = (k1 - k0) / 4;
        int end = k0 + q;
        switch (dt) {
            case F32 -> {
                for (int k = k0; k < end; k++) {
                    dot4F32(w, rows[k] * rowBytes, rows[k + q] * rowBytes, rows[k + 2 * q] * rowBytes,
                            rows[k + 3 * q] * rowBytes, c, x, y, k, q);
                }
            }
            case F16 -> {
                for (int k = k0; k < end; k++) {
                    if (!dot4F16(w, rows[k] * rowBytes, rows[k + q] * rowBytes, rows[k + 2 * q] * rowBytes,
                            rows[k + 3 * q] * rowBytes, c, x, xs, y, k, q)) {
                        for (int u = k; u < k0 + 4 * q; u += q) { // a weight is Inf/NaN: redo exactly
                            y[u] = dotF16(w, rows[u] * rowBytes, x, 0, c);
                        }
                    }
                }
            }
            case BF16 -> {
                for (int k = k0; k < end; k++) {
                    dot4Bf16(w, rows[k] * rowBytes, rows[k + q] * rowBytes, rows[k + 2 * q] * rowBytes,
                            rows[k + 3 * q] * rowBytes, c, x, xs, y, k, q);
                }
            }
            default -> throw unsupported(dt);
        }
        for (int k = k0 + 4 * q; k < k1; k++) {
            y[k] = dotAt(w, dt, rows[k] * rowBytes, x, 0, c);
        }
    }

    /**
     * Writes x[0..c) in the order the 16-bit matvec loops read it: each whole block of 2L entries
     * starting at j becomes its L even-index entries, then its L odd-index entries,
     * {@code xs[j + k] = x[j + 2k], xs[j + L + k] = x[j + 2k + 1]}; the last {@code c mod 2L} entries
     * are copied as they are. Returns {@code xs}.
     */
    public static float[] splitPairs(float[] x, int c, float[] xs) {
        int bound = c - c % (2 * L);
        for (int j = 0; j < bound; j += 2 * L) {
            for (int k = 0; k < L; k++) {
                xs[j + k] = x[j + 2 * k];
                xs[j + L + k] = x[j + 2 * k + 1];
            }
        }
        System.arraycopy(x, bound, xs, bound, c - bound);
        return xs;
    }

    /** dot(W[elements off .. off+c), x[xOff .. xOff+c)) where {@code off} counts elements. */
    public static float dot(MemorySegment w, DType dt, long off, float[] x, int xOff, int c) {
        return dotAt(w, dt, off * dt.bytes(), x, xOff, c);
    }

    /** dot(the c elements starting at byte {@code b} of w, x[xOff .. xOff+c)). */
    public static float dotAt(MemorySegment w, DType dt, long b, float[] x, int xOff, int c) {
        return switch (dt) {
            case F32 -> dotF32(w, b, x, xOff, c);
            case F16 -> dotF16(w, b, x, xOff, c);
            case BF16 -> dotBf16(w, b, x, xOff, c);
            case Q8_0, Q4_0 -> QuantKernels.dot(w, dt, b, x, xOff, c);
            default -> throw unsupported(dt);
        };
    }

    /** out[outOff .. outOff+c) = W[elements off .. off+c) as f32 (exact). */
    public static void toF32(MemorySegment w, DType dt, long off, float[] out, int outOff, int c) {
        toF32At(w, dt, off * dt.bytes(), out, outOff, c);
    }

    /**
     * out[outOff .. outOff + n) = the n f16 values at byte {@code b} of w, as f32 (exact). L at a time:
     * one vector load and the bit conversion of {@link #loadF16} without its Inf/NaN fix-up, lanes of
     * exponent 31 (Inf, NaN) redone by the scalar conversion; the last n mod L scalar (no masked load:
     * C2 did not intrinsify it here, and the quantized kernels' scale reads were then their hottest
     * frame). Self-contained, no vector crosses a call, so it is fast whether or not C2 inlines it
     * (the quantized kernels read their scales through it, see QuantKernels' C2 notes).
     */
    static void f16ToF32(MemorySegment w, long b, int n, float[] out, int outOff) {
        int j = 0;
        for (int bound = n - L; j <= bound; j += L) {
            IntVector h = (IntVector) ShortVector.fromMemorySegment(S, w, b + 2L * j, LE)
                    .convertShape(VectorOperators.S2I, I, 0);
            h.lanewise(VectorOperators.LSHL, 13).and(HALF_BITS_MASK).reinterpretAsFloats().mul(HALF_REBIAS)
                    .intoArray(out, outOff + j);
            if (h.and(HALF_EXPONENT).compare(VectorOperators.EQ, HALF_EXPONENT).anyTrue()) {
                for (int t = j; t < j + L; t++) {
                    out[outOff + t] = f16(w, b + 2L * t);
                }
            }
        }
        for (; j < n; j++) {
            out[outOff + j] = f16(w, b + 2L * j);
        }
    }

    /** out[outOff .. outOff+c) = the c elements starting at byte {@code b} of w, as f32 (exact). */
    public static void toF32At(MemorySegment w, DType dt, long b, float[] out, int outOff, int c) {
        if (dt.isQuantized()) {
            QuantKernels.toF32(w, dt, b, out, outOff, c);
            return;
        }
        int bound = F.loopBound(c);
        int j = 0;
        switch (dt) {
            case F32 -> {
                for (; j < bound; j += L) {
                    loadF32(w, b + 4L * j).intoArray(out, outOff + j);
                }
                for (; j < c; j++) {
                    out[outOff + j] = f32(w, b + 4L * j);
                }
            }
            case F16 -> {
                f16ToF32(w, b, c, out, outOff);
                return;
            }
            case BF16 -> {
                for (; j < bound; j += L) {
                    loadBf16(w, b + 2L * j).intoArray(out, outOff + j);
                }
                for (; j < c; j++) {
                    out[outOff + j] = bf16(w, b + 2L * j);
                }
            }
            default -> throw unsupported(dt);
        }
    }

    /**
     * Y[t, i] = dot(W[i, 0..c), X[t, 0..c)) for i in [r0, r1) and every t in [0, n): X is n x c and Y
     * is n x r, both row-major; row i of W starts at byte {@code i * rowBytes} (as in
     * {@link #matvecRows}). A panel of up to {@link #PANEL} weight rows at a time is converted to f32
     * once into {@code scratch} (length >= PANEL c), then for every four inputs each four rows of the
     * panel get the 4 x 4 tile (8 loads feed 16 FMAs), so weights stream once and the loop is
     * FMA-bound, not load-bound. The panel is why X is read from memory once per PANEL rows instead of
     * once per 4: with 4-row panels a prompt's X (n = 512: 4 MB at c = 2048, 16 MB at c = 8192) came
     * from L3 or DRAM for every 4 rows, and the FFN down matmul (c = 8192) ran at 37% of the FMA peak
     * against 57% for c = 2048 (2-core Zen 4); the four X rows of a step stay in L1/L2 over the panel.
     */
    public static void matmulRows(MemorySegment w, DType dt, int r, int c, long rowBytes, float[] x, int n,
                                  float[] y, int r0, int r1, float[] scratch) {
        for (int p = r0; p < r1; p += PANEL) {
            int rows = Math.min(PANEL, r1 - p);
            int quads = rows / 4;
            for (int u = 0; u < quads; u++) {
                long o = (p + 4L * u) * rowBytes;
                toF32x4(w, dt, o, o + rowBytes, o + 2 * rowBytes, o + 3 * rowBytes, scratch, 4 * u * c, c);
            }
            for (int k = 4 * quads; k < rows; k++) {
                toF32At(w, dt, (p + k) * rowBytes, scratch, k * c, c);
            }
            int t = 0;
            for (; t + 4 <= n; t += 4) {
                for (int u = 0; u < quads; u++) {
                    dot4x4(scratch, 4 * u * c, c, x, t, y, r, p + 4 * u);
                }
            }
            for (; t < n; t++) {
                for (int u = 0; u < quads; u++) {
                    int b = 4 * u * c;
                    dot4(scratch, b, b + c, b + 2 * c, b + 3 * c, c, x, t * c, y, t * r + p + 4 * u, 1);
                }
            }
            for (int k = 4 * quads; k < rows; k++) {
                for (int tt = 0; tt < n; tt++) {
                    y[tt * r + p + k] = VectorOps.dot(scratch, k * c, x, tt * c, c);
                }
            }
        }
    }

    // ---------------------------------------------------------------- flash FFN over one bundle block

    /**
     * The sparse FFN of tokens [t0, t1) over a block already converted to f32: row r's up row at
     * {@code block[r 2c ..]}, its down column right after it at {@code block[r 2c + c ..]}. For each
     * token t and its rows k in [rowStart[t], rowStart[t + 1]): a = relu(dot(up(rows[k]), X[t]) + bias),
     * then Y[t] += a down(rows[k]) over the rows with a != 0 (a zero a is skipped, not multiplied:
     * 0 * Inf would be NaN). The dots go four rows at a time sharing each x load; the rows that survive
     * the ReLU are gathered and added four per pass over Y[t] ({@link #axpy4}), the rest singly.
     * {@code a} and {@code pick} are indexed like {@code rows} (each token uses only its own range, so
     * tokens on different threads share them).
     */
    public static void bundleConverted(float[] block, int c, int t0, int t1, int[] rowStart, int[] rows,
                                       float[] bias, int biasOff, float[] x, float[] y, float[] a, int[] pick) {
        int c2 = 2 * c;
        for (int t = t0; t < t1; t++) {
            int k0 = rowStart[t];
            int k1 = rowStart[t + 1];
            int xo = t * c;
            int k = k0;
            for (; k + 4 <= k1; k += 4) {
                dot4(block, rows[k] * c2, rows[k + 1] * c2, rows[k + 2] * c2, rows[k + 3] * c2, c, x, xo, a, k, 1);
            }
            for (; k < k1; k++) {
                a[k] = VectorOps.dot(block, rows[k] * c2, x, xo, c);
            }
            int m = relu(rows, k0, k1, bias, biasOff, a, pick);
            int p = k0;
            for (; p + 4 <= m; p += 4) {
                axpy4(a[p], a[p + 1], a[p + 2], a[p + 3], block, pick[p] * c2 + c, pick[p + 1] * c2 + c,
                        pick[p + 2] * c2 + c, pick[p + 3] * c2 + c, c, y, xo);
            }
            for (; p < m; p++) {
                VectorOps.axpy(a[p], block, pick[p] * c2 + c, y, xo, c);
            }
        }
    }

    /**
     * {@link #bundleConverted} reading the weights in their stored dtype instead: up rows at byte
     * {@code r rowBytes} of {@code up}, down columns at byte {@code r rowBytes} of {@code down}; for
     * blocks whose rows few tokens share, where converting a row costs more than it saves. Per token:
     * X[t] is copied to {@code xt} and split to {@code xs} ({@link #splitPairs}), the dots are
     * {@link #gatherRows}, the sum {@link #accumulateRows} over the surviving rows (16-bit: into
     * {@code acc} in split order, then {@link #addSplit}; an Inf/NaN f16 weight: redone exactly with
     * {@link #accumulateRowsExact} and {@code tmp}). Scratch arrays: c floats each.
     */
    public static void bundleDirect(MemorySegment up, MemorySegment down, DType dt, int c, long rowBytes, int t0,
                                    int t1, int[] rowStart, int[] rows, float[] bias, int biasOff, float[] x,
                                    float[] y, float[] a, int[] pick, float[] xt, float[] xs, float[] acc,
                                    float[] tmp) {
        for (int t = t0; t < t1; t++) {
            int k0 = rowStart[t];
            int k1 = rowStart[t + 1];
            if (k0 == k1) {
                continue;
            }
            int xo = t * c;
            System.arraycopy(x, xo, xt, 0, c);
            if (splitOrder(dt)) {
                splitPairs(xt, c, xs);
            }
            gatherRows(up, dt, c, rowBytes, rows, k0, k1, xt, xs, a);
            int m = relu(rows, k0, k1, bias, biasOff, a, pick);
            if (m == k0) {
                continue;
            }
            if (!splitOrder(dt)) { // F32 and quantized rows: natural order, straight into Y[t]
                accumulateRows(down, dt, rowBytes, pick, a, k0, m, 0, c, y, xo);
                continue;
            }
            Arrays.fill(acc, 0, c, 0f);
            if (accumulateRows(down, dt, rowBytes, pick, a, k0, m, 0, c, acc, 0)) {
                addSplit(dt, acc, 0, y, xo, c);
            } else {
                accumulateRowsExact(down, dt, rowBytes, pick, a, k0, m, c, y, xo, tmp);
            }
        }
    }

    /**
     * a[k] = max(a[k] + bias[biasOff + rows[k]], 0) (bias null: none; Math.max keeps a NaN), then the
     * k in [k0, k1) with a non-zero result are packed to the front: a[k0 .. m) their values,
     * pick[k0 .. m) their rows, in order. Returns m.
     */
    private static int relu(int[] rows, int k0, int k1, float[] bias, int biasOff, float[] a, int[] pick) {
        int m = k0;
        for (int k = k0; k < k1; k++) {
            float v = bias == null ? a[k] : a[k] + bias[biasOff + rows[k]];
            v = Math.max(v, 0f);
            if (v != 0f) {
                a[m] = v;
                pick[m++] = rows[k];
            }
        }
        return m;
    }

    // ---------------------------------------------------------------- transposed: weighted sums of rows

    /**
     * The active rows of h (the r entries from {@code hOff}): writes the i in [0, r) with
     * {@code h[hOff + i] != 0} (Java's {@code !=}: NaN is active, -0 is not) in ascending order to
     * {@code rows[0..m)} and the h values to {@code hv[0..m)}; returns m.
     * Blocks of L entries are tested with one vector compare, so runs of zeros (ReLU) cost little.
     */
    public static int nonZeros(float[] h, int hOff, int r, int[] rows, float[] hv) {
        int m = 0;
        int i = 0;
        for (int bound = F.loopBound(r); i < bound; i += L) {
            long bits = FloatVector.fromArray(F, h, hOff + i).compare(VectorOperators.NE, 0f).toLong();
            while (bits != 0) {
                int k = i + Long.numberOfTrailingZeros(bits);
                rows[m] = k;
                hv[m++] = h[hOff + k];
                bits &= bits - 1;
            }
        }
        for (; i < r; i++) {
            if (h[hOff + i] != 0f) {
                rows[m] = i;
                hv[m++] = h[hOff + i];
            }
        }
        return m;
    }

    /** How many of h[0 .. len) are non-zero ({@code !=}: NaN counts, -0 does not). */
    public static int countNonZeros(float[] h, int len) {
        int count = 0;
        int i = 0;
        for (int bound = F.loopBound(len); i < bound; i += L) {
            count += FloatVector.fromArray(F, h, i).compare(VectorOperators.NE, 0f).trueCount();
        }
        for (; i < len; i++) {
            if (h[i] != 0f) {
                count++;
            }
        }
        return count;
    }

    /**
     * As {@link #nonZeros} for n vectors: H is n x r row-major; writes the i in [0, r) with
     * {@code H[t, i] != 0} for at least one t to {@code rows[0..m)}, ascending; returns m.
     */
    public static int nonZeroColumns(float[] h, int n, int r, int[] rows) {
        int m = 0;
        int i = 0;
        for (int bound = F.loopBound(r); i < bound; i += L) {
            long bits = 0;
            for (int t = 0; t < n; t++) {
                bits |= FloatVector.fromArray(F, h, t * r + i).compare(VectorOperators.NE, 0f).toLong();
            }
            while (bits != 0) {
                rows[m++] = i + Long.numberOfTrailingZeros(bits);
                bits &= bits - 1;
            }
        }
        for (; i < r; i++) {
            for (int t = 0; t < n; t++) {
                if (h[t * r + i] != 0f) {
                    rows[m++] = i;
                    break;
                }
            }
        }
        return m;
    }

    /**
     * The transposed product over a list of rows and one column range:
     * acc[j] += sum_{k in [k0, k1)} hv[k] * W[rows[k], j] for j in [j0, j1), row i of W starting at byte
     * {@code i * rowBytes} of {@code w}. The len = j1 - j0 sums live at {@code acc[a .. a + len)}: in
     * natural order for F32; for F16 and BF16 in split order counted from j0 (as {@link #splitPairs}
     * writes x: each whole block of 2L columns as its L even then its L odd columns, the
     * {@code len mod 2L} last ones as they are), because the 16-bit rows are read with matvec's
     * even/odd trick (see the class comment) and never widened; {@link #addSplit} adds them into y.
     * <p>Four rows share each load and store of acc; as in {@link #matvecRows} they are k, k+q, k+2q,
     * k+3q of the list (quarters: four long streams for the prefetchers when the list is dense), and the
     * {@code (k1 - k0) mod 4} last rows go one at a time. Returns false, leaving acc unspecified, if an
     * F16 weight read by the vector loops is Inf or NaN: the caller then redoes the sums with
     * {@link #accumulateRowsExact}.
     */
    public static boolean accumulateRows(MemorySegment w, DType dt, long rowBytes, int[] rows, float[] hv,
                                         int k0, int k1, int j0, int j1, float[] acc, int a) {
        if (dt.isQuantized()) { // whole rows only (every caller's j0 is 0), natural order
            if (j0 != 0) {
                throw new IllegalArgumentException("quantized rows are summed whole, not from column " + j0);
            }
            QuantKernels.accumulateRows(w, dt, rowBytes, rows, hv, k0, k1, j1, acc, a);
            return true;
        }
        int len = j1 - j0;
        long jb = (long) j0 * dt.bytes();
        int q = (k1 - k0) / 4;
        int end = k0 + q;
        boolean finite = true;
        switch (dt) {
            case F32 -> {
                for (int k = k0; k < end; k++) {
                    acc4F32(w, rows[k] * rowBytes + jb, rows[k + q] * rowBytes + jb,
                            rows[k + 2 * q] * rowBytes + jb, rows[k + 3 * q] * rowBytes + jb,
                            hv[k], hv[k + q], hv[k + 2 * q], hv[k + 3 * q], len, acc, a);
                }
                for (int k = end + 3 * q; k < k1; k++) {
                    acc1F32(w, rows[k] * rowBytes + jb, hv[k], len, acc, a);
                }
            }
            case F16 -> {
                for (int k = k0; k < end; k++) {
                    finite &= acc4F16(w, rows[k] * rowBytes + jb, rows[k + q] * rowBytes + jb,
                            rows[k + 2 * q] * rowBytes + jb, rows[k + 3 * q] * rowBytes + jb,
                            hv[k], hv[k + q], hv[k + 2 * q], hv[k + 3 * q], len, acc, a);
                }
                for (int k = end + 3 * q; k < k1; k++) {
                    finite &= acc1F16(w, rows[k] * rowBytes + jb, hv[k], len, acc, a);
                }
            }
            case BF16 -> {
                for (int k = k0; k < end; k++) {
                    acc4Bf16(w, rows[k] * rowBytes + jb, rows[k + q] * rowBytes + jb,
                            rows[k + 2 * q] * rowBytes + jb, rows[k + 3 * q] * rowBytes + jb,
                            hv[k], hv[k + q], hv[k + 2 * q], hv[k + 3 * q], len, acc, a);
                }
                for (int k = end + 3 * q; k < k1; k++) {
                    acc1Bf16(w, rows[k] * rowBytes + jb, hv[k], len, acc, a);
                }
            }
            default -> throw unsupported(dt);
        }
        return finite;
    }

    /**
     * y[j0 + j] += the sums {@link #accumulateRows} left at {@code acc[a .. a + len)} for dtype dt,
     * undoing the split order of the 16-bit dtypes (a two-vector rearrange per 2L columns).
     */
    public static void addSplit(DType dt, float[] acc, int a, float[] y, int j0, int len) {
        int j = 0;
        if (splitOrder(dt)) {
            for (int bound = len - len % (2 * L); j < bound; j += 2 * L) {
                FloatVector e = FloatVector.fromArray(F, acc, a + j);
                FloatVector o = FloatVector.fromArray(F, acc, a + j + L);
                FloatVector.fromArray(F, y, j0 + j).add(e.rearrange(ZIP_LOW, o)).intoArray(y, j0 + j);
                FloatVector.fromArray(F, y, j0 + j + L).add(e.rearrange(ZIP_HIGH, o)).intoArray(y, j0 + j + L);
            }
        }
        for (int bound = F.loopBound(len); j < bound; j += L) {
            FloatVector.fromArray(F, y, j0 + j).add(FloatVector.fromArray(F, acc, a + j)).intoArray(y, j0 + j);
        }
        for (; j < len; j++) {
            y[j0 + j] += acc[a + j];
        }
    }

    /**
     * y[yOff + j] += sum_{k in [k0, k1)} hv[k] * W[rows[k], j] for j in [0, c), natural order, each
     * row converted exactly ({@link #toF32At}) into {@code tmp} (length >= c) and added with one FMA
     * per element: the slow path that gets Inf and NaN weights right.
     */
    public static void accumulateRowsExact(MemorySegment w, DType dt, long rowBytes, int[] rows, float[] hv,
                                           int k0, int k1, int c, float[] y, int yOff, float[] tmp) {
        for (int k = k0; k < k1; k++) {
            toF32At(w, dt, rows[k] * rowBytes, tmp, 0, c);
            VectorOps.axpy(hv[k], tmp, 0, y, yOff, c);
        }
    }

    /**
     * The n-vector transposed product over a list of rows and one column range: for every t in [0, n)
     * and j in [j0, j1), Y[t, j] += sum_{k in [k0, k1), H[t, rows[k]] != 0} H[t, rows[k]] * W[rows[k], j];
     * H is n x r and Y is n x c, row-major; rows of W as in {@link #accumulateRows}. {@link #GROUP}
     * rows' column ranges at a time (rows k..k+3 of each quarter of the list: four streams, as there)
     * are converted to f32 once, exactly and four in step ({@link #toF32x4}), into {@code scratch}
     * (length >= GROUP (j1 - j0)); then for each t the rows with a non-zero H[t, .] are gathered and
     * added into Y[t] four at a time (one load and store of Y per four rows; 16 rows instead of 4 per
     * group made this 1.2x faster at 25% active), the rest one by one. A zero H is skipped, not
     * multiplied: 0 * Inf would be NaN.
     */
    public static void matmulAccumulateRows(MemorySegment w, DType dt, long rowBytes, int[] rows, int k0, int k1,
                                            float[] h, int n, int r, int j0, int j1, float[] y, int c,
                                            float[] scratch) {
        int len = j1 - j0;
        boolean quantized = dt.isQuantized();
        long jb = quantized ? 0 : (long) j0 * dt.bytes();
        int q = (k1 - k0) / 4;
        int[] group = new int[GROUP];
        int[] pick = new int[GROUP];
        float[] hp = new float[GROUP];
        for (int k = k0, g; k < k0 + q; k += g) {
            g = Math.min(4, k0 + q - k); // rows k .. k+g-1 of each quarter
            for (int v = 0; v < g; v++) {
                group[4 * v] = rows[k + v];
                group[4 * v + 1] = rows[k + v + q];
                group[4 * v + 2] = rows[k + v + 2 * q];
                group[4 * v + 3] = rows[k + v + 3 * q];
                if (quantized) { // columns [j0, j1) of whole blocks: scales and quants found from the row's start
                    for (int u = 0; u < 4; u++) {
                        QuantKernels.toF32Columns(w, dt, group[4 * v + u] * rowBytes, c, j0, len, scratch,
                                (4 * v + u) * len);
                    }
                    continue;
                }
                toF32x4(w, dt, group[4 * v] * rowBytes + jb, group[4 * v + 1] * rowBytes + jb,
                        group[4 * v + 2] * rowBytes + jb, group[4 * v + 3] * rowBytes + jb, scratch, 4 * v * len, len);
            }
            addGroup(group, 4 * g, h, n, r, scratch, len, y, c, j0, pick, hp);
        }
        for (int k = k0 + 4 * q; k < k1; k++) {
            group[0] = rows[k];
            if (quantized) {
                QuantKernels.toF32Columns(w, dt, rows[k] * rowBytes, c, j0, len, scratch, 0);
            } else {
                toF32At(w, dt, rows[k] * rowBytes + jb, scratch, 0, len);
            }
            addGroup(group, 1, h, n, r, scratch, len, y, c, j0, pick, hp);
        }
    }

    /**
     * Y[t, j0 + j] += sum_u H[t, group[u]] * scratch[u len + j] over the u in [0, g) with a non-zero H,
     * for every t: the non-zero rows of each t are gathered first and added four at a time (one load
     * and store of Y per four rows), the last ones singly.
     */
    private static void addGroup(int[] group, int g, float[] h, int n, int r, float[] scratch, int len, float[] y,
                                 int c, int j0, int[] pick, float[] hp) {
        for (int t = 0; t < n; t++) {
            int ht = t * r;
            int cnt = 0;
            for (int u = 0; u < g; u++) {
                float hu = h[ht + group[u]];
                if (hu != 0f) {
                    pick[cnt] = u * len;
                    hp[cnt++] = hu;
                }
            }
            int yo = t * c + j0;
            int p = 0;
            for (; p + 4 <= cnt; p += 4) {
                axpy4(hp[p], hp[p + 1], hp[p + 2], hp[p + 3], scratch, pick[p], pick[p + 1], pick[p + 2], pick[p + 3],
                        len, y, yo);
            }
            for (; p < cnt; p++) {
                VectorOps.axpy(hp[p], scratch, pick[p], y, yo, len);
            }
        }
    }

    /**
     * out[at + u len + j] = the element j of the row at byte o_u, for u = 0..3 and j in [0, len): four
     * rows converted exactly as {@link #toF32At} does, but read in step, so that a thread keeps four
     * memory streams going: converting one row after the other made {@link #matmulAccumulateRows}
     * 1.1-1.5x slower on scattered bundle rows (f16, d = 4096, 16 KB stride, n = 3 and 17).
     */
    static void toF32x4(MemorySegment w, DType dt, long o0, long o1, long o2, long o3, float[] out, int at, int len) {
        if (dt.isQuantized()) { // whole rows of len weights
            QuantKernels.toF32(w, dt, o0, out, at, len);
            QuantKernels.toF32(w, dt, o1, out, at + len, len);
            QuantKernels.toF32(w, dt, o2, out, at + 2 * len, len);
            QuantKernels.toF32(w, dt, o3, out, at + 3 * len, len);
            return;
        }
        int bound = F.loopBound(len);
        int j = 0;
        switch (dt) {
            case F32 -> {
                for (; j < bound; j += L) {
                    long b = 4L * j;
                    loadF32(w, o0 + b).intoArray(out, at + j);
                    loadF32(w, o1 + b).intoArray(out, at + len + j);
                    loadF32(w, o2 + b).intoArray(out, at + 2 * len + j);
                    loadF32(w, o3 + b).intoArray(out, at + 3 * len + j);
                }
            }
            case F16 -> {
                // loadF16 spelled out (see the C2 note: four calls of it here are not inlined, 6x
                // slower), and e = 31 flagged instead of fixed per lane: (h & 0x7C00) + 0x0400 sets
                // bit 15 iff the half is Inf/NaN; then the four rows are converted again exactly.
                IntVector special = IntVector.zero(I);
                for (; j < bound; j += L) {
                    long b = 2L * j;
                    IntVector h0 = (IntVector) ShortVector.fromMemorySegment(S, w, o0 + b, LE)
                            .convertShape(VectorOperators.S2I, I, 0);
                    IntVector h1 = (IntVector) ShortVector.fromMemorySegment(S, w, o1 + b, LE)
                            .convertShape(VectorOperators.S2I, I, 0);
                    IntVector h2 = (IntVector) ShortVector.fromMemorySegment(S, w, o2 + b, LE)
                            .convertShape(VectorOperators.S2I, I, 0);
                    IntVector h3 = (IntVector) ShortVector.fromMemorySegment(S, w, o3 + b, LE)
                            .convertShape(VectorOperators.S2I, I, 0);
                    h0.lanewise(VectorOperators.LSHL, 13).and(HALF_BITS_MASK).reinterpretAsFloats().mul(HALF_REBIAS)
                            .intoArray(out, at + j);
                    h1.lanewise(VectorOperators.LSHL, 13).and(HALF_BITS_MASK).reinterpretAsFloats().mul(HALF_REBIAS)
                            .intoArray(out, at + len + j);
                    h2.lanewise(VectorOperators.LSHL, 13).and(HALF_BITS_MASK).reinterpretAsFloats().mul(HALF_REBIAS)
                            .intoArray(out, at + 2 * len + j);
                    h3.lanewise(VectorOperators.LSHL, 13).and(HALF_BITS_MASK).reinterpretAsFloats().mul(HALF_REBIAS)
                            .intoArray(out, at + 3 * len + j);
                    special = special.or(h0.and(HALF_EXPONENT).add(HALF_EXPONENT_ONE))
                            .or(h1.and(HALF_EXPONENT).add(HALF_EXPONENT_ONE))
                            .or(h2.and(HALF_EXPONENT).add(HALF_EXPONENT_ONE))
                            .or(h3.and(HALF_EXPONENT).add(HALF_EXPONENT_ONE));
                }
                if (special.and(HALF_CARRY).reduceLanes(VectorOperators.OR) != 0) {
                    toF32At(w, dt, o0, out, at, j);
                    toF32At(w, dt, o1, out, at + len, j);
                    toF32At(w, dt, o2, out, at + 2 * len, j);
                    toF32At(w, dt, o3, out, at + 3 * len, j);
                }
            }
            case BF16 -> {
                for (; j < bound; j += L) {
                    long b = 2L * j;
                    ((IntVector) ShortVector.fromMemorySegment(S, w, o0 + b, LE).convertShape(VectorOperators.S2I, I, 0))
                            .lanewise(VectorOperators.LSHL, 16).reinterpretAsFloats().intoArray(out, at + j);
                    ((IntVector) ShortVector.fromMemorySegment(S, w, o1 + b, LE).convertShape(VectorOperators.S2I, I, 0))
                            .lanewise(VectorOperators.LSHL, 16).reinterpretAsFloats().intoArray(out, at + len + j);
                    ((IntVector) ShortVector.fromMemorySegment(S, w, o2 + b, LE).convertShape(VectorOperators.S2I, I, 0))
                            .lanewise(VectorOperators.LSHL, 16).reinterpretAsFloats().intoArray(out, at + 2 * len + j);
                    ((IntVector) ShortVector.fromMemorySegment(S, w, o3 + b, LE).convertShape(VectorOperators.S2I, I, 0))
                            .lanewise(VectorOperators.LSHL, 16).reinterpretAsFloats().intoArray(out, at + 3 * len + j);
                }
            }
            default -> throw unsupported(dt);
        }
        int tail = len - j;
        if (tail > 0) {
            toF32At(w, dt, o0 + (long) j * dt.bytes(), out, at + j, tail);
            toF32At(w, dt, o1 + (long) j * dt.bytes(), out, at + len + j, tail);
            toF32At(w, dt, o2 + (long) j * dt.bytes(), out, at + 2 * len + j, tail);
            toF32At(w, dt, o3 + (long) j * dt.bytes(), out, at + 3 * len + j, tail);
        }
    }

    /** y[yo + j] += h0 s[s0 + j] + h1 s[s1 + j] + h2 s[s2 + j] + h3 s[s3 + j] for j in [0, len). */
    private static void axpy4(float h0, float h1, float h2, float h3, float[] s, int s0, int s1, int s2, int s3,
                              int len, float[] y, int yo) {
        FloatVector g0 = FloatVector.broadcast(F, h0);
        FloatVector g1 = FloatVector.broadcast(F, h1);
        FloatVector g2 = FloatVector.broadcast(F, h2);
        FloatVector g3 = FloatVector.broadcast(F, h3);
        int j = 0;
        for (int bound = F.loopBound(len); j < bound; j += L) {
            FloatVector acc = FloatVector.fromArray(F, y, yo + j);
            acc = FloatVector.fromArray(F, s, s0 + j).fma(g0, acc);
            acc = FloatVector.fromArray(F, s, s1 + j).fma(g1, acc);
            acc = FloatVector.fromArray(F, s, s2 + j).fma(g2, acc);
            acc = FloatVector.fromArray(F, s, s3 + j).fma(g3, acc);
            acc.intoArray(y, yo + j);
        }
        for (; j < len; j++) {
            float acc = y[yo + j];
            acc = Math.fma(s[s0 + j], h0, acc);
            acc = Math.fma(s[s1 + j], h1, acc);
            acc = Math.fma(s[s2 + j], h2, acc);
            y[yo + j] = Math.fma(s[s3 + j], h3, acc);
        }
    }

    /** acc[a + j] += sum_k h_k * W_k[j], j in [0, len), for the four f32 rows at byte offsets o0..o3. */
    private static void acc4F32(MemorySegment w, long o0, long o1, long o2, long o3,
                                float h0, float h1, float h2, float h3, int len, float[] acc, int a) {
        FloatVector g0 = FloatVector.broadcast(F, h0);
        FloatVector g1 = FloatVector.broadcast(F, h1);
        FloatVector g2 = FloatVector.broadcast(F, h2);
        FloatVector g3 = FloatVector.broadcast(F, h3);
        int j = 0;
        for (int bound = F.loopBound(len); j < bound; j += L) {
            long b = 4L * j;
            FloatVector s = FloatVector.fromArray(F, acc, a + j);
            s = FloatVector.fromMemorySegment(F, w, o0 + b, LE).fma(g0, s);
            s = FloatVector.fromMemorySegment(F, w, o1 + b, LE).fma(g1, s);
            s = FloatVector.fromMemorySegment(F, w, o2 + b, LE).fma(g2, s);
            s = FloatVector.fromMemorySegment(F, w, o3 + b, LE).fma(g3, s);
            s.intoArray(acc, a + j);
        }
        for (; j < len; j++) {
            long b = 4L * j;
            acc[a + j] += h0 * f32(w, o0 + b) + h1 * f32(w, o1 + b) + h2 * f32(w, o2 + b) + h3 * f32(w, o3 + b);
        }
    }

    private static void acc1F32(MemorySegment w, long o, float h, int len, float[] acc, int a) {
        FloatVector g = FloatVector.broadcast(F, h);
        int j = 0;
        for (int bound = F.loopBound(len); j < bound; j += L) {
            FloatVector.fromMemorySegment(F, w, o + 4L * j, LE).fma(g, FloatVector.fromArray(F, acc, a + j))
                    .intoArray(acc, a + j);
        }
        for (; j < len; j++) {
            acc[a + j] += h * f32(w, o + 4L * j);
        }
    }

    /**
     * As {@link #acc4F32}, f16 rows, acc in split order: the even (low) halves of the L 32-bit lanes
     * at column j go to acc[a + j ..], the odd (high) halves to acc[a + j + L ..]; e = 31 is flagged as
     * in {@link #dot4F16}. Returns false, acc then unspecified, if a weight is Inf or NaN.
     */
    private static boolean acc4F16(MemorySegment w, long o0, long o1, long o2, long o3,
                                   float h0, float h1, float h2, float h3, int len, float[] acc, int a) {
        FloatVector g0 = FloatVector.broadcast(F, h0);
        FloatVector g1 = FloatVector.broadcast(F, h1);
        FloatVector g2 = FloatVector.broadcast(F, h2);
        FloatVector g3 = FloatVector.broadcast(F, h3);
        IntVector special = IntVector.zero(I);
        int j = 0;
        for (int bound = len - len % (2 * L); j < bound; j += 2 * L) {
            long b = 2L * j;
            IntVector v0 = IntVector.fromMemorySegment(I, w, o0 + b, LE);
            IntVector v1 = IntVector.fromMemorySegment(I, w, o1 + b, LE);
            IntVector v2 = IntVector.fromMemorySegment(I, w, o2 + b, LE);
            IntVector v3 = IntVector.fromMemorySegment(I, w, o3 + b, LE);
            FloatVector e = FloatVector.fromArray(F, acc, a + j);
            FloatVector o = FloatVector.fromArray(F, acc, a + j + L);
            e = v0.lanewise(VectorOperators.LSHL, 16).lanewise(VectorOperators.ASHR, 3).and(HALF_BITS_MASK)
                    .reinterpretAsFloats().mul(HALF_REBIAS).fma(g0, e);
            o = v0.lanewise(VectorOperators.ASHR, 3).and(HALF_BITS_MASK)
                    .reinterpretAsFloats().mul(HALF_REBIAS).fma(g0, o);
            e = v1.lanewise(VectorOperators.LSHL, 16).lanewise(VectorOperators.ASHR, 3).and(HALF_BITS_MASK)
                    .reinterpretAsFloats().mul(HALF_REBIAS).fma(g1, e);
            o = v1.lanewise(VectorOperators.ASHR, 3).and(HALF_BITS_MASK)
                    .reinterpretAsFloats().mul(HALF_REBIAS).fma(g1, o);
            e = v2.lanewise(VectorOperators.LSHL, 16).lanewise(VectorOperators.ASHR, 3).and(HALF_BITS_MASK)
                    .reinterpretAsFloats().mul(HALF_REBIAS).fma(g2, e);
            o = v2.lanewise(VectorOperators.ASHR, 3).and(HALF_BITS_MASK)
                    .reinterpretAsFloats().mul(HALF_REBIAS).fma(g2, o);
            e = v3.lanewise(VectorOperators.LSHL, 16).lanewise(VectorOperators.ASHR, 3).and(HALF_BITS_MASK)
                    .reinterpretAsFloats().mul(HALF_REBIAS).fma(g3, e);
            o = v3.lanewise(VectorOperators.ASHR, 3).and(HALF_BITS_MASK)
                    .reinterpretAsFloats().mul(HALF_REBIAS).fma(g3, o);
            e.intoArray(acc, a + j);
            o.intoArray(acc, a + j + L);
            special = special.or(v0.and(HALF_PAIR_EXPONENTS).add(HALF_PAIR_EXPONENT_ONE))
                    .or(v1.and(HALF_PAIR_EXPONENTS).add(HALF_PAIR_EXPONENT_ONE))
                    .or(v2.and(HALF_PAIR_EXPONENTS).add(HALF_PAIR_EXPONENT_ONE))
                    .or(v3.and(HALF_PAIR_EXPONENTS).add(HALF_PAIR_EXPONENT_ONE));
        }
        for (; j < len; j++) {
            long b = 2L * j;
            acc[a + j] += h0 * f16(w, o0 + b) + h1 * f16(w, o1 + b) + h2 * f16(w, o2 + b) + h3 * f16(w, o3 + b);
        }
        return special.and(HALF_PAIR_CARRIES).reduceLanes(VectorOperators.OR) == 0;
    }

    private static boolean acc1F16(MemorySegment w, long o0, float h, int len, float[] acc, int a) {
        FloatVector g = FloatVector.broadcast(F, h);
        IntVector special = IntVector.zero(I);
        int j = 0;
        for (int bound = len - len % (2 * L); j < bound; j += 2 * L) {
            IntVector v = IntVector.fromMemorySegment(I, w, o0 + 2L * j, LE);
            v.lanewise(VectorOperators.LSHL, 16).lanewise(VectorOperators.ASHR, 3).and(HALF_BITS_MASK)
                    .reinterpretAsFloats().mul(HALF_REBIAS).fma(g, FloatVector.fromArray(F, acc, a + j))
                    .intoArray(acc, a + j);
            v.lanewise(VectorOperators.ASHR, 3).and(HALF_BITS_MASK)
                    .reinterpretAsFloats().mul(HALF_REBIAS).fma(g, FloatVector.fromArray(F, acc, a + j + L))
                    .intoArray(acc, a + j + L);
            special = special.or(v.and(HALF_PAIR_EXPONENTS).add(HALF_PAIR_EXPONENT_ONE));
        }
        for (; j < len; j++) {
            acc[a + j] += h * f16(w, o0 + 2L * j);
        }
        return special.and(HALF_PAIR_CARRIES).reduceLanes(VectorOperators.OR) == 0;
    }

    /** As {@link #acc4F16}, bf16 rows (low halves {@code v << 16}, high halves {@code v & 0xFFFF0000}). */
    private static void acc4Bf16(MemorySegment w, long o0, long o1, long o2, long o3,
                                 float h0, float h1, float h2, float h3, int len, float[] acc, int a) {
        FloatVector g0 = FloatVector.broadcast(F, h0);
        FloatVector g1 = FloatVector.broadcast(F, h1);
        FloatVector g2 = FloatVector.broadcast(F, h2);
        FloatVector g3 = FloatVector.broadcast(F, h3);
        int j = 0;
        for (int bound = len - len % (2 * L); j < bound; j += 2 * L) {
            long b = 2L * j;
            IntVector v0 = IntVector.fromMemorySegment(I, w, o0 + b, LE);
            IntVector v1 = IntVector.fromMemorySegment(I, w, o1 + b, LE);
            IntVector v2 = IntVector.fromMemorySegment(I, w, o2 + b, LE);
            IntVector v3 = IntVector.fromMemorySegment(I, w, o3 + b, LE);
            FloatVector e = FloatVector.fromArray(F, acc, a + j);
            FloatVector o = FloatVector.fromArray(F, acc, a + j + L);
            e = v0.lanewise(VectorOperators.LSHL, 16).reinterpretAsFloats().fma(g0, e);
            o = v0.and(BF16_HIGH).reinterpretAsFloats().fma(g0, o);
            e = v1.lanewise(VectorOperators.LSHL, 16).reinterpretAsFloats().fma(g1, e);
            o = v1.and(BF16_HIGH).reinterpretAsFloats().fma(g1, o);
            e = v2.lanewise(VectorOperators.LSHL, 16).reinterpretAsFloats().fma(g2, e);
            o = v2.and(BF16_HIGH).reinterpretAsFloats().fma(g2, o);
            e = v3.lanewise(VectorOperators.LSHL, 16).reinterpretAsFloats().fma(g3, e);
            o = v3.and(BF16_HIGH).reinterpretAsFloats().fma(g3, o);
            e.intoArray(acc, a + j);
            o.intoArray(acc, a + j + L);
        }
        for (; j < len; j++) {
            long b = 2L * j;
            acc[a + j] += h0 * bf16(w, o0 + b) + h1 * bf16(w, o1 + b) + h2 * bf16(w, o2 + b) + h3 * bf16(w, o3 + b);
        }
    }

    private static void acc1Bf16(MemorySegment w, long o0, float h, int len, float[] acc, int a) {
        FloatVector g = FloatVector.broadcast(F, h);
        int j = 0;
        for (int bound = len - len % (2 * L); j < bound; j += 2 * L) {
            IntVector v = IntVector.fromMemorySegment(I, w, o0 + 2L * j, LE);
            v.lanewise(VectorOperators.LSHL, 16).reinterpretAsFloats()
                    .fma(g, FloatVector.fromArray(F, acc, a + j)).intoArray(acc, a + j);
            v.and(BF16_HIGH).reinterpretAsFloats()
                    .fma(g, FloatVector.fromArray(F, acc, a + j + L)).intoArray(acc, a + j + L);
        }
        for (; j < len; j++) {
            acc[a + j] += h * bf16(w, o0 + 2L * j);
        }
    }

    private static IllegalArgumentException unsupported(DType dt) {
        return new IllegalArgumentException("kernels compute on F32, F16, BF16, Q8_0, Q4_0; got " + dt);
    }

    /** True for the 16-bit dtypes, whose fused loops read x and keep sums in split order ({@link #splitPairs}). */
    static boolean splitOrder(DType dt) {
        return dt == DType.F16 || dt == DType.BF16;
    }

    // ---------------------------------------------------------------- one row (r mod 4 rows, Inf/NaN redo)

    private static float dotF32(MemorySegment w, long off, float[] x, int xOff, int c) {
        FloatVector acc = FloatVector.zero(F);
        int j = 0;
        for (int bound = F.loopBound(c); j < bound; j += L) {
            acc = loadF32(w, off + 4L * j).fma(FloatVector.fromArray(F, x, xOff + j), acc);
        }
        float s = acc.reduceLanes(VectorOperators.ADD);
        for (; j < c; j++) {
            s += f32(w, off + 4L * j) * x[xOff + j];
        }
        return s;
    }

    private static float dotF16(MemorySegment w, long off, float[] x, int xOff, int c) {
        FloatVector acc = FloatVector.zero(F);
        int j = 0;
        for (int bound = F.loopBound(c); j < bound; j += L) {
            acc = loadF16(w, off + 2L * j).fma(FloatVector.fromArray(F, x, xOff + j), acc);
        }
        float s = acc.reduceLanes(VectorOperators.ADD);
        for (; j < c; j++) {
            s += f16(w, off + 2L * j) * x[xOff + j];
        }
        return s;
    }

    private static float dotBf16(MemorySegment w, long off, float[] x, int xOff, int c) {
        FloatVector acc = FloatVector.zero(F);
        int j = 0;
        for (int bound = F.loopBound(c); j < bound; j += L) {
            acc = loadBf16(w, off + 2L * j).fma(FloatVector.fromArray(F, x, xOff + j), acc);
        }
        float s = acc.reduceLanes(VectorOperators.ADD);
        for (; j < c; j++) {
            s += bf16(w, off + 2L * j) * x[xOff + j];
        }
        return s;
    }

    // ---------------------------------------------------------------- four rows: y[i + k q], k = 0..3

    /** The rows at byte offsets off, o1, o2, o3 into y[i + k q] (k = 0..3): f32 weights, natural-order x. */
    private static void dot4F32(MemorySegment w, long off, long o1, long o2, long o3, int c, float[] x, float[] y,
                                int i, int q) {
        FloatVector a0 = FloatVector.zero(F);
        FloatVector a1 = FloatVector.zero(F);
        FloatVector a2 = FloatVector.zero(F);
        FloatVector a3 = FloatVector.zero(F);
        int j = 0;
        for (int bound = F.loopBound(c); j < bound; j += L) {
            FloatVector xv = FloatVector.fromArray(F, x, j);
            long b = 4L * j;
            a0 = FloatVector.fromMemorySegment(F, w, off + b, LE).fma(xv, a0);
            a1 = FloatVector.fromMemorySegment(F, w, o1 + b, LE).fma(xv, a1);
            a2 = FloatVector.fromMemorySegment(F, w, o2 + b, LE).fma(xv, a2);
            a3 = FloatVector.fromMemorySegment(F, w, o3 + b, LE).fma(xv, a3);
        }
        float s0 = a0.reduceLanes(VectorOperators.ADD);
        float s1 = a1.reduceLanes(VectorOperators.ADD);
        float s2 = a2.reduceLanes(VectorOperators.ADD);
        float s3 = a3.reduceLanes(VectorOperators.ADD);
        for (; j < c; j++) {
            float xj = x[j];
            long b = 4L * j;
            s0 += f32(w, off + b) * xj;
            s1 += f32(w, o1 + b) * xj;
            s2 += f32(w, o2 + b) * xj;
            s3 += f32(w, o3 + b) * xj;
        }
        y[i] = s0;
        y[i + q] = s1;
        y[i + 2 * q] = s2;
        y[i + 3 * q] = s3;
    }

    /**
     * As {@link #dot4F32}, f16 weights, x split into xs (see the class comment for the even/odd split
     * and the e = 31 flag; tail columns use x). Returns false,
     * leaving y unspecified, if a weight is Inf or NaN.
     */
    private static boolean dot4F16(MemorySegment w, long off, long o1, long o2, long o3, int c, float[] x,
                                   float[] xs, float[] y, int i, int q) {
        FloatVector a0 = FloatVector.zero(F);
        FloatVector a1 = FloatVector.zero(F);
        FloatVector a2 = FloatVector.zero(F);
        FloatVector a3 = FloatVector.zero(F);
        IntVector special = IntVector.zero(I);
        int j = 0;
        for (int bound = c - c % (2 * L); j < bound; j += 2 * L) {
            FloatVector xe = FloatVector.fromArray(F, xs, j);
            FloatVector xo = FloatVector.fromArray(F, xs, j + L);
            long b = 2L * j;
            IntVector v0 = IntVector.fromMemorySegment(I, w, off + b, LE);
            IntVector v1 = IntVector.fromMemorySegment(I, w, o1 + b, LE);
            IntVector v2 = IntVector.fromMemorySegment(I, w, o2 + b, LE);
            IntVector v3 = IntVector.fromMemorySegment(I, w, o3 + b, LE);
            a0 = v0.lanewise(VectorOperators.LSHL, 16).lanewise(VectorOperators.ASHR, 3).and(HALF_BITS_MASK)
                    .reinterpretAsFloats().mul(HALF_REBIAS).fma(xe, a0);
            a0 = v0.lanewise(VectorOperators.ASHR, 3).and(HALF_BITS_MASK)
                    .reinterpretAsFloats().mul(HALF_REBIAS).fma(xo, a0);
            a1 = v1.lanewise(VectorOperators.LSHL, 16).lanewise(VectorOperators.ASHR, 3).and(HALF_BITS_MASK)
                    .reinterpretAsFloats().mul(HALF_REBIAS).fma(xe, a1);
            a1 = v1.lanewise(VectorOperators.ASHR, 3).and(HALF_BITS_MASK)
                    .reinterpretAsFloats().mul(HALF_REBIAS).fma(xo, a1);
            a2 = v2.lanewise(VectorOperators.LSHL, 16).lanewise(VectorOperators.ASHR, 3).and(HALF_BITS_MASK)
                    .reinterpretAsFloats().mul(HALF_REBIAS).fma(xe, a2);
            a2 = v2.lanewise(VectorOperators.ASHR, 3).and(HALF_BITS_MASK)
                    .reinterpretAsFloats().mul(HALF_REBIAS).fma(xo, a2);
            a3 = v3.lanewise(VectorOperators.LSHL, 16).lanewise(VectorOperators.ASHR, 3).and(HALF_BITS_MASK)
                    .reinterpretAsFloats().mul(HALF_REBIAS).fma(xe, a3);
            a3 = v3.lanewise(VectorOperators.ASHR, 3).and(HALF_BITS_MASK)
                    .reinterpretAsFloats().mul(HALF_REBIAS).fma(xo, a3);
            special = special.or(v0.and(HALF_PAIR_EXPONENTS).add(HALF_PAIR_EXPONENT_ONE))
                    .or(v1.and(HALF_PAIR_EXPONENTS).add(HALF_PAIR_EXPONENT_ONE))
                    .or(v2.and(HALF_PAIR_EXPONENTS).add(HALF_PAIR_EXPONENT_ONE))
                    .or(v3.and(HALF_PAIR_EXPONENTS).add(HALF_PAIR_EXPONENT_ONE));
        }
        if (special.and(HALF_PAIR_CARRIES).reduceLanes(VectorOperators.OR) != 0) {
            return false;
        }
        float s0 = a0.reduceLanes(VectorOperators.ADD);
        float s1 = a1.reduceLanes(VectorOperators.ADD);
        float s2 = a2.reduceLanes(VectorOperators.ADD);
        float s3 = a3.reduceLanes(VectorOperators.ADD);
        for (; j < c; j++) {
            float xj = x[j];
            long b = 2L * j;
            s0 += f16(w, off + b) * xj;
            s1 += f16(w, o1 + b) * xj;
            s2 += f16(w, o2 + b) * xj;
            s3 += f16(w, o3 + b) * xj;
        }
        y[i] = s0;
        y[i + q] = s1;
        y[i + 2 * q] = s2;
        y[i + 3 * q] = s3;
        return true;
    }

    /**
     * As {@link #dot4F32}, bf16 weights, even/odd split: low halves {@code v << 16}, high halves
     * {@code v & 0xFFFF0000}. The main loop is unrolled by hand to 4L columns per step: its one-step
     * body is so small that C2 unrolls it on its own when the profiled trip count is long, and that
     * version read DRAM up to 1.5x slower (measured, 4096 columns); the larger body is left alone.
     */
    private static void dot4Bf16(MemorySegment w, long off, long o1, long o2, long o3, int c, float[] x,
                                 float[] xs, float[] y, int i, int q) {
        FloatVector a0 = FloatVector.zero(F);
        FloatVector a1 = FloatVector.zero(F);
        FloatVector a2 = FloatVector.zero(F);
        FloatVector a3 = FloatVector.zero(F);
        int j = 0;
        for (int bound = c - 4 * L; j <= bound; j += 4 * L) {
            FloatVector xe = FloatVector.fromArray(F, xs, j);
            FloatVector xo = FloatVector.fromArray(F, xs, j + L);
            FloatVector xe2 = FloatVector.fromArray(F, xs, j + 2 * L);
            FloatVector xo2 = FloatVector.fromArray(F, xs, j + 3 * L);
            long b = 2L * j;
            long b2 = b + 4L * L;
            IntVector v0 = IntVector.fromMemorySegment(I, w, off + b, LE);
            IntVector v1 = IntVector.fromMemorySegment(I, w, o1 + b, LE);
            IntVector v2 = IntVector.fromMemorySegment(I, w, o2 + b, LE);
            IntVector v3 = IntVector.fromMemorySegment(I, w, o3 + b, LE);
            IntVector u0 = IntVector.fromMemorySegment(I, w, off + b2, LE);
            IntVector u1 = IntVector.fromMemorySegment(I, w, o1 + b2, LE);
            IntVector u2 = IntVector.fromMemorySegment(I, w, o2 + b2, LE);
            IntVector u3 = IntVector.fromMemorySegment(I, w, o3 + b2, LE);
            a0 = v0.lanewise(VectorOperators.LSHL, 16).reinterpretAsFloats().fma(xe, a0);
            a0 = v0.and(BF16_HIGH).reinterpretAsFloats().fma(xo, a0);
            a1 = v1.lanewise(VectorOperators.LSHL, 16).reinterpretAsFloats().fma(xe, a1);
            a1 = v1.and(BF16_HIGH).reinterpretAsFloats().fma(xo, a1);
            a2 = v2.lanewise(VectorOperators.LSHL, 16).reinterpretAsFloats().fma(xe, a2);
            a2 = v2.and(BF16_HIGH).reinterpretAsFloats().fma(xo, a2);
            a3 = v3.lanewise(VectorOperators.LSHL, 16).reinterpretAsFloats().fma(xe, a3);
            a3 = v3.and(BF16_HIGH).reinterpretAsFloats().fma(xo, a3);
            a0 = u0.lanewise(VectorOperators.LSHL, 16).reinterpretAsFloats().fma(xe2, a0);
            a0 = u0.and(BF16_HIGH).reinterpretAsFloats().fma(xo2, a0);
            a1 = u1.lanewise(VectorOperators.LSHL, 16).reinterpretAsFloats().fma(xe2, a1);
            a1 = u1.and(BF16_HIGH).reinterpretAsFloats().fma(xo2, a1);
            a2 = u2.lanewise(VectorOperators.LSHL, 16).reinterpretAsFloats().fma(xe2, a2);
            a2 = u2.and(BF16_HIGH).reinterpretAsFloats().fma(xo2, a2);
            a3 = u3.lanewise(VectorOperators.LSHL, 16).reinterpretAsFloats().fma(xe2, a3);
            a3 = u3.and(BF16_HIGH).reinterpretAsFloats().fma(xo2, a3);
        }
        if (j <= c - 2 * L) { // one 2L step left
            FloatVector xe = FloatVector.fromArray(F, xs, j);
            FloatVector xo = FloatVector.fromArray(F, xs, j + L);
            long b = 2L * j;
            IntVector v0 = IntVector.fromMemorySegment(I, w, off + b, LE);
            IntVector v1 = IntVector.fromMemorySegment(I, w, o1 + b, LE);
            IntVector v2 = IntVector.fromMemorySegment(I, w, o2 + b, LE);
            IntVector v3 = IntVector.fromMemorySegment(I, w, o3 + b, LE);
            a0 = v0.lanewise(VectorOperators.LSHL, 16).reinterpretAsFloats().fma(xe, a0);
            a0 = v0.and(BF16_HIGH).reinterpretAsFloats().fma(xo, a0);
            a1 = v1.lanewise(VectorOperators.LSHL, 16).reinterpretAsFloats().fma(xe, a1);
            a1 = v1.and(BF16_HIGH).reinterpretAsFloats().fma(xo, a1);
            a2 = v2.lanewise(VectorOperators.LSHL, 16).reinterpretAsFloats().fma(xe, a2);
            a2 = v2.and(BF16_HIGH).reinterpretAsFloats().fma(xo, a2);
            a3 = v3.lanewise(VectorOperators.LSHL, 16).reinterpretAsFloats().fma(xe, a3);
            a3 = v3.and(BF16_HIGH).reinterpretAsFloats().fma(xo, a3);
            j += 2 * L;
        }
        float s0 = a0.reduceLanes(VectorOperators.ADD);
        float s1 = a1.reduceLanes(VectorOperators.ADD);
        float s2 = a2.reduceLanes(VectorOperators.ADD);
        float s3 = a3.reduceLanes(VectorOperators.ADD);
        for (; j < c; j++) {
            float xj = x[j];
            long b = 2L * j;
            s0 += bf16(w, off + b) * xj;
            s1 += bf16(w, o1 + b) * xj;
            s2 += bf16(w, o2 + b) * xj;
            s3 += bf16(w, o3 + b) * xj;
        }
        y[i] = s0;
        y[i + q] = s1;
        y[i + 2 * q] = s2;
        y[i + 3 * q] = s3;
    }

    /**
     * The 4 x 4 matmul tile: Y[t + m, i + k] = dot(w[wb + k c ..][0..c), X[t + m]) for k, m in 0..4, with
     * w four f32 rows in an array from wb on and Y n x r. Accumulator a{k}{m} holds row k times input m.
     */
    private static void dot4x4(float[] w, int wb, int c, float[] x, int t, float[] y, int r, int i) {
        FloatVector a00 = FloatVector.zero(F);
        FloatVector a01 = a00;
        FloatVector a02 = a00;
        FloatVector a03 = a00;
        FloatVector a10 = a00;
        FloatVector a11 = a00;
        FloatVector a12 = a00;
        FloatVector a13 = a00;
        FloatVector a20 = a00;
        FloatVector a21 = a00;
        FloatVector a22 = a00;
        FloatVector a23 = a00;
        FloatVector a30 = a00;
        FloatVector a31 = a00;
        FloatVector a32 = a00;
        FloatVector a33 = a00;
        int x0 = t * c;
        int x1 = x0 + c;
        int x2 = x1 + c;
        int x3 = x2 + c;
        int j = 0;
        for (int bound = F.loopBound(c); j < bound; j += L) {
            FloatVector w0 = FloatVector.fromArray(F, w, wb + j);
            FloatVector w1 = FloatVector.fromArray(F, w, wb + c + j);
            FloatVector w2 = FloatVector.fromArray(F, w, wb + 2 * c + j);
            FloatVector w3 = FloatVector.fromArray(F, w, wb + 3 * c + j);
            FloatVector v = FloatVector.fromArray(F, x, x0 + j);
            a00 = w0.fma(v, a00);
            a10 = w1.fma(v, a10);
            a20 = w2.fma(v, a20);
            a30 = w3.fma(v, a30);
            v = FloatVector.fromArray(F, x, x1 + j);
            a01 = w0.fma(v, a01);
            a11 = w1.fma(v, a11);
            a21 = w2.fma(v, a21);
            a31 = w3.fma(v, a31);
            v = FloatVector.fromArray(F, x, x2 + j);
            a02 = w0.fma(v, a02);
            a12 = w1.fma(v, a12);
            a22 = w2.fma(v, a22);
            a32 = w3.fma(v, a32);
            v = FloatVector.fromArray(F, x, x3 + j);
            a03 = w0.fma(v, a03);
            a13 = w1.fma(v, a13);
            a23 = w2.fma(v, a23);
            a33 = w3.fma(v, a33);
        }
        float[] s = {
                a00.reduceLanes(VectorOperators.ADD), a01.reduceLanes(VectorOperators.ADD),
                a02.reduceLanes(VectorOperators.ADD), a03.reduceLanes(VectorOperators.ADD),
                a10.reduceLanes(VectorOperators.ADD), a11.reduceLanes(VectorOperators.ADD),
                a12.reduceLanes(VectorOperators.ADD), a13.reduceLanes(VectorOperators.ADD),
                a20.reduceLanes(VectorOperators.ADD), a21.reduceLanes(VectorOperators.ADD),
                a22.reduceLanes(VectorOperators.ADD), a23.reduceLanes(VectorOperators.ADD),
                a30.reduceLanes(VectorOperators.ADD), a31.reduceLanes(VectorOperators.ADD),
                a32.reduceLanes(VectorOperators.ADD), a33.reduceLanes(VectorOperators.ADD)};
        for (int k = 0; k < 4; k++) {
            for (int m = 0; m < 4; m++) {
                float acc = s[4 * k + m];
                int xo = x0 + m * c;
                for (int jj = j; jj < c; jj++) {
                    acc += w[wb + k * c + jj] * x[xo + jj];
                }
                y[(t + m) * r + i + k] = acc;
            }
        }
    }

    /**
     * y[yOff + k step] = dot(w[w_k .. w_k + c), x[xOff .. xOff+c)) for k in 0..4, w_k = w0..w3: four f32
     * rows anywhere in an array share each x load.
     */
    private static void dot4(float[] w, int w0, int w1, int w2, int w3, int c, float[] x, int xOff, float[] y,
                             int yOff, int step) {
        FloatVector a0 = FloatVector.zero(F);
        FloatVector a1 = FloatVector.zero(F);
        FloatVector a2 = FloatVector.zero(F);
        FloatVector a3 = FloatVector.zero(F);
        int j = 0;
        for (int bound = F.loopBound(c); j < bound; j += L) {
            FloatVector xv = FloatVector.fromArray(F, x, xOff + j);
            a0 = FloatVector.fromArray(F, w, w0 + j).fma(xv, a0);
            a1 = FloatVector.fromArray(F, w, w1 + j).fma(xv, a1);
            a2 = FloatVector.fromArray(F, w, w2 + j).fma(xv, a2);
            a3 = FloatVector.fromArray(F, w, w3 + j).fma(xv, a3);
        }
        float s0 = a0.reduceLanes(VectorOperators.ADD);
        float s1 = a1.reduceLanes(VectorOperators.ADD);
        float s2 = a2.reduceLanes(VectorOperators.ADD);
        float s3 = a3.reduceLanes(VectorOperators.ADD);
        for (; j < c; j++) {
            float xj = x[xOff + j];
            s0 += w[w0 + j] * xj;
            s1 += w[w1 + j] * xj;
            s2 += w[w2 + j] * xj;
            s3 += w[w3 + j] * xj;
        }
        y[yOff] = s0;
        y[yOff + step] = s1;
        y[yOff + 2 * step] = s2;
        y[yOff + 3 * step] = s3;
    }
}
