package dev.llmflash.runtime.kernels;

import dev.llmflash.formats.tensor.DType;

import java.lang.foreign.MemorySegment;

/**
 * The matrix kernels the forward passes call, with the parallelism they may use (a pool of platform
 * threads owned by this object). Weight matrices are row-major {@code rows x cols} in their stored
 * dtype (F32, F16 or BF16, little-endian), exactly as HF stores a Linear weight {@code [out, in]};
 * activations are f32 arrays.
 * <p>Legend: r = rows (output features), c = cols (input features), n = number of input vectors.
 * <p>Thread-safety: one caller at a time (the forward pass); close when done.
 *
 * PLACEHOLDER IMPLEMENTATION (scalar, single-threaded): the signatures are the contract.
 */
public final class Kernels implements AutoCloseable {
    private final int threads;

    public Kernels(int threads) {
        if (threads < 1) {
            throw new IllegalArgumentException("threads must be >= 1, got " + threads);
        }
        this.threads = threads;
    }

    public int threads() {
        return threads;
    }

    /** y[i] = sum_j W[i, j] * x[j] for i in [0, r). {@code x.length >= c}, {@code y.length >= r}. */
    public void matvec(MemorySegment w, DType dt, int r, int c, float[] x, float[] y) {
        ScalarKernels.matvec(w, dt, r, c, x, y);
    }

    /**
     * Y = X W^T for n input vectors: X is n x c row-major, Y is n x r row-major,
     * Y[t, i] = sum_j W[i, j] * X[t, j]. Reads each weight row once for all n vectors (prompt
     * processing, perplexity).
     */
    public void matmul(MemorySegment w, DType dt, int r, int c, float[] x, int n, float[] y) {
        ScalarKernels.matmul(w, dt, r, c, x, n, y);
    }

    /** out[0..c) = W[row, 0..c) as f32 (embedding lookup). */
    public void row(MemorySegment w, DType dt, int row, int c, float[] out) {
        ScalarKernels.row(w, dt, row, c, out);
    }

    @Override
    public void close() {
    }
}
