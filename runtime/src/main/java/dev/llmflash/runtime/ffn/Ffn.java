package dev.llmflash.runtime.ffn;

import dev.llmflash.runtime.kernels.Kernels;

/**
 * One layer's feed-forward block, {@code out = down(act(up(x) + b_up)) + b_down}, for m token rows.
 * This is the one place where the runtime's modes differ (DESIGN.md): the weights may be a dense
 * HF-layout pair of matrices, neuron-major rows of a bundle, or (flash) only the neurons predicted
 * active. Implementations are immutable and may be shared across sequences; scratch comes from the
 * caller. Legend: d = model width, f = neurons, m = token rows.
 */
public interface Ffn {

    /** Number of neurons (f). */
    int neurons();

    /**
     * @param x       m x d inputs (the normalized hidden states), read only
     * @param m       token rows
     * @param h       scratch of at least m x f floats; holds the activations afterwards
     * @param out     m x d outputs, overwritten (must not alias x)
     */
    void forward(Kernels k, float[] x, int m, float[] h, float[] out);

    /**
     * Floats of {@code h} scratch this FFN needs per token row: f for the implementations that compute
     * every neuron into it; 0 for those that keep their own (flash), so that a long prompt's state does
     * not hold an m x f buffer it never uses.
     */
    default int scratchPerRow() {
        return neurons();
    }
}
