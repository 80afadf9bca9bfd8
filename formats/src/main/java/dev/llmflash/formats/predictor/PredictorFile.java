package dev.llmflash.formats.predictor;

import com.fasterxml.jackson.core.JsonProcessingException;
import com.fasterxml.jackson.core.type.TypeReference;
import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.SerializationFeature;
import com.fasterxml.jackson.databind.node.ArrayNode;
import com.fasterxml.jackson.databind.node.ObjectNode;
import dev.llmflash.formats.AtomicFile;
import dev.llmflash.formats.FormatException;
import dev.llmflash.formats.JsonFields;
import dev.llmflash.formats.bundle.Checksums;

import java.io.IOException;
import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.channels.FileChannel;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.StandardOpenOption;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import java.util.Map;
import java.util.Objects;
import java.util.zip.CRC32C;

/**
 * A bundle's activity predictors (docs/FORMAT.md, "Predictors"): {@code predictors.bin} holds the
 * matrices, {@code predictors.json} describes them and carries the trainer's statistics. They live
 * beside the bundle's manifest.json, which does not list them (the converter writes it once); they are
 * tied to the bundle by its fingerprint.
 *
 * <h2>predictors.bin (all integers little-endian, floats IEEE-754 binary32 little-endian)</h2>
 * <pre>
 *  0  8 bytes  magic "LLMPRD\r\n" (4C 4C 4D 50 52 44 0D 0A)
 *  8  u32      version = 1
 * 12  u32      layers (n, one record each)
 * 16  u32      d (model width; 0 when every layer is dense)
 * 20  u32      f (neurons per layer; 0 when every layer is dense)
 * 24  u32      reserved = 0
 * 28  u32      CRC32C of bytes [0, 28)
 * 32  n records, back to back, in layer order; record of layer L:
 *       +0   u32  layer = L
 *       +4   u32  dense: 1 = no predictor (every neuron computed), 0 = a predictor follows
 *       +8   u32  rank r (0 when dense)
 *      +12   u32  d (0 when dense)
 *      +16   u32  f (0 when dense)
 *      +20   f32  threshold
 *      +24   A: r x d f32, row-major; B: f x r f32, row-major; c: f f32
 *      +24 + 4 (r d + f r + f)  u32  CRC32C of the record's bytes before it
 *     record length = 28 + 4 (r d + f r + f)
 * </pre>
 * F32, not F16: the trainer's output round-trips bit for bit, and the cost is small next to the model
 * (rank 128 on OPT-6.7B: 2.6 M parameters a layer, 10 MiB; 2.5% of the 13 GB F16 bundle).
 *
 * <h2>predictors.json</h2>
 * <pre>
 * { "format": "llmflash-predictors", "version": 1, "bundle_fingerprint": sha256 hex,
 *   "file": "predictors.bin", "size": bytes, "d_model": d, "d_ffn": f,
 *   "layers": [ { "layer", "dense", "rank", "threshold", "parameters", "offset", "length", "crc32c" } ],
 *   "training": { free-form: densities, recall, precision, seconds, ... } }
 * </pre>
 *
 * <h2>Writing, validation</h2>
 * {@link #write} writes predictors.bin, then predictors.json, each atomically (temporary file, forced,
 * renamed); json last, so a crash in between leaves a json that does not match the bin, which
 * {@link #read} refuses. {@link #read} refuses, with one-line {@link FormatException}s: missing files;
 * a fingerprint other than the bundle's; newer versions; truncated or over-long files; a record whose
 * CRC32C fails (naming the layer); shapes that disagree with d / f or with the json; any header field
 * out of place. Stateless; thread-safe.
 */
public final class PredictorFile {

    public static final String BIN = "predictors.bin";
    public static final String JSON = "predictors.json";
    public static final String FORMAT = "llmflash-predictors";
    public static final int VERSION = 1;
    /** "LLMPRD\r\n": the CR LF catches text-mode mangling, as PNG's magic does. */
    public static final byte[] MAGIC = {0x4C, 0x4C, 0x4D, 0x50, 0x52, 0x44, 0x0D, 0x0A};
    public static final int HEADER_BYTES = 32;
    /** A record's fixed part: 24 bytes before the matrices, 4 bytes of CRC after. */
    static final int RECORD_HEADER = 24;
    static final int RECORD_OVERHEAD = RECORD_HEADER + 4;

