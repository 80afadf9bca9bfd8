package dev.llmflash.formats.bundle;

/**
 * How {@code ffn.bin} arranges one layer's FFN weights (docs/FORMAT.md, "ffn.bin").
 * The code is the u32 stored at header offset 12; the JSON name is the manifest's {@code ffn.layout}.
 */
public enum FfnLayout {
    /**
     * Neuron-major bundles: neuron i's up row, then its down column, then zero padding to the bundle
     * stride. One read fetches everything neuron i needs (the "LLM in a flash" row-column bundling).
     */
    BUNDLED(0, "bundled"),
    /**
     * The ablation without bundling: the up matrix (f rows), padding to the alignment, then the down
     * matrix transposed (f rows); a neuron costs two reads.
     */
    SPLIT(1, "split");

    private final int code;
    private final String jsonName;

    FfnLayout(int code, String jsonName) {
        this.code = code;
        this.jsonName = jsonName;
    }

    /** The u32 written in ffn.bin's header. */
    public int code() {
        return code;
    }

    /** The name written in manifest.json ("bundled", "split"). */
    public String jsonName() {
        return jsonName;
    }

    /** The layout with this header code, or null if none has it. */
    public static FfnLayout fromCode(long code) {
        for (FfnLayout l : values()) {
            if (l.code == code) {
                return l;
            }
        }
        return null;
    }

    /** The layout with this manifest name (exact, lower case), or null if none has it. */
    public static FfnLayout fromJsonName(String name) {
        for (FfnLayout l : values()) {
            if (l.jsonName.equals(name)) {
                return l;
            }
        }
        return null;
    }
}
