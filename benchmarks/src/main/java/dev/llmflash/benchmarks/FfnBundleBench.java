package dev.llmflash.benchmarks;

import dev.llmflash.formats.tensor.DType;
import dev.llmflash.runtime.kernels.Kernels;
import jdk.incubator.vector.FloatVector;
import jdk.incubator.vector.LongVector;
import jdk.incubator.vector.VectorOperators;
import jdk.incubator.vector.VectorSpecies;

import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.nio.ByteOrder;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import java.util.Locale;
import java.util.SplittableRandom;
import java.util.concurrent.CyclicBarrier;
import java.util.concurrent.atomic.AtomicInteger;

/**
 * The FFN over neuron bundles, as the flash layout stores it: neuron i's f16 up row (d elements) at
 * byte {@code i * stride} and its down column (d elements) right after it, {@code stride} bytes per
 * neuron (default 2 d 2 bytes: no padding). For d = 4096, f = 16384 that is a 256 MB off-heap
 * segment, far beyond the caches. Interleaved over {@code --reps} rounds, with the same threads:
 * <ul>
 *   <li>up: {@link Kernels#matvecStrided} over all f up rows, against a plain read of the same bytes
 *       (each thread adds up its rows' d-element spans as 64-bit lanes);
 *   <li>down at density p: {@link Kernels#matvecTransposedAcc} with a fraction p of h non-zero at
 *       random neurons, against a plain read of the same amount of active down columns. Successive
 *       calls (reads and kernels alike) take the next of enough random patterns to touch 128 MB, so
 *       that they come from DRAM rather than from cache lines a recent call left.
 * </ul>
 * GB/s = weight bytes the call must read / time; calls shorter than ~1 ms are timed in batches.
 * Prints a markdown table (best and median per measurement, kernel / read of the medians).
 * <p>Usage: {@code java --add-modules jdk.incubator.vector -cp benchmarks.jar
 * dev.llmflash.benchmarks.FfnBundleBench [--threads N] [--d 4096] [--f 16384] [--stride BYTES]
 * [--reps 9] [--warmup 3] [--densities 0.03,0.25,1]}
 */
public final class FfnBundleBench {

    private static final VectorSpecies<Long> LS = LongVector.SPECIES_PREFERRED;
    private static final ByteOrder LE = ByteOrder.LITTLE_ENDIAN;
    private static final DType DT = DType.F16;
    /** Distinct bytes the down calls of one density cycle through (4x a 32 MB L3). */
    private static final long CYCLE_BYTES = 128L << 20;
    /**
     * Batch calls back to back until a timed sample reads at least this many bytes (~1 ms from DRAM):
     * a lone short call would mostly time the wake-up of parked kernel threads.
     */
    private static final long SAMPLE_BYTES = 32L << 20;
    /** The read reference cuts rows into this many chunks per thread, like Kernels. */
    private static final int CHUNKS_PER_THREAD = 4;

    private FfnBundleBench() {
    }

