package dev.llmflash.converter;

import dev.llmflash.formats.FormatException;
import dev.llmflash.formats.bundle.Bundle;
import dev.llmflash.formats.bundle.BundleManifest;
import dev.llmflash.formats.bundle.FfnLayout;
import dev.llmflash.formats.testing.TestData;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

import java.io.IOException;
import java.io.RandomAccessFile;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

/** A converted bundle, damaged one way at a time: open() or verify() must name what is wrong. */
class BundleCorruptionTest {
    @TempDir
    Path tmp;
    Path bundle;

    @BeforeEach
    void convert() {
        bundle = tmp.resolve("bundle");
        Converter.convert(new ConvertOptions(TestData.model("opt-mini"), bundle, null, FfnLayout.BUNDLED, false),
                Progress.none());
    }

    private static void flipByte(Path file, long offset) throws IOException {
        try (RandomAccessFile f = new RandomAccessFile(file.toFile(), "rw")) {
            f.seek(offset);
            int b = f.read();
            f.seek(offset);
            f.write(b ^ 0x40);
        }
    }

    private static void truncate(Path file, long by) throws IOException {
        try (RandomAccessFile f = new RandomAccessFile(file.toFile(), "rw")) {
            f.setLength(f.length() - by);
        }
    }

    private static FormatException verifyFails(Path bundle) {
        try (Bundle b = Bundle.open(bundle)) {
            return assertThrows(FormatException.class, b::verify);
        }
    }

    private static void assertMessage(FormatException e, Path file, String expected) {
        assertTrue(e.getMessage().startsWith(file.toString() + ": "), e.getMessage());
        assertTrue(e.getMessage().contains(expected), e.getMessage());
        assertEquals(1, e.getMessage().lines().count());
    }

    @Test
    void aFlippedByteInAnFfnBlockNamesTheLayer() throws IOException {
        long offset;
        try (Bundle b = Bundle.open(bundle)) {
            b.verify(); // intact before
            offset = b.ffn().blockOffset(3) + b.ffn().downOffset(517) + 11;
        }
        flipByte(bundle.resolve("ffn.bin"), offset);
        FormatException e = verifyFails(bundle);
        assertMessage(e, bundle.resolve("ffn.bin"), "layer 3's FFN block fails its checksum (crc32c ");
        assertTrue(e.getMessage().endsWith("): the file is corrupt (re-convert the model)"), e.getMessage());
    }

    @Test
    void aFlippedByteInAResidentTensorNamesTheTensor() throws IOException {
        String name = "model.decoder.layers.2.self_attn.v_proj.weight";
        long offset;
        try (Bundle b = Bundle.open(bundle)) {
            offset = b.manifest().resident().tensors().stream().filter(t -> t.name().equals(name)).findFirst()
                    .orElseThrow().offset() + 100;
        }
        flipByte(bundle.resolve("resident.safetensors"), offset);
        assertMessage(verifyFails(bundle), bundle.resolve("resident.safetensors"),
                "tensor '" + name + "' fails its checksum");
    }

    @Test
    void aFlippedByteInATokenizerFileNamesTheFile() throws IOException {
        flipByte(bundle.resolve("merges.txt"), 20);
        assertMessage(verifyFails(bundle), bundle.resolve("merges.txt"), "fails its checksum");
    }

    @Test
    void aTruncatedFfnFileIsRefusedOnOpen() throws IOException {
        truncate(bundle.resolve("ffn.bin"), 4096);
        FormatException e = assertThrows(FormatException.class, () -> Bundle.open(bundle));
        assertMessage(e, bundle.resolve("ffn.bin"), "is truncated");
    }

    @Test
    void aTruncatedResidentFileIsRefusedOnOpen() throws IOException {
        truncate(bundle.resolve("resident.safetensors"), 1);
        FormatException e = assertThrows(FormatException.class, () -> Bundle.open(bundle));
        assertMessage(e, bundle.resolve("resident.safetensors"), "is truncated");
    }

    @Test
    void extraBytesAndMissingFilesAreRefusedOnOpen() throws IOException {
        Files.write(bundle.resolve("vocab.json"), new byte[] {' '}, java.nio.file.StandardOpenOption.APPEND);
        assertMessage(assertThrows(FormatException.class, () -> Bundle.open(bundle)), bundle.resolve("vocab.json"),
                "has 1 extra bytes");
        Files.delete(bundle.resolve("vocab.json"));
        assertMessage(assertThrows(FormatException.class, () -> Bundle.open(bundle)), bundle.resolve("vocab.json"),
                "is missing");
    }

    @Test
    void aNewerManifestVersionIsRefusedWithTheDocumentedMessage() throws IOException {
        Path manifest = bundle.resolve("manifest.json");
        String json = Files.readString(manifest, StandardCharsets.UTF_8);
        Files.writeString(manifest, json.replaceFirst("\"version\" : 1", "\"version\" : 3"));
        FormatException e = assertThrows(FormatException.class, () -> Bundle.open(bundle));
        assertEquals(manifest + ": bundle format version 3 is newer than this llmflash reads (2)"
                + " (upgrade llmflash or re-convert with this version)", e.getMessage());
    }

    @Test
    void aResidentTableThatDisagreesWithTheFileIsRefused() throws IOException {
        // Swap two same-sized tensors' names in the manifest: sizes still add up, offsets do not.
        Path manifest = bundle.resolve("manifest.json");
        BundleManifest m = BundleManifest.read(manifest);
        var tensors = new java.util.ArrayList<>(m.resident().tensors());
        var a = tensors.get(tensors.size() - 1);
        var b = tensors.get(tensors.size() - 2);
        tensors.set(tensors.size() - 1, new BundleManifest.ResidentTensor(a.name(), a.dtype(), a.shape(), b.offset(),
                a.length(), a.crc32c()));
        tensors.set(tensors.size() - 2, new BundleManifest.ResidentTensor(b.name(), b.dtype(), b.shape(), a.offset(),
                b.length(), b.crc32c()));
        BundleManifest edited = new BundleManifest(m.createdBy(), m.createdAt(), m.config(), m.dtype(), m.source(),
                BundleManifest.fingerprint(m.config(), m.dtype(), m.ffn().layout(), tensors, m.ffn().blocks()),
                new BundleManifest.Resident(m.resident().file(), m.resident().size(), tensors), m.ffn(), m.tokenizer());
        edited.write(manifest);
        FormatException e = assertThrows(FormatException.class, () -> Bundle.open(bundle));
        assertMessage(e, bundle.resolve("resident.safetensors"), "but manifest.json says");
    }

    @Test
    void aFolderWithoutManifestIsNotABundle() throws IOException {
        Files.delete(bundle.resolve("manifest.json"));
        assertEquals(false, Bundle.looksLikeBundle(bundle));
        FormatException e = assertThrows(FormatException.class, () -> Bundle.open(bundle));
        assertMessage(e, bundle, "is not an llmflash bundle (it has no manifest.json)");
    }
}
