package dev.llmflash.trainer;

import org.junit.jupiter.api.Test;

import java.util.Random;

import static org.junit.jupiter.api.Assertions.*;

/** Each kernel against a scalar double twin, with sizes that are not multiples of any vector length. */
class TrainerKernelsTest {
    private static final int B = 7, D = 37, F = 83, R = 5;
    private final Random rnd = new Random(123);

    private float[] rand(int n) {
        float[] v = new float[n];
        for (int i = 0; i < n; i++) {
            v[i] = (float) rnd.nextGaussian();
        }
        return v;
    }

    private static void close(double expected, float actual, String what) {
        assertEquals(expected, actual, 1e-5 * Math.max(1, Math.abs(expected)), what);
    }

    @Test
    void project() {
        float[] x = rand(B * D), a = rand(R * D), h = new float[B * R];
        TrainerKernels.project(x, D, a, R, h, 2, 6);
        for (int t = 0; t < B; t++) {
            for (int k = 0; k < R; k++) {
                double s = 0;
                for (int j = 0; j < D; j++) {
                    s += (double) x[t * D + j] * a[k * D + j];
                }
                if (t >= 2 && t < 6) {
                    close(s, h[t * R + k], "H " + t + "," + k);
                } else {
                    assertEquals(0f, h[t * R + k], "outside the row range");
                }
            }
        }
    }

    @Test
    void logitsSigmoidAndBalancedGradient() {
        float[] h = rand(B * R), bt = rand(R * F), c = rand(F), z = new float[B * F];
        TrainerKernels.logits(h, R, bt, c, F, z, 0, B);
        double[] zExp = new double[B * F];
        for (int t = 0; t < B; t++) {
            for (int i = 0; i < F; i++) {
                double s = c[i];
                for (int k = 0; k < R; k++) {
                    s += (double) h[t * R + k] * bt[k * F + i];
                }
                zExp[t * F + i] = s;
                close(s, z[t * F + i], "Z");
            }
        }
        float[] p = z.clone();
        TrainerKernels.sigmoid(p, F, F);
        for (int i = 0; i < F; i++) {
            close(1 / (1 + Math.exp(-z[F + i])), p[F + i], "sigmoid");
        }
        assertEquals(z[0], p[0], "row 0 untouched");
        float[] extremes = {-200f, -80f, 0f, 80f, 200f, -200f, -80f, 0f, 80f, 200f, -200f, -80f, 0f, 80f, 200f, 1f, 2f, 3f};
        TrainerKernels.sigmoid(extremes, 0, extremes.length);
        for (float e : extremes) {
            assertTrue(e >= 0f && e <= 1f && !Float.isNaN(e), "sigmoid of an extreme: " + e);
        }

        byte[] labels = new byte[2 * 11];
        rnd.nextBytes(labels);
        float[] y = new float[2 * F];
        TrainerKernels.unpackLabels(labels, 11, F, y, F);
        float[] wPos = rand(F), wNeg = rand(F);
        float[] g = p.clone();
        TrainerKernels.balancedGradient(g, y, F, wPos, wNeg, 0.25f, F);
        for (int i = 0; i < F; i++) {
            boolean active = ((labels[11 + i / 8] >> (i % 8)) & 1) == 1;
            assertEquals(active ? 1f : 0f, y[F + i], "label " + i);
            double expected = 0.25 * (p[F + i] - (active ? 1 : 0)) * (active ? wPos[i] : wNeg[i]);
            close(expected, g[F + i], "dZ " + i);
        }
    }

    @Test
    void expIsAccurateAndItsScalarTwinIsBitIdentical() {
        int n = 4096 + 5;
        float[] x = new float[n];
        for (int i = 0; i < n; i++) {
            x[i] = -90f + 180f * i / (n - 1);
        }
        var species = jdk.incubator.vector.FloatVector.SPECIES_PREFERRED;
        float[] y = new float[n];
        int i = 0;
        for (; i < species.loopBound(n); i += species.length()) {
            TrainerKernels.exp(jdk.incubator.vector.FloatVector.fromArray(species, x, i)).intoArray(y, i);
        }
        for (; i < n; i++) {
            y[i] = TrainerKernels.expScalar(x[i]);
        }
        for (i = 0; i < n; i++) {
            assertEquals(Float.floatToRawIntBits(TrainerKernels.expScalar(x[i])), Float.floatToRawIntBits(y[i]), "lane vs scalar at " + x[i]);
            double clamped = Math.min(Math.max(x[i], -86), 88);
            assertEquals(Math.exp(clamped), y[i], 3e-7 * Math.exp(clamped), "exp(" + x[i] + ")");
        }
        float[] p = x.clone();
        TrainerKernels.sigmoid(p, 0, n);
        for (i = 0; i < n; i++) {
            assertEquals(Float.floatToRawIntBits(TrainerKernels.sigmoidScalar(x[i])), Float.floatToRawIntBits(p[i]));
        }
    }

