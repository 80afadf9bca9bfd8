package dev.llmflash.formats.safetensors;

import com.fasterxml.jackson.core.JsonProcessingException;
import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.node.ArrayNode;
import com.fasterxml.jackson.databind.node.ObjectNode;
import dev.llmflash.formats.LlmflashException;
import dev.llmflash.formats.tensor.DType;
import dev.llmflash.formats.tensor.Tensor;

import java.io.IOException;
import java.lang.foreign.MemorySegment;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.channels.ClosedChannelException;
import java.nio.channels.FileChannel;
import java.nio.channels.WritableByteChannel;
import java.nio.charset.StandardCharsets;
import java.nio.file.AtomicMoveNotSupportedException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.StandardCopyOption;
import java.nio.file.StandardOpenOption;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.HashSet;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Objects;
import java.util.Set;
import java.util.concurrent.ThreadLocalRandom;

/**
 * Writes a {@code .safetensors} file (layout: see {@link SafetensorsFile}) from an ordered list of
 * tensors plus string metadata:
 * <pre>{@code
 * new SafetensorsWriter()
 *         .metadata("format", "pt")
 *         .add("w", DType.F16, new long[] {3, 4}, segment)
 *         .add("b", DType.F32, new long[] {4}, bytes)
 *         .write(path);
 * }</pre>
 * The header lists {@code __metadata__} first (omitted when empty), then the tensors in the order they
 * were added; their data follows in the same order, back to back, so the data buffer has no holes. The
 * header is padded with spaces to make {@code 8 + N} a multiple of 8, as Hugging Face's writer does, so
 * the data buffer starts 8-byte aligned in the file.
 *
 * <p>Data is streamed to disk, never assembled in the heap: a tensor may be any {@link MemorySegment}
 * (a mapped slice of another file, native memory, or an array) of any size, or a {@link Content}
 * callback that produces its bytes piece by piece. The file is written to a temporary file in the
 * target's folder, forced to disk, then atomically renamed over the target: on any failure the target is
 * untouched (an older file there survives) and the temporary file is deleted.
 *
 * <p>Ownership: the writer keeps references to the segments, arrays and callbacks it is given (no copy);
 * they must stay valid and unchanged until {@link #write} returns. A writer is a single-threaded builder;
 * it may write the same content several times.
 */
public final class SafetensorsWriter {

    /** Produces one tensor's bytes, in order, for a writer that streams them to disk. */
    @FunctionalInterface
    public interface Content {
        /**
         * Writes exactly the tensor's {@code numel * dtype.bytes()} little-endian bytes to {@code out}
         * (fewer or more is an error the writer reports). {@code out} is valid only during the call.
         */
        void writeTo(WritableByteChannel out) throws IOException;
    }

    /** Largest piece handed to the channel at once: keeps {@code asByteBuffer} views under 2 GiB. */
    private static final long CHUNK_BYTES = 64L << 20;
    private static final ObjectMapper JSON = new ObjectMapper();

    private record Item(String name, DType dtype, long[] shape, long bytes, Content content) {
    }

    private final List<Item> items = new ArrayList<>();
    private final Set<String> names = new HashSet<>();
    private final Map<String, String> metadata = new LinkedHashMap<>();

    /**
     * Adds a tensor whose bytes are {@code data} (exactly numel &times; dtype size, little-endian,
     * row-major), e.g. a slice of a mapped file.
     *
     * @throws IllegalArgumentException if the name is taken or reserved, a dimension is negative, or the
     *         segment's size does not match the shape
     */
    public SafetensorsWriter add(String name, DType dtype, long[] shape, MemorySegment data) {
        long bytes = checkedBytes(name, dtype, shape);
        if (data.byteSize() != bytes) {
            throw new IllegalArgumentException("tensor '" + name + "': " + dtype + Arrays.toString(shape) + " needs "
                    + bytes + " bytes but the segment has " + data.byteSize());
        }
        return addItem(name, dtype, shape, bytes, out -> writeSegment(data, out));
    }