    static final int OFF_VERSION = 8;
    static final int OFF_LAYERS = 12;
    static final int OFF_D = 16;
    static final int OFF_F = 20;
    static final int OFF_RESERVED = 24;
    static final int OFF_CRC = 28;

    private static final ValueLayout.OfInt U32 = ValueLayout.JAVA_INT_UNALIGNED.withOrder(ByteOrder.LITTLE_ENDIAN);
    private static final ValueLayout.OfFloat F32 = ValueLayout.JAVA_FLOAT_UNALIGNED.withOrder(ByteOrder.LITTLE_ENDIAN);
    private static final long MAX_JSON_BYTES = 64L << 20;

    static final String FIX_RETRAIN = "retrain with llmflash train-predictor";
    private static final String FIX_CORRUPT = "the file is corrupt; " + FIX_RETRAIN;

    private PredictorFile() {
    }

    /** True when {@code bundleDir} holds both predictors.json and predictors.bin (not checked further). */
    public static boolean exists(Path bundleDir) {
        return Files.isRegularFile(bundleDir.resolve(JSON)) && Files.isRegularFile(bundleDir.resolve(BIN));
    }

    // ------------------------------------------------------------------------------------------------
    // Writing

    /**
     * Writes {@code predictors} (one per layer, layer i at index i) into {@code bundleDir}: predictors.bin
     * then predictors.json, each atomically. d and f are taken from the non-dense layers, which must
     * agree.
     *
     * @param trainingInfo free-form statistics, any value Jackson serializes (numbers, strings, lists, maps)
     * @throws IllegalArgumentException if the layers are out of order or disagree in shape
     * @throws dev.llmflash.formats.LlmflashException if a file cannot be written
     */
    public static void write(Path bundleDir, String bundleFingerprint, List<LayerPredictor> predictors,
                             Map<String, Object> trainingInfo) {
        Objects.requireNonNull(bundleFingerprint, "bundleFingerprint");
        Objects.requireNonNull(trainingInfo, "trainingInfo");
        int d = 0;
        int f = 0;
        for (int i = 0; i < predictors.size(); i++) {
            LayerPredictor p = predictors.get(i);
            if (p.layer() != i) {
                throw new IllegalArgumentException("predictor " + i + " is for layer " + p.layer());
            }
            if (!p.dense()) {
                if (d == 0) {
                    d = p.inputs();
                    f = p.neurons();
                } else if (p.inputs() != d || p.neurons() != f) {
                    throw new IllegalArgumentException("layer " + i + "'s predictor reads d " + p.inputs() + ", predicts f "
                            + p.neurons() + " but an earlier layer's " + d + ", " + f);
                }
            }
        }
        List<ByteBuffer> records = new ArrayList<>();
        for (LayerPredictor p : predictors) {
            records.add(encodeRecord(p));
        }
        ByteBuffer header = encodeHeader(predictors.size(), d, f);

        ObjectNode root = JsonFields.JSON.createObjectNode();
        root.put("format", FORMAT);
        root.put("version", VERSION);
        root.put("bundle_fingerprint", bundleFingerprint);
        root.put("file", BIN);
        long size = HEADER_BYTES + records.stream().mapToLong(ByteBuffer::remaining).sum();
        root.put("size", size);
        root.put("d_model", d);
        root.put("d_ffn", f);
        ArrayNode table = root.putArray("layers");
        long offset = HEADER_BYTES;
        for (int i = 0; i < predictors.size(); i++) {
            LayerPredictor p = predictors.get(i);
            ByteBuffer r = records.get(i);
            table.addObject().put("layer", i).put("dense", p.dense()).put("rank", p.rank())
                    .put("threshold", p.threshold()).put("parameters", p.parameters()).put("offset", offset)
                    .put("length", r.remaining()).put("crc32c", Checksums.hex(r.getInt(r.limit() - 4)));
            offset += r.remaining();
        }
        root.set("training", JsonFields.JSON.valueToTree(trainingInfo));
        byte[] json;
        try {
            json = JsonFields.JSON.writer().with(SerializationFeature.INDENT_OUTPUT).writeValueAsBytes(root);
        } catch (JsonProcessingException e) {
            throw new IllegalArgumentException("training info cannot be written as JSON: " + e.getOriginalMessage(), e);
        }

        AtomicFile.write(bundleDir.resolve(BIN), ch -> {
            AtomicFile.writeFully(ch, header);
            for (ByteBuffer r : records) {
                AtomicFile.writeFully(ch, r);
            }
        });
        AtomicFile.write(bundleDir.resolve(JSON), json);
    }

