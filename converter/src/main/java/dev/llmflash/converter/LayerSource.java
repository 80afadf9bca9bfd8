package dev.llmflash.converter;

import dev.llmflash.formats.bundle.FfnFileWriter;
import dev.llmflash.formats.bundle.MappedPages;
import dev.llmflash.formats.tensor.DType;
import dev.llmflash.formats.tensor.Quant;
import dev.llmflash.formats.tensor.Tensor;

import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.nio.ByteOrder;
import java.util.function.LongConsumer;

/**
 * Feeds one layer's FFN weights to an {@link FfnFileWriter}, converted to the bundle dtype, straight
 * from the memory-mapped source matrices, with bounded memory.
 *
 * <p>Legend: d = d_model, f = d_ffn; W1 = up weight [f, d] (row-major), W2 = down weight [d, f]; a
 * chunk is neurons i0 .. i0+n-1 with n at most the writer's {@link FfnFileWriter#chunkNeurons()}.
 * <ul>
 *   <li>Up rows are W1[i0 : i0+n, :], one contiguous run: converted in place into the writer's buffer.</li>
 *   <li>Down columns are W2[:, i0 : i0+n]: a blocked transpose. For each j &lt; d, the n elements
 *       W2[j, i0 : i0+n] are contiguous; they are copied into {@code piece}, then scattered to
 *       {@code columns[k*d + j]} (k &lt; n). Only {@code n * d} elements are ever held: never a matrix.</li>
 * </ul>
 * The up rows' source pages are released as soon as they are converted (the read is sequential); the
 * down matrix is read across its rows for every chunk, so its pages are released when the layer is done
 * ({@link #release()}). Together with the writer's buffers this bounds the process's memory to a few
 * tens of MB of heap plus one down matrix of mapped pages.
 *
 * <p>Reusable across layers ({@link #layer}); single-threaded.
 */
final class LayerSource implements FfnFileWriter.NeuronSource {
    private static final ValueLayout.OfShort S16 = ValueLayout.JAVA_SHORT_UNALIGNED.withOrder(ByteOrder.LITTLE_ENDIAN);
    private static final ValueLayout.OfInt S32 = ValueLayout.JAVA_INT_UNALIGNED.withOrder(ByteOrder.LITTLE_ENDIAN);

    private final DType target;
    private final int d;
    private final int f;
    private final LongConsumer written;
    private Tensor up;
    private Tensor down;
    // Transpose buffers, grown to the largest chunk on first use (then reused for every layer).
    private short[] piece16 = new short[0];
    private short[] columns16 = new short[0];
    private int[] piece32 = new int[0];
    private int[] columns32 = new int[0];
    private MemorySegment raw = MemorySegment.ofArray(new byte[0]);
    /** Quantization's f32 copy of a chunk. */
    private float[] f32 = new float[0];

    /**
     * @param written told how many bundle bytes each call produced (for progress and cancellation)
     */
    LayerSource(DType target, int d, int f, LongConsumer written) {
        this.target = target;
        this.d = d;
        this.f = f;
        this.written = written;
    }

    /** Switches to another layer's matrices (already checked: up [f, d], down [d, f]). */
    void layer(Tensor upWeight, Tensor downWeight) {
        this.up = upWeight;
        this.down = downWeight;
    }

    @Override
    public void upRows(int first, int count, MemorySegment dst) {
        long es = up.dtype().bytes();
        MemorySegment src = up.data().asSlice((long) first * d * es, (long) count * d * es);
        convert(src, up.dtype(), count, dst);
        MappedPages.release(src);
        written.accept(dst.byteSize());
    }

