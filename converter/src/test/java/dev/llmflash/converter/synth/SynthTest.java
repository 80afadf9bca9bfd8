package dev.llmflash.converter.synth;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import dev.llmflash.converter.synth.TensorSpec.Kind;
import dev.llmflash.formats.LlmflashException;
import dev.llmflash.formats.checkpoint.ShardedCheckpoint;
import dev.llmflash.formats.hf.HfCheckpoint;
import dev.llmflash.formats.safetensors.SafetensorsFile;
import dev.llmflash.formats.tensor.DType;
import dev.llmflash.formats.tensor.Tensor;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import java.util.Map;
import java.util.TreeMap;
import java.util.stream.Stream;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

class SynthTest {
    private static final ObjectMapper JSON = new ObjectMapper();

    @Test
    void tinyShapesOpenAsHfCheckpointsWithEveryTensorAsLaidOut(@TempDir Path tmp) {
        for (String name : List.of("opt-test", "opt-test-postln", "falcon-test")) {
            for (DType dtype : List.of(DType.F16, DType.BF16, DType.F32)) {
                Path dir = tmp.resolve(name + "-" + dtype);
                SynthResult r = Synth.run(SynthOptions.of(name, dir).withDtype(dtype).withSeed(5), Synth.Progress.NONE);
                Shape shape = Shapes.get(name);
                assertEquals(shape.weightBytes(dtype), r.weightBytes());
                try (HfCheckpoint ckpt = HfCheckpoint.open(dir)) {
                    assertEquals(shape.model(), ckpt.config(), name);
                    List<TensorSpec> specs = shape.tensors();
                    assertEquals(specs.stream().map(TensorSpec::name).sorted().toList(),
                            List.copyOf(ckpt.weights().tensorNames()), name + " tensor names");
                    for (TensorSpec s : specs) {
                        Tensor t = ckpt.weights().tensor(s.name());
                        assertEquals(dtype, t.dtype(), s.name());
                        assertArrayEquals(s.shape(), t.shape(), s.name());
                        checkValues(s, t, SeededNormal.key(5, s.name()), shape.initStd());
                    }
                }
            }
        }
    }

    /** Layer norms 1, biases 0, weights the generator's values in the stored dtype. */
    private static void checkValues(TensorSpec s, Tensor t, long key, float std) {
        long n = t.numel();
        for (long i : new long[] {0, 1, n / 3, n / 2 + 1, n - 1}) {
            float got = t.getFloat(i);
            float want = switch (s.kind()) {
                case NORM_WEIGHT -> 1f;
                case BIAS, NORM_BIAS -> 0f;
                case WEIGHT -> round(SeededNormal.value(key, std, i), t.dtype());
            };
            assertEquals(want, got, 0f, s.name() + "[" + i + "]");
        }
    }

    private static float round(float v, DType dtype) {
        return switch (dtype) {
            case F16 -> Float.float16ToFloat(Float.floatToFloat16(v));
            case BF16 -> Float.intBitsToFloat(ChunkPipeline.toBf16(v) << 16);
            default -> v;
        };
    }

    @Test
    void theSameSeedWritesIdenticalBytesWhateverTheThreadsAndAnotherSeedDifferentWeights(@TempDir Path tmp) throws IOException {
        Path a = tmp.resolve("a");
        Path b = tmp.resolve("b");
        Path c = tmp.resolve("c");
        long shard = 40_000;
        Synth.run(SynthOptions.of("falcon-test", a).withSeed(9).withThreads(1).withShardBytes(shard), Synth.Progress.NONE);
        Synth.run(SynthOptions.of("falcon-test", b).withSeed(9).withThreads(3).withShardBytes(shard), Synth.Progress.NONE);
        Synth.run(SynthOptions.of("falcon-test", c).withSeed(10).withThreads(2).withShardBytes(shard), Synth.Progress.NONE);
        List<String> files = fileNames(a);
        assertEquals(files, fileNames(b));
        assertEquals(files, fileNames(c));
        assertTrue(files.stream().filter(f -> f.endsWith(".safetensors")).count() > 2, "sharded: " + files);
        for (String f : files) {
            byte[] fa = Files.readAllBytes(a.resolve(f));
            assertArrayEquals(fa, Files.readAllBytes(b.resolve(f)), f + " identical for the same seed");
            byte[] fc = Files.readAllBytes(c.resolve(f));
            if (f.endsWith(".safetensors")) {
                assertFalse(Arrays.equals(fa, fc), f + " differs for another seed");
            } else if (!f.equals(Synth.SYNTH_JSON)) {
                assertArrayEquals(fa, fc, f + " does not depend on the seed");
            }
        }
        // Every weight matrix differs with the seed, not just some.
        try (HfCheckpoint ca = HfCheckpoint.open(a); HfCheckpoint cc = HfCheckpoint.open(c)) {
            for (TensorSpec s : Shapes.get("falcon-test").tensors()) {
                if (s.kind() == Kind.WEIGHT) {
                    assertTrue(ca.weights().tensor(s.name()).data().mismatch(cc.weights().tensor(s.name()).data()) >= 0,
                            s.name());
                }
            }
        }
    }

