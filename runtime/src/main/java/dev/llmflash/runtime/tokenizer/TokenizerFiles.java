package dev.llmflash.runtime.tokenizer;

import com.fasterxml.jackson.core.JsonProcessingException;
import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import dev.llmflash.formats.FormatException;

import java.io.IOException;
import java.nio.charset.CharacterCodingException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.NoSuchFileException;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.regex.Pattern;
import java.util.regex.PatternSyntaxException;

/**
 * Reads the Hugging Face tokenizer files into a {@link BpeTokenizer}, validating everything at load
 * time. The formats:
 * <ul>
 *   <li>{@code vocab.json}: {@code {"token": id, ...}}, ids distinct, non-negative, below 2^24.</li>
 *   <li>{@code merges.txt}: UTF-8, one rule {@code "left right"} per line (exactly one space), in rank
 *       order; lines starting with {@code #version} are skipped; every other line must be a rule.</li>
 *   <li>{@code tokenizer.json} (tokenizers library, format "1.0"): {@code model} of type BPE with
 *       {@code vocab} and {@code merges} (rules as {@code "left right"} strings or {@code [left, right]}
 *       pairs), {@code added_tokens}, {@code normalizer}, {@code pre_tokenizer}, {@code post_processor},
 *       {@code decoder}. {@code truncation} and {@code padding} are batch settings, ignored.</li>
 *   <li>{@code tokenizer_config.json}: see {@link TokenizerConfig}.</li>
 * </ul>
 * Anything this tokenizer does not implement (a normalizer, other pre-tokenizers, BPE dropout, ...)
 * is refused with a FormatException naming it.
 * <p>Stateless; thread-safe.
 */
final class TokenizerFiles {
    static final String TOKENIZER_JSON = "tokenizer.json";
    static final String VOCAB_JSON = "vocab.json";
    static final String MERGES_TXT = "merges.txt";
    static final String CONFIG_JSON = "tokenizer_config.json";
    /** Token ids must be below this (a corrupt id must not make us allocate gigabytes). */
    static final int MAX_ID = 1 << 24;
    /** OPT's special tokens (and GPT-2's), special whenever the vocabulary has them. */
    static final List<String> CONVENTIONAL_SPECIALS = List.of("<s>", "<pad>", "</s>", "<unk>", "<|endoftext|>");

    private static final ObjectMapper JSON = new ObjectMapper();
    private static final String REDOWNLOAD = "re-download the tokenizer files of the checkpoint";

    private TokenizerFiles() {
    }

    static BpeTokenizer fromModelDir(Path dir) {
        if (!Files.isDirectory(dir)) {
            throw new FormatException(dir, "is not a folder", "give the folder of a Hugging Face checkpoint");
        }
        Path configFile = dir.resolve(CONFIG_JSON);
        TokenizerConfig config = Files.isRegularFile(configFile) ? TokenizerConfig.read(configFile) : TokenizerConfig.ABSENT;
        Path tokenizerJson = dir.resolve(TOKENIZER_JSON);
        if (Files.isRegularFile(tokenizerJson)) {
            return fromTokenizerJson(tokenizerJson, config);
        }
        Path vocab = dir.resolve(VOCAB_JSON);
        Path merges = dir.resolve(MERGES_TXT);
        if (Files.isRegularFile(vocab) && Files.isRegularFile(merges)) {
            return fromVocabMerges(vocab, merges, config);
        }
        throw new FormatException(dir, "has no tokenizer: looked for " + TOKENIZER_JSON + ", or " + VOCAB_JSON
                + " with " + MERGES_TXT + (Files.isRegularFile(vocab) ? " (" + MERGES_TXT + " is missing)"
                : Files.isRegularFile(merges) ? " (" + VOCAB_JSON + " is missing)" : ""),
                "copy the checkpoint's tokenizer files into this folder");
    }

    // ---------------------------------------------------------------- vocab.json + merges.txt

