package dev.llmflash.converter.synth;

import org.junit.jupiter.api.Test;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertNotEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

class SeededNormalTest {

    @Test
    void vectorFillEqualsTheScalarDefinitionAtAnyOffsetAndLength() {
        long key = SeededNormal.key(42, "model.decoder.layers.0.fc1.weight");
        float std = 0.02f;
        // Odd lengths (vector tail), unaligned starts, and a run across the 2^32 index boundary.
        long[] starts = {0, 1, 7, 1000, (1L << 32) - 5, (1L << 32) + 3, 5_000_000_017L};
        int[] lengths = {1, 3, 15, 16, 17, 63, 1000};
        for (long start : starts) {
            for (int n : lengths) {
                float[] dst = new float[n];
                SeededNormal.fill(key, std, start, dst, n);
                for (int i = 0; i < n; i++) {
                    float expected = SeededNormal.value(key, std, start + i);
                    assertEquals(Float.floatToRawIntBits(expected), Float.floatToRawIntBits(dst[i]),
                            "element " + (start + i));
                }
            }
        }
    }

    @Test
    void valuesHaveTheRequestedMeanAndStandardDeviationAndBoundedTails() {
        int n = 1 << 20;
        float std = 0.02f;
        float[] v = new float[n];
        SeededNormal.fill(SeededNormal.key(7, "w"), std, 123, v, n);
        double sum = 0, sq = 0, quart = 0, max = 0;
        for (float x : v) {
            sum += x;
            sq += (double) x * x;
            quart += Math.pow(x / std, 4);
            max = Math.max(max, Math.abs(x));
        }
        double mean = sum / n;
        double sd = Math.sqrt(sq / n - mean * mean);
        assertEquals(0, mean / std, 0.005, "mean in units of std");
        assertEquals(1, sd / std, 0.005, "std ratio");
        // Irwin-Hall of four uniforms: kurtosis 3 - 1.2/4 = 2.7 (a normal has 3).
        assertEquals(2.7, quart / n, 0.03, "kurtosis");
        assertTrue(max <= Math.sqrt(12.0) * std * 1.0001, "bounded by sqrt(12) std: " + max / std);
        assertTrue(max > 3.0 * std, "tails are reached: " + max / std);
    }

    @Test
    void neighbouringValuesAreUncorrelated() {
        int n = 1 << 18;
        float[] v = new float[n + 1];
        SeededNormal.fill(SeededNormal.key(1, "x"), 1f, 0, v, n + 1);
        double c = 0, s = 0;
        for (int i = 0; i < n; i++) {
            c += (double) v[i] * v[i + 1];
            s += (double) v[i] * v[i];
        }
        assertEquals(0, c / s, 0.01, "lag-1 autocorrelation");
    }

    @Test
    void keysDependOnSeedAndName() {
        long a = SeededNormal.key(0, "model.decoder.layers.1.fc1.weight");
        assertEquals(a, SeededNormal.key(0, "model.decoder.layers.1.fc1.weight"));
        assertNotEquals(a, SeededNormal.key(1, "model.decoder.layers.1.fc1.weight"));
        assertNotEquals(a, SeededNormal.key(0, "model.decoder.layers.1.fc2.weight"));
        assertNotEquals(a, SeededNormal.key(0, "model.decoder.layers.2.fc1.weight"));
        // Different keys give unrelated sequences, not shifted copies.
        float[] x = new float[64];
        float[] y = new float[64];
        SeededNormal.fill(a, 1f, 0, x, 64);
        SeededNormal.fill(SeededNormal.key(1, "model.decoder.layers.1.fc1.weight"), 1f, 0, y, 64);
        int equal = 0;
        for (int i = 0; i < 64; i++) {
            equal += x[i] == y[i] ? 1 : 0;
        }
        assertTrue(equal < 4, equal + " of 64 equal");
    }
}
