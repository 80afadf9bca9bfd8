package dev.llmflash.benchmarks;

import dev.llmflash.formats.tensor.DType;
import dev.llmflash.runtime.kernels.Kernels;
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

/**
 * Is matvec memory-bound? In one run: allocates an off-heap weight matrix of {@code --mb} MB per
 * dtype (F32, F16, BF16; far beyond the caches), then, interleaved for {@code --reps} rounds,
 * measures (a) a plain streaming read of the same bytes (Vector API 64-bit adds, split over the same
 * number of threads) and (b) {@link Kernels#matvec} over them, in GB/s of weight bytes read. Prints
 * a markdown table: best and median per kernel and the kernel/stream ratios.
 * <p>Usage: {@code java --add-modules jdk.incubator.vector -cp benchmarks.jar
 * dev.llmflash.benchmarks.KernelBandwidth [--threads 2] [--mb 256] [--reps 15] [--cols 4096]}
 */
public final class KernelBandwidth {

    private static final VectorSpecies<Long> LS = LongVector.SPECIES_PREFERRED;

    private KernelBandwidth() {
    }

    public static void main(String[] args) throws Exception {
        int threads = Runtime.getRuntime().availableProcessors();
        int mb = 256;
        int reps = 15;
        int cols = 4096;
        DType[] dtypes = {DType.F32, DType.F16, DType.BF16};
        for (int a = 0; a < args.length; a++) {
            switch (args[a]) {
                case "--threads" -> threads = Integer.parseInt(args[++a]);
                case "--mb" -> mb = Integer.parseInt(args[++a]);
                case "--reps" -> reps = Integer.parseInt(args[++a]);
                case "--cols" -> cols = Integer.parseInt(args[++a]);
                case "--dtypes" -> dtypes = Arrays.stream(args[++a].split(",")).map(DType::valueOf).toArray(DType[]::new);
                default -> {
                    System.err.println("usage: KernelBandwidth [--threads N] [--mb MB] [--reps N] [--cols C]");
                    System.exit(2);
                }
            }
        }
        try (Arena arena = Arena.ofShared(); Kernels kernels = new Kernels(threads);
             Streamer streamer = new Streamer(threads)) {
            int n = dtypes.length;
            MemorySegment[] w = new MemorySegment[n];
            int[] rows = new int[n];
            for (int d = 0; d < n; d++) {
                long bytesPerRow = (long) cols * dtypes[d].bytes();
                rows[d] = (int) ((long) mb * (1 << 20) / bytesPerRow);
                w[d] = arena.allocate(rows[d] * bytesPerRow, 64);
                fill(w[d], dtypes[d]);
            }
            float[] x = new float[cols];
            SplittableRandom rnd = new SplittableRandom(7);
            for (int j = 0; j < cols; j++) {
                x[j] = (float) rnd.nextDouble(-1, 1);
            }
            float[] y = new float[Arrays.stream(rows).max().orElseThrow()];

            double[][] stream = new double[n][reps];
            double[][] kernel = new double[n][reps];
            // Warm-up: let C2 compile both loops before timing.
            for (int k = 0; k < 3; k++) {
                for (int d = 0; d < n; d++) {
                    streamer.sum(w[d]);
                    kernels.matvec(w[d], dtypes[d], rows[d], cols, x, y);
                }
            }
            for (int rep = 0; rep < reps; rep++) {
                for (int d = 0; d < n; d++) {
                    long t0 = System.nanoTime();
                    streamer.sum(w[d]);
                    long t1 = System.nanoTime();
                    kernels.matvec(w[d], dtypes[d], rows[d], cols, x, y);
                    long t2 = System.nanoTime();
                    stream[d][rep] = w[d].byteSize() / (double) (t1 - t0);
                    kernel[d][rep] = w[d].byteSize() / (double) (t2 - t1);
                }
            }
            System.out.printf(Locale.ROOT, "threads %d, %d MB per dtype, %d x %d..%d, %d reps, f32 lanes %d, checksum %s%n%n",
                    threads, mb, cols, rows[1], rows[0], reps,
                    jdk.incubator.vector.FloatVector.SPECIES_PREFERRED.length(), streamer.sink + y[0]);
            System.out.println("| kernel | matrix | stream GB/s best / median | matvec GB/s best / median | ratio best | ratio median |");
            System.out.println("|---|---|---|---|---|---|");
            for (int d = 0; d < n; d++) {
                double sb = best(stream[d]);
                double sm = median(stream[d]);
                double kb = best(kernel[d]);
                double km = median(kernel[d]);
                System.out.printf(Locale.ROOT, "| matvec %s | %d x %d | %.1f / %.1f | %.1f / %.1f | %.0f%% | %.0f%% |%n",
                        dtypes[d], rows[d], cols, sb, sm, kb, km, 100 * kb / sb, 100 * km / sm);
            }
        }
    }

