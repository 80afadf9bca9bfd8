package dev.llmflash.runtime.flash;

import dev.llmflash.formats.bundle.FfnGeometry;
import dev.llmflash.formats.bundle.FfnLayout;
import dev.llmflash.formats.tensor.DType;
import dev.llmflash.runtime.ffn.Ffn;
import dev.llmflash.runtime.io.IoEngine;
import dev.llmflash.runtime.kernels.Kernels;

import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;

/**
 * One layer's FFN in flash mode ("LLM in a flash", techniques 1, 2, 4, 5): per token, the selector
 * (predictor) names the neurons to compute; the {@link NeuronCache} keeps the neurons of recent tokens
 * (the sliding window) and gets rows for the missing ones; the {@link IoEngine} reads exactly those
 * neurons' bundles from {@code ffn.bin} into their rows; the FFN is computed over the cache rows with
 * every neuron not chosen for this token masked to zero. The output therefore equals the FFN computed
 * densely with the same neurons chosen, up to summation order.
 *
 * <h2>One token, in order</h2>
 * <ol>
 *   <li>compute: the selector chooses the active set S (sorted neuron ids);</li>
 *   <li>memory management: touch the cached members of S, delete rows outside the window (and, when the
 *       missing neurons still do not fit, the oldest rows until they do: the largest window the cache
 *       allows), reserve rows for the missing neurons, plan one read per bundle (two in the split
 *       layout);</li>
 *   <li>I/O, overlapped: the reads start; meanwhile the up projection runs over the rows that were
 *       already cached; then the thread waits for the reads (only this wait is counted as I/O time)
 *       and computes the new rows;</li>
 *   <li>compute: bias and ReLU on rows whose neuron is in S, zero elsewhere; the down projection
 *       accumulates only the non-zero rows.</li>
 * </ol>
 * A token whose active set exceeds the cache's capacity is computed in parts (cache cleared, filled,
 * computed, cleared again), which is correct but slow; {@link FlashMetrics} counts such overflows.
 * Batched calls (the prompt) are processed token by token, each token a window step, so the prompt
 * loads per-token active sets through the window, exactly as generation does.
 *
 * <h2>Threads</h2>
 * Stateful (the cache, the step counter): one sequence at a time, called from one thread.
 * Legend: d = model width, f = neurons, r = d x element bytes.
 */
public final class FlashFfn implements Ffn {
    /** Ages beyond this are lumped together when choosing the window the cache allows. */
    private static final int MAX_AGE = 4096;

    private final int layer;
    private final int d;
    private final int f;
    private final DType dtype;
    private final FfnGeometry g;
    private final long blockOffset;
    private final NeuronCache cache;
    private final ActiveSelector selector;
    private final IoEngine io;
    private final float[] upBias;
    private final float[] downBias;
    private final int window;
    private final FlashMetrics metrics;
    private final long rowBytes;
    private final long cacheStride;

    private final int[] active;
    private final int[] mark;
    private final float[] xs;
    private final float[] hRows;
    private final float[] hNew;
    private final float[] acc;
    private final int[] ageCounts = new int[MAX_AGE + 1];
    private int stamp;
    private long step;

    /**
     * @param g           the bundle's FFN geometry (bundled or split)
     * @param blockOffset file offset of this layer's block in {@code ffn.bin}
     * @param cache       this layer's cache, rows of {@link #cacheStride(FfnGeometry)} bytes
     * @param window      K >= 1: keep the neurons of the last K tokens (fewer when the cache is full);
     *                    0: no window (every token loads its whole active set afresh); -1: the largest
     *                    window the cache holds
     * @param upBias      f floats or null; downBias d floats or null
     */
    public FlashFfn(int layer, FfnGeometry g, long blockOffset, NeuronCache cache, ActiveSelector selector, IoEngine io,
                    float[] upBias, float[] downBias, int window, FlashMetrics metrics) {
        if (window < -1) {
            throw new IllegalArgumentException("window must be -1 (largest), 0 (none) or K >= 1, got " + window);
        }
        if (selector.neurons() != g.dFfn() || cache.neurons() != g.dFfn() || cache.stride() != cacheStride(g)) {
            throw new IllegalArgumentException("layer " + layer + ": selector, cache and geometry disagree");
        }
        this.layer = layer;
        this.d = g.dModel();
        this.f = g.dFfn();
        this.dtype = g.dtype();
        this.g = g;
        this.blockOffset = blockOffset;
        this.cache = cache;
        this.selector = selector;
        this.io = io;
        this.upBias = upBias;
        this.downBias = downBias;
        this.window = window;
        this.metrics = metrics;
        this.rowBytes = g.rowBytes();
        this.cacheStride = cache.stride();
        this.active = new int[f];
        this.mark = new int[f];
        this.xs = new float[d];
        this.hRows = new float[cache.capacity()];
        this.hNew = new float[cache.capacity()];
        this.acc = new float[d];
    }

