package dev.llmflash.runtime.kernels;

import org.junit.jupiter.api.Test;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.fail;

/** {@link VectorOps} against its scalar twins in {@link ScalarKernels}, odd lengths and offsets. */
class VectorOpsTest {
    static final int[] SIZES = {0, 1, 7, 16, 31, 257, 1000};
    static final float U = 0x1.0p-24f;

    @Test
    void dotMatchesScalar() {
        for (int n : SIZES) {
            for (int aOff : new int[]{0, 3}) {
                float[] a = Matrices.vector(n + aOff + 2, Matrices.gaussian(n));
                float[] b = Matrices.vector(n + 5, Matrices.gaussian(n + 1));
                float want = ScalarKernels.dot(a, aOff, b, 5 - aOff > 0 ? 5 - aOff : 0, n);
                float got = VectorOps.dot(a, aOff, b, 5 - aOff > 0 ? 5 - aOff : 0, n);
                double abs = 0;
                for (int k = 0; k < n; k++) {
                    abs += Math.abs((double) a[aOff + k] * b[(5 - aOff > 0 ? 5 - aOff : 0) + k]);
                }
                double tol = 2.0 * (n + 1) * U * abs;
                if (!(Math.abs(want - got) <= tol)) {
                    fail("n " + n + " aOff " + aOff + ": expected " + want + ", got " + got + " (tol " + tol + ")");
                }
                // Integers: exact in any order.
                float[] ia = Matrices.vector(n + aOff, Matrices.integers(n, 5));
                float[] ib = Matrices.vector(n, Matrices.integers(n + 2, 5));
                assertEquals(ScalarKernels.dot(ia, aOff, ib, 0, n), VectorOps.dot(ia, aOff, ib, 0, n), 0f, "n " + n);
            }
        }
    }

    @Test
    void axpyMatchesScalar() {
        for (int n : SIZES) {
            float[] x = Matrices.vector(n + 4, Matrices.gaussian(n));
            float[] y0 = Matrices.vector(n + 6, Matrices.gaussian(n + 9));
            float[] want = y0.clone();
            float[] got = y0.clone();
            ScalarKernels.axpy(-0.75f, x, 4, want, 1, n);
            VectorOps.axpy(-0.75f, x, 4, got, 1, n);
            for (int k = 0; k < got.length; k++) {
                // One rounding (fma) vs two (mul, add): at most one ulp of each operand's scale apart.
                double tol = 2 * U * (Math.abs(y0[k]) + (k >= 1 && k <= n ? 0.75 * Math.abs(x[k + 3]) : 0));
                if (!(Math.abs(want[k] - got[k]) <= tol)) {
                    fail("n " + n + " index " + k + ": expected " + want[k] + ", got " + got[k]);
                }
            }
            assertEquals(y0[0], got[0], 0f, "wrote before yOff");
            for (int k = n + 1; k < got.length; k++) {
                assertEquals(y0[k], got[k], 0f, "wrote past yOff + n");
            }
        }
    }

    @Test
    void addMatchesScalarExactly() {
        for (int n : SIZES) {
            float[] x = Matrices.vector(n + 3, Matrices.gaussian(n));
            float[] y0 = Matrices.vector(n + 3, Matrices.gaussian(n + 1));
            float[] want = y0.clone();
            float[] got = y0.clone();
            ScalarKernels.add(want, x, n);
            VectorOps.add(got, x, n);
            assertArrayEquals(want, got, "n " + n);
        }
    }
}
