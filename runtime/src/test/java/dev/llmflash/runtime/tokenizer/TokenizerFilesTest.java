package dev.llmflash.runtime.tokenizer;

import com.fasterxml.jackson.databind.node.ObjectNode;
import dev.llmflash.formats.FormatException;
import dev.llmflash.formats.testing.TestData;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;
import org.junit.jupiter.api.function.Executable;

import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.List;
import java.util.function.Consumer;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

/** Loading: which files and settings are used, and one clear error line for every bad input. */
class TokenizerFilesTest {
    private static final Path OPT_MINI = TestData.model("opt-mini");
    private static final String PROMPT = "In the beginning God created the heaven and the earth.";
    private static final int[] PROMPT_IDS = {605, 267, 4046, 782, 7427, 267, 2132, 299, 267, 1176, 17};

    @TempDir
    Path dir;

    /** Asserts a FormatException whose one-line message starts with {@code file} and contains each part. */
    private static FormatException assertFormatError(Path file, Executable load, String... parts) {
        FormatException e = assertThrows(FormatException.class, load);
        String m = e.getMessage();
        assertTrue(m.startsWith(file.toString() + ": "), "names " + file + ": " + m);
        assertFalse(m.contains("\n"), "one line: " + m);
        for (String p : parts) {
            assertTrue(m.contains(p), "'" + p + "' in: " + m);
        }
        return e;
    }

    private Path copyOptMini(String... files) throws IOException {
        for (String f : files) {
            Files.copy(OPT_MINI.resolve(f), dir.resolve(f));
        }
        return dir;
    }

    private Path tokenizerJsonWith(Consumer<ObjectNode> edit) throws IOException {
        ObjectNode json = (ObjectNode) Cases.json(OPT_MINI.resolve("tokenizer.json"));
        edit.accept(json);
        Path file = dir.resolve("tokenizer.json");
        Cases.JSON.writeValue(file.toFile(), json);
        return file;
    }

    // ------------------------------------------------------------------ which files, which settings

    @Test
    void folderWithOnlyVocabAndMergesUsesThem() throws IOException {
        BpeTokenizer tok = BpeTokenizer.fromModelDir(copyOptMini("vocab.json", "merges.txt", "tokenizer_config.json"));
        assertArrayEquals(PROMPT_IDS, tok.encode(PROMPT));
        assertTrue(tok.toString().contains("vocab.json"), tok.toString());
        assertTrue(tok.addsBos());
    }

    @Test
    void withoutConfigOptConventionsHold() throws IOException {
        BpeTokenizer tok = BpeTokenizer.fromModelDir(copyOptMini("tokenizer.json"));
        assertEquals(2, tok.bosId());
        assertEquals(2, tok.eosId());
        assertTrue(tok.addsBos());
        assertEquals(2, tok.encodeWithBos(PROMPT)[0]);
    }

    @Test
    void configDecidesBosAndWhetherToAddIt() throws IOException {
        copyOptMini("tokenizer.json");
        Files.writeString(dir.resolve("tokenizer_config.json"),
                "{\"add_bos_token\": false, \"bos_token\": {\"__type\": \"AddedToken\", \"content\": \"<s>\"},"
                        + " \"eos_token\": \"</s>\"}");
        BpeTokenizer tok = BpeTokenizer.fromModelDir(dir);
        assertEquals(0, tok.bosId());
        assertEquals(2, tok.eosId());
        assertFalse(tok.addsBos());
        assertArrayEquals(PROMPT_IDS, tok.encodeWithBos(PROMPT));
    }

    @Test
    void configWithoutAddBosTokenAddsNone() throws IOException {
        copyOptMini("tokenizer.json");
        Files.writeString(dir.resolve("tokenizer_config.json"), "{\"eos_token\": \"</s>\"}");
        assertFalse(BpeTokenizer.fromModelDir(dir).addsBos());
    }