    private static ByteBuffer encodeHeader(int layers, int d, int f) {
        ByteBuffer h = ByteBuffer.allocate(HEADER_BYTES).order(ByteOrder.LITTLE_ENDIAN);
        h.put(MAGIC).putInt(VERSION).putInt(layers).putInt(d).putInt(f).putInt(0);
        CRC32C crc = new CRC32C();
        crc.update(h.array(), 0, OFF_CRC);
        h.putInt((int) crc.getValue());
        return h.flip();
    }

    /** One record (see the class comment), CRC included, ready to write. */
    private static ByteBuffer encodeRecord(LayerPredictor p) {
        long length = RECORD_OVERHEAD + 4 * p.parameters();
        if (length > Integer.MAX_VALUE - 8) {
            throw new IllegalArgumentException("layer " + p.layer() + "'s predictor has " + p.parameters()
                    + " parameters, more than one record holds");
        }
        ByteBuffer r = ByteBuffer.allocate((int) length).order(ByteOrder.LITTLE_ENDIAN);
        r.putInt(p.layer()).putInt(p.dense() ? 1 : 0).putInt(p.rank()).putInt(p.inputs()).putInt(p.neurons())
                .putFloat(p.threshold());
        r.asFloatBuffer().put(p.a()).put(p.b()).put(p.c());
        r.position(r.position() + 4 * (int) p.parameters());
        CRC32C crc = new CRC32C();
        crc.update(r.array(), 0, r.position());
        r.putInt((int) crc.getValue());
        return r.flip();
    }

    // ------------------------------------------------------------------------------------------------
    // Reading

    /**
     * Reads the predictors of the bundle in {@code bundleDir}, refusing any that were not trained for
     * the bundle with fingerprint {@code expectedFingerprint}.
     *
     * @throws FormatException naming the file and the first problem (see the class comment)
     */
    public static Predictors read(Path bundleDir, String expectedFingerprint) {
        Objects.requireNonNull(expectedFingerprint, "expectedFingerprint");
        Path jsonPath = bundleDir.resolve(JSON);
        Path binPath = bundleDir.resolve(BIN);
        if (!Files.exists(jsonPath)) {
            throw new FormatException(bundleDir, "the bundle has no predictors (no " + JSON + ")",
                    "run llmflash train-predictor");
        }
        JsonFields r = new JsonFields(jsonPath, "predictors.json is corrupt or was edited; " + FIX_RETRAIN);
        JsonNode root = r.readObject(MAX_JSON_BYTES, "run llmflash train-predictor");
        r.formatAndVersion(root, FORMAT, VERSION, "upgrade llmflash, or " + FIX_RETRAIN);
        String fingerprint = r.sha256(root, "bundle_fingerprint", "bundle_fingerprint");
        if (!fingerprint.equals(expectedFingerprint)) {
            throw new FormatException(jsonPath, "was trained for another model (fingerprint " + fingerprint
                    + "), not this bundle (" + expectedFingerprint + ")", FIX_RETRAIN);
        }
        String binName = r.fileName(root, "file", "file");
        if (!binName.equals(BIN)) {
            throw new FormatException(jsonPath, "names '" + binName + "' as its matrices, not " + BIN, r.fix());
        }
        long size = r.integer(root, "size", "size", HEADER_BYTES, Long.MAX_VALUE);
        int d = r.int32(root, "d_model", "d_model", 0);
        int f = r.int32(root, "d_ffn", "d_ffn", 0);
        JsonNode table = r.array(root, "layers", "layers");
        Map<String, Object> training = JsonFields.JSON.convertValue(r.object(root, "training", "training"),
                new TypeReference<Map<String, Object>>() { });

        if (!Files.exists(binPath)) {
            throw new FormatException(binPath, "is missing (predictors.json lists it)", "run llmflash train-predictor");
        }
        try (Arena arena = Arena.ofConfined();
             FileChannel ch = FileChannel.open(binPath, StandardOpenOption.READ)) {
            long actual = ch.size();
            if (actual != size) {
                throw new FormatException(binPath, (actual < size ? "is truncated: it has " : "is too long: it has ")
                        + actual + " bytes but predictors.json says " + size, FIX_CORRUPT);
            }
            MemorySegment m = ch.map(FileChannel.MapMode.READ_ONLY, 0, actual, arena);
            checkHeader(binPath, m, table.size(), d, f);
            List<LayerPredictor> layers = new ArrayList<>();
            long expectedOffset = HEADER_BYTES;
            for (int i = 0; i < table.size(); i++) {
                LayerPredictor p = readRecord(binPath, m, r, r.element(table, i, "layers[" + i + "]"), i,
                        expectedOffset, d, f);
                layers.add(p);
                expectedOffset += RECORD_OVERHEAD + 4 * p.parameters();
            }
            if (expectedOffset != size) {
                throw new FormatException(binPath, "has " + (size - expectedOffset) + " bytes after its last record",
                        FIX_CORRUPT);
            }
            return new Predictors(fingerprint, d, f, layers, training);
        } catch (IOException e) {
            throw new FormatException(binPath, "cannot be read: " + e, "check that it is a readable file", e);
        }
    }

