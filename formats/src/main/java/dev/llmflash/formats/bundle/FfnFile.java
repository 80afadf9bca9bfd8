package dev.llmflash.formats.bundle;

import dev.llmflash.formats.FormatException;
import dev.llmflash.formats.tensor.DType;

import java.io.IOException;
import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.nio.ByteOrder;
import java.nio.channels.FileChannel;
import java.nio.file.Files;
import java.nio.file.NoSuchFileException;
import java.nio.file.Path;
import java.nio.file.StandardOpenOption;
import java.util.Arrays;
import java.util.concurrent.atomic.AtomicBoolean;
import java.util.zip.CRC32C;

/**
 * A bundle's {@code ffn.bin}: every layer's FFN weights, neuron-major, memory-mapped read-only.
 *
 * <h2>Layout (docs/FORMAT.md, "ffn.bin"; all integers little-endian)</h2>
 * <pre>
 * [0, 4096)  header
 *            0  8 bytes  magic "LLMFFN\r\n" (4C 4C 4D 46 46 4E 0D 0A)
 *            8  u32      version: 1 (F32, F16, BF16), 2 (Q8_0, Q4_0)
 *           12  u32      layout: 0 = bundled, 1 = split
 *           16  u32      dtype: 0 = F32, 1 = F16, 2 = BF16, 3 = Q8_0, 4 = Q4_0 (the last two: version 2 only)
 *           20  u32      layers
 *           24  u32      d_model (d)
 *           28  u32      d_ffn (f, neurons per layer)
 *           32  u32      alignment (A, 4096)
 *           36  u32      reserved = 0
 *           40  u64      stride: the bundle stride (bundled) or the row stride d*e (split)
 *           48  u64      layer block length B
 *           56  u32      CRC32C of bytes [0, 56)
 *           60  zeros up to 4096
 * then layer L's block at 4096 + L * align_up(B, A), B bytes, followed by zeros up to the next
 * multiple of A; the file ends after the last layer's padding.
 * bundled block: f bundles of S bytes; bundle i = up row i (d elements) | down column i (d elements) | zeros
 *                (a quantized row is its d/32 f16 scales, then its quants: see {@link DType})
 * split block:   up matrix (f rows of d) | zeros to align_up(f*d*e, A) | down matrix transposed (f rows of d)
 * </pre>
 * The up row i is HF's {@code fc1.weight[i, :]} / {@code dense_h_to_4h.weight[i, :]}; the down column i
 * is {@code fc2.weight[:, i]} / {@code dense_4h_to_h.weight[:, i]}. The arithmetic lives in
 * {@link FfnGeometry}; per-block CRC32Cs live in the manifest and are checked by {@link Bundle#verify()}.
 *
 * <h2>Validation at open</h2>
 * Magic, version, header CRC, reserved field and padding, the layout and dtype codes, the geometry's
 * consistency ({@link FfnGeometry}'s constructor), the file size against the geometry, and - when the
 * manifest's values are given - every header field and the size against the manifest. Any failure is a
 * one-line {@link FormatException}.
 *
 * <h2>Ownership, threads, closing</h2>
 * Owns the mapping, in its own {@link Arena#ofShared() shared arena}: the segments {@link #block} returns
 * are valid until {@link #close()}, after which touching them throws {@link IllegalStateException}.
 * Immutable after open: any number of threads may read concurrently; {@code close} must not race with
 * readers; it is idempotent. The file must not change while open.
 */
public final class FfnFile implements AutoCloseable {

    /** "LLMFFN\r\n": the CR LF catches text-mode mangling, as PNG's magic does. */
    public static final byte[] MAGIC = {0x4C, 0x4C, 0x4D, 0x46, 0x46, 0x4E, 0x0D, 0x0A};
    /**
     * The newest format version this code reads. It writes version 1 for the float dtypes (unchanged
     * since the first release, so older readers still read those files) and version 2 for the
     * block-quantized ones, which a version-1 reader refuses by the version rule.
     */
    public static final int VERSION = 2;
    /** The version of files whose dtype is F32, F16 or BF16. */
    public static final int VERSION_FLOAT = 1;
    /** Header bytes; the first layer block starts here. */
    public static final int HEADER_BYTES = 4096;

