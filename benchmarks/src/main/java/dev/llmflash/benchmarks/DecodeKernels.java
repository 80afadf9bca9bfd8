package dev.llmflash.benchmarks;

import dev.llmflash.formats.bundle.FfnGeometry;
import dev.llmflash.formats.tensor.DType;
import dev.llmflash.formats.tensor.Quant;
import dev.llmflash.runtime.kernels.Kernels;

import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.SegmentAllocator;
import java.lang.foreign.ValueLayout;
import java.nio.channels.FileChannel;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.StandardOpenOption;
import java.util.Arrays;
import java.util.Locale;
import java.util.SplittableRandom;

/**
 * Where a flash decode token's compute goes, per precision: the matrix-kernel calls one token makes
 * in each layer of a model shape, timed by kind, with the same weights in F16, Q8_0 and Q4_0 and
 * the precisions interleaved over {@code --reps} rounds (one run: the ratios are what counts).
 * Per layer: the four attention projections (d x d, {@link Kernels#matvec}); the predictor and its
 * look-ahead (two low-rank pairs, r x d then f x r, held in the bundle's precision); the sparse FFN
 * over {@code --active} neurons of a neuron cache of {@code --cache} slots (the up rows gathered,
 * {@link Kernels#matvecGather}, the down rows accumulated, {@link Kernels#accumulateGather}, the
 * slots' stride the bundle stride). Per token: the LM head (vocab x d; the Q8_0 token embeddings
 * beside a quantized bundle, as the converter writes them). {@code --layers} distinct layers' weights
 * (default 8, far beyond the L3) are visited in turn, so every call reads from DRAM.
 * <p>{@code --mapped DIR} puts the weights (not the neuron cache) in a file mapping, as the runtime
 * holds resident.safetensors: the kernels must be as fast on it as on anonymous memory (they hand
 * a mapped segment on as a plain native one, {@code Kernels.oneSegmentKind}).
 * <p>Prints, per precision, the median ms per token of each kind scaled to {@code --model-layers}
 * layers, the weight bytes each kind reads, and the GB/s it reaches.
 * <p>Usage: {@code java --add-modules jdk.incubator.vector -cp benchmarks.jar
 * dev.llmflash.benchmarks.DecodeKernels [--threads 2] [--d 4096] [--f 16384] [--rank 128]
 * [--active 1720] [--cache 2437] [--vocab 50272] [--layers 8] [--model-layers 32] [--reps 9]
 * [--dtypes F16,Q8_0,Q4_0]} (defaults: the opt-6.7b shape with the scale bench's synthetic activity).
 */
public final class DecodeKernels {

    private static final String[] KINDS = {"attention", "predictors", "ffn up (gather)", "ffn down (accumulate)",
            "lm head"};

    private DecodeKernels() {
    }

