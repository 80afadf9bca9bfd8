package dev.llmflash.converter.synth;

import dev.llmflash.formats.LlmflashException;
import dev.llmflash.formats.hf.FalconConfig;
import dev.llmflash.formats.hf.OptConfig;

import java.util.Collections;
import java.util.HashMap;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;

/**
 * The named shapes {@code synth} writes. The real ones carry the {@code config.json} of the released
 * checkpoint; their architecture values are those of the Hugging Face repos (facebook/opt-* as converted
 * from metaseq in 2022; tiiuae/falcon-7b after its move to the in-library {@code FalconForCausalLM}),
 * and match the OPT paper's Table 1 (Zhang et al. 2022) and the Falcon report (Almazrouei et al. 2023).
 * Bookkeeping keys ({@code _name_or_path}, {@code transformers_version}) are as released as far as we
 * know them; {@code torch_dtype} follows the dtype written. Falcon-7b's {@code auto_map} is left out: it
 * points at remote-code files a synthesized folder does not have.
 *
 * <table>
 *   <caption>Shapes</caption>
 *   <tr><th>name</th><th>d</th><th>layers</th><th>heads</th><th>ffn</th><th>vocab</th><th>parameters</th></tr>
 *   <tr><td>opt-125m</td><td>768</td><td>12</td><td>12</td><td>3072</td><td>50272</td><td>125,239,296</td></tr>
 *   <tr><td>opt-350m</td><td>1024 (embeddings 512, post-LN)</td><td>24</td><td>16</td><td>4096</td><td>50272</td><td>331,196,416</td></tr>
 *   <tr><td>opt-1.3b</td><td>2048</td><td>24</td><td>32</td><td>8192</td><td>50272</td><td>1,315,758,080</td></tr>
 *   <tr><td>opt-2.7b</td><td>2560</td><td>32</td><td>32</td><td>10240</td><td>50272</td><td>2,651,596,800</td></tr>
 *   <tr><td>opt-6.7b</td><td>4096</td><td>32</td><td>32</td><td>16384</td><td>50272</td><td>6,658,473,984</td></tr>
 *   <tr><td>opt-13b</td><td>5120</td><td>40</td><td>40</td><td>20480</td><td>50272</td><td>12,853,473,280</td></tr>
 *   <tr><td>falcon-7b</td><td>4544</td><td>32</td><td>71 (1 KV head)</td><td>18176</td><td>65024</td><td>6,921,720,704</td></tr>
 *   <tr><td>falcon-7b-relu</td><td colspan="6">falcon-7b with {@code activation: relu} (the paper's ReLU-fied Falcon)</td></tr>
 * </table>
 * Test shapes (tiny, real vocabulary sizes so that every token id of the written tokenizer is in
 * range): {@code opt-test} (pre-LN), {@code opt-test-postln} (post-LN with project_in/out, like
 * opt-350m), {@code falcon-test} (multi-query, parallel attention, ReLU). Thread-safe (immutable).
 */
public final class Shapes {

    private static final Map<String, Shape> SHAPES = build();

    private Shapes() {
    }

    /** The shape called {@code name}. */
    public static Shape get(String name) {
        Shape s = SHAPES.get(name);
        if (s == null) {
            throw new LlmflashException("unknown shape '" + name + "' (known: " + String.join(", ", names()) + ")");
        }
        return s;
    }

    /** Every shape name, real ones first. */
    public static List<String> names() {
        return List.copyOf(SHAPES.keySet());
    }

    private static Map<String, Shape> build() {
        Map<String, Shape> m = new LinkedHashMap<>();
        put(m, opt("opt-125m", "facebook/opt-125m", 768, 12, 12, 3072, 768, true, "4.21.0.dev0", Map.of()));
        put(m, opt("opt-350m", "facebook/opt-350m", 1024, 24, 16, 4096, 512, false, "4.20.0.dev0", Map.of()));
        put(m, opt("opt-1.3b", "facebook/opt-1.3b", 2048, 24, 32, 8192, 2048, true, "4.21.0.dev0", Map.of()));
        put(m, opt("opt-2.7b", "facebook/opt-2.7b", 2560, 32, 32, 10240, 2560, true, "4.21.0.dev0",
                Map.of("_remove_final_layer_norm", false)));
        put(m, opt("opt-6.7b", "facebook/opt-6.7b", 4096, 32, 32, 16384, 4096, true, "4.21.0.dev0",
                Map.of("_remove_final_layer_norm", false)));
        put(m, opt("opt-13b", "facebook/opt-13b", 5120, 40, 40, 20480, 5120, true, "4.21.0.dev0",
                Map.of("_remove_final_layer_norm", false, "output_projection", true)));
        put(m, falcon("falcon-7b", "tiiuae/falcon-7b", 4544, 32, 71, "gelu"));
        put(m, falcon("falcon-7b-relu", "tiiuae/falcon-7b, activation relu (ReLU-fied as in Mirzadeh et al. 2023)",
                4544, 32, 71, "relu"));
        put(m, opt("opt-test", "tiny pre-LN OPT for tests", 64, 2, 4, 256, 64, true, "4.21.0.dev0", Map.of()));
        put(m, opt("opt-test-postln", "tiny post-LN OPT with project_in/out (like opt-350m) for tests",
                64, 2, 4, 256, 32, false, "4.21.0.dev0", Map.of()));
        put(m, falcon("falcon-test", "tiny multi-query, parallel-attention ReLU Falcon for tests", 64, 2, 4, "relu"));
        return Collections.unmodifiableMap(m);
    }

