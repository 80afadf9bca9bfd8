package dev.llmflash.formats.safetensors;

import dev.llmflash.formats.FormatException;
import dev.llmflash.formats.tensor.DType;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.channels.FileChannel;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.StandardOpenOption;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * Every way a safetensors file can be malformed, each built byte by byte here: the reader must refuse it
 * at open with a {@link FormatException} whose one-line message names the file and the exact problem.
 */
class SafetensorsValidationTest {

    @TempDir
    Path dir;

    /** Writes: u64 LE {@code declaredLength}, then {@code header}, then {@code dataBytes} bytes of 0x5a. */
    private Path raw(String name, long declaredLength, byte[] header, int dataBytes) throws IOException {
        ByteBuffer bb = ByteBuffer.allocate(8 + header.length + dataBytes).order(ByteOrder.LITTLE_ENDIAN);
        bb.putLong(declaredLength).put(header);
        while (bb.hasRemaining()) {
            bb.put((byte) 0x5a);
        }
        Path file = dir.resolve(name);
        Files.write(file, bb.array());
        return file;
    }

    /** A file whose header is {@code json} (length declared correctly) followed by {@code dataBytes}. */
    private Path withHeader(String name, String json, int dataBytes) throws IOException {
        byte[] header = json.getBytes(StandardCharsets.UTF_8);
        return raw(name, header.length, header, dataBytes);
    }

    /** Opens {@code file}, expecting a refusal that names it and contains every {@code fragments}. */
    private static FormatException refused(Path file, String... fragments) {
        FormatException e = assertThrows(FormatException.class, () -> SafetensorsFile.open(file).close());
        String msg = e.getMessage();
        assertTrue(msg.startsWith(file + ": "), "names the file: " + msg);
        assertEquals(file, e.file());
        for (String f : fragments) {
            assertTrue(msg.contains(f), "expected '" + f + "' in: " + msg);
        }
        assertEquals(1, msg.lines().count(), "one line: " + msg);
        return e;
    }

    @Test
    void fileShorterThanTheLengthPrefix() throws IOException {
        Path file = dir.resolve("tiny.safetensors");
        Files.write(file, new byte[] {1, 0, 0, 0, 0});
        refused(file, "is 5 bytes long, shorter than the 8-byte header length");
    }

    @Test
    void emptyFile() throws IOException {
        Path file = dir.resolve("empty.safetensors");
        Files.write(file, new byte[0]);
        refused(file, "is 0 bytes long");
    }

    @Test
    void headerLengthZero() throws IOException {
        refused(raw("zero.safetensors", 0, new byte[0], 16), "header length of 0");
    }

    @Test
    void headerLengthOverTheLimit() throws IOException {
        refused(raw("huge.safetensors", 200L << 20, "{}".getBytes(StandardCharsets.UTF_8), 0),
                "declares a header of 209715200 bytes, more than the 104857600 bytes allowed");
        // Above 2^63 the u64 is negative as a Java long: still "too large", printed unsigned.
        refused(raw("u64.safetensors", -1L, "{}".getBytes(StandardCharsets.UTF_8), 0),
                "declares a header of 18446744073709551615 bytes");
    }

    @Test
    void headerLengthLargerThanTheFile() throws IOException {
        refused(raw("short.safetensors", 1000, "{}".getBytes(StandardCharsets.UTF_8), 20),
                "declares a header of 1000 bytes but the file has only 30 bytes (8 + 1000 > 30): the file is truncated");
    }

    @Test
    void garbageJson() throws IOException {
        refused(withHeader("garbage.safetensors", "{\"x\": {\"dtype\": F16", 0), "has a header that is not valid JSON");
        refused(withHeader("trailing.safetensors", "{}  {}", 0), "has content after the header's JSON object at header character 4");
    }

    @Test
    void headerNotUtf8() throws IOException {
        byte[] header = "{\"\u00e9\":{}}".getBytes(StandardCharsets.ISO_8859_1);
        refused(raw("latin1.safetensors", header.length, header, 0), "has a header that is not valid UTF-8 (bad byte at file offset 10)");
    }

    @Test
    void headerNotAnObject() throws IOException {
        refused(withHeader("array.safetensors", "[1, 2]  ", 0), "has a header that is not a JSON object");
        refused(withHeader("blank.safetensors", "        ", 0), "has a header that is not a JSON object");
    }

