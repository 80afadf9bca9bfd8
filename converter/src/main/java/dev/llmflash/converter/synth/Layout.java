package dev.llmflash.converter.synth;

import dev.llmflash.converter.synth.TensorSpec.Kind;
import dev.llmflash.converter.synth.TensorSpec.Role;
import dev.llmflash.formats.hf.FalconConfig;
import dev.llmflash.formats.hf.ModelConfig;
import dev.llmflash.formats.hf.OptConfig;

import java.util.ArrayList;
import java.util.List;

/**
 * The tensors of a checkpoint, named and shaped exactly as transformers' {@code save_pretrained} writes
 * them for {@code OPTForCausalLM} and {@code FalconForCausalLM}, in state-dict order (the order in which
 * the modules register their parameters, which is the order HF's sharding walks). A tied LM head is
 * omitted, as HF omits it; buffers (Falcon's rotary {@code inv_freq}) are not persistent and not saved.
 *
 * <p>OPT ({@code modeling_opt.py}): {@code model.decoder.} embed_tokens [V, e], embed_positions
 * [maxPositions + 2, d] (the fairseq offset of 2), project_out [e, d] and project_in [d, e] when
 * e != d, final_layer_norm [d] (pre-LN only), then per layer self_attn.{k,v,q,out}_proj [d, d] (+ bias),
 * self_attn_layer_norm, fc1 [f, d], fc2 [d, f], final_layer_norm.
 * <br>Falcon ({@code modeling_falcon.py}): {@code transformer.} word_embeddings [V, d], then per layer
 * self_attention.query_key_value [(heads + 2 kv) hd, d], self_attention.dense [d, d],
 * mlp.dense_h_to_4h [f, d], mlp.dense_4h_to_h [d, f] (+ biases when {@code bias}), the layer norms
 * (input_layernorm; or ln_attn + ln_mlp; or post_attention_layernorm + input_layernorm when not
 * parallel), then ln_f.
 */
public final class Layout {
    private Layout() {
    }

    /** The tensors of a model with this configuration, in state-dict order. */
    public static List<TensorSpec> of(ModelConfig config) {
        return switch (config) {
            case OptConfig c -> opt(c);
            case FalconConfig c -> falcon(c);
        };
    }

    /** The number of parameters (elements of all tensors). */
    public static long parameters(ModelConfig config) {
        long n = 0;
        for (TensorSpec t : of(config)) {
            n += t.numel();
        }
        return n;
    }

    private static List<TensorSpec> opt(OptConfig c) {
        long v = c.vocabSize(), d = c.hiddenSize(), e = c.wordEmbedProjDim(), f = c.ffnSize();
        Builder b = new Builder();
        String p = "model.decoder.";
        b.add(p + "embed_tokens.weight", Kind.WEIGHT, Role.OTHER, v, e);
        b.add(p + "embed_positions.weight", Kind.WEIGHT, Role.OTHER, c.maxPositions() + (long) OptConfig.POSITION_OFFSET, d);
        if (c.hasProjections()) {
            b.add(p + "project_out.weight", Kind.WEIGHT, Role.OTHER, e, d);
            b.add(p + "project_in.weight", Kind.WEIGHT, Role.OTHER, d, e);
        }
        if (c.finalLayerNorm()) {
            b.norm(p + "final_layer_norm", c.layerNormElementwiseAffine(), false, d);
        }
        for (int i = 0; i < c.numLayers(); i++) {
            String l = p + "layers." + i + ".";
            for (String proj : new String[] {"k_proj", "v_proj", "q_proj", "out_proj"}) {
                b.linear(l + "self_attn." + proj, c.enableBias(), Role.OTHER, Role.OTHER, d, d);
            }
            b.norm(l + "self_attn_layer_norm", c.layerNormElementwiseAffine(), false, d);
            b.linear(l + "fc1", c.enableBias(), Role.FFN_UP_WEIGHT, Role.FFN_UP_BIAS, f, d);
            b.linear(l + "fc2", c.enableBias(), Role.OTHER, Role.OTHER, d, f);
            // Pre-LN: fc1 reads this norm's output. Post-LN: it normalizes the block's output instead.
            b.norm(l + "final_layer_norm", c.layerNormElementwiseAffine(), c.layerNormBefore(), d);
        }
        if (!c.tieWordEmbeddings()) {
            b.add("lm_head.weight", Kind.WEIGHT, Role.OTHER, v, e);
        }
        return b.specs;
    }

    private static List<TensorSpec> falcon(FalconConfig c) {
        long v = c.vocabSize(), d = c.hiddenSize(), f = c.ffnSize();
        Builder b = new Builder();
        String p = "transformer.";
        b.add(p + "word_embeddings.weight", Kind.WEIGHT, Role.OTHER, v, d);
        for (int i = 0; i < c.numLayers(); i++) {
            String l = p + "h." + i + ".";
            b.linear(l + "self_attention.query_key_value", c.bias(), Role.OTHER, Role.OTHER, c.qkvRows(), d);
            b.linear(l + "self_attention.dense", c.bias(), Role.OTHER, Role.OTHER, d, d);
            b.linear(l + "mlp.dense_h_to_4h", c.bias(), Role.FFN_UP_WEIGHT, Role.FFN_UP_BIAS, f, d);
            b.linear(l + "mlp.dense_4h_to_h", c.bias(), Role.OTHER, Role.OTHER, d, f);
            if (!c.parallelAttn()) {
                b.norm(l + "post_attention_layernorm", true, true, d);
                b.norm(l + "input_layernorm", true, false, d);
            } else if (c.lnPerBlock() == 2) {
                b.norm(l + "ln_attn", true, false, d);
                b.norm(l + "ln_mlp", true, true, d);
            } else {
                b.norm(l + "input_layernorm", true, true, d); // feeds attention and the MLP
            }
        }
        b.norm(p + "ln_f", true, false, d);
        if (!c.tieWordEmbeddings()) {
            b.add("lm_head.weight", Kind.WEIGHT, Role.OTHER, v, d);
        }
        return b.specs;
    }

    private static final class Builder {
        final List<TensorSpec> specs = new ArrayList<>();

        void add(String name, Kind kind, Role role, long... shape) {
            specs.add(new TensorSpec(name, shape, kind, role));
        }

        void linear(String prefix, boolean bias, Role weightRole, Role biasRole, long out, long in) {
            add(prefix + ".weight", Kind.WEIGHT, weightRole, out, in);
            if (bias) {
                add(prefix + ".bias", Kind.BIAS, biasRole, out);
            }
        }

        void norm(String prefix, boolean affine, boolean feedsFfn, long d) {
            if (affine) {
                add(prefix + ".weight", Kind.NORM_WEIGHT, feedsFfn ? Role.FFN_NORM_WEIGHT : Role.OTHER, d);
                add(prefix + ".bias", Kind.NORM_BIAS, feedsFfn ? Role.FFN_NORM_BIAS : Role.OTHER, d);
            }
        }
    }
}
