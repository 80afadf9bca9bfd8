package dev.llmflash.trainer;

/**
 * How {@link PredictorTrainer} trains one layer's predictor.
 *
 * @param rank                     r, the predictor's inner width
 * @param epochs                   passes over the training tokens
 * @param batch                    tokens per Adam step
 * @param learningRate             Adam's step size
 * @param seed                     initialization and shuffling; same seed and data give bit-identical
 *                                 predictors for any {@code threads}
 * @param targetRecall             the threshold is the largest whose recall on the validation tokens is
 *                                 at least this (paper: missed neurons cost accuracy, extra ones cost I/O)
 * @param validationFraction       the last this fraction of the tokens is held out for the threshold
 * @param maxDensityForPrediction  above this predicted density the layer is marked dense: loading a
 *                                 predicted set that large saves little and the predictor costs compute
 * @param threads                  platform threads that compute, the caller included
 */
public record TrainOptions(int rank, int epochs, int batch, float learningRate, long seed, double targetRecall,
                           double validationFraction, double maxDensityForPrediction, int threads) {

    public TrainOptions {
        if (rank < 1 || epochs < 1 || batch < 1 || threads < 1) {
            throw new IllegalArgumentException("rank, epochs, batch and threads must be >= 1: rank " + rank
                    + ", epochs " + epochs + ", batch " + batch + ", threads " + threads);
        }
        if (!(learningRate > 0f) || Float.isInfinite(learningRate)) {
            throw new IllegalArgumentException("learning rate " + learningRate + " must be > 0");
        }
        if (!(targetRecall > 0 && targetRecall <= 1)) {
            throw new IllegalArgumentException("target recall " + targetRecall + " must be in (0, 1]");
        }
        if (!(validationFraction > 0 && validationFraction < 1)) {
            throw new IllegalArgumentException("validation fraction " + validationFraction + " must be in (0, 1)");
        }
        if (!(maxDensityForPrediction > 0 && maxDensityForPrediction <= 1)) {
            throw new IllegalArgumentException("max density " + maxDensityForPrediction + " must be in (0, 1]");
        }
    }

    /**
     * rank 128 (the paper's for OPT 6.7B), 2 epochs, batch 256, Adam lr 3e-3, seed 1, recall 0.97
     * (margin over the 0.95 that a fresh set must reach), 10% validation, dense above 0.5, all cores.
     */
    public static TrainOptions defaults() {
        return new TrainOptions(128, 2, 256, 3e-3f, 1, 0.97, 0.1, 0.5, Runtime.getRuntime().availableProcessors());
    }

    public TrainOptions withRank(int r) {
        return new TrainOptions(r, epochs, batch, learningRate, seed, targetRecall, validationFraction, maxDensityForPrediction, threads);
    }

    public TrainOptions withEpochs(int e) {
        return new TrainOptions(rank, e, batch, learningRate, seed, targetRecall, validationFraction, maxDensityForPrediction, threads);
    }

    public TrainOptions withSeed(long s) {
        return new TrainOptions(rank, epochs, batch, learningRate, s, targetRecall, validationFraction, maxDensityForPrediction, threads);
    }

    public TrainOptions withThreads(int t) {
        return new TrainOptions(rank, epochs, batch, learningRate, seed, targetRecall, validationFraction, maxDensityForPrediction, t);
    }

    public TrainOptions withLearningRate(float lr) {
        return new TrainOptions(rank, epochs, batch, lr, seed, targetRecall, validationFraction, maxDensityForPrediction, threads);
    }
}
