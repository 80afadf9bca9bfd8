package dev.llmflash.formats.bundle;

import com.fasterxml.jackson.core.JacksonException;
import com.fasterxml.jackson.core.JsonProcessingException;
import com.fasterxml.jackson.core.StreamReadFeature;
import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.SerializationFeature;
import com.fasterxml.jackson.databind.json.JsonMapper;
import com.fasterxml.jackson.databind.node.ArrayNode;
import com.fasterxml.jackson.databind.node.ObjectNode;
import dev.llmflash.formats.FormatException;
import dev.llmflash.formats.JsonFields;
import dev.llmflash.formats.LlmflashException;
import dev.llmflash.formats.checkpoint.Checkpoint;
import dev.llmflash.formats.hf.FalconConfig;
import dev.llmflash.formats.hf.ModelConfig;
import dev.llmflash.formats.hf.OptConfig;
import dev.llmflash.formats.tensor.DType;
import dev.llmflash.formats.tensor.Tensor;

import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.channels.FileChannel;
import java.nio.file.AtomicMoveNotSupportedException;
import java.nio.file.Files;
import java.nio.file.NoSuchFileException;
import java.nio.file.Path;
import java.nio.file.StandardCopyOption;
import java.nio.file.StandardOpenOption;
import java.security.MessageDigest;
import java.time.Instant;
import java.time.format.DateTimeParseException;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.HashSet;
import java.util.List;
import java.util.Locale;
import java.util.Objects;
import java.util.Set;
import java.util.concurrent.ThreadLocalRandom;
import java.util.stream.Collectors;

/**
 * A bundle's {@code manifest.json}: what the bundle holds and how to check it (docs/FORMAT.md,
 * "manifest.json"). Written last by the converter, so a folder with a manifest is a complete bundle.
 *
 * <h2>Layout</h2>
 * <pre>
 * { "format": "llmflash-bundle", "version": 1 | 2, "created_by": "llmflash 0.1.0", "created_at": ISO-8601 instant,
 *   "config": { "model_type": "opt" | "falcon", every field of {@link OptConfig} / {@link FalconConfig} },
 *   "dtype": "F16",
 *   "quant": "q8" | "q4"            (version 2 only: a quantized bundle, see {@link Quantization})
 *   "source": { "path": "/abs/HF_DIR", "weights": "model.safetensors", "fingerprint": sha256 hex },
 *   "fingerprint": sha256 hex (see {@link #fingerprint}),
 *   "resident": { "file", "size", "tensors": [ {"name", "dtype", "shape", "offset", "length", "crc32c"} ] },
 *   "ffn": { "file", "size", "layout", "alignment", "layers", "d_model", "d_ffn", "dtype", "bundle_stride",
 *            "block_length", "up_offset", "down_offset", "up_names", "down_names",
 *            "blocks": [ {"layer", "offset", "length", "crc32c"} ] },
 *   "tokenizer": [ {"file", "size", "crc32c"} ] }
 * </pre>
 * CRC32Cs are 8 hex digits; sizes, offsets and lengths are bytes.
 * <p>Version 2 is a quantized bundle: ffn.dtype is Q8_0 or Q4_0, and resident tensors may have dtype
 * Q8_0 / Q4_0 with their logical shape; resident.safetensors stores those as U8
 * {@code [rows, dtype.rowBytes(cols)]} ({@link #storedShape}), "length" is their stored bytes. A
 * bundle without quantization is written as version 1, exactly as before, so older readers still
 * read it; a version-1 reader refuses a version-2 bundle ("newer than this llmflash reads").
 *
 * <h2>Validation at read</h2>
 * {@link #read} refuses, with one-line {@link FormatException}s: a format other than
 * {@value #FORMAT}; a version newer than {@value #VERSION} (or below 1); any missing or mistyped field;
 * file names that are not plain names; an ffn section whose geometry is impossible or disagrees with
 * the config, with its own offsets or with its block table; resident tensors whose length does not
 * match their shape or that lie outside the file; and a fingerprint that does not match the manifest's
 * content. Unknown extra fields are ignored (room for compatible additions within version 1).
 *
 * <p>Immutable value (the lists are unmodifiable copies); thread-safe.
 */
