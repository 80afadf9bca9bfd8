package dev.llmflash.runtime.bench;

import dev.llmflash.formats.LlmflashException;
import jdk.incubator.vector.FloatVector;
import jdk.incubator.vector.VectorOperators;
import jdk.incubator.vector.VectorSpecies;

import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.nio.ByteOrder;
import java.util.concurrent.BrokenBarrierException;
import java.util.concurrent.CyclicBarrier;
import java.util.concurrent.atomic.AtomicReference;

/**
 * Memory read bandwidth of this machine, measured in the same run as a benchmark: the rate at which
 * {@code threads} threads can stream resident bytes through vector loads. That is the most a
 * matrix-vector product over weights already in RAM can reach (each weight is read once per token and
 * the arithmetic is cheap), so it is the compute-side limit in the benchmark's "physical limit per
 * token": a token cannot take less than (resident weight bytes / this bandwidth).
 *
 * <h2>Method</h2>
 * An off-heap segment of {@code bytes} (64-byte aligned, beyond the caches when large) is filled with
 * a constant whose f32 reading is a normal number (0x3C3C3C3C = 0.0115: no subnormal slow paths), which
 * also makes the OS back every page before timing. Then {@code threads} platform threads, each owning
 * one contiguous slice, add up their slice with {@link FloatVector} loads into four independent
 * accumulators (so the add latency does not limit the loop; legend: L = f32 lanes per vector,
 * {@code unit} = 4 vectors = the loop step, {@code a0..a3} = accumulators, {@code lo/hi} = the slice's
 * byte range). The loop is first run 10,000 times on 4 KiB so that the JIT compiles it, then once
 * over everything untimed (a warm-up round: TLB, prefetchers); then each of {@code rounds}
 * rounds is timed from the start barrier to the last thread's finish (barrier actions), and the best
 * round is reported. The sums go to a volatile sink so the loads cannot be removed as dead code.
 *
 * <h2>Ownership and threads</h2>
 * Stateless: each call allocates, uses and frees its own memory and threads (which have ended when it
 * returns); safe to call from any thread, though concurrent calls disturb each other's figures.
 */
public final class MemoryProbe {

    /** Smallest measured size: one page. */
    public static final long MIN_BYTES = 4096;

    private static final VectorSpecies<Float> F = FloatVector.SPECIES_PREFERRED;
    private static final ByteOrder LE = ByteOrder.LITTLE_ENDIAN;
    /** Calls of the loop on 4 KiB before timing: well past C2's thresholds (a few thousand calls). */
    private static final int WARM_UP_CALLS = 10_000;
    /** Fill byte: 0x3C3C3C3C read as f32 is 0.0115, a normal number. */
    private static final byte FILL = 0x3C;

    /** Keeps the sums alive: a write to a volatile field cannot be optimized away. */
    @SuppressWarnings("unused")
    private static volatile float sink;

    private MemoryProbe() {
    }

    /**
     * Best-of-{@code rounds} read bandwidth over {@code bytes} of resident memory with {@code threads}
     * threads, in GB/s (1 GB = 1e9 bytes).
     *
     * @param bytes   bytes to read per round, {@code >= 4096}; allocated (and freed) by this call
     * @param threads reading threads, {@code >= 1}
     * @param rounds  timed rounds, {@code >= 1} (after one untimed warm-up round)
     * @throws IllegalArgumentException a parameter is out of range
     * @throws OutOfMemoryError         {@code bytes} cannot be allocated
     */
    public static double readGBps(long bytes, int threads, int rounds) {
        if (bytes < MIN_BYTES) {
            throw new IllegalArgumentException("memory probe needs at least " + MIN_BYTES + " bytes, got " + bytes);
        }
        if (threads < 1) {
            throw new IllegalArgumentException("threads must be >= 1, got " + threads);
        }
        if (rounds < 1) {
            throw new IllegalArgumentException("rounds must be >= 1, got " + rounds);
        }
        try (Arena arena = Arena.ofShared()) {
            MemorySegment mem = arena.allocate(bytes, 64);
            mem.fill(FILL);
            sink = warmUp(mem);
            return measure(mem, threads, rounds);
        }
    }