    @Test
    void templatePostProcessorPutsBosInFront() throws IOException {
        Path file = tokenizerJsonWith(j -> j.set("post_processor", Cases.JSON.valueToTree(java.util.Map.of(
                "type", "TemplateProcessing",
                "single", List.of(java.util.Map.of("SpecialToken", java.util.Map.of("id", "<s>", "type_id", 0)),
                        java.util.Map.of("Sequence", java.util.Map.of("id", "A", "type_id", 0)))))));
        BpeTokenizer tok = BpeTokenizer.fromTokenizerJson(file);
        assertTrue(tok.addsBos());
        assertEquals(0, tok.encodeWithBos(PROMPT)[0]);
    }

    @Test
    void configAddedTokensDecoderMakesSpecialTokens() throws IOException {
        copyOptMini("vocab.json", "merges.txt");
        // Make "the" (489) a special added token: it is cut out of " the" before BPE, and decode skips it.
        Files.writeString(dir.resolve("tokenizer_config.json"), "{\"added_tokens_decoder\": {\"489\": {\"content\":"
                + " \"the\", \"special\": true, \"lstrip\": false, \"normalized\": false}}}");
        BpeTokenizer tok = BpeTokenizer.fromModelDir(dir);
        assertTrue(tok.isSpecial(489));
        int[] ids = tok.encode(PROMPT);
        assertEquals(3, java.util.Arrays.stream(ids).filter(id -> id == 489).count());
        assertEquals("In  beginning God created  heaven and  earth.", tok.decode(ids));
    }

    // ------------------------------------------------------------------ missing files

    @Test
    void missingFolder() {
        Path nowhere = dir.resolve("nowhere");
        assertFormatError(nowhere, () -> BpeTokenizer.fromModelDir(nowhere), "is not a folder");
    }

    @Test
    void folderWithoutTokenizerFiles() {
        assertFormatError(dir, () -> BpeTokenizer.fromModelDir(dir),
                "no tokenizer", "tokenizer.json", "vocab.json", "merges.txt");
    }

    @Test
    void folderWithVocabButNoMerges() throws IOException {
        copyOptMini("vocab.json");
        assertFormatError(dir, () -> BpeTokenizer.fromModelDir(dir), "merges.txt is missing");
    }

    @Test
    void missingFilesGivenDirectly() {
        Path vocab = dir.resolve("vocab.json");
        assertFormatError(vocab, () -> BpeTokenizer.fromVocabMerges(vocab, OPT_MINI.resolve("merges.txt")), "does not exist");
        Path merges = dir.resolve("merges.txt");
        assertFormatError(merges, () -> BpeTokenizer.fromVocabMerges(OPT_MINI.resolve("vocab.json"), merges), "does not exist");
        Path json = dir.resolve("tokenizer.json");
        assertFormatError(json, () -> BpeTokenizer.fromTokenizerJson(json), "does not exist");
    }

    // ------------------------------------------------------------------ malformed files

    @Test
    void corruptJsonNamesTheFile() throws IOException {
        copyOptMini("merges.txt");
        Path vocab = dir.resolve("vocab.json");
        Files.writeString(vocab, "{\"a\": 0, \"b\": ");
        assertFormatError(vocab, () -> BpeTokenizer.fromModelDir(dir), "is not valid JSON");

        Path json = dir.resolve("tokenizer.json");
        String full = Files.readString(OPT_MINI.resolve("tokenizer.json"));
        Files.writeString(json, full.substring(0, full.length() / 2));
        assertFormatError(json, () -> BpeTokenizer.fromModelDir(dir), "is not valid JSON", "line");

        Path config = dir.resolve("tokenizer_config.json");
        Files.writeString(config, "{\"bos_token\": ");
        assertFormatError(config, () -> BpeTokenizer.fromModelDir(dir), "is not valid JSON");
    }

