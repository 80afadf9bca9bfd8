package dev.llmflash.formats.tensor;

import jdk.incubator.vector.ByteVector;
import jdk.incubator.vector.FloatVector;
import jdk.incubator.vector.IntVector;
import jdk.incubator.vector.VectorOperators;
import jdk.incubator.vector.VectorShape;
import jdk.incubator.vector.VectorSpecies;

import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.util.stream.IntStream;

/**
 * The arithmetic of the block-quantized row layouts of {@link DType#Q8_0} and {@link DType#Q4_0}
 * (layout: see {@link DType}): quantizing f32 rows, and the scalar dequantization that every fast
 * kernel is tested against. Stateless, thread-safe.
 *
 * <p>Quantization, per block of 32 weights x:
 * <ul>
 *   <li>Q8_0: scale s = f16(max|x| / 127); q = round(x / s) clamped to [-127, 127].</li>
 *   <li>Q4_0: m = the x of largest magnitude (its sign kept; +|m| if both signs reach it); s = f16(m / -8);
 *       q = clamp(round(x / s) + 8, 0, 15), so m itself maps to the nibble 0 (= -8 s) and the
 *       opposite side gets 7 steps (llama.cpp's Q4_0 rule).</li>
 * </ul>
 * round = to nearest, ties away from zero; x / s is computed as x * (1 / s).
 * q is computed against the f16-rounded scale, so the stored pair reconstructs x as closely as it
 * can. A block of zeros has scale 0. Non-finite input, or a scale beyond the f16 range, is refused
 * (IllegalArgumentException): a checkpoint holding those cannot be quantized faithfully.
 */
public final class Quant {

    /** Weights per block of both quantized types. */
    public static final int BLOCK = 32;

    private static final ValueLayout.OfShort U16_LE = ValueLayout.JAVA_SHORT_UNALIGNED;
    private static final ValueLayout.OfByte BYTE = ValueLayout.JAVA_BYTE;
    /** Weights below which {@link #quantize} stays on the calling thread. */
    private static final long PARALLEL_MIN = 1 << 18;
    /** Row ranges {@link #quantize} cuts a large call into (claimed by the common pool's threads). */
    private static final int PARTS = 8;

    private static final VectorSpecies<Float> F = FloatVector.SPECIES_PREFERRED;
    /** L byte lanes: the quants of one f32 vector. */
    private static final VectorSpecies<Byte> B = F.length() >= 8
            ? VectorSpecies.of(byte.class, VectorShape.forBitSize(F.vectorBitSize() / 4)) : null;
    /** Whether {@link #quantizeRowVector} runs here: 8 or 16 f32 lanes (half a block a vector or less). */
    static final boolean VECTOR = B != null && (BLOCK / 2) % F.length() == 0;
    private static final int SIGN = 0x8000_0000;
    private static final int HALF = Float.floatToRawIntBits(0.5f);

    private Quant() {
    }

    /** Byte offset, within a row of c weights, of the first quant byte (after the nb scales). */
    public static long quantsOffset(int c) {
        return 2L * (c / BLOCK);
    }

    /**
     * Quantizes {@code rows} rows of {@code c} f32 values (row-major at {@code src[srcOff ..]}) into
     * {@code dst} at byte {@code dstOff}, rows back to back at {@code dt.rowBytes(c)} bytes each.
     *
     * @throws IllegalArgumentException if dt is not quantized, c is not whole blocks, or a value is
     *         not finite / a scale overflows f16
     */
    public static void quantize(DType dt, float[] src, int srcOff, int rows, int c, MemorySegment dst, long dstOff) {
        int rowBytes = Math.toIntExact(dt.rowBytes(c));
        if (rows <= 0) {
            return;
        }
        long work = (long) rows * c;
        int parts = work < PARALLEL_MIN ? 1 : Math.min(rows, PARTS);
        if (parts == 1) {
            quantizeRows(dt, src, srcOff, 0, rows, c, rowBytes, dst, dstOff);
            return;
        }
        // The converter's hot loop: rows split over the common pool (and the caller).
        IntStream.range(0, parts).parallel().forEach(p -> quantizeRows(dt, src, srcOff, (int) ((long) rows * p / parts),
                (int) ((long) rows * (p + 1) / parts), c, rowBytes, dst, dstOff));
    }

