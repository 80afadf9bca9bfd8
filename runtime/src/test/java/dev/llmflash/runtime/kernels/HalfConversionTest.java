package dev.llmflash.runtime.kernels;

import dev.llmflash.formats.tensor.DType;
import org.junit.jupiter.api.Test;

import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;
import static org.junit.jupiter.api.Assertions.fail;

/**
 * The 16-bit conversions are exact for every one of the 65536 bit patterns: f16 against
 * {@link Float#float16ToFloat} (the JDK's IEEE 754 binary16 conversion), bf16 against the upper half
 * of an f32. NaN must stay NaN (payload bits may differ). Checked through every vectorized path that
 * converts: row conversion ({@code toF32}), the one-row dot, and matvec's even/odd-split 4-row loops.
 */
class HalfConversionTest {

    static float expected(DType dt, short h) {
        return dt == DType.F16 ? Float.float16ToFloat(h) : Float.intBitsToFloat((h & 0xffff) << 16);
    }

    static void assertSame(float want, float got, String what) {
        if (Float.isNaN(want)) {
            assertTrue(Float.isNaN(got), what + ": expected NaN, got " + got);
        } else if (Float.floatToRawIntBits(want) != Float.floatToRawIntBits(got)) {
            fail(what + ": expected " + want + " (0x" + Integer.toHexString(Float.floatToRawIntBits(want))
                    + "), got " + got + " (0x" + Integer.toHexString(Float.floatToRawIntBits(got)) + ")");
        }
    }

    /** All 65536 patterns in order, starting {@code misalign} bytes into a segment. */
    static MemorySegment allPatterns(Arena arena, int misalign) {
        MemorySegment m = arena.allocate(2 * 65536 + misalign, 64).asSlice(misalign, 2 * 65536);
        for (int h = 0; h < 65536; h++) {
            m.setAtIndex(ValueLayout.JAVA_SHORT_UNALIGNED, h, (short) h);
        }
        return m;
    }

    @Test
    void toF32IsExactForAllPatterns() {
        try (Arena arena = Arena.ofConfined()) {
            for (int mis : new int[]{0, 2, 1}) {
                MemorySegment m = allPatterns(arena, mis);
                for (DType dt : new DType[]{DType.F16, DType.BF16}) {
                    float[] out = new float[65536];
                    VectorKernels.toF32(m, dt, 0, out, 0, 65536);
                    for (int h = 0; h < 65536; h++) {
                        assertSame(expected(dt, (short) h), out[h], dt + " 0x" + Integer.toHexString(h) + " +" + mis);
                    }
                    // Odd start and length: the scalar tail and a vector body starting mid-pattern.
                    float[] part = new float[1001];
                    VectorKernels.toF32(m, dt, 31743, part, 0, 1001);
                    for (int k = 0; k < 1001; k++) {
                        assertSame(expected(dt, (short) (31743 + k)), part[k], dt + " slice " + k);
                    }
                }
            }
        }
    }

    @Test
    void kernelsRowIsExactForAllPatterns() {
        try (Arena arena = Arena.ofConfined(); Kernels k = new Kernels(1)) {
            MemorySegment m = allPatterns(arena, 2);
            for (DType dt : new DType[]{DType.F16, DType.BF16}) {
                for (int row = 0; row < 256; row++) {
                    float[] out = new float[256];
                    k.row(m, dt, row, 256, out);
                    for (int j = 0; j < 256; j++) {
                        assertSame(expected(dt, (short) (row * 256 + j)), out[j], dt + " row " + row + " col " + j);
                    }
                }
            }
        }
    }

    /**
     * W holds every finite pattern once (r x 256); x = e_j (one-hot) makes y = column j, which must
     * equal the exact conversion: every other product is an exact zero. Covers the 4-row loops, the
     * r mod 4 rows and the one-row dot.
     */
    @Test
    void matvecReadsEveryFiniteValueExactly() {
        for (DType dt : new DType[]{DType.F16, DType.BF16}) {
            short[] finite = new short[65536];
            int n = 0;
            for (int h = 0; h < 65536; h++) {
                if (Float.isFinite(expected(dt, (short) h))) {
                    finite[n++] = (short) h;
                }
            }
            int c = 256;
            int r = n / c; // 248 rows for f16, 255 for bf16 (the rest is dropped)
            try (Arena arena = Arena.ofShared(); Kernels k = new Kernels(2, 0)) {
                MemorySegment m = arena.allocate(2L * r * c + 2, 64).asSlice(2, 2L * r * c);
                for (int i = 0; i < r * c; i++) {
                    m.setAtIndex(ValueLayout.JAVA_SHORT_UNALIGNED, i, finite[i]);
                }
                for (int j = 0; j < c; j++) {
                    float[] x = new float[c];
                    x[j] = 1f;
                    float[] y = new float[r];
                    k.matvec(m, dt, r, c, x, y);
                    for (int i = 0; i < r; i++) {
                        float want = expected(dt, finite[i * c + j]);
                        // -0 * 1 + (+0 terms) may sum to +0: compare zeros by value, all else bit-exact.
                        if (want == 0f) {
                            assertEquals(0f, y[i], 0f, dt + " W[" + i + ", " + j + "]");
                        } else {
                            assertSame(want, y[i], dt + " W[" + i + ", " + j + "]");
                        }
                    }
                }
            }
        }
    }

    /**
     * Inf and NaN weights reach the result as IEEE arithmetic says: in the 4-row loops (one thread: rows
     * 0..7 go as (0, 2, 4, 6) and (1, 3, 5, 7); f16 then takes its exact redo path), in the scalar
     * tail columns and in the r mod 4 row; and through the split path (two threads, tiny chunks).
     */
    @Test
    void matvecPropagatesInfAndNan() {
        for (DType dt : new DType[]{DType.F16, DType.BF16, DType.F32}) {
            int r = 9;
            int c = 67;
            try (Arena arena = Arena.ofShared(); Kernels one = new Kernels(1); Kernels split = new Kernels(2, 0)) {
                for (Kernels k : new Kernels[]{one, split}) {
                    MemorySegment w = Matrices.matrix(arena, dt, r, c, 2, Matrices.integers(5, 2));
                    Matrices.store(w, dt, 0L * c + 3, Float.POSITIVE_INFINITY); // row 0: +Inf, odd column
                    Matrices.store(w, dt, 2L * c + 40, Float.NEGATIVE_INFINITY); // row 2: -Inf, even column
                    Matrices.store(w, dt, 5L * c + 64, Float.NaN); // row 5, tail column: NaN
                    Matrices.store(w, dt, 8L * c + 1, Float.NaN); // row 8 (the r mod 4 row): NaN
                    float[] x = new float[c];
                    java.util.Arrays.fill(x, 1f);
                    float[] want = new float[r];
                    ScalarKernels.matvec(w, dt, r, c, x, want);
                    float[] y = new float[r];
                    k.matvec(w, dt, r, c, x, y);
                    assertEquals(Float.POSITIVE_INFINITY, y[0], dt + " row 0");
                    assertEquals(Float.NEGATIVE_INFINITY, y[2], dt + " row 2");
                    assertTrue(Float.isNaN(y[5]), dt + " row 5: " + y[5]);
                    assertTrue(Float.isNaN(y[8]), dt + " row 8: " + y[8]);
                    for (int i : new int[]{1, 3, 4, 6, 7}) {
                        assertEquals(want[i], y[i], 0f, dt + " finite row " + i);
                    }
                }
            }
        }
    }
}