    /**
     * {@link #read(Path, String)}, then checks that the predictors fit the model: one per layer, reading d
     * and predicting f neurons.
     *
     * @throws FormatException naming predictors.bin when the shapes disagree with the model's
     */
    public static Predictors read(Path bundleDir, String expectedFingerprint, int layers, int d, int f) {
        Predictors p = read(bundleDir, expectedFingerprint);
        boolean anyPredictor = p.layers().stream().anyMatch(l -> !l.dense());
        if (p.layers().size() != layers || (anyPredictor && (p.d() != d || p.f() != f))) {
            throw new FormatException(bundleDir.resolve(BIN), "holds predictors for " + p.layers().size()
                    + " layers of d " + p.d() + ", f " + p.f() + " but the model has " + layers + " layers of d " + d
                    + ", f " + f, FIX_RETRAIN);
        }
        return p;
    }

    private static void checkHeader(Path file, MemorySegment m, int layers, int d, int f) {
        if (m.byteSize() < HEADER_BYTES) {
            throw new FormatException(file, "is truncated: " + m.byteSize() + " bytes, shorter than its "
                    + HEADER_BYTES + "-byte header", FIX_CORRUPT);
        }
        if (!Arrays.equals(m.asSlice(0, MAGIC.length).toArray(ValueLayout.JAVA_BYTE), MAGIC)) {
            throw new FormatException(file, "does not start with the predictors magic \"LLMPRD\\r\\n\"", FIX_CORRUPT);
        }
        long version = Integer.toUnsignedLong(m.get(U32, OFF_VERSION));
        if (version > VERSION) {
            throw new FormatException(file, "has predictors format version " + version + ", newer than this llmflash"
                    + " reads (" + VERSION + ")", "upgrade llmflash, or " + FIX_RETRAIN);
        }
        if (version != VERSION) {
            throw new FormatException(file, "has predictors format version " + version + ", which never existed",
                    FIX_CORRUPT);
        }
        CRC32C crc = new CRC32C();
        crc.update(m.asSlice(0, OFF_CRC).asByteBuffer());
        if ((int) crc.getValue() != m.get(U32, OFF_CRC)) {
            throw new FormatException(file, "has a header that fails its checksum", FIX_CORRUPT);
        }
        if (m.get(U32, OFF_RESERVED) != 0) {
            throw new FormatException(file, "has a non-zero reserved header field at byte " + OFF_RESERVED, FIX_CORRUPT);
        }
        int hl = m.get(U32, OFF_LAYERS);
        int hd = m.get(U32, OFF_D);
        int hf = m.get(U32, OFF_F);
        if (hl != layers || hd != d || hf != f) {
            throw new FormatException(file, "header says " + Integer.toUnsignedString(hl) + " layers, d "
                    + Integer.toUnsignedString(hd) + ", f " + Integer.toUnsignedString(hf) + " but predictors.json says "
                    + layers + ", " + d + ", " + f, FIX_CORRUPT);
        }
    }

