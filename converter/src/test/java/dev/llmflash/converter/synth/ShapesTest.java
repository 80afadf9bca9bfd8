package dev.llmflash.converter.synth;

import dev.llmflash.formats.LlmflashException;
import dev.llmflash.formats.hf.FalconConfig;
import dev.llmflash.formats.hf.HfConfig;
import dev.llmflash.formats.hf.ModelConfig;
import dev.llmflash.formats.hf.OptConfig;
import dev.llmflash.formats.tensor.DType;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.HashSet;
import java.util.List;
import java.util.Map;
import java.util.Set;
import java.util.stream.Collectors;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

class ShapesTest {

    /**
     * Parameter counts of the released checkpoints (tied LM head counted once), as HF's
     * {@code model.num_parameters()} reports them: OPT-125m 125.2M, OPT-350m 331.2M, OPT-1.3b 1.316B,
     * OPT-2.7b 2.652B, OPT-6.7b 6.658B, OPT-13b 12.853B, Falcon-7b 6.922B.
     */
    private static final Map<String, Long> REAL_PARAMETERS = Map.of(
            "opt-125m", 125_239_296L,
            "opt-350m", 331_196_416L,
            "opt-1.3b", 1_315_758_080L,
            "opt-2.7b", 2_651_596_800L,
            "opt-6.7b", 6_658_473_984L,
            "opt-13b", 12_853_473_280L,
            "falcon-7b", 6_921_720_704L,
            "falcon-7b-relu", 6_921_720_704L);

    @Test
    void realShapesHaveTheRealParameterCounts() {
        for (Map.Entry<String, Long> e : REAL_PARAMETERS.entrySet()) {
            Shape s = Shapes.get(e.getKey());
            assertEquals(e.getValue(), s.parameters(), e.getKey());
            assertEquals(e.getValue(), closedForm(s.model()), e.getKey() + " closed form");
        }
        assertEquals(2 * 6_658_473_984L, Shapes.get("opt-6.7b").weightBytes(DType.F16), "13.3 GB as f16");
    }

    /** The parameter count written out per architecture, independently of Layout's tensor list. */
    private static long closedForm(ModelConfig m) {
        long v = m.vocabSize(), d = m.hiddenSize(), f = m.ffnSize(), layers = m.numLayers();
        return switch (m) {
            case OptConfig c -> {
                long e = c.wordEmbedProjDim();
                long perLayer = 4 * (d * d + d) + (f * d + f) + (d * f + d) + 4 * d;
                yield v * e + (c.maxPositions() + 2L) * d + (c.hasProjections() ? 2 * d * e : 0)
                        + (c.finalLayerNorm() ? 2 * d : 0) + layers * perLayer;
            }
            case FalconConfig c -> {
                long qkv = (long) (c.numHeads() + 2 * c.numKvHeads()) * c.headDim() * d;
                yield v * d + layers * (qkv + d * d + 2 * d * f + 2 * d) + 2 * d;
            }
        };
    }

    @Test
    void theWrittenConfigReadsBackAsTheShapesArchitecture(@TempDir Path dir) throws IOException {
        for (String name : Shapes.names()) {
            Shape s = Shapes.get(name);
            Path d = Files.createDirectory(dir.resolve(name));
            HfJson.write(d.resolve("config.json"), s.configJson(DType.BF16));
            ModelConfig read = HfConfig.read(d);
            assertEquals(s.model(), read, name);
            assertEquals("bfloat16", s.configJson(DType.BF16).get("torch_dtype").asText(), name);
        }
    }

    @Test
    void realConfigsCarryTheReleasedValues() {
        var opt67 = Shapes.get("opt-6.7b").configJson(DType.F16);
        assertEquals(4096, opt67.get("hidden_size").asInt());
        assertEquals(16384, opt67.get("ffn_dim").asInt());
        assertEquals(32, opt67.get("num_hidden_layers").asInt());
        assertEquals(32, opt67.get("num_attention_heads").asInt());
        assertEquals(50272, opt67.get("vocab_size").asInt());
        assertEquals(2048, opt67.get("max_position_embeddings").asInt());
        assertEquals("OPTForCausalLM", opt67.get("architectures").get(0).asText());
        assertEquals("float16", opt67.get("torch_dtype").asText());

        var opt350 = Shapes.get("opt-350m").configJson(DType.F16);
        assertFalse(opt350.get("do_layer_norm_before").asBoolean());
        assertEquals(512, opt350.get("word_embed_proj_dim").asInt());

        var falcon = Shapes.get("falcon-7b").configJson(DType.BF16);
        assertEquals(4544, falcon.get("hidden_size").asInt());
        assertEquals(71, falcon.get("num_attention_heads").asInt());
        assertEquals(32, falcon.get("num_hidden_layers").asInt());
        assertEquals(65024, falcon.get("vocab_size").asInt());
        assertTrue(falcon.get("multi_query").asBoolean());
        assertTrue(falcon.get("parallel_attn").asBoolean());
        assertFalse(falcon.get("bias").asBoolean());
        assertFalse(falcon.has("activation"), "the release relies on the gelu default");
        assertEquals(11, falcon.get("eos_token_id").asInt());
        assertEquals("relu", Shapes.get("falcon-7b-relu").configJson(DType.BF16).get("activation").asText());
        // Keys are sorted, as save_pretrained writes them.
        List<String> keys = iterable(falcon.fieldNames());
        assertEquals(keys.stream().sorted().toList(), keys);
    }

