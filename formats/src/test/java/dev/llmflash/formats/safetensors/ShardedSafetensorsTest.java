package dev.llmflash.formats.safetensors;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.node.ObjectNode;
import dev.llmflash.formats.FormatException;
import dev.llmflash.formats.checkpoint.Checkpoint;
import dev.llmflash.formats.checkpoint.ShardedCheckpoint;
import dev.llmflash.formats.tensor.DType;
import dev.llmflash.formats.tensor.Tensor;
import dev.llmflash.formats.testing.TestData;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

import java.io.IOException;
import java.lang.foreign.ValueLayout;
import java.nio.channels.FileChannel;
import java.nio.file.Path;
import java.nio.file.StandardOpenOption;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.TreeMap;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

/** {@link ShardedCheckpoint} over safetensors shards: built here with the writer, and the committed Falcon. */
class ShardedSafetensorsTest {

    private static final ObjectMapper JSON = new ObjectMapper();

    @TempDir
    Path dir;

    private static byte[] bytes(int n, int seed) {
        byte[] b = new byte[n];
        for (int i = 0; i < n; i++) {
            b[i] = (byte) (seed + 31 * i);
        }
        return b;
    }

    private Path index(Map<String, String> weightMap) throws IOException {
        ObjectNode root = JSON.createObjectNode();
        root.putObject("metadata").put("total_size", 0);
        ObjectNode map = root.putObject("weight_map");
        weightMap.forEach(map::put);
        Path index = dir.resolve("model.safetensors.index.json");
        JSON.writerWithDefaultPrettyPrinter().writeValue(index.toFile(), root);
        return index;
    }

    private void writeTwoShards() {
        new SafetensorsWriter().metadata("format", "pt")
                .add("layer.0.w", DType.F32, new long[] {2, 3}, bytes(24, 1))
                .add("layer.0.b", DType.F16, new long[] {3}, bytes(6, 2))
                .write(dir.resolve("model-00001-of-00002.safetensors"));
        new SafetensorsWriter().metadata("format", "pt")
                .add("layer.1.w", DType.BF16, new long[] {4, 2}, bytes(16, 3))
                .write(dir.resolve("model-00002-of-00002.safetensors"));
    }

    private static Map<String, String> twoShardMap() {
        Map<String, String> m = new LinkedHashMap<>();
        m.put("layer.0.w", "model-00001-of-00002.safetensors");
        m.put("layer.0.b", "model-00001-of-00002.safetensors");
        m.put("layer.1.w", "model-00002-of-00002.safetensors");
        return m;
    }

    @Test
    void twoShardsReadThroughTheIndex() throws IOException {
        writeTwoShards();
        Path index = index(twoShardMap());
        try (ShardedCheckpoint ckpt = ShardedCheckpoint.open(index, SafetensorsFile::open)) {
            assertEquals(index, ckpt.location());
            assertEquals(List.of("layer.0.b", "layer.0.w", "layer.1.w"), List.copyOf(ckpt.tensorNames()));
            assertEquals(2, ckpt.shards().size());
            assertArrayEquals(bytes(24, 1), ckpt.tensor("layer.0.w").data().toArray(ValueLayout.JAVA_BYTE));
            assertArrayEquals(bytes(6, 2), ckpt.tensor("layer.0.b").data().toArray(ValueLayout.JAVA_BYTE));
            Tensor w1 = ckpt.tensor("layer.1.w");
            assertEquals(DType.BF16, w1.dtype());
            assertArrayEquals(new long[] {4, 2}, w1.shape());
            assertArrayEquals(bytes(16, 3), w1.data().toArray(ValueLayout.JAVA_BYTE));
            assertEquals(dir.resolve("model-00002-of-00002.safetensors"), ckpt.shards().get(1).location());
            FormatException missing = assertThrows(FormatException.class, () -> ckpt.tensor("layer.2.w"));
            assertTrue(missing.getMessage().startsWith(index + ": has no tensor 'layer.2.w'"), missing.getMessage());
        }
    }

    @Test
    void missingShardIsNamed() throws IOException {
        writeTwoShards();
        Map<String, String> m = twoShardMap();
        m.put("layer.2.w", "model-00003-of-00003.safetensors");
        Path index = index(m);
        FormatException e = assertThrows(FormatException.class, () -> ShardedCheckpoint.open(index, SafetensorsFile::open));
        assertTrue(e.getMessage().startsWith(index + ": "), e.getMessage());
        assertTrue(e.getMessage().contains("names shard 'model-00003-of-00003.safetensors' but "
                + dir.resolve("model-00003-of-00003.safetensors") + " does not exist"), e.getMessage());
    }

