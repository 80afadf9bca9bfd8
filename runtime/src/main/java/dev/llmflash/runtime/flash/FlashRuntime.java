package dev.llmflash.runtime.flash;

import dev.llmflash.formats.ByteSize;
import dev.llmflash.formats.LlmflashException;
import dev.llmflash.formats.bundle.Bundle;
import dev.llmflash.formats.bundle.FfnGeometry;
import dev.llmflash.formats.hf.FalconConfig;
import dev.llmflash.formats.hf.ModelConfig;
import dev.llmflash.formats.hf.OptConfig;
import dev.llmflash.formats.predictor.LayerPredictor;
import dev.llmflash.formats.predictor.PredictorFile;
import dev.llmflash.formats.predictor.Predictors;
import dev.llmflash.formats.tensor.DType;
import dev.llmflash.runtime.budget.MemoryReport;
import dev.llmflash.runtime.ffn.FfnWrapper;
import dev.llmflash.runtime.ffn.NeuronMajorFfn;
import dev.llmflash.runtime.io.IoEngine;
import dev.llmflash.runtime.kernels.Kernels;
import dev.llmflash.runtime.model.LanguageModel;

import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.Locale;

/**
 * Runs a bundle's FFN from flash within a DRAM budget: plans the budget, opens the I/O engine on
 * {@code ffn.bin}, preallocates the caches, and hands the model builder a {@link #wrapper()} that
 * replaces each layer's memory-mapped FFN by a {@link FlashFfn} (flash) or a {@link StreamedFfn}
 * (naive, hybrid). The mapped FFN is never read, except by the oracle selector (tests).
 *
 * <h2>Budget (the paper's section 4 accounting)</h2>
 * fixed = resident weights (attention + embeddings, memory-mapped) + KV cache for the context +
 * predictors + buffers (I/O bounce buffers at their maximum, activation scratch, logits; naive and
 * hybrid: the streamed-layer buffer). What the budget leaves after that is FFN held in DRAM: flash
 * splits it into equal per-layer neuron caches (layers the trainer kept dense first get every
 * neuron), hybrid keeps the first R neurons of every layer resident. A budget below the minimum
 * (fixed + one cache row per layer for flash; fixed + one whole layer buffer for naive and hybrid)
 * is refused with the minimum in the message. {@link FlashPlan} works the figures out; this class
 * allocates what it says and wires the layers.
 *
 * <h2>Ownership</h2>
 * The runtime owns the engine, the caches and the resident FFN parts: close it after the model.
 */
public final class FlashRuntime implements AutoCloseable {

    /** The runtime modes that read the FFN from flash (dense maps everything and needs no runtime). */
    public enum Mode { NAIVE, HYBRID, FLASH }

    /**
     * Where flash mode's active sets come from: the bundle's trained predictors, or the true activity
     * (tests). A {@link SelectorSource} given with {@link Options#withSelectorSource} replaces either.
     */
    public enum Selector { TRAINED, ORACLE }

    /** Default I/O threads: the paper's 32 concurrent reads for SSDs. */
    public static final int DEFAULT_IO_THREADS = 32;
    /** Largest single read: 64 KiB, above the paper's 32 KiB knee. */
    public static final int MAX_RUN_BYTES = 64 << 10;
    /** Gaps up to one block are read through: a direct read moves whole blocks anyway. */
    public static final int MAX_GAP = 4096;