    @Override
    public void downColumns(int first, int count, MemorySegment dst) {
        DType from = down.dtype();
        int n = Math.multiplyExact(count, d);
        if (target.isQuantized() && from.bytes() == 2) {
            transposeToF32(first, count, from);
            Quant.quantize(target, f32, 0, count, d, dst, 0);
            written.accept(dst.byteSize());
            return;
        }
        long rawBytes = (long) n * from.bytes();
        if (raw.byteSize() < rawBytes) {
            raw = MemorySegment.ofArray(new byte[Math.toIntExact(rawBytes)]);
        }
        MemorySegment w2 = down.data();
        if (from.bytes() == 2) {
            if (piece16.length < count) {
                piece16 = new short[count];
            }
            if (columns16.length < n) {
                columns16 = new short[n];
            }
            short[] piece = piece16;
            short[] columns = columns16;
            for (int j = 0; j < d; j++) {
                MemorySegment.copy(w2, S16, ((long) j * f + first) * 2, piece, 0, count);
                for (int k = 0, at = j; k < count; k++, at += d) {
                    columns[at] = piece[k];
                }
            }
            MemorySegment.copy(columns, 0, raw, S16, 0, n);
        } else {
            if (piece32.length < count) {
                piece32 = new int[count];
            }
            if (columns32.length < n) {
                columns32 = new int[n];
            }
            int[] piece = piece32;
            int[] columns = columns32;
            for (int j = 0; j < d; j++) {
                MemorySegment.copy(w2, S32, ((long) j * f + first) * 4, piece, 0, count);
                for (int k = 0, at = j; k < count; k++, at += d) {
                    columns[at] = piece[k];
                }
            }
            MemorySegment.copy(columns, 0, raw, S32, 0, n);
        }
        convert(raw.asSlice(0, rawBytes), from, count, dst);
        written.accept(dst.byteSize());
    }

    /** Rows of W2 transposed per block of this many (the pieces of a block stay in L2). */
    private static final int TRANSPOSE_BLOCK = 32;

    /**
     * Down columns first .. first+count-1 of a 16-bit W2 as f32 rows of d into {@link #f32}: W2 is
     * read {@link #TRANSPOSE_BLOCK} rows at a time (count contiguous elements each), and each column's
     * slice of the block is written contiguously, so neither side strides through memory per element.
     */
    private void transposeToF32(int first, int count, DType from) {
        int n = Math.multiplyExact(count, d);
        if (f32.length < n) {
            f32 = new float[n];
        }
        float[] out = f32;
        MemorySegment w2 = down.data();
        boolean bf16 = from == DType.BF16;
        int blocks = (d + TRANSPOSE_BLOCK - 1) / TRANSPOSE_BLOCK;
        int parts = (long) count * d < (1 << 18) ? 1 : 2;
        // Two halves of the rows of W2 at once (the common pool and the caller): memory-bound, it pays.
        java.util.stream.IntStream.range(0, parts).parallel().forEach(p -> {
            short[] piece = new short[TRANSPOSE_BLOCK * count];
            for (int b = blocks * p / parts; b < blocks * (p + 1) / parts; b++) {
                int j0 = b * TRANSPOSE_BLOCK;
                int jn = Math.min(TRANSPOSE_BLOCK, d - j0);
                for (int jj = 0; jj < jn; jj++) {
                    MemorySegment.copy(w2, S16, ((long) (j0 + jj) * f + first) * 2, piece, jj * count, count);
                }
                for (int k = 0; k < count; k++) {
                    int o = k * d + j0;
                    for (int jj = 0; jj < jn; jj++) {
                        short h = piece[jj * count + k];
                        out[o + jj] = bf16 ? DTypeConversion.bf16ToFloat(h) : Float.float16ToFloat(h);
                    }
                }
            }
        });
    }

    /**
     * {@code count} rows of d source elements into dst in the target dtype: converted directly, or for a
     * quantized target through f32 ({@link Quant#quantize}, a block per 32 weights of each row).
     */
    private void convert(MemorySegment src, DType from, int count, MemorySegment dst) {
        if (!target.isQuantized()) {
            DTypeConversion.convert(src, from, dst, target);
            return;
        }
        int n = Math.multiplyExact(count, d);
        if (f32.length < n) {
            f32 = new float[n];
        }
        DTypeConversion.toFloats(src, from, f32, n);
        Quant.quantize(target, f32, 0, count, d, dst, 0);
    }

    /** Gives the current layer's source pages back to the kernel (see the class comment). */
    void release() {
        MappedPages.release(up.data());
        MappedPages.release(down.data());
    }
}
