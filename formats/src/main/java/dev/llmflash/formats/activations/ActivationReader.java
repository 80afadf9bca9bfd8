package dev.llmflash.formats.activations;

import dev.llmflash.formats.FormatException;
import dev.llmflash.formats.LlmflashException;
import dev.llmflash.formats.bundle.Checksums;

import java.io.IOException;
import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.nio.channels.FileChannel;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.StandardOpenOption;
import java.util.List;
import java.util.Objects;

/**
 * Reads a recording made by {@link ActivationWriter} (docs/FORMAT.md, "Recorded activations"): what the
 * predictor trainer learns from.
 *
 * <h2>Validation</h2>
 * {@link #open} is cheap: activations.json ({@link ActivationsManifest#read}) and, for every chunk, its
 * presence, size and header (read without the data). {@link #load} checks each chunk's CRC32C as it
 * reads it and throws a {@link FormatException} naming the chunk file on a mismatch: a corrupted chunk
 * is reported, never silently trained on. An unfinished recording (one that crashed) is readable;
 * {@link #complete()} tells, and its layers may hold different token counts.
 *
 * <h2>Ownership, threads</h2>
 * Holds no open files (each load opens and closes its chunks); immutable; any number of threads may
 * load layers concurrently. The folder must not change while in use.
 */
public final class ActivationReader {

    private final Path dir;
    private final ActivationsManifest manifest;

    private ActivationReader(Path dir, ActivationsManifest manifest) {
        this.dir = dir;
        this.manifest = manifest;
    }

    /**
     * Opens the recording in {@code dir} with the cheap checks of the class comment.
     *
     * @throws FormatException naming the file and the first problem
     */
    public static ActivationReader open(Path dir) {
        if (!Files.isDirectory(dir)) {
            throw new FormatException(dir, Files.exists(dir) ? "is a file, not a recording folder" : "does not exist",
                    "point at the folder the activations were recorded into");
        }
        ActivationsManifest m = ActivationsManifest.read(dir.resolve(ActivationsManifest.FILE_NAME));
        for (ActivationsManifest.Chunk c : m.chunks()) {
            Path file = dir.resolve(c.file());
            try (Arena arena = Arena.ofConfined();
                 FileChannel ch = FileChannel.open(file, StandardOpenOption.READ)) {
                checkSize(file, ch.size(), c.size());
                MemorySegment header = ch.map(FileChannel.MapMode.READ_ONLY, 0, ActivationChunk.HEADER_BYTES, arena);
                ActivationChunk.checkHeader(file, header, c.header(m.info()));
            } catch (java.nio.file.NoSuchFileException e) {
                throw new FormatException(file, "is missing (activations.json lists it)",
                        "resume the recording to record it again", e);
            } catch (IOException e) {
                throw new FormatException(file, "cannot be read: " + e, "check that it is a readable file", e);
            }
        }
        return new ActivationReader(dir, m);
    }

    private static void checkSize(Path file, long actual, long expected) {
        if (actual != expected) {
            throw new FormatException(file, (actual < expected ? "is truncated: it has " : "is too long: it has ")
                    + actual + " bytes but activations.json says " + expected, ActivationChunk.FIX_CORRUPT);
        }
    }

    /**
     * One layer's recorded tokens, in memory. Legend: n = tokens, d = input width, f = neurons,
     * L = ceil(f / 8) label bytes per token.
     *
     * @param x      n x d FFN inputs, token-major (widened exactly from the stored F16)
     * @param labels n x L bytes: neuron i of token t is bit (i mod 8) of {@code labels[t L + i / 8]}, LSB first
     */
    public record LayerData(int layer, int tokens, int d, int f, float[] x, byte[] labels) {
        public LayerData {
            Objects.requireNonNull(x, "x");
            Objects.requireNonNull(labels, "labels");
            if (x.length != (long) tokens * d || labels.length != (long) tokens * ActivationChunk.labelBytes(f)) {
                throw new IllegalArgumentException("x " + x.length + " / labels " + labels.length + " for " + tokens
                        + " tokens of d " + d + ", f " + f);
            }
        }

