package dev.llmflash.runtime.model;

import dev.llmflash.formats.tensor.DType;
import dev.llmflash.formats.testing.TestData;
import dev.llmflash.runtime.generate.Generator;
import dev.llmflash.runtime.generate.SamplingOptions;
import dev.llmflash.runtime.generate.Sampler;
import dev.llmflash.runtime.kernels.Kernels;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.MethodSource;

import java.util.HashMap;
import java.util.List;
import java.util.Map;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * The dense forward passes against Hugging Face transformers' float32 outputs (testdata/reference):
 * logits within 2e-3 at every position with the same argmax, and identical 32-token greedy
 * continuations, for all three checkpoints (OPT pre-LN f16 safetensors, Falcon multi-query bf16
 * sharded safetensors, OPT post-LN with projections f16 pytorch_model.bin). Logits are compared with an
 * f32 KV cache (the reference path); the default f16 cache is held to a looser logit bound, the same
 * argmax, and the identical greedy continuation (which runs with the default).
 */
class HuggingFaceParityTest {
    static final float LOGIT_TOLERANCE = 2e-3f;
    /** Logits against HF's with keys and values rounded to f16 (measured max 4.0e-3 over the reference prompts). */
    static final float F16_KV_TOLERANCE = 1e-2f;

    static Kernels kernels;
    static final Map<String, LanguageModel> models = new HashMap<>();

    @BeforeAll
    static void open() {
        kernels = new Kernels(2);
    }

    @AfterAll
    static void close() {
        models.values().forEach(LanguageModel::close);
        kernels.close();
    }

    static synchronized LanguageModel model(String name) {
        return models.computeIfAbsent(name, n -> Models.openHf(TestData.model(n), kernels));
    }

    static List<Reference.Prompt> prompts() {
        return Reference.prompts();
    }

    @ParameterizedTest(name = "{0}")
    @MethodSource("prompts")
    void logitsMatchAtEveryPosition(Reference.Prompt p) {
        LanguageModel m = model(p.model());
        float[][] expected = Reference.logits(p);
        int seq = p.inputIds().length, vocab = m.config().vocabSize();
        assertEquals(seq, expected.length, "reference rows");
        float[] logits = new float[seq * vocab];
        m.forward(m.newState(seq, DType.F32), p.inputIds(), seq, true, logits);
        for (int s = 0; s < seq; s++) {
            float maxDiff = 0;
            int argmax = 0;
            for (int v = 0; v < vocab; v++) {
                maxDiff = Math.max(maxDiff, Math.abs(logits[s * vocab + v] - expected[s][v]));
                if (logits[s * vocab + v] > logits[s * vocab + argmax]) {
                    argmax = v;
                }
            }
            assertTrue(maxDiff <= LOGIT_TOLERANCE, p + " position " + s + ": max |java - hf| = " + maxDiff);
            assertEquals(Sampler.argmax(expected[s], vocab), argmax, p + " position " + s + ": argmax");
        }
        // HF's top-5 of the last position, in order.
        int[] top5 = topK(logits, (seq - 1) * vocab, vocab, 5);
        assertArrayEquals(p.top5(), top5, p + ": last-position top 5");
    }

    /**
     * The default f16 KV cache (half the bytes of f32): logits stay within {@link #F16_KV_TOLERANCE} of HF
     * with the same argmax at every position; the greedy continuation below runs with it too.
     */
    @ParameterizedTest(name = "{0}")
    @MethodSource("prompts")
    void anF16KvCacheKeepsTheLogitsCloseAndTheArgmax(Reference.Prompt p) {
        LanguageModel m = model(p.model());
        float[][] expected = Reference.logits(p);
        int seq = p.inputIds().length, vocab = m.config().vocabSize();
        float[] f16 = new float[seq * vocab], f32 = new float[seq * vocab];
        m.forward(m.newState(seq), p.inputIds(), seq, true, f16);
        m.forward(m.newState(seq, DType.F32), p.inputIds(), seq, true, f32);
        float moved = 0;
        for (int s = 0; s < seq; s++) {
            float maxDiff = 0;
            int argmax = 0;
            for (int v = 0; v < vocab; v++) {
                maxDiff = Math.max(maxDiff, Math.abs(f16[s * vocab + v] - expected[s][v]));
                moved = Math.max(moved, Math.abs(f16[s * vocab + v] - f32[s * vocab + v]));
                if (f16[s * vocab + v] > f16[s * vocab + argmax]) {
                    argmax = v;
                }
            }
            assertTrue(maxDiff <= F16_KV_TOLERANCE, p + " position " + s + ": f16 KV, max |java - hf| = " + maxDiff);
            assertEquals(Sampler.argmax(expected[s], vocab), argmax, p + " position " + s + ": argmax with an f16 KV cache");
        }
        assertTrue(moved > 0, p + ": the f16 KV cache is really in use (logits differ from f32's)");
    }

    @ParameterizedTest(name = "{0}")
    @MethodSource("prompts")
    void greedyContinuationIsIdentical(Reference.Prompt p) {
        LanguageModel m = model(p.model());
        Generator.Result r = new Generator(m).generate(p.inputIds(), p.greedyNewIds().length, SamplingOptions.greedy(), null);
        assertArrayEquals(p.greedyNewIds(), r.generatedIds(), p + ": greedy ids");
    }

    @ParameterizedTest(name = "{0}")
    @MethodSource("prompts")
    void tokenByTokenEqualsBatched(Reference.Prompt p) {
        LanguageModel m = model(p.model());
        int seq = p.inputIds().length, vocab = m.config().vocabSize();
        float[] batched = new float[seq * vocab];
        m.forward(m.newState(seq, DType.F32), p.inputIds(), seq, true, batched);
        LanguageModel.State st = m.newState(seq, DType.F32);
        float[] one = new float[vocab];
        for (int s = 0; s < seq; s++) {
            m.forward(st, new int[] {p.inputIds()[s]}, 1, false, one);
            for (int v = 0; v < vocab; v++) {
                assertEquals(batched[s * vocab + v], one[v], 1e-4f, p + " position " + s + " token " + v);
            }
        }
    }

    static int[] topK(float[] x, int off, int n, int k) {
        int[] best = new int[k];
        boolean[] taken = new boolean[n];
        for (int r = 0; r < k; r++) {
            int b = -1;
            for (int i = 0; i < n; i++) {
                if (!taken[i] && (b < 0 || x[off + i] > x[off + b])) {
                    b = i;
                }
            }
            taken[b] = true;
            best[r] = b;
        }
        return best;
    }
}
