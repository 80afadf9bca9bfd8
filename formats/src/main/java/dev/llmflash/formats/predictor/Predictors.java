package dev.llmflash.formats.predictor;

import java.util.List;
import java.util.Map;
import java.util.Objects;

/**
 * A bundle's predictors as {@link PredictorFile#read} returns them. Immutable value (the lists and map
 * are unmodifiable copies; the predictors' arrays are shared, not copied: do not modify them).
 *
 * @param bundleFingerprint the fingerprint of the bundle they were trained for
 * @param d                 the model width the predictors read (0 when every predictor is dense)
 * @param f                 neurons per layer they predict (0 when every predictor is dense)
 * @param layers            one per model layer, in layer order: layer l's own predictor, reading layer
 *                          l's FFN input and predicting layer l's neurons
 * @param lookaheads        empty (a version 1 file, or trained with --no-lookahead), or n - 1 entries:
 *                          entry j reads layer j's FFN input and predicts layer j+1's neurons (Deja Vu's
 *                          asynchronous look-ahead: layer j+1's reads can start while layer j computes);
 *                          its {@link LayerPredictor#layer()} is the TARGET layer j+1; a dense entry means
 *                          none for that layer. Prefer {@link #lookahead(int)}.
 * @param trainingInfo      free-form facts from the trainer (densities, recall, time...), as JSON values
 */
public record Predictors(String bundleFingerprint, int d, int f, List<LayerPredictor> layers,
                         List<LayerPredictor> lookaheads, Map<String, Object> trainingInfo) {
    public Predictors {
        Objects.requireNonNull(bundleFingerprint, "bundleFingerprint");
        layers = List.copyOf(layers);
        lookaheads = List.copyOf(lookaheads);
        trainingInfo = Map.copyOf(trainingInfo);
        if (!lookaheads.isEmpty() && lookaheads.size() != layers.size() - 1) {
            throw new IllegalArgumentException(lookaheads.size() + " look-ahead predictors for " + layers.size() + " layers");
        }
        for (int j = 0; j < lookaheads.size(); j++) {
            if (lookaheads.get(j).layer() != j + 1) {
                throw new IllegalArgumentException("look-ahead " + j + " targets layer " + lookaheads.get(j).layer()
                        + ", not " + (j + 1));
            }
        }
    }

    /** Without look-ahead predictors. */
    public Predictors(String bundleFingerprint, int d, int f, List<LayerPredictor> layers, Map<String, Object> trainingInfo) {
        this(bundleFingerprint, d, f, layers, List.of(), trainingInfo);
    }

    /** Layer {@code layer}'s own predictor. */
    public LayerPredictor layer(int layer) {
        return layers.get(layer);
    }

    /**
     * The look-ahead predictor that reads layer {@code layer}'s FFN input (the input {@link #layer(int)
     * layer(layer)} reads) and predicts layer {@code layer + 1}'s active neurons; its
     * {@link LayerPredictor#layer()} is {@code layer + 1}, the target. Null when there is none: no
     * look-ahead was trained, the target layer is dense (all its neurons load anyway), the look-ahead
     * would have been too dense, or {@code layer} is the last layer.
     *
     * @throws IndexOutOfBoundsException unless 0 <= layer < layers().size()
     */
    public LayerPredictor lookahead(int layer) {
        Objects.checkIndex(layer, layers.size());
        if (layer >= lookaheads.size()) {
            return null;
        }
        LayerPredictor p = lookaheads.get(layer);
        return p.dense() ? null : p;
    }

    /** True when at least one layer has a (non-dense) look-ahead predictor. */
    public boolean hasLookahead() {
        return lookaheads.stream().anyMatch(p -> !p.dense());
    }
}
