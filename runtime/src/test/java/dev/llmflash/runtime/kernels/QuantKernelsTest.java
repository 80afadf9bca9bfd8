package dev.llmflash.runtime.kernels;

import dev.llmflash.formats.tensor.DType;
import dev.llmflash.formats.tensor.Quant;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;

import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import java.util.SplittableRandom;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;
import static org.junit.jupiter.api.Assertions.fail;

/**
 * Every {@link Kernels} entry point on the block-quantized dtypes (Q8_0, Q4_0) against the scalar
 * dequantize-then-multiply oracle ({@link ScalarKernels}, whose weights are {@link Quant#get}).
 * <p>Two kinds of data. <em>Exact</em>: rows of raw blocks whose f16 scales are +-1, 1/2 or 1/4 and
 * whose quants are small (Q8: -8..7; Q4: every nibble), with integer inputs in [-3, 3]: every
 * product and partial sum is exact in f32 in any order, so the kernels must match the oracle bit for
 * bit and an indexing slip (a wrong nibble, scale or block) shows. <em>Gaussian</em>: Gaussian weights
 * quantized by {@link Quant#quantizeRow}, Gaussian inputs, matched within 1e-5 of the magnitude (the
 * sum of |terms|). Row counts are odd (the 4-row groups and their leftovers), c spans 1 to 33 blocks,
 * strides are a row, a row + 2 bytes (unaligned rows) and a bundle (2 rows + 64 bytes); segments
 * start 3 bytes into an allocation; the bytes around rows are 0x7f junk. 1 and 2 threads, with the
 * default serial threshold and with splitting forced.
 */
class QuantKernelsTest {
    static final DType[] DTYPES = {DType.Q8_0, DType.Q4_0};
    /** 1 to 33 blocks: the four-row kernels read scales 16 blocks at a time (AVX-512), so 544 and 1056 take that path and its partial tail. */
    static final int[] COLS = {32, 64, 96, 288, 544, 1056};
    static final int[] ROWS = {1, 3, 5, 17, 40};
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

    static long[] strides(DType dt, int c) {
        long row = dt.rowBytes(c);
        return new long[]{row, row + 2, 2 * row + 64};
    }

    /** A block of r rows at {@code stride} bytes starting 3 bytes into its allocation, 0x7f junk around rows. */
    static MemorySegment block(int r, long stride, long extra) {
        MemorySegment whole = arena.allocate(3 + r * stride + extra + 16, 64);
        whole.fill((byte) 0x7f);
        return whole.asSlice(3, r * stride + extra);
    }

    /** Writes r rows of c quantized weights at byte {@code offset + i * stride}. */
    static void fill(MemorySegment m, DType dt, int r, int c, long stride, long offset, boolean exact, long seed) {
        SplittableRandom rnd = new SplittableRandom(seed);
        byte[] row = new byte[(int) dt.rowBytes(c)];
        float[] src = new float[c];
        int nb = c / Quant.BLOCK;
        for (int i = 0; i < r; i++) {
            if (exact) {
                for (int b = 0; b < nb; b++) {
                    float scale = (rnd.nextBoolean() ? 1f : -1f) / (1 << rnd.nextInt(3));
                    short h = Float.floatToFloat16(scale);
                    row[2 * b] = (byte) h;
                    row[2 * b + 1] = (byte) (h >> 8);
                }
                for (int k = 2 * nb; k < row.length; k++) {
                    row[k] = dt == DType.Q8_0 ? (byte) rnd.nextInt(-8, 8) : (byte) rnd.nextInt(256);
                }
            } else {
                for (int j = 0; j < c; j++) {
                    src[j] = (float) gaussian(rnd);
                }
                Quant.quantizeRow(dt, src, 0, c, row, 0);
            }
            MemorySegment.copy(MemorySegment.ofArray(row), 0, m, offset + i * stride, row.length);
        }
    }

    static double gaussian(SplittableRandom rnd) {
        double u = rnd.nextDouble();
        double v = rnd.nextDouble();
        return Math.sqrt(-2 * Math.log1p(-u)) * Math.cos(2 * Math.PI * v);
    }

