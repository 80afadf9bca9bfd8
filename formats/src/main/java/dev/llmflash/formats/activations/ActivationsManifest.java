package dev.llmflash.formats.activations;

import com.fasterxml.jackson.core.JsonProcessingException;
import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.SerializationFeature;
import com.fasterxml.jackson.databind.node.ArrayNode;
import com.fasterxml.jackson.databind.node.ObjectNode;
import dev.llmflash.formats.AtomicFile;
import dev.llmflash.formats.FormatException;
import dev.llmflash.formats.JsonFields;
import dev.llmflash.formats.bundle.Checksums;

import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Comparator;
import java.util.HashSet;
import java.util.List;
import java.util.Objects;
import java.util.Set;

/**
 * A recording's {@code activations.json} (docs/FORMAT.md, "Recorded activations"). Rewritten atomically
 * after every chunk the writer adds, so that a crashed recording can be resumed; {@code complete} is set
 * by {@link ActivationWriter#finish()}.
 *
 * <h2>Layout</h2>
 * <pre>
 * { "format": "llmflash-activations", "version": 1, "complete": true,
 *   "bundle_fingerprint": sha256 hex, "d_model": d, "d_ffn": f, "layers": n,
 *   "text": { "source": "wiki.txt", "sha256": sha256 hex },
 *   "tokens": T (tokens recorded by every layer), "chunk_tokens": N (the writer's chunk size),
 *   "chunks": [ { "file": "layer-00-chunk-0000.bin", "layer": 0, "first_token": 0, "tokens": 4096,
 *                 "size": bytes, "crc32c": CRC32C of the whole chunk file, 8 hex digits }, ... ] }
 * </pre>
 *
 * <h2>Validation at read</h2>
 * Format, version (newer refused), every field present and typed; chunk file names plain and unique;
 * layers in range; each layer's chunks contiguous from token 0 (in table order); every size equal to
 * {@link ActivationChunk#size}; {@code tokens} equal to the smallest layer total, and, when complete,
 * every layer holding exactly {@code tokens}. Unknown extra fields are ignored.
 *
 * <p>Immutable value (the chunk list is an unmodifiable copy); thread-safe.
 */
public record ActivationsManifest(RecordingInfo info, boolean complete, int chunkTokens, List<Chunk> chunks) {

    public static final String FILE_NAME = "activations.json";
    public static final String FORMAT = "llmflash-activations";
    public static final int VERSION = 1;
    static final long MAX_BYTES = 64L << 20;
    static final String FIX = "activations.json is corrupt or was edited; record the activations again";

    /** One chunk file of the table; {@code tokens} tokens of {@code layer} from {@code firstToken}. */
    public record Chunk(String file, int layer, long firstToken, int tokens, long size, int crc32c) {
        public Chunk {
            Objects.requireNonNull(file, "file");
        }

        ActivationChunk.Header header(RecordingInfo info) {
            return new ActivationChunk.Header(layer, firstToken, tokens, info.d(), info.f());
        }
    }

    public ActivationsManifest {
        Objects.requireNonNull(info, "info");
        chunks = List.copyOf(chunks);
    }

    /** Tokens recorded for {@code layer}: the sum of its chunks. */
    public long tokens(int layer) {
        long n = 0;
        for (Chunk c : chunks) {
            if (c.layer() == layer) {
                n += c.tokens();
            }
        }
        return n;
    }

    /** Tokens recorded by every layer: the smallest layer total. */
    public long tokensRecorded() {
        long min = Long.MAX_VALUE;
        for (int l = 0; l < info.layers(); l++) {
            min = Math.min(min, tokens(l));
        }
        return min;
    }

    /** {@code layer}'s chunks, in token order. */
    public List<Chunk> chunks(int layer) {
        return chunks.stream().filter(c -> c.layer() == layer).sorted(Comparator.comparingLong(Chunk::firstToken))
                .toList();
    }

