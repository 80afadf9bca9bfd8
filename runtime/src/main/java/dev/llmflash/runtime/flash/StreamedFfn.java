package dev.llmflash.runtime.flash;

import dev.llmflash.formats.bundle.FfnGeometry;
import dev.llmflash.formats.bundle.FfnLayout;
import dev.llmflash.formats.tensor.DType;
import dev.llmflash.runtime.ffn.Activation;
import dev.llmflash.runtime.ffn.Ffn;
import dev.llmflash.runtime.io.IoEngine;
import dev.llmflash.runtime.kernels.Kernels;
import dev.llmflash.runtime.kernels.Ops;

import java.lang.foreign.MemorySegment;
import java.util.Arrays;
import java.util.List;

/**
 * One layer's FFN in the paper's baselines, every neuron computed (dense output):
 * <ul>
 *   <li>{@code naive}: the whole layer is re-read from {@code ffn.bin} on every forward call;</li>
 *   <li>{@code hybrid}: neurons {@code [0, R)} were read once into DRAM at start (as much as the budget
 *       allows) and the rest {@code [R, f)} is re-read on every call.</li>
 * </ul>
 * The re-read part lands in one buffer shared by all layers (they run one after another), read with
 * the I/O engine's parallel reads; nothing overlaps the reads, as in the paper's baselines. A batched
 * call (the prompt) reads the layer once for all its tokens.
 * Stateful scratch: one thread at a time. Legend: d = model width, f = neurons, r = d x element bytes.
 */
public final class StreamedFfn implements Ffn {
    private final int d;
    private final int f;
    private final DType dtype;
    private final FfnGeometry g;
    private final long blockOffset;
    private final int resident;
    private final MemorySegment residentRows;
    private final MemorySegment buffer;
    private final IoEngine io;
    private final float[] upBias;
    private final float[] downBias;
    private final Activation act;
    private final FlashMetrics metrics;
    private float[] h1 = new float[0];
    private float[] h2 = new float[0];

    /**
     * @param resident     R, neurons kept in DRAM (0 = naive)
     * @param residentRows R neurons in the layout {@link #bytesFor} describes, already loaded (null when R = 0)
     * @param buffer       room for f - R neurons in that layout, shared by the layers
     */
    public StreamedFfn(FfnGeometry g, long blockOffset, int resident, MemorySegment residentRows, MemorySegment buffer,
                       IoEngine io, float[] upBias, float[] downBias, Activation act, FlashMetrics metrics) {
        this.d = g.dModel();
        this.f = g.dFfn();
        this.dtype = g.dtype();
        this.g = g;
        this.blockOffset = blockOffset;
        this.resident = resident;
        this.residentRows = residentRows;
        this.buffer = buffer;
        this.io = io;
        this.upBias = upBias;
        this.downBias = downBias;
        this.act = act;
        this.metrics = metrics;
        if (resident < 0 || resident > f || (resident > 0 && residentRows.byteSize() < bytesFor(g, resident))
                || (resident < f && buffer.byteSize() < bytesFor(g, f - resident))) {
            throw new IllegalArgumentException("resident " + resident + " of " + f + " neurons with a " + buffer.byteSize()
                    + "-byte buffer");
        }
    }

    /**
     * Bytes that hold {@code count} neurons in DRAM: {@code count} bundles (bundled), or an up matrix
     * then, from the next 4096-byte boundary, a down matrix (split).
     */
    public static long bytesFor(FfnGeometry g, int count) {
        long part = (long) count * g.stride();
        return g.layout() == FfnLayout.BUNDLED ? part : FfnGeometry.alignUp(part, 4096) + part;
    }

    /** The reads that bring neurons {@code [first, first + count)} of the block at {@code blockOffset} into {@code dst}. */
    public static List<IoEngine.Read> reads(FfnGeometry g, long blockOffset, int first, int count, MemorySegment dst) {
        long part = (long) count * g.stride();
        if (g.layout() == FfnLayout.BUNDLED) {
            return List.of(new IoEngine.Read(blockOffset + g.upOffset(0) + first * g.stride(), Math.toIntExact(part), dst));
        }
        long down = FfnGeometry.alignUp(part, 4096);
        return List.of(new IoEngine.Read(blockOffset + (long) first * g.stride(), Math.toIntExact(part), dst),
                new IoEngine.Read(blockOffset + g.downOffset() + (long) first * g.stride(), Math.toIntExact(part),
                        dst.asSlice(down)));
    }

    @Override
    public int neurons() {
        return f;
    }

    /** R, the neurons held in DRAM. */
    public int resident() {
        return resident;
    }

    @Override
    public void forward(Kernels k, float[] x, int m, float[] h, float[] out) {
        int streamed = f - resident;
        if (streamed > 0) {
            IoEngine.Pending p = io.submit(reads(g, blockOffset, resident, streamed, buffer));
            p.await();
            metrics.addIo(p.waitedNanos(), p.latencyNanos(), (long) streamed * FlashFfn.bytesPerNeuron(g));
        }
        metrics.layerSteps += m;
        metrics.active += (long) m * f;
        metrics.hits += (long) m * resident;
        metrics.neuronsLoaded += streamed;
        Arrays.fill(out, 0, m * d, 0f);
        if (resident > 0) {
            h1 = part(k, residentRows, resident, 0, x, m, h1, out);
        }
        if (streamed > 0) {
            h2 = part(k, buffer, streamed, resident, x, m, h2, out);
        }
        Ops.addBias(out, m, d, downBias);
    }

    /** out += down(act(up x + b)) over {@code count} neurons from {@code first}, stored at {@code rows}. */
    private float[] part(Kernels k, MemorySegment rows, int count, int first, float[] x, int m, float[] hp, float[] out) {
        if (hp.length < m * count) {
            hp = new float[m * count];
        }
        long stride = g.stride();
        MemorySegment down = g.layout() == FfnLayout.BUNDLED ? rows.asSlice(g.rowBytes())
                : rows.asSlice(FfnGeometry.alignUp((long) count * stride, 4096));
        if (m == 1) {
            k.matvecStrided(rows, dtype, count, d, stride, x, hp);
        } else {
            k.matmulStrided(rows, dtype, count, d, stride, x, m, hp);
        }
        for (int t = 0; t < m; t++) {
            if (upBias != null) {
                for (int i = 0; i < count; i++) {
                    hp[t * count + i] += upBias[first + i];
                }
            }
            act.apply(hp, t * count, count);
        }
        k.matmulTransposedAcc(down, dtype, count, d, stride, hp, m, out);
        return hp;
    }
}