    static float[] vector(int n, boolean exact, long seed) {
        SplittableRandom rnd = new SplittableRandom(seed);
        float[] v = new float[n];
        for (int i = 0; i < n; i++) {
            v[i] = exact ? rnd.nextInt(-3, 4) : (float) gaussian(rnd);
        }
        return v;
    }

    /** h with about a third zeros (skipped rows) and the rest as {@link #vector}. */
    static float[] sparse(int n, boolean exact, long seed) {
        float[] h = vector(n, exact, seed);
        SplittableRandom rnd = new SplittableRandom(seed + 1);
        for (int i = 0; i < n; i++) {
            if (rnd.nextInt(3) == 0) {
                h[i] = 0f;
            }
        }
        return h;
    }

    static float at(MemorySegment w, DType dt, long base, int c, int j) {
        return ScalarKernels.at(w, dt, base, c, j);
    }

    /** sum_j |W(base)[j] * x[xOff + j]|. */
    static double rowMag(MemorySegment w, DType dt, long base, int c, float[] x, int xOff) {
        double s = 0;
        for (int j = 0; j < c; j++) {
            s += Math.abs((double) at(w, dt, base, c, j) * x[xOff + j]);
        }
        return s;
    }

    static void check(float[] want, float[] got, int n, double[] mag, boolean exact, String what) {
        if (exact) {
            assertArrayEquals(Arrays.copyOf(want, n), Arrays.copyOf(got, n), what);
            return;
        }
        for (int i = 0; i < n; i++) {
            double tol = REL * mag[i] + 1e-30;
            if (!(Math.abs(want[i] - got[i]) <= tol)) {
                fail(what + " [" + i + "]: expected " + want[i] + ", got " + got[i] + " (tolerance " + tol + ")");
            }
        }
    }

    static String what(String op, DType dt, int r, int c, long stride, Kernels k, boolean exact) {
        return op + " " + dt + " r " + r + " c " + c + " stride " + stride + " threads " + k.threads()
                + (exact ? " exact" : " gaussian");
    }

