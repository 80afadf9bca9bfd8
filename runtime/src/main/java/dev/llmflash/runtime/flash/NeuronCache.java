package dev.llmflash.runtime.flash;

import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.util.Arrays;

/**
 * One layer's DRAM cache of FFN neuron bundles ("LLM in a flash", technique 4: a preallocated matrix
 * managed by a sliding window over recent tokens), with slot reuse instead of the paper's
 * delete-by-moving.
 *
 * <h2>Layout</h2>
 * One off-heap matrix of {@code capacity} slots of {@code stride} bytes, allocated once and 4096-byte
 * aligned so that direct-I/O reads can land straight in a slot. Slot s starts at byte {@code s * stride}
 * and holds one neuron's bundle exactly as {@code ffn.bin} stores it (docs/FORMAT.md, bundled layout):
 * <pre>
 * slot s: [ up row of neuronAt(s): d*e bytes ][ down column: d*e bytes ][ padding up to stride ]
 * </pre>
 * The paper deletes a row by copying the last used row into the hole so that the used rows stay
 * contiguous for a dense matmul; that copy was 5% of a token at OPT-6.7B scale (14k rows of 16 KiB per
 * token). Here the FFN computes over an explicit list of slots (the gather kernels), so contiguity buys
 * nothing: deleting frees the slot (O(1), no bytes move) and inserting takes a free slot. A cached
 * neuron's bytes therefore never move while it stays cached.
 *
 * <h2>Invariants (after every public call)</h2>
 * <ul>
 *   <li>{@code 0 <= used <= capacity}; nothing is ever reallocated (the same {@link #rows()} segment
 *       and arrays for the cache's lifetime).</li>
 *   <li>{@code rowOfNeuron[neuronOfRow[s]] == s} for every occupied slot s; {@code rowOfNeuron[i]} is -1
 *       for every neuron not cached; a free slot's {@link #neuronAt} is -1; {@code used} slots are
 *       occupied.</li>
 *   <li>A cached neuron's slot bytes are what the caller loaded into it: nothing in the cache writes
 *       slot bytes.</li>
 *   <li>Free slots are handed out lowest first when the cache is new, then most recently freed first.</li>
 * </ul>
 *
 * <h2>Ownership, threads, closing</h2>
 * The cache owns its memory: {@link #close()} frees the matrix, after which {@link #rows()} and any
 * slice of it must not be used. It is for ONE thread (the layer's scheduler); the arena is shared only so
 * that the I/O engine's threads may write bundle bytes into slots handed out by {@link #reserve} between
 * that call and the FFN computation. No other call may run concurrently with such writes.
 */
public final class NeuronCache implements AutoCloseable {

    /** Alignment of the matrix: the direct-I/O block size ({@code ffn.bin}'s A). */
    public static final long ALIGNMENT = 4096;

    private final int neurons;
    private final int capacity;
    private final long stride;
    private final Arena arena;
    private final MemorySegment rows;
    private final int[] neuronOfRow;
    private final int[] rowOfNeuron;
    private final long[] lastActive;
    /** Free slots, a stack: free[0 .. freeCount) with the next one handed out on top. */
    private final int[] free;
    private int freeCount;
    private int used;

    /**
     * @param neurons  f, the layer's neuron count (neuron ids are {@code [0, f)})
     * @param capacity slots to preallocate, 1..f
     * @param stride   bytes per slot: the bundle stride of {@code ffn.bin}
     */
    public NeuronCache(int neurons, int capacity, long stride) {
        if (neurons < 1 || capacity < 1 || capacity > neurons || stride < 1) {
            throw new IllegalArgumentException("NeuronCache needs 1 <= capacity <= neurons and stride >= 1, got neurons="
                    + neurons + " capacity=" + capacity + " stride=" + stride);
        }
        this.neurons = neurons;
        this.capacity = capacity;
        this.stride = stride;
        this.arena = Arena.ofShared();
        this.rows = arena.allocate(Math.multiplyExact(capacity, stride), ALIGNMENT);
        this.neuronOfRow = new int[capacity];
        this.rowOfNeuron = new int[neurons];
        this.lastActive = new long[capacity];
        this.free = new int[capacity];
        Arrays.fill(neuronOfRow, -1);
        Arrays.fill(rowOfNeuron, -1);
        for (int s = 0; s < capacity; s++) {
            free[s] = capacity - 1 - s;
        }
        freeCount = capacity;
    }

