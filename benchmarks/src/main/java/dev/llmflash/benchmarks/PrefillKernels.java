package dev.llmflash.benchmarks;

import dev.llmflash.formats.tensor.DType;
import dev.llmflash.runtime.kernels.Kernels;
import jdk.incubator.vector.FloatVector;
import jdk.incubator.vector.VectorOperators;
import jdk.incubator.vector.VectorSpecies;

import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.util.Arrays;
import java.util.Locale;
import java.util.SplittableRandom;
import java.util.concurrent.CyclicBarrier;

/**
 * Is prompt prefill FMA-bound? In one run, on this machine:
 * <ol>
 *   <li>the f32 FMA peak with the Vector API ({@code FloatVector.SPECIES_PREFERRED}, 16 independent
 *       accumulators in registers so no FMA waits for another), with 1 and with {@code --threads}
 *       threads, in GFLOP/s (an FMA = 2 FLOP);
 *   <li>{@link Kernels#matmulStrided} on f16 weights for the opt-1.3b shapes at n = {@code --n} tokens:
 *       the FFN up (8192 x 2048), the FFN down (2048 x 8192) and an attention projection
 *       (2048 x 2048), in GFLOP/s and as a share of the measured peak with the same threads;
 *   <li>{@link Kernels#sparseBundleFfn} over the FFN stored as 8192 bundles (f16 up row, then down
 *       column, d = 2048) in blocks of {@code --block}, each token using ~{@code --active} of the
 *       neurons (random, persistent: an active neuron stays active with probability 1/2 for the next
 *       token), in GFLOP/s of the useful multiply-adds (2 d per used bundle; biases make every used
 *       activation positive) and its time next to the dense up + down matmuls of the same layer:
 *       once with all n tokens per call, block after block (X and Y, 4 MB each, stream through the
 *       caches for every block), and once in token tiles of {@code --tile} (outer loop) whose X and Y
 *       rows stay in L2 over all blocks.
 * </ol>
 * Each figure is the best and the median of {@code --reps} timed calls after warm-up calls.
 * <p>Usage: {@code java --add-modules jdk.incubator.vector -cp benchmarks/target/benchmarks.jar
 * dev.llmflash.benchmarks.PrefillKernels [--threads 2] [--n 512] [--reps 5] [--block 32] [--active 0.1]
 * [--tile 32]}
 */
public final class PrefillKernels {

    private static final VectorSpecies<Float> F = FloatVector.SPECIES_PREFERRED;
    private static volatile float sink;

    private PrefillKernels() {
    }

