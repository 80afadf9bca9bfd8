package dev.llmflash.formats.checkpoint;

import dev.llmflash.formats.tensor.Tensor;

import java.nio.file.Path;
import java.util.SortedSet;

/**
 * A set of named tensors read from disk (one file or several shards). Tensors are views over memory
 * this object owns (typically memory-mapped files): they stay valid until {@link #close()}.
 * Implementations are safe for concurrent reads once opened; {@code close} must not race with readers.
 */
public interface Checkpoint extends AutoCloseable {

    /** The file or directory this checkpoint was opened from, for messages. */
    Path location();

    /** Every tensor name, sorted. */
    SortedSet<String> tensorNames();

    default boolean contains(String name) {
        return tensorNames().contains(name);
    }

    /**
     * The named tensor.
     *
     * @throws dev.llmflash.formats.FormatException if there is no such tensor (the message names the
     *         checkpoint and the tensor)
     */
    Tensor tensor(String name);

    @Override
    void close();
}
