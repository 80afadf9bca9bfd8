package dev.llmflash.formats.hf;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import dev.llmflash.formats.FormatException;

import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.Locale;

/**
 * Reads a Hugging Face {@code config.json} into a typed {@link ModelConfig}. HF names and defaults are
 * translated here, once (the defaults are those of transformers' {@code OPTConfig} and
 * {@code FalconConfig}); nothing downstream sees HF's config keys.
 */
public final class HfConfig {
    public static final String FILE_NAME = "config.json";

    private final Path file;
    private final JsonNode root;

    private HfConfig(Path file, JsonNode root) {
        this.file = file;
        this.root = root;
    }

    /** Reads {@code dir/config.json}. */
    public static ModelConfig read(Path dir) {
        Path file = dir.resolve(FILE_NAME);
        if (!Files.isRegularFile(file)) {
            throw new FormatException(dir, "has no config.json, so it is not a Hugging Face model folder",
                    "point --model at a folder with config.json and the weights, as saved by save_pretrained");
        }
        JsonNode root;
        try {
            root = new ObjectMapper().readTree(file.toFile());
        } catch (IOException e) {
            throw new FormatException(file, "is not valid JSON: " + firstLine(e.getMessage()),
                    "re-download the checkpoint's config.json", e);
        }
        if (root == null || !root.isObject()) {
            throw new FormatException(file, "is not a JSON object", "re-download the checkpoint's config.json");
        }
        return new HfConfig(file, root).parse();
    }

    private ModelConfig parse() {
        String type = text("model_type", null);
        if (type == null) {
            JsonNode arch = root.get("architectures");
            String a = arch != null && arch.isArray() && !arch.isEmpty() ? arch.get(0).asText() : "";
            if (a.startsWith("OPT")) {
                type = "opt";
            } else if (a.startsWith("Falcon") || a.startsWith("RW")) {
                type = "falcon";
            } else {
                throw new FormatException(file, "names no model_type (and architectures " + (a.isEmpty() ? "is missing" : "is " + a) + ")",
                        "llmflash runs OPT and Falcon checkpoints; check that this is one");
            }
        }
        return switch (type.toLowerCase(Locale.ROOT)) {
            case "opt" -> opt();
            case "falcon", "refinedwebmodel", "refinedweb" -> falcon();
            default -> throw new FormatException(file, "model_type '" + type + "' is not supported",
                    "llmflash runs OPT and Falcon checkpoints (ReLU FFNs are what flash loading exploits)");
        };
    }

    private OptConfig opt() {
        int hidden = positive("hidden_size", 768);
        int heads = positive("num_attention_heads", 12);
        requireDivisible(hidden, heads);
        boolean before = bool("do_layer_norm_before", true);
        String act = activation(text("activation_function", "relu"));
        int proj = root.hasNonNull("word_embed_proj_dim") ? positive("word_embed_proj_dim", hidden) : hidden;
        return new OptConfig(positive("vocab_size", 50272), hidden, positive("num_hidden_layers", 12), heads,
                positive("ffn_dim", 3072), positive("max_position_embeddings", 2048), proj, before,
                before && !bool("_remove_final_layer_norm", false), bool("enable_bias", true),
                bool("layer_norm_elementwise_affine", true), act, bool("tie_word_embeddings", true),
                integer("bos_token_id", 2), integer("eos_token_id", 2), integer("pad_token_id", 1));
    }