    public static void main(String[] args) throws Exception {
        int threads = Runtime.getRuntime().availableProcessors();
        int n = 512;
        int reps = 5;
        int block = 32;
        double active = 0.1;
        int tileTokens = 32;
        for (int a = 0; a < args.length; a++) {
            switch (args[a]) {
                case "--threads" -> threads = Integer.parseInt(args[++a]);
                case "--n" -> n = Integer.parseInt(args[++a]);
                case "--reps" -> reps = Integer.parseInt(args[++a]);
                case "--block" -> block = Integer.parseInt(args[++a]);
                case "--active" -> active = Double.parseDouble(args[++a]);
                case "--tile" -> tileTokens = Integer.parseInt(args[++a]);
                default -> {
                    System.err.println("usage: PrefillKernels [--threads N] [--n TOKENS] [--reps N] [--block ROWS]"
                            + " [--active FRACTION] [--tile TOKENS]");
                    System.exit(2);
                }
            }
        }
        System.out.printf(Locale.ROOT, "f32 lanes %d, threads %d, n %d, reps %d%n%n", F.length(), threads, n, reps);

        double peak1 = fmaPeak(1, reps);
        double peakT = threads == 1 ? peak1 : fmaPeak(threads, reps);
        System.out.printf(Locale.ROOT, "| FMA peak (Vector API, f32) | GFLOP/s |%n|---|---|%n");
        System.out.printf(Locale.ROOT, "| 1 thread | %.1f |%n| %d threads | %.1f |%n%n", peak1, threads, peakT);

        int d = 2048;
        int ffn = 8192;
        try (Arena arena = Arena.ofShared(); Kernels kernels = new Kernels(threads)) {
            float[] x = new float[n * Math.max(d, ffn)];
            SplittableRandom rnd = new SplittableRandom(1);
            for (int i = 0; i < x.length; i++) {
                x[i] = (float) rnd.nextDouble(-1, 1);
            }
            float[] y = new float[n * ffn];
            System.out.println("| matmulStrided f16, n = " + n + " | GFLOP/s best / median | % of peak (best) | ms median |");
            System.out.println("|---|---|---|---|");
            double[] denseMs = new double[2];
            int[][] shapes = {{ffn, d}, {d, ffn}, {d, d}};
            String[] names = {"FFN up 8192 x 2048", "FFN down 2048 x 8192", "attention 2048 x 2048"};
            for (int s = 0; s < shapes.length; s++) {
                int r = shapes[s][0];
                int c = shapes[s][1];
                MemorySegment w = f16(arena, (long) r * c, 0.05, 2 + s);
                double[] gf = new double[reps];
                double[] ms = new double[reps];
                for (int k = 0; k < 2 + reps; k++) {
                    long t0 = System.nanoTime();
                    kernels.matmulStrided(w, DType.F16, r, c, 2L * c, x, n, y);
                    long t1 = System.nanoTime();
                    if (k >= 2) {
                        gf[k - 2] = 2.0 * r * c * n / (t1 - t0);
                        ms[k - 2] = (t1 - t0) / 1e6;
                    }
                }
                sink += y[0];
                if (s < 2) {
                    denseMs[s] = Stats.median(ms);
                }
                System.out.printf(Locale.ROOT, "| %s | %.1f / %.1f | %.0f%% | %.1f |%n", names[s], Stats.best(gf),
                        Stats.median(gf), 100 * Stats.best(gf) / peakT, Stats.median(ms));
            }
            System.out.println();

            // The FFN as bundles: up row (d f16) then down column (d f16), blocks of `block` bundles.
            long stride = 4L * d;
            MemorySegment bundles = f16(arena, (long) ffn * 2 * d, 0.02, 9);
            float[] bias = new float[ffn];
            Arrays.fill(bias, 4f); // |dot| is ~1 at most: every used activation is positive
            int blocks = ffn / block;
            boolean[] on = new boolean[ffn];
            double stay = 0.5;
            double start = active * (1 - stay) / (1 - active);
            int[][] rowStart = new int[blocks][n + 1];
            int[][] rows = new int[blocks][];
            int[][] tmp = new int[blocks][block * n];
            long uses = 0;
            for (int t = 0; t < n; t++) {
                for (int b = 0; b < blocks; b++) {
                    int m = rowStart[b][t];
                    for (int i = 0; i < block; i++) {
                        int neuron = b * block + i;
                        on[neuron] = rnd.nextDouble() < (on[neuron] ? stay : start);
                        if (on[neuron]) {
                            tmp[b][m++] = i;
                        }
                    }
                    rowStart[b][t + 1] = m;
                }
            }
            for (int b = 0; b < blocks; b++) {
                rows[b] = Arrays.copyOf(tmp[b], rowStart[b][n]);
                uses += rowStart[b][n];
            }
            double dense = denseMs[0] + denseMs[1];
            System.out.printf(Locale.ROOT, "| sparseBundleFfn f16, %d neurons x d %d, blocks of %d, n = %d,"
                    + " %.1f%% of rows per token | useful GFLOP/s best / median | %% of peak (best) | ms median"
                    + " | sparse / dense (up + down matmul %.1f ms) |%n|---|---|---|---|---|%n", ffn, d, block, n,
                    100.0 * uses / ((double) ffn * n), dense);
            for (int tile : new int[]{n, tileTokens}) {
                // tokens in tiles of `tile` (outer loop), all blocks for a tile (inner): the tile's X and
                // Y rows (copied to arrays of their own) stay in L2 across the blocks
                int tiles = (n + tile - 1) / tile;
                int[][][] starts = new int[tiles][blocks][];
                for (int q = 0; q < tiles; q++) {
                    for (int b = 0; b < blocks; b++) {
                        starts[q][b] = Arrays.copyOfRange(rowStart[b], q * tile, Math.min(n, (q + 1) * tile) + 1);
                    }
                }
                float[] out = new float[n * d];
                float[] xt = new float[tile * d];
                float[] yt = new float[tile * d];
                double[] gf = new double[reps];
                double[] ms = new double[reps];
                for (int k = 0; k < 2 + reps; k++) {
                    long t0 = System.nanoTime();
                    for (int q = 0; q < tiles; q++) {
                        int m = Math.min(n, (q + 1) * tile) - q * tile;
                        float[] xq = tiles == 1 ? x : xt;
                        float[] yq = tiles == 1 ? out : yt;
                        if (tiles > 1) {
                            System.arraycopy(x, q * tile * d, xt, 0, m * d);
                            System.arraycopy(out, q * tile * d, yt, 0, m * d);
                        }
                        for (int b = 0; b < blocks; b++) {
                            kernels.sparseBundleFfn(bundles.asSlice(b * block * stride, block * stride), DType.F16, d,
                                    stride, 2L * d, block, m, starts[q][b], rows[b], bias, b * block, xq, yq);
                        }
                        if (tiles > 1) {
                            System.arraycopy(yt, 0, out, q * tile * d, m * d);
                        }
                    }
                    long t1 = System.nanoTime();
                    if (k >= 2) {
                        gf[k - 2] = 2.0 * uses * 2 * d / (t1 - t0);
                        ms[k - 2] = (t1 - t0) / 1e6;
                    }
                }
                sink += out[0];
                double sparseMs = Stats.median(ms);
                System.out.printf(Locale.ROOT, "| token tiles of %d | %.1f / %.1f | %.0f%% | %.1f | %.3f (%.1fx faster) |%n",
                        tile, Stats.best(gf), Stats.median(gf), 100 * Stats.best(gf) / peakT, sparseMs,
                        sparseMs / dense, dense / sparseMs);
            }
            System.out.printf(Locale.ROOT, "%n(checksum %s)%n", sink);
        }
    }

