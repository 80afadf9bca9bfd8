package dev.llmflash.runtime.bench;

import dev.llmflash.runtime.flash.ActiveSelector;
import dev.llmflash.runtime.flash.NeuronCache;
import org.junit.jupiter.api.Test;

import java.util.ArrayDeque;
import java.util.Arrays;
import java.util.BitSet;
import java.util.Deque;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * {@link SyntheticActivity} against the paper's OPT-6.7B targets, against its own closed-form
 * expectation, and against the runtime's {@link NeuronCache} window (the oracle for "new per token").
 */
class SyntheticActivityTest {

    private static final int F = 16384;
    private static final int[] WINDOWS = {0, 1, 2, 3, 4, 5, 8};
    private static final SyntheticActivity PAPER = SyntheticActivity.calibrate(F, SyntheticActivity.Params.paper());

    private static void assertRelative(double expected, double actual, double tolerance, String what) {
        assertTrue(Math.abs(actual / expected - 1) <= tolerance,
                what + ": expected " + expected + " within " + tolerance * 100 + "%, got " + actual);
    }

    @Test
    void paperParamsHitThePaperFigures() {
        SyntheticActivity.Stats s = PAPER.measure(1000, WINDOWS, 7);
        double[] fresh = s.newPerToken();
        assertRelative(0.105, s.density(), 0.05, "density");
        assertRelative(0.024, fresh[5], 0.05, "new per token at window 5");
        assertEquals(s.density(), fresh[0], "window 0 loads the whole active set");
        for (int w = 1; w < WINDOWS.length; w++) {
            assertTrue(fresh[w] < fresh[w - 1], "new fraction must fall with the window: " + Arrays.toString(fresh));
        }
        // Persistent (more overlap than independent tokens' density) and heavy-tailed (more than 1% of the
        // activations from the hottest 1%), but no neuron is always on.
        assertTrue(s.overlapWithPrevious() > s.density() && s.overlapWithPrevious() < 1, s.toString());
        assertTrue(s.hottestShare() > 0.03 && s.hottestShare() < 0.5, s.toString());
        assertTrue(PAPER.persistence() > 0 && PAPER.persistence() < 1, "lambda " + PAPER.persistence());
        assertEquals(SyntheticActivity.LOGNORMAL_SIGMA, PAPER.lognormalSigma());
        assertEquals(F, PAPER.neurons());
        assertEquals(SyntheticActivity.Params.paper(), PAPER.params());
    }

    @Test
    void simulationMatchesTheClosedForm() {
        double[] fresh = PAPER.measure(1000, WINDOWS, 11).newPerToken();
        for (int w = 0; w < WINDOWS.length; w++) {
            assertRelative(PAPER.expectedNewPerToken(WINDOWS[w]), fresh[w], 0.03, "window " + WINDOWS[w]);
        }
        assertRelative(0.024, PAPER.expectedNewPerToken(5), 0.02, "calibrated expectation at window 5");
        assertEquals(0.105, PAPER.expectedNewPerToken(0), 1e-12, "hotness mean is the density exactly");
    }

    /**
     * Drives the runtime's cache with a selector: each token loads exactly S_t minus the union of the
     * previous K active sets (checked token by token against explicit sets), and on average the
     * calibrated 2.4%.
     */
    @Test
    void runtimeCacheLoadsTheCalibratedFraction() {
        int window = 5, tokens = 600;
        ActiveSelector sel = PAPER.selector(3);
        assertEquals(F, sel.neurons());
        int[] active = new int[F];
        Deque<BitSet> history = new ArrayDeque<>();
        long loaded = 0;
        try (NeuronCache cache = new NeuronCache(F, F, 1)) {
            for (int t = 1; t <= tokens; t++) {
                int n = sel.select(null, 0, active);
                BitSet now = new BitSet(F);
                for (int j = 0; j < n; j++) {
                    now.set(active[j]);
                }
                BitSet expectedNew = (BitSet) now.clone();
                for (BitSet previous : history) {
                    expectedNew.andNot(previous);
                }
                NeuronCache.Advance a = cache.advance(active, n, t, window);
                BitSet actualNew = new BitSet(F);
                for (int neuron : a.loadNeurons()) {
                    actualNew.set(neuron);
                }
                assertEquals(expectedNew, actualNew, "token " + t);
                if (t > window) {
                    loaded += a.loaded();
                }
                history.addLast(now);
                if (history.size() > window) {
                    history.removeFirst();
                }
            }
        }
        assertRelative(0.024, loaded / ((double) (tokens - window) * F), 0.05, "cache loads per token");
    }

