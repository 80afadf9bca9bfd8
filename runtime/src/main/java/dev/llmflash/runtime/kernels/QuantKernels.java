package dev.llmflash.runtime.kernels;

import dev.llmflash.formats.tensor.DType;
import dev.llmflash.formats.tensor.Quant;
import jdk.incubator.vector.ByteVector;
import jdk.incubator.vector.FloatVector;
import jdk.incubator.vector.IntVector;
import jdk.incubator.vector.VectorOperators;
import jdk.incubator.vector.VectorShape;
import jdk.incubator.vector.VectorSpecies;

import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.nio.ByteOrder;

/**
 * The Vector API primitives of {@link VectorKernels} for block-quantized rows ({@link DType#Q8_0},
 * {@link DType#Q4_0}; layout in {@link DType}: a row of c weights is its c/32 f16 scales, then its
 * quants). Every weight is {@code scale_b * q} exactly as {@link Quant#dequantizeRow} defines it;
 * sums accumulate in FMA lanes in natural column order (no split order), so they differ from the
 * scalar oracle only by summation order.
 * <p>Quants to f32: a Q8_0 block's 32 int8 are loaded L at a time (a byte vector of L lanes, widened
 * to the L f32 lanes by one B2F conversion). A Q4_0 block's 16 bytes are loaded L at a time, widened
 * to L int lanes (int-lane shifts are cheap; AVX-512 has no byte-lane shift), and split into the low
 * nibbles (weights j) and the high nibbles (weights 16 + j), minus 8, then converted. The dots sum
 * each block's products in one vector and add it, times the block's scale, into the row's
 * accumulator (one FMA per block and row); the transposed sums broadcast h * scale per block.
 * <p>Matrix-vector: four rows share each x load, taken from the four quarters of the range (or list),
 * as {@link VectorKernels#matvecRows} does, so that each quarter is read as one long stream.
 * <p>Requirements (checked by {@link Kernels}): c a multiple of 32; {@code 32 % L == 0} (L = 4, 8 or
 * 16 lanes). Stateless; thread-safe.
 */
final class QuantKernels {

    static final VectorSpecies<Float> F = VectorKernels.F;
    static final VectorSpecies<Integer> I = VectorKernels.I;
    /** L byte lanes: the bytes one f32 vector's worth of quants take. */
    static final VectorSpecies<Byte> B = VectorSpecies.of(byte.class, VectorShape.forBitSize(F.vectorBitSize() / 4));
    static final int L = F.length();
    static final int BLOCK = Quant.BLOCK;

    private static final ByteOrder LE = ByteOrder.LITTLE_ENDIAN;
    private static final ValueLayout.OfShort U16_LE = ValueLayout.JAVA_SHORT_UNALIGNED;

    static {
        if (BLOCK % L != 0 || L > BLOCK / 2) {
            throw new ExceptionInInitializerError("quantized kernels need 4, 8 or 16 f32 lanes; this CPU has " + L);
        }
    }

    private QuantKernels() {
    }


    private static float scale(MemorySegment w, long off) {
        return Float.float16ToFloat(w.get(U16_LE, off));
    }

    // C2 notes. (1) No helper here takes or returns a vector. A helper compiled on its own into a large
    // method is no longer inlined ("already compiled into a big method"), and a vector crossing a call
    // that is not inlined is boxed: every lane op then runs the Java fallback and allocates (measured:
    // 250 MB of garbage per opt-6.7b token). So every loop spells its conversions out. (2) The four-row
    // loops read no scalar from the segment: inside them C2 no longer inlines the memory segment's
    // access checks, and four scalar scale reads per block doubled the time of a whole decode step on
    // opt-6.7b q4. Their scales come from one self-contained vector loop per row that writes to an
    // array (scales4).

