package dev.llmflash.converter;

import dev.llmflash.formats.FormatException;
import dev.llmflash.formats.LlmflashException;
import dev.llmflash.formats.bundle.Bundle;
import dev.llmflash.formats.bundle.BundleManifest;
import dev.llmflash.formats.bundle.FfnFile;
import dev.llmflash.formats.bundle.FfnLayout;
import dev.llmflash.formats.bundle.Quantization;
import dev.llmflash.formats.hf.HfCheckpoint;
import dev.llmflash.formats.safetensors.SafetensorsFile;
import dev.llmflash.formats.tensor.DType;
import dev.llmflash.formats.tensor.Quant;
import dev.llmflash.formats.tensor.Tensor;
import dev.llmflash.formats.testing.TestData;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.EnumSource;

import java.io.IOException;
import java.io.RandomAccessFile;
import java.lang.foreign.MemorySegment;
import java.nio.file.Files;
import java.nio.file.Path;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * {@code convert --quant q8|q4}: every stored byte is the quantization of the source's values (the
 * FFN's up rows and down columns, attention, embeddings), norms and biases keep the float dtype, the
 * resident file stays a valid safetensors file, and damage to a scale is caught by the checksums.
 */
class QuantizedBundleTest {
    @TempDir
    Path tmp;

    private Path convert(String model, Quantization q) {
        Path out = tmp.resolve(model + "-" + q.jsonName());
        Converter.convert(new ConvertOptions(TestData.model(model), out, DType.F16, FfnLayout.BUNDLED, false, q),
                Progress.none());
        return out;
    }

    /** The row of c source values quantized as the converter must have: the oracle bytes. */
    private static byte[] quantized(DType dt, float[] row) {
        MemorySegment m = MemorySegment.ofArray(new byte[(int) dt.rowBytes(row.length)]);
        Quant.quantizeRow(dt, row, 0, row.length, m, 0);
        return m.toArray(java.lang.foreign.ValueLayout.JAVA_BYTE);
    }

    /** Source row i of a matrix, through f16 (the bundle dtype the values pass on the way). */
    private static float[] sourceRow(Tensor t, int i) {
        int c = t.dim(1);
        float[] r = new float[c];
        for (int j = 0; j < c; j++) {
            r[j] = t.getFloat((long) i * c + j);
        }
        return r;
    }

    private static float[] sourceColumn(Tensor t, int j) {
        int rows = t.dim(0);
        int c = t.dim(1);
        float[] r = new float[rows];
        for (int i = 0; i < rows; i++) {
            r[i] = t.getFloat((long) i * c + j);
        }
        return r;
    }

    @ParameterizedTest
    @EnumSource(names = {"Q8", "Q4"})
    void everyStoredByteIsTheQuantizationOfTheSource(Quantization q) throws IOException {
        for (String model : new String[] {"opt-mini", "falcon-mini-relu"}) {
            Path out = convert(model, q);
            try (Bundle b = Bundle.open(out); HfCheckpoint hf = HfCheckpoint.open(TestData.model(model))) {
                b.verify();
                BundleManifest m = b.manifest();
                assertEquals(q, m.quant());
                assertEquals(2, m.version());
                assertEquals(DType.F16, m.dtype());
                assertEquals(q.matrices(), b.ffn().dtype());
                int d = m.config().hiddenSize();
                for (int layer : new int[] {0, m.config().numLayers() - 1}) {
                    Tensor up = hf.weights().tensor(m.ffn().upName(layer));
                    Tensor down = hf.weights().tensor(m.ffn().downName(layer));
                    MemorySegment block = b.ffn().block(layer);
                    long r = q.matrices().rowBytes(d);
                    for (int neuron : new int[] {0, 1, 77, m.config().ffnSize() - 1}) {
                        long at = b.ffn().upOffset(neuron);
                        assertArrayEquals(quantized(q.matrices(), sourceRow(up, neuron)),
                                block.asSlice(at, r).toArray(java.lang.foreign.ValueLayout.JAVA_BYTE),
                                model + " layer " + layer + " neuron " + neuron + " up row");
                        assertArrayEquals(quantized(q.matrices(), sourceColumn(down, neuron)),
                                block.asSlice(b.ffn().downOffset(neuron), r)
                                        .toArray(java.lang.foreign.ValueLayout.JAVA_BYTE),
                                model + " layer " + layer + " neuron " + neuron + " down column");
                    }
                }
                int quantizedMatrices = 0;
                for (BundleManifest.ResidentTensor t : m.resident().tensors()) {
                    Tensor src = hf.weights().tensor(t.name());
                    Tensor stored = b.resident().tensor(t.name());
                    assertArrayEquals(src.shape(), stored.shape(), t.name());
                    assertEquals(t.dtype(), stored.dtype(), t.name());
                    if (src.rank() == 1 || t.name().contains("embed_positions")) {
                        assertEquals(DType.F16, t.dtype(), t.name() + " keeps the float dtype");
                        continue;
                    }
                    boolean embedding = t.name().endsWith("embed_tokens.weight")
                            || t.name().endsWith("word_embeddings.weight");
                    assertEquals(embedding ? q.embeddings() : q.matrices(), t.dtype(), t.name());
                    quantizedMatrices++;
                    long r = t.dtype().rowBytes(src.dim(1));
                    for (int row : new int[] {0, src.dim(0) / 2, src.dim(0) - 1}) {
                        assertArrayEquals(quantized(t.dtype(), sourceRow(src, row)),
                                stored.data().asSlice(row * r, r).toArray(java.lang.foreign.ValueLayout.JAVA_BYTE),
                                t.name() + " row " + row);
                    }
                }
                assertTrue(quantizedMatrices >= 1 + 2 * m.config().numLayers(), "embedding and attention quantized");
            }
            // resident.safetensors stays a plain safetensors file: quantized tensors are U8 rows.
            try (SafetensorsFile st = SafetensorsFile.open(out.resolve(Bundle.RESIDENT))) {
                for (String name : st.tensorNames()) {
                    DType dt = st.tensor(name).dtype();
                    assertTrue(dt == DType.U8 || dt == DType.F16, name + " is " + dt);
                }
            }
        }
    }

