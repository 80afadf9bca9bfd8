package dev.llmflash.trainer;

import dev.llmflash.runtime.kernels.VectorOps;
import jdk.incubator.vector.FloatVector;
import jdk.incubator.vector.VectorOperators;
import jdk.incubator.vector.VectorSpecies;

/**
 * The f32 kernels of one training step of {@code p = sigmoid(B (A x) + c)} over a minibatch, each
 * over a range of rows (tokens) or columns (neurons) so that {@link Team} parts can share a call.
 * Every output element is computed whole by one call with a fixed summation order (over k, or over
 * the batch rows t in order), so a result never depends on how the ranges were cut: the training is
 * bit-identical for any thread count. Scalar twins in the tests are the oracle.
 * <p>Legend (all matrices row-major f32): b = batch rows, d = model width, f = neurons, r = rank;
 * X: b x d (the batch's inputs), A: r x d, Bt: r x f (B transposed: training keeps B as its
 * transpose so that both Z = H B^T and dB = dZ^T H run along contiguous neuron rows), c: f,
 * H = X A^T: b x r, Z = H B^T + c: b x f (turned into P = sigmoid(Z), then into dZ in place),
 * Y: b x f labels as 0/1, w+ / w-: per-neuron weights of positive / negative labels,
 * dH = dZ B: b x r, dBt = H^T dZ: r x f, dc = colsum dZ: f, dA = dH^T X: r x d.
 * L = lanes per vector; tails run scalar with the same operations (FMA stays FMA).
 * <p>Thread-safety: stateless; parts must write disjoint ranges.
 */
final class TrainerKernels {
    private static final VectorSpecies<Float> F = FloatVector.SPECIES_PREFERRED;
    private static final int L = F.length();

    private TrainerKernels() {
    }

    /** H[t, k] = sum_j X[t, j] A[k, j] for t in [t0, t1), k in [0, r). */
    static void project(float[] x, int d, float[] a, int r, float[] h, int t0, int t1) {
        float[] lanes = lanes();
        for (int t = t0; t < t1; t++) {
            for (int k = 0; k < r; k++) {
                h[t * r + k] = dot(x, t * d, a, k * d, d, lanes);
            }
        }
    }

    /** Z[t, :] = c + sum_k H[t, k] Bt[k, :] (k ascending) for t in [t0, t1). */
    static void logits(float[] h, int r, float[] bt, float[] c, int f, float[] z, int t0, int t1) {
        for (int t = t0; t < t1; t++) {
            System.arraycopy(c, 0, z, t * f, f);
            for (int k = 0; k < r; k++) {
                VectorOps.axpy(h[t * r + k], bt, k * f, z, t * f, f);
            }
        }
    }

    /**
     * v[off + i] = 1 / (1 + exp(-v[off + i])) for i in [0, n), in place, with {@link #exp}: the
     * Vector API's own EXP is not used because its intrinsic (SVML) and its Java fallback (before C2
     * compiles) differ in the last bits, which would make training depend on JIT timing.
     */
    static void sigmoid(float[] v, int off, int n) {
        FloatVector one = FloatVector.broadcast(F, 1f);
        int i = 0;
        for (int bound = F.loopBound(n); i < bound; i += L) {
            FloatVector z = FloatVector.fromArray(F, v, off + i);
            one.div(exp(z.neg()).add(one)).intoArray(v, off + i);
        }
        for (; i < n; i++) {
            v[off + i] = sigmoidScalar(v[off + i]);
        }
    }

    /** The scalar twin of one {@link #sigmoid} lane, bit for bit (same operations, FMA as FMA). */
    static float sigmoidScalar(float z) {
        return 1f / (expScalar(-z) + 1f);
    }

    // exp(x) = 2^k e^s with k = round(x / ln 2), s = x - k ln 2 in [-ln2/2, ln2/2] (ln 2 split in a
    // high part exact in float and a low part, Cody-Waite), e^s by its degree-6 Taylor polynomial in
    // Horner form (relative error < 2e-7 on that interval), 2^k by building the float's exponent bits.
    // Rounding to k: adding 1.5 * 2^23 leaves round-to-nearest(x / ln 2) in the low mantissa bits.
    // x is clamped into [-86, 88] first, so 2^k stays a normal float (e^-86 ~ 4e-38; sigmoid only
    // needs 0 or 1 beyond that). Only +, *, FMA and bit moves: exact IEEE, identical in every JIT tier.
    private static final float LOG2E = 1.44269504f;
    private static final float LN2_HI = 0.693145752f;
    private static final float LN2_LO = 1.42860677e-6f;
    private static final float ROUND = 12582912f;          // 1.5 * 2^23
    private static final float X_MIN = -86f, X_MAX = 88f;
    private static final float P2 = 1f / 2, P3 = 1f / 6, P4 = 1f / 24, P5 = 1f / 120, P6 = 1f / 720;