    @Test
    void selectorOutputIsSortedDistinctInRangeAndSeeded() {
        SyntheticActivity again = SyntheticActivity.calibrate(F, SyntheticActivity.Params.paper());
        assertEquals(PAPER.persistence(), again.persistence(), "calibration is deterministic");
        SyntheticActivity otherSeed = SyntheticActivity.calibrate(F,
                new SyntheticActivity.Params(0.105, 0.024, 5, 2));
        ActiveSelector a = PAPER.selector(2), b = again.selector(2), c = PAPER.selector(5), d = otherSeed.selector(2);
        int[] oa = new int[F], ob = new int[F], oc = new int[F], od = new int[F];
        boolean differsByLayer = false, differsBySeed = false;
        for (int t = 0; t < 50; t++) {
            int na = a.select(null, 0, oa);
            int nb = b.select(new float[3], 1, ob);
            int nc = c.select(null, 0, oc);
            int nd = d.select(null, 0, od);
            assertTrue(na > 0, "token " + t + " is empty");
            for (int j = 0; j < na; j++) {
                assertTrue(oa[j] >= 0 && oa[j] < F, "out of range: " + oa[j]);
                assertTrue(j == 0 || oa[j] > oa[j - 1], "not strictly increasing at " + j);
            }
            assertArrayEquals(Arrays.copyOf(oa, na), Arrays.copyOf(ob, nb), "same seed and layer, token " + t);
            differsByLayer |= !Arrays.equals(Arrays.copyOf(oa, na), Arrays.copyOf(oc, nc));
            differsBySeed |= !Arrays.equals(Arrays.copyOf(oa, na), Arrays.copyOf(od, nd));
        }
        assertTrue(differsByLayer, "layers 2 and 5 gave the same stream");
        assertTrue(differsBySeed, "seeds 1 and 2 gave the same stream");
    }

    @Test
    void secondTargetIsHitToo() {
        SyntheticActivity.Params p = new SyntheticActivity.Params(0.05, 0.01, 4, 3);
        SyntheticActivity s = SyntheticActivity.calibrate(F, p);
        SyntheticActivity.Stats st = s.measure(1000, new int[]{0, 4}, 5);
        assertRelative(0.05, st.density(), 0.05, "density");
        assertRelative(0.01, st.newPerToken()[1], 0.05, "new per token at window 4");
        assertTrue(s.persistence() > 0 && s.persistence() < 1);
    }

    /** An odd, small layer: the last neuron (drawn from the upper half of a random word) is reachable. */
    @Test
    void smallOddLayerCalibratesAndUsesEveryNeuron() {
        int f = 101;
        SyntheticActivity s = SyntheticActivity.calibrate(f, SyntheticActivity.Params.paper());
        SyntheticActivity.Stats st = s.measure(20000, new int[]{0, 5}, 9);
        assertRelative(0.105, st.density(), 0.10, "density");
        assertRelative(0.024, st.newPerToken()[1], 0.10, "new per token at window 5");
        ActiveSelector sel = s.selector(0);
        int[] out = new int[f];
        boolean[] seen = new boolean[f];
        for (int t = 0; t < 20000; t++) {
            int n = sel.select(null, 0, out);
            for (int j = 0; j < n; j++) {
                seen[out[j]] = true;
            }
        }
        for (int i = 0; i < f; i++) {
            assertTrue(seen[i], "neuron " + i + " never active");
        }
    }

    @Test
    void impossibleParamsAreRefusedClearly() {
        IllegalArgumentException e = assertThrows(IllegalArgumentException.class,
                () -> SyntheticActivity.calibrate(F, new SyntheticActivity.Params(0.105, 0.1, 5, 1)));
        assertTrue(e.getMessage().contains("unreachable") && e.getMessage().contains("negative persistence"),
                e.getMessage());
        assertFalse(e.getMessage().contains("\n"), "one line");

        assertTrue(assertThrows(IllegalArgumentException.class,
                () -> new SyntheticActivity.Params(0.05, 0.06, 5, 1)).getMessage().contains("newPerToken"));
        assertTrue(assertThrows(IllegalArgumentException.class,
                () -> new SyntheticActivity.Params(0.05, 0.01, 0, 1)).getMessage().contains("window"));
        assertTrue(assertThrows(IllegalArgumentException.class,
                () -> new SyntheticActivity.Params(1.0, 0.01, 5, 1)).getMessage().contains("density"));
        assertTrue(assertThrows(IllegalArgumentException.class,
                () -> new SyntheticActivity.Params(0.1, 0, 5, 1)).getMessage().contains("newPerToken"));
        assertThrows(IllegalArgumentException.class, () -> SyntheticActivity.calibrate(0, SyntheticActivity.Params.paper()));
        assertThrows(IllegalArgumentException.class, () -> PAPER.measure(10, new int[]{-1}, 1));
        assertThrows(IllegalArgumentException.class, () -> PAPER.selector(-1));
    }
}
