package dev.llmflash.runtime.kernels;

import dev.llmflash.formats.tensor.DType;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;

import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.util.Arrays;
import java.util.List;
import java.util.concurrent.CountDownLatch;
import java.util.concurrent.atomic.AtomicReference;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;
import static org.junit.jupiter.api.Assertions.fail;

/**
 * {@link Kernels} against {@link ScalarKernels} on random data: every compute dtype, odd shapes (so
 * vector tails, the r mod 4 rows and ragged thread splits all occur), 1..4 threads both with the
 * default serial threshold and with splitting forced, weights at unaligned offsets. Gaussian data is
 * compared with a rigorous bound for reordered f32 sums; small-integer data must match exactly
 * (every partial sum is exact), which pins down any indexing mistake.
 */
class KernelsTest {
    static final DType[] DTYPES = {DType.F32, DType.F16, DType.BF16};
    static final int[] COLS = {1, 7, 31, 257, 1000};
    static final int[] ROWS = {1, 3, 5, 300};
    static final int[] MISALIGN = {0, 2, 6};
    static final float U = 0x1.0p-24f; // f32 unit roundoff

    static Arena arena;
    /** kernels[t - 1][0]: t threads, default threshold; kernels[t - 1][1]: t threads, always split. */
    static Kernels[][] kernels;

    @BeforeAll
    static void setUp() {
        arena = Arena.ofShared();
        kernels = new Kernels[4][];
        for (int t = 1; t <= 4; t++) {
            kernels[t - 1] = new Kernels[]{new Kernels(t), new Kernels(t, 0)};
        }
    }

    @AfterAll
    static void tearDown() {
        for (Kernels[] ks : kernels) {
            for (Kernels k : ks) {
                k.close();
            }
        }
        arena.close();
    }

    /**
     * |fast - oracle| <= 2 (c + 1) u sum_j |w_j x_j|: each of the two sums is within gamma_c of the
     * exact dot product whatever the order (Higham, Accuracy and Stability, eq. 3.5).
     */
    static void assertDotClose(float expected, float actual, double absSum, int c, String what) {
        double tol = 2.0 * (c + 1) * U * absSum;
        if (!(Math.abs(expected - actual) <= tol)) {
            fail(what + ": expected " + expected + ", got " + actual + " (tolerance " + tol + ")");
        }
    }

    static double absDot(MemorySegment w, DType dt, long off, float[] x, int xOff, int c) {
        double s = 0;
        for (int j = 0; j < c; j++) {
            s += Math.abs((double) ScalarKernels.load(w, dt, off + j) * x[xOff + j]);
        }
        return s;
    }

    @Test
    void matvecMatchesScalarOracle() {
        for (DType dt : DTYPES) {
            for (int c : COLS) {
                for (int r : ROWS) {
                    for (int mis : MISALIGN) {
                        MemorySegment w = Matrices.matrix(arena, dt, r, c, mis, Matrices.gaussian(r * 31L + c));
                        float[] x = Matrices.vector(c, Matrices.gaussian(c));
                        float[] want = new float[r];
                        ScalarKernels.matvec(w, dt, r, c, x, want);
                        for (Kernels[] ks : kernels) {
                            for (Kernels k : ks) {
                                float[] y = new float[r + 1];
                                y[r] = 42f;
                                k.matvec(w, dt, r, c, x, y);
                                String what = dt + " " + r + "x" + c + " +" + mis + " threads " + k.threads();
                                for (int i = 0; i < r; i++) {
                                    assertDotClose(want[i], y[i], absDot(w, dt, (long) i * c, x, 0, c), c,
                                            what + " row " + i);
                                }
                                assertEquals(42f, y[r], what + ": wrote past y[r - 1]");
                            }
                        }
                    }
                }
            }
        }
    }

    @Test
    void matvecIsExactOnSmallIntegers() {
        for (DType dt : DTYPES) {
            for (int c : COLS) {
                for (int r : ROWS) {
                    MemorySegment w = Matrices.matrix(arena, dt, r, c, 2, Matrices.integers(r + 7L * c, 3));
                    float[] x = Matrices.vector(c, Matrices.integers(c, 4));
                    float[] want = new float[r];
                    ScalarKernels.matvec(w, dt, r, c, x, want);
                    for (Kernels[] ks : kernels) {
                        for (Kernels k : ks) {
                            float[] y = new float[r];
                            k.matvec(w, dt, r, c, x, y);
                            assertArrayEquals(want, y, dt + " " + r + "x" + c + " threads " + k.threads());
                        }
                    }
                }
            }
        }
    }