    static final int OFF_VERSION = 8;
    static final int OFF_LAYOUT = 12;
    static final int OFF_DTYPE = 16;
    static final int OFF_LAYERS = 20;
    static final int OFF_D_MODEL = 24;
    static final int OFF_D_FFN = 28;
    static final int OFF_ALIGNMENT = 32;
    static final int OFF_RESERVED = 36;
    static final int OFF_STRIDE = 40;
    static final int OFF_BLOCK_LENGTH = 48;
    /** The header CRC covers [0, OFF_CRC) and is stored at OFF_CRC. */
    static final int OFF_CRC = 56;
    static final int HEADER_USED = 60;

    static final ValueLayout.OfInt U32 = ValueLayout.JAVA_INT_UNALIGNED.withOrder(ByteOrder.LITTLE_ENDIAN);
    static final ValueLayout.OfLong U64 = ValueLayout.JAVA_LONG_UNALIGNED.withOrder(ByteOrder.LITTLE_ENDIAN);

    private static final String FIX_CORRUPT = "the file is corrupt or was cut short; re-convert the model";
    private static final String FIX_MISMATCH = "the bundle's files do not belong together; re-convert the model";

    private final Path path;
    private final Arena arena;
    private final MemorySegment mapping;
    private final FfnGeometry geometry;
    private final AtomicBoolean closed = new AtomicBoolean();

    private FfnFile(Path path, Arena arena, MemorySegment mapping, FfnGeometry geometry) {
        this.path = path;
        this.arena = arena;
        this.mapping = mapping;
        this.geometry = geometry;
    }

    /**
     * Maps {@code file} and validates it on its own: header, and size against the header's geometry.
     *
     * @throws FormatException if the file is missing, unreadable or inconsistent
     */
    public static FfnFile open(Path file) {
        return open(file, null);
    }

    /**
     * Maps {@code file} and validates it, then checks that it is the file the manifest describes: every
     * header field and the size must equal the manifest's.
     *
     * @param expected the manifest's {@code ffn} section, or null to check the file on its own
     * @throws FormatException naming the file and the first disagreement
     */
    public static FfnFile open(Path file, BundleManifest.Ffn expected) {
        Arena arena = Arena.ofShared();
        try {
            MemorySegment mapping = map(file, arena);
            FfnGeometry g = parseHeader(file, mapping);
            checkSize(file, mapping.byteSize(), g.fileSize(), "its header's layout needs");
            if (expected != null) {
                checkAgainstManifest(file, g, mapping.byteSize(), expected);
            }
            return new FfnFile(file, arena, mapping, g);
        } catch (RuntimeException | Error e) {
            arena.close();
            throw e;
        }
    }

    private static MemorySegment map(Path file, Arena arena) {
        if (Files.isDirectory(file)) {
            throw new FormatException(file, "is a folder, not an ffn.bin file", FIX_CORRUPT);
        }
        try (FileChannel ch = FileChannel.open(file, StandardOpenOption.READ)) {
            long size = ch.size();
            if (size < HEADER_BYTES) {
                throw new FormatException(file, "is " + size + " bytes long, shorter than its " + HEADER_BYTES
                        + "-byte header: the file is truncated", FIX_CORRUPT);
            }
            return ch.map(FileChannel.MapMode.READ_ONLY, 0, size, arena);
        } catch (NoSuchFileException e) {
            throw new FormatException(file, "does not exist", "the bundle is incomplete; re-convert the model", e);
        } catch (IOException e) {
            throw new FormatException(file, "cannot be read: " + e, "check that it is a readable file", e);
        }
    }

    private static FfnGeometry parseHeader(Path file, MemorySegment m) {
        return parseHeader(file, m, VERSION);
    }