    /**
     * Bytes of one cache row: the bundle stride of a bundled file (rows are loaded as stored, padding
     * included), or up row + down column rounded to 64 bytes for the split layout.
     */
    public static long cacheStride(FfnGeometry g) {
        return g.layout() == FfnLayout.BUNDLED ? g.stride() : FfnGeometry.alignUp(2 * g.rowBytes(), 64);
    }

    /** Bytes read from the file per loaded neuron: the bundle stride, or up row + down column (split). */
    public static long bytesPerNeuron(FfnGeometry g) {
        return g.layout() == FfnLayout.BUNDLED ? g.stride() : 2 * g.rowBytes();
    }

    @Override
    public int neurons() {
        return f;
    }

    public int layer() {
        return layer;
    }

    public NeuronCache cache() {
        return cache;
    }

    @Override
    public void forward(Kernels k, float[] x, int m, float[] h, float[] out) {
        for (int t = 0; t < m; t++) {
            token(k, x, t * d, out, t * d);
        }
    }

    private void token(Kernels k, float[] x, int off, float[] out, int outOff) {
        int n = selector.select(x, off, active);
        step++;
        System.arraycopy(x, off, xs, 0, d);
        Arrays.fill(acc, 0f);
        if (n > cache.capacity()) {
            overflow(k, n);
        } else {
            long m0 = System.nanoTime();
            int evicted;
            if (window == 0) {
                evicted = cache.evictOlderThan(Long.MAX_VALUE);
            } else {
                cache.touch(active, n, step);
                evicted = window > 0 ? cache.evictOlderThan(step - window + 1) : 0;
            }
            int[] load = cache.missing(active, n);
            if (load.length > cache.capacity() - cache.used()) {
                evicted += cache.evictOlderThan(step - largestWindow(load.length) + 1);
            }
            metrics.windowSum += reach();
            int oldUsed = cache.used();
            int[] rows = cache.reserve(load, load.length, step);
            List<IoEngine.Read> reads = reads(load, rows);
            metrics.addMem(System.nanoTime() - m0);
            metrics.neuronsLoaded += load.length;
            metrics.neuronsEvicted += evicted;
            metrics.hits += n - load.length;
            metrics.active += n;
            metrics.layerSteps++;

            IoEngine.Pending pending = io.submit(reads);
            try {
                if (oldUsed > 0) {
                    k.matvecStrided(cache.rows(), dtype, oldUsed, d, cacheStride, xs, hRows);
                }
            } finally {
                pending.await();
                metrics.addIo(pending.waitedNanos(), pending.latencyNanos(), load.length * bytesPerNeuron(g));
            }
            int fresh = cache.used() - oldUsed;
            if (fresh > 0) {
                k.matvecStrided(cache.rows().asSlice(oldUsed * cacheStride), dtype, fresh, d, cacheStride, xs, hNew);
                System.arraycopy(hNew, 0, hRows, oldUsed, fresh);
            }
            activateChosen(n, cache.used());
            if (cache.used() > 0) {
                k.matvecTransposedAcc(cache.rows().asSlice(rowBytes), dtype, cache.used(), d, cacheStride, hRows, acc);
            }
        }
        for (int j = 0; j < d; j++) {
            out[outOff + j] = downBias == null ? acc[j] : acc[j] + downBias[j];
        }
    }

