package dev.llmflash.runtime.flash;

import dev.llmflash.formats.bundle.FfnGeometry;
import dev.llmflash.formats.bundle.FfnLayout;
import dev.llmflash.formats.tensor.DType;
import dev.llmflash.runtime.ffn.Ffn;
import dev.llmflash.runtime.io.IoEngine;
import dev.llmflash.runtime.kernels.Kernels;

import java.lang.foreign.MemorySegment;
import java.util.Arrays;
import java.util.List;

/**
 * One layer's FFN in flash mode ("LLM in a flash", techniques 1, 2, 4, 5): per token, the selector
 * (predictor) names the neurons to compute; the {@link NeuronCache} keeps the neurons of recent tokens
 * (the sliding window) and gives slots to the missing ones; the {@link IoEngine} reads exactly those
 * neurons' bundles from {@code ffn.bin} into their slots; the FFN is computed over exactly the chosen
 * neurons' slots (gather kernels). The output therefore equals the FFN computed densely with the same
 * neurons chosen, up to summation order.
 *
 * <h2>One token (decode), in order</h2>
 * <ol>
 *   <li>compute: the selector chooses the active set S (sorted neuron ids);</li>
 *   <li>memory management: touch the cached members of S, free the slots outside the window (and, when
 *       the missing neurons still do not fit, the oldest until they do: the largest window the cache
 *       allows), give slots to the missing neurons, plan one read per bundle (two in the split
 *       layout). No bytes move;</li>
 *   <li>I/O, overlapped: the reads start (unless a {@link #prefetch look-ahead} already started them);
 *       meanwhile the up projection runs over the slots of S that were already cached; then the thread
 *       waits for the reads (only this wait is I/O time) and computes the new slots;</li>
 *   <li>compute: bias and ReLU, then the down projection accumulates the slots of S.</li>
 * </ol>
 * A token whose active set exceeds the cache's capacity is computed in parts (cache cleared, filled,
 * computed, cleared again), which is correct but slow; {@link FlashMetrics} counts such overflows.
 *
 * <h2>The prompt (a call with m > 1 tokens): layer-major prefill</h2>
 * <ol>
 *   <li>every token's set S_t is chosen first (the selector sees each token in order, as decode would);</li>
 *   <li>the window bookkeeping of the m tokens is replayed exactly as m decode steps would do it, on the
 *       cache's maps only (no bytes, no I/O): afterwards the cache holds what token-by-token decoding
 *       would have left, F;</li>
 *   <li>the union U of the S_t is brought in once: with random reads of the bundles not already in DRAM
 *       when U fits the cache and reading them costs less than streaming the layer (the crossover from
 *       the measured sequential and random read speeds, {@link PrefillPlan}), else the whole layer is
 *       streamed through the runtime's bounded two-piece buffer with large sequential reads, the next
 *       piece in flight while the current one computes, and F's bytes copied from the pieces into
 *       their slots;</li>
 *   <li>every token is computed with its own set S_t only, in tiles of cache-sized row blocks
 *       ({@link Kernels#sparseBundleFfn}).</li>
 * </ol>
 * Outputs equal m decode steps' up to summation order; the cache (neurons, last-active steps and bytes)
 * is the same as after m decode steps.
 *
 * <h2>Threads</h2>
 * Stateful (the cache, the step counter): one sequence at a time, called from one thread.
 * Legend: d = model width, f = neurons, r = d x element bytes.
 */
public final class FlashFfn implements Ffn {
    /** Ages beyond this are lumped together when choosing the window the cache allows. */
    private static final int MAX_AGE = 4096;
    /** f32 bytes of a prefill compute tile: the block converted once and reused by every token (L2-sized). */
    private static final long TILE_F32_BYTES = 512 << 10;

    /**
     * How the prompt's union of active sets is read.
     *
     * @param buffer     the shared streaming buffer, two halves of {@code buffer.byteSize() / 2} bytes
     *                   (4096-aligned), or null: then the union is always read with random reads
     * @param seqGBps    measured sequential read speed (large reads), GB/s
     * @param randomGBps measured random read speed of bundle-sized reads, GB/s
     * @param policy     AUTO (the cheaper by the measured speeds), RANDOM or STREAM (forced; tests)
     */
    public record PrefillPlan(MemorySegment buffer, double seqGBps, double randomGBps, Policy policy) {
        public enum Policy { AUTO, RANDOM, STREAM }

