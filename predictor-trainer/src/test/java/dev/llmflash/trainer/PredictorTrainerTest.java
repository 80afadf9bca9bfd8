package dev.llmflash.trainer;

import dev.llmflash.formats.predictor.LayerPredictor;
import org.junit.jupiter.api.Test;

import java.util.Random;

import static org.junit.jupiter.api.Assertions.*;

class PredictorTrainerTest {

    private static TrainOptions options(int rank, int epochs, long seed, int threads) {
        return new TrainOptions(rank, epochs, 256, 3e-3f, seed, 0.97, 0.1, 0.5, threads);
    }

    /** Small data sets: small batches, so that a few epochs make enough Adam steps. */
    private static TrainOptions small(int rank, int epochs, long seed, int threads) {
        return new TrainOptions(rank, epochs, 32, 3e-3f, seed, 0.97, 0.1, 0.5, threads);
    }

    @Test
    void learnsAPlantedLowRankRule() {
        Planted rule = new Planted(64, 256, 8, 0.05, 42);
        LayerData train = rule.sample(3, 20_000, 1);
        PredictorTrainer.Result res = PredictorTrainer.train(train, options(16, 4, 7, 2));
        LayerPredictor p = res.predictor();
        LayerReport rep = res.report();
        System.out.println("planted: " + rep);
        assertFalse(p.dense());
        assertEquals(3, p.layer());
        assertEquals(16, p.rank());
        assertEquals(64, p.inputs());
        assertEquals(256, p.neurons());

        LayerData fresh = rule.sample(3, 5_000, 99);
        long[] s = Planted.score(p, fresh, 0, fresh.n());
        double pairs = (double) fresh.n() * fresh.f();
        double recall = (double) s[2] / s[0], trueDensity = s[0] / pairs, predictedDensity = s[1] / pairs;
        System.out.printf("fresh: recall %.4f, true density %.4f, predicted density %.4f%n", recall, trueDensity, predictedDensity);
        assertTrue(trueDensity > 0.03 && trueDensity < 0.07, "planted density " + trueDensity);
        assertTrue(recall >= 0.95, "recall on fresh data " + recall);
        assertTrue(predictedDensity <= 3 * trueDensity, "predicted density " + predictedDensity + " vs true " + trueDensity);
    }

    @Test
    void reportMatchesAnIndependentRecountOnTheValidationTokens() {
        Planted rule = new Planted(32, 96, 4, 0.1, 5);
        LayerData data = rule.sample(0, 4_000, 6);
        PredictorTrainer.Result res = PredictorTrainer.train(data, small(8, 4, 3, 2));
        LayerReport rep = res.report();
        assertFalse(rep.dense());
        int nVal = (int) Math.round(data.n() * 0.1);
        long[] s = Planted.score(res.predictor(), data, data.n() - nVal, data.n());
        double pairs = (double) nVal * data.f();
        // The recount uses doubles, the trainer f32: pairs right at the threshold may flip.
        assertEquals(s[0] / pairs, rep.trueDensity(), 1e-12);
        assertEquals(s[1] / pairs, rep.predictedDensity(), 2e-4);
        assertEquals((double) s[2] / s[0], rep.recall(), 2e-3);
        assertEquals((double) s[2] / s[1], rep.precision(), 2e-3);
        assertTrue(rep.recall() >= 0.97, "validation recall " + rep.recall() + " below the target");
        assertTrue(rep.seconds() > 0);
    }

    @Test
    void parametersAndTheirShareOfTheFfn() {
        Planted rule = new Planted(48, 80, 4, 0.1, 8);
        LayerData data = rule.sample(1, 3_000, 9);
        LayerReport rep = PredictorTrainer.train(data, small(12, 6, 1, 1)).report();
        long expected = 12L * 48 + 80L * 12 + 80;
        assertEquals(expected, rep.parameters());
        assertEquals(expected / (2.0 * 48 * 80), rep.parameterShareOfFfn(), 0);
        assertFalse(rep.dense());
        assertEquals(12, rep.rank());
    }

    @Test
    void sameSeedIsBitIdenticalForAnyThreadCountAndOtherSeedsDiffer() {
        Planted rule = new Planted(40, 200, 4, 0.08, 11);
        LayerData data = rule.sample(2, 3_000, 12);
        LayerPredictor one = PredictorTrainer.train(data, small(8, 3, 77, 1)).predictor();
        LayerPredictor two = PredictorTrainer.train(data, small(8, 3, 77, 2)).predictor();
        LayerPredictor three = PredictorTrainer.train(data, small(8, 3, 77, 3)).predictor();
        LayerPredictor other = PredictorTrainer.train(data, small(8, 3, 78, 2)).predictor();
        assertFalse(one.dense());
        assertFalse(other.dense());
        for (LayerPredictor p : new LayerPredictor[]{two, three}) {
            assertArrayEquals(one.a(), p.a());
            assertArrayEquals(one.b(), p.b());
            assertArrayEquals(one.c(), p.c());
            assertEquals(Float.floatToRawIntBits(one.threshold()), Float.floatToRawIntBits(p.threshold()));
        }
        assertFalse(java.util.Arrays.equals(one.a(), other.a()));
        assertFalse(java.util.Arrays.equals(one.b(), other.b()));
        assertFalse(java.util.Arrays.equals(one.c(), other.c()));
    }

