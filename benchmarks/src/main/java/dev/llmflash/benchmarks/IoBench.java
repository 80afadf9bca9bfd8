package dev.llmflash.benchmarks;

import dev.llmflash.runtime.io.IoEngine;
import dev.llmflash.runtime.io.IoStats;

import java.io.IOException;
import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.nio.ByteBuffer;
import java.nio.channels.FileChannel;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.StandardOpenOption;
import java.util.ArrayList;
import java.util.List;
import java.util.Locale;
import java.util.SplittableRandom;

/**
 * Random-read throughput of {@link IoEngine}: {@code --reads} random block-aligned reads of
 * {@code --kib} KiB (the size of one OPT-6.7B F16 neuron bundle) from a {@code --mb} MB file, with 1, 8
 * and 32 threads, direct vs buffered; prints a markdown table in GB/s of requested bytes.
 * <p>The page cache is not dropped here (that needs root: {@code echo 3 > /proc/sys/vm/drop_caches}
 * before a run); buffered numbers after the first pass may come from RAM, direct ones never do.
 * <p>Usage: {@code IoBench [--file PATH] [--mb 1024] [--kib 16] [--reads 20000]}; the file is created
 * with random bytes if missing and kept.
 */
public final class IoBench {
    private IoBench() {
    }

    public static void main(String[] args) throws IOException {
        Path file = Path.of(System.getProperty("java.io.tmpdir"), "llmflash-iobench.bin");
        long mb = 1024;
        int kib = 16, reads = 20_000;
        for (int i = 0; i < args.length; i++) {
            switch (args[i]) {
                case "--file" -> file = Path.of(args[++i]);
                case "--mb" -> mb = Long.parseLong(args[++i]);
                case "--kib" -> kib = Integer.parseInt(args[++i]);
                case "--reads" -> reads = Integer.parseInt(args[++i]);
                default -> throw new IllegalArgumentException("unknown option " + args[i]);
            }
        }
        long size = mb << 20;
        if (!Files.exists(file) || Files.size(file) != size) {
            create(file, size);
        }
        int len = kib * 1024;
        System.out.println("| mode | threads | reads | GB/s | issued |");
        System.out.println("|---|---:|---:|---:|---:|");
        for (boolean direct : new boolean[] {true, false}) {
            for (int threads : new int[] {1, 8, 32}) {
                try (IoEngine io = IoEngine.open(file, threads, direct); Arena arena = Arena.ofShared()) {
                    SplittableRandom rnd = new SplittableRandom(threads);
                    List<IoEngine.Read> plan = new ArrayList<>(reads);
                    long slots = (size - len) / io.blockSize();
                    MemorySegment buf = arena.allocate((long) reads * len, io.blockSize());
                    for (int r = 0; r < reads; r++) {
                        plan.add(new IoEngine.Read(rnd.nextLong(slots) * io.blockSize(), len,
                                buf.asSlice((long) r * len, len)));
                    }
                    io.readAll(plan.subList(0, Math.min(100, reads))); // warm-up: threads, bounce buffers
                    io.stats().reset();
                    io.readAll(plan);
                    IoStats s = io.stats();
                    System.out.printf(Locale.ROOT, "| %s | %d | %d | %.2f | %d |%n",
                            io.mode(), threads, reads, s.requestedGBps(), s.readsIssued());
                }
            }
        }
    }

    private static void create(Path file, long size) throws IOException {
        SplittableRandom rnd = new SplittableRandom(1);
        ByteBuffer chunk = ByteBuffer.allocateDirect(1 << 20);
        try (FileChannel ch = FileChannel.open(file, StandardOpenOption.CREATE, StandardOpenOption.WRITE,
                StandardOpenOption.TRUNCATE_EXISTING)) {
            for (long done = 0; done < size; done += chunk.capacity()) {
                chunk.clear();
                while (chunk.remaining() >= 8) {
                    chunk.putLong(rnd.nextLong());
                }
                chunk.flip();
                while (chunk.hasRemaining()) {
                    ch.write(chunk);
                }
            }
        }
    }
}
