package dev.llmflash.trainer;

import dev.llmflash.formats.LlmflashException;
import dev.llmflash.formats.bundle.Bundle;
import dev.llmflash.formats.bundle.Checksums;
import dev.llmflash.formats.activations.ActivationWriter;
import dev.llmflash.formats.activations.RecordingInfo;
import dev.llmflash.formats.hf.ModelConfig;
import dev.llmflash.runtime.ffn.RecordingFfn;
import dev.llmflash.runtime.kernels.Kernels;
import dev.llmflash.runtime.model.LanguageModel;
import dev.llmflash.runtime.model.Models;
import dev.llmflash.runtime.tokenizer.BpeTokenizer;

import java.io.IOException;
import java.nio.charset.CharacterCodingException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.List;
import java.util.function.LongConsumer;

/**
 * Records what the predictors learn from: the dense model runs over a text in the perplexity
 * protocol's windows ({@code [BOS]} + context-1 tokens), and for every position and layer the FFN input
 * and which neurons fired go to an {@link ActivationWriter}. A recording that was interrupted resumes
 * where its last intact chunk ends (the text and the bundle must be the same).
 */
public final class Recorder {
    private Recorder() {
    }

    /**
     * @param bundle  the bundle the model runs from (its fingerprint ties the recording to it)
     * @param text    a UTF-8 text file
     * @param tokens  positions to record (every layer gets this many)
     * @param output  the recording's folder (created, or resumed)
     * @param context window length, BOS included
     */
    public record Options(Path bundle, Path text, long tokens, Path output, int threads, int context) {
        public Options {
            if (tokens < 1) {
                throw new IllegalArgumentException("--tokens must be >= 1, got " + tokens);
            }
            if (context < 2) {
                throw new IllegalArgumentException("--context must be >= 2, got " + context);
            }
            if (threads < 1) {
                throw new IllegalArgumentException("--threads must be >= 1, got " + threads);
            }
        }
    }

    /** @param resumedFrom positions already recorded before this run; dropped: chunks discarded on resume */
    public record Result(Path output, long tokens, long resumedFrom, double seconds, List<String> dropped) {
    }

    public static Result record(Options o, LongConsumer progress) {
        if (!Bundle.looksLikeBundle(o.bundle())) {
            throw new LlmflashException(o.bundle() + ": not a bundle (no manifest.json); record runs from a bundle: "
                    + "convert the model first with llmflash convert");
        }
        String fingerprint;
        ModelConfig cfg;
        try (Bundle b = Bundle.open(o.bundle())) {
            fingerprint = b.manifest().fingerprint();
            cfg = b.config();
        }
        byte[] bytes = readText(o.text());
        String text = new String(bytes, StandardCharsets.UTF_8);
        int d = cfg.hiddenSize(), f = cfg.ffnSize();
        RecordingInfo info = new RecordingInfo(fingerprint, d, f, cfg.numLayers(), o.text().toString(), sha256(bytes));
        ActivationWriter writer = ActivationWriter.open(o.output(), info);
        long start = writer.tokensRecorded();
        long limit = o.tokens();
        long t0 = System.nanoTime();
        long[] seen = new long[cfg.numLayers()]; // positions each layer has passed through the sink so far
        RecordingFfn.Sink sink = (layer, x, h, m) -> {
            for (int t = 0; t < m; t++) {
                long index = seen[layer] + t;
                if (index >= start && index < limit) {
                    writer.append(layer, x, t * d, h, t * f);
                }
            }
            seen[layer] += m;
        };
        try (Kernels k = new Kernels(o.threads()); LanguageModel model = Models.open(o.bundle(), k, RecordingFfn.everyLayer(sink))) {
            BpeTokenizer tok = BpeTokenizer.fromModelDir(o.bundle());
            int[] ids = tok.encode(text);
            int c = o.context();
            if (ids.length < c - 1) {
                throw new LlmflashException(o.text() + ": has " + ids.length + " tokens, fewer than one window of " + (c - 1)
                        + " (use a longer text)");
            }
            LanguageModel.State state = model.newState(c);
            int[] window = new int[c];
            float[] logits = new float[cfg.vocabSize()];
            long position = 0;
            for (int s = 0; s + c - 1 <= ids.length && position < limit; s += c - 1, position += c) {
                if (position + c <= start) { // already recorded: skip without running
                    java.util.Arrays.fill(seen, position + c);
                    continue;
                }
                java.util.Arrays.fill(seen, position);
                window[0] = tok.bosId();
                System.arraycopy(ids, s, window, 1, c - 1);
                state.reset();
                model.forward(state, window, c, false, logits);
                progress.accept(Math.min(limit, position + c));
            }
            if (position < limit) {
                throw new LlmflashException(o.text() + ": yields only " + position + " positions in windows of " + c
                        + ", fewer than --tokens " + limit + " (use a longer text or fewer tokens; what was recorded is kept and resumes)");
            }
        }
        writer.finish();
        return new Result(o.output(), limit, start, (System.nanoTime() - t0) / 1e9, writer.dropped());
    }

    private static String sha256(byte[] bytes) {
        java.security.MessageDigest md = Checksums.sha256();
        md.update(bytes);
        return Checksums.hex(md);
    }

    static byte[] readText(Path file) {
        try {
            byte[] bytes = Files.readAllBytes(file);
            StandardCharsets.UTF_8.newDecoder().decode(java.nio.ByteBuffer.wrap(bytes));
            return bytes;
        } catch (CharacterCodingException e) {
            throw new LlmflashException(file + ": is not UTF-8 text (convert it to UTF-8)");
        } catch (IOException e) {
            throw new LlmflashException(file + ": cannot be read (" + e.getMessage() + "); check --text");
        }
    }
}