        /** No streaming buffer: random reads of the union; when it does not fit, a small buffer is made for the call. */
        public static final PrefillPlan RANDOM_ONLY = new PrefillPlan(null, 1, 1, Policy.RANDOM);
    }

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
    private final PrefillPlan prefill;

    private final int[] active;
    private final int[] load;
    private final int[] loadSlots;
    private final int[] hitSlots;
    private final int[] hitNeurons;
    private final int[] allSlots;
    private final float[] allH;
    private final float[] xs;
    private final float[] hHit;
    private final float[] hNew;
    private final float[] hWait;
    private final float[] acc;
    private final float[] slotBias;
    /** Slots whose bytes a look-ahead read is still bringing in. */
    private final boolean[] inFlight;
    private final int[] waitSlots;
    private final int[] waitNeurons;
    private final int[] ageCounts = new int[MAX_AGE + 1];
    private final int[] mark;
    private int stamp;
    /** The reads of this layer's misses (and of prompts and overflows), reused: no objects per read. */
    private final IoEngine.ReadPlan readPlan = new IoEngine.ReadPlan(256);
    /** The look-ahead's reads into this layer, in flight while the layer before computes. */
    private final IoEngine.ReadPlan prefetchPlan = new IoEngine.ReadPlan(256);
    private long step;

    /** The look-ahead run on this layer's input and the next layer it prefetches for, or null. */
    private ActiveSelector lookahead;
    private FlashFfn next;
    private int[] ahead;

    /** Reads started by {@link #prefetch} for the next token, or null. */
    private IoEngine.Pending prefetched;
    private int prefetchedCount;

    /** {@link #FlashFfn(int, FfnGeometry, long, NeuronCache, ActiveSelector, IoEngine, float[], float[], int, FlashMetrics, PrefillPlan)} with random-read prefill. */
    public FlashFfn(int layer, FfnGeometry g, long blockOffset, NeuronCache cache, ActiveSelector selector, IoEngine io,
                    float[] upBias, float[] downBias, int window, FlashMetrics metrics) {
        this(layer, g, blockOffset, cache, selector, io, upBias, downBias, window, metrics, PrefillPlan.RANDOM_ONLY);
    }

    /**
     * @param g           the bundle's FFN geometry (bundled or split)
     * @param blockOffset file offset of this layer's block in {@code ffn.bin}
     * @param cache       this layer's cache, slots of {@link #cacheStride(FfnGeometry)} bytes
     * @param window      K >= 1: keep the neurons of the last K tokens (fewer when the cache is full);
     *                    0: no window (every token loads its whole active set afresh); -1: the largest
     *                    window the cache holds
     * @param upBias      f floats or null; downBias d floats or null
     * @param prefill     how the prompt's union is read
     */
    public FlashFfn(int layer, FfnGeometry g, long blockOffset, NeuronCache cache, ActiveSelector selector, IoEngine io,
                    float[] upBias, float[] downBias, int window, FlashMetrics metrics, PrefillPlan prefill) {
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
        this.prefill = prefill;
        int cap = cache.capacity();
        this.active = new int[f];
        this.mark = new int[f];
        this.load = new int[f];
        this.loadSlots = new int[cap];
        this.hitSlots = new int[cap];
        this.hitNeurons = new int[cap];
        this.allSlots = new int[cap];
        this.allH = new float[cap];
        this.xs = new float[d];
        this.hHit = new float[cap];
        this.hNew = new float[cap];
        this.hWait = new float[cap];
        this.acc = new float[d];
        this.slotBias = new float[cap];
        this.inFlight = new boolean[cap];
        this.waitSlots = new int[cap];
        this.waitNeurons = new int[cap];
    }

    /**
     * Bytes of one cache slot: the bundle stride of a bundled file (bundles are loaded as stored, padding
     * included), or up row + down column rounded to 64 bytes for the split layout.
     */
    public static long cacheStride(FfnGeometry g) {
        return g.layout() == FfnLayout.BUNDLED ? g.stride() : FfnGeometry.alignUp(2 * g.rowBytes(), 64);
    }

