package dev.llmflash.runtime.tokenizer;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;

import java.io.IOException;
import java.io.UncheckedIOException;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;

/** Oracle cases {text, ids, decoded} as the reference files store them, and the check they share. */
record Cases(String text, int[] ids, String decoded) {
    static final ObjectMapper JSON = new ObjectMapper();

    static JsonNode json(Path file) {
        try {
            return JSON.readTree(file.toFile());
        } catch (IOException e) {
            throw new UncheckedIOException(e);
        }
    }

    static List<Cases> parse(JsonNode array) {
        List<Cases> out = new ArrayList<>();
        for (JsonNode c : array) {
            int[] ids = new int[c.get("ids").size()];
            for (int k = 0; k < ids.length; k++) {
                ids[k] = c.get("ids").get(k).intValue();
            }
            out.add(new Cases(c.get("text").asText(), ids, c.get("decoded").asText()));
        }
        assertFalse(out.isEmpty(), "no cases");
        return out;
    }

    static List<Cases> read(Path file) {
        return parse(json(file));
    }

    /** Every case: identical ids, and decode(ids) identical to the reference text. */
    static void assertAll(BpeTokenizer tok, List<Cases> cases, String what) {
        for (Cases c : cases) {
            int[] got = tok.encode(c.text());
            assertEquals(Arrays.toString(c.ids()), Arrays.toString(got), () -> what + ": ids of " + quote(c.text()));
            assertEquals(c.decoded(), tok.decode(c.ids()), () -> what + ": decode of the ids of " + quote(c.text()));
        }
    }

    static String quote(String s) {
        StringBuilder sb = new StringBuilder("\"");
        s.codePoints().forEach(cp -> {
            if (cp < 0x20 || cp == 0x7F || (cp >= 0x80 && cp < 0xA0) || cp == 0x2028 || cp == 0x2029) {
                sb.append(String.format("\\u%04x", cp));
            } else {
                sb.appendCodePoint(cp);
            }
        });
        return sb.append('"').toString();
    }
}
