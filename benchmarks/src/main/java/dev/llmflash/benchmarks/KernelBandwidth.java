package dev.llmflash.benchmarks;

import dev.llmflash.formats.tensor.DType;
import dev.llmflash.formats.tensor.Quant;
import dev.llmflash.runtime.kernels.Kernels;
import jdk.incubator.vector.FloatVector;
import jdk.incubator.vector.LongVector;
import jdk.incubator.vector.VectorOperators;
import jdk.incubator.vector.VectorSpecies;

import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.nio.ByteOrder;
import java.util.Arrays;
import java.util.Locale;
import java.util.SplittableRandom;
import java.util.concurrent.CyclicBarrier;

/**
 * Is matvec memory-bound? In one run: allocates an off-heap weight matrix of {@code --mb} MB per
 * dtype (far beyond the caches), then, interleaved over {@code --reps} rounds, measures on the same
 * bytes and with the same number of threads:
 * <ul>
 *   <li>read x1: the plain streaming read, each thread adding up its contiguous slice as 64-bit lanes;
 *   <li>read x4: the same, but each thread reads its slice as four sequential streams at once (the
 *       access pattern of the matvec kernel, which a single stream does not saturate on every CPU);
 *   <li>matvec: {@link Kernels#matvec} with a {@code cols}-wide matrix,
 * </ul>
 * all in GB/s of weight bytes read, and prints a markdown table: best and median per measurement,
 * matvec as a share of the better read loop ("memory read bandwidth"), and matvec in weights/s (for
 * the block-quantized Q8_0 and Q4_0 a byte holds more weights: 32 in 34 and 32 in 18 bytes) with its
 * ratio to F16's.
 * <p>Usage: {@code java --add-modules jdk.incubator.vector -cp benchmarks.jar
 * dev.llmflash.benchmarks.KernelBandwidth [--threads N] [--mb 256] [--reps 15] [--cols 4096]
 * [--dtypes F32,F16,BF16,Q8_0,Q4_0] [--misalign 0]}
 */
public final class KernelBandwidth {

    private static final VectorSpecies<Long> LS = LongVector.SPECIES_PREFERRED;
    private static final ByteOrder LE = ByteOrder.LITTLE_ENDIAN;

    private KernelBandwidth() {
    }