    /** Reads and checks layer {@code i}'s record against its json entry {@code e} and the header's d, f. */
    private static LayerPredictor readRecord(Path file, MemorySegment m, JsonFields r, JsonNode e, int i,
                                             long expectedOffset, int d, int f) {
        String where = "layers[" + i + "]";
        long layer = r.integer(e, "layer", where + ".layer", 0, Long.MAX_VALUE);
        boolean dense = r.bool(e, "dense", where + ".dense");
        long rank = r.integer(e, "rank", where + ".rank", 0, Integer.MAX_VALUE);
        float threshold = (float) r.number(e, "threshold", where + ".threshold");
        long parameters = r.integer(e, "parameters", where + ".parameters", 0, Long.MAX_VALUE);
        long offset = r.integer(e, "offset", where + ".offset", 0, Long.MAX_VALUE);
        long length = r.integer(e, "length", where + ".length", 0, Long.MAX_VALUE);
        int crc = r.crc(e, "crc32c", where + ".crc32c");
        if (layer != i || offset != expectedOffset) {
            throw new FormatException(r.file(), where + " (layer " + layer + " at offset " + offset + ") should be layer "
                    + i + " at offset " + expectedOffset, r.fix());
        }
        if (length < RECORD_OVERHEAD || length > m.byteSize() - offset) {
            throw new FormatException(file, "is truncated: layer " + i + "'s record (bytes [" + offset + ", "
                    + (offset + length) + ")) ends past the file's " + m.byteSize() + " bytes", FIX_CORRUPT);
        }
        // The record's own header: must describe the shape the json and the file header say.
        int recLayer = m.get(U32, offset);
        int recDense = m.get(U32, offset + 4);
        int recRank = m.get(U32, offset + 8);
        int recD = m.get(U32, offset + 12);
        int recF = m.get(U32, offset + 16);
        float recThreshold = m.get(F32, offset + 20);
        int stored = m.get(U32, offset + length - 4);
        int actual = Checksums.crc32c(m.asSlice(offset, length - 4), false);
        if (actual != stored || stored != crc) {
            throw new FormatException(file, "layer " + i + "'s predictor fails its checksum (crc32c "
                    + Checksums.hex(actual) + ", record says " + Checksums.hex(stored) + ", predictors.json says "
                    + Checksums.hex(crc) + ")", FIX_CORRUPT);
        }
        boolean shapeOk = recDense == 1
                ? recRank == 0 && recD == 0 && recF == 0
                : recDense == 0 && recRank >= 1 && recD == d && recF == f && d >= 1 && f >= 1;
        if (recLayer != i || !shapeOk) {
            throw new FormatException(file, "layer " + i + "'s record says layer " + Integer.toUnsignedString(recLayer)
                    + ", dense " + recDense + ", rank " + Integer.toUnsignedString(recRank) + ", d "
                    + Integer.toUnsignedString(recD) + ", f " + Integer.toUnsignedString(recF) + "; expected layer " + i
                    + (recDense == 1 ? ", dense with no matrices" : ", d " + d + ", f " + f + ", rank >= 1"), FIX_CORRUPT);
        }
        long a = (long) recRank * recD;
        long b = (long) recF * recRank;
        long params = a + b + recF;
        if (RECORD_OVERHEAD + 4 * params != length || params != parameters || (recDense == 1) != dense
                || recRank != rank || Float.floatToRawIntBits(recThreshold) != Float.floatToRawIntBits(threshold)) {
            throw new FormatException(file, "layer " + i + "'s record (dense " + recDense + ", rank " + recRank
                    + ", threshold " + recThreshold + ", " + params + " parameters, " + (RECORD_OVERHEAD + 4 * params)
                    + " bytes) disagrees with predictors.json (dense " + dense + ", rank " + rank + ", threshold "
                    + threshold + ", " + parameters + " parameters, " + length + " bytes)", FIX_CORRUPT);
        }
        if (recDense == 1) {
            return new LayerPredictor(i, true, 0, recThreshold, new float[0], new float[0], new float[0]);
        }
        long at = offset + RECORD_HEADER;
        float[] aw = floats(m, at, a);
        float[] bw = floats(m, at + 4 * a, b);
        float[] cw = floats(m, at + 4 * (a + b), recF);
        try {
            return new LayerPredictor(i, false, recRank, recThreshold, aw, bw, cw);
        } catch (IllegalArgumentException ex) {
            throw new FormatException(file, "layer " + i + "'s predictor is impossible: " + ex.getMessage(), FIX_CORRUPT,
                    ex);
        }
    }

    private static float[] floats(MemorySegment m, long offset, long count) {
        float[] out = new float[Math.toIntExact(count)];
        MemorySegment.copy(m, F32, offset, out, 0, out.length);
        return out;
    }
}
