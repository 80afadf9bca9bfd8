package dev.llmflash.formats.activations;

import dev.llmflash.formats.AtomicFile;
import dev.llmflash.formats.FormatException;
import dev.llmflash.formats.LlmflashException;
import dev.llmflash.formats.bundle.Checksums;

import java.io.IOException;
import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.nio.ByteBuffer;
import java.nio.channels.FileChannel;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.StandardOpenOption;
import java.util.ArrayList;
import java.util.Collections;
import java.util.HashSet;
import java.util.List;
import java.util.Objects;
import java.util.Set;
import java.util.zip.CRC32C;

/**
 * Records FFN inputs and true activity labels into a recording folder (docs/FORMAT.md, "Recorded
 * activations"): per layer, tokens are buffered and written as a chunk file ({@link ActivationChunk})
 * every {@code chunkTokens} tokens; activations.json ({@link ActivationsManifest}) is rewritten after
 * every chunk, so a crash loses at most the buffered tokens.
 *
 * <h2>Use</h2>
 * <pre>
 * ActivationWriter w = ActivationWriter.open(dir, info);       // new, or resumes what dir holds
 * w.dropped().forEach(log::warn);                               // chunks that were missing or corrupt
 * for (long t = w.tokensRecorded(); t &lt; tokens; t++)           // continue where the recording stopped
 *     for (int layer ...) w.append(layer, x, xOff, pre, preOff);
 * w.finish();
 * </pre>
 *
 * <h2>Resuming</h2>
 * {@link #open} keeps the chunks activations.json lists whose file is intact (size, header, CRC32C of
 * the whole file: this reads the recording once). In each layer, the chunks after a missing or corrupt
 * one are dropped too, then every layer is cut to the tokens all layers hold (whole chunks only), so
 * that the caller continues from one token index, {@link #tokensRecorded()}, for every layer. Dropped
 * chunks' files are deleted and each is reported by {@link #dropped()}.
 *
 * <h2>Memory, threads</h2>
 * Each layer buffers one chunk: {@code chunkTokens * (2 d + ceil(f / 8))} bytes, allocated on the
 * layer's first append (OPT-6.7B, 4096 tokens: 40 MiB a layer, 1.3 GiB for 32 layers; pass a smaller
 * {@code chunkTokens} to record a large model in less memory). Not thread-safe: confine a writer to one
 * thread. Nothing stays open between calls: there is nothing to close; an unfinished writer is resumed.
 */
public final class ActivationWriter {

    public static final int DEFAULT_CHUNK_TOKENS = 4096;

    private final Path dir;
    private final RecordingInfo info;
    private final int chunkTokens;
    private final int labelBytes;
    private final List<ActivationsManifest.Chunk> chunks;
    private final Set<String> usedNames = new HashSet<>();
    private final List<String> dropped;
    private final long[] recorded;
    private final int[] buffered;
    private final int[] nextIndex;
    private final byte[][] buffers;
    private boolean finished;

    private ActivationWriter(Path dir, RecordingInfo info, int chunkTokens, List<ActivationsManifest.Chunk> kept,
                             List<String> dropped) {
        this.dir = dir;
        this.info = info;
        this.chunkTokens = chunkTokens;
        this.labelBytes = ActivationChunk.labelBytes(info.f());
        this.chunks = new ArrayList<>(kept);
        this.dropped = List.copyOf(dropped);
        this.recorded = new long[info.layers()];
        this.buffered = new int[info.layers()];
        this.nextIndex = new int[info.layers()];
        this.buffers = new byte[info.layers()][];
        for (ActivationsManifest.Chunk c : kept) {
            recorded[c.layer()] += c.tokens();
            nextIndex[c.layer()]++;
            usedNames.add(c.file());
        }
    }

    /** {@link #open(Path, RecordingInfo, int)} with {@value #DEFAULT_CHUNK_TOKENS} tokens a chunk. */
    public static ActivationWriter open(Path dir, RecordingInfo info) {
        return open(dir, info, DEFAULT_CHUNK_TOKENS);
    }

    /**
     * Starts a recording in {@code dir} (created if missing), or resumes the one it holds (see the class
     * comment).
     *
     * @throws FormatException if dir holds a recording of another bundle, shape or text, or its
     *                         activations.json is unreadable
     */
    public static ActivationWriter open(Path dir, RecordingInfo info, int chunkTokens) {
        Objects.requireNonNull(info, "info");
        if (chunkTokens < 1) {
            throw new IllegalArgumentException("chunkTokens " + chunkTokens);
        }
        if (Files.exists(dir) && !Files.isDirectory(dir)) {
            throw new FormatException(dir, "is a file, not a recording folder", "choose a folder for the activations");
        }
        try {
            Files.createDirectories(dir);
        } catch (IOException e) {
            throw new LlmflashException("cannot create " + dir + ": " + e + " (check write permission)", e);
        }
        Path json = dir.resolve(ActivationsManifest.FILE_NAME);
        List<ActivationsManifest.Chunk> kept = new ArrayList<>();
        List<String> dropped = new ArrayList<>();
        if (Files.exists(json)) {
            ActivationsManifest old = ActivationsManifest.read(json);
            if (!old.info().equals(info)) {
                throw new FormatException(json, "holds a recording of " + describe(old.info()) + ", not of "
                        + describe(info), "record into another folder, or delete this one to start over");
            }
            resume(dir, old, kept, dropped);
        }
        ActivationWriter w = new ActivationWriter(dir, info, chunkTokens, kept, dropped);
        w.manifest(false).write(dir);
        return w;
    }

