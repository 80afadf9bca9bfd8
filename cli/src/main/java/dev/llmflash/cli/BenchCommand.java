package dev.llmflash.cli;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import dev.llmflash.formats.LlmflashException;
import dev.llmflash.formats.bundle.Bundle;
import dev.llmflash.formats.bundle.BundleManifest;
import dev.llmflash.formats.bundle.FfnGeometry;
import dev.llmflash.runtime.bench.SyntheticActivity;
import dev.llmflash.runtime.bench.SyntheticSelectors;
import dev.llmflash.runtime.budget.ProcessMemory;
import dev.llmflash.runtime.flash.FlashRuntime;
import dev.llmflash.runtime.flash.RunReport;
import dev.llmflash.runtime.generate.Generator;
import dev.llmflash.runtime.generate.SamplingOptions;
import dev.llmflash.runtime.bench.DiskProbe;
import dev.llmflash.runtime.bench.MemoryProbe;
import dev.llmflash.runtime.tokenizer.BpeTokenizer;
import picocli.CommandLine;
import picocli.CommandLine.Command;
import picocli.CommandLine.Option;

import java.io.IOException;
import java.io.PrintWriter;
import java.lang.management.ManagementFactory;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Locale;
import java.util.Map;
import java.util.concurrent.Callable;

/**
 * The paper's Tables 2 and 3 on this machine: the same greedy generation with each method at one
 * DRAM budget, per-token I/O / memory management / compute after a warm-up, bytes read, effective
 * read throughput, cache hit rate, memory held and peak resident set; optionally the machine's
 * reference figures measured in the same run (sequential and random read speed, memory bandwidth)
 * and the physical limit per token they imply, and PNG charts.
 *
 * <p>Methods (the paper's ablation order): {@code naive} (the whole FFN re-read every token),
 * {@code hybrid} (part of the FFN resident, the rest re-read), {@code predictor} (only the predicted
 * neurons, loaded afresh each token: window 0), {@code window} (+ the sliding window), {@code all}
 * (+ bundling). With {@code --split-model} (the same model converted with {@code --layout split})
 * predictor and window run on the unbundled layout, as in the paper; {@code flash} is {@code all} under
 * its issue-5 name and {@code flash-page-cache} is {@code all} reading through the page cache.
 * {@code dense} is the reference: every weight memory-mapped and read once before timing starts (so
 * the timed run reads only DRAM), no budget.
 *
 * <p>Every method entry carries the per-token figures of {@link RunReport} ({@code io_ms} in flight,
 * {@code io_wait_ms}, {@code overlap}, {@code mem_ms}, {@code compute_ms}, {@code total_ms}, ...), the
 * prompt's length, the time to first token and the prompt step ({@code prefill_step}). The prompt is
 * {@code --prompt} or {@code --prompt-file}, optionally repeated or cut to {@code --prompt-tokens};
 * {@code --prompt-sweep} runs each method at several prompt lengths (time to first token vs prompt length).
 */
@Command(name = "bench", mixinStandardHelpOptions = true,
        description = "Per-token latency of naive / hybrid / predictor / window / all on a bundle at one DRAM budget (the paper's Tables 2-3), "
                + "with the machine's read and memory bandwidth limits and PNG charts.")
final class BenchCommand implements Callable<Integer> {
    @CommandLine.Spec
    CommandLine.Model.CommandSpec spec;

    @Option(names = "--model", required = true, paramLabel = "BUNDLE", description = "A bundle (bundled layout).")
    Path model;

    @Option(names = "--split-model", paramLabel = "BUNDLE", description = "The same model converted with --layout split: predictor and window run on it.")
    Path splitModel;

    @Option(names = "--memory", paramLabel = "SIZE|PCT%", description = "The DRAM budget of every method but dense "
            + "(required unless dense is the only method; dense holds every weight in memory and ignores it).")
    String memory;

    @Option(names = "--methods", split = ",", paramLabel = "M", description = "Any of: dense (the reference: every weight in memory, "
            + "read before timing starts, no budget), naive, hybrid, predictor, window, all, flash (= all), "
            + "all-serial (all without the look-ahead: each layer's reads start at that layer), all-threads (all with the thread-pool I/O backend), flash-page-cache (default: naive,hybrid,predictor,window,all with --split-model, else naive,hybrid,predictor,flash).")
    List<String> methods;

    @Option(names = "--activity", paramLabel = "KIND", description = "predictors (the bundle's trained predictors) | synthetic (calibrated to the paper: "
            + "--density of the FFN predicted per token, --new-per-token of it new with a window of --calibration-window) (default: ${DEFAULT-VALUE}).")
    String activity = "predictors";

    @Option(names = "--density", paramLabel = "X", description = "Synthetic activity: predicted share per token (default: ${DEFAULT-VALUE}, the paper's 0.9 of 8.6 GB).")
    double density = 0.105;