    /** Bytes read from the file per loaded neuron: the bundle stride, or up row + down column (split). */
    public static long bytesPerNeuron(FfnGeometry g) {
        return g.layout() == FfnLayout.BUNDLED ? g.stride() : 2 * g.rowBytes();
    }

    /** The scratch floats per token row this FFN needs from the model: none (it keeps its own). */
    @Override
    public int scratchPerRow() {
        return 0;
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
        if (m == 1) {
            token(k, x, 0, out, 0);
        } else if (m > 1) {
            prompt(k, x, m, out);
        }
    }

    // ------------------------------------------------------------------------------------ decode

    /**
     * Decode look-ahead (Deja Vu's asynchronous look-ahead): on each token, after choosing its own set,
     * this layer runs {@code lookahead} on its own FFN input and has {@code next} start reading the
     * neurons it predicts, so that those reads are in flight while this layer and the next one's
     * attention compute. The next layer's own predictor still decides; it reads only what was missed.
     */
    /** Whether this layer prefetches for the next one. */
    public boolean hasLookahead() {
        return lookahead != null;
    }

    public void chain(ActiveSelector lookahead, FlashFfn next) {
        if (lookahead.neurons() != next.f) {
            throw new IllegalArgumentException("look-ahead of layer " + layer + " predicts " + lookahead.neurons()
                    + " neurons, layer " + next.layer + " has " + next.f);
        }
        this.lookahead = lookahead;
        this.next = next;
        this.ahead = new int[next.f];
    }

    /**
     * Look-ahead (decode): starts reading the bundles of {@code predicted} (neurons this layer is expected
     * to need for the NEXT token, from the previous layer's input) that the cache lacks, so that they are
     * in flight while the previous layer computes. They get slots marked active at the next step, which
     * is what the next token would do for them if they are in its set; if they are not, they stay as
     * cached neurons of that step and leave with the window. Only what fits the free slots (after the
     * window's evictions) is prefetched.
     */
    public void prefetch(int[] predicted, int n) {
        if (prefetched != null || window == 0) {
            return;
        }
        long m0 = System.nanoTime();
        long next = step + 1;
        int nLoad = cache.missingInto(predicted, n, load);
        cache.touch(predicted, n, next);  // kept for the next step
        int room = cache.capacity() - cache.used();
        if (nLoad > room) {
            // Make room as the next token will: its window, then (largest window) the oldest steps.
            int evicted = window > 0 ? cache.evictOlderThan(next - window + 1) : 0;
            if (nLoad > cache.capacity() - cache.used()) {
                evicted += cache.evictOlderThan(next - largestWindow(next, nLoad) + 1);
            }
            metrics.neuronsEvicted += evicted;
            room = cache.capacity() - cache.used();
        }
        nLoad = Math.min(nLoad, room);
        if (nLoad == 0) {
            metrics.addMem(System.nanoTime() - m0);
            return;
        }
        cache.reserveInto(load, nLoad, next, loadSlots);
        for (int i = 0; i < nLoad; i++) {
            slotBias[loadSlots[i]] = upBias == null ? 0f : upBias[load[i]];
            inFlight[loadSlots[i]] = true;
        }
        IoEngine.ReadPlan reads = reads(prefetchPlan, load, loadSlots, nLoad);
        metrics.addMem(System.nanoTime() - m0);
        prefetched = io.submitAhead(reads);
        prefetchedCount = nLoad;
    }

    /** With a look-ahead: predicts the next layer's set from this layer's input and starts its reads. */
    private void prefetchNext(Kernels k, float[] x, int off) {
        if (lookahead != null) {
            int na = lookahead.select(k, x, off, ahead);
            next.prefetch(ahead, na);
        }
    }

    /** Waits for the look-ahead reads, counting them as this token's I/O. */
    private void awaitPrefetch() {
        if (prefetched != null) {
            IoEngine.Pending p = prefetched;
            prefetched = null;
            p.await();
            Arrays.fill(inFlight, false);
            metrics.addIo(p.waitedNanos(), p.latencyNanos(), prefetchedCount * bytesPerNeuron(g));
            metrics.neuronsLoaded += prefetchedCount;
            metrics.prefetched += prefetchedCount;
        }
    }

