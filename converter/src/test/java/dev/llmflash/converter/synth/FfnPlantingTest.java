package dev.llmflash.converter.synth;

import dev.llmflash.formats.LlmflashException;
import dev.llmflash.formats.checkpoint.Checkpoint;
import dev.llmflash.formats.hf.HfCheckpoint;
import dev.llmflash.formats.tensor.Tensor;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

import java.nio.file.Path;
import java.util.SplittableRandom;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * --ffn-active measured on the written tiny models: feed layer-normalized inputs through each layer's
 * FFN up projection exactly as the forward pass does (the checkpoint's own layer norm, weights and
 * bias) and count positive pre-activations.
 */
class FfnPlantingTest {

    private static final int SAMPLES = 300;

    @Test
    void inverseNormalCdfMatchesTables() {
        assertEquals(0.0, FfnPlanting.inverseNormalCdf(0.5), 5e-4);
        assertEquals(1.959964, FfnPlanting.inverseNormalCdf(0.975), 5e-4);
        assertEquals(1.880794, FfnPlanting.inverseNormalCdf(0.97), 5e-4);
        assertEquals(1.281552, FfnPlanting.inverseNormalCdf(0.9), 5e-4);
        assertEquals(-2.326348, FfnPlanting.inverseNormalCdf(0.01), 5e-4);
    }

    @Test
    void plantedOptHasTheTargetFractionOfActiveNeurons(@TempDir Path tmp) {
        for (double target : new double[] {0.03, 0.10}) {
            Path dir = tmp.resolve("opt-" + target);
            Synth.run(SynthOptions.of("opt-test", dir).withFfnActive(target), Synth.Progress.NONE);
            double got = activeFraction(dir, "model.decoder.layers.%d.final_layer_norm", "model.decoder.layers.%d.fc1", 2);
            assertEquals(target, got, target * 0.2, "opt-test, target " + target);
            try (HfCheckpoint c = HfCheckpoint.open(dir)) {
                // BIAS mode: fc1.bias = -z * 0.02 * sqrt(64), every neuron.
                float expected = (float) (-FfnPlanting.inverseNormalCdf(1 - target) * 0.02 * 8);
                Tensor b = c.weights().tensor("model.decoder.layers.1.fc1.bias");
                assertEquals(expected, b.getFloat(0), 2e-3);
                assertEquals(b.getFloat(0), b.getFloat(255), 0f);
            }
        }
    }

    @Test
    void plantedPostLnOptHasTheTargetFraction(@TempDir Path tmp) {
        Path dir = tmp.resolve("postln");
        Synth.run(SynthOptions.of("opt-test-postln", dir).withFfnActive(0.05), Synth.Progress.NONE);
        // Post-LN: fc1 reads the residual as the attention block's layer norm left it.
        double got = activeFraction(dir, "model.decoder.layers.%d.self_attn_layer_norm", "model.decoder.layers.%d.fc1", 2);
        assertEquals(0.05, got, 0.01);
    }

    @Test
    void plantedFalconWithoutBiasesHasTheTargetFractionThroughAConstantChannel(@TempDir Path tmp) {
        Path dir = tmp.resolve("falcon");
        Synth.run(SynthOptions.of("falcon-test", dir).withFfnActive(0.03), Synth.Progress.NONE);
        double got = activeFraction(dir, "transformer.h.%d.input_layernorm", "transformer.h.%d.mlp.dense_h_to_4h", 2);
        assertEquals(0.03, got, 0.006);
        try (HfCheckpoint c = HfCheckpoint.open(dir)) {
            Checkpoint w = c.weights();
            assertEquals(0f, w.tensor("transformer.h.0.input_layernorm.weight").getFloat(0), 0f);
            assertEquals(1f, w.tensor("transformer.h.0.input_layernorm.bias").getFloat(0), 0f);
            assertEquals(1f, w.tensor("transformer.h.0.input_layernorm.weight").getFloat(1), 0f);
            assertEquals(1f, w.tensor("transformer.ln_f.weight").getFloat(0), 0f, "the final norm is untouched");
            float offset = (float) (-FfnPlanting.inverseNormalCdf(0.97) * 0.02 * Math.sqrt(63));
            Tensor up = w.tensor("transformer.h.1.mlp.dense_h_to_4h.weight");
            for (int row : new int[] {0, 17, 255}) {
                assertEquals(offset, up.getFloat(row * 64L), 2e-3, "column 0, row " + row);
            }
        }
    }

