package dev.llmflash.formats.bundle;

import dev.llmflash.formats.tensor.DType;

import java.util.Objects;

/**
 * Where every byte of {@code ffn.bin} lives, derived from the few numbers its header records
 * (docs/FORMAT.md, "ffn.bin"). Shared by the writer, the reader and the manifest so that the layout
 * arithmetic exists once. Immutable, thread-safe.
 *
 * <p>Legend: d = d_model, f = d_ffn (neurons per layer), e = bytes per element, r = d * e (one row;
 * for the block-quantized Q8_0 and Q4_0, r = dtype.rowBytes(d): d / 32 blocks of 34 or 18 bytes, the
 * row's scales first, see {@link DType}),
 * A = alignment, S = the stride, B = the layer block length, span = align_up(B, A).
 * <pre>
 * file   = [header: 4096 bytes][block 0][pad to A][block 1][pad to A] ... [block L-1][pad to A]
 * block L starts at 4096 + L * span; the file is 4096 + layers * span bytes (the last block is padded
 * too, so that every block occupies the same aligned span and an aligned read never passes the end)
 * bundled: S = the bundle stride (>= 2r, see {@link #bundleStride}); B = f * S;
 *          neuron i: up row at i*S, down column at i*S + r
 * split:   S = r (the row stride); down base = align_up(f*r, A); B = down base + f*r;
 *          neuron i: up row at i*r, down column at down base + i*r
 * </pre>
 *
 * @param layout      bundled or split
 * @param dtype       element type: F32, F16, BF16, Q8_0 or Q4_0 (quantized: d a multiple of 32)
 * @param layers      number of layers (blocks), at least 1
 * @param dModel      d, elements per up row / down column
 * @param dFfn        f, neurons per layer
 * @param alignment   A: a power of two, at most {@link FfnFile#HEADER_BYTES} (blocks start right after
 *                    the header, so A must divide it)
 * @param stride      S: the bundle stride (bundled) or the row stride r (split), as recorded
 * @param blockLength B: bytes of one layer block, as recorded
 */