    @Test
    void badVocabularies() throws IOException {
        Path merges = OPT_MINI.resolve("merges.txt");
        Path vocab = dir.resolve("vocab.json");
        Files.writeString(vocab, "[1, 2]");
        assertFormatError(vocab, () -> BpeTokenizer.fromVocabMerges(vocab, merges), "not a JSON object");
        Files.writeString(vocab, "{\"a\": \"x\"}");
        assertFormatError(vocab, () -> BpeTokenizer.fromVocabMerges(vocab, merges), "'a'", "not an integer");
        Files.writeString(vocab, "{\"a\": -1}");
        assertFormatError(vocab, () -> BpeTokenizer.fromVocabMerges(vocab, merges), "not an integer");
        Files.writeString(vocab, "{\"a\": 1, \"b\": 1}");
        assertFormatError(vocab, () -> BpeTokenizer.fromVocabMerges(vocab, merges), "id 1 to both 'a' and 'b'");
        Files.writeString(vocab, "{}");
        assertFormatError(vocab, () -> BpeTokenizer.fromVocabMerges(vocab, merges), "is empty");
    }

    @Test
    void badMerges() throws IOException {
        Path vocab = OPT_MINI.resolve("vocab.json");
        Path merges = dir.resolve("merges.txt");
        Files.writeString(merges, "#version: 0.2\nĠ t\nĠ a b\n");
        assertFormatError(merges, () -> BpeTokenizer.fromVocabMerges(vocab, merges), "line 3", "not a merge rule");
        Files.writeString(merges, "#version: 0.2\nĠ t\n\nĠ a\n");
        assertFormatError(merges, () -> BpeTokenizer.fromVocabMerges(vocab, merges), "line 3");
        Files.writeString(merges, "#version: 0.2\nĠ t\nq Ġzzz\n");
        assertFormatError(merges, () -> BpeTokenizer.fromVocabMerges(vocab, merges), "line 3",
                "'Ġzzz'", "not in the vocabulary");
        Files.write(merges, new byte[] {'a', ' ', 'b', (byte) 0xC3, '\n'});
        assertFormatError(merges, () -> BpeTokenizer.fromVocabMerges(vocab, merges), "not UTF-8");
    }

    @Test
    void badTokenizerJsonModels() throws IOException {
        Path f = tokenizerJsonWith(j -> ((ObjectNode) j.get("model")).put("type", "WordPiece"));
        assertFormatError(f, () -> BpeTokenizer.fromTokenizerJson(f), "model type 'WordPiece'", "does not implement");
        tokenizerJsonWith(j -> ((ObjectNode) j.get("model")).put("dropout", 0.1));
        assertFormatError(f, () -> BpeTokenizer.fromTokenizerJson(f), "dropout");
        tokenizerJsonWith(j -> ((ObjectNode) j.get("model")).put("byte_fallback", true));
        assertFormatError(f, () -> BpeTokenizer.fromTokenizerJson(f), "byte_fallback");
        tokenizerJsonWith(j -> ((ObjectNode) j.get("model")).putArray("merges").add("Ġ").add("a b"));
        assertFormatError(f, () -> BpeTokenizer.fromTokenizerJson(f), "model.merges[0]");
        tokenizerJsonWith(j -> ((ObjectNode) j.get("model")).putArray("merges").addArray().add("x").add("Ġqqq"));
        assertFormatError(f, () -> BpeTokenizer.fromTokenizerJson(f), "model.merges[0]", "'Ġqqq'");
        tokenizerJsonWith(j -> ((ObjectNode) j.get("model")).remove("vocab"));
        assertFormatError(f, () -> BpeTokenizer.fromTokenizerJson(f), "model.vocab is missing");
        tokenizerJsonWith(j -> ((ObjectNode) j.get("added_tokens").get(2)).put("id", 7));
        assertFormatError(f, () -> BpeTokenizer.fromTokenizerJson(f), "'</s>' id 7", "model.vocab gives it 2");
        tokenizerJsonWith(j -> ((ObjectNode) j.get("added_tokens").get(2)).put("content", "<new>"));
        assertFormatError(f, () -> BpeTokenizer.fromTokenizerJson(f), "id 2", "already belongs to '</s>'");
    }

