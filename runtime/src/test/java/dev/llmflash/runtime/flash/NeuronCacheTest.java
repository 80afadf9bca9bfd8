package dev.llmflash.runtime.flash;

import org.junit.jupiter.api.Test;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.ValueSource;

import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.LinkedHashSet;
import java.util.List;
import java.util.Map;
import java.util.Random;
import java.util.Set;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertSame;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * {@link NeuronCache} against a plain model (neuron -> last active step; the row bytes a neuron must
 * hold are a neuron-specific pattern written when its row is reserved).
 */
class NeuronCacheTest {

    private static final int F = 257;
    private static final int CAPACITY = 100;
    /** Not a power of two, so a row copied to the wrong offset cannot match by accident. */
    private static final long STRIDE = 72;

    /** The bytes neuron {@code neuron}'s bundle holds in this test. */
    private static byte[] pattern(int neuron) {
        byte[] b = new byte[(int) STRIDE];
        for (int i = 0; i < b.length; i++) {
            b[i] = (byte) (neuron * 131 + i * 7 + 1);
        }
        return b;
    }

    private static void load(NeuronCache cache, int neuron, int row) {
        MemorySegment.copy(MemorySegment.ofArray(pattern(neuron)), 0, cache.rowSlice(row), 0, STRIDE);
    }

    private static byte[] rowBytes(NeuronCache cache, int row) {
        return cache.rowSlice(row).toArray(ValueLayout.JAVA_BYTE);
    }

    /** Every invariant, and equality with the model. */
    private static void check(NeuronCache cache, Map<Integer, Long> model, MemorySegment segment, String where) {
        assertSame(segment, cache.rows(), where + ": matrix reallocated");
        assertTrue(cache.used() <= cache.capacity(), where + ": used > capacity");
        assertEquals(model.size(), cache.used(), where + ": used");
        int occupied = 0;
        for (int r = 0; r < cache.capacity(); r++) {
            int neuron = cache.neuronAt(r);
            if (neuron < 0) {
                continue;
            }
            occupied++;
            assertTrue(model.containsKey(neuron), where + ": row " + r + " holds uncached neuron " + neuron);
            assertEquals(r, cache.row(neuron), where + ": maps not inverse at row " + r);
            assertEquals(model.get(neuron), cache.lastActive(r), where + ": last step of neuron " + neuron);
            assertArrayEquals(pattern(neuron), rowBytes(cache, r), where + ": bytes of neuron " + neuron);
        }
        assertEquals(cache.used(), occupied, where + ": occupied slots");
        for (int i = 0; i < F; i++) {
            if (!model.containsKey(i)) {
                assertEquals(-1, cache.row(i), where + ": absent neuron " + i + " has a row");
            }
        }
    }

