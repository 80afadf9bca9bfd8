package dev.llmflash.runtime.generate;

import dev.llmflash.runtime.model.LanguageModel;

/**
 * Perplexity by non-overlapping windows, the protocol of the reference data (and of HF's
 * perplexity guide with stride = context - 1): for s = 0, c-1, 2(c-1), ... while
 * {@code s < min(maxTokens, len - c)}, the window is {@code [BOS] + ids[s, s + c - 1)}; every one of its
 * c - 1 next-token predictions is scored. Perplexity = exp(total NLL / scored positions).
 */
public final class Perplexity {
    private Perplexity() {
    }

    public record Result(double perplexity, long scoredTokens, double nll, int windows, double millis) {
    }

    /**
     * @param ids       the text's token ids, without BOS
     * @param context   window length c, BOS included (256 in the reference protocol)
     * @param maxTokens stop once the window start reaches this many tokens (16384 in the protocol)
     */
    public static Result evaluate(LanguageModel model, int[] ids, int bos, int context, int maxTokens) {
        if (context < 2) {
            throw new IllegalArgumentException("--context must be >= 2, got " + context);
        }
        if (context > model.config().maxPositions()) {
            throw new IllegalArgumentException("--context " + context + " exceeds the model's " + model.config().maxPositions() + " positions");
        }
        if (ids.length <= context) {
            throw new IllegalArgumentException("the text has " + ids.length + " tokens, not more than one window of " + context);
        }
        int vocab = model.config().vocabSize();
        LanguageModel.State state = model.newState(context);
        int[] window = new int[context];
        float[] logits = new float[context * vocab];
        double nll = 0;
        long scored = 0;
        int windows = 0;
        long t0 = System.nanoTime();
        int limit = Math.min(maxTokens, ids.length - context);
        for (int s = 0; s < limit; s += context - 1) {
            window[0] = bos;
            System.arraycopy(ids, s, window, 1, context - 1);
            state.reset();
            model.forward(state, window, context, true, logits);
            for (int i = 0; i < context - 1; i++) {
                nll -= logSoftmaxAt(logits, i * vocab, vocab, window[i + 1]);
                scored++;
            }
            windows++;
        }
        double ms = (System.nanoTime() - t0) / 1e6;
        return new Result(Math.exp(nll / scored), scored, nll, windows, ms);
    }

    /** log softmax(x[off .. off+n))[target], in double. */
    static double logSoftmaxAt(float[] x, int off, int n, int target) {
        double max = Double.NEGATIVE_INFINITY;
        for (int i = 0; i < n; i++) {
            max = Math.max(max, x[off + i]);
        }
        double sum = 0;
        for (int i = 0; i < n; i++) {
            sum += Math.exp(x[off + i] - max);
        }
        return x[off + target] - max - Math.log(sum);
    }
}
