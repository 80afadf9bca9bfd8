package dev.llmflash.formats.hf;

import dev.llmflash.formats.FormatException;
import dev.llmflash.formats.checkpoint.Checkpoint;
import dev.llmflash.formats.safetensors.SafetensorsFile;
import dev.llmflash.formats.testing.TestData;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertInstanceOf;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

/** config.json -> typed configs, following HF's rules (defaults, legacy keys, Falcon's K/V head rule). */
class HfConfigTest {
    @TempDir
    Path tmp;

    private ModelConfig read(String json) throws IOException {
        Path dir = Files.createTempDirectory(tmp, "m");
        Files.writeString(dir.resolve("config.json"), json);
        return HfConfig.read(dir);
    }

    private FormatException refused(String json) throws IOException {
        Path dir = Files.createTempDirectory(tmp, "m");
        Files.writeString(dir.resolve("config.json"), json);
        FormatException e = assertThrows(FormatException.class, () -> HfConfig.read(dir));
        assertTrue(e.getMessage().contains("config.json"), e.getMessage());
        assertEquals(1, e.getMessage().lines().count());
        return e;
    }

    @Test
    void committedCheckpoints() {
        OptConfig opt = assertInstanceOf(OptConfig.class, HfConfig.read(TestData.model("opt-mini")));
        assertEquals(256, opt.hiddenSize());
        assertEquals(1024, opt.ffnSize());
        assertTrue(opt.layerNormBefore() && opt.finalLayerNorm() && !opt.hasProjections());

        OptConfig post = assertInstanceOf(OptConfig.class, HfConfig.read(TestData.model("opt-tiny-postln-bin")));
        assertFalse(post.layerNormBefore());
        assertFalse(post.finalLayerNorm(), "post-LN OPT has no final layer norm (HF: do_layer_norm_before and not _remove_final_layer_norm)");
        assertTrue(post.hasProjections());
        assertEquals(32, post.wordEmbedProjDim());

        FalconConfig f = assertInstanceOf(FalconConfig.class, HfConfig.read(TestData.model("falcon-mini-relu")));
        assertEquals(1, f.numKvHeads(), "multi_query without new_decoder_architecture: one K/V head despite num_kv_heads 3");
        assertEquals(FalconConfig.QkvLayout.MULTI_QUERY, f.qkvLayout());
        assertEquals(320, f.qkvRows());
        assertEquals("relu", f.activation());
        assertEquals(1, f.lnPerBlock());
        assertEquals(10000.0, f.ropeTheta());
    }

    @Test
    void falconDefaultsAndLegacyKeys() throws IOException {
        // RefinedWeb-era keys (n_head, n_layer, n_head_kv), 40B style.
        FalconConfig f = (FalconConfig) read("""
                {"model_type": "RefinedWeb", "hidden_size": 64, "n_head": 8, "n_layer": 2, "n_head_kv": 2,
                 "new_decoder_architecture": true, "vocab_size": 100}""");
        assertEquals(8, f.numHeads());
        assertEquals(2, f.numLayers());
        assertEquals(2, f.numKvHeads());
        assertEquals(FalconConfig.QkvLayout.GROUPED, f.qkvLayout());
        assertEquals(2, f.lnPerBlock(), "new_decoder_architecture defaults to ln_attn + ln_mlp");
        assertEquals(256, f.ffnSize(), "ffn_hidden_size defaults to 4 x hidden");
        assertEquals("gelu", f.activation(), "FalconConfig's default activation");
        assertEquals((8 + 4) * 8, f.qkvRows());

        FalconConfig plain = (FalconConfig) read("""
                {"model_type": "falcon", "hidden_size": 64, "num_attention_heads": 4, "multi_query": false, "rope_theta": 500.0}""");
        assertEquals(4, plain.numKvHeads());
        assertEquals(FalconConfig.QkvLayout.INTERLEAVED, plain.qkvLayout());
        assertEquals(500.0, plain.ropeTheta());
    }

    @Test
    void optDefaults() throws IOException {
        OptConfig o = (OptConfig) read("{\"architectures\": [\"OPTForCausalLM\"], \"hidden_size\": 64, \"num_attention_heads\": 4}");
        assertEquals(64, o.wordEmbedProjDim());
        assertEquals(50272, o.vocabSize());
        assertEquals(2048, o.maxPositions());
        assertEquals("relu", o.activation());
        assertTrue(o.enableBias() && o.tieWordEmbeddings());
        assertEquals(2, o.eosTokenId());
    }

    @Test
    void refusals() throws IOException {
        assertTrue(refused("{\"model_type\": \"llama\"}").getMessage().contains("llama"));
        assertTrue(refused("{\"model_type\": \"falcon\", \"alibi\": true}").getMessage().contains("ALiBi"));
        assertTrue(refused("{\"model_type\": \"opt\", \"hidden_size\": 10, \"num_attention_heads\": 3}").getMessage().contains("divisible"));
        assertTrue(refused("{\"model_type\": \"opt\", \"activation_function\": \"silu\"}").getMessage().contains("silu"));
        assertTrue(refused("{\"model_type\": \"opt\", \"hidden_size\": -4}").getMessage().contains("hidden_size"));
        assertTrue(refused("{\"model_type\": \"falcon\", \"rope_scaling\": {\"type\": \"linear\", \"factor\": 2}}").getMessage().contains("rope_scaling"));
        assertTrue(refused("{\"model_type\": \"opt\", ").getMessage().contains("JSON"));
        assertTrue(refused("[1, 2]").getMessage().contains("object"));
        assertTrue(refused("{\"architectures\": [\"GPT2LMHeadModel\"]}").getMessage().contains("GPT2LMHeadModel"));
    }

    @Test
    void hfCheckpointPicksTheWeightsLayout() throws IOException {
        try (HfCheckpoint a = HfCheckpoint.open(TestData.model("opt-mini"))) {
            assertInstanceOf(SafetensorsFile.class, a.weights());
        }
        try (HfCheckpoint b = HfCheckpoint.open(TestData.model("falcon-mini-relu"))) {
            assertTrue(b.weights().location().getFileName().toString().equals(HfCheckpoint.SAFETENSORS_INDEX));
        }
        try (HfCheckpoint c = HfCheckpoint.open(TestData.model("opt-tiny-postln-bin"))) {
            Checkpoint w = c.weights();
            assertEquals(HfCheckpoint.TORCH, w.location().getFileName().toString());
        }
        Path empty = Files.createDirectories(tmp.resolve("empty"));
        FormatException noCfg = assertThrows(FormatException.class, () -> HfCheckpoint.open(empty));
        assertTrue(noCfg.getMessage().contains("config.json"));
        Files.copy(TestData.model("opt-mini").resolve("config.json"), empty.resolve("config.json"));
        FormatException noWeights = assertThrows(FormatException.class, () -> HfCheckpoint.open(empty));
        assertTrue(noWeights.getMessage().contains("has no weights"), noWeights.getMessage());
    }
}
