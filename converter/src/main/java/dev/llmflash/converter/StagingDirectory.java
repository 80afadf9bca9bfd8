package dev.llmflash.converter;

import dev.llmflash.formats.LlmflashException;

import java.io.IOException;
import java.nio.channels.FileChannel;
import java.nio.file.FileVisitResult;
import java.nio.file.Files;
import java.nio.file.LinkOption;
import java.nio.file.NoSuchFileException;
import java.nio.file.Path;
import java.nio.file.SimpleFileVisitor;
import java.nio.file.StandardCopyOption;
import java.nio.file.StandardOpenOption;
import java.nio.file.attribute.BasicFileAttributes;
import java.util.HexFormat;
import java.util.concurrent.ThreadLocalRandom;

/**
 * The temporary sibling folder a bundle is written into, {@code .NAME.tmp-<random>} next to the output,
 * and the renames that make it appear at once. The guarantee: until {@link #commit} succeeds, nothing
 * at the output changes; after a failure, an interrupt (a JVM shutdown hook deletes the folder) or an
 * exception, no temporary folder is left. Since the converter writes manifest.json last, even a
 * folder a crash (kill -9, power loss) leaves behind is never mistaken for a complete bundle: its name
 * starts with a dot and it may lack a manifest.
 *
 * <p>Replacing an existing output ({@code replace}): the old folder is renamed aside to
 * {@code .NAME.old-<random>}, the new one renamed in, then the old one deleted; if the second rename
 * fails the old folder is put back. Each rename is atomic (same parent folder, same file system).
 *
 * <p>Single-threaded, apart from the shutdown hook, which flags {@link #cancelled()} before deleting
 * so that the converting thread stops at its next check.
 */
final class StagingDirectory implements AutoCloseable {
    private static final int DELETE_ATTEMPTS = 5;

    private final Path target;
    private final Path dir;
    private final Thread hook;
    private volatile boolean cancelled;
    private volatile Path asideOld;
    private volatile boolean committed;

    private StagingDirectory(Path target, Path dir) {
        this.target = target;
        this.dir = dir;
        this.hook = new Thread(this::onShutdown, "llmflash-convert-cleanup");
    }

    /** Creates the temporary folder next to {@code target} and registers the shutdown hook. */
    static StagingDirectory create(Path target) throws IOException {
        Path dir = sibling(target, "tmp");
        Files.createDirectory(dir);
        StagingDirectory s = new StagingDirectory(target, dir);
        try {
            Runtime.getRuntime().addShutdownHook(s.hook);
        } catch (IllegalStateException e) {
            // The JVM is already shutting down: do not start.
            deleteTree(dir);
            throw new LlmflashException("the conversion was interrupted before it started; nothing was written", e);
        }
        return s;
    }

    private static Path sibling(Path target, String kind) {
        String random = HexFormat.of().toHexDigits(ThreadLocalRandom.current().nextLong()).substring(0, 12);
        return target.resolveSibling("." + target.getFileName() + "." + kind + "-" + random);
    }

    /** The temporary folder to write the bundle's files into. */
    Path dir() {
        return dir;
    }

    /** True once the JVM began shutting down (Ctrl-C): the converter must stop. */
    boolean cancelled() {
        return cancelled;
    }

    /** @throws LlmflashException if the conversion was interrupted */
    void checkNotCancelled() {
        if (cancelled) {
            throw new LlmflashException("the conversion was interrupted; nothing was written to " + target);
        }
    }

    /** Forces the folder's entries (the files' names) to disk, where the platform allows it. */
    void syncDirectory() {
        try (FileChannel ch = FileChannel.open(dir, StandardOpenOption.READ)) {
            ch.force(true);
        } catch (IOException | UnsupportedOperationException e) {
            // Not every platform can open or sync a folder; the files themselves are already synced.
        }
    }