    private void token(Kernels k, float[] x, int off, float[] out, int outOff) {
        int n = selector.select(k, x, off, active);
        step++;
        System.arraycopy(x, off, xs, 0, d);
        Arrays.fill(acc, 0f);
        if (n > cache.capacity()) {
            prefetchNext(k, x, off);
            awaitPrefetch();
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
            int nLoad = cache.missingInto(active, n, load);
            if (nLoad > cache.capacity() - cache.used()) {
                evicted += cache.evictOlderThan(step - largestWindow(nLoad) + 1);
            }
            if (nLoad > cache.capacity() - cache.used()) {
                // Only neurons marked for this step are left: the look-ahead's that S does not need go
                // (their reads must land first: a freed slot is about to be read into again).
                awaitPrefetch();
                evicted += evictOutside(n);
            }
            metrics.windowSum += reach();
            int nHit = 0, nWait = 0;
            for (int i = 0; i < n; i++) {
                int s = cache.row(active[i]);
                if (s >= 0 && inFlight[s]) {
                    waitSlots[nWait] = s;  // prefetched, its read may still be in flight
                    waitNeurons[nWait++] = active[i];
                } else if (s >= 0) {
                    hitSlots[nHit] = s;
                    hitNeurons[nHit++] = active[i];
                }
            }
            cache.reserveInto(load, nLoad, step, loadSlots);
            for (int i = 0; i < nLoad; i++) {
                slotBias[loadSlots[i]] = upBias == null ? 0f : upBias[load[i]];
            }
            IoEngine.ReadPlan reads = reads(readPlan, load, loadSlots, nLoad);
            metrics.addMem(System.nanoTime() - m0);
            metrics.prefetchUsed += nWait;
            metrics.neuronsLoaded += nLoad;
            metrics.neuronsEvicted += evicted;
            metrics.hits += n - nLoad;
            metrics.active += n;
            metrics.layerSteps++;

            IoEngine.Pending pending = nLoad == 0 ? null : io.submit(reads);
            // The next layer's look-ahead reads go after this layer's own misses, so that the disk serves
            // what is waited for first.
            prefetchNext(k, x, off);
            try {
                if (nHit > 0) {
                    k.matvecGather(cache.rows(), dtype, d, cacheStride, hitSlots, nHit, xs, hHit);
                }
            } finally {
                // Prefetched slots are among the hits: their bytes must be in before they are used below.
                awaitPrefetch();
                if (pending != null) {
                    pending.await();
                    metrics.addIo(pending.waitedNanos(), pending.latencyNanos(), nLoad * bytesPerNeuron(g));
                }
            }
            if (nLoad > 0) {
                k.matvecGather(cache.rows(), dtype, d, cacheStride, loadSlots, nLoad, xs, hNew);
            }
            if (nWait > 0) {
                k.matvecGather(cache.rows(), dtype, d, cacheStride, waitSlots, nWait, xs, hWait);
            }
            int c = 0;
            for (int i = 0; i < nWait; i++) {
                allSlots[c] = waitSlots[i];
                allH[c++] = relu(hWait[i] + (upBias == null ? 0f : upBias[waitNeurons[i]]));
            }
            for (int i = 0; i < nHit; i++) {
                allSlots[c] = hitSlots[i];
                allH[c++] = relu(hHit[i] + (upBias == null ? 0f : upBias[hitNeurons[i]]));
            }
            for (int i = 0; i < nLoad; i++) {
                allSlots[c] = loadSlots[i];
                allH[c++] = relu(hNew[i] + (upBias == null ? 0f : upBias[load[i]]));
            }
            if (c > 0) {
                k.accumulateGather(cache.rows().asSlice(rowBytes), dtype, d, cacheStride, allSlots, allH, c, acc);
            }
        }
        for (int j = 0; j < d; j++) {
            out[outOff + j] = downBias == null ? acc[j] : acc[j] + downBias[j];
        }
    }

    /** Frees every cached neuron not in active[0..n); returns how many. */
    private int evictOutside(int n) {
        if (++stamp == 0) {
            Arrays.fill(mark, 0);
            stamp = 1;
        }
        for (int i = 0; i < n; i++) {
            mark[active[i]] = stamp;
        }
        int evicted = 0;
        for (int s = 0, cap = cache.capacity(); s < cap; s++) {
            int nr = cache.neuronAtUnchecked(s);
            if (nr >= 0 && mark[nr] != stamp) {
                cache.evict(nr);
                evicted++;
            }
        }
        return evicted;
    }

