package dev.llmflash.cli;

import dev.llmflash.runtime.flash.RunReport;
import dev.llmflash.runtime.generate.Generator;
import dev.llmflash.runtime.generate.SamplingOptions;
import dev.llmflash.runtime.tokenizer.BpeTokenizer;
import picocli.CommandLine;
import picocli.CommandLine.Command;
import picocli.CommandLine.Option;

import java.io.PrintWriter;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Locale;
import java.util.Map;
import java.util.concurrent.Callable;

/**
 * The paper's Table 3 on this machine, for one bundle at one budget: the same greedy generation in
 * each method, per-token I/O / memory management / compute after a warm-up, bytes read, cache hit
 * rate and the memory held. Methods run one after another in this process.
 */
@Command(name = "bench", mixinStandardHelpOptions = true,
        description = "Per-token latency of naive / hybrid / flash methods on one bundle at one DRAM budget (the paper's Table 3).")
final class BenchCommand implements Callable<Integer> {
    @CommandLine.Spec
    CommandLine.Model.CommandSpec spec;

    @Option(names = "--model", required = true, paramLabel = "BUNDLE", description = "A bundle with trained predictors.")
    Path model;

    @Option(names = "--memory", required = true, paramLabel = "SIZE|PCT%", description = "The DRAM budget of every method.")
    String memory;

    @Option(names = "--methods", split = ",", paramLabel = "M", description = "Any of: naive, hybrid, predictor (flash without the window), "
            + "flash (predictor + window), flash-page-cache (flash reading through the page cache) (default: naive,hybrid,predictor,flash).")
    List<String> methods = List.of("naive", "hybrid", "predictor", "flash");

    @Option(names = "--prompt", paramLabel = "TEXT", description = "Prompt (default: ${DEFAULT-VALUE}).")
    String prompt = "In the beginning God created";

    @Option(names = "--tokens", paramLabel = "N", description = "Generated tokens measured per method (default: ${DEFAULT-VALUE}).")
    int tokens = 64;

    @Option(names = "--warmup", paramLabel = "N", description = "Generated tokens before measuring (default: ${DEFAULT-VALUE}).")
    int warmup = 16;

    @Option(names = "--window", paramLabel = "K", description = "Window of the flash methods (default: the largest the budget holds).")
    Integer window;

    @Option(names = "--io-threads", paramLabel = "N", description = "Parallel reads (default: ${DEFAULT-VALUE}).")
    int ioThreads = dev.llmflash.runtime.flash.FlashRuntime.DEFAULT_IO_THREADS;

    @Option(names = "--threads", paramLabel = "N", description = "Compute threads (default: ${DEFAULT-VALUE}).")
    int threads = Runtime.getRuntime().availableProcessors();

    @Option(names = "--json", description = "Print one JSON object instead of the table.")
    boolean json;

    @Option(names = "--verbose", description = "Print stack traces on errors.")
    boolean verbose;

    @Override
    public Integer call() {
        if (tokens < 1 || warmup < 0) {
            throw new IllegalArgumentException("--tokens must be >= 1 and --warmup >= 0");
        }
        PrintWriter out = spec.commandLine().getOut();
        GenerateCommand.checkModelFolder(model);
        BpeTokenizer tok = BpeTokenizer.fromModelDir(model);
        int[] ids = tok.encodeWithBos(prompt);
        List<RunReport.Summary> rows = new ArrayList<>();
        List<Map<String, Object>> results = new ArrayList<>();
        StringBuilder memoryLines = new StringBuilder();
        for (String method : methods) {
            CommonOptions o = options(method);
            try (LoadedModel lm = LoadedModel.open(o, tok, ids.length + warmup + tokens, new ArrayList<>())) {
                lm.report().skipWarmup(warmup);
                Generator.Result r = new Generator(lm.model()).generate(ids, warmup + tokens + 1, SamplingOptions.greedy(), null);
                if (r.generatedIds().length < warmup + tokens + 1) {
                    throw new IllegalStateException(method + " stopped after " + r.generatedIds().length + " tokens (" + r.stopReason()
                            + "); use another --prompt or fewer --tokens");
                }
                rows.add(lm.report().summary(method));
                Map<String, Object> m = new LinkedHashMap<>();
                m.put("method", method);
                m.putAll(lm.report().toJson());
                m.put("mode", o.mode.name());
                results.add(m);
                memoryLines.append(String.format(Locale.ROOT, "%-17s ", method)).append(RunReport.memoryLine(lm.runtime().memory()));
            }
        }
        if (json) {
            Map<String, Object> j = new LinkedHashMap<>();
            j.put("model", model.toString());
            j.put("memory", memory);
            j.put("prompt_tokens", ids.length);
            j.put("warmup_tokens", warmup);
            j.put("measured_tokens", tokens);
            j.put("methods", results);
            out.println(Json.write(j));
        } else {
            out.print(RunReport.table(rows));
            out.print(memoryLines);
        }
        out.flush();
        return 0;
    }

    private CommonOptions options(String method) {
        CommonOptions o = new CommonOptions();
        o.model = model;
        o.memory = memory;
        o.ioThreads = ioThreads;
        o.threads = threads;
        switch (method) {
            case "naive" -> o.mode = Mode.naive;
            case "hybrid" -> o.mode = Mode.hybrid;
            case "predictor" -> {
                o.mode = Mode.flash;
                o.window = 0;
            }
            case "flash", "flash-page-cache" -> {
                o.mode = Mode.flash;
                o.window = window;
                o.pageCache = method.equals("flash-page-cache");
            }
            default -> throw new IllegalArgumentException("--methods: unknown method '" + method
                    + "' (naive, hybrid, predictor, flash, flash-page-cache)");
        }
        return o;
    }
}
