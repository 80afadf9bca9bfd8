package dev.llmflash.formats.bundle;

import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.node.ObjectNode;
import dev.llmflash.formats.FormatException;
import dev.llmflash.formats.hf.FalconConfig;
import dev.llmflash.formats.hf.ModelConfig;
import dev.llmflash.formats.hf.OptConfig;
import dev.llmflash.formats.tensor.DType;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Instant;
import java.util.ArrayList;
import java.util.List;
import java.util.function.Consumer;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertNotEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

class BundleManifestTest {
    private static final ObjectMapper JSON = new ObjectMapper();

    @TempDir
    Path tmp;

    static final OptConfig OPT = new OptConfig(8192, 256, 6, 4, 1024, 1024, 256, true, true, true, true, "relu", true,
            2, 2, 1);
    static final FalconConfig FALCON = new FalconConfig(8192, 192, 6, 3, 1, 768, 1024,
            FalconConfig.QkvLayout.MULTI_QUERY, true, 1, false, 1e-5f, "relu", 10000.0, true, 2, 2);

    /** A consistent manifest (the numbers need not describe real files: the manifest is read alone). */
    static BundleManifest sample(ModelConfig config, FfnLayout layout, DType dtype) {
        FfnGeometry g = FfnGeometry.of(layout, dtype, config.numLayers(), config.hiddenSize(), config.ffnSize());
        List<BundleManifest.Block> blocks = new ArrayList<>();
        for (int i = 0; i < g.layers(); i++) {
            blocks.add(new BundleManifest.Block(i, g.blockOffset(i), g.blockLength(), 0x89ab0123 + i));
        }
        long embBytes = (long) config.vocabSize() * config.hiddenSize() * dtype.bytes();
        List<BundleManifest.ResidentTensor> tensors = List.of(
                new BundleManifest.ResidentTensor("embed.weight", dtype,
                        new long[] {config.vocabSize(), config.hiddenSize()}, 256, embBytes, 0x1234abcd),
                new BundleManifest.ResidentTensor("norm.bias", dtype, new long[] {config.hiddenSize()},
                        256 + embBytes, (long) config.hiddenSize() * dtype.bytes(), 0xfedcba98));
        long residentSize = 256 + embBytes + (long) config.hiddenSize() * dtype.bytes();
        return new BundleManifest("llmflash test", Instant.parse("2026-11-24T12:00:00Z"), config, dtype,
                new BundleManifest.Source("/models/x", "model.safetensors", "ab".repeat(32)),
                BundleManifest.fingerprint(config, dtype, layout, tensors, blocks),
                new BundleManifest.Resident("resident.safetensors", residentSize, tensors),
                BundleManifest.Ffn.of("ffn.bin", g, "l.{layer}.up", "l.{layer}.down", blocks),
                List.of(new BundleManifest.TokenizerFile("vocab.json", 110044, 0x01020304)));
    }

    @Test
    void roundTripsOpt() throws IOException {
        roundTrip(sample(OPT, FfnLayout.BUNDLED, DType.F16));
        roundTrip(sample(OPT, FfnLayout.SPLIT, DType.F32));
    }

    @Test
    void roundTripsFalcon() throws IOException {
        BundleManifest back = roundTrip(sample(FALCON, FfnLayout.BUNDLED, DType.BF16));
        assertEquals(1e-5f, ((FalconConfig) back.config()).layerNormEpsilon());
    }

    private BundleManifest roundTrip(BundleManifest m) throws IOException {
        Path file = tmp.resolve("manifest.json");
        m.write(file);
        BundleManifest back = BundleManifest.read(file);
        assertEquals(m, back);
        assertEquals(m.config(), back.config());
        assertEquals(m.resident().tensors(), back.resident().tensors());
        assertEquals(List.of("manifest.json"), listNames(tmp), "no temporary file is left");
        // The file is the documented JSON.
        ObjectNode root = (ObjectNode) JSON.readTree(file.toFile());
        assertEquals("llmflash-bundle", root.get("format").asText());
        assertEquals(1, root.get("version").asInt());
        assertEquals(m.config().modelType(), root.get("config").get("model_type").asText());
        assertEquals(Checksums.hex(m.ffn().blocks().get(1).crc32c()),
                root.get("ffn").get("blocks").get(1).get("crc32c").asText());
        assertEquals(m.ffn().bundleStride(), root.get("ffn").get("bundle_stride").asLong());
        return back;
    }

    private static List<String> listNames(Path dir) throws IOException {
        try (var s = Files.list(dir)) {
            return s.map(p -> p.getFileName().toString()).sorted().toList();
        }
    }