    /** ReLU; a NaN stays NaN (as the dense path computes it). */
    private static float relu(float v) {
        return v < 0f ? 0f : v;
    }

    /**
     * The largest window W (>= 1 token) such that the neurons needed in the last W steps plus
     * {@code missing} new ones fit the capacity. Neurons of this step (age 0) are the cached active
     * neurons and always stay.
     */
    private int largestWindow(int missing) {
        return largestWindow(step, missing);
    }

    /** {@link #largestWindow(int)} as seen from step {@code at}. */
    private int largestWindow(long at, int missing) {
        Arrays.fill(ageCounts, 0);
        for (int s = 0, cap = cache.capacity(); s < cap; s++) {
            if (cache.neuronAtUnchecked(s) >= 0) {
                ageCounts[(int) Math.min(MAX_AGE, Math.max(0, at - cache.lastActiveUnchecked(s)))]++;
            }
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

    /** How many tokens back the cache reaches after eviction: 1 + the age of its oldest neuron. */
    private int reach() {
        long oldest = step;
        for (int s = 0, cap = cache.capacity(); s < cap; s++) {
            if (cache.neuronAtUnchecked(s) >= 0) {
                oldest = Math.min(oldest, cache.lastActiveUnchecked(s));
            }
        }
        return (int) Math.min(Integer.MAX_VALUE, step - oldest + 1);
    }

    private IoEngine.ReadPlan reads(IoEngine.ReadPlan plan, int[] neurons, int[] slots, int n) {
        plan.clear();
        MemorySegment rows = cache.rows();
        long stride = cache.stride();
        for (int i = 0; i < n; i++) {
            long at = slots[i] * stride;
            if (g.layout() == FfnLayout.BUNDLED) {
                plan.add(blockOffset + g.upOffset(neurons[i]), (int) g.stride(), rows, at);
            } else {
                plan.add(blockOffset + g.upOffset(neurons[i]), (int) rowBytes, rows, at);
                plan.add(blockOffset + g.downOffset(neurons[i]), (int) rowBytes, rows, at + rowBytes);
            }
        }
        return plan;
    }

    /** More active neurons than slots: clear the cache and compute the active set in parts of capacity slots. */
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
            System.arraycopy(active, s, load, 0, count);
            cache.reserveInto(load, count, step, loadSlots);
            for (int i = 0; i < count; i++) {
                slotBias[loadSlots[i]] = upBias == null ? 0f : upBias[load[i]];
            }
            IoEngine.ReadPlan reads = reads(readPlan, load, loadSlots, count);
            metrics.addMem(System.nanoTime() - m0);
            IoEngine.Pending pending = io.submit(reads);
            pending.await();
            metrics.addIo(pending.waitedNanos(), pending.latencyNanos(), count * bytesPerNeuron(g));
            k.matvecGather(cache.rows(), dtype, d, cacheStride, loadSlots, count, xs, hNew);
            for (int r = 0; r < count; r++) {
                hNew[r] = relu(hNew[r] + (upBias == null ? 0f : upBias[load[r]]));
            }
            k.accumulateGather(cache.rows().asSlice(rowBytes), dtype, d, cacheStride, loadSlots, hNew, count, acc);
        }
        metrics.neuronsLoaded += n;
        metrics.neuronsEvicted += evicted;
        metrics.active += n;
        metrics.windowSum += 1;
        metrics.layerSteps++;
        metrics.overflows++;
    }

    // ------------------------------------------------------------------------------------ prompt

