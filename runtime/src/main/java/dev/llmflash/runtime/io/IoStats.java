package dev.llmflash.runtime.io;

import java.util.concurrent.atomic.LongAdder;

/**
 * Counters of an {@link IoEngine}: what callers asked for and what went to the file.
 *
 * <ul>
 *   <li>{@code readsRequested}: {@link IoEngine.Read}s passed to {@code readAll};</li>
 *   <li>{@code readsIssued}: positional {@code read} calls made on the channel (after coalescing;
 *       a read that the OS returns short and that is resumed counts twice);</li>
 *   <li>{@code bytesRequested}: the sum of the requested lengths;</li>
 *   <li>{@code bytesRead}: the bytes the channel returned, including alignment padding in direct
 *       mode and gaps read through when merging;</li>
 *   <li>{@code nanos}: wall time spent inside {@code readAll}, summed over calls.</li>
 * </ul>
 *
 * Thread-safe: updated by the I/O threads, read and {@link #reset() reset} by anyone. A reset racing
 * with a running {@code readAll} may keep part of that call's counts.
 */
public final class IoStats {
    private final LongAdder readsRequested = new LongAdder();
    private final LongAdder readsIssued = new LongAdder();
    private final LongAdder bytesRequested = new LongAdder();
    private final LongAdder bytesRead = new LongAdder();
    private final LongAdder nanos = new LongAdder();

    void addRequested(long reads, long bytes) {
        readsRequested.add(reads);
        bytesRequested.add(bytes);
    }

    void addIssued(long bytes) {
        readsIssued.increment();
        bytesRead.add(bytes);
    }

    void addNanos(long n) {
        nanos.add(n);
    }

    public long readsRequested() {
        return readsRequested.sum();
    }

    public long readsIssued() {
        return readsIssued.sum();
    }

    public long bytesRequested() {
        return bytesRequested.sum();
    }

    public long bytesRead() {
        return bytesRead.sum();
    }

    public long nanos() {
        return nanos.sum();
    }

    /** Bytes requested per second of {@code readAll} wall time, in GB/s (10^9 bytes); 0 before any call. */
    public double requestedGBps() {
        long n = nanos();
        return n == 0 ? 0 : (double) bytesRequested() / n;
    }

    /** Sets every counter back to zero. */
    public void reset() {
        readsRequested.reset();
        readsIssued.reset();
        bytesRequested.reset();
        bytesRead.reset();
        nanos.reset();
    }

    @Override
    public String toString() {
        return "IoStats[requested=" + readsRequested() + " reads/" + bytesRequested() + " B, issued="
                + readsIssued() + " reads/" + bytesRead() + " B, " + nanos() / 1_000_000.0 + " ms]";
    }
}
