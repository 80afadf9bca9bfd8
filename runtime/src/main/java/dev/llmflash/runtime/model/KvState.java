package dev.llmflash.runtime.model;

import dev.llmflash.runtime.kernels.VectorOps;

/**
 * The part of a sequence state every architecture shares: per layer a key and a value cache of
 * {@code capacity x kvDim} floats (kvDim = K/V heads x head dim), and the sequence length.
 * Allocated once, never grown.
 */
class KvState implements LanguageModel.State {
    /** Most tokens one forward step processes at once; longer inputs are split into chunks. */
    static final int MAX_BATCH = 128;

    final int capacity;
    final int kvDim;
    final float[][] keys;   // [layer][pos * kvDim + j]
    final float[][] values; // [layer][pos * kvDim + j]
    final float[] scores;   // [capacity], attention scratch
    int length;

    KvState(int layers, int capacity, int kvDim) {
        if (capacity < 1) {
            throw new IllegalArgumentException("capacity must be >= 1, got " + capacity);
        }
        this.capacity = capacity;
        this.kvDim = kvDim;
        this.keys = new float[layers][capacity * kvDim];
        this.values = new float[layers][capacity * kvDim];
        this.scores = new float[capacity];
    }

    @Override
    public int length() {
        return length;
    }

    @Override
    public int capacity() {
        return capacity;
    }

    @Override
    public void reset() {
        length = 0;
    }

    void checkRoom(int n) {
        if (length + n > capacity) {
            throw new IllegalStateException("sequence of " + (length + n) + " tokens exceeds the state's capacity " + capacity);
        }
    }

    /**
     * Causal multi-head attention for n new tokens at positions {@code length .. length+n-1}, whose
     * keys and values are already in the cache of {@code layer}. Query head h reads K/V head
     * {@code h / (nh / nkv)} (grouped and multi-query attention).
     * Legend: nh = query heads, nkv = K/V heads, hd = head dim.
     *
     * @param q   n x (nh*hd) queries
     * @param out n x (nh*hd) attention outputs (before the output projection)
     */
    void attention(int layer, float[] q, int n, int nh, int nkv, int hd, float scale, float[] out) {
        float[] kc = keys[layer];
        float[] vc = values[layer];
        int group = nh / nkv;
        int qd = nh * hd;
        for (int t = 0; t < n; t++) {
            int p = length + t; // attends to positions 0..p
            for (int h = 0; h < nh; h++) {
                int qOff = t * qd + h * hd;
                int kvOff = (h / group) * hd;
                for (int j = 0; j <= p; j++) {
                    scores[j] = VectorOps.dot(q, qOff, kc, j * kvDim + kvOff, hd) * scale;
                }
                Ops.softmax(scores, 0, p + 1);
                java.util.Arrays.fill(out, qOff, qOff + hd, 0f);
                for (int j = 0; j <= p; j++) {
                    VectorOps.axpy(scores[j], vc, j * kvDim + kvOff, out, qOff, hd);
                }
            }
        }
    }
}
