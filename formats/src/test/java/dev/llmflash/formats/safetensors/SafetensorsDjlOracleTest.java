package dev.llmflash.formats.safetensors;

import ai.djl.ndarray.NDArray;
import ai.djl.ndarray.NDList;
import ai.djl.ndarray.types.DataType;
import ai.djl.util.passthrough.PassthroughNDManager;
import dev.llmflash.formats.tensor.DType;
import dev.llmflash.formats.tensor.Tensor;
import dev.llmflash.formats.testing.TestData;
import org.junit.jupiter.api.Test;

import java.io.IOException;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.List;
import java.util.Map;
import java.util.TreeMap;
import java.util.TreeSet;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * Independent oracle: DJL's own safetensors decoder ({@code NDList.decode}, which reads the whole file
 * into the heap and parses the header with Gson; no memory mapping, no shared code) must see the same
 * tensors as our mapped reader: names, dtypes, shapes, and every byte. DJL needs no native engine for
 * this: its {@link PassthroughNDManager} wraps each tensor's bytes in a {@code PassthroughNDArray}
 * without interpreting them.
 */
class SafetensorsDjlOracleTest {

    private static final ValueLayout.OfShort I16_LE = ValueLayout.JAVA_SHORT_UNALIGNED.withOrder(ByteOrder.LITTLE_ENDIAN);

    private static DType fromDjl(DataType t) {
        return switch (t) {
            case FLOAT16 -> DType.F16;
            case BFLOAT16 -> DType.BF16;
            case FLOAT32 -> DType.F32;
            case FLOAT64 -> DType.F64;
            case INT8 -> DType.I8;
            case UINT8 -> DType.U8;
            case INT32 -> DType.I32;
            case INT64 -> DType.I64;
            case BOOLEAN -> DType.BOOL;
            default -> throw new AssertionError("DJL type with no safetensors name: " + t);
        };
    }

    /** Decodes {@code file} with DJL and with {@link SafetensorsFile}; asserts they agree; returns the dtypes seen. */
    private static TreeSet<DType> assertAgreesWithDjl(Path file) throws IOException {
        TreeSet<DType> dtypes = new TreeSet<>();
        Map<String, NDArray> oracle = new TreeMap<>();
        try (NDList list = NDList.decode(PassthroughNDManager.INSTANCE, Files.readAllBytes(file));
             SafetensorsFile st = SafetensorsFile.open(file)) {
            for (NDArray a : list) {
                oracle.put(a.getName(), a);
            }
            assertEquals(list.size(), oracle.size(), "DJL saw unique names in " + file);
            assertEquals(new TreeSet<>(oracle.keySet()), st.tensorNames(), file.toString());
            long totalBytes = 0;
            for (Map.Entry<String, NDArray> e : oracle.entrySet()) {
                NDArray expected = e.getValue();
                Tensor actual = st.tensor(e.getKey());
                assertEquals(fromDjl(expected.getDataType()), actual.dtype(), e.getKey());
                assertArrayEquals(expected.getShape().getShape(), actual.shape(), e.getKey());
                // PassthroughNDArray hands back the buffer DJL decoded: a window of its heap copy of the file.
                ByteBuffer djlBytes = expected.toByteBuffer().duplicate();
                assertEquals(djlBytes.remaining(), actual.data().byteSize(), e.getKey());
                long mismatch = MemorySegment.ofBuffer(djlBytes).mismatch(actual.data());
                assertEquals(-1, mismatch, e.getKey() + " differs from DJL at byte " + mismatch);
                totalBytes += actual.data().byteSize();
                dtypes.add(actual.dtype());
            }
            // Every byte is accounted for: prefix, header and tensors make the whole file.
            assertEquals(Files.size(file), 8 + st.headerLength() + totalBytes, file.toString());
            assertEquals("pt", st.metadata().get("format"), file.toString());
        }
        return dtypes;
    }

    @Test
    void optMiniMatchesDjlTensorForTensor() throws IOException {
        Path file = TestData.model("opt-mini").resolve("model.safetensors");
        assertEquals(new TreeSet<>(List.of(DType.F16)), assertAgreesWithDjl(file));
        try (SafetensorsFile st = SafetensorsFile.open(file)) {
            assertTrue(st.tensorNames().size() > 50, "opt-mini has ~100 tensors, saw " + st.tensorNames().size());
        }

        // A spot check in value space: DJL's bytes and our view decode to the same F16 number.
        try (NDList list = NDList.decode(PassthroughNDManager.INSTANCE, Files.readAllBytes(file));
             SafetensorsFile st = SafetensorsFile.open(file)) {
            Tensor emb = st.tensor("model.decoder.embed_tokens.weight");
            short bits = list.get(emb.name()).toByteBuffer().duplicate()
                    .order(ByteOrder.LITTLE_ENDIAN).asShortBuffer().get(12345);
            assertEquals(bits, emb.data().getAtIndex(I16_LE, 12345));
            assertEquals(Float.float16ToFloat(bits), emb.getFloat(12345));
        }
    }

    @Test
    void falconMiniShardsMatchDjl() throws IOException {
        Path dir = TestData.model("falcon-mini-relu");
        for (int i = 1; i <= 3; i++) {
            Path shard = dir.resolve("model-0000" + i + "-of-00003.safetensors");
            assertEquals(new TreeSet<>(List.of(DType.BF16)), assertAgreesWithDjl(shard), shard.toString());
        }
    }
}