    @Test
    void aLayerWhereMostNeuronsFireIsDense() {
        int n = 3_000, d = 16, f = 64;
        Random rnd = new Random(4);
        float[] x = new float[n * d];
        for (int i = 0; i < x.length; i++) {
            x[i] = (float) rnd.nextGaussian();
        }
        boolean[][] active = new boolean[n][f];
        for (boolean[] row : active) {
            for (int i = 0; i < f; i++) {
                row[i] = rnd.nextDouble() < 0.7;
            }
        }
        LayerData data = new LayerData(5, n, d, f, x, LayerData.pack(active, f));
        PredictorTrainer.Result res = PredictorTrainer.train(data, options(4, 1, 1, 2));
        assertTrue(res.predictor().dense());
        assertEquals(5, res.predictor().layer());
        assertEquals(0, res.predictor().parameters());
        LayerReport rep = res.report();
        assertTrue(rep.dense());
        assertEquals(0, rep.rank());
        assertEquals(0, rep.parameters());
        assertEquals(0.7, rep.trueDensity(), 0.02);
        assertTrue(rep.predictedDensity() > 0.5, "predicted density " + rep.predictedDensity());
    }

    @Test
    void thresholdIsTheLargestWithEnoughRecall() {
        float[] pos = {0.3f, 0.9f, 0.6f, 0.8f};
        // 3 of 4 positives needed: just below the third largest (0.6), so 0.6 itself is kept.
        assertEquals(Math.nextDown(0.6f), PredictorTrainer.chooseThreshold(pos, 0.75), 0f);
        assertEquals(Math.nextDown(0.3f), PredictorTrainer.chooseThreshold(pos, 0.76), 0f);
        assertEquals(Math.nextDown(0.8f), PredictorTrainer.chooseThreshold(pos, 0.5), 0f);
        assertEquals(Math.nextDown(0.9f), PredictorTrainer.chooseThreshold(pos, 0.25), 0f);
        assertEquals(Math.nextDown(0.9f), PredictorTrainer.chooseThreshold(pos, 0.01), 0f);
        assertArrayEquals(new float[]{0.3f, 0.9f, 0.6f, 0.8f}, pos, "input not modified");
        // 0.97 of 100 positives is 97 even though 0.97 * 100 rounds to 97.00000000000001.
        float[] hundred = new float[100];
        for (int i = 0; i < 100; i++) {
            hundred[i] = (i + 1) / 128f;
        }
        assertEquals(Math.nextDown(4 / 128f), PredictorTrainer.chooseThreshold(hundred, 0.97), 0f);
        // clamps: a needed positive below 0.001, a top one above 0.999, no positives at all
        assertEquals(PredictorTrainer.MIN_THRESHOLD, PredictorTrainer.chooseThreshold(new float[]{0.5f, 0.0001f}, 1.0), 0f);
        assertEquals(PredictorTrainer.MAX_THRESHOLD, PredictorTrainer.chooseThreshold(new float[]{0.99999f}, 1.0), 0f);
        assertEquals(PredictorTrainer.MAX_THRESHOLD, PredictorTrainer.chooseThreshold(new float[0], 0.97), 0f);
    }

    @Test
    void labelsAreReadLsbFirstAndShapesAreChecked() {
        byte[] labels = {(byte) 0b1000_0001, 0b0000_0010, 0b0000_0100, 0};
        LayerData data = new LayerData(0, 2, 1, 10, new float[2], labels);
        assertTrue(data.label(0, 0));
        assertFalse(data.label(0, 1));
        assertTrue(data.label(0, 7));
        assertTrue(data.label(0, 9));
        assertFalse(data.label(0, 8));
        assertTrue(data.label(1, 2));
        assertFalse(data.label(1, 9));
        assertThrows(IllegalArgumentException.class, () -> new LayerData(0, 2, 1, 10, new float[3], labels));
        assertThrows(IllegalArgumentException.class, () -> new LayerData(0, 2, 1, 10, new float[2], new byte[3]));
        LayerData tiny = new LayerData(0, 1, 1, 1, new float[1], new byte[1]);
        IllegalArgumentException e = assertThrows(IllegalArgumentException.class,
                () -> PredictorTrainer.train(tiny, options(1, 1, 1, 1)));
        assertTrue(e.getMessage().contains("validation"), e.getMessage());
    }
}