    @ParameterizedTest
    @ValueSource(ints = {1, 2, 3, 4, 5, 6})
    void randomizedSlidingWindowMatchesModel(int window) {
        Random rnd = new Random(0x5eed + window);
        int steps = 3000;
        long refused = 0, hits = 0, loaded = 0, evicted = 0, kept = 0;
        try (NeuronCache cache = new NeuronCache(F, CAPACITY, STRIDE)) {
            MemorySegment segment = cache.rows();
            Map<Integer, Long> model = new HashMap<>();
            List<Integer> previous = List.of();
            for (long step = 0; step < steps; step++) {
                // Active set with temporal locality: part of the previous token's set plus fresh neurons.
                Set<Integer> activeSet = new LinkedHashSet<>();
                // Mostly small sets; now and then a burst (up to 99 < capacity) that overflows a wide window.
                int target = rnd.nextInt(50) == 0 ? 60 + rnd.nextInt(40) : rnd.nextInt(41);
                for (int p : previous) {
                    if (activeSet.size() < target && rnd.nextDouble() < 0.6) {
                        activeSet.add(p);
                    }
                }
                while (activeSet.size() < target) {
                    activeSet.add(rnd.nextInt(F));
                }
                int[] active = new int[target + 3];
                int n = 0;
                for (int a : activeSet) {
                    active[n++] = a;
                }
                active[n] = -77; // beyond n: must be ignored
                previous = new ArrayList<>(activeSet);

                Map<Integer, Integer> rowBefore = new HashMap<>();
                for (int nr : model.keySet()) {
                    rowBefore.put(nr, cache.row(nr));
                }

                // Model: touch, evict lastActive <= step - window, add the missing ones if they fit.
                final long s = step;
                for (int a : activeSet) {
                    if (model.containsKey(a)) {
                        model.put(a, s);
                    }
                }
                int before = model.size();
                model.values().removeIf(last -> last <= s - window);
                int expectEvicted = before - model.size();
                List<Integer> expectMissing = new ArrayList<>();
                for (int a : activeSet) {
                    if (!model.containsKey(a)) {
                        expectMissing.add(a);
                    }
                }
                String where = "window " + window + " step " + step;
                if (model.size() + expectMissing.size() > CAPACITY) {
                    assertThrows(IllegalStateException.class, () -> cache.advance(active, activeSet.size(), s, window), where);
                    refused++;
                } else {
                    NeuronCache.Advance adv = cache.advance(active, n, step, window);
                    assertEquals(expectEvicted, adv.evicted(), where + ": evicted");
                    assertArrayEquals(expectMissing.stream().mapToInt(Integer::intValue).toArray(), adv.loadNeurons(), where + ": to load");
                    assertEquals(n - expectMissing.size(), adv.hits(), where + ": hits");
                    assertEquals(expectMissing.size(), adv.loaded(), where + ": loaded");
                    for (int k = 0; k < adv.loaded(); k++) {
                        assertEquals(-1, rowBefore.getOrDefault(adv.loadNeurons()[k], -1));
                        load(cache, adv.loadNeurons()[k], adv.loadRows()[k]);
                        model.put(adv.loadNeurons()[k], step);
                    }
                    hits += adv.hits();
                    loaded += adv.loaded();
                    evicted += adv.evicted();
                }
                check(cache, model, segment, where);
                for (int nr : model.keySet()) {
                    Integer r0 = rowBefore.get(nr);
                    if (r0 != null) {
                        kept++;
                        assertEquals((int) r0, cache.row(nr), where + ": a cached neuron kept its slot");
                    }
                }
            }
        }
        // The run exercised every path. With a 1-token window every inactive row goes, so a set of at
        // most 99 neurons always fits; wider windows keep older rows and the bursts overflow them.
        assertTrue(hits > 0 && loaded > 0 && evicted > 0 && kept > 0,
                "hits " + hits + " loaded " + loaded + " evicted " + evicted + " kept " + kept);
        if (window == 1) {
            assertEquals(0, refused, "a 1-token window refused a set that fits");
        } else {
            assertTrue(refused > 0, "no overflow was refused");
        }
    }

    @Test
    void evictionFreesSlotsWithoutMovingAnyBytesAndReserveReusesThem() {
        try (NeuronCache cache = new NeuronCache(F, 5, STRIDE)) {
            long[] steps = {0, 1, 0, 1, 1};
            for (int k = 0; k < 5; k++) {
                assertArrayEquals(new int[]{k}, cache.reserve(new int[]{10 + k}, 1, steps[k]));
                load(cache, 10 + k, k);
            }
            assertEquals(2, cache.evictOlderThan(1));
            // Neurons 10 (slot 0) and 12 (slot 2) leave; the others stay in their slots with their bytes.
            assertEquals(3, cache.used());
            assertArrayEquals(new int[]{-1, 11, -1, 13, 14}, new int[]{cache.neuronAt(0), cache.neuronAt(1), cache.neuronAt(2),
                    cache.neuronAt(3), cache.neuronAt(4)});
            assertEquals(-1, cache.row(10));
            assertEquals(-1, cache.row(12));
            for (int k : new int[]{1, 3, 4}) {
                assertArrayEquals(pattern(10 + k), rowBytes(cache, k));
                assertEquals(steps[k], cache.lastActive(k));
            }
            assertThrows(IndexOutOfBoundsException.class, () -> cache.lastActive(0));
            // Freed slots are handed out again, the most recently freed first.
            assertArrayEquals(new int[]{2, 0}, cache.reserve(new int[]{30, 31}, 2, 2));
            assertTrue(cache.evict(11));
            assertEquals(-1, cache.row(11));
            assertTrue(!cache.evict(11));
            assertArrayEquals(new int[]{1}, cache.reserve(new int[]{32}, 1, 3));
            assertEquals(5, cache.evictOlderThan(5));
            assertEquals(0, cache.used());
        }
    }

