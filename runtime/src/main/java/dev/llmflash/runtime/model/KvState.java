package dev.llmflash.runtime.model;

import dev.llmflash.formats.tensor.DType;
import dev.llmflash.runtime.kernels.VectorKernels;
import dev.llmflash.runtime.kernels.VectorOps;
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
    final float[] scores;   // [capacity], attention scratch
    final float[] vrow;     // [kvDim], one value row as f32
    int length;

    KvState(int layers, int capacity, int kvDim, DType kvType) {
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
        this.scores = new float[capacity];
        this.vrow = new float[kvDim];
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
     * {@code h / (nh / nkv)} (grouped and multi-query attention). Scores and sums are f32 whatever
     * the cache stores.
     * Legend: nh = query heads, nkv = K/V heads, hd = head dim.
     *
     * @param q   n x (nh*hd) queries
     * @param out n x (nh*hd) attention outputs (before the output projection)
     */
    void attention(int layer, float[] q, int n, int nh, int nkv, int hd, float scale, float[] out) {
        MemorySegment kc = keys[layer];
        MemorySegment vc = values[layer];
        int eb = kvType.bytes();
        int group = nh / nkv;
        int qd = nh * hd;
        for (int t = 0; t < n; t++) {
            int p = length + t; // attends to positions 0..p
            for (int h = 0; h < nh; h++) {
                int qOff = t * qd + h * hd;
                int kvOff = (h / group) * hd;
                for (int j = 0; j <= p; j++) {
                    scores[j] = VectorKernels.dotAt(kc, kvType, ((long) j * kvDim + kvOff) * eb, q, qOff, hd) * scale;
                }
                Ops.softmax(scores, 0, p + 1);
                java.util.Arrays.fill(out, qOff, qOff + hd, 0f);
                for (int j = 0; j <= p; j++) {
                    VectorKernels.toF32At(vc, kvType, ((long) j * kvDim + kvOff) * eb, vrow, 0, hd);
                    VectorOps.axpy(scores[j], vrow, 0, out, qOff, hd);
                }
            }
        }
    }
}
