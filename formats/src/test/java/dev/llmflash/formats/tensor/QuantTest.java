package dev.llmflash.formats.tensor;

import org.junit.jupiter.api.Test;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.EnumSource;

import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.util.Random;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

/** The block-quantized row layouts: sizes, the documented byte layout, and the error of a round trip. */
class QuantTest {

    @Test
    void sizesFollowTheBlockLayout() {
        assertEquals(4352, DType.Q8_0.rowBytes(4096));
        assertEquals(2304, DType.Q4_0.rowBytes(4096));
        assertEquals(8192, DType.F16.rowBytes(4096));
        assertEquals(34L * 2 * 3, DType.Q8_0.storageBytes(new long[] {3, 64}));
        assertEquals(18L * 4, DType.Q4_0.storageBytes(new long[] {128}));
        assertThrows(IllegalArgumentException.class, () -> DType.Q4_0.rowBytes(100));
        assertThrows(UnsupportedOperationException.class, DType.Q8_0::bytes);
        assertTrue(DType.Q4_0.isWeightType() && !DType.Q4_0.isComputeType());
        assertEquals(null, DType.fromSafetensors("Q4_0"), "safetensors has no block-quantized dtype");
        assertEquals(DType.Q4_0, DType.fromName("Q4_0"));
    }

    @Test
    void q4PacksLowNibblesFirstAndScalesAhead() {
        float[] x = new float[64];
        for (int j = 0; j < 64; j++) {
            x[j] = j < 32 ? -8 + (j % 16) : 0; // block 0: -8 .. 7 twice, scale 1; block 1: zeros
        }
        MemorySegment m = MemorySegment.ofArray(new byte[(int) DType.Q4_0.rowBytes(64)]);
        Quant.quantizeRow(DType.Q4_0, x, 0, 64, m, 0);
        assertEquals(1.0f, Float.float16ToFloat(m.get(ValueLayout.JAVA_SHORT_UNALIGNED, 0)));
        assertEquals(0.0f, Float.float16ToFloat(m.get(ValueLayout.JAVA_SHORT_UNALIGNED, 2)));
        for (int j = 0; j < 16; j++) {
            int b = m.get(ValueLayout.JAVA_BYTE, 4 + j) & 0xff;
            assertEquals(j, b & 15, "weight " + j + " in the low nibble");
            assertEquals(j, b >>> 4, "weight " + (16 + j) + " in the high nibble");
        }
        float[] back = new float[64];
        Quant.dequantizeRow(m, DType.Q4_0, 0, 64, back, 0);
        for (int j = 0; j < 64; j++) {
            assertEquals(x[j], back[j], "weight " + j);
            assertEquals(x[j], Quant.get(m, DType.Q4_0, 0, 64, j));
        }
    }

    @ParameterizedTest
    @EnumSource(names = {"Q8_0", "Q4_0"})
    void roundTripErrorIsHalfAStepPerBlock(DType dt) { // Q4_0: a step on the side opposite its extreme
        Random r = new Random(7);
        int rows = 5;
        int c = 256;
        float[] x = new float[rows * c];
        for (int i = 0; i < x.length; i++) {
            x[i] = (float) (r.nextGaussian() * (1 + (i / 32) % 5)); // blocks of different scales
        }
        x[40] = 0;
        MemorySegment m = MemorySegment.ofArray(new byte[(int) (rows * dt.rowBytes(c))]);
        Quant.quantize(dt, x, 0, rows, c, m, 0);
        float[] back = new float[x.length];
        for (int row = 0; row < rows; row++) {
            Quant.dequantizeRow(m, dt, row * dt.rowBytes(c), c, back, row * c);
        }
        for (int b = 0; b < x.length / 32; b++) {
            float amax = 0;
            for (int j = 0; j < 32; j++) {
                amax = Math.max(amax, Math.abs(x[32 * b + j]));
            }
            float step = dt == DType.Q8_0 ? amax / 127 : amax / 8;
            for (int j = 0; j < 32; j++) {
                int i = 32 * b + j;
                // half a step (Q4_0: -8 .. 7 steps, so the side opposite the extreme clips at 7 of its 8), plus
                // what rounding the scale to f16 moves the far end by
                float bound = step * (dt == DType.Q8_0 ? 0.5f : 1f) + amax * 1.5e-3f;
                assertTrue(Math.abs(back[i] - x[i]) <= bound, dt + " weight " + i + ": " + x[i] + " -> " + back[i]);
            }
        }
    }

