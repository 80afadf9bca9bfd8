package dev.llmflash.runtime.tokenizer;

import org.junit.jupiter.api.Test;

import java.util.ArrayList;
import java.util.List;
import java.util.Random;
import java.util.regex.Matcher;
import java.util.regex.Pattern;

import static org.junit.jupiter.api.Assertions.assertEquals;

class Gpt2SplitterTest {
    private static List<String> split(String s) {
        List<String> out = new ArrayList<>();
        Gpt2Splitter.split(s, out);
        return out;
    }

    /** Expected values printed by Python's {@code regex} module (the library OpenAI's encoder.py uses). */
    @Test
    void matchesPythonRegex() {
        assertEquals(List.of("a", "  ", " b"), split("a   b"));
        assertEquals(List.of("trailing", "   "), split("trailing   "));
        assertEquals(List.of("  ", " leading"), split("   leading"));
        assertEquals(List.of("I", "'m", " don", "'t", " '", "S", " '", "sup"), split("I'm don't 'S 'sup"));
        assertEquals(List.of(" \n\n", " x"), split(" \n\n x"));
        assertEquals(List.of("x", "\t", "\t", "y"), split("x\t\ty"));
        assertEquals(List.of("\u00a0", "\u00a0", "a"), split("\u00a0\u00a0a"));
        assertEquals(List.of("abc", "123", " 45", " \u00bd", " ..!?", " x"), split("abc123 45 \u00bd ..!? x"));
        assertEquals(List.of("\ud83e\udd16\ud83d\ude80", " ok"), split("\ud83e\udd16\ud83d\ude80 ok"));
        assertEquals(List.of("  "), split("  "));
        assertEquals(List.of(" "), split(" "));
        assertEquals(List.of("''", "s"), split("''s"));
        assertEquals(List.of("it", "'s", "'ll"), split("it's'll"));
        assertEquals(List.of(), split(""));
    }

    /**
     * A second, independent implementation: the same pattern in java.util.regex (Unicode mode, where
     * {@code \s} is White_Space as in Oniguruma and Python's regex), on random strings.
     */
    @Test
    void agreesWithJavaRegexOnRandomStrings() {
        Pattern gpt2 = Pattern.compile("'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)|\\s+",
                Pattern.UNICODE_CHARACTER_CLASS);
        String[] pool = {"a", "Z", "é", "ж", "日", "1", "٣", "½", "Ⅻ", " ", " ", "  ", "\t", "\n", "\r", "\u00a0", "\u2003",
                "\u3000", "\u0085", "\u001c", "'", "'s", "'ll", "'S", "!", ".", "—", "🤖", "\u0301", "_", "$", "\u200b"};
        Random r = new Random(7);
        for (int k = 0; k < 5000; k++) {
            StringBuilder sb = new StringBuilder();
            int parts = 1 + r.nextInt(12);
            for (int p = 0; p < parts; p++) {
                sb.append(pool[r.nextInt(pool.length)]);
            }
            String s = sb.toString();
            List<String> expected = new ArrayList<>();
            Matcher m = gpt2.matcher(s);
            while (m.find()) {
                expected.add(m.group());
            }
            assertEquals(expected, split(s), () -> "splitting " + Cases.quote(s));
        }
    }
}
