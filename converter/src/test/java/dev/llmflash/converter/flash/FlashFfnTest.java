package dev.llmflash.converter.flash;

import dev.llmflash.converter.ConvertOptions;
import dev.llmflash.converter.Converter;
import dev.llmflash.converter.Progress;
import dev.llmflash.formats.bundle.Bundle;
import dev.llmflash.formats.bundle.FfnGeometry;
import dev.llmflash.formats.bundle.FfnLayout;
import dev.llmflash.formats.tensor.DType;
import dev.llmflash.formats.testing.TestData;
import dev.llmflash.runtime.flash.ActiveSelector;
import dev.llmflash.runtime.flash.FlashFfn;
import dev.llmflash.runtime.flash.FlashMetrics;
import dev.llmflash.runtime.flash.NeuronCache;
import dev.llmflash.runtime.io.IoEngine;
import dev.llmflash.runtime.kernels.Kernels;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.io.TempDir;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.EnumSource;

import java.io.EOFException;
import java.io.IOException;
import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.channels.FileChannel;
import java.nio.file.Path;
import java.nio.file.StandardOpenOption;
import java.util.Arrays;
import java.util.BitSet;
import java.util.EnumMap;
import java.util.Map;
import java.util.Random;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;
import static org.junit.jupiter.api.Assertions.fail;

/**
 * One layer's {@link FlashFfn}, built directly over a converted opt-mini bundle's {@code ffn.bin}
 * (bundled and split layouts), driven by a scripted selector that replays randomized active sets with
 * token-to-token overlap, for windows -1 (largest), 0 (none), 1, 2, 5 and caches from every neuron
 * down to fewer rows than some active sets. After every token it checks, against oracles that read
 * the file with a plain {@link FileChannel}:
 * <ol>
 *   <li>the I/O: neurons loaded = |S \ C| (S the active set, C the cache before the token; |S| with
 *       no window or on overflow), bytes = loaded x bytes per neuron, hits = |S &cap; C|, and the
 *       other counters (evicted, active, overflows, window reach);</li>
 *   <li>the cached set: exactly what the policy in plain words ({@link #expectedCache}) keeps; and,
 *       spelled out, the window semantics at full capacity (the union of the last K sets; nothing
 *       evicted with the largest window; S alone without a window) and with a small cache (S is kept,
 *       the capacity is never exceeded, the previous token's neurons stay whenever both sets fit);</li>
 *   <li>the cache's consistency: row maps agree, last-active steps are the neurons' last use, and every
 *       row's bytes are its neuron's bundle in the file (so eviction moves and reads land right);</li>
 *   <li>the output: equal to a scalar-loop FFN over exactly S computed from the file's f16 weights and
 *       the bundle's biases; where the cache also holds neurons outside S, the test checks that
 *       computing them too would have been caught (the masking is really tested).</li>
 * </ol>
 * A second test shows that a batched call is the same sequence of window steps as one token at a time.
 */
class FlashFfnTest {
    static final String MODEL = "opt-mini";
    static final int[] WINDOWS = {-1, 0, 1, 2, 5};
    /** Cache capacities in 32nds of f: every neuron, 10/32, 5/32 and 3/32 (below many active sets). */
    static final int[] CAPACITY_32NDS = {32, 10, 5, 3};
    static final int STEPS = 16;
    /** Relative tolerance against the sum of |terms| of each output (only the summation order differs). */
    static final double REL_TOL = 1e-3;

    @TempDir
    static Path tmp;
    static Kernels kernels;
    static final Map<FfnLayout, Path> bundles = new EnumMap<>(FfnLayout.class);

    @BeforeAll
    static void setUp() {
        kernels = new Kernels(2);
        for (FfnLayout layout : FfnLayout.values()) {
            Path out = tmp.resolve(MODEL + "-" + layout);
            Converter.convert(new ConvertOptions(TestData.model(MODEL), out, null, layout, false), Progress.none());
            bundles.put(layout, out);
        }
    }

    @AfterAll
    static void tearDown() {
        kernels.close();
    }

