package dev.llmflash.trainer;

import dev.llmflash.formats.predictor.LayerPredictor;

import java.util.Arrays;
import java.util.Random;

/**
 * Trains one layer's activity predictor (the paper's technique 1, "LLM in a flash" section 3.1):
 * {@code p = sigmoid(B (A x) + c)} with A: r x d, B: f x r, c: f and no nonlinearity in between
 * (a rank-r linear map), predicting which of the f FFN neurons fire for the layer input x.
 * <p>Procedure:
 * <ol>
 * <li>The last {@code validationFraction} of the tokens (in order, never shuffled in) is held out.
 * <li>Init from the seed: A ~ N(0, 1/d), B ~ N(0, 1/r), c = logit of each neuron's (smoothed)
 *     training density, so training starts from the per-neuron base rates.
 * <li>Loss: binary cross-entropy balanced between the classes (the paper's "balanced loss"), weights
 *     {@code w+ = 0.5 / P(active)}, {@code w- = 0.5 / P(inactive)} per neuron by default
 *     ({@link Balance}); mean over the batch. Adam (0.9, 0.999, 1e-8) on shuffled minibatches.
 * <li>Threshold: the largest t with recall({@code p > t}) on the validation tokens >= targetRecall,
 *     exactly ({@link #chooseThreshold}), clamped into [0.001, 0.999].
 * <li>If the predicted density on validation exceeds {@code maxDensityForPrediction}, the layer is
 *     returned dense ({@link LayerPredictor#denseLayer}).
 * </ol>
 * One step: {@code H = X A^T; Z = H B^T + c; dZ = w (sigmoid(Z) - Y) / b; dB = dZ^T H; dc = colsum dZ;
 * dH = dZ B; dA = dH^T X} ({@link TrainerKernels}), two parallel phases per step: rows of the batch,
 * then neuron columns (dB, dc and their Adam updates) with rows of A (dA and its update).
 * <p>Determinism: same data, options and seed give bit-identical predictors for any thread count.
 * <p>Thread-safety: {@link #train} is stateless and may run concurrently for different layers (each
 * call owns its threads, closed on return).
 */
public final class PredictorTrainer {

    /** The trained predictor (or a dense marker) and its measurements. */
    public record Result(LayerPredictor predictor, LayerReport report) {
    }

    /** How the balanced loss estimates P(active): for each neuron, or once for the whole layer. */
    enum Balance { PER_NEURON, PER_LAYER }

    /** Thresholds stay inside the open interval (0, 1) that LayerPredictor requires, with margin. */
    static final float MIN_THRESHOLD = 0.001f;
    static final float MAX_THRESHOLD = 0.999f;

    static final float BETA1 = 0.9f;
    static final float BETA2 = 0.999f;
    static final float EPS = 1e-8f;

    /** Neuron column ranges of the second phase start at multiples of this (whole vectors). */
    private static final int COLUMN_ALIGN = 64;

    private PredictorTrainer() {
    }

    public static Result train(LayerData data, TrainOptions o) {
        return train(data, o, Balance.PER_NEURON);
    }

    static Result train(LayerData data, TrainOptions o, Balance balance) {
        long start = System.nanoTime();
        int n = data.n(), d = data.d(), f = data.f(), r = o.rank();
        int nVal = (int) Math.round(n * o.validationFraction());
        int nTrain = n - nVal;
        if (nVal < 1 || nTrain < 1) {
            throw new IllegalArgumentException("layer " + data.layer() + ": " + n + " tokens with validation fraction "
                    + o.validationFraction() + " leave " + nTrain + " for training and " + nVal
                    + " for validation; both need at least one (record more tokens)");
        }
        try (Team team = new Team(o.threads())) {
            Model model = fit(data, nTrain, o, balance, team);
            Scores s = validate(data, nTrain, model, o.targetRecall(), team);
            double seconds = (System.nanoTime() - start) / 1e9;
            if (s.predictedDensity > o.maxDensityForPrediction()) {
                return new Result(LayerPredictor.denseLayer(data.layer()),
                        new LayerReport(data.layer(), true, 0, s.threshold, s.trueDensity, s.predictedDensity,
                                s.recall, s.precision, 0, 0, seconds));
            }
            LayerPredictor p = new LayerPredictor(data.layer(), false, r, s.threshold, model.a, transpose(model.bt, r, f), model.c);
            return new Result(p, new LayerReport(data.layer(), false, r, s.threshold, s.trueDensity, s.predictedDensity,
                    s.recall, s.precision, p.parameters(), p.parameters() / (2.0 * d * f), seconds));
        }
    }

    /** The parameters during training: A (r x d), Bt = B^T (r x f), c (f). */
    record Model(float[] a, float[] bt, float[] c) {
    }

