package dev.llmflash.formats.safetensors;

import com.fasterxml.jackson.core.JacksonException;
import com.fasterxml.jackson.core.JsonLocation;
import com.fasterxml.jackson.core.JsonParser;
import com.fasterxml.jackson.core.StreamReadFeature;
import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.json.JsonMapper;
import dev.llmflash.formats.FormatException;
import dev.llmflash.formats.checkpoint.Checkpoint;
import dev.llmflash.formats.tensor.DType;
import dev.llmflash.formats.tensor.Tensor;

import java.io.IOException;
import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.CharBuffer;
import java.nio.channels.FileChannel;
import java.nio.channels.FileChannel.MapMode;
import java.nio.charset.CharsetDecoder;
import java.nio.charset.CoderResult;
import java.nio.charset.CodingErrorAction;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.NoSuchFileException;
import java.nio.file.Path;
import java.nio.file.StandardOpenOption;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.Collections;
import java.util.Comparator;
import java.util.Iterator;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.SortedSet;
import java.util.TreeMap;
import java.util.TreeSet;
import java.util.concurrent.atomic.AtomicBoolean;

/**
 * One {@code .safetensors} file, memory-mapped read-only; its tensors are slices of the mapping (no
 * copy into the Java heap, no 2 GiB limit).
 *
 * <h2>Layout</h2>
 * As specified by Hugging Face (https://github.com/huggingface/safetensors, README "Format"):
 * <pre>
 * bytes [0, 8)         N: unsigned 64-bit little-endian integer, the length of the header in bytes
 * bytes [8, 8+N)       the header: N bytes of UTF-8 JSON, one object:
 *                        { "name": {"dtype": "F16", "shape": [3, 4], "data_offsets": [begin, end]},
 *                          ...,
 *                          "__metadata__": {"key": "string value", ...} }   (optional, strings only)
 *                      writers pad it with trailing spaces (0x20) so that 8+N is a multiple of 8
 * bytes [8+N, size)    the data buffer, D = size - (8+N) bytes: each tensor's elements, row-major
 *                      (C order), little-endian, at data bytes [begin, end) - offsets are relative
 *                      to the start of the data buffer (file byte 8+N), not to the start of the file
 * </pre>
 *
 * <h2>Validation at open</h2>
 * Everything the header says is checked against the file before any tensor is handed out, with
 * overflow-checked arithmetic; any failure is a {@link FormatException} naming the file, the problem
 * and a fix:
 * <ul>
 *   <li>the file has at least 8 bytes; 0 &lt; N &le; {@value #MAX_HEADER_BYTES} (the reference
 *       implementation caps headers near 100 MB too); 8+N &le; file size;</li>
 *   <li>the header is valid UTF-8, a single JSON object with no duplicate keys;</li>
 *   <li>each tensor has a known {@code dtype} (case-sensitive, as the spec spells them), a
 *       {@code shape} of non-negative integers, {@code data_offsets} of two non-negative integers with
 *       begin &le; end, and end - begin == numel &times; dtype size;</li>
 *   <li>each tensor ends within the data buffer;</li>
 *   <li>the tensors tile the data buffer exactly: no overlaps, no holes, no unindexed bytes at the end.
 *       The spec forbids holes ("the byte buffer needs to be entirely indexed, and cannot contain
 *       holes"), and the reference loader rejects such files, so we do too rather than read a file HF
 *       itself would refuse.</li>
 * </ul>
 *
 * <h2>Ownership, threads, closing</h2>
 * The object owns the mapping (through its own shared {@link Arena}); the {@link Tensor}s it returns
 * are views that stay valid until {@link #close()}, after which touching their data throws
 * {@link IllegalStateException}. After open the object is immutable: any number of threads may read
 * tensors concurrently. {@code close()} must not race with readers; calling it again does nothing.
 * The file must not be modified or truncated while it is open (a mapped file shrinking under a reader
 * makes the JVM fault).
 */
public final class SafetensorsFile implements Checkpoint {

    /** Bytes of the little-endian u64 header length that starts the file. */
    public static final int HEADER_LENGTH_BYTES = 8;
    /** Largest header we accept (100 MiB): guards against reading a corrupt length as a huge JSON. */
    public static final long MAX_HEADER_BYTES = 100L * 1024 * 1024;
    /** The reserved header key holding the string-to-string metadata. */
    public static final String METADATA_KEY = "__metadata__";

    private static final ValueLayout.OfLong U64_LE = ValueLayout.JAVA_LONG_UNALIGNED.withOrder(ByteOrder.LITTLE_ENDIAN);
    private static final String FIX_REDOWNLOAD = "the file is corrupt or was cut short; re-download or re-convert it";
    private static final String FIX_NOT_SAFETENSORS = "this is not a safetensors file, or its first 8 bytes are "
            + "corrupt; re-download it";
    private static final String FIX_WRITER = "the file was not written by a conforming safetensors writer; "
            + "re-download or re-convert the checkpoint";