    public static void main(String[] args) throws Exception {
        int threads = Runtime.getRuntime().availableProcessors();
        int d = 4096;
        int f = 16384;
        int rank = 128;
        int active = 1720;
        int cacheSlots = 2437;
        int vocab = 50272;
        int layers = 8;
        int modelLayers = 32;
        int reps = 9;
        String mapped = null;
        DType[] dtypes = {DType.F16, DType.Q8_0, DType.Q4_0};
        for (int a = 0; a < args.length; a++) {
            switch (args[a]) {
                case "--threads" -> threads = Integer.parseInt(args[++a]);
                case "--d" -> d = Integer.parseInt(args[++a]);
                case "--f" -> f = Integer.parseInt(args[++a]);
                case "--rank" -> rank = Integer.parseInt(args[++a]);
                case "--active" -> active = Integer.parseInt(args[++a]);
                case "--cache" -> cacheSlots = Integer.parseInt(args[++a]);
                case "--vocab" -> vocab = Integer.parseInt(args[++a]);
                case "--layers" -> layers = Integer.parseInt(args[++a]);
                case "--model-layers" -> modelLayers = Integer.parseInt(args[++a]);
                case "--reps" -> reps = Integer.parseInt(args[++a]);
                case "--mapped" -> mapped = args[++a];
                case "--dtypes" -> dtypes = Arrays.stream(args[++a].split(",")).map(DType::valueOf)
                        .toArray(DType[]::new);
                default -> {
                    System.err.println("usage: DecodeKernels [--threads N] [--d D] [--f F] [--rank R] [--active N]"
                            + " [--cache SLOTS] [--vocab V] [--layers N] [--model-layers N] [--reps N]"
                            + " [--dtypes F16,Q8_0,Q4_0] [--mapped DIR]");
                    System.exit(2);
                }
            }
        }
        if (active > cacheSlots) {
            throw new IllegalArgumentException("--active " + active + " exceeds --cache " + cacheSlots);
        }
        int n = dtypes.length;
        SplittableRandom rnd = new SplittableRandom(11);
        float[] x = random(rnd, Math.max(d, rank));
        float[] xr = Arrays.copyOf(x, rank);
        float[] yd = new float[d];
        float[] yr = new float[rank];
        float[] yf = new float[f];
        float[] yv = new float[vocab];
        float[] h = random(rnd, active);
        int[][] slots = new int[layers][];
        for (int l = 0; l < layers; l++) {
            int[] perm = new int[cacheSlots];
            for (int i = 0; i < cacheSlots; i++) {
                perm[i] = i;
            }
            for (int i = cacheSlots - 1; i > 0; i--) {
                int j = rnd.nextInt(i + 1);
                int t = perm[i];
                perm[i] = perm[j];
                perm[j] = t;
            }
            slots[l] = Arrays.copyOf(perm, active);
        }
        double[][][] ms = new double[n][KINDS.length][reps];
        double[][][] alloc = new double[n][KINDS.length][reps];
        com.sun.management.ThreadMXBean mx = (com.sun.management.ThreadMXBean)
                java.lang.management.ManagementFactory.getThreadMXBean();
        long[][] bytes = new long[n][KINDS.length];
        try (Arena arena = Arena.ofShared(); Kernels k = new Kernels(threads)) {
            Weights[] w = new Weights[n];
            for (int t = 0; t < n; t++) {
                SegmentAllocator place = arena;
                if (mapped != null) { // the weights in a memory-mapped file, as the runtime holds resident.safetensors
                    Path file = Files.createTempFile(Path.of(mapped), "decode-kernels-", ".bin");
                    file.toFile().deleteOnExit();
                    long size = Weights.bytes(dtypes[t], d, f, rank, cacheSlots, vocab, layers);
                    try (FileChannel ch = FileChannel.open(file, StandardOpenOption.READ, StandardOpenOption.WRITE)) {
                        ch.truncate(0);
                        ch.write(java.nio.ByteBuffer.wrap(new byte[1]), size - 1);
                        place = SegmentAllocator.slicingAllocator(ch.map(FileChannel.MapMode.READ_WRITE, 0, size, arena));
                    }
                }
                w[t] = new Weights(place, arena, dtypes[t], d, f, rank, cacheSlots, vocab, layers);
                DType dt = dtypes[t];
                DType head = dt.isQuantized() ? DType.Q8_0 : dt;
                bytes[t][0] = 4 * dt.rowBytes(d) * d * modelLayers;
                bytes[t][1] = 2 * (dt.rowBytes(d) * rank + dt.rowBytes(rank) * f) * modelLayers;
                bytes[t][2] = dt.rowBytes(d) * active * modelLayers;
                bytes[t][3] = dt.rowBytes(d) * active * modelLayers;
                bytes[t][4] = head.rowBytes(d) * vocab;
            }
            for (int rep = -3; rep < reps; rep++) { // three warm-up rounds compile every loop
                for (int t = 0; t < n; t++) {
                    Weights q = w[t];
                    DType dt = dtypes[t];
                    long[] ns = new long[KINDS.length];
                    long[] bs = new long[KINDS.length];
                    for (int l = 0; l < modelLayers; l++) {
                        int s = l % layers;
                        long a0 = mx.getTotalThreadAllocatedBytes();
                        long t0 = System.nanoTime();
                        for (int p = 0; p < 4; p++) {
                            k.matvec(q.attn[s][p], dt, d, d, x, yd);
                        }
                        long t1 = System.nanoTime();
                        long a1 = mx.getTotalThreadAllocatedBytes();
                        for (int p = 0; p < 2; p++) {
                            k.matvec(q.predA[s][p], dt, rank, d, x, yr);
                            k.matvec(q.predB[s][p], dt, f, rank, xr, yf);
                        }
                        long t2 = System.nanoTime();
                        long a2 = mx.getTotalThreadAllocatedBytes();
                        k.matvecGather(q.cache[s], dt, d, q.stride, slots[s], active, x, yd);
                        long t3 = System.nanoTime();
                        long a3 = mx.getTotalThreadAllocatedBytes();
                        k.accumulateGather(q.cache[s].asSlice(dt.rowBytes(d)), dt, d, q.stride, slots[s], h, active,
                                yd);
                        long t4 = System.nanoTime();
                        long a4 = mx.getTotalThreadAllocatedBytes();
                        ns[0] += t1 - t0;
                        ns[1] += t2 - t1;
                        ns[2] += t3 - t2;
                        ns[3] += t4 - t3;
                        bs[0] += a1 - a0;
                        bs[1] += a2 - a1;
                        bs[2] += a3 - a2;
                        bs[3] += a4 - a3;
                    }
                    long a5 = mx.getTotalThreadAllocatedBytes();
                    long t5 = System.nanoTime();
                    k.matvec(q.head, q.headType, vocab, d, x, yv);
                    ns[4] = System.nanoTime() - t5;
                    bs[4] = mx.getTotalThreadAllocatedBytes() - a5;
                    if (rep >= 0) {
                        for (int kind = 0; kind < KINDS.length; kind++) {
                            ms[t][kind][rep] = ns[kind] / 1e6;
                            alloc[t][kind][rep] = bs[kind] / 1e6;
                        }
                    }
                }
            }
        }
        System.out.printf(Locale.ROOT, (mapped == null ? "anonymous memory" : "memory-mapped files in " + mapped)
                + ", threads %d, d %d, f %d, rank %d, %d of %d cache slots active, vocab %d,"
                + " %d layers scaled to %d, %d reps (median ms per token)%n%n", threads, d, f, rank, active, cacheSlots,
                vocab, layers, modelLayers, reps);
        StringBuilder head = new StringBuilder("| kind |");
        StringBuilder rule = new StringBuilder("|---|");
        for (DType dt : dtypes) {
            head.append(' ').append(dt).append(" ms | ").append(dt).append(" GB/s | ").append(dt)
                    .append(" alloc MB |");
            rule.append("---|---|---|");
        }
        if (n > 1) {
            for (int t = 1; t < n; t++) {
                head.append(' ').append(dtypes[0]).append(" / ").append(dtypes[t]).append(" |");
                rule.append("---|");
            }
        }
        System.out.println(head);
        System.out.println(rule);
        double[] total = new double[n];
        for (int kind = 0; kind < KINDS.length; kind++) {
            StringBuilder row = new StringBuilder("| " + KINDS[kind] + " |");
            double[] med = new double[n];
            for (int t = 0; t < n; t++) {
                med[t] = Stats.median(ms[t][kind]);
                total[t] += med[t];
                row.append(String.format(Locale.ROOT, " %.1f | %.1f | %.2f |", med[t], bytes[t][kind] / med[t] / 1e6,
                        Stats.median(alloc[t][kind])));
            }
            for (int t = 1; t < n; t++) {
                row.append(String.format(Locale.ROOT, " %.2fx |", med[0] / med[t]));
            }
            System.out.println(row);
        }
        StringBuilder row = new StringBuilder("| total |");
        for (int t = 0; t < n; t++) {
            long b = Arrays.stream(bytes[t]).sum();
            double a = 0;
            for (int kind = 0; kind < KINDS.length; kind++) {
                a += Stats.median(alloc[t][kind]);
            }
            row.append(String.format(Locale.ROOT, " %.1f | %.1f | %.2f |", total[t], b / total[t] / 1e6, a));
        }
        for (int t = 1; t < n; t++) {
            row.append(String.format(Locale.ROOT, " %.2fx |", total[0] / total[t]));
        }
        System.out.println(row);
    }

