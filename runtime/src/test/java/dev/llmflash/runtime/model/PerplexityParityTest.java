package dev.llmflash.runtime.model;

import dev.llmflash.formats.testing.TestData;
import dev.llmflash.runtime.generate.Perplexity;
import dev.llmflash.runtime.kernels.Kernels;
import dev.llmflash.runtime.tokenizer.BpeTokenizer;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.ValueSource;

import java.nio.file.Files;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

/** Perplexity on dev.txt by the reference protocol, within 0.1% of Hugging Face's. */
class PerplexityParityTest {

    @ParameterizedTest
    @ValueSource(strings = {"opt-mini", "falcon-mini-relu"})
    void devPerplexityMatchesHuggingFace(String name) throws Exception {
        double expected = Reference.outputs().get(name).get("dev_ppl_fp32").asDouble();
        long expectedTokens = Reference.outputs().get(name).get("dev_ppl_tokens").asLong();
        assertTrue(expected > 1, "reference perplexity present");
        String text = Files.readString(TestData.reference("dev.txt"));
        try (Kernels k = new Kernels(2); LanguageModel m = Models.openHf(TestData.model(name), k)) {
            BpeTokenizer tok = BpeTokenizer.fromModelDir(TestData.model(name));
            Perplexity.Result r = Perplexity.evaluate(m, tok.encode(text), tok.bosId(), 256, 16384);
            assertEquals(expectedTokens, r.scoredTokens(), "scored positions");
            double rel = Math.abs(r.perplexity() - expected) / expected;
            assertTrue(rel <= 1e-3, name + ": perplexity " + r.perplexity() + " vs HF " + expected + " (rel " + rel + ")");
        }
    }
}