    /** Rows [r0, r1) of {@link #quantize}, through a byte[] of one row at a time. */
    private static void quantizeRows(DType dt, float[] src, int srcOff, int r0, int r1, int c, int rowBytes,
                                     MemorySegment dst, long dstOff) {
        byte[] row = new byte[rowBytes];
        for (int r = r0; r < r1; r++) {
            if (VECTOR) {
                quantizeRowVector(dt, src, srcOff + r * c, c, row, 0);
            } else {
                quantizeRow(dt, src, srcOff + r * c, c, row, 0);
            }
            MemorySegment.copy(row, 0, dst, BYTE, dstOff + (long) r * rowBytes, rowBytes);
        }
    }

    /** One row of {@link #quantize}. */
    public static void quantizeRow(DType dt, float[] x, int off, int c, MemorySegment dst, long b) {
        byte[] row = new byte[Math.toIntExact(dt.rowBytes(c))];
        quantizeRow(dt, x, off, c, row, 0);
        MemorySegment.copy(row, 0, dst, BYTE, b, row.length);
    }

    /** One row of {@link #quantize} into {@code out[o .. o + dt.rowBytes(c))}. */
    public static void quantizeRow(DType dt, float[] x, int off, int c, byte[] out, int o) {
        int nb = blocks(dt, c);
        int qs = o + 2 * nb;
        boolean q8 = dt == DType.Q8_0;
        for (int blk = 0; blk < nb; blk++) {
            int xo = off + blk * BLOCK;
            float top = 0;
            float bottom = 0;
            for (int j = 0; j < BLOCK; j++) { // branch-free: Math.max/min propagate NaN
                float v = x[xo + j];
                top = Math.max(top, v);
                bottom = Math.min(bottom, v);
            }
            if (!(top - bottom <= Float.MAX_VALUE)) { // NaN or Inf somewhere (or a range beyond f32)
                throw new IllegalArgumentException("a non-finite value in block " + blk + " of a row cannot be quantized");
            }
            float amax = Math.max(top, -bottom);
            float max = top >= -bottom ? top : bottom; // the value of largest magnitude; on a tie the positive one
            short s = scale(q8 ? amax / 127f + 0f : max / -8f + 0f); // + 0: a block of zeros gets +0, not -0
            out[o + 2 * blk] = (byte) s;
            out[o + 2 * blk + 1] = (byte) (s >> 8);
            float d = Float.float16ToFloat(s);
            float inv = d == 0 ? 0 : 1f / d;
            if (q8) {
                int qb = qs + blk * BLOCK;
                for (int j = 0; j < BLOCK; j++) {
                    out[qb + j] = (byte) Math.clamp(round(x[xo + j] * inv), -127, 127);
                }
            } else {
                int qb = qs + blk * (BLOCK / 2);
                for (int j = 0; j < BLOCK / 2; j++) {
                    int lo = Math.clamp(round(x[xo + j] * inv) + 8, 0, 15);
                    int hi = Math.clamp(round(x[xo + BLOCK / 2 + j] * inv) + 8, 0, 15);
                    out[qb + j] = (byte) (lo | hi << 4);
                }
            }
        }
    }