    @Option(names = "--new-per-token", paramLabel = "X", description = "Synthetic activity: share of the FFN new per token with the calibration window (default: ${DEFAULT-VALUE}).")
    double newPerToken = 0.024;

    @Option(names = "--calibration-window", paramLabel = "K", description = "Synthetic activity: the window --new-per-token refers to (default: ${DEFAULT-VALUE}).")
    int calibrationWindow = 5;

    @Option(names = "--predictor-rank", paramLabel = "R", description = "Synthetic activity: also evaluate a random predictor of this rank per layer "
            + "(its cost, not its choice; 0 = none) (default: ${DEFAULT-VALUE}, the paper's rank for OPT-6.7B).")
    int predictorRank = 128;

    @Option(names = "--prompt", paramLabel = "TEXT", description = "Prompt (default: ${DEFAULT-VALUE}).")
    String prompt = "In the beginning God created";

    @Option(names = "--prompt-file", paramLabel = "FILE", description = "Read the prompt from this UTF-8 text file instead of --prompt.")
    Path promptFile;

    @Option(names = "--prompt-tokens", paramLabel = "N", description = "Repeat or cut the prompt's tokens (BOS first) so that the prompt "
            + "has exactly N tokens.")
    Integer promptTokens;

    @Option(names = "--prompt-sweep", split = ",", paramLabel = "N", description = "Also run each method at each of these prompt lengths "
            + "(tokens, the prompt built as for --prompt-tokens): time to first token vs prompt length (with --charts: ttft-vs-prompt.png).")
    List<Integer> promptSweep = List.of();

    @Option(names = "--tokens", paramLabel = "N", description = "Generated tokens measured per method (default: ${DEFAULT-VALUE}).")
    int tokens = 64;

    @Option(names = "--warmup", paramLabel = "N", description = "Generated tokens before measuring (default: ${DEFAULT-VALUE}).")
    int warmup = 16;

    @Option(names = "--window", paramLabel = "K", description = "Window of the window/all methods (default: the largest the budget holds).")
    Integer window;

    @Option(names = "--io-threads", paramLabel = "N", description = "Parallel reads (default: ${DEFAULT-VALUE}).")
    int ioThreads = FlashRuntime.DEFAULT_IO_THREADS;

    @Option(names = "--threads", paramLabel = "N", description = "Compute threads (default: ${DEFAULT-VALUE}).")
    int threads = Runtime.getRuntime().availableProcessors();

    @Option(names = "--kv-dtype", paramLabel = "TYPE", description = "KV cache elements, f16 | f32 (default: ${DEFAULT-VALUE}).")
    String kvDtype = "f16";

    @Option(names = "--no-lookahead", description = "Flash methods: no look-ahead prefetch of the next layer's neurons.")
    boolean noLookahead;

    @Option(names = "--io-backend", paramLabel = "KIND", description = "Flash methods: auto | uring | threads (default: ${DEFAULT-VALUE}); "
            + "the method all-threads runs all with threads whatever this says.")
    String ioBackend = "auto";

    @Option(names = "--lookahead-recall", paramLabel = "X", description = "Synthetic activity: the share of the next layer's set the look-ahead "
            + "predicts (default: ${DEFAULT-VALUE}, below the 0.975-0.986 measured on opt-mini's dev text).")
    double lookaheadRecall = SyntheticSelectors.DEFAULT_LOOKAHEAD_RECALL;

    @Option(names = "--isolate", description = "Run each method in its own JVM, so that each gets its own peak resident set.")
    boolean isolate;

    @Option(names = "--limits", description = "Measure this machine's sequential and random read speed on the bundle's ffn.bin and its memory bandwidth, "
            + "and the physical limit per token they imply.")
    boolean limits;

    @Option(names = "--prewarm", description = "Read each ffn.bin once, sequentially, before measuring. On a VM whose disk is a file on the host, "
            + "the host caches what the guest read (direct I/O bypasses only the guest's page cache): this puts every method in the same state.")
    boolean prewarm;

    @Option(names = "--window-sweep", split = ",", paramLabel = "K", description = "Also run 'all' with each of these windows (the memory-latency trade-off).")
    List<Integer> windowSweep = List.of();

    @Option(names = "--sweep-memory", paramLabel = "SIZE|PCT%", description = "The budget of the window sweep (default: --memory); "
            + "large enough for the largest window, so that the sweep shows what each window costs in DRAM.")
    String sweepMemory;

    @Option(names = "--charts", paramLabel = "DIR", description = "Write PNG charts there: latency breakdown, window trade-off (with --window-sweep), "
            + "read throughput vs chunk size and threads (with --limits), time to first token vs prompt length (with --prompt-sweep).")
    Path charts;

    @Option(names = "--sweep-bytes", hidden = true, paramLabel = "BYTES", description = "Bytes read per point of the read-throughput sweep (default: 128 MiB).")
    long sweepBytes = 128L << 20;

    @Option(names = "--json", description = "Print one JSON object instead of tables.")
    boolean json;