    @Test
    void indexNamingATensorItsShardLacksIsRefused() throws IOException {
        writeTwoShards();
        Map<String, String> m = twoShardMap();
        m.put("layer.1.w", "model-00001-of-00002.safetensors"); // it is in shard 2
        Path index = index(m);
        FormatException e = assertThrows(FormatException.class, () -> ShardedCheckpoint.open(index, SafetensorsFile::open));
        Path shard1 = dir.resolve("model-00001-of-00002.safetensors");
        assertTrue(e.getMessage().startsWith(shard1 + ": the index model.safetensors.index.json places tensor "
                + "'layer.1.w' in this shard but it is not there"), e.getMessage());
    }

    @Test
    void corruptShardIsNamed() throws IOException {
        writeTwoShards();
        Path shard2 = dir.resolve("model-00002-of-00002.safetensors");
        try (FileChannel ch = FileChannel.open(shard2, StandardOpenOption.WRITE)) {
            ch.truncate(ch.size() - 1);
        }
        Path index = index(twoShardMap());
        FormatException e = assertThrows(FormatException.class, () -> ShardedCheckpoint.open(index, SafetensorsFile::open));
        assertTrue(e.getMessage().startsWith(shard2 + ": tensor 'layer.1.w' ends at byte 16 of the data but the file "
                + "has only 15 data bytes"), e.getMessage());
    }

    /**
     * The committed Falcon checkpoint: every tensor the index names opens, is BF16, and has exactly the
     * shape its config.json implies for HF's FalconForCausalLM (old decoder architecture, multi-query:
     * one shared key/value head, so query_key_value is (hidden + 2 * head_dim) x hidden).
     */
    @Test
    void falconMiniReluOpensAndMatchesItsConfig() throws IOException {
        Path modelDir = TestData.model("falcon-mini-relu");
        JsonNode config = JSON.readTree(modelDir.resolve("config.json").toFile());
        long hidden = config.get("hidden_size").asLong();
        long ffn = config.get("ffn_hidden_size").asLong();
        long vocab = config.get("vocab_size").asLong();
        int layers = config.get("num_hidden_layers").asInt();
        long heads = config.get("num_attention_heads").asLong();
        assertTrue(config.get("multi_query").asBoolean() && !config.get("new_decoder_architecture").asBoolean());
        long headDim = hidden / heads;

        Map<String, long[]> expected = new TreeMap<>();
        expected.put("transformer.word_embeddings.weight", new long[] {vocab, hidden});
        expected.put("transformer.ln_f.weight", new long[] {hidden});
        expected.put("transformer.ln_f.bias", new long[] {hidden});
        for (int l = 0; l < layers; l++) {
            String p = "transformer.h." + l + ".";
            expected.put(p + "input_layernorm.weight", new long[] {hidden});
            expected.put(p + "input_layernorm.bias", new long[] {hidden});
            expected.put(p + "self_attention.query_key_value.weight", new long[] {hidden + 2 * headDim, hidden});
            expected.put(p + "self_attention.dense.weight", new long[] {hidden, hidden});
            expected.put(p + "mlp.dense_h_to_4h.weight", new long[] {ffn, hidden});
            expected.put(p + "mlp.dense_4h_to_h.weight", new long[] {hidden, ffn});
        }

        Path index = modelDir.resolve("model.safetensors.index.json");
        JsonNode indexMeta = JSON.readTree(index.toFile()).get("metadata");
        try (ShardedCheckpoint ckpt = ShardedCheckpoint.open(index, SafetensorsFile::open)) {
            assertEquals(3, ckpt.shards().size());
            assertEquals(List.copyOf(expected.keySet()), List.copyOf(ckpt.tensorNames()));
            long bytes = 0;
            long params = 0;
            List<String> wrong = new ArrayList<>();
            for (Map.Entry<String, long[]> e : expected.entrySet()) {
                Tensor t = ckpt.tensor(e.getKey());
                if (t.dtype() != DType.BF16 || !Arrays.equals(e.getValue(), t.shape())) {
                    wrong.add(t + " expected BF16" + Arrays.toString(e.getValue()));
                }
                // Touch every element: the whole mapping is readable and holds finite trained weights.
                for (long i = 0; i < t.numel(); i++) {
                    if (!Float.isFinite(t.getFloat(i))) {
                        wrong.add(t + " element " + i + " is " + t.getFloat(i));
                        break;
                    }
                }
                bytes += t.data().byteSize();
                params += t.numel();
            }
            assertEquals(List.of(), wrong);
            assertArrayEquals(new long[] {320, 192},
                    ckpt.tensor("transformer.h.0.self_attention.query_key_value.weight").shape());
            assertArrayEquals(new long[] {8192, 192}, ckpt.tensor("transformer.word_embeddings.weight").shape());
            assertEquals(indexMeta.get("total_size").asLong(), bytes, "index metadata total_size");
            assertEquals(indexMeta.get("total_parameters").asLong(), params, "index metadata total_parameters");
            for (Checkpoint shard : ckpt.shards()) {
                assertEquals("pt", ((SafetensorsFile) shard).metadata().get("format"));
            }
        }
    }
}