    private FalconConfig falcon() {
        if (bool("alibi", false)) {
            throw new FormatException(file, "uses ALiBi position biases (alibi: true, as falcon-rw models do), which llmflash does not implement",
                    "use a rotary Falcon (7B/40B/180B style) checkpoint");
        }
        JsonNode scaling = root.get("rope_scaling");
        if (scaling != null && !scaling.isNull()) {
            throw new FormatException(file, "uses rope_scaling " + scaling + ", which llmflash does not implement",
                    "use a checkpoint with plain rotary embeddings");
        }
        int hidden = positive("hidden_size", 4544);
        int heads = positive(root.has("n_head") ? "n_head" : "num_attention_heads", 71);
        requireDivisible(hidden, heads);
        int layers = positive(root.has("n_layer") ? "n_layer" : "num_hidden_layers", 32);
        boolean newArch = bool("new_decoder_architecture", false);
        boolean multiQuery = bool("multi_query", true);
        boolean parallel = bool("parallel_attn", true);
        String kvKey = root.has("n_head_kv") ? "n_head_kv" : "num_kv_heads";
        int declaredKv = root.hasNonNull(kvKey) ? positive(kvKey, heads) : heads;
        // HF: self.num_kv_heads = config.num_kv_heads if (new_decoder_architecture or not multi_query) else 1
        int kv = (newArch || !multiQuery) ? declaredKv : 1;
        FalconConfig.QkvLayout layout = newArch ? FalconConfig.QkvLayout.GROUPED
                : multiQuery ? FalconConfig.QkvLayout.MULTI_QUERY : FalconConfig.QkvLayout.INTERLEAVED;
        if (layout == FalconConfig.QkvLayout.INTERLEAVED && kv != heads) {
            throw new FormatException(file, "has multi_query false without new_decoder_architecture but num_kv_heads "
                    + kv + " != num_attention_heads " + heads + "; HF cannot load that either", "fix config.json");
        }
        if (layout == FalconConfig.QkvLayout.GROUPED && heads % kv != 0) {
            throw new FormatException(file, "num_attention_heads " + heads + " is not a multiple of num_kv_heads " + kv,
                    "fix config.json");
        }
        int lnPerBlock;
        JsonNode ln = root.get("num_ln_in_parallel_attn");
        if (ln != null && !ln.isNull()) {
            lnPerBlock = positive("num_ln_in_parallel_attn", 1);
        } else {
            lnPerBlock = newArch ? 2 : 1;
        }
        if (!newArch && parallel && lnPerBlock == 2) {
            throw new FormatException(file, "asks for num_ln_in_parallel_attn 2 without new_decoder_architecture, which HF's Falcon cannot run",
                    "fix config.json");
        }
        if (newArch && !parallel && lnPerBlock != 2) {
            throw new FormatException(file, "combines new_decoder_architecture with parallel_attn false, which HF's Falcon cannot run",
                    "fix config.json");
        }
        double theta = 10000.0;
        JsonNode rp = root.get("rope_parameters");
        if (rp != null && rp.isObject()) {
            String ropeType = rp.path("rope_type").asText("default");
            if (!ropeType.equals("default")) {
                throw new FormatException(file, "uses rope_type '" + ropeType + "', which llmflash does not implement",
                        "use a checkpoint with plain rotary embeddings");
            }
            theta = rp.path("rope_theta").asDouble(theta);
        } else if (root.has("rope_theta")) {
            theta = root.get("rope_theta").asDouble(theta);
        }
        int ffn = root.hasNonNull("ffn_hidden_size") ? positive("ffn_hidden_size", 4 * hidden) : 4 * hidden;
        float eps = (float) root.path("layer_norm_epsilon").asDouble(1e-5);
        return new FalconConfig(positive("vocab_size", 65024), hidden, layers, heads, kv, ffn,
                positive("max_position_embeddings", 2048), layout, parallel, lnPerBlock, bool("bias", false), eps,
                activation(text("activation", "gelu")), theta, bool("tie_word_embeddings", true),
                integer("bos_token_id", 11), integer("eos_token_id", 11));
    }

    private String activation(String act) {
        String a = act.toLowerCase(Locale.ROOT);
        if (!a.equals("relu") && !a.equals("gelu")) {
            throw new FormatException(file, "activation '" + act + "' is not supported (relu and gelu are)",
                    "use a ReLU or GELU checkpoint");
        }
        return a;
    }

    private void requireDivisible(int hidden, int heads) {
        if (hidden % heads != 0) {
            throw new FormatException(file, "hidden_size " + hidden + " is not divisible by the number of heads " + heads,
                    "fix config.json");
        }
    }

    private String text(String key, String def) {
        JsonNode n = root.get(key);
        return n == null || n.isNull() ? def : n.asText();
    }

    private boolean bool(String key, boolean def) {
        JsonNode n = root.get(key);
        if (n == null || n.isNull()) {
            return def;
        }
        if (!n.isBoolean()) {
            throw new FormatException(file, "'" + key + "' should be true or false, not " + n, "fix config.json");
        }
        return n.asBoolean();
    }

    private int integer(String key, int def) {
        JsonNode n = root.get(key);
        if (n == null || n.isNull()) {
            return def;
        }
        if (n.isArray() && !n.isEmpty() && n.get(0).canConvertToInt()) {
            return n.get(0).asInt(); // e.g. eos_token_id: [2, ...]; the first is the primary one
        }
        if (!n.canConvertToInt() || !n.isIntegralNumber()) {
            throw new FormatException(file, "'" + key + "' should be an integer, not " + n, "fix config.json");
        }
        return n.asInt();
    }

    private int positive(String key, int def) {
        int v = integer(key, def);
        if (v <= 0) {
            throw new FormatException(file, "'" + key + "' must be positive, not " + v, "fix config.json");
        }
        return v;
    }

    private static String firstLine(String s) {
        if (s == null) {
            return "";
        }
        int nl = s.indexOf('\n');
        return nl < 0 ? s : s.substring(0, nl);
    }
}