    /** One layer of a bundle as the oracles see it: bytes per neuron as read from the file, decoded weights, biases. */
    record Layer(FfnGeometry g, Path ffnPath, int index, byte[][] neuronBytes, float[][] up, float[][] down,
                 float[] upBias, float[] downBias) {

        static Layer read(Path bundleDir, int layer) throws IOException {
            FfnGeometry g;
            Path ffnPath;
            float[] upBias, downBias;
            try (Bundle b = Bundle.open(bundleDir)) {
                g = b.ffn().geometry();
                ffnPath = b.ffn().path();
                String p = "model.decoder.layers." + layer + ".";
                upBias = b.resident().tensor(p + "fc1.bias").toFloatArray();
                downBias = b.resident().tensor(p + "fc2.bias").toFloatArray();
            }
            assertEquals(DType.F16, g.dtype(), "the oracle decodes f16 weights");
            int d = g.dModel(), f = g.dFfn();
            int r = (int) g.rowBytes();
            long block = g.blockOffset(layer);
            byte[][] bytes = new byte[f][];
            float[][] up = new float[f][d], down = new float[f][d];
            try (FileChannel ch = FileChannel.open(ffnPath, StandardOpenOption.READ)) {
                for (int i = 0; i < f; i++) {
                    byte[] upRow, downCol;
                    if (g.layout() == FfnLayout.BUNDLED) {
                        // The whole stride, as a bundled cache row holds it (padding included).
                        bytes[i] = readFully(ch, block + g.upOffset(i), (int) g.stride());
                        upRow = Arrays.copyOfRange(bytes[i], 0, r);
                        downCol = Arrays.copyOfRange(bytes[i], r, 2 * r);
                    } else {
                        upRow = readFully(ch, block + g.upOffset(i), r);
                        downCol = readFully(ch, block + g.downOffset(i), r);
                        bytes[i] = new byte[2 * r];
                        System.arraycopy(upRow, 0, bytes[i], 0, r);
                        System.arraycopy(downCol, 0, bytes[i], r, r);
                    }
                    up[i] = decodeF16(upRow, d);
                    down[i] = decodeF16(downCol, d);
                }
            }
            return new Layer(g, ffnPath, layer, bytes, up, down, upBias, downBias);
        }
    }

    static byte[] readFully(FileChannel ch, long pos, int n) throws IOException {
        ByteBuffer buf = ByteBuffer.allocate(n);
        while (buf.hasRemaining()) {
            if (ch.read(buf, pos + buf.position()) < 0) {
                throw new EOFException("ffn.bin ends before byte " + (pos + n));
            }
        }
        return buf.array();
    }

    static float[] decodeF16(byte[] b, int n) {
        ByteBuffer le = ByteBuffer.wrap(b).order(ByteOrder.LITTLE_ENDIAN);
        float[] out = new float[n];
        for (int j = 0; j < n; j++) {
            out[j] = Float.float16ToFloat(le.getShort(2 * j));
        }
        return out;
    }

    /** Replays pre-generated active sets, one per call, ignoring the input. */
    static final class Scripted implements ActiveSelector {
        private final int f;
        private final int[][] sets;
        private int next;

        Scripted(int f, int[][] sets) {
            this.f = f;
            this.sets = sets;
        }

        @Override
        public int neurons() {
            return f;
        }

        @Override
        public int select(float[] x, int off, int[] out) {
            if (next == sets.length) {
                fail("the FFN asked for more tokens than scripted (" + sets.length + ")");
            }
            int[] s = sets[next++];
            System.arraycopy(s, 0, out, 0, s.length);
            return s.length;
        }
    }

