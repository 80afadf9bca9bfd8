package dev.llmflash.formats.hf;

import dev.llmflash.formats.FormatException;
import dev.llmflash.formats.checkpoint.Checkpoint;
import dev.llmflash.formats.checkpoint.ShardedCheckpoint;
import dev.llmflash.formats.pytorch.TorchCheckpoint;
import dev.llmflash.formats.safetensors.SafetensorsFile;

import java.nio.file.Files;
import java.nio.file.Path;

/**
 * A Hugging Face model folder, as {@code save_pretrained} writes it: {@code config.json} plus weights
 * in one of four layouts, tried in this order (HF prefers safetensors too):
 * {@code model.safetensors.index.json} + shards, {@code model.safetensors},
 * {@code pytorch_model.bin.index.json} + shards, {@code pytorch_model.bin}.
 * Owns the opened weights: close it (or the model built from it) when done.
 *
 * @param dir     the folder
 * @param config  the typed architecture
 * @param weights the tensors, memory-mapped
 */
public record HfCheckpoint(Path dir, ModelConfig config, Checkpoint weights) implements AutoCloseable {

    public static final String SAFETENSORS_INDEX = "model.safetensors.index.json";
    public static final String SAFETENSORS = "model.safetensors";
    public static final String TORCH_INDEX = "pytorch_model.bin.index.json";
    public static final String TORCH = "pytorch_model.bin";

    /** True when {@code dir} looks like an HF model folder (config.json present). */
    public static boolean looksLikeHfDir(Path dir) {
        return Files.isRegularFile(dir.resolve(HfConfig.FILE_NAME));
    }

    /**
     * Opens the folder: parses config.json, then maps the weights.
     *
     * @throws FormatException if the folder is missing, is not a model folder, or any file is bad
     */
    public static HfCheckpoint open(Path dir) {
        if (!Files.exists(dir)) {
            throw new FormatException(dir, "does not exist", "check the --model path");
        }
        if (!Files.isDirectory(dir)) {
            throw new FormatException(dir, "is a file, not a model folder",
                    "point --model at the folder that holds config.json and the weights");
        }
        ModelConfig config = HfConfig.read(dir);
        return new HfCheckpoint(dir, config, openWeights(dir));
    }

    /** Maps the weights of an HF folder (see the class comment for the order). */
    public static Checkpoint openWeights(Path dir) {
        if (Files.isRegularFile(dir.resolve(SAFETENSORS_INDEX))) {
            return ShardedCheckpoint.open(dir.resolve(SAFETENSORS_INDEX), SafetensorsFile::open);
        }
        if (Files.isRegularFile(dir.resolve(SAFETENSORS))) {
            return SafetensorsFile.open(dir.resolve(SAFETENSORS));
        }
        if (Files.isRegularFile(dir.resolve(TORCH_INDEX))) {
            return TorchCheckpoint.openSharded(dir.resolve(TORCH_INDEX));
        }
        if (Files.isRegularFile(dir.resolve(TORCH))) {
            return TorchCheckpoint.open(dir.resolve(TORCH));
        }
        throw new FormatException(dir, "has no weights (looked for " + SAFETENSORS_INDEX + ", " + SAFETENSORS + ", "
                + TORCH_INDEX + ", " + TORCH + ")", "download the weights into this folder, or point --model at the right one");
    }

    @Override
    public void close() {
        weights.close();
    }
}
