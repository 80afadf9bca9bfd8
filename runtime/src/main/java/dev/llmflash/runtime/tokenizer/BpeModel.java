package dev.llmflash.runtime.tokenizer;

import dev.llmflash.formats.FormatException;

import java.nio.file.Path;
import java.util.Arrays;
import java.util.List;
import java.util.Map;
import java.util.concurrent.ConcurrentHashMap;
import java.util.function.IntFunction;

/**
 * The BPE model: turns one pre-tokenized piece (a string in the {@link ByteLevelAlphabet}) into token
 * ids, as the tokenizers library's {@code BPE} model does.
 * <ol>
 *   <li>Each character becomes the id of the one-character token (a character missing from the
 *       vocabulary becomes the unknown token if there is one, runs of them fused if
 *       {@code fuse_unk}, and is dropped otherwise).</li>
 *   <li>While some adjacent pair of symbols has a merge rule, the pair whose rule has the lowest rank
 *       (earliest in merges.txt) is merged, the leftmost such pair first. A min-heap of
 *       {@code (rank, position)} candidates makes this O(k log k) for k characters; stale candidates
 *       (a symbol that has since changed) are skipped when popped.</li>
 * </ol>
 * With {@code ignore_merges} a piece that is itself a vocabulary token is that token. Results are
 * cached per piece.
 * <p>Thread-safety: immutable except for the cache, a {@link ConcurrentHashMap} bounded at
 * {@value #CACHE_CAPACITY} pieces (once full it stops taking new pieces, as the library's cache does);
 * safe for concurrent use.
 */
final class BpeModel {
    static final int CACHE_CAPACITY = 100_000;
    /** Longer pieces are not cached (they are rare and would crowd the cache). */
    static final int MAX_CACHED_LENGTH = 256;

    private final Map<String, Integer> vocab;
    private final MergeTable merges;
    private final int[] alphabetIds; // id of the one-character token for a code point < LIMIT, or -1
    private final int unkId;         // -1: no unknown token
    private final boolean fuseUnk;
    private final boolean ignoreMerges;
    private final ConcurrentHashMap<String, int[]> cache = new ConcurrentHashMap<>();

    private BpeModel(Map<String, Integer> vocab, MergeTable merges, int unkId, boolean fuseUnk,
                     boolean ignoreMerges) {
        this.vocab = vocab;
        this.merges = merges;
        this.unkId = unkId;
        this.fuseUnk = fuseUnk;
        this.ignoreMerges = ignoreMerges;
        this.alphabetIds = new int[ByteLevelAlphabet.LIMIT];
        Arrays.fill(alphabetIds, -1);
        for (int c = 0; c < ByteLevelAlphabet.LIMIT; c++) {
            Integer id = vocab.get(String.valueOf((char) c));
            if (id != null) {
                alphabetIds[c] = id;
            }
        }
    }

    /**
     * Builds the model, checking every rule as the library does: both sides and their concatenation
     * must be vocabulary tokens.
     *
     * @param file     the file the rules come from, for error messages
     * @param merges   the rules in rank order, each {left, right}
     * @param where    describes rule {@code k} for an error message ("line 12", "model.merges[11]")
     * @param unkToken the unknown token, or null
     */
    static BpeModel build(Path file, Map<String, Integer> vocab, List<String[]> merges, IntFunction<String> where,
                          String unkToken, boolean fuseUnk, boolean ignoreMerges) {
        MergeTable table = new MergeTable(merges.size());
        for (int rank = 0; rank < merges.size(); rank++) {
            String[] m = merges.get(rank);
            Integer left = vocab.get(m[0]);
            Integer right = vocab.get(m[1]);
            String joined = m[0] + m[1];
            Integer merged = vocab.get(joined);
            String missing = left == null ? m[0] : right == null ? m[1] : merged == null ? joined : null;
            if (missing != null) {
                throw new FormatException(file, where.apply(rank) + ": merge rule '" + m[0] + " " + m[1]
                        + "' uses '" + missing + "', which is not in the vocabulary",
                        "the vocabulary and merges come from different tokenizers; re-download both");
            }
            table.put(left, right, rank, merged);
        }
        int unkId = -1;
        if (unkToken != null) {
            Integer id = vocab.get(unkToken);
            if (id == null) {
                throw new FormatException(file, "the unknown token '" + unkToken + "' is not in the vocabulary",
                        "re-download the tokenizer files");
            }
            unkId = id;
        }
        return new BpeModel(Map.copyOf(vocab), table, unkId, fuseUnk, ignoreMerges);
    }