    @Option(names = "--verbose", description = "Print stack traces on errors.")
    boolean verbose;

    @Override
    public Integer call() throws IOException {
        if (tokens < 1 || warmup < 0) {
            throw new IllegalArgumentException("--tokens must be >= 1 and --warmup >= 0");
        }
        if (!activity.equals("predictors") && !activity.equals("synthetic")) {
            throw new IllegalArgumentException("--activity must be predictors or synthetic, got " + activity);
        }
        PrintWriter out = spec.commandLine().getOut();
        PrintWriter err = spec.commandLine().getErr();
        GenerateCommand.checkModelFolder(model);
        if (splitModel != null) {
            GenerateCommand.checkModelFolder(splitModel);
        }
        List<String> list = methods != null ? methods
                : splitModel != null ? List.of("naive", "hybrid", "predictor", "window", "all") : List.of("naive", "hybrid", "predictor", "flash");
        for (String m : list) {
            options(m, null); // refuses unknown names before anything runs
        }
        list = list.stream().filter(m -> !m.equals("none")).toList();
        if (memory == null && (list.stream().anyMatch(m -> !m.equals("dense")) || !windowSweep.isEmpty())) {
            throw new IllegalArgumentException("--memory is required for every method but dense (give the DRAM budget, e.g. --memory 50%)");
        }
        checkPrompt();
        List<Map<String, Object>> prewarmed = new ArrayList<>();
        if (prewarm) {
            for (Path b : splitModel != null ? List.of(model, splitModel) : List.of(model)) {
                err.println("bench: prewarm " + b.resolve(Bundle.FFN) + " ...");
                err.flush();
                DiskProbe.Result r = DiskProbe.sequential(b.resolve(Bundle.FFN), 1 << 20, 8, Long.MAX_VALUE, true);
                prewarmed.add(Map.of("file", b.resolve(Bundle.FFN).toString(), "bytes", r.bytes(), "gbps", r.gbps()));
            }
        }
        List<Map<String, Object>> results = new ArrayList<>();
        for (String m : list) {
            err.println("bench: " + m + " ...");
            err.flush();
            results.add(isolate ? child(m, null) : runMethod(m, null));
        }
        List<Map<String, Object>> sweep = new ArrayList<>();
        for (int k : windowSweep) {
            err.println("bench: all, window " + k + " ...");
            err.flush();
            sweep.add(isolate ? child("all", k) : runMethod("all", k));
        }
        List<Map<String, Object>> promptPoints = new ArrayList<>();
        for (String m : list) {
            for (int n : promptSweepLengths()) {
                err.println("bench: " + m + ", prompt of " + n + " tokens ...");
                err.flush();
                promptPoints.add(promptPoint(isolate ? child(m, null, n) : runMethod(m, null, n)));
            }
        }
        Map<String, Object> lim = null;
        List<DiskProbe.Result> readSweep = List.of();
        if (limits) {
            err.println("bench: reference figures (disk, memory) ...");
            err.flush();
            lim = limits(results);
            if (charts != null) {
                readSweep = readSweep();
            }
        }
        Map<String, Object> j = new LinkedHashMap<>();
        j.put("model", model.toString());
        if (splitModel != null) {
            j.put("split_model", splitModel.toString());
        }
        j.put("memory", memory);
        if (sweepMemory != null) {
            j.put("sweep_memory", sweepMemory);
        }
        j.put("activity", activity);
        if (promptFile != null) {
            j.put("prompt_file", promptFile.toString());
        }
        if (promptTokens != null) {
            j.put("prompt_tokens", promptTokens);
        }
        j.put("warmup_tokens", warmup);
        j.put("measured_tokens", tokens);
        j.put("io_threads", ioThreads);
        j.put("threads", threads);
        j.put("isolated", isolate);
        if (!prewarmed.isEmpty()) {
            j.put("prewarm", prewarmed);
        }
        j.put("methods", results);
        if (!sweep.isEmpty()) {
            j.put("window_sweep", sweep);
        }
        if (!promptPoints.isEmpty()) {
            j.put("prompt_sweep", promptPoints);
        }
        if (lim != null) {
            j.put("limits", lim);
        }
        if (!readSweep.isEmpty()) {
            List<Map<String, Object>> rs = new ArrayList<>();
            for (DiskProbe.Result r : readSweep) {
                rs.add(Map.of("chunk_bytes", r.chunkBytes(), "threads", r.threads(), "gbps", r.gbps(), "direct", r.direct()));
            }
            j.put("read_sweep", rs);
        }
        if (charts != null) {
            writeCharts(results, sweep, readSweep, lim, promptPoints);
        }
        if (json) {
            out.println(Json.write(j));
        } else {
            out.print(table(results, sweep, lim));
            if (!promptPoints.isEmpty()) {
                out.print(promptSweepTable(promptPoints));
            }
        }
        out.flush();
        return 0;
    }