    @Test
    void refusesWhatCannotBeQuantizedFaithfully() {
        float[] x = new float[32];
        x[3] = Float.NaN;
        MemorySegment m = MemorySegment.ofArray(new byte[34]);
        assertThrows(IllegalArgumentException.class, () -> Quant.quantizeRow(DType.Q8_0, x, 0, 32, m, 0));
        x[3] = 1e9f; // scale 1e9 / 127 is beyond f16
        assertThrows(IllegalArgumentException.class, () -> Quant.quantizeRow(DType.Q8_0, x, 0, 32, m, 0));
        assertThrows(IllegalArgumentException.class, () -> Quant.quantizeRow(DType.F16, x, 0, 32, m, 0));
    }

    /**
     * The converter's vector quantizer against the scalar definition, byte for byte: Gaussian rows at
     * many scales (down to f16-subnormal and zero scales), blocks of zeros and of -0, exact ties
     * (x / s = k + 0.5 on either side), both signs reaching the extreme, a lone extreme per block,
     * values that saturate; and the same refusals (NaN, Inf, a scale beyond f16).
     */
    @ParameterizedTest
    @EnumSource(value = DType.class, names = {"Q8_0", "Q4_0"})
    void vectorQuantizerIsByteForByteTheScalarOne(DType dt) {
        assertTrue(Quant.VECTOR, "this machine's f32 vectors should take the vector quantizer (8 or 16 lanes)");
        Random rnd = new Random(11);
        int c = 8 * Quant.BLOCK;
        int rowBytes = (int) dt.rowBytes(c);
        for (int trial = 0; trial < 3000; trial++) {
            float[] x = new float[c + 3];
            int off = trial % 4;
            double mag = Math.pow(10, rnd.nextInt(12) - 10); // 1e-10 .. 10: f16-subnormal and zero scales to large ones
            for (int j = 0; j < c; j++) {
                x[off + j] = (float) (rnd.nextGaussian() * mag);
            }
            int kind = trial % 7;
            for (int b = 0; b < c / Quant.BLOCK; b++) {
                int xo = off + b * Quant.BLOCK;
                switch ((kind + b) % 7) {
                    case 0 -> java.util.Arrays.fill(x, xo, xo + Quant.BLOCK, 0f);
                    case 1 -> java.util.Arrays.fill(x, xo, xo + Quant.BLOCK, -0f);
                    case 2 -> { // ties: with max |x| = 127 (Q8) or -8 (Q4) steps of 1, halves land on k + 0.5
                        float step = 0.25f;
                        for (int j = 0; j < Quant.BLOCK; j++) {
                            x[xo + j] = step * (rnd.nextInt(15) - 7 + (rnd.nextBoolean() ? 0.5f : 0f));
                        }
                        x[xo] = dt == DType.Q8_0 ? 127 * step : -8 * step;
                    }
                    case 3 -> { // both signs reach the extreme
                        x[xo + 1] = 3f;
                        x[xo + 2] = -3f;
                    }
                    case 4 -> x[xo + rnd.nextInt(Quant.BLOCK)] = (float) (mag * 1000);
                    default -> { }
                }
            }
            byte[] want = new byte[rowBytes];
            byte[] got = new byte[rowBytes];
            Quant.quantizeRow(dt, x, off, c, want, 0);
            Quant.quantizeRowVector(dt, x, off, c, got, 0);
            org.junit.jupiter.api.Assertions.assertArrayEquals(want, got, dt + " trial " + trial);
        }
        float[] bad = new float[Quant.BLOCK];
        byte[] out = new byte[(int) dt.rowBytes(Quant.BLOCK)];
        for (float v : new float[]{Float.NaN, Float.POSITIVE_INFINITY, Float.NEGATIVE_INFINITY, 1e9f}) {
            bad[5] = v;
            assertThrows(IllegalArgumentException.class, () -> Quant.quantizeRow(dt, bad, 0, Quant.BLOCK, out, 0));
            assertThrows(IllegalArgumentException.class, () -> Quant.quantizeRowVector(dt, bad, 0, Quant.BLOCK, out, 0));
        }
    }
}
