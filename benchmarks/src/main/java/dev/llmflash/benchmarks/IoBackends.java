package dev.llmflash.benchmarks;

import dev.llmflash.runtime.io.IoEngine;

import java.io.IOException;
import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.Arrays;
import java.util.Locale;
import java.util.SplittableRandom;

/**
 * What the reads of a flash token cost the cores, per I/O backend. Batches of {@code --batch} random
 * neuron-bundle reads of {@code --kib} KiB (sorted, as the runtime issues them; {@code --touch} of them
 * next to the previous one, as active neurons cluster), from an existing file (an {@code ffn.bin}),
 * direct I/O, into slots scattered over a cache-sized buffer. The backends alternate batch by batch, each
 * batch at fresh random offsets, so both see the same disk and host-cache state. Per backend: wall time
 * per batch, GB/s, and the CPU the whole machine spent (busy jiffies from {@code /proc/stat}: user,
 * system, interrupts, kernel threads, all cores) per read and per GB. With {@code --compute N} that many
 * threads spin on FMAs meanwhile and their work done is reported, so the figure is what the reads take
 * from compute.
 * <p>Usage: {@code java --enable-native-access=ALL-UNNAMED -cp benchmarks/target/benchmarks.jar
 * dev.llmflash.benchmarks.IoBackends --file FFN.BIN [--batch 440] [--batches 200] [--kib 16]
 * [--threads 32] [--touch 0.3] [--compute 0]}
 */
public final class IoBackends {
    private IoBackends() {
    }

    private static volatile boolean stop;
    private static final java.util.concurrent.atomic.LongAdder WORK = new java.util.concurrent.atomic.LongAdder();

    public static void main(String[] args) throws Exception {
        Path file = null;
        int batch = 440, batches = 200, kib = 16, threads = 32, compute = 0;
        double touch = 0.3;
        for (int i = 0; i < args.length; i++) {
            switch (args[i]) {
                case "--file" -> file = Path.of(args[++i]);
                case "--batch" -> batch = Integer.parseInt(args[++i]);
                case "--batches" -> batches = Integer.parseInt(args[++i]);
                case "--kib" -> kib = Integer.parseInt(args[++i]);
                case "--threads" -> threads = Integer.parseInt(args[++i]);
                case "--touch" -> touch = Double.parseDouble(args[++i]);
                case "--compute" -> compute = Integer.parseInt(args[++i]);
                default -> throw new IllegalArgumentException("unknown option " + args[i]);
            }
        }
        if (file == null || !Files.isRegularFile(file)) {
            throw new IllegalArgumentException("--file must name an existing file (e.g. a bundle's ffn.bin)");
        }
        int len = kib * 1024;
        long blocks = Files.size(file) / len;
        int slots = Math.max(batch * 4, 4096);
        String[] names = {"threads", "uring"};
        IoEngine[] engines = {
                IoEngine.open(file, threads, true, 0, 1 << 20, IoEngine.Backend.THREADS),
                IoEngine.open(file, threads, true, 0, 1 << 20, IoEngine.Backend.URING)};
        System.out.println("modes: " + engines[0].mode() + " " + engines[0].backend() + " / " + engines[1].mode() + " " + engines[1].backend());
        long[] wall = new long[2], jiffies = new long[2], reads = new long[2], work = new long[2];
        long[] bytes = new long[2];
        Thread[] spinners = new Thread[compute];
        for (int t = 0; t < compute; t++) {
            spinners[t] = Thread.ofPlatform().daemon().start(IoBackends::spin);
        }
        double idleWork = 0;
        if (compute > 0) {
            Thread.sleep(500);
            long w0 = WORK.sum(), t0 = System.nanoTime();
            Thread.sleep(2000);
            idleWork = (WORK.sum() - w0) / ((System.nanoTime() - t0) / 1e6);
        }
        try (Arena arena = Arena.ofShared()) {
            MemorySegment cache = arena.allocate((long) slots * len, 4096);
            SplittableRandom rnd = new SplittableRandom(42);
            IoEngine.ReadPlan plan = new IoEngine.ReadPlan(batch);
            for (int b = -4; b < batches * 2; b++) {
                int m = Math.floorMod(b, 2);
                long[] picks = picks(rnd, batch, blocks, touch);
                plan.clear();
                for (int i = 0; i < batch; i++) {
                    plan.add(picks[i] * len, len, cache, (long) rnd.nextInt(slots) * len);
                }
                long j0 = busyJiffies(), w0 = WORK.sum(), t0 = System.nanoTime();
                engines[m].submit(plan).await();
                long t1 = System.nanoTime(), w1 = WORK.sum(), j1 = busyJiffies();
                if (b >= 0) {
                    wall[m] += t1 - t0;
                    jiffies[m] += j1 - j0;
                    reads[m] += batch;
                    bytes[m] += (long) batch * len;
                    work[m] += w1 - w0;
                }
            }
        } finally {
            stop = true;
            for (IoEngine e : engines) {
                e.close();
            }
        }
        double tick = 1e9 / 100;  // USER_HZ
        System.out.printf(Locale.ROOT, "%d batches of %d reads of %d KiB, %d I/O threads, %d spinning compute threads%n",
                batches, batch, kib, threads, compute);
        System.out.println("| backend | ms/batch | GB/s | machine CPU us/read | CPU ms/GB | compute kept |");
        System.out.println("|---|---|---|---|---|---|");
        for (int m = 0; m < 2; m++) {
            System.out.printf(Locale.ROOT, "| %s | %.2f | %.3f | %.1f | %.0f | %.0f%% |%n", names[m],
                    wall[m] / 1e6 / batches, bytes[m] / (double) wall[m],
                    jiffies[m] * tick / 1e3 / reads[m], jiffies[m] * tick / 1e6 / (bytes[m] / 1e9),
                    compute == 0 ? Double.NaN : 100 * work[m] / (wall[m] / 1e6) / idleWork);
        }
    }

    /** Sorted random bundle indices, a share of them right after the previous one. */
    private static long[] picks(SplittableRandom rnd, int n, long blocks, double touch) {
        long[] p = new long[n];
        for (int i = 0; i < n; i++) {
            p[i] = i > 0 && rnd.nextDouble() < touch ? Math.min(blocks - 1, p[i - 1] + 1) : rnd.nextLong(blocks);
        }
        Arrays.sort(p);
        for (int i = 1; i < n; i++) {
            if (p[i] <= p[i - 1]) {
                p[i] = Math.min(blocks - 1, p[i - 1] + 1);
            }
        }
        return p;
    }

    private static void spin() {
        double a = 1.0001, x = 1;
        while (!stop) {
            for (int i = 0; i < 10_000; i++) {
                x = x * a + 1e-9;
            }
            WORK.increment();
            if (x > 1e300) {
                x = 1;
            }
        }
    }

    /** Busy jiffies of all cores: everything in the "cpu" line but idle and iowait. */
    private static long busyJiffies() throws IOException {
        String line = Files.readAllLines(Path.of("/proc/stat")).getFirst();
        String[] f = line.trim().split("\\s+");
        long busy = 0;
        for (int i = 1; i < f.length && i <= 8; i++) {
            if (i != 4 && i != 5) {
                busy += Long.parseLong(f[i]);
            }
        }
        return busy;
    }
}
