package dev.llmflash.runtime.model;

import dev.llmflash.formats.hf.ModelConfig;

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
    State newState(int maxTokens);

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
