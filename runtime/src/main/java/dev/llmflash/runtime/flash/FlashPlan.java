package dev.llmflash.runtime.flash;

import dev.llmflash.formats.LlmflashException;
import dev.llmflash.formats.bundle.Bundle;
import dev.llmflash.formats.bundle.BundleManifest;
import dev.llmflash.formats.bundle.FfnGeometry;
import dev.llmflash.formats.hf.FalconConfig;
import dev.llmflash.formats.hf.ModelConfig;
import dev.llmflash.formats.hf.OptConfig;
import dev.llmflash.formats.predictor.LayerPredictor;
import dev.llmflash.formats.predictor.Predictors;
import dev.llmflash.runtime.budget.MemoryPlan;
import dev.llmflash.runtime.budget.MemoryReport;
import dev.llmflash.runtime.flash.FlashRuntime.Mode;
import dev.llmflash.runtime.flash.FlashRuntime.Options;
import dev.llmflash.runtime.model.FalconModel;
import dev.llmflash.runtime.model.LanguageModel;
import dev.llmflash.runtime.model.OptModel;

import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.Locale;

/**
 * How a {@link FlashRuntime} spends its DRAM budget (the paper's section 4 accounting), worked out
 * before anything is allocated: the fixed parts (resident weights, KV cache, predictors, buffers), the
 * refusal of a budget below the minimum (with the minimum, and for flash the tokens that would fit),
 * and what is left for FFN neurons: flash's per-layer cache rows (floors, then water-filling by expected
 * density), hybrid's resident neurons per layer, naive's and hybrid's stream buffer. Arithmetic only:
 * the runtime allocates what the plan says. Immutable once built.
 */
final class FlashPlan {
    private final Options o;
    private final FfnGeometry g;
    private final Predictors predictors;
    private final SelectorSource source;
    /** Per layer: whether {@link #expectedDensity} knows the predicted density (trainer's figures, the source's). */
    private boolean[] densityKnown;
    private final long modelBytes;
    private long budgetBytes;
    /** Flash: cache rows per layer (all 0 otherwise). */
    private final int[] rows;
    /** Hybrid: neurons per layer held in DRAM. */
    private final int hybridResident;
    /** Flash: half of the prefill streaming buffer. */
    private final long streamHalf;
    /** Naive and hybrid: bytes of the streamed-layer buffer (0: none, hybrid holding every neuron). */
    private final long streamBytes;
    private final MemoryReport memory;

