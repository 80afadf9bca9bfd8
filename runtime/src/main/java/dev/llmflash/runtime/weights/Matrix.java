package dev.llmflash.runtime.weights;

import dev.llmflash.formats.FormatException;
import dev.llmflash.formats.checkpoint.Checkpoint;
import dev.llmflash.formats.tensor.DType;
import dev.llmflash.formats.tensor.Tensor;
import dev.llmflash.runtime.kernels.Kernels;
import dev.llmflash.runtime.kernels.Ops;

import java.lang.foreign.MemorySegment;
import java.util.Arrays;

/**
 * A weight matrix kept in its stored dtype: {@code rows x cols}, row-major, as HF stores a Linear
 * weight {@code [out_features, in_features]} (quantized: rows of {@code dtype.rowBytes(cols)} bytes).
 * A view: the memory belongs to the checkpoint.
 */
public record Matrix(String name, MemorySegment data, DType dtype, int rows, int cols) {

    /**
     * Reads tensor {@code name} from {@code ckpt} and checks it is a {@code rows x cols} weight matrix:
     * F32, F16, BF16, or block-quantized Q8_0 / Q4_0 (a quantized bundle's).
     */
    public static Matrix load(Checkpoint ckpt, String name, int rows, int cols) {
        Tensor t = ckpt.tensor(name);
        if (!t.dtype().isWeightType()) {
            throw new FormatException(ckpt.location(), "tensor '" + name + "' is " + t.dtype()
                    + "; llmflash computes on F32, F16, BF16, Q8_0 and Q4_0 weights",
                    "use an unquantized checkpoint, or quantize it with 'llmflash convert --quant'");
        }
        if (t.rank() != 2 || t.shape()[0] != rows || t.shape()[1] != cols) {
            throw new FormatException(ckpt.location(), "tensor '" + name + "' has shape " + Arrays.toString(t.shape())
                    + " but config.json implies [" + rows + ", " + cols + "]",
                    "the weights and config.json do not belong together");
        }
        return new Matrix(name, t.data(), t.dtype(), rows, cols);
    }

    /** Reads a 1-D tensor of length {@code n} as f32 (norm weights, biases: small, converted once). */
    public static float[] vector(Checkpoint ckpt, String name, int n) {
        Tensor t = ckpt.tensor(name);
        if (t.rank() != 1 || t.shape()[0] != n || !t.dtype().isComputeType()) {
            throw new FormatException(ckpt.location(), "tensor '" + name + "' is " + t.shapeString()
                    + " but config.json implies a float vector of " + n, "the weights and config.json do not belong together");
        }
        return t.toFloatArray();
    }

    /**
     * out = in W^T (+ bias) for m input rows of width cols: out is m x rows. One row goes through the
     * matrix-vector kernel, several through the matrix-matrix one (weights read once for all rows).
     */
    public void apply(Kernels k, float[] in, int m, float[] out, float[] bias) {
        if (m == 1) {
            k.matvec(data, dtype, rows, cols, in, out);
        } else {
            k.matmul(data, dtype, rows, cols, in, m, out);
        }
        Ops.addBias(out, m, rows, bias);
    }

    /** Like {@link #apply} without bias, writing the m x rows result at {@code out[outOff ...]}. */
    public void applyAt(Kernels k, float[] in, int m, float[] out, int outOff) {
        if (outOff == 0) {
            apply(k, in, m, out, null);
        } else {
            float[] tmp = new float[m * rows];
            apply(k, in, m, tmp, null);
            System.arraycopy(tmp, 0, out, outOff, m * rows);
        }
    }

    public long byteSize() {
        return data.byteSize();
    }
}
