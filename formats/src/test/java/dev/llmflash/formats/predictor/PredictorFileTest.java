package dev.llmflash.formats.predictor;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.node.ObjectNode;
import dev.llmflash.formats.FormatException;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import java.util.Map;
import java.util.Random;
import java.util.zip.CRC32C;

import static org.junit.jupiter.api.Assertions.*;

class PredictorFileTest {
    private static final String FP = "ab".repeat(32);
    private static final int D = 6;
    private static final int F = 10;
    private static final ObjectMapper JSON = new ObjectMapper();

    @TempDir
    Path dir;

    private static LayerPredictor random(int layer, int rank, long seed) {
        Random rnd = new Random(seed);
        float[] a = new float[rank * D], b = new float[F * rank], c = new float[F];
        for (float[] m : new float[][] {a, b, c}) {
            for (int i = 0; i < m.length; i++) {
                m[i] = (float) rnd.nextGaussian();
            }
        }
        return new LayerPredictor(layer, false, rank, 0.25f + layer / 100f, a, b, c);
    }

    /** Own: layer 0 and 2 predicted, layer 1 dense; look-ahead: none for layer 0 (target 1 is dense), rank 2 for layer 1. */
    private static List<LayerPredictor> own() {
        return List.of(random(0, 3, 1), LayerPredictor.denseLayer(1), random(2, 4, 2));
    }

    private static List<LayerPredictor> ahead() {
        List<LayerPredictor> a = new ArrayList<>();
        a.add(null);
        a.add(random(2, 2, 3));
        return a;
    }

    private static void assertSame(LayerPredictor want, LayerPredictor got) {
        assertEquals(want.layer(), got.layer());
        assertEquals(want.dense(), got.dense());
        assertEquals(want.rank(), got.rank());
        assertArrayEquals(want.a(), got.a());
        assertArrayEquals(want.b(), got.b());
        assertArrayEquals(want.c(), got.c());
        if (!want.dense()) {
            assertEquals(Float.floatToRawIntBits(want.threshold()), Float.floatToRawIntBits(got.threshold()));
        }
    }

    private JsonNode json() throws IOException {
        return JSON.readTree(dir.resolve(PredictorFile.JSON).toFile());
    }

    private FormatException refused() {
        FormatException e = assertThrows(FormatException.class, () -> PredictorFile.read(dir, FP));
        assertEquals(1, e.getMessage().lines().count(), e.getMessage());
        return e;
    }

    @Test
    void version2RoundTripWithLookahead() throws IOException {
        PredictorFile.write(dir, FP, own(), ahead(), Map.of("k", 1));
        Predictors p = PredictorFile.read(dir, FP, 3, D, F);
        assertEquals(D, p.d());
        assertEquals(F, p.f());
        for (int i = 0; i < 3; i++) {
            assertSame(own().get(i), p.layer(i));
        }
        assertTrue(p.hasLookahead());
        assertNull(p.lookahead(0), "target layer 1 is dense: no look-ahead");
        assertSame(ahead().get(1), p.lookahead(1));
        assertEquals(2, p.lookahead(1).layer(), "a look-ahead's layer() is its target");
        assertNull(p.lookahead(2), "the last layer has nothing to look ahead to");
        assertThrows(IndexOutOfBoundsException.class, () -> p.lookahead(3));
        JsonNode j = json();
        assertEquals(2, j.get("version").asInt());
        assertEquals(2, j.get("lookahead").size());
        assertEquals(1, j.get("lookahead").get(1).get("source_layer").asInt());
        assertEquals(2, j.get("lookahead").get(1).get("layer").asInt());
        assertTrue(j.get("lookahead").get(0).get("dense").asBoolean());
        assertEquals(Files.size(dir.resolve(PredictorFile.BIN)), j.get("size").asLong());
    }

    @Test
    void version2RoundTripWithoutLookahead() throws IOException {
        PredictorFile.write(dir, FP, own(), Map.of());
        Predictors p = PredictorFile.read(dir, FP);
        assertFalse(p.hasLookahead());
        assertTrue(p.lookaheads().isEmpty());
        for (int i = 0; i < 3; i++) {
            assertNull(p.lookahead(i));
            assertSame(own().get(i), p.layer(i));
        }
        assertEquals(0, json().get("lookahead").size());
    }