    @Test
    void unsupportedPipelineParts() throws IOException {
        Path f = tokenizerJsonWith(j -> j.putObject("normalizer").put("type", "NFC"));
        assertFormatError(f, () -> BpeTokenizer.fromTokenizerJson(f), "normalizer 'NFC'", "does not implement");
        tokenizerJsonWith(j -> j.putObject("pre_tokenizer").put("type", "Metaspace"));
        assertFormatError(f, () -> BpeTokenizer.fromTokenizerJson(f), "pre_tokenizer of type 'Metaspace'");
        tokenizerJsonWith(j -> {
            ObjectNode seq = j.putObject("pre_tokenizer").put("type", "Sequence");
            seq.putArray("pretokenizers").addObject().put("type", "Whitespace");
        });
        assertFormatError(f, () -> BpeTokenizer.fromTokenizerJson(f), "pre_tokenizer.pretokenizers[0] of type 'Whitespace'");
        tokenizerJsonWith(j -> {
            ObjectNode seq = j.putObject("pre_tokenizer").put("type", "Sequence");
            seq.putArray("pretokenizers").addObject().put("type", "Digits").put("individual_digits", true);
        });
        assertFormatError(f, () -> BpeTokenizer.fromTokenizerJson(f), "0 ByteLevel steps");
        tokenizerJsonWith(j -> {
            ObjectNode split = j.putObject("pre_tokenizer").put("type", "Split").put("behavior", "Isolated");
            split.putObject("pattern").put("Regex", "(?<name");
        });
        assertFormatError(f, () -> BpeTokenizer.fromTokenizerJson(f), "regex '(?<name'");
        tokenizerJsonWith(j -> {
            ObjectNode seq = j.putObject("pre_tokenizer").put("type", "Sequence");
            seq.putArray("pretokenizers").addObject().put("type", "Punctuation").put("behavior", "Sideways");
        });
        assertFormatError(f, () -> BpeTokenizer.fromTokenizerJson(f), "behavior is \"Sideways\"");
        tokenizerJsonWith(j -> j.putObject("decoder").put("type", "Metaspace"));
        assertFormatError(f, () -> BpeTokenizer.fromTokenizerJson(f), "decoder 'Metaspace'");
        tokenizerJsonWith(j -> j.putObject("post_processor").put("type", "BertProcessing"));
        assertFormatError(f, () -> BpeTokenizer.fromTokenizerJson(f), "post_processor 'BertProcessing'");
        tokenizerJsonWith(j -> {
            ObjectNode pp = j.putObject("post_processor").put("type", "TemplateProcessing");
            var single = pp.putArray("single");
            single.addObject().putObject("Sequence").put("id", "A");
            single.addObject().putObject("SpecialToken").put("id", "</s>");
        });
        assertFormatError(f, () -> BpeTokenizer.fromTokenizerJson(f), "post_processor template");
    }

    @Test
    void configNamingUnknownToken() throws IOException {
        copyOptMini("tokenizer.json");
        Path config = dir.resolve("tokenizer_config.json");
        Files.writeString(config, "{\"bos_token\": \"<|begin|>\"}");
        assertFormatError(config, () -> BpeTokenizer.fromModelDir(dir), "'<|begin|>'", "not in");
        Files.writeString(config, "{\"add_bos_token\": \"yes\"}");
        assertFormatError(config, () -> BpeTokenizer.fromModelDir(dir), "add_bos_token");
    }

    @Test
    void vocabularyWithoutBosOrEosNeedsAConfig() throws IOException {
        Path vocab = dir.resolve("vocab.json");
        Path merges = dir.resolve("merges.txt");
        Files.writeString(vocab, "{\"a\": 0, \"b\": 1, \"ab\": 2}");
        Files.writeString(merges, "a b\n", StandardCharsets.UTF_8);
        assertFormatError(vocab, () -> BpeTokenizer.fromVocabMerges(vocab, merges), "no BOS/EOS token");
        Files.writeString(dir.resolve("tokenizer_config.json"), "{\"bos_token\": \"a\", \"eos_token\": \"b\"}");
        BpeTokenizer tok = BpeTokenizer.fromModelDir(dir);
        assertEquals(0, tok.bosId());
        assertEquals(1, tok.eosId());
    }
}
