package dev.llmflash.runtime.model;

import dev.llmflash.formats.FormatException;
import dev.llmflash.formats.checkpoint.Checkpoint;
import dev.llmflash.formats.hf.FalconConfig;
import dev.llmflash.formats.tensor.DType;
import dev.llmflash.runtime.ffn.Activation;
import dev.llmflash.runtime.ffn.Ffn;
import dev.llmflash.runtime.ffn.FfnSource;
import dev.llmflash.runtime.ffn.FfnWrapper;
import dev.llmflash.runtime.kernels.Kernels;
import dev.llmflash.runtime.kernels.Ops;
import dev.llmflash.runtime.weights.Matrix;

/**
 * Falcon, exactly as HF's {@code modeling_falcon.py}: a fused query_key_value projection split by
 * {@link FalconConfig.QkvLayout}, rotary positions (rotate-half form), multi-query or grouped K/V,
 * parallel attention + MLP (7B style: one input_layernorm; 40B style: ln_attn and ln_mlp), final ln_f,
 * tied LM head.
 * Legend: d = hidden size, f = ffn size, nh = query heads, nkv = K/V heads, hd = head dim,
 * V = vocab, n = tokens in the step.
 */
public final class FalconModel implements LanguageModel {
    private final FalconConfig cfg;
    private final Weights w;
    private final Kernels k;
    private final AutoCloseable owner;
    private final float[] invFreq; // [hd/2] rotary inverse frequencies

    record Layer(float[] lnAttnW, float[] lnAttnB,   // [d] input_layernorm or ln_attn
                 float[] lnMlpW, float[] lnMlpB,     // [d] ln_mlp (2 norms) or post_attention_layernorm (sequential); else null
                 Matrix qkv, float[] qkvB,           // [(nh + 2 nkv) hd, d]
                 Matrix dense, float[] denseB,       // [d, d]
                 Ffn ffn) {                          // dense_h_to_4h [f, d], act, dense_4h_to_h [d, f]

    }

    record Weights(Matrix embed,                     // [V, d]
                   Layer[] layers,
                   float[] lnFW, float[] lnFB,       // [d]
                   Matrix lmHead) {                  // [V, d]
    }

    /**
     * @param ckpt  every tensor but the FFN matrices, under HF names
     * @param ffns  the FFN weights (from the same checkpoint, or a bundle's FFN file)
     * @param owner closed with the model (the checkpoint or bundle); may be null
     * @param wrap  applied to each layer's FFN as it is built ({@link FfnWrapper#NONE}: as loaded)
     */
    public FalconModel(FalconConfig cfg, Checkpoint ckpt, FfnSource ffns, AutoCloseable owner, Kernels k, FfnWrapper wrap) {
        this.cfg = cfg;
        this.owner = owner;
        this.k = k;
        this.w = load(cfg, ckpt, ffns, wrap);
        int hd = cfg.headDim();
        this.invFreq = new float[hd / 2];
        for (int i = 0; i < hd / 2; i++) {
            // HF: 1 / base ** (arange(0, hd, 2) / hd), computed in f32
            invFreq[i] = (float) (1.0 / Math.pow(cfg.ropeTheta(), (float) (2 * i) / hd));
        }
    }

    private static Weights load(FalconConfig c, Checkpoint ckpt, FfnSource ffns, FfnWrapper wrap) {
        String p = "transformer.";
        if (!ckpt.contains(p + "word_embeddings.weight")) {
            throw new FormatException(ckpt.location(), "has no tensor 'transformer.word_embeddings.weight'",
                    "this is not a Falcon checkpoint, or it is incomplete");
        }
        int d = c.hiddenSize(), f = c.ffnSize(), v = c.vocabSize();
        Matrix embed = Matrix.load(ckpt, p + "word_embeddings.weight", v, d);
        Layer[] layers = new Layer[c.numLayers()];
        for (int i = 0; i < layers.length; i++) {
            String l = p + "h." + i + ".";
            String lnA, lnM;
            if (!c.parallelAttn()) {
                lnA = "input_layernorm";
                lnM = "post_attention_layernorm";
            } else if (c.lnPerBlock() == 2) {
                lnA = "ln_attn";
                lnM = "ln_mlp";
            } else {
                lnA = "input_layernorm";
                lnM = null;
            }
            layers[i] = new Layer(
                    Matrix.vector(ckpt, l + lnA + ".weight", d), Matrix.vector(ckpt, l + lnA + ".bias", d),
                    lnM == null ? null : Matrix.vector(ckpt, l + lnM + ".weight", d),
                    lnM == null ? null : Matrix.vector(ckpt, l + lnM + ".bias", d),
                    Matrix.load(ckpt, l + "self_attention.query_key_value.weight", c.qkvRows(), d),
                    bias(c, ckpt, l + "self_attention.query_key_value.bias", c.qkvRows()),
                    Matrix.load(ckpt, l + "self_attention.dense.weight", d, d),
                    bias(c, ckpt, l + "self_attention.dense.bias", d),
                    wrap.wrap(i, ffns.layer(i, l + "mlp.dense_h_to_4h.weight", l + "mlp.dense_4h_to_h.weight", f, d,
                            bias(c, ckpt, l + "mlp.dense_h_to_4h.bias", f), bias(c, ckpt, l + "mlp.dense_4h_to_h.bias", d),
                            Activation.of(c.activation()))));
        }
        Matrix head = c.tieWordEmbeddings() ? embed : Matrix.load(ckpt, "lm_head.weight", v, d);
        return new Weights(embed, layers, Matrix.vector(ckpt, p + "ln_f.weight", d), Matrix.vector(ckpt, p + "ln_f.bias", d), head);
    }

