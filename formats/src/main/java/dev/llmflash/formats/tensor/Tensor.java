package dev.llmflash.formats.tensor;

import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.util.Arrays;

/**
 * A named, typed, shaped view over little-endian bytes, usually a slice of a memory-mapped file.
 * The view does not own its memory: it is valid as long as the {@code Checkpoint} (or arena) that
 * produced it is open. Row-major (C order), as safetensors and PyTorch contiguous storages are.
 *
 * @param name  the tensor's name as stored in the checkpoint (HF naming)
 * @param dtype element type
 * @param shape dimensions, outermost first; {@code []} for a scalar
 * @param data  exactly {@code dtype.storageBytes(shape)} bytes ({@code numel() * dtype.bytes()} for the
 *              plain types; rows of the last dimension for the block-quantized ones)
 */
public record Tensor(String name, DType dtype, long[] shape, MemorySegment data) {

    private static final ValueLayout.OfShort SHORT_LE = ValueLayout.JAVA_SHORT_UNALIGNED;
    private static final ValueLayout.OfFloat FLOAT_LE = ValueLayout.JAVA_FLOAT_UNALIGNED;
    private static final ValueLayout.OfDouble DOUBLE_LE = ValueLayout.JAVA_DOUBLE_UNALIGNED;

    public Tensor {
        shape = shape.clone();
        long expected = dtype.storageBytes(shape);
        if (data.byteSize() != expected) {
            throw new IllegalArgumentException("tensor " + name + ": " + data.byteSize() + " bytes for "
                    + dtype + Arrays.toString(shape) + ", expected " + expected);
        }
    }

    public static long numel(long[] shape) {
        long n = 1;
        for (long d : shape) {
            n = Math.multiplyExact(n, d);
        }
        return n;
    }

    public long numel() {
        return numel(shape);
    }

    @Override
    public long[] shape() {
        return shape.clone();
    }

    public int rank() {
        return shape.length;
    }

    /** Dimension {@code i} as an int (model dimensions always fit). */
    public int dim(int i) {
        return Math.toIntExact(shape[i]);
    }

    /** Element {@code i} (flat index) converted to float. Slow: for tests, small vectors and load time. */
    public float getFloat(long i) {
        if (dtype.isQuantized()) {
            int c = Math.toIntExact(shape[shape.length - 1]);
            return Quant.get(data, dtype, (i / c) * dtype.rowBytes(c), c, (int) (i % c));
        }
        return switch (dtype) {
            case F32 -> data.getAtIndex(FLOAT_LE, i);
            case F16 -> Float.float16ToFloat(data.getAtIndex(SHORT_LE, i));
            case BF16 -> Float.intBitsToFloat((data.getAtIndex(SHORT_LE, i) & 0xffff) << 16);
            case F64 -> (float) data.getAtIndex(DOUBLE_LE, i);
            case I8 -> data.get(ValueLayout.JAVA_BYTE, i);
            case U8, BOOL -> data.get(ValueLayout.JAVA_BYTE, i) & 0xff;
            case I16 -> data.getAtIndex(SHORT_LE, i);
            case U16 -> data.getAtIndex(SHORT_LE, i) & 0xffff;
            case I32 -> data.getAtIndex(ValueLayout.JAVA_INT_UNALIGNED, i);
            case U32 -> data.getAtIndex(ValueLayout.JAVA_INT_UNALIGNED, i) & 0xffffffffL;
            case I64, U64 -> data.getAtIndex(ValueLayout.JAVA_LONG_UNALIGNED, i);
            default -> throw new UnsupportedOperationException("no float view of " + dtype);
        };
    }

    /** The whole tensor converted to a fresh float array (small tensors: norms, biases). */
    public float[] toFloatArray() {
        float[] out = new float[Math.toIntExact(numel())];
        for (int i = 0; i < out.length; i++) {
            out[i] = getFloat(i);
        }
        return out;
    }

    public String shapeString() {
        return dtype + Arrays.toString(shape);
    }

    @Override
    public String toString() {
        return "Tensor[" + name + " " + shapeString() + "]";
    }

    @Override
    public boolean equals(Object o) {
        return this == o;
    }

    @Override
    public int hashCode() {
        return System.identityHashCode(this);
    }
}