    /** Adds a tensor whose bytes are {@code data}; see {@link #add(String, DType, long[], MemorySegment)}. */
    public SafetensorsWriter add(String name, DType dtype, long[] shape, byte[] data) {
        return add(name, dtype, shape, MemorySegment.ofArray(data));
    }

    /** Adds a copy of {@code tensor} (name, dtype, shape and bytes), e.g. from another checkpoint. */
    public SafetensorsWriter add(Tensor tensor) {
        return add(tensor.name(), tensor.dtype(), tensor.shape(), tensor.data());
    }

    /**
     * Adds a tensor whose bytes {@code content} produces when the file is written, for tensors too large
     * to hold in memory (synthetic or converted checkpoints).
     */
    public SafetensorsWriter add(String name, DType dtype, long[] shape, Content content) {
        Objects.requireNonNull(content, "content");
        return addItem(name, dtype, shape, checkedBytes(name, dtype, shape), content);
    }

    /** Sets a {@code __metadata__} entry (e.g. "format" = "pt", as PyTorch-saved files have). */
    public SafetensorsWriter metadata(String key, String value) {
        metadata.put(Objects.requireNonNull(key, "key"), Objects.requireNonNull(value, "value"));
        return this;
    }

    /** Sets every entry of {@code entries} as metadata, in its iteration order. */
    public SafetensorsWriter metadata(Map<String, String> entries) {
        entries.forEach(this::metadata);
        return this;
    }

    private SafetensorsWriter addItem(String name, DType dtype, long[] shape, long bytes, Content content) {
        if (!names.add(name)) {
            throw new IllegalArgumentException("tensor '" + name + "' was already added");
        }
        items.add(new Item(name, dtype, shape.clone(), bytes, content));
        return this;
    }

    private static long checkedBytes(String name, DType dtype, long[] shape) {
        Objects.requireNonNull(name, "name");
        Objects.requireNonNull(dtype, "dtype");
        if (name.equals(SafetensorsFile.METADATA_KEY)) {
            throw new IllegalArgumentException("'" + name + "' is reserved for metadata and cannot name a tensor");
        }
        for (long d : shape) {
            if (d < 0) {
                throw new IllegalArgumentException("tensor '" + name + "' has a negative dimension: "
                        + Arrays.toString(shape));
            }
        }
        return Math.multiplyExact(Tensor.numel(shape), dtype.bytes());
    }

    /**
     * The header as it will be written: N bytes of UTF-8 JSON padded with spaces so that 8 + N is a
     * multiple of 8 (the 8-byte length prefix not included).
     */
    public byte[] header() {
        ObjectNode root = JSON.createObjectNode();
        if (!metadata.isEmpty()) {
            ObjectNode meta = root.putObject(SafetensorsFile.METADATA_KEY);
            metadata.forEach(meta::put);
        }
        long offset = 0;
        for (Item item : items) {
            ObjectNode entry = root.putObject(item.name);
            entry.put("dtype", item.dtype.name());
            ArrayNode shape = entry.putArray("shape");
            for (long d : item.shape) {
                shape.add(d);
            }
            long end = Math.addExact(offset, item.bytes);
            entry.putArray("data_offsets").add(offset).add(end);
            offset = end;
        }
        byte[] json;
        try {
            json = JSON.writeValueAsBytes(root);
        } catch (JsonProcessingException e) {
            throw new IllegalStateException("cannot serialize a tree of strings and numbers", e);
        }
        int padded = Math.toIntExact((json.length + 7L) / 8 * 8);
        if (padded > SafetensorsFile.MAX_HEADER_BYTES) {
            throw new IllegalStateException("the header would be " + padded + " bytes, more than the "
                    + SafetensorsFile.MAX_HEADER_BYTES + " a reader accepts: too many tensors or too much metadata");
        }
        byte[] out = Arrays.copyOf(json, padded);
        Arrays.fill(out, json.length, padded, (byte) ' ');
        return out;
    }