    /** One method in this process: open, warm up, measure, report. */
    Map<String, Object> runMethod(String method, Integer sweepWindow) {
        return runMethod(method, sweepWindow, promptTokens);
    }

    /** As {@link #runMethod(String, Integer)} with a prompt of {@code promptLength} tokens (null: the prompt as given). */
    Map<String, Object> runMethod(String method, Integer sweepWindow, Integer promptLength) {
        CommonOptions o = options(method, sweepWindow);
        BpeTokenizer tok = BpeTokenizer.fromModelDir(o.model);
        int[] ids = promptIds(tok, promptLength);
        int steps = warmup + tokens + 1;
        Map<String, Object> preload = null;
        LoadedModel opened;
        if (o.mode == Mode.dense) {
            opened = LoadedModel.open(o, tok, ids.length + steps, new ArrayList<>());
            try {
                preload = preload(o.model);
            } catch (RuntimeException e) {
                opened.close();
                throw e;
            }
        } else {
            FlashRuntime.Options ro = o.runtimeOptions(ids.length + steps);
            if (activity.equals("synthetic") && ro.mode() == FlashRuntime.Mode.FLASH) {
                ro = ro.withLookahead(!o.noLookahead);
                if (Bundle.looksLikeBundle(o.model)) {  // else the runtime refuses the directory itself
                    FfnGeometry g = BundleManifest.read(o.model.resolve(Bundle.MANIFEST)).ffn().geometry();
                    ro = ro.withSelectorSource(SyntheticSelectors.of(new SyntheticActivity.Params(density, newPerToken,
                            calibrationWindow, 1), predictorRank, !o.noLookahead, lookaheadRecall, g));
                }
            }
            opened = LoadedModel.open(o, tok, ro);
        }
        try (LoadedModel lm = opened) {
            lm.report().skipWarmup(warmup);
            Generator.Result r = new Generator(lm.model()).generate(ids, steps, SamplingOptions.greedy(), null, false);
            Map<String, Object> m = new LinkedHashMap<>();
            m.put("method", method);
            m.putAll(lm.report().toJson());
            m.put("mode", o.mode.name());
            m.put("model", o.model.toString());
            m.put("prompt_tokens", r.metrics().promptTokens());
            m.put("time_to_first_token_ms", r.metrics().timeToFirstTokenMs());
            if (!m.containsKey("prefill_step")) {
                // a one-token prompt: its step is the first one
                m.put("prefill_step", lm.report().stepsJson(lm.report().steps().subList(0, 1)));
            }
            if (preload != null) {
                m.put("preload", preload);
            }
            if (sweepWindow != null) {
                m.put("window", sweepWindow);
            }
            m.put("peak_rss_bytes", ProcessMemory.peakRssBytes());
            return m;
        }
    }

    /** One method in a child JVM (same class path and JVM flags), for its own peak resident set. */
    private Map<String, Object> child(String method, Integer sweepWindow) throws IOException {
        return child(method, sweepWindow, promptTokens);
    }

    /** As {@link #child(String, Integer)} with a prompt of {@code promptLength} tokens (null: the prompt as given). */
    private Map<String, Object> child(String method, Integer sweepWindow, Integer promptLength) throws IOException {
        List<String> cmd = new ArrayList<>();
        cmd.add(ProcessHandle.current().info().command().orElse("java"));
        for (String a : ManagementFactory.getRuntimeMXBean().getInputArguments()) {
            if (!a.startsWith("-XX:AOTCacheOutput")) {
                cmd.add(a);
            }
        }
        cmd.add("-cp");
        cmd.add(System.getProperty("java.class.path"));
        cmd.add(Main.class.getName());
        cmd.addAll(List.of("bench", "--model", model.toString(), "--methods", method, "--json",
                "--activity", activity, "--density", Double.toString(density), "--new-per-token", Double.toString(newPerToken),
                "--calibration-window", Integer.toString(calibrationWindow), "--predictor-rank", Integer.toString(predictorRank),
                "--tokens", Integer.toString(tokens), "--warmup", Integer.toString(warmup),
                "--io-threads", Integer.toString(ioThreads), "--threads", Integer.toString(threads), "--kv-dtype", kvDtype,
                "--io-backend", ioBackend,
                "--lookahead-recall", Double.toString(lookaheadRecall)));
        if (noLookahead) {
            cmd.add("--no-lookahead");
        }
        if (memory != null) {
            cmd.addAll(List.of("--memory", memory));
        }
        if (promptFile != null) {
            cmd.addAll(List.of("--prompt-file", promptFile.toString()));
        } else {
            cmd.addAll(List.of("--prompt", prompt));
        }
        if (promptLength != null) {
            cmd.addAll(List.of("--prompt-tokens", Integer.toString(promptLength)));
        }
        if (splitModel != null) {
            cmd.addAll(List.of("--split-model", splitModel.toString()));
        }
        if (sweepMemory != null) {
            cmd.addAll(List.of("--sweep-memory", sweepMemory));
        }
        Integer w = sweepWindow != null ? sweepWindow : window;
        if (w != null) {
            cmd.addAll(List.of(sweepWindow != null ? "--window-sweep" : "--window", Integer.toString(w)));
            if (sweepWindow != null) {
                // the child runs 'all' only in its sweep: no methods list of its own
                cmd.set(cmd.indexOf("--methods") + 1, "none");
            }
        }
        Process p = new ProcessBuilder(cmd).redirectError(ProcessBuilder.Redirect.INHERIT).start();
        String stdout = new String(p.getInputStream().readAllBytes(), StandardCharsets.UTF_8);
        int rc;
        try {
            rc = p.waitFor();
        } catch (InterruptedException e) {
            p.destroyForcibly();
            Thread.currentThread().interrupt();
            throw new LlmflashException("bench: interrupted while " + method + " ran");
        }
        if (rc != 0) {
            throw new LlmflashException("bench: method " + method + " failed in its own JVM (exit " + rc + "; its error is above)");
        }
        JsonNode node = new ObjectMapper().readTree(stdout);
        JsonNode m = sweepWindow != null ? node.get("window_sweep").get(0) : node.get("methods").get(0);
        @SuppressWarnings("unchecked")
        Map<String, Object> map = new ObjectMapper().convertValue(m, LinkedHashMap.class);
        return map;
    }