    /**
     * The scales of the four rows at o0..o3 into sc, row u's at [u nb, (u + 1) nb): each row's nb f16
     * scales by {@link VectorKernels#f16ToF32} (self-contained, so fast whether or not C2 inlines it;
     * one call per row and kernel call: a call per 16 blocks made the Q4_0 matvec 29 against 42 G
     * weights/s in KernelBandwidth, one run each).
     */
    private static void scales4(MemorySegment w, long o0, long o1, long o2, long o3, int nb, float[] sc) {
        VectorKernels.f16ToF32(w, o0, nb, sc, 0);
        VectorKernels.f16ToF32(w, o1, nb, sc, nb);
        VectorKernels.f16ToF32(w, o2, nb, sc, 2 * nb);
        VectorKernels.f16ToF32(w, o3, nb, sc, 3 * nb);
    }

    // ---------------------------------------------------------------- dots

    /** dot(the quantized row of c weights at byte {@code b}, x[xOff .. xOff + c)). */
    static float dot(MemorySegment w, DType dt, long b, float[] x, int xOff, int c) {
        int nb = c / BLOCK;
        long qs = b + 2L * nb;
        FloatVector acc = FloatVector.zero(F);
        if (dt == DType.Q8_0) {
            for (int blk = 0; blk < nb; blk++) {
                FloatVector s = FloatVector.zero(F);
                int xo = xOff + blk * BLOCK;
                long qo = qs + (long) blk * BLOCK;
                for (int p = 0; p < BLOCK; p += L) {
                    s = ((FloatVector) ByteVector.fromMemorySegment(B, w, qo + p, LE)
                            .convertShape(VectorOperators.B2F, F, 0)).fma(FloatVector.fromArray(F, x, xo + p), s);
                }
                acc = s.fma(FloatVector.broadcast(F, scale(w, b + 2L * blk)), acc);
            }
        } else {
            for (int blk = 0; blk < nb; blk++) {
                FloatVector s = FloatVector.zero(F);
                int xo = xOff + blk * BLOCK;
                long qo = qs + (long) blk * (BLOCK / 2);
                for (int p = 0; p < BLOCK / 2; p += L) {
                    IntVector v = (IntVector) ByteVector.fromMemorySegment(B, w, qo + p, LE)
                            .convertShape(VectorOperators.B2I, I, 0);
                    s = ((FloatVector) v.and(15).sub(8).convert(VectorOperators.I2F, 0))
                            .fma(FloatVector.fromArray(F, x, xo + p), s);
                    s = ((FloatVector) v.lanewise(VectorOperators.ASHR, 4).and(15).sub(8).convert(VectorOperators.I2F, 0))
                            .fma(FloatVector.fromArray(F, x, xo + BLOCK / 2 + p), s);
                }
                acc = s.fma(FloatVector.broadcast(F, scale(w, b + 2L * blk)), acc);
            }
        }
        return acc.reduceLanes(VectorOperators.ADD);
    }

    /**
     * y[i] = dot(row i, x) for i in [r0, r1), row i at byte {@code i * rowBytes}: four rows at a time
     * (i, i+q, i+2q, i+3q, the quarters of the range) sharing each x load, the rest one by one.
     */
    static void matvecRows(MemorySegment w, DType dt, int c, long rowBytes, float[] x, float[] y, int r0, int r1) {
        int q = (r1 - r0) / 4;
        long stride = q * rowBytes;
        int end = r0 + q;
        Scratch p = q == 0 ? null : dt == DType.Q4_0 ? prepareQ4(x, c) : SCRATCH.get().sized(c);
        for (int i = r0; i < end; i++) {
            long o = i * rowBytes;
            if (dt == DType.Q8_0) {
                dot4Q8(w, o, o + stride, o + 2 * stride, o + 3 * stride, c, x, p.sc, y, i, q);
            } else {
                dot4Q4(w, o, o + stride, o + 2 * stride, o + 3 * stride, c, x, p, y, i, q);
            }
        }
        for (int i = r0 + 4 * q; i < r1; i++) {
            y[i] = dot(w, dt, i * rowBytes, x, 0, c);
        }
    }

