package dev.llmflash.runtime.kernels;

import org.junit.jupiter.api.Test;

import java.util.Random;

import static org.junit.jupiter.api.Assertions.assertEquals;

/** The element-wise ops against double-precision formulas and known values. */
class OpsTest {

    @Test
    void erfMatchesKnownValues() {
        // erf values from Abramowitz & Stegun, Table 7.1
        double[][] known = {{0, 0}, {0.1, 0.1124629160}, {0.5, 0.5204998778}, {1, 0.8427007929}, {2, 0.9953222650},
                {3, 0.9999779095}, {-0.5, -0.5204998778}};
        for (double[] k : known) {
            assertEquals(k[1], Ops.erf(k[0]), 2e-7, "erf(" + k[0] + ")");
        }
    }

    @Test
    void geluIsExact() {
        float[] x = {-3f, -1f, -0.5f, 0f, 0.5f, 1f, 3f};
        // 0.5 x (1 + erf(x / sqrt 2)) with erf from the table above: gelu(1) = 0.8413447461, gelu(-1) = -0.1586552539
        float[] y = x.clone();
        Ops.gelu(y, 0, y.length);
        assertEquals(0.8413447461f, y[5], 1e-6f);
        assertEquals(-0.1586552539f, y[1], 1e-6f);
        assertEquals(0f, y[3], 0f);
        assertEquals(2.9959502f, y[6], 1e-5f);
    }

    @Test
    void layerNormMatchesDoubleFormula() {
        Random r = new Random(1);
        int d = 37;
        float[] x = new float[d + 5], w = new float[d], b = new float[d], out = new float[d + 3];
        for (int i = 0; i < x.length; i++) {
            x[i] = (float) (r.nextGaussian() * 3 + 1);
        }
        for (int i = 0; i < d; i++) {
            w[i] = (float) r.nextGaussian();
            b[i] = (float) r.nextGaussian();
        }
        Ops.layerNorm(x, 5, out, 3, d, w, b, 1e-5f);
        double mean = 0, var = 0;
        for (int i = 0; i < d; i++) {
            mean += x[5 + i];
        }
        mean /= d;
        for (int i = 0; i < d; i++) {
            var += (x[5 + i] - mean) * (x[5 + i] - mean);
        }
        var /= d;
        for (int i = 0; i < d; i++) {
            double expected = (x[5 + i] - mean) / Math.sqrt(var + 1e-5) * w[i] + b[i];
            assertEquals(expected, out[3 + i], 1e-5);
        }
    }

    @Test
    void softmaxSumsToOneAndIsShiftInvariant() {
        float[] a = {1000f, 1001f, 1002f};
        Ops.softmax(a, 0, 3);
        double e = Math.exp(1), z = 1 + e + e * e;
        assertEquals(1 / z, a[0], 1e-6);
        assertEquals(e * e / z, a[2], 1e-6);
    }
}