    Map<String, Integer> vocab() {
        return vocab;
    }

    int mergeCount() {
        return merges.size();
    }

    /** Appends the ids of {@code piece} (non-empty, in the byte alphabet) to {@code out}. */
    void encode(String piece, IntList out) {
        int[] cached = cache.get(piece);
        if (cached == null) {
            cached = encodeUncached(piece);
            if (piece.length() < MAX_CACHED_LENGTH && cache.size() < CACHE_CAPACITY) {
                cache.putIfAbsent(piece, cached);
            }
        }
        out.addAll(cached);
    }

    private int[] encodeUncached(String piece) {
        if (ignoreMerges) {
            Integer whole = vocab.get(piece);
            if (whole != null) {
                return new int[] {whole};
            }
        }
        // 1. One symbol per character.
        int[] sym = new int[piece.length()];
        int n = 0;
        boolean lastWasUnk = false;
        for (int i = 0; i < piece.length(); ) {
            int c = piece.codePointAt(i);
            i += Character.charCount(c);
            int id = c < ByteLevelAlphabet.LIMIT ? alphabetIds[c] : vocab.getOrDefault(Character.toString(c), -1);
            if (id >= 0) {
                sym[n++] = id;
                lastWasUnk = false;
            } else if (unkId >= 0) {
                if (!(fuseUnk && lastWasUnk)) {
                    sym[n++] = unkId;
                }
                lastWasUnk = true;
            }
        }
        if (n <= 1) {
            return Arrays.copyOf(sym, n);
        }
        // 2. Merge by rank. Symbols form a linked list over positions 0..n-1; a merge keeps the left
        //    position and unlinks the right one.
        int[] prev = new int[n];
        int[] next = new int[n];
        boolean[] alive = new boolean[n];
        LongHeap heap = new LongHeap(n);
        for (int k = 0; k < n; k++) {
            prev[k] = k - 1;
            next[k] = k + 1 < n ? k + 1 : -1;
            alive[k] = true;
            if (k + 1 < n) {
                offer(heap, sym[k], sym[k + 1], k);
            }
        }
        int remaining = n;
        while (!heap.isEmpty()) {
            long top = heap.poll();
            int rank = (int) (top >>> 32);
            int pos = (int) top;
            int right = next[pos];
            if (!alive[pos] || right < 0) {
                continue;
            }
            long rule = merges.get(sym[pos], sym[right]);
            if (rule == MergeTable.NONE || (int) (rule >>> 32) != rank) {
                continue; // stale: the pair at pos changed since this candidate was queued
            }
            sym[pos] = (int) rule;
            alive[right] = false;
            remaining--;
            next[pos] = next[right];
            if (next[pos] >= 0) {
                prev[next[pos]] = pos;
                offer(heap, sym[pos], sym[next[pos]], pos);
            }
            if (prev[pos] >= 0) {
                offer(heap, sym[prev[pos]], sym[pos], prev[pos]);
            }
        }
        int[] out = new int[remaining];
        for (int k = 0, o = 0; k >= 0; k = next[k]) {
            out[o++] = sym[k];
        }
        return out;
    }

    private void offer(LongHeap heap, int left, int right, int pos) {
        long rule = merges.get(left, right);
        if (rule != MergeTable.NONE) {
            heap.add((rule >>> 32) << 32 | pos); // order: rank, then position (leftmost first)
        }
    }

    /** A binary min-heap of longs. Owned by one call. */
    private static final class LongHeap {
        private long[] a;
        private int size;

        LongHeap(int capacity) {
            a = new long[Math.max(4, capacity)];
        }

        boolean isEmpty() {
            return size == 0;
        }

        void add(long v) {
            if (size == a.length) {
                a = Arrays.copyOf(a, size * 2);
            }
            int i = size++;
            while (i > 0) {
                int parent = (i - 1) >>> 1;
                if (a[parent] <= v) {
                    break;
                }
                a[i] = a[parent];
                i = parent;
            }
            a[i] = v;
        }

        long poll() {
            long top = a[0];
            long last = a[--size];
            int i = 0;
            while (true) {
                int child = 2 * i + 1;
                if (child >= size) {
                    break;
                }
                if (child + 1 < size && a[child + 1] < a[child]) {
                    child++;
                }
                if (a[child] >= last) {
                    break;
                }
                a[i] = a[child];
                i = child;
            }
            a[i] = last;
            return top;
        }
    }
}
