package dev.llmflash.runtime.generate;

import java.util.Arrays;
import java.util.SplittableRandom;

/**
 * Picks the next token from logits per {@link SamplingOptions}. Owns its random generator: one sampler
 * per generated sequence. Not thread-safe.
 */
public final class Sampler {
    private final SamplingOptions opts;
    private final SplittableRandom random;

    public Sampler(SamplingOptions opts) {
        this.opts = opts;
        this.random = new SplittableRandom(opts.seed());
    }

    /** The next token given {@code logits[0..vocab)}; does not modify the logits. */
    public int next(float[] logits, int vocab) {
        if (opts.isGreedy()) {
            return argmax(logits, vocab);
        }
        double[] p = new double[vocab];
        double t = opts.temperature();
        for (int i = 0; i < vocab; i++) {
            p[i] = logits[i] / t;
        }
        if (opts.topK() > 0 && opts.topK() < vocab) {
            double[] sorted = p.clone();
            Arrays.sort(sorted);
            double kth = sorted[vocab - opts.topK()];
            for (int i = 0; i < vocab; i++) {
                if (p[i] < kth) {
                    p[i] = Double.NEGATIVE_INFINITY;
                }
            }
        }
        softmax(p);
        if (opts.topP() < 1.0) {
            nucleus(p, opts.topP());
        }
        double u = random.nextDouble();
        double total = 0;
        for (double v : p) {
            total += v;
        }
        double acc = 0;
        int lastPositive = -1;
        for (int i = 0; i < vocab; i++) {
            if (p[i] > 0) {
                lastPositive = i;
                acc += p[i] / total;
                if (u < acc) {
                    return i;
                }
            }
        }
        return lastPositive; // rounding: u landed past the last cumulative sum
    }

    /** Index of the largest value; the lowest index among equal maxima. */
    public static int argmax(float[] x, int n) {
        int best = 0;
        for (int i = 1; i < n; i++) {
            if (x[i] > x[best]) {
                best = i;
            }
        }
        return best;
    }

    private static void softmax(double[] p) {
        double max = Double.NEGATIVE_INFINITY;
        for (double v : p) {
            max = Math.max(max, v);
        }
        double sum = 0;
        for (int i = 0; i < p.length; i++) {
            p[i] = Math.exp(p[i] - max);
            sum += p[i];
        }
        for (int i = 0; i < p.length; i++) {
            p[i] /= sum;
        }
    }

    /**
     * HF's TopPLogitsWarper: sort ascending, drop tokens whose cumulative probability is <= 1 - topP,
     * always keeping the most likely token.
     */
    private static void nucleus(double[] p, double topP) {
        Integer[] order = new Integer[p.length];
        for (int i = 0; i < order.length; i++) {
            order[i] = i;
        }
        Arrays.sort(order, (a, b) -> Double.compare(p[a], p[b]));
        double cum = 0;
        for (int r = 0; r < order.length - 1; r++) {
            cum += p[order[r]];
            if (cum <= 1 - topP) {
                p[order[r]] = 0;
            }
        }
    }
}
