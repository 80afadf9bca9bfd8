package dev.llmflash.runtime.flash;

import dev.llmflash.formats.predictor.LayerPredictor;
import dev.llmflash.formats.tensor.DType;
import dev.llmflash.runtime.ffn.NeuronMajorFfn;
import dev.llmflash.runtime.kernels.Kernels;
import dev.llmflash.formats.tensor.Quant;

import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;

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

    /**
     * {@link #select(float[], int, int[])} with the caller's kernels, which a trained predictor's
     * matrix-vector products spread over (the same kernels give the same choice).
     */
    default int select(Kernels k, float[] x, int off, int[] out) {
        return select(x, off, out);
    }

    /** A trained low-rank predictor: neuron i is chosen iff {@code B_i (A x) + c_i > logit(threshold)}. */
    static Trained trained(LayerPredictor p) {
        return new Trained(p);
    }

    /** {@link #trained(LayerPredictor)} held in {@code dt} (see {@link Trained#dtypeFor}). */
    static Trained trained(LayerPredictor p, DType dt) {
        return new Trained(p, dt);
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

            @Override
            public int select(Kernels k, float[] x, int off, int[] out) {
                cost.select(k, x, off, scratch);
                return chosen.select(k, x, off, out);
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
     * A and B are held in the precision of the bundle they predict for ({@link #dtypeFor}: f16 beside a
     * float bundle, Q8_0 / Q4_0 beside a q8 / q4 one; converted once from the file's f32, which is not
     * kept; c stays f32), and both products run through the matrix kernels: A x over r rows of d, then
     * B (A x) over f rows of r. Beside a q4 bundle of the OPT-6.7B shape f16 predictors (own and
     * look-ahead, rank 128) would be 18% of a 50% budget; in Q4_0 they are 5%. What the rounding costs
     * in recall and perplexity: docs/BENCHMARKS.md, "Quantized bundles".
     */
    final class Trained implements ActiveSelector {
        private final int layer;
        private final int d;
        private final int f;
        private final int r;
        private final DType dt;
        private final float logitThreshold;
        private final MemorySegment a;
        private final MemorySegment b;
        private final float[] c;
        private final float[] xs;
        private final float[] low;
        private final float[] logits;
        private Kernels serial;

        public Trained(LayerPredictor p) {
            this(p, DType.F16);
        }

        /** @param dt F16, Q8_0 or Q4_0; a quantized dtype falls back to F16 where d or the rank is not a multiple of 32 */
        public Trained(LayerPredictor p, DType dt) {
            if (p.dense()) {
                throw new IllegalArgumentException("layer " + p.layer() + " is dense: it has no predictor");
            }
            if (dt != DType.F16 && dt != DType.Q8_0 && dt != DType.Q4_0) {
                throw new IllegalArgumentException("predictors are held in F16, Q8_0 or Q4_0, not " + dt);
            }
            this.layer = p.layer();
            this.d = p.inputs();
            this.f = p.neurons();
            this.r = p.rank();
            this.dt = held(dt, d, r);
            double t = p.threshold();
            this.logitThreshold = (float) Math.log(t / (1 - t));
            this.a = store(p.a(), r, d, this.dt);
            this.b = store(p.b(), f, r, this.dt);
            this.c = p.c().clone();
            this.xs = new float[d];
            this.low = new float[r];
            this.logits = new float[f];
        }

        /** The precision predictors are held in beside an FFN stored in {@code ffn}. */
        public static DType dtypeFor(DType ffn) {
            return ffn.isQuantized() ? ffn : DType.F16;
        }

        private static DType held(DType dt, int d, int r) {
            return dt.isQuantized() && (d % Quant.BLOCK != 0 || r % Quant.BLOCK != 0) ? DType.F16 : dt;
        }

        private static MemorySegment store(float[] v, int rows, int cols, DType dt) {
            MemorySegment m = Arena.ofAuto().allocate(Math.max(1, dt.rowBytes(cols) * rows), 64);
            if (dt.isQuantized()) {
                Quant.quantize(dt, v, 0, rows, cols, m, 0);
            } else {
                for (int i = 0; i < v.length; i++) {
                    m.setAtIndex(ValueLayout.JAVA_SHORT_UNALIGNED, i, Float.floatToFloat16(v[i]));
                }
            }
            return m;
        }

        @Override
        public int neurons() {
            return f;
        }

        /** The layer whose neurons this predicts. */
        public int layer() {
            return layer;
        }

        /** The precision A and B are held in. */
        public DType dtype() {
            return dt;
        }

        /** One thread: the calling one. */
        @Override
        public int select(float[] x, int off, int[] out) {
            if (serial == null) {
                serial = new Kernels(1);
            }
            return select(serial, x, off, out);
        }

        @Override
        public int select(Kernels k, float[] x, int off, int[] out) {
            System.arraycopy(x, off, xs, 0, d);
            k.matvec(a, dt, r, d, xs, low);
            k.matvec(b, dt, f, r, low, logits);
            int n = 0;
            for (int i = 0; i < f; i++) {
                if (logits[i] + c[i] > logitThreshold) {
                    out[n++] = i;
                }
            }
            return n;
        }

        /** Bytes of the predictor's weights as held (A, B in their dtype, c in f32). */
        public long bytes() {
            return a.byteSize() + b.byteSize() + 4L * c.length;
        }

        /** {@link #bytes()} of the predictor p would make in {@code dt} (0 for a dense layer). */
        public static long bytes(LayerPredictor p, DType dt) {
            if (p.dense()) {
                return 0;
            }
            DType h = held(dt, p.inputs(), p.rank());
            return h.rowBytes(p.inputs()) * p.rank() + h.rowBytes(p.rank()) * p.neurons() + 4L * p.c().length;
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
