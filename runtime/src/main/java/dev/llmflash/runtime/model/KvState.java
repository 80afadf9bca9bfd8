package dev.llmflash.runtime.model;

import dev.llmflash.formats.tensor.DType;
import dev.llmflash.runtime.kernels.Kernels;
import dev.llmflash.runtime.kernels.Ops;
import dev.llmflash.runtime.kernels.Ops;

import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;

/**
 * The part of a sequence state every architecture shares: per layer a key and a value cache of
 * {@code capacity x kvDim} elements (kvDim = K/V heads x head dim) in f16 (default: half the bytes,
 * greedy continuations and perplexity unchanged on the reference prompts, docs/RUNTIME.md) or f32,
 * and the sequence length. Allocated once, never grown (off-heap, freed by the GC with the state).
 *
 * <h2>Layer-major prompts</h2>
 * A forward call of n tokens goes through the model one layer at a time for up to {@link #span}
 * tokens at once (the whole prompt, up to {@link #PREFILL_SPAN}), so that a layer's weights - and in
 * flash mode its FFN neurons read from flash - serve every prompt token in one pass. The activation
 * buffers hold {@code span} rows; the matmul kernels tile the rows themselves.
 */
class KvState implements LanguageModel.State {
    /** Most tokens one layer-major pass processes at once; longer prompts go in spans of this many. */
    static final int PREFILL_SPAN = LanguageModel.PREFILL_SPAN;

    private static final ValueLayout.OfShort F16_LE = ValueLayout.JAVA_SHORT_UNALIGNED.withOrder(java.nio.ByteOrder.LITTLE_ENDIAN);
    private static final ValueLayout.OfFloat F32_LE = ValueLayout.JAVA_FLOAT_UNALIGNED.withOrder(java.nio.ByteOrder.LITTLE_ENDIAN);

    final int capacity;
    final int kvDim;
    /** Rows of the activation buffers: min(capacity, PREFILL_SPAN). */
    final int span;
    final DType kvType;
    final MemorySegment[] keys;   // [layer] capacity x kvDim elements of kvType
    final MemorySegment[] values; // [layer] capacity x kvDim elements of kvType
    /** [layer][kv head]: the caches from that head's first element on, made once (no slices per token). */
    private final MemorySegment[][] headKeys, headValues;
    final int headDim;
    final float[] scores;   // [span x capacity]: one head's scores of every token in the pass
    final float[] qh;       // [span x hd]: one head's queries, contiguous
    final float[] oh;       // [span x hd]: one head's outputs
    int length;

    KvState(int layers, int capacity, int kvDim, int headDim, DType kvType) {
        if (capacity < 1) {
            throw new IllegalArgumentException("capacity must be >= 1, got " + capacity);
        }
        if (kvType != DType.F16 && kvType != DType.F32) {
            throw new IllegalArgumentException("the KV cache is f16 or f32, not " + kvType);
        }
        this.capacity = capacity;
        this.kvDim = kvDim;
        this.span = Math.min(capacity, PREFILL_SPAN);
        this.kvType = kvType;
        Arena arena = Arena.ofAuto();
        long bytes = (long) capacity * kvDim * kvType.bytes();
        this.keys = new MemorySegment[layers];
        this.values = new MemorySegment[layers];
        for (int l = 0; l < layers; l++) {
            keys[l] = arena.allocate(bytes, 64);
            values[l] = arena.allocate(bytes, 64);
        }
        this.headDim = headDim;
        int kvHeads = kvDim / headDim;
        this.headKeys = new MemorySegment[layers][kvHeads];
        this.headValues = new MemorySegment[layers][kvHeads];
        for (int l = 0; l < layers; l++) {
            for (int h = 0; h < kvHeads; h++) {
                headKeys[l][h] = keys[l].asSlice((long) h * headDim * kvType.bytes());
                headValues[l][h] = values[l].asSlice((long) h * headDim * kvType.bytes());
            }
        }
        this.scores = new float[span * capacity];
        this.qh = new float[span * headDim];
        this.oh = new float[span * headDim];
    }