        /** L = ceil(f / 8), label bytes per token. */
        public int labelBytes() {
            return ActivationChunk.labelBytes(f);
        }

        /** True when {@code neuron} was active (pre-activation > 0) at token {@code token}. */
        public boolean label(int token, int neuron) {
            Objects.checkIndex(token, tokens);
            Objects.checkIndex(neuron, f);
            return (labels[token * labelBytes() + (neuron >>> 3)] >>> (neuron & 7) & 1) != 0;
        }
    }

    /**
     * Reads every chunk of {@code layer} into memory, checking each one's CRC32C.
     *
     * @throws FormatException naming the chunk file that is corrupt, truncated or missing
     * @throws LlmflashException if the layer holds more tokens than one Java array can (n d > 2^31 - 9)
     */
    public LayerData load(int layer) {
        Objects.checkIndex(layer, layers());
        long n = tokens(layer);
        int d = d();
        int f = f();
        int lb = ActivationChunk.labelBytes(f);
        if (n * d > Integer.MAX_VALUE - 8 || n * lb > Integer.MAX_VALUE - 8) {
            throw new LlmflashException(dir + ": layer " + layer + " holds " + n + " tokens, too many to load at once"
                    + " (n x d must stay below 2^31; record fewer tokens)");
        }
        float[] x = new float[(int) (n * d)];
        byte[] labels = new byte[(int) (n * lb)];
        for (ActivationsManifest.Chunk c : manifest.chunks(layer)) {
            Path file = dir.resolve(c.file());
            try (Arena arena = Arena.ofConfined();
                 FileChannel ch = FileChannel.open(file, StandardOpenOption.READ)) {
                checkSize(file, ch.size(), c.size());
                MemorySegment m = ch.map(FileChannel.MapMode.READ_ONLY, 0, ch.size(), arena);
                int crc = Checksums.crc32c(m, false);
                if (crc != c.crc32c()) {
                    throw new FormatException(file, "fails its checksum (crc32c " + Checksums.hex(crc) + ", expected "
                            + Checksums.hex(c.crc32c()) + "): the activation chunk is corrupt and is not trained on",
                            ActivationChunk.FIX_CORRUPT);
                }
                ActivationChunk.checkHeader(file, m, c.header(manifest.info()));
                int count = c.tokens();
                int x0 = (int) (c.firstToken() * d);
                long at = ActivationChunk.HEADER_BYTES;
                for (int i = 0; i < count * d; i++) {
                    x[x0 + i] = Float.float16ToFloat(m.get(ActivationChunk.F16, at + 2L * i));
                }
                MemorySegment.copy(m, ValueLayout.JAVA_BYTE, at + 2L * count * d, labels, (int) (c.firstToken() * lb),
                        count * lb);
            } catch (java.nio.file.NoSuchFileException e) {
                throw new FormatException(file, "is missing (activations.json lists it)",
                        "resume the recording to record it again", e);
            } catch (IOException e) {
                throw new FormatException(file, "cannot be read: " + e, "check that it is a readable file", e);
            }
        }
        return new LayerData(layer, (int) n, d, f, x, labels);
    }

    public Path dir() {
        return dir;
    }

    public ActivationsManifest manifest() {
        return manifest;
    }

    public RecordingInfo info() {
        return manifest.info();
    }

    /** The fingerprint of the bundle the activations were recorded from. */
    public String bundleFingerprint() {
        return manifest.info().bundleFingerprint();
    }

    public int layers() {
        return manifest.info().layers();
    }

    public int d() {
        return manifest.info().d();
    }

    public int f() {
        return manifest.info().f();
    }

    /** Tokens recorded for {@code layer}. */
    public long tokens(int layer) {
        Objects.checkIndex(layer, layers());
        return manifest.tokens(layer);
    }

    /** True when the recording was finished ({@link ActivationWriter#finish()}), false if it stopped early. */
    public boolean complete() {
        return manifest.complete();
    }

    /** The chunks of {@code layer}, in token order. */
    public List<ActivationsManifest.Chunk> chunks(int layer) {
        return manifest.chunks(layer);
    }
}
