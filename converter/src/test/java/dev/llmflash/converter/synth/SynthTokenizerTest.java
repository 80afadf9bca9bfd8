package dev.llmflash.converter.synth;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import dev.llmflash.formats.hf.ModelConfig;
import dev.llmflash.formats.testing.TestData;
import dev.llmflash.runtime.tokenizer.BpeTokenizer;
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
 * The written tokenizer is the real GPT-2 BPE: on the GPT-2 reference cases (ids from the original
 * encoder) it gives GPT-2's segmentation, with ids moved past the family's special tokens.
 */
class SynthTokenizerTest {

    @Test
    void optTokenizerIsGpt2ShiftedPastOptsSpecials(@TempDir Path dir) throws IOException {
        ModelConfig model = Shapes.get("opt-6.7b").model();
        SynthTokenizer.write(dir, model);
        BpeTokenizer tok = BpeTokenizer.fromModelDir(dir);
        assertEquals(50261, tok.vocabSize());
        assertEquals(model.bosTokenId(), tok.bosId());
        assertEquals(model.eosTokenId(), tok.eosId());
        assertTrue(tok.addsBos(), "OPT prepends </s>");
        assertEquals("<pad>", tok.token(1));
        assertEquals("<|endoftext|>", tok.token(50260));
        for (JsonNode c : cases()) {
            String text = c.get("text").asText();
            int[] got = tok.encode(text);
            if (text.contains("<s>") || text.contains("</s>")) {
                // OPT's specials are atomic here, unlike in GPT-2.
                assertEquals(0, got[0], text);
                assertEquals(2, got[got.length - 1], text);
                continue;
            }
            assertArrayEquals(expected(c, 4, 50260), got, text);
            assertEquals(text, tok.decode(got), text);
        }
        assertTrue(maxId(tok) < model.vocabSize(), "ids below vocab_size");
    }

    @Test
    void falconTokenizerPutsEndOfTextAtConfigsEosId(@TempDir Path dir) throws IOException {
        ModelConfig model = Shapes.get("falcon-7b").model();
        SynthTokenizer.write(dir, model);
        BpeTokenizer tok = BpeTokenizer.fromModelDir(dir);
        assertEquals(50268, tok.vocabSize());
        assertEquals(11, tok.eosId());
        assertEquals(model.eosTokenId(), tok.eosId());
        assertEquals("<|endoftext|>", tok.token(11));
        assertFalse(tok.addsBos(), "Falcon prepends nothing");
        assertTrue(tok.isSpecial(2) && tok.token(2).equals(">>INTRODUCTION<<"));
        for (JsonNode c : cases()) {
            String text = c.get("text").asText();
            assertArrayEquals(expected(c, 12, 11), tok.encode(text), text);
        }
        assertArrayEquals(new int[] {2}, tok.encode(">>INTRODUCTION<<"), "prompt-format tokens are atomic");
        assertTrue(maxId(tok) < model.vocabSize());
    }

    @Test
    void theBundledVocabularyIsTheReferenceGpt2Vocabulary() throws IOException {
        JsonNode ref = new ObjectMapper().readTree(TestData.reference("gpt2-vocab.json").toFile());
        List<String> bundled = SynthTokenizer.gpt2Vocabulary();
        assertEquals(ref.size(), bundled.size());
        for (int id = 0; id < bundled.size(); id++) {
            assertEquals(id, ref.get(bundled.get(id)).asInt());
        }
        try (var in = SynthTokenizer.class.getResourceAsStream("gpt2-merges.txt")) {
            assertArrayEquals(Files.readAllBytes(TestData.reference("gpt2-merges.txt")), in.readAllBytes());
        }
    }

    /** GPT-2's ids for a case, moved past {@code offset} specials; GPT-2's end-of-text goes to {@code eot}. */
    private static int[] expected(JsonNode c, int offset, int eot) {
        JsonNode ids = c.get("ids");
        int[] out = new int[ids.size()];
        for (int i = 0; i < out.length; i++) {
            int id = ids.get(i).asInt();
            out[i] = id == SynthTokenizer.GPT2_SIZE - 1 ? eot : id + offset;
        }
        return out;
    }

    private static int maxId(BpeTokenizer tok) {
        return tok.vocabSize() - 1;
    }

    private static JsonNode cases() throws IOException {
        JsonNode root = new ObjectMapper().readTree(TestData.reference("gpt2_tokenizer_cases.json").toFile());
        assertTrue(root.size() >= 10, "reference cases present");
        return root;
    }
}