    /** Floats of the attention scratch of a state of {@code capacity} positions passing {@code span} tokens at once. */
    static long attentionFloats(int span, int capacity, int headDim) {
        return (long) span * capacity + 2L * span * headDim;
    }

    /** Bytes of a KV cache of {@code capacity} positions: 2 (keys, values) x layers x capacity x kvDim x element bytes. */
    static long bytes(int layers, int capacity, int kvDim, DType kvType) {
        return 2L * layers * capacity * kvDim * kvType.bytes();
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

    /** Stores n rows of keys and values (n x kvDim each) at positions {@code length ..} of {@code layer}. */
    void store(int layer, float[] k, float[] v, int n) {
        MemorySegment kc = keys[layer], vc = values[layer];
        long base = (long) length * kvDim;
        int count = n * kvDim;
        if (kvType == DType.F32) {
            MemorySegment.copy(k, 0, kc, F32_LE, 4 * base, count);
            MemorySegment.copy(v, 0, vc, F32_LE, 4 * base, count);
            return;
        }
        for (int i = 0; i < count; i++) {
            long o = 2 * (base + i);
            kc.set(F16_LE, o, Float.floatToFloat16(k[i]));
            vc.set(F16_LE, o, Float.floatToFloat16(v[i]));
        }
    }

    /**
     * Causal multi-head attention for n new tokens at positions {@code length .. length+n-1}, whose
     * keys and values are already in the cache of {@code layer}. Query head h reads K/V head
     * {@code h / (nh / nkv)} (grouped and multi-query attention). Per head, as matrix kernels over the
     * cache in its stored type: scores {@code S = Q_h K_h^T} (n x p, p = length + n, the cache's rows
     * read at the K/V row stride), scaled, masked to each token's past and soft-maxed in f32, then
     * {@code O_h = P V_h} (the transposed kernel: masked entries are exact zeros, skipped). For a prompt
     * this is two matmuls per head instead of n x p dot products.
     * Legend: nh = query heads, nkv = K/V heads, hd = head dim, p = positions attended.
     *
     * @param q   n x (nh*hd) queries
     * @param out n x (nh*hd) attention outputs (before the output projection)
     */
    void attention(Kernels k, int layer, float[] q, int n, int nh, int nkv, int hd, float scale, float[] out) {
        if (hd != headDim || nkv != headKeys[layer].length) {
            throw new IllegalArgumentException("attention over " + nkv + " heads of " + hd + " on a cache of "
                    + headKeys[layer].length + " heads of " + headDim);
        }
        int eb = kvType.bytes();
        int group = nh / nkv;
        int qd = nh * hd;
        int p = length + n;
        long rowBytes = (long) kvDim * eb;
        for (int h = 0; h < nh; h++) {
            for (int t = 0; t < n; t++) {
                System.arraycopy(q, t * qd + h * hd, qh, t * hd, hd);
            }
            MemorySegment kh = headKeys[layer][h / group], vh = headValues[layer][h / group];
            if (n == 1) {
                k.matvecStrided(kh, kvType, p, hd, rowBytes, qh, scores);
            } else {
                k.matmulStrided(kh, kvType, p, hd, rowBytes, qh, n, scores);
            }
            for (int t = 0; t < n; t++) {
                int row = t * p, last = length + t; // token t attends to positions 0..last
                for (int j = 0; j <= last; j++) {
                    scores[row + j] *= scale;
                }
                Ops.softmax(scores, row, last + 1);
                java.util.Arrays.fill(scores, row + last + 1, row + p, 0f);
            }
            java.util.Arrays.fill(oh, 0, n * hd, 0f);
            k.matmulTransposedAcc(vh, kvType, p, hd, rowBytes, scores, n, oh);
            for (int t = 0; t < n; t++) {
                System.arraycopy(oh, t * hd, out, t * qd + h * hd, hd);
            }
        }
    }
}