    /** Runs 1 + rounds rounds over {@code mem}; returns the best timed one in GB/s. */
    private static double measure(MemorySegment mem, int threads, int rounds) {
        long[] t = new long[2]; // start, end of the current round: written by barrier actions
        CyclicBarrier start = new CyclicBarrier(threads + 1, () -> t[0] = System.nanoTime());
        CyclicBarrier done = new CyclicBarrier(threads + 1, () -> t[1] = System.nanoTime());
        float[] sums = new float[threads];
        AtomicReference<Throwable> failure = new AtomicReference<>();
        Thread[] team = new Thread[threads];
        for (int i = 0; i < threads; i++) {
            int part = i;
            team[i] = Thread.ofPlatform().daemon(true).name("llmflash-memprobe-" + (i + 1)).start(() -> {
                try {
                    for (int r = 0; r <= rounds; r++) {
                        start.await();
                        sums[part] += slice(mem, part, threads);
                        done.await();
                    }
                } catch (Throwable e) {
                    failure.compareAndSet(null, e);
                    start.reset(); // breaks the barriers: the caller and the other threads stop
                    done.reset();
                }
            });
        }
        long best = Long.MAX_VALUE;
        boolean interrupted = false;
        try {
            for (int r = 0; r <= rounds; r++) {
                start.await();
                done.await();
                if (r > 0) { // round 0 is the warm-up
                    best = Math.min(best, t[1] - t[0]);
                }
            }
        } catch (InterruptedException e) {
            interrupted = true;
            start.reset();
            done.reset();
        } catch (BrokenBarrierException e) {
            // A thread failed: its failure is reported below.
        }
        for (Thread th : team) {
            while (true) {
                try {
                    th.join();
                    break;
                } catch (InterruptedException e) {
                    // Keep waiting: the memory is freed when we return.
                    interrupted = true;
                }
            }
        }
        if (interrupted) {
            Thread.currentThread().interrupt();
            throw new LlmflashException("memory probe was interrupted");
        }
        Throwable e = failure.get();
        if (e != null) {
            throw new IllegalStateException("memory probe thread failed: " + e, e);
        }
        float total = 0;
        for (float s : sums) {
            total += s;
        }
        sink = total;
        return mem.byteSize() / (double) Math.max(1, best);
    }

    /** The total the probe's threads compute, summed here one slice after another (test hook: coverage). */
    static float sum(MemorySegment mem, int parts) {
        float total = 0;
        for (int part = 0; part < parts; part++) {
            total += slice(mem, part, parts);
        }
        return total;
    }

    /**
     * Sum of part {@code part} of {@code parts}: whole 4-vector units split evenly; the last part also
     * reads the tail (the bytes after the last whole unit: whole floats, then single bytes).
     */
    private static float slice(MemorySegment mem, int part, int parts) {
        long unit = 4L * F.vectorByteSize();
        long units = mem.byteSize() / unit;
        long lo = units * part / parts * unit;
        long hi = units * (part + 1) / parts * unit;
        float s = sumUnits(mem, lo, hi);
        return part == parts - 1 ? s + sumTail(mem, hi) : s;
    }

    /**
     * The timed loop, kept free of branches other than its own so that C2 compiles it whole (and
     * {@link #warmUp} gets it compiled before any timing): sum of {@code [lo, hi)}, a whole number of
     * units.
     */
    private static float sumUnits(MemorySegment mem, long lo, long hi) {
        long vb = F.vectorByteSize();
        long unit = 4 * vb;
        FloatVector a0 = FloatVector.zero(F);
        FloatVector a1 = a0;
        FloatVector a2 = a0;
        FloatVector a3 = a0;
        for (long o = lo; o < hi; o += unit) {
            a0 = a0.add(FloatVector.fromMemorySegment(F, mem, o, LE));
            a1 = a1.add(FloatVector.fromMemorySegment(F, mem, o + vb, LE));
            a2 = a2.add(FloatVector.fromMemorySegment(F, mem, o + 2 * vb, LE));
            a3 = a3.add(FloatVector.fromMemorySegment(F, mem, o + 3 * vb, LE));
        }
        return a0.add(a1).add(a2).add(a3).reduceLanes(VectorOperators.ADD);
    }

    /** The bytes from {@code from} (after the last whole unit) to the end: whole floats, then single bytes. */
    private static float sumTail(MemorySegment mem, long from) {
        float s = 0;
        long o = from;
        for (; o + Float.BYTES <= mem.byteSize(); o += Float.BYTES) {
            s += mem.get(ValueLayout.JAVA_FLOAT_UNALIGNED, o);
        }
        for (; o < mem.byteSize(); o++) {
            s += mem.get(ValueLayout.JAVA_BYTE, o);
        }
        return s;
    }

    /**
     * Calls {@link #sumUnits} {@link #WARM_UP_CALLS} times on the first 4 KiB (in cache), so that it
     * runs as a C2-compiled method when timed: one long first round alone would only get an
     * on-stack-replacement compile, which a later round may leave again (deoptimization).
     */
    private static float warmUp(MemorySegment mem) {
        long unit = 4L * F.vectorByteSize();
        long hi = Math.min(mem.byteSize(), MIN_BYTES) / unit * unit;
        float s = 0;
        for (int i = 0; i < WARM_UP_CALLS; i++) {
            s += sumUnits(mem, 0, hi);
        }
        return s;
    }
}
