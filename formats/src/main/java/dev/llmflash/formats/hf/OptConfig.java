package dev.llmflash.formats.hf;

/**
 * OPT ({@code OPTForCausalLM}), as HF's {@code modeling_opt.py} reads its config.
 *
 * @param wordEmbedProjDim          embedding width; when != hiddenSize the model has project_in/out (OPT-350m)
 * @param layerNormBefore           {@code do_layer_norm_before}: pre-LN (most OPTs) or post-LN (OPT-350m)
 * @param finalLayerNorm            whether the decoder has a final layer norm: pre-LN and not
 *                                  {@code _remove_final_layer_norm}
 * @param enableBias                linear layers carry biases
 * @param layerNormElementwiseAffine layer norms have weight and bias
 * @param activation                {@code activation_function}: "relu" (every released OPT) or "gelu"
 * @param tieWordEmbeddings         the LM head is the token embedding
 */
public record OptConfig(int vocabSize, int hiddenSize, int numLayers, int numHeads, int ffnSize, int maxPositions,
                        int wordEmbedProjDim, boolean layerNormBefore, boolean finalLayerNorm, boolean enableBias,
                        boolean layerNormElementwiseAffine, String activation, boolean tieWordEmbeddings,
                        int bosTokenId, int eosTokenId, int padTokenId) implements ModelConfig {

    /** OPT's learned positional embedding table is offset by 2 (a fairseq legacy). */
    public static final int POSITION_OFFSET = 2;

    /** OPT's LayerNorm epsilon (HF uses nn.LayerNorm's default). */
    public static final float LAYER_NORM_EPS = 1e-5f;

    @Override
    public String modelType() {
        return "opt";
    }

    public boolean hasProjections() {
        return wordEmbedProjDim != hiddenSize;
    }
}
