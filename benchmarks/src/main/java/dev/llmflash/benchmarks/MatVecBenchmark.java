package dev.llmflash.benchmarks;

import dev.llmflash.formats.tensor.DType;
import dev.llmflash.runtime.kernels.Kernels;
import dev.llmflash.runtime.kernels.ScalarKernels;
import org.openjdk.jmh.annotations.Benchmark;
import org.openjdk.jmh.annotations.BenchmarkMode;
import org.openjdk.jmh.annotations.Fork;
import org.openjdk.jmh.annotations.Level;
import org.openjdk.jmh.annotations.Measurement;
import org.openjdk.jmh.annotations.Mode;
import org.openjdk.jmh.annotations.OutputTimeUnit;
import org.openjdk.jmh.annotations.Param;
import org.openjdk.jmh.annotations.Scope;
import org.openjdk.jmh.annotations.Setup;
import org.openjdk.jmh.annotations.State;
import org.openjdk.jmh.annotations.TearDown;
import org.openjdk.jmh.annotations.Warmup;

import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.util.SplittableRandom;
import java.util.concurrent.TimeUnit;

/**
 * Kernel latency at the sizes the small models have (d = 256, FFN 1024), in cache: matvec (one
 * token), matmul over 16 inputs (prompt chunk), and the scalar oracle for scale. Weights start 2 bytes
 * into their segment, as tensors in a memory-mapped file may.
 * <p>Run: {@code java --add-modules jdk.incubator.vector -jar benchmarks/target/benchmarks.jar
 * MatVecBenchmark} (add e.g. {@code -p dtype=F16 -p threads=2} to narrow it).
 */
@State(Scope.Benchmark)
@BenchmarkMode(Mode.AverageTime)
@OutputTimeUnit(TimeUnit.MICROSECONDS)
@Warmup(iterations = 3, time = 1)
@Measurement(iterations = 5, time = 1)
@Fork(value = 1, jvmArgsAppend = {"--add-modules", "jdk.incubator.vector", "--enable-native-access=ALL-UNNAMED"})
public class MatVecBenchmark {
    private static final int MATMUL_N = 16;

    @Param({"F32", "F16", "BF16"})
    public DType dtype;
    @Param({"256"})
    public int rows;
    @Param({"256", "1024"})
    public int cols;
    @Param({"1", "2"})
    public int threads;

    private Arena arena;
    private MemorySegment w;
    private Kernels kernels;
    private float[] x;
    private float[] y;
    private float[] xs;
    private float[] ys;

    @Setup(Level.Trial)
    public void setUp() {
        arena = Arena.ofShared();
        long n = (long) rows * cols;
        w = arena.allocate(n * dtype.bytes() + 2, 64).asSlice(2, n * dtype.bytes());
        SplittableRandom rnd = new SplittableRandom(1);
        for (long i = 0; i < n; i++) {
            float v = (float) rnd.nextDouble(-1, 1);
            switch (dtype) {
                case F32 -> w.setAtIndex(ValueLayout.JAVA_FLOAT_UNALIGNED, i, v);
                case F16 -> w.setAtIndex(ValueLayout.JAVA_SHORT_UNALIGNED, i, Float.floatToFloat16(v));
                case BF16 -> w.setAtIndex(ValueLayout.JAVA_SHORT_UNALIGNED, i,
                        (short) (Float.floatToRawIntBits(v) >>> 16));
                default -> throw new IllegalArgumentException("no kernel for " + dtype);
            }
        }
        x = new float[cols];
        xs = new float[MATMUL_N * cols];
        for (int j = 0; j < xs.length; j++) {
            xs[j] = (float) rnd.nextDouble(-1, 1);
        }
        System.arraycopy(xs, 0, x, 0, cols);
        y = new float[rows];
        ys = new float[MATMUL_N * rows];
        kernels = new Kernels(threads);
    }

    @TearDown(Level.Trial)
    public void tearDown() {
        kernels.close();
        arena.close();
    }

    @Benchmark
    public float[] matvec() {
        kernels.matvec(w, dtype, rows, cols, x, y);
        return y;
    }

    @Benchmark
    public float[] matmul16() {
        kernels.matmul(w, dtype, rows, cols, xs, MATMUL_N, ys);
        return ys;
    }

    @Benchmark
    public float[] scalarMatvec() {
        ScalarKernels.matvec(w, dtype, rows, cols, x, y);
        return y;
    }
}
