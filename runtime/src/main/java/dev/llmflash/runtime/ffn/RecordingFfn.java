package dev.llmflash.runtime.ffn;

import dev.llmflash.runtime.kernels.Kernels;

/**
 * Runs the wrapped FFN and hands each step's inputs and activations to a sink: what the predictor
 * trainer learns from (the input x that the up projection multiplies, and which neurons fired).
 *
 * @param layer the layer index passed to the sink
 */
public record RecordingFfn(Ffn inner, int layer, Sink sink) implements Ffn {

    /** Receives, per forward step, m rows of FFN inputs (m x d) and activations (m x f). */
    @FunctionalInterface
    public interface Sink {
        void record(int layer, float[] x, float[] h, int m);
    }

    @Override
    public int neurons() {
        return inner.neurons();
    }

    @Override
    public void forward(Kernels k, float[] x, int m, float[] h, float[] out) {
        inner.forward(k, x, m, h, out);
        sink.record(layer, x, h, m);
    }

    /** A wrapper that records every layer into {@code sink}. */
    public static FfnWrapper everyLayer(Sink sink) {
        return (layer, ffn) -> new RecordingFfn(ffn, layer, sink);
    }
}
