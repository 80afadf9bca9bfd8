package dev.llmflash.cli;

import dev.llmflash.runtime.flash.FlashRuntime;
import picocli.CommandLine.Option;

import java.util.Locale;

/** Options every command that runs a model takes. */
final class CommonOptions {
    @Option(names = "--model", required = true, paramLabel = "DIR", description = "A bundle (llmflash convert) or a Hugging Face model folder (OPT or Falcon).")
    java.nio.file.Path model;

    @Option(names = "--mode", paramLabel = "MODE", description = "dense (all weights mapped) | naive (FFN re-read from flash every token) | "
            + "hybrid (part of the FFN in DRAM, the rest re-read) | flash (predictor + window cache, only missing neurons read) | "
            + "predicted (mapped weights, predicted neurons only, with recall) (default: ${DEFAULT-VALUE}).")
    Mode mode = Mode.dense;

    @Option(names = "--memory", paramLabel = "SIZE|PCT%", description = "DRAM budget for naive/hybrid/flash: bytes (6G, 900M) or a share of the model (50%%). "
            + "Default: no limit (the caches may hold the whole FFN).")
    String memory;

    @Option(names = "--window", paramLabel = "K", description = "flash: keep the neurons of the last K tokens; 0 = no window (reload each token's set); "
            + "default: the largest window the budget holds.")
    Integer window;

    @Option(names = "--io-threads", paramLabel = "N", description = "Parallel reads from flash (default: ${DEFAULT-VALUE}, as the paper).")
    int ioThreads = FlashRuntime.DEFAULT_IO_THREADS;

    @Option(names = "--predictor", paramLabel = "KIND", description = "flash: trained (the bundle's predictors) | oracle (the true activity, "
            + "computed from all weights: for exactness checks only) (default: ${DEFAULT-VALUE}).")
    String predictor = "trained";

    @Option(names = "--page-cache", description = "Read through the page cache instead of direct I/O (the OS may then cache the FFN outside the budget).")
    boolean pageCache;

    @Option(names = "--kv-dtype", paramLabel = "TYPE", description = "KV cache elements: f16 (half the bytes; greedy ids and perplexity unchanged "
            + "on the reference prompts) | f32 (default: ${DEFAULT-VALUE}).")
    String kvDtype = "f16";

    @Option(names = "--no-lookahead", description = "flash: do not prefetch the next layer's predicted neurons while a layer computes.")
    boolean noLookahead;

    @Option(names = "--io-backend", paramLabel = "KIND", description = "flash: how neuron reads reach the disk: auto (io_uring where the kernel "
            + "offers it, else threads) | uring | threads (a pool of --io-threads blocking reads) (default: ${DEFAULT-VALUE}).")
    String ioBackend = "auto";

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

    /** The flash runtime's options for {@code contextTokens} positions (only for naive, hybrid, flash). */
    FlashRuntime.Options runtimeOptions(int contextTokens) {
        FlashRuntime.Selector sel = switch (predictor.toLowerCase(Locale.ROOT)) {
            case "trained" -> FlashRuntime.Selector.TRAINED;
            case "oracle" -> FlashRuntime.Selector.ORACLE;
            default -> throw new IllegalArgumentException("--predictor must be trained or oracle, got " + predictor);
        };
        if (window != null && window < 0) {
            throw new IllegalArgumentException("--window must be >= 0 (0 = no window), got " + window);
        }
        return new FlashRuntime.Options(mode.runtimeMode(), memory == null ? null : FlashRuntime.Budget.parse(memory),
                window == null ? -1 : window, ioThreads, !pageCache, sel, contextTokens).withKvType(kvType())
                .withLookahead(!noLookahead).withIoBackend(ioBackend());
    }

    /** {@code --io-backend} as the engine's backend. */
    dev.llmflash.runtime.io.IoEngine.Backend ioBackend() {
        return switch (ioBackend.toLowerCase(Locale.ROOT)) {
            case "auto" -> dev.llmflash.runtime.io.IoEngine.Backend.AUTO;
            case "uring", "io_uring" -> dev.llmflash.runtime.io.IoEngine.Backend.URING;
            case "threads" -> dev.llmflash.runtime.io.IoEngine.Backend.THREADS;
            default -> throw new IllegalArgumentException("--io-backend must be auto, uring or threads, got " + ioBackend);
        };
    }

    /** {@code --kv-dtype} as a DType. */
    dev.llmflash.formats.tensor.DType kvType() {
        return switch (kvDtype.toLowerCase(Locale.ROOT)) {
            case "f16" -> dev.llmflash.formats.tensor.DType.F16;
            case "f32" -> dev.llmflash.formats.tensor.DType.F32;
            default -> throw new IllegalArgumentException("--kv-dtype must be f16 or f32, got " + kvDtype);
        };
    }

    /** Refuses flash-runtime options in the memory-mapped modes, where they would silently do nothing. */
    void checkModeOptions() {
        if (mode.runtimeMode() == null && (memory != null || window != null || pageCache)) {
            throw new IllegalArgumentException("--memory, --window and --page-cache apply to --mode naive, hybrid and flash, not " + mode);
        }
        if (mode != Mode.flash && !"trained".equalsIgnoreCase(predictor)) {
            throw new IllegalArgumentException("--predictor applies to --mode flash");
        }
        if (mode != Mode.flash && window != null) {
            throw new IllegalArgumentException("--window applies to --mode flash");
        }
    }
}
