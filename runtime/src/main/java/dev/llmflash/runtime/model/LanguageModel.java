package dev.llmflash.runtime.model;

import dev.llmflash.formats.hf.ModelConfig;
import dev.llmflash.formats.tensor.DType;

/**
 * A causal language model: tokens in, next-token logits out. Implementations keep weights immutable
 * and all per-sequence state (KV cache, scratch buffers) in a {@link State}, so one model can serve
 * several sequences one after another. Not thread-safe per state.
 */
public interface LanguageModel extends AutoCloseable {

    ModelConfig config();

    /**
     * A fresh sequence state able to hold {@code maxTokens} positions, processing at most
     * {@code maxBatch} tokens per {@link #forward} call (longer inputs are split by the caller or by
     * {@link #forward}).
     */
    default State newState(int maxTokens) {
        return newState(maxTokens, DEFAULT_KV);
    }

    /** The default KV cache element type: f16 (half the bytes; see {@link KvState}). */
    DType DEFAULT_KV = DType.F16;

    /** Most tokens one layer-major pass of the forward holds at once (the prompt, up to this). */
    int PREFILL_SPAN = 1024;

    /** As {@link #newState(int)} with the KV cache stored as {@code kv} (F16 or F32). */
    State newState(int maxTokens, DType kv);

    /**
     * The same model, whose {@link #newState(int)} stores the KV cache as {@code kv} ({@code --kv-dtype}).
     */
    static LanguageModel withKv(LanguageModel m, DType kv) {
        return new LanguageModel() {
            @Override
            public ModelConfig config() {
                return m.config();
            }

            @Override
            public State newState(int maxTokens) {
                return m.newState(maxTokens, kv);
            }

            @Override
            public State newState(int maxTokens, DType type) {
                return m.newState(maxTokens, type);
            }

            @Override
            public void forward(State state, int[] tokens, int n, boolean allPositions, float[] logits) {
                m.forward(state, tokens, n, allPositions, logits);
            }

            @Override
            public void close() {
                m.close();
            }
        };
    }

    /**
     * Appends {@code n} tokens to the sequence in {@code state} (positions {@code state.length()} ...)
     * and writes logits: for the last token only ({@code logits.length >= vocab}) or, when
     * {@code allPositions}, for each of the n tokens ({@code logits} is n x vocab, row-major).
     */
    void forward(State state, int[] tokens, int n, boolean allPositions, float[] logits);

    /** Releases the weights (closes the checkpoint). */
    @Override
    void close();

    /** Per-sequence state: the KV cache and its length. */
    interface State {
        /** Tokens processed so far (the next token's position). */
        int length();

        /** The most positions this state can hold. */
        int capacity();

        /** Forgets the sequence; keeps the buffers. */
        void reset();
    }
}