    /**
     * Active sets like real activity: mostly 2.5-10% of the neurons, keeping 60-80% of the previous set and
     * adding fresh ones; sometimes a burst of 12-37%, sometimes nothing; step 11 is a burst of 3/8 of the
     * neurons (larger than every small cache here, so the overflow path runs in each small-cache case).
     */
    static int[][] script(long seed, int f, int steps) {
        Random rnd = new Random(seed);
        int[][] sets = new int[steps][];
        int[] prev = new int[0];
        for (int t = 0; t < steps; t++) {
            double u = rnd.nextDouble();
            int size = t == 10 ? 3 * f / 8
                    : u < 0.05 && t > 0 ? 0
                    : u < 0.25 ? f / 8 + rnd.nextInt(f / 4)
                    : f / 40 + rnd.nextInt(f / 13);
            int keep = Math.min(size, (int) Math.round(prev.length * (0.6 + 0.2 * rnd.nextDouble())));
            int[] p = prev.clone();
            BitSet s = new BitSet(f);
            for (int k = 0; k < keep; k++) {  // partial Fisher-Yates: keep random members of the previous set
                int j = k + rnd.nextInt(p.length - k);
                int swap = p[j];
                p[j] = p[k];
                p[k] = swap;
                s.set(p[k]);
            }
            BitSet before = bits(prev);
            while (s.cardinality() < size) {
                int c = rnd.nextInt(f);
                if (!before.get(c)) {
                    s.set(c);
                }
            }
            sets[t] = s.stream().toArray();
            prev = sets[t];
        }
        return sets;
    }

    static BitSet bits(int[] neurons) {
        BitSet b = new BitSet();
        for (int i : neurons) {
            b.set(i);
        }
        return b;
    }

    static BitSet cached(NeuronCache cache) {
        BitSet b = new BitSet();
        for (int r = 0; r < cache.capacity(); r++) {
            if (cache.neuronAt(r) >= 0) {
                b.set(cache.neuronAt(r));
            }
        }
        return b;
    }

    /**
     * The cache after step t, in plain words: an active set larger than the cache leaves its last part
     * (parts of {@code capacity} from the start); no window keeps S; otherwise the cached neurons and S,
     * minus those not used in the last K steps (window K), and - if that exceeds the capacity - only the
     * neurons of the most recent whole steps that fit (the largest window the cache allows).
     *
     * @param lastUse each neuron's last step in an active set, S (step t) included
     */
    static BitSet expectedCache(BitSet before, int[] s, int[] lastUse, int t, int window, int capacity) {
        if (s.length > capacity) {
            int lastPart = (s.length - 1) / capacity * capacity;
            return bits(Arrays.copyOfRange(s, lastPart, s.length));
        }
        if (window == 0) {
            return bits(s);
        }
        BitSet cand = (BitSet) before.clone();
        cand.or(bits(s));
        if (window > 0) {
            for (int c : cand.stream().toArray()) {
                if (lastUse[c] < t - window + 1) {
                    cand.clear(c);
                }
            }
        }
        if (cand.cardinality() <= capacity) {
            return cand;
        }
        BitSet keep = new BitSet();
        for (int age = 0; age <= t; age++) {
            int a = age;
            BitSet group = new BitSet();
            cand.stream().filter(c -> t - lastUse[c] == a).forEach(group::set);
            if (keep.cardinality() + group.cardinality() > capacity) {
                break;
            }
            keep.or(group);
        }
        return keep;
    }

    /** The FFN over exactly {@code neurons}, scalar loops in double; also each output's sum of |terms| (error scale). */
    static double[][] oracle(Layer l, BitSet neurons, float[] x) {
        int d = l.g().dModel();
        double[] out = new double[d], scale = new double[d];
        neurons.stream().forEach(i -> {
            double a = l.upBias()[i];
            for (int j = 0; j < d; j++) {
                a += (double) l.up()[i][j] * x[j];
            }
            if (a > 0) {
                for (int j = 0; j < d; j++) {
                    double term = a * l.down()[i][j];
                    out[j] += term;
                    scale[j] += Math.abs(term);
                }
            }
        });
        for (int j = 0; j < d; j++) {
            out[j] += l.downBias()[j];
            scale[j] += Math.abs(l.downBias()[j]);
        }
        return new double[][]{out, scale};
    }

    /** What the test managed to exercise in one layout (so that it cannot pass vacuously). */
    static final class Coverage {
        int overflows, capacityEvictions, windowEvictions, previousStepKept, maskingCaught, loadsAndHits;
    }

