package dev.llmflash.trainer;

import java.util.Random;

/**
 * Synthetic layer data with a known answer: x ~ N(0, 1)^d, and neuron i fires when
 * {@code (U V x)_i + bias_i > 0} for a hidden rank-{@code q} rule (U: f x q, V: q x d, both N(0, 1)).
 * (U V x)_i is Gaussian with standard deviation s_i = ||V^T u_i||, so {@code bias_i = -z s_i} with
 * z the standard normal quantile of 1 - density makes each neuron fire with probability density.
 * A rank >= q predictor can represent the rule exactly (a logistic on the same linear function).
 */
final class Planted {
    final int d, f, q;
    final double[] u, v, bias;

    Planted(int d, int f, int q, double density, long seed) {
        this.d = d;
        this.f = f;
        this.q = q;
        Random rnd = new Random(seed);
        u = new double[f * q];
        v = new double[q * d];
        for (int i = 0; i < u.length; i++) {
            u[i] = rnd.nextGaussian();
        }
        for (int i = 0; i < v.length; i++) {
            v[i] = rnd.nextGaussian();
        }
        double z = normalQuantile(1 - density);
        bias = new double[f];
        for (int i = 0; i < f; i++) {
            double ss = 0;
            for (int j = 0; j < d; j++) {
                double w = 0;
                for (int k = 0; k < q; k++) {
                    w += u[i * q + k] * v[k * d + j];
                }
                ss += w * w;
            }
            bias[i] = -z * Math.sqrt(ss);
        }
    }

    LayerData sample(int layer, int n, long seed) {
        Random rnd = new Random(seed);
        float[] x = new float[n * d];
        boolean[][] active = new boolean[n][f];
        double[] vx = new double[q];
        for (int t = 0; t < n; t++) {
            for (int j = 0; j < d; j++) {
                x[t * d + j] = (float) rnd.nextGaussian();
            }
            for (int k = 0; k < q; k++) {
                double s = 0;
                for (int j = 0; j < d; j++) {
                    s += v[k * d + j] * x[t * d + j];
                }
                vx[k] = s;
            }
            for (int i = 0; i < f; i++) {
                double s = bias[i];
                for (int k = 0; k < q; k++) {
                    s += u[i * q + k] * vx[k];
                }
                active[t][i] = s > 0;
            }
        }
        return new LayerData(layer, n, d, f, x, LayerData.pack(active, f));
    }

    /** Standard normal quantile by bisection on erfc-free CDF (Abramowitz-Stegun 26.2.17 is enough here). */
    static double normalQuantile(double p) {
        double lo = -10, hi = 10;
        for (int it = 0; it < 200; it++) {
            double mid = (lo + hi) / 2;
            if (cdf(mid) < p) {
                lo = mid;
            } else {
                hi = mid;
            }
        }
        return (lo + hi) / 2;
    }

    private static double cdf(double x) {
        // A&S 26.2.17, absolute error < 7.5e-8
        double t = 1 / (1 + 0.2316419 * Math.abs(x));
        double poly = t * (0.319381530 + t * (-0.356563782 + t * (1.781477937 + t * (-1.821255978 + t * 1.330274429))));
        double tail = Math.exp(-x * x / 2) / Math.sqrt(2 * Math.PI) * poly;
        return x >= 0 ? 1 - tail : tail;
    }

    /** Scalar double forward of a trained predictor: counts over all (token, neuron) pairs of data's tokens [from, to). */
    static long[] score(dev.llmflash.formats.predictor.LayerPredictor p, LayerData data, int from, int to) {
        int d = data.d(), f = data.f(), r = p.rank();
        long actual = 0, predicted = 0, tp = 0;
        double[] h = new double[r];
        for (int t = from; t < to; t++) {
            for (int k = 0; k < r; k++) {
                double s = 0;
                for (int j = 0; j < d; j++) {
                    s += (double) p.a()[k * d + j] * data.x()[t * d + j];
                }
                h[k] = s;
            }
            for (int i = 0; i < f; i++) {
                double z = p.c()[i];
                for (int k = 0; k < r; k++) {
                    z += p.b()[i * r + k] * h[k];
                }
                boolean pred = 1 / (1 + Math.exp(-z)) > p.threshold();
                boolean act = data.label(t, i);
                actual += act ? 1 : 0;
                predicted += pred ? 1 : 0;
                tp += pred && act ? 1 : 0;
            }
        }
        return new long[]{actual, predicted, tp};
    }
}