    /** The header as a reader of versions up to {@code readable} sees it (tests: the version rule). */
    static FfnGeometry parseHeader(Path file, MemorySegment m, int readable) {
        byte[] magic = m.asSlice(0, MAGIC.length).toArray(ValueLayout.JAVA_BYTE);
        if (!Arrays.equals(magic, MAGIC)) {
            throw new FormatException(file, "does not start with the ffn.bin magic \"LLMFFN\\r\\n\": it is not an"
                    + " llmflash FFN file", FIX_CORRUPT);
        }
        long version = u32(m, OFF_VERSION);
        if (version > readable) {
            throw new FormatException(file, "has ffn.bin format version " + version + ", newer than this llmflash"
                    + " reads (" + readable + ")", "upgrade llmflash or re-convert with this version");
        }
        if (version < 1) {
            throw new FormatException(file, "has ffn.bin format version " + version + ", which never existed",
                    FIX_CORRUPT);
        }
        CRC32C crc = new CRC32C();
        crc.update(m.asSlice(0, OFF_CRC).asByteBuffer());
        int stored = m.get(U32, OFF_CRC);
        if ((int) crc.getValue() != stored) {
            throw new FormatException(file, "has a header that fails its checksum (crc32c "
                    + Checksums.hex((int) crc.getValue()) + ", header says " + Checksums.hex(stored) + ")", FIX_CORRUPT);
        }
        if (m.get(U32, OFF_RESERVED) != 0) {
            throw new FormatException(file, "has a non-zero reserved header field at byte " + OFF_RESERVED, FIX_CORRUPT);
        }
        for (long i = HEADER_USED; i < HEADER_BYTES; i++) {
            if (m.get(ValueLayout.JAVA_BYTE, i) != 0) {
                throw new FormatException(file, "has a non-zero byte in its header padding at byte " + i, FIX_CORRUPT);
            }
        }
        long layoutCode = u32(m, OFF_LAYOUT);
        FfnLayout layout = FfnLayout.fromCode(layoutCode);
        if (layout == null) {
            throw new FormatException(file, "has unknown layout code " + layoutCode + " (0 = bundled, 1 = split)",
                    FIX_CORRUPT);
        }
        long dtypeCode = u32(m, OFF_DTYPE);
        DType dtype = dtypeOf(dtypeCode);
        if (dtype == null) {
            throw new FormatException(file, "has unknown dtype code " + dtypeCode + " (0 = F32, 1 = F16, 2 = BF16,"
                    + " 3 = Q8_0, 4 = Q4_0)", FIX_CORRUPT);
        }
        if (version != versionFor(dtype)) {
            throw new FormatException(file, "has ffn.bin format version " + version + " but dtype " + dtype
                    + ", which version " + versionFor(dtype) + " files hold", FIX_CORRUPT);
        }
        long layers = u32(m, OFF_LAYERS);
        long d = u32(m, OFF_D_MODEL);
        long f = u32(m, OFF_D_FFN);
        long alignment = u32(m, OFF_ALIGNMENT);
        long stride = m.get(U64, OFF_STRIDE);
        long blockLength = m.get(U64, OFF_BLOCK_LENGTH);
        if (layers > Integer.MAX_VALUE || d > Integer.MAX_VALUE || f > Integer.MAX_VALUE
                || alignment > Integer.MAX_VALUE) {
            throw new FormatException(file, "has a header count above 2^31 (layers " + layers + ", d_model " + d
                    + ", d_ffn " + f + ", alignment " + alignment + ")", FIX_CORRUPT);
        }
        try {
            return new FfnGeometry(layout, dtype, (int) layers, (int) d, (int) f, (int) alignment, stride, blockLength);
        } catch (IllegalArgumentException e) {
            throw new FormatException(file, "has an impossible header: " + e.getMessage(), FIX_CORRUPT, e);
        }
    }

    private static long u32(MemorySegment m, long offset) {
        return Integer.toUnsignedLong(m.get(U32, offset));
    }

    /** "truncated" / "N extra bytes" against the size some authority expects. */
    static void checkSize(Path file, long actual, long expected, String authority) {
        if (actual < expected) {
            throw new FormatException(file, "is truncated: it has " + actual + " bytes but " + authority + " "
                    + expected, FIX_CORRUPT);
        }
        if (actual > expected) {
            throw new FormatException(file, "has " + (actual - expected) + " extra bytes: it has " + actual
                    + " bytes but " + authority + " " + expected, FIX_CORRUPT);
        }
    }

    private static void checkAgainstManifest(Path file, FfnGeometry g, long size, BundleManifest.Ffn m) {
        same(file, "layout", g.layout().jsonName(), m.layout().jsonName());
        same(file, "dtype", g.dtype(), m.dtype());
        same(file, "layers", g.layers(), m.layers());
        same(file, "d_model", g.dModel(), m.dModel());
        same(file, "d_ffn", g.dFfn(), m.dFfn());
        same(file, "alignment", g.alignment(), m.alignment());
        same(file, "bundle_stride", g.stride(), m.bundleStride());
        same(file, "block_length", g.blockLength(), m.blockLength());
        checkSize(file, size, m.size(), "manifest.json says");
    }

    private static void same(Path file, String field, Object header, Object manifest) {
        if (!header.equals(manifest)) {
            throw new FormatException(file, "header says " + field + " " + header + " but manifest.json says "
                    + manifest, FIX_MISMATCH);
        }
    }

