package dev.llmflash.cli;

import dev.llmflash.formats.LlmflashException;
import picocli.CommandLine;
import picocli.CommandLine.Command;

import java.io.PrintWriter;

/**
 * The {@code llmflash} command. Thin: parses and validates options, calls the modules, prints.
 * Errors a user can act on ({@link LlmflashException}, invalid option values) become one line on
 * stderr and exit code 1; usage errors exit 2; stack traces only with {@code --verbose}.
 */
@Command(name = "llmflash", mixinStandardHelpOptions = true, versionProvider = Main.Version.class,
        description = "Run language models larger than the memory they are given (\"LLM in a flash\").",
        subcommands = {ConvertCommand.class, InspectCommand.class, GenerateCommand.class, PerplexityCommand.class, RecordCommand.class, TrainPredictorCommand.class, SynthCommand.class, DemoCommand.class, BenchCommand.class,
                CommandLine.HelpCommand.class})
public final class Main implements Runnable {
    public static final int EXIT_ERROR = 1;
    public static final int EXIT_USAGE = 2;

    @CommandLine.Spec
    CommandLine.Model.CommandSpec spec;

    @Override
    public void run() {
        throw new CommandLine.ParameterException(spec.commandLine(), "no command given: try 'llmflash --help' or 'llmflash demo'");
    }

    public static void main(String[] args) {
        System.exit(run(args, new PrintWriter(System.out, true), new PrintWriter(System.err, true)));
    }

    /** Runs the command line with the given streams; returns the exit code (for tests). */
    public static int run(String[] args, PrintWriter out, PrintWriter err) {
        CommandLine cl = new CommandLine(new Main());
        cl.setOut(out);
        cl.setErr(err);
        cl.setCaseInsensitiveEnumValuesAllowed(true);
        cl.setParameterExceptionHandler((ex, a) -> {
            err.println("llmflash: error: " + ex.getMessage() + " (see '" + ex.getCommandLine().getCommandName() + " --help')");
            return EXIT_USAGE;
        });
        cl.setExecutionExceptionHandler((ex, commandLine, parseResult) -> {
            boolean verbose = parseResult.expandedArgs().contains("--verbose");
            if (verbose) {
                ex.printStackTrace(err);
            }
            if (ex instanceof LlmflashException || ex instanceof IllegalArgumentException) {
                err.println("llmflash: error: " + ex.getMessage());
            } else {
                err.println("llmflash: internal error: " + ex + (verbose ? "" : " (run again with --verbose for the stack trace, and report it)"));
            }
            err.flush();
            return EXIT_ERROR;
        });
        return cl.execute(args);
    }

    static final class Version implements CommandLine.IVersionProvider {
        @Override
        public String[] getVersion() {
            String v = Main.class.getPackage().getImplementationVersion();
            return new String[] {"llmflash " + (v == null ? "dev" : v) + " (Java " + Runtime.version() + ")"};
        }
    }
}