    static BpeTokenizer fromVocabMerges(Path vocabFile, Path mergesFile, TokenizerConfig config) {
        JsonNode root = readJson(vocabFile);
        Map<String, Integer> vocab = vocab(vocabFile, root, "");
        List<String[]> merges = new ArrayList<>();
        List<Integer> lineOf = new ArrayList<>();
        List<String> lines = readLines(mergesFile);
        for (int li = 0; li < lines.size(); li++) {
            String line = lines.get(li);
            if (line.startsWith("#version")) {
                continue;
            }
            String[] parts = line.split(" ", -1);
            if (parts.length != 2 || parts[0].isEmpty() || parts[1].isEmpty()) {
                throw new FormatException(mergesFile, "line " + (li + 1) + " is not a merge rule (two tokens"
                        + " separated by one space): '" + abbreviate(line) + "'", REDOWNLOAD);
            }
            merges.add(parts);
            lineOf.add(li + 1);
        }
        BpeModel model = BpeModel.build(mergesFile, vocab, merges, k -> "line " + lineOf.get(k), null, false, false);
        // GPT2Tokenizer: the special tokens are those the config names, plus its added_tokens_decoder.
        Map<String, AddedToken> added = new LinkedHashMap<>();
        Map<Integer, String> takenIds = idsOf(vocab);
        for (AddedToken t : config.addedTokensDecoder()) {
            checkAddedId(config.file(), "added_tokens_decoder." + t.id(), t, vocab, takenIds, VOCAB_JSON);
            added.put(t.content(), t);
        }
        addNamedSpecials(vocabFile, vocab, added, config);
        boolean prefixSpace = Boolean.TRUE.equals(config.addPrefixSpace());
        List<PreTokenizer> steps = List.of(new PreTokenizer.ByteLevel(prefixSpace, true));
        return assemble(vocabFile, vocab, model, steps, new ArrayList<>(added.values()), config, null);
    }

    // ---------------------------------------------------------------- tokenizer.json