    /** A version 1 file: the version 2 layout with no look-ahead, version 1 in both files, no "lookahead" in the json. */
    @Test
    void version1StillReads() throws IOException {
        PredictorFile.write(dir, FP, own(), Map.of("old", true));
        Path bin = dir.resolve(PredictorFile.BIN);
        byte[] b = Files.readAllBytes(bin);
        ByteBuffer h = ByteBuffer.wrap(b).order(ByteOrder.LITTLE_ENDIAN);
        h.putInt(PredictorFile.OFF_VERSION, 1);
        CRC32C crc = new CRC32C();
        crc.update(b, 0, PredictorFile.OFF_CRC);
        h.putInt(PredictorFile.OFF_CRC, (int) crc.getValue());
        Files.write(bin, b);
        ObjectNode j = (ObjectNode) json();
        j.put("version", 1);
        j.remove("lookahead");
        JSON.writeValue(dir.resolve(PredictorFile.JSON).toFile(), j);
        Predictors p = PredictorFile.read(dir, FP, 3, D, F);
        assertFalse(p.hasLookahead());
        assertNull(p.lookahead(0));
        assertSame(own().get(2), p.layer(2));
        assertEquals(true, p.trainingInfo().get("old"));

        j.set("lookahead", JSON.createArrayNode());
        JSON.writeValue(dir.resolve(PredictorFile.JSON).toFile(), j);
        assertTrue(refused().getMessage().contains("version 1"));
    }

    @Test
    void aCorruptLookaheadRecordIsNamed() throws IOException {
        PredictorFile.write(dir, FP, own(), ahead(), Map.of());
        JsonNode e = json().get("lookahead").get(1);
        Path bin = dir.resolve(PredictorFile.BIN);
        byte[] b = Files.readAllBytes(bin);
        int at = (int) e.get("offset").asLong() + PredictorFile.RECORD_HEADER + 5;
        b[at] ^= 0x10;
        Files.write(bin, b);
        String m = refused().getMessage();
        assertTrue(m.startsWith(bin.toString()), m);
        assertTrue(m.contains("layer 1's look-ahead predictor (for layer 2) fails its checksum"), m);
    }

    @Test
    void truncationIsRefusedNamingTheLookaheadRecord() throws IOException {
        PredictorFile.write(dir, FP, own(), ahead(), Map.of());
        Path bin = dir.resolve(PredictorFile.BIN);
        byte[] b = Files.readAllBytes(bin);
        Files.write(bin, Arrays.copyOf(b, b.length - 8));
        assertTrue(refused().getMessage().contains("is truncated"));
        // the json's size edited to match: the last look-ahead record then ends past the file
        ObjectNode j = (ObjectNode) json();
        j.put("size", b.length - 8);
        JSON.writeValue(dir.resolve(PredictorFile.JSON).toFile(), j);
        String m = refused().getMessage();
        assertTrue(m.contains("is truncated: layer 1's look-ahead record (for layer 2)"), m);
        // cut inside the own records: the own layer is named
        Files.write(bin, Arrays.copyOf(b, 40));
        j.put("size", 40);
        JSON.writeValue(dir.resolve(PredictorFile.JSON).toFile(), j);
        m = refused().getMessage();
        assertTrue(m.contains("is truncated: layer 0's record"), m);
    }

    @Test
    void lookaheadCountsAndTargetsAreChecked() throws IOException {
        PredictorFile.write(dir, FP, own(), ahead(), Map.of());
        ObjectNode j = (ObjectNode) json();
        ((com.fasterxml.jackson.databind.node.ArrayNode) j.get("lookahead")).remove(1);
        JSON.writeValue(dir.resolve(PredictorFile.JSON).toFile(), j);
        assertTrue(refused().getMessage().contains("look-ahead predictors for 3 layers"));

        PredictorFile.write(dir, FP, own(), ahead(), Map.of());
        j = (ObjectNode) json();
        ((ObjectNode) j.get("lookahead").get(1)).put("layer", 1);
        JSON.writeValue(dir.resolve(PredictorFile.JSON).toFile(), j);
        assertTrue(refused().getMessage().contains("should be layer 2"));

        assertThrows(IllegalArgumentException.class, () -> PredictorFile.write(dir, FP, own(), List.of(random(1, 2, 1)), Map.of()));
        assertThrows(IllegalArgumentException.class,
                () -> PredictorFile.write(dir, FP, own(), List.of(random(0, 2, 1), random(2, 2, 1)), Map.of()));
    }
}
