package dev.llmflash.runtime.model;

import dev.llmflash.formats.bundle.Bundle;
import dev.llmflash.formats.checkpoint.Checkpoint;
import dev.llmflash.formats.hf.FalconConfig;
import dev.llmflash.formats.hf.HfCheckpoint;
import dev.llmflash.formats.hf.ModelConfig;
import dev.llmflash.formats.hf.OptConfig;
import dev.llmflash.runtime.ffn.BundleFfnSource;
import dev.llmflash.runtime.ffn.CheckpointFfnSource;
import dev.llmflash.runtime.ffn.FfnSource;
import dev.llmflash.runtime.ffn.FfnWrapper;
import dev.llmflash.runtime.kernels.Kernels;

import java.nio.file.Path;

/** Builds the right forward pass for a model folder: a Hugging Face checkpoint or an llmflash bundle. */
public final class Models {
    private Models() {
    }

    /**
     * Opens {@code dir} (a bundle if it has a manifest.json, else an HF folder) as a dense model: every
     * weight memory-mapped. The model owns what it opened; the caller owns {@code kernels}.
     */
    public static LanguageModel open(Path dir, Kernels kernels) {
        return open(dir, kernels, FfnWrapper.NONE);
    }

    /** As {@link #open(Path, Kernels)}, with each layer's FFN passed through {@code wrap}. */
    public static LanguageModel open(Path dir, Kernels kernels, FfnWrapper wrap) {
        return Bundle.looksLikeBundle(dir) ? openBundle(dir, kernels, wrap) : openHf(dir, kernels, wrap);
    }

    /** An HF folder: FFN matrices in HF's layout. */
    public static LanguageModel openHf(Path dir, Kernels kernels) {
        return openHf(dir, kernels, FfnWrapper.NONE);
    }

    public static LanguageModel openHf(Path dir, Kernels kernels, FfnWrapper wrap) {
        HfCheckpoint hf = HfCheckpoint.open(dir);
        return build(hf.config(), hf.weights(), new CheckpointFfnSource(hf.weights()), hf, kernels, wrap);
    }

    /** A bundle: resident weights from resident.safetensors, the FFN neuron-major from ffn.bin. */
    public static LanguageModel openBundle(Path dir, Kernels kernels, FfnWrapper wrap) {
        Bundle b = Bundle.open(dir);
        return build(b.config(), b.resident(), new BundleFfnSource(b.ffn()), b, kernels, wrap);
    }

    private static LanguageModel build(ModelConfig config, Checkpoint weights, FfnSource ffns, AutoCloseable owner, Kernels k,
                                       FfnWrapper wrap) {
        try {
            return switch (config) {
                case OptConfig c -> new OptModel(c, weights, ffns, owner, k, wrap);
                case FalconConfig c -> new FalconModel(c, weights, ffns, owner, k, wrap);
            };
        } catch (RuntimeException e) {
            closeOwner(owner);
            throw e;
        }
    }

    static void closeOwner(AutoCloseable c) {
        if (c == null) {
            return;
        }
        try {
            c.close();
        } catch (Exception e) {
            throw e instanceof RuntimeException r ? r : new IllegalStateException(e);
        }
    }
}