    /** Bias and ReLU on the rows whose neuron is in active[0..n); zero on the others. */
    private void activateChosen(int n, int used) {
        if (++stamp == 0) {
            Arrays.fill(mark, 0);
            stamp = 1;
        }
        for (int i = 0; i < n; i++) {
            mark[active[i]] = stamp;
        }
        for (int r = 0; r < used; r++) {
            int neuron = cache.neuronAt(r);
            if (mark[neuron] == stamp) {
                float v = upBias == null ? hRows[r] : hRows[r] + upBias[neuron];
                hRows[r] = v < 0f ? 0f : v;
            } else {
                hRows[r] = 0f;
            }
        }
    }

    /**
     * The largest window W (>= 1 token) such that the rows needed in the last W steps plus {@code missing}
     * new rows fit the capacity. Rows of this step (age 0) are the cached active neurons and always stay.
     */
    private int largestWindow(int missing) {
        Arrays.fill(ageCounts, 0);
        int used = cache.used();
        for (int r = 0; r < used; r++) {
            ageCounts[(int) Math.min(MAX_AGE, step - cache.lastActive(r))]++;
        }
        int room = cache.capacity() - missing;
        int kept = 0;
        int w = 0;
        while (w < MAX_AGE && kept + ageCounts[w] <= room) {
            kept += ageCounts[w];
            w++;
        }
        return Math.max(1, w);
    }

    /** How many tokens back the cache reaches after eviction: 1 + the age of its oldest row. */
    private int reach() {
        long oldest = step;
        for (int r = 0, used = cache.used(); r < used; r++) {
            oldest = Math.min(oldest, cache.lastActive(r));
        }
        return (int) Math.min(Integer.MAX_VALUE, step - oldest + 1);
    }

    private List<IoEngine.Read> reads(int[] neurons, int[] rows) {
        List<IoEngine.Read> reads = new ArrayList<>(neurons.length * (g.layout() == FfnLayout.BUNDLED ? 1 : 2));
        for (int i = 0; i < neurons.length; i++) {
            var dst = cache.rowSlice(rows[i]);
            if (g.layout() == FfnLayout.BUNDLED) {
                reads.add(new IoEngine.Read(blockOffset + g.upOffset(neurons[i]), (int) g.stride(), dst));
            } else {
                reads.add(new IoEngine.Read(blockOffset + g.upOffset(neurons[i]), (int) rowBytes, dst.asSlice(0, rowBytes)));
                reads.add(new IoEngine.Read(blockOffset + g.downOffset(neurons[i]), (int) rowBytes, dst.asSlice(rowBytes, rowBytes)));
            }
        }
        return reads;
    }

    /** More active neurons than rows: clear the cache and compute the active set in parts of capacity rows. */
    private void overflow(Kernels k, int n) {
        long m0 = System.nanoTime();
        int capacity = cache.capacity();
        int evicted = cache.evictOlderThan(Long.MAX_VALUE);
        metrics.addMem(System.nanoTime() - m0);
        for (int s = 0; s < n; s += capacity) {
            int count = Math.min(capacity, n - s);
            m0 = System.nanoTime();
            if (s > 0) {
                evicted += cache.evictOlderThan(Long.MAX_VALUE);
            }
            int[] part = Arrays.copyOfRange(active, s, s + count);
            int[] rows = cache.reserve(part, count, step);
            List<IoEngine.Read> reads = reads(part, rows);
            metrics.addMem(System.nanoTime() - m0);
            IoEngine.Pending pending = io.submit(reads);
            pending.await();
            metrics.addIo(pending.waitedNanos(), pending.latencyNanos(), count * bytesPerNeuron(g));
            k.matvecStrided(cache.rows(), dtype, count, d, cacheStride, xs, hRows);
            for (int r = 0; r < count; r++) {
                float v = upBias == null ? hRows[r] : hRows[r] + upBias[part[r]];
                hRows[r] = v < 0f ? 0f : v;
            }
            k.matvecTransposedAcc(cache.rows().asSlice(rowBytes), dtype, count, d, cacheStride, hRows, acc);
        }
        metrics.neuronsLoaded += n;
        metrics.neuronsEvicted += evicted;
        metrics.active += n;
        metrics.windowSum += 1;
        metrics.layerSteps++;
        metrics.overflows++;
    }
}
