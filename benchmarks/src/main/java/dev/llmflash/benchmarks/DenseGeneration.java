package dev.llmflash.benchmarks;

import dev.llmflash.runtime.generate.GenerationMetrics;
import dev.llmflash.runtime.generate.Generator;
import dev.llmflash.runtime.generate.SamplingOptions;
import dev.llmflash.runtime.kernels.Kernels;
import dev.llmflash.runtime.model.LanguageModel;
import dev.llmflash.runtime.model.Models;
import dev.llmflash.runtime.tokenizer.BpeTokenizer;

import java.nio.file.Path;
import java.util.Arrays;
import java.util.Locale;

/**
 * Dense generation speed: time to first token and decode tokens/s, median over repetitions after a
 * warm-up, greedy, for each model folder given.
 * <pre>java --add-modules jdk.incubator.vector -cp benchmarks/target/benchmarks.jar \
 *     dev.llmflash.benchmarks.DenseGeneration [--threads 2] [--tokens 128] [--reps 10] DIR...</pre>
 * Prints a markdown table.
 */
public final class DenseGeneration {
    private static final String PROMPT = "In the beginning God created the heaven and the earth. And the earth was without form";

    public static void main(String[] args) {
        int threads = Runtime.getRuntime().availableProcessors();
        int tokens = 128;
        int reps = 10;
        java.util.List<Path> dirs = new java.util.ArrayList<>();
        for (int i = 0; i < args.length; i++) {
            switch (args[i]) {
                case "--threads" -> threads = Integer.parseInt(args[++i]);
                case "--tokens" -> tokens = Integer.parseInt(args[++i]);
                case "--reps" -> reps = Integer.parseInt(args[++i]);
                default -> dirs.add(Path.of(args[i]));
            }
        }
        if (dirs.isEmpty()) {
            System.err.println("usage: DenseGeneration [--threads N] [--tokens N] [--reps N] MODEL_DIR...");
            System.exit(2);
        }
        System.out.printf(Locale.ROOT, "| model | threads | prompt tokens | new tokens | time to first token (ms, median) | decode tokens/s (median) | decode tokens/s (best) |%n");
        System.out.printf("|---|---|---|---|---|---|---|%n");
        for (Path dir : dirs) {
            try (Kernels k = new Kernels(threads); LanguageModel m = Models.open(dir, k)) {
                BpeTokenizer tok = BpeTokenizer.fromModelDir(dir);
                int[] ids = tok.encodeWithBos(PROMPT);
                Generator g = new Generator(m);
                // Never stop at EOS: every repetition produces exactly `tokens` tokens.
                for (int w = 0; w < 3; w++) {
                    g.generate(ids, tokens, SamplingOptions.greedy(), null);
                }
                double[] ttft = new double[reps];
                double[] tps = new double[reps];
                int produced = 0;
                for (int r = 0; r < reps; r++) {
                    GenerationMetrics mt = g.generate(ids, tokens, SamplingOptions.greedy(), null).metrics();
                    ttft[r] = mt.timeToFirstTokenMs();
                    tps[r] = mt.decodeTokensPerSecond();
                    produced = mt.generatedTokens();
                }
                Arrays.sort(ttft);
                Arrays.sort(tps);
                System.out.printf(Locale.ROOT, "| %s | %d | %d | %d | %.2f | %.1f | %.1f |%n", dir.getFileName(), threads, ids.length,
                        produced, ttft[reps / 2], tps[reps / 2], tps[reps - 1]);
            }
        }
    }
}
