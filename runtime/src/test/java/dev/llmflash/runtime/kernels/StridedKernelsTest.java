package dev.llmflash.runtime.kernels;

import dev.llmflash.formats.tensor.DType;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;

import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import java.util.SplittableRandom;
import java.util.function.DoubleSupplier;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;
import static org.junit.jupiter.api.Assertions.fail;

/**
 * The strided kernels ({@link Kernels#matvecStrided}, {@link Kernels#matmulStrided}) and the transposed
 * accumulates ({@link Kernels#matvecTransposedAcc}, {@link Kernels#matmulTransposedAcc}) against their
 * {@link ScalarKernels} twins: every compute dtype; row strides of exactly a row, a row + 2 bytes
 * (every row at another alignment) and a neuron bundle (stride 2 rows + 64 bytes, the up matrix at
 * offset 0 and the down matrix at offset one row of the same block, each tested through its slice);
 * odd shapes; 1..4 threads with the default serial threshold and with splitting forced; h with
 * zeros (random, all zero, a single non-zero, none zero); n in {1, 3, 17}. Gaussian data is compared
 * with a rigorous bound for reordered f32 sums, small integers must match exactly. Bytes outside the
 * rows are 0x7f junk (NaN or huge), and every slice ends where the last row does, so a kernel that
 * reads padding or past the end fails.
 */
class StridedKernelsTest {
    static final DType[] DTYPES = {DType.F32, DType.F16, DType.BF16};
    static final int[] COLS = {1, 7, 33, 257, 1001};
    static final int[] ROWS = {1, 3, 5, 37, 300};
    static final int[] NS = {1, 3, 17};
    static final float U = 0x1.0p-24f;

    static Arena arena;
    /** 1..4 threads, each with the default threshold and with splitting forced (threshold 0). */
    static List<Kernels> kernels;

    @BeforeAll
    static void setUp() {
        arena = Arena.ofShared();
        kernels = new ArrayList<>();
        for (int t = 1; t <= 4; t++) {
            kernels.add(new Kernels(t));
            kernels.add(new Kernels(t, 0));
        }
    }

    @AfterAll
    static void tearDown() {
        kernels.forEach(Kernels::close);
        arena.close();
    }

    /** Weights as a kernel sees them: the slice, its row stride and a name for messages. */
    record Layout(String name, MemorySegment w, long stride) {
    }

    /**
     * The four layouts of r x c matrices of dt: dense, rows padded by 2 bytes, and the up and the
     * down half of one bundle block (stride 2 c bytes + 64). Each matrix has its own values.
     */
    static List<Layout> layouts(DType dt, int r, int c, boolean integers, long seed) {
        long row = (long) c * dt.bytes();
        List<Layout> list = new ArrayList<>();
        for (long stride : new long[]{row, row + 2}) {
            MemorySegment block = Matrices.rowBlock(arena, r, stride);
            list.add(new Layout("stride " + stride, Matrices.fillRows(block, dt, r, c, stride, 0,
                    values(integers, seed + stride)), stride));
        }
        long stride = 2 * row + 64;
        MemorySegment block = Matrices.rowBlock(arena, r, stride);
        list.add(new Layout("bundle up (stride " + stride + ")",
                Matrices.fillRows(block, dt, r, c, stride, 0, values(integers, seed + 1)), stride));
        list.add(new Layout("bundle down (offset " + row + ", stride " + stride + ")",
                Matrices.fillRows(block, dt, r, c, stride, row, values(integers, seed + 2)), stride));
        return list;
    }

    static DoubleSupplier values(boolean integers, long seed) {
        return integers ? Matrices.integers(seed, 3) : Matrices.gaussian(seed);
    }

    /** Patterns of h over r rows: random with ~30% non-zero, all zero, only the last one, none zero. */
    static List<float[]> activations(int r, boolean integers, long seed) {
        DoubleSupplier v = values(integers, seed);
        SplittableRandom rnd = new SplittableRandom(seed);
        float[] sparse = new float[r];
        for (int i = 0; i < r; i++) {
            float x = (float) v.getAsDouble();
            sparse[i] = rnd.nextInt(10) < 3 ? (x == 0f ? 1f : x) : 0f;
        }
        float[] single = new float[r];
        single[r - 1] = integers ? 2f : 0.75f;
        float[] dense = new float[r];
        for (int i = 0; i < r; i++) {
            float x = (float) v.getAsDouble();
            dense[i] = x == 0f ? -1f : x;
        }
        return List.of(sparse, new float[r], single, dense);
    }