    public static void main(String[] args) throws Exception {
        int threads = Runtime.getRuntime().availableProcessors();
        int mb = 256;
        int reps = 15;
        int cols = 4096;
        int misalign = 0;
        DType[] dtypes = {DType.F32, DType.F16, DType.BF16, DType.Q8_0, DType.Q4_0};
        for (int a = 0; a < args.length; a++) {
            switch (args[a]) {
                case "--threads" -> threads = Integer.parseInt(args[++a]);
                case "--mb" -> mb = Integer.parseInt(args[++a]);
                case "--reps" -> reps = Integer.parseInt(args[++a]);
                case "--cols" -> cols = Integer.parseInt(args[++a]);
                case "--misalign" -> misalign = Integer.parseInt(args[++a]);
                case "--dtypes" -> dtypes = Arrays.stream(args[++a].split(",")).map(DType::valueOf)
                        .toArray(DType[]::new);
                default -> {
                    System.err.println("usage: KernelBandwidth [--threads N] [--mb MB] [--reps N] [--cols C]"
                            + " [--dtypes F32,F16,BF16,Q8_0,Q4_0] [--misalign BYTES]");
                    System.exit(2);
                }
            }
        }
        int n = dtypes.length;
        try (Arena arena = Arena.ofShared(); Kernels kernels = new Kernels(threads);
             Reader reader = new Reader(threads)) {
            MemorySegment[] w = new MemorySegment[n];
            int[] rows = new int[n];
            for (int d = 0; d < n; d++) {
                long bytesPerRow = dtypes[d].rowBytes(cols);
                rows[d] = (int) ((long) mb * (1 << 20) / bytesPerRow);
                long bytes = rows[d] * bytesPerRow;
                w[d] = arena.allocate(bytes + misalign, 4096).asSlice(misalign, bytes);
                fill(w[d], dtypes[d], cols);
            }
            float[] x = new float[cols];
            SplittableRandom rnd = new SplittableRandom(7);
            for (int j = 0; j < cols; j++) {
                x[j] = (float) rnd.nextDouble(-1, 1);
            }
            float[] y = new float[Arrays.stream(rows).max().orElseThrow()];

            double[][] read1 = new double[n][reps];
            double[][] read4 = new double[n][reps];
            double[][] matvec = new double[n][reps];
            for (int k = 0; k < 3; k++) { // warm-up: C2 compiles every loop before timing
                for (int d = 0; d < n; d++) {
                    reader.read(w[d], 1);
                    reader.read(w[d], 4);
                    kernels.matvec(w[d], dtypes[d], rows[d], cols, x, y);
                }
            }
            for (int rep = 0; rep < reps; rep++) {
                for (int d = 0; d < n; d++) {
                    double gb = w[d].byteSize();
                    long t0 = System.nanoTime();
                    reader.read(w[d], 1);
                    long t1 = System.nanoTime();
                    reader.read(w[d], 4);
                    long t2 = System.nanoTime();
                    kernels.matvec(w[d], dtypes[d], rows[d], cols, x, y);
                    long t3 = System.nanoTime();
                    read1[d][rep] = gb / (t1 - t0);
                    read4[d][rep] = gb / (t2 - t1);
                    matvec[d][rep] = gb / (t3 - t2);
                }
            }
            System.out.printf(Locale.ROOT, "threads %d, %d MB per dtype, %d columns, misalign %d, %d reps,"
                            + " f32 lanes %d (checksum %s)%n%n", threads, mb, cols, misalign, reps,
                    FloatVector.SPECIES_PREFERRED.length(), reader.sink + y[0]);
            System.out.println("| weights | matrix | read x1 GB/s best / median | read x4 GB/s best / median"
                    + " | matvec GB/s best / median | matvec / read, best | matvec / read, median"
                    + " | matvec Gweights/s best / median | weights/s vs F16, median |");
            System.out.println("|---|---|---|---|---|---|---|---|---|");
            double f16Weights = Double.NaN;
            for (int d = 0; d < n; d++) {
                if (dtypes[d] == DType.F16) {
                    f16Weights = Stats.median(matvec[d]) / DType.F16.rowBytes(cols) * cols;
                }
            }
            for (int d = 0; d < n; d++) {
                double readBest = Math.max(Stats.best(read1[d]), Stats.best(read4[d]));
                double readMedian = Math.max(Stats.median(read1[d]), Stats.median(read4[d]));
                double perByte = (double) cols / dtypes[d].rowBytes(cols); // weights per byte
                double weightsMedian = Stats.median(matvec[d]) * perByte;
                System.out.printf(Locale.ROOT, "| %s | %d x %d | %.1f / %.1f | %.1f / %.1f | %.1f / %.1f | %.0f%% | %.0f%%"
                                + " | %.1f / %.1f | %s |%n",
                        dtypes[d], rows[d], cols, Stats.best(read1[d]), Stats.median(read1[d]), Stats.best(read4[d]),
                        Stats.median(read4[d]), Stats.best(matvec[d]), Stats.median(matvec[d]),
                        100 * Stats.best(matvec[d]) / readBest, 100 * Stats.median(matvec[d]) / readMedian,
                        Stats.best(matvec[d]) * perByte, weightsMedian,
                        Double.isNaN(f16Weights) ? "-" : String.format(Locale.ROOT, "%.2fx", weightsMedian / f16Weights));
            }
        }
    }

