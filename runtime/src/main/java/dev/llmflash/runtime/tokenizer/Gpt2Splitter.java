package dev.llmflash.runtime.tokenizer;

import java.util.List;

/**
 * Splits text into "words" exactly as GPT-2's pre-tokenizer regex does, written out by hand (faster
 * than {@code java.util.regex} and free of its differences from Python's {@code regex} and
 * Oniguruma):
 * <pre>
 *   's|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+
 * </pre>
 * Matches are taken left to right; at each position the first alternative that matches wins and its
 * quantifier is greedy. Every character is a letter, a number, whitespace or "other", so the matches
 * cover the whole text. The one subtle alternative is {@code \s+(?!\S)}: a whitespace run followed by
 * a non-space gives up its last character, which then leads the next word ({@code "a   b"} splits as
 * {@code "a", "  ", " b"}); a single whitespace character before a non-space falls to {@code \s+}.
 * <p>Legend: {@code i} start of the current match, {@code j} scan position, {@code n} text length
 * (UTF-16 units); all whitespace characters are single UTF-16 units.
 * <p>Stateless; thread-safe.
 */
final class Gpt2Splitter {
    private static final String[] CONTRACTIONS = {"s", "t", "re", "ve", "m", "ll", "d"};

    private Gpt2Splitter() {
    }

    /** Appends the non-empty matches of {@code s} to {@code out}, in order. */
    static void split(String s, List<String> out) {
        int i = 0;
        int n = s.length();
        while (i < n) {
            int end = matchEnd(s, i, n);
            out.add(s.substring(i, end));
            i = end;
        }
    }

    /** The end of the match that starts at {@code i}. */
    static int matchEnd(String s, int i, int n) {
        int c = s.codePointAt(i);
        if (c == '\'') {
            for (String k : CONTRACTIONS) {
                if (s.startsWith(k, i + 1)) {
                    return i + 1 + k.length();
                }
            }
        }
        // " ?\p{L}+", " ?\p{N}+", " ?[^\s\p{L}\p{N}]+": an optional space, then a run of one class.
        int j = c == ' ' ? i + 1 : i;
        if (j < n) {
            int d = s.codePointAt(j);
            if (CharClasses.isLetter(d)) {
                return run(s, j, n, Kind.LETTER);
            }
            if (CharClasses.isNumber(d)) {
                return run(s, j, n, Kind.NUMBER);
            }
            if (!CharClasses.isWhitespace(d)) {
                return run(s, j, n, Kind.OTHER);
            }
        }
        // Here c is whitespace (every non-space start matched above).
        int end = run(s, i, n, Kind.SPACE);
        if (end == n) {
            return n; // "\s+(?!\S)" takes the whole run at the end of the text
        }
        // Followed by a non-space: "\s+(?!\S)" backs off one character if that leaves at least one,
        // else "\s+" takes the single whitespace character.
        return end - 1 > i ? end - 1 : end;
    }

    private enum Kind { LETTER, NUMBER, OTHER, SPACE }

    private static int run(String s, int j, int n, Kind kind) {
        while (j < n) {
            int c = s.codePointAt(j);
            boolean in = switch (kind) {
                case LETTER -> CharClasses.isLetter(c);
                case NUMBER -> CharClasses.isNumber(c);
                case SPACE -> CharClasses.isWhitespace(c);
                case OTHER -> !CharClasses.isWhitespace(c) && !CharClasses.isLetter(c) && !CharClasses.isNumber(c);
            };
            if (!in) {
                break;
            }
            j += Character.charCount(c);
        }
        return j;
    }
}
