package dev.llmflash.formats.hf;

/**
 * A model's architecture, normalized from Hugging Face's {@code config.json} by {@link HfConfig}.
 * Every field is the effective value HF's own modeling code would use (defaults applied, legacy
 * rules resolved), so the forward passes never re-interpret HF's config.
 */
public sealed interface ModelConfig permits OptConfig, FalconConfig {

    /** "opt" or "falcon". */
    String modelType();

    int vocabSize();

    /** d_model. */
    int hiddenSize();

    int numLayers();

    int numHeads();

    /** FFN inner size (d_ffn): the number of FFN neurons per layer. */
    int ffnSize();

    int maxPositions();

    int bosTokenId();

    int eosTokenId();

    default int headDim() {
        return hiddenSize() / numHeads();
    }
}
