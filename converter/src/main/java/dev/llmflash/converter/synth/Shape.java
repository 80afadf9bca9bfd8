package dev.llmflash.converter.synth;

import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.node.ObjectNode;
import dev.llmflash.formats.hf.ModelConfig;
import dev.llmflash.formats.tensor.DType;

import java.util.Collections;
import java.util.List;
import java.util.Map;
import java.util.TreeMap;

/**
 * A model architecture that {@link Synth} can write: the {@code config.json} a real checkpoint of it
 * carries, and the same architecture as our typed {@link ModelConfig}. The two describe one model
 * ({@code HfConfig.read} of the written config.json equals {@link #model()}; Synth checks it on every
 * run). Immutable.
 *
 * @param name             short name, e.g. {@code opt-6.7b}
 * @param source           where the real one lives (a Hugging Face repo id), or a note for test shapes
 * @param model            the architecture, as our reader types it
 * @param config           the {@code config.json} entries, sorted by key as {@code save_pretrained}
 *                         writes them; values are String, Boolean, Integer, Double or List of String
 * @param generationConfig the {@code generation_config.json} entries
 */
public record Shape(String name, String source, ModelConfig model, Map<String, Object> config,
                    Map<String, Object> generationConfig) {

    private static final ObjectMapper JSON = new ObjectMapper();

    public Shape {
        config = Collections.unmodifiableMap(new TreeMap<>(config));
        generationConfig = Collections.unmodifiableMap(new TreeMap<>(generationConfig));
    }

    /**
     * The config.json content for weights stored as {@code dtype}: the real file's entries, with
     * {@code torch_dtype} naming the dtype actually written (as save_pretrained records it).
     */
    public ObjectNode configJson(DType dtype) {
        ObjectNode node = JSON.valueToTree(config);
        if (node.has("torch_dtype")) {
            node.put("torch_dtype", torchDtype(dtype));
        }
        return node;
    }

    public ObjectNode generationConfigJson() {
        return JSON.valueToTree(generationConfig);
    }

    /** The standard deviation HF initializes weights with ({@code init_std} / {@code initializer_range}). */
    public float initStd() {
        Object std = config.containsKey("init_std") ? config.get("init_std") : config.get("initializer_range");
        return std instanceof Number n ? n.floatValue() : 0.02f;
    }

    /** The tensors, as HF saves them, in state-dict order. */
    public List<TensorSpec> tensors() {
        return Layout.of(model);
    }

    /** Number of parameters, tied LM head counted once (HF's {@code num_parameters()}). */
    public long parameters() {
        return Layout.parameters(model);
    }

    /** Bytes of weights when stored as {@code dtype}. */
    public long weightBytes(DType dtype) {
        return Math.multiplyExact(parameters(), (long) dtype.bytes());
    }

    /** PyTorch's name of a dtype, as config.json's {@code torch_dtype} spells it. */
    static String torchDtype(DType dtype) {
        return switch (dtype) {
            case F16 -> "float16";
            case BF16 -> "bfloat16";
            case F32 -> "float32";
            default -> throw new IllegalArgumentException("synth writes F16, BF16 or F32, not " + dtype);
        };
    }
}
