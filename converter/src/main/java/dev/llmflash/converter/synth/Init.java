package dev.llmflash.converter.synth;

import java.util.Arrays;

/**
 * How the values of one synthesized tensor are made, element by element in row-major order. A pure
 * function of the element index: any range can be produced on its own, by any thread. Immutable.
 */
public sealed interface Init {

    /** Writes elements {@code first .. first + n - 1} into {@code dst[0 .. n-1]}. */
    void fill(long first, float[] dst, int n);

    /** Random weights from {@link SeededNormal}: mean 0, standard deviation {@code std}. */
    record Normal(long key, float std) implements Init {
        @Override
        public void fill(long first, float[] dst, int n) {
            SeededNormal.fill(key, std, first, dst, n);
        }
    }

    /** Every element is {@code value} (layer-norm weights 1, biases 0, a planted bias). */
    record Constant(float value) implements Init {
        @Override
        public void fill(long first, float[] dst, int n) {
            Arrays.fill(dst, 0, n, value);
        }
    }

    /**
     * {@code base}, except that column {@code column} of a row-major matrix with {@code columns}
     * columns (or element {@code column} of a vector, {@code columns} = its length) is {@code value}.
     */
    record WithColumn(Init base, long columns, long column, float value) implements Init {
        public WithColumn {
            if (columns <= 0 || column < 0 || column >= columns) {
                throw new IllegalArgumentException("column " + column + " of " + columns);
            }
        }

        @Override
        public void fill(long first, float[] dst, int n) {
            base.fill(first, dst, n);
            long firstCol = first % columns;
            // The first element of the range that lies in the column, then every row after it.
            long i = column >= firstCol ? column - firstCol : columns - firstCol + column;
            for (; i < n; i += columns) {
                dst[(int) i] = value;
            }
        }
    }
}
