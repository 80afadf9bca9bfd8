package dev.llmflash.runtime.flash;

import dev.llmflash.formats.predictor.LayerPredictor;
import dev.llmflash.runtime.ffn.NeuronMajorFfn;
import dev.llmflash.runtime.kernels.Kernels;
import dev.llmflash.runtime.kernels.VectorOps;

/**
 * Chooses, for one token of one layer, the FFN neurons to compute: the paper's activity predictor
 * (technique 1). The flash runtime loads exactly these neurons' bundles that its cache lacks.
 * Implementations keep scratch and are for one thread.
 */
public interface ActiveSelector {

    /** f, the neurons of the layer. */
    int neurons();

    /**
     * Writes the chosen neurons of the input {@code x[off .. off + d)} to {@code out}, in increasing
     * order, and returns their count.
     *
     * @param out at least {@link #neurons()} long
     */
    int select(float[] x, int off, int[] out);

    /** A trained low-rank predictor: neuron i is chosen iff {@code B_i (A x) + c_i > logit(threshold)}. */
    static ActiveSelector trained(LayerPredictor p) {
        return new Trained(p);
    }

    /**
     * The oracle: the neurons that truly fire ({@code act(up_i x + b_i) != 0}), found by computing every
     * up row of the memory-mapped layer. Reads the whole up projection: for exactness tests only.
     */
    static ActiveSelector oracle(NeuronMajorFfn dense, Kernels k) {
        return new Oracle(dense, k);
    }

    /**
     * The choice of {@code chosen}, after also running {@code cost} on the same input and discarding its
     * choice: a synthetic activity that costs what a trained predictor costs to evaluate.
     */
    static ActiveSelector costing(ActiveSelector chosen, ActiveSelector cost) {
        int[] scratch = new int[cost.neurons()];
        return new ActiveSelector() {
            @Override
            public int neurons() {
                return chosen.neurons();
            }

            @Override
            public int select(float[] x, int off, int[] out) {
                cost.select(x, off, scratch);
                return chosen.select(x, off, out);
            }
        };
    }

    /**
     * A look-ahead for a stateful selector (synthetic activity): {@code {own, lookahead}}. The look-ahead,
     * called first for a token (by the previous layer), advances {@code s} one token, keeps that set for
     * {@code own} and returns each of its neurons with probability {@code recall} (seeded): a look-ahead
     * predictor of that recall and no false positives. {@code own} then returns the kept set; called
     * without a look-ahead first (the prompt) it is {@code s}. One thread.
     */
    static ActiveSelector[] peeked(ActiveSelector s, double recall, long seed) {
        int f = s.neurons();
        int[] kept = new int[f];
        int[] keptN = {-1};
        java.util.SplittableRandom rnd = new java.util.SplittableRandom(seed);
        ActiveSelector own = new ActiveSelector() {
            @Override
            public int neurons() {
                return f;
            }

            @Override
            public int select(float[] x, int off, int[] out) {
                int n = keptN[0];
                if (n < 0) {
                    return s.select(x, off, out);
                }
                System.arraycopy(kept, 0, out, 0, n);
                keptN[0] = -1;
                return n;
            }
        };
        ActiveSelector ahead = new ActiveSelector() {
            @Override
            public int neurons() {
                return f;
            }

            @Override
            public int select(float[] x, int off, int[] out) {
                int n = s.select(x, off, kept);
                keptN[0] = n;
                int j = 0;
                for (int i = 0; i < n; i++) {
                    if (rnd.nextDouble() < recall) {
                        out[j++] = kept[i];
                    }
                }
                return j;
            }
        };
        return new ActiveSelector[]{own, ahead};
    }

    /** Every neuron: a layer the predictor trainer kept dense. */
    static ActiveSelector all(int neurons) {
        return (Every) () -> neurons;
    }

    /** {@link #all}: every neuron, in order. */
    @FunctionalInterface
    interface Every extends ActiveSelector {
        @Override
        default int select(float[] x, int off, int[] out) {
            int f = neurons();
            for (int i = 0; i < f; i++) {
                out[i] = i;
            }
            return f;
        }
    }

    /** See {@link #trained}. The arithmetic {@code PredictedFfn} uses too, so that both choose alike. */
    final class Trained implements ActiveSelector {
        private final LayerPredictor p;
        private final float logitThreshold;
        private final float[] low;

        public Trained(LayerPredictor p) {
            if (p.dense()) {
                throw new IllegalArgumentException("layer " + p.layer() + " is dense: it has no predictor");
            }
            this.p = p;
            double t = p.threshold();
            this.logitThreshold = (float) Math.log(t / (1 - t));
            this.low = new float[p.rank()];
        }

        @Override
        public int neurons() {
            return p.neurons();
        }

        public LayerPredictor predictor() {
            return p;
        }

        @Override
        public int select(float[] x, int off, int[] out) {
            int d = p.inputs(), f = p.neurons(), r = p.rank();
            float[] a = p.a(), b = p.b(), c = p.c();
            for (int j = 0; j < r; j++) {
                low[j] = VectorOps.dot(a, j * d, x, off, d);
            }
            int n = 0;
            for (int i = 0; i < f; i++) {
                if (VectorOps.dot(b, i * r, low, 0, r) + c[i] > logitThreshold) {
                    out[n++] = i;
                }
            }
            return n;
        }

        /** Bytes of the predictor's weights (A, B, c as f32). */
        public long bytes() {
            return 4L * (p.a().length + p.b().length + p.c().length);
        }
    }

    /** See {@link #oracle}. */
    final class Oracle implements ActiveSelector {
        private final NeuronMajorFfn dense;
        private final Kernels k;
        private final float[] xs;
        private final float[] h;

        Oracle(NeuronMajorFfn dense, Kernels k) {
            this.dense = dense;
            this.k = k;
            this.xs = new float[dense.d()];
            this.h = new float[dense.neurons()];
        }

        @Override
        public int neurons() {
            return dense.neurons();
        }

        @Override
        public int select(float[] x, int off, int[] out) {
            System.arraycopy(x, off, xs, 0, xs.length);
            dense.upActivate(k, xs, 1, h);
            int n = 0;
            for (int i = 0; i < h.length; i++) {
                if (h[i] != 0f) {
                    out[n++] = i;
                }
            }
            return n;
        }
    }
}