    private static Model fit(LayerData data, int nTrain, TrainOptions o, Balance balance, Team team) {
        int d = data.d(), f = data.f(), r = o.rank(), rb = LayerData.rowBytes(f);
        float[] x = data.x();
        byte[] labels = data.labels();

        // Base rates over the training tokens, smoothed ((k + 1) / (n + 2)) so that a neuron that never
        // (or always) fires gets finite weights and bias.
        long[] count = new long[f];
        for (int t = 0; t < nTrain; t++) {
            for (int i = 0; i < f; i++) {
                count[i] += (labels[t * rb + (i >>> 3)] >>> (i & 7)) & 1;
            }
        }
        long total = 0;
        for (long k : count) {
            total += k;
        }
        float[] wPos = new float[f], wNeg = new float[f], c = new float[f];
        double layerRate = (total + 1.0) / ((double) nTrain * f + 2.0);
        for (int i = 0; i < f; i++) {
            double rate = (count[i] + 1.0) / (nTrain + 2.0);
            double q = balance == Balance.PER_NEURON ? rate : layerRate;
            wPos[i] = (float) (0.5 / q);
            wNeg[i] = (float) (0.5 / (1 - q));
            c[i] = (float) Math.log(rate / (1 - rate));
        }

        Random rnd = new Random(o.seed());
        float[] a = new float[r * d];
        float sa = (float) Math.sqrt(1.0 / d);
        for (int i = 0; i < a.length; i++) {
            a[i] = (float) rnd.nextGaussian() * sa;
        }
        float[] bt = new float[r * f];
        float sb = (float) Math.sqrt(1.0 / r);
        for (int i = 0; i < bt.length; i++) {
            bt[i] = (float) rnd.nextGaussian() * sb;
        }

        int bmax = Math.min(o.batch(), nTrain);
        float[] xb = new float[bmax * d], h = new float[bmax * r], z = new float[bmax * f], y = new float[bmax * f];
        float[] dh = new float[bmax * r];
        float[] da = new float[r * d], dbt = new float[r * f], dc = new float[f];
        float[] ma = new float[r * d], va = new float[r * d];
        float[] mb = new float[r * f], vb = new float[r * f];
        float[] mc = new float[f], vc = new float[f];
        int parts = team.threads();

        int[] order = new int[nTrain];
        for (int t = 0; t < nTrain; t++) {
            order[t] = t;
        }
        int step = 0;
        for (int epoch = 0; epoch < o.epochs(); epoch++) {
            for (int t = nTrain - 1; t > 0; t--) {
                int j = rnd.nextInt(t + 1);
                int tmp = order[t];
                order[t] = order[j];
                order[j] = tmp;
            }
            for (int s0 = 0; s0 < nTrain; s0 += bmax) {
                int b = Math.min(bmax, nTrain - s0);
                int first = s0;
                float scale = 1f / b;
                // Phase 1, rows of the batch: gather, forward, loss gradient, dH.
                team.run(p -> {
                    int t0 = Team.lo(b, p, parts, 1), t1 = Team.lo(b, p + 1, parts, 1);
                    for (int t = t0; t < t1; t++) {
                        int tok = order[first + t];
                        System.arraycopy(x, tok * d, xb, t * d, d);
                        TrainerKernels.unpackLabels(labels, tok * rb, f, y, t * f);
                    }
                    TrainerKernels.project(xb, d, a, r, h, t0, t1);
                    TrainerKernels.logits(h, r, bt, c, f, z, t0, t1);
                    for (int t = t0; t < t1; t++) {
                        TrainerKernels.sigmoid(z, t * f, f);
                        TrainerKernels.balancedGradient(z, y, t * f, wPos, wNeg, scale, f);
                    }
                    TrainerKernels.backHidden(z, f, bt, r, dh, t0, t1);
                });
                step++;
                float bc1 = (float) (1 - Math.pow(BETA1, step));
                float bc2 = (float) (1 - Math.pow(BETA2, step));
                float stepSize = o.learningRate() / bc1;
                float invSqrtBc2 = (float) (1 / Math.sqrt(bc2));
                // Phase 2: neuron columns (dB^T, dc, their Adam steps) and rows of A (dA, its Adam step).
                team.run(p -> {
                    int i0 = Team.lo(f, p, parts, COLUMN_ALIGN), i1 = Team.lo(f, p + 1, parts, COLUMN_ALIGN);
                    TrainerKernels.gradUp(h, r, z, f, b, dbt, dc, i0, i1);
                    for (int k = 0; k < r; k++) {
                        TrainerKernels.adam(bt, mb, vb, dbt, k * f + i0, k * f + i1, BETA1, BETA2, EPS, stepSize, invSqrtBc2);
                    }
                    TrainerKernels.adam(c, mc, vc, dc, i0, i1, BETA1, BETA2, EPS, stepSize, invSqrtBc2);
                    int k0 = Team.lo(r, p, parts, 1), k1 = Team.lo(r, p + 1, parts, 1);
                    TrainerKernels.gradDown(dh, r, xb, d, b, da, k0, k1);
                    TrainerKernels.adam(a, ma, va, da, k0 * d, k1 * d, BETA1, BETA2, EPS, stepSize, invSqrtBc2);
                });
            }
        }
        return new Model(a, bt, c);
    }

