package dev.llmflash.runtime.flash;

import dev.llmflash.formats.predictor.LayerPredictor;
import dev.llmflash.runtime.ffn.Ffn;
import dev.llmflash.runtime.ffn.NeuronMajorFfn;
import dev.llmflash.runtime.kernels.Kernels;

import java.util.concurrent.atomic.LongAdder;

/**
 * The FFN computed only on the neurons a predictor selects: neuron i contributes iff
 * {@code sigmoid(B (A x) + c)_i > threshold}, i.e. iff {@code z_i > logit(threshold)}. Every other
 * neuron's activation is taken as 0, so its down-projection row is not even read. This is exactly the
 * output the flash runtime produces (it loads only these neurons); here all up rows are still read,
 * so it measures quality, not speed, and knows the true activity (for recall). The choice is made by
 * {@link ActiveSelector.Trained}, as in the flash runtime. Keeps scratch: one thread at a time.
 * Legend: d = model width, f = neurons, r = rank, m = rows.
 */
public final class PredictedFfn implements Ffn {
    private final NeuronMajorFfn inner;
    private final LayerPredictor p;
    private final ActiveSelector.Trained selector;
    private final int[] chosen;
    private final LongAdder selected = new LongAdder();
    private final LongAdder considered = new LongAdder();
    private final LongAdder active = new LongAdder();
    private final LongAdder activeSelected = new LongAdder();

    public PredictedFfn(NeuronMajorFfn inner, LayerPredictor p) {
        if (p.dense()) {
            throw new IllegalArgumentException("layer " + p.layer() + " is dense: use the FFN itself");
        }
        if (p.inputs() != inner.d() || p.neurons() != inner.neurons()) {
            throw new IllegalArgumentException("predictor of layer " + p.layer() + " is " + p.inputs() + " -> " + p.neurons()
                    + " but the FFN is " + inner.d() + " -> " + inner.neurons());
        }
        this.inner = inner;
        this.p = p;
        this.selector = new ActiveSelector.Trained(p, ActiveSelector.Trained.dtypeFor(inner.dtype()));
        this.chosen = new int[inner.neurons()];
    }

    @Override
    public int neurons() {
        return inner.neurons();
    }

    @Override
    public void forward(Kernels k, float[] x, int m, float[] h, float[] out) {
        int f = inner.neurons();
        inner.upActivate(k, x, m, h);
        long kept = 0, fired = 0, caught = 0;
        for (int t = 0; t < m; t++) {
            int n = selector.select(k, x, t * inner.d(), chosen);
            kept += n;
            int row = t * f;
            int next = 0;
            for (int i = 0; i < f; i++) {
                boolean on = h[row + i] != 0f; // the true activity (ReLU fired), known here because all up rows were computed
                fired += on ? 1 : 0;
                if (next < n && chosen[next] == i) {
                    next++;
                    caught += on ? 1 : 0;
                } else {
                    h[row + i] = 0f;
                }
            }
        }
        selected.add(kept);
        active.add(fired);
        activeSelected.add(caught);
        considered.add((long) m * f);
        inner.downAccumulate(k, h, m, out);
    }

    /** Fraction of (token, neuron) pairs the predictor selected so far. */
    public double selectedFraction() {
        long n = considered.sum();
        return n == 0 ? 0 : (double) selected.sum() / n;
    }

    /** Fraction of (token, neuron) pairs that truly fired so far. */
    public double activeFraction() {
        long n = considered.sum();
        return n == 0 ? 0 : (double) active.sum() / n;
    }

    /** Recall so far: fired neurons the predictor selected / fired neurons. */
    public double recall() {
        long a = active.sum();
        return a == 0 ? 1 : (double) activeSelected.sum() / a;
    }

    public LayerPredictor predictor() {
        return p;
    }
}