    private static void put(Map<String, Shape> m, Shape s) {
        m.put(s.name(), s);
    }

    private static Shape opt(String name, String source, int d, int layers, int heads, int ffn, int embedDim,
                             boolean preLn, String transformersVersion, Map<String, Object> extra) {
        Map<String, Object> c = new HashMap<>(extra);
        if (source.startsWith("facebook/")) {
            c.put("_name_or_path", source);
        }
        c.put("activation_dropout", 0.0);
        c.put("activation_function", "relu");
        c.put("architectures", List.of("OPTForCausalLM"));
        c.put("attention_dropout", 0.0);
        c.put("bos_token_id", 2);
        c.put("do_layer_norm_before", preLn);
        c.put("dropout", 0.1);
        c.put("eos_token_id", 2);
        c.put("ffn_dim", ffn);
        c.put("hidden_size", d);
        c.put("init_std", 0.02);
        c.put("layerdrop", 0.0);
        c.put("max_position_embeddings", 2048);
        c.put("model_type", "opt");
        c.put("num_attention_heads", heads);
        c.put("num_hidden_layers", layers);
        c.put("pad_token_id", 1);
        c.put("prefix", "</s>");
        c.put("torch_dtype", "float16");
        c.put("transformers_version", transformersVersion);
        c.put("use_cache", true);
        c.put("vocab_size", 50272);
        c.put("word_embed_proj_dim", embedDim);
        OptConfig model = new OptConfig(50272, d, layers, heads, ffn, 2048, embedDim, preLn, preLn, true, true,
                "relu", true, 2, 2, 1);
        return new Shape(name, source, model, c, generation(2, 2, 1, "4.27.0.dev0"));
    }

    private static Shape falcon(String name, String source, int d, int layers, int heads, String activation) {
        Map<String, Object> c = new HashMap<>();
        if (!activation.equals("gelu")) {
            c.put("activation", activation); // HF's FalconConfig default is "gelu"; the release omits it
        }
        c.put("alibi", false);
        c.put("apply_residual_connection_post_layernorm", false);
        c.put("architectures", List.of("FalconForCausalLM"));
        c.put("attention_dropout", 0.0);
        c.put("bias", false);
        c.put("bos_token_id", 11);
        c.put("eos_token_id", 11);
        c.put("hidden_dropout", 0.0);
        c.put("hidden_size", d);
        c.put("initializer_range", 0.02);
        c.put("layer_norm_epsilon", 1e-05);
        c.put("model_type", "falcon");
        c.put("multi_query", true);
        c.put("new_decoder_architecture", false);
        c.put("num_attention_heads", heads);
        c.put("num_hidden_layers", layers);
        c.put("parallel_attn", true);
        c.put("torch_dtype", "bfloat16");
        c.put("transformers_version", "4.27.4");
        c.put("use_cache", true);
        c.put("vocab_size", 65024);
        // multi_query without new_decoder_architecture: ONE key/value head; ffn 4 d; max positions and
        // rope theta at FalconConfig's defaults (2048, 10000).
        FalconConfig model = new FalconConfig(65024, d, layers, heads, 1, 4 * d, 2048,
                FalconConfig.QkvLayout.MULTI_QUERY, true, 1, false, 1e-5f, activation, 10000.0, true, 11, 11);
        return new Shape(name, source, model, c, generation(11, 11, null, "4.33.0.dev0"));
    }

    private static Map<String, Object> generation(int bos, int eos, Integer pad, String version) {
        Map<String, Object> g = new HashMap<>();
        g.put("_from_model_config", true);
        g.put("bos_token_id", bos);
        g.put("eos_token_id", eos);
        if (pad != null) {
            g.put("pad_token_id", pad);
        }
        g.put("transformers_version", version);
        return g;
    }
}