    private void prompt(Kernels k, float[] x, int m, float[] out) {
        awaitPrefetch();
        // 1. Every token's own set, in token order.
        int[] start = new int[m + 1];
        int[] sets = new int[Math.max(16, m * 64)];
        int total = 0;
        for (int t = 0; t < m; t++) {
            int n = selector.select(k, x, t * d, active);
            if (total + n > sets.length) {
                sets = Arrays.copyOf(sets, Math.max(total + n, 2 * sets.length));
            }
            System.arraycopy(active, 0, sets, total, n);
            total += n;
            start[t + 1] = total;
        }
        long m0 = System.nanoTime();
        // 2. Replay the window bookkeeping of m decode steps on the maps only. A slot's bytes are valid
        //    afterwards iff it holds the neuron it held before (nothing wrote bytes in between).
        int cap = cache.capacity();
        int[] before = new int[cap];
        for (int s = 0; s < cap; s++) {
            before[s] = cache.neuronAtUnchecked(s);
        }
        int evicted = 0, overflows = 0;
        long windowSum = 0;
        for (int t = 0; t < m; t++) {
            step++;
            int n = start[t + 1] - start[t];
            System.arraycopy(sets, start[t], active, 0, n);
            if (n > cap) {
                evicted += cache.evictOlderThan(Long.MAX_VALUE);
                int last = (n - 1) / cap * cap;  // decode's overflow leaves the last part cached
                System.arraycopy(active, last, load, 0, n - last);
                cache.reserveInto(load, n - last, step, loadSlots);
                overflows++;
                windowSum += 1;
                continue;
            }
            if (window == 0) {
                evicted += cache.evictOlderThan(Long.MAX_VALUE);
            } else {
                cache.touch(active, n, step);
                evicted += window > 0 ? cache.evictOlderThan(step - window + 1) : 0;
            }
            int nLoad = cache.missingInto(active, n, load);
            if (nLoad > cap - cache.used()) {
                evicted += cache.evictOlderThan(step - largestWindow(nLoad) + 1);
            }
            windowSum += reach();
            cache.reserveInto(load, nLoad, step, loadSlots);
        }
        // 3. The union, and which of its neurons have valid bytes in DRAM after the replay.
        boolean[] inUnion = new boolean[f];
        int unionSize = 0, unionValid = 0, tempNeeded = 0;
        for (int i = 0; i < total; i++) {
            int nr = sets[i];
            if (!inUnion[nr]) {
                inUnion[nr] = true;
                unionSize++;
                int s = cache.row(nr);
                if (s < 0) {
                    tempNeeded++;
                } else if (before[s] == nr) {
                    unionValid++;
                }
            }
        }
        long perNeuron = bytesPerNeuron(g);
        long randomBytes = (long) (unionSize - unionValid) * perNeuron;
        long streamBytes = (long) f * perNeuron;
        // The union goes through the cache only if the neurons that do not stay cached fit its free slots.
        boolean fits = tempNeeded <= cap - cache.used();
        boolean stream = !fits || switch (prefill.policy()) {
            case STREAM -> true;
            case RANDOM -> false;
            case AUTO -> randomBytes / prefill.randomGBps() > streamBytes / prefill.seqGBps();
        };
        for (int s = 0; s < cap; s++) {
            int nr = cache.neuronAtUnchecked(s);
            if (nr >= 0) {
                slotBias[s] = upBias == null ? 0f : upBias[nr];
            }
        }
        metrics.addMem(System.nanoTime() - m0);
        Arrays.fill(out, 0, m * d, 0f);
        if (stream) {
            MemorySegment buffer = prefill.buffer();
            if (buffer == null) {  // a plan without a buffer (tests, direct use): a small one for this call
                buffer = java.lang.foreign.Arena.ofAuto().allocate(
                        2 * FfnGeometry.alignUp(StreamedFfn.bytesFor(g, Math.min(f, 64)), 4096), 4096);
            }
            promptStreamed(k, x, m, start, sets, before, buffer, out);
            metrics.neuronsLoaded += f;
            metrics.prefillStreamed++;
        } else {
            int loaded = promptRandom(k, x, m, start, sets, before, inUnion, out);
            metrics.neuronsLoaded += loaded;
        }
        metrics.neuronsEvicted += evicted;
        metrics.hits += Math.max(0, total - (unionSize - unionValid));
        metrics.active += total;
        metrics.layerSteps += m;
        metrics.windowSum += windowSum;
        metrics.overflows += overflows;
        if (downBias != null) {
            for (int t = 0; t < m; t++) {
                for (int j = 0; j < d; j++) {
                    out[t * d + j] += downBias[j];
                }
            }
        }
    }