    static FloatVector exp(FloatVector x) {
        x = x.max(X_MIN).min(X_MAX);
        FloatVector kr = x.fma(FloatVector.broadcast(F, LOG2E), FloatVector.broadcast(F, ROUND));
        FloatVector k = kr.sub(ROUND);
        FloatVector s = k.fma(FloatVector.broadcast(F, -LN2_HI), x);
        s = k.fma(FloatVector.broadcast(F, -LN2_LO), s);
        FloatVector p = s.fma(FloatVector.broadcast(F, P6), FloatVector.broadcast(F, P5));
        p = p.fma(s, FloatVector.broadcast(F, P4));
        p = p.fma(s, FloatVector.broadcast(F, P3));
        p = p.fma(s, FloatVector.broadcast(F, P2));
        p = p.fma(s, FloatVector.broadcast(F, 1f));
        p = p.fma(s, FloatVector.broadcast(F, 1f));
        // k as an integer: the low bits of kr's representation minus ROUND's; shifted into the exponent.
        var ki = kr.reinterpretAsInts().sub(Float.floatToRawIntBits(ROUND)).lanewise(VectorOperators.LSHL, 23);
        return p.reinterpretAsInts().add(ki).reinterpretAsFloats();
    }

    static float expScalar(float x) {
        x = Math.min(Math.max(x, X_MIN), X_MAX);
        float kr = Math.fma(x, LOG2E, ROUND);
        float k = kr - ROUND;
        float s = Math.fma(k, -LN2_HI, x);
        s = Math.fma(k, -LN2_LO, s);
        float p = Math.fma(s, P6, P5);
        p = Math.fma(p, s, P4);
        p = Math.fma(p, s, P3);
        p = Math.fma(p, s, P2);
        p = Math.fma(p, s, 1f);
        p = Math.fma(p, s, 1f);
        int ki = (Float.floatToRawIntBits(kr) - Float.floatToRawIntBits(ROUND)) << 23;
        return Float.intBitsToFloat(Float.floatToRawIntBits(p) + ki);
    }

    /**
     * sum_j a[aOff + j] b[bOff + j] for j in [0, n): FMA into L lanes, then the lanes added in lane
     * order through an array, not with reduceLanes (whose order may differ between the intrinsic and
     * the fallback), so the result is the same in every JIT tier.
     */
    static float dot(float[] a, int aOff, float[] b, int bOff, int n, float[] lanes) {
        FloatVector acc = FloatVector.zero(F);
        int j = 0;
        for (int bound = F.loopBound(n); j < bound; j += L) {
            acc = FloatVector.fromArray(F, a, aOff + j).fma(FloatVector.fromArray(F, b, bOff + j), acc);
        }
        acc.intoArray(lanes, 0);
        float s = 0f;
        for (int l = 0; l < L; l++) {
            s += lanes[l];
        }
        for (; j < n; j++) {
            s = Math.fma(a[aOff + j], b[bOff + j], s);
        }
        return s;
    }

    /** Scratch for {@link #dot}'s lanes: one per thread. */
    static float[] lanes() {
        return new float[L];
    }

    /**
     * The balanced binary cross-entropy's gradient with respect to the logits, in place over P:
     * {@code dZ = scale * (P - Y) * (Y ? w+ : w-)}, written as {@code (P - Y) * (w- + Y (w+ - w-))}
     * so that it vectorizes (Y is 0 or 1). Row of n neurons at {@code off} of p and y.
     */
    static void balancedGradient(float[] p, float[] y, int off, float[] wPos, float[] wNeg, float scale, int n) {
        FloatVector s = FloatVector.broadcast(F, scale);
        int i = 0;
        for (int bound = F.loopBound(n); i < bound; i += L) {
            FloatVector yv = FloatVector.fromArray(F, y, off + i);
            FloatVector wn = FloatVector.fromArray(F, wNeg, i);
            FloatVector w = FloatVector.fromArray(F, wPos, i).sub(wn).mul(yv).add(wn);
            FloatVector.fromArray(F, p, off + i).sub(yv).mul(w).mul(s).intoArray(p, off + i);
        }
        for (; i < n; i++) {
            float yi = y[off + i];
            float w = (wPos[i] - wNeg[i]) * yi + wNeg[i];
            p[off + i] = (p[off + i] - yi) * w * scale;
        }
    }