    /** The 4096-byte header for {@code g} (60 bytes used, the rest zeros), with its CRC: the writer's half of the format. */
    static byte[] encodeHeader(FfnGeometry g) {
        byte[] header = new byte[HEADER_BYTES];
        MemorySegment m = MemorySegment.ofArray(header);
        MemorySegment.copy(MAGIC, 0, m, ValueLayout.JAVA_BYTE, 0, MAGIC.length);
        m.set(U32, OFF_VERSION, versionFor(g.dtype()));
        m.set(U32, OFF_LAYOUT, g.layout().code());
        m.set(U32, OFF_DTYPE, dtypeCode(g.dtype()));
        m.set(U32, OFF_LAYERS, g.layers());
        m.set(U32, OFF_D_MODEL, g.dModel());
        m.set(U32, OFF_D_FFN, g.dFfn());
        m.set(U32, OFF_ALIGNMENT, g.alignment());
        m.set(U32, OFF_RESERVED, 0);
        m.set(U64, OFF_STRIDE, g.stride());
        m.set(U64, OFF_BLOCK_LENGTH, g.blockLength());
        CRC32C crc = new CRC32C();
        crc.update(header, 0, OFF_CRC);
        m.set(U32, OFF_CRC, (int) crc.getValue());
        return header;
    }

    /** The header's dtype code: 0 = F32, 1 = F16, 2 = BF16, 3 = Q8_0, 4 = Q4_0. */
    public static int dtypeCode(DType dtype) {
        return switch (dtype) {
            case F32 -> 0;
            case F16 -> 1;
            case BF16 -> 2;
            case Q8_0 -> 3;
            case Q4_0 -> 4;
            default -> throw new IllegalArgumentException("ffn.bin stores F32, F16, BF16, Q8_0 or Q4_0, not " + dtype);
        };
    }

    /** The dtype with this header code, or null if none has it. */
    public static DType dtypeOf(long code) {
        return switch ((int) Math.min(code, 99)) {
            case 0 -> DType.F32;
            case 1 -> DType.F16;
            case 2 -> DType.BF16;
            case 3 -> DType.Q8_0;
            case 4 -> DType.Q4_0;
            default -> null;
        };
    }

    /** The header version a file of this dtype has: 1 for the float dtypes, 2 for the quantized ones. */
    public static int versionFor(DType dtype) {
        return dtype.isQuantized() ? 2 : VERSION_FLOAT;
    }

    /** The layout arithmetic, as the header records it. */
    public FfnGeometry geometry() {
        return geometry;
    }

    public FfnLayout layout() {
        return geometry.layout();
    }

    public DType dtype() {
        return geometry.dtype();
    }

    public int layers() {
        return geometry.layers();
    }

    public int dModel() {
        return geometry.dModel();
    }

    public int dFfn() {
        return geometry.dFfn();
    }

    /** Bundled: the bundle stride (bytes from neuron i's bundle to neuron i+1's); split: the row stride d*e. */
    public long stride() {
        return geometry.stride();
    }

    /** Bytes of one layer block (without the padding to the alignment that follows it). */
    public long blockLength() {
        return geometry.blockLength();
    }

    public int alignment() {
        return geometry.alignment();
    }

    /** Absolute file offset of layer {@code layer}'s block (a multiple of the alignment). */
    public long blockOffset(int layer) {
        return geometry.blockOffset(layer);
    }

    /** Byte offset within a layer block of neuron {@code neuron}'s up row (d elements). */
    public long upOffset(int neuron) {
        return geometry.upOffset(neuron);
    }

    /** Byte offset within a layer block of neuron {@code neuron}'s down column (d elements). */
    public long downOffset(int neuron) {
        return geometry.downOffset(neuron);
    }

    /**
     * The mapped bytes of layer {@code layer}'s block ({@link #blockLength()} bytes), a view into this
     * file's shared arena: valid until {@link #close()}, readable from any thread.
     */
    public MemorySegment block(int layer) {
        return mapping.asSlice(blockOffset(layer), blockLength());
    }

    public Path path() {
        return path;
    }

    /** Unmaps the file; segments handed out become invalid. Idempotent; must not race with readers. */
    @Override
    public void close() {
        if (closed.compareAndSet(false, true)) {
            arena.close();
        }
    }

    @Override
    public String toString() {
        return "FfnFile[" + path + ", " + geometry + "]";
    }
}