    CommonOptions options(String method, Integer sweepWindow) {
        CommonOptions o = new CommonOptions();
        o.model = model;
        o.memory = sweepWindow != null && sweepMemory != null ? sweepMemory : memory;
        o.ioThreads = ioThreads;
        o.kvDtype = kvDtype;
        o.noLookahead = noLookahead;
        o.ioBackend = ioBackend;
        o.threads = threads;
        Path unbundled = splitModel != null ? splitModel : model;
        switch (method) {
            case "none" -> o.mode = Mode.dense;
            case "dense" -> {
                o.mode = Mode.dense;
                o.memory = null; // every weight in memory: no budget
            }
            case "naive" -> o.mode = Mode.naive;
            case "hybrid" -> o.mode = Mode.hybrid;
            case "predictor" -> {
                o.mode = Mode.flash;
                o.model = unbundled;
                o.window = 0;
            }
            case "window" -> {
                o.mode = Mode.flash;
                o.model = unbundled;
                o.window = window;
            }
            case "all", "flash", "flash-page-cache", "all-serial", "all-threads" -> {
                o.mode = Mode.flash;
                o.window = sweepWindow != null ? sweepWindow : window;
                o.pageCache = method.equals("flash-page-cache");
                o.noLookahead |= method.equals("all-serial");
                if (method.equals("all-threads")) {
                    o.ioBackend = "threads";
                }
            }
            default -> throw new IllegalArgumentException("--methods: unknown method '" + method
                    + "' (dense, naive, hybrid, predictor, window, all, all-serial, all-threads, flash, flash-page-cache)");
        }
        if (activity.equals("synthetic")) {
            o.predictor = "trained"; // replaced by the synthetic selector in runMethod
        }
        return o;
    }

    private String promptText;

    /** The prompt's text: --prompt-file's content (read once) or --prompt. */
    private String promptText() {
        if (promptFile == null) {
            return prompt;
        }
        if (promptText == null) {
            if (!Files.exists(promptFile)) {
                throw new LlmflashException("--prompt-file " + promptFile + ": no such file; give the path of a text file holding the prompt");
            }
            if (!Files.isRegularFile(promptFile)) {
                throw new LlmflashException("--prompt-file " + promptFile + ": not a regular file; give the path of a text file holding the prompt");
            }
            String t;
            try {
                t = Files.readString(promptFile, StandardCharsets.UTF_8);
            } catch (IOException e) {
                throw new LlmflashException("--prompt-file " + promptFile + ": cannot read it (" + e.getClass().getSimpleName()
                        + (e.getMessage() != null ? ": " + e.getMessage() : "") + "); give a readable UTF-8 text file");
            }
            if (t.isBlank()) {
                throw new LlmflashException("--prompt-file " + promptFile + ": the file is empty; put the prompt's text in it");
            }
            promptText = t;
        }
        return promptText;
    }

    /**
     * The prompt's ids, BOS included (as {@code generate --prompt}); with {@code length} non-null its tokens
     * after BOS repeated (or cut) so that the prompt has exactly {@code length} tokens.
     */
    int[] promptIds(BpeTokenizer tok, Integer length) {
        int[] ids = tok.encodeWithBos(promptText());
        if (length == null) {
            return ids;
        }
        int head = tok.addsBos() ? 1 : 0;
        int body = ids.length - head;
        if (body == 0 && length > head) {
            throw new IllegalArgumentException((promptFile != null ? "--prompt-file " + promptFile : "--prompt")
                    + " has no tokens to repeat; give a non-empty prompt");
        }
        int[] out = new int[length];
        for (int i = 0; i < length; i++) {
            out[i] = i < head ? ids[i] : ids[head + (i - head) % body];
        }
        return out;
    }