    static BpeTokenizer fromTokenizerJson(Path file, TokenizerConfig config) {
        JsonNode root = readJson(file);
        if (!root.isObject()) {
            throw new FormatException(file, "is not a JSON object", REDOWNLOAD);
        }
        JsonNode normalizer = root.get("normalizer");
        if (normalizer != null && !normalizer.isNull()) {
            throw unsupported(file, "normalizer " + typeOf(normalizer));
        }
        JsonNode modelNode = root.get("model");
        if (modelNode == null || !modelNode.isObject()) {
            throw new FormatException(file, "has no \"model\" object", REDOWNLOAD);
        }
        String modelType = text(modelNode.get("type"));
        if (!"BPE".equals(modelType)) {
            throw unsupported(file, "model type " + (modelType == null ? "(none)" : "'" + modelType + "'")
                    + " (only BPE is implemented)");
        }
        JsonNode vocabNode = modelNode.get("vocab");
        if (vocabNode == null) {
            throw new FormatException(file, "model.vocab is missing", REDOWNLOAD);
        }
        Map<String, Integer> vocab = vocab(file, vocabNode, "model.vocab ");
        JsonNode dropout = modelNode.get("dropout");
        if (dropout != null && !dropout.isNull() && dropout.asDouble() != 0.0) {
            throw unsupported(file, "BPE dropout " + dropout + " (random segmentation)");
        }
        for (String affix : List.of("continuing_subword_prefix", "end_of_word_suffix")) {
            String v = text(modelNode.get(affix));
            if (v != null && !v.isEmpty()) {
                throw unsupported(file, "model." + affix + " '" + v + "'");
            }
        }
        if (bool(file, modelNode, "byte_fallback", false)) {
            throw unsupported(file, "model.byte_fallback (a byte-level vocabulary does not need it)");
        }
        JsonNode unkNode = modelNode.get("unk_token");
        String unk = unkNode == null || unkNode.isNull() ? null : text(unkNode);
        if (unkNode != null && !unkNode.isNull() && unk == null) {
            throw new FormatException(file, "model.unk_token is not a string", REDOWNLOAD);
        }
        JsonNode mergesNode = modelNode.get("merges");
        if (mergesNode == null || !mergesNode.isArray()) {
            throw new FormatException(file, "model.merges is missing or not an array", REDOWNLOAD);
        }
        List<String[]> merges = new ArrayList<>(mergesNode.size());
        for (int k = 0; k < mergesNode.size(); k++) {
            JsonNode m = mergesNode.get(k);
            String[] pair = null;
            if (m.isTextual()) {
                String[] parts = m.asText().split(" ", -1);
                pair = parts.length == 2 ? parts : null;
            } else if (m.isArray() && m.size() == 2 && m.get(0).isTextual() && m.get(1).isTextual()) {
                pair = new String[] {m.get(0).asText(), m.get(1).asText()};
            }
            if (pair == null || pair[0].isEmpty() || pair[1].isEmpty()) {
                throw new FormatException(file, "model.merges[" + k + "] is not a merge rule (\"left right\" or"
                        + " [\"left\", \"right\"]): " + abbreviate(m.toString()), REDOWNLOAD);
            }
            merges.add(pair);
        }
        BpeModel model = BpeModel.build(file, vocab, merges, k -> "model.merges[" + k + "]", unk,
                bool(file, modelNode, "fuse_unk", false), bool(file, modelNode, "ignore_merges", false));

        Map<String, AddedToken> added = new LinkedHashMap<>();
        Map<Integer, String> takenIds = idsOf(vocab);
        JsonNode addedNode = root.get("added_tokens");
        if (addedNode != null && !addedNode.isNull()) {
            if (!addedNode.isArray()) {
                throw new FormatException(file, "added_tokens is not an array", REDOWNLOAD);
            }
            for (int k = 0; k < addedNode.size(); k++) {
                JsonNode t = addedNode.get(k);
                JsonNode idNode = t.get("id");
                if (idNode == null || !idNode.canConvertToInt() || !idNode.isIntegralNumber()
                        || idNode.intValue() < 0 || idNode.intValue() >= MAX_ID) {
                    throw new FormatException(file, "added_tokens[" + k + "].id is missing or not a token id",
                            REDOWNLOAD);
                }
                AddedToken a = addedToken(file, "added_tokens[" + k + "]", t, idNode.intValue());
                checkAddedId(file, "added_tokens[" + k + "]", a, vocab, takenIds, "model.vocab");
                added.put(a.content(), a);
            }
        }
        addNamedSpecials(file, vocab, added, config);

        List<PreTokenizer> steps = new ArrayList<>();
        JsonNode pre = root.get("pre_tokenizer");
        if (pre == null || pre.isNull()) {
            throw unsupported(file, "pre_tokenizer null (a byte-level BPE needs a ByteLevel pre-tokenizer)");
        }
        preTokenizer(file, pre, "pre_tokenizer", steps);
        long byteLevels = steps.stream().filter(s -> s instanceof PreTokenizer.ByteLevel).count();
        if (byteLevels != 1) {
            throw unsupported(file, "pre_tokenizer with " + byteLevels
                    + " ByteLevel steps (a byte-level BPE needs exactly one)");
        }
        JsonNode decoder = root.get("decoder");
        if (decoder == null || decoder.isNull() || !"ByteLevel".equals(text(decoder.get("type")))) {
            throw unsupported(file, "decoder " + (decoder == null || decoder.isNull() ? "null" : typeOf(decoder))
                    + " (only ByteLevel is implemented)");
        }
        String templateBos = postProcessorBos(file, root.get("post_processor"), "post_processor");
        return assemble(file, vocab, model, steps, new ArrayList<>(added.values()), config, templateBos);
    }