    public static void main(String[] args) throws Exception {
        int threads = Runtime.getRuntime().availableProcessors();
        int d = 4096;
        int f = 16384;
        long stride = -1;
        int reps = 9;
        double warmupSeconds = 3;
        double[] densities = {0.03, 0.25, 1.0};
        for (int a = 0; a < args.length; a++) {
            switch (args[a]) {
                case "--threads" -> threads = Integer.parseInt(args[++a]);
                case "--d" -> d = Integer.parseInt(args[++a]);
                case "--f" -> f = Integer.parseInt(args[++a]);
                case "--stride" -> stride = Long.parseLong(args[++a]);
                case "--reps" -> reps = Integer.parseInt(args[++a]);
                case "--warmup" -> warmupSeconds = Double.parseDouble(args[++a]);
                case "--densities" -> densities = Arrays.stream(args[++a].split(","))
                        .mapToDouble(Double::parseDouble).toArray();
                default -> {
                    System.err.println("usage: FfnBundleBench [--threads N] [--d D] [--f F] [--stride BYTES]"
                            + " [--reps N] [--warmup SECONDS] [--densities 0.03,0.25,1]");
                    System.exit(2);
                }
            }
        }
        long rowBytes = (long) d * DT.bytes();
        if (stride < 0) {
            stride = 2 * rowBytes;
        }
        if (rowBytes % (4 * LS.vectorByteSize()) != 0) {
            System.err.println("FfnBundleBench: --d must be a multiple of " + 2 * LS.vectorByteSize()
                    + " (the read loop takes whole 4-vector steps)");
            System.exit(2);
        }
        if (stride < 2 * rowBytes) {
            System.err.println("FfnBundleBench: --stride " + stride + " is shorter than an up row and a down column ("
                    + 2 * rowBytes + " bytes)");
            System.exit(2);
        }
        try (Arena arena = Arena.ofShared(); Kernels kernels = new Kernels(threads);
             Reader reader = new Reader(threads)) {
            MemorySegment bundles = arena.allocate(f * stride, 4096);
            fill(bundles);
            MemorySegment up = bundles.asSlice(0, (f - 1) * stride + rowBytes);
            MemorySegment down = bundles.asSlice(rowBytes, (f - 1) * stride + rowBytes);
            float[] x = new float[d];
            SplittableRandom rnd = new SplittableRandom(7);
            for (int j = 0; j < d; j++) {
                x[j] = (float) rnd.nextDouble(-1, 1);
            }
            float[] h = new float[f];
            float[] y = new float[d];
            int[] all = new int[f];
            Arrays.setAll(all, i -> i);

            List<Case> cases = new ArrayList<>();
            cases.add(new Case("up: matvecStrided, all " + f + " rows", List.of(all), null));
            for (double p : densities) {
                int active = Math.max(1, (int) Math.round(p * f));
                int patterns = (int) Math.max(1, Math.min(256, CYCLE_BYTES / (active * rowBytes)));
                List<int[]> rows = new ArrayList<>();
                List<float[]> hs = new ArrayList<>();
                for (int k = 0; k < patterns; k++) {
                    int[] pick = pick(f, active, rnd);
                    float[] hk = new float[f];
                    for (int i : pick) {
                        hk[i] = (float) rnd.nextDouble(0.01, 1); // post-ReLU: positive
                    }
                    rows.add(pick);
                    hs.add(hk);
                }
                cases.add(new Case(String.format(Locale.ROOT, "down: matvecTransposedAcc, %s%% active (%d rows)",
                        trim(100 * p), active), rows, hs));
            }
            int n = cases.size();
            double[][] read = new double[n][reps];
            double[][] kernel = new double[n][reps];
            double[][] micros = new double[n][reps];
            // Warm-up rounds (untimed, rep < 0) until --warmup seconds have passed, at least 3: the
            // Vector API loops are ~1000x slower until C2 has compiled them, which takes a while on a
            // busy 2-core machine.
            long warmEnd = System.nanoTime() + (long) (warmupSeconds * 1e9);
            for (int rep = -3; rep < reps; rep++) {
                if (rep == -1 && System.nanoTime() < warmEnd) {
                    rep = -2;
                }
                for (int c = 0; c < n; c++) {
                    Case cs = cases.get(c);
                    long bytes = (long) cs.rows.get(0).length * rowBytes;
                    int calls = (int) Math.max(1, SAMPLE_BYTES / bytes);
                    MemorySegment m = cs.hs == null ? up : down;
                    long t0 = System.nanoTime();
                    for (int k = 0; k < calls; k++) {
                        reader.read(m, stride, rowBytes, cs.rows.get(cs.next()));
                    }
                    long t1 = System.nanoTime();
                    for (int k = 0; k < calls; k++) {
                        if (cs.hs == null) {
                            kernels.matvecStrided(up, DT, f, d, stride, x, h);
                        } else {
                            kernels.matvecTransposedAcc(down, DT, f, d, stride, cs.hs.get(cs.next()), y);
                        }
                    }
                    long t2 = System.nanoTime();
                    if (rep >= 0) {
                        read[c][rep] = (double) bytes * calls / (t1 - t0);
                        kernel[c][rep] = (double) bytes * calls / (t2 - t1);
                        micros[c][rep] = (t2 - t1) / 1e3 / calls;
                    }
                }
            }
            System.out.printf(Locale.ROOT, "threads %d, d %d, f %d, f16 bundles at stride %d bytes (%d MB), %d reps,"
                            + " f32 lanes %d (checksum %s)%n%n", threads, d, f, stride, bundles.byteSize() >> 20, reps,
                    FloatVector.SPECIES_PREFERRED.length(), reader.sink + h[0] + y[0]);
            System.out.println("| kernel | bytes per call | read GB/s best / median | kernel GB/s best / median"
                    + " | kernel / read, median | µs per call, median |");
            System.out.println("|---|---|---|---|---|---|");
            for (int c = 0; c < n; c++) {
                Case cs = cases.get(c);
                long bytes = (long) cs.rows.get(0).length * rowBytes;
                System.out.printf(Locale.ROOT, "| %s | %s | %.1f / %.1f | %.1f / %.1f | %.0f%% | %.1f |%n",
                        cs.name, size(bytes), Stats.best(read[c]), Stats.median(read[c]), Stats.best(kernel[c]), Stats.median(kernel[c]),
                        100 * Stats.median(kernel[c]) / Stats.median(read[c]), Stats.median(micros[c]));
            }
        }
    }

