package dev.llmflash.formats.bundle;

import dev.llmflash.formats.tensor.DType;

import java.util.Locale;

/**
 * How a bundle's weights are quantized (docs/FORMAT.md, "Quantized bundles"): {@code --quant} of
 * {@code llmflash convert}. NONE keeps every float tensor in the bundle dtype. Q8 and Q4 store every
 * weight matrix (attention, the FFN's up rows and down columns, an untied LM head) in
 * {@link #matrices()} and the token embeddings in {@link #embeddings()} (Q8_0 for both: the lookup
 * reads one row per token, so bytes there cost memory, not bandwidth, and 8 bits keep it exact to
 * 0.4%); norms, biases and position embeddings keep the bundle's float dtype.
 */
public enum Quantization {
    NONE(null, null),
    Q8(DType.Q8_0, DType.Q8_0),
    Q4(DType.Q4_0, DType.Q8_0);

    private final DType matrices;
    private final DType embeddings;

    Quantization(DType matrices, DType embeddings) {
        this.matrices = matrices;
        this.embeddings = embeddings;
    }

    /** The dtype of weight matrices and FFN bundles; null for NONE. */
    public DType matrices() {
        return matrices;
    }

    /** The dtype of the token embeddings; null for NONE. */
    public DType embeddings() {
        return embeddings;
    }

    /** "none", "q8", "q4": the CLI's and the manifest's spelling. */
    public String jsonName() {
        return name().toLowerCase(Locale.ROOT);
    }

    /** The scheme whose FFN dtype is {@code ffnDtype} (NONE for the float dtypes). */
    public static Quantization ofFfn(DType ffnDtype) {
        for (Quantization q : values()) {
            if (q.matrices == ffnDtype) {
                return q;
            }
        }
        return NONE;
    }

    /** Parses "none" / "q8" / "q4" (any case); null if unknown. */
    public static Quantization fromJsonName(String s) {
        for (Quantization q : values()) {
            if (q.jsonName().equalsIgnoreCase(s)) {
                return q;
            }
        }
        return null;
    }
}