    /** Flattens the pre-tokenizer {@code node} (a Sequence or one step) into {@code steps}. */
    private static void preTokenizer(Path file, JsonNode node, String where, List<PreTokenizer> steps) {
        String type = text(node.get("type"));
        if (type == null) {
            throw new FormatException(file, where + " has no type", REDOWNLOAD);
        }
        switch (type) {
            case "Sequence" -> {
                JsonNode list = node.get("pretokenizers");
                if (list == null || !list.isArray()) {
                    throw new FormatException(file, where + ".pretokenizers is missing or not an array", REDOWNLOAD);
                }
                for (int k = 0; k < list.size(); k++) {
                    preTokenizer(file, list.get(k), where + ".pretokenizers[" + k + "]", steps);
                }
            }
            // Defaults as in the library: add_prefix_space true, use_regex true.
            case "ByteLevel" -> steps.add(new PreTokenizer.ByteLevel(bool(file, node, "add_prefix_space", true),
                    bool(file, node, "use_regex", true)));
            case "Punctuation" -> steps.add(new PreTokenizer.Punctuation(behavior(file, node, where, "Isolated")));
            case "Digits" -> steps.add(new PreTokenizer.Digits(bool(file, node, "individual_digits", false)));
            case "Split" -> {
                JsonNode pattern = node.get("pattern");
                String literal = pattern == null ? null : text(pattern.get("String"));
                String regex = pattern == null ? null : text(pattern.get("Regex"));
                if (literal == null && regex == null) {
                    throw new FormatException(file, where + ".pattern is neither {\"String\": ...} nor {\"Regex\": ...}",
                            REDOWNLOAD);
                }
                Pattern compiled;
                try {
                    compiled = literal != null ? Pattern.compile(Pattern.quote(literal))
                            : Pattern.compile(regex, Pattern.UNICODE_CHARACTER_CLASS);
                } catch (PatternSyntaxException e) {
                    throw unsupported(file, where + " regex '" + abbreviate(regex) + "' ("
                            + e.getDescription() + ")");
                }
                steps.add(new PreTokenizer.Split(compiled, behavior(file, node, where, null),
                        bool(file, node, "invert", false)));
            }
            default -> throw unsupported(file, where + " of type '" + type + "' (implemented: ByteLevel,"
                    + " Punctuation, Digits, Split, Sequence)");
        }
    }

    private static SplitBehavior behavior(Path file, JsonNode node, String where, String dflt) {
        JsonNode b = node.get("behavior");
        String name = b == null || b.isNull() ? dflt : text(b);
        SplitBehavior sb = name == null ? null : SplitBehavior.fromJsonName(name);
        if (sb == null) {
            throw new FormatException(file, where + ".behavior is " + b + ", not one of Removed, Isolated,"
                    + " MergedWithPrevious, MergedWithNext, Contiguous", REDOWNLOAD);
        }
        return sb;
    }

    /**
     * Checks the post-processor and returns the BOS token it puts in front, or null. Accepted: null,
     * ByteLevel (offsets only), TemplateProcessing whose single template is {@code $A} or
     * {@code <bos> $A}, and a Sequence of those.
     */
    private static String postProcessorBos(Path file, JsonNode node, String where) {
        if (node == null || node.isNull()) {
            return null;
        }
        String type = text(node.get("type"));
        if ("ByteLevel".equals(type)) {
            return null;
        }
        if ("Sequence".equals(type) && node.get("processors") != null && node.get("processors").isArray()) {
            String bos = null;
            JsonNode list = node.get("processors");
            for (int k = 0; k < list.size(); k++) {
                String b = postProcessorBos(file, list.get(k), where + ".processors[" + k + "]");
                bos = b != null ? b : bos;
            }
            return bos;
        }
        if ("TemplateProcessing".equals(type) && node.get("single") != null && node.get("single").isArray()) {
            JsonNode single = node.get("single");
            boolean endsWithA = single.size() >= 1 && isSequenceA(single.get(single.size() - 1));
            if (single.size() == 1 && endsWithA) {
                return null;
            }
            if (single.size() == 2 && endsWithA && single.get(0).get("SpecialToken") != null) {
                String bos = text(single.get(0).get("SpecialToken").get("id"));
                if (bos != null) {
                    return bos;
                }
            }
            throw unsupported(file, where + " template " + abbreviate(single.toString())
                    + " (implemented: \"$A\" and \"<bos> $A\")");
        }
        throw unsupported(file, where + " " + typeOf(node) + " (implemented: ByteLevel, TemplateProcessing"
                + " with a BOS token, Sequence)");
    }

    private static boolean isSequenceA(JsonNode item) {
        JsonNode s = item.get("Sequence");
        return s != null && "A".equals(text(s.get("id")));
    }

    // ---------------------------------------------------------------- shared

    /**
     * Marks the tokens the config names (bos, eos, unk, pad) and OPT's / GPT-2's conventional special
     * tokens as special added tokens where the vocabulary has them and they are not added tokens yet.
     */
    private static void addNamedSpecials(Path file, Map<String, Integer> vocab, Map<String, AddedToken> added,
                                         TokenizerConfig config) {
        List<String> named = new ArrayList<>();
        for (String t : new String[] {config.bosToken(), config.eosToken(), config.unkToken(), config.padToken()}) {
            if (t != null) {
                named.add(t);
                if (!vocab.containsKey(t) && !added.containsKey(t)) {
                    throw new FormatException(config.file(), "names the special token '" + t + "', which is not in "
                            + file.getFileName() + "'s vocabulary", REDOWNLOAD);
                }
            }
        }
        named.addAll(CONVENTIONAL_SPECIALS);
        for (String t : named) {
            Integer id = vocab.get(t);
            if (id != null && !added.containsKey(t)) {
                added.put(t, AddedToken.special(id, t));
            }
        }
    }

