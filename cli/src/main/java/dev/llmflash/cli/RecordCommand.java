package dev.llmflash.cli;

import dev.llmflash.trainer.Recorder;
import picocli.CommandLine;
import picocli.CommandLine.Command;
import picocli.CommandLine.Option;

import java.io.PrintWriter;
import java.nio.file.Path;
import java.util.Locale;
import java.util.concurrent.Callable;

@Command(name = "record", mixinStandardHelpOptions = true,
        description = {"Run the dense model over a text (windows of --context tokens, as perplexity does) and record, per layer,"
                + " every position's FFN input and which neurons fired: what train-predictor learns from.",
                "An interrupted recording resumes where it stopped when run again with the same arguments."})
final class RecordCommand implements Callable<Integer> {
    @CommandLine.Spec
    CommandLine.Model.CommandSpec spec;

    @Option(names = "--model", required = true, paramLabel = "BUNDLE", description = "The bundle (llmflash convert).")
    Path model;

    @Option(names = "--text", required = true, paramLabel = "FILE", description = "A UTF-8 text (the training corpus).")
    Path text;

    @Option(names = "--tokens", required = true, paramLabel = "N", description = "Positions to record.")
    long tokens;

    @Option(names = "--output", required = true, paramLabel = "DIR", description = "The recording's folder (created or resumed).")
    Path output;

    @Option(names = "--context", paramLabel = "N", description = "Window length, BOS included (default: ${DEFAULT-VALUE}).")
    int context = 256;

    @Option(names = "--threads", paramLabel = "N", description = "Compute threads (default: ${DEFAULT-VALUE}).")
    int threads = Runtime.getRuntime().availableProcessors();

    @Option(names = "--verbose", description = "Print stack traces on errors.")
    boolean verbose;

    @Override
    public Integer call() {
        ProgressLine progress = new ProgressLine(spec.commandLine().getErr(), "record", "tokens");
        Recorder.Result r = Recorder.record(new Recorder.Options(model, text, tokens, output, threads, context),
                done -> progress.update(done, tokens));
        progress.finish();
        PrintWriter out = spec.commandLine().getOut();
        for (String d : r.dropped()) {
            spec.commandLine().getErr().println("llmflash: dropped on resume: " + d);
        }
        out.printf(Locale.ROOT, "recorded %,d positions%s into %s in %.1f s%n", r.tokens(),
                r.resumedFrom() > 0 ? " (resumed at " + r.resumedFrom() + ")" : "", r.output(), r.seconds());
        return 0;
    }
}
