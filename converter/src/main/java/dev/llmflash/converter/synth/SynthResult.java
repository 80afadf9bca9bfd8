package dev.llmflash.converter.synth;

import java.nio.file.Path;
import java.util.List;

/**
 * What {@link Synth#run} wrote.
 *
 * @param dir         the model folder
 * @param shape       the shape's name
 * @param files       the files in it, by name
 * @param parameters  number of parameters
 * @param weightBytes bytes of tensor data written
 * @param nanos       wall time of the run
 */
public record SynthResult(Path dir, String shape, List<String> files, long parameters, long weightBytes, long nanos) {
    public SynthResult {
        files = List.copyOf(files);
    }

    /** Tensor data written per second, in GB (10^9 bytes). */
    public double gbPerSecond() {
        return nanos == 0 ? 0 : weightBytes / (double) nanos;
    }
}