    /** One row of the table: the row lists (and activations) its calls cycle through. */
    private static final class Case {
        final String name;
        final List<int[]> rows;
        final List<float[]> hs;
        int cursor;

        Case(String name, List<int[]> rows, List<float[]> hs) {
            this.name = name;
            this.rows = rows;
            this.hs = hs;
        }

        /**
         * The pattern of the next call, read or kernel: a new one each time, so that neither finds
         * the rows the other has just pulled into the cache.
         */
        int next() {
            return cursor++ % rows.size();
        }
    }

    /** {@code count} distinct indices in [0, f), ascending (a partial Fisher-Yates shuffle). */
    private static int[] pick(int f, int count, SplittableRandom rnd) {
        int[] perm = new int[f];
        Arrays.setAll(perm, i -> i);
        for (int k = 0; k < count; k++) {
            int j = k + rnd.nextInt(f - k);
            int t = perm[k];
            perm[k] = perm[j];
            perm[j] = t;
        }
        int[] out = Arrays.copyOf(perm, count);
        Arrays.sort(out);
        return out;
    }

    /** f16 values in [-1, 1) (no NaN/Inf/subnormal slow paths), a 1 MB pattern repeated. */
    private static void fill(MemorySegment w) {
        SplittableRandom rnd = new SplittableRandom(42);
        long patternBytes = Math.min(w.byteSize(), 1 << 20);
        for (long b = 0; b + 2 <= patternBytes; b += 2) {
            w.set(ValueLayout.JAVA_SHORT_UNALIGNED, b, Float.floatToFloat16((float) rnd.nextDouble(-1, 1)));
        }
        for (long b = patternBytes; b < w.byteSize(); b += patternBytes) {
            MemorySegment.copy(w, 0, w, b, Math.min(patternBytes, w.byteSize() - b));
        }
    }

    private static String trim(double v) {
        return v == Math.rint(v) ? String.valueOf((long) v) : String.valueOf(v);
    }

    private static String size(long bytes) {
        return bytes >= 1 << 20 ? String.format(Locale.ROOT, "%.1f MB", bytes / 1048576.0)
                : String.format(Locale.ROOT, "%.0f KB", bytes / 1024.0);
    }

    /**
     * The bandwidth reference: {@code threads} threads (the caller and {@code threads - 1} started
     * here, released together by a barrier) add up the {@code len}-byte spans of the given rows (row i
     * at byte i * stride) as 64-bit lanes, claiming chunks of rows from a counter as the kernels do,
     * and, as the kernels do, reading rows k, k+q, k+2q, k+3q of a chunk together: four streams (one
     * stream per thread over 8 KB spans with gaps read ~1.6x slower than the kernels here).
     */
    private static final class Reader implements AutoCloseable {
        private final int threads;
        private final CyclicBarrier start;
        private final CyclicBarrier done;
        private final Thread[] workers;
        private final long[] sums;
        private volatile MemorySegment segment;
        private volatile long stride;
        private volatile long len;
        private volatile int[] rows;
        private volatile boolean closed;
        private final AtomicInteger next = new AtomicInteger();
        long sink;