    @Test
    void matvecOnLargerMatricesSplitsAcrossThreads() {
        // Above the default threshold: exercises the real parallel path with quarter-strided rows.
        for (DType dt : DTYPES) {
            int r = 1021;
            int c = 515;
            MemorySegment w = Matrices.matrix(arena, dt, r, c, 2, Matrices.integers(99, 2));
            float[] x = Matrices.vector(c, Matrices.integers(98, 3));
            float[] want = new float[r];
            ScalarKernels.matvec(w, dt, r, c, x, want);
            for (Kernels[] ks : kernels) {
                float[] y = new float[r];
                ks[0].matvec(w, dt, r, c, x, y);
                assertArrayEquals(want, y, dt + " threads " + ks[0].threads());
            }
        }
    }

    @Test
    void matmulMatchesScalarOracle() {
        for (DType dt : DTYPES) {
            for (int c : COLS) {
                for (int r : ROWS) {
                    for (int n : new int[]{1, 2, 5}) {
                        MemorySegment w = Matrices.matrix(arena, dt, r, c, 6, Matrices.gaussian(r + 3L * c + n));
                        float[] x = Matrices.vector(n * c, Matrices.gaussian(n + c));
                        float[] want = new float[n * r];
                        ScalarKernels.matmul(w, dt, r, c, x, n, want);
                        for (Kernels[] ks : kernels) {
                            for (Kernels k : ks) {
                                float[] y = new float[n * r];
                                k.matmul(w, dt, r, c, x, n, y);
                                for (int t = 0; t < n; t++) {
                                    for (int i = 0; i < r; i++) {
                                        assertDotClose(want[t * r + i], y[t * r + i],
                                                absDot(w, dt, (long) i * c, x, t * c, c), c,
                                                dt + " " + r + "x" + c + " n " + n + " threads " + k.threads()
                                                        + " Y[" + t + ", " + i + "]");
                                    }
                                }
                            }
                        }
                    }
                }
            }
        }
    }

    @Test
    void matmulIsExactOnSmallIntegers() {
        for (DType dt : DTYPES) {
            for (int c : COLS) {
                for (int r : ROWS) {
                    int n = 3;
                    MemorySegment w = Matrices.matrix(arena, dt, r, c, 2, Matrices.integers(r * 5L + c, 3));
                    float[] x = Matrices.vector(n * c, Matrices.integers(c + 1, 4));
                    float[] want = new float[n * r];
                    ScalarKernels.matmul(w, dt, r, c, x, n, want);
                    for (Kernels[] ks : kernels) {
                        for (Kernels k : ks) {
                            float[] y = new float[n * r];
                            k.matmul(w, dt, r, c, x, n, y);
                            assertArrayEquals(want, y, dt + " " + r + "x" + c + " threads " + k.threads());
                        }
                    }
                }
            }
        }
    }

    @Test
    void matmulWithNoInputsDoesNothing() {
        MemorySegment w = Matrices.matrix(arena, DType.F16, 3, 7, 0, Matrices.gaussian(1));
        float[] y = {5f};
        kernels[1][1].matmul(w, DType.F16, 3, 7, new float[0], 0, y);
        assertEquals(5f, y[0]);
    }

    @Test
    void rowIsExactConversion() {
        for (DType dt : DTYPES) {
            for (int c : COLS) {
                int r = 5;
                MemorySegment w = Matrices.matrix(arena, dt, r, c, 2, Matrices.gaussian(c));
                for (int i = 0; i < r; i++) {
                    float[] want = new float[c];
                    ScalarKernels.row(w, dt, i, c, want);
                    float[] got = new float[c + 1];
                    got[c] = 42f;
                    kernels[0][0].row(w, dt, i, c, got);
                    assertArrayEquals(want, Arrays.copyOf(got, c), dt + " row " + i + " of c " + c);
                    assertEquals(42f, got[c]);
                }
            }
        }
    }