    @ParameterizedTest
    @EnumSource(FfnLayout.class)
    void everyTokenLoadsExactlyTheMissingNeuronsKeepsTheWindowAndComputesTheChosenNeurons(FfnLayout layout) throws IOException {
        Path dir = bundles.get(layout);
        int layers;
        try (Bundle b = Bundle.open(dir)) {
            layers = b.config().numLayers();
        }
        Layer[] byLayer = new Layer[layers];
        Coverage cov = new Coverage();
        int combo = 0;
        for (int window : WINDOWS) {
            for (int c32 : CAPACITY_32NDS) {
                int layer = combo % layers;  // every layer's block offset gets used
                if (byLayer[layer] == null) {
                    byLayer[layer] = Layer.read(dir, layer);
                }
                Layer l = byLayer[layer];
                int f = l.g().dFfn();
                runCase(l, layout, window, f * c32 / 32, script(1000L * window + c32, f, STEPS), new Random(combo), cov);
                combo++;
            }
        }
        String where = layout + ": ";
        assertTrue(cov.overflows > 0, where + "some active sets exceeded the cache");
        assertTrue(cov.capacityEvictions > 0, where + "some tokens evicted for capacity (beyond the window)");
        assertTrue(cov.windowEvictions > 0, where + "some tokens evicted by the window");
        assertTrue(cov.previousStepKept > 0, where + "the previous token's neurons were checked to stay under a small cache");
        assertTrue(cov.maskingCaught > 0, where + "cached neurons outside S would have changed the output");
        assertTrue(cov.loadsAndHits > 0, where + "some tokens both hit and loaded");
    }