    /** The whole matrix; slot s at byte {@code s * stride()}. Always the same segment. */
    public MemorySegment rows() {
        return rows;
    }

    /** Slot s's bytes ({@code stride} of them): where the I/O engine loads a reserved neuron's bundle. */
    public MemorySegment rowSlice(int slot) {
        return rows.asSlice(slot * stride, stride);
    }

    /** Slots, occupied or free. */
    public int capacity() {
        return capacity;
    }

    /** Occupied slots: the neurons cached. */
    public int used() {
        return used;
    }

    public int neurons() {
        return neurons;
    }

    public long stride() {
        return stride;
    }

    /** The slot holding {@code neuron}, or -1 when it is not cached. */
    public int row(int neuron) {
        return rowOfNeuron[checkNeuron(neuron)];
    }

    /** The neuron in slot {@code slot} (in {@code [0, capacity)}), or -1 when the slot is free. */
    public int neuronAt(int slot) {
        checkSlot(slot);
        return neuronOfRow[slot];
    }

    /** The token step at which occupied slot {@code slot} was last needed. */
    public long lastActive(int slot) {
        checkOccupied(slot);
        return lastActive[slot];
    }

    /** The step at which occupied slot {@code slot} was last needed, unchecked: for per-token scans. */
    long lastActiveUnchecked(int slot) {
        return lastActive[slot];
    }

    /** The neuron in slot {@code slot} or -1, unchecked: for per-token scans. */
    int neuronAtUnchecked(int slot) {
        return neuronOfRow[slot];
    }

    /** Marks the cached ones among {@code neurons[0..n)} as needed at {@code step}; absent ones are ignored. */
    public void touch(int[] neurons, int n, long step) {
        for (int k = 0; k < n; k++) {
            int r = rowOfNeuron[checkNeuron(neurons[k])];
            if (r >= 0) {
                lastActive[r] = step;
            }
        }
    }

    /**
     * Deletes every cached neuron whose last-active step is {@code < step}: its slot is freed, no bytes
     * move. O(capacity) to scan.
     *
     * @return the number of neurons deleted
     */
    public int evictOlderThan(long step) {
        int evicted = 0;
        for (int s = 0; s < capacity && used > 0; s++) {
            if (neuronOfRow[s] >= 0 && lastActive[s] < step) {
                drop(s);
                evicted++;
            }
        }
        return evicted;
    }

    /** Deletes neuron {@code neuron} if cached; returns whether it was. */
    public boolean evict(int neuron) {
        int s = rowOfNeuron[checkNeuron(neuron)];
        if (s < 0) {
            return false;
        }
        drop(s);
        return true;
    }

    /** The neurons among {@code active[0..n)} that are not cached, in their order. */
    public int[] missing(int[] active, int n) {
        int count = missingInto(active, n, null);
        int[] out = new int[count];
        missingInto(active, n, out);
        return out;
    }

    /**
     * The neurons among {@code active[0..n)} that are not cached, in their order, written to {@code out}
     * when it is not null (it must have room for them); returns their count. Allocation-free form of
     * {@link #missing}.
     */
    public int missingInto(int[] active, int n, int[] out) {
        int j = 0;
        for (int k = 0; k < n; k++) {
            if (rowOfNeuron[checkNeuron(active[k])] < 0) {
                if (out != null) {
                    out[j] = active[k];
                }
                j++;
            }
        }
        return j;
    }

    /**
     * Gives each neuron in {@code neurons[0..n)} a free slot, marked active at {@code step}.
     * The neurons must be distinct and not cached. The slots' bytes are NOT loaded: the caller (or the I/O
     * engine) writes each neuron's bundle into {@link #rowSlice(int)} before the FFN runs.
     * Checked before anything changes: a refused call leaves the cache as it was.
     *
     * @return the slot of each neuron, in order
     * @throws IllegalStateException    when the neurons exceed the free slots
     * @throws IllegalArgumentException for a neuron out of range, already cached or listed twice
     */
    public int[] reserve(int[] neurons, int n, long step) {
        int[] out = new int[n];
        reserveInto(neurons, n, step, out);
        return out;
    }

