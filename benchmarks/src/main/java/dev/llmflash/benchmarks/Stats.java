package dev.llmflash.benchmarks;

import java.util.Arrays;

/** Summaries of repeated measurements (higher is better: GB/s, tokens/s). */
final class Stats {
    private Stats() {
    }

    static double best(double[] v) {
        return Arrays.stream(v).max().orElseThrow();
    }

    static double median(double[] v) {
        double[] s = v.clone();
        Arrays.sort(s);
        return s.length % 2 == 1 ? s[s.length / 2] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2;
    }
}
