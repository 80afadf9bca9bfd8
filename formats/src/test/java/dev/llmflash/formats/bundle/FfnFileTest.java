package dev.llmflash.formats.bundle;

import dev.llmflash.formats.FormatException;
import dev.llmflash.formats.tensor.DType;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.EnumSource;

import java.io.IOException;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.Arrays;
import java.util.List;
import java.util.zip.CRC32C;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * Writes ffn.bin files from a synthetic source whose every element is a known function of (layer,
 * neuron, position, up/down), reads them back through {@link FfnFile}'s offsets, and checks the header's
 * validation one corruption at a time.
 */
class FfnFileTest {
    private static final ValueLayout.OfShort S16 = ValueLayout.JAVA_SHORT_UNALIGNED.withOrder(ByteOrder.LITTLE_ENDIAN);
    private static final ValueLayout.OfInt S32 = ValueLayout.JAVA_INT_UNALIGNED.withOrder(ByteOrder.LITTLE_ENDIAN);

    @TempDir
    Path tmp;

    /** The oracle: element j of neuron i's up row (down = false) or down column (down = true) in layer L. */
    static int element(int layer, int neuron, int j, boolean down) {
        int h = layer * 0x9E3779B1 + neuron * 0x85EBCA6B + j * 0xC2B2AE35 + (down ? 0x27D4EB2F : 0);
        return h ^ (h >>> 15);
    }

    /** Fills the writer's requests from {@link #element}. */
    record Synthetic(int layer, int d, DType dtype) implements FfnFileWriter.NeuronSource {
        @Override
        public void upRows(int first, int count, MemorySegment dst) {
            fill(first, count, dst, false);
        }

        @Override
        public void downColumns(int first, int count, MemorySegment dst) {
            fill(first, count, dst, true);
        }

        private void fill(int first, int count, MemorySegment dst, boolean down) {
            assertEquals((long) count * d * dtype.bytes(), dst.byteSize());
            for (int k = 0; k < count; k++) {
                for (int j = 0; j < d; j++) {
                    long at = (long) k * d + j;
                    int v = element(layer, first + k, j, down);
                    if (dtype.bytes() == 2) {
                        dst.setAtIndex(S16, at, (short) v);
                    } else {
                        dst.setAtIndex(S32, at, v);
                    }
                }
            }
        }
    }

    static List<BundleManifest.Block> write(Path file, FfnGeometry g) throws IOException {
        try (FfnFileWriter w = FfnFileWriter.create(file, g)) {
            for (int layer = 0; layer < g.layers(); layer++) {
                BundleManifest.Block b = w.writeLayer(new Synthetic(layer, g.dModel(), g.dtype()));
                assertEquals(layer, b.layer());
            }
            return w.finish();
        }
    }

    @ParameterizedTest
    @EnumSource(FfnLayout.class)
    void writesEveryNeuronWhereTheReaderLooks(FfnLayout layout) throws IOException {
        // d = 40 F16: bundle stride 192 (32 bytes of padding per bundle), split padding 8000 -> 8192,
        // blocks padded to 20480.
        checkRoundTrip(FfnGeometry.of(layout, DType.F16, 3, 40, 100));
    }

    @ParameterizedTest
    @EnumSource(FfnLayout.class)
    void writesLayersInSeveralChunks(FfnLayout layout) throws IOException {
        // 1100 neurons of 8 KiB (bundled) / 4 KiB (split): more than one 4 MiB chunk per layer.
        FfnGeometry g = FfnGeometry.of(layout, DType.F32, 1, 1024, 1100);
        try (FfnFileWriter w = FfnFileWriter.create(tmp.resolve("probe.bin"), g)) {
            assertTrue(w.chunkNeurons() < g.dFfn(), "the test must exercise chunking");
        }
        checkRoundTrip(g);
    }