    /**
     * Values in [-1, 1) rounded to the dtype (no NaN/Inf/subnormal slow paths; the quantized dtypes
     * through {@link Quant#quantizeRow}), a pattern of about 1 MB (whole rows) repeated.
     */
    private static void fill(MemorySegment w, DType dt, int cols) {
        SplittableRandom rnd = new SplittableRandom(42);
        if (dt.isQuantized()) {
            long rowBytes = dt.rowBytes(cols);
            long patternRows = Math.max(1, Math.min(w.byteSize() / rowBytes, (1 << 20) / rowBytes));
            float[] row = new float[cols];
            for (long i = 0; i < patternRows; i++) {
                for (int j = 0; j < cols; j++) {
                    row[j] = (float) rnd.nextDouble(-1, 1);
                }
                Quant.quantizeRow(dt, row, 0, cols, w, i * rowBytes);
            }
            long patternBytes = patternRows * rowBytes;
            for (long b = patternBytes; b < w.byteSize(); b += patternBytes) {
                MemorySegment.copy(w, 0, w, b, Math.min(patternBytes, w.byteSize() - b));
            }
            return;
        }
        long patternBytes = Math.min(w.byteSize(), 1 << 20);
        for (long b = 0; b + dt.bytes() <= patternBytes; b += dt.bytes()) {
            float v = (float) rnd.nextDouble(-1, 1);
            switch (dt) {
                case F32 -> w.set(ValueLayout.JAVA_FLOAT_UNALIGNED, b, v);
                case F16 -> w.set(ValueLayout.JAVA_SHORT_UNALIGNED, b, Float.floatToFloat16(v));
                case BF16 -> w.set(ValueLayout.JAVA_SHORT_UNALIGNED, b, (short) (Float.floatToRawIntBits(v) >>> 16));
                default -> throw new IllegalArgumentException("no kernel for " + dt);
            }
        }
        for (long b = patternBytes; b < w.byteSize(); b += patternBytes) {
            MemorySegment.copy(w, 0, w, b, Math.min(patternBytes, w.byteSize() - b));
        }
    }

    /**
     * The bandwidth reference: {@code threads} threads (the caller and {@code threads - 1} started
     * here, released together by a barrier) each add up their contiguous slice as 64-bit lanes,
     * as one stream or as four streams (quarters) at once.
     */
    private static final class Reader implements AutoCloseable {
        private final int threads;
        private final CyclicBarrier start;
        private final CyclicBarrier done;
        private final Thread[] workers;
        private volatile MemorySegment segment;
        private volatile int streams;
        private volatile boolean closed;
        private final long[] sums;
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
                            sums[part] = part(segment, part, streams);
                            done.await();
                        }
                    } catch (Exception e) {
                        // broken barrier: the benchmark is over
                    }
                });
            }
        }

        void read(MemorySegment w, int streamsPerThread) throws Exception {
            segment = w;
            streams = streamsPerThread;
            if (threads > 1) {
                start.await();
            }
            sums[0] = part(w, 0, streamsPerThread);
            if (threads > 1) {
                done.await();
            }
            for (long s : sums) {
                sink += s;
            }
        }

        /** Part {@code part}'s slice: whole 4-vector units, split into {@code streams} contiguous runs. */
        private long part(MemorySegment w, int part, int streams) {
            long unit = 4L * LS.vectorByteSize();
            long units = w.byteSize() / unit;
            long lo = units * part / threads;
            long hi = units * (part + 1) / threads;
            return streams == 1 ? read1(w, lo * unit, hi * unit) : read4(w, lo * unit, (hi - lo) / 4 * unit);
        }

        private static long read1(MemorySegment w, long lo, long hi) {
            long vb = LS.vectorByteSize();
            LongVector a0 = LongVector.zero(LS);
            LongVector a1 = a0;
            LongVector a2 = a0;
            LongVector a3 = a0;
            for (long o = lo; o < hi; o += 4 * vb) {
                a0 = a0.add(LongVector.fromMemorySegment(LS, w, o, LE));
                a1 = a1.add(LongVector.fromMemorySegment(LS, w, o + vb, LE));
                a2 = a2.add(LongVector.fromMemorySegment(LS, w, o + 2 * vb, LE));
                a3 = a3.add(LongVector.fromMemorySegment(LS, w, o + 3 * vb, LE));
            }
            return a0.add(a1).add(a2).add(a3).reduceLanes(VectorOperators.ADD);
        }

        /** Four streams of {@code quarter} bytes each, starting at lo, lo + quarter, ... */
        private static long read4(MemorySegment w, long lo, long quarter) {
            long vb = LS.vectorByteSize();
            LongVector a0 = LongVector.zero(LS);
            LongVector a1 = a0;
            LongVector a2 = a0;
            LongVector a3 = a0;
            for (long o = lo; o < lo + quarter; o += vb) {
                a0 = a0.add(LongVector.fromMemorySegment(LS, w, o, LE));
                a1 = a1.add(LongVector.fromMemorySegment(LS, w, o + quarter, LE));
                a2 = a2.add(LongVector.fromMemorySegment(LS, w, o + 2 * quarter, LE));
                a3 = a3.add(LongVector.fromMemorySegment(LS, w, o + 3 * quarter, LE));
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
