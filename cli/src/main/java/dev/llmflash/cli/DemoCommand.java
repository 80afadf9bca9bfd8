package dev.llmflash.cli;

import dev.llmflash.formats.LlmflashException;
import picocli.CommandLine;
import picocli.CommandLine.Command;
import picocli.CommandLine.Option;

import java.io.PrintWriter;
import java.nio.file.Files;
import java.nio.file.Path;

import java.util.concurrent.Callable;

/**
 * The main job on the bundled small OPT model, the whole "LLM in a flash" pipeline: convert the HF
 * folder to a bundle, inspect it, record FFN activations over a text, train the activity predictors,
 * generate in flash mode within a DRAM budget (8 I/O threads: opt-mini's 1 KiB bundles need few, and each
 * thread's bounce buffer counts against the budget), then run the same prompt in naive, hybrid and flash
 * mode at that budget and print the per-token latency table (the paper's Table 3).
 */
@Command(name = "demo", mixinStandardHelpOptions = true,
        description = "The whole pipeline on the bundled small OPT model: convert, inspect, record activations, train predictors, "
                + "generate in flash mode within a DRAM budget, and compare naive / hybrid / flash latency at that budget.")
final class DemoCommand implements Callable<Integer> {
    @CommandLine.Spec
    CommandLine.Model.CommandSpec spec;

    @Option(names = "--prompt", paramLabel = "TEXT", description = "Prompt (default: ${DEFAULT-VALUE}).")
    String prompt = "In the beginning God created";

    @Option(names = "--max-tokens", paramLabel = "N", description = "New tokens per generation (default: ${DEFAULT-VALUE}).")
    int maxTokens = 64;

    @Option(names = "--record-tokens", paramLabel = "N", description = "Positions recorded to train the predictors (default: ${DEFAULT-VALUE}).")
    int recordTokens = 24576;

    @Option(names = "--memory", paramLabel = "SIZE", description = "DRAM budget for the flash, naive and hybrid runs (default: ${DEFAULT-VALUE}; "
            + "opt-mini is 13.6 MiB, of which 7.5 MiB must stay resident).")
    String memory = "16M";

    @Option(names = "--models", paramLabel = "DIR", hidden = true, description = "Folder holding opt-mini and train-sample.txt's testdata (tests).")
    Path modelsRoot;

    @Option(names = "--verbose", description = "Print stack traces on errors.")
    boolean verbose;

    @Override
    public Integer call() throws java.io.IOException {
        PrintWriter out = spec.commandLine().getOut();
        Path root = modelsRoot != null ? modelsRoot : home().resolve("testdata");
        Path dir = root.resolve("models/opt-mini");
        Path text = root.resolve("reference/train-sample.txt");
        Path work = Files.createTempDirectory("llmflash-demo");
        try {
            Path bundle = work.resolve("opt-mini.bundle");
            Path acts = work.resolve("opt-mini.acts");
            String b = bundle.toString();
            int rc = step(out, "llmflash convert --input " + dir + " --output " + b, new ConvertCommand(),
                    "--input", dir.toString(), "--output", b);
            rc = rc != 0 ? rc : step(out, "llmflash inspect " + b, new InspectCommand(), b);
            rc = rc != 0 ? rc : step(out, "llmflash record --model " + b + " --text " + text + " --tokens " + recordTokens
                    + " --output " + acts, new RecordCommand(), "--model", b, "--text", text.toString(), "--tokens",
                    Integer.toString(recordTokens), "--output", acts.toString());
            rc = rc != 0 ? rc : step(out, "llmflash train-predictor --model " + b + " --activations " + acts,
                    new TrainPredictorCommand(), "--model", b, "--activations", acts.toString());
            if (rc != 0) {
                return rc;
            }
            out.println("== llmflash generate --model " + b + " --mode flash --memory " + memory + " --io-threads 8 --prompt \"" + prompt
                    + "\" --max-tokens " + maxTokens);
            out.print(prompt);
            out.flush();
            rc = run(new GenerateCommand(), "--model", b, "--mode", "flash", "--memory", memory, "--io-threads", "8", "--prompt", prompt,
                    "--max-tokens", Integer.toString(maxTokens));
            if (rc != 0) {
                return rc;
            }
            out.println();
            out.println("== per-token latency at --memory " + memory + ": llmflash bench --model " + b + " --memory " + memory
                    + " --io-threads 8 --methods naive,hybrid,flash --tokens " + maxTokens + " --warmup 16 (the same prompt in each mode; direct I/O,"
                    + " page cache bypassed where the filesystem allows)");
            out.flush();
            rc = run(new BenchCommand(), "--model", b, "--memory", memory, "--io-threads", "8", "--methods", "naive,hybrid,flash", "--prompt", prompt,
                    "--tokens", Integer.toString(maxTokens), "--warmup", "16");
            if (rc != 0) {
                return rc;
            }
        } finally {
            deleteTree(work);
        }
        return 0;
    }

    private int step(PrintWriter out, String title, Object command, String... args) {
        out.println("== " + title);
        out.flush();
        return run(command, args);
    }

    private int run(Object command, String... args) {
        return new CommandLine(command).setOut(spec.commandLine().getOut()).setErr(spec.commandLine().getErr())
                .setExecutionExceptionHandler(spec.commandLine().getExecutionExceptionHandler()).execute(args);
    }

    private static void deleteTree(Path root) throws java.io.IOException {
        try (var paths = Files.walk(root)) {
            for (Path p : paths.sorted(java.util.Comparator.reverseOrder()).toList()) {
                Files.deleteIfExists(p);
            }
        }
    }

    /** The repo root: LLMFLASH_HOME (set by the ./llmflash launcher), else the working directory. */
    static Path home() {
        String h = System.getenv("LLMFLASH_HOME");
        Path p = Path.of(h != null ? h : ".").toAbsolutePath().normalize();
        if (!Files.isDirectory(p.resolve("testdata/models"))) {
            throw new LlmflashException("cannot find the bundled models under " + p.resolve("testdata/models")
                    + " (run the demo through the ./llmflash launcher at the repository root)");
        }
        return p;
    }
}
