package dev.llmflash.runtime.ffn;

/**
 * Replaces or decorates each layer's {@link Ffn} as a model is built: recording activations, applying
 * predictors, and (later) the flash loading path. {@link #NONE} keeps the FFN as loaded.
 */
@FunctionalInterface
public interface FfnWrapper {
    Ffn wrap(int layer, Ffn ffn);

    FfnWrapper NONE = (layer, ffn) -> ffn;
}