    @Test
    void bundlesShrinkByTheirBitsPerWeight() throws IOException {
        long f16 = Files.size(convert("opt-mini", Quantization.NONE).resolve(Bundle.FFN));
        long q8 = Files.size(convert("opt-mini", Quantization.Q8).resolve(Bundle.FFN));
        long q4 = Files.size(convert("opt-mini", Quantization.Q4).resolve(Bundle.FFN));
        // opt-mini: d = 256, strides 1024 (f16), 576 (q8: 544 rounded to 64), 320 (q4: 288 rounded to 64)
        assertEquals(4096 + 6 * 1024 * 1024, f16);
        assertEquals(4096 + 6 * 1024 * 576, q8);
        assertEquals(4096 + 6 * 1024 * 320, q4);
        try (Bundle b = Bundle.open(tmp.resolve("opt-mini-none"))) {
            assertEquals(1, b.manifest().version(), "an unquantized bundle is still version 1");
        }
    }

    private static void flipByte(Path file, long offset) throws IOException {
        try (RandomAccessFile f = new RandomAccessFile(file.toFile(), "rw")) {
            f.seek(offset);
            int b = f.read();
            f.seek(offset);
            f.write(b ^ 0x40);
        }
    }

    @Test
    void aCorruptedScaleIsDetected() throws IOException {
        Path out = convert("opt-mini", Quantization.Q4);
        long ffnScale;
        long residentScale;
        String name = "model.decoder.layers.1.self_attn.k_proj.weight";
        try (Bundle b = Bundle.open(out)) {
            ffnScale = b.ffn().blockOffset(2) + b.ffn().downOffset(300) + 3; // the second scale's high byte
            residentScale = b.manifest().resident().tensors().stream().filter(t -> t.name().equals(name)).findFirst()
                    .orElseThrow().offset() + DType.Q4_0.rowBytes(256) * 5 + 1;
        }
        flipByte(out.resolve(Bundle.FFN), ffnScale);
        try (Bundle b = Bundle.open(out)) {
            FormatException e = assertThrows(FormatException.class, b::verify);
            assertTrue(e.getMessage().contains("layer 2's FFN block fails its checksum"), e.getMessage());
        }
        flipByte(out.resolve(Bundle.FFN), ffnScale);
        flipByte(out.resolve(Bundle.RESIDENT), residentScale);
        try (Bundle b = Bundle.open(out)) {
            FormatException e = assertThrows(FormatException.class, b::verify);
            assertTrue(e.getMessage().contains("tensor '" + name + "' fails its checksum"), e.getMessage());
        }
    }

    @Test
    void anOldReaderRefusesAQuantizedBundleByTheVersionRule() throws IOException {
        Path out = convert("opt-mini", Quantization.Q4);
        byte[] header = Files.readAllBytes(out.resolve(Bundle.FFN));
        assertEquals(2, header[8], "ffn.bin version 2");
        assertEquals(FfnFile.versionFor(DType.Q4_0), 2);
        String json = Files.readString(out.resolve(BundleManifest.FILE_NAME));
        assertTrue(json.contains("\"version\" : 2"), json.substring(0, 200));
        assertTrue(json.contains("\"quant\" : \"q4\""));
        // What an llmflash from before quantization (it reads version 1) says when opening it.
        Path manifest = out.resolve(BundleManifest.FILE_NAME);
        FormatException e = assertThrows(FormatException.class,
                () -> BundleManifest.parse(Files.readAllBytes(manifest), manifest, 1));
        assertEquals(manifest + ": bundle format version 2 is newer than this llmflash reads (1)"
                + " (upgrade llmflash or re-convert with this version)", e.getMessage());
        BundleManifest.parse(Files.readAllBytes(manifest), manifest, 2); // and this one reads it
    }

    @Test
    void aModelWhoseRowsAreNotWholeBlocksIsRefusedWithAFix() throws IOException {
        Path hf = SyntheticOpt.write(tmp.resolve("odd"), DType.F32, "decoder.", 48, 96, 2, true,
                SyntheticOpt.LmHead.NONE); // d = 48: not a multiple of 32
        LlmflashException e = assertThrows(LlmflashException.class, () -> Converter.convert(
                new ConvertOptions(hf, tmp.resolve("odd-q4"), null, FfnLayout.BUNDLED, false, Quantization.Q4),
                Progress.none()));
        assertTrue(e.getMessage().contains("hidden size 48 is not a multiple of the 32-weight block"), e.getMessage());
        assertTrue(e.getMessage().contains("convert it without --quant"), e.getMessage());
        assertFalse(Files.exists(tmp.resolve("odd-q4")));
    }
}