    /**
     * Puts the finished bundle at the target: a rename, or with {@code replace} the exchange described
     * in the class comment.
     *
     * @throws LlmflashException if the target exists and {@code replace} is false, or the old bundle
     *         could not be deleted after the new one took its place
     * @throws IOException if a rename fails (the target is then as it was)
     */
    void commit(boolean replace) throws IOException {
        checkNotCancelled();
        if (!Files.exists(target, LinkOption.NOFOLLOW_LINKS)) {
            Files.move(dir, target, StandardCopyOption.ATOMIC_MOVE);
            committed = true;
            return;
        }
        if (!replace) {
            throw new LlmflashException(target + " already exists (it appeared during the conversion); use --force"
                    + " to replace it, or choose another output");
        }
        Path old = sibling(target, "old");
        Files.move(target, old, StandardCopyOption.ATOMIC_MOVE);
        asideOld = old;
        try {
            Files.move(dir, target, StandardCopyOption.ATOMIC_MOVE);
        } catch (IOException | RuntimeException e) {
            try {
                Files.move(old, target, StandardCopyOption.ATOMIC_MOVE);
                asideOld = null;
            } catch (IOException restore) {
                e.addSuppressed(restore);
            }
            throw e;
        }
        committed = true;
        asideOld = null;
        try {
            deleteTree(old);
        } catch (IOException e) {
            throw new LlmflashException("the new bundle is in place at " + target + ", but the old one moved aside to "
                    + old + " could not be deleted (" + e + "); delete it yourself", e);
        }
    }

    /** Deletes the temporary folder unless committed, and unregisters the shutdown hook. */
    @Override
    public void close() {
        try {
            if (!committed) {
                deleteTreeQuietly(dir);
            }
        } finally {
            try {
                Runtime.getRuntime().removeShutdownHook(hook);
            } catch (IllegalStateException e) {
                // Shutting down: the hook runs (or ran) and deletes the folder itself.
            }
        }
    }

    /** What the shutdown hook does; package-private so tests can run it without ending the JVM. */
    void onShutdown() {
        cancelled = true;
        Path old = asideOld;
        if (old != null && !Files.exists(target, LinkOption.NOFOLLOW_LINKS)) {
            try {
                Files.move(old, target, StandardCopyOption.ATOMIC_MOVE); // interrupted mid-exchange: undo
            } catch (IOException e) {
                // Nothing more a dying JVM can do; the old bundle is still at 'old'.
            }
        }
        if (!committed) {
            deleteTreeQuietly(dir);
        }
    }

    /**
     * Deletes a folder tree, retrying a few times: the converting thread may still be creating a file
     * in it when the shutdown hook runs.
     */
    private static void deleteTreeQuietly(Path root) {
        for (int attempt = 0; attempt < DELETE_ATTEMPTS && Files.exists(root, LinkOption.NOFOLLOW_LINKS); attempt++) {
            try {
                deleteTree(root);
                return;
            } catch (IOException e) {
                try {
                    Thread.sleep(20L << attempt);
                } catch (InterruptedException ie) {
                    Thread.currentThread().interrupt();
                    return;
                }
            }
        }
    }

    /** Deletes a folder tree (not following links); a missing tree is fine. */
    static void deleteTree(Path root) throws IOException {
        if (!Files.exists(root, LinkOption.NOFOLLOW_LINKS)) {
            return;
        }
        Files.walkFileTree(root, new SimpleFileVisitor<>() {
            @Override
            public FileVisitResult visitFile(Path file, BasicFileAttributes attrs) throws IOException {
                Files.deleteIfExists(file);
                return FileVisitResult.CONTINUE;
            }

            @Override
            public FileVisitResult visitFileFailed(Path file, IOException e) throws IOException {
                if (e instanceof NoSuchFileException) {
                    return FileVisitResult.CONTINUE; // deleted meanwhile
                }
                throw e;
            }

            @Override
            public FileVisitResult postVisitDirectory(Path d, IOException e) throws IOException {
                if (e != null && !(e instanceof NoSuchFileException)) {
                    throw e;
                }
                Files.deleteIfExists(d);
                return FileVisitResult.CONTINUE;
            }
        });
    }
}
