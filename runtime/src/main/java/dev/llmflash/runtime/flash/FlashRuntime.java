package dev.llmflash.runtime.flash;

import dev.llmflash.formats.ByteSize;
import dev.llmflash.formats.LlmflashException;
import dev.llmflash.formats.bundle.Bundle;
import dev.llmflash.formats.bundle.BundleManifest;
import dev.llmflash.formats.bundle.FfnGeometry;
import dev.llmflash.formats.hf.FalconConfig;
import dev.llmflash.formats.hf.ModelConfig;
import dev.llmflash.formats.hf.OptConfig;
import dev.llmflash.formats.predictor.LayerPredictor;
import dev.llmflash.formats.predictor.PredictorFile;
import dev.llmflash.formats.predictor.Predictors;
import dev.llmflash.runtime.budget.MemoryPlan;
import dev.llmflash.runtime.budget.MemoryReport;
import dev.llmflash.runtime.ffn.Activation;
import dev.llmflash.runtime.ffn.Ffn;
import dev.llmflash.runtime.ffn.FfnWrapper;
import dev.llmflash.runtime.ffn.NeuronMajorFfn;
import dev.llmflash.runtime.io.IoEngine;
import dev.llmflash.runtime.kernels.Kernels;
import dev.llmflash.runtime.model.FalconModel;
import dev.llmflash.runtime.model.LanguageModel;
import dev.llmflash.runtime.model.OptModel;
import dev.llmflash.formats.tensor.DType;

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
 * is refused with the minimum in the message.
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
     */
    public record Options(Mode mode, Budget budget, int window, int ioThreads, boolean direct, Selector selector,
                          int contextTokens, SelectorSource selectorSource,
                          DType kvType, FlashFfn.PrefillPlan.Policy prefill, boolean lookahead) {
        public Options(Mode mode, Budget budget, int window, int ioThreads, boolean direct, Selector selector, int contextTokens) {
            this(mode, budget, window, ioThreads, direct, selector, contextTokens, null, LanguageModel.DEFAULT_KV,
                    FlashFfn.PrefillPlan.Policy.AUTO, true);
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
            if (kvType != DType.F16 && kvType != DType.F32) {
                throw new IllegalArgumentException("--kv-dtype must be f16 or f32, got " + kvType);
            }
        }

        public static Options of(Mode mode, int contextTokens) {
            return new Options(mode, null, -1, DEFAULT_IO_THREADS, true, Selector.TRAINED, contextTokens);
        }

        private Options with(Budget b, int w, int t, boolean d, Selector s, SelectorSource src, DType kv,
                             FlashFfn.PrefillPlan.Policy pf, boolean la) {
            return new Options(mode, b, w, t, d, s, contextTokens, src, kv, pf, la);
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
            return bytes >= 0 ? mb(bytes) : String.format(Locale.ROOT, "%s%%", percent);
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
    private final Predictors predictors;
    private final int[] rowsPerLayer;
    private final int hybridResident;
    private final MemorySegment streamBuffer;
    private final FlashFfn.PrefillPlan prefillPlan;
    private final MemoryReport memory;
    private final long modelBytes;
    private long budgetBytes;
    private Kernels oracleKernels;
    /** Flash: the supplied source of active sets, or null. */
    private final SelectorSource source;
    /** Per layer: whether {@link #expectedDensity} knows the predicted density (trainer's figures, the source's). */
    private boolean[] densityKnown;

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
        this.predictors = o.mode() == Mode.FLASH && source == null && o.selector() == Selector.TRAINED ? readPredictors(b) : null;
        long[] split = residentSplit(b.manifest());
        long attention = split[0], embeddings = split[1];
        this.modelBytes = b.manifest().resident().size() + b.manifest().ffn().size();
        this.budgetBytes = o.budget() == null ? -1 : o.budget().resolve(modelBytes);
        int context = Math.min(o.contextTokens(), c.maxPositions());
        long kv = MemoryPlan.kvCacheBytes(c, context, o.kvType());
        long predictorBytes = source != null ? source.predictorBytes() : 0;
        if (predictors != null) {
            List<LayerPredictor> all = new ArrayList<>(predictors.layers());
            all.addAll(o.lookahead() ? lookaheads(predictors) : List.of());
            for (LayerPredictor p : all) {
                predictorBytes += p.dense() ? 0 : 4L * (p.a().length + p.b().length + p.c().length);
            }
        }
        int layers = g.layers(), f = g.dFfn();
        int span = MemoryPlan.span(context);
        double[] density = expectedDensity(layers);
        long scratch = activationScratchBytes(c, span, o.mode() == Mode.FLASH ? 0 : f);
        long streamHalf = 0;
        if (o.mode() == Mode.FLASH) {
            int cap = f;  // the per-layer arrays are sized by the capacity; bound them by f
            scratch += layers * (4L * (3L * f + 8L * cap) + 4L * g.dModel());
            // A prompt's sets: each token's predicted set, twice (the sets and a tile's row lists).
            double maxDensity = 0;
            for (double x : density) {
                maxDensity = Math.max(maxDensity, x);
            }
            scratch += 8L * span * (long) Math.ceil(Math.min(1.0, maxDensity * SET_HEADROOM) * f) + 16L * f;
            streamHalf = Math.min(STREAM_HALF_BYTES, FfnGeometry.alignUp(StreamedFfn.bytesFor(g, f), 4096));
        }
        IoEngine engine = IoEngine.open(b.dir().resolve(b.manifest().ffn().file()), o.ioThreads(), o.direct(), MAX_GAP, MAX_RUN_BYTES);
        try {
            long buffers = engine.maxBufferBytes() + scratch + 2 * streamHalf;
            long fixed = attention + embeddings + kv + predictorBytes + buffers;
            String parts = "resident weights " + mb(attention + embeddings) + " + KV cache " + mb(kv) + " (" + o.kvType().name().toLowerCase(Locale.ROOT)
                    + ") for " + context + " tokens + predictors " + mb(predictorBytes) + " + buffers " + mb(buffers)
                    + " for " + o.ioThreads() + " I/O threads";
            if (budgetBytes < 0) {
                // No budget: room for every neuron in DRAM (flash caches, hybrid) or one layer (naive).
                budgetBytes = fixed + switch (o.mode()) {
                    case FLASH -> (long) layers * f * FlashFfn.cacheStride(g);
                    case HYBRID -> layers * StreamedFfn.bytesFor(g, f);
                    case NAIVE -> StreamedFfn.bytesFor(g, f);
                };
            }
            long room = budgetBytes - fixed;
            long neuronBytes;
            int[] rows = new int[layers];
            int resident = 0;
            MemorySegment stream = null;
            FlashFfn.PrefillPlan plan = FlashFfn.PrefillPlan.RANDOM_ONLY;
            if (o.mode() == Mode.FLASH) {
                long cs = FlashFfn.cacheStride(g);
                int[] floor = setFloors(density);
                long floorRows = 0;
                for (int x : floor) {
                    floorRows += x;
                }
                long min = fixed + floorRows * cs;
                if (budgetBytes < min) {
                    long perToken = MemoryPlan.kvCacheBytes(c, 1, o.kvType());
                    long fitTokens = (budgetBytes - (min - kv)) / perToken;
                    throw new LlmflashException(String.format(Locale.ROOT,
                            "--memory %s is below the %s that --mode flash needs for this request (%s + a neuron cache of %d rows, "
                                    + "each layer's predicted set per token with %.0f%% headroom); raise --memory to at least %s%s",
                            budgetLabel(), mb(min), parts, floorRows, (SET_HEADROOM - 1) * 100, mbUp(min),
                            fitTokens >= 1 ? ", or ask for at most " + Math.min(fitTokens, context - 1) + " tokens (prompt + new tokens)"
                                    : ""));
                }
                planCaches(rows, room / cs, density, floor);
                neuronBytes = 0;
                for (int l = 0; l < layers; l++) {
                    caches.add(new NeuronCache(f, rows[l], cs));
                    neuronBytes += rows[l] * cs;
                }
                stream = arena.allocate(2 * streamHalf, 4096);
                buffers = buffers - 2 * streamHalf + stream.byteSize();
                plan = o.prefill() == FlashFfn.PrefillPlan.Policy.AUTO
                        ? ReadSpeeds.measure(engine, g, stream).plan(stream)
                        : new FlashFfn.PrefillPlan(stream, 1, 1, o.prefill());
            } else {
                long layerBytes = StreamedFfn.bytesFor(g, f);
                refuseBelow(fixed + layerBytes, parts + " + one layer's FFN buffer " + mb(layerBytes));
                if (o.mode() == Mode.HYBRID) {
                    resident = hybridResident(room);
                }
                neuronBytes = resident == 0 ? 0 : layers * StreamedFfn.bytesFor(g, resident);
                long streamBytes = resident == f ? 0 : StreamedFfn.bytesFor(g, f - resident);
                stream = streamBytes == 0 ? null : arena.allocate(streamBytes, 4096);
                buffers += streamBytes;
            }
            this.io = engine;
            this.rowsPerLayer = rows;
            this.hybridResident = resident;
            this.streamBuffer = stream;
            this.prefillPlan = plan;
            this.memory = new MemoryReport(budgetBytes, attention, embeddings, predictorBytes, neuronBytes, kv, buffers);
        } catch (RuntimeException e) {
            engine.close();
            caches.forEach(NeuronCache::close);
            arena.close();
            throw e;
        }
    }

    /** Headroom of the neuron cache over a layer's mean predicted set: per-token sets vary around the mean. */
    static final double SET_HEADROOM = 1.1;
    /** Half of the prefill streaming buffer: large sequential reads, one piece computing while the next is read. */
    static final long STREAM_HALF_BYTES = 4L << 20;

    /** The bundle's look-ahead predictors that exist (reading layer l's input, predicting layer l+1). */
    private static List<LayerPredictor> lookaheads(Predictors p) {
        List<LayerPredictor> out = new ArrayList<>();
        for (int l = 0; l + 1 < p.layers().size(); l++) {
            LayerPredictor la = p.lookahead(l);
            if (la != null && !la.dense()) {
                out.add(la);
            }
        }
        return out;
    }

    /**
     * Per layer the fewest cache rows the plan accepts: the layer's mean predicted set with
     * {@link #SET_HEADROOM}, so that decode does not overflow; a layer kept dense (it needs every neuron
     * each token) only its streaming rows; with no density known (oracle, predictors without the
     * trainer's figures) one row.
     */
    private int[] setFloors(double[] density) {
        int f = g.dFfn();
        int[] floor = new int[density.length];
        for (int l = 0; l < floor.length; l++) {
            boolean dense = predictors != null && predictors.layer(l).dense();
            floor[l] = dense ? denseStreamRows() : densityKnown[l] ? (int) Math.min(f, Math.ceil(density[l] * f * SET_HEADROOM)) : 1;
        }
        return floor;
    }

    private int denseStreamRows() {
        return (int) Math.max(1, Math.min(g.dFfn(), (256 << 10) / FlashFfn.cacheStride(g)));
    }

    private String budgetLabel() {
        return options.budget() == null ? "(none)" : options.budget().bytes() >= 0 ? options.budget().toString()
                : options.budget() + " (" + mb(budgetBytes) + ")";
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

    private void refuseBelow(long min, String parts) {
        if (budgetBytes < min) {
            throw new LlmflashException(String.format(Locale.ROOT,
                    "--memory %s is below the %s that --mode %s needs for this model (%s); raise --memory to at least %s",
                    budgetLabel(), mb(min), options.mode().name().toLowerCase(Locale.ROOT), parts, mbUp(min)));
        }
    }

    /**
     * Splits {@code totalRows} cache rows over the layers: first each layer's floor (its predicted set
     * with headroom), then the rest in proportion to each layer's expected active set (the predicted
     * density the trainer measured, 1 for a layer kept dense, equal shares when unknown, as with the
     * oracle), capped at f per layer with what a capped layer cannot use given to the others
     * (water-filling). A layer kept dense needs all f neurons every token: its cache helps only if it
     * holds the whole layer, so when the dense layers would take more than half the rows they keep just
     * their streaming rows (the overflow path) and the rows go to predicted layers.
     */
    private void planCaches(int[] rows, long totalRows, double[] w, int[] floor) {
        int layers = rows.length, f = g.dFfn();
        boolean[] capped = new boolean[layers];
        long left = totalRows;
        for (int l = 0; l < layers; l++) {
            rows[l] = floor[l];
            left -= floor[l];
        }
        long denseRows = 0;
        for (int l = 0; l < layers; l++) {
            denseRows += predictors != null && predictors.layer(l).dense() ? f : 0;
        }
        if (denseRows > 0 && denseRows > totalRows / 2) {
            for (int l = 0; l < layers; l++) {
                capped[l] |= predictors.layer(l).dense();
            }
        }
        while (left > 0) {
            double sum = 0;
            for (int l = 0; l < layers; l++) {
                sum += capped[l] ? 0 : w[l];
            }
            if (sum == 0) {
                return;
            }
            boolean changed = false;
            for (int l = 0; l < layers; l++) {
                if (!capped[l] && rows[l] + left * w[l] / sum >= f) {
                    capped[l] = true;
                    left -= f - rows[l];
                    rows[l] = f;
                    changed = true;
                }
            }
            if (!changed) {
                long share = left;
                for (int l = 0; l < layers; l++) {
                    if (!capped[l]) {
                        int add = (int) Math.floor(Math.max(0, share) * w[l] / sum);
                        rows[l] = Math.min(f, rows[l] + add);
                        left -= add;
                    }
                }
                return;
            }
        }
    }

    /**
     * Per layer the expected share of neurons predicted per token: the trainer's predicted density (1 for
     * dense layers), the selector source's density, else 1 for every layer.
     */
    private double[] expectedDensity(int layers) {
        double[] w = new double[layers];
        java.util.Arrays.fill(w, source != null ? source.density() : 1.0);
        densityKnown = new boolean[layers];
        java.util.Arrays.fill(densityKnown, source != null);
        if (predictors == null) {
            return w;
        }
        Object info = predictors.trainingInfo().get("layers");
        if (info instanceof List<?> list) {
            for (Object o : list) {
                if (o instanceof java.util.Map<?, ?> m && m.get("layer") instanceof Number l && l.intValue() >= 0
                        && l.intValue() < layers && m.get("predicted_density") instanceof Number d && d.doubleValue() > 0) {
                    w[l.intValue()] = Math.min(1.0, d.doubleValue());
                    densityKnown[l.intValue()] = true;
                }
            }
        }
        for (int l = 0; l < layers; l++) {
            if (predictors.layer(l).dense()) {
                w[l] = 1.0;
            }
        }
        return w;
    }

    /** Hybrid's R: the most neurons per layer that fit next to the stream buffer, a multiple that keeps reads aligned. */
    private int hybridResident(long room) {
        int f = g.dFfn(), layers = g.layers();
        long per = FlashFfn.bytesPerNeuron(g);
        int step = (int) Math.max(1, 4096 / gcd(g.stride(), 4096));
        int best = 0;
        // room must hold layers x bytesFor(R) + bytesFor(f - R); bytesFor is near-linear, so search downwards.
        int guess = layers == 1 ? f : (int) Math.min(f, Math.max(0, (room - StreamedFfn.bytesFor(g, f)) / ((layers - 1) * per)));
        for (int r = guess - guess % step; r >= 0; r -= step) {
            long need = layers * (r == 0 ? 0 : StreamedFfn.bytesFor(g, r)) + (r == f ? 0 : StreamedFfn.bytesFor(g, f - r));
            if (need <= room) {
                best = r;
                break;
            }
        }
        if (layers * StreamedFfn.bytesFor(g, f) <= room) {
            best = f;
        }
        return best;
    }

    private static long gcd(long a, long b) {
        return b == 0 ? a : gcd(b, a % b);
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
            if (hybridResident > 0) {
                residentRows = arena.allocate(StreamedFfn.bytesFor(g, hybridResident), 4096);
                IoEngine.Pending p = io.submit(StreamedFfn.reads(g, block, 0, hybridResident, residentRows));
                p.await();
            }
            return new StreamedFfn(g, block, hybridResident, residentRows, streamBuffer, io, n.upBias(), n.downBias(),
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
            case TRAINED -> {
                LayerPredictor la = predictors.lookahead(from);
                yield new ActiveSelector[]{own, la == null || la.dense() || predictors.layer(from + 1).dense() ? null
                        : ActiveSelector.trained(la)};
            }
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
        LayerPredictor p = predictors.layer(layer);
        return p.dense() ? ActiveSelector.all(g.dFfn()) : ActiveSelector.trained(p);
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
        long attention = 0, embeddings = 0, ffn = 0;
        ModelConfig c;
        if (Bundle.looksLikeBundle(dir)) {
            try (Bundle b = Bundle.open(dir)) {
                c = b.config();
                long[] split = residentSplit(b.manifest());
                attention = split[0];
                embeddings = split[1];
                ffn = b.manifest().ffn().size();
            }
        } else {
            try (var hf = dev.llmflash.formats.hf.HfCheckpoint.open(dir)) {
                c = hf.config();
                for (String name : hf.weights().tensorNames()) {
                    long bytes = hf.weights().tensor(name).data().byteSize();
                    if (name.matches(".*\\.(fc1|fc2|dense_h_to_4h|dense_4h_to_h)\\.weight")) {
                        ffn += bytes;
                    } else if (isEmbedding(name)) {
                        embeddings += bytes;
                    } else {
                        attention += bytes;
                    }
                }
            }
        }
        int context = Math.min(contextTokens, c.maxPositions());
        return new MemoryReport(-1, attention, embeddings, 0, ffn, MemoryPlan.kvCacheBytes(c, context, LanguageModel.DEFAULT_KV),
                activationScratchBytes(c, MemoryPlan.span(context), c.ffnSize()));
    }

    /** The resident file's bytes as {attention (and norms, biases), embeddings}. */
    private static long[] residentSplit(BundleManifest m) {
        long[] split = new long[2];
        for (BundleManifest.ResidentTensor t : m.resident().tensors()) {
            split[isEmbedding(t.name()) ? 1 : 0] += t.length();
        }
        return split;
    }

    static boolean isEmbedding(String name) {
        return name.contains("embed") || name.startsWith("lm_head") || name.contains("word_embeddings");
    }

    private static String activation(ModelConfig c) {
        return switch (c) {
            case OptConfig o -> o.activation();
            case FalconConfig fc -> fc.activation();
        };
    }

    /**
     * Activation scratch of one sequence state whose layer-major passes hold {@code span} token rows
     * ({@code ffnScratch} FFN floats per row: f for the FFNs that compute every neuron, 0 for flash) and
     * the logits.
     */
    static long activationScratchBytes(ModelConfig c, int span, int ffnScratch) {
        long floats = switch (c) {
            case OptConfig o -> OptModel.activationFloats(o, span, ffnScratch);
            case FalconConfig fc -> FalconModel.activationFloats(fc, span, ffnScratch);
        };
        return 4L * (floats + c.vocabSize());
    }

    static String mb(long bytes) {
        return RunReport.human(bytes);
    }

    /** At least {@code bytes}, as a --memory value: MiB rounded up to two decimals. */
    static String mbUp(long bytes) {
        return String.format(Locale.ROOT, "%.2fM", Math.ceil(bytes * 100.0 / (1L << 20)) / 100.0);
    }

    public Options options() {
        return options;
    }

    public FlashMetrics metrics() {
        return metrics;
    }

    public MemoryReport memory() {
        return memory;
    }

    public IoEngine io() {
        return io;
    }

    /** Bytes of the whole model (resident file + ffn.bin): what "--memory 50%" is a share of. */
    public long modelBytes() {
        return modelBytes;
    }

    public long budgetBytes() {
        return budgetBytes;
    }

    /** Flash: cache rows of each layer. */
    public int[] cacheRows() {
        return rowsPerLayer.clone();
    }

    /** Flash: rows in use, summed over layers. */
    public long cacheRowsUsed() {
        long u = 0;
        for (NeuronCache c : caches) {
            u += c.used();
        }
        return u;
    }

    /** Hybrid: neurons per layer held in DRAM. */
    public int hybridResident() {
        return hybridResident;
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