    @Test
    void shardsRespectTheLimitAndTheIndexMatchesThem(@TempDir Path tmp) throws IOException {
        long limit = 300_000; // opt-test: embed_tokens (6.4 MB) and embed_positions (262 KB) ... fc weights 32 KB
        Path dir = tmp.resolve("opt");
        Synth.run(SynthOptions.of("opt-test", dir).withShardBytes(limit), Synth.Progress.NONE);
        JsonNode index = JSON.readTree(dir.resolve(HfCheckpoint.SAFETENSORS_INDEX).toFile());
        Map<String, String> weightMap = ShardedCheckpoint.readWeightMap(dir.resolve(HfCheckpoint.SAFETENSORS_INDEX));
        Shape shape = Shapes.get("opt-test");
        assertEquals(shape.tensors().size(), weightMap.size());
        assertEquals(shape.weightBytes(DType.F16), index.get("metadata").get("total_size").asLong());

        List<String> shardFiles = fileNames(dir).stream().filter(f -> f.endsWith(".safetensors")).toList();
        int n = shardFiles.size();
        assertTrue(n >= 3, "several shards: " + shardFiles);
        for (int i = 0; i < n; i++) {
            assertEquals(String.format("model-%05d-of-%05d.safetensors", i + 1, n), shardFiles.get(i));
        }
        long sum = 0;
        Map<String, String> found = new TreeMap<>();
        for (String f : shardFiles) {
            try (SafetensorsFile sf = SafetensorsFile.open(dir.resolve(f))) {
                long bytes = 0;
                for (String t : sf.tensorNames()) {
                    bytes += sf.tensor(t).data().byteSize();
                    found.put(t, f);
                }
                assertTrue(bytes <= limit || sf.tensorNames().size() == 1,
                        f + " has " + bytes + " bytes in " + sf.tensorNames().size() + " tensors");
                sum += bytes;
            }
        }
        assertEquals(sum, index.get("metadata").get("total_size").asLong());
        assertEquals(weightMap, found, "the weight map names each tensor's shard");
    }

    @Test
    void shardingFollowsHuggingFacesGreedySplit() {
        // Sizes 3, 3, 3, 10, 2 (f32 elements x4 bytes) with a limit of 7 x 4 bytes: [3, 3] closes when
        // the third 3 comes; 10 is alone (before the shard being filled); then [3, 2].
        List<TensorSpec> specs = new ArrayList<>();
        long[] sizes = {3, 3, 3, 10, 2};
        for (int i = 0; i < sizes.length; i++) {
            specs.add(new TensorSpec("t" + i, new long[] {sizes[i]}, Kind.WEIGHT, TensorSpec.Role.OTHER));
        }
        List<Sharding.Shard> shards = Sharding.plan(specs, DType.F32, 28);
        assertEquals(List.of(List.of("t0", "t1"), List.of("t3"), List.of("t2", "t4")),
                shards.stream().map(s -> s.tensors().stream().map(TensorSpec::name).toList()).toList());
        assertEquals(List.of("model-00001-of-00003.safetensors", "model-00002-of-00003.safetensors",
                "model-00003-of-00003.safetensors"), shards.stream().map(Sharding.Shard::file).toList());
        assertEquals(List.of(24L, 40L, 20L), shards.stream().map(Sharding.Shard::bytes).toList());
        // One shard: model.safetensors, as save_pretrained names it.
        assertEquals("model.safetensors", Sharding.plan(specs, DType.F32, 1000).getFirst().file());
    }

    @Test
    void oneShardIsModelSafetensorsWithoutAnIndex(@TempDir Path tmp) {
        Path dir = tmp.resolve("m");
        SynthResult r = Synth.run(SynthOptions.of("opt-test-postln", dir), Synth.Progress.NONE);
        assertTrue(Files.isRegularFile(dir.resolve(HfCheckpoint.SAFETENSORS)));
        assertFalse(Files.exists(dir.resolve(HfCheckpoint.SAFETENSORS_INDEX)));
        assertEquals(List.of("config.json", "generation_config.json", "merges.txt", "model.safetensors", "synth.json",
                "tokenizer_config.json", "vocab.json"), r.files());
    }

