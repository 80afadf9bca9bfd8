package dev.llmflash.converter;

import dev.llmflash.formats.bundle.Bundle;
import dev.llmflash.formats.bundle.FfnLayout;
import dev.llmflash.formats.hf.HfCheckpoint;
import dev.llmflash.formats.tensor.DType;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.CsvSource;

import java.io.IOException;
import java.nio.file.Path;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

/** Cases the committed checkpoints do not cover, on {@link SyntheticOpt} checkpoints. */
class SyntheticConversionTest {
    @TempDir
    Path tmp;

    @ParameterizedTest(name = "F32 source -> {0}, {1}")
    @CsvSource({"F32, BUNDLED", "F16, BUNDLED", "BF16, SPLIT", "F16, SPLIT"})
    void convertsF32WeightsWithPaddingAndTheShortPrefix(DType target, FfnLayout layout) throws IOException {
        // d = 40, f = 100: F16 bundles of 160 bytes padded to 192, split matrices of 8000 padded to 8192.
        Path input = SyntheticOpt.write(tmp.resolve("hf"), DType.F32, "decoder.", 40, 100, 3, true,
                SyntheticOpt.LmHead.NONE);
        Path output = tmp.resolve("bundle");
        Converter.convert(new ConvertOptions(input, output, target, layout, false), Progress.none());
        try (HfCheckpoint src = HfCheckpoint.open(input); Bundle bundle = Bundle.open(output)) {
            bundle.verify();
            assertEquals(target, bundle.dtype());
            if (layout == FfnLayout.BUNDLED && target == DType.F16) {
                assertEquals(192, bundle.ffn().stride());
            }
            Oracle.assertBundleMatches(src.weights(), bundle, "decoder.layers.{layer}.fc1.weight",
                    "decoder.layers.{layer}.fc2.weight", false);
            // The integer tensor is copied as it is.
            assertEquals(DType.I64, bundle.resident().tensor("decoder.position_ids").dtype());
            assertTrue(bundle.manifest().tokenizer().isEmpty());
        }
    }

    @Test
    void keepsAnUntiedLmHead() throws IOException {
        Path input = SyntheticOpt.write(tmp.resolve("hf"), DType.F16, "model.decoder.", 40, 100, 1, false,
                SyntheticOpt.LmHead.DIFFERENT);
        convertAndCheck(input, false);
    }

    @Test
    void keepsATiedLmHeadThatDiffersFromTheEmbedding() throws IOException {
        Path input = SyntheticOpt.write(tmp.resolve("hf"), DType.F16, "model.decoder.", 40, 100, 1, true,
                SyntheticOpt.LmHead.DIFFERENT);
        convertAndCheck(input, false);
    }

    @Test
    void dropsATiedLmHeadEqualToTheEmbedding() throws IOException {
        Path input = SyntheticOpt.write(tmp.resolve("hf"), DType.F16, "model.decoder.", 40, 100, 1, true,
                SyntheticOpt.LmHead.EQUAL_TO_EMBEDDING);
        convertAndCheck(input, true);
    }

    @Test
    void keepsAnUntiedLmHeadEvenWhenEqual() throws IOException {
        Path input = SyntheticOpt.write(tmp.resolve("hf"), DType.F16, "model.decoder.", 40, 100, 1, false,
                SyntheticOpt.LmHead.EQUAL_TO_EMBEDDING);
        convertAndCheck(input, false);
    }

    private void convertAndCheck(Path input, boolean dropped) {
        Path output = tmp.resolve("bundle");
        Converter.convert(new ConvertOptions(input, output, null, FfnLayout.BUNDLED, false), Progress.none());
        try (HfCheckpoint src = HfCheckpoint.open(input); Bundle bundle = Bundle.open(output)) {
            bundle.verify();
            assertEquals(!dropped, bundle.resident().contains("lm_head.weight"));
            Oracle.assertBundleMatches(src.weights(), bundle, "model.decoder.layers.{layer}.fc1.weight",
                    "model.decoder.layers.{layer}.fc2.weight", dropped);
        }
    }
}
