package dev.llmflash.cli;

import dev.llmflash.formats.LlmflashException;
import dev.llmflash.runtime.generate.Perplexity;
import picocli.CommandLine;
import picocli.CommandLine.Command;
import picocli.CommandLine.Mixin;
import picocli.CommandLine.Option;

import java.io.IOException;
import java.io.PrintWriter;
import java.nio.charset.CharacterCodingException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.LinkedHashMap;
import java.util.Map;
import java.util.concurrent.Callable;

@Command(name = "perplexity", mixinStandardHelpOptions = true,
        description = "Perplexity of a text file: windows of --context tokens ([BOS] + context-1 text tokens), each prediction scored.")
final class PerplexityCommand implements Callable<Integer> {
    @CommandLine.Spec
    CommandLine.Model.CommandSpec spec;

    @Option(names = "--text", required = true, paramLabel = "FILE", description = "A UTF-8 text file.")
    Path text;

    @Option(names = "--context", paramLabel = "N", description = "Window length in tokens, BOS included (default: ${DEFAULT-VALUE}).")
    int context = 256;

    @Option(names = "--max-tokens", paramLabel = "N", description = "Stop when the windows have covered this many text tokens (default: ${DEFAULT-VALUE}).")
    int maxTokens = 16384;

    @Mixin
    CommonOptions common;

    @Override
    public Integer call() {
        if (maxTokens < 1) {
            throw new IllegalArgumentException("--max-tokens must be >= 1, got " + maxTokens);
        }
        String content = readText(text);
        java.util.List<dev.llmflash.runtime.flash.PredictedFfn> predicted = new java.util.ArrayList<>();
        PrintWriter out = spec.commandLine().getOut();
        try (LoadedModel lm = LoadedModel.open(common, null, context, predicted)) {
            int[] ids = lm.tokenizer().encode(content);
            Perplexity.Result r = Perplexity.evaluate(lm.model(), ids, lm.tokenizer().bosId(), context, maxTokens);
            if (common.json) {
                Map<String, Object> json = new LinkedHashMap<>();
                json.put("model", lm.dir().toString());
                json.put("text", text.toString());
                json.put("perplexity", r.perplexity());
                json.put("scored_tokens", r.scoredTokens());
                json.put("windows", r.windows());
                json.put("context", context);
                json.put("text_tokens", ids.length);
                json.put("mode", common.mode.name());
                json.put("seconds", r.millis() / 1000.0);
                json.put("tokens_per_s", r.windows() * (double) context / (r.millis() / 1000.0));
                json.put("metrics", lm.report().toJson());
                if (!predicted.isEmpty()) {
                    java.util.List<Map<String, Object>> layers = new java.util.ArrayList<>();
                    for (var p : predicted) {
                        Map<String, Object> l = new LinkedHashMap<>();
                        l.put("layer", p.predictor().layer());
                        l.put("true_density", p.activeFraction());
                        l.put("predicted_density", p.selectedFraction());
                        l.put("recall", p.recall());
                        layers.add(l);
                    }
                    json.put("predicted_layers", layers);
                }
                out.println(Json.write(json));
            } else {
                out.printf("perplexity %.4f over %d scored tokens (%d windows of %d, %.1f s, %.0f tokens/s)%n", r.perplexity(),
                        r.scoredTokens(), r.windows(), context, r.millis() / 1000.0, r.windows() * (double) context / (r.millis() / 1000.0));
                spec.commandLine().getErr().print(lm.report().table());
                spec.commandLine().getErr().flush();
                for (var p : predicted) {
                    out.printf(java.util.Locale.ROOT, "  layer %d: true density %.2f%%, predicted %.2f%%, recall %.2f%% (on this text)%n",
                            p.predictor().layer(), 100 * p.activeFraction(), 100 * p.selectedFraction(), 100 * p.recall());
                }
            }
        }
        return 0;
    }

    static String readText(Path file) {
        if (!Files.isRegularFile(file)) {
            throw new LlmflashException(file + ": no such file (check --text)");
        }
        try {
            return StandardCharsets.UTF_8.newDecoder().decode(java.nio.ByteBuffer.wrap(Files.readAllBytes(file))).toString();
        } catch (CharacterCodingException e) {
            throw new LlmflashException(file + ": is not UTF-8 text (convert it to UTF-8)");
        } catch (IOException e) {
            throw new LlmflashException(file + ": cannot be read: " + e.getMessage());
        }
    }
}
