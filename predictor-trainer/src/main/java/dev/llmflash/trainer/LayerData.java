package dev.llmflash.trainer;

/**
 * One layer's training data, in memory: the FFN inputs of n tokens and which of the f neurons fired
 * (ReLU output > 0) for each. Where it comes from (recording, files) is not this class's business.
 * <p>Layout: {@code x} is n x d f32, row-major (token t's input is {@code x[t*d .. t*d+d)}).
 * {@code labels} is bit-packed per token: token t's row starts at byte {@code t * ceil(f/8)}, neuron
 * i is bit {@code i % 8} (least significant bit first) of byte {@code t * ceil(f/8) + i / 8}; the
 * padding bits of a row's last byte are ignored.
 * <p>Ownership: the arrays are shared, not copied; the trainer only reads them. Do not change them
 * during a {@link PredictorTrainer#train} call.
 *
 * @param layer the layer index (carried into the predictor and the report)
 * @param n     tokens
 * @param d     model width (FFN input size)
 * @param f     neurons (FFN hidden size)
 */
public record LayerData(int layer, int n, int d, int f, float[] x, byte[] labels) {

    public LayerData {
        if (layer < 0 || n < 1 || d < 1 || f < 1) {
            throw new IllegalArgumentException("layer data: layer " + layer + ", n " + n + ", d " + d + ", f " + f
                    + " (need layer >= 0 and n, d, f >= 1)");
        }
        if (x.length != (long) n * d) {
            throw new IllegalArgumentException("layer " + layer + ": x has " + x.length + " floats, n x d = " + (long) n * d);
        }
        if (labels.length != (long) n * rowBytes(f)) {
            throw new IllegalArgumentException("layer " + layer + ": labels have " + labels.length
                    + " bytes, n x ceil(f/8) = " + (long) n * rowBytes(f));
        }
    }

    /** Bytes per token in {@code labels}: ceil(f / 8). */
    public static int rowBytes(int f) {
        return (f + 7) >>> 3;
    }

    /** Whether neuron i fired for token t. */
    public boolean label(int t, int i) {
        return (labels[t * rowBytes(f) + (i >>> 3)] >>> (i & 7) & 1) != 0;
    }

    /** Packs labels given as {@code active[t][i]} into the bit layout above (tests, small callers). */
    public static byte[] pack(boolean[][] active, int f) {
        int rb = rowBytes(f);
        byte[] out = new byte[active.length * rb];
        for (int t = 0; t < active.length; t++) {
            for (int i = 0; i < f; i++) {
                if (active[t][i]) {
                    out[t * rb + (i >>> 3)] |= (byte) (1 << (i & 7));
                }
            }
        }
        return out;
    }
}