    private static float[] bias(FalconConfig c, Checkpoint ckpt, String name, int n) {
        return c.bias() ? Matrix.vector(ckpt, name, n) : null;
    }

    @Override
    public FalconConfig config() {
        return cfg;
    }

    static final class State extends KvState {
        final float[] x, a, mIn, qkv, q, kk, vv, att, o, ffn, cos, sin;

        State(FalconConfig c, int capacity, DType kv, int ffnScratchPerRow) {
            super(c.numLayers(), capacity, c.numKvHeads() * c.headDim(), c.headDim(), kv);
            int b = span, d = c.hiddenSize(), hd = c.headDim();
            x = new float[b * d];
            a = new float[b * d];
            mIn = new float[b * d];
            qkv = new float[b * c.qkvRows()];
            q = new float[b * c.numHeads() * hd];
            kk = new float[b * kvDim];
            vv = new float[b * kvDim];
            att = new float[b * d];
            o = new float[b * d];
            ffn = new float[b * ffnScratchPerRow];
            cos = new float[hd / 2];
            sin = new float[hd / 2];
        }
    }

    @Override
    public State newState(int maxTokens, DType kv) {
        int scratch = 0;
        for (Layer l : w.layers()) {
            scratch = Math.max(scratch, l.ffn().scratchPerRow());
        }
        return new State(cfg, maxTokens, kv, scratch);
    }

    /** Floats of the activation buffers of a state of {@code capacity} positions (what the budget counts as scratch). */
    public static long activationFloats(FalconConfig c, int capacity, int ffnScratchPerRow) {
        int d = c.hiddenSize(), hd = c.headDim();
        int kvDim = c.numKvHeads() * hd;
        int span = Math.min(capacity, KvState.PREFILL_SPAN);
        return (long) span * (6L * d + c.qkvRows() + (long) c.numHeads() * hd + 2L * kvDim + ffnScratchPerRow)
                + KvState.attentionFloats(span, capacity, hd);
    }

    @Override
    public void forward(LanguageModel.State state, int[] tokens, int n, boolean allPositions, float[] logits) {
        State s = (State) state;
        s.checkRoom(n);
        int vocab = cfg.vocabSize();
        for (int start = 0; start < n; start += s.span) {
            int m = Math.min(s.span, n - start);
            step(s, tokens, start, m);
            if (allPositions) {
                head(s, 0, m, logits, start * vocab);
            } else if (start + m == n) {
                head(s, m - 1, 1, logits, 0);
            }
        }
    }

    private void step(State s, int[] tokens, int off, int m) {
        int d = cfg.hiddenSize(), hd = cfg.headDim();
        int nh = cfg.numHeads(), nkv = cfg.numKvHeads();
        float eps = cfg.layerNormEpsilon();
        float scale = (float) (1.0 / Math.sqrt(hd));
        int kvDim = s.kvDim;

        for (int t = 0; t < m; t++) {
            int tok = tokens[off + t];
            if (tok < 0 || tok >= cfg.vocabSize()) {
                throw new IllegalArgumentException("token id " + tok + " outside the vocabulary of " + cfg.vocabSize());
            }
            k.row(w.embed().data(), w.embed().dtype(), tok, d, s.a);
            System.arraycopy(s.a, 0, s.x, t * d, d);
        }

        for (int li = 0; li < w.layers().length; li++) {
            Layer l = w.layers()[li];
            // a = LN_attn(x); mIn = the MLP's input (same norm, its own norm, or later after attention).
            for (int t = 0; t < m; t++) {
                Ops.layerNorm(s.x, t * d, s.a, t * d, d, l.lnAttnW(), l.lnAttnB(), eps);
                if (cfg.parallelAttn() && l.lnMlpW() != null) {
                    Ops.layerNorm(s.x, t * d, s.mIn, t * d, d, l.lnMlpW(), l.lnMlpB(), eps);
                }
            }
            // Fused q/k/v, split per the layout, rotary on q and k, then into the cache.
            l.qkv().apply(k, s.a, m, s.qkv, l.qkvB());
            splitQkv(s, m);
            for (int t = 0; t < m; t++) {
                rotaryTables(s.length + t, s.cos, s.sin);
                for (int h = 0; h < nh; h++) {
                    rotate(s.q, t * nh * hd + h * hd, hd, s.cos, s.sin);
                }
                for (int h = 0; h < nkv; h++) {
                    rotate(s.kk, t * kvDim + h * hd, hd, s.cos, s.sin);
                }
            }
            s.store(li, s.kk, s.vv, m);
            s.attention(k, li, s.q, m, nh, nkv, hd, scale, s.att);
            l.dense().apply(k, s.att, m, s.o, l.denseB());

            float[] mlpIn;
            if (!cfg.parallelAttn()) {
                Ops.add(s.x, 0, s.o, 0, m * d); // sequential: residual += attention, then its own norm
                for (int t = 0; t < m; t++) {
                    Ops.layerNorm(s.x, t * d, s.mIn, t * d, d, l.lnMlpW(), l.lnMlpB(), eps);
                }
                mlpIn = s.mIn;
            } else {
                mlpIn = l.lnMlpW() != null ? s.mIn : s.a;
            }
            l.ffn().forward(k, mlpIn, m, s.ffn, s.att); // attention output is in s.o; s.att is free
            Ops.add(s.x, 0, s.att, 0, m * d);        // residual += mlp
            if (cfg.parallelAttn()) {
                Ops.add(s.x, 0, s.o, 0, m * d);      // residual += attention (parallel block)
            }
        }
        for (int t = 0; t < m; t++) {
            Ops.layerNorm(s.x, t * d, s.x, t * d, d, w.lnFW(), w.lnFB(), eps);
        }
        s.length += m;
    }

