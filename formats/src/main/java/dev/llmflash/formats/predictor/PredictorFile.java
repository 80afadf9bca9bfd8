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
 *  8  u32      version = 2 (1 is still read: the same layout with no look-ahead records)
 * 12  u32      layers (n, one own record each)
 * 16  u32      d (model width; 0 when every record is dense)
 * 20  u32      f (neurons per layer; 0 when every record is dense)
 * 24  u32      k, look-ahead records: 0 (none) or n - 1 (version 1: reserved = 0)
 * 28  u32      CRC32C of bytes [0, 28)
 * 32  n own records, back to back, in layer order; then k look-ahead records, in source-layer order.
 *     Own record of layer L (reads layer L's FFN input, predicts layer L's neurons):
 *       +0   u32  layer = L
 *       +4   u32  dense: 1 = no predictor (every neuron computed), 0 = a predictor follows
 *       +8   u32  rank r (0 when dense)
 *      +12   u32  d (0 when dense)
 *      +16   u32  f (0 when dense)
 *      +20   f32  threshold
 *      +24   A: r x d f32, row-major; B: f x r f32, row-major; c: f f32
 *      +24 + 4 (r d + f r + f)  u32  CRC32C of the record's bytes before it
 *     record length = 28 + 4 (r d + f r + f)
 *     Look-ahead record j, j in [0, n-2] (Deja Vu's asynchronous look-ahead): the same shape, reading
 *     layer j's FFN input (the input record j reads) and predicting layer j+1's neurons; its layer field
 *     is the TARGET layer j+1; dense = 1 means no look-ahead for that layer (e.g. layer j+1 is dense).
 * </pre>
 * F32, not F16: the trainer's output round-trips bit for bit, and the cost is small next to the model
 * (rank 128 on OPT-6.7B: 2.6 M parameters a layer, 10 MiB; 2.5% of the 13 GB F16 bundle).
 *
 * <h2>predictors.json</h2>
 * <pre>
 * { "format": "llmflash-predictors", "version": 2, "bundle_fingerprint": sha256 hex,
 *   "file": "predictors.bin", "size": bytes, "d_model": d, "d_ffn": f,
 *   "layers": [ { "layer", "dense", "rank", "threshold", "parameters", "offset", "length", "crc32c" } ],
 *   "lookahead": [ { "source_layer", "layer" (target), "dense", "rank", "threshold", "parameters", "offset",
 *                    "length", "crc32c" } ],      (version 2; empty or n - 1 entries)
 *   "training": { free-form: densities, recall, precision, seconds, lookahead_layers, ... } }
 * </pre>
 *
 * <h2>Writing, validation</h2>
 * {@link #write} writes predictors.bin, then predictors.json, each atomically (temporary file, forced,
 * renamed); json last, so a crash in between leaves a json that does not match the bin, which
 * {@link #read} refuses. {@link #read} refuses, with one-line {@link FormatException}s: missing files;
 * a fingerprint other than the bundle's; newer versions; truncated or over-long files (every offset and
 * length is checked against the file's size); a record whose CRC32C fails (naming the layer, and for a
 * look-ahead record its source and target layers); shapes that disagree with d / f or with the json; any header field
 * out of place. Stateless; thread-safe.
 */
public final class PredictorFile {

    public static final String BIN = "predictors.bin";
    public static final String JSON = "predictors.json";
    public static final String FORMAT = "llmflash-predictors";
    public static final int VERSION = 2;
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
    /** Version 2: the look-ahead record count; version 1: reserved, 0. */
    static final int OFF_LOOKAHEAD = 24;
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

    /** {@link #write(Path, String, List, List, Map)} with no look-ahead predictors. */
    public static void write(Path bundleDir, String bundleFingerprint, List<LayerPredictor> predictors,
                             Map<String, Object> trainingInfo) {
        write(bundleDir, bundleFingerprint, predictors, List.of(), trainingInfo);
    }

    /**
     * Writes {@code predictors} (one per layer, layer i at index i) and {@code lookahead} into
     * {@code bundleDir}: predictors.bin then predictors.json, each atomically. d and f are taken from
     * the non-dense predictors, which must agree.
     *
     * @param lookahead empty (none), or one entry per source layer j in [0, n-2] at index j: the
     *                  predictor that reads layer j's FFN input and predicts layer j+1's neurons, whose
     *                  {@link LayerPredictor#layer()} is the target j+1; a null entry or a
     *                  {@link LayerPredictor#denseLayer dense marker} means none for that layer
     * @param trainingInfo free-form statistics, any value Jackson serializes (numbers, strings, lists, maps)
     * @throws IllegalArgumentException if the layers are out of order or disagree in shape
     * @throws dev.llmflash.formats.LlmflashException if a file cannot be written
     */
    public static void write(Path bundleDir, String bundleFingerprint, List<LayerPredictor> predictors,
                             List<LayerPredictor> lookahead, Map<String, Object> trainingInfo) {
        Objects.requireNonNull(bundleFingerprint, "bundleFingerprint");
        Objects.requireNonNull(trainingInfo, "trainingInfo");
        int n = predictors.size();
        if (!lookahead.isEmpty() && lookahead.size() != n - 1) {
            throw new IllegalArgumentException(lookahead.size() + " look-ahead predictors for " + n
                    + " layers: need none or one per layer but the last (" + (n - 1) + ")");
        }
        List<LayerPredictor> ahead = new ArrayList<>();
        for (int j = 0; j < lookahead.size(); j++) {
            LayerPredictor p = lookahead.get(j);
            ahead.add(p == null ? LayerPredictor.denseLayer(j + 1) : p);
        }
        int[] shape = {0, 0};
        for (int i = 0; i < n; i++) {
            LayerPredictor p = predictors.get(i);
            if (p.layer() != i) {
                throw new IllegalArgumentException("predictor " + i + " is for layer " + p.layer());
            }
            checkShape(p, "layer " + i + "'s predictor", shape);
        }
        for (int j = 0; j < ahead.size(); j++) {
            LayerPredictor p = ahead.get(j);
            if (p.layer() != j + 1) {
                throw new IllegalArgumentException("look-ahead predictor " + j + " must target layer " + (j + 1)
                        + ", not " + p.layer());
            }
            checkShape(p, "layer " + j + "'s look-ahead predictor", shape);
        }
        int d = shape[0];
        int f = shape[1];
        List<ByteBuffer> records = new ArrayList<>();
        for (LayerPredictor p : predictors) {
            records.add(encodeRecord(p));
        }
        List<ByteBuffer> aheadRecords = new ArrayList<>();
        for (LayerPredictor p : ahead) {
            aheadRecords.add(encodeRecord(p));
        }
        ByteBuffer header = encodeHeader(n, d, f, ahead.size());

        ObjectNode root = JsonFields.JSON.createObjectNode();
        root.put("format", FORMAT);
        root.put("version", VERSION);
        root.put("bundle_fingerprint", bundleFingerprint);
        root.put("file", BIN);
        long size = HEADER_BYTES + records.stream().mapToLong(ByteBuffer::remaining).sum()
                + aheadRecords.stream().mapToLong(ByteBuffer::remaining).sum();
        root.put("size", size);
        root.put("d_model", d);
        root.put("d_ffn", f);
        ArrayNode table = root.putArray("layers");
        long offset = HEADER_BYTES;
        for (int i = 0; i < n; i++) {
            offset = tableEntry(table.addObject().put("layer", i), predictors.get(i), records.get(i), offset);
        }
        ArrayNode aheadTable = root.putArray("lookahead");
        for (int j = 0; j < ahead.size(); j++) {
            offset = tableEntry(aheadTable.addObject().put("source_layer", j).put("layer", j + 1), ahead.get(j),
                    aheadRecords.get(j), offset);
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
            for (ByteBuffer r : aheadRecords) {
                AtomicFile.writeFully(ch, r);
            }
        });
        AtomicFile.write(bundleDir.resolve(JSON), json);
    }

    /** Sets {@code shape} (d, f) from the first non-dense predictor; later ones must agree. */
    private static void checkShape(LayerPredictor p, String what, int[] shape) {
        if (p.dense()) {
            return;
        }
        if (shape[0] == 0) {
            shape[0] = p.inputs();
            shape[1] = p.neurons();
        } else if (p.inputs() != shape[0] || p.neurons() != shape[1]) {
            throw new IllegalArgumentException(what + " reads d " + p.inputs() + ", predicts f " + p.neurons()
                    + " but an earlier one " + shape[0] + ", " + shape[1]);
        }
    }

    /** Fills one json table entry (after its layer fields); returns the offset after the record. */
    private static long tableEntry(ObjectNode e, LayerPredictor p, ByteBuffer r, long offset) {
        e.put("dense", p.dense()).put("rank", p.rank()).put("threshold", p.threshold()).put("parameters", p.parameters())
                .put("offset", offset).put("length", r.remaining()).put("crc32c", Checksums.hex(r.getInt(r.limit() - 4)));
        return offset + r.remaining();
    }

    private static ByteBuffer encodeHeader(int layers, int d, int f, int lookahead) {
        ByteBuffer h = ByteBuffer.allocate(HEADER_BYTES).order(ByteOrder.LITTLE_ENDIAN);
        h.put(MAGIC).putInt(VERSION).putInt(layers).putInt(d).putInt(f).putInt(lookahead);
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
        int version = (int) r.integer(root, "version", "version", 1, VERSION);
        JsonNode table = r.array(root, "layers", "layers");
        JsonNode aheadTable = null;
        if (version >= 2) {
            aheadTable = r.array(root, "lookahead", "lookahead");
            if (aheadTable.size() != 0 && aheadTable.size() != table.size() - 1) {
                throw new FormatException(jsonPath, "lists " + aheadTable.size() + " look-ahead predictors for "
                        + table.size() + " layers (need none or " + (table.size() - 1) + ")", r.fix());
            }
        } else if (root.has("lookahead")) {
            throw new FormatException(jsonPath, "is version 1 but lists look-ahead predictors (version 2)", r.fix());
        }
        int aheadCount = aheadTable == null ? 0 : aheadTable.size();
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
            checkHeader(binPath, m, version, table.size(), d, f, aheadCount);
            List<LayerPredictor> layers = new ArrayList<>();
            long expectedOffset = HEADER_BYTES;
            for (int i = 0; i < table.size(); i++) {
                LayerPredictor p = readRecord(binPath, m, r, r.element(table, i, "layers[" + i + "]"), false, i,
                        expectedOffset, d, f);
                layers.add(p);
                expectedOffset += RECORD_OVERHEAD + 4 * p.parameters();
            }
            List<LayerPredictor> lookahead = new ArrayList<>();
            for (int j = 0; j < aheadCount; j++) {
                LayerPredictor p = readRecord(binPath, m, r, r.element(aheadTable, j, "lookahead[" + j + "]"), true, j,
                        expectedOffset, d, f);
                lookahead.add(p);
                expectedOffset += RECORD_OVERHEAD + 4 * p.parameters();
            }
            if (expectedOffset != size) {
                throw new FormatException(binPath, "has " + (size - expectedOffset) + " bytes after its last record",
                        FIX_CORRUPT);
            }
            return new Predictors(fingerprint, d, f, layers, lookahead, training);
        } catch (IOException e) {
            throw new FormatException(binPath, "cannot be read: " + e, "check that it is a readable file", e);
        }
    }

    /**
     * {@link #read(Path, String)}, then checks that the predictors fit the model: one per layer (and
     * none or one look-ahead per layer but the last), reading d and predicting f neurons.
     *
     * @throws FormatException naming predictors.bin when the shapes disagree with the model's
     */
    public static Predictors read(Path bundleDir, String expectedFingerprint, int layers, int d, int f) {
        Predictors p = read(bundleDir, expectedFingerprint);
        boolean anyPredictor = p.layers().stream().anyMatch(l -> !l.dense()) || p.hasLookahead();
        if (p.layers().size() != layers || (anyPredictor && (p.d() != d || p.f() != f))) {
            throw new FormatException(bundleDir.resolve(BIN), "holds predictors for " + p.layers().size()
                    + " layers of d " + p.d() + ", f " + p.f() + " but the model has " + layers + " layers of d " + d
                    + ", f " + f, FIX_RETRAIN);
        }
        return p;
    }

    private static void checkHeader(Path file, MemorySegment m, int jsonVersion, int layers, int d, int f, int lookahead) {
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
        if (version < 1) {
            throw new FormatException(file, "has predictors format version " + version + ", which never existed",
                    FIX_CORRUPT);
        }
        if (version != jsonVersion) {
            throw new FormatException(file, "has predictors format version " + version + " but predictors.json says "
                    + jsonVersion, FIX_CORRUPT);
        }
        CRC32C crc = new CRC32C();
        crc.update(m.asSlice(0, OFF_CRC).asByteBuffer());
        if ((int) crc.getValue() != m.get(U32, OFF_CRC)) {
            throw new FormatException(file, "has a header that fails its checksum", FIX_CORRUPT);
        }
        int hk = m.get(U32, OFF_LOOKAHEAD);
        if (version == 1 && hk != 0) {
            throw new FormatException(file, "has a non-zero reserved header field at byte " + OFF_LOOKAHEAD, FIX_CORRUPT);
        }
        if (hk != lookahead) {
            throw new FormatException(file, "header says " + Integer.toUnsignedString(hk) + " look-ahead records but"
                    + " predictors.json lists " + lookahead, FIX_CORRUPT);
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

    /**
     * Reads and checks layer {@code i}'s own record, or ({@code ahead}) the look-ahead record that reads
     * layer i's input and predicts layer i+1, against its json entry {@code e} and the header's d, f.
     */
    private static LayerPredictor readRecord(Path file, MemorySegment m, JsonFields r, JsonNode e, boolean ahead, int i,
                                             long expectedOffset, int d, int f) {
        String where = (ahead ? "lookahead[" : "layers[") + i + "]";
        // the layer field of a record: the layer whose neurons it predicts
        int target = ahead ? i + 1 : i;
        String name = ahead ? "layer " + i + "'s look-ahead predictor (for layer " + target + ")" : "layer " + i + "'s predictor";
        String recName = ahead ? "layer " + i + "'s look-ahead record (for layer " + target + ")" : "layer " + i + "'s record";
        if (ahead) {
            long source = r.integer(e, "source_layer", where + ".source_layer", 0, Long.MAX_VALUE);
            if (source != i) {
                throw new FormatException(r.file(), where + " reads layer " + source + ", should read layer " + i, r.fix());
            }
        }
        long layer = r.integer(e, "layer", where + ".layer", 0, Long.MAX_VALUE);
        boolean dense = r.bool(e, "dense", where + ".dense");
        long rank = r.integer(e, "rank", where + ".rank", 0, Integer.MAX_VALUE);
        float threshold = (float) r.number(e, "threshold", where + ".threshold");
        long parameters = r.integer(e, "parameters", where + ".parameters", 0, Long.MAX_VALUE);
        long offset = r.integer(e, "offset", where + ".offset", 0, Long.MAX_VALUE);
        long length = r.integer(e, "length", where + ".length", 0, Long.MAX_VALUE);
        int crc = r.crc(e, "crc32c", where + ".crc32c");
        if (layer != target || offset != expectedOffset) {
            throw new FormatException(r.file(), where + " (layer " + layer + " at offset " + offset + ") should be layer "
                    + target + " at offset " + expectedOffset, r.fix());
        }
        if (length < RECORD_OVERHEAD || offset > m.byteSize() || length > m.byteSize() - offset) {
            throw new FormatException(file, "is truncated: " + recName + " (bytes [" + offset + ", "
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
            throw new FormatException(file, name + " fails its checksum (crc32c "
                    + Checksums.hex(actual) + ", record says " + Checksums.hex(stored) + ", predictors.json says "
                    + Checksums.hex(crc) + ")", FIX_CORRUPT);
        }
        boolean shapeOk = recDense == 1
                ? recRank == 0 && recD == 0 && recF == 0
                : recDense == 0 && recRank >= 1 && recD == d && recF == f && d >= 1 && f >= 1;
        if (recLayer != target || !shapeOk) {
            throw new FormatException(file, recName + " says layer " + Integer.toUnsignedString(recLayer)
                    + ", dense " + recDense + ", rank " + Integer.toUnsignedString(recRank) + ", d "
                    + Integer.toUnsignedString(recD) + ", f " + Integer.toUnsignedString(recF) + "; expected layer " + target
                    + (recDense == 1 ? ", dense with no matrices" : ", d " + d + ", f " + f + ", rank >= 1"), FIX_CORRUPT);
        }
        long a = (long) recRank * recD;
        long b = (long) recF * recRank;
        long params = a + b + recF;
        if (RECORD_OVERHEAD + 4 * params != length || params != parameters || (recDense == 1) != dense
                || recRank != rank || Float.floatToRawIntBits(recThreshold) != Float.floatToRawIntBits(threshold)) {
            throw new FormatException(file, recName + " (dense " + recDense + ", rank " + recRank
                    + ", threshold " + recThreshold + ", " + params + " parameters, " + (RECORD_OVERHEAD + 4 * params)
                    + " bytes) disagrees with predictors.json (dense " + dense + ", rank " + rank + ", threshold "
                    + threshold + ", " + parameters + " parameters, " + length + " bytes)", FIX_CORRUPT);
        }
        if (recDense == 1) {
            return new LayerPredictor(target, true, 0, recThreshold, new float[0], new float[0], new float[0]);
        }
        long at = offset + RECORD_HEADER;
        float[] aw = floats(m, at, a);
        float[] bw = floats(m, at + 4 * a, b);
        float[] cw = floats(m, at + 4 * (a + b), recF);
        try {
            return new LayerPredictor(target, false, recRank, recThreshold, aw, bw, cw);
        } catch (IllegalArgumentException ex) {
            throw new FormatException(file, name + " is impossible: " + ex.getMessage(), FIX_CORRUPT,
                    ex);
        }
    }

    private static float[] floats(MemorySegment m, long offset, long count) {
        float[] out = new float[Math.toIntExact(count)];
        MemorySegment.copy(m, F32, offset, out, 0, out.length);
        return out;
    }
}
