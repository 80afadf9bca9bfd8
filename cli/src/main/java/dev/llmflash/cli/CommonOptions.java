package dev.llmflash.cli;

import picocli.CommandLine.Option;

/** Options every command that runs a model takes. */
final class CommonOptions {
    @Option(names = "--model", required = true, paramLabel = "DIR", description = "A bundle (llmflash convert) or a Hugging Face model folder (OPT or Falcon).")
    java.nio.file.Path model;

    @Option(names = "--mode", paramLabel = "MODE", description = "dense (every neuron) | flash (the neurons the bundle's predictors select) | naive | hybrid (not yet) (default: ${DEFAULT-VALUE}).")
    Mode mode = Mode.dense;

    @Option(names = "--threads", paramLabel = "N", description = "Compute threads (default: ${DEFAULT-VALUE}, the number of cores).")
    int threads = Runtime.getRuntime().availableProcessors();

    @Option(names = "--json", description = "Print one JSON object instead of text.")
    boolean json;

    @Option(names = "--verbose", description = "Print stack traces on errors.")
    boolean verbose;

    int validatedThreads() {
        if (threads < 1 || threads > 1024) {
            throw new IllegalArgumentException("--threads must be between 1 and 1024, got " + threads);
        }
        return threads;
    }
}
