package dev.llmflash.runtime.tokenizer;

/**
 * UTF-8 both ways, with exactly the error handling Hugging Face uses.
 * <ul>
 *   <li>Decoding replaces each maximal ill-formed subpart with one U+FFFD (Unicode 16, §3.9 "U+FFFD
 *       Substitution of Maximal Subparts"), which is what Rust's {@code String::from_utf8_lossy} (the
 *       tokenizers library) and Python's {@code bytes.decode("utf-8", "replace")} both do. Java's
 *       own decoder is not used so that the rule, and where a truncated sequence starts, are explicit:
 *       the {@link StreamingDecoder} needs the latter.</li>
 *   <li>Encoding writes an unpaired surrogate (which a Java string may hold and a Rust or Python
 *       string may not) as U+FFFD.</li>
 * </ul>
 * Well-formed sequences (Table 3-7): {@code 00..7F}; {@code C2..DF 80..BF}; {@code E0 A0..BF 80..BF};
 * {@code E1..EC 80..BF 80..BF}; {@code ED 80..9F 80..BF}; {@code EE..EF 80..BF 80..BF};
 * {@code F0 90..BF 80..BF 80..BF}; {@code F1..F3 80..BF 80..BF 80..BF}; {@code F4 80..8F 80..BF 80..BF}.
 * <p>Stateless; thread-safe.
 */
final class Utf8 {
    static final char REPLACEMENT = '\uFFFD';

    private Utf8() {
    }

    /**
     * Decodes {@code b[from, to)} into {@code out}.
     *
     * @param endOfInput when false, a sequence that is cut off by {@code to} but well-formed so far is
     *                   left undecoded (a later call, with more bytes, decodes it); when true it becomes
     *                   one U+FFFD
     * @return the index of the first byte not decoded ({@code to} unless a cut-off sequence was held back)
     */
    static int decode(byte[] b, int from, int to, StringBuilder out, boolean endOfInput) {
        int i = from;
        while (i < to) {
            int b0 = b[i] & 0xFF;
            if (b0 < 0x80) {
                out.append((char) b0);
                i++;
                continue;
            }
            int need; // continuation bytes after the lead byte
            int lo = 0x80; // allowed range of the FIRST continuation byte (Table 3-7)
            int hi = 0xBF;
            int cp;
            if (b0 >= 0xC2 && b0 <= 0xDF) {
                need = 1;
                cp = b0 & 0x1F;
            } else if (b0 >= 0xE0 && b0 <= 0xEF) {
                need = 2;
                cp = b0 & 0x0F;
                if (b0 == 0xE0) {
                    lo = 0xA0;
                } else if (b0 == 0xED) {
                    hi = 0x9F; // no surrogates
                }
            } else if (b0 >= 0xF0 && b0 <= 0xF4) {
                need = 3;
                cp = b0 & 0x07;
                if (b0 == 0xF0) {
                    lo = 0x90;
                } else if (b0 == 0xF4) {
                    hi = 0x8F; // nothing above U+10FFFF
                }
            } else {
                out.append(REPLACEMENT); // 80..C1, F5..FF can never start a sequence
                i++;
                continue;
            }
            int j = i + 1;
            boolean bad = false;
            for (int k = 0; k < need; k++, j++) {
                if (j >= to) {
                    if (!endOfInput) {
                        return i; // well-formed so far: wait for the rest
                    }
                    bad = true;
                    break;
                }
                int bk = b[j] & 0xFF;
                if (bk < lo || bk > hi) {
                    bad = true; // byte j is not consumed: it may start the next sequence
                    break;
                }
                cp = (cp << 6) | (bk & 0x3F);
                lo = 0x80;
                hi = 0xBF;
            }
            if (bad) {
                out.append(REPLACEMENT); // one U+FFFD for the maximal subpart b[i, j)
                i = j;
            } else {
                out.appendCodePoint(cp);
                i = j;
            }
        }
        return to;
    }

    /** Decodes all of {@code b[from, to)}; ill-formed and truncated sequences become U+FFFD. */
    static String decode(byte[] b, int from, int to) {
        StringBuilder sb = new StringBuilder(to - from);
        decode(b, from, to, sb, true);
        return sb.toString();
    }

    /** The UTF-8 bytes of {@code s}; an unpaired surrogate is written as U+FFFD (EF BF BD). */
    static byte[] encode(CharSequence s) {
        int n = s.length();
        byte[] out = new byte[n * 3];
        int o = 0;
        for (int i = 0; i < n; i++) {
            char c = s.charAt(i);
            int cp = c;
            if (Character.isHighSurrogate(c) && i + 1 < n && Character.isLowSurrogate(s.charAt(i + 1))) {
                cp = Character.toCodePoint(c, s.charAt(++i));
            } else if (Character.isSurrogate(c)) {
                cp = REPLACEMENT;
            }
            if (cp < 0x80) {
                out[o++] = (byte) cp;
            } else if (cp < 0x800) {
                out[o++] = (byte) (0xC0 | (cp >>> 6));
                out[o++] = (byte) (0x80 | (cp & 0x3F));
            } else if (cp < 0x10000) {
                out[o++] = (byte) (0xE0 | (cp >>> 12));
                out[o++] = (byte) (0x80 | ((cp >>> 6) & 0x3F));
                out[o++] = (byte) (0x80 | (cp & 0x3F));
            } else {
                out[o++] = (byte) (0xF0 | (cp >>> 18));
                out[o++] = (byte) (0x80 | ((cp >>> 12) & 0x3F));
                out[o++] = (byte) (0x80 | ((cp >>> 6) & 0x3F));
                out[o++] = (byte) (0x80 | (cp & 0x3F));
            }
        }
        return o == out.length ? out : java.util.Arrays.copyOf(out, o);
    }
}