    /** Validation measurements at the chosen threshold (see {@link LayerReport}). */
    record Scores(float threshold, double trueDensity, double predictedDensity, double recall, double precision) {
    }

    /**
     * Two passes over the validation tokens [nTrain, n): the first collects the probabilities of the
     * actual positives (all the exact threshold search needs), the second counts at the threshold.
     * Keeping no full n x f probability matrix bounds memory for wide layers.
     */
    private static Scores validate(LayerData data, int nTrain, Model m, double targetRecall, Team team) {
        int n = data.n(), d = data.d(), f = data.f(), r = m.a.length / d, rb = LayerData.rowBytes(f);
        int nVal = n - nTrain, parts = team.threads();
        float[][] pos = new float[parts][];
        int[] posCount = new int[parts];
        long[] predicted = new long[parts], truePos = new long[parts];
        for (int pass = 0; pass < 2; pass++) {
            int thePass = pass;
            float threshold = pass == 0 ? 0f : chooseThreshold(concat(pos, posCount), targetRecall);
            team.run(p -> {
                int t0 = nTrain + Team.lo(nVal, p, parts, 1), t1 = nTrain + Team.lo(nVal, p + 1, parts, 1);
                float[] h = new float[r], z = new float[f], lanes = TrainerKernels.lanes();
                float[] buf = new float[1024];
                int cnt = 0;
                long pred = 0, tp = 0;
                for (int t = t0; t < t1; t++) {
                    for (int k = 0; k < r; k++) {
                        h[k] = TrainerKernels.dot(data.x(), t * d, m.a, k * d, d, lanes);
                    }
                    TrainerKernels.logits(h, r, m.bt, m.c, f, z, 0, 1);
                    TrainerKernels.sigmoid(z, 0, f);
                    int lo = t * rb;
                    for (int i = 0; i < f; i++) {
                        boolean actual = ((data.labels()[lo + (i >>> 3)] >>> (i & 7)) & 1) != 0;
                        if (thePass == 0) {
                            if (actual) {
                                if (cnt == buf.length) {
                                    buf = Arrays.copyOf(buf, cnt * 2);
                                }
                                buf[cnt++] = z[i];
                            }
                        } else if (z[i] > threshold) {
                            pred++;
                            if (actual) {
                                tp++;
                            }
                        }
                    }
                }
                if (thePass == 0) {
                    pos[p] = buf;
                    posCount[p] = cnt;
                } else {
                    predicted[p] = pred;
                    truePos[p] = tp;
                }
            });
            if (pass == 1) {
                long positives = 0, pred = 0, tp = 0;
                for (int p = 0; p < parts; p++) {
                    positives += posCount[p];
                    pred += predicted[p];
                    tp += truePos[p];
                }
                double pairs = (double) nVal * f;
                return new Scores(threshold, positives / pairs, pred / pairs,
                        positives == 0 ? 1.0 : (double) tp / positives, pred == 0 ? 1.0 : (double) tp / pred);
            }
        }
        throw new AssertionError("unreachable");
    }

    private static float[] concat(float[][] parts, int[] counts) {
        int total = 0;
        for (int c : counts) {
            total += c;
        }
        float[] out = new float[total];
        int at = 0;
        for (int p = 0; p < parts.length; p++) {
            System.arraycopy(parts[p], 0, out, at, counts[p]);
            at += counts[p];
        }
        return out;
    }

    /**
     * The largest threshold t with recall >= target when neuron/token pairs with {@code p > t} are
     * predicted active, given the probabilities of the actual positives (any order; not modified).
     * With P positives the prediction must keep k = ceil(target P) of them, so t lies just below the
     * k-th largest positive probability: {@code Math.nextDown} of it (every positive at or above it is
     * kept; any larger t loses it). Clamped into [{@link #MIN_THRESHOLD}, {@link #MAX_THRESHOLD}]:
     * a clamp at the bottom can leave recall below target (the report shows it). No positives: the top.
     */
    static float chooseThreshold(float[] positiveProbabilities, double targetRecall) {
        int count = positiveProbabilities.length;
        if (count == 0) {
            return MAX_THRESHOLD;
        }
        float[] sorted = positiveProbabilities.clone();
        Arrays.sort(sorted);
        // smallest k with k / count >= target; ceil of a product can overshoot by one on rounding
        int k = (int) Math.min(count, Math.ceil(targetRecall * count));
        while (k > 1 && (double) (k - 1) / count >= targetRecall) {
            k--;
        }
        k = Math.max(k, 1);
        float t = Math.nextDown(sorted[count - k]);
        return Math.min(MAX_THRESHOLD, Math.max(MIN_THRESHOLD, t));
    }

    /** B (f x r) from its transpose Bt (r x f). */
    static float[] transpose(float[] bt, int r, int f) {
        float[] b = new float[f * r];
        for (int k = 0; k < r; k++) {
            for (int i = 0; i < f; i++) {
                b[i * r + k] = bt[k * f + i];
            }
        }
        return b;
    }
}
