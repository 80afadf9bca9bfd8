package dev.llmflash.runtime.bench;

import org.junit.jupiter.api.Test;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.ValueSource;

import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;

import static org.junit.jupiter.api.Assertions.*;

class MemoryProbeTest {

    @ParameterizedTest
    @ValueSource(ints = {1, 2})
    void bandwidthOf64MiBIsPositiveAndFinite(int threads) {
        double gbps = MemoryProbe.readGBps(64L << 20, threads, 2);
        assertTrue(gbps > 0 && Double.isFinite(gbps), "GB/s " + gbps);
    }

    @Test
    void anOddSizeWithMoreThreadsThanVectorUnitsWorks() {
        double gbps = MemoryProbe.readGBps(4096 + 7, 3, 1);
        assertTrue(gbps > 0 && Double.isFinite(gbps), "GB/s " + gbps);
    }

    /**
     * Oracle for coverage: floats of 1.0 followed by 3 bytes of 1 add up to exactly floats + 3 (every
     * partial sum is a small integer, exact in f32) iff the slices read every byte exactly once.
     */
    @ParameterizedTest
    @ValueSource(ints = {1, 2, 3, 7, 64})
    void theSlicesReadEveryByteExactlyOnce(int threads) {
        int floats = 10_007;
        try (Arena arena = Arena.ofConfined()) {
            MemorySegment mem = arena.allocate(floats * 4L + 3, 64);
            for (int i = 0; i < floats; i++) {
                mem.setAtIndex(ValueLayout.JAVA_FLOAT_UNALIGNED, i, 1f);
            }
            for (int b = 0; b < 3; b++) {
                mem.set(ValueLayout.JAVA_BYTE, floats * 4L + b, (byte) 1);
            }
            assertEquals(floats + 3f, MemoryProbe.sum(mem, threads));
        }
    }

    @Test
    void refusesTooFewBytesThreadsOrRounds() {
        IllegalArgumentException e = assertThrows(IllegalArgumentException.class, () -> MemoryProbe.readGBps(4095, 1, 1));
        assertTrue(e.getMessage().contains("4096") && e.getMessage().contains("4095"), e.getMessage());
        e = assertThrows(IllegalArgumentException.class, () -> MemoryProbe.readGBps(1 << 20, 0, 1));
        assertTrue(e.getMessage().contains("threads"), e.getMessage());
        assertThrows(IllegalArgumentException.class, () -> MemoryProbe.readGBps(1 << 20, 1, 0));
    }
}
