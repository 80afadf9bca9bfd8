package dev.llmflash.formats.activations;

import dev.llmflash.formats.FormatException;

import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.nio.ByteOrder;
import java.nio.file.Path;
import java.util.Arrays;
import java.util.zip.CRC32C;

/**
 * One chunk file of a recording, {@code layer-LL-chunk-KKKK.bin}: the FFN inputs and true activity
 * labels of {@code count} consecutive tokens of one layer.
 *
 * <h2>Layout (docs/FORMAT.md, "Recorded activations"; all integers little-endian)</h2>
 * <pre>
 *  0  8 bytes  magic "LLMACT\r\n" (4C 4C 4D 41 43 54 0D 0A)
 *  8  u32      version = 1
 * 12  u32      layer
 * 16  u64      first token: the index, within the recording, of the chunk's first token
 * 24  u32      count (n, tokens in this chunk, >= 1)
 * 28  u32      d (FFN input width)
 * 32  u32      f (neurons)
 * 36  u32      CRC32C of bytes [0, 36)
 * 40  n x d    F16 inputs, token-major: x[t][j] at 40 + 2 (t d + j)
 *     n x L    labels, L = ceil(f / 8) bytes per token: neuron i of token t is bit (i mod 8) (LSB first)
 *              of byte 40 + 2 n d + t L + i / 8; 1 = active (pre-activation > 0); unused high bits 0
 * size = 40 + n (2 d + L)
 * </pre>
 * The CRC32C of the whole file is kept in activations.json's chunk table ({@link ActivationsManifest}).
 * F16 halves the size of the inputs; the predictor is trained on them in F32 after an exact widening.
 *
 * <p>Stateless helpers; thread-safe.
 */
public final class ActivationChunk {

    /** "LLMACT\r\n": the CR LF catches text-mode mangling, as PNG's magic does. */
    public static final byte[] MAGIC = {0x4C, 0x4C, 0x4D, 0x41, 0x43, 0x54, 0x0D, 0x0A};
    public static final int VERSION = 1;
    public static final int HEADER_BYTES = 40;

    static final int OFF_VERSION = 8;
    static final int OFF_LAYER = 12;
    static final int OFF_FIRST = 16;
    static final int OFF_COUNT = 24;
    static final int OFF_D = 28;
    static final int OFF_F = 32;
    static final int OFF_CRC = 36;

    static final ValueLayout.OfInt U32 = ValueLayout.JAVA_INT_UNALIGNED.withOrder(ByteOrder.LITTLE_ENDIAN);
    static final ValueLayout.OfLong U64 = ValueLayout.JAVA_LONG_UNALIGNED.withOrder(ByteOrder.LITTLE_ENDIAN);
    static final ValueLayout.OfShort F16 = ValueLayout.JAVA_SHORT_UNALIGNED.withOrder(ByteOrder.LITTLE_ENDIAN);

    static final String FIX_CORRUPT = "the chunk is corrupt; delete it and resume the recording to re-record it";

    /** What a chunk header says. */
    public record Header(int layer, long firstToken, int count, int d, int f) {
    }

    private ActivationChunk() {
    }

    /** The file name of layer {@code layer}'s chunk number {@code index}. */
    public static String fileName(int layer, int index) {
        return String.format("layer-%02d-chunk-%04d.bin", layer, index);
    }

    /** Label bytes per token: ceil(f / 8). */
    public static int labelBytes(int f) {
        return (f + 7) >>> 3;
    }

    /** The file size of a chunk of {@code count} tokens. */
    public static long size(long count, int d, int f) {
        return HEADER_BYTES + count * (2L * d + labelBytes(f));
    }

    /** The 40-byte header, CRC included. */
    static byte[] encodeHeader(Header h) {
        byte[] bytes = new byte[HEADER_BYTES];
        MemorySegment m = MemorySegment.ofArray(bytes);
        MemorySegment.copy(MAGIC, 0, m, ValueLayout.JAVA_BYTE, 0, MAGIC.length);
        m.set(U32, OFF_VERSION, VERSION);
        m.set(U32, OFF_LAYER, h.layer());
        m.set(U64, OFF_FIRST, h.firstToken());
        m.set(U32, OFF_COUNT, h.count());
        m.set(U32, OFF_D, h.d());
        m.set(U32, OFF_F, h.f());
        CRC32C crc = new CRC32C();
        crc.update(bytes, 0, OFF_CRC);
        m.set(U32, OFF_CRC, (int) crc.getValue());
        return bytes;
    }

    /**
     * Parses and checks a header: magic, version, CRC, and every field against what activations.json
     * says ({@code expected}).
     *
     * @throws FormatException naming {@code file} and the first problem
     */
    static void checkHeader(Path file, MemorySegment m, Header expected) {
        if (m.byteSize() < HEADER_BYTES) {
            throw new FormatException(file, "is " + m.byteSize() + " bytes, shorter than its " + HEADER_BYTES
                    + "-byte header: the chunk is truncated", FIX_CORRUPT);
        }
        if (!Arrays.equals(m.asSlice(0, MAGIC.length).toArray(ValueLayout.JAVA_BYTE), MAGIC)) {
            throw new FormatException(file, "does not start with the activation chunk magic \"LLMACT\\r\\n\"",
                    FIX_CORRUPT);
        }
        long version = Integer.toUnsignedLong(m.get(U32, OFF_VERSION));
        if (version != VERSION) {
            throw new FormatException(file, "has activation chunk version " + version + ", not " + VERSION,
                    version > VERSION ? "upgrade llmflash, or record the activations again with this version"
                            : FIX_CORRUPT);
        }
        CRC32C crc = new CRC32C();
        crc.update(m.asSlice(0, OFF_CRC).asByteBuffer());
        if ((int) crc.getValue() != m.get(U32, OFF_CRC)) {
            throw new FormatException(file, "has a header that fails its checksum", FIX_CORRUPT);
        }
        Header actual = new Header(m.get(U32, OFF_LAYER), m.get(U64, OFF_FIRST), m.get(U32, OFF_COUNT),
                m.get(U32, OFF_D), m.get(U32, OFF_F));
        if (!actual.equals(expected)) {
            throw new FormatException(file, "header says " + describe(actual) + " but activations.json says "
                    + describe(expected), FIX_CORRUPT);
        }
    }

    private static String describe(Header h) {
        return "layer " + Integer.toUnsignedString(h.layer()) + ", tokens [" + h.firstToken() + ", +"
                + Integer.toUnsignedString(h.count()) + "), d " + Integer.toUnsignedString(h.d()) + ", f "
                + Integer.toUnsignedString(h.f());
    }
}
