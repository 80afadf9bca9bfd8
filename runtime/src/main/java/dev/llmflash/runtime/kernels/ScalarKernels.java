package dev.llmflash.runtime.kernels;

import dev.llmflash.formats.tensor.DType;
import dev.llmflash.formats.tensor.Quant;

import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;

/**
 * Plain scalar loops: the oracle every fast kernel is tested against. Same contracts as
 * {@link Kernels}. Legend: r = rows, c = cols, n = vectors.
 */
public final class ScalarKernels {
    private ScalarKernels() {
    }

    /**
     * Weight j of the row of c weights that starts at byte {@code rowBase}: any dtype, the quantized
     * ones through {@link Quant#get} (the definition every kernel is held to).
     */
    public static float at(MemorySegment w, DType dt, long rowBase, int c, int j) {
        return dt.isQuantized() ? Quant.get(w, dt, rowBase, c, j) : loadAt(w, dt, rowBase + (long) j * dt.bytes());
    }

    /** Element {@code i} of a weight segment, as f32 (plain dtypes). */
    public static float load(MemorySegment w, DType dt, long i) {
        return switch (dt) {
            case F32 -> w.getAtIndex(ValueLayout.JAVA_FLOAT_UNALIGNED, i);
            case F16 -> Float.float16ToFloat(w.getAtIndex(ValueLayout.JAVA_SHORT_UNALIGNED, i));
            case BF16 -> Float.intBitsToFloat((w.getAtIndex(ValueLayout.JAVA_SHORT_UNALIGNED, i) & 0xffff) << 16);
            default -> throw new IllegalArgumentException("kernels compute on F32, F16, BF16; got " + dt);
        };
    }

    /** The element starting at byte {@code b} of a weight segment (any alignment), as f32. */
    public static float loadAt(MemorySegment w, DType dt, long b) {
        return switch (dt) {
            case F32 -> w.get(ValueLayout.JAVA_FLOAT_UNALIGNED, b);
            case F16 -> Float.float16ToFloat(w.get(ValueLayout.JAVA_SHORT_UNALIGNED, b));
            case BF16 -> Float.intBitsToFloat((w.get(ValueLayout.JAVA_SHORT_UNALIGNED, b) & 0xffff) << 16);
            default -> throw new IllegalArgumentException("kernels compute on F32, F16, BF16; got " + dt);
        };
    }

    public static float dot(MemorySegment w, DType dt, long offset, float[] x, int xOff, int c) {
        float s = 0f;
        for (int j = 0; j < c; j++) {
            s += load(w, dt, offset + j) * x[xOff + j];
        }
        return s;
    }

    public static void matvec(MemorySegment w, DType dt, int r, int c, float[] x, float[] y) {
        matvecStrided(w, dt, r, c, dt.rowBytes(c), x, y);
    }

    public static void matmul(MemorySegment w, DType dt, int r, int c, float[] x, int n, float[] y) {
        matmulStrided(w, dt, r, c, dt.rowBytes(c), x, n, y);
    }

    /** Twin of {@link Kernels#matvecStrided}: row i starts at byte i * stride. */
    public static void matvecStrided(MemorySegment w, DType dt, int r, int c, long stride, float[] x, float[] y) {
        for (int i = 0; i < r; i++) {
            float s = 0f;
            for (int j = 0; j < c; j++) {
                s += at(w, dt, i * stride, c, j) * x[j];
            }
            y[i] = s;
        }
    }

    /** Twin of {@link Kernels#matmulStrided}. */
    public static void matmulStrided(MemorySegment w, DType dt, int r, int c, long stride, float[] x, int n,
                                     float[] y) {
        for (int t = 0; t < n; t++) {
            for (int i = 0; i < r; i++) {
                float s = 0f;
                for (int j = 0; j < c; j++) {
                    s += at(w, dt, i * stride, c, j) * x[t * c + j];
                }
                y[t * r + i] = s;
            }
        }
    }

