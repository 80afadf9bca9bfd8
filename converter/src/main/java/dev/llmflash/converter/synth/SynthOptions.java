package dev.llmflash.converter.synth;

import dev.llmflash.formats.LlmflashException;
import dev.llmflash.formats.tensor.DType;

import java.nio.file.Path;
import java.util.Objects;
import java.util.OptionalDouble;

/**
 * What {@link Synth#run} writes. Immutable; build with {@link #of} and the {@code with...} methods.
 *
 * @param shape      a {@link Shapes} name, e.g. {@code opt-6.7b}
 * @param output     the folder to create (must not exist unless {@code force})
 * @param seed       the weights are a function of (seed, tensor name) only
 * @param dtype      F16 (default), BF16 or F32
 * @param shardBytes the most bytes of tensor data per safetensors file, as save_pretrained's
 *                   {@code max_shard_size} (default 2 GB = 2,000,000,000 bytes; a larger tensor gets a
 *                   file of its own)
 * @param threads    generator threads (default: the available processors)
 * @param ffnActive  when present, plant ReLU sparsity with about this fraction of FFN neurons active
 *                   per token (see {@link FfnPlanting}); empty: no planting
 * @param force      replace an existing output folder (only one that holds a config.json, or is empty)
 */
public record SynthOptions(String shape, Path output, long seed, DType dtype, long shardBytes, int threads,
                           OptionalDouble ffnActive, boolean force) {

    public static final long DEFAULT_SHARD_BYTES = 2_000_000_000L;
    public static final int MAX_THREADS = 256;

    public SynthOptions {
        Objects.requireNonNull(shape, "shape");
        Objects.requireNonNull(output, "output");
        Objects.requireNonNull(dtype, "dtype");
        Objects.requireNonNull(ffnActive, "ffnActive");
        if (dtype != DType.F16 && dtype != DType.BF16 && dtype != DType.F32) {
            throw new LlmflashException("--dtype " + dtype + " is not supported (use F16, BF16 or F32)");
        }
        if (shardBytes <= 0) {
            throw new LlmflashException("--shard-size " + shardBytes + " must be positive (e.g. 2GB)");
        }
        if (threads < 1 || threads > MAX_THREADS) {
            throw new LlmflashException("--threads " + threads + " must be between 1 and " + MAX_THREADS);
        }
        if (ffnActive.isPresent() && !(ffnActive.getAsDouble() > 0 && ffnActive.getAsDouble() < 1)) {
            throw new LlmflashException("--ffn-active " + ffnActive.getAsDouble()
                    + " is not a fraction between 0 and 1 (e.g. 0.03 for 3% active neurons)");
        }
    }

    /** Defaults: seed 0, F16, 2 GB shards, one thread per processor, no planting, no force. */
    public static SynthOptions of(String shape, Path output) {
        return new SynthOptions(shape, output, 0, DType.F16, DEFAULT_SHARD_BYTES,
                Math.min(MAX_THREADS, Runtime.getRuntime().availableProcessors()), OptionalDouble.empty(), false);
    }

    public SynthOptions withSeed(long s) {
        return new SynthOptions(shape, output, s, dtype, shardBytes, threads, ffnActive, force);
    }

    public SynthOptions withDtype(DType d) {
        return new SynthOptions(shape, output, seed, d, shardBytes, threads, ffnActive, force);
    }

    public SynthOptions withShardBytes(long b) {
        return new SynthOptions(shape, output, seed, dtype, b, threads, ffnActive, force);
    }

    public SynthOptions withThreads(int t) {
        return new SynthOptions(shape, output, seed, dtype, shardBytes, t, ffnActive, force);
    }

    public SynthOptions withFfnActive(double fraction) {
        return new SynthOptions(shape, output, seed, dtype, shardBytes, threads, OptionalDouble.of(fraction), force);
    }

    public SynthOptions withForce(boolean f) {
        return new SynthOptions(shape, output, seed, dtype, shardBytes, threads, ffnActive, f);
    }
}
