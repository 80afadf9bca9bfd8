package dev.llmflash.converter;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import dev.llmflash.formats.bundle.FfnLayout;
import dev.llmflash.formats.safetensors.SafetensorsFile;
import dev.llmflash.formats.tensor.Tensor;
import dev.llmflash.formats.testing.TestData;
import dev.llmflash.runtime.generate.Generator;
import dev.llmflash.runtime.generate.SamplingOptions;
import dev.llmflash.runtime.kernels.Kernels;
import dev.llmflash.runtime.model.LanguageModel;
import dev.llmflash.runtime.model.Models;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.io.TempDir;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.ValueSource;

import java.io.IOException;
import java.nio.file.Path;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * A converted bundle runs the same model: for each committed checkpoint, the bundled and the split
 * bundle (dense mode) give the HF folder's logits (up to summation order: the bundle computes the
 * down projection as an accumulation over neurons, the HF path as dot products over rows), Hugging
 * Face's own reference logits within the reference tolerance, identical greedy continuations, and
 * the same logits between the two layouts up to the last bits (same kernels, same order; only the
 * Vector API's lane sum may change order while the JIT warms up, between interpreted and compiled code).
 */
class BundleLogitsTest {
    @TempDir
    static Path tmp;

    static Kernels kernels;
    static JsonNode reference;

    @BeforeAll
    static void setUp() throws IOException {
        kernels = new Kernels(2);
        reference = new ObjectMapper().readTree(TestData.reference("reference_outputs.json").toFile());
    }

    @AfterAll
    static void tearDown() {
        kernels.close();
    }

    static float[] logits(LanguageModel m, int[] ids) {
        float[] out = new float[ids.length * m.config().vocabSize()];
        m.forward(m.newState(ids.length, dev.llmflash.formats.tensor.DType.F32), ids, ids.length, true, out);
        return out;
    }

    static int[] ints(JsonNode a) {
        int[] r = new int[a.size()];
        for (int i = 0; i < r.length; i++) {
            r[i] = a.get(i).asInt();
        }
        return r;
    }

    @ParameterizedTest
    @ValueSource(strings = {"opt-mini", "falcon-mini-relu", "opt-tiny-postln-bin"})
    void bundlesGiveTheHuggingFaceFolderLogits(String name) {
        Path hf = TestData.model(name);
        Path bundled = tmp.resolve(name + "-bundled");
        Path split = tmp.resolve(name + "-split");
        Converter.convert(new ConvertOptions(hf, bundled, null, FfnLayout.BUNDLED, false), Progress.none());
        Converter.convert(new ConvertOptions(hf, split, null, FfnLayout.SPLIT, false), Progress.none());
        try (LanguageModel a = Models.open(hf, kernels); LanguageModel b = Models.open(bundled, kernels);
             LanguageModel c = Models.open(split, kernels);
             SafetensorsFile refLogits = SafetensorsFile.open(TestData.reference("reference_logits.safetensors"))) {
            JsonNode prompts = reference.get(name).get("prompts");
            for (int p = 0; p < prompts.size(); p++) {
                int[] ids = ints(prompts.get(p).get("input_ids"));
                float[] la = logits(a, ids), lb = logits(b, ids), lc = logits(c, ids);
                float maxAbs = 0, maxDiff = 0;
                for (int i = 0; i < lb.length; i++) {
                    maxAbs = Math.max(maxAbs, Math.abs(lb[i]));
                    maxDiff = Math.max(maxDiff, Math.abs(lb[i] - lc[i]));
                }
                assertTrue(maxDiff <= 1e-5f * maxAbs, name + " prompt " + p + ": bundled and split logits differ by " + maxDiff
                        + " (max |logit| " + maxAbs + ")");
                Tensor ref = refLogits.tensor(name + ".prompt" + p + ".logits");
                float maxHf = 0, maxRef = 0;
                for (int i = 0; i < la.length; i++) {
                    maxHf = Math.max(maxHf, Math.abs(la[i] - lb[i]));
                    maxRef = Math.max(maxRef, Math.abs(ref.getFloat(i) - lb[i]));
                }
                assertTrue(maxHf <= 1e-4f, name + " prompt " + p + ": max |bundle - HF folder| = " + maxHf);
                assertTrue(maxRef <= 2e-3f, name + " prompt " + p + ": max |bundle - HF reference| = " + maxRef);
                int[] greedy = ints(prompts.get(p).get("greedy_new_ids"));
                Generator.Result r = new Generator(b).generate(ids, greedy.length, SamplingOptions.greedy(), null);
                assertArrayEquals(greedy, r.generatedIds(), name + " prompt " + p + ": greedy ids from the bundle");
            }
        }
    }

    @ParameterizedTest
    @ValueSource(strings = {"f32", "bf16"})
    void otherDtypesStayCloseAndF32IsLossless(String dtype) {
        Path hf = TestData.model("opt-mini");
        Path out = tmp.resolve("opt-mini-" + dtype);
        var dt = dtype.equals("f32") ? dev.llmflash.formats.tensor.DType.F32 : dev.llmflash.formats.tensor.DType.BF16;
        Converter.convert(new ConvertOptions(hf, out, dt, FfnLayout.BUNDLED, false), Progress.none());
        int[] ids = ints(reference.get("opt-mini").get("prompts").get(0).get("input_ids"));
        try (dev.llmflash.formats.bundle.Bundle bundle = dev.llmflash.formats.bundle.Bundle.open(out)) {
            assertEquals(dt, bundle.dtype());
        }
        try (LanguageModel a = Models.open(hf, kernels); LanguageModel b = Models.open(out, kernels)) {
            float[] la = logits(a, ids), lb = logits(b, ids);
            float max = 0;
            for (int i = 0; i < la.length; i++) {
                max = Math.max(max, Math.abs(la[i] - lb[i]));
            }
            // f16 -> f32 is exact, so only summation order differs; f16 -> bf16 loses 3 mantissa bits.
            float tol = dtype.equals("f32") ? 1e-4f : 0.5f;
            assertTrue(max <= tol, dtype + ": max |bundle - HF folder| = " + max);
        }
    }
}