    @Test
    void fingerprintDependsOnContent() {
        BundleManifest a = sample(OPT, FfnLayout.BUNDLED, DType.F16);
        assertEquals(a.fingerprint(), sample(OPT, FfnLayout.BUNDLED, DType.F16).fingerprint());
        assertNotEquals(a.fingerprint(), sample(OPT, FfnLayout.SPLIT, DType.F16).fingerprint());
        assertNotEquals(a.fingerprint(), sample(OPT, FfnLayout.BUNDLED, DType.BF16).fingerprint());
        List<BundleManifest.Block> blocks = new ArrayList<>(a.ffn().blocks());
        blocks.set(3, new BundleManifest.Block(3, blocks.get(3).offset(), blocks.get(3).length(), 0));
        assertNotEquals(a.fingerprint(),
                BundleManifest.fingerprint(OPT, DType.F16, FfnLayout.BUNDLED, a.resident().tensors(), blocks));
        assertEquals(64, a.fingerprint().length());
    }

    private Path edited(Consumer<ObjectNode> edit) throws IOException {
        Path file = tmp.resolve("edited.json");
        ObjectNode root = (ObjectNode) JSON.readTree(sample(OPT, FfnLayout.BUNDLED, DType.F16).toJson());
        edit.accept(root);
        Files.write(file, JSON.writeValueAsBytes(root));
        return file;
    }

    private static void assertRefused(Path file, String expected) {
        FormatException e = assertThrows(FormatException.class, () -> BundleManifest.read(file));
        assertTrue(e.getMessage().contains(expected), e.getMessage());
        assertEquals(1, e.getMessage().lines().count(), e.getMessage());
    }

    @Test
    void refusesANewerVersionWithTheDocumentedMessage() throws IOException {
        Path file = edited(r -> r.put("version", 3));
        FormatException e = assertThrows(FormatException.class, () -> BundleManifest.read(file));
        assertEquals(file + ": bundle format version 3 is newer than this llmflash reads (2)"
                + " (upgrade llmflash or re-convert with this version)", e.getMessage());
    }

    /** A quantized bundle's manifest: FFN and a matrix in Q4_0, embeddings in Q8_0, a norm in F16. */
    static BundleManifest quantized(DType ffn) {
        ModelConfig config = OPT;
        FfnGeometry g = FfnGeometry.of(FfnLayout.BUNDLED, ffn, config.numLayers(), config.hiddenSize(), config.ffnSize());
        List<BundleManifest.Block> blocks = new ArrayList<>();
        for (int i = 0; i < g.layers(); i++) {
            blocks.add(new BundleManifest.Block(i, g.blockOffset(i), g.blockLength(), 0x89ab0123 + i));
        }
        long[] emb = {config.vocabSize(), config.hiddenSize()};
        long[] q = {config.hiddenSize(), config.hiddenSize()};
        long embBytes = DType.Q8_0.storageBytes(emb);
        long qBytes = ffn.storageBytes(q);
        long normBytes = 2L * config.hiddenSize();
        List<BundleManifest.ResidentTensor> tensors = List.of(
                new BundleManifest.ResidentTensor("embed.weight", DType.Q8_0, emb, 256, embBytes, 0x1234abcd),
                new BundleManifest.ResidentTensor("q.weight", ffn, q, 256 + embBytes, qBytes, 0x2234abcd),
                new BundleManifest.ResidentTensor("norm.bias", DType.F16, new long[] {config.hiddenSize()},
                        256 + embBytes + qBytes, normBytes, 0xfedcba98));
        return new BundleManifest("llmflash test", Instant.parse("2026-11-24T12:00:00Z"), config, DType.F16,
                new BundleManifest.Source("/models/x", "model.safetensors", "ab".repeat(32)),
                BundleManifest.fingerprint(config, DType.F16, FfnLayout.BUNDLED, tensors, blocks),
                new BundleManifest.Resident("resident.safetensors", 256 + embBytes + qBytes + normBytes, tensors),
                BundleManifest.Ffn.of("ffn.bin", g, "l.{layer}.up", "l.{layer}.down", blocks),
                List.of());
    }

    @Test
    void quantizedManifestsAreVersionTwoAndRoundTrip() throws IOException {
        for (DType dt : new DType[] {DType.Q8_0, DType.Q4_0}) {
            BundleManifest m = quantized(dt);
            Path file = tmp.resolve("q.json");
            m.write(file);
            ObjectNode root = (ObjectNode) JSON.readTree(file.toFile());
            assertEquals(2, root.get("version").asInt());
            assertEquals(dt == DType.Q8_0 ? "q8" : "q4", root.get("quant").asText());
            assertEquals(dt.name(), root.get("ffn").get("dtype").asText());
            BundleManifest back = BundleManifest.read(file);
            assertEquals(m, back);
            assertEquals(m.resident().tensors(), back.resident().tensors());
            assertEquals(dt == DType.Q8_0 ? Quantization.Q8 : Quantization.Q4, back.quant());
            // What an llmflash from before quantization (it reads version 1) says of it.
            FormatException e = assertThrows(FormatException.class,
                    () -> BundleManifest.parse(Files.readAllBytes(file), file, 1));
            assertTrue(e.getMessage().contains("bundle format version 2 is newer than this llmflash reads (1)"),
                    e.getMessage());
            Files.delete(file);
        }
        assertEquals(1, sample(OPT, FfnLayout.BUNDLED, DType.F16).version(), "unquantized bundles stay readable by"
                + " older readers");
    }

