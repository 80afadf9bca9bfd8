package dev.llmflash.formats.activations;

import java.util.Objects;

/**
 * What a recording of activations is of: which bundle, which model shape, which text. A recording is
 * resumed only with the same info ({@link ActivationWriter#open}). Immutable value.
 *
 * @param bundleFingerprint the fingerprint of the bundle the model ran from (docs/FORMAT.md)
 * @param d                 FFN input width (d_model)
 * @param f                 neurons per layer (d_ffn)
 * @param layers            layers recorded (the model's layer count)
 * @param textSource        where the text came from (a path or a data set name), as the user gave it
 * @param textSha256        SHA-256 of the text's bytes, 64 lower-case hex digits
 */
public record RecordingInfo(String bundleFingerprint, int d, int f, int layers, String textSource, String textSha256) {
    public RecordingInfo {
        Objects.requireNonNull(bundleFingerprint, "bundleFingerprint");
        Objects.requireNonNull(textSource, "textSource");
        Objects.requireNonNull(textSha256, "textSha256");
        if (d < 1 || f < 1 || layers < 1) {
            throw new IllegalArgumentException("d " + d + ", f " + f + ", layers " + layers + " must be >= 1");
        }
    }
}
