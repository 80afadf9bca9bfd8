package dev.llmflash.formats.bundle;

import java.io.IOException;
import java.lang.foreign.MemorySegment;
import java.nio.ByteBuffer;
import java.nio.channels.FileChannel;
import java.nio.file.Path;
import java.nio.file.StandardOpenOption;
import java.util.ArrayList;
import java.util.List;
import java.util.Objects;
import java.util.zip.CRC32C;

/**
 * Writes an {@code ffn.bin} (layout: {@link FfnFile}) front to back: the header at creation, then one
 * layer block at a time, each block's CRC32C computed from the bytes as they are written. The writer
 * owns the layout: the caller only supplies, on request, up rows and down columns of a few neurons at a
 * time ({@link NeuronSource}), in the file's dtype. Memory is bounded by {@link #MAX_CHUNK_BYTES}
 * (about three buffers of that size), whatever the model's size.
 *
 * <pre>{@code
 * try (FfnFileWriter w = FfnFileWriter.create(path, FfnGeometry.of(BUNDLED, F16, layers, d, f))) {
 *     for (int layer = 0; layer < layers; layer++) {
 *         w.writeLayer(sourceOf(layer));
 *     }
 *     List<BundleManifest.Block> blocks = w.finish();
 * }
 * }</pre>
 * The file is created new (an existing file is an error) and written in place: atomicity is the
 * caller's (the converter writes into a temporary folder). A writer that is closed without
 * {@link #finish()} leaves an incomplete file for the caller to delete. Single-threaded.
 */
public final class FfnFileWriter implements AutoCloseable {

    /** Produces a layer's weights, in the file's dtype, little-endian, a few neurons at a time. */
    public interface NeuronSource {
        /**
         * Fills {@code dst} ({@code count * d} elements) with up rows {@code first .. first+count-1},
         * back to back: row i = HF {@code fc1.weight[i, :]} / {@code dense_h_to_4h.weight[i, :]}.
         */
        void upRows(int first, int count, MemorySegment dst) throws IOException;

        /**
         * Fills {@code dst} ({@code count * d} elements) with down columns {@code first .. first+count-1},
         * back to back: column i = HF {@code fc2.weight[:, i]} / {@code dense_4h_to_h.weight[:, i]}.
         */
        void downColumns(int first, int count, MemorySegment dst) throws IOException;
    }

    /** Upper bound of one chunk of neurons' bytes: the writer's and a source's buffers are this big. */
    public static final long MAX_CHUNK_BYTES = 4L << 20;

    private final Path file;
    private final FfnGeometry g;
    private final FileChannel channel;
    private final int chunkNeurons;
    private final ByteBuffer out;
    private final MemorySegment outSegment;
    private final MemorySegment upRows;
    private final MemorySegment downColumns;
    private final ByteBuffer zeros = ByteBuffer.allocateDirect(FfnFile.HEADER_BYTES);
    private final List<BundleManifest.Block> blocks = new ArrayList<>();
    private long position;
    private boolean finished;

    private FfnFileWriter(Path file, FfnGeometry g, FileChannel channel) {
        this.file = file;
        this.g = g;
        this.channel = channel;
        long r = g.rowBytes();
        long perNeuron = g.layout() == FfnLayout.BUNDLED ? g.stride() : r;
        this.chunkNeurons = Math.clamp(MAX_CHUNK_BYTES / perNeuron, 1, g.dFfn());
        // Allocated zeroed; the bundled layout never writes the padding positions, so they stay zero.
        this.out = ByteBuffer.allocateDirect(Math.toIntExact(chunkNeurons * perNeuron));
        this.outSegment = MemorySegment.ofBuffer(out); // the whole buffer, whatever its position later
        boolean bundled = g.layout() == FfnLayout.BUNDLED;
        this.upRows = bundled ? MemorySegment.ofArray(new byte[Math.toIntExact(chunkNeurons * r)]) : null;
        this.downColumns = bundled ? MemorySegment.ofArray(new byte[Math.toIntExact(chunkNeurons * r)]) : null;
    }

    /**
     * Creates {@code file} (which must not exist) and writes its header.
     *
     * @throws IOException if the file exists or cannot be written
     */
    public static FfnFileWriter create(Path file, FfnGeometry geometry) throws IOException {
        Objects.requireNonNull(geometry, "geometry");
        FileChannel ch = FileChannel.open(file, StandardOpenOption.CREATE_NEW, StandardOpenOption.WRITE);
        try {
            FfnFileWriter w = new FfnFileWriter(file, geometry, ch);
            w.write(ByteBuffer.wrap(FfnFile.encodeHeader(geometry)), null);
            return w;
        } catch (IOException | RuntimeException | Error e) {
            ch.close();
            throw e;
        }
    }