    private void checkRoundTrip(FfnGeometry g) throws IOException {
        Path file = tmp.resolve("ffn-" + g.layout() + "-" + g.dModel() + ".bin");
        List<BundleManifest.Block> blocks = write(file, g);
        assertEquals(g.fileSize(), Files.size(file));
        BundleManifest.Ffn manifest = BundleManifest.Ffn.of("ffn.bin", g, "up.{layer}", "down.{layer}", blocks);
        try (FfnFile ffn = FfnFile.open(file, manifest)) {
            assertEquals(g, ffn.geometry());
            assertEquals(g.layout(), ffn.layout());
            assertEquals(g.dtype(), ffn.dtype());
            assertEquals(g.layers(), ffn.layers());
            assertEquals(g.dModel(), ffn.dModel());
            assertEquals(g.dFfn(), ffn.dFfn());
            assertEquals(4096, ffn.alignment());
            long es = g.dtype().bytes();
            for (int layer = 0; layer < g.layers(); layer++) {
                MemorySegment block = ffn.block(layer);
                assertEquals(g.blockLength(), block.byteSize());
                assertEquals(0, ffn.blockOffset(layer) % 4096);
                CRC32C crc = new CRC32C();
                crc.update(block.asByteBuffer());
                assertEquals(blocks.get(layer).crc32c(), (int) crc.getValue(), "block CRC of layer " + layer);
                byte[] used = new byte[Math.toIntExact(g.blockLength())];
                for (int i = 0; i < g.dFfn(); i++) {
                    for (int j = 0; j < g.dModel(); j++) {
                        long up = ffn.upOffset(i) + j * es;
                        long down = ffn.downOffset(i) + j * es;
                        assertEquals(stored(element(layer, i, j, false), es), read(block, up, es), "up");
                        assertEquals(stored(element(layer, i, j, true), es), read(block, down, es), "down");
                    }
                    Arrays.fill(used, (int) ffn.upOffset(i), (int) (ffn.upOffset(i) + g.rowBytes()), (byte) 1);
                    Arrays.fill(used, (int) ffn.downOffset(i), (int) (ffn.downOffset(i) + g.rowBytes()), (byte) 1);
                }
                for (int b = 0; b < used.length; b++) {
                    if (used[b] == 0) {
                        assertEquals(0, block.get(ValueLayout.JAVA_BYTE, b), "padding byte " + b + " of layer " + layer);
                    }
                }
            }
        }
    }

    /** What an element of {@code es} bytes keeps of the oracle's 32 bits (as a sign-extended int). */
    private static int stored(int element, long es) {
        return es == 2 ? (short) element : element;
    }

    private static int read(MemorySegment block, long offset, long es) {
        return es == 2 ? block.get(S16, offset) : block.get(S32, offset);
    }

    // ---------------------------------------------------------------------------------------------
    // Validation

    private Path valid() throws IOException {
        Path file = tmp.resolve("valid.bin");
        if (!Files.exists(file)) {
            write(file, FfnGeometry.of(FfnLayout.BUNDLED, DType.F16, 2, 40, 100));
        }
        return file;
    }

    private Path mutated(String name, java.util.function.Consumer<ByteBuffer> change) throws IOException {
        ByteBuffer bytes = ByteBuffer.wrap(Files.readAllBytes(valid())).order(ByteOrder.LITTLE_ENDIAN);
        change.accept(bytes);
        Path file = tmp.resolve(name);
        Files.write(file, Arrays.copyOf(bytes.array(), bytes.limit()));
        return file;
    }

    /** Rewrites the header CRC after a deliberate change, so the change itself is what gets caught. */
    private static void fixCrc(ByteBuffer header) {
        CRC32C crc = new CRC32C();
        crc.update(header.array(), 0, FfnFile.OFF_CRC);
        header.putInt(FfnFile.OFF_CRC, (int) crc.getValue());
    }

    private static void assertRefused(Path file, String expected) {
        FormatException e = assertThrows(FormatException.class, () -> FfnFile.open(file).close());
        assertTrue(e.getMessage().contains(expected), e.getMessage());
        assertTrue(e.getMessage().startsWith(file.toString()), e.getMessage());
        assertEquals(1, e.getMessage().lines().count());
    }

    @Test
    void refusesBadMagic() throws IOException {
        assertRefused(mutated("magic.bin", b -> b.put(3, (byte) 'X')), "magic");
    }

