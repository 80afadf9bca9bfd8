package dev.llmflash.formats;

/**
 * An error meant for the user: its message is one line that says what went wrong, where (which file),
 * and what to do. The CLI prints the message alone (no stack trace unless {@code --verbose}) and exits
 * non-zero. Throw it only for problems a user can act on; bugs stay ordinary exceptions.
 */
public class LlmflashException extends RuntimeException {
    public LlmflashException(String message) {
        super(message);
    }

    public LlmflashException(String message, Throwable cause) {
        super(message, cause);
    }
}
