package dev.llmflash.runtime.model;

import dev.llmflash.formats.hf.FalconConfig;
import dev.llmflash.formats.hf.HfCheckpoint;
import dev.llmflash.formats.hf.OptConfig;
import dev.llmflash.runtime.kernels.Kernels;

import java.nio.file.Path;

/** Builds the right forward pass for a checkpoint. */
public final class Models {
    private Models() {
    }

    /**
     * Opens an HF model folder and returns its dense model (all weights memory-mapped). The model owns
     * the checkpoint; the caller owns {@code kernels}.
     */
    public static LanguageModel openHf(Path dir, Kernels kernels) {
        HfCheckpoint hf = HfCheckpoint.open(dir);
        try {
            return switch (hf.config()) {
                case OptConfig c -> new OptModel(c, hf.weights(), kernels);
                case FalconConfig c -> new FalconModel(c, hf.weights(), kernels);
            };
        } catch (RuntimeException e) {
            hf.close();
            throw e;
        }
    }
}