    /** y[k] = dot(row rows[k], x) for k in [k0, k1): {@link #matvecRows} over a list (quarters of the list). */
    static void gatherRows(MemorySegment w, DType dt, int c, long rowBytes, int[] rows, int k0, int k1, float[] x,
                           float[] y) {
        int q = (k1 - k0) / 4;
        int end = k0 + q;
        Scratch p = q == 0 ? null : dt == DType.Q4_0 ? prepareQ4(x, c) : SCRATCH.get().sized(c);
        for (int k = k0; k < end; k++) {
            long o0 = rows[k] * rowBytes;
            long o1 = rows[k + q] * rowBytes;
            long o2 = rows[k + 2 * q] * rowBytes;
            long o3 = rows[k + 3 * q] * rowBytes;
            if (dt == DType.Q8_0) {
                dot4Q8(w, o0, o1, o2, o3, c, x, p.sc, y, k, q);
            } else {
                dot4Q4(w, o0, o1, o2, o3, c, x, p, y, k, q);
            }
        }
        for (int k = k0 + 4 * q; k < k1; k++) {
            y[k] = dot(w, dt, rows[k] * rowBytes, x, 0, c);
        }
    }

    /** y[i + u q] = dot(row at o_u, x) for u = 0..3. */
    private static void dot4Q8(MemorySegment w, long o0, long o1, long o2, long o3, int c, float[] x, float[] sc,
                               float[] y, int i, int q) {
        int nb = c / BLOCK;
        long qs = 2L * nb;
        FloatVector a0 = FloatVector.zero(F);
        FloatVector a1 = FloatVector.zero(F);
        FloatVector a2 = FloatVector.zero(F);
        FloatVector a3 = FloatVector.zero(F);
        scales4(w, o0, o1, o2, o3, nb, sc);
        for (int blk = 0; blk < nb; blk++) {
            FloatVector s0 = FloatVector.zero(F);
            FloatVector s1 = FloatVector.zero(F);
            FloatVector s2 = FloatVector.zero(F);
            FloatVector s3 = FloatVector.zero(F);
            long qo = qs + (long) blk * BLOCK;
            int xo = blk * BLOCK;
            for (int p = 0; p < BLOCK; p += L) {
                FloatVector xv = FloatVector.fromArray(F, x, xo + p);
                s0 = ((FloatVector) ByteVector.fromMemorySegment(B, w, o0 + qo + p, LE)
                        .convertShape(VectorOperators.B2F, F, 0)).fma(xv, s0);
                s1 = ((FloatVector) ByteVector.fromMemorySegment(B, w, o1 + qo + p, LE)
                        .convertShape(VectorOperators.B2F, F, 0)).fma(xv, s1);
                s2 = ((FloatVector) ByteVector.fromMemorySegment(B, w, o2 + qo + p, LE)
                        .convertShape(VectorOperators.B2F, F, 0)).fma(xv, s2);
                s3 = ((FloatVector) ByteVector.fromMemorySegment(B, w, o3 + qo + p, LE)
                        .convertShape(VectorOperators.B2F, F, 0)).fma(xv, s3);
            }
            a0 = s0.fma(FloatVector.broadcast(F, sc[blk]), a0);
            a1 = s1.fma(FloatVector.broadcast(F, sc[nb + blk]), a1);
            a2 = s2.fma(FloatVector.broadcast(F, sc[2 * nb + blk]), a2);
            a3 = s3.fma(FloatVector.broadcast(F, sc[3 * nb + blk]), a3);
        }
        y[i] = a0.reduceLanes(VectorOperators.ADD);
        y[i + q] = a1.reduceLanes(VectorOperators.ADD);
        y[i + 2 * q] = a2.reduceLanes(VectorOperators.ADD);
        y[i + 3 * q] = a3.reduceLanes(VectorOperators.ADD);
    }

    /**
     * What the Q4_0 four-row dots share, made once per call from x: x / 16 (so a high nibble is used
     * as {@code v & 0xF0}, 16 times its value, with no shift; the product is exact) and 8 times each
     * block's sum of x (the "- 8" of every quant folded into one subtraction per block and row:
     * sum_j (q_j - 8) x_j = sum_j q_j x_j - 8 sum_j x_j). Per thread, grown on demand.
     */
    private static final ThreadLocal<Scratch> SCRATCH = ThreadLocal.withInitial(Scratch::new);

