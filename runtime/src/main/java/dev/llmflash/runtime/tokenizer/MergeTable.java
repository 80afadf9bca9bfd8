package dev.llmflash.runtime.tokenizer;

/**
 * The BPE merge rules as an open-addressing hash map from a pair of symbol ids to the rule's rank and
 * the id of the merged symbol; no boxing and no string concatenation on the lookup path.
 * <p>Layout: key {@code (long) left << 32 | right} (ids are non-negative ints, so a key is never
 * {@link #EMPTY}); value {@code (long) rank << 32 | mergedId}. Linear probing in a power-of-two table
 * at most half full.
 * <p>Filled once by the loader, read-only afterwards: safely published through a final field, it is
 * thread-safe for reads.
 */
final class MergeTable {
    private static final long EMPTY = -1L;
    /** Returned by {@link #get} for a pair with no rule. */
    static final long NONE = -1L;

    private final long[] keys;
    private final long[] values;
    private final int mask;
    private int size;

    MergeTable(int expected) {
        int cap = Integer.highestOneBit(Math.max(4, expected) * 2 - 1) << 1;
        keys = new long[cap];
        values = new long[cap];
        java.util.Arrays.fill(keys, EMPTY);
        mask = cap - 1;
    }

    static long pair(int left, int right) {
        return (long) left << 32 | (right & 0xFFFFFFFFL);
    }

    private int slot(long key) {
        long h = key * 0x9E3779B97F4A7C15L; // Fibonacci hashing: spreads the packed ids over the table
        return (int) (h >>> 32) & mask;
    }

    /**
     * Records the rule {@code left right -> merged} with {@code rank}; a later rule for the same pair
     * replaces the earlier one (as in the tokenizers library, which collects the rules into a map).
     */
    void put(int left, int right, int rank, int merged) {
        if ((size + 1) * 2 > keys.length) {
            throw new IllegalStateException("MergeTable sized for fewer rules");
        }
        long key = pair(left, right);
        int i = slot(key);
        while (keys[i] != EMPTY && keys[i] != key) {
            i = (i + 1) & mask;
        }
        if (keys[i] == EMPTY) {
            size++;
        }
        keys[i] = key;
        values[i] = (long) rank << 32 | (merged & 0xFFFFFFFFL);
    }

    /** {@code rank << 32 | mergedId} of the rule for this pair, or {@link #NONE}. */
    long get(int left, int right) {
        long key = pair(left, right);
        int i = slot(key);
        while (true) {
            long k = keys[i];
            if (k == key) {
                return values[i];
            }
            if (k == EMPTY) {
                return NONE;
            }
            i = (i + 1) & mask;
        }
    }

    int size() {
        return size;
    }
}
