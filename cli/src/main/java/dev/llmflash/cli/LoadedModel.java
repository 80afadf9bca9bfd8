package dev.llmflash.cli;

import dev.llmflash.runtime.kernels.Kernels;
import dev.llmflash.runtime.model.LanguageModel;
import dev.llmflash.runtime.model.Models;
import dev.llmflash.runtime.tokenizer.BpeTokenizer;

import java.nio.file.Path;

/** A model, its tokenizer and its kernels, opened together from {@code --model} and closed together. */
record LoadedModel(Path dir, LanguageModel model, BpeTokenizer tokenizer, Kernels kernels, double loadMs) implements AutoCloseable {

    static LoadedModel open(Path dir, int threads) {
        return open(dir, threads, dev.llmflash.runtime.ffn.FfnWrapper.NONE);
    }

    static LoadedModel open(Path dir, int threads, dev.llmflash.runtime.ffn.FfnWrapper wrap) {
        long t0 = System.nanoTime();
        Kernels kernels = new Kernels(threads);
        try {
            LanguageModel model = Models.open(dir, kernels, wrap);
            try {
                BpeTokenizer tok = BpeTokenizer.fromModelDir(dir);
                return new LoadedModel(dir, model, tok, kernels, (System.nanoTime() - t0) / 1e6);
            } catch (RuntimeException e) {
                model.close();
                throw e;
            }
        } catch (RuntimeException e) {
            kernels.close();
            throw e;
        }
    }

    @Override
    public void close() {
        model.close();
        kernels.close();
    }
}
