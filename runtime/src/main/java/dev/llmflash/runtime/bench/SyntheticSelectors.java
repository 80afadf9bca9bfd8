package dev.llmflash.runtime.bench;

import dev.llmflash.formats.bundle.FfnGeometry;
import dev.llmflash.formats.predictor.LayerPredictor;
import dev.llmflash.formats.tensor.DType;
import dev.llmflash.runtime.flash.ActiveSelector;
import dev.llmflash.runtime.flash.SelectorSource;

import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.SplittableRandom;

/**
 * Flash mode's active sets from a {@link SyntheticActivity} calibrated to the paper's statistics, for
 * benchmarks on random-weight models. With {@code emulatedPredictorRank > 0} a random low-rank predictor
 * of that rank is also evaluated every token and its choice discarded ({@link ActiveSelector#costing}),
 * so that compute and memory include what a trained predictor would cost, its look-ahead too when on.
 * The look-ahead predicts {@code lookaheadRecall} of the next layer's set ({@link ActiveSelector#peeked}).
 */
public final class SyntheticSelectors implements SelectorSource {

    /** Look-ahead recall when none is given: measured on the checked-in models (docs/RUNTIME.md). */
    public static final double DEFAULT_LOOKAHEAD_RECALL = 0.9;

    private final SyntheticActivity activity;
    private final int emulatedPredictorRank;
    private final double lookaheadRecall;
    /** Held as the runtime would hold trained ones beside this FFN (the drawn f32 matrices are dropped). */
    private final List<ActiveSelector.Trained> emulated = new ArrayList<>();
    private final List<ActiveSelector.Trained> emulatedLookahead = new ArrayList<>();

    private SyntheticSelectors(SyntheticActivity activity, int rank, double recall) {
        this.activity = activity;
        this.emulatedPredictorRank = rank;
        this.lookaheadRecall = recall;
    }

    /**
     * Calibrates the activity for {@code g}'s layers and draws the emulated predictors (seeded by the
     * activity's seed).
     *
     * @param lookahead whether the runtime prefetches with look-ahead (emulated look-ahead predictors drawn)
     */
    public static SyntheticSelectors of(SyntheticActivity.Params p, int emulatedPredictorRank, boolean lookahead,
                                        double lookaheadRecall, FfnGeometry g) {
        if (emulatedPredictorRank < 0) {
            throw new IllegalArgumentException("predictor rank must be >= 0, got " + emulatedPredictorRank);
        }
        if (!(lookaheadRecall >= 0 && lookaheadRecall <= 1)) {
            throw new IllegalArgumentException("the look-ahead recall must be in [0, 1], got " + lookaheadRecall);
        }
        SyntheticSelectors s = new SyntheticSelectors(SyntheticActivity.calibrate(g.dFfn(), p), emulatedPredictorRank,
                lookaheadRecall);
        if (emulatedPredictorRank > 0) {
            SplittableRandom rnd = new SplittableRandom(p.seed());
            DType held = ActiveSelector.Trained.dtypeFor(g.dtype());
            for (int l = 0; l < g.layers(); l++) {
                s.emulated.add(ActiveSelector.trained(randomPredictor(g, l, emulatedPredictorRank, rnd), held));
                if (lookahead && l + 1 < g.layers()) {
                    s.emulatedLookahead.add(ActiveSelector.trained(randomPredictor(g, l + 1, emulatedPredictorRank, rnd), held));
                }
            }
        }
        return s;
    }

    private static LayerPredictor randomPredictor(FfnGeometry g, int layer, int r, SplittableRandom rnd) {
        int d = g.dModel(), f = g.dFfn();
        float[] a = new float[r * d], pb = new float[f * r], bias = new float[f];
        for (int i = 0; i < a.length; i++) {
            a[i] = (float) ((rnd.nextDouble() - 0.5) / Math.sqrt(d));
        }
        for (int i = 0; i < pb.length; i++) {
            pb[i] = (float) ((rnd.nextDouble() - 0.5) / Math.sqrt(r));
        }
        return new LayerPredictor(layer, false, r, 0.5f, a, pb, bias);
    }

    @Override
    public ActiveSelector layer(int layer) {
        ActiveSelector s = activity.selector(layer);
        return emulated.isEmpty() ? s : ActiveSelector.costing(s, emulated.get(layer));
    }

    @Override
    public double density() {
        return activity.params().density();
    }

    @Override
    public long predictorBytes() {
        long bytes = 0;
        for (List<ActiveSelector.Trained> list : List.of(emulated, emulatedLookahead)) {
            for (ActiveSelector.Trained t : list) {
                bytes += t.bytes();
            }
        }
        return bytes;
    }

    @Override
    public ActiveSelector[] lookahead(int from, ActiveSelector ownOfNext) {
        ActiveSelector[] pair = ActiveSelector.peeked(ownOfNext, lookaheadRecall, activity.params().seed() * 31 + from);
        if (from < emulatedLookahead.size()) {
            pair[1] = ActiveSelector.costing(pair[1], emulatedLookahead.get(from));
        }
        return pair;
    }

    @Override
    public String name() {
        return "synthetic";
    }

    /** The report's {@code synthetic_activity}: the parameters, the calibrated persistence, the emulated rank. */
    @Override
    public Map<String, Object> describe() {
        SyntheticActivity.Params p = activity.params();
        Map<String, Object> a = new LinkedHashMap<>();
        a.put("density", p.density());
        a.put("new_per_token", p.newPerToken());
        a.put("calibration_window", p.window());
        a.put("seed", p.seed());
        a.put("persistence", activity.persistence());
        a.put("emulated_predictor_rank", emulatedPredictorRank);
        return Map.of("synthetic_activity", a);
    }

    /** The calibrated activity. */
    public SyntheticActivity activity() {
        return activity;
    }
}
