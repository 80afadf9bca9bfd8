package dev.llmflash.formats.tensor;

import java.util.Locale;

/**
 * Element types of stored tensors. The plain types are named as safetensors names them; compute
 * happens in f32 and weights stay in memory in their stored type (F32, F16, BF16, or one of the
 * block-quantized types). Integer types are read correctly but no model computes on them.
 *
 * <h2>Block-quantized types (the quantization descriptor)</h2>
 * {@link #Q8_0} and {@link #Q4_0} quantize each matrix row in blocks of {@link #blockSize()} = 32
 * consecutive weights with one f16 scale per block ({@link Quant} has the arithmetic). A row of c
 * weights (c a multiple of 32, nb = c / 32 blocks) is stored as
 * <pre>
 * [nb f16 scales, little-endian][the quants]     rowBytes(c) = nb * blockBytes()
 * Q8_0: quants = c int8, block b's 32 at 2nb + 32b;          weight 32b + j = scale_b * q
 * Q4_0: quants = c/2 bytes, block b's 16 at 2nb + 16b; byte j holds weight 32b + j in its low nibble
 *       and weight 32b + 16 + j in its high nibble;          weight = scale_b * (nibble - 8)
 * </pre>
 * (llama.cpp's Q8_0 and Q4_0 values, with the scales of a row gathered in front of its quants so
 * that quant loads stay 16-byte aligned within the row). A row is self-contained, so an FFN neuron's
 * bundle (its up row and down column) stays one contiguous read. Safetensors has no such dtype:
 * resident.safetensors stores these tensors as U8 {@code [rows, rowBytes(cols)]} and the bundle
 * manifest records the logical dtype and shape (docs/FORMAT.md). {@link #bytes()} is undefined for
 * them (it throws); use {@link #rowBytes} and {@link #storageBytes}.
 */
public enum DType {
    BOOL(1), U8(1), I8(1), I16(2), U16(2), F16(2), BF16(2), I32(4), U32(4), F32(4), F64(8), I64(8), U64(8),
    F8_E4M3(1), F8_E5M2(1),
    /** int8 quants, one f16 scale per 32 weights: 34 bytes per block (8.5 bits a weight). */
    Q8_0(34, 32),
    /** 4-bit quants offset by 8, one f16 scale per 32 weights: 18 bytes per block (4.5 bits a weight). */
    Q4_0(18, 32);

    private final int blockBytes;
    private final int blockSize;

    DType(int bytes) {
        this(bytes, 1);
    }

    DType(int blockBytes, int blockSize) {
        this.blockBytes = blockBytes;
        this.blockSize = blockSize;
    }

    /** Bytes per element; block-quantized types have none (use {@link #rowBytes}). */
    public int bytes() {
        if (blockSize != 1) {
            throw new UnsupportedOperationException(this + " is block-quantized: it has no bytes per element"
                    + " (use rowBytes)");
        }
        return blockBytes;
    }

    /** Weights per block: 1 for the plain types, 32 for Q8_0 and Q4_0. */
    public int blockSize() {
        return blockSize;
    }

    /** Bytes per block: the element size for the plain types. */
    public int blockBytes() {
        return blockBytes;
    }

    /** True for Q8_0 and Q4_0. */
    public boolean isQuantized() {
        return blockSize != 1;
    }

    /** True for the three floating-point types our kernels compute on. */
    public boolean isComputeType() {
        return this == F32 || this == F16 || this == BF16;
    }

    /** True for every type a weight matrix may be stored in: the compute types and the quantized ones. */
    public boolean isWeightType() {
        return isComputeType() || isQuantized();
    }

    /**
     * Bytes of a row of {@code n} elements.
     *
     * @throws IllegalArgumentException if a quantized row's n is not a multiple of the block size
     */
    public long rowBytes(long n) {
        if (n < 0) {
            throw new IllegalArgumentException("negative row length " + n);
        }
        if (n % blockSize != 0) {
            throw new IllegalArgumentException(this + " rows hold whole blocks of " + blockSize + " weights; " + n
                    + " is not a multiple of " + blockSize);
        }
        return Math.multiplyExact(n / blockSize, (long) blockBytes);
    }

    /** True if a row of n elements can be stored: always for the plain types, whole blocks otherwise. */
    public boolean fitsRow(long n) {
        return n >= 0 && n % blockSize == 0;
    }

    /**
     * Bytes of a tensor of this shape: numel x bytes; quantized tensors are rows of the last
     * dimension (a 1-D tensor is one row).
     *
     * @throws ArithmeticException on overflow; IllegalArgumentException if a quantized row is not
     *         whole blocks or the shape is a scalar
     */
    public long storageBytes(long[] shape) {
        if (!isQuantized()) {
            return Math.multiplyExact(Tensor.numel(shape), (long) blockBytes);
        }
        if (shape.length == 0) {
            throw new IllegalArgumentException(this + " cannot store a scalar");
        }
        long rows = 1;
        for (int i = 0; i < shape.length - 1; i++) {
            rows = Math.multiplyExact(rows, shape[i]);
        }
        return Math.multiplyExact(rows, rowBytes(shape[shape.length - 1]));
    }

    /** Parses a safetensors dtype string ("F16", "BF16", ...); null if unknown (and for Q8_0 / Q4_0). */
    public static DType fromSafetensors(String s) {
        DType d = fromName(s);
        return d == null || d.isQuantized() ? null : d;
    }

    /** Parses any dtype name, the quantized ones included ("F16", "Q4_0"); null if unknown. */
    public static DType fromName(String s) {
        try {
            return valueOf(s.toUpperCase(Locale.ROOT));
        } catch (IllegalArgumentException e) {
            return null;
        }
    }
}
