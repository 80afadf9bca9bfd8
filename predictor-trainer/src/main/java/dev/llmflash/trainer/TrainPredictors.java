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
                          TrainOptions base) {
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

    public static List<LayerReport> train(Options o, Consumer<LayerReport> perLayer) {
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
        List<LayerReport> reports = new ArrayList<>();
        for (int l = 0; l < layers; l++) {
            ActivationReader.LayerData ld = acts.load(l);
            LayerData data = new LayerData(l, ld.tokens(), ld.d(), ld.f(), ld.x(), ld.labels());
            PredictorTrainer.Result r = PredictorTrainer.train(data, o.base().withRank(o.rankOf(l, layers, ld.d(), ld.f())));
            predictors.add(r.predictor());
            reports.add(r.report());
            perLayer.accept(r.report());
        }
        PredictorFile.write(o.bundle(), fingerprint, predictors, info(o, acts, reports));
        return reports;
    }

    private static Map<String, Object> info(Options o, ActivationReader acts, List<LayerReport> reports) {
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
        return m;
    }
}
