package dev.llmflash.runtime.flash;

import dev.llmflash.formats.predictor.LayerPredictor;
import dev.llmflash.formats.tensor.DType;
import dev.llmflash.runtime.ffn.Activation;
import dev.llmflash.runtime.ffn.Ffn;
import dev.llmflash.runtime.ffn.NeuronMajorFfn;
import dev.llmflash.runtime.ffn.RecordingFfn;
import dev.llmflash.runtime.kernels.Kernels;
import org.junit.jupiter.api.Test;

import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.util.ArrayList;
import java.util.List;
import java.util.Random;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;

/** The predictor-masked FFN against a direct computation over the selected neurons. */
class PredictedFfnTest {
    static final int D = 16, F = 40, R = 4, M = 3;

    /** A bundled-layout FFN (up row ‖ down column per neuron, stride 2 d f32) with seeded weights. */
    static NeuronMajorFfn ffn(Random rnd, float[] up, float[] down, float[] b1, float[] b2) {
        MemorySegment seg = Arena.ofAuto().allocate((long) F * 2 * D * 4, 64);
        for (int i = 0; i < F; i++) {
            for (int j = 0; j < D; j++) {
                up[i * D + j] = (float) rnd.nextGaussian();
                down[i * D + j] = (float) rnd.nextGaussian();
                seg.setAtIndex(ValueLayout.JAVA_FLOAT, (long) i * 2 * D + j, up[i * D + j]);
                seg.setAtIndex(ValueLayout.JAVA_FLOAT, (long) i * 2 * D + D + j, down[i * D + j]);
            }
            b1[i] = (float) rnd.nextGaussian();
        }
        for (int j = 0; j < D; j++) {
            b2[j] = (float) rnd.nextGaussian();
        }
        return new NeuronMajorFfn(seg, seg.asSlice(D * 4L), DType.F32, F, D, 2L * D * 4, b1, b2, Activation.RELU);
    }

    @Test
    void computesExactlyTheSelectedNeurons() {
        Random rnd = new Random(3);
        float[] up = new float[F * D], down = new float[F * D], b1 = new float[F], b2 = new float[D];
        NeuronMajorFfn inner = ffn(rnd, up, down, b1, b2);
        float[] a = new float[R * D], b = new float[F * R], c = new float[F];
        for (int i = 0; i < a.length; i++) {
            a[i] = (float) rnd.nextGaussian();
        }
        for (int i = 0; i < b.length; i++) {
            b[i] = (float) rnd.nextGaussian();
        }
        LayerPredictor p = new LayerPredictor(0, false, R, 0.6f, a, b, c);
        float[] x = new float[M * D];
        for (int i = 0; i < x.length; i++) {
            x[i] = (float) rnd.nextGaussian();
        }
        float[] out = new float[M * D], h = new float[M * F];
        PredictedFfn pf = new PredictedFfn(inner, p);
        try (Kernels k = new Kernels(2)) {
            pf.forward(k, x, M, h, out);
        }
        // Oracle: double-precision loops over the neurons whose sigmoid(B A x + c) > 0.6.
        long kept = 0;
        for (int t = 0; t < M; t++) {
            double[] low = new double[R];
            for (int j = 0; j < R; j++) {
                for (int q = 0; q < D; q++) {
                    low[j] += a[j * D + q] * x[t * D + q];
                }
            }
            double[] y = new double[D];
            for (int q = 0; q < D; q++) {
                y[q] = b2[q];
            }
            for (int i = 0; i < F; i++) {
                double z = c[i];
                for (int j = 0; j < R; j++) {
                    z += b[i * R + j] * low[j];
                }
                if (1 / (1 + Math.exp(-z)) <= 0.6) {
                    continue;
                }
                kept++;
                double pre = b1[i];
                for (int q = 0; q < D; q++) {
                    pre += up[i * D + q] * x[t * D + q];
                }
                double act = Math.max(0, pre);
                for (int q = 0; q < D; q++) {
                    y[q] += act * down[i * D + q];
                }
            }
            for (int q = 0; q < D; q++) {
                assertEquals(y[q], out[t * D + q], 1e-4, "token " + t + " output " + q);
            }
        }
        assertEquals((double) kept / (M * F), pf.selectedFraction(), 1e-12);
    }

    @Test
    void recordingSeesInputsAndActivations() {
        Random rnd = new Random(4);
        float[] up = new float[F * D], down = new float[F * D], b1 = new float[F], b2 = new float[D];
        NeuronMajorFfn inner = ffn(rnd, up, down, b1, b2);
        List<float[]> seen = new ArrayList<>();
        Ffn rec = RecordingFfn.everyLayer((layer, x, h, m) -> {
            assertEquals(7, layer);
            seen.add(java.util.Arrays.copyOf(x, m * D));
            seen.add(java.util.Arrays.copyOf(h, m * F));
        }).wrap(7, inner);
        float[] x = new float[M * D];
        for (int i = 0; i < x.length; i++) {
            x[i] = (float) rnd.nextGaussian();
        }
        float[] out1 = new float[M * D], out2 = new float[M * D], h1 = new float[M * F], h2 = new float[M * F];
        try (Kernels k = new Kernels(1)) {
            rec.forward(k, x, M, h1, out1);
            inner.forward(k, x, M, h2, out2);
        }
        assertArrayEquals(out2, out1);
        assertArrayEquals(x, seen.get(0));
        assertArrayEquals(h2, seen.get(1));
    }
}