    /** Per-thread arrays of the four-row kernels, grown on demand (x16 and xb: Q4_0 dots only). */
    private static final class Scratch {
        float[] x16 = new float[0];
        float[] xb = new float[0];
        /** The four rows' scales as f32, row u's at [u nb, (u + 1) nb). */
        float[] sc = new float[0];

        Scratch sized(int c) {
            if (x16.length < c) {
                x16 = new float[c];
                xb = new float[c / BLOCK];
                sc = new float[4 * (c / BLOCK)];
            }
            return this;
        }
    }

    private static Scratch prepareQ4(float[] x, int c) {
        Scratch p = SCRATCH.get().sized(c);
        float[] x16 = p.x16;
        float[] xb = p.xb;
        for (int blk = 0, nb = c / BLOCK; blk < nb; blk++) {
            float s = 0f;
            for (int j = blk * BLOCK, e = j + BLOCK; j < e; j++) {
                s += x[j];
                x16[j] = x[j] * 0.0625f;
            }
            xb[blk] = 8f * s;
        }
        return p;
    }

    /**
     * As {@link #dot4Q8} for Q4_0 rows, with x prepared by {@link #prepareQ4}: per block and row the
     * quants are widened once, the low nibbles masked and the high ones masked in place (16 h), each
     * converted and multiplied with x and x / 16; the "- 8" is one scalar term per block (conversions
     * spelled out: see the C2 note above).
     */
    private static void dot4Q4(MemorySegment w, long o0, long o1, long o2, long o3, int c, float[] x, Scratch sp,
                               float[] y, int i, int q) {
        int nb = c / BLOCK;
        long qs = 2L * nb;
        float[] x16 = sp.x16;
        float[] sc = sp.sc;
        FloatVector a0 = FloatVector.zero(F);
        FloatVector a1 = FloatVector.zero(F);
        FloatVector a2 = FloatVector.zero(F);
        FloatVector a3 = FloatVector.zero(F);
        scales4(w, o0, o1, o2, o3, nb, sc);
        for (int blk = 0; blk < nb; blk++) {
            FloatVector s0 = FloatVector.zero(F);
            FloatVector s1 = FloatVector.zero(F);
            FloatVector s2 = FloatVector.zero(F);
            FloatVector s3 = FloatVector.zero(F);
            long qo = qs + (long) blk * (BLOCK / 2);
            int xo = blk * BLOCK;
            for (int p = 0; p < BLOCK / 2; p += L) {
                FloatVector xl = FloatVector.fromArray(F, x, xo + p);
                FloatVector xh = FloatVector.fromArray(F, x16, xo + BLOCK / 2 + p);
                IntVector v0 = (IntVector) ByteVector.fromMemorySegment(B, w, o0 + qo + p, LE)
                        .convertShape(VectorOperators.B2I, I, 0);
                IntVector v1 = (IntVector) ByteVector.fromMemorySegment(B, w, o1 + qo + p, LE)
                        .convertShape(VectorOperators.B2I, I, 0);
                IntVector v2 = (IntVector) ByteVector.fromMemorySegment(B, w, o2 + qo + p, LE)
                        .convertShape(VectorOperators.B2I, I, 0);
                IntVector v3 = (IntVector) ByteVector.fromMemorySegment(B, w, o3 + qo + p, LE)
                        .convertShape(VectorOperators.B2I, I, 0);
                s0 = ((FloatVector) v0.and(15).convert(VectorOperators.I2F, 0)).fma(xl, s0);
                s1 = ((FloatVector) v1.and(15).convert(VectorOperators.I2F, 0)).fma(xl, s1);
                s2 = ((FloatVector) v2.and(15).convert(VectorOperators.I2F, 0)).fma(xl, s2);
                s3 = ((FloatVector) v3.and(15).convert(VectorOperators.I2F, 0)).fma(xl, s3);
                s0 = ((FloatVector) v0.and(0xf0).convert(VectorOperators.I2F, 0)).fma(xh, s0);
                s1 = ((FloatVector) v1.and(0xf0).convert(VectorOperators.I2F, 0)).fma(xh, s1);
                s2 = ((FloatVector) v2.and(0xf0).convert(VectorOperators.I2F, 0)).fma(xh, s2);
                s3 = ((FloatVector) v3.and(0xf0).convert(VectorOperators.I2F, 0)).fma(xh, s3);
            }
            a0 = s0.fma(FloatVector.broadcast(F, sc[blk]), a0);
            a1 = s1.fma(FloatVector.broadcast(F, sc[nb + blk]), a1);
            a2 = s2.fma(FloatVector.broadcast(F, sc[2 * nb + blk]), a2);
            a3 = s3.fma(FloatVector.broadcast(F, sc[3 * nb + blk]), a3);
        }
        float[] xb = sp.xb;
        y[i] = a0.reduceLanes(VectorOperators.ADD) - VectorOps.dot(sc, 0, xb, 0, nb);
        y[i + q] = a1.reduceLanes(VectorOperators.ADD) - VectorOps.dot(sc, nb, xb, 0, nb);
        y[i + 2 * q] = a2.reduceLanes(VectorOperators.ADD) - VectorOps.dot(sc, 2 * nb, xb, 0, nb);
        y[i + 3 * q] = a3.reduceLanes(VectorOperators.ADD) - VectorOps.dot(sc, 3 * nb, xb, 0, nb);
    }

