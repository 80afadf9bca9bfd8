package dev.llmflash.converter;

import dev.llmflash.formats.LlmflashException;
import dev.llmflash.formats.bundle.FfnLayout;
import dev.llmflash.formats.bundle.Quantization;
import dev.llmflash.formats.tensor.DType;

import java.nio.file.Path;
import java.util.Objects;

/**
 * What {@link Converter#convert} is asked to do. Paths are made absolute and normalized here, so that
 * the checks below and the manifest's source path see what the file system will.
 *
 * @param input  a Hugging Face model folder (config.json + weights + tokenizer files)
 * @param output the bundle folder to create; its parent folder must exist
 * @param dtype  the bundle's dtype (F32, F16 or BF16), or null for the checkpoint's own: the dtype of
 *               its FFN weight matrices
 * @param layout how ffn.bin arranges the FFN weights
 * @param force  replace an existing bundle at {@code output} (only once the new one is complete)
 * @param quant  how weight matrices are quantized ({@link Quantization}; NONE: stored in the dtype)
 */
public record ConvertOptions(Path input, Path output, DType dtype, FfnLayout layout, boolean force,
                             Quantization quant) {

    /** Options without quantization. */
    public ConvertOptions(Path input, Path output, DType dtype, FfnLayout layout, boolean force) {
        this(input, output, dtype, layout, force, Quantization.NONE);
    }

    /**
     * @throws LlmflashException if the dtype cannot be a bundle's, or the output is the input folder, contains
     *         it, or is a file-system root
     */
    public ConvertOptions {
        Objects.requireNonNull(input, "input");
        Objects.requireNonNull(output, "output");
        Objects.requireNonNull(layout, "layout");
        Objects.requireNonNull(quant, "quant");
        input = input.toAbsolutePath().normalize();
        output = output.toAbsolutePath().normalize();
        if (dtype != null && !dtype.isComputeType()) {
            throw new LlmflashException("a bundle cannot be " + dtype + ": choose F32, F16 or BF16 (or none, to keep"
                    + " the checkpoint's own)");
        }
        if (output.getParent() == null) {
            throw new LlmflashException("the output " + output + " is a file-system root: name a new folder for"
                    + " the bundle");
        }
        if (input.startsWith(output)) {
            // Replacing the output would delete the model being converted.
            throw new LlmflashException("the output " + output + (input.equals(output) ? " is" : " contains")
                    + " the input folder " + input + ": choose another output folder");
        }
    }

    /** The same options with another target dtype (null: the checkpoint's own). */
    public ConvertOptions withDtype(DType newDtype) {
        return new ConvertOptions(input, output, newDtype, layout, force, quant);
    }

    /** The same options with another quantization. */
    public ConvertOptions withQuant(Quantization newQuant) {
        return new ConvertOptions(input, output, dtype, layout, force, newQuant);
    }
}