    /** {@link #reserve} writing the slots to {@code slots[0..n)} (allocation-free). */
    public void reserveInto(int[] neurons, int n, long step, int[] slots) {
        if (n > capacity - used) {
            throw new IllegalStateException("neuron cache full: " + n + " neurons to load but only "
                    + (capacity - used) + " of " + capacity + " rows free (evict first or raise the capacity)");
        }
        // -2 marks "listed in this call" so that duplicates are found without allocating; undone below.
        int k = 0;
        try {
            for (; k < n; k++) {
                int neuron = checkNeuron(neurons[k]);
                if (rowOfNeuron[neuron] != -1) {
                    throw new IllegalArgumentException("neuron " + neuron
                            + (rowOfNeuron[neuron] == -2 ? " listed twice" : " is already cached in row " + rowOfNeuron[neuron])
                            + " in reserve()");
                }
                rowOfNeuron[neuron] = -2;
            }
        } finally {
            if (k < n) {
                for (int j = 0; j < k; j++) {
                    rowOfNeuron[neurons[j]] = -1;
                }
            }
        }
        for (int j = 0; j < n; j++) {
            int s = free[--freeCount];
            used++;
            neuronOfRow[s] = neurons[j];
            rowOfNeuron[neurons[j]] = s;
            lastActive[s] = step;
            slots[j] = s;
        }
    }

    /**
     * One token step of the sliding window of the last {@code window} tokens: touch the cached active
     * neurons, delete the neurons not active in steps {@code (step - window, step]} (lastActive
     * {@code <= step - window}), then reserve slots for the active neurons still missing.
     * The active neurons are never evicted (they were just touched).
     *
     * @param active the neurons this token needs ({@code active[0..n)}, distinct)
     * @param window K >= 1 tokens
     * @return what to load and the counts for the metrics
     * @throws IllegalStateException when the missing neurons do not fit: touch and eviction are done,
     *                               nothing is reserved
     */
    public Advance advance(int[] active, int n, long step, int window) {
        if (window < 1) {
            throw new IllegalArgumentException("window must be >= 1 token, got " + window);
        }
        touch(active, n, step);
        int evicted = evictOlderThan(step - window + 1);
        int[] load = missing(active, n);
        int[] loadRows = reserve(load, load.length, step);
        return new Advance(load, loadRows, evicted, n - load.length);
    }

    /**
     * The outcome of {@link #advance}: load neuron {@code loadNeurons[k]}'s bundle into slot
     * {@code loadRows[k]}.
     *
     * @param evicted neurons deleted this step
     * @param hits    active neurons already cached
     */
    public record Advance(int[] loadNeurons, int[] loadRows, int evicted, int hits) {
        /** Neurons to load this step. */
        public int loaded() {
            return loadNeurons.length;
        }
    }

    /** Frees the matrix; call once, from the owning thread, when no I/O into it is in flight. */
    @Override
    public void close() {
        arena.close();
    }

    private void drop(int s) {
        rowOfNeuron[neuronOfRow[s]] = -1;
        neuronOfRow[s] = -1;
        free[freeCount++] = s;
        used--;
    }

    private int checkNeuron(int neuron) {
        if (neuron < 0 || neuron >= neurons) {
            throw new IllegalArgumentException("neuron " + neuron + " out of range [0, " + neurons + ")");
        }
        return neuron;
    }

    private void checkSlot(int slot) {
        if (slot < 0 || slot >= capacity) {
            throw new IndexOutOfBoundsException("slot " + slot + " not in [0, " + capacity + ")");
        }
    }

    private void checkOccupied(int slot) {
        checkSlot(slot);
        if (neuronOfRow[slot] < 0) {
            throw new IndexOutOfBoundsException("slot " + slot + " is free");
        }
    }
}