    static void runCase(Layer l, FfnLayout layout, int window, int capacity, int[][] sets, Random xs, Coverage cov) {
        FfnGeometry g = l.g();
        int d = g.dModel(), f = g.dFfn();
        long bytesPerNeuron = FlashFfn.bytesPerNeuron(g);
        int[] lastUse = new int[f];
        Arrays.fill(lastUse, -1);
        FlashMetrics metrics = new FlashMetrics();
        // Half the cases read through io_uring, half through the thread pool: both against the oracle.
        IoEngine.Backend backend = ((window * 31 + capacity) & 1) == 0 ? IoEngine.Backend.URING : IoEngine.Backend.THREADS;
        try (NeuronCache cache = new NeuronCache(f, capacity, FlashFfn.cacheStride(g));
             IoEngine io = IoEngine.open(l.ffnPath(), 4, true, 0, 64 << 10, backend)) {
            FlashFfn ffn = new FlashFfn(l.index(), g, g.blockOffset(l.index()), cache, new Scripted(f, sets), io,
                    l.upBias(), l.downBias(), window, metrics);
            float[] x = new float[d], h = new float[f], out = new float[d];
            for (int i = 0; i < sets.length; i++) {
                int t = i + 1;  // FlashFfn's step counter: the first token is step 1
                int[] s = sets[i];
                BitSet sBits = bits(s);
                int n = s.length;
                String at = layout + " layer " + l.index() + " window " + window + " capacity " + capacity
                        + " step " + t + " |S|=" + n;
                BitSet before = cached(cache);
                for (int j = 0; j < d; j++) {
                    x[j] = (float) xs.nextGaussian();
                }
                FlashMetrics.Totals m0 = metrics.snapshot();

                ffn.forward(kernels, x, 1, h, out);

                FlashMetrics.Totals dm = metrics.snapshot().minus(m0);
                for (int c : s) {
                    lastUse[c] = t;
                }
                BitSet after = cached(cache);
                boolean overflow = n > capacity;
                BitSet hit = (BitSet) sBits.clone();
                hit.and(before);
                int hits = hit.cardinality();

                // 1. I/O: exactly the missing neurons, whole bundles.
                long loaded = overflow || window == 0 ? n : n - hits;
                assertEquals(loaded, dm.neuronsLoaded(), at + ": neurons loaded = |S \\ C| (C = cache before)");
                assertEquals(loaded * bytesPerNeuron, dm.bytesRequested(), at + ": bytes requested");
                assertEquals(overflow || window == 0 ? 0 : hits, dm.hits(), at + ": hits = |S and C|");
                assertEquals(n, dm.active(), at + ": active");
                assertEquals(1, dm.layerSteps(), at + ": layer steps");
                assertEquals(overflow ? 1 : 0, dm.overflows(), at + ": overflows");
                BitSet gone = (BitSet) before.clone();
                gone.andNot(after);
                // No window drops the whole cache (S is reloaded); an overflow also drops every part but the last.
                long evicted = overflow ? before.cardinality() + n - after.cardinality()
                        : window == 0 ? before.cardinality() : gone.cardinality();
                assertEquals(evicted, dm.neuronsEvicted(), at + ": evicted");
                int oldest = t;
                for (int r = 0; r < cache.capacity(); r++) {
                    if (cache.neuronAt(r) >= 0) {
                        oldest = (int) Math.min(oldest, cache.lastActive(r));
                    }
                }
                assertEquals(overflow ? 1 : t - oldest + 1, dm.windowSum(), at + ": window reach");

                // 2./3. The cached set.
                assertTrue(cache.used() <= capacity, at + ": " + cache.used() + " rows used");
                assertEquals(expectedCache(before, s, lastUse, t, window, capacity), after, at + ": cached neurons");
                if (!overflow) {
                    BitSet missingS = (BitSet) sBits.clone();
                    missingS.andNot(after);
                    assertTrue(missingS.isEmpty(), at + ": S is cached after its token, missing " + missingS);
                }
                if (capacity == f && window != 0) {
                    BitSet want = new BitSet();
                    if (window == -1) {
                        assertEquals(0, dm.neuronsEvicted(), at + ": the largest window with every row evicts nothing");
                    }
                    int from = window == -1 ? 0 : Math.max(0, i - window + 1);
                    for (int k = from; k <= i; k++) {
                        want.or(bits(sets[k]));
                    }
                    assertEquals(want, after, at + ": the cache is the union of the active sets in the window");
                }
                if (window == 0) {
                    assertEquals(overflow ? after : sBits, after, at + ": no window keeps S alone");
                }
                if ((window == -1 || window >= 2) && capacity < f && i > 0 && !overflow) {
                    BitSet both = bits(sets[i - 1]);
                    both.or(sBits);
                    if (both.cardinality() <= capacity) {
                        BitSet prevGone = bits(sets[i - 1]);
                        prevGone.andNot(after);
                        assertTrue(prevGone.isEmpty(), at + ": the previous token's neurons stay when both fit, lost " + prevGone);
                        cov.previousStepKept++;
                    }
                }
                if (!overflow && !gone.isEmpty()) {
                    // A window eviction removes only neurons out of the window; one that took a neuron still in
                    // the window was for capacity.
                    boolean inWindow = gone.stream().anyMatch(c -> window == -1 || lastUse[c] >= t - window + 1);
                    if (inWindow) {
                        cov.capacityEvictions++;
                    } else {
                        cov.windowEvictions++;
                    }
                }

                // 4. Consistency: maps, last use, bytes from the file.
                for (int r = 0; r < cache.capacity(); r++) {
                    int neuron = cache.neuronAt(r);
                    if (neuron < 0) {
                        continue;
                    }
                    assertEquals(r, cache.row(neuron), at + ": row of neuron " + neuron);
                    assertEquals(lastUse[neuron], cache.lastActive(r), at + ": last active of neuron " + neuron + " in row " + r);
                    byte[] want = l.neuronBytes()[neuron];
                    MemorySegment got = cache.rowSlice(r).asSlice(0, want.length);
                    long mismatch = got.mismatch(MemorySegment.ofArray(want));
                    assertEquals(-1, mismatch, at + ": row " + r + " holds neuron " + neuron + "'s bytes from the file");
                }
                for (int neuron = 0; neuron < f; neuron++) {
                    assertEquals(after.get(neuron), cache.row(neuron) >= 0, at + ": row(" + neuron + ") agrees with the rows");
                }

                // 5. The output: the FFN over exactly S.
                double[][] oracle = oracle(l, sBits, x);
                for (int j = 0; j < d; j++) {
                    double tol = REL_TOL * oracle[1][j] + 1e-6;
                    double err = Math.abs(out[j] - oracle[0][j]);
                    if (err > tol) {
                        fail(at + ": output " + j + " = " + out[j] + ", oracle " + oracle[0][j] + " (tolerance " + tol + ")");
                    }
                }
                if (!overflow && after.cardinality() > n) {
                    double[][] unmasked = oracle(l, after, x);
                    for (int j = 0; j < d; j++) {
                        if (Math.abs(unmasked[0][j] - oracle[0][j]) > 10 * (REL_TOL * oracle[1][j] + 1e-6)) {
                            cov.maskingCaught++;
                            break;
                        }
                    }
                }
                if (!overflow && window != 0 && hits > 0 && hits < n) {
                    cov.loadsAndHits++;
                }
                if (overflow) {
                    cov.overflows++;
                }
            }
        }
    }