    /**
     * @param budget         the DRAM budget, or null for none (flash and hybrid may hold the whole FFN)
     * @param window         flash: K >= 1 tokens, 0 = no window (ablation), -1 = the largest the budget allows
     * @param ioThreads      I/O threads, >= 1
     * @param direct         try O_DIRECT (page cache bypassed); false: buffered reads (page cache used)
     * @param contextTokens  positions the KV cache is sized for (prompt + new tokens)
     * @param kvType         the KV cache's element type, F16 (default) or F32
     * @param prefill        how flash reads a prompt's union of active sets: AUTO (by the measured read speeds),
     *                       RANDOM or STREAM (forced)
     * @param selectorSource flash: where the active sets come from instead of {@code selector}, or null
     * @param lookahead      flash decode: prefetch layer l+1's predicted neurons while layer l computes (needs
     *                       look-ahead predictors, or a selector source that provides them)
     * @param ioBackend      how read plans reach the disk ({@link IoEngine.Backend}; AUTO: io_uring where the
     *                       kernel offers it)
     */
    public record Options(Mode mode, Budget budget, int window, int ioThreads, boolean direct, Selector selector,
                          int contextTokens, SelectorSource selectorSource,
                          DType kvType, FlashFfn.PrefillPlan.Policy prefill, boolean lookahead,
                          IoEngine.Backend ioBackend) {
        public Options(Mode mode, Budget budget, int window, int ioThreads, boolean direct, Selector selector, int contextTokens) {
            this(mode, budget, window, ioThreads, direct, selector, contextTokens, null, LanguageModel.DEFAULT_KV,
                    FlashFfn.PrefillPlan.Policy.AUTO, true, IoEngine.Backend.AUTO);
        }

        public Options {
            if (window < -1) {
                throw new IllegalArgumentException("--window must be >= 0 (0 = no window), got " + window);
            }
            if (ioThreads < 1 || ioThreads > 1024) {
                throw new IllegalArgumentException("--io-threads must be between 1 and 1024, got " + ioThreads);
            }
            if (contextTokens < 1) {
                throw new IllegalArgumentException("context must be >= 1 token, got " + contextTokens);
            }
            if (ioBackend == null) {
                throw new IllegalArgumentException("an I/O backend is required");
            }
            if (kvType != DType.F16 && kvType != DType.F32) {
                throw new IllegalArgumentException("--kv-dtype must be f16 or f32, got " + kvType);
            }
        }

        public static Options of(Mode mode, int contextTokens) {
            return new Options(mode, null, -1, DEFAULT_IO_THREADS, true, Selector.TRAINED, contextTokens);
        }

        private Options with(Budget b, int w, int t, boolean d, Selector s, SelectorSource src, DType kv,
                             FlashFfn.PrefillPlan.Policy pf, boolean la) {
            return new Options(mode, b, w, t, d, s, contextTokens, src, kv, pf, la, ioBackend);
        }

        /** How the flash decode's read plans reach the disk: io_uring (AUTO where available) or threads. */
        public Options withIoBackend(IoEngine.Backend backend) {
            return new Options(mode, budget, window, ioThreads, direct, selector, contextTokens, selectorSource, kvType,
                    prefill, lookahead, backend);
        }

        public Options withBudget(Budget b) {
            return with(b, window, ioThreads, direct, selector, selectorSource, kvType, prefill, lookahead);
        }

        public Options withWindow(int w) {
            return with(budget, w, ioThreads, direct, selector, selectorSource, kvType, prefill, lookahead);
        }

        public Options withIoThreads(int t) {
            return with(budget, window, t, direct, selector, selectorSource, kvType, prefill, lookahead);
        }

        public Options withDirect(boolean d) {
            return with(budget, window, ioThreads, d, selector, selectorSource, kvType, prefill, lookahead);
        }

        /** Flash: the active sets (and their budget figures) from {@code src}; the selector is then unused. */
        public Options withSelectorSource(SelectorSource src) {
            return with(budget, window, ioThreads, direct, selector, src, kvType, prefill, lookahead);
        }

        public Options withSelector(Selector s) {
            return with(budget, window, ioThreads, direct, s, selectorSource, kvType, prefill, lookahead);
        }

        public Options withKvType(DType kv) {
            return with(budget, window, ioThreads, direct, selector, selectorSource, kv, prefill, lookahead);
        }

        public Options withPrefill(FlashFfn.PrefillPlan.Policy pf) {
            return with(budget, window, ioThreads, direct, selector, selectorSource, kvType, pf, lookahead);
        }

        /** Look-ahead prefetch on or off. */
        public Options withLookahead(boolean on) {
            return with(budget, window, ioThreads, direct, selector, selectorSource, kvType, prefill, on);
        }
    }