    /** {@code count} f16 values uniform in [-scale, scale), a 1 MB pattern repeated. */
    private static MemorySegment f16(Arena arena, long count, double scale, long seed) {
        MemorySegment w = arena.allocate(2 * count, 4096);
        SplittableRandom rnd = new SplittableRandom(seed);
        long pattern = Math.min(w.byteSize(), 1 << 20);
        for (long b = 0; b < pattern; b += 2) {
            w.set(ValueLayout.JAVA_SHORT_UNALIGNED, b, Float.floatToFloat16((float) rnd.nextDouble(-scale, scale)));
        }
        for (long b = pattern; b < w.byteSize(); b += pattern) {
            MemorySegment.copy(w, 0, w, b, Math.min(pattern, w.byteSize() - b));
        }
        return w;
    }

    /** Best GFLOP/s over reps of {@code threads} threads each running {@link #fmaLoop} together. */
    private static double fmaPeak(int threads, int reps) throws Exception {
        long iters = 20_000_000;
        for (int k = 0; k < 3; k++) {
            sink += fmaLoop(200_000);
        }
        double best = 0;
        for (int rep = 0; rep < reps; rep++) {
            CyclicBarrier barrier = new CyclicBarrier(threads + 1);
            Thread[] ts = new Thread[threads];
            for (int i = 0; i < threads; i++) {
                ts[i] = new Thread(() -> {
                    try {
                        barrier.await();
                        sink += fmaLoop(iters);
                        barrier.await();
                    } catch (Exception e) {
                        throw new IllegalStateException(e);
                    }
                });
                ts[i].start();
            }
            barrier.await();
            long t0 = System.nanoTime();
            barrier.await();
            long t1 = System.nanoTime();
            for (Thread t : ts) {
                t.join();
            }
            best = Math.max(best, 2.0 * 16 * F.length() * iters * threads / (t1 - t0));
        }
        return best;
    }

    /** 16 independent FMA chains of L lanes, {@code iters} steps each; values stay bounded. */
    private static float fmaLoop(long iters) {
        FloatVector m = FloatVector.broadcast(F, 0.999f);
        FloatVector c = FloatVector.broadcast(F, 0.001f);
        FloatVector a0 = FloatVector.broadcast(F, 1f);
        FloatVector a1 = a0.add(0.01f);
        FloatVector a2 = a0.add(0.02f);
        FloatVector a3 = a0.add(0.03f);
        FloatVector a4 = a0.add(0.04f);
        FloatVector a5 = a0.add(0.05f);
        FloatVector a6 = a0.add(0.06f);
        FloatVector a7 = a0.add(0.07f);
        FloatVector a8 = a0.add(0.08f);
        FloatVector a9 = a0.add(0.09f);
        FloatVector a10 = a0.add(0.10f);
        FloatVector a11 = a0.add(0.11f);
        FloatVector a12 = a0.add(0.12f);
        FloatVector a13 = a0.add(0.13f);
        FloatVector a14 = a0.add(0.14f);
        FloatVector a15 = a0.add(0.15f);
        for (long i = 0; i < iters; i++) {
            a0 = a0.fma(m, c);
            a1 = a1.fma(m, c);
            a2 = a2.fma(m, c);
            a3 = a3.fma(m, c);
            a4 = a4.fma(m, c);
            a5 = a5.fma(m, c);
            a6 = a6.fma(m, c);
            a7 = a7.fma(m, c);
            a8 = a8.fma(m, c);
            a9 = a9.fma(m, c);
            a10 = a10.fma(m, c);
            a11 = a11.fma(m, c);
            a12 = a12.fma(m, c);
            a13 = a13.fma(m, c);
            a14 = a14.fma(m, c);
            a15 = a15.fma(m, c);
        }
        return a0.add(a1).add(a2).add(a3).add(a4).add(a5).add(a6).add(a7).add(a8).add(a9).add(a10).add(a11)
                .add(a12).add(a13).add(a14).add(a15).reduceLanes(VectorOperators.ADD);
    }
}
