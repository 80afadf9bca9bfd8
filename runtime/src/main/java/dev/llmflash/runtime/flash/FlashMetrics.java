package dev.llmflash.runtime.flash;

/**
 * Counters the FFN layers of one model add to as they run, split as the paper's Table 3 splits a
 * token: I/O (time the compute thread waited for reads), memory management (cache bookkeeping,
 * eviction moves, building read plans) and the rest (compute). Written by the one thread that runs
 * the forward pass; {@link #snapshot()} is read by the same thread between steps.
 */
public final class FlashMetrics {
    long ioWaitNanos;
    long ioLatencyNanos;
    long memNanos;
    long bytesRequested;
    long neuronsLoaded;
    long neuronsEvicted;
    long hits;
    long active;
    long windowSum;
    long layerSteps;
    long overflows;
    long prefetched;
    long prefetchUsed;
    long prefillStreamed;

    /** Adds time spent waiting for reads. */
    public void addIo(long waitedNanos, long latencyNanos, long bytes) {
        ioWaitNanos += waitedNanos;
        ioLatencyNanos += latencyNanos;
        bytesRequested += bytes;
    }

    /** Adds memory-management time. */
    public void addMem(long nanos) {
        memNanos += nanos;
    }

    /**
     * Cumulative totals.
     *
     * @param ioWaitNanos    time the forward pass was blocked on reads (the I/O not hidden behind compute)
     * @param ioLatencyNanos time from issuing reads to their completion, summed over layer steps
     * @param memNanos       memory management: cache bookkeeping, eviction copies, read plans
     * @param bytesRequested bytes of FFN weights asked of the file (bundles, or the streamed part of a layer)
     * @param neuronsLoaded  neuron bundles read into the caches
     * @param neuronsEvicted neurons deleted from the caches
     * @param hits           needed neurons that were already cached
     * @param active         needed neurons (predicted active), summed over layer steps
     * @param windowSum      effective sliding window in tokens, summed over layer steps (flash)
     * @param layerSteps     (layer, token) pairs processed by a flash or streamed FFN
     * @param overflows      layer steps whose needed neurons exceeded the cache and were processed in parts
     * @param prefetched     neurons read ahead by a look-ahead prediction (counted in neuronsLoaded too)
     * @param prefetchUsed   prefetched neurons the layer's own predictor then chose (hits whose read the look-ahead started)
     * @param prefillStreamed prompt layer passes that streamed the whole layer (the others read the union randomly)
     */
    public record Totals(long ioWaitNanos, long ioLatencyNanos, long memNanos, long bytesRequested, long neuronsLoaded,
                         long neuronsEvicted, long hits, long active, long windowSum, long layerSteps, long overflows,
                         long prefetched, long prefetchUsed, long prefillStreamed) {

        /** this - earlier, field by field. */
        public Totals minus(Totals e) {
            return new Totals(ioWaitNanos - e.ioWaitNanos, ioLatencyNanos - e.ioLatencyNanos, memNanos - e.memNanos,
                    bytesRequested - e.bytesRequested, neuronsLoaded - e.neuronsLoaded, neuronsEvicted - e.neuronsEvicted,
                    hits - e.hits, active - e.active, windowSum - e.windowSum, layerSteps - e.layerSteps, overflows - e.overflows,
                    prefetched - e.prefetched, prefetchUsed - e.prefetchUsed, prefillStreamed - e.prefillStreamed);
        }

        /** Share of needed neurons found in the cache (1 when nothing was needed). */
        public double hitRate() {
            return active == 0 ? 1 : (double) hits / active;
        }
    }

    public Totals snapshot() {
        return new Totals(ioWaitNanos, ioLatencyNanos, memNanos, bytesRequested, neuronsLoaded, neuronsEvicted, hits,
                active, windowSum, layerSteps, overflows, prefetched, prefetchUsed, prefillStreamed);
    }
}