    @Test
    void duplicateTensorName() throws IOException {
        String t = "{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[0,1]}";
        refused(withHeader("dup.safetensors", "{\"a\":" + t + ",\"a\":" + t + "}", 1), "Duplicate field 'a'");
    }

    @Test
    void unknownDtype() throws IOException {
        refused(withHeader("f12.safetensors", "{\"w\":{\"dtype\":\"F12\",\"shape\":[2],\"data_offsets\":[0,4]}}", 4),
                "tensor 'w' has unknown dtype 'F12'");
        // The spec's names are case-sensitive.
        refused(withHeader("lower.safetensors", "{\"w\":{\"dtype\":\"f16\",\"shape\":[2],\"data_offsets\":[0,4]}}", 4),
                "tensor 'w' has unknown dtype 'f16'");
    }

    @Test
    void shapeEntriesMustBeNonNegativeIntegers() throws IOException {
        refused(withHeader("neg.safetensors", "{\"w\":{\"dtype\":\"U8\",\"shape\":[-1,2],\"data_offsets\":[0,0]}}", 0),
                "tensor 'w' has 'shape' [-1,2], expected an array of non-negative integers");
        refused(withHeader("frac.safetensors", "{\"w\":{\"dtype\":\"U8\",\"shape\":[1.5],\"data_offsets\":[0,0]}}", 0),
                "tensor 'w' has 'shape' [1.5]");
        refused(withHeader("str.safetensors", "{\"w\":{\"dtype\":\"U8\",\"shape\":[\"3\"],\"data_offsets\":[0,3]}}", 3),
                "tensor 'w' has 'shape' [\"3\"]");
        refused(withHeader("noshape.safetensors", "{\"w\":{\"dtype\":\"U8\",\"data_offsets\":[0,3]}}", 3),
                "tensor 'w' has 'shape' missing");
    }

    @Test
    void dataOffsetsMustBeTwoOrderedNonNegativeIntegers() throws IOException {
        refused(withHeader("one.safetensors", "{\"w\":{\"dtype\":\"U8\",\"shape\":[4],\"data_offsets\":[4]}}", 4),
                "tensor 'w' has 'data_offsets' [4], expected an array of 2 non-negative integers");
        refused(withHeader("negoff.safetensors", "{\"w\":{\"dtype\":\"U8\",\"shape\":[4],\"data_offsets\":[-4,0]}}", 4),
                "tensor 'w' has 'data_offsets' [-4,0]");
        refused(withHeader("big.safetensors",
                        "{\"w\":{\"dtype\":\"U8\",\"shape\":[4],\"data_offsets\":[0,99999999999999999999]}}", 4),
                "tensor 'w' has 'data_offsets' [0,99999999999999999999]");
        refused(withHeader("reversed.safetensors", "{\"w\":{\"dtype\":\"U8\",\"shape\":[4],\"data_offsets\":[4,0]}}", 4),
                "tensor 'w' has data_offsets [4, 0] whose begin is after its end");
    }

    @Test
    void dtypeShapeMismatch() throws IOException {
        refused(withHeader("mismatch.safetensors",
                        "{\"w\":{\"dtype\":\"F16\",\"shape\":[3,4],\"data_offsets\":[0,20]}}", 20),
                "tensor 'w' has a dtype/shape mismatch: F16[3,4] needs 24 bytes but data_offsets [0, 20] span 20");
    }

    @Test
    void shapeWhoseByteSizeOverflows() throws IOException {
        refused(withHeader("overflow.safetensors",
                        "{\"w\":{\"dtype\":\"F32\",\"shape\":[4611686018427387904,4],\"data_offsets\":[0,0]}}", 0),
                "tensor 'w' has shape [4611686018427387904, 4] whose byte size overflows 64 bits");
    }

    @Test
    void offsetsPointPastTheEndOfTheData() throws IOException {
        refused(withHeader("past.safetensors",
                        "{\"a\":{\"dtype\":\"F32\",\"shape\":[4],\"data_offsets\":[0,16]},"
                                + "\"b\":{\"dtype\":\"F32\",\"shape\":[4],\"data_offsets\":[16,32]}}", 16),
                "tensor 'b' ends at byte 32 of the data but the file has only 16 data bytes (16 missing): "
                        + "the file is truncated");
    }

