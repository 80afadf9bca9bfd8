package dev.llmflash.formats.safetensors;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import dev.llmflash.formats.LlmflashException;
import dev.llmflash.formats.tensor.DType;
import dev.llmflash.formats.tensor.Tensor;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

import java.io.ByteArrayOutputStream;
import java.io.IOException;
import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import java.util.Map;
import java.util.Random;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;
import java.util.concurrent.Future;
import java.util.stream.Stream;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

/** Writer -> reader round trips; the oracle is the bytes and values the test wrote. */
class SafetensorsRoundTripTest {

    @TempDir
    Path dir;

    private static final ValueLayout.OfFloat F32_LE = ValueLayout.JAVA_FLOAT_UNALIGNED.withOrder(ByteOrder.LITTLE_ENDIAN);
    private static final ValueLayout.OfShort I16_LE = ValueLayout.JAVA_SHORT_UNALIGNED.withOrder(ByteOrder.LITTLE_ENDIAN);

    /** A tensor as the test knows it: its declared bytes, and the float each element must read as. */
    private record Expected(String name, DType dtype, long[] shape, byte[] bytes, float[] values) {
    }

    private static List<Expected> sampleTensors() {
        Random rnd = new Random(42);
        List<Expected> out = new ArrayList<>();

        // F32: edge values (signed zero, subnormal, infinities, NaN) and random ones.
        float[] f32 = new float[3 * 5];
        float[] edges = {0f, -0f, Float.MIN_VALUE, Float.MAX_VALUE, Float.NEGATIVE_INFINITY, Float.NaN, 1.5f};
        for (int i = 0; i < f32.length; i++) {
            f32[i] = i < edges.length ? edges[i] : (float) rnd.nextGaussian();
        }
        ByteBuffer bb = ByteBuffer.allocate(f32.length * 4).order(ByteOrder.LITTLE_ENDIAN);
        for (float v : f32) {
            bb.putFloat(v);
        }
        out.add(new Expected("f32", DType.F32, new long[] {3, 5}, bb.array(), f32));

        // F16 and BF16: every 16-bit pattern class (random bits include NaNs, subnormals, infinities).
        out.add(halfs("f16", DType.F16, new long[] {2, 3, 4}, rnd));
        out.add(halfs("bf16", DType.BF16, new long[] {7, 3}, rnd));

        byte[] i8 = new byte[256];
        float[] i8v = new float[256];
        byte[] u8 = new byte[256];
        float[] u8v = new float[256];
        for (int i = 0; i < 256; i++) {
            i8[i] = (byte) (i - 128);
            i8v[i] = i - 128;
            u8[i] = (byte) i;
            u8v[i] = i;
        }
        out.add(new Expected("i8", DType.I8, new long[] {16, 16}, i8, i8v));
        out.add(new Expected("u8", DType.U8, new long[] {256}, u8, u8v));
        out.add(new Expected("empty", DType.F32, new long[] {0, 5}, new byte[0], new float[0]));
        byte[] scalar = ByteBuffer.allocate(4).order(ByteOrder.LITTLE_ENDIAN).putFloat(42.25f).array();
        out.add(new Expected("scalar", DType.F32, new long[] {}, scalar, new float[] {42.25f}));
        return out;
    }

    private static Expected halfs(String name, DType dtype, long[] shape, Random rnd) {
        int n = Math.toIntExact(Tensor.numel(shape));
        ByteBuffer bb = ByteBuffer.allocate(n * 2).order(ByteOrder.LITTLE_ENDIAN);
        float[] values = new float[n];
        for (int i = 0; i < n; i++) {
            short bits = (short) rnd.nextInt(1 << 16);
            bb.putShort(bits);
            values[i] = dtype == DType.F16 ? Float.float16ToFloat(bits)
                    : Float.intBitsToFloat((bits & 0xffff) << 16);
        }
        return new Expected(name, dtype, shape, bb.array(), values);
    }

    private static void assertSameBits(float[] expected, float[] actual, String what) {
        assertEquals(expected.length, actual.length, what);
        for (int i = 0; i < expected.length; i++) {
            assertEquals(Float.floatToRawIntBits(expected[i]), Float.floatToRawIntBits(actual[i]),
                    what + " element " + i);
        }
    }

