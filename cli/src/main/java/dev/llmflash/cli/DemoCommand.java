package dev.llmflash.cli;

import dev.llmflash.formats.LlmflashException;
import picocli.CommandLine;
import picocli.CommandLine.Command;
import picocli.CommandLine.Option;

import java.io.PrintWriter;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.List;
import java.util.concurrent.Callable;

/** The main job on the bundled small models: HF folder -> bundle -> generation, for OPT and Falcon. */
@Command(name = "demo", mixinStandardHelpOptions = true,
        description = "The pipeline on the bundled small models (testdata/models): convert each to a bundle, inspect it, generate from it.")
final class DemoCommand implements Callable<Integer> {
    @CommandLine.Spec
    CommandLine.Model.CommandSpec spec;

    @Option(names = "--prompt", paramLabel = "TEXT", description = "Prompt (default: ${DEFAULT-VALUE}).")
    String prompt = "In the beginning God created";

    @Option(names = "--max-tokens", paramLabel = "N", description = "New tokens per model (default: ${DEFAULT-VALUE}).")
    int maxTokens = 48;

    @Option(names = "--verbose", description = "Print stack traces on errors.")
    boolean verbose;

    @Override
    public Integer call() throws java.io.IOException {
        PrintWriter out = spec.commandLine().getOut();
        Path models = home().resolve("testdata/models");
        Path work = Files.createTempDirectory("llmflash-demo");
        try {
            for (String name : List.of("opt-mini", "falcon-mini-relu")) {
                Path dir = models.resolve(name);
                Path bundle = work.resolve(name + ".bundle");
                int rc = step(out, "llmflash convert --input " + dir + " --output " + bundle,
                        new ConvertCommand(), "--input", dir.toString(), "--output", bundle.toString());
                rc = rc != 0 ? rc : step(out, "llmflash inspect " + bundle, new InspectCommand(), bundle.toString());
                if (rc == 0) {
                    out.println("== llmflash generate --model " + bundle + " --prompt \"" + prompt + "\" --max-tokens " + maxTokens);
                    out.print(prompt);
                    out.flush();
                    rc = run(new GenerateCommand(), "--model", bundle.toString(), "--prompt", prompt, "--max-tokens",
                            Integer.toString(maxTokens));
                }
                if (rc != 0) {
                    return rc;
                }
                out.println();
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