    @Test
    void realFileCutShort() throws IOException {
        Path file = dir.resolve("cut.safetensors");
        new SafetensorsWriter()
                .add("a", DType.F32, new long[] {8}, new byte[32])
                .add("b", DType.F16, new long[] {2, 10}, new byte[40])
                .write(file);
        try (FileChannel ch = FileChannel.open(file, StandardOpenOption.WRITE)) {
            ch.truncate(ch.size() - 10);
        }
        refused(file, "tensor 'b' ends at byte 72 of the data but the file has only 62 data bytes (10 missing): "
                + "the file is truncated", "re-download");
    }

    @Test
    void overlappingTensors() throws IOException {
        refused(withHeader("overlap.safetensors",
                        "{\"b\":{\"dtype\":\"F32\",\"shape\":[4],\"data_offsets\":[8,24]},"
                                + "\"a\":{\"dtype\":\"F32\",\"shape\":[4],\"data_offsets\":[0,16]}}", 24),
                "tensors 'a' (data bytes [0, 16)) and 'b' (data bytes [8, 24)) overlap");
    }

    @Test
    void holeBetweenTensors() throws IOException {
        refused(withHeader("hole.safetensors",
                        "{\"a\":{\"dtype\":\"U8\",\"shape\":[8],\"data_offsets\":[0,8]},"
                                + "\"b\":{\"dtype\":\"U8\",\"shape\":[8],\"data_offsets\":[16,24]}}", 24),
                "data bytes [8, 16) belong to no tensor (a hole between tensors 'a' and 'b'; the spec forbids holes)");
        refused(withHeader("lead.safetensors",
                        "{\"a\":{\"dtype\":\"U8\",\"shape\":[8],\"data_offsets\":[4,12]}}", 12),
                "data bytes [0, 4) belong to no tensor (a hole before the first tensor 'a'");
    }

    @Test
    void unindexedBytesAtTheEnd() throws IOException {
        refused(withHeader("tail.safetensors",
                        "{\"a\":{\"dtype\":\"U8\",\"shape\":[8],\"data_offsets\":[0,8]}}", 12),
                "data bytes [8, 12) at the end of the file belong to no tensor");
    }

    @Test
    void metadataValuesMustBeStrings() throws IOException {
        refused(withHeader("meta.safetensors", "{\"__metadata__\":{\"format\":\"pt\",\"step\":3}}", 0),
                "has metadata value 'step' that is not a string");
        refused(withHeader("meta2.safetensors", "{\"__metadata__\":[\"pt\"]}", 0),
                "has a '__metadata__' entry that is not a JSON object");
    }

    @Test
    void tensorEntryMustBeAnObjectWithADtype() throws IOException {
        refused(withHeader("entry.safetensors", "{\"w\":[0,4]}", 4), "tensor 'w' has a header entry that is not a JSON object");
        refused(withHeader("nodtype.safetensors", "{\"w\":{\"shape\":[4],\"data_offsets\":[0,4]}}", 4),
                "tensor 'w' has no 'dtype' string");
    }

    @Test
    void missingFileOrAFolder() {
        refused(dir.resolve("absent.safetensors"), "does not exist");
        refused(dir, "is a folder, not a safetensors file");
    }

    @Test
    void missingTensor() throws IOException {
        Path file = dir.resolve("ok.safetensors");
        new SafetensorsWriter().add("present", DType.U8, new long[] {1}, new byte[1]).write(file);
        try (SafetensorsFile st = SafetensorsFile.open(file)) {
            FormatException e = assertThrows(FormatException.class, () -> st.tensor("absent"));
            assertTrue(e.getMessage().startsWith(file + ": has no tensor 'absent'"), e.getMessage());
        }
    }

    @Test
    void minimalValidFilesOpen() throws IOException {
        // Controls for the refusals above: the smallest legal files are accepted.
        try (SafetensorsFile st = SafetensorsFile.open(withHeader("min.safetensors", "{}", 0))) {
            assertTrue(st.tensorNames().isEmpty());
        }
        try (SafetensorsFile st = SafetensorsFile.open(withHeader("one.safetensors",
                "{\"e\":{\"dtype\":\"F32\",\"shape\":[0],\"data_offsets\":[0,0]},"
                        + "\"a\":{\"dtype\":\"U8\",\"shape\":[8],\"data_offsets\":[0,8]}}   ", 8))) {
            assertEquals(0x5a, st.tensor("a").getFloat(7));
            assertEquals(0, st.tensor("e").numel());
        }
    }
}
