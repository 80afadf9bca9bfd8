package dev.llmflash.runtime.tokenizer;

import dev.llmflash.formats.testing.TestData;
import org.junit.jupiter.api.Test;

import java.util.List;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertTrue;

class StreamingDecoderTest {
    private static final BpeTokenizer TOK = BpeTokenizer.fromModelDir(TestData.model("opt-mini"));

    /** No U+FFFD and no unpaired surrogate: nothing but whole characters. */
    private static void assertWholeCharacters(String s, String context) {
        for (int i = 0; i < s.length(); i++) {
            char c = s.charAt(i);
            assertFalse(c == '\uFFFD', context + ": U+FFFD in " + Cases.quote(s));
            if (Character.isHighSurrogate(c)) {
                assertTrue(i + 1 < s.length() && Character.isLowSurrogate(s.charAt(i + 1)), context + ": split pair");
                i++;
            } else {
                assertFalse(Character.isLowSurrogate(c), context + ": lone low surrogate");
            }
        }
    }

    @Test
    void emojiAndAccentsComeOutWholeAndComplete() {
        Cases c = Cases.read(TestData.reference("mini_tokenizer_cases.json")).stream()
                .filter(x -> x.text().contains("🤖")).findFirst().orElseThrow();
        String full = TOK.decode(c.ids());
        assertEquals(c.decoded(), full);
        StreamingDecoder d = TOK.decoder();
        StringBuilder sofar = new StringBuilder();
        int heldBack = 0;
        for (int id : c.ids()) {
            String piece = d.push(id);
            assertWholeCharacters(piece, "token " + id);
            heldBack += piece.isEmpty() ? 1 : 0;
            sofar.append(piece);
            assertTrue(full.startsWith(sofar.toString()), "a prefix of the full text: " + Cases.quote(sofar.toString()));
        }
        sofar.append(d.flush());
        assertEquals(full, sofar.toString());
        assertTrue(heldBack >= 4, "the multi-byte characters span tokens, so some pushes must wait: " + heldBack);
    }

    @Test
    void streamingEqualsFullDecodeOnEveryOracleCase() {
        for (String file : List.of("tokenizer/opt_mini_fuzz_cases.json")) {
            for (Cases c : Cases.read(TestData.path(file))) {
                StreamingDecoder d = TOK.decoder();
                StringBuilder sb = new StringBuilder();
                for (int id : c.ids()) {
                    sb.append(d.push(id));
                }
                sb.append(d.flush());
                assertEquals(c.decoded(), sb.toString(), () -> "streaming " + Cases.quote(c.text()));
            }
        }
    }

    @Test
    void truncatedAndInvalidBytes() {
        int f0 = TOK.id(String.valueOf(ByteLevelAlphabet.charOf(0xF0))).orElseThrow();
        int x9f = TOK.id(String.valueOf(ByteLevelAlphabet.charOf(0x9F))).orElseThrow();
        int ff = TOK.id(String.valueOf(ByteLevelAlphabet.charOf(0xFF))).orElseThrow();
        int a = TOK.id("a").orElseThrow();
        StreamingDecoder d = TOK.decoder();
        assertEquals("", d.push(f0));
        assertEquals("", d.push(x9f));
        assertEquals("", d.push(2), "</s> is special: skipped");
        assertEquals("\uFFFDa", d.push(a), "the cut-off sequence is ill-formed once 'a' arrives");
        assertEquals("\uFFFD", d.push(ff), "a byte that never starts a sequence comes out at once");
        assertEquals("", d.push(f0));
        assertEquals("\uFFFD", d.flush(), "a sequence cut off at the end");
        assertEquals("", d.flush());
        assertEquals("a", d.push(a), "usable again after flush");
        assertEquals(TOK.decode(new int[] {f0, x9f, 2, a, ff, f0}), "\uFFFDa\uFFFD\uFFFD");
    }
}