    @Test
    void refusesNewerVersionWithAClearMessage() throws IOException {
        Path file = mutated("v3.bin", b -> {
            b.putInt(FfnFile.OFF_VERSION, 3);
            fixCrc(b);
        });
        assertRefused(file, "version 3, newer than this llmflash reads (2)");
    }

    @Test
    void floatFilesStayVersionOneAndQuantizedOnesAreVersionTwo() throws IOException {
        assertEquals(1, ByteBuffer.wrap(Files.readAllBytes(valid())).order(ByteOrder.LITTLE_ENDIAN)
                .getInt(FfnFile.OFF_VERSION), "an unquantized ffn.bin is what older readers read");
        Path q4 = tmp.resolve("q4.bin");
        FfnGeometry g = FfnGeometry.of(FfnLayout.BUNDLED, DType.Q4_0, 2, 64, 48);
        writeQuantized(q4, g);
        ByteBuffer header = ByteBuffer.wrap(Files.readAllBytes(q4)).order(ByteOrder.LITTLE_ENDIAN);
        assertEquals(2, header.getInt(FfnFile.OFF_VERSION));
        assertEquals(4, header.getInt(FfnFile.OFF_DTYPE));
        try (FfnFile f = FfnFile.open(q4)) {
            assertEquals(g, f.geometry());
            assertEquals(FfnGeometry.bundleStride(64, DType.Q4_0, 4096), f.stride());
        }
        // A reader of version 1 (every llmflash before quantization) refuses it by the version rule.
        try (java.lang.foreign.Arena a = java.lang.foreign.Arena.ofConfined()) {
            MemorySegment m = a.allocate(FfnFile.HEADER_BYTES);
            m.copyFrom(MemorySegment.ofArray(Arrays.copyOf(header.array(), FfnFile.HEADER_BYTES)));
            FormatException e = assertThrows(FormatException.class, () -> FfnFile.parseHeader(q4, m, 1));
            assertTrue(e.getMessage().contains("version 2, newer than this llmflash reads (1)"), e.getMessage());
        }
    }

    @Test
    void refusesAQuantizedDtypeUnderVersionOne() throws IOException {
        Path q8 = tmp.resolve("q8.bin");
        writeQuantized(q8, FfnGeometry.of(FfnLayout.BUNDLED, DType.Q8_0, 2, 64, 48));
        Path file = tmp.resolve("q8-v1.bin");
        ByteBuffer b = ByteBuffer.wrap(Files.readAllBytes(q8)).order(ByteOrder.LITTLE_ENDIAN);
        b.putInt(FfnFile.OFF_VERSION, 1);
        fixCrc(b);
        Files.write(file, b.array());
        assertRefused(file, "version 1 but dtype Q8_0, which version 2 files hold");
    }

    /** A quantized ffn.bin whose rows are quantized from a known pattern. */
    private static void writeQuantized(Path file, FfnGeometry g) throws IOException {
        int d = g.dModel();
        FfnFileWriter.NeuronSource source = new FfnFileWriter.NeuronSource() {
            @Override
            public void upRows(int first, int count, MemorySegment dst) {
                fill(first, count, dst, 1);
            }

            @Override
            public void downColumns(int first, int count, MemorySegment dst) {
                fill(first, count, dst, 2);
            }

            private void fill(int first, int count, MemorySegment dst, int salt) {
                assertEquals(count * g.rowBytes(), dst.byteSize());
                float[] x = new float[count * d];
                for (int i = 0; i < x.length; i++) {
                    x[i] = (float) Math.sin(first * 31 + i * 0.37 + salt);
                }
                dev.llmflash.formats.tensor.Quant.quantize(g.dtype(), x, 0, count, d, dst, 0);
            }
        };
        try (FfnFileWriter w = FfnFileWriter.create(file, g)) {
            for (int l = 0; l < g.layers(); l++) {
                w.writeLayer(source);
            }
            w.finish();
        }
    }

