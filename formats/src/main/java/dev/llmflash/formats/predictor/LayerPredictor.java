package dev.llmflash.formats.predictor;

/**
 * One layer's activity predictor (the paper's technique 1): a low-rank network
 * {@code p = sigmoid(B (A x) + c)} over the layer's FFN input x (d), predicting for each of the f
 * neurons whether its ReLU fires; neuron i is predicted active when {@code p_i > threshold}.
 * A look-ahead predictor has the same shape but reads the previous layer's FFN input.
 * A layer whose predicted density would be too high is marked {@code dense}: the runtime then loads
 * all its neurons and the matrices are absent.
 * Legend: d = model width, f = neurons, r = rank.
 *
 * @param layer     the layer whose neurons it predicts: for a layer's own predictor that layer; for a
 *                  look-ahead predictor ({@link Predictors#lookahead(int)}, reading layer l's input) the
 *                  TARGET layer l+1
 * @param dense     true: no predictor, every neuron is computed (a, b, c are empty)
 * @param rank      r (0 when dense)
 * @param threshold decision threshold on the sigmoid output, in (0, 1)
 * @param a         r x d, row-major (the down-projection to rank r)
 * @param b         f x r, row-major (the up-projection to the neurons)
 * @param c         f biases
 */
public record LayerPredictor(int layer, boolean dense, int rank, float threshold, float[] a, float[] b, float[] c) {

    public LayerPredictor {
        if (layer < 0) {
            throw new IllegalArgumentException("layer " + layer);
        }
        if (dense) {
            if (rank != 0 || a.length != 0 || b.length != 0 || c.length != 0) {
                throw new IllegalArgumentException("a dense layer carries no predictor");
            }
        } else {
            if (rank < 1 || a.length % rank != 0 || b.length % rank != 0 || c.length != b.length / rank) {
                throw new IllegalArgumentException("predictor shapes: rank " + rank + ", a " + a.length + ", b " + b.length + ", c " + c.length);
            }
            if (!(threshold > 0f && threshold < 1f)) {
                throw new IllegalArgumentException("threshold " + threshold + " not in (0, 1)");
            }
        }
    }

    public static LayerPredictor denseLayer(int layer) {
        return new LayerPredictor(layer, true, 0, 0.5f, new float[0], new float[0], new float[0]);
    }

    /** d, the input width (0 when dense). */
    public int inputs() {
        return dense ? 0 : a.length / rank;
    }

    /** f, the neurons predicted (0 when dense). */
    public int neurons() {
        return c.length;
    }

    /** Parameter count: r d + f r + f. */
    public long parameters() {
        return (long) a.length + b.length + c.length;
    }
}
