package dev.llmflash.runtime.flash;

import dev.llmflash.formats.hf.ModelConfig;
import dev.llmflash.runtime.budget.MemoryReport;
import dev.llmflash.runtime.io.IoEngine;
import dev.llmflash.runtime.model.LanguageModel;

import java.util.ArrayList;
import java.util.Arrays;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Locale;
import java.util.Map;

/**
 * Per-token metrics of a run, split as the paper's Table 3 (I/O, memory management, compute), and
 * the summary that {@code generate --json}, {@code --report}, each {@code bench} method and the
 * end-of-run table show. {@link #wrap} puts a timing layer around a model: every forward call becomes
 * one step, whose FFN counters ({@link FlashMetrics}) are the difference of snapshots taken around it.
 *
 * <p>Per-token figures (JSON keys):
 * <ul>
 *   <li>{@code io_ms}: time reads were in flight, from issue to completion, summed over layer steps
 *       ({@link FlashMetrics.Totals#ioLatencyNanos}); reads overlap compute, so this is not part of the
 *       token's wall time ({@code io_latency_ms} is the same figure under its older name);
 *   <li>{@code io_wait_ms}: time the compute thread was blocked waiting for reads
 *       ({@link FlashMetrics.Totals#ioWaitNanos}): the I/O not hidden behind compute;
 *   <li>{@code overlap}: the share of the in-flight time hidden behind compute, {@code 1 - io_wait / io},
 *       clamped to [0, 1]; {@code null} (and "-" in the tables) when the step read nothing;
 *   <li>{@code mem_ms}: memory management (cache bookkeeping, eviction moves, building read plans);
 *   <li>{@code compute_ms}: the step's wall time minus its I/O wait and memory-management time (it
 *       includes the predictor, attention, the FFN arithmetic and the LM head);
 *   <li>{@code total_ms}: the wall time, {@code = io_wait_ms + mem_ms + compute_ms}.
 * </ul>
 * <p>Per-token figures are means over the single-token steps (generation) after the warm-up; the
 * prompt's steps are reported apart as {@code prefill_step} (tokens, ms, io_ms, io_wait_ms, mem_ms,
 * bytes_read, totals over the prompt). A run with no single-token step (perplexity) reports per-token
 * means over all its tokens. One thread.
 */
public final class RunReport {
    /** One forward call. */
    public record Step(int tokens, long nanos, FlashMetrics.Totals ffn, long deviceBytes, long ioCpuNanos, long allocatedBytes) {
    }

    private final String mode;
    private final FlashMetrics metrics;
    private final IoEngine io;
    private final MemoryReport memory;
    private final long baselineRss;
    private final List<Step> steps = new ArrayList<>();
    private final Map<String, Object> extra = new LinkedHashMap<>();
    private java.util.function.LongSupplier cacheBytesUsed = () -> 0;
    private long cacheBytesUsedMax;

    /**
     * @param metrics the runtime's counters, or null (dense: no FFN I/O)
     * @param io      the runtime's engine (for device bytes and its mode), or null
     * @param baselineRss the process's resident set before the model was opened, or -1
     */
    public RunReport(String mode, FlashMetrics metrics, IoEngine io, MemoryReport memory, long baselineRss) {
        this.mode = mode;
        this.metrics = metrics == null ? new FlashMetrics() : metrics;
        this.io = io;
        this.memory = memory;
        this.baselineRss = baselineRss;
    }

    /** The report of a flash-runtime run. */
    public static RunReport of(FlashRuntime rt, long baselineRss) {
        RunReport r = new RunReport(rt.options().mode().name().toLowerCase(Locale.ROOT), rt.metrics(), rt.io(), rt.memory(), baselineRss);
        r.extra.put("io_mode", rt.io().mode());
        r.extra.put("io_backend", rt.io().backend());
        r.extra.put("io_threads", rt.io().threads());
        if (rt.options().mode() == FlashRuntime.Mode.FLASH) {
            r.extra.put("window", rt.options().window() < 0 ? "largest" : rt.options().window());
            r.extra.put("selector", rt.selectorSource() != null ? rt.selectorSource().name()
                    : rt.options().selector().name().toLowerCase(Locale.ROOT));
            r.extra.put("lookahead", rt.lookaheadLayers());
            r.extra.put("prefill_plan", rt.prefillPlanJson());
            r.extra.put("cache_rows_per_layer", Arrays.stream(rt.cacheRows()).boxed().toList());
            r.extra.put("cache_share_of_ffn", (double) Arrays.stream(rt.cacheRows()).asLongStream().sum()
                    / ((long) rt.geometry().layers() * rt.geometry().dFfn()));
            r.extra.put("prefill", "layer-major: per layer the union of the prompt tokens' predicted sets is read once (random reads, "
                    + "or the layer streamed when the union is large), each token computed with its own set");
        } else if (rt.options().mode() == FlashRuntime.Mode.HYBRID) {
            r.extra.put("resident_neurons_per_layer", rt.hybridResident());
            r.extra.put("resident_share_of_ffn", (double) rt.hybridResident() / rt.geometry().dFfn());
        }
        r.extra.put("layout", rt.geometry().layout().name().toLowerCase(Locale.ROOT));
        long rowBytes = FlashFfn.cacheStride(rt.geometry());
        r.cacheBytesUsed = () -> rt.cacheRowsUsed() * rowBytes;
        if (rt.selectorSource() != null) {
            r.extra.putAll(rt.selectorSource().describe());
        }
        return r;
    }

