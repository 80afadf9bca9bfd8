package dev.llmflash.formats.predictor;

import java.util.List;
import java.util.Map;
import java.util.Objects;

/**
 * A bundle's predictors as {@link PredictorFile#read} returns them. Immutable value (the list and map
 * are unmodifiable copies; the predictors' arrays are shared, not copied: do not modify them).
 *
 * @param bundleFingerprint the fingerprint of the bundle they were trained for
 * @param d                 the model width the predictors read (0 when every layer is dense)
 * @param f                 neurons per layer they predict (0 when every layer is dense)
 * @param layers            one per model layer, in layer order
 * @param trainingInfo      free-form facts from the trainer (densities, recall, time...), as JSON values
 */
public record Predictors(String bundleFingerprint, int d, int f, List<LayerPredictor> layers,
                         Map<String, Object> trainingInfo) {
    public Predictors {
        Objects.requireNonNull(bundleFingerprint, "bundleFingerprint");
        layers = List.copyOf(layers);
        trainingInfo = Map.copyOf(trainingInfo);
    }

    /** Layer {@code layer}'s predictor. */
    public LayerPredictor layer(int layer) {
        return layers.get(layer);
    }

    /** TEMP-LOOKAHEAD: replaced by the lookahead branch. */
    public LayerPredictor lookahead(int layer) {
        return null;
    }
}