    private static float[] random(SplittableRandom rnd, int n) {
        float[] v = new float[n];
        for (int i = 0; i < n; i++) {
            v[i] = (float) rnd.nextDouble(-1, 1);
        }
        return v;
    }

    /** One precision's weights: {@code layers} layers of attention, predictors and neuron cache, and the LM head. */
    private static final class Weights {
        final MemorySegment[][] attn;
        final MemorySegment[][] predA;
        final MemorySegment[][] predB;
        final MemorySegment[] cache;
        final MemorySegment head;
        final DType headType;
        final long stride;

        /** Bytes the weights take with 4096-byte alignment of each matrix (what --mapped maps). */
        static long bytes(DType dt, int d, int f, int rank, int slots, int vocab, int layers) {
            long stride = FfnGeometry.bundleStride(d, dt, FfnGeometry.DEFAULT_ALIGNMENT);
            DType head = dt.isQuantized() ? DType.Q8_0 : dt;
            long perLayer = 4 * up(dt.rowBytes(d) * d) + 2 * (up(dt.rowBytes(d) * rank) + up(dt.rowBytes(rank) * f));
            return layers * perLayer + up(head.rowBytes(d) * vocab);
        }

        private static long up(long n) {
            return (n + 4095) & -4096L;
        }

        Weights(SegmentAllocator arena, Arena cacheArena, DType dt, int d, int f, int rank, int slots, int vocab, int layers) {
            SplittableRandom rnd = new SplittableRandom(42);
            attn = new MemorySegment[layers][4];
            predA = new MemorySegment[layers][2];
            predB = new MemorySegment[layers][2];
            cache = new MemorySegment[layers];
            stride = FfnGeometry.bundleStride(d, dt, FfnGeometry.DEFAULT_ALIGNMENT);
            for (int l = 0; l < layers; l++) {
                for (int p = 0; p < 4; p++) {
                    attn[l][p] = matrix(arena, rnd, dt, d, d, dt.rowBytes(d));
                }
                for (int p = 0; p < 2; p++) {
                    predA[l][p] = matrix(arena, rnd, dt, rank, d, dt.rowBytes(d));
                    predB[l][p] = matrix(arena, rnd, dt, f, rank, dt.rowBytes(rank));
                }
                cache[l] = cacheArena.allocate(slots * stride, 4096); // the neuron cache: anonymous memory, as in the runtime
                try (Arena tmp = Arena.ofConfined()) { // slot s: the up row, then the down column
                    for (int s = 0; s < slots; s++) {
                        cache[l].asSlice(s * stride).copyFrom(matrix(tmp, rnd, dt, 2, d, dt.rowBytes(d)));
                    }
                }
            }
            headType = dt.isQuantized() ? DType.Q8_0 : dt;
            head = matrix(arena, rnd, headType, vocab, d, headType.rowBytes(d));
        }

        /** rows x c random weights in [-1, 1), row i at byte i * rowStride (>= the row's bytes). */
        private static MemorySegment matrix(SegmentAllocator arena, SplittableRandom rnd, DType dt, int rows, int c,
                                            long rowStride) {
            MemorySegment m = arena.allocate(rows * rowStride, 4096);
            float[] row = new float[c];
            for (int i = 0; i < rows; i++) {
                for (int j = 0; j < c; j++) {
                    row[j] = (float) rnd.nextDouble(-1, 1);
                }
                if (dt.isQuantized()) {
                    Quant.quantizeRow(dt, row, 0, c, m, i * rowStride);
                } else {
                    for (int j = 0; j < c; j++) {
                        m.set(ValueLayout.JAVA_SHORT_UNALIGNED, i * rowStride + 2L * j, Float.floatToFloat16(row[j]));
                    }
                }
            }
            return m;
        }
    }
}
