package dev.llmflash.converter;

import dev.llmflash.formats.FormatException;
import dev.llmflash.formats.LlmflashException;
import dev.llmflash.formats.bundle.Bundle;
import dev.llmflash.formats.bundle.FfnLayout;
import dev.llmflash.formats.testing.TestData;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.EnumSource;

import java.io.IOException;
import java.io.UncheckedIOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.List;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

/** Refusals, replacement and clean failure: what is (not) left on disk afterwards. */
class ConverterFailureTest {
    @TempDir
    Path tmp;

    private static final Path TINY = TestData.model("opt-tiny-postln-bin");

    private ConvertOptions options(Path output, FfnLayout layout, boolean force) {
        return new ConvertOptions(TINY, output, null, layout, force);
    }

    private List<String> entries(Path dir) throws IOException {
        try (var s = Files.list(dir)) {
            return s.map(p -> p.getFileName().toString()).sorted().toList();
        }
    }

    private static void assertOneLine(Exception e, String expected) {
        assertTrue(e.getMessage().contains(expected), e.getMessage());
        assertEquals(1, e.getMessage().lines().count(), e.getMessage());
    }

    @Test
    void refusesAnExistingOutputWithoutForceAndReplacesItWithForce() throws IOException {
        Path out = tmp.resolve("bundle");
        Converter.convert(options(out, FfnLayout.SPLIT, false), Progress.none());
        LlmflashException e = assertThrows(LlmflashException.class,
                () -> Converter.convert(options(out, FfnLayout.BUNDLED, false), Progress.none()));
        assertOneLine(e, "already exists: use --force to replace it");
        try (Bundle b = Bundle.open(out)) {
            assertEquals(FfnLayout.SPLIT, b.ffn().layout(), "the old bundle is untouched");
        }
        Converter.convert(options(out, FfnLayout.BUNDLED, true), Progress.none());
        try (Bundle b = Bundle.open(out)) {
            b.verify();
            assertEquals(FfnLayout.BUNDLED, b.ffn().layout(), "replaced");
        }
        assertEquals(List.of("bundle"), entries(tmp), "no old copy or temporary folder is left");
    }

    @Test
    void forceReplacesOnlyBundlesOrEmptyFolders() throws IOException {
        Path out = Files.createDirectory(tmp.resolve("mine"));
        Files.writeString(out.resolve("notes.txt"), "precious");
        LlmflashException e = assertThrows(LlmflashException.class,
                () -> Converter.convert(options(out, FfnLayout.BUNDLED, true), Progress.none()));
        assertOneLine(e, "is not an llmflash bundle, so even --force will not replace it");
        assertEquals("precious", Files.readString(out.resolve("notes.txt")));

        Path empty = Files.createDirectory(tmp.resolve("empty"));
        Converter.convert(options(empty, FfnLayout.BUNDLED, true), Progress.none());
        assertTrue(Bundle.looksLikeBundle(empty));
    }

    /** A progress that fails at the first report of {@code stage}, as a crash or a full disk would. */
    private static Progress failingAt(Progress.Stage stage, RuntimeException failure) {
        return (s, done, total) -> {
            if (s == stage) {
                throw failure;
            }
        };
    }

    @ParameterizedTest
    @EnumSource(Progress.Stage.class)
    void aFailureAtAnyStageLeavesNothing(Progress.Stage stage) throws IOException {
        Path out = tmp.resolve("bundle");
        IllegalStateException boom = new IllegalStateException("boom");
        IllegalStateException e = assertThrows(IllegalStateException.class,
                () -> Converter.convert(options(out, FfnLayout.BUNDLED, false), failingAt(stage, boom)));
        assertEquals(boom, e);
        assertEquals(List.of(), entries(tmp), "neither the output nor a temporary folder is left");
    }

    @Test
    void aFailureWhileReplacingKeepsTheOldBundle() throws IOException {
        Path out = tmp.resolve("bundle");
        Converter.convert(options(out, FfnLayout.SPLIT, false), Progress.none());
        assertThrows(IllegalStateException.class, () -> Converter.convert(options(out, FfnLayout.BUNDLED, true),
                failingAt(Progress.Stage.FFN, new IllegalStateException("boom"))));
        assertEquals(List.of("bundle"), entries(tmp));
        try (Bundle b = Bundle.open(out)) {
            b.verify();
            assertEquals(FfnLayout.SPLIT, b.ffn().layout());
        }
    }

