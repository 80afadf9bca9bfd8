package dev.llmflash.converter.synth;

import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.node.ObjectNode;
import dev.llmflash.formats.hf.HfCheckpoint;
import dev.llmflash.formats.tensor.DType;

import java.util.ArrayList;
import java.util.Comparator;
import java.util.List;
import java.util.Map;
import java.util.TreeMap;

/**
 * Splits a state dict into safetensors shards as Hugging Face does ({@code huggingface_hub}'s
 * {@code split_torch_state_dict_into_shards}, which {@code save_pretrained} calls): walk the tensors in
 * state-dict order; a tensor larger than the limit gets a shard of its own; a tensor that would push the
 * current shard over the limit closes it and starts the next one. Shards are named
 * {@code model-00001-of-0000N.safetensors}; a single shard is {@code model.safetensors}, with no index.
 * Inside a file the tensors are sorted by name, as the safetensors library lays them out.
 *
 * <p>The index, {@code model.safetensors.index.json}:
 * <pre>{ "metadata": { "total_size": bytes of all tensors }, "weight_map": { "name": "shard file", ... } }</pre>
 * with the weight map sorted by tensor name.
 */
public final class Sharding {
    private static final ObjectMapper JSON = new ObjectMapper();

    private Sharding() {
    }

    /**
     * One shard file.
     *
     * @param file    its name, e.g. {@code model-00002-of-00007.safetensors}
     * @param tensors its tensors, in file order (by name)
     * @param bytes   the bytes of its tensor data
     */
    public record Shard(String file, List<TensorSpec> tensors, long bytes) {
        public Shard {
            tensors = List.copyOf(tensors);
        }
    }

    /** Shards {@code tensors} (in state-dict order) with at most {@code maxShardBytes} per shard where possible. */
    public static List<Shard> plan(List<TensorSpec> tensors, DType dtype, long maxShardBytes) {
        if (maxShardBytes <= 0) {
            throw new IllegalArgumentException("shard size " + maxShardBytes);
        }
        List<List<TensorSpec>> groups = new ArrayList<>();
        List<TensorSpec> current = new ArrayList<>();
        long currentBytes = 0;
        for (TensorSpec t : tensors) {
            long bytes = bytes(t, dtype);
            if (bytes > maxShardBytes) {
                groups.add(List.of(t)); // alone, before the shard being filled (HF's order)
                continue;
            }
            if (currentBytes + bytes > maxShardBytes && !current.isEmpty()) {
                groups.add(current);
                current = new ArrayList<>();
                currentBytes = 0;
            }
            current.add(t);
            currentBytes += bytes;
        }
        if (!current.isEmpty()) {
            groups.add(current);
        }
        List<Shard> shards = new ArrayList<>();
        for (int i = 0; i < groups.size(); i++) {
            List<TensorSpec> sorted = new ArrayList<>(groups.get(i));
            sorted.sort(Comparator.comparing(TensorSpec::name));
            long bytes = sorted.stream().mapToLong(t -> bytes(t, dtype)).sum();
            String file = groups.size() == 1 ? HfCheckpoint.SAFETENSORS
                    : String.format("model-%05d-of-%05d.safetensors", i + 1, groups.size());
            shards.add(new Shard(file, sorted, bytes));
        }
        return shards;
    }

    /** The index JSON for {@code shards} (meaningful when there are two or more). */
    public static ObjectNode index(List<Shard> shards) {
        ObjectNode root = JSON.createObjectNode();
        root.putObject("metadata").put("total_size", shards.stream().mapToLong(Shard::bytes).sum());
        Map<String, String> map = new TreeMap<>();
        for (Shard s : shards) {
            for (TensorSpec t : s.tensors()) {
                map.put(t.name(), s.file());
            }
        }
        ObjectNode weightMap = root.putObject("weight_map");
        map.forEach(weightMap::put);
        return root;
    }

    static long bytes(TensorSpec t, DType dtype) {
        return Math.multiplyExact(t.numel(), (long) dtype.bytes());
    }
}