    @Test
    void everyDtypeAndShapeRoundTripsExactly() throws IOException {
        List<Expected> tensors = sampleTensors();
        Path file = dir.resolve("all.safetensors");
        try (Arena arena = Arena.ofConfined()) {
            SafetensorsWriter w = new SafetensorsWriter().metadata("format", "pt").metadata("note", "ünïcode ✓");
            for (int i = 0; i < tensors.size(); i++) {
                Expected e = tensors.get(i);
                if (i % 2 == 0) {
                    w.add(e.name, e.dtype, e.shape, e.bytes);
                } else {
                    // Off-heap segments take the same path a mapped slice of another file would.
                    MemorySegment seg = arena.allocate(Math.max(1, e.bytes.length)).asSlice(0, e.bytes.length);
                    MemorySegment.copy(MemorySegment.ofArray(e.bytes), 0, seg, 0, e.bytes.length);
                    w.add(e.name, e.dtype, e.shape, seg);
                }
            }
            w.write(file);
        }

        try (SafetensorsFile st = SafetensorsFile.open(file)) {
            assertEquals(Map.of("format", "pt", "note", "ünïcode ✓"), st.metadata());
            assertEquals(tensors.stream().map(Expected::name).sorted().toList(), List.copyOf(st.tensorNames()));
            for (Expected e : tensors) {
                Tensor t = st.tensor(e.name);
                assertEquals(e.name, t.name());
                assertEquals(e.dtype, t.dtype());
                assertArrayEquals(e.shape, t.shape(), e.name);
                assertArrayEquals(e.bytes, t.data().toArray(ValueLayout.JAVA_BYTE), e.name);
                assertSameBits(e.values, t.toFloatArray(), e.name);
                assertTrue(t.data().isMapped(), e.name + " is a view of the mapping");
            }
            assertEquals(0, st.tensor("scalar").rank());
            assertEquals(0, st.tensor("empty").numel());
        }
    }

    @Test
    void fileLayoutIsLengthPrefixPaddedHeaderThenDataInInsertionOrder() throws IOException {
        List<Expected> tensors = sampleTensors();
        SafetensorsWriter w = new SafetensorsWriter().metadata("format", "pt");
        ByteArrayOutputStream data = new ByteArrayOutputStream();
        for (Expected e : tensors) {
            w.add(e.name, e.dtype, e.shape, e.bytes);
            data.writeBytes(e.bytes);
        }
        Path file = dir.resolve("layout.safetensors");
        w.write(file);

        byte[] all = Files.readAllBytes(file);
        long n = ByteBuffer.wrap(all, 0, 8).order(ByteOrder.LITTLE_ENDIAN).getLong();
        assertEquals(0, (8 + n) % 8, "8 + N is a multiple of 8");
        String header = new String(all, 8, (int) n, StandardCharsets.UTF_8);
        String json = header.stripTrailing();
        assertTrue(json.endsWith("}"));
        assertEquals(" ".repeat(header.length() - json.length()), header.substring(json.length()), "space padding");
        assertTrue(header.length() - json.length() < 8, "no more padding than needed");
        assertArrayEquals(data.toByteArray(), Arrays.copyOfRange(all, (int) (8 + n), all.length),
                "data buffer = tensors back to back in insertion order");

        JsonNode root = new ObjectMapper().readTree(json);
        List<String> keys = new ArrayList<>();
        root.fieldNames().forEachRemaining(keys::add);
        List<String> expectedKeys = new ArrayList<>(List.of(SafetensorsFile.METADATA_KEY));
        tensors.forEach(e -> expectedKeys.add(e.name));
        assertEquals(expectedKeys, keys);
        long offset = 0;
        for (Expected e : tensors) {
            JsonNode entry = root.get(e.name);
            assertEquals(e.dtype.name(), entry.get("dtype").asText());
            assertEquals(offset, entry.get("data_offsets").get(0).asLong());
            offset += e.bytes.length;
            assertEquals(offset, entry.get("data_offsets").get(1).asLong());
        }
        try (SafetensorsFile st = SafetensorsFile.open(file)) {
            assertEquals(n, st.headerLength());
        }
    }

    @Test
    void streamedContentIsWrittenInPieces() {
        Path file = dir.resolve("streamed.safetensors");
        int rows = 300;
        int cols = 1000;
        new SafetensorsWriter().add("rows", DType.F32, new long[] {rows, cols}, out -> {
            ByteBuffer row = ByteBuffer.allocate(cols * 4).order(ByteOrder.LITTLE_ENDIAN);
            for (int r = 0; r < rows; r++) {
                row.clear();
                for (int c = 0; c < cols; c++) {
                    row.putFloat(r * 10_000f + c);
                }
                row.flip();
                while (row.hasRemaining()) {
                    out.write(row);
                }
            }
        }).write(file);
        try (SafetensorsFile st = SafetensorsFile.open(file)) {
            Tensor t = st.tensor("rows");
            assertEquals(0f, t.getFloat(0));
            assertEquals(123 * 10_000f, t.getFloat(123L * cols));
            assertEquals(299 * 10_000f + 999, t.getFloat((long) rows * cols - 1));
            assertEquals(57 * 10_000f + 321, t.data().getAtIndex(F32_LE, 57L * cols + 321));
        }
    }

