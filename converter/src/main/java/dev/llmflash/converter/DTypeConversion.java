package dev.llmflash.converter;

import dev.llmflash.formats.tensor.DType;

import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.nio.ByteOrder;

/**
 * Converts little-endian float elements between F64, F32, F16 and BF16 as PyTorch's
 * {@code tensor.to(dtype)} does: widening is exact; narrowing rounds to nearest, ties to even.
 * <ul>
 *   <li>to F16: {@link Float#floatToFloat16} (IEEE 754 round-to-nearest-even; overflow to infinity,
 *       gradual underflow to subnormals);</li>
 *   <li>to BF16: {@link #floatToBf16}: add 0x7FFF plus the lowest kept bit, then truncate (torch's
 *       {@code round_to_nearest_even}); NaN becomes the quiet NaN 0x7FC0, as in torch;</li>
 *   <li>from F64: via F32 (one extra rounding: an F64 value exactly half-way between two F16/BF16
 *       values after its own rounding to F32 may round differently than torch's direct path; F64
 *       weights do not occur in the checkpoints llmflash reads).</li>
 * </ul>
 * Elements go through a small float buffer in blocks, so each inner loop has one source and one
 * target type. Stateless and thread-safe.
 */
final class DTypeConversion {
    private static final ValueLayout.OfShort S16 = ValueLayout.JAVA_SHORT_UNALIGNED.withOrder(ByteOrder.LITTLE_ENDIAN);
    private static final ValueLayout.OfFloat F32 = ValueLayout.JAVA_FLOAT_UNALIGNED.withOrder(ByteOrder.LITTLE_ENDIAN);
    private static final ValueLayout.OfDouble F64 = ValueLayout.JAVA_DOUBLE_UNALIGNED.withOrder(ByteOrder.LITTLE_ENDIAN);
    private static final int BLOCK = 4096;
    /** bf16 has no signalling/quiet payload worth keeping: torch writes this one NaN. */
    static final short BF16_NAN = 0x7FC0;

    private DTypeConversion() {
    }

    /** True for the float types this class converts from: F64, F32, F16, BF16. */
    static boolean isConvertibleFloat(DType dtype) {
        return dtype == DType.F64 || dtype.isComputeType();
    }

    /** True for the float types it cannot convert (the FP8 kinds): a tensor of these is refused. */
    static boolean isOtherFloat(DType dtype) {
        return dtype == DType.F8_E4M3 || dtype == DType.F8_E5M2;
    }

    /**
     * Converts every element of {@code src} (type {@code from}) into {@code dst} (type {@code to}); same
     * types are copied byte for byte.
     *
     * @throws IllegalArgumentException if the sizes disagree or a type is not convertible
     */
    static void convert(MemorySegment src, DType from, MemorySegment dst, DType to) {
        if (src.byteSize() % from.bytes() != 0) {
            throw new IllegalArgumentException(src.byteSize() + " bytes is not a whole number of " + from);
        }
        long count = src.byteSize() / from.bytes();
        if (dst.byteSize() != count * to.bytes()) {
            throw new IllegalArgumentException(count + " " + to + " elements need " + count * to.bytes()
                    + " bytes, not " + dst.byteSize());
        }
        if (from == to) {
            MemorySegment.copy(src, 0, dst, 0, src.byteSize());
            return;
        }
        if (!isConvertibleFloat(from) || !to.isComputeType()) {
            throw new IllegalArgumentException("cannot convert " + from + " to " + to);
        }
        float[] buf = new float[(int) Math.min(BLOCK, count)];
        for (long first = 0; first < count; first += BLOCK) {
            int n = (int) Math.min(BLOCK, count - first);
            decode(src, from, first, buf, 0, n);
            encode(buf, n, dst, to, first);
        }
    }

    /**
     * out[0 .. n) = the n elements of {@code src} (type {@code from}: F64, F32, F16 or BF16) as f32,
     * decoded straight into the array (what {@link #convert} to F32 does, without its staging buffer
     * and second copy: the quantizing converter's path).
     *
     * @throws IllegalArgumentException if src is not n elements of a convertible type, or out is shorter
     */
    static void toFloats(MemorySegment src, DType from, float[] out, int n) {
        if (!isConvertibleFloat(from)) {
            throw new IllegalArgumentException("cannot convert " + from + " to F32");
        }
        if (src.byteSize() != (long) n * from.bytes() || out.length < n) {
            throw new IllegalArgumentException(n + " " + from + " elements are " + (long) n * from.bytes()
                    + " bytes, not " + src.byteSize() + " (into " + out.length + " floats)");
        }
        for (int first = 0; first < n; first += BLOCK) {
            decode(src, from, first, out, first, Math.min(BLOCK, n - first));
        }
    }

    private static final ThreadLocal<short[]> HALVES = ThreadLocal.withInitial(() -> new short[BLOCK]);

    private static short[] halves(int n) {
        short[] h = HALVES.get();
        return h.length >= n ? h : new short[n];
    }

    private static void decode(MemorySegment src, DType from, long first, float[] buf, int at, int n) {
        switch (from) {
            case F32 -> MemorySegment.copy(src, F32, first * 4, buf, at, n);
            case F16 -> {
                short[] h = halves(n);
                MemorySegment.copy(src, S16, first * 2, h, 0, n); // bulk: per-element access checks cost 3x
                for (int i = 0; i < n; i++) {
                    buf[at + i] = Float.float16ToFloat(h[i]);
                }
            }
            case BF16 -> {
                short[] h = halves(n);
                MemorySegment.copy(src, S16, first * 2, h, 0, n);
                for (int i = 0; i < n; i++) {
                    buf[at + i] = bf16ToFloat(h[i]);
                }
            }
            case F64 -> {
                for (int i = 0; i < n; i++) {
                    buf[at + i] = (float) src.getAtIndex(F64, first + i);
                }
            }
            default -> throw new IllegalArgumentException("cannot convert from " + from);
        }
    }

    private static void encode(float[] buf, int n, MemorySegment dst, DType to, long first) {
        switch (to) {
            case F32 -> MemorySegment.copy(buf, 0, dst, F32, first * 4, n);
            case F16 -> {
                for (int i = 0; i < n; i++) {
                    dst.setAtIndex(S16, first + i, Float.floatToFloat16(buf[i]));
                }
            }
            case BF16 -> {
                for (int i = 0; i < n; i++) {
                    dst.setAtIndex(S16, first + i, floatToBf16(buf[i]));
                }
            }
            default -> throw new IllegalArgumentException("cannot convert to " + to);
        }
    }

    /** bfloat16 bits to float: bf16 is the top half of an f32, so this is exact. */
    static float bf16ToFloat(short bits) {
        return Float.intBitsToFloat((bits & 0xFFFF) << 16);
    }

    /**
     * float to bfloat16 bits, rounding to nearest, ties to even. Adding 0x7FFF plus the lowest bit that
     * survives (bit 16) carries into the kept half exactly when the dropped half is above one half, or
     * equal to it with an odd kept half. Finite values beyond bf16's range round to infinity, as any
     * overflow does. NaN is handled first: rounding its payload could turn it into infinity's bits.
     */
    static short floatToBf16(float f) {
        if (Float.isNaN(f)) {
            return BF16_NAN;
        }
        int bits = Float.floatToRawIntBits(f);
        int lsb = (bits >>> 16) & 1;
        return (short) ((bits + 0x7FFF + lsb) >>> 16);
    }
}
