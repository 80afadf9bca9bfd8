package dev.llmflash.runtime.ffn;

import dev.llmflash.runtime.kernels.Kernels;
import dev.llmflash.runtime.weights.Matrix;

/**
 * The FFN in Hugging Face's layout: up = fc1 / dense_h_to_4h {@code [f, d]}, down = fc2 /
 * dense_4h_to_h {@code [d, f]}, each a plain row-major matrix (the reference path from an HF folder).
 */
public record DenseFfn(Matrix up, float[] upBias, Matrix down, float[] downBias, Activation act) implements Ffn {

    @Override
    public int neurons() {
        return up.rows();
    }

    @Override
    public void forward(Kernels k, float[] x, int m, float[] h, float[] out) {
        up.apply(k, x, m, h, upBias);
        act.apply(h, 0, m * up.rows());
        down.apply(k, h, m, out, downBias);
    }
}