    private static String describe(RecordingInfo i) {
        return "bundle " + i.bundleFingerprint() + " (d " + i.d() + ", f " + i.f() + ", " + i.layers()
                + " layers) on text " + i.textSource() + " (sha256 " + i.textSha256() + ")";
    }

    /** Fills {@code kept} with the chunks of {@code old} a resumed recording keeps, {@code dropped} with why the others go. */
    private static void resume(Path dir, ActivationsManifest old, List<ActivationsManifest.Chunk> kept,
                               List<String> dropped) {
        RecordingInfo info = old.info();
        List<List<ActivationsManifest.Chunk>> perLayer = new ArrayList<>();
        for (int l = 0; l < info.layers(); l++) {
            List<ActivationsManifest.Chunk> layer = new ArrayList<>();
            boolean broken = false;
            for (ActivationsManifest.Chunk c : old.chunks(l)) {
                String problem = broken ? "follows a dropped chunk" : problem(dir.resolve(c.file()), c, info);
                if (problem == null) {
                    layer.add(c);
                } else {
                    broken = true;
                    drop(dir, c, problem, dropped);
                }
            }
            perLayer.add(layer);
        }
        // Cut every layer to the tokens all layers hold, whole chunks only; a cut may lower the minimum
        // (chunk boundaries differ when chunkTokens changed between sessions), hence the loop.
        boolean changed = true;
        while (changed) {
            changed = false;
            long common = perLayer.stream().mapToLong(cs -> cs.isEmpty() ? 0 : end(cs.getLast())).min().orElse(0);
            for (List<ActivationsManifest.Chunk> cs : perLayer) {
                while (!cs.isEmpty() && end(cs.getLast()) > common) {
                    drop(dir, cs.removeLast(), "lies beyond token " + common + ", where another layer's recording stops",
                            dropped);
                    changed = true;
                }
            }
        }
        perLayer.forEach(kept::addAll);
    }

    private static long end(ActivationsManifest.Chunk c) {
        return c.firstToken() + c.tokens();
    }

    private static void drop(Path dir, ActivationsManifest.Chunk c, String why, List<String> dropped) {
        Path file = dir.resolve(c.file());
        dropped.add(file + ": " + why + "; dropped, tokens [" + c.firstToken() + ", " + end(c) + ") of layer "
                + c.layer() + " will be recorded again");
        try {
            Files.deleteIfExists(file);
        } catch (IOException e) {
            // Harmless: it is no longer listed, and a chunk written later under its name replaces it.
        }
    }

    /** Why {@code file} is not the chunk {@code c} describes, or null if it is intact. */
    private static String problem(Path file, ActivationsManifest.Chunk c, RecordingInfo info) {
        if (!Files.isRegularFile(file)) {
            return "is missing";
        }
        try (Arena arena = Arena.ofConfined();
             FileChannel ch = FileChannel.open(file, StandardOpenOption.READ)) {
            if (ch.size() != c.size()) {
                return "has " + ch.size() + " bytes, not " + c.size();
            }
            MemorySegment m = ch.map(FileChannel.MapMode.READ_ONLY, 0, ch.size(), arena);
            ActivationChunk.checkHeader(file, m, c.header(info));
            int crc = Checksums.crc32c(m, true);
            if (crc != c.crc32c()) {
                return "fails its checksum (crc32c " + Checksums.hex(crc) + ", expected " + Checksums.hex(c.crc32c()) + ")";
            }
            return null;
        } catch (FormatException e) {
            return e.getMessage().substring(file.toString().length() + 2);
        } catch (IOException e) {
            return "cannot be read (" + e + ")";
        }
    }

    /**
     * Records one token of {@code layer}: its FFN input {@code x[xOff, xOff + d)} (stored as F16, round to
     * nearest even) and its neurons' activity, neuron i active when {@code pre[preOff + i] > 0} (the ReLU
     * fires; NaN counts as inactive). Writes a chunk when the layer's buffer is full.
     */
    public void append(int layer, float[] x, int xOff, float[] pre, int preOff) {
        byte[] buf = bufferFor(layer, x, xOff);
        Objects.checkFromIndexSize(preOff, info.f(), pre.length);
        int base = chunkTokens * 2 * info.d() + buffered[layer] * labelBytes;
        int f = info.f();
        for (int k = 0; k < labelBytes; k++) {
            int bits = 0;
            int i0 = k << 3;
            int n = Math.min(8, f - i0);
            for (int b = 0; b < n; b++) {
                if (pre[preOff + i0 + b] > 0f) {
                    bits |= 1 << b;
                }
            }
            buf[base + k] = (byte) bits;
        }
        advance(layer);
    }