public record BundleManifest(String createdBy, Instant createdAt, ModelConfig config, DType dtype, Source source,
                             String fingerprint, Resident resident, Ffn ffn, List<TokenizerFile> tokenizer) {

    public static final String FILE_NAME = "manifest.json";
    public static final String FORMAT = "llmflash-bundle";
    /** The newest version this code reads and writes (quantized bundles); see {@link #VERSION_FLOAT}. */
    public static final int VERSION = 2;
    /** The version of bundles without quantization (unchanged since the first release). */
    public static final int VERSION_FLOAT = 1;
    /** Largest manifest read: a model with tens of thousands of tensors needs a few MB. */
    public static final long MAX_BYTES = 64L << 20;
    /** The placeholder in {@link Ffn#upNames()} / {@link Ffn#downNames()} for the layer index. */
    public static final String LAYER_PLACEHOLDER = "{layer}";

    private static final String FIX = "the manifest is corrupt or was edited; re-convert the model";
    private static final ObjectMapper JSON = JsonMapper.builder()
            .enable(StreamReadFeature.STRICT_DUPLICATE_DETECTION)
            .build();

    /**
     * Where the bundle came from.
     *
     * @param path        absolute path of the Hugging Face folder, as given to the converter
     * @param weights     the weights file read, relative to that folder ("model.safetensors", an index, ...)
     * @param fingerprint see {@link #sourceFingerprint}
     */
    public record Source(String path, String weights, String fingerprint) {
        public Source {
            Objects.requireNonNull(path, "path");
            Objects.requireNonNull(weights, "weights");
            Objects.requireNonNull(fingerprint, "fingerprint");
        }
    }

    /** {@code resident.safetensors} and its tensor table, in file order. */
    public record Resident(String file, long size, List<ResidentTensor> tensors) {
        public Resident {
            Objects.requireNonNull(file, "file");
            tensors = List.copyOf(tensors);
        }
    }

    /**
     * One tensor of {@code resident.safetensors}.
     *
     * @param offset absolute byte offset of its first byte in the file (8 + N + begin)
     * @param length its bytes: numel * dtype size
     */
    public record ResidentTensor(String name, DType dtype, long[] shape, long offset, long length, int crc32c) {
        public ResidentTensor {
            Objects.requireNonNull(name, "name");
            Objects.requireNonNull(dtype, "dtype");
            shape = shape.clone();
        }

        @Override
        public long[] shape() {
            return shape.clone();
        }

        @Override
        public boolean equals(Object o) {
            return o instanceof ResidentTensor t && name.equals(t.name) && dtype == t.dtype
                    && Arrays.equals(shape, t.shape) && offset == t.offset && length == t.length && crc32c == t.crc32c;
        }

        @Override
        public int hashCode() {
            return Objects.hash(name, dtype, Arrays.hashCode(shape), offset, length, crc32c);
        }

        @Override
        public String toString() {
            return "ResidentTensor[" + name + " " + dtype + Arrays.toString(shape) + " @" + offset + "+" + length
                    + " crc32c " + Checksums.hex(crc32c) + "]";
        }
    }

    /**
     * {@code ffn.bin}'s description; mirrors its header (see {@link FfnFile}) plus the block table.
     *
     * @param bundleStride bundled: the bundle stride; split: the row stride (d * bytes)
     * @param upOffset     bundled: offset of the up row within a bundle; split: of the up matrix within a block
     * @param downOffset   bundled: of the down column within a bundle; split: of the down matrix within a block
     * @param upNames      the HF name of the up projection, with {@value #LAYER_PLACEHOLDER} for the layer
     * @param downNames    likewise for the down projection
     */
    public record Ffn(String file, long size, FfnLayout layout, int alignment, int layers, int dModel, int dFfn,
                      DType dtype, long bundleStride, long blockLength, long upOffset, long downOffset,
                      String upNames, String downNames, List<Block> blocks) {
        public Ffn {
            Objects.requireNonNull(file, "file");
            Objects.requireNonNull(layout, "layout");
            Objects.requireNonNull(dtype, "dtype");
            Objects.requireNonNull(upNames, "upNames");
            Objects.requireNonNull(downNames, "downNames");
            blocks = List.copyOf(blocks);
        }

        /**
         * The section for a file of geometry {@code g}, with its block table.
         */
        public static Ffn of(String file, FfnGeometry g, String upNames, String downNames, List<Block> blocks) {
            return new Ffn(file, g.fileSize(), g.layout(), g.alignment(), g.layers(), g.dModel(), g.dFfn(),
                    g.dtype(), g.stride(), g.blockLength(), g.upOffset(), g.downOffset(), upNames, downNames, blocks);
        }

        /**
         * The layout arithmetic these numbers describe.
         *
         * @throws IllegalArgumentException if they describe no possible file
         */
        public FfnGeometry geometry() {
            return new FfnGeometry(layout, dtype, layers, dModel, dFfn, alignment, bundleStride, blockLength);
        }

        /** The HF name of layer {@code layer}'s up projection weight. */
        public String upName(int layer) {
            return upNames.replace(LAYER_PLACEHOLDER, Integer.toString(layer));
        }

        /** The HF name of layer {@code layer}'s down projection weight. */
        public String downName(int layer) {
            return downNames.replace(LAYER_PLACEHOLDER, Integer.toString(layer));
        }
    }

    /** One layer's block in {@code ffn.bin}: absolute offset, length (without padding), CRC32C. */
    public record Block(int layer, long offset, long length, int crc32c) {
    }

    /** A file copied byte for byte from the source folder (tokenizer files, generation_config.json). */
    public record TokenizerFile(String file, long size, int crc32c) {
        public TokenizerFile {
            Objects.requireNonNull(file, "file");
        }
    }

    /** The quantization of this bundle's weights (from its FFN dtype). */
    public Quantization quant() {
        return Quantization.ofFfn(ffn.dtype());
    }

    /** The format version this manifest is written with: 2 if quantized, else 1. */
    public int version() {
        return quant() == Quantization.NONE ? VERSION_FLOAT : VERSION;
    }

    /**
     * How resident.safetensors stores a tensor of this dtype and shape: the shape itself for the
     * plain dtypes; {@code [rows..., dtype.rowBytes(cols)]} (as U8) for the quantized ones.
     */
    public static long[] storedShape(DType dtype, long[] shape) {
        if (!dtype.isQuantized()) {
            return shape.clone();
        }
        long[] s = shape.clone();
        s[s.length - 1] = dtype.rowBytes(s[s.length - 1]);
        return s;
    }

    /** The safetensors dtype a tensor of this dtype is stored as: U8 for the quantized ones. */
    public static DType storedDType(DType dtype) {
        return dtype.isQuantized() ? DType.U8 : dtype;
    }

    public BundleManifest {
        Objects.requireNonNull(createdBy, "createdBy");
        Objects.requireNonNull(createdAt, "createdAt");
        Objects.requireNonNull(config, "config");
        Objects.requireNonNull(dtype, "dtype");
        Objects.requireNonNull(source, "source");
        Objects.requireNonNull(fingerprint, "fingerprint");
        Objects.requireNonNull(resident, "resident");
        Objects.requireNonNull(ffn, "ffn");
        tokenizer = List.copyOf(tokenizer);
    }

    // ------------------------------------------------------------------------------------------------
    // Fingerprints

    /**
     * The bundle's fingerprint: SHA-256, as 64 lower-case hex digits, of the UTF-8 text
     * <pre>
     * config {canonical config JSON}\n
     * dtype F16\n
     * layout bundled\n
     * tensor {name} {crc32c}\n      for each resident tensor, in manifest order
     * block {layer} {crc32c}\n      for each FFN block, in order
     * </pre>
     * where the canonical config JSON is {@link #canonicalConfig}. It identifies the converted weights:
     * the same model converted twice to the same dtype and layout gets the same fingerprint.
     */
    public static String fingerprint(ModelConfig config, DType dtype, FfnLayout layout, List<ResidentTensor> tensors,
                                     List<Block> blocks) {
        MessageDigest sha = Checksums.sha256();
        Checksums.update(sha, "config " + canonicalConfig(config) + "\n");
        Checksums.update(sha, "dtype " + dtype.name() + "\n");
        Checksums.update(sha, "layout " + layout.jsonName() + "\n");
        for (ResidentTensor t : tensors) {
            Checksums.update(sha, "tensor " + t.name() + " " + Checksums.hex(t.crc32c()) + "\n");
        }
        for (Block b : blocks) {
            Checksums.update(sha, "block " + b.layer() + " " + Checksums.hex(b.crc32c()) + "\n");
        }
        return Checksums.hex(sha);
    }

    /**
     * The source's fingerprint: SHA-256 over {@code config.json}'s bytes, then for each tensor in name
     * order the UTF-8 line {@code name|DTYPE|[d0,d1,...]|byteLength\n}. Cheap (no weight bytes are read):
     * it tells which checkpoint a bundle came from, not whether its weights were intact.
     */
    public static String sourceFingerprint(byte[] configJson, Checkpoint weights) {
        MessageDigest sha = Checksums.sha256();
        sha.update(configJson);
        for (String name : weights.tensorNames()) {
            Tensor t = weights.tensor(name);
            String shape = Arrays.stream(t.shape()).mapToObj(Long::toString).collect(Collectors.joining(",", "[", "]"));
            Checksums.update(sha, name + "|" + t.dtype().name() + "|" + shape + "|" + t.data().byteSize() + "\n");
        }
        return Checksums.hex(sha);
    }

    // ------------------------------------------------------------------------------------------------
    // Writing

    /** The manifest as indented UTF-8 JSON, fields in the documented order. */
    public byte[] toJson() {
        ObjectNode root = JSON.createObjectNode();
        root.put("format", FORMAT);
        root.put("version", version());
        root.put("created_by", createdBy);
        root.put("created_at", createdAt.toString());
        root.set("config", configJson(config));
        root.put("dtype", dtype.name());
        if (quant() != Quantization.NONE) {
            root.put("quant", quant().jsonName());
        }
        ObjectNode src = root.putObject("source");
        src.put("path", source.path());
        src.put("weights", source.weights());
        src.put("fingerprint", source.fingerprint());
        root.put("fingerprint", fingerprint);
        ObjectNode res = root.putObject("resident");
        res.put("file", resident.file());
        res.put("size", resident.size());
        ArrayNode tensors = res.putArray("tensors");
        for (ResidentTensor t : resident.tensors()) {
            ObjectNode n = tensors.addObject();
            n.put("name", t.name());
            n.put("dtype", t.dtype().name());
            ArrayNode shape = n.putArray("shape");
            for (long d : t.shape()) {
                shape.add(d);
            }
            n.put("offset", t.offset());
            n.put("length", t.length());
            n.put("crc32c", Checksums.hex(t.crc32c()));
        }
        ObjectNode f = root.putObject("ffn");
        f.put("file", ffn.file());
        f.put("size", ffn.size());
        f.put("layout", ffn.layout().jsonName());
        f.put("alignment", ffn.alignment());
        f.put("layers", ffn.layers());
        f.put("d_model", ffn.dModel());
        f.put("d_ffn", ffn.dFfn());
        f.put("dtype", ffn.dtype().name());
        f.put("bundle_stride", ffn.bundleStride());
        f.put("block_length", ffn.blockLength());
        f.put("up_offset", ffn.upOffset());
        f.put("down_offset", ffn.downOffset());
        f.put("up_names", ffn.upNames());
        f.put("down_names", ffn.downNames());
        ArrayNode blocks = f.putArray("blocks");
        for (Block b : ffn.blocks()) {
            blocks.addObject().put("layer", b.layer()).put("offset", b.offset()).put("length", b.length())
                    .put("crc32c", Checksums.hex(b.crc32c()));
        }
        ArrayNode tok = root.putArray("tokenizer");
        for (TokenizerFile t : tokenizer) {
            tok.addObject().put("file", t.file()).put("size", t.size()).put("crc32c", Checksums.hex(t.crc32c()));
        }
        try {
            return JSON.writer().with(SerializationFeature.INDENT_OUTPUT).writeValueAsBytes(root);
        } catch (JsonProcessingException e) {
            throw new IllegalStateException("cannot serialize a tree of strings and numbers", e);
        }
    }

    /**
     * Writes the manifest to {@code file} atomically: a temporary file in the same folder, forced to
     * disk, then renamed over {@code file}.
     *
     * @throws LlmflashException if it cannot be written; {@code file} is then unchanged
     */
    public void write(Path file) {
        Path target = file.toAbsolutePath();
        Path tmp = target.resolveSibling("." + target.getFileName() + "."
                + Long.toHexString(ThreadLocalRandom.current().nextLong()) + ".tmp");
        boolean moved = false;
        try {
            try (FileChannel ch = FileChannel.open(tmp, StandardOpenOption.CREATE_NEW, StandardOpenOption.WRITE)) {
                ByteBuffer bb = ByteBuffer.wrap(toJson());
                while (bb.hasRemaining()) {
                    ch.write(bb);
                }
                ch.force(true);
            }
            try {
                Files.move(tmp, target, StandardCopyOption.ATOMIC_MOVE, StandardCopyOption.REPLACE_EXISTING);
            } catch (AtomicMoveNotSupportedException e) {
                Files.move(tmp, target, StandardCopyOption.REPLACE_EXISTING);
            }
            moved = true;
        } catch (IOException e) {
            throw new LlmflashException("cannot write " + target + ": " + e + " (check free disk space and write"
                    + " permission on " + target.getParent() + ")", e);
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

    /** The config as the manifest writes it: "model_type" first, then every record field, snake_case. */
    public static ObjectNode configJson(ModelConfig config) {
        ObjectNode n = JSON.createObjectNode();
        n.put("model_type", config.modelType());
        switch (config) {
            case OptConfig c -> {
                n.put("vocab_size", c.vocabSize());
                n.put("hidden_size", c.hiddenSize());
                n.put("num_layers", c.numLayers());
                n.put("num_heads", c.numHeads());
                n.put("ffn_size", c.ffnSize());
                n.put("max_positions", c.maxPositions());
                n.put("word_embed_proj_dim", c.wordEmbedProjDim());
                n.put("layer_norm_before", c.layerNormBefore());
                n.put("final_layer_norm", c.finalLayerNorm());
                n.put("enable_bias", c.enableBias());
                n.put("layer_norm_elementwise_affine", c.layerNormElementwiseAffine());
                n.put("activation", c.activation());
                n.put("tie_word_embeddings", c.tieWordEmbeddings());
                n.put("bos_token_id", c.bosTokenId());
                n.put("eos_token_id", c.eosTokenId());
                n.put("pad_token_id", c.padTokenId());
            }
            case FalconConfig c -> {
                n.put("vocab_size", c.vocabSize());
                n.put("hidden_size", c.hiddenSize());
                n.put("num_layers", c.numLayers());
                n.put("num_heads", c.numHeads());
                n.put("num_kv_heads", c.numKvHeads());
                n.put("ffn_size", c.ffnSize());
                n.put("max_positions", c.maxPositions());
                n.put("qkv_layout", c.qkvLayout().name().toLowerCase(Locale.ROOT));
                n.put("parallel_attn", c.parallelAttn());
                n.put("ln_per_block", c.lnPerBlock());
                n.put("bias", c.bias());
                n.put("layer_norm_epsilon", c.layerNormEpsilon());
                n.put("activation", c.activation());
                n.put("rope_theta", c.ropeTheta());
                n.put("tie_word_embeddings", c.tieWordEmbeddings());
                n.put("bos_token_id", c.bosTokenId());
                n.put("eos_token_id", c.eosTokenId());
            }
        }
        return n;
    }

    /** {@link #configJson} as compact JSON text (no spaces), the form the fingerprint hashes. */
    public static String canonicalConfig(ModelConfig config) {
        try {
            return JSON.writeValueAsString(configJson(config));
        } catch (JsonProcessingException e) {
            throw new IllegalStateException("cannot serialize a tree of strings and numbers", e);
        }
    }

    // ------------------------------------------------------------------------------------------------
    // Reading

    /**
     * Reads and validates {@code file} (see the class comment).
     *
     * @throws FormatException naming the file and the first problem
     */
    public static BundleManifest read(Path file) {
        byte[] bytes;
        try {
            long size = Files.size(file);
            if (size > MAX_BYTES) {
                throw new FormatException(file, "is " + size + " bytes, more than the " + MAX_BYTES
                        + " a manifest may have", FIX);
            }
            bytes = Files.readAllBytes(file);
        } catch (NoSuchFileException e) {
            throw new FormatException(file, "does not exist", "the folder is not a complete bundle; re-convert the"
                    + " model", e);
        } catch (IOException e) {
            throw new FormatException(file, "cannot be read: " + e, "check that it is a readable file", e);
        }
        return parse(bytes, file);
    }

    /**
     * Parses and validates manifest JSON; {@code file} names it in errors.
     *
     * @throws FormatException naming the file and the first problem
     */
    public static BundleManifest parse(byte[] json, Path file) {
        return parse(json, file, VERSION);
    }

    /**
     * {@link #parse(byte[], Path)} as a reader that knows versions up to {@code readable} reads it
     * (what a version-1 llmflash says of a quantized bundle: the version rule, testable).
     */
    public static BundleManifest parse(byte[] json, Path file, int readable) {
        JsonNode root;
        try {
            root = JSON.readTree(json);
        } catch (JacksonException e) {
            throw new FormatException(file, "is not valid JSON: " + e.getOriginalMessage().lines().findFirst().orElse(""),
                    FIX, e);
        } catch (IOException e) {
            throw new IllegalStateException("reading JSON from bytes cannot fail with I/O", e);
        }
        if (root == null || !root.isObject()) {
            throw new FormatException(file, "is not a JSON object", FIX);
        }
        Fields r = new Fields(file);
        JsonNode format = root.get("format");
        if (format == null || !format.isTextual() || !format.textValue().equals(FORMAT)) {
            throw new FormatException(file, "is not an llmflash bundle manifest (its \"format\" is "
                    + (format == null ? "missing" : format.toString()) + ", not \"" + FORMAT + "\")",
                    "point llmflash at a bundle made by 'llmflash convert', or at a Hugging Face model folder");
        }
        long version = r.integer(root, "version", "version", Long.MIN_VALUE, Long.MAX_VALUE);
        if (version > readable) {
            throw new FormatException(file, "bundle format version " + version + " is newer than this llmflash reads ("
                    + readable + ")", "upgrade llmflash or re-convert with this version");
        }
        if (version < 1) {
            throw new FormatException(file, "has bundle format version " + version + ", which never existed", FIX);
        }
        String createdBy = r.text(root, "created_by", "created_by");
        String createdAtText = r.text(root, "created_at", "created_at");
        Instant createdAt;
        try {
            createdAt = Instant.parse(createdAtText);
        } catch (DateTimeParseException e) {
            throw new FormatException(file, "field 'created_at' is not an ISO-8601 instant: \"" + createdAtText + "\"",
                    FIX, e);
        }
        ModelConfig config = r.config(r.object(root, "config", "config"));
        DType dtype = r.computeDType(root, "dtype", "dtype");

        JsonNode src = r.object(root, "source", "source");
        Source source = new Source(r.text(src, "path", "source.path"), r.text(src, "weights", "source.weights"),
                r.sha256(src, "fingerprint", "source.fingerprint"));
        String fingerprint = r.sha256(root, "fingerprint", "fingerprint");

        JsonNode res = r.object(root, "resident", "resident");
        String residentFile = r.fileName(res, "file", "resident.file");
        long residentSize = r.integer(res, "size", "resident.size", 0, Long.MAX_VALUE);
        List<ResidentTensor> tensors = new ArrayList<>();
        Set<String> names = new HashSet<>();
        JsonNode tensorArray = r.array(res, "tensors", "resident.tensors");
        for (int i = 0; i < tensorArray.size(); i++) {
            String where = "resident.tensors[" + i + "]";
            JsonNode t = r.element(tensorArray, i, where);
            String name = r.text(t, "name", where + ".name");
            if (!names.add(name)) {
                throw new FormatException(file, "lists resident tensor '" + name + "' twice", FIX);
            }
            DType td = r.weightDType(t, "dtype", where + ".dtype");
            if (td.isQuantized() && version < VERSION) {
                throw new FormatException(file, "resident tensor '" + name + "' is " + td + " in a version " + version
                        + " bundle (quantized tensors need version " + VERSION + ")", FIX);
            }
            long[] shape = r.shape(t, "shape", where + ".shape");
            long offset = r.integer(t, "offset", where + ".offset", 0, Long.MAX_VALUE);
            long length = r.integer(t, "length", where + ".length", 0, Long.MAX_VALUE);
            int crc = r.crc(t, "crc32c", where + ".crc32c");
            long expected;
            try {
                expected = td.storageBytes(shape);
            } catch (IllegalArgumentException e) {
                throw new FormatException(file, "resident tensor '" + name + "' cannot be " + td + Arrays.toString(shape)
                        + ": " + e.getMessage(), FIX, e);
            } catch (ArithmeticException e) {
                throw new FormatException(file, "resident tensor '" + name + "' has a shape whose size overflows", FIX, e);
            }
            if (length != expected) {
                throw new FormatException(file, "resident tensor '" + name + "' has length " + length + " but "
                        + td + Arrays.toString(shape) + " needs " + expected + " bytes", FIX);
            }
            if (offset < 8 || offset > residentSize || length > residentSize - offset) {
                throw new FormatException(file, "resident tensor '" + name + "' (bytes [" + offset + ", "
                        + (offset + length) + ")) lies outside " + residentFile + "'s " + residentSize + " bytes", FIX);
            }
            tensors.add(new ResidentTensor(name, td, shape, offset, length, crc));
        }
        Resident resident = new Resident(residentFile, residentSize, tensors);

        Ffn ffn = r.ffn(r.object(root, "ffn", "ffn"));
        if (ffn.file().equals(residentFile) || ffn.file().equals(FILE_NAME) || residentFile.equals(FILE_NAME)) {
            throw new FormatException(file, "names the same file twice (resident '" + residentFile + "', ffn '"
                    + ffn.file() + "')", FIX);
        }
        if (ffn.layers() != config.numLayers() || ffn.dModel() != config.hiddenSize()
                || ffn.dFfn() != config.ffnSize()) {
            throw new FormatException(file, "ffn section (layers " + ffn.layers() + ", d_model " + ffn.dModel()
                    + ", d_ffn " + ffn.dFfn() + ") disagrees with the config (" + config.numLayers() + ", "
                    + config.hiddenSize() + ", " + config.ffnSize() + ")", FIX);
        }
        if (ffn.dtype().isQuantized()) {
            if (version < VERSION) {
                throw new FormatException(file, "ffn.dtype " + ffn.dtype() + " in a version " + version
                        + " bundle (quantized bundles are version " + VERSION + ")", FIX);
            }
            Quantization q = Quantization.ofFfn(ffn.dtype());
            String quant = r.text(root, "quant", "quant");
            if (!quant.equals(q.jsonName())) {
                throw new FormatException(file, "field 'quant' is \"" + quant + "\" but ffn.dtype " + ffn.dtype()
                        + " means \"" + q.jsonName() + "\"", FIX);
            }
        } else if (ffn.dtype() != dtype) {
            throw new FormatException(file, "ffn.dtype " + ffn.dtype() + " differs from the bundle dtype " + dtype, FIX);
        }

        List<TokenizerFile> tokenizer = new ArrayList<>();
        Set<String> tokNames = new HashSet<>(List.of(FILE_NAME, residentFile, ffn.file()));
        JsonNode tokArray = r.array(root, "tokenizer", "tokenizer");
        for (int i = 0; i < tokArray.size(); i++) {
            String where = "tokenizer[" + i + "]";
            JsonNode t = r.element(tokArray, i, where);
            String name = r.fileName(t, "file", where + ".file");
            if (!tokNames.add(name)) {
                throw new FormatException(file, "lists file '" + name + "' twice", FIX);
            }
            tokenizer.add(new TokenizerFile(name, r.integer(t, "size", where + ".size", 0, Long.MAX_VALUE),
                    r.crc(t, "crc32c", where + ".crc32c")));
        }

        String recomputed = fingerprint(config, dtype, ffn.layout(), tensors, ffn.blocks());
        if (!recomputed.equals(fingerprint)) {
            throw new FormatException(file, "has fingerprint " + fingerprint + " but its content hashes to "
                    + recomputed, FIX);
        }
        return new BundleManifest(createdBy, createdAt, config, dtype, source, fingerprint, resident, ffn, tokenizer);
    }

    /**
     * Typed access to the manifest's JSON fields: the generic readers of {@link JsonFields} plus the
     * manifest's own sections; every problem is a one-line FormatException naming the field.
     */
    private static final class Fields extends JsonFields {

        Fields(Path file) {
            super(file, FIX);
        }

        /** A dtype name as resident tensors and ffn.dtype may have it: plain or block-quantized. */
        DType weightDType(JsonNode parent, String key, String where) {
            String s = text(parent, key, where);
            DType d = DType.fromName(s);
            if (d == null) {
                throw new FormatException(file, "field '" + where + "' names unknown dtype \"" + s + "\"", FIX);
            }
            return d;
        }

        DType computeDType(JsonNode parent, String key, String where) {
            DType d = dtype(parent, key, where);
            if (!d.isComputeType()) {
                throw new FormatException(file, "field '" + where + "' is " + d + "; a bundle holds F32, F16 or BF16",
                        FIX);
            }
            return d;
        }

        ModelConfig config(JsonNode c) {
            String type = text(c, "model_type", "config.model_type");
            ModelConfig config = switch (type) {
                case "opt" -> new OptConfig(positive(c, "vocab_size"), positive(c, "hidden_size"),
                        positive(c, "num_layers"), positive(c, "num_heads"), positive(c, "ffn_size"),
                        positive(c, "max_positions"), positive(c, "word_embed_proj_dim"),
                        bool(c, "layer_norm_before", "config.layer_norm_before"),
                        bool(c, "final_layer_norm", "config.final_layer_norm"),
                        bool(c, "enable_bias", "config.enable_bias"),
                        bool(c, "layer_norm_elementwise_affine", "config.layer_norm_elementwise_affine"),
                        activation(c), bool(c, "tie_word_embeddings", "config.tie_word_embeddings"),
                        anyInt(c, "bos_token_id", "config.bos_token_id"),
                        anyInt(c, "eos_token_id", "config.eos_token_id"),
                        anyInt(c, "pad_token_id", "config.pad_token_id"));
                case "falcon" -> {
                    String layoutName = text(c, "qkv_layout", "config.qkv_layout");
                    FalconConfig.QkvLayout layout = Arrays.stream(FalconConfig.QkvLayout.values())
                            .filter(l -> l.name().toLowerCase(Locale.ROOT).equals(layoutName)).findFirst()
                            .orElseThrow(() -> new FormatException(file, "field 'config.qkv_layout' is \"" + layoutName
                                    + "\", not grouped, multi_query or interleaved", FIX));
                    int lnPerBlock = positive(c, "ln_per_block");
                    if (lnPerBlock > 2) {
                        throw new FormatException(file, "field 'config.ln_per_block' is " + lnPerBlock
                                + ", not 1 or 2", FIX);
                    }
                    yield new FalconConfig(positive(c, "vocab_size"), positive(c, "hidden_size"),
                            positive(c, "num_layers"), positive(c, "num_heads"), positive(c, "num_kv_heads"),
                            positive(c, "ffn_size"), positive(c, "max_positions"), layout,
                            bool(c, "parallel_attn", "config.parallel_attn"), lnPerBlock,
                            bool(c, "bias", "config.bias"),
                            (float) number(c, "layer_norm_epsilon", "config.layer_norm_epsilon"), activation(c),
                            number(c, "rope_theta", "config.rope_theta"),
                            bool(c, "tie_word_embeddings", "config.tie_word_embeddings"),
                            anyInt(c, "bos_token_id", "config.bos_token_id"),
                            anyInt(c, "eos_token_id", "config.eos_token_id"));
                }
                default -> throw new FormatException(file, "field 'config.model_type' is \"" + type
                        + "\"; a bundle holds an opt or falcon model", FIX);
            };
            if (config.hiddenSize() % config.numHeads() != 0) {
                throw new FormatException(file, "config hidden_size " + config.hiddenSize()
                        + " is not divisible by num_heads " + config.numHeads(), FIX);
            }
            return config;
        }

        private int positive(JsonNode c, String key) {
            return int32(c, key, "config." + key, 1);
        }

        private String activation(JsonNode c) {
            String a = text(c, "activation", "config.activation");
            if (!a.equals("relu") && !a.equals("gelu")) {
                throw new FormatException(file, "field 'config.activation' is \"" + a + "\", not relu or gelu", FIX);
            }
            return a;
        }

        Ffn ffn(JsonNode f) {
            String ffnFile = fileName(f, "file", "ffn.file");
            long size = integer(f, "size", "ffn.size", 0, Long.MAX_VALUE);
            String layoutName = text(f, "layout", "ffn.layout");
            FfnLayout layout = FfnLayout.fromJsonName(layoutName);
            if (layout == null) {
                throw new FormatException(file, "field 'ffn.layout' is \"" + layoutName + "\", not bundled or split", FIX);
            }
            int alignment = int32(f, "alignment", "ffn.alignment", 1);
            int layers = int32(f, "layers", "ffn.layers", 1);
            int d = int32(f, "d_model", "ffn.d_model", 1);
            int dFfn = int32(f, "d_ffn", "ffn.d_ffn", 1);
            DType dtype = weightDType(f, "dtype", "ffn.dtype");
            if (!dtype.isWeightType()) {
                throw new FormatException(file, "field 'ffn.dtype' is " + dtype + "; ffn.bin holds F32, F16, BF16, Q8_0"
                        + " or Q4_0", FIX);
            }
            long stride = integer(f, "bundle_stride", "ffn.bundle_stride", 1, Long.MAX_VALUE);
            long blockLength = integer(f, "block_length", "ffn.block_length", 1, Long.MAX_VALUE);
            long upOffset = integer(f, "up_offset", "ffn.up_offset", 0, Long.MAX_VALUE);
            long downOffset = integer(f, "down_offset", "ffn.down_offset", 0, Long.MAX_VALUE);
            String upNames = names(f, "up_names");
            String downNames = names(f, "down_names");
            FfnGeometry g;
            try {
                g = new FfnGeometry(layout, dtype, layers, d, dFfn, alignment, stride, blockLength);
            } catch (IllegalArgumentException e) {
                throw new FormatException(file, "ffn section describes an impossible file: " + e.getMessage(), FIX, e);
            }
            if (upOffset != g.upOffset() || downOffset != g.downOffset()) {
                throw new FormatException(file, "ffn up_offset/down_offset " + upOffset + "/" + downOffset
                        + " disagree with the " + layout.jsonName() + " layout's " + g.upOffset() + "/" + g.downOffset(),
                        FIX);
            }
            if (size != g.fileSize()) {
                throw new FormatException(file, "ffn.size " + size + " is not the " + g.fileSize()
                        + " bytes its layout needs", FIX);
            }
            JsonNode blockArray = array(f, "blocks", "ffn.blocks");
            if (blockArray.size() != layers) {
                throw new FormatException(file, "ffn.blocks lists " + blockArray.size() + " blocks for " + layers
                        + " layers", FIX);
            }
            List<Block> blocks = new ArrayList<>();
            for (int i = 0; i < layers; i++) {
                String where = "ffn.blocks[" + i + "]";
                JsonNode b = element(blockArray, i, where);
                long layer = integer(b, "layer", where + ".layer", 0, Long.MAX_VALUE);
                long offset = integer(b, "offset", where + ".offset", 0, Long.MAX_VALUE);
                long length = integer(b, "length", where + ".length", 0, Long.MAX_VALUE);
                int crc = crc(b, "crc32c", where + ".crc32c");
                if (layer != i || offset != g.blockOffset(i) || length != g.blockLength()) {
                    throw new FormatException(file, where + " (layer " + layer + ", offset " + offset + ", length "
                            + length + ") should be layer " + i + " at offset " + g.blockOffset(i) + ", length "
                            + g.blockLength(), FIX);
                }
                blocks.add(new Block(i, offset, length, crc));
            }
            return new Ffn(ffnFile, size, layout, alignment, layers, d, dFfn, dtype, stride, blockLength, upOffset,
                    downOffset, upNames, downNames, blocks);
        }

        private String names(JsonNode f, String key) {
            String s = text(f, key, "ffn." + key);
            if (!s.contains(LAYER_PLACEHOLDER)) {
                throw new FormatException(file, "field 'ffn." + key + "' (\"" + s + "\") has no " + LAYER_PLACEHOLDER
                        + " placeholder", FIX);
            }
            return s;
        }
    }
}