    static double absDot(Layout l, DType dt, int i, int c, float[] x, int xOff) {
        double s = 0;
        for (int j = 0; j < c; j++) {
            s += Math.abs((double) ScalarKernels.loadAt(l.w, dt, i * l.stride + (long) j * dt.bytes()) * x[xOff + j]);
        }
        return s;
    }

    /** |fast - oracle| <= 2 (terms + 1) u sum |terms| (both sums within gamma_terms of the exact one). */
    static void assertClose(float want, float got, int terms, double absSum, String what) {
        double tol = 2.0 * (terms + 1) * U * absSum;
        if (!(Math.abs(want - got) <= tol)) {
            fail(what + ": expected " + want + ", got " + got + " (tolerance " + tol + ")");
        }
    }

    @Test
    void matvecStridedMatchesScalarOracle() {
        for (boolean integers : new boolean[]{false, true}) {
            for (DType dt : DTYPES) {
                for (int c : COLS) {
                    for (int r : ROWS) {
                        for (Layout l : layouts(dt, r, c, integers, 31L * r + c)) {
                            float[] x = Matrices.vector(c, values(integers, c));
                            float[] want = new float[r];
                            ScalarKernels.matvecStrided(l.w, dt, r, c, l.stride, x, want);
                            for (Kernels k : kernels) {
                                float[] y = new float[r + 1];
                                y[r] = 42f;
                                k.matvecStrided(l.w, dt, r, c, l.stride, x, y);
                                String what = dt + " " + r + "x" + c + " " + l.name + " threads " + k.threads();
                                if (integers) {
                                    assertArrayEquals(want, Arrays.copyOf(y, r), what);
                                } else {
                                    for (int i = 0; i < r; i++) {
                                        assertClose(want[i], y[i], c, absDot(l, dt, i, c, x, 0), what + " row " + i);
                                    }
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
    void matmulStridedMatchesScalarOracle() {
        for (boolean integers : new boolean[]{false, true}) {
            for (DType dt : DTYPES) {
                for (int c : COLS) {
                    for (int r : ROWS) {
                        for (int n : NS) {
                            for (Layout l : layouts(dt, r, c, integers, 7L * r + c + n)) {
                                float[] x = Matrices.vector(n * c, values(integers, n + c));
                                float[] want = new float[n * r];
                                ScalarKernels.matmulStrided(l.w, dt, r, c, l.stride, x, n, want);
                                for (Kernels k : kernels) {
                                    float[] y = new float[n * r];
                                    k.matmulStrided(l.w, dt, r, c, l.stride, x, n, y);
                                    String what = dt + " " + r + "x" + c + " n " + n + " " + l.name + " threads "
                                            + k.threads();
                                    if (integers) {
                                        assertArrayEquals(want, y, what);
                                        continue;
                                    }
                                    for (int t = 0; t < n; t++) {
                                        for (int i = 0; i < r; i++) {
                                            assertClose(want[t * r + i], y[t * r + i], c,
                                                    absDot(l, dt, i, c, x, t * c), what + " Y[" + t + ", " + i + "]");
                                        }
                                    }
                                }
                            }
                        }
                    }
                }
            }
        }
    }

    /**
     * Checks y (after the fast kernel) against want (after the oracle), both starting from y0: exact
     * for integers, else within the bound for the terms[t] + 1 summands of each entry.
     */
    static void assertAccumulated(Layout l, DType dt, int r, int c, float[] h, int n, float[] y0, float[] want,
                                  float[] y, boolean integers, String what) {
        if (integers) {
            assertArrayEquals(want, Arrays.copyOf(y, n * c), what);
            return;
        }
        for (int t = 0; t < n; t++) {
            for (int j = 0; j < c; j++) {
                double abs = Math.abs(y0[t * c + j]);
                int terms = 1;
                for (int i = 0; i < r; i++) {
                    float hi = h[t * r + i];
                    if (hi != 0f) {
                        abs += Math.abs((double) hi * ScalarKernels.loadAt(l.w, dt, i * l.stride + (long) j * dt.bytes()));
                        terms++;
                    }
                }
                assertClose(want[t * c + j], y[t * c + j], terms, abs, what + " Y[" + t + ", " + j + "]");
            }
        }
    }

    @Test
    void matvecTransposedAccMatchesScalarOracle() {
        for (boolean integers : new boolean[]{false, true}) {
            for (DType dt : DTYPES) {
                for (int c : COLS) {
                    for (int r : ROWS) {
                        List<float[]> hs = activations(r, integers, 5L * r + c);
                        for (Layout l : layouts(dt, r, c, integers, 11L * r + c)) {
                            for (int p = 0; p < hs.size(); p++) {
                                float[] h = hs.get(p);
                                float[] y0 = Matrices.vector(c, values(integers, r + c + p));
                                float[] want = y0.clone();
                                ScalarKernels.matvecTransposedAcc(l.w, dt, r, c, l.stride, h, want);
                                for (Kernels k : kernels) {
                                    float[] y = Arrays.copyOf(y0, c + 1);
                                    y[c] = 42f;
                                    k.matvecTransposedAcc(l.w, dt, r, c, l.stride, h, y);
                                    String what = dt + " " + r + "x" + c + " " + l.name + " h pattern " + p
                                            + " threads " + k.threads();
                                    assertAccumulated(l, dt, r, c, h, 1, y0, want, y, integers, what);
                                    assertEquals(42f, y[c], what + ": wrote past y[c - 1]");
                                }
                            }
                        }
                    }
                }
            }
        }
    }

    @Test
    void matmulTransposedAccMatchesScalarOracle() {
        for (boolean integers : new boolean[]{false, true}) {
            for (DType dt : DTYPES) {
                for (int c : COLS) {
                    for (int r : ROWS) {
                        for (int n : NS) {
                            // Token t gets pattern t mod 4: mixed sparse, all-zero, single and dense rows of H.
                            List<float[]> hs = activations(r, integers, 3L * r + c + n);
                            float[] h = new float[n * r];
                            for (int t = 0; t < n; t++) {
                                float[] ht = t < 4 ? hs.get(t) : activations(r, integers, t).get(t % 4);
                                System.arraycopy(ht, 0, h, t * r, r);
                            }
                            for (Layout l : layouts(dt, r, c, integers, 13L * r + c + n)) {
                                float[] y0 = Matrices.vector(n * c, values(integers, r + c + n));
                                float[] want = y0.clone();
                                ScalarKernels.matmulTransposedAcc(l.w, dt, r, c, l.stride, h, n, want);
                                for (Kernels k : kernels) {
                                    float[] y = Arrays.copyOf(y0, n * c + 1);
                                    y[n * c] = 42f;
                                    k.matmulTransposedAcc(l.w, dt, r, c, l.stride, h, n, y);
                                    String what = dt + " " + r + "x" + c + " n " + n + " " + l.name + " threads "
                                            + k.threads();
                                    assertAccumulated(l, dt, r, c, h, n, y0, want, y, integers, what);
                                    assertEquals(42f, y[n * c], what + ": wrote past Y");
                                }
                            }
                        }
                    }
                }
            }
        }
    }

    /**
     * Rows whose h is zero are not read: here they hold NaN, and y must still match the oracle (which
     * skips them) exactly. Also with a matrix big enough to split by default.
     */
    @Test
    void transposedSkipsRowsWithZeroActivation() {
        for (DType dt : DTYPES) {
            for (int[] shape : new int[][]{{37, 257}, {600, 300}}) {
                int r = shape[0];
                int c = shape[1];
                long stride = 2L * c * dt.bytes() + 64;
                MemorySegment w = Matrices.fillRows(Matrices.rowBlock(arena, r, stride), dt, r, c, stride, 0,
                        Matrices.integers(r, 3));
                int n = 3;
                float[] h = new float[n * r];
                for (int i = 0; i < r; i++) {
                    if (i % 7 == 3) {
                        h[i] = 1f + i % 3;              // token 0: every 7th row
                    } else if (i % 5 == 1) {
                        h[2 * r + i] = -2f;             // token 2: others; token 1: none
                    } else {
                        for (int j = 0; j < c; j++) {
                            Matrices.storeAt(w, dt, i * stride + (long) j * dt.bytes(), Float.NaN);
                        }
                    }
                }
                float[] y0 = Matrices.vector(n * c, Matrices.integers(c, 4));
                float[] want = y0.clone();
                ScalarKernels.matmulTransposedAcc(w, dt, r, c, stride, h, n, want);
                for (float v : want) {
                    assertTrue(Float.isFinite(v), "oracle read a skipped row");
                }
                for (Kernels k : kernels) {
                    float[] y = y0.clone();
                    k.matmulTransposedAcc(w, dt, r, c, stride, h, n, y);
                    assertArrayEquals(want, y, dt + " " + r + "x" + c + " matmul threads " + k.threads());
                    float[] y1 = Arrays.copyOf(y0, c);
                    k.matvecTransposedAcc(w, dt, r, c, stride, h, y1);
                    assertArrayEquals(Arrays.copyOf(want, c), y1, dt + " " + r + "x" + c + " matvec threads "
                            + k.threads());
                }
            }
        }
    }

    /**
     * An Inf or NaN weight in an active row reaches y as IEEE arithmetic says, for every dtype, thread
     * count and both n = 1 and n = 2 (f16 flags e = 31 in the vector loops and redoes the sum exactly).
     * One special weight per matrix, so that each place must be caught on its own: in a 4-row group
     * (rows 0 and 4 of the 10 active), in a row past the last group (row 10), in a tail column (96 of
     * 97); finite columns stay exact.
     */
    @Test
    void transposedPropagatesInfAndNan() {
        int r = 11;
        int c = 97; // 3 blocks of 32 + a tail column
        float[][] specials = {{0, 3, Float.POSITIVE_INFINITY}, {4, 40, Float.NEGATIVE_INFINITY},
                {10, 64, Float.NaN}, {2, 96, Float.NaN}, {5, 17, Float.NaN}};
        for (DType dt : DTYPES) {
            long stride = (long) c * dt.bytes() + 2;
            for (float[] special : specials) {
                int row = (int) special[0];
                int col = (int) special[1];
                MemorySegment w = Matrices.fillRows(Matrices.rowBlock(arena, r, stride), dt, r, c, stride, 0,
                        Matrices.integers(9, 2));
                Matrices.storeAt(w, dt, row * stride + (long) col * dt.bytes(), special[2]);
                for (int n : new int[]{1, 2}) {
                    float[] h = new float[n * r];
                    Arrays.fill(h, 1f);
                    h[7] = 0f;
                    h[(n - 1) * r + 7] = 0f;
                    float[] want = new float[n * c];
                    ScalarKernels.matmulTransposedAcc(w, dt, r, c, stride, h, n, want);
                    for (Kernels k : kernels) {
                        float[] y = new float[n * c];
                        k.matmulTransposedAcc(w, dt, r, c, stride, h, n, y);
                        for (int t = 0; t < n; t++) {
                            String what = dt + " W[" + row + ", " + col + "] = " + special[2] + " n " + n
                                    + " threads " + k.threads() + " Y[" + t + ", " + col + "]";
                            assertEquals(special[2], y[t * c + col], 0f, what);
                        }
                        for (int j = 0; j < n * c; j++) {
                            if (j % c != col) {
                                assertEquals(want[j], y[j], 0f, dt + " n " + n + " column " + j % c);
                            }
                        }
                    }
                }
            }
        }
    }

    /**
     * The matmul forms convert four rows at a time with the e = 31 flag (f16) and redo them exactly:
     * an Inf and a NaN weight (rows 1 and 6 of 9: both in 4-row groups) reach Y, other rows stay exact.
     */
    @Test
    void matmulStridedPropagatesInfAndNan() {
        int r = 9;
        int c = 40;
        int n = 2;
        for (DType dt : DTYPES) {
            long stride = (long) c * dt.bytes() + 6;
            MemorySegment w = Matrices.fillRows(Matrices.rowBlock(arena, r, stride), dt, r, c, stride, 0,
                    Matrices.integers(3, 2));
            Matrices.storeAt(w, dt, stride + 17L * dt.bytes(), Float.POSITIVE_INFINITY);
            Matrices.storeAt(w, dt, 6 * stride + 2L * dt.bytes(), Float.NaN);
            float[] x = new float[n * c];
            Arrays.fill(x, 1f);
            float[] want = new float[n * r];
            ScalarKernels.matmulStrided(w, dt, r, c, stride, x, n, want);
            for (Kernels k : kernels) {
                float[] y = new float[n * r];
                k.matmulStrided(w, dt, r, c, stride, x, n, y);
                for (int t = 0; t < n; t++) {
                    String what = dt + " threads " + k.threads() + " t " + t;
                    assertEquals(Float.POSITIVE_INFINITY, y[t * r + 1], what);
                    assertTrue(Float.isNaN(y[t * r + 6]), what + ": " + y[t * r + 6]);
                    for (int i : new int[]{0, 2, 3, 4, 5, 7, 8}) {
                        assertEquals(want[t * r + i], y[t * r + i], 0f, what + " row " + i);
                    }
                }
            }
        }
    }

    /** NaN activations are non-zero (Java's !=) and reach y; -0 activations are skipped like +0. */
    @Test
    void transposedActivationsFollowJavaComparison() {
        int r = 40;
        int c = 64;
        MemorySegment w = Matrices.fillRows(Matrices.rowBlock(arena, r, 2L * c), DType.F16, r, c, 2L * c, 0,
                Matrices.integers(4, 2));
        float[] h = new float[r];
        h[17] = Float.NaN;
        h[20] = -0f;
        for (Kernels k : kernels) {
            float[] y = new float[c];
            k.matvecTransposedAcc(w, DType.F16, r, c, 2L * c, h, y);
            for (int j = 0; j < c; j++) {
                assertTrue(Float.isNaN(y[j]), "column " + j + " threads " + k.threads());
            }
            h[17] = 0f;
            float[] z = new float[c];
            k.matvecTransposedAcc(w, DType.F16, r, c, 2L * c, h, z);
            assertArrayEquals(new float[c], z, "-0 activation must be skipped");
            h[17] = Float.NaN;
        }
    }

    @Test
    void rejectsBadStridesAndShapes() {
        Kernels k = kernels.get(3);
        int r = 4;
        int c = 8;
        long stride = 40; // > 8 f16 = 16 bytes
        MemorySegment w = Matrices.fillRows(Matrices.rowBlock(arena, r, stride), DType.F16, r, c, stride, 0,
                Matrices.integers(1, 2));
        assertEquals(3 * stride + 16, w.byteSize(), "the last row needs no padding");
        float[] x = new float[c];
        float[] y = new float[r];
        k.matvecStrided(w, DType.F16, r, c, stride, x, y);
        assertThrows(IllegalArgumentException.class, () -> k.matvecStrided(w, DType.F16, r, c, 15, x, y));
        assertThrows(IllegalArgumentException.class, () -> k.matvecStrided(w, DType.F16, r, c, -2, x, y));
        assertThrows(IllegalArgumentException.class, () -> k.matvecStrided(w, DType.F16, r, c, stride + 1, x, y));
        assertThrows(IllegalArgumentException.class, () -> k.matvecStrided(w, DType.F16, r + 1, c, stride, x, y));
        assertThrows(IllegalArgumentException.class,
                () -> k.matvecStrided(w, DType.F16, r, c, Long.MAX_VALUE / 2, x, y));
        assertThrows(IllegalArgumentException.class, () -> k.matvecStrided(w, DType.F16, r, c, stride, new float[7], y));
        assertThrows(IllegalArgumentException.class, () -> k.matvecStrided(w, DType.F16, r, c, stride, x, new float[3]));
        assertThrows(IllegalArgumentException.class, () -> k.matvecStrided(w, DType.I16, r, c, stride, x, y));
        assertThrows(IllegalArgumentException.class,
                () -> k.matmulStrided(w, DType.F16, r, c, stride, new float[2 * c - 1], 2, new float[2 * r]));
        assertThrows(IllegalArgumentException.class,
                () -> k.matmulStrided(w, DType.F16, r, c, stride, x, -1, y));
        float[] h = new float[r];
        float[] acc = new float[c];
        k.matvecTransposedAcc(w, DType.F16, r, c, stride, h, acc);
        assertThrows(IllegalArgumentException.class, () -> k.matvecTransposedAcc(w, DType.F16, r, c, 15, h, acc));
        assertThrows(IllegalArgumentException.class,
                () -> k.matvecTransposedAcc(w, DType.F16, r + 1, c, stride, new float[r + 1], acc));
        assertThrows(IllegalArgumentException.class,
                () -> k.matvecTransposedAcc(w, DType.F16, r, c, stride, new float[r - 1], acc));
        assertThrows(IllegalArgumentException.class,
                () -> k.matvecTransposedAcc(w, DType.F16, r, c, stride, h, new float[c - 1]));
        assertThrows(IllegalArgumentException.class,
                () -> k.matmulTransposedAcc(w, DType.F16, r, c, stride, new float[2 * r - 1], 2, new float[2 * c]));
        assertThrows(IllegalArgumentException.class,
                () -> k.matmulTransposedAcc(w, DType.F16, r, c, stride, new float[2 * r], 2, new float[2 * c - 1]));
        assertThrows(IllegalArgumentException.class,
                () -> k.matmulTransposedAcc(w, DType.F16, r, c, stride, h, -1, acc));
        float[] untouched = {5f};
        k.matmulTransposedAcc(w, DType.F16, r, c, stride, new float[0], 0, untouched);
        assertEquals(5f, untouched[0]);
    }
}
