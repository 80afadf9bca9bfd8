package dev.llmflash.cli;

import dev.llmflash.formats.LlmflashException;
import dev.llmflash.formats.bundle.Bundle;
import dev.llmflash.formats.predictor.LayerPredictor;
import dev.llmflash.formats.predictor.PredictorFile;
import dev.llmflash.formats.predictor.Predictors;
import dev.llmflash.runtime.ffn.FfnWrapper;
import dev.llmflash.runtime.ffn.NeuronMajorFfn;
import dev.llmflash.runtime.flash.PredictedFfn;
import dev.llmflash.runtime.flash.FlashRuntime;

import java.nio.file.Path;
import java.util.List;

/**
 * How the FFN weights are used (DESIGN.md, Runtime):
 * <ul>
 *   <li>{@code dense}: every weight memory-mapped, every neuron computed (the reference);</li>
 *   <li>{@code naive}: every token re-reads the whole FFN from flash (the paper's naive baseline);</li>
 *   <li>{@code hybrid}: as much of the FFN as the budget allows held in DRAM, the rest re-read per token;</li>
 *   <li>{@code flash}: predictor, window cache, only the missing bundles read (the paper's method);</li>
 *   <li>{@code predicted}: every weight memory-mapped, only the predicted neurons computed: the output
 *       flash mode gives, plus the predictors' recall against the true activity (a quality check).</li>
 * </ul>
 */
enum Mode {
    dense, naive, hybrid, flash, predicted;

    /** The flash runtime's mode, or null for the memory-mapped modes. */
    FlashRuntime.Mode runtimeMode() {
        return switch (this) {
            case naive -> FlashRuntime.Mode.NAIVE;
            case hybrid -> FlashRuntime.Mode.HYBRID;
            case flash -> FlashRuntime.Mode.FLASH;
            case dense, predicted -> null;
        };
    }

    /** The per-layer FFN wrapper of a memory-mapped mode; predicted mode adds each predicted layer's FFN to {@code predicted}. */
    FfnWrapper mappedWrapper(Path model, List<PredictedFfn> out) {
        if (this == dense) {
            return FfnWrapper.NONE;
        }
        if (this != predicted) {
            throw new IllegalStateException(this + " runs through the flash runtime");
        }
        if (!Bundle.looksLikeBundle(model)) {
            throw new LlmflashException(model + ": --mode predicted needs a bundle with predictors (llmflash convert, record, train-predictor)");
        }
        String fingerprint;
        try (Bundle b = Bundle.open(model)) {
            fingerprint = b.manifest().fingerprint();
        }
        if (!PredictorFile.exists(model)) {
            throw new LlmflashException(model + ": --mode predicted needs the bundle's predictors, and it has none;"
                    + " train them with 'llmflash record' then 'llmflash train-predictor'");
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