    /** The --prompt-sweep lengths, increasing, without repeats. */
    private List<Integer> promptSweepLengths() {
        return promptSweep.stream().distinct().sorted().toList();
    }

    /** Refuses bad prompt options before anything runs: one line naming the flag (or file) and what to do. */
    private void checkPrompt() {
        if (promptFile != null && spec.commandLine().getParseResult() != null && spec.commandLine().getParseResult().hasMatchedOption("--prompt")) {
            throw new IllegalArgumentException("--prompt and --prompt-file both given; give one of them");
        }
        if (promptTokens != null && promptTokens < 1) {
            throw new IllegalArgumentException("--prompt-tokens must be >= 1 (BOS included), got " + promptTokens);
        }
        for (int n : promptSweep) {
            if (n < 1) {
                throw new IllegalArgumentException("--prompt-sweep lengths must be >= 1 (BOS included), got " + n);
            }
        }
        BpeTokenizer tok = BpeTokenizer.fromModelDir(model);
        int natural = promptIds(tok, null).length; // reads and checks --prompt-file
        if (!Bundle.looksLikeBundle(model)) {
            return;
        }
        int maxPositions;
        try (Bundle b = Bundle.open(model)) {
            maxPositions = b.config().maxPositions();
        }
        int steps = warmup + tokens + 1;
        List<String> checks = new ArrayList<>();
        checks.add(promptTokens != null ? "--prompt-tokens" : promptFile != null ? "--prompt-file" : "--prompt");
        List<Integer> lengths = new ArrayList<>(List.of(promptTokens != null ? promptTokens : natural));
        for (int n : promptSweep) {
            checks.add("--prompt-sweep");
            lengths.add(n);
        }
        for (int i = 0; i < lengths.size(); i++) {
            int n = lengths.get(i);
            if (n + steps > maxPositions) {
                String what = checks.get(i).equals("--prompt-file") ? "--prompt-file " + promptFile : checks.get(i);
                throw new IllegalArgumentException(what + ": a prompt of " + n + " tokens + --warmup " + warmup + " + --tokens " + tokens
                        + " + 1 = " + (n + steps) + " positions, beyond the model's " + maxPositions
                        + "; use a shorter prompt (--prompt-tokens) or fewer --warmup/--tokens");
            }
        }
    }

    /**
     * Dense: reads the bundle's memory-mapped files (resident.safetensors, ffn.bin) once, sequentially, so that
     * their pages are in memory before the timed run and it reads only DRAM.
     */
    static Map<String, Object> preload(Path dir) {
        long t0 = System.nanoTime();
        long bytes = 0;
        java.nio.ByteBuffer buf = java.nio.ByteBuffer.allocateDirect(8 << 20);
        List<String> files = new ArrayList<>();
        for (String f : List.of(Bundle.RESIDENT, Bundle.FFN)) {
            Path p = dir.resolve(f);
            if (!Files.isRegularFile(p)) {
                continue;
            }
            files.add(f);
            try (java.nio.channels.FileChannel ch = java.nio.channels.FileChannel.open(p, java.nio.file.StandardOpenOption.READ)) {
                int n;
                while ((n = ch.read(buf)) >= 0) {
                    bytes += n;
                    buf.clear();
                }
            } catch (IOException e) {
                throw new LlmflashException("bench: cannot read " + p + " to load it before timing (" + e.getMessage() + ")");
            }
        }
        Map<String, Object> m = new LinkedHashMap<>();
        m.put("files", files);
        m.put("bytes", bytes);
        m.put("ms", (System.nanoTime() - t0) / 1e6);
        return m;
    }

    /** One point of the prompt sweep, from its method entry. */
    private static Map<String, Object> promptPoint(Map<String, Object> e) {
        @SuppressWarnings("unchecked")
        Map<String, Object> pre = (Map<String, Object>) e.get("prefill_step");
        Map<String, Object> p = new LinkedHashMap<>();
        p.put("method", e.get("method"));
        p.put("prompt_tokens", e.get("prompt_tokens"));
        p.put("time_to_first_token_ms", e.get("time_to_first_token_ms"));
        p.put("prefill_ms", pre == null ? null : pre.get("ms"));
        p.put("prefill_bytes_read", pre == null ? null : pre.get("bytes_read"));
        p.put("decode_ms_per_token", e.get("total_ms"));
        return p;
    }

