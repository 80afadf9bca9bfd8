package dev.llmflash.runtime.model;

import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.node.ObjectNode;
import dev.llmflash.formats.tensor.DType;
import dev.llmflash.formats.checkpoint.Checkpoint;
import dev.llmflash.formats.hf.FalconConfig;
import dev.llmflash.formats.hf.HfCheckpoint;
import dev.llmflash.formats.safetensors.SafetensorsWriter;
import dev.llmflash.formats.tensor.Tensor;
import dev.llmflash.formats.testing.TestData;
import dev.llmflash.runtime.kernels.Kernels;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

import java.io.ByteArrayOutputStream;
import java.io.IOException;
import java.lang.foreign.ValueLayout;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.function.Function;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * Falcon's two other fused-QKV layouts, checked against Hugging Face's reference logits through an
 * exact equivalence: falcon-mini-relu (7B style: multi-query, one K/V head, one input_layernorm) is
 * rewritten as (a) a 40B-style {@code new_decoder_architecture} model with 3 K/V groups, each
 * holding a copy of the shared K/V head, and ln_attn = ln_mlp = input_layernorm, and (b) a
 * {@code multi_query: false} model whose per-head [q, k, v] blocks copy the shared K/V head. Both
 * compute the same function as the original, so their logits must match HF's for the original.
 */
class FalconLayoutsTest {
    @TempDir
    Path tmp;

    @Test
    void groupedNewDecoderArchitectureMatchesReference() throws IOException {
        Path dir = rewrite("falcon-40b-style", cfg -> {
            cfg.put("new_decoder_architecture", true);
            cfg.put("num_kv_heads", 3);
            return cfg;
        }, true);
        assertMatchesReference(dir, FalconConfig.QkvLayout.GROUPED, 3);
    }

    @Test
    void interleavedLayoutMatchesReference() throws IOException {
        Path dir = rewrite("falcon-interleaved", cfg -> {
            cfg.put("multi_query", false);
            cfg.put("num_kv_heads", 3);
            return cfg;
        }, false);
        assertMatchesReference(dir, FalconConfig.QkvLayout.INTERLEAVED, 3);
    }

    private void assertMatchesReference(Path dir, FalconConfig.QkvLayout layout, int kvHeads) {
        for (Reference.Prompt p : Reference.prompts()) {
            if (!p.model().equals("falcon-mini-relu")) {
                continue;
            }
            try (Kernels k = new Kernels(2); LanguageModel m = Models.openHf(dir, k)) {
                FalconConfig c = (FalconConfig) m.config();
                assertEquals(layout, c.qkvLayout());
                assertEquals(kvHeads, c.numKvHeads());
                float[][] expected = Reference.logits(p);
                int seq = p.inputIds().length, vocab = c.vocabSize();
                float[] logits = new float[seq * vocab];
                m.forward(m.newState(seq, DType.F32), p.inputIds(), seq, true, logits);
                for (int s = 0; s < seq; s++) {
                    float maxDiff = 0;
                    for (int v = 0; v < vocab; v++) {
                        maxDiff = Math.max(maxDiff, Math.abs(logits[s * vocab + v] - expected[s][v]));
                    }
                    assertTrue(maxDiff <= HuggingFaceParityTest.LOGIT_TOLERANCE, p + " " + layout + " position " + s + ": " + maxDiff);
                }
            }
        }
    }

    /**
     * Copies falcon-mini-relu into {@code name} with an edited config and every layer's fused QKV
     * weight rearranged: grouped (per group: q_g, k, v) or interleaved (per head: q_h, k, v).
     * With {@code twoNorms}, input_layernorm becomes ln_attn and ln_mlp.
     */
    private Path rewrite(String name, Function<ObjectNode, ObjectNode> editConfig, boolean twoNorms) throws IOException {
        Path src = TestData.model("falcon-mini-relu");
        Path dir = Files.createDirectories(tmp.resolve(name));
        ObjectMapper om = new ObjectMapper();
        ObjectNode cfg = (ObjectNode) om.readTree(src.resolve("config.json").toFile());
        Files.writeString(dir.resolve("config.json"), om.writeValueAsString(editConfig.apply(cfg)));
        for (String f : new String[] {"vocab.json", "merges.txt", "tokenizer.json", "tokenizer_config.json"}) {
            Files.copy(src.resolve(f), dir.resolve(f));
        }
        try (HfCheckpoint hf = HfCheckpoint.open(src)) {
            Checkpoint ck = hf.weights();
            int nh = hf.config().numHeads(), hd = hf.config().headDim(), d = hf.config().hiddenSize();
            SafetensorsWriter w = new SafetensorsWriter();
            for (String t : ck.tensorNames()) {
                Tensor tensor = ck.tensor(t);
                if (t.endsWith("self_attention.query_key_value.weight")) {
                    // rows: q_0..q_{nh-1}, k, v (multi-query); each row is d bf16 values
                    long rowBytes = (long) d * tensor.dtype().bytes();
                    ByteArrayOutputStream out = new ByteArrayOutputStream();
                    for (int h = 0; h < nh; h++) {
                        out.writeBytes(tensor.data().asSlice((long) h * hd * rowBytes, hd * rowBytes).toArray(ValueLayout.JAVA_BYTE));
                        out.writeBytes(tensor.data().asSlice((long) nh * hd * rowBytes, 2 * hd * rowBytes).toArray(ValueLayout.JAVA_BYTE));
                    }
                    w.add(t, tensor.dtype(), new long[] {3L * nh * hd, d}, out.toByteArray());
                } else if (twoNorms && t.contains(".input_layernorm.")) {
                    w.add(t.replace(".input_layernorm.", ".ln_attn."), tensor.dtype(), tensor.shape(), tensor.data());
                    w.add(t.replace(".input_layernorm.", ".ln_mlp."), tensor.dtype(), tensor.shape(), tensor.data());
                } else {
                    w.add(t, tensor.dtype(), tensor.shape(), tensor.data());
                }
            }
            w.write(dir.resolve("model.safetensors"));
        }
        return dir;
    }
}