    /**
     * Plans the budget of {@code o} for bundle {@code b}.
     *
     * @param predictors    the bundle's predictors (flash, trained selector), else null
     * @param source        the supplied selector source (flash), else null
     * @param ioBufferBytes the I/O engine's bounce buffers at their maximum
     * @throws LlmflashException the budget is below the minimum
     */
    FlashPlan(Options o, Bundle b, Predictors predictors, SelectorSource source, long ioBufferBytes) {
        this.o = o;
        this.g = b.manifest().ffn().geometry();
        this.predictors = predictors;
        this.source = source;
        ModelConfig c = b.config();
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
                predictorBytes += ActiveSelector.Trained.bytes(p, ActiveSelector.Trained.dtypeFor(g.dtype()));
            }
        }
        int layers = g.layers(), f = g.dFfn();
        int span = MemoryPlan.span(context);
        double[] density = expectedDensity(layers);
        long scratch = activationScratchBytes(c, context, o.mode() == Mode.FLASH ? 0 : f);
        long half = 0;
        if (o.mode() == Mode.FLASH) {
            int cap = f;  // the per-layer arrays are sized by the capacity; bound them by f
            scratch += layers * (4L * (3L * f + 8L * cap) + 4L * g.dModel());
            // A prompt's sets: each token's predicted set, twice (the sets and a tile's row lists).
            double maxDensity = 0;
            for (double x : density) {
                maxDensity = Math.max(maxDensity, x);
            }
            scratch += 8L * span * (long) Math.ceil(Math.min(1.0, maxDensity * SET_HEADROOM) * f) + 16L * f;
            half = Math.min(STREAM_HALF_BYTES, FfnGeometry.alignUp(StreamedFfn.bytesFor(g, f), 4096));
        }
        this.streamHalf = half;
        long buffers = ioBufferBytes + scratch + 2 * streamHalf;
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
        this.rows = new int[layers];
        int resident = 0;
        long streamed = 0;
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
                neuronBytes += rows[l] * cs;
            }
        } else {
            long layerBytes = StreamedFfn.bytesFor(g, f);
            refuseBelow(fixed + layerBytes, parts + " + one layer's FFN buffer " + mb(layerBytes));
            if (o.mode() == Mode.HYBRID) {
                resident = hybridResident(room);
            }
            neuronBytes = resident == 0 ? 0 : layers * StreamedFfn.bytesFor(g, resident);
            streamed = resident == f ? 0 : StreamedFfn.bytesFor(g, f - resident);
            buffers += streamed;
        }
        this.hybridResident = resident;
        this.streamBytes = streamed;
        this.memory = new MemoryReport(budgetBytes, attention, embeddings, predictorBytes, neuronBytes, kv, buffers);
    }

    long modelBytes() {
        return modelBytes;
    }

    /** The budget: the one asked for, resolved, or (none asked) what holds every neuron. */
    long budgetBytes() {
        return budgetBytes;
    }

    /** Flash: cache rows per layer (a copy). */
    int[] rows() {
        return rows.clone();
    }

    int hybridResident() {
        return hybridResident;
    }

    /** Flash: half of the prefill streaming buffer (the runtime allocates both halves). */
    long streamHalf() {
        return streamHalf;
    }

    /** Naive and hybrid: the streamed-layer buffer's bytes, 0 for none. */
    long streamBytes() {
        return streamBytes;
    }

    MemoryReport memory() {
        return memory;
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
        return o.budget() == null ? "(none)" : o.budget().bytes() >= 0 ? o.budget().toString()
                : o.budget() + " (" + mb(budgetBytes) + ")";
    }

    private void refuseBelow(long min, String parts) {
        if (budgetBytes < min) {
            throw new LlmflashException(String.format(Locale.ROOT,
                    "--memory %s is below the %s that --mode %s needs for this model (%s); raise --memory to at least %s",
                    budgetLabel(), mb(min), o.mode().name().toLowerCase(Locale.ROOT), parts, mbUp(min)));
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
     * What a memory-mapped run (dense) holds: every weight, the FFN counted as neuron cache; KV cache
     * for {@code contextTokens}; activation scratch as buffers. No budget ({@code budget_bytes} -1).
     */
    static MemoryReport mappedMemory(Path dir, int contextTokens) {
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
                activationScratchBytes(c, context, c.ffnSize()));
    }

    /** The resident file's bytes as {attention (and norms, biases), embeddings}. */
    static long[] residentSplit(BundleManifest m) {
        long[] split = new long[2];
        for (BundleManifest.ResidentTensor t : m.resident().tensors()) {
            split[isEmbedding(t.name()) ? 1 : 0] += t.length();
        }
        return split;
    }

    static boolean isEmbedding(String name) {
        return name.contains("embed") || name.startsWith("lm_head") || name.contains("word_embeddings");
    }

    /**
     * Activation scratch of one sequence state of {@code context} positions, whose layer-major passes
     * hold up to 1024 token rows ({@code ffnScratch} FFN floats per row: f for the FFNs that compute
     * every neuron, 0 for flash), its attention scratch, and the logits.
     */
    static long activationScratchBytes(ModelConfig c, int context, int ffnScratch) {
        long floats = switch (c) {
            case OptConfig o -> OptModel.activationFloats(o, context, ffnScratch);
            case FalconConfig fc -> FalconModel.activationFloats(fc, context, ffnScratch);
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
}
