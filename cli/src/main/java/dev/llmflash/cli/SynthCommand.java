package dev.llmflash.cli;

import dev.llmflash.converter.synth.Shape;
import dev.llmflash.converter.synth.Shapes;
import dev.llmflash.converter.synth.Synth;
import dev.llmflash.converter.synth.SynthOptions;
import dev.llmflash.converter.synth.SynthResult;
import dev.llmflash.formats.ByteSize;
import dev.llmflash.formats.tensor.DType;
import picocli.CommandLine;
import picocli.CommandLine.Command;
import picocli.CommandLine.Option;

import java.io.PrintWriter;
import java.nio.file.Path;
import java.util.Locale;
import java.util.concurrent.Callable;

@Command(name = "synth", mixinStandardHelpOptions = true,
        description = {"Write a Hugging Face checkpoint (config.json, sharded safetensors, tokenizer) of a real model's exact shape "
                + "with seeded random weights, streaming: for scale tests and benchmarks.", "--list shows the shapes."})
final class SynthCommand implements Callable<Integer> {
    @CommandLine.Spec
    CommandLine.Model.CommandSpec spec;

    @Option(names = "--shape", paramLabel = "NAME", description = "opt-125m, opt-350m, opt-1.3b, opt-2.7b, opt-6.7b, opt-13b, falcon-7b, falcon-7b-relu, ... (see --list).")
    String shape;

    @Option(names = "--output", paramLabel = "HF_DIR", description = "The folder to write (must not exist, unless --force).")
    Path output;

    @Option(names = "--seed", paramLabel = "S", description = "Weights seed (default: ${DEFAULT-VALUE}); the same seed writes the same bytes.")
    long seed = 0;

    @Option(names = "--dtype", paramLabel = "T", description = "f16 | bf16 | f32 (default: ${DEFAULT-VALUE}).")
    String dtype = "f16";

    @Option(names = "--shard-size", paramLabel = "SIZE", description = "Largest shard, e.g. 2GB, 500MB (default: ${DEFAULT-VALUE}).")
    String shardSize = "2GB";

    @Option(names = "--ffn-active", paramLabel = "FRACTION", description = "Plant ReLU sparsity: about this fraction of FFN neurons active per token (e.g. 0.03); default: none.")
    Double ffnActive;

    @Option(names = "--threads", paramLabel = "N", description = "Generator threads (default: the number of cores).")
    Integer threads;

    @Option(names = "--force", description = "Replace an existing output folder (one holding a config.json, or empty).")
    boolean force;

    @Option(names = "--list", description = "List the shapes and exit.")
    boolean list;

    @Option(names = "--verbose", description = "Print stack traces on errors.")
    boolean verbose;

    @Override
    public Integer call() {
        PrintWriter out = spec.commandLine().getOut();
        if (list) {
            for (String n : Shapes.names()) {
                Shape s = Shapes.get(n);
                out.printf(Locale.ROOT, "%-16s %,15d parameters  %6.2f GB as F16  %s%n", n, s.parameters(),
                        s.weightBytes(DType.F16) / 1e9, s.source());
            }
            return 0;
        }
        if (shape == null || output == null) {
            throw new CommandLine.ParameterException(spec.commandLine(), "--shape and --output are required (or --list)");
        }
        SynthOptions o = SynthOptions.of(shape, output).withSeed(seed).withDtype(Dtypes.parse(dtype, "--dtype"))
                .withShardBytes(ByteSize.parse(shardSize, "--shard-size")).withForce(force);
        if (threads != null) {
            o = o.withThreads(threads);
        }
        if (ffnActive != null) {
            o = o.withFfnActive(ffnActive);
        }
        ProgressLine progress = new ProgressLine(spec.commandLine().getErr(), "synth " + shape);
        SynthResult r = Synth.run(o, (done, total) -> progress.update(done, total));
        progress.finish();
        out.printf(Locale.ROOT, "wrote %s: %s, %,d parameters, %.2f GB of %s weights in %d files, %.1f s (%.2f GB/s)%n",
                r.dir(), r.shape(), r.parameters(), r.weightBytes() / 1e9, o.dtype(), r.files().size(),
                r.nanos() / 1e9, r.gbPerSecond());
        return 0;
    }
}