    /** {@code --memory}: absolute bytes ("6G", "900M") or a share of the model's bytes ("50%"). */
    public record Budget(long bytes, double percent) {
        public static Budget parse(String s) {
            String t = s.trim();
            if (t.endsWith("%")) {
                double p;
                try {
                    p = Double.parseDouble(t.substring(0, t.length() - 1).trim());
                } catch (NumberFormatException e) {
                    throw new IllegalArgumentException("--memory '" + s + "' is not a size (6G, 900M) or a percentage (50%)");
                }
                if (!(p > 0) || p > 1000) {
                    throw new IllegalArgumentException("--memory " + s + ": the percentage must be above 0 and at most 1000");
                }
                return new Budget(-1, p);
            }
            return new Budget(ByteSize.parse(t, "--memory"), -1);
        }

        public long resolve(long modelBytes) {
            return bytes >= 0 ? bytes : (long) Math.floor(modelBytes * percent / 100.0);
        }

        @Override
        public String toString() {
            return bytes >= 0 ? FlashPlan.mb(bytes) : String.format(Locale.ROOT, "%s%%", percent);
        }
    }

    private final Options options;
    private final Bundle bundle;
    private final FfnGeometry g;
    private final IoEngine io;
    private final FlashMetrics metrics = new FlashMetrics();
    private final Arena arena = Arena.ofShared();
    private final List<NeuronCache> caches = new ArrayList<>();
    private final List<FlashFfn> flashLayers = new ArrayList<>();
    /**
     * Trained selection: per layer its predictor in f16 ({@link ActiveSelector.Trained}; null where the
     * layer is kept dense) and its look-ahead for the next layer (null where none). The file's f32
     * matrices are dropped once these are made.
     */
    private final ActiveSelector.Trained[] ownPredictors;
    private final ActiveSelector.Trained[] lookaheadPredictors;
    /** Flash: the supplied source of active sets, or null. */
    private final SelectorSource source;
    private final FlashPlan plan;
    private final MemorySegment streamBuffer;
    private final FlashFfn.PrefillPlan prefillPlan;
    private Kernels oracleKernels;

    private FlashRuntime(Options o, Bundle b) {
        this.options = o;
        this.bundle = b;
        ModelConfig c = b.config();
        this.g = b.manifest().ffn().geometry();
        if (o.mode() == Mode.FLASH && !"relu".equals(activation(c))) {
            throw new LlmflashException(b.dir() + ": --mode flash needs ReLU sparsity but this model's FFN uses "
                    + activation(c) + "; use --mode dense, naive or hybrid");
        }
        this.source = o.mode() == Mode.FLASH ? o.selectorSource() : null;
        Predictors predictors = o.mode() == Mode.FLASH && source == null && o.selector() == Selector.TRAINED
                ? readPredictors(b) : null;
        this.ownPredictors = new ActiveSelector.Trained[g.layers()];
        this.lookaheadPredictors = new ActiveSelector.Trained[g.layers()];
        if (predictors != null) {
            DType held = ActiveSelector.Trained.dtypeFor(g.dtype());
            for (int l = 0; l < g.layers(); l++) {
                LayerPredictor p = predictors.layer(l);
                ownPredictors[l] = p.dense() ? null : ActiveSelector.trained(p, held);
                LayerPredictor la = l + 1 < g.layers() ? predictors.lookahead(l) : null;
                lookaheadPredictors[l] = la == null || la.dense() || predictors.layer(l + 1).dense() ? null
                        : ActiveSelector.trained(la, held);
            }
        }
        IoEngine engine = IoEngine.open(b.dir().resolve(b.manifest().ffn().file()), o.ioThreads(), o.direct(), MAX_GAP, MAX_RUN_BYTES,
                o.ioBackend(), g.stride());
        try {
            this.plan = new FlashPlan(o, b, predictors, source, engine.maxBufferBytes());
            MemorySegment stream = null;
            FlashFfn.PrefillPlan prefill = FlashFfn.PrefillPlan.RANDOM_ONLY;
            if (o.mode() == Mode.FLASH) {
                int[] rows = plan.rows();
                for (int l = 0; l < g.layers(); l++) {
                    caches.add(new NeuronCache(g.dFfn(), rows[l], FlashFfn.cacheStride(g)));
                }
                stream = arena.allocate(2 * plan.streamHalf(), 4096);
                prefill = o.prefill() == FlashFfn.PrefillPlan.Policy.AUTO
                        ? ReadSpeeds.measure(engine, g, stream).plan(stream)
                        : new FlashFfn.PrefillPlan(stream, 1, 1, o.prefill());
            } else if (plan.streamBytes() > 0) {
                stream = arena.allocate(plan.streamBytes(), 4096);
            }
            this.io = engine;
            this.streamBuffer = stream;
            this.prefillPlan = prefill;
        } catch (RuntimeException e) {
            engine.close();
            caches.forEach(NeuronCache::close);
            arena.close();
            throw e;
        }
    }