    /** The model, with every forward call recorded here as a step. */
    public LanguageModel wrap(LanguageModel model) {
        return new LanguageModel() {
            @Override
            public ModelConfig config() {
                return model.config();
            }

            @Override
            public State newState(int maxTokens) {
                return model.newState(maxTokens);
            }

            @Override
            public State newState(int maxTokens, dev.llmflash.formats.tensor.DType kv) {
                return model.newState(maxTokens, kv);
            }

            @Override
            public void forward(State state, int[] tokens, int n, boolean allPositions, float[] logits) {
                FlashMetrics.Totals before = metrics.snapshot();
                long dev0 = io == null ? 0 : io.stats().bytesRead();
                long cpu0 = io == null ? 0 : io.threadCpuNanos();
                long a0 = allocated();
                long t0 = System.nanoTime();
                model.forward(state, tokens, n, allPositions, logits);
                long t1 = System.nanoTime();
                long a1 = allocated();
                steps.add(new Step(n, t1 - t0, metrics.snapshot().minus(before), (io == null ? 0 : io.stats().bytesRead()) - dev0,
                        (io == null ? 0 : io.threadCpuNanos()) - cpu0, a1 - a0));
                cacheBytesUsedMax = Math.max(cacheBytesUsedMax, cacheBytesUsed.getAsLong());
            }

            @Override
            public void close() {
                model.close();
            }
        };
    }

    /** Heap bytes this thread and the I/O threads have allocated so far (HotSpot's per-thread counters), or 0. */
    private static final java.lang.management.ThreadMXBean THREADS = java.lang.management.ManagementFactory.getThreadMXBean();

    private long allocated() {
        if (!(THREADS instanceof com.sun.management.ThreadMXBean mx)  // looked up once: each lookup allocates
                || !mx.isThreadAllocatedMemorySupported()) {
            return 0;
        }
        return mx.getCurrentThreadAllocatedBytes() + (io == null ? 0 : io.threadAllocatedBytes());
    }

    public List<Step> steps() {
        return List.copyOf(steps);
    }

    /**
     * Per-token summary over the steps that {@link #perToken()} selects.
     *
     * @param ioMs     reads in flight (issued to completed) per token, ms
     * @param ioWaitMs time the compute thread waited for reads per token, ms ({@code totalMs = ioWaitMs + memMs + computeMs})
     */
    public record Summary(String mode, int tokens, double ioMs, double ioWaitMs, double memMs, double computeMs, double totalMs,
                          double totalP50Ms, double totalP90Ms, double totalMinMs, double totalMaxMs,
                          double bytesPerToken, double deviceBytesPerToken, double loadedPerToken,
                          double evictedPerToken, double hitRate, double window, long overflows) {

        /** {@code 1 - ioWait / io} clamped to [0, 1], the share of read time hidden behind compute; null when nothing was read. */
        public Double overlap() {
            return RunReport.overlap(ioMs, ioWaitMs);
        }
    }

    /** {@code 1 - ioWait / io} clamped to [0, 1]; null when {@code io} is 0 (no reads: nothing to overlap). */
    public static Double overlap(double ioMs, double ioWaitMs) {
        return ioMs > 0 ? Math.max(0, Math.min(1, 1 - ioWaitMs / ioMs)) : null;
    }

    private int skipDecode;

    /** Leaves the first {@code n} single-token steps out of the per-token figures (warm-up). */
    public RunReport skipWarmup(int n) {
        this.skipDecode = n;
        return this;
    }

    /** Decode steps (one token each) after the warm-up when there are any, else all steps. */
    private List<Step> perToken() {
        List<Step> one = steps.stream().filter(s -> s.tokens() == 1).skip(skipDecode).toList();
        return one.isEmpty() ? steps : one;
    }