    @Test
    void failedWriteLeavesTheOldFileAndNoTemporaryFile() throws IOException {
        Path file = dir.resolve("model.safetensors");
        new SafetensorsWriter().add("old", DType.U8, new long[] {1}, new byte[] {7}).write(file);
        byte[] before = Files.readAllBytes(file);

        SafetensorsWriter shortContent = new SafetensorsWriter()
                .add("a", DType.U8, new long[] {2}, new byte[] {1, 2})
                .add("b", DType.F32, new long[] {4}, out -> out.write(ByteBuffer.allocate(12)));
        LlmflashException tooFew = assertThrows(LlmflashException.class, () -> shortContent.write(file));
        assertTrue(tooFew.getMessage().contains("tensor 'b'"), tooFew.getMessage());
        assertTrue(tooFew.getMessage().contains("needs 16 bytes but its content wrote 12"), tooFew.getMessage());

        SafetensorsWriter longContent = new SafetensorsWriter()
                .add("c", DType.F16, new long[] {2}, out -> out.write(ByteBuffer.allocate(6)));
        LlmflashException tooMany = assertThrows(LlmflashException.class, () -> longContent.write(file));
        assertTrue(tooMany.getMessage().contains("tensor 'c'"), tooMany.getMessage());

        SafetensorsWriter failing = new SafetensorsWriter()
                .add("d", DType.U8, new long[] {1}, out -> {
                    throw new IllegalStateException("generator broke");
                });
        assertThrows(IllegalStateException.class, () -> failing.write(file));

        assertArrayEquals(before, Files.readAllBytes(file), "the old file is untouched");
        try (Stream<Path> files = Files.list(dir)) {
            assertEquals(List.of(file), files.toList(), "no temporary file is left behind");
        }
    }

    @Test
    void writerRefusesInconsistentTensors() {
        SafetensorsWriter w = new SafetensorsWriter().add("x", DType.U8, new long[] {1}, new byte[1]);
        assertThrows(IllegalArgumentException.class, () -> w.add("x", DType.U8, new long[] {1}, new byte[1]));
        assertThrows(IllegalArgumentException.class, () -> w.add("y", DType.F16, new long[] {3}, new byte[5]));
        assertThrows(IllegalArgumentException.class, () -> w.add("z", DType.U8, new long[] {-1}, new byte[0]));
        assertThrows(IllegalArgumentException.class,
                () -> w.add(SafetensorsFile.METADATA_KEY, DType.U8, new long[] {1}, new byte[1]));
        assertThrows(ArithmeticException.class,
                () -> w.add("huge", DType.F32, new long[] {1L << 62, 4}, out -> { }));
    }

    @Test
    void concurrentReadersSeeTheSameValues() throws Exception {
        List<Expected> tensors = sampleTensors();
        SafetensorsWriter w = new SafetensorsWriter();
        tensors.forEach(e -> w.add(e.name, e.dtype, e.shape, e.bytes));
        Path file = dir.resolve("shared.safetensors");
        w.write(file);
        ExecutorService pool = Executors.newFixedThreadPool(4);
        try (SafetensorsFile st = SafetensorsFile.open(file)) {
            List<Future<Boolean>> results = new ArrayList<>();
            for (int thread = 0; thread < 8; thread++) {
                results.add(pool.submit(() -> {
                    for (int round = 0; round < 50; round++) {
                        for (Expected e : tensors) {
                            if (!Arrays.equals(e.bytes, st.tensor(e.name).data().toArray(ValueLayout.JAVA_BYTE))) {
                                return false;
                            }
                        }
                    }
                    return true;
                }));
            }
            for (Future<Boolean> r : results) {
                assertTrue(r.get());
            }
        } finally {
            pool.shutdownNow();
        }
    }

    @Test
    void tensorsAreInvalidAfterCloseAndCloseIsIdempotent() {
        Path file = dir.resolve("c.safetensors");
        new SafetensorsWriter().add("x", DType.F16, new long[] {2}, new byte[] {0, 0x3c, 0, 0x40}).write(file);
        SafetensorsFile st = SafetensorsFile.open(file);
        Tensor x = st.tensor("x");
        assertEquals(1.0f, x.getFloat(0));
        assertEquals(2.0f, x.getFloat(1));
        assertEquals((short) 0x3c00, x.data().getAtIndex(I16_LE, 0));
        st.close();
        st.close();
        assertThrows(IllegalStateException.class, () -> x.getFloat(0));
        assertFalse(st.metadata().containsKey("format"));
    }
}
