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

/** The main job on the bundled small models: dense generation with OPT and Falcon. */
@Command(name = "demo", mixinStandardHelpOptions = true,
        description = "Run the bundled small models (testdata/models): describe them and generate text, dense.")
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
    public Integer call() {
        PrintWriter out = spec.commandLine().getOut();
        Path models = home().resolve("testdata/models");
        for (String name : List.of("opt-mini", "falcon-mini-relu")) {
            Path dir = models.resolve(name);
            out.println("== " + name + ": llmflash inspect " + dir);
            new CommandLine(new InspectCommand()).setOut(out).setErr(spec.commandLine().getErr()).execute(dir.toString());
            out.println("== " + name + ": llmflash generate --model " + dir + " --prompt \"" + prompt + "\" --max-tokens " + maxTokens);
            out.print(prompt);
            out.flush();
            int rc = new CommandLine(new GenerateCommand()).setOut(out).setErr(spec.commandLine().getErr())
                    .setExecutionExceptionHandler(spec.commandLine().getExecutionExceptionHandler())
                    .execute("--model", dir.toString(), "--prompt", prompt, "--max-tokens", Integer.toString(maxTokens));
            if (rc != 0) {
                return rc;
            }
            out.println();
        }
        return 0;
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