    @Test
    void rejectsBadShapesAndTypes() {
        Kernels k = kernels[1][0];
        MemorySegment w = Matrices.matrix(arena, DType.F16, 4, 8, 0, Matrices.gaussian(1));
        assertThrows(IllegalArgumentException.class, () -> k.matvec(w, DType.F16, 5, 8, new float[8], new float[5]));
        assertThrows(IllegalArgumentException.class, () -> k.matvec(w, DType.F16, 4, 8, new float[7], new float[4]));
        assertThrows(IllegalArgumentException.class, () -> k.matvec(w, DType.F16, 4, 8, new float[8], new float[3]));
        assertThrows(IllegalArgumentException.class, () -> k.matvec(w, DType.I16, 4, 8, new float[8], new float[4]));
        assertThrows(IllegalArgumentException.class, () -> k.matmul(w, DType.F16, 4, 8, new float[15], 2, new float[8]));
        assertThrows(IllegalArgumentException.class, () -> k.matmul(w, DType.F16, 4, 8, new float[16], 2, new float[7]));
        assertThrows(IllegalArgumentException.class, () -> k.row(w, DType.F16, 4, 8, new float[8]));
        assertThrows(IllegalArgumentException.class, () -> k.row(w, DType.F16, 0, 8, new float[7]));
        assertThrows(IllegalArgumentException.class, () -> new Kernels(0));
    }

    @Test
    void rejectsConfinedWeightsWhenSplitting() {
        try (Arena confined = Arena.ofConfined()) {
            MemorySegment w = Matrices.matrix(confined, DType.F32, 8, 8, 0, Matrices.gaussian(1));
            IllegalArgumentException e = assertThrows(IllegalArgumentException.class,
                    () -> kernels[1][1].matvec(w, DType.F32, 8, 8, new float[8], new float[8]));
            assertTrue(e.getMessage().contains("shared arena"), e.getMessage());
            float[] y = new float[8];
            kernels[1][0].matvec(w, DType.F32, 8, 8, new float[8], y); // small: caller thread only
        }
    }

    @Test
    void concurrentUseIsRejected() throws Exception {
        // Two threads calling one Kernels at once must fail loudly, not corrupt results.
        try (Kernels k = new Kernels(2, 0)) {
            int r = 512;
            int c = 1024;
            MemorySegment w = Matrices.matrix(arena, DType.F32, r, c, 0, Matrices.gaussian(3));
            float[] x = Matrices.vector(c, Matrices.gaussian(4));
            CountDownLatch start = new CountDownLatch(1);
            AtomicReference<Throwable> failure = new AtomicReference<>();
            Runnable loop = () -> {
                float[] y = new float[r];
                try {
                    start.await();
                    for (int i = 0; i < 20_000 && failure.get() == null; i++) {
                        k.matvec(w, DType.F32, r, c, x, y);
                    }
                } catch (Throwable t) {
                    failure.compareAndSet(null, t);
                }
            };
            Thread a = Thread.ofPlatform().start(loop);
            Thread b = Thread.ofPlatform().start(loop);
            start.countDown();
            a.join();
            b.join();
            assertTrue(failure.get() instanceof IllegalStateException, "not detected: " + failure.get());
        }
    }

    @Test
    void closeStopsThreadsAndLaterCallsFail() throws Exception {
        Kernels k = new Kernels(3);
        List<Thread> workers = k.workerThreads();
        assertEquals(2, workers.size(), "threads - 1 workers: " + workers);
        for (Thread t : workers) {
            assertTrue(t.isDaemon() && t.isAlive() && t.getName().startsWith("llmflash-kernels-"), t.toString());
        }
        k.close();
        for (Thread t : workers) {
            t.join(5000);
            assertFalse(t.isAlive(), t.getName() + " still running after close");
        }
        MemorySegment w = Matrices.matrix(arena, DType.F32, 2, 2, 0, Matrices.gaussian(1));
        assertThrows(IllegalStateException.class, () -> k.matvec(w, DType.F32, 2, 2, new float[2], new float[2]));
        k.close(); // idempotent
    }

    @Test
    void partsCoverRowsExactlyOnce() {
        for (int r : new int[]{0, 1, 3, 5, 300, 1021}) {
            for (int parts = 1; parts <= 5; parts++) {
                assertEquals(0, Kernels.lo(r, 0, parts));
                assertEquals(r, Kernels.lo(r, parts, parts));
                for (int p = 0; p < parts; p++) {
                    int size = Kernels.lo(r, p + 1, parts) - Kernels.lo(r, p, parts);
                    assertTrue(size >= r / parts && size <= r / parts + 1, "r " + r + " part " + p + "/" + parts);
                }
            }
        }
    }
}
