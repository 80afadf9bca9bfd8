package dev.llmflash.runtime.generate;

/**
 * Timings of one generation. Time to first token covers prompt processing and the first sampled
 * token; decode throughput counts the tokens after the first (each one a full forward step).
 *
 * @param promptTokens    tokens in the prompt (BOS included)
 * @param generatedTokens tokens produced
 * @param timeToFirstTokenMs wall time from the start to the first generated token
 * @param totalMs         wall time of the whole generation
 */
public record GenerationMetrics(int promptTokens, int generatedTokens, double timeToFirstTokenMs, double totalMs) {

    /** Tokens per second after the first token; NaN when fewer than two tokens were generated. */
    public double decodeTokensPerSecond() {
        double decodeMs = totalMs - timeToFirstTokenMs;
        return generatedTokens < 2 || decodeMs <= 0 ? Double.NaN : (generatedTokens - 1) / (decodeMs / 1000.0);
    }

    /** Prompt tokens per second during the first step. */
    public double promptTokensPerSecond() {
        return timeToFirstTokenMs <= 0 ? Double.NaN : promptTokens / (timeToFirstTokenMs / 1000.0);
    }
}
