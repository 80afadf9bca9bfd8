package dev.llmflash.runtime.tokenizer;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.node.ObjectNode;
import dev.llmflash.formats.testing.TestData;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.List;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * The pre-tokenizers beyond GPT-2's, against the tokenizers library: a small hand-built tokenizer.json
 * laid out like Falcon-7B's (its added tokens and its pre-tokenizer Sequence: Punctuation(Contiguous),
 * ByteLevel, Digits, Split "[0-9][0-9][0-9]"), then one variant per feature (split behaviors, invert,
 * individual digits, prefix space, a Llama-3 style regex Split, added-token flags).
 */
class FalconStyleTokenizerTest {
    private static final Path FALCON_JSON = TestData.path("tokenizer/falcon_style_tokenizer.json");

    @Test
    void falconSequenceMatchesHuggingFace() {
        BpeTokenizer tok = BpeTokenizer.fromTokenizerJson(FALCON_JSON);
        Cases.assertAll(tok, Cases.read(TestData.path("tokenizer/falcon_style_cases.json")), "falcon-style");
        // Falcon's conventions: no </s>, so <|endoftext|> (id 11) is BOS and EOS.
        assertEquals(11, tok.bosId());
        assertEquals(11, tok.eosId());
        assertTrue(tok.isSpecial(5), ">>ANSWER<< is special");
    }

    @Test
    void falconDigitAndPunctuationSplitsAreReallyApplied() {
        BpeTokenizer tok = BpeTokenizer.fromTokenizerJson(FALCON_JSON);
        // Without the Digits/Split steps "1234567" would be one GPT-2 pre-token; Falcon cuts it into
        // "123" "456" "7", so no token spans a 3-digit boundary.
        int[] ids = tok.encode("1234567");
        StringBuilder pieces = new StringBuilder();
        for (int id : ids) {
            pieces.append('[').append(tok.token(id)).append(']');
        }
        String p = pieces.toString();
        assertFalse(p.contains("34") || p.contains("67"), p);
        assertEquals("1234567", tok.decode(ids));
    }

    @Test
    void falconFolderWithConfigThatNamesOnlyEos(@TempDir Path dir) throws IOException {
        // Falcon-7B's tokenizer_config.json names eos_token only and never adds BOS.
        Files.copy(FALCON_JSON, dir.resolve("tokenizer.json"));
        Files.writeString(dir.resolve("tokenizer_config.json"),
                "{\"add_prefix_space\": false, \"eos_token\": \"<|endoftext|>\", \"model_max_length\": 2048,"
                        + " \"tokenizer_class\": \"PreTrainedTokenizerFast\"}");
        BpeTokenizer tok = BpeTokenizer.fromModelDir(dir);
        assertEquals(11, tok.eosId());
        assertEquals(11, tok.bosId());
        assertFalse(tok.addsBos());
        assertArrayEquals(tok.encode("Hello world"), tok.encodeWithBos("Hello world"));
    }

    @Test
    void variantsMatchHuggingFace(@TempDir Path dir) throws IOException {
        JsonNode base = Cases.json(FALCON_JSON);
        JsonNode variants = Cases.json(TestData.path("tokenizer/pretokenizer_variants.json"));
        assertEquals(15, variants.size());
        for (JsonNode v : variants) {
            ObjectNode json = base.deepCopy();
            json.set("pre_tokenizer", v.get("pre_tokenizer"));
            if (v.has("added_tokens")) {
                json.set("added_tokens", v.get("added_tokens"));
            }
            String name = v.get("name").asText();
            Path file = dir.resolve(name + ".json");
            Cases.JSON.writeValue(file.toFile(), json);
            BpeTokenizer tok = BpeTokenizer.fromTokenizerJson(file);
            Cases.assertAll(tok, Cases.parse(v.get("cases")), name);
        }
    }

    @Test
    void splitBehaviorsOnTheLibraryDocExample() {
        // The tokenizers library documents these for "the-final--countdown" split on '-'.
        String s = "the-final--countdown";
        SplitBehavior.Spans spans = SplitBehavior.Spans.ofChars(s, c -> c == '-');
        assertEquals(List.of("the", "final", "countdown"), apply(SplitBehavior.REMOVED, s, spans));
        assertEquals(List.of("the", "-", "final", "-", "-", "countdown"), apply(SplitBehavior.ISOLATED, s, spans));
        assertEquals(List.of("the-", "final-", "-", "countdown"), apply(SplitBehavior.MERGED_WITH_PREVIOUS, s, spans));
        assertEquals(List.of("the", "-final", "-", "-countdown"), apply(SplitBehavior.MERGED_WITH_NEXT, s, spans));
        assertEquals(List.of("the", "-", "final", "--", "countdown"), apply(SplitBehavior.CONTIGUOUS, s, spans));
    }

    private static List<String> apply(SplitBehavior b, String s, SplitBehavior.Spans spans) {
        List<String> out = new java.util.ArrayList<>();
        b.apply(s, spans, out);
        return out;
    }
}
