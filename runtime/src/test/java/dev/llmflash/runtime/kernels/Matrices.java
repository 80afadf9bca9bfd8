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
        storeAt(m, dt, i * dt.bytes(), v);
    }

    /** Stores v rounded to dt at byte {@code b} of m (any alignment). */
    static void storeAt(MemorySegment m, DType dt, long b, float v) {
        switch (dt) {
            case F32 -> m.set(ValueLayout.JAVA_FLOAT_UNALIGNED, b, v);
            case F16 -> m.set(ValueLayout.JAVA_SHORT_UNALIGNED, b, Float.floatToFloat16(v));
            // Round to nearest even, as a converter would (truncation would do too: any bf16 is fine).
            // NaN stays NaN (its quiet bit is in the upper half).
            case BF16 -> {
                int bits = Float.floatToRawIntBits(v);
                if (!Float.isNaN(v)) {
                    bits += 0x7fff + ((bits >>> 16) & 1);
                }
                m.set(ValueLayout.JAVA_SHORT_UNALIGNED, b, (short) (bits >>> 16));
            }
            default -> throw new IllegalArgumentException(dt.toString());
        }
    }

    /**
     * A block of r rows at {@code stride} bytes, every byte 0x7f junk (f16 NaN, a huge bf16 or f32)
     * until {@link #fillRows} writes matrices into it.
     */
    static MemorySegment rowBlock(Arena arena, int r, long stride) {
        MemorySegment whole = arena.allocate(Math.max(1, r * stride), 64);
        whole.fill((byte) 0x7f);
        return whole;
    }

    /**
     * Writes an r x c matrix of {@code values} rounded to dt into {@code block}, row i at byte
     * {@code offset + i * stride}, and returns the slice the kernels get: from {@code offset} to right
     * after the last row's c elements, so that reading past them fails.
     */
    static MemorySegment fillRows(MemorySegment block, DType dt, int r, int c, long stride, long offset,
                                  DoubleSupplier values) {
        long size = r == 0 ? 0 : (r - 1) * stride + (long) c * dt.bytes();
        MemorySegment m = block.asSlice(offset, size);
        for (int i = 0; i < r; i++) {
            for (int j = 0; j < c; j++) {
                storeAt(m, dt, i * stride + (long) j * dt.bytes(), (float) values.getAsDouble());
            }
        }
        return m;
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