    public Summary summary() {
        return summarize(perToken());
    }

    /** The summary under another name (a benchmark's method). */
    public Summary summary(String name) {
        Summary s = summary();
        return new Summary(name, s.tokens(), s.ioMs(), s.ioWaitMs(), s.memMs(), s.computeMs(), s.totalMs(), s.totalP50Ms(),
                s.totalP90Ms(), s.totalMinMs(), s.totalMaxMs(), s.bytesPerToken(), s.deviceBytesPerToken(), s.loadedPerToken(),
                s.evictedPerToken(), s.hitRate(), s.window(), s.overflows());
    }

    private Summary summarize(List<Step> list) {
        int tokens = 0;
        long nanos = 0, io = 0, mem = 0, lat = 0, bytes = 0, dev = 0, loaded = 0, evicted = 0, hits = 0, act = 0, win = 0, ls = 0, over = 0;
        double[] perStep = new double[list.size()];
        int i = 0;
        for (Step s : list) {
            tokens += s.tokens();
            nanos += s.nanos();
            FlashMetrics.Totals t = s.ffn();
            io += t.ioWaitNanos();
            lat += t.ioLatencyNanos();
            mem += t.memNanos();
            bytes += t.bytesRequested();
            dev += s.deviceBytes();
            loaded += t.neuronsLoaded();
            evicted += t.neuronsEvicted();
            hits += t.hits();
            act += t.active();
            win += t.windowSum();
            ls += t.layerSteps();
            over += t.overflows();
            perStep[i++] = s.nanos() / 1e6 / s.tokens();
        }
        Arrays.sort(perStep);
        double n = Math.max(1, tokens);
        return new Summary(mode, tokens, lat / 1e6 / n, io / 1e6 / n, mem / 1e6 / n, (nanos - io - mem) / 1e6 / n, nanos / 1e6 / n,
                pct(perStep, 0.5), pct(perStep, 0.9), perStep.length == 0 ? 0 : perStep[0],
                perStep.length == 0 ? 0 : perStep[perStep.length - 1], bytes / n, dev / n, loaded / n, evicted / n,
                act == 0 ? 1 : (double) hits / act, ls == 0 ? 0 : (double) win / ls, over);
    }

    private static double pct(double[] sorted, double q) {
        return sorted.length == 0 ? 0 : sorted[Math.min(sorted.length - 1, (int) Math.floor(q * (sorted.length - 1) + 0.5))];
    }

    /** The {@code metrics} fields of the CLI's JSON (the caller adds its own, such as timings to first token). */
    public Map<String, Object> toJson() {
        Summary s = summary();
        Map<String, Object> m = new LinkedHashMap<>();
        m.put("mode", mode);
        m.put("tokens", s.tokens());
        m.put("io_ms", s.ioMs());
        m.put("io_wait_ms", s.ioWaitMs());
        m.put("overlap", s.overlap());
        m.put("mem_ms", s.memMs());
        m.put("compute_ms", s.computeMs());
        m.put("total_ms", s.totalMs());
        m.put("total_ms_p50", s.totalP50Ms());
        m.put("total_ms_p90", s.totalP90Ms());
        m.put("total_ms_min", s.totalMinMs());
        m.put("total_ms_max", s.totalMaxMs());
        m.put("io_latency_ms", s.ioMs());
        m.put("bytes_read_per_token", s.bytesPerToken());
        m.put("device_bytes_read_per_token", s.deviceBytesPerToken());
        m.put("read_gbps", s.ioMs() > 0 ? s.deviceBytesPerToken() / (s.ioMs() * 1e6) : 0.0);
        m.put("neurons_loaded_per_token", s.loadedPerToken());
        m.put("neurons_evicted_per_token", s.evictedPerToken());
        m.put("cache_hit_rate", s.hitRate());
        m.put("window_tokens_mean", s.window());
        m.put("overflows", s.overflows());
        m.put("neuron_cache_used_bytes_max", cacheBytesUsedMax);
        List<Step> measured = perToken();
        long cpu = 0, pre = 0, alloc = 0, used = 0, loadedAfter = 0;
        int tok = 0;
        for (Step x : measured) {
            used += x.ffn().prefetchUsed();
            loadedAfter += x.ffn().neuronsLoaded() - x.ffn().prefetched();
            cpu += x.ioCpuNanos();
            alloc += x.allocatedBytes();
            pre += x.ffn().prefetched();
            tok += x.tokens();
        }
        // CPU the I/O threads used per token (both cores' worth: it competes with compute on a 2-core machine).
        m.put("io_cpu_ms", tok == 0 ? 0.0 : cpu / 1e6 / tok);
        m.put("prefetched_per_token", tok == 0 ? 0.0 : (double) pre / tok);
        // Of the neurons a token had to read, the share whose read the look-ahead had already started.
        m.put("lookahead_coverage", used + loadedAfter == 0 ? null : (double) used / (used + loadedAfter));
        m.put("prefetch_precision", pre == 0 ? null : (double) used / pre);
        // Heap bytes allocated per token by the compute thread and the I/O threads (the hot path's garbage).
        m.put("allocated_bytes_per_token", tok == 0 ? 0.0 : (double) alloc / tok);
        m.putAll(extra);
        List<Step> prefill = steps.stream().filter(x -> x.tokens() > 1).toList();
        if (!prefill.isEmpty() && prefill.size() < steps.size()) {
            m.put("prefill_step", stepsJson(prefill));
        }
        m.put("memory", memory.toJson(baselineRss));
        return m;
    }

