package dev.llmflash.cli;

import dev.llmflash.converter.ConvertOptions;
import dev.llmflash.converter.ConvertResult;
import dev.llmflash.converter.Converter;
import dev.llmflash.converter.TerminalProgress;
import dev.llmflash.formats.bundle.FfnLayout;
import dev.llmflash.formats.bundle.Quantization;
import picocli.CommandLine;
import picocli.CommandLine.Command;
import picocli.CommandLine.Option;

import java.io.PrintWriter;
import java.nio.file.Path;
import java.util.LinkedHashMap;
import java.util.Locale;
import java.util.Map;
import java.util.concurrent.Callable;

@Command(name = "convert", mixinStandardHelpOptions = true,
        description = {"Convert a Hugging Face OPT or Falcon folder into a flash bundle: resident weights (embeddings, attention, "
                + "norms, biases) in one file, the FFN neuron-major in another, aligned for direct I/O (docs/FORMAT.md).",
                "Streams (bounded memory), writes into a temporary sibling folder and renames it at the end."})
final class ConvertCommand implements Callable<Integer> {
    @CommandLine.Spec
    CommandLine.Model.CommandSpec spec;

    @Option(names = "--input", required = true, paramLabel = "HF_DIR", description = "The Hugging Face model folder.")
    Path input;

    @Option(names = "--output", required = true, paramLabel = "BUNDLE", description = "The bundle folder to create.")
    Path output;

    @Option(names = "--dtype", paramLabel = "T", description = "f32 | f16 | bf16 (default: the checkpoint's own).")
    String dtype;

    @Option(names = "--layout", paramLabel = "L", description = "bundled (up row + down column per neuron, one read) | split "
            + "(two matrices: the ablation) (default: ${DEFAULT-VALUE}).")
    String layout = "bundled";

    @Option(names = "--quant", paramLabel = "Q", description = "none | q8 | q4: block-quantize every weight matrix "
            + "(attention, FFN, an untied LM head) to Q8_0 or Q4_0 (32 weights per f16 scale), the token embeddings to "
            + "Q8_0; norms and biases keep --dtype (default: ${DEFAULT-VALUE}).")
    String quant = "none";

    @Option(names = "--force", description = "Replace an existing bundle (only once the new one is complete).")
    boolean force;

    @Option(names = "--json", description = "Print one JSON object describing the result.")
    boolean json;

    @Option(names = "--verbose", description = "Print stack traces on errors.")
    boolean verbose;

    @Override
    public Integer call() {
        FfnLayout l = switch (layout.toLowerCase(Locale.ROOT)) {
            case "bundled" -> FfnLayout.BUNDLED;
            case "split" -> FfnLayout.SPLIT;
            default -> throw new IllegalArgumentException("--layout '" + layout + "' is not one of bundled, split");
        };
        Quantization q = Quantization.fromJsonName(quant);
        if (q == null) {
            throw new IllegalArgumentException("--quant '" + quant + "' is not one of none, q8, q4");
        }
        ConvertOptions o = new ConvertOptions(input, output, dtype == null ? null : Dtypes.parse(dtype, "--dtype"), l, force,
                q);
        ConvertResult r = Converter.convert(o, new TerminalProgress());
        PrintWriter out = spec.commandLine().getOut();
        if (json) {
            Map<String, Object> j = new LinkedHashMap<>();
            j.put("bundle", r.bundle().toString());
            j.put("bytes_written", r.bytesWritten());
            j.put("seconds", r.seconds());
            j.put("bytes_per_second", r.bytesPerSecond());
            j.put("bytes_read", r.bytesRead());
            j.put("io_bytes_per_second", r.ioBytesPerSecond());
            j.put("files", r.files().stream().map(p -> p.getFileName().toString()).toList());
            out.println(Json.write(j));
        } else {
            out.printf(Locale.ROOT, "wrote %s (%.2f GB in %.1f s, %.2f GB/s; read %.2f GB: %.2f GB/s read + written)%n",
                    r.bundle(), r.bytesWritten() / 1e9, r.seconds(), r.bytesPerSecond() / 1e9, r.bytesRead() / 1e9,
                    r.ioBytesPerSecond() / 1e9);
        }
        return 0;
    }
}