    /**
     * Records one token of {@code layer} with labels already packed: {@code ceil(f / 8)} bytes from
     * {@code labelsOff}, neuron i = bit (i mod 8) of byte i / 8, LSB first (unused high bits are cleared).
     */
    public void appendLabels(int layer, float[] x, int xOff, byte[] labels, int labelsOff) {
        byte[] buf = bufferFor(layer, x, xOff);
        Objects.checkFromIndexSize(labelsOff, labelBytes, labels.length);
        int base = chunkTokens * 2 * info.d() + buffered[layer] * labelBytes;
        System.arraycopy(labels, labelsOff, buf, base, labelBytes);
        int tail = info.f() & 7;
        if (tail != 0) {
            buf[base + labelBytes - 1] &= (byte) ((1 << tail) - 1);
        }
        advance(layer);
    }

    /** Checks the arguments, stores x as F16 in the layer's buffer, returns the buffer. */
    private byte[] bufferFor(int layer, float[] x, int xOff) {
        if (finished) {
            throw new IllegalStateException("the recording is finished");
        }
        Objects.checkIndex(layer, info.layers());
        int d = info.d();
        Objects.checkFromIndexSize(xOff, d, x.length);
        byte[] buf = buffers[layer];
        if (buf == null) {
            buf = new byte[Math.toIntExact((long) chunkTokens * (2L * d + labelBytes))];
            buffers[layer] = buf;
        }
        MemorySegment m = MemorySegment.ofArray(buf);
        long at = (long) buffered[layer] * 2 * d;
        for (int j = 0; j < d; j++) {
            m.set(ActivationChunk.F16, at + 2L * j, Float.floatToFloat16(x[xOff + j]));
        }
        return buf;
    }

    private void advance(int layer) {
        if (++buffered[layer] == chunkTokens) {
            flush(layer);
        }
    }

    /** Writes layer's buffered tokens as a chunk (atomically), then the updated activations.json. */
    private void flush(int layer) {
        int n = buffered[layer];
        if (n == 0) {
            return;
        }
        String name;
        do {
            name = ActivationChunk.fileName(layer, nextIndex[layer]++);
        } while (usedNames.contains(name));
        ActivationChunk.Header h = new ActivationChunk.Header(layer, recorded[layer], n, info.d(), info.f());
        ByteBuffer header = ByteBuffer.wrap(ActivationChunk.encodeHeader(h));
        ByteBuffer xs = ByteBuffer.wrap(buffers[layer], 0, n * 2 * info.d());
        ByteBuffer labels = ByteBuffer.wrap(buffers[layer], chunkTokens * 2 * info.d(), n * labelBytes);
        CRC32C crc = new CRC32C();
        crc.update(header.duplicate());
        crc.update(xs.duplicate());
        crc.update(labels.duplicate());
        AtomicFile.write(dir.resolve(name), ch -> {
            AtomicFile.writeFully(ch, header);
            AtomicFile.writeFully(ch, xs);
            AtomicFile.writeFully(ch, labels);
        });
        usedNames.add(name);
        chunks.add(new ActivationsManifest.Chunk(name, layer, recorded[layer], n, ActivationChunk.size(n, info.d(),
                info.f()), (int) crc.getValue()));
        recorded[layer] += n;
        buffered[layer] = 0;
        manifest(false).write(dir);
    }

    private ActivationsManifest manifest(boolean complete) {
        return new ActivationsManifest(info, complete, chunkTokens, chunks);
    }

    /**
     * Tokens every layer has received (written or buffered): right after {@link #open}, the token index
     * at which to continue a resumed recording (0 for a new one).
     */
    public long tokensRecorded() {
        long min = Long.MAX_VALUE;
        for (int l = 0; l < info.layers(); l++) {
            min = Math.min(min, recorded[l] + buffered[l]);
        }
        return min;
    }

    /** One line per chunk that {@link #open} dropped while resuming (missing, corrupt, or past the common end). */
    public List<String> dropped() {
        return Collections.unmodifiableList(dropped);
    }

    public RecordingInfo info() {
        return info;
    }

    /**
     * Writes the buffered tokens and the final activations.json (marked complete). Every layer must
     * have received the same number of tokens. The writer accepts nothing afterwards.
     *
     * @return the recording's manifest
     */
    public ActivationsManifest finish() {
        if (finished) {
            throw new IllegalStateException("the recording is already finished");
        }
        for (int l = 1; l < info.layers(); l++) {
            if (recorded[l] + buffered[l] != recorded[0] + buffered[0]) {
                throw new IllegalStateException("layer " + l + " received " + (recorded[l] + buffered[l])
                        + " tokens but layer 0 " + (recorded[0] + buffered[0]) + ": append every layer of every token");
            }
        }
        for (int l = 0; l < info.layers(); l++) {
            flush(l);
            buffers[l] = null;
        }
        finished = true;
        ActivationsManifest m = manifest(true);
        m.write(dir);
        return m;
    }
}
