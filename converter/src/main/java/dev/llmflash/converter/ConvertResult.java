package dev.llmflash.converter;

import java.nio.file.Path;
import java.util.List;

/**
 * What a finished conversion produced.
 *
 * @param bundle       the bundle folder (the requested output)
 * @param bytesWritten the total size of the bundle's files
 * @param seconds      wall-clock time of the whole conversion
 * @param files        the bundle's files, manifest.json last (the order they were completed in)
 */
public record ConvertResult(Path bundle, long bytesWritten, double seconds, List<Path> files) {
    public ConvertResult {
        files = List.copyOf(files);
    }

    /** Bytes written per second (0 for an instant conversion). */
    public double bytesPerSecond() {
        return seconds > 0 ? bytesWritten / seconds : 0;
    }
}
