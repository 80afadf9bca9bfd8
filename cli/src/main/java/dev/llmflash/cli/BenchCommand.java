package dev.llmflash.cli;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import dev.llmflash.formats.LlmflashException;
import dev.llmflash.formats.bundle.Bundle;
import dev.llmflash.runtime.budget.ProcessMemory;
import dev.llmflash.runtime.flash.FlashRuntime;
import dev.llmflash.runtime.flash.RunReport;
import dev.llmflash.runtime.flash.SyntheticActivity;
import dev.llmflash.runtime.generate.Generator;
import dev.llmflash.runtime.generate.SamplingOptions;
import dev.llmflash.runtime.io.DiskProbe;
import dev.llmflash.runtime.kernels.MemoryProbe;
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

    @Option(names = "--memory", required = true, paramLabel = "SIZE|PCT%", description = "The DRAM budget of every method.")
    String memory;

    @Option(names = "--methods", split = ",", paramLabel = "M", description = "Any of: naive, hybrid, predictor, window, all, flash (= all), "
            + "flash-page-cache (default: naive,hybrid,predictor,window,all with --split-model, else naive,hybrid,predictor,flash).")
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
            + "read throughput vs chunk size and threads (with --limits).")
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
            writeCharts(results, sweep, readSweep, lim);
        }
        if (json) {
            out.println(Json.write(j));
        } else {
            out.print(table(results, sweep, lim));
        }
        out.flush();
        return 0;
    }

    /** One method in this process: open, warm up, measure, report. */
    Map<String, Object> runMethod(String method, Integer sweepWindow) {
        CommonOptions o = options(method, sweepWindow);
        BpeTokenizer tok = BpeTokenizer.fromModelDir(o.model);
        int[] ids = tok.encodeWithBos(prompt);
        int steps = warmup + tokens + 1;
        FlashRuntime.Options ro = o.runtimeOptions(ids.length + steps);
        if (activity.equals("synthetic") && ro.mode() == FlashRuntime.Mode.FLASH) {
            ro = ro.withSynthetic(new SyntheticActivity.Params(density, newPerToken, calibrationWindow, 1), predictorRank);
        }
        try (LoadedModel lm = LoadedModel.open(o, tok, ro)) {
            lm.report().skipWarmup(warmup);
            new Generator(lm.model()).generate(ids, steps, SamplingOptions.greedy(), null, false);
            Map<String, Object> m = new LinkedHashMap<>();
            m.put("method", method);
            m.putAll(lm.report().toJson());
            m.put("mode", o.mode.name());
            m.put("model", o.model.toString());
            if (sweepWindow != null) {
                m.put("window", sweepWindow);
            }
            m.put("peak_rss_bytes", ProcessMemory.peakRssBytes());
            return m;
        }
    }

    /** One method in a child JVM (same class path and JVM flags), for its own peak resident set. */
    private Map<String, Object> child(String method, Integer sweepWindow) throws IOException {
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
        cmd.addAll(List.of("bench", "--model", model.toString(), "--memory", memory, "--methods", method, "--json",
                "--activity", activity, "--density", Double.toString(density), "--new-per-token", Double.toString(newPerToken),
                "--calibration-window", Integer.toString(calibrationWindow), "--predictor-rank", Integer.toString(predictorRank),
                "--prompt", prompt, "--tokens", Integer.toString(tokens), "--warmup", Integer.toString(warmup),
                "--io-threads", Integer.toString(ioThreads), "--threads", Integer.toString(threads)));
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
        o.threads = threads;
        Path unbundled = splitModel != null ? splitModel : model;
        switch (method) {
            case "none" -> o.mode = Mode.dense;
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
            case "all", "flash", "flash-page-cache" -> {
                o.mode = Mode.flash;
                o.window = sweepWindow != null ? sweepWindow : window;
                o.pageCache = method.equals("flash-page-cache");
            }
            default -> throw new IllegalArgumentException("--methods: unknown method '" + method
                    + "' (naive, hybrid, predictor, window, all, flash, flash-page-cache)");
        }
        if (activity.equals("synthetic")) {
            o.predictor = "trained"; // replaced by the synthetic selector in runMethod
        }
        return o;
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
                             Map<String, Object> lim) throws IOException {
        Files.createDirectories(charts);
        int n = results.size();
        if (n > 0) {
            List<String> names = new ArrayList<>();
            double[] io = new double[n], mem = new double[n], comp = new double[n];
            for (int i = 0; i < n; i++) {
                Map<String, Object> m = results.get(i);
                names.add((String) m.get("method"));
                io[i] = num(m, "io_ms");
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
        b.append(String.format(Locale.ROOT, "%-17s %6s %10s %9s %11s %10s %10s %12s %9s %8s %12s%n", "method", "tokens", "I/O ms", "mem ms",
                "compute ms", "total ms", "p50 ms", "read/token", "read GB/s", "hit rate", "peak RSS"));
        List<Map<String, Object>> all = new ArrayList<>(results);
        all.addAll(sweep);
        for (Map<String, Object> m : all) {
            String name = m.get("method") + (m.containsKey("window") && sweep.contains(m) ? " K=" + m.get("window") : "");
            b.append(String.format(Locale.ROOT, "%-17s %6d %10.2f %9.2f %11.2f %10.2f %10.2f %12s %9.3f %7.1f%% %12s%n", name,
                    ((Number) m.get("tokens")).intValue(), num(m, "io_ms"), num(m, "mem_ms"), num(m, "compute_ms"), num(m, "total_ms"),
                    num(m, "total_ms_p50"), RunReport.human(num(m, "bytes_read_per_token")), num(m, "read_gbps"),
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
        return b.toString();
    }
}
