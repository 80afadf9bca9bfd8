package dev.llmflash.formats.activations;

import dev.llmflash.formats.FormatException;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.List;
import java.util.Random;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * Records synthetic activations whose every value is a function of (layer, token) - so a resumed
 * recording can replay them - and reads them back against that oracle: inputs through an F16 round
 * trip, labels as pre-activation > 0. Then crashes, corrupts and truncates recordings.
 */
class ActivationRecordingTest {
    static final String FINGERPRINT = "ab".repeat(32);
    static final String TEXT_SHA = "cd".repeat(32);

    @TempDir
    Path tmp;

    static RecordingInfo info(int d, int f, int layers) {
        return new RecordingInfo(FINGERPRINT, d, f, layers, "wiki.txt", TEXT_SHA);
    }

    /** The oracle's FFN input of (layer, token): mixed magnitudes, signed zeros, values F16 must round. */
    static float[] x(int layer, long token, int d) {
        Random r = new Random(layer * 1_000_003L + token);
        float[] x = new float[d];
        for (int j = 0; j < d; j++) {
            x[j] = switch (j % 5) {
                case 0 -> (float) r.nextGaussian();
                case 1 -> (float) (r.nextGaussian() * 1e-3);
                case 2 -> -0.0f;
                case 3 -> (float) (r.nextGaussian() * 300);
                default -> 1f / 3f;
            };
        }
        return x;
    }

    /** The oracle's pre-activations: about half positive, some exact zeros (inactive: ReLU(0) = 0). */
    static float[] pre(int layer, long token, int f) {
        Random r = new Random(~(layer * 1_000_003L + token));
        float[] p = new float[f];
        for (int i = 0; i < f; i++) {
            p[i] = i % 7 == 3 ? 0f : (float) r.nextGaussian();
        }
        return p;
    }

    /** Appends tokens [from, to) of every layer, the last layer through appendLabels with packed labels. */
    static void record(ActivationWriter w, long from, long to) {
        RecordingInfo in = w.info();
        for (long t = from; t < to; t++) {
            for (int l = 0; l < in.layers(); l++) {
                float[] pre = pre(l, t, in.f());
                // Offsets: exercise xOff / preOff by embedding the vectors in larger arrays.
                float[] xs = new float[in.d() + 3];
                System.arraycopy(x(l, t, in.d()), 0, xs, 3, in.d());
                if (l == in.layers() - 1) {
                    byte[] packed = new byte[1 + ActivationChunk.labelBytes(in.f())];
                    for (int i = 0; i < in.f(); i++) {
                        if (pre[i] > 0) {
                            packed[1 + i / 8] |= (byte) (1 << (i % 8));
                        }
                    }
                    packed[packed.length - 1] |= (byte) 0x80; // an unused high bit: the writer must clear it
                    w.appendLabels(l, xs, 3, packed, 1);
                } else {
                    float[] pres = new float[in.f() + 2];
                    System.arraycopy(pre, 0, pres, 2, in.f());
                    w.append(l, xs, 3, pres, 2);
                }
            }
        }
    }

    /** Checks every token of every layer of the recording in dir against the oracle. */
    static void assertMatchesOracle(Path dir, RecordingInfo in, long tokens) {
        ActivationReader reader = ActivationReader.open(dir);
        assertEquals(FINGERPRINT, reader.bundleFingerprint());
        assertEquals(in, reader.info());
        assertEquals(in.layers(), reader.layers());
        assertEquals(in.d(), reader.d());
        assertEquals(in.f(), reader.f());
        for (int l = 0; l < in.layers(); l++) {
            assertEquals(tokens, reader.tokens(l));
            ActivationReader.LayerData data = reader.load(l);
            assertEquals(tokens, data.tokens());
            int lb = data.labelBytes();
            for (int t = 0; t < tokens; t++) {
                float[] x = x(l, t, in.d());
                for (int j = 0; j < in.d(); j++) {
                    float expected = Float.float16ToFloat(Float.floatToFloat16(x[j]));
                    assertEquals(Float.floatToRawIntBits(expected), Float.floatToRawIntBits(data.x()[t * in.d() + j]),
                            "layer " + l + " token " + t + " x[" + j + "]");
                }
                float[] pre = pre(l, t, in.f());
                for (int i = 0; i < in.f(); i++) {
                    assertEquals(pre[i] > 0, data.label(t, i), "layer " + l + " token " + t + " neuron " + i);
                }
                // Unused high bits of the last label byte are zero (f = 13: bits 5..7).
                int unused = data.labels()[t * lb + lb - 1] & 0xFF & ~((1 << (in.f() % 8 == 0 ? 8 : in.f() % 8)) - 1);
                assertEquals(0, unused);
            }
        }
    }

