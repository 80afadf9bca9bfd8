package dev.llmflash.converter;

import dev.llmflash.formats.bundle.Bundle;
import dev.llmflash.formats.bundle.BundleManifest;
import dev.llmflash.formats.bundle.FfnLayout;
import dev.llmflash.formats.hf.HfCheckpoint;
import dev.llmflash.formats.tensor.DType;
import dev.llmflash.formats.testing.TestData;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.CsvSource;

import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * Converts each committed checkpoint and checks the bundle element by element against the source
 * ({@link Oracle}): same dtype bit for bit, conversions against scalar definitions.
 */
class ConverterRoundTripTest {
    @TempDir
    Path tmp;

    @ParameterizedTest(name = "{0} {1}")
    @CsvSource({
            // model, layout, weights file, up names, down names, lm_head dropped
            "opt-mini, BUNDLED, model.safetensors, model.decoder.layers.{layer}.fc1.weight, model.decoder.layers.{layer}.fc2.weight, false",
            "opt-mini, SPLIT, model.safetensors, model.decoder.layers.{layer}.fc1.weight, model.decoder.layers.{layer}.fc2.weight, false",
            "falcon-mini-relu, BUNDLED, model.safetensors.index.json, transformer.h.{layer}.mlp.dense_h_to_4h.weight, transformer.h.{layer}.mlp.dense_4h_to_h.weight, false",
            "falcon-mini-relu, SPLIT, model.safetensors.index.json, transformer.h.{layer}.mlp.dense_h_to_4h.weight, transformer.h.{layer}.mlp.dense_4h_to_h.weight, false",
            "opt-tiny-postln-bin, BUNDLED, pytorch_model.bin, model.decoder.layers.{layer}.fc1.weight, model.decoder.layers.{layer}.fc2.weight, true",
            "opt-tiny-postln-bin, SPLIT, pytorch_model.bin, model.decoder.layers.{layer}.fc1.weight, model.decoder.layers.{layer}.fc2.weight, true",
    })
    void convertsTheCommittedCheckpointsExactly(String model, FfnLayout layout, String weights, String upNames,
                                                String downNames, boolean droppedLmHead) throws IOException {
        Path input = TestData.model(model);
        Path output = tmp.resolve("bundle");
        List<Progress.Stage> stages = new ArrayList<>();
        long[] last = {-1, -1};
        ConvertResult result = Converter.convert(new ConvertOptions(input, output, null, layout, false),
                (stage, done, total) -> {
                    if (stages.isEmpty() || stages.getLast() != stage) {
                        stages.add(stage);
                    }
                    assertTrue(done >= last[0] && done <= total, "progress is monotonic and bounded");
                    last[0] = done;
                    last[1] = total;
                });
        assertEquals(List.of(Progress.Stage.values()), stages);
        assertEquals(last[1], last[0], "progress reaches its total");

        try (HfCheckpoint src = HfCheckpoint.open(input); Bundle bundle = Bundle.open(output)) {
            bundle.verify();
            DType own = src.weights().tensor(upNames.replace("{layer}", "0")).dtype();
            assertEquals(own, bundle.dtype(), "the checkpoint's own dtype by default");
            assertEquals(src.config(), bundle.config());
            assertEquals(layout, bundle.ffn().layout());
            Oracle.assertBundleMatches(src.weights(), bundle, upNames, downNames, droppedLmHead);

            BundleManifest m = bundle.manifest();
            assertEquals(input.toAbsolutePath().normalize().toString(), m.source().path());
            assertEquals(weights, m.source().weights());
            assertEquals(BundleManifest.sourceFingerprint(Files.readAllBytes(input.resolve("config.json")),
                    src.weights()), m.source().fingerprint());
            assertTrue(m.createdBy().startsWith("llmflash "), m.createdBy());

            // Tokenizer files: exactly those the source has, byte for byte.
            List<String> copied = new ArrayList<>();
            for (String name : Bundle.TOKENIZER_FILES) {
                if (Files.exists(input.resolve(name))) {
                    copied.add(name);
                    assertArrayEquals(Files.readAllBytes(input.resolve(name)), Files.readAllBytes(output.resolve(name)),
                            name);
                } else {
                    assertFalse(Files.exists(output.resolve(name)), name);
                }
            }
            assertEquals(copied, m.tokenizer().stream().map(BundleManifest.TokenizerFile::file).toList());
            assertTrue(copied.contains("vocab.json") && copied.contains("merges.txt"));
        }

        // The result lists every file, manifest last; nothing else is in the bundle or next to it.
        assertEquals(output, result.bundle());
        assertEquals(output.resolve("manifest.json"), result.files().getLast());
        long sum = 0;
        for (Path f : result.files()) {
            sum += Files.size(f);
        }
        assertEquals(sum, result.bytesWritten());
        try (var s = Files.list(output)) {
            assertEquals(result.files().size(), s.count());
        }
        try (var s = Files.list(tmp)) {
            assertEquals(List.of(output), s.toList(), "no temporary folder is left");
        }
    }

    @ParameterizedTest(name = "{0} -> {1}")
    @CsvSource({
            "opt-mini, F32",          // widening: exact
            "opt-mini, BF16",         // f16 -> bf16: RNE (f16 has 3 more mantissa bits)
            "falcon-mini-relu, F16",  // bf16 -> f16: RNE, overflow and subnormals per IEEE
            "falcon-mini-relu, F32",
    })
    void convertsDtypes(String model, DType target) {
        Path input = TestData.model(model);
        Path output = tmp.resolve("bundle");
        Converter.convert(new ConvertOptions(input, output, target, FfnLayout.BUNDLED, false), Progress.none());
        try (HfCheckpoint src = HfCheckpoint.open(input); Bundle bundle = Bundle.open(output)) {
            bundle.verify();
            assertEquals(target, bundle.dtype());
            assertEquals(target, bundle.ffn().dtype());
            SourceLayout layout = SourceLayout.of(src.config(), src.weights());
            Oracle.assertBundleMatches(src.weights(), bundle, layout.upNames(), layout.downNames(), false);
        }
    }

    @Test
    void sameInputGivesTheSameFingerprint() {
        Path input = TestData.model("opt-tiny-postln-bin");
        Converter.convert(new ConvertOptions(input, tmp.resolve("a"), null, FfnLayout.BUNDLED, false), Progress.none());
        Converter.convert(new ConvertOptions(input, tmp.resolve("b"), null, FfnLayout.BUNDLED, false), Progress.none());
        Converter.convert(new ConvertOptions(input, tmp.resolve("c"), null, FfnLayout.SPLIT, false), Progress.none());
        try (Bundle a = Bundle.open(tmp.resolve("a")); Bundle b = Bundle.open(tmp.resolve("b"));
             Bundle c = Bundle.open(tmp.resolve("c"))) {
            assertEquals(a.manifest().fingerprint(), b.manifest().fingerprint());
            assertEquals(a.manifest().source(), b.manifest().source());
            assertFalse(a.manifest().fingerprint().equals(c.manifest().fingerprint()), "the layout is part of it");
        }
    }
}
