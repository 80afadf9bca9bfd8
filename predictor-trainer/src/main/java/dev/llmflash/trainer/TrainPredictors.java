package dev.llmflash.trainer;

import dev.llmflash.formats.LlmflashException;
import dev.llmflash.formats.activations.ActivationReader;
import dev.llmflash.formats.bundle.Bundle;
import dev.llmflash.formats.predictor.LayerPredictor;
import dev.llmflash.formats.predictor.PredictorFile;

import java.nio.file.Path;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.function.Consumer;

/**
 * Trains every layer's predictor from a recording and writes them into the bundle
 * (predictors.bin + predictors.json, tied to the bundle's fingerprint). As the paper does, the last
 * layers (denser, more sensitive) get a larger rank.
 * <p>Look-ahead (Deja Vu's asynchronous look-ahead; on unless {@link Options#lookahead()} is false):
 * for each target layer l >= 1 whose own predictor is kept (not dense), a second predictor is trained
 * on layer l-1's recorded FFN inputs with layer l's labels at the same positions, with the same rank
 * rule (target layer l's rank), loss, options, seed and threshold selection as layer l's own; if its
 * predicted density on the held-out tokens exceeds the same limit, none is stored. Where layer l is
 * dense no look-ahead is needed (its neurons all load) and none is trained.
 */
public final class TrainPredictors {
    private TrainPredictors() {
    }

    /**
     * @param rank       rank of the first layers
     * @param rankLast   rank of the last {@code lastLayers} layers
     * @param base       everything else (epochs, batch, learning rate, seed, target recall, threads...)
     */
    public record Options(Path bundle, Path activations, int rank, int rankLast, int lastLayers, double maxShare,
                          TrainOptions base, boolean lookahead) {
        /** With look-ahead predictors. */
        public Options(Path bundle, Path activations, int rank, int rankLast, int lastLayers, double maxShare,
                       TrainOptions base) {
            this(bundle, activations, rank, rankLast, lastLayers, maxShare, base, true);
        }

        public Options {
            if (rank < 1 || rankLast < 1 || lastLayers < 0) {
                throw new IllegalArgumentException("--rank and --rank-last must be >= 1 and --last-layers >= 0");
            }
            if (!(maxShare > 0 && maxShare <= 1)) {
                throw new IllegalArgumentException("--max-share must be in (0, 1], got " + maxShare);
            }
        }

        /**
         * The layer's rank: rank or rankLast, capped so that the predictor's r d + f r + f parameters stay
         * within maxShare of the FFN's 2 d f.
         */
        int rankOf(int layer, int layers, int d, int f) {
            int wanted = layer >= layers - lastLayers ? rankLast : rank;
            int cap = (int) Math.floor((maxShare * 2.0 * d * f - f) / (d + f));
            return Math.max(1, Math.min(wanted, cap));
        }
    }

    /**
     * One layer's outcome.
     *
     * @param own       the layer's own predictor's report
     * @param lookahead the report of the look-ahead predictor that targets this layer (reads the previous
     *                  layer's input; its {@code layer()} is this layer; {@code dense()} true: trained but
     *                  too dense, none stored), or null when none was trained: layer 0, a dense layer,
     *                  or look-ahead off
     */
    public record LayerOutcome(LayerReport own, LayerReport lookahead) {
    }

    /** {@link #trainAll}, reporting only the own predictors. */
    public static List<LayerReport> train(Options o, Consumer<LayerReport> perLayer) {
        return trainAll(o, r -> perLayer.accept(r.own())).stream().map(LayerOutcome::own).toList();
    }

