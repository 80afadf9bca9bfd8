package dev.llmflash.formats.hf;

/**
 * Falcon ({@code FalconForCausalLM}), as HF's {@code modeling_falcon.py} reads its config. The
 * effective values follow HF's rules exactly:
 * <ul>
 *   <li>K/V heads: {@code new_decoder_architecture} -> {@code num_kv_heads} (grouped, "40B style");
 *       else {@code multi_query} -> ONE shared K/V head, whatever {@code num_kv_heads} says ("7B style");
 *       else one per query head (fused q/k/v interleaved per head).</li>
 *   <li>Layer norms per block: {@code num_ln_in_parallel_attn} defaults to 2 with the new decoder
 *       architecture (ln_attn + ln_mlp), else one input_layernorm (+ post_attention_layernorm when not
 *       parallel).</li>
 * </ul>
 *
 * @param numKvHeads        effective number of key/value heads
 * @param qkvLayout         how the fused query_key_value output is laid out
 * @param parallelAttn      attention and MLP read the same normalized input and are summed
 * @param lnPerBlock        1 or 2 layer norms feeding attention/MLP in parallel mode
 * @param bias              linear layers carry biases
 * @param activation        "relu" or "gelu" (exact, erf-based, as HF's get_activation("gelu"))
 * @param ropeTheta         rotary base
 */
public record FalconConfig(int vocabSize, int hiddenSize, int numLayers, int numHeads, int numKvHeads, int ffnSize,
                           int maxPositions, QkvLayout qkvLayout, boolean parallelAttn, int lnPerBlock, boolean bias,
                           float layerNormEpsilon, String activation, double ropeTheta, boolean tieWordEmbeddings,
                           int bosTokenId, int eosTokenId) implements ModelConfig {

    /** The layout of the fused query_key_value projection's output, per HF's {@code _split_heads}. */
    public enum QkvLayout {
        /** new_decoder_architecture: per KV group, (heads/kv queries, 1 key, 1 value) x head_dim. */
        GROUPED,
        /** multi_query: all query heads, then one key head, then one value head. */
        MULTI_QUERY,
        /** neither: per head (query, key, value) x head_dim. */
        INTERLEAVED
    }

    @Override
    public String modelType() {
        return "falcon";
    }

    /** Rows of the fused query_key_value weight. */
    public int qkvRows() {
        return (numHeads + 2 * numKvHeads) * headDim();
    }
}