    /** Strict JSON: a duplicate key would make "which tensor is it?" ambiguous. */
    private static final ObjectMapper JSON = JsonMapper.builder()
            .enable(StreamReadFeature.STRICT_DUPLICATE_DETECTION)
            .build();

    private final Path file;
    private final Arena arena;
    private final MemorySegment mapping;
    private final long headerLength;
    private final Map<String, Tensor> tensors;
    private final SortedSet<String> names;
    private final Map<String, String> metadata;
    private final AtomicBoolean closed = new AtomicBoolean();

    private SafetensorsFile(Path file, Arena arena, MemorySegment mapping, long headerLength,
                            Map<String, Tensor> tensors, Map<String, String> metadata) {
        this.file = file;
        this.arena = arena;
        this.mapping = mapping;
        this.headerLength = headerLength;
        this.tensors = tensors;
        this.names = Collections.unmodifiableSortedSet(new TreeSet<>(tensors.keySet()));
        this.metadata = metadata;
    }

    /**
     * Maps {@code file} read-only and validates its header and layout (see the class comment).
     *
     * @throws FormatException if the file cannot be read or is not a valid safetensors file
     */
    public static SafetensorsFile open(Path file) {
        Arena arena = Arena.ofShared();
        try {
            return parse(file, arena, map(file, arena));
        } catch (RuntimeException | Error e) {
            arena.close();
            throw e;
        }
    }

    private static MemorySegment map(Path file, Arena arena) {
        if (Files.isDirectory(file)) {
            throw new FormatException(file, "is a folder, not a safetensors file",
                    "name the .safetensors file inside it");
        }
        try (FileChannel ch = FileChannel.open(file, StandardOpenOption.READ)) {
            long size = ch.size();
            if (size < HEADER_LENGTH_BYTES) {
                throw new FormatException(file, "is " + size + " bytes long, shorter than the "
                        + HEADER_LENGTH_BYTES + "-byte header length that starts every safetensors file",
                        FIX_REDOWNLOAD);
            }
            // The mapping outlives the channel: it is unmapped when the arena closes.
            return ch.map(MapMode.READ_ONLY, 0, size, arena);
        } catch (NoSuchFileException e) {
            throw new FormatException(file, "does not exist", "check the path", e);
        } catch (IOException e) {
            throw new FormatException(file, "cannot be read: " + e, "check that it is a readable file", e);
        }
    }

    private static SafetensorsFile parse(Path file, Arena arena, MemorySegment mapping) {
        long fileSize = mapping.byteSize();
        long n = mapping.get(U64_LE, 0);
        // n is unsigned in the file: a negative long is a length above 2^63, also "too large".
        if (n == 0) {
            throw new FormatException(file, "has a header length of 0: a safetensors header is at least '{}'",
                    FIX_NOT_SAFETENSORS);
        }
        if (n < 0 || n > MAX_HEADER_BYTES) {
            throw new FormatException(file, "declares a header of " + Long.toUnsignedString(n)
                    + " bytes, more than the " + MAX_HEADER_BYTES + " bytes allowed",
                    FIX_NOT_SAFETENSORS);
        }
        long dataStart = HEADER_LENGTH_BYTES + n;
        if (dataStart > fileSize) {
            throw new FormatException(file, "declares a header of " + n + " bytes but the file has only "
                    + fileSize + " bytes (8 + " + n + " > " + fileSize + "): the file is truncated",
                    FIX_REDOWNLOAD);
        }
        long dataBytes = fileSize - dataStart;

        JsonNode root = readHeaderJson(file, mapping.asSlice(HEADER_LENGTH_BYTES, n));
        Map<String, String> metadata = Map.of();
        List<Entry> entries = new ArrayList<>();
        for (Iterator<Map.Entry<String, JsonNode>> it = root.fields(); it.hasNext(); ) {
            Map.Entry<String, JsonNode> field = it.next();
            if (field.getKey().equals(METADATA_KEY)) {
                metadata = readMetadata(file, field.getValue());
            } else {
                entries.add(readEntry(file, field.getKey(), field.getValue()));
            }
        }
        checkLayout(file, entries, dataBytes);

        MemorySegment data = mapping.asSlice(dataStart, dataBytes);
        Map<String, Tensor> tensors = new TreeMap<>();
        for (Entry e : entries) {
            tensors.put(e.name, new Tensor(e.name, e.dtype, e.shape, data.asSlice(e.begin, e.end - e.begin)));
        }
        return new SafetensorsFile(file, arena, mapping, n, Collections.unmodifiableMap(tensors), metadata);
    }

