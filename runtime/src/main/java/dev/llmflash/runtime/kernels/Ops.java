package dev.llmflash.runtime.kernels;

/**
 * Small element-wise kernels of the forward passes, over f32 rows inside larger arrays
 * ({@code off} is the row's start). Legend: d = row length, hd = head dim.
 */
public final class Ops {
    private Ops() {
    }

    /**
     * LayerNorm as torch computes it: biased variance, {@code (x - mean) / sqrt(var + eps) * w + b}.
     * {@code w}/{@code b} may be null (no elementwise affine).
     */
    public static void layerNorm(float[] x, int xOff, float[] out, int outOff, int d, float[] w, float[] b, float eps) {
        float mean = 0f;
        for (int i = 0; i < d; i++) {
            mean += x[xOff + i];
        }
        mean /= d;
        float var = 0f;
        for (int i = 0; i < d; i++) {
            float c = x[xOff + i] - mean;
            var += c * c;
        }
        var /= d;
        float inv = (float) (1.0 / Math.sqrt(var + eps));
        for (int i = 0; i < d; i++) {
            float y = (x[xOff + i] - mean) * inv;
            if (w != null) {
                y = y * w[i] + b[i];
            }
            out[outOff + i] = y;
        }
    }

    /** In place: x = max(x, 0). */
    public static void relu(float[] x, int off, int n) {
        for (int i = off; i < off + n; i++) {
            if (x[i] < 0f) {
                x[i] = 0f;
            }
        }
    }

    /** In place exact GELU, {@code 0.5 x (1 + erf(x / sqrt 2))}, as torch's default gelu. */
    public static void gelu(float[] x, int off, int n) {
        for (int i = off; i < off + n; i++) {
            double v = x[i];
            x[i] = (float) (0.5 * v * (1.0 + erf(v / Math.sqrt(2.0))));
        }
    }

    /**
     * erf with absolute error below 1.2e-7 everywhere (Numerical Recipes' erfc Chebyshev fit),
     * ample for f32 activations.
     */
    public static double erf(double x) {
        double z = Math.abs(x);
        double t = 1.0 / (1.0 + 0.5 * z);
        double r = t * Math.exp(-z * z - 1.26551223 + t * (1.00002368 + t * (0.37409196 + t * (0.09678418
                + t * (-0.18628806 + t * (0.27886807 + t * (-1.13520398 + t * (1.48851587
                + t * (-0.82215223 + t * 0.17087277)))))))));
        return x >= 0 ? 1.0 - r : r - 1.0;
    }

    /** In place softmax over x[off, off+n). */
    public static void softmax(float[] x, int off, int n) {
        float max = Float.NEGATIVE_INFINITY;
        for (int i = off; i < off + n; i++) {
            max = Math.max(max, x[i]);
        }
        float sum = 0f;
        for (int i = off; i < off + n; i++) {
            float e = (float) Math.exp(x[i] - max);
            x[i] = e;
            sum += e;
        }
        float inv = 1f / sum;
        for (int i = off; i < off + n; i++) {
            x[i] *= inv;
        }
    }

    /** y[yOff..] += x[xOff..] over n elements. */
    public static void add(float[] y, int yOff, float[] x, int xOff, int n) {
        for (int i = 0; i < n; i++) {
            y[yOff + i] += x[xOff + i];
        }
    }

    /** Adds {@code bias} to each of the n rows of width d in x. No-op for a null bias. */
    public static void addBias(float[] x, int n, int d, float[] bias) {
        if (bias == null) {
            return;
        }
        for (int t = 0; t < n; t++) {
            add(x, t * d, bias, 0, d);
        }
    }
}