    @Test
    void overflowIsRefusedAndLeavesTheCacheAsItWas() {
        try (NeuronCache cache = new NeuronCache(F, CAPACITY, STRIDE)) {
            int[] first = new int[CAPACITY - 2];
            for (int i = 0; i < first.length; i++) {
                first[i] = i * 2;
            }
            cache.reserve(first, first.length, 0);
            var e = assertThrows(IllegalStateException.class, () -> cache.reserve(new int[]{1, 3, 5}, 3, 1));
            assertTrue(e.getMessage().contains("neuron cache full: 3 neurons to load but only 2 of 100 rows free"), e.getMessage());
            assertEquals(CAPACITY - 2, cache.used());
            for (int nr : new int[]{1, 3, 5}) {
                assertEquals(-1, cache.row(nr));
            }
            assertArrayEquals(new int[]{CAPACITY - 2, CAPACITY - 1}, cache.reserve(new int[]{1, 3}, 2, 1));
            assertEquals(CAPACITY, cache.used());
            assertThrows(IllegalStateException.class, () -> cache.reserve(new int[]{5}, 1, 2));
            // advance refuses too when the window keeps everything: all 100 rows were active at step 0 or 1.
            assertThrows(IllegalStateException.class, () -> cache.advance(new int[]{7}, 1, 2, 3));
            assertEquals(CAPACITY, cache.used());
            assertEquals(-1, cache.row(7));
        }
    }

    @Test
    void reserveRejectsCachedDuplicateAndOutOfRangeNeuronsWithoutChange() {
        try (NeuronCache cache = new NeuronCache(F, 10, STRIDE)) {
            cache.reserve(new int[]{4}, 1, 0);
            assertThrows(IllegalArgumentException.class, () -> cache.reserve(new int[]{8, 4}, 2, 1));
            assertThrows(IllegalArgumentException.class, () -> cache.reserve(new int[]{8, 9, 8}, 3, 1));
            assertThrows(IllegalArgumentException.class, () -> cache.reserve(new int[]{8, F}, 2, 1));
            assertThrows(IllegalArgumentException.class, () -> cache.reserve(new int[]{-1}, 1, 1));
            assertEquals(1, cache.used());
            assertEquals(-1, cache.row(8));
            assertEquals(-1, cache.row(9));
            assertArrayEquals(new int[]{1, 2}, cache.reserve(new int[]{8, 9}, 2, 1));
        }
    }

    @Test
    void missingKeepsOrderAndTouchMarksOnlyCachedNeurons() {
        try (NeuronCache cache = new NeuronCache(F, 10, STRIDE)) {
            cache.reserve(new int[]{3, 7}, 2, 0);
            assertArrayEquals(new int[]{9, 1, 5}, cache.missing(new int[]{9, 3, 1, 7, 5, 2}, 5));
            cache.touch(new int[]{7, 9}, 2, 4);
            assertEquals(0, cache.lastActive(cache.row(3)));
            assertEquals(4, cache.lastActive(cache.row(7)));
            assertEquals(-1, cache.row(9));
            assertEquals(1, cache.evictOlderThan(4));
            assertEquals(1, cache.row(7));
        }
    }

    @Test
    void matrixIsAlignedSizedOnceAndFreedByClose() {
        NeuronCache cache = new NeuronCache(F, CAPACITY, STRIDE);
        MemorySegment rows = cache.rows();
        assertEquals(0, rows.address() % NeuronCache.ALIGNMENT);
        assertEquals(CAPACITY * STRIDE, rows.byteSize());
        cache.close();
        assertThrows(IllegalStateException.class, () -> rows.get(ValueLayout.JAVA_BYTE, 0));
    }

    @Test
    void badShapesAreRefused() {
        assertThrows(IllegalArgumentException.class, () -> new NeuronCache(10, 11, 64));
        assertThrows(IllegalArgumentException.class, () -> new NeuronCache(10, 0, 64));
        assertThrows(IllegalArgumentException.class, () -> new NeuronCache(10, 5, 0));
        try (NeuronCache cache = new NeuronCache(10, 5, 64)) {
            assertThrows(IllegalArgumentException.class, () -> cache.advance(new int[]{1}, 1, 0, 0));
        }
    }
}
