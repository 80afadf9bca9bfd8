package dev.llmflash.formats;

import java.nio.file.Path;

/**
 * A file that cannot be read as what it claims to be: truncated, corrupted, inconsistent, or of an
 * unsupported kind. The message names the file, the problem, and what to do.
 */
public class FormatException extends LlmflashException {
    private final Path file;

    /**
     * @param file the offending file (or directory)
     * @param problem what is wrong, e.g. "tensor 'x' ends at byte 900 but the file has 800 bytes"
     * @param fix what the user can do, e.g. "re-download the checkpoint"; may be null
     */
    public FormatException(Path file, String problem, String fix) {
        super(compose(file, problem, fix));
        this.file = file;
    }

    public FormatException(Path file, String problem, String fix, Throwable cause) {
        super(compose(file, problem, fix), cause);
        this.file = file;
    }

    public Path file() {
        return file;
    }

    private static String compose(Path file, String problem, String fix) {
        StringBuilder sb = new StringBuilder();
        sb.append(file).append(": ").append(problem);
        if (fix != null && !fix.isBlank()) {
            sb.append(" (").append(fix).append(')');
        }
        return sb.toString();
    }
}