    /**
     * The union through the cache (it fits: checked by the caller): neurons that stay cached after the
     * prompt keep their slot, the others borrow free slots; every slot without its neuron's bytes is read;
     * then every token is computed from the slots of its set, block of slots by block; the borrowed slots
     * are freed.
     *
     * @return neurons read
     */
    private int promptRandom(Kernels k, float[] x, int m, int[] start, int[] sets, int[] before, boolean[] inUnion,
                             float[] out) {
        long m0 = System.nanoTime();
        int cap = cache.capacity();
        int[] slotOf = new int[f];  // the slot each union neuron is computed from
        int[] temps = new int[cap];
        int[] tempSlots = new int[cap];
        int[] toRead = new int[cap];
        int[] toReadSlots = new int[cap];
        int nTemp = 0, nRead = 0;
        for (int nr = 0; nr < f; nr++) {
            if (!inUnion[nr]) {
                continue;
            }
            int s = cache.row(nr);
            if (s < 0) {
                temps[nTemp++] = nr;
            } else {
                slotOf[nr] = s;
                if (before[s] != nr) {
                    toRead[nRead] = nr;
                    toReadSlots[nRead++] = s;
                }
            }
        }
        cache.reserveInto(temps, nTemp, Long.MIN_VALUE, tempSlots);
        for (int i = 0; i < nTemp; i++) {
            slotOf[temps[i]] = tempSlots[i];
            slotBias[tempSlots[i]] = upBias == null ? 0f : upBias[temps[i]];
            toRead[nRead] = temps[i];
            toReadSlots[nRead++] = tempSlots[i];
        }
        IoEngine.ReadPlan reads = reads(readPlan, toRead, toReadSlots, nRead);
        metrics.addMem(System.nanoTime() - m0);
        if (nRead > 0) {
            IoEngine.Pending p = io.submit(reads);
            p.await();
            metrics.addIo(p.waitedNanos(), p.latencyNanos(), nRead * bytesPerNeuron(g));
        }
        computeFromSlots(k, x, m, start, sets, slotOf, out);
        m0 = System.nanoTime();
        for (int i = 0; i < nTemp; i++) {
            cache.evict(temps[i]);
        }
        metrics.addMem(System.nanoTime() - m0);
        return nRead;
    }

    /** Each token's neurons, computed from their slots (slotOf) in blocks of slots. */
    private void computeFromSlots(Kernels k, float[] x, int m, int[] start, int[] sets, int[] slotOf, float[] out) {
        int cap = cache.capacity();
        int tile = tileRows();
        // Per token, the slots of its neurons, sorted, then cut into slot blocks of `tile`.
        int[] rs = new int[m + 1];
        int count = start[m];
        int[] slots = new int[count];
        int c = 0;
        for (int t = 0; t < m; t++) {
            rs[t] = c;
            for (int i = start[t]; i < start[t + 1]; i++) {
                slots[c++] = slotOf[sets[i]];
            }
            Arrays.sort(slots, rs[t], c);
        }
        rs[m] = c;
        int[] cursor = Arrays.copyOf(rs, m);
        int[] bStart = new int[m + 1];
        int[] bRows = new int[count];
        for (int b0 = 0; b0 < cap; b0 += tile) {
            int b1 = Math.min(cap, b0 + tile);
            int e = 0;
            for (int t = 0; t < m; t++) {
                bStart[t] = e;
                int q = cursor[t];
                while (q < rs[t + 1] && slots[q] < b1) {
                    bRows[e++] = slots[q++] - b0;
                }
                cursor[t] = q;
            }
            bStart[m] = e;
            if (e > 0) {
                k.sparseBundleFfn(cache.rows().asSlice(b0 * cacheStride), dtype, d, cacheStride, rowBytes, b1 - b0, m,
                        bStart, bRows, upBias == null ? null : slotBias, b0, x, out);
            }
        }
    }