    /** Twin of {@link Kernels#matvecTransposedAcc}: y[j] += h[i] * W[i, j], rows in order, h[i] == 0 skipped. */
    public static void matvecTransposedAcc(MemorySegment w, DType dt, int r, int c, long stride, float[] h,
                                           float[] y) {
        for (int i = 0; i < r; i++) {
            if (h[i] != 0f) {
                for (int j = 0; j < c; j++) {
                    y[j] += h[i] * at(w, dt, i * stride, c, j);
                }
            }
        }
    }

    /** Twin of {@link Kernels#matmulTransposedAcc}. */
    public static void matmulTransposedAcc(MemorySegment w, DType dt, int r, int c, long stride, float[] h, int n,
                                           float[] y) {
        for (int t = 0; t < n; t++) {
            for (int i = 0; i < r; i++) {
                float hi = h[t * r + i];
                if (hi != 0f) {
                    for (int j = 0; j < c; j++) {
                        y[t * c + j] += hi * at(w, dt, i * stride, c, j);
                    }
                }
            }
        }
    }

    /** Twin of {@link Kernels#matvecGather}: y[k] = dot(row rows[k], x), row i at byte i * stride. */
    public static void matvecGather(MemorySegment w, DType dt, int c, long stride, int[] rows, int count, float[] x,
                                    float[] y) {
        for (int k = 0; k < count; k++) {
            float s = 0f;
            for (int j = 0; j < c; j++) {
                s += at(w, dt, rows[k] * stride, c, j) * x[j];
            }
            y[k] = s;
        }
    }

    /** Twin of {@link Kernels#accumulateGather}: y[j] += hv[k] * W[rows[k], j], list order, hv[k] == 0 skipped. */
    public static void accumulateGather(MemorySegment w, DType dt, int c, long stride, int[] rows, float[] hv,
                                        int count, float[] y) {
        for (int k = 0; k < count; k++) {
            if (hv[k] != 0f) {
                for (int j = 0; j < c; j++) {
                    y[j] += hv[k] * at(w, dt, rows[k] * stride, c, j);
                }
            }
        }
    }

    /**
     * Twin of {@link Kernels#sparseBundleFfn}: per token t and k in [rowStart[t], rowStart[t + 1]),
     * a = max(dot(up(rows[k]), X[t]) + bias, 0), Y[t] += a down(rows[k]) unless a == 0.
     */
    public static void sparseBundleFfn(MemorySegment w, DType dt, int c, long stride, long downOffset, int n,
                                       int[] rowStart, int[] rows, float[] bias, int biasOff, float[] x,
                                       float[] out) {
        for (int t = 0; t < n; t++) {
            for (int k = rowStart[t]; k < rowStart[t + 1]; k++) {
                int r = rows[k];
                float s = 0f;
                for (int j = 0; j < c; j++) {
                    s += at(w, dt, r * stride, c, j) * x[t * c + j];
                }
                if (bias != null) {
                    s += bias[biasOff + r];
                }
                float a = Math.max(s, 0f);
                if (a != 0f) {
                    for (int j = 0; j < c; j++) {
                        out[t * c + j] += a * at(w, dt, r * stride + downOffset, c, j);
                    }
                }
            }
        }
    }

    public static void row(MemorySegment w, DType dt, int row, int c, float[] out) {
        if (dt.isQuantized()) {
            Quant.dequantizeRow(w, dt, row * dt.rowBytes(c), c, out, 0);
            return;
        }
        long base = (long) row * c;
        for (int j = 0; j < c; j++) {
            out[j] = load(w, dt, base + j);
        }
    }

    /** Twin of {@link VectorOps#dot}. */
    public static float dot(float[] a, int aOff, float[] b, int bOff, int n) {
        float s = 0f;
        for (int k = 0; k < n; k++) {
            s += a[aOff + k] * b[bOff + k];
        }
        return s;
    }

    /** Twin of {@link VectorOps#axpy}: y += a * x. */
    public static void axpy(float a, float[] x, int xOff, float[] y, int yOff, int n) {
        for (int k = 0; k < n; k++) {
            y[yOff + k] += a * x[xOff + k];
        }
    }

    /** Twin of {@link VectorOps#add}: y += x. */
    public static void add(float[] y, float[] x, int n) {
        for (int k = 0; k < n; k++) {
            y[k] += x[k];
        }
    }
}
