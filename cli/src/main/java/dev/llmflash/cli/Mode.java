package dev.llmflash.cli;

/**
 * How the FFN weights are held. Only {@code dense} exists so far; the others arrive with the bundle
 * format and the flash runtime, and are refused with a message until then.
 */
enum Mode {
    dense, naive, hybrid, flash;

    void requireDense() {
        if (this != dense) {
            throw new IllegalArgumentException("--mode " + name() + " needs a flash bundle and the flash runtime, which this build"
                    + " does not have yet; use --mode dense (the whole model in memory)");
        }
    }
}
