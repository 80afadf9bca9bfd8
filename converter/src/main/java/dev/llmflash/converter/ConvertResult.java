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
 * @param bytesRead    bytes of the source checkpoint's tensors read (each tensor once; the tokenizer files)
 */
public record ConvertResult(Path bundle, long bytesWritten, double seconds, List<Path> files, long bytesRead) {
    public ConvertResult {
        files = List.copyOf(files);
    }

    public ConvertResult(Path bundle, long bytesWritten, double seconds, List<Path> files) {
        this(bundle, bytesWritten, seconds, files, 0);
    }

    /** (Bytes read + bytes written) per second: the conversion's disk traffic (0 for an instant one). */
    public double ioBytesPerSecond() {
        return seconds > 0 ? (bytesRead + bytesWritten) / seconds : 0;
    }

    /** Bytes written per second (0 for an instant conversion). */
    public double bytesPerSecond() {
        return seconds > 0 ? bytesWritten / seconds : 0;
    }
}