    /**
     * Decides BOS, EOS and whether to add BOS, then builds the tokenizer.
     * BOS: the config's bos_token, else the post-processor's, else the config's eos_token, else
     * {@code </s>}, else {@code <|endoftext|>}. EOS: the config's eos_token, else {@code </s>}, else
     * {@code <|endoftext|>}, else BOS. Add BOS: the config's add_bos_token, else whether the
     * post-processor adds one, else (OPT's convention) only when there is no tokenizer_config.json at all.
     */
    private static BpeTokenizer assemble(Path file, Map<String, Integer> vocab, BpeModel model, List<PreTokenizer> steps,
                                         List<AddedToken> added, TokenizerConfig config, String templateBos) {
        Map<String, Integer> known = new HashMap<>(vocab);
        for (AddedToken t : added) {
            known.put(t.content(), t.id());
        }
        String conventional = known.containsKey("</s>") ? "</s>" : known.containsKey("<|endoftext|>") ? "<|endoftext|>" : null;
        String bos = first(config.bosToken(), templateBos, config.eosToken(), conventional);
        String eos = first(config.eosToken(), conventional, bos);
        if (bos == null) {
            throw new FormatException(config.present() ? config.file() : file,
                    "no BOS/EOS token: none is named and the vocabulary has neither </s> nor <|endoftext|>",
                    "name them in tokenizer_config.json (\"bos_token\", \"eos_token\")");
        }
        if (templateBos != null && !known.containsKey(templateBos)) {
            throw new FormatException(file, "the post-processor's BOS token '" + templateBos
                    + "' is not in the vocabulary", REDOWNLOAD);
        }
        boolean addBos = config.addBosToken() != null ? config.addBosToken()
                : templateBos != null || !config.present();
        return new BpeTokenizer(file, model, steps, added, bos, eos, addBos);
    }

    private static String first(String... options) {
        for (String s : options) {
            if (s != null) {
                return s;
            }
        }
        return null;
    }

    private static Map<Integer, String> idsOf(Map<String, Integer> vocab) {
        Map<Integer, String> byId = new HashMap<>(vocab.size() * 2);
        vocab.forEach((t, id) -> byId.put(id, t));
        return byId;
    }

    /**
     * An added token must have the id the vocabulary gives its text, or an id no other token has (the
     * library would silently renumber it; a file like that was not written by the library).
     */
    private static void checkAddedId(Path file, String where, AddedToken a, Map<String, Integer> vocab,
                                     Map<Integer, String> takenIds, String vocabName) {
        Integer vid = vocab.get(a.content());
        if (vid != null && vid != a.id()) {
            throw new FormatException(file, where + " gives '" + abbreviate(a.content()) + "' id " + a.id() + " but "
                    + vocabName + " gives it " + vid, REDOWNLOAD);
        }
        String holder = takenIds.putIfAbsent(a.id(), a.content());
        if (holder != null && !holder.equals(a.content())) {
            throw new FormatException(file, where + " gives id " + a.id() + " to '" + abbreviate(a.content())
                    + "', which already belongs to '" + abbreviate(holder) + "'", REDOWNLOAD);
        }
    }

