package dev.llmflash.runtime.kernels;

import dev.llmflash.formats.tensor.DType;

import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.util.SplittableRandom;
import java.util.function.DoubleSupplier;

/** Test weights and inputs: row-major matrices in a dtype, placed at a chosen byte misalignment. */
final class Matrices {
    private Matrices() {
    }

    /**
     * An r x c matrix of {@code values} rounded to {@code dt}, starting {@code misalign} bytes into a
     * larger segment (as a tensor inside a memory-mapped file would), with guard bytes after it.
     */
    static MemorySegment matrix(Arena arena, DType dt, int r, int c, int misalign, DoubleSupplier values) {
        long bytes = (long) r * c * dt.bytes();
        MemorySegment whole = arena.allocate(bytes + misalign + 16, 64);
        whole.fill((byte) 0x7f); // guard: NaN-ish junk outside the matrix
        MemorySegment m = whole.asSlice(misalign, bytes);
        for (long i = 0; i < (long) r * c; i++) {
            store(m, dt, i, (float) values.getAsDouble());
        }
        return m;
    }

    static void store(MemorySegment m, DType dt, long i, float v) {
        switch (dt) {
            case F32 -> m.setAtIndex(ValueLayout.JAVA_FLOAT_UNALIGNED, i, v);
            case F16 -> m.setAtIndex(ValueLayout.JAVA_SHORT_UNALIGNED, i, Float.floatToFloat16(v));
            // Round to nearest even, as a converter would (truncation would do too: any bf16 is fine).
            case BF16 -> {
                int b = Float.floatToRawIntBits(v);
                b += 0x7fff + ((b >>> 16) & 1);
                m.setAtIndex(ValueLayout.JAVA_SHORT_UNALIGNED, i, (short) (b >>> 16));
            }
            default -> throw new IllegalArgumentException(dt.toString());
        }
    }

    static DoubleSupplier gaussian(long seed) {
        SplittableRandom rnd = new SplittableRandom(seed);
        return () -> {
            // Box-Muller; SplittableRandom has no nextGaussian before JDK 17's RandomGenerator default.
            double u = rnd.nextDouble();
            double v = rnd.nextDouble();
            return Math.sqrt(-2 * Math.log1p(-u)) * Math.cos(2 * Math.PI * v);
        };
    }

    /** Small integers in [-k, k]: every product and partial sum is exact in f32, in any order. */
    static DoubleSupplier integers(long seed, int k) {
        SplittableRandom rnd = new SplittableRandom(seed);
        return () -> rnd.nextInt(-k, k + 1);
    }

    static float[] vector(int n, DoubleSupplier values) {
        float[] v = new float[n];
        for (int i = 0; i < n; i++) {
            v[i] = (float) values.getAsDouble();
        }
        return v;
    }
}
