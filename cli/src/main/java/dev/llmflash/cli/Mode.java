package dev.llmflash.cli;

import dev.llmflash.formats.LlmflashException;
import dev.llmflash.formats.bundle.Bundle;
import dev.llmflash.formats.predictor.LayerPredictor;
import dev.llmflash.formats.predictor.PredictorFile;
import dev.llmflash.formats.predictor.Predictors;
import dev.llmflash.runtime.ffn.FfnWrapper;
import dev.llmflash.runtime.ffn.NeuronMajorFfn;
import dev.llmflash.runtime.ffn.PredictedFfn;

import java.nio.file.Path;

/**
 * How the FFN weights are used. {@code dense}: every neuron (the reference). {@code flash}: only the
 * neurons the bundle's predictors select (the output the flash runtime produces; until the flash
 * loader lands, all weights stay memory-mapped, so this measures quality, not speed).
 * {@code naive} and {@code hybrid} arrive with the flash runtime.
 */
enum Mode {
    dense, naive, hybrid, flash;

    /** The per-layer FFN wrapper this mode needs for {@code model}. */
    FfnWrapper wrapper(Path model) {
        return wrapper(model, new java.util.ArrayList<>());
    }

    /** As {@link #wrapper(Path)}; flash mode adds each predicted layer's FFN to {@code predicted} (for statistics). */
    FfnWrapper wrapper(Path model, java.util.List<PredictedFfn> predicted) {
        return switch (this) {
            case dense -> FfnWrapper.NONE;
            case flash -> predicted(model, predicted);
            case naive, hybrid -> throw new IllegalArgumentException("--mode " + name() + " needs the flash runtime (I/O engine,"
                    + " neuron cache), which this build does not have yet; use --mode dense, or --mode flash for predictor quality");
        };
    }

    private static FfnWrapper predicted(Path model, java.util.List<PredictedFfn> out) {
        if (!Bundle.looksLikeBundle(model)) {
            throw new LlmflashException(model + ": --mode flash needs a bundle with predictors (llmflash convert, record, train-predictor)");
        }
        String fingerprint;
        try (Bundle b = Bundle.open(model)) {
            fingerprint = b.manifest().fingerprint();
        }
        Predictors ps = PredictorFile.read(model, fingerprint);
        return (layer, ffn) -> {
            LayerPredictor p = ps.layer(layer);
            if (p.dense()) {
                return ffn;
            }
            if (!(ffn instanceof NeuronMajorFfn n)) {
                throw new IllegalStateException("a bundle's FFN is neuron-major");
            }
            PredictedFfn pf = new PredictedFfn(n, p);
            out.add(pf);
            return pf;
        };
    }
}