    private static JsonNode readHeaderJson(Path file, MemorySegment header) {
        ByteBuffer in = ByteBuffer.wrap(header.toArray(ValueLayout.JAVA_BYTE));
        // The spec says UTF-8; a strict decoder refuses what a lenient one would silently mangle.
        CharsetDecoder utf8 = StandardCharsets.UTF_8.newDecoder()
                .onMalformedInput(CodingErrorAction.REPORT)
                .onUnmappableCharacter(CodingErrorAction.REPORT);
        CharBuffer text = CharBuffer.allocate(in.remaining()); // UTF-8 never has more chars than bytes
        CoderResult result = utf8.decode(in, text, true);
        if (!result.isError()) {
            result = utf8.flush(text);
        }
        if (result.isError()) {
            throw new FormatException(file, "has a header that is not valid UTF-8 (bad byte at file offset "
                    + (HEADER_LENGTH_BYTES + in.position()) + ")", FIX_REDOWNLOAD);
        }
        text.flip();
        JsonNode root;
        try (JsonParser parser = JSON.createParser(text.toString())) {
            root = JSON.readTree(parser);
            // Only the padding may follow the object; anything else means a corrupt or spliced header.
            if (root != null && parser.nextToken() != null) {
                throw new FormatException(file, "has content after the header's JSON object"
                        + locationOf(parser.currentTokenLocation()), FIX_REDOWNLOAD);
            }
        } catch (JacksonException e) {
            throw new FormatException(file, "has a header that is not valid JSON: "
                    + e.getOriginalMessage().lines().findFirst().orElse("") + locationOf(e.getLocation()),
                    FIX_REDOWNLOAD, e);
        } catch (IOException e) {
            throw new IllegalStateException("reading JSON from a String cannot fail with I/O", e);
        }
        if (root == null || !root.isObject()) {
            throw new FormatException(file, "has a header that is not a JSON object", FIX_REDOWNLOAD);
        }
        return root;
    }

    private static String locationOf(JsonLocation where) {
        return where == null ? "" : " at header character " + where.getCharOffset();
    }

    private static Map<String, String> readMetadata(Path file, JsonNode node) {
        if (!node.isObject()) {
            throw new FormatException(file, "has a '" + METADATA_KEY + "' entry that is not a JSON object",
                    FIX_WRITER);
        }
        Map<String, String> out = new LinkedHashMap<>();
        for (Iterator<Map.Entry<String, JsonNode>> it = node.fields(); it.hasNext(); ) {
            Map.Entry<String, JsonNode> e = it.next();
            if (!e.getValue().isTextual()) {
                throw new FormatException(file, "has metadata value '" + e.getKey()
                        + "' that is not a string (the spec allows only string values)", FIX_WRITER);
            }
            out.put(e.getKey(), e.getValue().textValue());
        }
        return Collections.unmodifiableMap(out);
    }

    /** One tensor's header entry, validated on its own (not yet against the others). */
    private record Entry(String name, DType dtype, long[] shape, long begin, long end) {
    }

    private static Entry readEntry(Path file, String name, JsonNode node) {
        String what = "tensor '" + name + "'";
        if (!node.isObject()) {
            throw new FormatException(file, what + " has a header entry that is not a JSON object", FIX_WRITER);
        }
        JsonNode dtypeNode = node.get("dtype");
        if (dtypeNode == null || !dtypeNode.isTextual()) {
            throw new FormatException(file, what + " has no 'dtype' string", FIX_WRITER);
        }
        String dtypeName = dtypeNode.textValue();
        DType dtype = DType.fromSafetensors(dtypeName);
        // Case-sensitive, as the reference implementation is: "f16" is not a safetensors dtype.
        if (dtype == null || !dtype.name().equals(dtypeName)) {
            throw new FormatException(file, what + " has unknown dtype '" + dtypeName + "' (known: "
                    + Arrays.toString(DType.values()) + ")",
                    "convert the checkpoint to one of the known dtypes, e.g. F16, BF16 or F32");
        }
        long[] shape = readNonNegativeLongs(file, what, "shape", node.get("shape"), -1);
        long[] offsets = readNonNegativeLongs(file, what, "data_offsets", node.get("data_offsets"), 2);
        long begin = offsets[0];
        long end = offsets[1];
        if (begin > end) {
            throw new FormatException(file, what + " has data_offsets [" + begin + ", " + end
                    + "] whose begin is after its end", FIX_WRITER);
        }
        long needed;
        try {
            needed = Math.multiplyExact(Tensor.numel(shape), dtype.bytes());
        } catch (ArithmeticException e) {
            throw new FormatException(file, what + " has shape " + Arrays.toString(shape)
                    + " whose byte size overflows 64 bits", FIX_REDOWNLOAD, e);
        }
        if (end - begin != needed) {
            throw new FormatException(file, what + " has a dtype/shape mismatch: " + dtypeName
                    + Arrays.toString(shape).replace(" ", "") + " needs " + needed + " bytes but data_offsets ["
                    + begin + ", " + end + "] span " + (end - begin), FIX_WRITER);
        }
        return new Entry(name, dtype, shape, begin, end);
    }

