package dev.llmflash.cli;

import dev.llmflash.runtime.budget.ProcessMemory;
import dev.llmflash.runtime.ffn.FfnWrapper;
import dev.llmflash.runtime.flash.PredictedFfn;
import dev.llmflash.runtime.flash.FlashRuntime;
import dev.llmflash.runtime.flash.RunReport;
import dev.llmflash.runtime.kernels.Kernels;
import dev.llmflash.runtime.model.LanguageModel;
import dev.llmflash.runtime.model.Models;
import dev.llmflash.runtime.tokenizer.BpeTokenizer;

import java.nio.file.Path;
import java.util.List;

/**
 * A model, its tokenizer, its kernels and (naive, hybrid, flash) its flash runtime, opened together
 * from the command's options and closed together. {@link #model()} records every forward call in
 * {@link #report()}.
 */
record LoadedModel(Path dir, LanguageModel model, BpeTokenizer tokenizer, Kernels kernels, FlashRuntime runtime,
                   RunReport report, double loadMs) implements AutoCloseable {

    /** Dense, memory-mapped, no report options (record, train-predictor). */
    static LoadedModel open(Path dir, int threads) {
        return open(dir, threads, FfnWrapper.NONE);
    }

    static LoadedModel open(Path dir, int threads, FfnWrapper wrap) {
        long t0 = System.nanoTime();
        Kernels kernels = new Kernels(threads);
        try {
            LanguageModel model = Models.open(dir, kernels, wrap);
            BpeTokenizer tok;
            try {
                tok = BpeTokenizer.fromModelDir(dir);
            } catch (RuntimeException e) {
                model.close();
                throw e;
            }
            return new LoadedModel(dir, model, tok, kernels, null, null, (System.nanoTime() - t0) / 1e6);
        } catch (RuntimeException e) {
            kernels.close();
            throw e;
        }
    }

    /**
     * Opens {@code o.model} in {@code o.mode}, sized for {@code contextTokens} positions.
     *
     * @param tokenizer the model's tokenizer if the caller already loaded it, else null
     * @param predicted predicted mode adds its per-layer FFNs here (for recall statistics)
     */
    static LoadedModel open(CommonOptions o, BpeTokenizer tokenizer, int contextTokens, List<PredictedFfn> predicted) {
        o.checkModeOptions();
        return open(o, tokenizer, o.mode.runtimeMode() != null ? o.runtimeOptions(contextTokens) : null, contextTokens, predicted);
    }

    /** Opens {@code o.model} with explicit flash-runtime options (naive, hybrid, flash; benchmarks). */
    static LoadedModel open(CommonOptions o, BpeTokenizer tokenizer, FlashRuntime.Options runtime) {
        o.checkModeOptions();
        return open(o, tokenizer, runtime, runtime == null ? 1 : runtime.contextTokens(), new java.util.ArrayList<>());
    }

    private static LoadedModel open(CommonOptions o, BpeTokenizer tokenizer, FlashRuntime.Options ro, int contextTokens,
                                    List<PredictedFfn> predicted) {
        long baseline = ProcessMemory.rssBytes();
        long t0 = System.nanoTime();
        Kernels kernels = new Kernels(o.validatedThreads());
        FlashRuntime rt = null;
        try {
            LanguageModel model;
            RunReport report;
            if (o.mode.runtimeMode() != null) {
                rt = FlashRuntime.open(o.model, ro);
                model = Models.open(o.model, kernels, rt.wrapper());
                report = RunReport.of(rt, baseline);
            } else {
                model = Models.open(o.model, kernels, o.mode.mappedWrapper(o.model, predicted));
                report = new RunReport(o.mode.name(), null, null, FlashRuntime.mappedMemory(o.model, contextTokens), baseline);
            }
            BpeTokenizer tok;
            try {
                tok = tokenizer != null ? tokenizer : BpeTokenizer.fromModelDir(o.model);
            } catch (RuntimeException e) {
                model.close();
                throw e;
            }
            return new LoadedModel(o.model, report.wrap(LanguageModel.withKv(model, o.kvType())), tok, kernels, rt, report,
                    (System.nanoTime() - t0) / 1e6);
        } catch (RuntimeException e) {
            if (rt != null) {
                rt.close();
            }
            kernels.close();
            throw e;
        }
    }

    @Override
    public void close() {
        model.close();
        if (runtime != null) {
            runtime.close();
        }
        kernels.close();
    }
}