    @Test
    void roundTripOddShapesSeveralChunksPerLayer() throws IOException {
        RecordingInfo in = info(7, 13, 3);
        Path dir = tmp.resolve("rec");
        ActivationWriter w = ActivationWriter.open(dir, in, 4);
        assertEquals(0, w.tokensRecorded());
        record(w, 0, 10);
        assertEquals(10, w.tokensRecorded());
        ActivationsManifest m = w.finish();
        assertTrue(m.complete());
        assertEquals(10, m.tokensRecorded());

        ActivationReader reader = ActivationReader.open(dir);
        assertTrue(reader.complete());
        for (int l = 0; l < 3; l++) {
            List<ActivationsManifest.Chunk> chunks = reader.chunks(l);
            assertEquals(List.of(4, 4, 2), chunks.stream().map(ActivationsManifest.Chunk::tokens).toList());
            assertEquals(ActivationChunk.fileName(l, 2), chunks.get(2).file());
            assertEquals(String.format("layer-%02d-chunk-0002.bin", l), chunks.get(2).file());
            // 40-byte header + 2 tokens x (2 x 7 F16 bytes + 2 label bytes).
            assertEquals(40 + 2 * (14 + 2), Files.size(dir.resolve(chunks.get(2).file())));
        }
        assertMatchesOracle(dir, in, 10);
        try (var files = Files.list(dir)) {
            assertTrue(files.noneMatch(p -> p.getFileName().toString().endsWith(".tmp")), "no temporary files left");
        }
    }

    @Test
    void emptyRecordingLoadsEmptyLayers() {
        RecordingInfo in = info(5, 8, 2);
        Path dir = tmp.resolve("empty");
        ActivationWriter.open(dir, in).finish();
        ActivationReader reader = ActivationReader.open(dir);
        assertTrue(reader.complete());
        ActivationReader.LayerData data = reader.load(1);
        assertEquals(0, data.tokens());
        assertEquals(0, data.x().length);
        assertEquals(0, data.labels().length);
    }

    @Test
    void resumeAfterCrashContinuesFromRecordedTokens() {
        RecordingInfo in = info(7, 13, 2);
        Path dir = tmp.resolve("rec");
        ActivationWriter w = ActivationWriter.open(dir, in, 4);
        record(w, 0, 10); // 2 chunks per layer written, 2 tokens buffered; then "crash": no finish
        assertFalse(ActivationReader.open(dir).complete());
        assertEquals(8, ActivationReader.open(dir).tokens(0));

        ActivationWriter resumed = ActivationWriter.open(dir, in, 4);
        assertEquals(List.of(), resumed.dropped());
        assertEquals(8, resumed.tokensRecorded());
        record(resumed, 8, 13);
        resumed.finish();
        assertMatchesOracle(dir, in, 13);
    }

    @Test
    void resumeDropsCorruptChunkAndWhatFollowsAndCutsLayersToCommonEnd() throws IOException {
        RecordingInfo in = info(7, 13, 2);
        Path dir = tmp.resolve("rec");
        ActivationWriter w = ActivationWriter.open(dir, in, 4);
        record(w, 0, 12); // 3 chunks per layer
        Path bad = dir.resolve(ActivationChunk.fileName(1, 1));
        flipByte(bad, 50);

        ActivationWriter resumed = ActivationWriter.open(dir, in, 4);
        assertEquals(4, resumed.tokensRecorded());
        List<String> dropped = resumed.dropped();
        assertEquals(4, dropped.size(), dropped.toString()); // layer 1: chunks 1 and 2; layer 0: chunks 1 and 2
        assertTrue(dropped.stream().anyMatch(s -> s.startsWith(bad.toString()) && s.contains("checksum")), dropped.toString());
        assertFalse(Files.exists(bad));
        assertEquals(4, ActivationReader.open(dir).tokens(0));
        record(resumed, 4, 12);
        resumed.finish();
        assertMatchesOracle(dir, in, 12);
    }