        Reader(int threads) {
            this.threads = threads;
            this.start = new CyclicBarrier(threads);
            this.done = new CyclicBarrier(threads);
            this.sums = new long[threads];
            this.workers = new Thread[threads - 1];
            for (int k = 1; k < threads; k++) {
                int part = k;
                workers[k - 1] = Thread.ofPlatform().daemon(true).name("read-" + k).start(() -> {
                    try {
                        while (true) {
                            start.await();
                            if (closed) {
                                return;
                            }
                            sums[part] = part(part);
                            done.await();
                        }
                    } catch (Exception e) {
                        // broken barrier: the benchmark is over
                    }
                });
            }
        }

        void read(MemorySegment w, long stride, long len, int[] rows) throws Exception {
            this.segment = w;
            this.stride = stride;
            this.len = len;
            this.rows = rows;
            next.set(0);
            if (threads > 1) {
                start.await();
            }
            sums[0] = part(0);
            if (threads > 1) {
                done.await();
            }
            for (long s : sums) {
                sink += s;
            }
        }

        /** Claims chunks of the rows until none is left (as the kernels do: a late thread takes less). */
        private long part(int part) {
            int[] r = rows;
            int chunks = Math.min(r.length, CHUNKS_PER_THREAD * threads);
            long sum = 0;
            int c;
            while ((c = next.getAndIncrement()) < chunks) {
                int lo = (int) ((long) r.length * c / chunks);
                int hi = (int) ((long) r.length * (c + 1) / chunks);
                int q = (hi - lo) / 4;
                for (int k = lo; k < lo + q; k++) {
                    sum += span4(segment, r[k] * stride, r[k + q] * stride, r[k + 2 * q] * stride,
                            r[k + 3 * q] * stride, len);
                }
                for (int k = lo + 4 * q; k < hi; k++) {
                    sum += span(segment, r[k] * stride, len);
                }
            }
            return sum;
        }

        /** Adds up {@code len} bytes at each of four offsets, the four in step (four streams). */
        private static long span4(MemorySegment w, long o0, long o1, long o2, long o3, long len) {
            long vb = LS.vectorByteSize();
            LongVector a0 = LongVector.zero(LS);
            LongVector a1 = a0;
            LongVector a2 = a0;
            LongVector a3 = a0;
            for (long o = 0; o < len; o += vb) {
                a0 = a0.add(LongVector.fromMemorySegment(LS, w, o0 + o, LE));
                a1 = a1.add(LongVector.fromMemorySegment(LS, w, o1 + o, LE));
                a2 = a2.add(LongVector.fromMemorySegment(LS, w, o2 + o, LE));
                a3 = a3.add(LongVector.fromMemorySegment(LS, w, o3 + o, LE));
            }
            return a0.add(a1).add(a2).add(a3).reduceLanes(VectorOperators.ADD);
        }

        /** Adds up {@code len} bytes at {@code off} (len a multiple of 4 vectors). */
        private static long span(MemorySegment w, long off, long len) {
            long vb = LS.vectorByteSize();
            LongVector a0 = LongVector.zero(LS);
            LongVector a1 = a0;
            LongVector a2 = a0;
            LongVector a3 = a0;
            for (long o = off; o < off + len; o += 4 * vb) {
                a0 = a0.add(LongVector.fromMemorySegment(LS, w, o, LE));
                a1 = a1.add(LongVector.fromMemorySegment(LS, w, o + vb, LE));
                a2 = a2.add(LongVector.fromMemorySegment(LS, w, o + 2 * vb, LE));
                a3 = a3.add(LongVector.fromMemorySegment(LS, w, o + 3 * vb, LE));
            }
            return a0.add(a1).add(a2).add(a3).reduceLanes(VectorOperators.ADD);
        }

        @Override
        public void close() {
            closed = true;
            start.reset(); // breaks the barrier the workers wait at: they exit
            for (Thread t : workers) {
                try {
                    t.join();
                } catch (InterruptedException e) {
                    Thread.currentThread().interrupt();
                    return;
                }
            }
        }
    }
}
