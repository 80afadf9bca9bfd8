package dev.llmflash.runtime.tokenizer;

/**
 * The character classes the Hugging Face pre-tokenizers test, by Unicode general category (the JDK's
 * Unicode tables; a Unicode version newer than the reference's only matters for newly assigned
 * characters).
 * <p>Stateless; thread-safe.
 */
final class CharClasses {
    private CharClasses() {
    }

    /** {@code \p{L}}: general category Lu, Ll, Lt, Lm or Lo. */
    static boolean isLetter(int cp) {
        return switch (Character.getType(cp)) {
            case Character.UPPERCASE_LETTER, Character.LOWERCASE_LETTER, Character.TITLECASE_LETTER,
                 Character.MODIFIER_LETTER, Character.OTHER_LETTER -> true;
            default -> false;
        };
    }

    /** {@code \p{N}}, and Rust's {@code char::is_numeric}: general category Nd, Nl or No. */
    static boolean isNumber(int cp) {
        return switch (Character.getType(cp)) {
            case Character.DECIMAL_DIGIT_NUMBER, Character.LETTER_NUMBER, Character.OTHER_NUMBER -> true;
            default -> false;
        };
    }

    /**
     * {@code \s} in Oniguruma and Rust's regex and {@code char::is_whitespace}: the Unicode White_Space
     * property (not Java's {@link Character#isWhitespace}, which leaves out the no-break spaces and
     * adds U+001C..U+001F).
     */
    static boolean isWhitespace(int cp) {
        return (cp >= 0x09 && cp <= 0x0D) || cp == 0x20 || cp == 0x85 || cp == 0xA0 || cp == 0x1680
                || (cp >= 0x2000 && cp <= 0x200A) || cp == 0x2028 || cp == 0x2029 || cp == 0x202F
                || cp == 0x205F || cp == 0x3000;
    }

    /**
     * The Punctuation pre-tokenizer's test: an ASCII punctuation character (Rust's
     * {@code is_ascii_punctuation}, which includes symbols such as {@code $+<=>^`|~}) or a character of
     * general category Pc, Pd, Ps, Pe, Pi, Pf or Po.
     */
    static boolean isPunctuation(int cp) {
        if (cp < 0x80) {
            return (cp >= 0x21 && cp <= 0x2F) || (cp >= 0x3A && cp <= 0x40) || (cp >= 0x5B && cp <= 0x60)
                    || (cp >= 0x7B && cp <= 0x7E);
        }
        return switch (Character.getType(cp)) {
            case Character.CONNECTOR_PUNCTUATION, Character.DASH_PUNCTUATION, Character.START_PUNCTUATION,
                 Character.END_PUNCTUATION, Character.INITIAL_QUOTE_PUNCTUATION,
                 Character.FINAL_QUOTE_PUNCTUATION, Character.OTHER_PUNCTUATION -> true;
            default -> false;
        };
    }

    /**
     * Rust regex's Unicode {@code \w} (an added token's {@code single_word} test): Alphabetic, a mark
     * (Mn, Mc, Me), a decimal digit (Nd), a connector (Pc) or a joiner (U+200C, U+200D).
     */
    static boolean isWordChar(int cp) {
        if (Character.isAlphabetic(cp) || cp == 0x200C || cp == 0x200D) {
            return true;
        }
        return switch (Character.getType(cp)) {
            case Character.NON_SPACING_MARK, Character.COMBINING_SPACING_MARK, Character.ENCLOSING_MARK,
                 Character.DECIMAL_DIGIT_NUMBER, Character.CONNECTOR_PUNCTUATION -> true;
            default -> false;
        };
    }
}
