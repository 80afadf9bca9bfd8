package dev.llmflash.runtime.tokenizer;

import java.util.ArrayList;
import java.util.Comparator;
import java.util.HashMap;
import java.util.List;
import java.util.Map;

/**
 * Cuts the added tokens out of a text, as the tokenizers library's {@code AddedVocabulary} does before
 * anything else runs: first the tokens with {@code normalized=false} over the whole text, then those
 * with {@code normalized=true} over each stretch of text the first pass left. Within a pass, matches
 * are leftmost-longest and do not overlap (the next search starts where the previous match ended);
 * {@code single_word}, {@code lstrip} and {@code rstrip} then adjust or discard each match exactly as
 * the library's {@code find_matches} does.
 * <p>Immutable; thread-safe.
 */
final class AddedTokenMatcher {
    /** A stretch of the text: an added token ({@code tokenId >= 0}) or plain text for BPE ({@code -1}). */
    record Segment(String text, int tokenId) {
    }

    private final Map<Character, AddedToken[]> raw;        // normalized=false, by first char, longest first
    private final Map<Character, AddedToken[]> normalized; // normalized=true, likewise

    AddedTokenMatcher(List<AddedToken> tokens) {
        this.raw = index(tokens.stream().filter(t -> !t.normalized()).toList());
        this.normalized = index(tokens.stream().filter(AddedToken::normalized).toList());
    }

    private static Map<Character, AddedToken[]> index(List<AddedToken> tokens) {
        Map<Character, List<AddedToken>> m = new HashMap<>();
        for (AddedToken t : tokens) {
            m.computeIfAbsent(t.content().charAt(0), k -> new ArrayList<>()).add(t);
        }
        Map<Character, AddedToken[]> out = new HashMap<>();
        m.forEach((c, list) -> out.put(c, list.stream()
                .sorted(Comparator.comparingInt((AddedToken t) -> t.content().length()).reversed())
                .toArray(AddedToken[]::new)));
        return Map.copyOf(out);
    }

    /** The text as segments, in order; plain-text segments are non-empty. */
    List<Segment> split(String text) {
        List<Segment> first = new ArrayList<>();
        findMatches(text, raw, first);
        if (normalized.isEmpty()) {
            return first;
        }
        List<Segment> second = new ArrayList<>();
        for (Segment s : first) {
            if (s.tokenId() >= 0) {
                second.add(s);
            } else {
                findMatches(s.text(), normalized, second);
            }
        }
        return second;
    }

    private static void findMatches(String s, Map<Character, AddedToken[]> trie, List<Segment> out) {
        int n = s.length();
        int startOffset = 0; // end of the last emitted segment
        int searchFrom = 0;  // where the next leftmost-longest search starts (end of the raw match)
        while (!trie.isEmpty()) {
            int start = -1;
            AddedToken tok = null;
            for (int i = searchFrom; i < n && tok == null; i++) {
                AddedToken[] cands = trie.get(s.charAt(i));
                if (cands != null) {
                    for (AddedToken c : cands) {
                        if (s.startsWith(c.content(), i)) {
                            start = i;
                            tok = c;
                            break;
                        }
                    }
                }
            }
            if (tok == null) {
                break;
            }
            int stop = start + tok.content().length();
            searchFrom = stop;
            if (tok.singleWord()) {
                boolean spaceBefore = start == 0 || !CharClasses.isWordChar(s.codePointBefore(start));
                boolean spaceAfter = stop == n || !CharClasses.isWordChar(s.codePointAt(stop));
                if (!spaceBefore || !spaceAfter) {
                    continue;
                }
            }
            if (tok.lstrip()) {
                int newStart = start;
                while (newStart > 0 && CharClasses.isWhitespace(s.charAt(newStart - 1))) {
                    newStart--;
                }
                start = Math.max(newStart, startOffset); // what an earlier match swallowed stays its own
            }
            if (tok.rstrip()) {
                while (stop < n && CharClasses.isWhitespace(s.charAt(stop))) {
                    stop++;
                }
            }
            if (startOffset < start) {
                out.add(new Segment(s.substring(startOffset, start), -1));
            }
            out.add(new Segment(tok.content(), tok.id()));
            startOffset = stop;
        }
        if (startOffset < n) {
            out.add(new Segment(s.substring(startOffset), -1));
        }
    }
}