    /** Values in [-1, 1), valid for the dtype (no NaN/Inf/subnormal slow paths), from a 1 MB pattern. */
    private static void fill(MemorySegment w, DType dt) {
        SplittableRandom rnd = new SplittableRandom(42);
        long patternBytes = Math.min(w.byteSize(), 1 << 20);
        MemorySegment p = w.asSlice(0, patternBytes);
        for (long b = 0; b + dt.bytes() <= patternBytes; b += dt.bytes()) {
            float v = (float) rnd.nextDouble(-1, 1);
            switch (dt) {
                case F32 -> p.set(ValueLayout.JAVA_FLOAT_UNALIGNED, b, v);
                case F16 -> p.set(ValueLayout.JAVA_SHORT_UNALIGNED, b, Float.floatToFloat16(v));
                case BF16 -> p.set(ValueLayout.JAVA_SHORT_UNALIGNED, b, (short) (Float.floatToRawIntBits(v) >>> 16));
                default -> throw new IllegalArgumentException(dt.toString());
            }
        }
        for (long b = patternBytes; b < w.byteSize(); b += patternBytes) {
            MemorySegment.copy(w, 0, w, b, Math.min(patternBytes, w.byteSize() - b));
        }
    }

    private static double best(double[] v) {
        return Arrays.stream(v).max().orElseThrow();
    }

    private static double median(double[] v) {
        double[] s = v.clone();
        Arrays.sort(s);
        return s.length % 2 == 1 ? s[s.length / 2] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2;
    }

    /**
     * The bandwidth reference: {@code threads} threads (the caller and {@code threads - 1} started
     * here) each add up their contiguous slice as 64-bit lanes with four independent accumulators.
     */
    private static final class Streamer implements AutoCloseable {
        private final int threads;
        private final CyclicBarrier start;
        private final CyclicBarrier done;
        private final List<Thread> workers = new ArrayList<>();
        private volatile MemorySegment segment;
        private volatile boolean closed;
        volatile long sink;

        Streamer(int threads) {
            this.threads = threads;
            this.start = new CyclicBarrier(threads);
            this.done = new CyclicBarrier(threads);
            for (int k = 1; k < threads; k++) {
                int part = k;
                Thread t = Thread.ofPlatform().daemon(true).name("stream-" + k).start(() -> {
                    try {
                        while (true) {
                            start.await();
                            if (closed) {
                                return;
                            }
                            sink += part(segment, part);
                            done.await();
                        }
                    } catch (Exception e) {
                        // closed or broken barrier: exit
                    }
                });
                workers.add(t);
            }
        }

        void sum(MemorySegment w) throws Exception {
            segment = w;
            if (threads > 1) {
                start.await();
            }
            sink += part(w, 0);
            if (threads > 1) {
                done.await();
            }
        }

        private long part(MemorySegment w, int part) {
            long chunk = 4L * LS.vectorByteSize();
            long units = w.byteSize() / chunk;
            long lo = units * part / threads * chunk;
            long hi = units * (part + 1) / threads * chunk;
            return sumRange(w, lo, hi);
        }

        private static long sumRange(MemorySegment w, long lo, long hi) {
            long vb = LS.vectorByteSize();
            LongVector a0 = LongVector.zero(LS);
            LongVector a1 = a0;
            LongVector a2 = a0;
            LongVector a3 = a0;
            for (long o = lo; o < hi; o += 4 * vb) {
                a0 = a0.add(LongVector.fromMemorySegment(LS, w, o, ByteOrder.LITTLE_ENDIAN));
                a1 = a1.add(LongVector.fromMemorySegment(LS, w, o + vb, ByteOrder.LITTLE_ENDIAN));
                a2 = a2.add(LongVector.fromMemorySegment(LS, w, o + 2 * vb, ByteOrder.LITTLE_ENDIAN));
                a3 = a3.add(LongVector.fromMemorySegment(LS, w, o + 3 * vb, ByteOrder.LITTLE_ENDIAN));
            }
            return a0.add(a1).add(a2).add(a3).reduceLanes(VectorOperators.ADD);
        }

        @Override
        public void close() throws Exception {
            closed = true;
            if (threads > 1) {
                start.await();
            }
            for (Thread t : workers) {
                t.join();
            }
        }
    }
}
