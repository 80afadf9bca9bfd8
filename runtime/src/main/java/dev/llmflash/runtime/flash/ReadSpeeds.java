package dev.llmflash.runtime.flash;

import dev.llmflash.formats.bundle.FfnGeometry;
import dev.llmflash.runtime.io.IoEngine;

import java.lang.foreign.MemorySegment;
import java.util.ArrayList;
import java.util.List;
import java.util.SplittableRandom;

/**
 * The two read speeds the prompt's read plan chooses between, measured on {@code ffn.bin} with the
 * runtime's own I/O engine when the runtime opens: large sequential reads (the layer streamed in
 * pieces) and random bundle-sized reads (the union's missing neurons). The prompt path streams a layer
 * when reading its union's missing bundles at the random speed would take longer than reading the
 * whole layer at the sequential speed: the crossover is measured, not a constant (on this project's
 * VM about half a layer, docs/RUNTIME.md).
 *
 * @param seqGBps    sequential reads of the streaming buffer's half size, GB/s
 * @param randomGBps random reads of one bundle each, GB/s
 */
public record ReadSpeeds(double seqGBps, double randomGBps) {
    /** Bytes read by each of the two probes: small next to a prompt, large enough to average. */
    static final long PROBE_BYTES = 8L << 20;

    /**
     * Measures both speeds (about 16 MiB read, tens of ms), each probe run once to warm up and once
     * timed, with the same engine state; {@code buffer} is scratch of at least 2 x 1 MiB.
     */
    public static ReadSpeeds measure(IoEngine io, FfnGeometry g, MemorySegment buffer) {
        long size = Math.min(io.size(), g.fileSize());
        long piece = Math.min(buffer.byteSize() / 2 / 4096 * 4096, 1L << 20);
        if (piece < 4096 || size < 2 * piece) {
            return new ReadSpeeds(1, 1);
        }
        long bundle = FlashFfn.bytesPerNeuron(g);
        int perRead = (int) (g.stride());
        SplittableRandom rnd = new SplittableRandom(17);
        double seq = 0, random = 0;
        for (int pass = 0; pass < 2; pass++) {
            // Sequential: consecutive pieces from a random start, two in flight (as the prompt streams).
            List<IoEngine.Read> reads = new ArrayList<>();
            int pieces = (int) Math.max(1, Math.min(PROBE_BYTES / piece, size / piece - 1));
            long start = rnd.nextLong(Math.max(1, size / piece - pieces)) * piece;
            for (int i = 0; i < pieces; i++) {
                reads.add(new IoEngine.Read(start + i * piece, (int) piece, buffer.asSlice((i % 2) * piece, piece)));
            }
            long t0 = System.nanoTime();
            for (int i = 0; i < pieces; i += 2) {
                io.submit(reads.subList(i, Math.min(pieces, i + 2))).await();
            }
            seq = pieces * piece / Math.max(1.0, System.nanoTime() - t0);
            // Random: bundle-sized reads at aligned random offsets, all in flight at once.
            int count = (int) Math.max(16, Math.min(PROBE_BYTES / perRead, 2 * piece / perRead));
            reads.clear();
            long slots = size / perRead;
            for (int i = 0; i < count; i++) {
                long off = rnd.nextLong(slots) * perRead / 4096 * 4096;
                reads.add(new IoEngine.Read(off, perRead, buffer.asSlice((long) (i % (2 * piece / perRead)) * perRead, perRead)));
            }
            t0 = System.nanoTime();
            io.submit(reads).await();
            random = count * (double) perRead / Math.max(1.0, System.nanoTime() - t0);
        }
        return new ReadSpeeds(seq, random * bundle / perRead);
    }

    /** The prompt's read plan over {@code buffer}: the cheaper of the two by these speeds. */
    public FlashFfn.PrefillPlan plan(MemorySegment buffer) {
        return new FlashFfn.PrefillPlan(buffer, seqGBps, randomGBps, FlashFfn.PrefillPlan.Policy.AUTO);
    }
}