    /** The reference figures of this machine and the physical limit per token of the 'all' (or flash) method. */
    private Map<String, Object> limits(List<Map<String, Object>> results) {
        Path ffn = model.resolve(Bundle.FFN);
        int bundle;
        long residentBytes;
        try (Bundle b = Bundle.open(model)) {
            bundle = (int) b.manifest().ffn().geometry().stride();
            residentBytes = b.manifest().resident().size();
        }
        int chunk = Math.max(4096, (bundle + 4095) / 4096 * 4096);
        DiskProbe.Result seq = DiskProbe.sequential(ffn, 1 << 20, Math.min(ioThreads, 8), 4L << 30, true);
        DiskProbe.Result rnd = DiskProbe.random(ffn, chunk, ioThreads, 20_000, 7, true);
        double mem = MemoryProbe.readGBps(1L << 30, threads, 5);
        Map<String, Object> l = new LinkedHashMap<>();
        l.put("seq_read_gbps", seq.gbps());
        l.put("seq_read", Map.of("chunk_bytes", seq.chunkBytes(), "threads", seq.threads(), "bytes", seq.bytes(), "direct", seq.direct()));
        l.put("random_read_gbps", rnd.gbps());
        l.put("random_read", Map.of("chunk_bytes", rnd.chunkBytes(), "threads", rnd.threads(), "bytes", rnd.bytes(), "direct", rnd.direct()));
        l.put("memory_gbps", mem);
        l.put("resident_bytes", residentBytes);
        Map<String, Object> best = null;
        for (Map<String, Object> m : results) {
            if (m.get("method").equals("all") || m.get("method").equals("flash")) {
                best = m;
            }
        }
        if (best != null) {
            double bytes = ((Number) best.get("bytes_read_per_token")).doubleValue();
            double limit = residentBytes / (mem * 1e9) * 1e3 + bytes / (rnd.gbps() * 1e9) * 1e3;
            l.put("flash_bytes_per_token", bytes);
            l.put("limit_ms_per_token", limit);
            double total = ((Number) best.get("total_ms")).doubleValue();
            l.put("flash_vs_limit", total / limit);
            Object rg = best.get("read_gbps");
            if (rg instanceof Number n) {
                l.put("flash_read_vs_plain_loop", n.doubleValue() / rnd.gbps());
            }
            for (Map<String, Object> m : results) {
                String name = (String) m.get("method");
                if (name.equals("naive") || name.equals("hybrid")) {
                    l.put("speedup_vs_" + name, ((Number) m.get("total_ms")).doubleValue() / total);
                }
            }
        }
        return l;
    }

    private List<DiskProbe.Result> readSweep() {
        int[] chunks = {4 << 10, 8 << 10, 16 << 10, 32 << 10, 64 << 10, 128 << 10, 256 << 10, 512 << 10};
        int[] ts = {1, 4, 8, 16, 32};
        return DiskProbe.sweep(model.resolve(Bundle.FFN), chunks, ts, sweepBytes, 11, true);
    }

    private void writeCharts(List<Map<String, Object>> results, List<Map<String, Object>> sweep, List<DiskProbe.Result> readSweep,
                             Map<String, Object> lim, List<Map<String, Object>> promptPoints) throws IOException {
        Files.createDirectories(charts);
        int n = results.size();
        if (n > 0) {
            List<String> names = new ArrayList<>();
            double[] io = new double[n], mem = new double[n], comp = new double[n];
            for (int i = 0; i < n; i++) {
                Map<String, Object> m = results.get(i);
                names.add((String) m.get("method"));
                io[i] = num(m, "io_wait_ms");
                mem[i] = num(m, "mem_ms");
                comp[i] = num(m, "compute_ms");
            }
            Charts.latencyBreakdown(charts.resolve("latency-breakdown.png"), "Per-token latency at --memory " + memory + " ("
                    + model.getFileName() + ")", names, io, mem, comp);
        }
        if (!sweep.isEmpty()) {
            int[] ws = new int[sweep.size()];
            double[] lat = new double[ws.length], dram = new double[ws.length];
            for (int i = 0; i < ws.length; i++) {
                Map<String, Object> m = sweep.get(i);
                ws[i] = ((Number) m.get("window")).intValue();
                lat[i] = num(m, "total_ms");
                @SuppressWarnings("unchecked")
                Map<String, Object> mm = (Map<String, Object>) m.get("memory");
                double fixed = num(mm, "total") - num(mm, "neuron_cache");
                dram[i] = (fixed + num(m, "neuron_cache_used_bytes_max")) / (1L << 30);
            }
            Charts.windowTradeoff(charts.resolve("window-tradeoff.png"), "Window size: latency and DRAM used at --memory "
                    + (sweepMemory != null ? sweepMemory : memory) + " (" + model.getFileName() + ")",
                    ws, lat, dram);
        }
        if (!readSweep.isEmpty()) {
            List<Integer> chunks = readSweep.stream().map(DiskProbe.Result::chunkBytes).distinct().sorted().toList();
            Map<Integer, double[]> byThreads = new java.util.TreeMap<>();
            for (DiskProbe.Result r : readSweep) {
                byThreads.computeIfAbsent(r.threads(), t -> new double[chunks.size()])[chunks.indexOf(r.chunkBytes())] = r.gbps();
            }
            Charts.readThroughput(charts.resolve("read-throughput.png"), "Random reads on this disk (direct I/O, " + model.getFileName() + "/ffn.bin)",
                    chunks.stream().mapToInt(Integer::intValue).toArray(), byThreads, num(lim, "seq_read_gbps"));
        }
        if (!promptPoints.isEmpty()) {
            List<Integer> lengths = promptSweepLengths();
            Map<String, double[]> byMethod = new LinkedHashMap<>();
            for (Map<String, Object> p : promptPoints) {
                int i = lengths.indexOf(((Number) p.get("prompt_tokens")).intValue());
                byMethod.computeIfAbsent((String) p.get("method"), k -> new double[lengths.size()])[i] = num(p, "time_to_first_token_ms") / 1e3;
            }
            Charts.ttftVsPrompt(charts.resolve("ttft-vs-prompt.png"), "Time to first token vs prompt length"
                    + (memory != null ? " at --memory " + memory : "") + " (" + model.getFileName() + ")",
                    lengths.stream().mapToInt(Integer::intValue).toArray(), byMethod);
        }
    }