    /** Parses a {@code {"token": id}} map, checking the ids. */
    private static Map<String, Integer> vocab(Path file, JsonNode node, String what) {
        if (!node.isObject()) {
            throw new FormatException(file, what + "is not a JSON object {\"token\": id, ...}", REDOWNLOAD);
        }
        Map<String, Integer> vocab = new HashMap<>(node.size() * 2);
        Map<Integer, String> byId = new HashMap<>(node.size() * 2);
        for (Map.Entry<String, JsonNode> e : node.properties()) {
            JsonNode v = e.getValue();
            if (!v.isIntegralNumber() || !v.canConvertToInt() || v.intValue() < 0 || v.intValue() >= MAX_ID) {
                throw new FormatException(file, what + "gives token '" + abbreviate(e.getKey()) + "' the id " + v
                        + ", not an integer in [0, " + MAX_ID + ")", REDOWNLOAD);
            }
            String other = byId.put(v.intValue(), e.getKey());
            if (other != null) {
                throw new FormatException(file, what + "gives id " + v.intValue() + " to both '" + abbreviate(other)
                        + "' and '" + abbreviate(e.getKey()) + "'", REDOWNLOAD);
            }
            vocab.put(e.getKey(), v.intValue());
        }
        if (vocab.isEmpty()) {
            throw new FormatException(file, what + "is empty", REDOWNLOAD);
        }
        return vocab;
    }

    /** Parses an added token object ({@code content}, {@code special}, {@code lstrip}, ...). */
    static AddedToken addedToken(Path file, String where, JsonNode t, int id) {
        if (t == null || !t.isObject()) {
            throw new FormatException(file, where + " is not an object", REDOWNLOAD);
        }
        String content = text(t.get("content"));
        if (content == null || content.isEmpty()) {
            throw new FormatException(file, where + ".content is missing or empty", REDOWNLOAD);
        }
        boolean special = bool(file, t, "special", false);
        return new AddedToken(id, content, special, bool(file, t, "lstrip", false), bool(file, t, "rstrip", false),
                bool(file, t, "single_word", false), bool(file, t, "normalized", !special));
    }

    /** Reads a JSON file; a missing, unreadable or malformed file is a FormatException naming it. */
    static JsonNode readJson(Path file) {
        try {
            JsonNode n = JSON.readTree(file.toFile());
            if (n == null || n.isMissingNode()) {
                throw new FormatException(file, "is empty, not JSON", REDOWNLOAD);
            }
            return n;
        } catch (JsonProcessingException e) {
            var loc = e.getLocation();
            throw new FormatException(file, "is not valid JSON" + (loc == null ? "" : " (line " + loc.getLineNr()
                    + ", column " + loc.getColumnNr() + ")") + ": " + oneLine(e.getOriginalMessage()), REDOWNLOAD, e);
        } catch (NoSuchFileException | java.io.FileNotFoundException e) {
            throw new FormatException(file, "does not exist", "give the path of an existing file", e);
        } catch (IOException e) {
            throw new FormatException(file, "cannot be read: " + oneLine(e.getMessage()), "check the file's permissions", e);
        }
    }

    private static List<String> readLines(Path file) {
        try {
            return Files.readAllLines(file, StandardCharsets.UTF_8);
        } catch (CharacterCodingException e) {
            throw new FormatException(file, "is not UTF-8 text", REDOWNLOAD, e);
        } catch (NoSuchFileException e) {
            throw new FormatException(file, "does not exist", "give the path of an existing file", e);
        } catch (IOException e) {
            throw new FormatException(file, "cannot be read: " + oneLine(e.getMessage()), "check the file's permissions", e);
        }
    }

    private static boolean bool(Path file, JsonNode node, String key, boolean dflt) {
        JsonNode n = node.get(key);
        if (n == null || n.isNull()) {
            return dflt;
        }
        if (!n.isBoolean()) {
            throw new FormatException(file, key + " is " + abbreviate(n.toString()) + ", not true or false", REDOWNLOAD);
        }
        return n.booleanValue();
    }

    private static String text(JsonNode n) {
        return n != null && n.isTextual() ? n.asText() : null;
    }

    private static String typeOf(JsonNode n) {
        String t = text(n.get("type"));
        return t == null ? abbreviate(n.toString()) : "'" + t + "'";
    }

    private static FormatException unsupported(Path file, String what) {
        return new FormatException(file, "uses " + what + ", which this tokenizer does not implement",
                "use a checkpoint with a GPT-2/OPT/Falcon-style byte-level BPE tokenizer");
    }

    private static String abbreviate(String s) {
        String t = oneLine(s);
        return t.length() > 80 ? t.substring(0, 77) + "..." : t;
    }

    private static String oneLine(String s) {
        return s == null ? "" : s.replace('\n', ' ').replace('\r', ' ');
    }
}
