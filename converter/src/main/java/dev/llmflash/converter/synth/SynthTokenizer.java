package dev.llmflash.converter.synth;

import com.fasterxml.jackson.core.JsonGenerator;
import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.node.ObjectNode;
import dev.llmflash.formats.hf.FalconConfig;
import dev.llmflash.formats.hf.ModelConfig;
import dev.llmflash.formats.hf.OptConfig;

import java.io.IOException;
import java.io.InputStream;
import java.io.OutputStream;
import java.io.UncheckedIOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;

/**
 * Writes the tokenizer of a synthesized model: the real GPT-2 byte-level BPE (the vocabulary OPT
 * uses; resources {@code gpt2-vocab.json} and {@code gpt2-merges.txt}) with the model family's special
 * tokens in front, so that the ids config.json names (BOS, EOS, PAD) are the right tokens:
 * <ul>
 *   <li>OPT: {@code <s>}=0, {@code <pad>}=1, {@code </s>}=2, {@code <unk>}=3 (as in OPT's own
 *       vocab.json), then GPT-2's 50257 tokens at ids 4..50260 ({@code <|endoftext|>} = 50260).
 *       tokenizer_config.json follows OPT's conventions: BOS = EOS = {@code </s>}, add_bos_token true,
 *       GPT2Tokenizer.</li>
 *   <li>Falcon: Falcon's 11 prompt-format tokens ({@code >>TITLE<<} .. {@code >>MIDDLE<<}) at 0..10,
 *       {@code <|endoftext|>}=11 (config.json's bos/eos id), then GPT-2's other 50256 tokens at
 *       12..50267. BOS = EOS = {@code <|endoftext|>}, no BOS prepended (Falcon's convention).</li>
 * </ul>
 * Every id is below config.json's vocab_size (OPT 50272, Falcon 65024): the embedding rows above the
 * tokenizer's last id exist but no text maps to them, exactly as in the real checkpoints (OPT's real
 * vocab.json has 50265 entries for 50272 rows). The GPT-2 tokens keep GPT-2's relative order, not OPT's
 * (fairseq's frequency order) or Falcon's own BPE: the weights are random, so which id a word gets does
 * not matter, only that the segmentation is a real one. Stateless.
 */
public final class SynthTokenizer {

    public static final String VOCAB = "vocab.json";
    public static final String MERGES = "merges.txt";
    public static final String CONFIG = "tokenizer_config.json";
    /** GPT-2's vocabulary size and end-of-text token. */
    static final int GPT2_SIZE = 50257;
    static final String GPT2_EOT = "<|endoftext|>";

    static final List<String> OPT_SPECIALS = List.of("<s>", "<pad>", "</s>", "<unk>");
    static final List<String> FALCON_SPECIALS = List.of(">>TITLE<<", ">>ABSTRACT<<", ">>INTRODUCTION<<",
            ">>SUMMARY<<", ">>COMMENT<<", ">>ANSWER<<", ">>QUESTION<<", ">>DOMAIN<<", ">>PREFIX<<", ">>SUFFIX<<",
            ">>MIDDLE<<", GPT2_EOT);

    private static final ObjectMapper JSON = new ObjectMapper();

    private SynthTokenizer() {
    }

    /** The tokens of the written vocabulary, by id, for a model of this family. */
    public static List<String> vocabulary(ModelConfig model) {
        List<String> specials = specials(model);
        List<String> out = new ArrayList<>(specials);
        for (String t : gpt2Vocabulary()) {
            if (!specials.contains(t)) {
                out.add(t);
            }
        }
        return out;
    }

    /** Writes vocab.json, merges.txt and tokenizer_config.json into {@code dir}. */
    public static void write(Path dir, ModelConfig model) throws IOException {
        List<String> vocab = vocabulary(model);
        try (OutputStream os = Files.newOutputStream(dir.resolve(VOCAB));
             JsonGenerator g = JSON.createGenerator(os)) {
            g.writeStartObject();
            for (int id = 0; id < vocab.size(); id++) {
                g.writeNumberField(vocab.get(id), id);
            }
            g.writeEndObject();
        }
        try (InputStream in = resource("gpt2-merges.txt")) {
            Files.copy(in, dir.resolve(MERGES));
        }
        HfJson.write(dir.resolve(CONFIG), tokenizerConfig(model, vocab));
    }

    private static List<String> specials(ModelConfig model) {
        return switch (model) {
            case OptConfig c -> OPT_SPECIALS;
            case FalconConfig c -> FALCON_SPECIALS;
        };
    }

    private static ObjectNode tokenizerConfig(ModelConfig model, List<String> vocab) {
        ObjectNode c = JSON.createObjectNode();
        switch (model) {
            case OptConfig o -> {
                c.put("add_bos_token", true);
                c.put("add_prefix_space", false);
                c.put("bos_token", vocab.get(o.bosTokenId()));
                c.put("eos_token", vocab.get(o.eosTokenId()));
                c.put("errors", "replace");
                c.put("pad_token", vocab.get(o.padTokenId()));
                c.put("tokenizer_class", "GPT2Tokenizer");
                c.put("unk_token", "</s>");
            }
            case FalconConfig f -> {
                c.put("add_bos_token", false);
                c.put("add_prefix_space", false);
                ObjectNode added = c.putObject("added_tokens_decoder");
                for (int id = 0; id < FALCON_SPECIALS.size(); id++) {
                    added.putObject(Integer.toString(id)).put("content", vocab.get(id)).put("lstrip", false)
                            .put("normalized", false).put("rstrip", false).put("single_word", false)
                            .put("special", true);
                }
                c.put("bos_token", vocab.get(f.bosTokenId()));
                c.put("eos_token", vocab.get(f.eosTokenId()));
                c.put("model_max_length", f.maxPositions());
                c.put("tokenizer_class", "GPT2Tokenizer");
            }
        }
        return c;
    }

    /** GPT-2's tokens by id (50257), from the bundled vocab.json; checked to be exactly ids 0..50256. */
    static List<String> gpt2Vocabulary() {
        JsonNode root;
        try (InputStream in = resource("gpt2-vocab.json")) {
            root = JSON.readTree(in);
        } catch (IOException e) {
            throw new UncheckedIOException("cannot read the bundled gpt2-vocab.json", e);
        }
        String[] byId = new String[GPT2_SIZE];
        if (root == null || root.size() != GPT2_SIZE) {
            throw new IllegalStateException("bundled gpt2-vocab.json does not have " + GPT2_SIZE + " entries");
        }
        for (Map.Entry<String, JsonNode> e : root.properties()) {
            int id = e.getValue().asInt(-1);
            if (id < 0 || id >= GPT2_SIZE || byId[id] != null) {
                throw new IllegalStateException("bundled gpt2-vocab.json: bad id for '" + e.getKey() + "'");
            }
            byId[id] = e.getKey();
        }
        if (!GPT2_EOT.equals(byId[GPT2_SIZE - 1])) {
            throw new IllegalStateException("bundled gpt2-vocab.json: id 50256 is not " + GPT2_EOT);
        }
        return List.of(byId);
    }

    private static InputStream resource(String name) throws IOException {
        InputStream in = SynthTokenizer.class.getResourceAsStream(name);
        if (in == null) {
            throw new IOException("resource " + name + " is missing from the llmflash-converter jar");
        }
        return in;
    }
}