    // ---------------------------------------------------------------- dequantization

    /** out[outOff .. outOff + c) = the quantized row of c weights at byte {@code b} (exactly Quant's values). */
    static void toF32(MemorySegment w, DType dt, long b, float[] out, int outOff, int c) {
        toF32Columns(w, dt, b, c, 0, c, out, outOff);
    }

    /**
     * out[outOff .. outOff + len) = weights [j0, j0 + len) of the quantized row of c weights at byte
     * {@code b}; j0 and len multiples of 32.
     */
    static void toF32Columns(MemorySegment w, DType dt, long b, int c, int j0, int len, float[] out, int outOff) {
        long qs = b + 2L * (c / BLOCK);
        for (int blk = j0 / BLOCK, o = outOff, end = (j0 + len) / BLOCK; blk < end; blk++, o += BLOCK) {
            FloatVector d = FloatVector.broadcast(F, scale(w, b + 2L * blk));
            if (dt == DType.Q8_0) {
                long qo = qs + (long) blk * BLOCK;
                for (int p = 0; p < BLOCK; p += L) {
                    ((FloatVector) ByteVector.fromMemorySegment(B, w, qo + p, LE)
                            .convertShape(VectorOperators.B2F, F, 0)).mul(d).intoArray(out, o + p);
                }
            } else {
                long qo = qs + (long) blk * (BLOCK / 2);
                for (int p = 0; p < BLOCK / 2; p += L) {
                    IntVector v = (IntVector) ByteVector.fromMemorySegment(B, w, qo + p, LE)
                            .convertShape(VectorOperators.B2I, I, 0);
                    ((FloatVector) v.and(15).sub(8).convert(VectorOperators.I2F, 0)).mul(d).intoArray(out, o + p);
                    ((FloatVector) v.lanewise(VectorOperators.ASHR, 4).and(15).sub(8).convert(VectorOperators.I2F, 0))
                            .mul(d).intoArray(out, o + BLOCK / 2 + p);
                }
            }
        }
    }

    // ---------------------------------------------------------------- transposed: weighted sums of rows