    /** Totals over {@code list} (the {@code prefill_step} object): tokens, ms, io_ms, io_wait_ms, mem_ms, bytes_read. */
    public Map<String, Object> stepsJson(List<Step> list) {
        Summary p = summarize(list);
        Map<String, Object> pm = new LinkedHashMap<>();
        pm.put("tokens", p.tokens());
        pm.put("ms", p.totalMs() * p.tokens());
        pm.put("io_ms", p.ioMs() * p.tokens());
        pm.put("io_wait_ms", p.ioWaitMs() * p.tokens());
        pm.put("mem_ms", p.memMs() * p.tokens());
        pm.put("bytes_read", Math.round(p.bytesPerToken() * p.tokens()));
        long streamed = 0, cpu = 0;
        for (Step x : list) {
            streamed += x.ffn().prefillStreamed();
            cpu += x.ioCpuNanos();
        }
        pm.put("layers_streamed", streamed);
        pm.put("overflows", p.overflows());
        pm.put("io_cpu_ms", cpu / 1e6);
        return pm;
    }

    /** The end-of-run table: one row per this run, as the paper's Table 3, then the memory held. */
    public String table() {
        return table(List.of(summary())) + memoryLine(memory);
    }

    /** A Table-3-like table of several runs (the demo and benchmarks compare modes). */
    public static String table(List<Summary> rows) {
        StringBuilder b = new StringBuilder();
        b.append(String.format(Locale.ROOT, "%-10s %6s %11s %9s %9s %11s %10s %13s %9s%n", "mode", "tokens", "I/O wait ms", "overlap",
                "mem ms", "compute ms", "total ms", "read/token", "hit rate"));
        for (Summary s : rows) {
            b.append(String.format(Locale.ROOT, "%-10s %6d %11.3f %9s %9.3f %11.3f %10.3f %13s %8.1f%%%n", s.mode(), s.tokens(),
                    s.ioWaitMs(), percent(s.overlap()), s.memMs(), s.computeMs(), s.totalMs(), human(s.bytesPerToken()), 100 * s.hitRate()));
        }
        b.append("(total = I/O wait + mem + compute; overlap = share of the reads' in-flight time hidden behind compute, - when nothing was read)")
                .append(System.lineSeparator());
        return b.toString();
    }

    public static String memoryLine(MemoryReport m) {
        return String.format(Locale.ROOT, "memory: budget %s; held %s = attention %s + embeddings %s + predictors %s"
                        + " + neuron cache %s + KV cache %s + buffers %s%n",
                m.budgetBytes() < 0 ? "none" : human(m.budgetBytes()), human(m.total()), human(m.attention()),
                human(m.embeddings()), human(m.predictors()), human(m.neuronCache()), human(m.kvCache()), human(m.buffers()));
    }

    /** "87.5%", or "-" for null (no reads). */
    public static String percent(Double share) {
        return share == null ? "-" : String.format(Locale.ROOT, "%.1f%%", 100 * share);
    }

    /** Bytes in binary units (KiB, MiB, GiB), as --memory parses them. */
    public static String human(double bytes) {
        if (bytes >= 1L << 30) {
            return String.format(Locale.ROOT, "%.2f GiB", bytes / (1L << 30));
        }
        if (bytes >= 1L << 20) {
            return String.format(Locale.ROOT, "%.2f MiB", bytes / (1L << 20));
        }
        if (bytes >= 1L << 10) {
            return String.format(Locale.ROOT, "%.1f KiB", bytes / (1L << 10));
        }
        return String.format(Locale.ROOT, "%.0f B", bytes);
    }
}
