package dev.llmflash.converter;

import dev.llmflash.formats.tensor.DType;
import org.junit.jupiter.api.Test;

import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.util.SplittableRandom;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;

/** The converter's element conversions against {@link Oracle}'s scalar definitions. */
class DTypeConversionTest {

    private static void assertBf16(float x) {
        assertEquals(Oracle.bf16(x), DTypeConversion.floatToBf16(x),
                () -> "bf16 of " + x + " (bits " + Integer.toHexString(Float.floatToRawIntBits(x)) + ")");
    }

    @Test
    void bf16RoundsToNearestEvenAtTheEdges() {
        // Ties: 1 + 2^-8 lies between 1 (even) and 1 + 2^-7: stays at 1; 1 + 3 * 2^-8 goes up to the even 1 + 2^-6.
        assertEquals((short) 0x3F80, DTypeConversion.floatToBf16(Float.intBitsToFloat(0x3F808000)));
        assertEquals((short) 0x3F82, DTypeConversion.floatToBf16(Float.intBitsToFloat(0x3F818000)));
        // Just above and below a tie.
        assertEquals((short) 0x3F81, DTypeConversion.floatToBf16(Float.intBitsToFloat(0x3F808001)));
        assertEquals((short) 0x3F80, DTypeConversion.floatToBf16(Float.intBitsToFloat(0x3F807FFF)));
        // Overflow: the largest float rounds to infinity; max bf16 stays.
        assertEquals((short) 0x7F80, DTypeConversion.floatToBf16(Float.MAX_VALUE));
        assertEquals((short) 0xFF80, DTypeConversion.floatToBf16(-Float.MAX_VALUE));
        assertEquals((short) 0x7F7F, DTypeConversion.floatToBf16(Float.intBitsToFloat(0x7F7F0000)));
        // NaNs (quiet, signalling, negative, payload only in the dropped half) stay NaN.
        for (int nan : new int[] {0x7FC00000, 0x7F800001, 0xFF800001, 0x7FFFFFFF, 0xFFC00000}) {
            assertEquals(DTypeConversion.BF16_NAN, DTypeConversion.floatToBf16(Float.intBitsToFloat(nan)));
        }
        for (float x : new float[] {0f, -0f, Float.POSITIVE_INFINITY, Float.NEGATIVE_INFINITY, Float.MIN_VALUE,
                -Float.MIN_VALUE, Float.MIN_NORMAL, Float.intBitsToFloat(0x00808000), Float.intBitsToFloat(0x00018000),
                Float.intBitsToFloat(0x00008000), Float.intBitsToFloat(0x7F7F8000), Float.intBitsToFloat(0x7F7F7FFF)}) {
            assertBf16(x);
        }
    }

    @Test
    void bf16MatchesTheOracleOnEveryUpperHalf() {
        // Every sign/exponent/kept-mantissa pattern, with the dropped half at the values that decide rounding.
        int[] lows = {0x0000, 0x0001, 0x7FFF, 0x8000, 0x8001, 0xFFFF, 0x4000, 0xC000};
        for (int hi = 0; hi < 0x10000; hi++) {
            for (int lo : lows) {
                assertBf16(Float.intBitsToFloat(hi << 16 | lo));
            }
        }
        SplittableRandom random = new SplittableRandom(7);
        for (int i = 0; i < 1_000_000; i++) {
            assertBf16(Float.intBitsToFloat(random.nextInt()));
        }
    }

    @Test
    void convertsSegmentsBetweenEveryPair() {
        SplittableRandom random = new SplittableRandom(11);
        int n = 10_000; // more than one internal block of 4096
        DType[] from = {DType.F64, DType.F32, DType.F16, DType.BF16};
        DType[] to = {DType.F32, DType.F16, DType.BF16};
        for (DType a : from) {
            MemorySegment src = MemorySegment.ofArray(new byte[n * a.bytes()]);
            for (int i = 0; i < n; i++) {
                // Mostly ordinary weights, some arbitrary bit patterns (NaN, infinities, subnormals).
                double v = random.nextInt(10) == 0 ? Float.intBitsToFloat(random.nextInt()) : random.nextGaussian() * 0.05;
                switch (a) {
                    case F64 -> src.setAtIndex(ValueLayout.JAVA_DOUBLE_UNALIGNED, i, v);
                    case F32 -> src.setAtIndex(ValueLayout.JAVA_FLOAT_UNALIGNED, i, (float) v);
                    case F16 -> src.setAtIndex(ValueLayout.JAVA_SHORT_UNALIGNED, i,
                            (short) random.nextInt());
                    case BF16 -> src.setAtIndex(ValueLayout.JAVA_SHORT_UNALIGNED, i,
                            (short) random.nextInt());
                    default -> throw new AssertionError();
                }
            }
            float[] floats = new float[n + 1];
            floats[n] = 42f;
            DTypeConversion.toFloats(src, a, floats, n); // the quantizing converter's path: straight into f32
            assertEquals(42f, floats[n], a + ": toFloats wrote past n");
            for (int i = 0; i < n; i++) {
                assertEquals(Oracle.convert(a, DType.F32, Oracle.bits(src, a, i)),
                        Float.floatToRawIntBits(floats[i]) & 0xFFFF_FFFFL, a + " -> f32 (toFloats) element " + i);
            }
            for (DType b : to) {
                MemorySegment dst = MemorySegment.ofArray(new byte[n * b.bytes()]);
                DTypeConversion.convert(src, a, dst, b);
                for (int i = 0; i < n; i++) {
                    long want = Oracle.convert(a, b, Oracle.bits(src, a, i));
                    long got = Oracle.bits(dst, b, i);
                    assertEquals(want, got, a + " -> " + b + " element " + i);
                }
            }
        }
    }

    @Test
    void refusesMismatchedSizesAndTypes() {
        MemorySegment src = MemorySegment.ofArray(new byte[8]);
        assertThrows(IllegalArgumentException.class,
                () -> DTypeConversion.convert(src, DType.F16, MemorySegment.ofArray(new byte[4]), DType.F32));
        assertThrows(IllegalArgumentException.class,
                () -> DTypeConversion.convert(src, DType.I32, MemorySegment.ofArray(new byte[4]), DType.F16));
        assertThrows(IllegalArgumentException.class,
                () -> DTypeConversion.convert(src.asSlice(0, 3), DType.F16, MemorySegment.ofArray(new byte[6]), DType.F32));
        assertThrows(IllegalArgumentException.class, () -> DTypeConversion.toFloats(src, DType.F16, new float[4], 3));
        assertThrows(IllegalArgumentException.class, () -> DTypeConversion.toFloats(src, DType.F16, new float[3], 4));
        assertThrows(IllegalArgumentException.class, () -> DTypeConversion.toFloats(src, DType.I32, new float[2], 2));
    }
}