    /**
     * {@link #quantizeRow} with the Vector API, byte for byte the same (tested): the block's extremes
     * by lane-wise max / min (Math.max / Math.min semantics: NaN propagates, +0 above -0) and the
     * scale exactly as there; then per lane x * (1 / s), plus 0.5 with x's sign, truncated to int (the
     * same f32 operations and the same saturating cast), clamped, packed (Q4_0: low | high << 4) and
     * narrowed to bytes. The converter's hot loop: the scalar one held a q4 convert of opt-6.7b at
     * a third of the disk's speed. Needs {@link #VECTOR}.
     */
    static void quantizeRowVector(DType dt, float[] x, int off, int c, byte[] out, int o) {
        int nb = blocks(dt, c);
        int qs = o + 2 * nb;
        boolean q8 = dt == DType.Q8_0;
        int l = F.length();
        for (int blk = 0; blk < nb; blk++) {
            int xo = off + blk * BLOCK;
            FloatVector hi = FloatVector.zero(F);
            FloatVector lo = FloatVector.zero(F);
            for (int p = 0; p < BLOCK; p += l) {
                FloatVector v = FloatVector.fromArray(F, x, xo + p);
                hi = hi.max(v);
                lo = lo.min(v);
            }
            float top = hi.reduceLanes(VectorOperators.MAX);
            float bottom = lo.reduceLanes(VectorOperators.MIN);
            if (!(top - bottom <= Float.MAX_VALUE)) {
                throw new IllegalArgumentException("a non-finite value in block " + blk + " of a row cannot be quantized");
            }
            float amax = Math.max(top, -bottom);
            float max = top >= -bottom ? top : bottom;
            short s = scale(q8 ? amax / 127f + 0f : max / -8f + 0f);
            out[o + 2 * blk] = (byte) s;
            out[o + 2 * blk + 1] = (byte) (s >> 8);
            float d = Float.float16ToFloat(s);
            FloatVector inv = FloatVector.broadcast(F, d == 0 ? 0 : 1f / d);
            if (q8) {
                int qb = qs + blk * BLOCK;
                for (int p = 0; p < BLOCK; p += l) {
                    FloatVector v = FloatVector.fromArray(F, x, xo + p).mul(inv);
                    FloatVector half = v.reinterpretAsInts().and(SIGN).or(HALF).reinterpretAsFloats();
                    IntVector q = (IntVector) v.add(half).convert(VectorOperators.F2I, 0);
                    q.max(-127).min(127).convertShape(VectorOperators.I2B, B, 0).reinterpretAsBytes()
                            .intoArray(out, qb + p);
                }
            } else {
                int qb = qs + blk * (BLOCK / 2);
                for (int p = 0; p < BLOCK / 2; p += l) {
                    FloatVector v = FloatVector.fromArray(F, x, xo + p).mul(inv);
                    FloatVector vh = FloatVector.fromArray(F, x, xo + BLOCK / 2 + p).mul(inv);
                    FloatVector half = v.reinterpretAsInts().and(SIGN).or(HALF).reinterpretAsFloats();
                    FloatVector halfH = vh.reinterpretAsInts().and(SIGN).or(HALF).reinterpretAsFloats();
                    IntVector ql = ((IntVector) v.add(half).convert(VectorOperators.F2I, 0)).add(8).max(0).min(15);
                    IntVector qh = ((IntVector) vh.add(halfH).convert(VectorOperators.F2I, 0)).add(8).max(0).min(15);
                    ((ByteVector) ql.or(qh.lanewise(VectorOperators.LSHL, 4)).convertShape(VectorOperators.I2B, B, 0))
                            .intoArray(out, qb + p);
                }
            }
        }
    }

    /** Round to nearest, ties away from zero (|v| < 2^23 here: quants are at most 128 x the step). */
    private static int round(float v) {
        return (int) (v + Math.copySign(0.5f, v));
    }

    private static short scale(float d) {
        short s = Float.floatToFloat16(d);
        if (!Float.isFinite(Float.float16ToFloat(s))) {
            throw new IllegalArgumentException("block scale " + d + " exceeds the f16 range");
        }
        return s;
    }

    /**
     * Dequantizes the row of c weights at byte {@code b} of w into {@code out[outOff .. outOff + c)}:
     * the scalar reference (scale x quant in f32, exactly as the kernels define a weight).
     */
    public static void dequantizeRow(MemorySegment w, DType dt, long b, int c, float[] out, int outOff) {
        int nb = blocks(dt, c);
        long qs = b + 2L * nb;
        for (int blk = 0; blk < nb; blk++) {
            float d = Float.float16ToFloat(w.get(U16_LE, b + 2L * blk));
            int o = outOff + blk * BLOCK;
            if (dt == DType.Q8_0) {
                for (int j = 0; j < BLOCK; j++) {
                    out[o + j] = d * w.get(BYTE, qs + (long) blk * BLOCK + j);
                }
            } else {
                long qb = qs + (long) blk * (BLOCK / 2);
                for (int j = 0; j < BLOCK / 2; j++) {
                    int v = w.get(BYTE, qb + j) & 0xff;
                    out[o + j] = d * ((v & 15) - 8);
                    out[o + BLOCK / 2 + j] = d * ((v >>> 4) - 8);
                }
            }
        }
    }

    /** Weight j of the row of c weights at byte {@code b} (slow: tests and single values). */
    public static float get(MemorySegment w, DType dt, long b, int c, int j) {
        int nb = blocks(dt, c);
        int blk = j / BLOCK;
        float d = Float.float16ToFloat(w.get(U16_LE, b + 2L * blk));
        long qs = b + 2L * nb;
        if (dt == DType.Q8_0) {
            return d * w.get(BYTE, qs + j);
        }
        int k = j % BLOCK;
        int v = w.get(BYTE, qs + (long) blk * (BLOCK / 2) + (k % (BLOCK / 2))) & 0xff;
        return d * ((k < BLOCK / 2 ? v & 15 : v >>> 4) - 8);
    }

    private static int blocks(DType dt, int c) {
        if (!dt.isQuantized()) {
            throw new IllegalArgumentException(dt + " is not a block-quantized type");
        }
        if (c % BLOCK != 0) {
            throw new IllegalArgumentException(dt + " rows hold whole blocks of " + BLOCK + " weights; " + c
                    + " is not a multiple of " + BLOCK);
        }
        return c / BLOCK;
    }
}
