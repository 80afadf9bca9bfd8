package dev.llmflash.runtime.generate;

/**
 * How the next token is chosen, with Hugging Face's semantics and order: temperature, then top-k,
 * then top-p (nucleus). {@code temperature == 0} is greedy (argmax; ties go to the lowest id, as
 * torch.argmax does).
 *
 * @param temperature >= 0; 0 = greedy
 * @param topK        keep the k most likely tokens (ties at the k-th value kept); 0 = off
 * @param topP        keep the smallest set whose probability reaches p; 1 = off
 * @param seed        seed of the sampling random generator (same seed, same tokens)
 */
public record SamplingOptions(double temperature, int topK, double topP, long seed) {
    public SamplingOptions {
        if (!(temperature >= 0) || Double.isInfinite(temperature)) {
            throw new IllegalArgumentException("--temperature must be >= 0 (0 = greedy), got " + temperature);
        }
        if (topK < 0) {
            throw new IllegalArgumentException("--top-k must be >= 0 (0 = off), got " + topK);
        }
        if (!(topP > 0 && topP <= 1)) {
            throw new IllegalArgumentException("--top-p must be in (0, 1] (1 = off), got " + topP);
        }
    }

    public static SamplingOptions greedy() {
        return new SamplingOptions(0, 0, 1, 0);
    }

    public boolean isGreedy() {
        return temperature == 0;
    }
}