    /** Row {@code t} of the bit-packed labels (ceil(f/8) bytes from {@code labelOff}) as 0/1 floats at y[yOff..). */
    static void unpackLabels(byte[] labels, int labelOff, int f, float[] y, int yOff) {
        for (int i = 0; i < f; i++) {
            y[yOff + i] = (labels[labelOff + (i >>> 3)] >>> (i & 7)) & 1;
        }
    }

    /** dH[t, k] = sum_i dZ[t, i] Bt[k, i] for t in [t0, t1), k in [0, r). */
    static void backHidden(float[] dz, int f, float[] bt, int r, float[] dh, int t0, int t1) {
        float[] lanes = lanes();
        for (int t = t0; t < t1; t++) {
            for (int k = 0; k < r; k++) {
                dh[t * r + k] = dot(dz, t * f, bt, k * f, f, lanes);
            }
        }
    }

    /**
     * dBt[k, i] = sum_t H[t, k] dZ[t, i] and dc[i] = sum_t dZ[t, i] (t ascending over the b rows), for
     * neurons i in [i0, i1) and every k: one pass over the batch keeps the r x (i1 - i0) block hot.
     */
    static void gradUp(float[] h, int r, float[] dz, int f, int b, float[] dbt, float[] dc, int i0, int i1) {
        int len = i1 - i0;
        for (int k = 0; k < r; k++) {
            java.util.Arrays.fill(dbt, k * f + i0, k * f + i1, 0f);
        }
        java.util.Arrays.fill(dc, i0, i1, 0f);
        for (int t = 0; t < b; t++) {
            VectorOps.axpy(1f, dz, t * f + i0, dc, i0, len);
            for (int k = 0; k < r; k++) {
                VectorOps.axpy(h[t * r + k], dz, t * f + i0, dbt, k * f + i0, len);
            }
        }
    }

    /** dA[k, :] = sum_t dH[t, k] X[t, :] (t ascending over the b rows) for k in [k0, k1). */
    static void gradDown(float[] dh, int r, float[] x, int d, int b, float[] da, int k0, int k1) {
        java.util.Arrays.fill(da, k0 * d, k1 * d, 0f);
        for (int t = 0; t < b; t++) {
            for (int k = k0; k < k1; k++) {
                VectorOps.axpy(dh[t * r + k], x, t * d, da, k * d, d);
            }
        }
    }

    /**
     * One Adam step (Kingma and Ba; bias-corrected as PyTorch does it) on elements [from, to):
     * {@code m = b1 m + (1 - b1) g; v = b2 v + (1 - b2) g^2; w -= stepSize * m / (sqrt(v) / sqrt(bc2) + eps)}
     * where the caller passes {@code stepSize = lr / bc1}, {@code invSqrtBc2 = 1 / sqrt(bc2)},
     * {@code bcK = 1 - betaK^step}. No FMA, so vector lanes and the scalar tail agree bit for bit.
     */
    static void adam(float[] w, float[] m, float[] v, float[] g, int from, int to,
                     float beta1, float beta2, float eps, float stepSize, float invSqrtBc2) {
        FloatVector b1 = FloatVector.broadcast(F, beta1);
        FloatVector c1 = FloatVector.broadcast(F, 1f - beta1);
        FloatVector b2 = FloatVector.broadcast(F, beta2);
        FloatVector c2 = FloatVector.broadcast(F, 1f - beta2);
        FloatVector ep = FloatVector.broadcast(F, eps);
        FloatVector st = FloatVector.broadcast(F, stepSize);
        FloatVector ib = FloatVector.broadcast(F, invSqrtBc2);
        int i = from;
        for (int bound = from + F.loopBound(to - from); i < bound; i += L) {
            FloatVector gv = FloatVector.fromArray(F, g, i);
            FloatVector mv = FloatVector.fromArray(F, m, i).mul(b1).add(gv.mul(c1));
            FloatVector vv = FloatVector.fromArray(F, v, i).mul(b2).add(gv.mul(gv).mul(c2));
            mv.intoArray(m, i);
            vv.intoArray(v, i);
            FloatVector den = vv.sqrt().mul(ib).add(ep);
            FloatVector.fromArray(F, w, i).sub(mv.mul(st).div(den)).intoArray(w, i);
        }
        for (; i < to; i++) {
            float gi = g[i];
            float mi = m[i] * beta1 + gi * (1f - beta1);
            float vi = v[i] * beta2 + gi * gi * (1f - beta2);
            m[i] = mi;
            v[i] = vi;
            float den = (float) Math.sqrt(vi) * invSqrtBc2 + eps;
            w[i] = w[i] - mi * stepSize / den;
        }
    }
}
