package dev.llmflash.runtime.generate;

import dev.llmflash.runtime.model.LanguageModel;

import java.util.Arrays;
import java.util.function.IntConsumer;

/**
 * Autoregressive generation: the prompt in one forward call (batched), then one token per step
 * through the KV cache, until EOS or the token limit. Tokens are handed to a listener as they are
 * produced, so a caller can stream them.
 */
public final class Generator {
    private final LanguageModel model;

    public Generator(LanguageModel model) {
        this.model = model;
    }

    /** Why generation stopped. */
    public enum StopReason { EOS, MAX_TOKENS, CONTEXT_FULL }

    /**
     * @param generatedIds the new tokens (EOS included when it was produced)
     */
    public record Result(int[] promptIds, int[] generatedIds, StopReason stopReason, GenerationMetrics metrics) {
    }

    /**
     * @param promptIds  the prompt, BOS included (see the tokenizer's encodeWithBos)
     * @param maxTokens  most new tokens
     * @param onToken    called with each new token id as soon as it is chosen; may be null
     */
    public Result generate(int[] promptIds, int maxTokens, SamplingOptions sampling, IntConsumer onToken) {
        return generate(promptIds, maxTokens, sampling, onToken, true);
    }

    /**
     * As {@link #generate(int[], int, SamplingOptions, IntConsumer)}; with {@code stopAtEos} false an EOS
     * token is kept and generation goes on (benchmarks that need an exact number of steps).
     */
    public Result generate(int[] promptIds, int maxTokens, SamplingOptions sampling, IntConsumer onToken, boolean stopAtEos) {
        if (promptIds.length == 0) {
            throw new IllegalArgumentException("the prompt has no tokens");
        }
        if (maxTokens < 0) {
            throw new IllegalArgumentException("--max-tokens must be >= 0, got " + maxTokens);
        }
        int maxPositions = model.config().maxPositions();
        if (promptIds.length > maxPositions) {
            throw new IllegalArgumentException("the prompt has " + promptIds.length + " tokens but the model handles at most "
                    + maxPositions + "; shorten it");
        }
        int capacity = Math.min(maxPositions, promptIds.length + maxTokens);
        int vocab = model.config().vocabSize();
        int eos = model.config().eosTokenId();
        LanguageModel.State state = model.newState(capacity);
        Sampler sampler = new Sampler(sampling);
        float[] logits = new float[vocab];
        int[] out = new int[maxTokens];
        int produced = 0;
        StopReason reason = StopReason.MAX_TOKENS;
        long t0 = System.nanoTime();
        double ttft = 0;
        if (maxTokens > 0) {
            model.forward(state, promptIds, promptIds.length, false, logits);
            int[] one = new int[1];
            while (true) {
                int next = sampler.next(logits, vocab);
                out[produced++] = next;
                if (produced == 1) {
                    ttft = (System.nanoTime() - t0) / 1e6;
                }
                if (onToken != null) {
                    onToken.accept(next);
                }
                if (next == eos && stopAtEos) {
                    reason = StopReason.EOS;
                    break;
                }
                if (produced == maxTokens) {
                    break;
                }
                if (state.length() == state.capacity()) {
                    reason = StopReason.CONTEXT_FULL;
                    break;
                }
                one[0] = next;
                model.forward(state, one, 1, false, logits);
            }
        }
        double total = (System.nanoTime() - t0) / 1e6;
        return new Result(promptIds.clone(), Arrays.copyOf(out, produced), reason,
                new GenerationMetrics(promptIds.length, produced, ttft, total));
    }
}
