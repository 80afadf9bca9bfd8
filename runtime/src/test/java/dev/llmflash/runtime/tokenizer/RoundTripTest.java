package dev.llmflash.runtime.tokenizer;

import dev.llmflash.formats.testing.TestData;
import org.junit.jupiter.api.Test;

import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import java.util.Random;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;
import java.util.concurrent.Future;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

/** decode(encode(s)) == s: byte-level BPE loses nothing (for text without special-token strings). */
class RoundTripTest {
    private static final List<String> SPECIAL_TEXTS = List.of("<s>", "</s>", "<pad>", "<unk>", "<|endoftext|>",
            ">>");

    static List<String> randomStrings(long seed, int count) {
        Random r = new Random(seed);
        String[] ws = {" ", "  ", "   ", "\t", "\n", "\r\n", "\u00a0", "\u2003", "\u3000", "\u2028", "\u0085", "\u000b"};
        List<String> out = new ArrayList<>();
        while (out.size() < count) {
            StringBuilder sb = new StringBuilder();
            int len = r.nextInt(40);
            for (int i = 0; i < len; i++) {
                switch (r.nextInt(6)) {
                    case 0 -> sb.append(ws[r.nextInt(ws.length)]);
                    case 1 -> sb.append((char) (0x20 + r.nextInt(0x5F)));
                    case 2 -> sb.append("'s 'll n't ".charAt(r.nextInt(11)));
                    case 3 -> sb.appendCodePoint(r.nextInt(0x800));
                    case 4 -> sb.appendCodePoint(0x1F300 + r.nextInt(0x300)); // emoji
                    default -> {
                        int cp;
                        do {
                            cp = r.nextInt(0x110000);
                        } while ((cp >= 0xD800 && cp <= 0xDFFF) || !Character.isDefined(cp) && r.nextBoolean());
                        sb.appendCodePoint(cp);
                    }
                }
            }
            String s = sb.toString();
            if (SPECIAL_TEXTS.stream().noneMatch(s::contains)) {
                out.add(s);
            }
        }
        return out;
    }

    @Test
    void randomUnicodeAndWhitespaceRunsRoundTrip() {
        List<BpeTokenizer> toks = List.of(
                BpeTokenizer.fromModelDir(TestData.model("opt-mini")),
                BpeTokenizer.fromVocabMerges(TestData.reference("gpt2-vocab.json"), TestData.reference("gpt2-merges.txt")),
                BpeTokenizer.fromTokenizerJson(TestData.path("tokenizer/falcon_style_tokenizer.json")));
        List<String> strings = randomStrings(11, 3000);
        strings.addAll(List.of("", " ", "      ", "\n\n\n", "a" + " ".repeat(100) + "b", "x".repeat(5000),
                "1".repeat(1000), "🤖".repeat(300)));
        for (BpeTokenizer tok : toks) {
            for (String s : strings) {
                int[] ids = tok.encode(s);
                for (int id : ids) {
                    assertTrue(id >= 0 && id < tok.vocabSize(), "id in range");
                }
                assertEquals(s, tok.decode(ids), () -> tok + ": " + Cases.quote(s));
            }
        }
    }

    @Test
    void emptyTextHasNoIds() {
        BpeTokenizer tok = BpeTokenizer.fromModelDir(TestData.model("opt-mini"));
        assertEquals(0, tok.encode("").length);
        assertArrayEquals(new int[] {2}, tok.encodeWithBos(""));
        assertEquals("", tok.decode(new int[0]));
    }

    @Test
    void concurrentEncodingGivesTheSameIds() throws Exception {
        BpeTokenizer tok = BpeTokenizer.fromModelDir(TestData.model("opt-mini"));
        List<String> strings = randomStrings(5, 2000);
        BpeTokenizer fresh = BpeTokenizer.fromModelDir(TestData.model("opt-mini"));
        List<int[]> expected = strings.stream().map(fresh::encode).toList();
        ExecutorService pool = Executors.newFixedThreadPool(4);
        try {
            List<Future<Boolean>> results = new ArrayList<>();
            for (int t = 0; t < 4; t++) {
                int offset = t;
                results.add(pool.submit(() -> {
                    for (int k = 0; k < strings.size(); k++) {
                        int i = (k * 7 + offset * 13) % strings.size();
                        if (!Arrays.equals(expected.get(i), tok.encode(strings.get(i)))) {
                            return false;
                        }
                    }
                    return true;
                }));
            }
            for (Future<Boolean> f : results) {
                assertTrue(f.get());
            }
        } finally {
            pool.shutdownNow();
        }
    }
}
