package dev.llmflash.runtime.tokenizer;

import java.util.ArrayList;
import java.util.List;
import java.util.regex.Pattern;

/**
 * One step of the pre-tokenizer pipeline: cuts each piece of text into smaller pieces before BPE runs
 * on each piece separately. The steps are the tokenizers library's pre-tokenizers of the same names;
 * a {@code Sequence} in tokenizer.json is the list of its steps, applied in order, each to every
 * piece the previous step made. Empty pieces are dropped.
 * <p>{@link ByteLevel} rewrites each piece as UTF-8 bytes in the {@link ByteLevelAlphabet}: the steps
 * after it see those characters (Falcon's {@code Digits} step thus also splits off the bytes
 * {@code B2 B3 B9 BC BD BE}, whose alphabet characters are the numerals {@code ²³¹¼½¾}, as the
 * library does). A byte-level BPE pipeline has exactly one ByteLevel step.
 * <p>Immutable; thread-safe.
 */
sealed interface PreTokenizer {

    /** Appends the non-empty pieces of {@code piece} to {@code out}. */
    void split(String piece, List<String> out);

    /** Runs the pipeline {@code steps} on {@code text}. */
    static List<String> run(List<PreTokenizer> steps, String text) {
        List<String> pieces = new ArrayList<>();
        if (!text.isEmpty()) {
            pieces.add(text);
        }
        for (PreTokenizer step : steps) {
            List<String> next = new ArrayList<>(pieces.size() * 2 + 4);
            for (String p : pieces) {
                step.split(p, next);
            }
            pieces = next;
        }
        return pieces;
    }

    /**
     * {@code ByteLevel}: optionally prefixes a space (to each piece that does not start with one),
     * optionally splits with GPT-2's regex ({@link Gpt2Splitter}), then maps to the byte alphabet.
     */
    record ByteLevel(boolean addPrefixSpace, boolean useRegex) implements PreTokenizer {
        @Override
        public void split(String piece, List<String> out) {
            String p = addPrefixSpace && !piece.startsWith(" ") ? " " + piece : piece;
            if (p.isEmpty()) {
                return;
            }
            if (!useRegex) {
                out.add(ByteLevelAlphabet.toByteChars(p));
                return;
            }
            int i = 0;
            int n = p.length();
            while (i < n) {
                int end = Gpt2Splitter.matchEnd(p, i, n);
                out.add(ByteLevelAlphabet.toByteChars(p.substring(i, end)));
                i = end;
            }
        }
    }

    /** {@code Punctuation}: splits on punctuation characters ({@link CharClasses#isPunctuation}). */
    record Punctuation(SplitBehavior behavior) implements PreTokenizer {
        @Override
        public void split(String piece, List<String> out) {
            behavior.apply(piece, SplitBehavior.Spans.ofChars(piece, CharClasses::isPunctuation), out);
        }
    }

    /**
     * {@code Digits}: splits on numeric characters (general category N*), each one alone when
     * {@code individualDigits}, else runs of them together.
     */
    record Digits(boolean individualDigits) implements PreTokenizer {
        @Override
        public void split(String piece, List<String> out) {
            SplitBehavior b = individualDigits ? SplitBehavior.ISOLATED : SplitBehavior.CONTIGUOUS;
            b.apply(piece, SplitBehavior.Spans.ofChars(piece, CharClasses::isNumber), out);
        }
    }

    /**
     * {@code Split}: splits on the matches of a pattern (a literal string, or a regex run by
     * {@code java.util.regex} in Unicode mode, where {@code \s \w \d \p{L} \p{N}}, classes, lookahead
     * and {@code (?i:...)} mean what they mean in Oniguruma, which the library uses), optionally with
     * the match flags inverted.
     */
    record Split(Pattern pattern, SplitBehavior behavior, boolean invert) implements PreTokenizer {
        @Override
        public void split(String piece, List<String> out) {
            SplitBehavior.Spans spans = SplitBehavior.Spans.ofRegex(piece, pattern);
            if (invert) {
                spans.invert();
            }
            behavior.apply(piece, spans, out);
        }
    }
}