    @Test
    void matvecAndMatmulMatchScalarOracle() {
        for (boolean exact : new boolean[]{true, false}) {
            for (DType dt : DTYPES) {
                for (int c : COLS) {
                    for (long stride : strides(dt, c)) {
                        for (int r : ROWS) {
                            MemorySegment w = block(r, stride, 0);
                            fill(w, dt, r, c, stride, 0, exact, r * 31L + c + stride);
                            for (int n : new int[]{1, 2, 5}) {
                                float[] x = vector(n * c, exact, n + c);
                                double[] mag = new double[n * r];
                                for (int t = 0; t < n; t++) {
                                    for (int i = 0; i < r; i++) {
                                        mag[t * r + i] = rowMag(w, dt, i * stride, c, x, t * c);
                                    }
                                }
                                float[] want = new float[n * r];
                                ScalarKernels.matmulStrided(w, dt, r, c, stride, x, n, want);
                                for (Kernels k : kernels) {
                                    float[] y = new float[n * r + 1];
                                    y[n * r] = 42f;
                                    String what = what("matmulStrided n " + n, dt, r, c, stride, k, exact);
                                    k.matmulStrided(w, dt, r, c, stride, x, n, y);
                                    assertEquals(42f, y[n * r], what + ": wrote past y");
                                    check(want, y, n * r, mag, exact, what);
                                    if (n == 1) {
                                        float[] v = new float[r];
                                        k.matvecStrided(w, dt, r, c, stride, x, v);
                                        check(want, v, r, mag, exact, what("matvecStrided", dt, r, c, stride, k, exact));
                                    }
                                    if (stride == dt.rowBytes(c)) {
                                        float[] m = new float[n * r];
                                        k.matmul(w, dt, r, c, x, n, m);
                                        check(want, m, n * r, mag, exact, what("matmul n " + n, dt, r, c, stride, k, exact));
                                        if (n == 1) {
                                            float[] v = new float[r];
                                            k.matvec(w, dt, r, c, x, v);
                                            check(want, v, r, mag, exact, what("matvec", dt, r, c, stride, k, exact));
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

    @Test
    void transposedAccumulationMatchesScalarOracle() {
        for (boolean exact : new boolean[]{true, false}) {
            for (DType dt : DTYPES) {
                for (int c : COLS) {
                    for (long stride : strides(dt, c)) {
                        for (int r : ROWS) {
                            MemorySegment w = block(r, stride, 0);
                            fill(w, dt, r, c, stride, 0, exact, r * 17L + c + stride);
                            for (int n : new int[]{1, 3}) {
                                float[] h = sparse(n * r, exact, r + n + c);
                                float[] y0 = vector(n * c + 1, exact, 5L * c + n);
                                double[] mag = new double[n * c];
                                for (int t = 0; t < n; t++) {
                                    for (int j = 0; j < c; j++) {
                                        double s = Math.abs(y0[t * c + j]);
                                        for (int i = 0; i < r; i++) {
                                            s += Math.abs((double) h[t * r + i] * at(w, dt, i * stride, c, j));
                                        }
                                        mag[t * c + j] = s;
                                    }
                                }
                                float[] want = y0.clone();
                                ScalarKernels.matmulTransposedAcc(w, dt, r, c, stride, h, n, want);
                                for (Kernels k : kernels) {
                                    float[] y = y0.clone();
                                    String what = what("matmulTransposedAcc n " + n, dt, r, c, stride, k, exact);
                                    k.matmulTransposedAcc(w, dt, r, c, stride, h, n, y);
                                    assertEquals(y0[n * c], y[n * c], what + ": wrote past y");
                                    check(want, y, n * c, mag, exact, what);
                                    if (n == 1) {
                                        float[] v = y0.clone();
                                        k.matvecTransposedAcc(w, dt, r, c, stride, h, v);
                                        check(want, v, c, mag, exact,
                                                what("matvecTransposedAcc", dt, r, c, stride, k, exact));
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
    void gatherKernelsMatchScalarOracle() {
        int r = 23;
        for (boolean exact : new boolean[]{true, false}) {
            for (DType dt : DTYPES) {
                for (int c : COLS) {
                    for (long stride : strides(dt, c)) {
                        MemorySegment w = block(r, stride, 0);
                        fill(w, dt, r, c, stride, 0, exact, 7L * c + stride);
                        float[] x = vector(c, exact, c + 1);
                        for (int count : new int[]{0, 1, 3, 5, 17, 40}) {
                            int[] rows = GatherKernelsTest.randomRows(new SplittableRandom(count * 31L + c), count, r);
                            float[] want = new float[count];
                            ScalarKernels.matvecGather(w, dt, c, stride, rows, count, x, want);
                            double[] mag = new double[count];
                            for (int i = 0; i < count; i++) {
                                mag[i] = rowMag(w, dt, rows[i] * stride, c, x, 0);
                            }
                            float[] hv = sparse(count, exact, count + c);
                            float[] y0 = vector(c, exact, 3L * count + c);
                            float[] wantAcc = y0.clone();
                            ScalarKernels.accumulateGather(w, dt, c, stride, rows, hv, count, wantAcc);
                            double[] magAcc = new double[c];
                            for (int j = 0; j < c; j++) {
                                double s = Math.abs(y0[j]);
                                for (int i = 0; i < count; i++) {
                                    s += Math.abs((double) hv[i] * at(w, dt, rows[i] * stride, c, j));
                                }
                                magAcc[j] = s;
                            }
                            for (Kernels k : kernels) {
                                float[] y = new float[count + 1];
                                y[count] = 42f;
                                String what = what("matvecGather count " + count, dt, r, c, stride, k, exact);
                                k.matvecGather(w, dt, c, stride, rows, count, x, y);
                                assertEquals(42f, y[count], what + ": wrote past y");
                                check(want, y, count, mag, exact, what);
                                float[] acc = y0.clone();
                                k.accumulateGather(w, dt, c, stride, rows, hv, count, acc);
                                check(wantAcc, acc, c, magAcc, exact,
                                        what("accumulateGather count " + count, dt, r, c, stride, k, exact));
                            }
                        }
                    }
                }
            }
        }
    }

    /**
     * Scales the bit conversion must get right, in rows of 33 blocks (two whole vectors of scales
     * and a tail): subnormal f16 scales (2^-20, and 2^-24, the smallest), and +Inf / NaN scales in a
     * block that a vector of scales carries (block 17) or the tail carries (block 32). Each row's
     * scales share one magnitude, quants and inputs are small integers: every finite result is exact
     * in any order, and an Inf or NaN term decides the result whatever the order.
     */
    @Test
    void subnormalInfAndNanScalesMatchScalarOracle() {
        int c = 33 * Quant.BLOCK;
        int nb = c / Quant.BLOCK;
        short[] kinds = {Float.floatToFloat16(0x1p-20f), Float.floatToFloat16(0x1p-24f), Float.floatToFloat16(1f)};
        for (DType dt : DTYPES) {
            long stride = dt.rowBytes(c);
            int r = 13;
            MemorySegment w = block(r, stride, 0);
            fill(w, dt, r, c, stride, 0, true, 99);
            SplittableRandom rnd = new SplittableRandom(5);
            for (int i = 0; i < r; i++) {
                short base = kinds[i % kinds.length];
                for (int b = 0; b < nb; b++) {
                    short h = (short) (base | (rnd.nextBoolean() ? 0x8000 : 0));
                    w.set(ValueLayout.JAVA_SHORT_UNALIGNED, i * stride + 2L * b, h);
                }
                if (i % 4 == 1) {
                    w.set(ValueLayout.JAVA_SHORT_UNALIGNED, i * stride + 2L * 17, (short) 0x7c00); // +Inf
                }
                if (i % 4 == 2) {
                    w.set(ValueLayout.JAVA_SHORT_UNALIGNED, i * stride + 2L * 32, (short) 0x7e00); // NaN
                }
                if (i % 4 == 3) {
                    w.set(ValueLayout.JAVA_SHORT_UNALIGNED, i * stride + 2L * 3, (short) 0xfc00); // -Inf
                }
            }
            float[] x = vector(c, true, 17);
            float[] want = new float[r];
            ScalarKernels.matmulStrided(w, dt, r, c, stride, x, 1, want);
            int[] rows = new int[r];
            for (int i = 0; i < r; i++) {
                rows[i] = r - 1 - i;
            }
            float[] wantGather = new float[r];
            ScalarKernels.matvecGather(w, dt, c, stride, rows, r, x, wantGather);
            float[] hv = vector(r, true, 23);
            // A column sum mixes rows, so one magnitude class at a time keeps it exact.
            int[][] classRows = new int[kinds.length][];
            float[][] wantAcc = new float[kinds.length][];
            for (int kind = 0; kind < kinds.length; kind++) {
                final int kk = kind;
                classRows[kind] = java.util.stream.IntStream.range(0, r).filter(i -> i % kinds.length == kk).toArray();
                wantAcc[kind] = new float[c];
                ScalarKernels.accumulateGather(w, dt, c, stride, classRows[kind], hv, classRows[kind].length, wantAcc[kind]);
            }
            for (Kernels k : kernels) {
                String what = dt + " special scales, threads " + k.threads();
                float[] y = new float[r];
                k.matvec(w, dt, r, c, x, y);
                assertArrayEquals(want, y, what + ": matvec");
                float[] g = new float[r];
                k.matvecGather(w, dt, c, stride, rows, r, x, g);
                assertArrayEquals(wantGather, g, what + ": matvecGather");
                for (int kind = 0; kind < kinds.length; kind++) {
                    float[] acc = new float[c];
                    k.accumulateGather(w, dt, c, stride, classRows[kind], hv, classRows[kind].length, acc);
                    assertArrayEquals(wantAcc[kind], acc, what + ": accumulateGather, scale class " + kind);
                }
            }
            assertTrue(Float.isInfinite(want[1]) || Float.isNaN(want[1]), "row 1 carries an Inf scale: " + want[1]);
            assertTrue(Float.isNaN(want[2]), "row 2 carries a NaN scale: " + want[2]);
        }
    }

    /** Few tokens per row read the quantized block in place; many convert it to f32 first: both paths. */
    @Test
    void sparseBundleFfnMatchesScalarOracle() {
        for (boolean exact : new boolean[]{true, false}) {
            for (DType dt : DTYPES) {
                for (int[] shape : new int[][]{{1, 32}, {5, 64}, {32, 288}, {37, 96}}) {
                    int blockRows = shape[0];
                    int c = shape[1];
                    long row = dt.rowBytes(c);
                    for (long[] layout : new long[][]{{2 * row, row}, {2 * row + 64, row + 6}}) {
                        long stride = layout[0];
                        long down = layout[1];
                        MemorySegment block = block(blockRows, stride, 0);
                        fill(block, dt, blockRows, c, stride, 0, exact, c + stride);
                        fill(block, dt, blockRows, c, stride, down, exact, c + stride + 1);
                        MemorySegment w = block.asSlice(0, (blockRows - 1) * stride + down + row);
                        for (int n : new int[]{1, 3, 9}) {
                            for (double density : new double[]{0.1, 0.5}) {
                                SplittableRandom rnd = new SplittableRandom(n * 131L + blockRows + c);
                                GatherKernelsTest.Ffn f = GatherKernelsTest.Ffn.of(
                                        GatherKernelsTest.tokenRows(rnd, n, blockRows, density), n % 3);
                                float[] bias = n % 2 == 0 ? null : vector(blockRows + 3, exact, blockRows);
                                int biasOff = bias == null ? 0 : 3;
                                float[] x = vector(n * c, exact, n + c);
                                float[] y0 = vector(n * c + 1, exact, 2L * n + c);
                                float[] want = y0.clone();
                                ScalarKernels.sparseBundleFfn(w, dt, c, stride, down, n, f.rowStart(), f.rows(), bias,
                                        biasOff, x, want);
                                double[] mag = new double[n * c];
                                for (int t = 0; t < n; t++) {
                                    for (int j = 0; j < c; j++) {
                                        double s = Math.abs(y0[t * c + j]);
                                        for (int q = f.rowStart()[t]; q < f.rowStart()[t + 1]; q++) {
                                            int rr = f.rows()[q];
                                            double a = Math.abs(rowMag(w, dt, rr * stride, c, x, t * c))
                                                    + (bias == null ? 0 : Math.abs(bias[biasOff + rr]));
                                            s += a * Math.abs(at(w, dt, rr * stride + down, c, j));
                                        }
                                        mag[t * c + j] = s;
                                    }
                                }
                                for (Kernels k : kernels) {
                                    float[] y = y0.clone();
                                    k.sparseBundleFfn(w, dt, c, stride, down, blockRows, n, f.rowStart(), f.rows(),
                                            bias, biasOff, x, y);
                                    String what = what("sparseBundleFfn n " + n + " density " + density + " down "
                                            + down, dt, blockRows, c, stride, k, exact);
                                    assertEquals(y0[n * c], y[n * c], what + ": wrote past Y");
                                    check(want, y, n * c, mag, exact, what);
                                }
                            }
                        }
                    }
                }
            }
        }
    }

    /** Row lookups and the f32 conversion are exact: equal to {@link Quant#dequantizeRow} bit for bit. */
    @Test
    void rowAndConversionAreExact() {
        for (boolean exact : new boolean[]{true, false}) {
            for (DType dt : DTYPES) {
                for (int c : COLS) {
                    int r = 7;
                    long stride = dt.rowBytes(c);
                    MemorySegment w = block(r, stride, 0);
                    fill(w, dt, r, c, stride, 0, exact, c * 3L);
                    for (int i = 0; i < r; i++) {
                        float[] want = new float[c];
                        Quant.dequantizeRow(w, dt, i * stride, c, want, 0);
                        float[] got = new float[c + 1];
                        got[c] = 42f;
                        kernels.get(0).row(w, dt, i, c, got);
                        assertArrayEquals(want, Arrays.copyOf(got, c), dt + " row " + i + " c " + c);
                        assertEquals(42f, got[c]);
                        float[] conv = new float[c + 2];
                        VectorKernels.toF32At(w, dt, i * stride, conv, 2, c);
                        assertArrayEquals(want, Arrays.copyOfRange(conv, 2, c + 2), dt + " toF32At row " + i + " c " + c);
                        float[] x = vector(c, exact, i);
                        float dot = VectorKernels.dotAt(w, dt, i * stride, x, 0, c);
                        float[] one = new float[1];
                        ScalarKernels.matvecStrided(w.asSlice(i * stride), dt, 1, c, stride, x, one);
                        double mag = rowMag(w, dt, i * stride, c, x, 0);
                        check(one, new float[]{dot}, 1, new double[]{mag}, exact, dt + " dotAt row " + i + " c " + c);
                    }
                }
            }
        }
    }

    /** A quantized weight decodes to scale x (q - offset) of its own block, as llama.cpp's Q8_0 and Q4_0. */
    @Test
    void weightsDecodeAsTheLayoutSays() {
        MemorySegment w = block(1, DType.Q4_0.rowBytes(64), 0);
        w.fill((byte) 0);
        w.set(ValueLayout.JAVA_SHORT_UNALIGNED, 0, Float.floatToFloat16(0.5f));
        w.set(ValueLayout.JAVA_SHORT_UNALIGNED, 2, Float.floatToFloat16(-2f));
        w.set(ValueLayout.JAVA_BYTE, 4, (byte) 0x3f); // block 0: weight 0 = low nibble 15, weight 16 = high 3
        w.set(ValueLayout.JAVA_BYTE, 4 + 16 + 31 - 16, (byte) 0x80); // block 1: weight 15 = 0, weight 31 = 8
        float[] out = new float[64];
        kernels.get(0).row(w, DType.Q4_0, 0, 64, out);
        assertEquals(0.5f * (15 - 8), out[0]);
        assertEquals(0.5f * (3 - 8), out[16]);
        assertEquals(0.5f * -8, out[1]);
        assertEquals(-2f * (0 - 8), out[32 + 15]);
        assertEquals(-2f * (8 - 8), out[32 + 31]);
        MemorySegment q8 = block(1, DType.Q8_0.rowBytes(32), 0);
        q8.fill((byte) 0);
        q8.set(ValueLayout.JAVA_SHORT_UNALIGNED, 0, Float.floatToFloat16(0.25f));
        q8.set(ValueLayout.JAVA_BYTE, 2 + 5, (byte) -128);
        q8.set(ValueLayout.JAVA_BYTE, 2 + 31, (byte) 127);
        float[] o8 = new float[32];
        kernels.get(0).row(q8, DType.Q8_0, 0, 32, o8);
        assertEquals(-32f, o8[5]);
        assertEquals(31.75f, o8[31]);
        assertEquals(0f, o8[0]);
    }

    @Test
    void rowsThatAreNotWholeBlocksAreRefused() {
        for (DType dt : DTYPES) {
            MemorySegment w = block(4, 1024, 0);
            for (Kernels k : kernels) {
                IllegalArgumentException e = assertThrows(IllegalArgumentException.class,
                        () -> k.matvecStrided(w, dt, 2, 48, 512, new float[48], new float[2]));
                assertTrue(e.getMessage().contains("multiple of 32"), e.getMessage());
                assertThrows(IllegalArgumentException.class,
                        () -> k.matvecGather(w, dt, 40, 512, new int[]{0}, 1, new float[40], new float[1]));
                assertThrows(IllegalArgumentException.class,
                        () -> k.row(w, dt, 0, 16, new float[16]));
            }
            // Too few bytes for the rows claimed.
            Kernels k = kernels.get(0);
            long row = dt.rowBytes(64);
            MemorySegment small = block(2, row, 0);
            assertThrows(IllegalArgumentException.class,
                    () -> k.matvec(small, dt, 3, 64, new float[64], new float[3]));
        }
    }
}
