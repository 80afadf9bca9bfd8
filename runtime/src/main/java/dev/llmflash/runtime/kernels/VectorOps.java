package dev.llmflash.runtime.kernels;

import jdk.incubator.vector.FloatVector;
import jdk.incubator.vector.VectorOperators;
import jdk.incubator.vector.VectorSpecies;

/**
 * Small vectorized f32 helpers for the forward pass (attention scores, residual adds). Each has a
 * scalar twin in {@link ScalarKernels} that tests compare against.
 * <p>Legend: n = element count, {@code aOff}/{@code bOff}/{@code xOff}/{@code yOff} = start indices,
 * L = lanes per vector. Tails ({@code n mod L}) run scalar.
 * <p>Thread-safety: stateless; safe from any thread on disjoint or read-only arrays.
 */
public final class VectorOps {
    private static final VectorSpecies<Float> F = FloatVector.SPECIES_PREFERRED;
    private static final int L = F.length();

    private VectorOps() {
    }

    /** sum_k a[aOff + k] * b[bOff + k] for k in [0, n), summed in FMA lanes (order differs from scalar). */
    public static float dot(float[] a, int aOff, float[] b, int bOff, int n) {
        FloatVector s0 = FloatVector.zero(F);
        FloatVector s1 = FloatVector.zero(F);
        int k = 0;
        for (int bound = n - 2 * L; k <= bound; k += 2 * L) {
            s0 = FloatVector.fromArray(F, a, aOff + k).fma(FloatVector.fromArray(F, b, bOff + k), s0);
            s1 = FloatVector.fromArray(F, a, aOff + k + L).fma(FloatVector.fromArray(F, b, bOff + k + L), s1);
        }
        for (int bound = F.loopBound(n); k < bound; k += L) {
            s0 = FloatVector.fromArray(F, a, aOff + k).fma(FloatVector.fromArray(F, b, bOff + k), s0);
        }
        float s = s0.add(s1).reduceLanes(VectorOperators.ADD);
        for (; k < n; k++) {
            s += a[aOff + k] * b[bOff + k];
        }
        return s;
    }

    /** y[yOff + k] += a * x[xOff + k] for k in [0, n) (fused multiply-add per element). */
    public static void axpy(float a, float[] x, int xOff, float[] y, int yOff, int n) {
        FloatVector av = FloatVector.broadcast(F, a);
        int k = 0;
        for (int bound = F.loopBound(n); k < bound; k += L) {
            FloatVector.fromArray(F, x, xOff + k).fma(av, FloatVector.fromArray(F, y, yOff + k))
                    .intoArray(y, yOff + k);
        }
        for (; k < n; k++) {
            y[yOff + k] = Math.fma(a, x[xOff + k], y[yOff + k]);
        }
    }

    /** y[k] += x[k] for k in [0, n). */
    public static void add(float[] y, float[] x, int n) {
        int k = 0;
        for (int bound = F.loopBound(n); k < bound; k += L) {
            FloatVector.fromArray(F, y, k).add(FloatVector.fromArray(F, x, k)).intoArray(y, k);
        }
        for (; k < n; k++) {
            y[k] += x[k];
        }
    }
}