    @Test
    void tensorNamesAndShapesAreHfs() {
        Map<String, long[]> opt350 = shapes("opt-350m");
        assertArrayEquals(new long[] {50272, 512}, opt350.get("model.decoder.embed_tokens.weight"));
        assertArrayEquals(new long[] {2050, 1024}, opt350.get("model.decoder.embed_positions.weight"));
        assertArrayEquals(new long[] {512, 1024}, opt350.get("model.decoder.project_out.weight"));
        assertArrayEquals(new long[] {1024, 512}, opt350.get("model.decoder.project_in.weight"));
        assertFalse(opt350.containsKey("model.decoder.final_layer_norm.weight"), "post-LN has no final norm");
        assertFalse(opt350.containsKey("lm_head.weight"), "tied head is not saved");
        assertEquals(4 + 24 * 16, opt350.size());

        Map<String, long[]> opt67 = shapes("opt-6.7b");
        assertArrayEquals(new long[] {2050, 4096}, opt67.get("model.decoder.embed_positions.weight"));
        assertArrayEquals(new long[] {16384, 4096}, opt67.get("model.decoder.layers.31.fc1.weight"));
        assertArrayEquals(new long[] {16384}, opt67.get("model.decoder.layers.31.fc1.bias"));
        assertArrayEquals(new long[] {4096, 16384}, opt67.get("model.decoder.layers.0.fc2.weight"));
        assertArrayEquals(new long[] {4096}, opt67.get("model.decoder.final_layer_norm.bias"));
        assertArrayEquals(new long[] {4096}, opt67.get("model.decoder.layers.5.self_attn_layer_norm.weight"));
        assertFalse(opt67.containsKey("model.decoder.project_in.weight"));
        assertEquals(4 + 32 * 16, opt67.size());

        Map<String, long[]> falcon = shapes("falcon-7b");
        assertArrayEquals(new long[] {65024, 4544}, falcon.get("transformer.word_embeddings.weight"));
        assertArrayEquals(new long[] {(71 + 2) * 64, 4544}, falcon.get("transformer.h.0.self_attention.query_key_value.weight"));
        assertArrayEquals(new long[] {4544, 4544}, falcon.get("transformer.h.0.self_attention.dense.weight"));
        assertArrayEquals(new long[] {18176, 4544}, falcon.get("transformer.h.31.mlp.dense_h_to_4h.weight"));
        assertArrayEquals(new long[] {4544, 18176}, falcon.get("transformer.h.31.mlp.dense_4h_to_h.weight"));
        assertArrayEquals(new long[] {4544}, falcon.get("transformer.h.7.input_layernorm.bias"));
        assertArrayEquals(new long[] {4544}, falcon.get("transformer.ln_f.weight"));
        assertFalse(falcon.keySet().stream().anyMatch(n -> n.endsWith("dense.bias") || n.endsWith("value.bias")),
                "bias: false");
        assertEquals(1 + 32 * 6 + 2, falcon.size());
    }

    @Test
    void stateDictOrderIsModuleRegistrationOrder() {
        List<String> names = Shapes.get("opt-125m").tensors().stream().map(TensorSpec::name).toList();
        assertEquals(List.of("model.decoder.embed_tokens.weight", "model.decoder.embed_positions.weight",
                "model.decoder.final_layer_norm.weight", "model.decoder.final_layer_norm.bias",
                "model.decoder.layers.0.self_attn.k_proj.weight", "model.decoder.layers.0.self_attn.k_proj.bias",
                "model.decoder.layers.0.self_attn.v_proj.weight"), names.subList(0, 7));
        Set<String> unique = new HashSet<>(names);
        assertEquals(names.size(), unique.size(), "no duplicates");
    }

    @Test
    void anUnknownShapeNamesTheKnownOnes() {
        LlmflashException e = assertThrows(LlmflashException.class, () -> Shapes.get("opt-7b"));
        assertTrue(e.getMessage().contains("opt-6.7b") && e.getMessage().contains("falcon-7b"), e.getMessage());
    }

    private static Map<String, long[]> shapes(String shape) {
        return Shapes.get(shape).tensors().stream().collect(Collectors.toMap(TensorSpec::name, TensorSpec::shape));
    }

    private static <T> List<T> iterable(java.util.Iterator<T> it) {
        List<T> out = new java.util.ArrayList<>();
        it.forEachRemaining(out::add);
        return out;
    }
}
