package dev.llmflash.runtime.tokenizer;

import java.util.ArrayList;
import java.util.List;
import java.util.function.IntPredicate;
import java.util.regex.Matcher;
import java.util.regex.Pattern;

/**
 * What a splitting pre-tokenizer does with the delimiters it finds (the tokenizers library's
 * {@code SplitDelimiterBehavior}). For {@code "the-final--countdown"} split on {@code '-'}:
 * <pre>
 *   Removed            [the, final, countdown]
 *   Isolated           [the, -, final, -, -, countdown]
 *   MergedWithPrevious [the-, final-, -, countdown]
 *   MergedWithNext     [the, -final, -, -countdown]
 *   Contiguous         [the, -, final, --, countdown]
 * </pre>
 * The delimiters come as {@link Spans}: consecutive ranges covering the text, each flagged as a match
 * or not. A character predicate makes every matching character its own match; a regex makes each
 * match one span. Empty pieces are dropped, as the library does.
 */
enum SplitBehavior {
    REMOVED, ISOLATED, MERGED_WITH_PREVIOUS, MERGED_WITH_NEXT, CONTIGUOUS;

    /** The behavior named as in tokenizer.json ("MergedWithPrevious"), or null if unknown. */
    static SplitBehavior fromJsonName(String name) {
        return switch (name) {
            case "Removed" -> REMOVED;
            case "Isolated" -> ISOLATED;
            case "MergedWithPrevious" -> MERGED_WITH_PREVIOUS;
            case "MergedWithNext" -> MERGED_WITH_NEXT;
            case "Contiguous" -> CONTIGUOUS;
            default -> null;
        };
    }

    /**
     * Consecutive ranges {@code [start_k, end_k)} covering a text, each a match or not (the library's
     * {@code Pattern::find_matches}). Mutable while built; owned by one call.
     */
    static final class Spans {
        int size;
        int[] start = new int[8];
        int[] end = new int[8];
        boolean[] match = new boolean[8];

        void add(int s, int e, boolean m) {
            if (size == start.length) {
                start = java.util.Arrays.copyOf(start, size * 2);
                end = java.util.Arrays.copyOf(end, size * 2);
                match = java.util.Arrays.copyOf(match, size * 2);
            }
            start[size] = s;
            end[size] = e;
            match[size] = m;
            size++;
        }

        void invert() {
            for (int k = 0; k < size; k++) {
                match[k] = !match[k];
            }
        }

        /** Each code point for which {@code p} holds is a match of its own. */
        static Spans ofChars(String s, IntPredicate p) {
            Spans sp = new Spans();
            int last = 0;
            for (int i = 0; i < s.length(); ) {
                int c = s.codePointAt(i);
                int next = i + Character.charCount(c);
                if (p.test(c)) {
                    if (last < i) {
                        sp.add(last, i, false);
                    }
                    sp.add(i, next, true);
                    last = next;
                }
                i = next;
            }
            if (last < s.length()) {
                sp.add(last, s.length(), false);
            }
            return sp;
        }

        /** Each match of {@code re} (searched left to right, without overlap) is one span. */
        static Spans ofRegex(String s, Pattern re) {
            Spans sp = new Spans();
            Matcher m = re.matcher(s);
            int prev = 0;
            while (m.find()) {
                if (prev != m.start()) {
                    sp.add(prev, m.start(), false);
                }
                sp.add(m.start(), m.end(), true);
                prev = m.end();
            }
            if (prev != s.length()) {
                sp.add(prev, s.length(), false);
            }
            return sp;
        }
    }

    /** Appends the non-empty pieces of {@code s} that this behavior makes of {@code spans}. */
    void apply(String s, Spans spans, List<String> out) {
        int n = spans.size;
        switch (this) {
            case ISOLATED -> {
                for (int k = 0; k < n; k++) {
                    emit(s, spans.start[k], spans.end[k], out);
                }
            }
            case REMOVED -> {
                for (int k = 0; k < n; k++) {
                    if (!spans.match[k]) {
                        emit(s, spans.start[k], spans.end[k], out);
                    }
                }
            }
            case CONTIGUOUS, MERGED_WITH_PREVIOUS -> {
                // Fold left: a span joins the previous piece when (CONTIGUOUS) it has the same flag as
                // the span before it, or (MERGED_WITH_PREVIOUS) it is a match after a non-match.
                int pieceStart = -1;
                int pieceEnd = -1;
                boolean previousMatch = false;
                for (int k = 0; k < n; k++) {
                    boolean m = spans.match[k];
                    boolean join = this == CONTIGUOUS ? m == previousMatch : m && !previousMatch;
                    if (join && pieceStart >= 0) {
                        pieceEnd = spans.end[k];
                    } else {
                        if (pieceStart >= 0) {
                            emit(s, pieceStart, pieceEnd, out);
                        }
                        pieceStart = spans.start[k];
                        pieceEnd = spans.end[k];
                    }
                    previousMatch = m;
                }
                if (pieceStart >= 0) {
                    emit(s, pieceStart, pieceEnd, out);
                }
            }
            case MERGED_WITH_NEXT -> {
                // Fold right: a match joins the piece after it unless the span after it is a match too.
                List<String> reversed = new ArrayList<>();
                int pieceStart = -1;
                int pieceEnd = -1;
                boolean nextMatch = false;
                for (int k = n - 1; k >= 0; k--) {
                    boolean m = spans.match[k];
                    if (m && !nextMatch && pieceStart >= 0) {
                        pieceStart = spans.start[k];
                    } else {
                        if (pieceStart >= 0) {
                            emit(s, pieceStart, pieceEnd, reversed);
                        }
                        pieceStart = spans.start[k];
                        pieceEnd = spans.end[k];
                    }
                    nextMatch = m;
                }
                if (pieceStart >= 0) {
                    emit(s, pieceStart, pieceEnd, reversed);
                }
                for (int k = reversed.size() - 1; k >= 0; k--) {
                    out.add(reversed.get(k));
                }
            }
        }
    }

    private static void emit(String s, int start, int end, List<String> out) {
        if (start < end) {
            out.add(s.substring(start, end));
        }
    }
}
