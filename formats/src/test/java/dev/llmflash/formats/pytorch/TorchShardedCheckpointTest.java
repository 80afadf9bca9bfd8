package dev.llmflash.formats.pytorch;

import dev.llmflash.formats.FormatException;
import dev.llmflash.formats.checkpoint.Checkpoint;
import dev.llmflash.formats.checkpoint.ShardedCheckpoint;
import dev.llmflash.formats.pytorch.PickleWriter.TensorSpec;
import dev.llmflash.formats.tensor.DType;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.List;
import java.util.Set;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertInstanceOf;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

class TorchShardedCheckpointTest {

    @TempDir
    Path dir;

    private static final String SHARD1 = "pytorch_model-00001-of-00002.bin";
    private static final String SHARD2 = "pytorch_model-00002-of-00002.bin";

    /** Two shards as transformers' save_pretrained(max_shard_size=...) writes them, plus the index. */
    private Path writeShardedCheckpoint() throws IOException {
        new TorchZipWriter("pytorch_model-00001-of-00002", PickleWriter.stateDict(List.of(
                new TensorSpec("a.weight", "FloatStorage", "0", 4, 0, new long[]{2, 2}, new long[]{2, 1}),
                new TensorSpec("a.bias", "FloatStorage", "1", 2, 0, new long[]{2}, new long[]{1}))))
                .storage("0", TorchZipWriter.f32(1, 2, 3, 4))
                .storage("1", TorchZipWriter.f32(-1, -2))
                .write(dir.resolve(SHARD1));
        new TorchZipWriter("pytorch_model-00002-of-00002", PickleWriter.stateDict(List.of(
                new TensorSpec("b.weight", "BFloat16Storage", "0", 3, 0, new long[]{3}, new long[]{1}))))
                .storage("0", TorchZipWriter.bf16(0.5f, 8f, -3f))
                .write(dir.resolve(SHARD2));
        return Files.writeString(dir.resolve("pytorch_model.bin.index.json"), """
                {"metadata": {"total_size": 28},
                 "weight_map": {"a.weight": "%s", "a.bias": "%s", "b.weight": "%s"}}
                """.formatted(SHARD1, SHARD1, SHARD2));
    }

    @Test
    void shardsAreOpenedAndMerged() throws IOException {
        Path index = writeShardedCheckpoint();
        try (Checkpoint c = TorchCheckpoint.openSharded(index)) {
            assertEquals(Set.of("a.bias", "a.weight", "b.weight"), c.tensorNames());
            assertEquals(index, c.location());
            assertArrayEquals(new float[]{1, 2, 3, 4}, c.tensor("a.weight").toFloatArray());
            assertArrayEquals(new float[]{-1, -2}, c.tensor("a.bias").toFloatArray());
            assertEquals(DType.BF16, c.tensor("b.weight").dtype());
            assertArrayEquals(new float[]{0.5f, 8f, -3f}, c.tensor("b.weight").toFloatArray());
            ShardedCheckpoint s = assertInstanceOf(ShardedCheckpoint.class, c);
            assertEquals(2, s.shards().size());
            assertInstanceOf(TorchCheckpoint.class, s.shards().get(0));
        }
    }

    @Test
    void missingShardIsReportedByName() throws IOException {
        Path index = writeShardedCheckpoint();
        Files.delete(dir.resolve(SHARD2));
        FormatException e = assertThrows(FormatException.class, () -> TorchCheckpoint.openSharded(index));
        assertTrue(e.getMessage().contains("'" + SHARD2 + "'"), e.getMessage());
        assertFalse(e.getMessage().contains("\n"));
    }

    @Test
    void badShardIsReportedWithItsPath() throws IOException {
        Path index = writeShardedCheckpoint();
        Files.writeString(dir.resolve(SHARD1), "not a zip at all");
        FormatException e = assertThrows(FormatException.class, () -> TorchCheckpoint.openSharded(index));
        assertEquals(dir.resolve(SHARD1).toAbsolutePath().normalize(), e.file().toAbsolutePath().normalize());
    }
}