    @Test
    void progressReachesTheTotalInOrder(@TempDir Path tmp) {
        List<long[]> calls = new ArrayList<>();
        Synth.run(SynthOptions.of("opt-test", tmp.resolve("m")), (done, total) -> calls.add(new long[] {done, total}));
        long total = Shapes.get("opt-test").weightBytes(DType.F16);
        assertFalse(calls.isEmpty());
        long prev = 0;
        for (long[] c : calls) {
            assertEquals(total, c[1]);
            assertTrue(c[0] > prev, "increasing");
            prev = c[0];
        }
        assertEquals(total, prev);
    }

    @Test
    void anExistingOutputIsRefusedUnlessForcedAndOnlyAModelFolderIsReplaced(@TempDir Path tmp) throws IOException {
        Path dir = tmp.resolve("m");
        Synth.run(SynthOptions.of("opt-test", dir).withSeed(1), Synth.Progress.NONE);
        byte[] before = Files.readAllBytes(dir.resolve("model.safetensors"));
        LlmflashException e = assertThrows(LlmflashException.class,
                () -> Synth.run(SynthOptions.of("opt-test", dir).withSeed(2), Synth.Progress.NONE));
        assertTrue(e.getMessage().contains("already exists") && e.getMessage().contains("--force"), e.getMessage());
        assertArrayEquals(before, Files.readAllBytes(dir.resolve("model.safetensors")), "untouched");

        Synth.run(SynthOptions.of("opt-test", dir).withSeed(2).withForce(true), Synth.Progress.NONE);
        assertFalse(Arrays.equals(before, Files.readAllBytes(dir.resolve("model.safetensors"))), "replaced");

        Path notAModel = Files.createDirectory(tmp.resolve("photos"));
        Files.writeString(notAModel.resolve("cat.jpg"), "meow");
        e = assertThrows(LlmflashException.class,
                () -> Synth.run(SynthOptions.of("opt-test", notAModel).withForce(true), Synth.Progress.NONE));
        assertTrue(e.getMessage().contains("not a model folder"), e.getMessage());
        assertTrue(Files.exists(notAModel.resolve("cat.jpg")));
        // No temporary folders are left next to the outputs.
        try (Stream<Path> s = Files.list(tmp)) {
            assertEquals(List.of("m", "photos"), s.map(p -> p.getFileName().toString()).sorted().toList());
        }
    }

    @Test
    void aFailedRunLeavesNothingBehind(@TempDir Path tmp) throws IOException {
        // The output's parent is a file: creating the temporary sibling fails before anything is written.
        Path file = Files.writeString(tmp.resolve("file"), "x");
        LlmflashException e = assertThrows(LlmflashException.class,
                () -> Synth.run(SynthOptions.of("opt-test", file.resolve("m")), Synth.Progress.NONE));
        assertTrue(e.getMessage().contains("cannot create"), e.getMessage());
        // A failure halfway through the weights (here: the progress callback throws, on the writing
        // thread, inside a tensor's content) removes the half-written folder.
        Path dir = tmp.resolve("m");
        IllegalStateException boom = assertThrows(IllegalStateException.class,
                () -> Synth.run(SynthOptions.of("opt-test", dir).withShardBytes(1_000_000), (done, total) -> {
                    if (done > total / 2) {
                        throw new IllegalStateException("boom");
                    }
                }));
        assertEquals("boom", boom.getMessage());
        assertFalse(Files.exists(dir));
        try (Stream<Path> s = Files.list(tmp)) {
            assertEquals(List.of("file"), s.map(p -> p.getFileName().toString()).toList());
        }
    }

    @Test
    void badOptionsAreRefusedWithOneClearLine(@TempDir Path tmp) {
        Path dir = tmp.resolve("m");
        assertTrue(assertThrows(LlmflashException.class, () -> SynthOptions.of("opt-test", dir).withDtype(DType.I8))
                .getMessage().contains("F16, BF16 or F32"));
        assertTrue(assertThrows(LlmflashException.class, () -> SynthOptions.of("opt-test", dir).withFfnActive(1.5))
                .getMessage().contains("between 0 and 1"));
        assertTrue(assertThrows(LlmflashException.class, () -> SynthOptions.of("opt-test", dir).withShardBytes(0))
                .getMessage().contains("--shard-size"));
        assertTrue(assertThrows(LlmflashException.class, () -> SynthOptions.of("opt-test", dir).withThreads(0))
                .getMessage().contains("--threads"));
        LlmflashException e = assertThrows(LlmflashException.class,
                () -> Synth.run(SynthOptions.of("falcon-7b", dir).withFfnActive(0.03), Synth.Progress.NONE));
        assertTrue(e.getMessage().contains("GELU") && e.getMessage().contains("falcon-7b-relu"), e.getMessage());
        assertFalse(Files.exists(dir));
    }

    private static List<String> fileNames(Path dir) throws IOException {
        try (Stream<Path> s = Files.list(dir)) {
            return s.map(p -> p.getFileName().toString()).sorted().toList();
        }
    }

}
