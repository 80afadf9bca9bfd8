package dev.llmflash.runtime.generate;

import org.junit.jupiter.api.Test;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertNotEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

class SamplerTest {

    @Test
    void greedyIsArgmaxWithLowestIndexOnTies() {
        Sampler s = new Sampler(SamplingOptions.greedy());
        assertEquals(2, s.next(new float[] {0f, 1f, 3f, 3f, -1f}, 5));
        assertEquals(0, Sampler.argmax(new float[] {5f, 5f}, 2));
    }

    private static int[] histogram(SamplingOptions o, float[] logits, int draws) {
        Sampler s = new Sampler(o);
        int[] h = new int[logits.length];
        for (int i = 0; i < draws; i++) {
            h[s.next(logits, logits.length)]++;
        }
        return h;
    }

    @Test
    void temperatureSamplesTheSoftmax() {
        float[] logits = {(float) Math.log(0.5), (float) Math.log(0.3), (float) Math.log(0.2)};
        int n = 200_000;
        int[] h = histogram(new SamplingOptions(1.0, 0, 1.0, 42), logits, n);
        assertEquals(0.5, h[0] / (double) n, 0.01);
        assertEquals(0.3, h[1] / (double) n, 0.01);
        assertEquals(0.2, h[2] / (double) n, 0.01);
        // T = 0.5 squares the odds: p ~ (25, 9, 4) / 38
        int[] c = histogram(new SamplingOptions(0.5, 0, 1.0, 42), logits, n);
        assertEquals(25.0 / 38, c[0] / (double) n, 0.01);
        assertEquals(4.0 / 38, c[2] / (double) n, 0.01);
    }

    @Test
    void topKKeepsKAndTiesAtTheKth() {
        float[] logits = {1f, 5f, 3f, 3f, 0f};
        int[] h = histogram(new SamplingOptions(1.0, 2, 1.0, 1), logits, 20_000);
        assertEquals(0, h[0]);
        assertEquals(0, h[4]);
        assertTrue(h[2] > 0 && h[3] > 0, "both tokens tied at the k-th value stay (as HF's topk threshold)");
    }

    @Test
    void topPKeepsTheSmallestNucleus() {
        // p = 0.6, 0.25, 0.1, 0.05: top-p 0.8 keeps {0, 1} (0.85 reached by the second)
        float[] logits = {(float) Math.log(0.6), (float) Math.log(0.25), (float) Math.log(0.1), (float) Math.log(0.05)};
        int n = 100_000;
        int[] h = histogram(new SamplingOptions(1.0, 0, 0.8, 3), logits, n);
        assertEquals(0, h[2] + h[3]);
        assertEquals(0.6 / 0.85, h[0] / (double) n, 0.01);
        // a tiny top-p keeps at least the most likely token
        int[] one = histogram(new SamplingOptions(1.0, 0, 0.01, 3), logits, 1000);
        assertEquals(1000, one[0]);
    }

    @Test
    void seedsReproduce() {
        float[] logits = new float[100];
        for (int i = 0; i < logits.length; i++) {
            logits[i] = (float) Math.sin(i);
        }
        SamplingOptions o = new SamplingOptions(1.0, 0, 1.0, 9);
        Sampler a = new Sampler(o), b = new Sampler(o), c = new Sampler(new SamplingOptions(1.0, 0, 1.0, 10));
        StringBuilder sa = new StringBuilder(), sb = new StringBuilder(), sc = new StringBuilder();
        for (int i = 0; i < 50; i++) {
            sa.append(a.next(logits, 100)).append(',');
            sb.append(b.next(logits, 100)).append(',');
            sc.append(c.next(logits, 100)).append(',');
        }
        assertEquals(sa.toString(), sb.toString());
        assertNotEquals(sa.toString(), sc.toString());
    }

    @Test
    void invalidOptionsAreRefused() {
        assertThrows(IllegalArgumentException.class, () -> new SamplingOptions(-0.1, 0, 1, 0));
        assertThrows(IllegalArgumentException.class, () -> new SamplingOptions(Double.NaN, 0, 1, 0));
        assertThrows(IllegalArgumentException.class, () -> new SamplingOptions(1, -1, 1, 0));
        assertThrows(IllegalArgumentException.class, () -> new SamplingOptions(1, 0, 0, 0));
        assertThrows(IllegalArgumentException.class, () -> new SamplingOptions(1, 0, 1.5, 0));
    }
}
