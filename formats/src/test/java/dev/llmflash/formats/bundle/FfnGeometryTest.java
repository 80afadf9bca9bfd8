package dev.llmflash.formats.bundle;

import dev.llmflash.formats.tensor.DType;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.CsvSource;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

class FfnGeometryTest {

    /** The spec's examples, then each branch of the rule on both sides of its threshold. */
    @ParameterizedTest(name = "d={0} {1} -> {2}")
    @CsvSource({
            "256, F16, 1024",    // b = 1024 < 4096, a power of two already
            "4096, F16, 16384",  // b a multiple of the alignment
            "4096, F32, 32768",
            "4544, F16, 18176",  // Falcon-7B: aligning to 20480 would waste 12.7% > 1/8 -> align_up(b, 64)
            "64, F16, 256",
            "192, BF16, 768",    // falcon-mini: p = 1024 wastes 256 > 96 -> align_up(768, 64)
            "40, F16, 192",      // b = 160: p = 256 wastes 96 > 20 -> align_up(160, 64)
            "911, F16, 4096",    // b = 3644: p = 4096 wastes 452 <= 455 -> p
            "910, F16, 3648",    // b = 3640: p wastes 456 > 455 -> align_up(3640, 64)
            "2731, F16, 12288",  // b = 10924 > 4096: align_up wastes 1364 <= 1365 -> 12288
            "2730, F16, 10944",  // b = 10920: align_up wastes 1368 > 1365 -> align_up(10920, 64)
    })
    void bundleStrideRule(int d, DType dtype, long expected) {
        long stride = FfnGeometry.bundleStride(d, dtype, 4096);
        assertEquals(expected, stride);
        assertTrue(stride >= 2L * d * dtype.bytes());
    }

    @Test
    void bundledOffsets() {
        FfnGeometry g = FfnGeometry.of(FfnLayout.BUNDLED, DType.F16, 3, 40, 100);
        assertEquals(192, g.stride());
        assertEquals(100 * 192, g.blockLength());
        assertEquals(20480, g.blockSpan());
        assertEquals(4096, g.blockOffset(0));
        assertEquals(4096 + 2 * 20480, g.blockOffset(2));
        assertEquals(4096 + 3 * 20480, g.fileSize());
        assertEquals(0, g.upOffset());
        assertEquals(80, g.downOffset());
        assertEquals(7 * 192, g.upOffset(7));
        assertEquals(7 * 192 + 80, g.downOffset(7));
        assertThrows(IndexOutOfBoundsException.class, () -> g.upOffset(100));
        assertThrows(IndexOutOfBoundsException.class, () -> g.blockOffset(3));
    }

    @Test
    void splitOffsets() {
        FfnGeometry g = FfnGeometry.of(FfnLayout.SPLIT, DType.F16, 2, 40, 100);
        assertEquals(80, g.stride());
        assertEquals(8192, g.downOffset()); // align_up(100 * 80 = 8000, 4096)
        assertEquals(8192 + 8000, g.blockLength());
        assertEquals(16384, g.blockSpan());
        assertEquals(7 * 80, g.upOffset(7));
        assertEquals(8192 + 7 * 80, g.downOffset(7));
    }

    @Test
    void impossibleGeometriesAreRefused() {
        assertThrows(IllegalArgumentException.class,
                () -> new FfnGeometry(FfnLayout.BUNDLED, DType.F16, 1, 40, 100, 4096, 150, 15000)); // stride < 2r
        assertThrows(IllegalArgumentException.class,
                () -> new FfnGeometry(FfnLayout.BUNDLED, DType.F16, 1, 40, 100, 4096, 192, 19000)); // B != f*S
        assertThrows(IllegalArgumentException.class,
                () -> new FfnGeometry(FfnLayout.SPLIT, DType.F16, 1, 40, 100, 4096, 96, 16192)); // S != r
        assertThrows(IllegalArgumentException.class,
                () -> new FfnGeometry(FfnLayout.BUNDLED, DType.F16, 1, 40, 100, 3000, 192, 19200)); // not 2^k
        assertThrows(IllegalArgumentException.class,
                () -> new FfnGeometry(FfnLayout.BUNDLED, DType.F16, 1, 40, 100, 8192, 192, 19200)); // > header
        assertThrows(IllegalArgumentException.class,
                () -> new FfnGeometry(FfnLayout.BUNDLED, DType.I32, 1, 40, 100, 4096, 320, 32000)); // not a float
        assertThrows(IllegalArgumentException.class,
                () -> new FfnGeometry(FfnLayout.BUNDLED, DType.F16, 0, 40, 100, 4096, 192, 19200)); // no layers
        assertThrows(IllegalArgumentException.class, // overflow
                () -> new FfnGeometry(FfnLayout.BUNDLED, DType.F32, Integer.MAX_VALUE, Integer.MAX_VALUE,
                        Integer.MAX_VALUE, 4096, 8L * Integer.MAX_VALUE, 8L * Integer.MAX_VALUE * Integer.MAX_VALUE));
    }
}