    @Test
    void dotMatchesDoubleAndIsOrderFixed() {
        float[] a = rand(300), b = rand(300), lanes = TrainerKernels.lanes();
        for (int n : new int[]{0, 1, 15, 16, 17, 255, 299}) {
            double s = 0;
            for (int j = 0; j < n; j++) {
                s += (double) a[1 + j] * b[j];
            }
            assertEquals(s, TrainerKernels.dot(a, 1, b, 0, n, lanes), 1e-5 * Math.max(1, Math.sqrt(n)), "n " + n);
            assertEquals(TrainerKernels.dot(a, 1, b, 0, n, lanes), TrainerKernels.dot(a, 1, b, 0, n, lanes));
        }
    }

    @Test
    void backwardProducts() {
        float[] dz = rand(B * F), bt = rand(R * F), h = rand(B * R), x = rand(B * D);
        float[] dh = new float[B * R];
        TrainerKernels.backHidden(dz, F, bt, R, dh, 0, B);
        for (int t = 0; t < B; t++) {
            for (int k = 0; k < R; k++) {
                double s = 0;
                for (int i = 0; i < F; i++) {
                    s += (double) dz[t * F + i] * bt[k * F + i];
                }
                close(s, dh[t * R + k], "dH");
            }
        }
        float[] dbt = rand(R * F), dc = rand(F);          // garbage: the kernel must zero its range
        float[] before = dbt.clone();
        TrainerKernels.gradUp(h, R, dz, F, B, dbt, dc, 16, 70);
        for (int k = 0; k < R; k++) {
            for (int i = 0; i < F; i++) {
                if (i < 16 || i >= 70) {
                    assertEquals(before[k * F + i], dbt[k * F + i], "outside the column range");
                    continue;
                }
                double s = 0, sc = 0;
                for (int t = 0; t < B; t++) {
                    s += (double) h[t * R + k] * dz[t * F + i];
                    sc += dz[t * F + i];
                }
                close(s, dbt[k * F + i], "dBt");
                close(sc, dc[i], "dc");
            }
        }
        float[] da = rand(R * D);
        TrainerKernels.gradDown(dh, R, x, D, B, da, 1, 4);
        for (int k = 1; k < 4; k++) {
            for (int j = 0; j < D; j++) {
                double s = 0;
                for (int t = 0; t < B; t++) {
                    s += (double) dh[t * R + k] * x[t * D + j];
                }
                close(s, da[k * D + j], "dA");
            }
        }
    }

    @Test
    void adamMatchesTheTextbookUpdateAndVectorAgreesWithScalar() {
        int n = 53;
        float[] w = rand(n), m = rand(n), v = new float[n], g = rand(n);
        for (int i = 0; i < n; i++) {
            v[i] = Math.abs((float) rnd.nextGaussian());
        }
        float[] w0 = w.clone(), m0 = m.clone(), v0 = v.clone();
        int step = 3;
        double bc1 = 1 - Math.pow(0.9, step), bc2 = 1 - Math.pow(0.999, step);
        float lr = 0.01f;
        TrainerKernels.adam(w, m, v, g, 0, n, 0.9f, 0.999f, 1e-8f, (float) (lr / bc1), (float) (1 / Math.sqrt(bc2)));
        for (int i = 0; i < n; i++) {
            double mi = 0.9 * m0[i] + 0.1 * g[i];
            double vi = 0.999 * v0[i] + 0.001 * g[i] * g[i];
            double wi = w0[i] - lr * (mi / bc1) / (Math.sqrt(vi / bc2) + 1e-8);
            close(mi, m[i], "m");
            close(vi, v[i], "v");
            close(wi, w[i], "w");
        }
        // The same update element by element (all scalar tail) is bit-identical to the vector lanes.
        float[] w2 = w0.clone(), m2 = m0.clone(), v2 = v0.clone();
        for (int i = 0; i < n; i++) {
            TrainerKernels.adam(w2, m2, v2, g, i, i + 1, 0.9f, 0.999f, 1e-8f, (float) (lr / bc1), (float) (1 / Math.sqrt(bc2)));
        }
        assertArrayEquals(w, w2);
        assertArrayEquals(m, m2);
        assertArrayEquals(v, v2);
    }

    @Test
    void partsCoverTheRangeAlignedAndInOrder() {
        for (int parts = 1; parts <= 5; parts++) {
            int prev = 0;
            assertEquals(0, Team.lo(1000, 0, parts, 64));
            for (int p = 1; p <= parts; p++) {
                int lo = Team.lo(1000, p, parts, 64);
                assertTrue(lo >= prev);
                assertTrue(lo == 1000 || lo % 64 == 0);
                prev = lo;
            }
            assertEquals(1000, prev);
        }
    }
}
