package dev.llmflash.cli;

import dev.llmflash.trainer.LayerReport;
import dev.llmflash.trainer.TrainOptions;
import dev.llmflash.trainer.TrainPredictors;
import picocli.CommandLine;
import picocli.CommandLine.Command;
import picocli.CommandLine.Option;

import java.io.PrintWriter;
import java.nio.file.Path;
import java.util.List;
import java.util.Locale;
import java.util.concurrent.Callable;

@Command(name = "train-predictor", mixinStandardHelpOptions = true,
        description = {"Fit a low-rank activity predictor per layer (d -> r -> d_ffn, sigmoid; balanced loss, Adam) from a"
                + " recording, choose each layer's threshold on held-out tokens for --recall, and write the predictors into the"
                + " bundle. A layer whose predicted density would exceed 50%% is marked dense.",
                "Also trains, unless --no-lookahead, a look-ahead predictor per layer l >= 1 that is not dense: it reads layer l-1's"
                + " FFN input and predicts layer l's neurons (for prefetching layer l while layer l-1 computes), with the same"
                + " rank, loss and --recall; none is stored where it would exceed 50%%.",
                "Reports per layer: true and predicted density, recall, precision, parameters as %% of the FFN, time; then the"
                + " look-ahead's (targeting that layer) recall, precision and predicted density on the held-out tokens."})
final class TrainPredictorCommand implements Callable<Integer> {
    @CommandLine.Spec
    CommandLine.Model.CommandSpec spec;

    @Option(names = "--model", required = true, paramLabel = "BUNDLE", description = "The bundle the activations were recorded from.")
    Path model;

    @Option(names = "--activations", required = true, paramLabel = "DIR", description = "The recording (llmflash record).")
    Path activations;

    @Option(names = "--rank", paramLabel = "R", description = "Rank of the first layers (default: ${DEFAULT-VALUE}).")
    int rank = 48;

    @Option(names = "--rank-last", paramLabel = "R", description = "Rank of the last --last-layers layers (default: ${DEFAULT-VALUE}).")
    int rankLast = 56;

    @Option(names = "--last-layers", paramLabel = "N", description = "How many final layers get --rank-last (default: ${DEFAULT-VALUE}).")
    int lastLayers = 2;

    @Option(names = "--max-share", paramLabel = "S", description = "Cap each layer's rank so that its predictor has at most this share of the FFN's parameters (default: ${DEFAULT-VALUE}).")
    double maxShare = 0.15;

    @Option(names = "--epochs", paramLabel = "E", description = "Passes over the training tokens (default: ${DEFAULT-VALUE}).")
    int epochs = 12;

    @Option(names = "--recall", paramLabel = "R", description = "Recall each layer's threshold must reach on held-out tokens (default: ${DEFAULT-VALUE}).")
    double recall = 0.99;

    @Option(names = "--learning-rate", paramLabel = "LR", description = "Adam's learning rate (default: ${DEFAULT-VALUE}).")
    float learningRate = 3e-3f;

    @Option(names = "--seed", paramLabel = "S", description = "Initialization and shuffling seed (default: ${DEFAULT-VALUE}).")
    long seed = 1;

    @Option(names = "--threads", paramLabel = "N", description = "Compute threads (default: ${DEFAULT-VALUE}).")
    int threads = Runtime.getRuntime().availableProcessors();

    @Option(names = "--no-lookahead", description = "Do not train the look-ahead predictors (layer l-1's input -> layer l's neurons).")
    boolean noLookahead;

    @Option(names = "--verbose", description = "Print stack traces on errors.")
    boolean verbose;

    @Override
    public Integer call() {
        TrainOptions d = TrainOptions.defaults();
        TrainOptions base = new TrainOptions(rank, epochs, d.batch(), learningRate, seed, recall, d.validationFraction(),
                d.maxDensityForPrediction(), threads);
        PrintWriter out = spec.commandLine().getOut();
        boolean ahead = !noLookahead;
        out.printf("%-6s %-6s %5s %9s %12s %12s %8s %9s %10s %8s%s%n", "layer", "kind", "rank", "threshold", "true dens.",
                "pred. dens.", "recall", "precision", "params/FFN", "seconds",
                ahead ? String.format("  %-6s %9s %9s %11s", "ahead", "la.recall", "la.prec.", "la.density") : "");
        out.flush();
        long t0 = System.nanoTime();
        List<TrainPredictors.LayerOutcome> outcomes = TrainPredictors.trainAll(
                new TrainPredictors.Options(model, activations, rank, rankLast, lastLayers, maxShare, base, ahead),
                o -> {
                    LayerReport r = o.own();
                    LayerReport a = o.lookahead();
                    String la = !ahead ? ""
                            : a == null ? String.format("  %-6s %9s %9s %11s", "-", "-", "-", "-")
                            : String.format(Locale.ROOT, "  %-6s %8.2f%% %8.2f%% %10.2f%%", a.dense() ? "dense" : "pred",
                                    100 * a.recall(), 100 * a.precision(), 100 * a.predictedDensity());
                    out.printf(Locale.ROOT, "%-6d %-6s %5d %9.3f %11.2f%% %11.2f%% %7.2f%% %8.2f%% %9.2f%% %8.1f%s%n", r.layer(),
                            r.dense() ? "dense" : "pred", r.rank(), r.threshold(), 100 * r.trueDensity(), 100 * r.predictedDensity(),
                            100 * r.recall(), 100 * r.precision(), 100 * r.parameterShareOfFfn(), r.seconds(), la);
                    out.flush();
                });
        long params = outcomes.stream().mapToLong(o -> o.own().parameters()
                + (o.lookahead() == null ? 0 : o.lookahead().parameters())).sum();
        out.printf(Locale.ROOT, "wrote predictors into %s (%,d parameters, %.1f s)%n", model, params, (System.nanoTime() - t0) / 1e9);
        return 0;
    }
}