    /** A prefill plan that streams through a buffer of two pieces of about a third of a layer each. */
    static FlashFfn.PrefillPlan streamPlan(FfnGeometry g, Arena arena, FlashFfn.PrefillPlan.Policy policy) {
        long half = FfnGeometry.alignUp(dev.llmflash.runtime.flash.StreamedFfn.bytesFor(g, g.dFfn() / 3), 4096);
        return new FlashFfn.PrefillPlan(arena.allocate(2 * half, 4096), 1, 1, policy);
    }

    /**
     * Layer-major prefill: a call of m tokens, each with its own scripted set, against m one-token calls
     * on a fresh cache of the same size: the same outputs (summation order aside), the same cache after
     * the prompt (neurons, last-active steps, every slot holding its neuron's bytes from the file), the
     * same next decode token (its loads and output), and the I/O the plan promises: the union's missing
     * bundles once (random), or the layer exactly once (stream). For the random plan, caches from every
     * neuron down to below the union (then it streams) and below one token's set (overflow replay); windows
     * -1, 0, 2, 5.
     */
    @ParameterizedTest
    @EnumSource(FfnLayout.class)
    void aPromptIsReadOnceAndLeavesTheCacheAsTokenByTokenDecoding(FfnLayout layout) throws IOException {
        Layer l = Layer.read(bundles.get(layout), 1);
        FfnGeometry g = l.g();
        int d = g.dModel(), f = g.dFfn(), m = 11, steps = m + 1;
        int cases = 0, streamed = 0, random = 0, fallback = 0;
        for (FlashFfn.PrefillPlan.Policy policy : new FlashFfn.PrefillPlan.Policy[]{FlashFfn.PrefillPlan.Policy.RANDOM,
                FlashFfn.PrefillPlan.Policy.STREAM}) {
            for (int window : new int[]{-1, 0, 2, 5}) {
                for (int c32 : CAPACITY_32NDS) {
                    int capacity = f * c32 / 32;
                    int[][] sets = script(31L * window + c32 + policy.ordinal(), f, steps);
                    Random rnd = new Random(window * 100 + c32);
                    float[] x = new float[steps * d];
                    for (int i = 0; i < x.length; i++) {
                        x[i] = (float) rnd.nextGaussian();
                    }
                    String at = layout + " " + policy + " window " + window + " capacity " + capacity;
                    BitSet union = new BitSet();
                    for (int t = 0; t < m; t++) {
                        union.or(bits(sets[t]));
                    }
                    float[][] outs = new float[2][steps * d];
                    BitSet[] finalCache = new BitSet[2];
                    long[][] lastActive = new long[2][f];
                    FlashMetrics.Totals[] prompt = new FlashMetrics.Totals[2], next = new FlashMetrics.Totals[2];
                    for (int mode = 0; mode < 2; mode++) {
                        FlashMetrics metrics = new FlashMetrics();
                        try (Arena arena = Arena.ofShared();
                             NeuronCache cache = new NeuronCache(f, capacity, FlashFfn.cacheStride(g));
                             IoEngine io = IoEngine.open(l.ffnPath(), 4, true, 0, 64 << 10, IoEngine.Backend.URING)) {
                            FlashFfn ffn = new FlashFfn(l.index(), g, g.blockOffset(l.index()), cache, new Scripted(f, sets), io,
                                    l.upBias(), l.downBias(), window, metrics, streamPlan(g, arena, policy));
                            if (mode == 0) {
                                float[] xt = new float[d], ot = new float[d];
                                for (int t = 0; t < m; t++) {
                                    System.arraycopy(x, t * d, xt, 0, d);
                                    ffn.forward(kernels, xt, 1, new float[f], ot);
                                    System.arraycopy(ot, 0, outs[0], t * d, d);
                                }
                            } else {
                                float[] ob = new float[m * d];
                                ffn.forward(kernels, Arrays.copyOf(x, m * d), m, new float[0], ob);
                                System.arraycopy(ob, 0, outs[1], 0, m * d);
                            }
                            prompt[mode] = metrics.snapshot();
                            finalCache[mode] = cached(cache);
                            Arrays.fill(lastActive[mode], -1);
                            for (int r = 0; r < cache.capacity(); r++) {
                                int nr = cache.neuronAt(r);
                                if (nr >= 0) {
                                    lastActive[mode][nr] = cache.lastActive(r);
                                    long mismatch = cache.rowSlice(r).asSlice(0, l.neuronBytes()[nr].length)
                                            .mismatch(MemorySegment.ofArray(l.neuronBytes()[nr]));
                                    assertEquals(-1, mismatch, at + " mode " + mode + ": slot " + r + " holds neuron " + nr + "'s bundle");
                                }
                            }
                            float[] ot = new float[d];
                            ffn.forward(kernels, Arrays.copyOfRange(x, m * d, steps * d), 1, new float[f], ot);
                            System.arraycopy(ot, 0, outs[mode], m * d, d);
                            next[mode] = metrics.snapshot().minus(prompt[mode]);
                        }
                    }
                    for (int i = 0; i < steps * d; i++) {
                        double tol = 1e-4 * (1 + Math.abs(outs[0][i]));
                        if (Math.abs(outs[0][i] - outs[1][i]) > tol) {
                            fail(at + ": output " + i + " (token " + i / d + ") prefill " + outs[1][i] + " vs token by token " + outs[0][i]);
                        }
                    }
                    assertEquals(finalCache[0], finalCache[1], at + ": the cache after the prompt");
                    assertArrayEquals(lastActive[0], lastActive[1], at + ": last-active steps after the prompt");
                    assertEquals(next[0].neuronsLoaded(), next[1].neuronsLoaded(), at + ": the next token loads alike");
                    assertEquals(next[0].hits(), next[1].hits(), at + ": the next token hits alike");
                    long perNeuron = FlashFfn.bytesPerNeuron(g);
                    FlashMetrics.Totals p = prompt[1];
                    assertEquals(m, p.layerSteps(), at + ": one layer step per prompt token");
                    // The union borrows free slots; when they are too few, the layer is streamed whatever the policy.
                    if (policy == FlashFfn.PrefillPlan.Policy.STREAM || p.prefillStreamed() == 1) {
                        assertEquals((long) f * perNeuron, p.bytesRequested(), at + ": the layer streamed exactly once");
                        assertEquals(1, p.prefillStreamed(), at + ": streamed");
                        streamed++;
                    } else {
                        assertTrue(p.bytesRequested() <= (long) union.cardinality() * perNeuron,
                                at + ": at most the union read, " + p.bytesRequested() + " > " + union.cardinality() * perNeuron);
                        assertTrue(p.bytesRequested() >= Math.min(union.cardinality(), 1) * perNeuron, at + ": the union read");
                        random++;
                    }
                    fallback += policy == FlashFfn.PrefillPlan.Policy.RANDOM && p.prefillStreamed() == 1 ? 1 : 0;
                    cases++;
                }
            }
        }
        assertTrue(streamed > 0 && random > 0 && fallback > 0 && cases == 32,
                "streamed " + streamed + ", random " + random + ", streamed for want of free slots " + fallback);
    }