    /**
     * Writes the file to {@code path} atomically (temporary file in the same folder, then rename),
     * replacing any file there.
     *
     * @throws LlmflashException if the file cannot be written (disk full, no permission, a content
     *         callback failed or produced the wrong number of bytes); {@code path} is then unchanged
     */
    public void write(Path path) {
        Path target = path.toAbsolutePath();
        Path dir = target.getParent();
        Path tmp = dir.resolve("." + target.getFileName() + "."
                + Long.toHexString(ThreadLocalRandom.current().nextLong()) + ".tmp");
        boolean moved = false;
        try {
            byte[] header = header();
            try (FileChannel ch = FileChannel.open(tmp, StandardOpenOption.CREATE_NEW, StandardOpenOption.WRITE)) {
                ByteBuffer prefix = ByteBuffer.allocate(SafetensorsFile.HEADER_LENGTH_BYTES)
                        .order(ByteOrder.LITTLE_ENDIAN).putLong(header.length).flip();
                writeFully(ch, prefix);
                writeFully(ch, ByteBuffer.wrap(header));
                for (Item item : items) {
                    writeContent(item, ch);
                }
                // Durable before visible: a crash must not leave a renamed but unwritten file.
                ch.force(true);
            }
            try {
                Files.move(tmp, target, StandardCopyOption.ATOMIC_MOVE, StandardCopyOption.REPLACE_EXISTING);
            } catch (AtomicMoveNotSupportedException e) {
                Files.move(tmp, target, StandardCopyOption.REPLACE_EXISTING);
            }
            moved = true;
        } catch (IOException e) {
            throw new LlmflashException("cannot write " + target + ": " + e
                    + " (check free disk space and write permission on " + dir + ")", e);
        } finally {
            if (!moved) {
                try {
                    Files.deleteIfExists(tmp);
                } catch (IOException ignored) {
                    // Best effort: the write already failed, and that error is the one to report.
                }
            }
        }
    }

    private static void writeContent(Item item, FileChannel ch) throws IOException {
        CountingChannel counted = new CountingChannel(ch, item);
        try {
            item.content.writeTo(counted);
        } finally {
            counted.open = false;
        }
        if (counted.written != item.bytes) {
            throw new IOException("tensor '" + item.name + "' (" + item.dtype + Arrays.toString(item.shape)
                    + ") needs " + item.bytes + " bytes but its content wrote " + counted.written);
        }
    }

    private static void writeSegment(MemorySegment data, WritableByteChannel out) throws IOException {
        for (long off = 0; off < data.byteSize(); off += CHUNK_BYTES) {
            long len = Math.min(CHUNK_BYTES, data.byteSize() - off);
            writeFully(out, data.asSlice(off, len).asByteBuffer());
        }
    }

    private static void writeFully(WritableByteChannel ch, ByteBuffer bb) throws IOException {
        while (bb.hasRemaining()) {
            ch.write(bb);
        }
    }

    /** Lets a {@link Content} append to the file, and only its own number of bytes, and only during its call. */
    private static final class CountingChannel implements WritableByteChannel {
        private final FileChannel target;
        private final Item item;
        private long written;
        private boolean open = true;

        CountingChannel(FileChannel target, Item item) {
            this.target = target;
            this.item = item;
        }

        @Override
        public int write(ByteBuffer src) throws IOException {
            if (!open) {
                throw new ClosedChannelException();
            }
            if (src.remaining() > item.bytes - written) {
                throw new IOException("tensor '" + item.name + "' (" + item.dtype + Arrays.toString(item.shape)
                        + ") needs " + item.bytes + " bytes but its content writes more");
            }
            int n = target.write(src);
            written += n;
            return n;
        }

        @Override
        public boolean isOpen() {
            return open;
        }

        @Override
        public void close() {
            open = false;
        }
    }
}