    /**
     * Opens the runtime for the bundle in {@code dir}.
     *
     * @throws LlmflashException the budget is too small (with the minimum), the bundle has no predictors
     *                           (flash), or the model is not ReLU (flash)
     */
    public static FlashRuntime open(Path dir, Options o) {
        if (!Bundle.looksLikeBundle(dir)) {
            throw new LlmflashException(dir + ": --mode " + o.mode().name().toLowerCase(Locale.ROOT)
                    + " needs a bundle (it reads the FFN from the bundle's ffn.bin); convert the model first (llmflash convert --input "
                    + dir + " --output BUNDLE)");
        }
        Bundle b = Bundle.open(dir);
        try {
            return new FlashRuntime(o, b);
        } catch (RuntimeException e) {
            b.close();
            throw e;
        }
    }

    /**
     * The per-layer FFN this runtime provides; the model builder's FFN (memory-mapped) supplies only the
     * biases and shape, and (oracle selector) the true activity.
     */
    public FfnWrapper wrapper() {
        return (layer, ffn) -> {
            if (!(ffn instanceof NeuronMajorFfn n)) {
                throw new IllegalStateException("a bundle's FFN is neuron-major");
            }
            long block = g.blockOffset(layer);
            if (options.mode() == Mode.FLASH) {
                ActiveSelector own = selector(layer, n);
                ActiveSelector ahead = null;
                if (options.lookahead() && layer > 0 && flashLayers.size() == layer) {
                    ActiveSelector[] pair = lookahead(layer - 1, own);
                    own = pair[0];
                    ahead = pair[1];
                }
                FlashFfn ffnL = new FlashFfn(layer, g, block, caches.get(layer), own, io, n.upBias(), n.downBias(),
                        options.window(), metrics, prefillPlan);
                if (ahead != null) {
                    flashLayers.get(layer - 1).chain(ahead, ffnL);
                }
                flashLayers.add(ffnL);
                return ffnL;
            }
            MemorySegment residentRows = null;
            if (plan.hybridResident() > 0) {
                residentRows = arena.allocate(StreamedFfn.bytesFor(g, plan.hybridResident()), 4096);
                IoEngine.Pending p = io.submit(StreamedFfn.reads(g, block, 0, plan.hybridResident(), residentRows));
                p.await();
            }
            return new StreamedFfn(g, block, plan.hybridResident(), residentRows, streamBuffer, io, n.upBias(), n.downBias(),
                    n.act(), metrics);
        };
    }