    /** Copies the fused projection's rows into q (n x nh*hd), k and v (n x nkv*hd) per HF's _split_heads. */
    private void splitQkv(State s, int m) {
        int hd = cfg.headDim(), nh = cfg.numHeads(), nkv = cfg.numKvHeads(), rows = cfg.qkvRows();
        int qd = nh * hd, kvd = nkv * hd;
        for (int t = 0; t < m; t++) {
            int src = t * rows;
            switch (cfg.qkvLayout()) {
                case MULTI_QUERY -> { // [q_0 .. q_{nh-1}, k, v]
                    System.arraycopy(s.qkv, src, s.q, t * qd, qd);
                    System.arraycopy(s.qkv, src + qd, s.kk, t * kvd, hd);
                    System.arraycopy(s.qkv, src + qd + hd, s.vv, t * kvd, hd);
                }
                case GROUPED -> { // per group g: [q_{g*per} .. q_{g*per+per-1}, k_g, v_g]
                    int per = nh / nkv;
                    for (int g = 0; g < nkv; g++) {
                        int base = src + g * (per + 2) * hd;
                        System.arraycopy(s.qkv, base, s.q, t * qd + g * per * hd, per * hd);
                        System.arraycopy(s.qkv, base + per * hd, s.kk, t * kvd + g * hd, hd);
                        System.arraycopy(s.qkv, base + (per + 1) * hd, s.vv, t * kvd + g * hd, hd);
                    }
                }
                case INTERLEAVED -> { // per head h: [q_h, k_h, v_h]
                    for (int h = 0; h < nh; h++) {
                        int base = src + h * 3 * hd;
                        System.arraycopy(s.qkv, base, s.q, t * qd + h * hd, hd);
                        System.arraycopy(s.qkv, base + hd, s.kk, t * kvd + h * hd, hd);
                        System.arraycopy(s.qkv, base + 2 * hd, s.vv, t * kvd + h * hd, hd);
                    }
                }
            }
        }
    }

    /** cos/sin of position * invFreq, in f32 like HF's rotary embedding. */
    private void rotaryTables(int pos, float[] cos, float[] sin) {
        for (int i = 0; i < invFreq.length; i++) {
            float angle = invFreq[i] * (float) pos;
            cos[i] = (float) Math.cos(angle);
            sin[i] = (float) Math.sin(angle);
        }
    }

    /** x * cos + rotate_half(x) * sin over one head, rotate_half(x) = [-x2, x1]. */
    private static void rotate(float[] x, int off, int hd, float[] cos, float[] sin) {
        int half = hd / 2;
        for (int i = 0; i < half; i++) {
            float x1 = x[off + i];
            float x2 = x[off + half + i];
            x[off + i] = x1 * cos[i] - x2 * sin[i];
            x[off + half + i] = x2 * cos[i] + x1 * sin[i];
        }
    }

    /** Logits of hidden rows [first, first+count) of s.x into logits[dst ...]. */
    private void head(State s, int first, int count, float[] logits, int dst) {
        int d = cfg.hiddenSize();
        float[] in = s.x;
        if (first != 0) {
            System.arraycopy(s.x, first * d, s.a, 0, count * d);
            in = s.a;
        }
        w.lmHead().applyAt(k, in, count, logits, dst);
    }


    @Override
    public void close() {
        Models.closeOwner(owner);
    }
}