    /** A JSON array of non-negative integers that fit a long; {@code count} = required length, or -1. */
    private static long[] readNonNegativeLongs(Path file, String what, String key, JsonNode node, int count) {
        String expected = count < 0 ? "an array of non-negative integers"
                : "an array of " + count + " non-negative integers";
        if (node == null || !node.isArray() || (count >= 0 && node.size() != count)) {
            throw new FormatException(file, what + " has '" + key + "' " + (node == null ? "missing" : node)
                    + ", expected " + expected, FIX_WRITER);
        }
        long[] out = new long[node.size()];
        for (int i = 0; i < out.length; i++) {
            JsonNode v = node.get(i);
            if (!v.isIntegralNumber() || !v.canConvertToLong() || v.longValue() < 0) {
                throw new FormatException(file, what + " has '" + key + "' " + node + ", expected " + expected,
                        FIX_WRITER);
            }
            out[i] = v.longValue();
        }
        return out;
    }

    /**
     * Checks the entries against the data buffer: each within it, and together tiling it exactly (the
     * spec: "the byte buffer needs to be entirely indexed, and cannot contain holes").
     */
    private static void checkLayout(Path file, List<Entry> entries, long dataBytes) {
        for (Entry e : entries) {
            if (e.end > dataBytes) {
                throw new FormatException(file, "tensor '" + e.name + "' ends at byte " + e.end
                        + " of the data but the file has only " + dataBytes + " data bytes (" + (e.end - dataBytes)
                        + " missing): the file is truncated", FIX_REDOWNLOAD);
            }
        }
        List<Entry> byOffset = new ArrayList<>(entries);
        byOffset.sort(Comparator.comparingLong(Entry::begin).thenComparingLong(Entry::end));
        long covered = 0;
        Entry previous = null;
        for (Entry e : byOffset) {
            if (e.begin < covered) {
                throw new FormatException(file, "tensors '" + previous.name + "' (data bytes [" + previous.begin
                        + ", " + previous.end + ")) and '" + e.name + "' (data bytes [" + e.begin + ", " + e.end
                        + ")) overlap", FIX_WRITER);
            }
            if (e.begin > covered) {
                throw new FormatException(file, "data bytes [" + covered + ", " + e.begin + ") belong to no tensor"
                        + " (a hole " + (previous == null ? "before the first tensor '" + e.name + "'"
                        : "between tensors '" + previous.name + "' and '" + e.name + "'")
                        + "; the spec forbids holes)", FIX_WRITER);
            }
            covered = e.end;
            previous = e;
        }
        if (covered != dataBytes) {
            throw new FormatException(file, "data bytes [" + covered + ", " + dataBytes
                    + ") at the end of the file belong to no tensor (the spec forbids unindexed bytes)",
                    FIX_WRITER);
        }
    }

    @Override
    public Path location() {
        return file;
    }

    @Override
    public SortedSet<String> tensorNames() {
        return names;
    }

    @Override
    public boolean contains(String name) {
        return tensors.containsKey(name);
    }

    /**
     * The named tensor: a view of the mapping, valid until {@link #close()}.
     *
     * @throws FormatException if the file has no such tensor
     */
    @Override
    public Tensor tensor(String name) {
        Tensor t = tensors.get(name);
        if (t == null) {
            throw new FormatException(file, "has no tensor '" + name + "'",
                    "the checkpoint is incomplete or of another architecture");
        }
        return t;
    }

    /** The header's {@value #METADATA_KEY} entries (empty if it has none), in file order; unmodifiable. */
    public Map<String, String> metadata() {
        return metadata;
    }

    /** N, the header's length in bytes; the data buffer starts at file byte {@code 8 + N}. */
    public long headerLength() {
        return headerLength;
    }

    /**
     * The absolute byte offset in the file of the named tensor's first byte: {@code 8 + N + begin}
     * (the llmflash bundle manifest records it, and {@code Bundle.open} compares the two).
     *
     * @throws FormatException if the file has no such tensor
     */
    public long fileOffset(String name) {
        // Every tensor is a slice of the one mapping, so the address difference is the file offset.
        return tensor(name).data().address() - mapping.address();
    }

    /** Unmaps the file; the tensors handed out become invalid. Idempotent; must not race with readers. */
    @Override
    public void close() {
        if (closed.compareAndSet(false, true)) {
            arena.close();
        }
    }

    @Override
    public String toString() {
        return "SafetensorsFile[" + file + ", " + tensors.size() + " tensors]";
    }
}
