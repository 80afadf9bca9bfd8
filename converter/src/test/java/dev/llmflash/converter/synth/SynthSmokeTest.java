package dev.llmflash.converter.synth;

import dev.llmflash.runtime.kernels.Kernels;
import dev.llmflash.runtime.model.LanguageModel;
import dev.llmflash.runtime.model.Models;
import dev.llmflash.runtime.tokenizer.BpeTokenizer;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

import java.nio.file.Path;
import java.util.List;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

/** The synthesized tiny models run through the runtime's forward passes with finite logits. */
class SynthSmokeTest {

    @Test
    void tinySynthesizedModelsRunWithFiniteLogits(@TempDir Path tmp) {
        for (String name : List.of("opt-test", "opt-test-postln", "falcon-test")) {
            Path dir = tmp.resolve(name);
            Synth.run(SynthOptions.of(name, dir).withSeed(11).withShardBytes(1_000_000), Synth.Progress.NONE);
            BpeTokenizer tok = BpeTokenizer.fromModelDir(dir);
            int[] prompt = tok.encodeWithBos("The quick brown fox jumps over the lazy dog.");
            try (Kernels k = new Kernels(1); LanguageModel lm = Models.openHf(dir, k)) {
                int vocab = lm.config().vocabSize();
                assertEquals(tok.eosId(), lm.config().eosTokenId(), name + ": tokenizer and config agree on EOS");
                LanguageModel.State state = lm.newState(64);
                float[] all = new float[prompt.length * vocab];
                lm.forward(state, prompt, prompt.length, true, all);
                check(name + " prompt", all);
                // A few generated tokens on top (the KV-cache path).
                float[] last = new float[vocab];
                int next = argmax(all, (prompt.length - 1) * vocab, vocab);
                for (int step = 0; step < 4; step++) {
                    lm.forward(state, new int[] {next}, 1, false, last);
                    check(name + " step " + step, last);
                    next = argmax(last, 0, vocab);
                }
                assertEquals(prompt.length + 4, state.length());
            }
        }
    }

    /** Finite, not constant, not exploding (0.02 sqrt(d) ~ 0.16 after a final LN; ~0.02 through OPT-350m-style project_out). */
    private static void check(String what, float[] logits) {
        double sum = 0, sq = 0;
        for (float v : logits) {
            assertTrue(Float.isFinite(v), what + ": non-finite logit");
            sum += v;
            sq += (double) v * v;
        }
        double mean = sum / logits.length;
        double std = Math.sqrt(sq / logits.length - mean * mean);
        assertTrue(std > 1e-3 && std < 10, what + ": logit std " + std);
    }

    private static int argmax(float[] a, int off, int n) {
        int best = 0;
        for (int i = 1; i < n; i++) {
            if (a[off + i] > a[off + best]) {
                best = i;
            }
        }
        return best;
    }
}
