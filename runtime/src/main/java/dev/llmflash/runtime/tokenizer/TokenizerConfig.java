package dev.llmflash.runtime.tokenizer;

import com.fasterxml.jackson.databind.JsonNode;
import dev.llmflash.formats.FormatException;

import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;

/**
 * What this tokenizer reads from a transformers {@code tokenizer_config.json} (all optional; other keys
 * are ignored):
 * <pre>
 *   "bos_token", "eos_token", "unk_token", "pad_token":  "&lt;/s&gt;" or {"content": "&lt;/s&gt;", ...} or null
 *   "add_bos_token":    true | false
 *   "add_prefix_space": true | false          (vocab.json + merges.txt only; tokenizer.json has its own)
 *   "added_tokens_decoder": {"2": {"content": "&lt;/s&gt;", "special": true, "lstrip": false, "rstrip": false,
 *                                  "single_word": false, "normalized": false}, ...}
 * </pre>
 *
 * @param file                the file, or null when there is none ({@link #ABSENT})
 * @param bosToken            null if not named
 * @param eosToken            null if not named
 * @param unkToken            null if not named
 * @param padToken            null if not named
 * @param addBosToken         null if not said
 * @param addPrefixSpace      null if not said
 * @param addedTokensDecoder  empty if none
 */
record TokenizerConfig(Path file, String bosToken, String eosToken, String unkToken, String padToken,
                       Boolean addBosToken, Boolean addPrefixSpace, List<AddedToken> addedTokensDecoder) {

    /** No tokenizer_config.json: OPT's conventions apply. */
    static final TokenizerConfig ABSENT = new TokenizerConfig(null, null, null, null, null, null, null, List.of());

    boolean present() {
        return file != null;
    }

    /** Reads {@code file}. */
    static TokenizerConfig read(Path file) {
        JsonNode root = TokenizerFiles.readJson(file);
        if (!root.isObject()) {
            throw new FormatException(file, "is not a JSON object", "re-download tokenizer_config.json");
        }
        List<AddedToken> added = new ArrayList<>();
        JsonNode dec = root.get("added_tokens_decoder");
        if (dec != null && !dec.isNull()) {
            if (!dec.isObject()) {
                throw new FormatException(file, "added_tokens_decoder is not an object", "re-download tokenizer_config.json");
            }
            for (Map.Entry<String, JsonNode> e : dec.properties()) {
                int id;
                try {
                    id = Integer.parseInt(e.getKey());
                } catch (NumberFormatException ex) {
                    id = -1;
                }
                if (id < 0) {
                    throw new FormatException(file, "added_tokens_decoder has the key '" + e.getKey()
                            + "', which is not a token id", "re-download tokenizer_config.json");
                }
                added.add(TokenizerFiles.addedToken(file, "added_tokens_decoder." + e.getKey(), e.getValue(), id));
            }
        }
        return new TokenizerConfig(file, tokenName(file, root, "bos_token"), tokenName(file, root, "eos_token"),
                tokenName(file, root, "unk_token"), tokenName(file, root, "pad_token"),
                bool(file, root, "add_bos_token"), bool(file, root, "add_prefix_space"), List.copyOf(added));
    }

    private static String tokenName(Path file, JsonNode root, String key) {
        JsonNode n = root.get(key);
        if (n == null || n.isNull()) {
            return null;
        }
        if (n.isObject() && n.get("content") != null && n.get("content").isTextual()) {
            n = n.get("content"); // a serialized AddedToken
        }
        if (!n.isTextual() || n.asText().isEmpty()) {
            throw new FormatException(file, key + " is neither a token string nor {\"content\": ...}",
                    "re-download tokenizer_config.json");
        }
        return n.asText();
    }

    private static Boolean bool(Path file, JsonNode root, String key) {
        JsonNode n = root.get(key);
        if (n == null || n.isNull()) {
            return null;
        }
        if (!n.isBoolean()) {
            throw new FormatException(file, key + " is " + n + ", not true or false", "re-download tokenizer_config.json");
        }
        return n.booleanValue();
    }
}
