package dev.llmflash.runtime.budget;

import dev.llmflash.formats.hf.FalconConfig;
import dev.llmflash.formats.hf.ModelConfig;
import dev.llmflash.formats.tensor.DType;
import dev.llmflash.runtime.model.LanguageModel;

/**
 * How a DRAM budget is split for a bundle (the paper's section 4 accounting): what must stay
 * resident (embeddings, attention, norms, biases), the KV cache for a context length, and what is
 * left for the FFN neuron cache.
 *
 * @param budgetBytes    the budget
 * @param residentBytes  resident weights (always in DRAM)
 * @param kvCacheBytes   the KV cache at {@code contextTokens} (f32 keys and values)
 * @param ffnBytes       all FFN weights (what lives on flash)
 * @param ffnCacheBytes  budget left for cached FFN neurons (0 when the budget does not fit)
 */
public record MemoryPlan(long budgetBytes, long residentBytes, long kvCacheBytes, int contextTokens, long ffnBytes,
                         long ffnCacheBytes) {

    /** The default context the plan reserves a KV cache for (the paper's 2048, or the model's maximum if smaller). */
    public static int defaultContext(ModelConfig c) {
        return Math.min(2048, c.maxPositions());
    }

    /** Bytes of an f32 KV cache: 2 (keys, values) x layers x context x K/V width x 4. */
    public static long kvCacheBytes(ModelConfig c, int contextTokens) {
        return kvCacheBytes(c, contextTokens, DType.F32);
    }

    /** Bytes of a KV cache of {@code kv} elements (F16 or F32): 2 (keys, values) x layers x context x K/V width x element bytes. */
    public static long kvCacheBytes(ModelConfig c, int contextTokens, DType kv) {
        int kvDim = c instanceof FalconConfig f ? f.numKvHeads() * f.headDim() : c.hiddenSize();
        return 2L * c.numLayers() * contextTokens * kvDim * kv.bytes();
    }

    /** Most tokens a layer-major pass of the forward holds at once (the prompt, up to this). */
    public static final int PREFILL_SPAN = LanguageModel.PREFILL_SPAN;

    /** Rows of a state's activation buffers for a context of {@code contextTokens}. */
    public static int span(int contextTokens) {
        return Math.min(contextTokens, PREFILL_SPAN);
    }

    public static MemoryPlan of(ModelConfig c, long residentBytes, long ffnBytes, long budgetBytes, int contextTokens) {
        long kv = kvCacheBytes(c, contextTokens);
        long room = budgetBytes - residentBytes - kv;
        return new MemoryPlan(budgetBytes, residentBytes, kv, contextTokens, ffnBytes, Math.max(0, Math.min(room, ffnBytes)));
    }

    /** Whether resident weights and the KV cache fit in the budget at all. */
    public boolean fits() {
        return residentBytes + kvCacheBytes <= budgetBytes;
    }

    /** The share of the FFN the neuron cache can hold, 0..1. */
    public double ffnCachedFraction() {
        return ffnBytes == 0 ? 1.0 : (double) ffnCacheBytes / ffnBytes;
    }
}