public record FfnGeometry(FfnLayout layout, DType dtype, int layers, int dModel, int dFfn, int alignment,
                          long stride, long blockLength) {

    /** The alignment the converter writes: a page, and the unit of direct I/O on every common SSD. */
    public static final int DEFAULT_ALIGNMENT = 4096;
    /** Cache-line granularity of the last-resort bundle stride. */
    public static final int MIN_STRIDE_ALIGNMENT = 64;

    /**
     * Checks that the numbers describe a possible file.
     *
     * @throws IllegalArgumentException naming the first inconsistency (readers wrap it into a
     *         FormatException naming the file)
     */
    public FfnGeometry {
        Objects.requireNonNull(layout, "layout");
        Objects.requireNonNull(dtype, "dtype");
        if (!dtype.isWeightType()) {
            throw new IllegalArgumentException("dtype " + dtype + " is not F32, F16, BF16, Q8_0 or Q4_0");
        }
        if (layers < 1 || dModel < 1 || dFfn < 1) {
            throw new IllegalArgumentException("layers " + layers + ", d_model " + dModel + ", d_ffn " + dFfn
                    + " must all be positive");
        }
        if (alignment < 1 || Integer.bitCount(alignment) != 1 || alignment > FfnFile.HEADER_BYTES) {
            throw new IllegalArgumentException("alignment " + alignment + " is not a power of two of at most "
                    + FfnFile.HEADER_BYTES);
        }
        if (!dtype.fitsRow(dModel)) {
            throw new IllegalArgumentException("d_model " + dModel + " is not a multiple of " + dtype + "'s block of "
                    + dtype.blockSize() + " weights");
        }
        long row = dtype.rowBytes(dModel);
        int unit = dtype.isQuantized() ? 1 : dtype.bytes();
        try {
            switch (layout) {
                case BUNDLED -> {
                    if (stride < 2 * row || stride % unit != 0) {
                        throw new IllegalArgumentException("bundle stride " + stride + " cannot hold an up row and a"
                                + " down column of " + row + " bytes each");
                    }
                    long expected = Math.multiplyExact(dFfn, stride);
                    if (blockLength != expected) {
                        throw new IllegalArgumentException("block length " + blockLength + " is not d_ffn x stride = "
                                + expected);
                    }
                }
                case SPLIT -> {
                    if (stride != row) {
                        throw new IllegalArgumentException("row stride " + stride + " is not the " + row + " bytes of a row of "
                                + dModel + " " + dtype);
                    }
                    long matrix = Math.multiplyExact(dFfn, row);
                    long expected = Math.addExact(alignUp(matrix, alignment), matrix);
                    if (blockLength != expected) {
                        throw new IllegalArgumentException("block length " + blockLength
                                + " is not align_up(d_ffn x row, alignment) + d_ffn x row = " + expected);
                    }
                }
            }
            // The whole file's size must be representable: everything below derives from it.
            Math.addExact(FfnFile.HEADER_BYTES, Math.multiplyExact(layers, alignUp(blockLength, alignment)));
        } catch (ArithmeticException e) {
            throw new IllegalArgumentException("sizes overflow 64 bits (layers " + layers + ", d_model " + dModel
                    + ", d_ffn " + dFfn + ")", e);
        }
    }

    /**
     * The geometry a writer uses: alignment {@value #DEFAULT_ALIGNMENT}, the stride chosen by
     * {@link #bundleStride} (bundled) or the row size (split).
     */
    public static FfnGeometry of(FfnLayout layout, DType dtype, int layers, int dModel, int dFfn) {
        int alignment = DEFAULT_ALIGNMENT;
        long row = dtype.rowBytes(dModel);
        long stride;
        long blockLength;
        if (layout == FfnLayout.BUNDLED) {
            stride = bundleStride(dModel, dtype, alignment);
            blockLength = Math.multiplyExact(dFfn, stride);
        } else {
            stride = row;
            long matrix = Math.multiplyExact(dFfn, row);
            blockLength = Math.addExact(alignUp(matrix, alignment), matrix);
        }
        return new FfnGeometry(layout, dtype, layers, dModel, dFfn, alignment, stride, blockLength);
    }

    /**
     * The bundle stride rule (b = 2 * d * e, the bytes of one up row and one down column):
     * <ol>
     *   <li>b a multiple of the alignment: b (nothing to pad);</li>
     *   <li>b &gt; alignment and padding b up to the alignment costs at most b/8: align_up(b, A), so
     *       every bundle starts on an alignment boundary (direct I/O reads whole bundles);</li>
     *   <li>b &lt; alignment and the next power of two p costs at most b/8: p (p divides A, so
     *       bundles never straddle an aligned unit);</li>
     *   <li>otherwise align_up(b, 64): cache-line aligned, waste under 64 bytes.</li>
     * </ol>
     * Examples: d=256 f16 -> 1024; d=4096 f16 -> 16384; d=4096 f32 -> 32768; d=4544 f16 (Falcon-7B) -> 18176
     * (aligning to 20480 would waste 12.7%); d=64 f16 -> 256; d=4096 q8 (b = 8704) -> 8704; d=4096 q4
     * (b = 4608) -> 4608; d=256 q8 (b = 544) -> 576; d=256 q4 (b = 288) -> 320.
     */
    public static long bundleStride(int dModel, DType dtype, int alignment) {
        long b = Math.multiplyExact(2L, dtype.rowBytes(dModel));
        if (b % alignment == 0) {
            return b;
        }
        if (b > alignment) {
            long up = alignUp(b, alignment);
            if (up - b <= b / 8) {
                return up;
            }
        } else {
            long p = Long.highestOneBit(b);
            if (p < b) {
                p <<= 1;
            }
            if (p - b <= b / 8) {
                return p;
            }
        }
        return alignUp(b, MIN_STRIDE_ALIGNMENT);
    }

    /** The smallest multiple of {@code alignment} (a power of two) that is at least {@code n}. */
    public static long alignUp(long n, long alignment) {
        return Math.addExact(n, alignment - 1) & -alignment;
    }

    /** r: bytes of one up row or down column. */
    public long rowBytes() {
        return dtype.rowBytes(dModel);
    }

    /**
     * The manifest's {@code up_offset}: within a bundle (bundled) or within the block (split); 0 both ways.
     */
    public long upOffset() {
        return 0;
    }

    /**
     * The manifest's {@code down_offset}: r within a bundle (bundled), or align_up(f*r, A) within the
     * layer block (split).
     */
    public long downOffset() {
        return layout == FfnLayout.BUNDLED ? rowBytes() : alignUp((long) dFfn * rowBytes(), alignment);
    }

    /** Bytes from one block's start to the next's: align_up(B, A). */
    public long blockSpan() {
        return alignUp(blockLength, alignment);
    }

    /** Absolute file offset of layer {@code layer}'s block. */
    public long blockOffset(int layer) {
        return FfnFile.HEADER_BYTES + Objects.checkIndex(layer, layers) * blockSpan();
    }

    /** The exact size of a well-formed file: header plus one aligned span per layer. */
    public long fileSize() {
        return FfnFile.HEADER_BYTES + layers * blockSpan();
    }

    /** Offset within a layer block of neuron {@code neuron}'s up row. */
    public long upOffset(int neuron) {
        return Objects.checkIndex(neuron, dFfn) * stride;
    }

    /** Offset within a layer block of neuron {@code neuron}'s down column. */
    public long downOffset(int neuron) {
        return Objects.checkIndex(neuron, dFfn) * stride + downOffset();
    }

    /** Bytes of FFN weights proper in one block (no padding): 2 * f * r. */
    public long weightBytesPerLayer() {
        return 2L * dFfn * rowBytes();
    }
}
