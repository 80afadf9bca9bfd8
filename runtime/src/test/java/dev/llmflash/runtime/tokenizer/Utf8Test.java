package dev.llmflash.runtime.tokenizer;

import org.junit.jupiter.api.Test;

import java.util.HexFormat;
import java.util.Random;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;

class Utf8Test {
    private static String decode(String hex) {
        byte[] b = HexFormat.of().parseHex(hex);
        return Utf8.decode(b, 0, b.length);
    }

    /** Expected values printed by Python: {@code bytes.fromhex(h).decode("utf-8", "replace")}. */
    @Test
    void replacesMaximalSubpartsAsPythonAndRustDo() {
        String r = "\uFFFD";
        assertEquals(r, decode("e282"));
        assertEquals(r + "a", decode("e28261"));
        assertEquals(r, decode("f09f98"));
        assertEquals("\uD83D\uDE00", decode("f09f9880"));
        assertEquals(r + r, decode("c0af"));
        assertEquals(r + r + r, decode("eda080"));
        assertEquals(r + r + r + r, decode("f4908080"));
        assertEquals(r + r + "a", decode("808061"));
        assertEquals(r + r + r, decode("e080af"));
        assertEquals(r + r + r + r, decode("f08fbfbf"));
        assertEquals("a" + r + "b" + r, decode("61ff62fe"));
        assertEquals(r, decode("c2"));
        assertEquals(r + "\u1000", decode("e180e18080"));
        assertEquals(r + r + r, decode("f18080e180c2"));
        assertEquals(r + r, decode("f580"));
    }

    @Test
    void holdsBackATruncatedSequenceOnlyWhenMoreMayCome() {
        byte[] b = HexFormat.of().parseHex("61f09f98");
        StringBuilder sb = new StringBuilder();
        assertEquals(1, Utf8.decode(b, 0, b.length, sb, false));
        assertEquals("a", sb.toString());
        byte[] bad = HexFormat.of().parseHex("61f09f41");
        sb.setLength(0);
        assertEquals(4, Utf8.decode(bad, 0, bad.length, sb, false));
        assertEquals("a\uFFFDA", sb.toString());
    }

    @Test
    void encodesLikeTheJdkAndReplacesLoneSurrogates() {
        Random r = new Random(3);
        for (int k = 0; k < 2000; k++) {
            StringBuilder sb = new StringBuilder();
            for (int i = 0; i < 20; i++) {
                int cp;
                do {
                    cp = r.nextInt(4) == 0 ? r.nextInt(0x110000) : r.nextInt(0x800);
                } while (cp >= 0xD800 && cp <= 0xDFFF);
                sb.appendCodePoint(cp);
            }
            String s = sb.toString();
            byte[] utf8 = s.getBytes(java.nio.charset.StandardCharsets.UTF_8);
            assertArrayEquals(utf8, Utf8.encode(s));
            assertEquals(s, Utf8.decode(utf8, 0, utf8.length));
        }
        assertArrayEquals(HexFormat.of().parseHex("61efbfbd62efbfbd"), Utf8.encode("a\uD800b\uDC00"));
    }
}
