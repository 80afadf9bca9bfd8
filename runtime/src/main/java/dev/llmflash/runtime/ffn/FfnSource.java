package dev.llmflash.runtime.ffn;

/**
 * Where a model's FFN weights come from: an HF checkpoint's two matrices per layer
 * ({@link CheckpointFfnSource}) or a bundle's neuron-major FFN file ({@link BundleFfnSource}). The
 * forward passes name the tensors as HF does and get an {@link Ffn} back.
 */
public interface FfnSource {

    /**
     * @param upName   HF name of the up projection, {@code [f, d]} (fc1 / dense_h_to_4h)
     * @param downName HF name of the down projection, {@code [d, f]} (fc2 / dense_4h_to_h)
     * @param upBias   f floats or null; downBias d floats or null
     */
    Ffn layer(int layer, String upName, String downName, int f, int d, float[] upBias, float[] downBias, Activation act);
}
