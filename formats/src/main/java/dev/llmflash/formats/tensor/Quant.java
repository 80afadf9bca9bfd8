package dev.llmflash.formats.tensor;

import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;

/**
 * The arithmetic of the block-quantized row layouts of {@link DType#Q8_0} and {@link DType#Q4_0}
 * (layout: see {@link DType}): quantizing f32 rows, and the scalar dequantization that every fast
 * kernel is tested against. Stateless, thread-safe.
 *
 * <p>Quantization, per block of 32 weights x:
 * <ul>
 *   <li>Q8_0: scale s = f16(max|x| / 127); q = round(x / s) clamped to [-127, 127].</li>
 *   <li>Q4_0: m = the x of largest magnitude (its sign kept); s = f16(m / -8);
 *       q = clamp(round(x / s) + 8, 0, 15), so m itself maps to the nibble 0 (= -8 s) and the
 *       opposite side gets 7 steps (llama.cpp's Q4_0 rule).</li>
 * </ul>
 * q is computed against the f16-rounded scale, so the stored pair reconstructs x as closely as it
 * can. A block of zeros has scale 0. Non-finite input, or a scale beyond the f16 range, is refused
 * (IllegalArgumentException): a checkpoint holding those cannot be quantized faithfully.
 */
public final class Quant {

    /** Weights per block of both quantized types. */
    public static final int BLOCK = 32;

    private static final ValueLayout.OfShort U16_LE = ValueLayout.JAVA_SHORT_UNALIGNED;
    private static final ValueLayout.OfByte BYTE = ValueLayout.JAVA_BYTE;

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
        long rowBytes = dt.rowBytes(c);
        for (int r = 0; r < rows; r++) {
            quantizeRow(dt, src, srcOff + r * c, c, dst, dstOff + r * rowBytes);
        }
    }

    /** One row of {@link #quantize}. */
    public static void quantizeRow(DType dt, float[] x, int off, int c, MemorySegment dst, long b) {
        int nb = blocks(dt, c);
        long qs = b + 2L * nb;
        for (int blk = 0; blk < nb; blk++) {
            int o = off + blk * BLOCK;
            float amax = 0;
            float max = 0;
            for (int j = 0; j < BLOCK; j++) {
                float v = x[o + j];
                if (!Float.isFinite(v)) {
                    throw new IllegalArgumentException("value " + v + " at element " + (blk * BLOCK + j)
                            + " of a row cannot be quantized");
                }
                if (Math.abs(v) > amax) {
                    amax = Math.abs(v);
                    max = v;
                }
            }
            if (dt == DType.Q8_0) {
                short s = scale(amax / 127f + 0f);
                float d = Float.float16ToFloat(s);
                float inv = d == 0 ? 0 : 1f / d;
                dst.set(U16_LE, b + 2L * blk, s);
                for (int j = 0; j < BLOCK; j++) {
                    int q = Math.round(x[o + j] * inv);
                    dst.set(BYTE, qs + (long) blk * BLOCK + j, (byte) Math.clamp(q, -127, 127));
                }
            } else {
                short s = scale(max / -8f + 0f); // + 0: a block of zeros gets +0, not -0
                float d = Float.float16ToFloat(s);
                float inv = d == 0 ? 0 : 1f / d;
                dst.set(U16_LE, b + 2L * blk, s);
                long qb = qs + (long) blk * (BLOCK / 2);
                for (int j = 0; j < BLOCK / 2; j++) {
                    int lo = Math.clamp(Math.round(x[o + j] * inv) + 8, 0, 15);
                    int hi = Math.clamp(Math.round(x[o + BLOCK / 2 + j] * inv) + 8, 0, 15);
                    dst.set(BYTE, qb + j, (byte) (lo | hi << 4));
                }
            }
        }
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
