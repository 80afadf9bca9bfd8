package dev.llmflash.runtime.flash;

import dev.llmflash.formats.predictor.LayerPredictor;
import org.junit.jupiter.api.Test;

import java.util.SplittableRandom;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * The trained selector holds A and B in f16: it chooses what a scalar double-precision evaluation of
 * the f16-rounded matrices chooses (apart from logits within 1e-4 of the threshold, where float sums
 * in another order may go either way), and counts its DRAM as 2 bytes per A/B weight.
 */
class TrainedSelectorTest {

    @Test
    void choosesAsTheF16RoundedPredictorAndHoldsHalfTheBytes() {
        int d = 96, f = 300, r = 24;
        SplittableRandom rnd = new SplittableRandom(5);
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
        float threshold = 0.3f;
        LayerPredictor p = new LayerPredictor(3, false, r, threshold, a, b, c);
        ActiveSelector.Trained t = ActiveSelector.trained(p);
        assertEquals(3, t.layer());
        assertEquals(2L * (a.length + b.length) + 4L * f, t.bytes());
        assertEquals(t.bytes(), ActiveSelector.Trained.bytes(p));
        double logit = Math.log(threshold / (1 - threshold));
        int[] out = new int[f];
        int chosenTotal = 0;
        for (int token = 0; token < 20; token++) {
            float[] x = new float[d + 5];
            for (int j = 0; j < x.length; j++) {
                x[j] = (float) rnd.nextGaussian();
            }
            int n = t.select(x, 5, out);
            boolean[] chosen = new boolean[f];
            for (int k = 0; k < n; k++) {
                assertTrue(k == 0 || out[k] > out[k - 1], "increasing order");
                chosen[out[k]] = true;
            }
            chosenTotal += n;
            double[] low = new double[r];
            for (int j = 0; j < r; j++) {
                for (int i = 0; i < d; i++) {
                    low[j] += (double) Float.float16ToFloat(Float.floatToFloat16(a[j * d + i])) * x[5 + i];
                }
            }
            for (int i = 0; i < f; i++) {
                double s = c[i];
                for (int j = 0; j < r; j++) {
                    s += (double) Float.float16ToFloat(Float.floatToFloat16(b[i * r + j])) * low[j];
                }
                if (Math.abs(s - logit) > 1e-4) {
                    assertEquals(s > logit, chosen[i], "token " + token + " neuron " + i + " logit " + s);
                }
            }
        }
        assertTrue(chosenTotal > 0 && chosenTotal < 20 * f, "a non-trivial choice: " + chosenTotal);
    }
}