    private static double num(Map<String, Object> m, String key) {
        Object v = m.get(key);
        if (!(v instanceof Number n)) {
            throw new IllegalStateException("bench: no number '" + key + "' in " + m.keySet());
        }
        return n.doubleValue();
    }

    private static String table(List<Map<String, Object>> results, List<Map<String, Object>> sweep, Map<String, Object> lim) {
        StringBuilder b = new StringBuilder();
        b.append(String.format(Locale.ROOT, "%-17s %6s %6s %11s %8s %9s %11s %10s %10s %10s %12s %9s %8s %12s%n", "method", "tokens", "prompt",
                "I/O wait ms", "overlap", "mem ms", "compute ms", "total ms", "TTFT ms", "p50 ms", "read/token", "read GB/s", "hit rate", "peak RSS"));
        List<Map<String, Object>> all = new ArrayList<>(results);
        all.addAll(sweep);
        for (Map<String, Object> m : all) {
            String name = m.get("method") + (m.containsKey("window") && sweep.contains(m) ? " K=" + m.get("window") : "");
            b.append(String.format(Locale.ROOT, "%-17s %6d %6d %11.2f %8s %9.2f %11.2f %10.2f %10.2f %10.2f %12s %9.3f %7.1f%% %12s%n", name,
                    ((Number) m.get("tokens")).intValue(), ((Number) m.get("prompt_tokens")).intValue(), num(m, "io_wait_ms"),
                    RunReport.percent(m.get("overlap") instanceof Number o ? o.doubleValue() : null), num(m, "mem_ms"),
                    num(m, "compute_ms"), num(m, "total_ms"), num(m, "time_to_first_token_ms"), num(m, "total_ms_p50"), RunReport.human(num(m, "bytes_read_per_token")), num(m, "read_gbps"),
                    100 * num(m, "cache_hit_rate"), RunReport.human(num(m, "peak_rss_bytes"))));
        }
        if (lim != null) {
            b.append(String.format(Locale.ROOT, "limits: sequential read %.2f GB/s, random read %.2f GB/s (%s chunks, %s threads), memory %.1f GB/s",
                    num(lim, "seq_read_gbps"), num(lim, "random_read_gbps"), ((Map<?, ?>) lim.get("random_read")).get("chunk_bytes"),
                    ((Map<?, ?>) lim.get("random_read")).get("threads"), num(lim, "memory_gbps")));
            if (lim.containsKey("limit_ms_per_token")) {
                b.append(String.format(Locale.ROOT, "; physical limit %.1f ms/token, flash at %.2fx of it", num(lim, "limit_ms_per_token"),
                        num(lim, "flash_vs_limit")));
            }
            b.append(System.lineSeparator());
        }
        b.append("(per token after the warm-up: total = I/O wait + mem + compute; overlap = share of the reads' in-flight time hidden "
                + "behind compute, - when nothing was read; TTFT = the prompt step and the first token)").append(System.lineSeparator());
        return b.toString();
    }

    private static String promptSweepTable(List<Map<String, Object>> points) {
        StringBuilder b = new StringBuilder();
        b.append(System.lineSeparator()).append("prompt sweep:").append(System.lineSeparator());
        b.append(String.format(Locale.ROOT, "%-17s %7s %10s %11s %13s %16s%n", "method", "prompt", "TTFT ms", "prefill ms", "prefill read",
                "decode ms/token"));
        for (Map<String, Object> p : points) {
            b.append(String.format(Locale.ROOT, "%-17s %7d %10.2f %11s %13s %16.2f%n", p.get("method"), ((Number) p.get("prompt_tokens")).intValue(),
                    num(p, "time_to_first_token_ms"), p.get("prefill_ms") instanceof Number n ? String.format(Locale.ROOT, "%.2f", n.doubleValue()) : "-",
                    p.get("prefill_bytes_read") instanceof Number n ? RunReport.human(n.doubleValue()) : "-", num(p, "decode_ms_per_token")));
        }
        return b.toString();
    }
}