    @Test
    void refusesAHeaderThatFailsItsChecksum() throws IOException {
        assertRefused(mutated("crc.bin", b -> b.putInt(FfnFile.OFF_D_MODEL, 41)), "fails its checksum");
    }

    @Test
    void refusesAnImpossibleHeaderEvenWithAValidChecksum() throws IOException {
        Path file = mutated("stride.bin", b -> {
            b.putLong(FfnFile.OFF_STRIDE, 100); // < 2 * 40 * 2
            fixCrc(b);
        });
        assertRefused(file, "impossible header");
        assertRefused(mutated("layout.bin", b -> {
            b.putInt(FfnFile.OFF_LAYOUT, 7);
            fixCrc(b);
        }), "unknown layout code 7");
        assertRefused(mutated("dtype.bin", b -> {
            b.putInt(FfnFile.OFF_DTYPE, 9);
            fixCrc(b);
        }), "unknown dtype code 9");
    }

    @Test
    void refusesNonZeroPaddingAndReserved() throws IOException {
        assertRefused(mutated("pad.bin", b -> b.put(100, (byte) 1)), "header padding at byte 100");
        assertRefused(mutated("reserved.bin", b -> {
            b.putInt(FfnFile.OFF_RESERVED, 1);
            fixCrc(b);
        }), "reserved");
    }

    @Test
    void refusesTruncatedAndOverlongFiles() throws IOException {
        assertRefused(mutated("short.bin", b -> b.limit(b.capacity() - 1)), "is truncated");
        assertRefused(mutated("tiny.bin", b -> b.limit(100)), "shorter than its 4096-byte header");
        Path longer = tmp.resolve("long.bin");
        byte[] bytes = Files.readAllBytes(valid());
        Files.write(longer, Arrays.copyOf(bytes, bytes.length + 5));
        assertRefused(longer, "has 5 extra bytes");
        assertRefused(tmp.resolve("missing.bin"), "does not exist");
    }

    @Test
    void refusesAFileThatDisagreesWithTheManifest() throws IOException {
        Path file = valid();
        FfnGeometry other = FfnGeometry.of(FfnLayout.SPLIT, DType.F16, 2, 40, 100);
        BundleManifest.Ffn m = BundleManifest.Ffn.of("ffn.bin", other, "u{layer}", "d{layer}", List.of());
        FormatException e = assertThrows(FormatException.class, () -> FfnFile.open(file, m).close());
        assertTrue(e.getMessage().contains("header says layout bundled but manifest.json says split"), e.getMessage());

        FfnGeometry moreLayers = FfnGeometry.of(FfnLayout.BUNDLED, DType.F16, 3, 40, 100);
        BundleManifest.Ffn m3 = BundleManifest.Ffn.of("ffn.bin", moreLayers, "u{layer}", "d{layer}", List.of());
        e = assertThrows(FormatException.class, () -> FfnFile.open(file, m3).close());
        assertTrue(e.getMessage().contains("header says layers 2 but manifest.json says 3"), e.getMessage());
    }

    @Test
    void writerRefusesAnExistingFileAndExtraLayers() throws IOException {
        Path file = valid();
        FfnGeometry g = FfnGeometry.of(FfnLayout.BUNDLED, DType.F16, 1, 40, 100);
        assertThrows(java.nio.file.FileAlreadyExistsException.class, () -> FfnFileWriter.create(file, g));
        try (FfnFileWriter w = FfnFileWriter.create(tmp.resolve("one.bin"), g)) {
            assertThrows(IllegalStateException.class, w::finish); // no layer written yet
            w.writeLayer(new Synthetic(0, 40, DType.F16));
            assertThrows(IllegalStateException.class, () -> w.writeLayer(new Synthetic(1, 40, DType.F16)));
            w.finish();
        }
    }

    @Test
    void blocksAreUnusableAfterClose() throws IOException {
        FfnFile ffn = FfnFile.open(valid());
        MemorySegment block = ffn.block(1);
        ffn.close();
        ffn.close(); // idempotent
        assertThrows(IllegalStateException.class, () -> block.get(ValueLayout.JAVA_BYTE, 0));
    }
}