    @Test
    void resumeDropsMissingChunk() throws IOException {
        RecordingInfo in = info(3, 9, 2);
        Path dir = tmp.resolve("rec");
        record(ActivationWriter.open(dir, in, 4), 0, 8);
        Files.delete(dir.resolve(ActivationChunk.fileName(0, 0)));
        ActivationWriter resumed = ActivationWriter.open(dir, in, 4);
        assertEquals(0, resumed.tokensRecorded());
        assertTrue(resumed.dropped().getFirst().contains("is missing"), resumed.dropped().toString());
        record(resumed, 0, 5);
        resumed.finish();
        assertMatchesOracle(dir, in, 5);
    }

    @Test
    void resumeWithOtherInfoIsRefused() {
        Path dir = tmp.resolve("rec");
        ActivationWriter.open(dir, info(7, 13, 2), 4).finish();
        FormatException e = assertThrows(FormatException.class,
                () -> ActivationWriter.open(dir, new RecordingInfo("ef".repeat(32), 7, 13, 2, "wiki.txt", TEXT_SHA)));
        assertTrue(e.getMessage().contains("holds a recording of bundle " + FINGERPRINT), e.getMessage());
    }

    @Test
    void flippedByteInChunkFailsLoadNamingTheChunk() throws IOException {
        RecordingInfo in = info(7, 13, 2);
        Path dir = tmp.resolve("rec");
        ActivationWriter w = ActivationWriter.open(dir, in, 4);
        record(w, 0, 9);
        w.finish();
        Path bad = dir.resolve(ActivationChunk.fileName(1, 1));
        flipByte(bad, Files.size(bad) - 1); // a label byte

        ActivationReader reader = ActivationReader.open(dir); // the cheap checks do not read data
        reader.load(0);
        FormatException e = assertThrows(FormatException.class, () -> reader.load(1));
        assertEquals(bad, e.file());
        assertTrue(e.getMessage().startsWith(bad + ": fails its checksum"), e.getMessage());
        assertTrue(e.getMessage().contains("not trained on"), e.getMessage());
    }

    @Test
    void truncatedChunkIsRefusedAtOpen() throws IOException {
        RecordingInfo in = info(7, 13, 1);
        Path dir = tmp.resolve("rec");
        ActivationWriter w = ActivationWriter.open(dir, in, 4);
        record(w, 0, 6);
        w.finish();
        Path chunk = dir.resolve(ActivationChunk.fileName(0, 0));
        byte[] bytes = Files.readAllBytes(chunk);
        Files.write(chunk, java.util.Arrays.copyOf(bytes, bytes.length - 3));
        FormatException e = assertThrows(FormatException.class, () -> ActivationReader.open(dir));
        assertTrue(e.getMessage().startsWith(chunk + ": is truncated"), e.getMessage());
    }

    @Test
    void corruptHeaderIsRefusedAtOpen() throws IOException {
        RecordingInfo in = info(7, 13, 1);
        Path dir = tmp.resolve("rec");
        ActivationWriter w = ActivationWriter.open(dir, in, 4);
        record(w, 0, 4);
        w.finish();
        Path chunk = dir.resolve(ActivationChunk.fileName(0, 0));
        flipByte(chunk, 13); // the layer field
        FormatException e = assertThrows(FormatException.class, () -> ActivationReader.open(dir));
        assertTrue(e.getMessage().startsWith(chunk + ": has a header that fails its checksum"), e.getMessage());
    }

    @Test
    void newerManifestVersionIsRefused() throws IOException {
        Path dir = tmp.resolve("rec");
        ActivationWriter.open(dir, info(7, 13, 1)).finish();
        Path json = dir.resolve(ActivationsManifest.FILE_NAME);
        Files.writeString(json, Files.readString(json).replace("\"version\" : 1", "\"version\" : 2"));
        FormatException e = assertThrows(FormatException.class, () -> ActivationReader.open(dir));
        assertTrue(e.getMessage().contains("version 2 is newer than this llmflash reads (1)"), e.getMessage());
    }

    static void flipByte(Path file, long at) throws IOException {
        byte[] bytes = Files.readAllBytes(file);
        bytes[(int) at] ^= 0x10;
        Files.write(file, bytes);
    }
}
