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
 * The row-list kernels ({@link Kernels#matvecGather}, {@link Kernels#accumulateGather}) and the
 * prefill bundle FFN ({@link Kernels#sparseBundleFfn}) against their {@link ScalarKernels} twins:
 * every compute dtype; c of 1, 7 (below a vector), 33 and 257 (vector blocks plus a tail); counts 0, 1
 * and odd ones (the 4-row groups and their leftovers); row lists in random order with repeats; row
 * strides of a row, a row + 2 bytes and a bundle (2 rows + 64 bytes, the down column at one row's
 * offset); 1 and 2 threads with the default serial threshold and with splitting forced. Small-integer
 * data must match exactly (every partial sum is exact in f32, so an indexing slip shows), Gaussian data
 * within 1e-5 of the magnitude (the sum of |terms|). Padding bytes are 0x7f junk (f16 NaN, huge
 * f32/bf16), so reading outside a row shows.
 */
class GatherKernelsTest {
    static final DType[] DTYPES = {DType.F32, DType.F16, DType.BF16};
    static final int[] COLS = {1, 7, 33, 257};
    static final int[] COUNTS = {0, 1, 3, 5, 17, 40};
    static final double REL = 1e-5;

    static Arena arena;
    static List<Kernels> kernels;

    @BeforeAll
    static void setUp() {
        arena = Arena.ofShared();
        kernels = new ArrayList<>();
        for (int t = 1; t <= 2; t++) {
            kernels.add(new Kernels(t));
            kernels.add(new Kernels(t, 0));
        }
    }

    @AfterAll
    static void tearDown() {
        kernels.forEach(Kernels::close);
        arena.close();
    }

    static DoubleSupplier values(boolean integers, long seed) {
        return integers ? Matrices.integers(seed, 3) : Matrices.gaussian(seed);
    }

    /** Row strides for rows of c elements of dt: dense, padded by 2 bytes, a bundle. */
    static long[] strides(DType dt, int c) {
        long row = (long) c * dt.bytes();
        return new long[]{row, row + 2, 2 * row + 64};
    }

    static float w(MemorySegment w, DType dt, long b, int j) {
        return ScalarKernels.loadAt(w, dt, b + (long) j * dt.bytes());
    }

    /** |want - got| <= REL * magnitude, an Inf or NaN want matched exactly (NaN by NaN). */
    static void assertClose(float want, float got, double magnitude, String what) {
        if (!Float.isFinite(want) || !Float.isFinite(got)) {
            if (Float.isNaN(want) ? !Float.isNaN(got) : want != got) {
                fail(what + ": expected " + want + ", got " + got);
            }
            return;
        }
        double tol = REL * magnitude;
        if (!(Math.abs(want - got) <= tol)) {
            fail(what + ": expected " + want + ", got " + got + " (tolerance " + tol + ")");
        }
    }

    static int[] randomRows(SplittableRandom rnd, int count, int r) {
        int[] rows = new int[count + 2];
        for (int k = 0; k < rows.length; k++) {
            rows[k] = rnd.nextInt(r); // any order, repeats; the 2 extra entries are past count
        }
        if (count > 2) {
            rows[count - 1] = rows[0]; // a repeat for sure
        }
        return rows;
    }

    @Test
    void matvecGatherMatchesScalarOracle() {
        int r = 50;
        for (boolean integers : new boolean[]{false, true}) {
            for (DType dt : DTYPES) {
                for (int c : COLS) {
                    for (long stride : strides(dt, c)) {
                        MemorySegment w = Matrices.fillRows(Matrices.rowBlock(arena, r, stride), dt, r, c, stride, 0,
                                values(integers, 3L * c + stride));
                        float[] x = Matrices.vector(c, values(integers, c + 1));
                        for (int count : COUNTS) {
                            int[] rows = randomRows(new SplittableRandom(count * 31L + c), count, r);
                            float[] want = new float[count];
                            ScalarKernels.matvecGather(w, dt, c, stride, rows, count, x, want);
                            for (Kernels k : kernels) {
                                float[] y = new float[count + 1];
                                y[count] = 42f;
                                k.matvecGather(w, dt, c, stride, rows, count, x, y);
                                String what = dt + " c " + c + " stride " + stride + " count " + count + " threads "
                                        + k.threads() + (integers ? " integers" : "");
                                assertEquals(42f, y[count], what + ": wrote past y[count - 1]");
                                if (integers) {
                                    assertArrayEquals(want, Arrays.copyOf(y, count), what);
                                    continue;
                                }
                                for (int i = 0; i < count; i++) {
                                    double mag = 0;
                                    for (int j = 0; j < c; j++) {
                                        mag += Math.abs((double) w(w, dt, rows[i] * stride, j) * x[j]);
                                    }
                                    assertClose(want[i], y[i], mag, what + " y[" + i + "]");
                                }
                            }
                        }
                    }
                }
            }
        }
    }

    @Test
    void accumulateGatherMatchesScalarOracle() {
        int r = 50;
        for (boolean integers : new boolean[]{false, true}) {
            for (DType dt : DTYPES) {
                for (int c : COLS) {
                    for (long stride : strides(dt, c)) {
                        MemorySegment w = Matrices.fillRows(Matrices.rowBlock(arena, r, stride), dt, r, c, stride, 0,
                                values(integers, 5L * c + stride));
                        for (int count : COUNTS) {
                            SplittableRandom rnd = new SplittableRandom(count * 17L + c);
                            int[] rows = randomRows(rnd, count, r);
                            float[] hv = Matrices.vector(count, values(integers, count + c));
                            for (int k = 0; k < count; k++) {
                                if (rnd.nextInt(4) == 0) {
                                    hv[k] = 0f; // ReLU zeros: skipped
                                }
                            }
                            float[] y0 = Matrices.vector(c, values(integers, 7L * c));
                            float[] want = y0.clone();
                            ScalarKernels.accumulateGather(w, dt, c, stride, rows, hv, count, want);
                            for (Kernels k : kernels) {
                                float[] y = Arrays.copyOf(y0, c + 1);
                                y[c] = 42f;
                                k.accumulateGather(w, dt, c, stride, rows, hv, count, y);
                                String what = dt + " c " + c + " stride " + stride + " count " + count + " threads "
                                        + k.threads() + (integers ? " integers" : "");
                                assertEquals(42f, y[c], what + ": wrote past y[c - 1]");
                                if (integers) {
                                    assertArrayEquals(want, Arrays.copyOf(y, c), what);
                                    continue;
                                }
                                for (int j = 0; j < c; j++) {
                                    double mag = Math.abs(y0[j]);
                                    for (int i = 0; i < count; i++) {
                                        mag += Math.abs((double) hv[i] * w(w, dt, rows[i] * stride, j));
                                    }
                                    assertClose(want[j], y[j], mag, what + " y[" + j + "]");
                                }
                            }
                        }
                    }
                }
            }
        }
    }

    /** Rows whose hv is zero are not read: here they are all NaN, and y must stay exact. */
    @Test
    void accumulateGatherSkipsZeroWeights() {
        int r = 20;
        int c = 40;
        for (DType dt : DTYPES) {
            long stride = (long) c * dt.bytes() + 2;
            MemorySegment w = Matrices.fillRows(Matrices.rowBlock(arena, r, stride), dt, r, c, stride, 0,
                    Matrices.integers(4, 2));
            int[] rows = {3, 7, 3, 12, 19, 7, 0, 5, 7};
            float[] hv = {1f, 0f, 2f, -0f, 1f, 0f, -1f, 0f, 0f};
            for (int j = 0; j < c; j++) {
                for (int row : new int[]{7, 12, 5}) {
                    Matrices.storeAt(w, dt, row * stride + (long) j * dt.bytes(), Float.NaN);
                }
            }
            float[] want = new float[c];
            ScalarKernels.accumulateGather(w, dt, c, stride, rows, hv, rows.length, want);
            for (Kernels k : kernels) {
                float[] y = new float[c];
                k.accumulateGather(w, dt, c, stride, rows, hv, rows.length, y);
                assertArrayEquals(want, y, dt + " threads " + k.threads());
                for (float v : y) {
                    assertTrue(Float.isFinite(v), dt + ": a skipped row was read");
                }
            }
        }
    }

    /**
     * Per-token row subsets of a block: each token picks every row with its own probability (0: an
     * empty token, 1: all rows), ascending; sometimes a token repeats the previous one's rows.
     */
    static int[][] tokenRows(SplittableRandom rnd, int n, int blockRows, double density) {
        int[][] sets = new int[n][];
        for (int t = 0; t < n; t++) {
            double p = switch (t % 5) {
                case 0 -> density;
                case 1 -> 0;
                case 2 -> 1;
                default -> density * rnd.nextDouble() * 2;
            };
            if (t > 0 && t % 7 == 6) {
                sets[t] = sets[t - 1].clone();
                continue;
            }
            int[] s = new int[blockRows];
            int m = 0;
            for (int i = 0; i < blockRows; i++) {
                if (rnd.nextDouble() < p) {
                    s[m++] = i;
                }
            }
            sets[t] = Arrays.copyOf(s, m);
        }
        return sets;
    }

    record Ffn(int[] rowStart, int[] rows) {
        /** Flattened, starting at {@code base} (entries before it are junk, which must not be read). */
        static Ffn of(int[][] sets, int base) {
            int[] rowStart = new int[sets.length + 1];
            rowStart[0] = base;
            for (int t = 0; t < sets.length; t++) {
                rowStart[t + 1] = rowStart[t] + sets[t].length;
            }
            int[] rows = new int[rowStart[sets.length] + 1];
            Arrays.fill(rows, -7);
            for (int t = 0; t < sets.length; t++) {
                System.arraycopy(sets[t], 0, rows, rowStart[t], sets[t].length);
            }
            return new Ffn(rowStart, rows);
        }
    }

    /** The bound's magnitude of Y[t, j]: |Y0| + sum over the token's rows of (|dot| + |bias|) |down|. */
    static double ffnMagnitude(MemorySegment w, DType dt, int c, long stride, long down, Ffn f, float[] bias,
                               int biasOff, float[] x, float[] y0, int t, int j) {
        double mag = Math.abs(y0[t * c + j]);
        for (int k = f.rowStart[t]; k < f.rowStart[t + 1]; k++) {
            int r = f.rows[k];
            double a = bias == null ? 0 : Math.abs(bias[biasOff + r]);
            for (int i = 0; i < c; i++) {
                a += Math.abs((double) w(w, dt, r * stride, i) * x[t * c + i]);
            }
            mag += a * Math.abs(w(w, dt, r * stride + down, j));
        }
        return mag;
    }

    @Test
    void sparseBundleFfnMatchesScalarOracle() {
        int[][] shapes = {{1, 7}, {5, 33}, {32, 257}, {37, 33}, {16, 1}};
        for (boolean integers : new boolean[]{false, true}) {
            for (DType dt : DTYPES) {
                for (int[] shape : shapes) {
                    int blockRows = shape[0];
                    int c = shape[1];
                    long row = (long) c * dt.bytes();
                    for (long[] layout : new long[][]{{2 * row, row}, {2 * row + 64, row + 6}, {3 * row + 2, row}}) {
                        long stride = layout[0];
                        long down = layout[1];
                        MemorySegment block = Matrices.rowBlock(arena, blockRows, stride);
                        Matrices.fillRows(block, dt, blockRows, c, stride, 0, values(integers, c + stride));
                        MemorySegment w = Matrices.fillRows(block, dt, blockRows, c, stride, down,
                                values(integers, c + stride + 1));
                        w = block.asSlice(0, (blockRows - 1) * stride + down + row);
                        for (int n : new int[]{0, 1, 3, 9}) {
                            for (double density : new double[]{0.1, 0.5}) {
                                SplittableRandom rnd = new SplittableRandom(n * 131L + blockRows + c);
                                Ffn f = Ffn.of(tokenRows(rnd, n, blockRows, density), n % 3);
                                float[] bias = n % 2 == 0 ? null
                                        : Matrices.vector(blockRows + 3, values(integers, blockRows));
                                int biasOff = bias == null ? 0 : 3;
                                float[] x = Matrices.vector(n * c, values(integers, n + c));
                                float[] y0 = Matrices.vector(n * c + 1, values(integers, 2L * n + c));
                                float[] want = y0.clone();
                                ScalarKernels.sparseBundleFfn(w, dt, c, stride, down, n, f.rowStart, f.rows, bias,
                                        biasOff, x, want);
                                for (Kernels k : kernels) {
                                    float[] y = y0.clone();
                                    k.sparseBundleFfn(w, dt, c, stride, down, blockRows, n, f.rowStart, f.rows, bias,
                                            biasOff, x, y);
                                    String what = dt + " block " + blockRows + " c " + c + " stride " + stride
                                            + " down " + down + " n " + n + " density " + density + " bias "
                                            + (bias != null) + " threads " + k.threads()
                                            + (integers ? " integers" : "");
                                    assertEquals(y0[n * c], y[n * c], what + ": wrote past Y");
                                    if (integers) {
                                        assertArrayEquals(want, y, what);
                                        continue;
                                    }
                                    for (int t = 0; t < n; t++) {
                                        for (int j = 0; j < c; j++) {
                                            assertClose(want[t * c + j], y[t * c + j], ffnMagnitude(w, dt, c, stride,
                                                    down, f, bias, biasOff, x, y0, t, j), what + " Y[" + t + ", " + j + "]");
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
     * Inf and NaN weights reach Y as IEEE says, in both paths (few tokens: read in place; many: the
     * block converted): a NaN up weight makes a NaN activation (ReLU keeps it) and so a NaN Y row;
     * an Inf up weight an Inf or (negative, after ReLU) zero activation; a NaN or Inf down weight its
     * column. Rows and columns are chosen inside 4-row groups, past them and in the vector tail.
     */
    @Test
    void sparseBundleFfnPropagatesInfAndNan() {
        int blockRows = 11;
        int c = 37;
        float[][] specials = {{0, 3, Float.POSITIVE_INFINITY, 0}, {4, 36, Float.NEGATIVE_INFINITY, 0},
                {10, 20, Float.NaN, 0}, {2, 36, Float.NaN, 1}, {5, 17, Float.POSITIVE_INFINITY, 1},
                {9, 1, Float.NaN, 1}};
        for (DType dt : DTYPES) {
            long row = (long) c * dt.bytes();
            long stride = 2 * row + 4;
            for (float[] special : specials) {
                int r = (int) special[0];
                int j = (int) special[1];
                boolean inDown = special[3] != 0;
                MemorySegment w = Matrices.fillRows(Matrices.rowBlock(arena, blockRows, stride), dt, blockRows,
                        2 * c, stride, 0, Matrices.integers(r + j, 2));
                Matrices.storeAt(w, dt, r * stride + (inDown ? row : 0) + (long) j * dt.bytes(), special[2]);
                for (int n : new int[]{1, 2, 8}) {
                    int[][] sets = new int[n][];
                    for (int t = 0; t < n; t++) {
                        sets[t] = t % 2 == 0 ? new int[]{0, 1, 2, 4, 5, 9, 10} : new int[]{2, 3, 4, 5, 6, 7, 8, 9, 10};
                    }
                    Ffn f = Ffn.of(sets, 0);
                    float[] x = new float[n * c];
                    Arrays.fill(x, 1f);
                    float[] bias = new float[blockRows];
                    Arrays.fill(bias, 40f); // every activation positive, unless an Inf weight says otherwise
                    float[] want = new float[n * c];
                    ScalarKernels.sparseBundleFfn(w, dt, c, stride, row, n, f.rowStart, f.rows, bias, 0, x, want);
                    boolean special0 = false;
                    for (float v : want) {
                        special0 |= !Float.isFinite(v);
                    }
                    assertTrue(special0 || special[2] == Float.NEGATIVE_INFINITY, "the oracle saw no special value");
                    for (Kernels k : kernels) {
                        float[] y = new float[n * c];
                        k.sparseBundleFfn(w, dt, c, stride, row, blockRows, n, f.rowStart, f.rows, bias, 0, x, y);
                        for (int e = 0; e < n * c; e++) {
                            String what = dt + " " + (inDown ? "down" : "up") + "[" + r + ", " + j + "] = " + special[2]
                                    + " n " + n + " threads " + k.threads() + " Y[" + e / c + ", " + e % c + "]";
                            assertEquals(want[e], y[e], 0f, what);
                        }
                    }
                }
            }
        }
    }

    @Test
    void rejectsBadArguments() {
        Kernels k = kernels.get(3);
        int r = 4;
        int c = 8;
        long stride = 40;
        MemorySegment w = Matrices.fillRows(Matrices.rowBlock(arena, r, stride), DType.F16, r, c, stride, 0,
                Matrices.integers(1, 2));
        float[] x = new float[c];
        float[] y = new float[3];
        int[] rows = {0, 3, 1};
        k.matvecGather(w, DType.F16, c, stride, rows, 3, x, y);
        assertThrows(IllegalArgumentException.class, () -> k.matvecGather(w, DType.F16, c, stride, new int[]{4}, 1, x, y));
        assertThrows(IllegalArgumentException.class, () -> k.matvecGather(w, DType.F16, c, stride, new int[]{-1}, 1, x, y));
        assertThrows(IllegalArgumentException.class, () -> k.matvecGather(w, DType.F16, c, stride, rows, 4, x, new float[4]));
        assertThrows(IllegalArgumentException.class, () -> k.matvecGather(w, DType.F16, c, stride, rows, -1, x, y));
        assertThrows(IllegalArgumentException.class, () -> k.matvecGather(w, DType.F16, c, stride, rows, 3, x, new float[2]));
        assertThrows(IllegalArgumentException.class, () -> k.matvecGather(w, DType.F16, c, stride, rows, 3, new float[7], y));
        assertThrows(IllegalArgumentException.class, () -> k.matvecGather(w, DType.F16, c, 15, rows, 3, x, y));
        assertThrows(IllegalArgumentException.class, () -> k.matvecGather(w, DType.I16, c, stride, rows, 3, x, y));
        float[] hv = {1f, 2f, 3f};
        float[] acc = new float[c];
        k.accumulateGather(w, DType.F16, c, stride, rows, hv, 3, acc);
        assertThrows(IllegalArgumentException.class,
                () -> k.accumulateGather(w, DType.F16, c, stride, new int[]{0, 4}, new float[2], 2, acc));
        assertThrows(IllegalArgumentException.class, () -> k.accumulateGather(w, DType.F16, c, stride, rows, new float[2], 3, acc));
        assertThrows(IllegalArgumentException.class, () -> k.accumulateGather(w, DType.F16, c, stride, rows, hv, 3, new float[7]));

        // bundles: up at 0, down at 16 bytes, 4 rows at 40-byte stride: 3 * 40 + 32 bytes
        MemorySegment b = Matrices.rowBlock(arena, r, stride).asSlice(0, 3 * stride + 32);
        int n = 2;
        int[] rowStart = {0, 2, 3};
        int[] brows = {0, 3, 1};
        float[] bx = new float[n * c];
        float[] out = new float[n * c];
        k.sparseBundleFfn(b, DType.F16, c, stride, 16, r, n, rowStart, brows, null, 0, bx, out);
        assertThrows(IllegalArgumentException.class,
                () -> k.sparseBundleFfn(b, DType.F16, c, stride, 17, r, n, rowStart, brows, null, 0, bx, out));
        assertThrows(IllegalArgumentException.class,
                () -> k.sparseBundleFfn(b, DType.F16, c, stride, -2, r, n, rowStart, brows, null, 0, bx, out));
        assertThrows(IllegalArgumentException.class,
                () -> k.sparseBundleFfn(b, DType.F16, c, stride, 16, r + 1, n, rowStart, brows, null, 0, bx, out));
        assertThrows(IllegalArgumentException.class,
                () -> k.sparseBundleFfn(b, DType.F16, c, stride, 16, 3, n, rowStart, brows, null, 0, bx, out));
        assertThrows(IllegalArgumentException.class,
                () -> k.sparseBundleFfn(b, DType.F16, c, stride, 16, r, n, new int[]{0, 2}, brows, null, 0, bx, out));
        assertThrows(IllegalArgumentException.class,
                () -> k.sparseBundleFfn(b, DType.F16, c, stride, 16, r, n, new int[]{0, 3, 2}, brows, null, 0, bx, out));
        assertThrows(IllegalArgumentException.class,
                () -> k.sparseBundleFfn(b, DType.F16, c, stride, 16, r, n, new int[]{-1, 2, 3}, brows, null, 0, bx, out));
        assertThrows(IllegalArgumentException.class,
                () -> k.sparseBundleFfn(b, DType.F16, c, stride, 16, r, n, new int[]{0, 2, 4}, brows, null, 0, bx, out));
        assertThrows(IllegalArgumentException.class,
                () -> k.sparseBundleFfn(b, DType.F16, c, stride, 16, r, n, rowStart, new int[]{0, -1, 1}, null, 0, bx, out));
        assertThrows(IllegalArgumentException.class,
                () -> k.sparseBundleFfn(b, DType.F16, c, stride, 16, r, n, rowStart, brows, new float[r], 1, bx, out));
        assertThrows(IllegalArgumentException.class,
                () -> k.sparseBundleFfn(b, DType.F16, c, stride, 16, r, n, rowStart, brows, new float[r], -1, bx, out));
        assertThrows(IllegalArgumentException.class,
                () -> k.sparseBundleFfn(b, DType.F16, c, stride, 16, r, n, rowStart, brows, null, 0, new float[n * c - 1], out));
        assertThrows(IllegalArgumentException.class,
                () -> k.sparseBundleFfn(b, DType.F16, c, stride, 16, r, n, rowStart, brows, null, 0, bx, new float[n * c - 1]));
        assertThrows(IllegalArgumentException.class,
                () -> k.sparseBundleFfn(b, DType.F16, c, stride, 16, r, -1, rowStart, brows, null, 0, bx, out));
        float[] untouched = {5f};
        k.sparseBundleFfn(b, DType.F16, c, stride, 16, r, 0, new int[]{0}, new int[0], null, 0, new float[0], untouched);
        assertEquals(5f, untouched[0]);
    }
}
