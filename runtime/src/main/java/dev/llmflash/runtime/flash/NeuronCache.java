package dev.llmflash.runtime.flash;

import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.util.Arrays;

/**
 * One layer's DRAM cache of FFN neuron bundles ("LLM in a flash", technique 4: a preallocated matrix
 * managed by a sliding window over recent tokens).
 *
 * <h2>Layout</h2>
 * One off-heap matrix of {@code capacity} rows of {@code stride} bytes, allocated once and 4096-byte
 * aligned so that direct-I/O reads can land straight in a row. Row r starts at byte {@code r * stride}
 * and holds one neuron's bundle exactly as {@code ffn.bin} stores it (docs/FORMAT.md, bundled layout):
 * <pre>
 * row r: [ up row of neuronAt(r): d*e bytes ][ down column: d*e bytes ][ padding up to stride ]
 * </pre>
 * Rows {@code [0, used)} hold neurons; the FFN computes over them with the strided kernels as a
 * {@code NeuronMajorFfn} with {@code up = rows()}, {@code down = rows().asSlice(d*e)}, {@code neurons = used},
 * and maps output row r back to neuron {@link #neuronAt(int)} (for the biases and the predictor).
 *
 * <h2>Invariants (after every public call)</h2>
 * <ul>
 *   <li>{@code 0 <= used <= capacity}; nothing is ever reallocated (the same {@link #rows()} segment
 *       and arrays for the cache's lifetime).</li>
 *   <li>{@code rowOfNeuron[neuronOfRow[r]] == r} for every r in {@code [0, used)}; {@code rowOfNeuron[i]}
 *       is -1 for every neuron not in a row; rows {@code >= used} hold no neuron.</li>
 *   <li>A cached neuron's row bytes are what the caller loaded into it: deletion copies the LAST used row
 *       into the hole ({@code O(deleted x stride)}), so no other row moves and a moved row keeps its
 *       bytes and its last-active step.</li>
 * </ul>
 *
 * <h2>Ownership, threads, closing</h2>
 * The cache owns its memory: {@link #close()} frees the matrix, after which {@link #rows()} and any
 * slice of it must not be used. It is for ONE thread (the layer's scheduler); the arena is shared only so
 * that the I/O engine's threads may write bundle bytes into rows handed out by {@link #reserve} between
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
    private int used;

    /**
     * @param neurons  f, the layer's neuron count (neuron ids are {@code [0, f)})
     * @param capacity rows to preallocate, 1..f
     * @param stride   bytes per row: the bundle stride of {@code ffn.bin}
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
        Arrays.fill(neuronOfRow, -1);
        Arrays.fill(rowOfNeuron, -1);
    }

    /** The whole matrix; row r at byte {@code r * stride()}. Always the same segment. */
    public MemorySegment rows() {
        return rows;
    }

    /** Row r's bytes ({@code stride} of them): where the I/O engine loads a reserved neuron's bundle. */
    public MemorySegment rowSlice(int row) {
        return rows.asSlice(row * stride, stride);
    }

    public int capacity() {
        return capacity;
    }

    public int used() {
        return used;
    }

    public int neurons() {
        return neurons;
    }

    public long stride() {
        return stride;
    }

    /** The row holding {@code neuron}, or -1 when it is not cached. */
    public int row(int neuron) {
        return rowOfNeuron[checkNeuron(neuron)];
    }

    /** The neuron in row {@code row}, which must be in {@code [0, used)}. */
    public int neuronAt(int row) {
        checkRow(row);
        return neuronOfRow[row];
    }

    /** The token step at which row {@code row} (in {@code [0, used)}) was last needed. */
    public long lastActive(int row) {
        checkRow(row);
        return lastActive[row];
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
     * Deletes every row whose last-active step is {@code < step}. Each hole is filled by moving the last
     * live used row into it (stale rows at the end are simply dropped), so the cost is
     * O(used) to scan plus O(moved x stride) to copy, and rows that stay are never shifted.
     *
     * @return the number of neurons deleted
     */
    public int evictOlderThan(long step) {
        int evicted = 0;
        int r = 0;
        while (r < used) {
            if (lastActive[r] >= step) {
                r++;
                continue;
            }
            drop(r);
            evicted++;
            int last = used - 1;
            while (last > r && lastActive[last] < step) {
                drop(last);
                evicted++;
                last--;
            }
            if (last > r) {
                moveRow(last, r);
            }
            used = last; // rows [0, last) remain: r filled from last, or r == last was itself the end
            r++;
        }
        return evicted;
    }

    /** The neurons among {@code active[0..n)} that are not cached, in their order. */
    public int[] missing(int[] active, int n) {
        int count = 0;
        for (int k = 0; k < n; k++) {
            if (rowOfNeuron[checkNeuron(active[k])] < 0) {
                count++;
            }
        }
        int[] out = new int[count];
        int j = 0;
        for (int k = 0; k < n; k++) {
            if (rowOfNeuron[active[k]] < 0) {
                out[j++] = active[k];
            }
        }
        return out;
    }

    /**
     * Appends one row per neuron in {@code neurons[0..n)} at {@code used}, marked active at {@code step}.
     * The neurons must be distinct and not cached. The rows' bytes are NOT loaded: the caller (or the I/O
     * engine) writes each neuron's bundle into {@link #rowSlice(int)} before the FFN runs.
     * Checked before anything changes: a refused call leaves the cache as it was.
     *
     * @return the row of each neuron, in order
     * @throws IllegalStateException    when the rows would exceed the capacity
     * @throws IllegalArgumentException for a neuron out of range, already cached or listed twice
     */
    public int[] reserve(int[] neurons, int n, long step) {
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
        int[] out = new int[n];
        for (int j = 0; j < n; j++) {
            int r = used++;
            neuronOfRow[r] = neurons[j];
            rowOfNeuron[neurons[j]] = r;
            lastActive[r] = step;
            out[j] = r;
        }
        return out;
    }

    /**
     * One token step of the sliding window of the last {@code window} tokens: touch the cached active
     * neurons, delete the rows not active in steps {@code (step - window, step]} (lastActive
     * {@code <= step - window}), then reserve rows for the active neurons still missing.
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
     * The outcome of {@link #advance}: load neuron {@code loadNeurons[k]}'s bundle into row
     * {@code loadRows[k]}.
     *
     * @param evicted rows deleted this step
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

    private void drop(int r) {
        rowOfNeuron[neuronOfRow[r]] = -1;
        neuronOfRow[r] = -1;
    }

    /** Moves row {@code from} into the (dropped) row {@code to}: bytes, both maps, last-active step. */
    private void moveRow(int from, int to) {
        MemorySegment.copy(rows, from * stride, rows, to * stride, stride);
        int neuron = neuronOfRow[from];
        neuronOfRow[to] = neuron;
        rowOfNeuron[neuron] = to;
        lastActive[to] = lastActive[from];
        neuronOfRow[from] = -1;
    }

    private int checkNeuron(int neuron) {
        if (neuron < 0 || neuron >= neurons) {
            throw new IllegalArgumentException("neuron " + neuron + " out of range [0, " + neurons + ")");
        }
        return neuron;
    }

    private void checkRow(int row) {
        if (row < 0 || row >= used) {
            throw new IndexOutOfBoundsException("row " + row + " not in use [0, " + used + ")");
        }
    }
}