    /**
     * acc[a + j] += sum_{k in [k0, k1)} hv[k] * W[rows[k], j] for j in [0, c), natural order, row i at
     * byte {@code i * rowBytes}: four rows (the quarters of the list) per pass over acc.
     */
    static void accumulateRows(MemorySegment w, DType dt, long rowBytes, int[] rows, float[] hv, int k0, int k1,
                               int c, float[] acc, int a) {
        int q = (k1 - k0) / 4;
        int end = k0 + q;
        float[] sc = SCRATCH.get().sized(c).sc;
        for (int k = k0; k < end; k++) {
            acc4(w, dt, rows[k] * rowBytes, rows[k + q] * rowBytes, rows[k + 2 * q] * rowBytes,
                    rows[k + 3 * q] * rowBytes, hv[k], hv[k + q], hv[k + 2 * q], hv[k + 3 * q], c, acc, a, sc);
        }
        for (int k = end + 3 * q; k < k1; k++) {
            acc1(w, dt, rows[k] * rowBytes, hv[k], c, acc, a);
        }
    }

    private static void acc1(MemorySegment w, DType dt, long b, float h, int c, float[] acc, int a) {
        int nb = c / BLOCK;
        long qs = b + 2L * nb;
        for (int blk = 0; blk < nb; blk++) {
            float d = h * scale(w, b + 2L * blk);
            FloatVector g = FloatVector.broadcast(F, d);
            int o = a + blk * BLOCK;
            if (dt == DType.Q8_0) {
                long qo = qs + (long) blk * BLOCK;
                for (int p = 0; p < BLOCK; p += L) {
                    ((FloatVector) ByteVector.fromMemorySegment(B, w, qo + p, LE)
                            .convertShape(VectorOperators.B2F, F, 0))
                            .fma(g, FloatVector.fromArray(F, acc, o + p)).intoArray(acc, o + p);
                }
            } else {
                long qo = qs + (long) blk * (BLOCK / 2);
                for (int p = 0; p < BLOCK / 2; p += L) {
                    IntVector v = (IntVector) ByteVector.fromMemorySegment(B, w, qo + p, LE)
                            .convertShape(VectorOperators.B2I, I, 0);
                    ((FloatVector) v.and(15).sub(8).convert(VectorOperators.I2F, 0))
                            .fma(g, FloatVector.fromArray(F, acc, o + p)).intoArray(acc, o + p);
                    ((FloatVector) v.lanewise(VectorOperators.ASHR, 4).and(15).sub(8).convert(VectorOperators.I2F, 0))
                            .fma(g, FloatVector.fromArray(F, acc, o + BLOCK / 2 + p)).intoArray(acc, o + BLOCK / 2 + p);
                }
            }
        }
    }

    private static void acc4(MemorySegment w, DType dt, long o0, long o1, long o2, long o3, float h0, float h1,
                             float h2, float h3, int c, float[] acc, int a, float[] sc) {
        if (dt == DType.Q8_0) {
            acc4Q8(w, o0, o1, o2, o3, h0, h1, h2, h3, c, acc, a, sc);
        } else {
            acc4Q4(w, o0, o1, o2, o3, h0, h1, h2, h3, c, acc, a, sc);
        }
    }

    private static void acc4Q8(MemorySegment w, long o0, long o1, long o2, long o3, float h0, float h1, float h2,
                               float h3, int c, float[] acc, int a, float[] sc) {
        int nb = c / BLOCK;
        long qs = 2L * nb;
        scales4(w, o0, o1, o2, o3, nb, sc);
        for (int blk = 0; blk < nb; blk++) {
            FloatVector g0 = FloatVector.broadcast(F, h0 * sc[blk]);
            FloatVector g1 = FloatVector.broadcast(F, h1 * sc[nb + blk]);
            FloatVector g2 = FloatVector.broadcast(F, h2 * sc[2 * nb + blk]);
            FloatVector g3 = FloatVector.broadcast(F, h3 * sc[3 * nb + blk]);
            long qo = qs + (long) blk * BLOCK;
            int o = a + blk * BLOCK;
            for (int p = 0; p < BLOCK; p += L) {
                FloatVector e = FloatVector.fromArray(F, acc, o + p);
                e = ((FloatVector) ByteVector.fromMemorySegment(B, w, o0 + qo + p, LE)
                        .convertShape(VectorOperators.B2F, F, 0)).fma(g0, e);
                e = ((FloatVector) ByteVector.fromMemorySegment(B, w, o1 + qo + p, LE)
                        .convertShape(VectorOperators.B2F, F, 0)).fma(g1, e);
                e = ((FloatVector) ByteVector.fromMemorySegment(B, w, o2 + qo + p, LE)
                        .convertShape(VectorOperators.B2F, F, 0)).fma(g2, e);
                e = ((FloatVector) ByteVector.fromMemorySegment(B, w, o3 + qo + p, LE)
                        .convertShape(VectorOperators.B2F, F, 0)).fma(g3, e);
                e.intoArray(acc, o + p);
            }
        }
    }

