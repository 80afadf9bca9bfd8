package dev.llmflash.runtime.ffn;

import dev.llmflash.formats.tensor.DType;
import dev.llmflash.runtime.kernels.Kernels;
import dev.llmflash.runtime.kernels.Ops;

import java.lang.foreign.MemorySegment;
import java.util.Arrays;

/**
 * The FFN stored neuron-major, as a flash bundle holds it: neuron i's up-projection row and its
 * down-projection column are each d contiguous elements, at a fixed byte stride from neuron to neuron.
 * In the bundled layout both sit in one bundle (up at 0, down at d * bytes, stride = bundle stride);
 * in the split layout they are two matrices (stride = d * bytes). The down part is an accumulation
 * {@code out += h_i * down_i} over the neurons whose activation is non-zero, so ReLU's exact zeros
 * skip their rows. Legend: d = model width, f = neurons, m = token rows.
 *
 * @param up     neuron 0's up row; neuron i's at byte {@code i * stride}
 * @param down   neuron 0's down column; neuron i's at byte {@code i * stride}
 */
public record NeuronMajorFfn(MemorySegment up, MemorySegment down, DType dtype, int neurons, int d, long stride,
                             float[] upBias, float[] downBias, Activation act) implements Ffn {

    @Override
    public void forward(Kernels k, float[] x, int m, float[] h, float[] out) {
        upActivate(k, x, m, h);
        downAccumulate(k, h, m, out);
    }

    /** h = act(up x + b_up): m x f activations. */
    public void upActivate(Kernels k, float[] x, int m, float[] h) {
        if (m == 1) {
            k.matvecStrided(up, dtype, neurons, d, stride, x, h);
        } else {
            k.matmulStrided(up, dtype, neurons, d, stride, x, m, h);
        }
        Ops.addBias(h, m, neurons, upBias);
        act.apply(h, 0, m * neurons);
    }

    /** out = sum_i h_i down_i + b_down over the neurons with h_i != 0 (their rows only are read). */
    public void downAccumulate(Kernels k, float[] h, int m, float[] out) {
        Arrays.fill(out, 0, m * d, 0f);
        if (m == 1) {
            k.matvecTransposedAcc(down, dtype, neurons, d, stride, h, out);
        } else {
            k.matmulTransposedAcc(down, dtype, neurons, d, stride, h, m, out);
        }
        Ops.addBias(out, m, d, downBias);
    }
}