    @Test
    void refusesQuantizedContentUnderVersionOneOrAWrongQuantField() throws IOException {
        Path file = tmp.resolve("q.json");
        ObjectNode root = (ObjectNode) JSON.readTree(quantized(DType.Q4_0).toJson());
        root.put("version", 1);
        Files.write(file, JSON.writeValueAsBytes(root));
        assertRefused(file, "is Q8_0 in a version 1 bundle");
        root = (ObjectNode) JSON.readTree(quantized(DType.Q4_0).toJson());
        root.put("quant", "q8");
        Files.write(file, JSON.writeValueAsBytes(root));
        assertRefused(file, "field 'quant' is \"q8\" but ffn.dtype Q4_0 means \"q4\"");
        root = (ObjectNode) JSON.readTree(quantized(DType.Q4_0).toJson());
        ((ObjectNode) root.get("resident").get("tensors").get(1)).putArray("shape").add(256).add(250);
        Files.write(file, JSON.writeValueAsBytes(root));
        assertRefused(file, "resident tensor 'q.weight' cannot be Q4_0[256, 250]");
    }

    @Test
    void refusesOtherFormats() throws IOException {
        assertRefused(edited(r -> r.put("format", "something-else")), "is not an llmflash bundle manifest");
        assertRefused(edited(r -> r.remove("format")), "is not an llmflash bundle manifest");
        assertRefused(edited(r -> r.put("version", 0)), "version 0, which never existed");
        Path notJson = tmp.resolve("bad.json");
        Files.writeString(notJson, "{\"format\": ");
        assertRefused(notJson, "is not valid JSON");
    }

    @Test
    void refusesMissingAndMistypedFields() throws IOException {
        assertRefused(edited(r -> ((ObjectNode) r.get("ffn")).remove("d_model")), "field 'ffn.d_model' is missing");
        assertRefused(edited(r -> ((ObjectNode) r.get("config")).remove("pad_token_id")),
                "field 'config.pad_token_id' is missing");
        assertRefused(edited(r -> ((ObjectNode) r.get("config")).put("hidden_size", "256")),
                "field 'config.hidden_size' should be an integer");
        assertRefused(edited(r -> ((ObjectNode) r.get("config")).put("model_type", "llama")),
                "a bundle holds an opt or falcon model");
        assertRefused(edited(r -> r.put("dtype", "I32")), "a bundle holds F32, F16 or BF16");
        assertRefused(edited(r -> ((ObjectNode) r.get("ffn").get("blocks").get(0)).put("crc32c", "xyz")),
                "not 8 hex digits");
        assertRefused(edited(r -> r.put("created_at", "yesterday")), "not an ISO-8601 instant");
    }

    @Test
    void refusesAnEditedChecksum() throws IOException {
        assertRefused(edited(r -> ((ObjectNode) r.get("ffn").get("blocks").get(2)).put("crc32c", "00000000")),
                "fingerprint");
    }

    @Test
    void refusesInconsistentFfnNumbers() throws IOException {
        assertRefused(edited(r -> ((ObjectNode) r.get("ffn").get("blocks").get(1)).put("offset", 4096)),
                "ffn.blocks[1]");
        assertRefused(edited(r -> ((ObjectNode) r.get("ffn")).put("bundle_stride", 1000)),
                "ffn section describes an impossible file");
        assertRefused(edited(r -> ((ObjectNode) r.get("ffn")).put("size", 12345)), "ffn.size 12345");
        assertRefused(edited(r -> ((ObjectNode) r.get("ffn")).put("down_offset", 0)), "down_offset");
        assertRefused(edited(r -> ((ObjectNode) r.get("config")).put("num_layers", 5)),
                "disagrees with the config");
        assertRefused(edited(r -> ((ObjectNode) r.get("ffn")).put("up_names", "fc1")), "placeholder");
    }

    @Test
    void refusesBadTensorEntriesAndFileNames() throws IOException {
        assertRefused(edited(r -> ((ObjectNode) r.get("resident").get("tensors").get(1)).put("length", 3)),
                "has length 3");
        assertRefused(edited(r -> ((ObjectNode) r.get("resident")).put("size", 300)), "lies outside");
        assertRefused(edited(r -> ((ObjectNode) r.get("resident")).put("file", "../x")), "not a plain file name");
        assertRefused(edited(r -> ((ObjectNode) r.get("tokenizer").get(0)).put("file", "ffn.bin")), "twice");
    }
}
