package dev.llmflash.cli;

import dev.llmflash.runtime.generate.GenerationMetrics;
import dev.llmflash.runtime.generate.Generator;
import dev.llmflash.runtime.generate.SamplingOptions;
import dev.llmflash.runtime.tokenizer.BpeTokenizer;
import dev.llmflash.runtime.tokenizer.StreamingDecoder;
import picocli.CommandLine;
import picocli.CommandLine.Command;
import picocli.CommandLine.Mixin;
import picocli.CommandLine.Option;

import java.io.PrintWriter;
import java.nio.file.Path;
import java.util.LinkedHashMap;
import java.util.Map;
import java.util.concurrent.Callable;

@Command(name = "generate", mixinStandardHelpOptions = true,
        description = "Generate text from a prompt, streaming tokens as they are produced.")
final class GenerateCommand implements Callable<Integer> {
    @CommandLine.Spec
    CommandLine.Model.CommandSpec spec;

    @Option(names = "--prompt", required = true, paramLabel = "TEXT", description = "The prompt (BOS is added as the model's tokenizer config says).")
    String prompt;

    @Option(names = "--max-tokens", paramLabel = "N", description = "Most new tokens (default: ${DEFAULT-VALUE}).")
    int maxTokens = 64;

    @Option(names = "--temperature", paramLabel = "T", description = "0 = greedy; higher = more random (default: ${DEFAULT-VALUE}).")
    double temperature = 0;

    @Option(names = "--top-p", paramLabel = "P", description = "Nucleus sampling: keep the smallest set of tokens with probability >= P; 1 = off (default: ${DEFAULT-VALUE}).")
    double topP = 1.0;

    @Option(names = "--top-k", paramLabel = "K", description = "Keep the K most likely tokens; 0 = off (default: ${DEFAULT-VALUE}).")
    int topK = 0;

    @Option(names = "--seed", paramLabel = "S", description = "Sampling seed (default: ${DEFAULT-VALUE}).")
    long seed = 0;

    @Option(names = "--report", paramLabel = "FILE", description = "Also write the JSON result (ids, text, metrics) to FILE.")
    Path report;

    @Mixin
    CommonOptions common;

    @Override
    public Integer call() {
        SamplingOptions sampling = new SamplingOptions(temperature, topK, topP, seed);
        if (maxTokens < 0) {
            throw new IllegalArgumentException("--max-tokens must be >= 0, got " + maxTokens);
        }
        PrintWriter out = spec.commandLine().getOut();
        PrintWriter err = spec.commandLine().getErr();
        common.checkModeOptions();
        checkModelFolder(common.model);
        BpeTokenizer tok = BpeTokenizer.fromModelDir(common.model);
        int[] ids = tok.encodeWithBos(prompt);
        try (LoadedModel lm = LoadedModel.open(common, tok, ids.length + maxTokens, new java.util.ArrayList<>())) {
            StreamingDecoder dec = tok.decoder();
            Generator.Result r = new Generator(lm.model()).generate(ids, maxTokens, sampling, common.json ? null : id -> {
                if (id != lm.model().config().eosTokenId()) {
                    out.print(dec.push(id));
                    out.flush();
                }
            });
            String text = tok.decode(withoutEos(r.generatedIds(), lm.model().config().eosTokenId()));
            Map<String, Object> json = result(lm, r, text);
            if (report != null) {
                Json.writeFile(report, json);
            }
            if (common.json) {
                out.println(Json.write(json));
            } else {
                out.print(dec.flush());
                out.println();
                GenerationMetrics m = r.metrics();
                err.printf("[%d prompt + %d new tokens | first token %.1f ms | %.1f tokens/s | stop: %s | %s, %d threads]%n",
                        m.promptTokens(), m.generatedTokens(), m.timeToFirstTokenMs(), m.decodeTokensPerSecond(),
                        r.stopReason().name().toLowerCase(), common.mode, lm.kernels().threads());
                err.print(lm.report().table());
                err.flush();
            }
        }
        return 0;
    }

    /** Fails on a folder that is neither a bundle nor an HF checkpoint before its tokenizer is looked for. */
    static void checkModelFolder(java.nio.file.Path dir) {
        if (!dev.llmflash.formats.bundle.Bundle.looksLikeBundle(dir)) {
            dev.llmflash.formats.hf.HfCheckpoint.open(dir).close();
        }
    }

    static int[] withoutEos(int[] ids, int eos) {
        return ids.length > 0 && ids[ids.length - 1] == eos ? java.util.Arrays.copyOf(ids, ids.length - 1) : ids;
    }

    private Map<String, Object> result(LoadedModel lm, Generator.Result r, String text) {
        GenerationMetrics m = r.metrics();
        Map<String, Object> metrics = new LinkedHashMap<>(lm.report().toJson());
        metrics.put("prompt_tokens", m.promptTokens());
        metrics.put("generated_tokens", m.generatedTokens());
        metrics.put("load_ms", lm.loadMs());
        metrics.put("time_to_first_token_ms", m.timeToFirstTokenMs());
        metrics.put("wall_ms", m.totalMs());
        metrics.put("decode_tokens_per_s", finiteOrNull(m.decodeTokensPerSecond()));
        metrics.put("prompt_tokens_per_s", finiteOrNull(m.promptTokensPerSecond()));
        metrics.put("threads", lm.kernels().threads());
        Map<String, Object> json = new LinkedHashMap<>();
        json.put("model", lm.dir().toString());
        json.put("architecture", lm.model().config().modelType());
        json.put("mode", common.mode.name());
        json.put("prompt", prompt);
        json.put("prompt_ids", r.promptIds());
        json.put("generated_ids", r.generatedIds());
        json.put("text", text);
        json.put("stop_reason", r.stopReason().name().toLowerCase());
        json.put("sampling", Map.of("temperature", temperature, "top_k", topK, "top_p", topP, "seed", seed));
        json.put("metrics", metrics);
        return json;
    }

    static Double finiteOrNull(double v) {
        return Double.isFinite(v) ? v : null;
    }
}
