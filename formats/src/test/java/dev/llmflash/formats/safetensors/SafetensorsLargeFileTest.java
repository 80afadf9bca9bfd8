package dev.llmflash.formats.safetensors;

import dev.llmflash.formats.tensor.DType;
import dev.llmflash.formats.tensor.Tensor;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

import java.io.IOException;
import java.io.RandomAccessFile;
import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.lang.management.ManagementFactory;
import java.lang.management.MemoryMXBean;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.file.Files;
import java.nio.file.Path;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

/** Files past 2 GiB are mapped, not copied: proven on a sparse 3 GiB file that costs no disk writes. */
class SafetensorsLargeFileTest {

    private static final ValueLayout.OfFloat F32_LE = ValueLayout.JAVA_FLOAT_UNALIGNED.withOrder(ByteOrder.LITTLE_ENDIAN);

    @TempDir
    Path dir;

    @Test
    void sparseThreeGibFileIsMappedWithoutAHeapCopy() throws IOException {
        long big = 3L << 30;
        float[] tail = {1.5f, -2.25f, 1e30f, -7f};
        // The writer computes the header; the data is laid down by hand so that the 3 GiB stay a hole.
        byte[] header = new SafetensorsWriter()
                .add("zeros", DType.U8, new long[] {big}, out -> { })
                .add("tail", DType.F32, new long[] {tail.length}, out -> { })
                .header();
        long dataStart = 8 + header.length;
        long size = dataStart + big + 4L * tail.length;
        Path file = dir.resolve("sparse.safetensors");
        try (RandomAccessFile raf = new RandomAccessFile(file.toFile(), "rw")) {
            raf.write(ByteBuffer.allocate(8).order(ByteOrder.LITTLE_ENDIAN).putLong(header.length).array());
            raf.write(header);
            raf.setLength(size);
            ByteBuffer t = ByteBuffer.allocate(4 * tail.length).order(ByteOrder.LITTLE_ENDIAN);
            for (float v : tail) {
                t.putFloat(v);
            }
            raf.seek(dataStart + big);
            raf.write(t.array());
        }
        assertEquals(size, Files.size(file));

        MemoryMXBean memory = ManagementFactory.getMemoryMXBean();
        long heapBefore = memory.getHeapMemoryUsage().getUsed();
        try (SafetensorsFile st = SafetensorsFile.open(file)) {
            long heapGrowth = memory.getHeapMemoryUsage().getUsed() - heapBefore;
            assertTrue(heapGrowth < 256L << 20, "opening grew the heap by " + heapGrowth + " bytes");

            Tensor zeros = st.tensor("zeros");
            assertEquals(big, zeros.data().byteSize());
            assertTrue(zeros.data().isMapped(), "a slice of the file mapping");
            assertTrue(zeros.data().heapBase().isEmpty(), "not backed by a Java array");
            assertEquals(0f, zeros.getFloat(big - 1));

            Tensor t = st.tensor("tail");
            assertTrue(t.data().isMapped());
            // The tensor's data sits past 3 GiB into the mapping: beyond any int offset.
            assertTrue(t.data().address() - zeros.data().address() == big);
            for (int i = 0; i < tail.length; i++) {
                assertEquals(tail[i], t.getFloat(i), "tail[" + i + "]");
            }
            assertEquals(-7f, t.getFloat(t.numel() - 1));
        } finally {
            Files.delete(file);
        }
    }

    @Test
    void writerStreamsSegmentsLargerThanOneChunk() throws IOException {
        long n = 40L << 20; // 160 MiB of F32: several of the writer's 64 MiB chunks
        Path file = dir.resolve("chunks.safetensors");
        try (Arena arena = Arena.ofConfined()) {
            MemorySegment src = arena.allocate(n * 4, 4);
            for (long i = 0; i < n; i++) {
                src.setAtIndex(F32_LE, i, (float) i);
            }
            new SafetensorsWriter().add("ramp", DType.F32, new long[] {n / 1024, 1024}, src).write(file);
            try (SafetensorsFile st = SafetensorsFile.open(file)) {
                Tensor ramp = st.tensor("ramp");
                assertEquals(-1, src.mismatch(ramp.data()));
                assertEquals((float) (n - 1), ramp.getFloat(n - 1));
                assertEquals((float) (64L << 20) / 4, ramp.getFloat((64L << 20) / 4), "first float of chunk 2");
            }
        } finally {
            Files.deleteIfExists(file);
        }
    }
}
