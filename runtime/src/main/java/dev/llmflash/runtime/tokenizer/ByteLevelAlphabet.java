package dev.llmflash.runtime.tokenizer;

/**
 * GPT-2's reversible map between the 256 byte values and 256 printable characters ("bytes_to_unicode"
 * in OpenAI's encoder.py; {@code bytes_char} in the tokenizers library). A byte-level BPE vocabulary
 * is written in this alphabet: its tokens are strings of these characters, one per byte.
 * <p>The map: bytes {@code 0x21..0x7E}, {@code 0xA1..0xAC} and {@code 0xAE..0xFF} stand for the
 * character of the same code point; the other 68 bytes, in increasing order, stand for
 * {@code U+0100, U+0101, ...}, {@code U+0143} (so the space 0x20 is {@code 'Ġ'} U+0120 and the
 * newline 0x0A is {@code 'Ċ'} U+010A).
 * <p>Immutable tables; thread-safe.
 */
final class ByteLevelAlphabet {
    /** One past the largest code point in the alphabet (U+0143). */
    static final int LIMIT = 0x144;

    private static final char[] BYTE_TO_CHAR = new char[256];
    private static final int[] CHAR_TO_BYTE = new int[LIMIT];

    static {
        java.util.Arrays.fill(CHAR_TO_BYTE, -1);
        int next = 0x100;
        for (int b = 0; b < 256; b++) {
            boolean printable = (b >= 0x21 && b <= 0x7E) || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE);
            char c = printable ? (char) b : (char) next++;
            BYTE_TO_CHAR[b] = c;
            CHAR_TO_BYTE[c] = b;
        }
    }

    private ByteLevelAlphabet() {
    }

    /** The character standing for byte {@code b} (0..255). */
    static char charOf(int b) {
        return BYTE_TO_CHAR[b & 0xFF];
    }

    /** The byte that code point {@code c} stands for, or -1 if it is not in the alphabet. */
    static int byteOf(int c) {
        return c >= 0 && c < LIMIT ? CHAR_TO_BYTE[c] : -1;
    }

    /** {@code s} as UTF-8 bytes written in the alphabet: one character per byte. */
    static String toByteChars(String s) {
        byte[] utf8 = Utf8.encode(s);
        char[] out = new char[utf8.length];
        for (int i = 0; i < utf8.length; i++) {
            out[i] = BYTE_TO_CHAR[utf8[i] & 0xFF];
        }
        return new String(out);
    }

    /**
     * The bytes a vocabulary token stands for, as the tokenizers library's ByteLevel decoder computes
     * them: each character's byte if every character is in the alphabet, else (an added token such as
     * {@code "<|endoftext|>"} written in plain text) the token's own UTF-8 bytes.
     */
    static byte[] tokenBytes(String token) {
        byte[] out = new byte[token.length()];
        for (int i = 0; i < token.length(); i++) {
            int b = byteOf(token.charAt(i));
            if (b < 0) {
                return Utf8.encode(token);
            }
            out[i] = (byte) b;
        }
        return out;
    }
}