    /**
     * The look-ahead: layer A, on each token, has layer B prefetch a scripted guess of B's next set (part
     * of it plus neurons B will not need), with B's cache from every neuron down to below a set plus its
     * guess. B's outputs stay the FFN over exactly its own set, every cached slot holds its neuron's
     * bundle, the guessed neurons B needed were read ahead (not again), and the capacity holds.
     */
    @ParameterizedTest
    @EnumSource(FfnLayout.class)
    void aLookAheadPrefetchesWithoutChangingTheOutput(FfnLayout layout) throws IOException {
        Layer la = Layer.read(bundles.get(layout), 0), lb = Layer.read(bundles.get(layout), 1);
        FfnGeometry g = lb.g();
        int d = g.dModel(), f = g.dFfn(), steps = 16;
        int prefetchedUsed = 0, evictedForRoom = 0;
        for (int window : new int[]{-1, 2}) {
            for (int c32 : new int[]{32, 10, 5}) {
                int capacity = f * c32 / 32;
                int[][] setsA = script(5 + c32, f, steps), setsB = script(9 + c32, f, steps);
                Random rnd = new Random(c32 * 7 + window);
                int[][] guesses = new int[steps][];
                for (int t = 0; t < steps; t++) {
                    BitSet gs = new BitSet();
                    for (int nr : setsB[t]) {
                        if (rnd.nextDouble() < 0.7) {
                            gs.set(nr);
                        }
                    }
                    for (int k = 0; k < f / 16; k++) {
                        gs.set(rnd.nextInt(f));
                    }
                    guesses[t] = gs.stream().toArray();
                }
                FlashMetrics metrics = new FlashMetrics();
                try (NeuronCache ca = new NeuronCache(f, f, FlashFfn.cacheStride(g));
                     NeuronCache cb = new NeuronCache(f, capacity, FlashFfn.cacheStride(g));
                     IoEngine io = IoEngine.open(lb.ffnPath(), 4, true, 0, 64 << 10, IoEngine.Backend.URING)) {
                    FlashFfn a = new FlashFfn(0, g, g.blockOffset(0), ca, new Scripted(f, setsA), io, la.upBias(), la.downBias(), window, metrics);
                    FlashFfn b = new FlashFfn(1, g, g.blockOffset(1), cb, new Scripted(f, setsB), io, lb.upBias(), lb.downBias(), window, metrics);
                    a.chain(new Scripted(f, guesses), b);
                    float[] x = new float[d], out = new float[d], h = new float[f];
                    for (int t = 0; t < steps; t++) {
                        String at = layout + " window " + window + " capacity " + capacity + " step " + (t + 1);
                        for (int j = 0; j < d; j++) {
                            x[j] = (float) rnd.nextGaussian();
                        }
                        a.forward(kernels, x, 1, h, out);
                        FlashMetrics.Totals m0 = metrics.snapshot();
                        b.forward(kernels, x, 1, h, out);
                        FlashMetrics.Totals dm = metrics.snapshot().minus(m0);
                        evictedForRoom += setsB[t].length <= capacity && dm.neuronsEvicted() > 0 ? 1 : 0;
                        double[][] oracle = oracle(lb, bits(setsB[t]), x);
                        for (int j = 0; j < d; j++) {
                            double tol = REL_TOL * oracle[1][j] + 1e-6;
                            if (Math.abs(out[j] - oracle[0][j]) > tol) {
                                fail(at + ": output " + j + " = " + out[j] + ", oracle " + oracle[0][j]);
                            }
                        }
                        assertTrue(cb.used() <= capacity, at);
                        for (int r = 0; r < cb.capacity(); r++) {
                            int nr = cb.neuronAt(r);
                            if (nr >= 0) {
                                assertEquals(-1, cb.rowSlice(r).asSlice(0, lb.neuronBytes()[nr].length)
                                        .mismatch(MemorySegment.ofArray(lb.neuronBytes()[nr])), at + ": slot " + r + " holds neuron " + nr);
                            }
                        }
                        prefetchedUsed += dm.prefetched() > 0 && dm.hits() > 0 ? 1 : 0;
                    }
                }
            }
        }
        assertTrue(prefetchedUsed > 0, "prefetched neurons were used");
        assertTrue(evictedForRoom > 0, "some tokens made room among the prefetched neurons");
    }
}
