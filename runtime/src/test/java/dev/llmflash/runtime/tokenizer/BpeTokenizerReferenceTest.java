package dev.llmflash.runtime.tokenizer;

import com.fasterxml.jackson.databind.JsonNode;
import dev.llmflash.formats.testing.TestData;
import org.junit.jupiter.api.Test;

import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.Arrays;
import java.util.List;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * Against Hugging Face: the committed cases (transformers 5.17 for testdata/reference, the tokenizers
 * library 0.23.2 for testdata/tokenizer) must come out with identical ids and identical decoded text.
 */
class BpeTokenizerReferenceTest {
    private static final Path OPT_MINI = TestData.model("opt-mini");

    private static BpeTokenizer optMiniFromTokenizerJson() {
        return BpeTokenizer.fromTokenizerJson(OPT_MINI.resolve("tokenizer.json"));
    }

    private static BpeTokenizer optMiniFromVocabMerges() {
        return BpeTokenizer.fromVocabMerges(OPT_MINI.resolve("vocab.json"), OPT_MINI.resolve("merges.txt"));
    }

    private static BpeTokenizer gpt2() {
        return BpeTokenizer.fromVocabMerges(TestData.reference("gpt2-vocab.json"), TestData.reference("gpt2-merges.txt"));
    }

    @Test
    void miniCasesFromTokenizerJson() {
        Cases.assertAll(optMiniFromTokenizerJson(), Cases.read(TestData.reference("mini_tokenizer_cases.json")),
                "opt-mini tokenizer.json");
    }

    @Test
    void miniCasesFromVocabAndMerges() {
        Cases.assertAll(optMiniFromVocabMerges(), Cases.read(TestData.reference("mini_tokenizer_cases.json")),
                "opt-mini vocab.json+merges.txt");
    }

    @Test
    void miniCasesFromModelDir() {
        Cases.assertAll(BpeTokenizer.fromModelDir(OPT_MINI), Cases.read(TestData.reference("mini_tokenizer_cases.json")),
                "opt-mini folder");
    }

    @Test
    void gpt2Cases() {
        Cases.assertAll(gpt2(), Cases.read(TestData.reference("gpt2_tokenizer_cases.json")), "gpt2");
    }

    @Test
    void randomStringsMatchHuggingFaceOnOptMini() {
        List<Cases> cases = Cases.read(TestData.path("tokenizer/opt_mini_fuzz_cases.json"));
        Cases.assertAll(optMiniFromTokenizerJson(), cases, "opt-mini tokenizer.json, random strings");
        Cases.assertAll(optMiniFromVocabMerges(), cases, "opt-mini vocab.json+merges.txt, random strings");
    }

    @Test
    void randomStringsMatchHuggingFaceOnGpt2() {
        Cases.assertAll(gpt2(), Cases.read(TestData.path("tokenizer/gpt2_fuzz_cases.json")), "gpt2, random strings");
    }

    @Test
    void referencePromptsWithBos() {
        JsonNode ref = Cases.json(TestData.reference("reference_outputs.json"));
        for (String model : List.of("opt-mini", "falcon-mini-relu", "opt-tiny-postln-bin")) {
            BpeTokenizer tok = BpeTokenizer.fromModelDir(TestData.model(model));
            assertEquals(2, tok.bosId(), model);
            assertTrue(tok.addsBos(), model);
            JsonNode prompts = ref.get(model).get("prompts");
            assertFalse(prompts.isEmpty(), model);
            for (JsonNode p : prompts) {
                int[] expected = new int[p.get("input_ids").size()];
                for (int k = 0; k < expected.length; k++) {
                    expected[k] = p.get("input_ids").get(k).intValue();
                }
                String text = p.get("text").asText();
                assertArrayEquals(expected, tok.encodeWithBos(text), model + ": " + text);
                assertEquals(text, tok.decode(expected), model + ": decode with BOS");
            }
        }
    }

    /** Whole corpora (360 KB and 1.5 MB): the count, a hash and both ends of the ids, and the round trip. */
    @Test
    void corporaMatchHuggingFace() throws IOException {
        BpeTokenizer tok = BpeTokenizer.fromModelDir(OPT_MINI);
        for (JsonNode d : Cases.json(TestData.path("tokenizer/opt_mini_corpus_digests.json"))) {
            String file = d.get("file").asText();
            String text = Files.readString(TestData.path(file), StandardCharsets.UTF_8);
            int[] ids = tok.encode(text);
            assertEquals(d.get("count").intValue(), ids.length, file + ": token count");
            assertEquals(d.get("fnv1a32").asText(), fnv1a32(ids), file + ": hash of the ids");
            int[] first = new int[d.get("first").size()];
            int[] last = new int[d.get("last").size()];
            for (int k = 0; k < first.length; k++) {
                first[k] = d.get("first").get(k).intValue();
                last[k] = d.get("last").get(k).intValue();
            }
            assertArrayEquals(first, Arrays.copyOf(ids, first.length), file + ": first ids");
            assertArrayEquals(last, Arrays.copyOfRange(ids, ids.length - last.length, ids.length), file + ": last ids");
            assertEquals(text, tok.decode(ids), file + ": round trip");
        }
    }

    /** FNV-1a 32 over the ids as 4-byte little-endian ints, as make_oracle.js computes it. */
    private static String fnv1a32(int[] ids) {
        int h = 0x811c9dc5;
        for (int id : ids) {
            for (int k = 0; k < 4; k++) {
                h ^= (id >>> (8 * k)) & 0xFF;
                h *= 0x01000193;
            }
        }
        return String.format("%08x", h);
    }

    @Test
    void vocabularyAccessors() {
        for (BpeTokenizer tok : List.of(optMiniFromTokenizerJson(), optMiniFromVocabMerges(), BpeTokenizer.fromModelDir(OPT_MINI))) {
            assertEquals(8192, tok.vocabSize());
            assertEquals(2, tok.bosId());
            assertEquals(2, tok.eosId());
            assertEquals("</s>", tok.token(2));
            assertEquals("<s>", tok.token(0));
            assertEquals(2, tok.id("</s>").orElseThrow());
            assertEquals(1, tok.id("<pad>").orElseThrow());
            assertEquals(3, tok.id("<unk>").orElseThrow());
            assertTrue(tok.id("no such token").isEmpty());
            assertEquals("Hello", tok.decode(new int[] {43, 440, 82}));
            assertEquals(" world", tok.decode(new int[] {43, 440, 82, 1671}, 3, 4));
            for (int id = 0; id < 4; id++) {
                assertTrue(tok.isSpecial(id), "special " + id);
            }
            assertFalse(tok.isSpecial(43));
            int[] withSpecials = tok.encode("<s>hi</s>");
            assertEquals("<s>hi</s>", tok.decode(withSpecials, 0, withSpecials.length, false));
            assertEquals("hi", tok.decode(withSpecials));
        }
        BpeTokenizer g = gpt2();
        assertEquals(50257, g.vocabSize());
        assertEquals(50256, g.bosId());
        assertEquals(50256, g.eosId());
        assertEquals("Ġthe", g.token(262));
        assertArrayEquals(new int[] {50256}, g.encode("<|endoftext|>"));
    }
}