    /**
     * The whole layer streamed through the two halves of the prefill buffer, the next piece in flight
     * while this one computes; the bundles the cache must hold afterwards (replayed window, slots without
     * their bytes) are copied from the pieces.
     */
    private void promptStreamed(Kernels k, float[] x, int m, int[] start, int[] sets, int[] before, MemorySegment buffer,
                                float[] out) {
        long half = buffer.byteSize() / 2 / 4096 * 4096;
        int piece = pieceNeurons(half);
        if (piece < 1) {
            throw new IllegalStateException("layer " + layer + ": the prefill buffer holds no neuron");
        }
        MemorySegment[] halves = {buffer.asSlice(0, half), buffer.asSlice(half, half)};
        int pieces = (f + piece - 1) / piece;
        // Per token, its set is sorted: a cursor walks it piece by piece.
        int[] cursor = Arrays.copyOf(start, m);
        int tile = tileRows();
        int[] bStart = new int[m + 1];
        int[] bRows = new int[sets.length];
        boolean dense = start[m] == (long) m * f;
        float[] hDense = dense ? new float[m * Math.min(tile, piece)] : null;
        IoEngine.Pending next = io.submit(StreamedFfn.reads(g, blockOffset, 0, Math.min(piece, f), halves[0]));
        for (int p = 0; p < pieces; p++) {
            int p0 = p * piece, count = Math.min(piece, f - p0);
            IoEngine.Pending cur = next;
            cur.await();
            metrics.addIo(cur.waitedNanos(), cur.latencyNanos(), (long) count * bytesPerNeuron(g));
            MemorySegment buf = halves[p % 2];
            next = null;
            if (p + 1 < pieces) {
                int n0 = p0 + piece;
                next = io.submit(StreamedFfn.reads(g, blockOffset, n0, Math.min(piece, f - n0), halves[(p + 1) % 2]));
            }
            try {
                long down = g.layout() == FfnLayout.BUNDLED ? rowBytes : FfnGeometry.alignUp((long) count * g.stride(), 4096);
                long m0 = System.nanoTime();
                copyKeptBundles(buf, p0, count, down, before);
                metrics.addMem(System.nanoTime() - m0);
                for (int b0 = 0; b0 < count; b0 += tile) {
                    int b1 = Math.min(count, b0 + tile);
                    MemorySegment block = buf.asSlice(b0 * g.stride());
                    if (dense) {
                        denseBlock(k, block, down, b1 - b0, p0 + b0, x, m, hDense, out);
                        continue;
                    }
                    int e = 0;
                    for (int t = 0; t < m; t++) {
                        bStart[t] = e;
                        int q = cursor[t];
                        while (q < start[t + 1] && sets[q] < p0 + b1) {
                            bRows[e++] = sets[q++] - p0 - b0;
                        }
                        cursor[t] = q;
                    }
                    bStart[m] = e;
                    if (e > 0) {
                        k.sparseBundleFfn(block, dtype, d, g.stride(), down, b1 - b0, m, bStart, bRows, upBias, p0 + b0, x, out);
                    }
                }
            } catch (RuntimeException e) {
                if (next != null) {
                    next.await();
                }
                throw e;
            }
        }
    }

    /** Every token uses every neuron of the block (a layer kept dense): the dense matmul kernels. */
    private void denseBlock(Kernels k, MemorySegment block, long down, int rows, int first, float[] x, int m, float[] h,
                            float[] out) {
        k.matmulStrided(block, dtype, rows, d, g.stride(), x, m, h);
        for (int t = 0; t < m; t++) {
            for (int i = 0; i < rows; i++) {
                h[t * rows + i] = relu(h[t * rows + i] + (upBias == null ? 0f : upBias[first + i]));
            }
        }
        k.matmulTransposedAcc(block.asSlice(down), dtype, rows, d, g.stride(), h, m, out);
    }

    /** Copies, from a streamed piece of neurons [p0, p0 + count), the bundles of cached neurons whose slot lacks them. */
    private void copyKeptBundles(MemorySegment buf, int p0, int count, long down, int[] before) {
        for (int i = 0; i < count; i++) {
            int nr = p0 + i;
            int s = cache.row(nr);
            if (s >= 0 && before[s] != nr) {
                MemorySegment dst = cache.rowSlice(s);
                if (g.layout() == FfnLayout.BUNDLED) {
                    MemorySegment.copy(buf, i * g.stride(), dst, 0, g.stride());
                } else {
                    MemorySegment.copy(buf, i * g.stride(), dst, 0, rowBytes);
                    MemorySegment.copy(buf, down + i * g.stride(), dst, rowBytes, rowBytes);
                }
                before[s] = nr;
            }
        }
    }

    /** Neurons per streamed piece of {@code half} bytes (the split layout needs an aligned down part). */
    private int pieceNeurons(long half) {
        int n = (int) Math.min(f, half / g.stride());
        while (n > 0 && StreamedFfn.bytesFor(g, n) > half) {
            n--;
        }
        return n;
    }

    /** Rows per compute tile: the block converted to f32 once stays in L2. */
    private int tileRows() {
        return (int) Math.clamp(TILE_F32_BYTES / (8L * d), 4, 64);
    }
}
