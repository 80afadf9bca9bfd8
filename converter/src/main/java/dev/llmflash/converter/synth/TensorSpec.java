package dev.llmflash.converter.synth;

import dev.llmflash.formats.tensor.Tensor;

import java.util.Arrays;

/**
 * One tensor of a checkpoint layout: its HF name, its shape, and what it is (which decides its
 * values). Immutable.
 *
 * @param name  the state-dict key, e.g. {@code model.decoder.layers.0.fc1.weight}
 * @param shape dimensions, row-major (a Linear weight is {@code [out, in]}, as PyTorch stores it)
 * @param kind  what kind of parameter it is
 * @param role  its part in the FFN, for planting activation sparsity ({@link Role#OTHER} elsewhere)
 */
public record TensorSpec(String name, long[] shape, Kind kind, Role role) {

    /** What kind of parameter a tensor is; decides its default values. */
    public enum Kind {
        /** Token or position embedding, projection or Linear weight: random normal. */
        WEIGHT,
        /** Linear bias: 0 (HF's initialization). */
        BIAS,
        /** LayerNorm weight: 1. */
        NORM_WEIGHT,
        /** LayerNorm bias: 0. */
        NORM_BIAS
    }

    /** The tensor's part in a block's FFN (the up projection and the layer norm feeding it). */
    public enum Role {
        OTHER,
        /** {@code fc1.weight} / {@code mlp.dense_h_to_4h.weight}: [ffn, hidden]. */
        FFN_UP_WEIGHT,
        /** {@code fc1.bias} / {@code mlp.dense_h_to_4h.bias}: [ffn]. */
        FFN_UP_BIAS,
        /** Weight of the pre-LN layer norm whose output the up projection reads. */
        FFN_NORM_WEIGHT,
        /** Bias of that layer norm. */
        FFN_NORM_BIAS
    }

    public TensorSpec {
        shape = shape.clone();
    }

    @Override
    public long[] shape() {
        return shape.clone();
    }

    public long numel() {
        return Tensor.numel(shape);
    }

    /** The last dimension (a matrix's columns, a vector's length). */
    public long columns() {
        return shape[shape.length - 1];
    }

    @Override
    public boolean equals(Object o) {
        return o instanceof TensorSpec t && name.equals(t.name) && Arrays.equals(shape, t.shape)
                && kind == t.kind && role == t.role;
    }

    @Override
    public int hashCode() {
        return name.hashCode() * 31 + Arrays.hashCode(shape);
    }

    @Override
    public String toString() {
        return name + Arrays.toString(shape);
    }
}