    /** As acc4Q8 for Q4_0 rows; the "- 8" of the four rows' quants added once per block as -8 (g0 + .. + g3). */
    private static void acc4Q4(MemorySegment w, long o0, long o1, long o2, long o3, float h0, float h1, float h2,
                               float h3, int c, float[] acc, int a, float[] sc) {
        int nb = c / BLOCK;
        long qs = 2L * nb;
        scales4(w, o0, o1, o2, o3, nb, sc);
        for (int blk = 0; blk < nb; blk++) {
            float d0 = h0 * sc[blk];
            float d1 = h1 * sc[nb + blk];
            float d2 = h2 * sc[2 * nb + blk];
            float d3 = h3 * sc[3 * nb + blk];
            FloatVector g0 = FloatVector.broadcast(F, d0);
            FloatVector g1 = FloatVector.broadcast(F, d1);
            FloatVector g2 = FloatVector.broadcast(F, d2);
            FloatVector g3 = FloatVector.broadcast(F, d3);
            FloatVector minus8 = FloatVector.broadcast(F, -8f * (d0 + d1 + d2 + d3));
            long qo = qs + (long) blk * (BLOCK / 2);
            int o = a + blk * BLOCK;
            for (int p = 0; p < BLOCK / 2; p += L) {
                IntVector v0 = (IntVector) ByteVector.fromMemorySegment(B, w, o0 + qo + p, LE)
                        .convertShape(VectorOperators.B2I, I, 0);
                IntVector v1 = (IntVector) ByteVector.fromMemorySegment(B, w, o1 + qo + p, LE)
                        .convertShape(VectorOperators.B2I, I, 0);
                IntVector v2 = (IntVector) ByteVector.fromMemorySegment(B, w, o2 + qo + p, LE)
                        .convertShape(VectorOperators.B2I, I, 0);
                IntVector v3 = (IntVector) ByteVector.fromMemorySegment(B, w, o3 + qo + p, LE)
                        .convertShape(VectorOperators.B2I, I, 0);
                FloatVector e = FloatVector.fromArray(F, acc, o + p).add(minus8);
                e = ((FloatVector) v0.and(15).convert(VectorOperators.I2F, 0)).fma(g0, e);
                e = ((FloatVector) v1.and(15).convert(VectorOperators.I2F, 0)).fma(g1, e);
                e = ((FloatVector) v2.and(15).convert(VectorOperators.I2F, 0)).fma(g2, e);
                e = ((FloatVector) v3.and(15).convert(VectorOperators.I2F, 0)).fma(g3, e);
                e.intoArray(acc, o + p);
                FloatVector f = FloatVector.fromArray(F, acc, o + BLOCK / 2 + p).add(minus8);
                f = ((FloatVector) v0.lanewise(VectorOperators.ASHR, 4).and(15)
                        .convert(VectorOperators.I2F, 0)).fma(g0, f);
                f = ((FloatVector) v1.lanewise(VectorOperators.ASHR, 4).and(15)
                        .convert(VectorOperators.I2F, 0)).fma(g1, f);
                f = ((FloatVector) v2.lanewise(VectorOperators.ASHR, 4).and(15)
                        .convert(VectorOperators.I2F, 0)).fma(g2, f);
                f = ((FloatVector) v3.lanewise(VectorOperators.ASHR, 4).and(15)
                        .convert(VectorOperators.I2F, 0)).fma(g3, f);
                f.intoArray(acc, o + BLOCK / 2 + p);
            }
        }
    }
}