    /** Trains, writes the predictors, and returns (and passes to {@code perLayer} as each is done) every layer's outcome. */
    public static List<LayerOutcome> trainAll(Options o, Consumer<LayerOutcome> perLayer) {
        String fingerprint;
        int layers;
        try (Bundle b = Bundle.open(o.bundle())) {
            fingerprint = b.manifest().fingerprint();
            layers = b.config().numLayers();
        }
        ActivationReader acts = ActivationReader.open(o.activations());
        if (!acts.bundleFingerprint().equals(fingerprint)) {
            throw new LlmflashException(o.activations() + ": recorded from another model (fingerprint "
                    + acts.bundleFingerprint().substring(0, 12) + "...), not " + o.bundle() + " (" + fingerprint.substring(0, 12)
                    + "...): record again with llmflash record --model " + o.bundle());
        }
        if (!acts.complete()) {
            throw new LlmflashException(o.activations() + ": the recording is unfinished: run the same llmflash record command again to complete it");
        }
        if (acts.layers() != layers) {
            throw new LlmflashException(o.activations() + ": holds " + acts.layers() + " layers but the model has " + layers);
        }
        List<LayerPredictor> predictors = new ArrayList<>();
        List<LayerPredictor> lookahead = new ArrayList<>();
        List<LayerOutcome> outcomes = new ArrayList<>();
        ActivationReader.LayerData previous = null;
        for (int l = 0; l < layers; l++) {
            ActivationReader.LayerData ld = acts.load(l);
            LayerData data = new LayerData(l, ld.tokens(), ld.d(), ld.f(), ld.x(), ld.labels());
            TrainOptions lo = o.base().withRank(o.rankOf(l, layers, ld.d(), ld.f()));
            PredictorTrainer.Result r = PredictorTrainer.train(data, lo);
            predictors.add(r.predictor());
            LayerReport ahead = null;
            if (o.lookahead() && l >= 1) {
                LayerPredictor none = LayerPredictor.denseLayer(l);
                if (!r.predictor().dense()) {
                    if (previous.tokens() != ld.tokens() || previous.d() != ld.d()) {
                        throw new LlmflashException(o.activations() + ": layer " + (l - 1) + " holds " + previous.tokens()
                                + " positions of width " + previous.d() + " but layer " + l + " " + ld.tokens() + " of width "
                                + ld.d() + ": record again");
                    }
                    // layer l-1's inputs, layer l's labels, same positions; the layer field is the target l
                    LayerData shifted = new LayerData(l, ld.tokens(), ld.d(), ld.f(), previous.x(), ld.labels());
                    PredictorTrainer.Result a = PredictorTrainer.train(shifted, lo);
                    ahead = a.report();
                    lookahead.add(a.predictor());
                } else {
                    lookahead.add(none);
                }
            }
            LayerOutcome outcome = new LayerOutcome(r.report(), ahead);
            outcomes.add(outcome);
            perLayer.accept(outcome);
            previous = ld;
        }
        PredictorFile.write(o.bundle(), fingerprint, predictors, lookahead, info(o, acts, outcomes));
        return outcomes;
    }

    private static Map<String, Object> info(Options o, ActivationReader acts, List<LayerOutcome> outcomes) {
        List<LayerReport> reports = outcomes.stream().map(LayerOutcome::own).toList();
        Map<String, Object> m = new LinkedHashMap<>();
        m.put("activations", o.activations().toAbsolutePath().toString());
        m.put("text", acts.info().textSource());
        m.put("tokens", acts.tokens(0));
        m.put("epochs", o.base().epochs());
        m.put("seed", o.base().seed());
        m.put("target_recall", o.base().targetRecall());
        m.put("max_share", o.maxShare());
        List<Map<String, Object>> layers = new ArrayList<>();
        for (LayerReport r : reports) {
            Map<String, Object> l = new LinkedHashMap<>();
            l.put("layer", r.layer());
            l.put("dense", r.dense());
            l.put("rank", r.rank());
            l.put("threshold", r.threshold());
            l.put("true_density", r.trueDensity());
            l.put("predicted_density", r.predictedDensity());
            l.put("recall", r.recall());
            l.put("precision", r.precision());
            l.put("parameter_share_of_ffn", r.parameterShareOfFfn());
            l.put("seconds", r.seconds());
            layers.add(l);
        }
        m.put("layers", layers);
        m.put("lookahead", o.lookahead());
        List<Map<String, Object>> ahead = new ArrayList<>();
        for (LayerOutcome oc : outcomes) {
            LayerReport r = oc.lookahead();
            if (r == null) {
                continue;
            }
            Map<String, Object> l = new LinkedHashMap<>();
            l.put("layer", r.layer());
            l.put("source_layer", r.layer() - 1);
            l.put("stored", !r.dense());
            l.put("rank", r.rank());
            l.put("threshold", r.threshold());
            l.put("recall", r.recall());
            l.put("precision", r.precision());
            l.put("predicted_density", r.predictedDensity());
            l.put("true_density", r.trueDensity());
            l.put("seconds", r.seconds());
            ahead.add(l);
        }
        m.put("lookahead_layers", ahead);
        return m;
    }
}