    @Test
    void withoutPlantingHalfTheNeuronsAreActive(@TempDir Path tmp) {
        Path dir = tmp.resolve("plain");
        Synth.run(SynthOptions.of("opt-test", dir), Synth.Progress.NONE);
        assertEquals(0.5, activeFraction(dir, "model.decoder.layers.%d.final_layer_norm", "model.decoder.layers.%d.fc1", 2),
                0.05);
    }

    @Test
    void gelUModelsAreRefused() {
        LlmflashException e = assertThrows(LlmflashException.class, () -> FfnPlanting.plan("falcon-7b",
                Shapes.get("falcon-7b").model(), Shapes.get("falcon-7b").tensors(), 0.02f, 0.03));
        assertTrue(e.getMessage().contains("falcon-7b-relu"), e.getMessage());
        FfnPlanting p = FfnPlanting.plan("falcon-7b-relu", Shapes.get("falcon-7b-relu").model(),
                Shapes.get("falcon-7b-relu").tensors(), 0.02f, 0.03);
        assertEquals(FfnPlanting.Mode.CONSTANT_CHANNEL, p.mode());
        assertEquals(FfnPlanting.Mode.BIAS, FfnPlanting.plan("opt-6.7b", Shapes.get("opt-6.7b").model(),
                Shapes.get("opt-6.7b").tensors(), 0.02f, 0.03).mode());
    }

    /**
     * Fraction of positive up-projection pre-activations over all layers and neurons for
     * {@link #SAMPLES} random residual vectors (channels of uneven scale and offset, as residual
     * streams have), each normalized by the checkpoint's layer norm {@code norm} (weight, bias).
     */
    private static double activeFraction(Path dir, String norm, String up, int layers) {
        SplittableRandom rnd = new SplittableRandom(2024);
        long active = 0, total = 0;
        try (HfCheckpoint c = HfCheckpoint.open(dir)) {
            Checkpoint w = c.weights();
            for (int l = 0; l < layers; l++) {
                float[] g = w.tensor(String.format(norm, l) + ".weight").toFloatArray();
                float[] beta = w.tensor(String.format(norm, l) + ".bias").toFloatArray();
                Tensor wt = w.tensor(String.format(up, l) + ".weight");
                float[] m = wt.toFloatArray();
                int f = wt.dim(0), d = wt.dim(1);
                String biasName = String.format(up, l) + ".bias";
                float[] b = w.contains(biasName) ? w.tensor(biasName).toFloatArray() : new float[f];
                double[] scale = new double[d];
                double[] shift = new double[d];
                for (int i = 0; i < d; i++) {
                    scale[i] = 0.5 + 1.5 * rnd.nextDouble();
                    shift[i] = rnd.nextGaussian();
                }
                double[] x = new double[d];
                double[] h = new double[d];
                for (int s = 0; s < SAMPLES; s++) {
                    double mean = 0;
                    for (int i = 0; i < d; i++) {
                        x[i] = shift[i] + scale[i] * rnd.nextGaussian();
                        mean += x[i];
                    }
                    mean /= d;
                    double var = 0;
                    for (int i = 0; i < d; i++) {
                        var += (x[i] - mean) * (x[i] - mean);
                    }
                    var /= d;
                    for (int i = 0; i < d; i++) {
                        h[i] = (x[i] - mean) / Math.sqrt(var + 1e-5) * g[i] + beta[i];
                    }
                    for (int j = 0; j < f; j++) {
                        double pre = b[j];
                        for (int i = 0; i < d; i++) {
                            pre += m[j * d + i] * h[i];
                        }
                        active += pre > 0 ? 1 : 0;
                        total++;
                    }
                }
            }
        }
        return active / (double) total;
    }
}
