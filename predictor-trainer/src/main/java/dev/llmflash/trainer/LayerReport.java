package dev.llmflash.trainer;

/**
 * What training one layer's predictor gave, measured on the held-out validation tokens.
 * For a dense layer the densities, recall and precision are those of the rejected predictor (why it
 * was rejected); {@code rank}, {@code parameters} and the share are 0 (nothing is stored).
 *
 * @param dense               true: predicted density exceeded the limit, the layer loads all neurons
 * @param threshold           the chosen decision threshold on the sigmoid output
 * @param trueDensity         fraction of validation (token, neuron) pairs that fired
 * @param predictedDensity    fraction predicted active ({@code p > threshold})
 * @param recall              true positives / actual positives, over all validation pairs
 * @param precision           true positives / predicted positives (1 when nothing is predicted)
 * @param parameters          r d + f r + f
 * @param parameterShareOfFfn parameters / (2 d f), the FFN's two matrices (biases not counted)
 * @param seconds             wall time of training, threshold search included
 */
public record LayerReport(int layer, boolean dense, int rank, float threshold, double trueDensity, double predictedDensity,
                          double recall, double precision, long parameters, double parameterShareOfFfn, double seconds) {
}