    /** How many neurons each {@link NeuronSource} call covers at most (its buffers' size / (d * e)). */
    public int chunkNeurons() {
        return chunkNeurons;
    }

    public FfnGeometry geometry() {
        return g;
    }

    /** Layers written so far; the next {@link #writeLayer} writes this layer. */
    public int layersWritten() {
        return blocks.size();
    }

    /**
     * Writes the next layer's block, asking {@code source} for its neurons in order, then the padding
     * to the alignment.
     *
     * @return the block's table entry (offset, length, CRC32C) for the manifest
     * @throws IOException if writing fails, or the source's own IOException
     */
    public BundleManifest.Block writeLayer(NeuronSource source) throws IOException {
        if (finished || blocks.size() == g.layers()) {
            throw new IllegalStateException("all " + g.layers() + " layers of " + file + " are already written");
        }
        int layer = blocks.size();
        long start = g.blockOffset(layer);
        if (position != start) {
            throw new IllegalStateException("layer " + layer + " would start at " + position + ", not " + start);
        }
        CRC32C crc = new CRC32C();
        long r = g.rowBytes();
        int f = g.dFfn();
        if (g.layout() == FfnLayout.BUNDLED) {
            long stride = g.stride();
            for (int first = 0; first < f; first += chunkNeurons) {
                int n = Math.min(chunkNeurons, f - first);
                MemorySegment up = upRows.asSlice(0, n * r);
                MemorySegment down = downColumns.asSlice(0, n * r);
                source.upRows(first, n, up);
                source.downColumns(first, n, down);
                for (int k = 0; k < n; k++) {
                    MemorySegment.copy(up, k * r, outSegment, k * stride, r);
                    MemorySegment.copy(down, k * r, outSegment, k * stride + r, r);
                }
                write(out.clear().limit(Math.toIntExact(n * stride)), crc);
            }
        } else {
            for (int first = 0; first < f; first += chunkNeurons) {
                int n = Math.min(chunkNeurons, f - first);
                source.upRows(first, n, outSegment.asSlice(0, n * r));
                write(out.clear().limit(Math.toIntExact(n * r)), crc);
            }
            writeZeros(g.downOffset() - (long) f * r, crc);
            for (int first = 0; first < f; first += chunkNeurons) {
                int n = Math.min(chunkNeurons, f - first);
                source.downColumns(first, n, outSegment.asSlice(0, n * r));
                write(out.clear().limit(Math.toIntExact(n * r)), crc);
            }
        }
        if (position - start != g.blockLength()) {
            throw new IllegalStateException("layer " + layer + " came out " + (position - start) + " bytes, not "
                    + g.blockLength());
        }
        writeZeros(g.blockSpan() - g.blockLength(), null);
        BundleManifest.Block block = new BundleManifest.Block(layer, start, g.blockLength(), (int) crc.getValue());
        blocks.add(block);
        return block;
    }

    /**
     * Checks that every layer was written, forces the file to disk and closes it.
     *
     * @return the block table, one entry per layer in order
     */
    public List<BundleManifest.Block> finish() throws IOException {
        if (blocks.size() != g.layers()) {
            throw new IllegalStateException(file + ": " + blocks.size() + " of " + g.layers() + " layers written");
        }
        if (position != g.fileSize()) {
            throw new IllegalStateException(file + ": wrote " + position + " bytes, expected " + g.fileSize());
        }
        channel.force(true);
        channel.close();
        finished = true;
        return List.copyOf(blocks);
    }

    private void writeZeros(long count, CRC32C crc) throws IOException {
        // Padding is always shorter than the alignment, which is at most the zero buffer's size.
        write(zeros.clear().limit(Math.toIntExact(count)), crc);
    }

    private void write(ByteBuffer bb, CRC32C crc) throws IOException {
        if (crc != null) {
            crc.update(bb.duplicate());
        }
        while (bb.hasRemaining()) {
            position += channel.write(bb);
        }
    }

    /** Closes the file; without a prior {@link #finish()} it is incomplete (the caller deletes it). */
    @Override
    public void close() throws IOException {
        channel.close();
    }
}