    @Test
    void aFullDiskIsReportedWithTheSpaceNeeded() throws IOException {
        Path out = tmp.resolve("bundle");
        Progress full = failingAt(Progress.Stage.FFN, new UncheckedIOException(new IOException("No space left on device")));
        LlmflashException e = assertThrows(LlmflashException.class,
                () -> Converter.convert(options(out, FfnLayout.BUNDLED, false), full));
        assertOneLine(e, "ran out of disk space writing the bundle in " + tmp);
        assertTrue(e.getMessage().matches(".*it needs \\d+ bytes .* and \\d+ bytes .* were free.*"), e.getMessage());
        assertEquals(List.of(), entries(tmp));
    }

    @Test
    void refusesEarlyWhenTheDiskIsTooSmall() {
        LlmflashException e = assertThrows(LlmflashException.class,
                () -> Converter.checkFreeSpace(tmp, 2_500_000_000L, 1_000_000L));
        assertOneLine(e, "not enough disk space for the bundle in " + tmp + ": it needs 2500000000 bytes (2.50 GB)"
                + " but only 1000000 bytes (1.0 MB) are free");
        Converter.checkFreeSpace(tmp, 10, 10);
        assertTrue(Converter.isNoSpace(new LlmflashException("x", new IOException("No space left on device"))));
        assertFalse(Converter.isNoSpace(new IOException("Permission denied")));
    }

    @Test
    void refusesWhatIsNotAHuggingFaceFolder() throws IOException {
        Path out = tmp.resolve("bundle");
        Path empty = Files.createDirectory(tmp.resolve("empty"));
        FormatException e = assertThrows(FormatException.class, () -> Converter.convert(
                new ConvertOptions(empty, out, null, FfnLayout.BUNDLED, false), Progress.none()));
        assertOneLine(e, "is not a Hugging Face model folder (it has no config.json)");

        e = assertThrows(FormatException.class, () -> Converter.convert(
                new ConvertOptions(tmp.resolve("nowhere"), out, null, FfnLayout.BUNDLED, false), Progress.none()));
        assertOneLine(e, "does not exist");

        Path bundle = tmp.resolve("a-bundle");
        Converter.convert(options(bundle, FfnLayout.BUNDLED, false), Progress.none());
        e = assertThrows(FormatException.class, () -> Converter.convert(
                new ConvertOptions(bundle, out, null, FfnLayout.BUNDLED, false), Progress.none()));
        assertOneLine(e, "is already an llmflash bundle");

        Path llama = Files.createDirectory(tmp.resolve("llama"));
        Files.writeString(llama.resolve("config.json"), "{\"model_type\": \"llama\", \"hidden_size\": 64}");
        e = assertThrows(FormatException.class, () -> Converter.convert(
                new ConvertOptions(llama, out, null, FfnLayout.BUNDLED, false), Progress.none()));
        assertOneLine(e, "model_type 'llama' is not supported");
        assertFalse(Files.exists(out));
    }

    @Test
    void refusesBadOutputs() throws IOException {
        LlmflashException e = assertThrows(LlmflashException.class, () -> Converter.convert(
                options(tmp.resolve("missing/bundle"), FfnLayout.BUNDLED, false), Progress.none()));
        assertOneLine(e, "does not exist (create it first");

        Path file = Files.writeString(tmp.resolve("file"), "x");
        e = assertThrows(LlmflashException.class, () -> Converter.convert(
                options(file.resolve("bundle"), FfnLayout.BUNDLED, false), Progress.none()));
        assertOneLine(e, "is a file, not a folder");

        e = assertThrows(LlmflashException.class, () -> new ConvertOptions(TINY, TINY, null, FfnLayout.BUNDLED, true));
        assertOneLine(e, "is the input folder");
        e = assertThrows(LlmflashException.class,
                () -> new ConvertOptions(TINY, TINY.getParent(), null, FfnLayout.BUNDLED, true));
        assertOneLine(e, "contains the input folder");
        e = assertThrows(LlmflashException.class, () -> new ConvertOptions(TINY, tmp.resolve("b"),
                dev.llmflash.formats.tensor.DType.I8, FfnLayout.BUNDLED, false));
        assertOneLine(e, "a bundle cannot be I8");
    }

    @Test
    void theShutdownHookDeletesTheStagingFolderAndStopsTheConversion() throws IOException {
        Path out = tmp.resolve("bundle");
        try (StagingDirectory s = StagingDirectory.create(out)) {
            Files.writeString(s.dir().resolve("resident.safetensors"), "partial");
            assertTrue(s.dir().getFileName().toString().startsWith(".bundle.tmp-"));
            s.onShutdown();
            assertTrue(s.cancelled());
            assertFalse(Files.exists(s.dir()));
            LlmflashException e = assertThrows(LlmflashException.class, s::checkNotCancelled);
            assertOneLine(e, "interrupted");
        }
        assertEquals(List.of(), entries(tmp));
    }
}
