package dev.llmflash.formats;

import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.channels.FileChannel;
import java.nio.file.AtomicMoveNotSupportedException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.StandardCopyOption;
import java.nio.file.StandardOpenOption;
import java.util.concurrent.ThreadLocalRandom;

/**
 * Writes a file atomically: into a temporary sibling {@code .NAME.<random>.tmp}, forced to disk, then
 * renamed over the target (ATOMIC_MOVE where the file system has it). A reader sees the old file or the
 * new one, never half of one; a crash leaves at most a stray temporary file. Stateless, thread-safe
 * (two writers of the same target race; the last rename wins).
 */
public final class AtomicFile {

    /** Fills the temporary file; may write any number of buffers. */
    @FunctionalInterface
    public interface Body {
        void write(FileChannel ch) throws IOException;
    }

    private AtomicFile() {
    }

    /** Writes {@code bytes} to {@code target} atomically. */
    public static void write(Path target, byte[] bytes) {
        write(target, ch -> writeFully(ch, ByteBuffer.wrap(bytes)));
    }

    /**
     * Writes {@code target} atomically with {@code body}.
     *
     * @throws LlmflashException if it cannot be written; {@code target} is then unchanged
     */
    public static void write(Path target, Body body) {
        Path abs = target.toAbsolutePath();
        Path tmp = abs.resolveSibling("." + abs.getFileName() + "."
                + Long.toHexString(ThreadLocalRandom.current().nextLong()) + ".tmp");
        boolean moved = false;
        try {
            try (FileChannel ch = FileChannel.open(tmp, StandardOpenOption.CREATE_NEW, StandardOpenOption.WRITE)) {
                body.write(ch);
                ch.force(true);
            }
            try {
                Files.move(tmp, abs, StandardCopyOption.ATOMIC_MOVE, StandardCopyOption.REPLACE_EXISTING);
            } catch (AtomicMoveNotSupportedException e) {
                Files.move(tmp, abs, StandardCopyOption.REPLACE_EXISTING);
            }
            moved = true;
        } catch (IOException e) {
            throw new LlmflashException("cannot write " + abs + ": " + e + " (check free disk space and write"
                    + " permission on " + abs.getParent() + ")", e);
        } finally {
            if (!moved) {
                try {
                    Files.deleteIfExists(tmp);
                } catch (IOException ignored) {
                    // Best effort: the write already failed, and that error is the one to report.
                }
            }
        }
    }

    /** Writes all of {@code bb} (a channel write may be partial). */
    public static void writeFully(FileChannel ch, ByteBuffer bb) throws IOException {
        while (bb.hasRemaining()) {
            ch.write(bb);
        }
    }
}
