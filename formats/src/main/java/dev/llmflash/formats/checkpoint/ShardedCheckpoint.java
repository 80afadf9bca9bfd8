package dev.llmflash.formats.checkpoint;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import dev.llmflash.formats.FormatException;
import dev.llmflash.formats.tensor.Tensor;

import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Collections;
import java.util.Iterator;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.SortedSet;
import java.util.TreeMap;
import java.util.TreeSet;
import java.util.function.Function;

/**
 * A checkpoint split over several files, described by a Hugging Face index file
 * ({@code model.safetensors.index.json} or {@code pytorch_model.bin.index.json}):
 * <pre>{ "metadata": {...}, "weight_map": { "tensor name": "shard file name", ... } }</pre>
 * Every shard named by the index must exist next to it, and every tensor the index names must be in
 * the shard it names; both are checked when opening. Owns the shards: {@link #close()} closes them.
 */
public final class ShardedCheckpoint implements Checkpoint {
    private final Path index;
    private final Map<String, Checkpoint> byTensor;
    private final List<Checkpoint> shards;
    private final SortedSet<String> names;

    private ShardedCheckpoint(Path index, Map<String, Checkpoint> byTensor, List<Checkpoint> shards) {
        this.index = index;
        this.byTensor = byTensor;
        this.shards = shards;
        this.names = Collections.unmodifiableSortedSet(new TreeSet<>(byTensor.keySet()));
    }

    /**
     * Opens the index and every shard it names with {@code openShard}.
     *
     * @throws FormatException if the index is malformed, a shard is missing, or a tensor is not where
     *         the index says
     */
    public static ShardedCheckpoint open(Path index, Function<Path, Checkpoint> openShard) {
        Map<String, String> weightMap = readWeightMap(index);
        Path dir = index.toAbsolutePath().getParent();
        Map<String, Checkpoint> opened = new LinkedHashMap<>();
        List<Checkpoint> shards = new ArrayList<>();
        try {
            for (String file : new TreeSet<>(weightMap.values())) {
                Path shard = dir.resolve(file).normalize();
                if (!shard.startsWith(dir)) {
                    throw new FormatException(index, "shard name '" + file + "' points outside the checkpoint folder",
                            "the index file is corrupt or hostile; re-download the checkpoint");
                }
                if (!Files.isRegularFile(shard)) {
                    throw new FormatException(index, "names shard '" + file + "' but " + shard + " does not exist",
                            "download the missing shard, or re-download the whole checkpoint");
                }
                Checkpoint c = openShard.apply(shard);
                shards.add(c);
                opened.put(file, c);
            }
            Map<String, Checkpoint> byTensor = new TreeMap<>();
            for (Map.Entry<String, String> e : weightMap.entrySet()) {
                Checkpoint shard = opened.get(e.getValue());
                if (!shard.contains(e.getKey())) {
                    throw new FormatException(shard.location(), "the index " + index.getFileName() + " places tensor '"
                            + e.getKey() + "' in this shard but it is not there",
                            "the shards and the index do not belong together; re-download the checkpoint");
                }
                byTensor.put(e.getKey(), shard);
            }
            return new ShardedCheckpoint(index, byTensor, List.copyOf(shards));
        } catch (RuntimeException e) {
            for (Checkpoint c : shards) {
                try {
                    c.close();
                } catch (RuntimeException suppressed) {
                    e.addSuppressed(suppressed);
                }
            }
            throw e;
        }
    }

    /** Parses the index's weight_map (tensor name -> shard file name). */
    public static Map<String, String> readWeightMap(Path index) {
        JsonNode root;
        try {
            root = new ObjectMapper().readTree(index.toFile());
        } catch (IOException e) {
            throw new FormatException(index, "is not valid JSON: " + e.getMessage(),
                    "re-download the checkpoint's index file", e);
        }
        JsonNode map = root == null ? null : root.get("weight_map");
        if (map == null || !map.isObject() || map.isEmpty()) {
            throw new FormatException(index, "has no 'weight_map' object naming the shards",
                    "re-download the checkpoint's index file");
        }
        Map<String, String> out = new TreeMap<>();
        for (Iterator<Map.Entry<String, JsonNode>> it = map.fields(); it.hasNext(); ) {
            Map.Entry<String, JsonNode> e = it.next();
            if (!e.getValue().isTextual() || e.getValue().asText().isEmpty()) {
                throw new FormatException(index, "weight_map entry '" + e.getKey() + "' is not a file name",
                        "re-download the checkpoint's index file");
            }
            out.put(e.getKey(), e.getValue().asText());
        }
        return out;
    }

    @Override
    public Path location() {
        return index;
    }

    @Override
    public SortedSet<String> tensorNames() {
        return names;
    }

    @Override
    public Tensor tensor(String name) {
        Checkpoint c = byTensor.get(name);
        if (c == null) {
            throw new FormatException(index, "has no tensor '" + name + "'",
                    "the checkpoint is incomplete or of another architecture");
        }
        return c.tensor(name);
    }

    /** The opened shards, in file-name order. */
    public List<Checkpoint> shards() {
        return shards;
    }

    @Override
    public void close() {
        RuntimeException first = null;
        for (Checkpoint c : shards) {
            try {
                c.close();
            } catch (RuntimeException e) {
                if (first == null) {
                    first = e;
                } else {
                    first.addSuppressed(e);
                }
            }
        }
        if (first != null) {
            throw first;
        }
    }
}
