package dev.llmflash.runtime.flash;

import dev.llmflash.formats.predictor.LayerPredictor;
import dev.llmflash.formats.tensor.DType;
import dev.llmflash.formats.tensor.Quant;
import dev.llmflash.runtime.kernels.Kernels;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.EnumSource;

import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.util.SplittableRandom;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * The trained selector holds A and B in f16, Q8_0 or Q4_0: it chooses what a scalar double-precision
 * evaluation of the rounded matrices (f16-rounded, or quantized then dequantized by the scalar
 * reference) chooses, apart from logits within 1e-4 of the threshold, where float sums in another
 * order may go either way; the calling thread and two kernel threads choose alike; its DRAM is what
 * the dtype's rows take.
 */
class TrainedSelectorTest {

    @ParameterizedTest
    @EnumSource(value = DType.class, names = {"F16", "Q8_0", "Q4_0"})
    void choosesAsTheRoundedPredictorAndHoldsTheDtypesBytes(DType dt) {
        int d = 96, f = 300, r = 32;
        SplittableRandom rnd = new SplittableRandom(5);
        LayerPredictor p = random(rnd, d, f, r);
        ActiveSelector.Trained t = ActiveSelector.trained(p, dt);
        assertEquals(dt, t.dtype());
        assertEquals(3, t.layer());
        assertEquals(dt.rowBytes(d) * r + dt.rowBytes(r) * f + 4L * f, t.bytes());
        assertEquals(t.bytes(), ActiveSelector.Trained.bytes(p, dt));
        float[] ar = rounded(p.a(), r, d, dt), br = rounded(p.b(), f, r, dt);
        double logit = Math.log(p.threshold() / (1 - p.threshold()));
        int[] out = new int[f], out2 = new int[f];
        int chosenTotal = 0;
        try (Kernels two = new Kernels(2)) {
            for (int token = 0; token < 20; token++) {
                float[] x = new float[d + 5];
                for (int j = 0; j < x.length; j++) {
                    x[j] = (float) rnd.nextGaussian();
                }
                int n = t.select(x, 5, out);
                int n2 = t.select(two, x, 5, out2);
                assertEquals(n, n2, "two threads choose as one");
                assertArrayEquals(java.util.Arrays.copyOf(out, n), java.util.Arrays.copyOf(out2, n2));
                boolean[] chosen = new boolean[f];
                for (int k = 0; k < n; k++) {
                    assertTrue(k == 0 || out[k] > out[k - 1], "increasing order");
                    chosen[out[k]] = true;
                }
                chosenTotal += n;
                double[] low = new double[r];
                for (int j = 0; j < r; j++) {
                    for (int i = 0; i < d; i++) {
                        low[j] += (double) ar[j * d + i] * x[5 + i];
                    }
                }
                // the second product's input is A x as the kernel computed it in float: compare with
                // the margin that float rounding of low (relative ~1e-6) can move a logit by
                for (int i = 0; i < f; i++) {
                    double s = p.c()[i];
                    for (int j = 0; j < r; j++) {
                        s += (double) br[i * r + j] * low[j];
                    }
                    if (Math.abs(s - logit) > 1e-4) {
                        assertEquals(s > logit, chosen[i], dt + " token " + token + " neuron " + i + " logit " + s);
                    }
                }
            }
        }
        assertTrue(chosenTotal > 0 && chosenTotal < 20 * f, "a non-trivial choice: " + chosenTotal);
    }

    @Test
    void aRankNotAMultipleOf32IsHeldInF16() {
        LayerPredictor p = random(new SplittableRandom(9), 96, 40, 24);
        ActiveSelector.Trained t = ActiveSelector.trained(p, DType.Q4_0);
        assertEquals(DType.F16, t.dtype());
        assertEquals(2L * (96 * 24 + 40 * 24) + 4L * 40, t.bytes());
        assertEquals(t.bytes(), ActiveSelector.Trained.bytes(p, DType.Q4_0));
        assertEquals(DType.Q4_0, ActiveSelector.Trained.dtypeFor(DType.Q4_0));
        assertEquals(DType.F16, ActiveSelector.Trained.dtypeFor(DType.BF16));
    }

    private static LayerPredictor random(SplittableRandom rnd, int d, int f, int r) {
        float[] a = new float[r * d], b = new float[f * r], c = new float[f];
        for (int i = 0; i < a.length; i++) {
            a[i] = (float) (rnd.nextGaussian() / Math.sqrt(d));
        }
        for (int i = 0; i < b.length; i++) {
            b[i] = (float) (rnd.nextGaussian() / Math.sqrt(r));
        }
        for (int i = 0; i < f; i++) {
            c[i] = (float) (rnd.nextGaussian() * 0.5 - 0.5);
        }
        return new LayerPredictor(3, false, r, 0.3f, a, b, c);
    }

    /** The matrix as the selector holds it, back in float: f16-rounded, or through the scalar dequantizer. */
    private static float[] rounded(float[] v, int rows, int cols, DType dt) {
        float[] out = new float[v.length];
        if (!dt.isQuantized()) {
            for (int i = 0; i < v.length; i++) {
                out[i] = Float.float16ToFloat(Float.floatToFloat16(v[i]));
            }
            return out;
        }
        MemorySegment m = Arena.ofAuto().allocate(dt.rowBytes(cols) * rows);
        Quant.quantize(dt, v, 0, rows, cols, m, 0);
        for (int i = 0; i < rows; i++) {
            Quant.dequantizeRow(m, dt, i * dt.rowBytes(cols), cols, out, i * cols);
        }
        return out;
    }
}
