package dev.llmflash.converter;

/**
 * Receives a conversion's progress. {@link #update} is called from the converting thread, often (every
 * few MB written): implementations throttle their own output and must be quick. An exception thrown
 * from it aborts the conversion (which then leaves nothing behind).
 */
public interface Progress {

    /** The conversion's stages, in order. */
    enum Stage {
        RESIDENT("resident tensors"),
        FFN("FFN weights"),
        TOKENIZER("tokenizer files"),
        MANIFEST("manifest");

        private final String label;

        Stage(String label) {
            this.label = label;
        }

        /** A short human name, e.g. "FFN weights". */
        public String label() {
            return label;
        }
    }

    /**
     * @param stage      the stage running now
     * @param bytesDone  bytes written so far, all stages together
     * @param bytesTotal bytes the whole conversion writes (constant during a conversion)
     */
    void update(Stage stage, long bytesDone, long bytesTotal);

    /** Called once when the bundle is complete and in place. */
    default void finished(ConvertResult result) {
    }

    /** A progress that ignores everything. */
    static Progress none() {
        return (stage, done, total) -> {
        };
    }
}