    /**
     * The look-ahead that layer {@code from} runs on its FFN input to prefetch layer {@code from + 1}:
     * {own selector of layer from+1 (possibly replaced), look-ahead selector}, or {own, null} when there is
     * none (the oracle; a target layer kept dense; a bundle trained without look-ahead predictors).
     */
    private ActiveSelector[] lookahead(int from, ActiveSelector own) {
        if (source != null) {
            return source.lookahead(from, own);
        }
        return switch (options.selector()) {
            case TRAINED -> new ActiveSelector[]{own, lookaheadPredictors[from]};
            case ORACLE -> new ActiveSelector[]{own, null};
        };
    }

    private ActiveSelector selector(int layer, NeuronMajorFfn n) {
        if (source != null) {
            return source.layer(layer);
        }
        if (options.selector() == Selector.ORACLE) {
            if (oracleKernels == null) {
                oracleKernels = new Kernels(1);
            }
            return ActiveSelector.oracle(n, oracleKernels);
        }
        ActiveSelector.Trained p = ownPredictors[layer];
        return p == null ? ActiveSelector.all(g.dFfn()) : p;
    }

    private static Predictors readPredictors(Bundle b) {
        if (!PredictorFile.exists(b.dir())) {
            throw new LlmflashException(b.dir() + ": --mode flash needs the bundle's predictors, and it has none;"
                    + " train them with 'llmflash record' then 'llmflash train-predictor'");
        }
        return PredictorFile.read(b.dir(), b.manifest().fingerprint());
    }

    /**
     * What a memory-mapped run (dense) holds: every weight, the FFN counted as neuron cache; KV cache
     * for {@code contextTokens}; activation scratch as buffers. No budget ({@code budget_bytes} -1).
     */
    public static MemoryReport mappedMemory(Path dir, int contextTokens) {
        return FlashPlan.mappedMemory(dir, contextTokens);
    }

    private static String activation(ModelConfig c) {
        return switch (c) {
            case OptConfig o -> o.activation();
            case FalconConfig fc -> fc.activation();
        };
    }


    public Options options() {
        return options;
    }

    public FlashMetrics metrics() {
        return metrics;
    }

    public MemoryReport memory() {
        return plan.memory();
    }

    public IoEngine io() {
        return io;
    }

    /** Bytes of the whole model (resident file + ffn.bin): what "--memory 50%" is a share of. */
    public long modelBytes() {
        return plan.modelBytes();
    }

    public long budgetBytes() {
        return plan.budgetBytes();
    }

    /** Flash: cache rows of each layer. */
    public int[] cacheRows() {
        return plan.rows();
    }

    /** Flash: rows in use, summed over layers. */
    public long cacheRowsUsed() {
        long u = 0;
        for (NeuronCache c : caches) {
            u += c.used();
        }
        return u;
    }

    /** Flash: layers whose reads a look-ahead from the previous layer starts early. */
    public int lookaheadLayers() {
        int n = 0;
        for (FlashFfn l : flashLayers) {
            n += l.hasLookahead() ? 1 : 0;
        }
        return n;
    }

    /** Flash: how the prompt's union is read (policy, the measured speeds, the streaming buffer). */
    public java.util.Map<String, Object> prefillPlanJson() {
        java.util.Map<String, Object> m = new java.util.LinkedHashMap<>();
        m.put("policy", prefillPlan.policy().name().toLowerCase(Locale.ROOT));
        m.put("seq_read_gbps", prefillPlan.seqGBps());
        m.put("random_read_gbps", prefillPlan.randomGBps());
        m.put("stream_buffer_bytes", prefillPlan.buffer() == null ? 0 : prefillPlan.buffer().byteSize());
        return m;
    }

    /** Hybrid: neurons per layer held in DRAM. */
    public int hybridResident() {
        return plan.hybridResident();
    }

    /** Flash: the supplied source of active sets in use, or null. */
    public SelectorSource selectorSource() {
        return source;
    }

    public FfnGeometry geometry() {
        return g;
    }

    @Override
    public void close() {
        io.close();
        caches.forEach(NeuronCache::close);
        arena.close();
        if (oracleKernels != null) {
            oracleKernels.close();
        }
        bundle.close();
    }
}
