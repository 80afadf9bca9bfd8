package dev.llmflash.runtime.flash;

import dev.llmflash.formats.predictor.LayerPredictor;
import dev.llmflash.formats.tensor.DType;
import dev.llmflash.runtime.ffn.NeuronMajorFfn;
import dev.llmflash.runtime.kernels.Kernels;
import dev.llmflash.runtime.kernels.VectorKernels;

import java.lang.foreign.MemorySegment;

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
    static Trained trained(LayerPredictor p) {
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

    /**
     * See {@link #trained}. The arithmetic {@code PredictedFfn} uses too, so that both choose alike.
     * A and B are held in f16 (converted once from the file's f32, which is not kept; c stays f32): half
     * the DRAM of f32, which matters most under a quantized bundle, whose predictors would otherwise be
     * a fifth of a 50% budget on the OPT-6.7B shape. The f16 rounding (relative 2^-11 per weight) moves
     * the logits by far less than the thresholds' margins: docs/BENCHMARKS.md, "Quantized bundles".
     */
    final class Trained implements ActiveSelector {
        private final int layer;
        private final int d;
        private final int f;
        private final int r;
        private final float logitThreshold;
        private final MemorySegment a;
        private final MemorySegment b;
        private final float[] c;
        private final float[] low;

        public Trained(LayerPredictor p) {
            if (p.dense()) {
                throw new IllegalArgumentException("layer " + p.layer() + " is dense: it has no predictor");
            }
            this.layer = p.layer();
            this.d = p.inputs();
            this.f = p.neurons();
            this.r = p.rank();
            double t = p.threshold();
            this.logitThreshold = (float) Math.log(t / (1 - t));
            this.a = half(p.a());
            this.b = half(p.b());
            this.c = p.c().clone();
            this.low = new float[r];
        }

        private static MemorySegment half(float[] v) {
            short[] h = new short[v.length];
            for (int i = 0; i < v.length; i++) {
                h[i] = Float.floatToFloat16(v[i]);
            }
            return MemorySegment.ofArray(h);
        }

        @Override
        public int neurons() {
            return f;
        }

        /** The layer whose neurons this predicts. */
        public int layer() {
            return layer;
        }

        @Override
        public int select(float[] x, int off, int[] out) {
            for (int j = 0; j < r; j++) {
                low[j] = VectorKernels.dotAt(a, DType.F16, 2L * j * d, x, off, d);
            }
            int n = 0;
            for (int i = 0; i < f; i++) {
                if (VectorKernels.dotAt(b, DType.F16, 2L * i * r, low, 0, r) + c[i] > logitThreshold) {
                    out[n++] = i;
                }
            }
            return n;
        }

        /** Bytes of the predictor's weights as held (A, B in f16, c in f32). */
        public long bytes() {
            return 2L * (a.byteSize() / 2 + b.byteSize() / 2) + 4L * c.length;
        }

        /** {@link #bytes()} of the predictor p would make (0 for a dense layer). */
        public static long bytes(LayerPredictor p) {
            return p.dense() ? 0 : 2L * (p.a().length + p.b().length) + 4L * p.c().length;
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