    /** The manifest as indented UTF-8 JSON, fields in the documented order. */
    public byte[] toJson() {
        ObjectNode root = JsonFields.JSON.createObjectNode();
        root.put("format", FORMAT);
        root.put("version", VERSION);
        root.put("complete", complete);
        root.put("bundle_fingerprint", info.bundleFingerprint());
        root.put("d_model", info.d());
        root.put("d_ffn", info.f());
        root.put("layers", info.layers());
        root.putObject("text").put("source", info.textSource()).put("sha256", info.textSha256());
        root.put("tokens", tokensRecorded());
        root.put("chunk_tokens", chunkTokens);
        ArrayNode table = root.putArray("chunks");
        for (Chunk c : chunks) {
            table.addObject().put("file", c.file()).put("layer", c.layer()).put("first_token", c.firstToken())
                    .put("tokens", c.tokens()).put("size", c.size()).put("crc32c", Checksums.hex(c.crc32c()));
        }
        try {
            return JsonFields.JSON.writer().with(SerializationFeature.INDENT_OUTPUT).writeValueAsBytes(root);
        } catch (JsonProcessingException e) {
            throw new IllegalStateException("cannot serialize a tree of strings and numbers", e);
        }
    }

    /** Writes {@code dir/activations.json} atomically (temporary file, forced, renamed). */
    public void write(Path dir) {
        AtomicFile.write(dir.resolve(FILE_NAME), toJson());
    }

    /**
     * Reads and validates {@code file} (see the class comment).
     *
     * @throws FormatException naming the file and the first problem
     */
    public static ActivationsManifest read(Path file) {
        JsonFields r = new JsonFields(file, FIX);
        JsonNode root = r.readObject(MAX_BYTES, "the folder holds no recording; record the activations first");
        r.formatAndVersion(root, FORMAT, VERSION, "upgrade llmflash, or record the activations again with this version");
        boolean complete = r.bool(root, "complete", "complete");
        String fingerprint = r.sha256(root, "bundle_fingerprint", "bundle_fingerprint");
        int d = r.int32(root, "d_model", "d_model", 1);
        int f = r.int32(root, "d_ffn", "d_ffn", 1);
        int layers = r.int32(root, "layers", "layers", 1);
        JsonNode text = r.object(root, "text", "text");
        RecordingInfo info = new RecordingInfo(fingerprint, d, f, layers, r.text(text, "source", "text.source"),
                r.sha256(text, "sha256", "text.sha256"));
        long tokens = r.integer(root, "tokens", "tokens", 0, Long.MAX_VALUE);
        int chunkTokens = r.int32(root, "chunk_tokens", "chunk_tokens", 1);

        JsonNode table = r.array(root, "chunks", "chunks");
        List<Chunk> chunks = new ArrayList<>();
        Set<String> names = new HashSet<>(Set.of(FILE_NAME));
        long[] next = new long[layers];
        for (int i = 0; i < table.size(); i++) {
            String where = "chunks[" + i + "]";
            JsonNode c = r.element(table, i, where);
            String name = r.fileName(c, "file", where + ".file");
            if (!names.add(name)) {
                throw new FormatException(file, "lists file '" + name + "' twice", FIX);
            }
            int layer = (int) r.integer(c, "layer", where + ".layer", 0, layers - 1);
            long first = r.integer(c, "first_token", where + ".first_token", 0, Long.MAX_VALUE);
            int count = r.int32(c, "tokens", where + ".tokens", 1);
            long size = r.integer(c, "size", where + ".size", 0, Long.MAX_VALUE);
            int crc = r.crc(c, "crc32c", where + ".crc32c");
            if (first != next[layer]) {
                throw new FormatException(file, where + " starts at token " + first + " but layer " + layer
                        + "'s earlier chunks end at token " + next[layer], FIX);
            }
            long expected = ActivationChunk.size(count, d, f);
            if (size != expected) {
                throw new FormatException(file, where + ".size is " + size + " but " + count + " tokens of d " + d
                        + ", f " + f + " take " + expected + " bytes", FIX);
            }
            next[layer] = first + count;
            chunks.add(new Chunk(name, layer, first, count, size, crc));
        }
        ActivationsManifest m = new ActivationsManifest(info, complete, chunkTokens, chunks);
        if (tokens != m.tokensRecorded()) {
            throw new FormatException(file, "says " + tokens + " tokens were recorded but its chunk table holds "
                    + m.tokensRecorded() + " for every layer", FIX);
        }
        if (complete) {
            for (int l = 0; l < layers; l++) {
                if (next[l] != tokens) {
                    throw new FormatException(file, "is marked complete but layer " + l + " has " + next[l]
                            + " tokens, not " + tokens, FIX);
                }
            }
        }
        return m;
    }
}
