package dev.llmflash.runtime.model;

import dev.llmflash.formats.FormatException;
import dev.llmflash.formats.checkpoint.Checkpoint;
import dev.llmflash.formats.hf.OptConfig;
import dev.llmflash.formats.tensor.DType;
import dev.llmflash.runtime.ffn.Activation;
import dev.llmflash.runtime.ffn.Ffn;
import dev.llmflash.runtime.ffn.FfnSource;
import dev.llmflash.runtime.ffn.FfnWrapper;
import dev.llmflash.runtime.kernels.Kernels;
import dev.llmflash.runtime.kernels.Ops;
import dev.llmflash.runtime.weights.Matrix;

/**
 * OPT (Zhang et al. 2022), exactly as HF's {@code modeling_opt.py}: learned positions offset by 2,
 * pre-LN or post-LN blocks, optional project_in/project_out (OPT-350m), ReLU FFN, tied LM head.
 * Legend: d = hidden size, e = word_embed_proj_dim, f = ffn size, V = vocab, n = tokens in the step.
 */
public final class OptModel implements LanguageModel {
    private final OptConfig cfg;
    private final Weights w;
    private final Kernels k;
    private final AutoCloseable owner;

    /** Weights: matrices stay in their stored dtype (views into the checkpoint), vectors are f32. */
    record Layer(float[] attnLnW, float[] attnLnB,  // [d] self_attn_layer_norm
                 Matrix wq, float[] bq,              // [d, d], [d]
                 Matrix wk, float[] bk,              // [d, d], [d]
                 Matrix wv, float[] bv,              // [d, d], [d]
                 Matrix wo, float[] bo,              // [d, d], [d] out_proj
                 float[] ffnLnW, float[] ffnLnB,     // [d] final_layer_norm (of the block)
                 Ffn ffn) {                          // fc1 [f, d] + bias, ReLU, fc2 [d, f] + bias

    }

    record Weights(Matrix embedTokens,               // [V, e]
                   Matrix embedPositions,            // [maxPositions + 2, d]
                   Matrix projectIn,                 // [d, e] or null
                   Matrix projectOut,                // [e, d] or null
                   Layer[] layers,
                   float[] finalLnW, float[] finalLnB, // [d] or null
                   Matrix lmHead) {                  // [V, e]
    }

    /**
     * @param ckpt  every tensor but the FFN matrices, under HF names
     * @param ffns  the FFN weights (from the same checkpoint, or a bundle's FFN file)
     * @param owner closed with the model (the checkpoint or bundle); may be null
     * @param wrap  applied to each layer's FFN as it is built ({@link FfnWrapper#NONE}: as loaded)
     */
    public OptModel(OptConfig cfg, Checkpoint ckpt, FfnSource ffns, AutoCloseable owner, Kernels k, FfnWrapper wrap) {
        this.cfg = cfg;
        this.owner = owner;
        this.k = k;
        this.w = load(cfg, ckpt, ffns, wrap);
    }

    private static Weights load(OptConfig c, Checkpoint ckpt, FfnSource ffns, FfnWrapper wrap) {
        String p;
        if (ckpt.contains("model.decoder.embed_tokens.weight")) {
            p = "model.decoder.";
        } else if (ckpt.contains("decoder.embed_tokens.weight")) {
            p = "decoder."; // checkpoints saved from OPTModel rather than OPTForCausalLM
        } else {
            throw new FormatException(ckpt.location(), "has no tensor 'model.decoder.embed_tokens.weight'",
                    "this is not an OPT checkpoint, or it is incomplete");
        }
        int d = c.hiddenSize(), e = c.wordEmbedProjDim(), f = c.ffnSize(), v = c.vocabSize();
        Matrix embed = Matrix.load(ckpt, p + "embed_tokens.weight", v, e);
        Matrix pos = Matrix.load(ckpt, p + "embed_positions.weight", c.maxPositions() + OptConfig.POSITION_OFFSET, d);
        Matrix in = c.hasProjections() ? Matrix.load(ckpt, p + "project_in.weight", d, e) : null;
        Matrix out = c.hasProjections() ? Matrix.load(ckpt, p + "project_out.weight", e, d) : null;
        Layer[] layers = new Layer[c.numLayers()];
        for (int i = 0; i < layers.length; i++) {
            String l = p + "layers." + i + ".";
            layers[i] = new Layer(
                    norm(c, ckpt, l + "self_attn_layer_norm.weight", d), norm(c, ckpt, l + "self_attn_layer_norm.bias", d),
                    Matrix.load(ckpt, l + "self_attn.q_proj.weight", d, d), bias(c, ckpt, l + "self_attn.q_proj.bias", d),
                    Matrix.load(ckpt, l + "self_attn.k_proj.weight", d, d), bias(c, ckpt, l + "self_attn.k_proj.bias", d),
                    Matrix.load(ckpt, l + "self_attn.v_proj.weight", d, d), bias(c, ckpt, l + "self_attn.v_proj.bias", d),
                    Matrix.load(ckpt, l + "self_attn.out_proj.weight", d, d), bias(c, ckpt, l + "self_attn.out_proj.bias", d),
                    norm(c, ckpt, l + "final_layer_norm.weight", d), norm(c, ckpt, l + "final_layer_norm.bias", d),
                    wrap.wrap(i, ffns.layer(i, l + "fc1.weight", l + "fc2.weight", f, d, bias(c, ckpt, l + "fc1.bias", f),
                            bias(c, ckpt, l + "fc2.bias", d), Activation.of(c.activation()))));
        }
        float[] fw = c.finalLayerNorm() ? norm(c, ckpt, p + "final_layer_norm.weight", d) : null;
        float[] fb = c.finalLayerNorm() ? norm(c, ckpt, p + "final_layer_norm.bias", d) : null;
        // Tied (every released OPT): HF drops lm_head.weight when saving, the head is the embedding.
        Matrix head = c.tieWordEmbeddings() ? embed : Matrix.load(ckpt, "lm_head.weight", v, e);
        return new Weights(embed, pos, in, out, layers, fw, fb, head);
    }

    private static float[] bias(OptConfig c, Checkpoint ckpt, String name, int n) {
        return c.enableBias() ? Matrix.vector(ckpt, name, n) : null;
    }

    private static float[] norm(OptConfig c, Checkpoint ckpt, String name, int n) {
        return c.layerNormElementwiseAffine() ? Matrix.vector(ckpt, name, n) : null;
    }

    @Override
    public OptConfig config() {
        return cfg;
    }

    /** Activations for up to {@link KvState#span} tokens (one layer-major pass), allocated once per state. */
    static final class State extends KvState {
        final float[] x, h, q, kk, vv, att, ffn, emb, row;

        State(OptConfig c, int capacity, DType kv, int ffnScratchPerRow) {
            super(c.numLayers(), capacity, c.hiddenSize(), c.headDim(), kv);
            int b = span, d = c.hiddenSize();
            x = new float[b * d];
            h = new float[b * d];
            q = new float[b * d];
            kk = new float[b * d];
            vv = new float[b * d];
            att = new float[b * d];
            ffn = new float[b * ffnScratchPerRow];
            emb = new float[b * c.wordEmbedProjDim()];
            row = new float[c.wordEmbedProjDim()];
        }
    }

    @Override
    public State newState(int maxTokens, DType kv) {
        if (maxTokens > cfg.maxPositions()) {
            throw new IllegalArgumentException("OPT learned positions stop at " + cfg.maxPositions() + " tokens; asked for " + maxTokens);
        }
        int scratch = 0;
        for (Layer l : w.layers()) {
            scratch = Math.max(scratch, l.ffn().scratchPerRow());
        }
        return new State(cfg, maxTokens, kv, scratch);
    }

    /** Floats of the activation buffers of a state of {@code capacity} positions (what the budget counts as scratch). */
    public static long activationFloats(OptConfig c, int capacity, int ffnScratchPerRow) {
        int span = Math.min(capacity, KvState.PREFILL_SPAN);
        return (long) span * (6L * c.hiddenSize() + ffnScratchPerRow + c.wordEmbedProjDim())
                + KvState.attentionFloats(span, capacity, c.headDim());
    }

    @Override
    public void forward(LanguageModel.State state, int[] tokens, int n, boolean allPositions, float[] logits) {
        State s = (State) state;
        s.checkRoom(n);
        int vocab = cfg.vocabSize();
        for (int start = 0; start < n; start += s.span) {
            int m = Math.min(s.span, n - start);
            boolean last = start + m == n;
            step(s, tokens, start, m);
            if (allPositions) {
                head(s, m, logits, start * vocab, 0);
            } else if (last) {
                head(s, 1, logits, 0, m - 1);
            }
        }
    }

    /** Runs m tokens (tokens[off..off+m)) through the decoder, layer by layer, leaving the final hidden states in s.x. */
    private void step(State s, int[] tokens, int off, int m) {
        int d = cfg.hiddenSize(), e = cfg.wordEmbedProjDim();
        int nh = cfg.numHeads(), hd = cfg.headDim();
        float eps = OptConfig.LAYER_NORM_EPS;
        float scale = (float) (1.0 / Math.sqrt(hd));

        // Embeddings: token (projected to d if e != d) + learned position (offset 2).
        for (int t = 0; t < m; t++) {
            int tok = tokens[off + t];
            if (tok < 0 || tok >= cfg.vocabSize()) {
                throw new IllegalArgumentException("token id " + tok + " outside the vocabulary of " + cfg.vocabSize());
            }
            k.row(w.embedTokens().data(), w.embedTokens().dtype(), tok, e, s.row);
            System.arraycopy(s.row, 0, cfg.hasProjections() ? s.emb : s.x, t * e, e);
        }
        if (cfg.hasProjections()) {
            w.projectIn().apply(k, s.emb, m, s.x, null);
        }
        for (int t = 0; t < m; t++) {
            int pos = s.length + t + OptConfig.POSITION_OFFSET;
            k.row(w.embedPositions().data(), w.embedPositions().dtype(), pos, d, s.h);
            Ops.add(s.x, t * d, s.h, 0, d);
        }

        for (int li = 0; li < w.layers().length; li++) {
            Layer l = w.layers()[li];
            // Self-attention block: h = LN(x) (pre-LN) or x (post-LN).
            normRows(s.x, s.h, m, l.attnLnW(), l.attnLnB(), eps, cfg.layerNormBefore());
            l.wq().apply(k, s.h, m, s.q, l.bq());
            l.wk().apply(k, s.h, m, s.kk, l.bk());
            l.wv().apply(k, s.h, m, s.vv, l.bv());
            s.store(li, s.kk, s.vv, m);
            s.attention(k, li, s.q, m, nh, nh, hd, scale, s.att);
            l.wo().apply(k, s.att, m, s.h, l.bo());
            Ops.add(s.x, 0, s.h, 0, m * d);                      // residual
            if (!cfg.layerNormBefore()) {
                normRows(s.x, s.x, m, l.attnLnW(), l.attnLnB(), eps, true);
            }
            // FFN block: x += fc2(relu(fc1(LN(x)))).
            normRows(s.x, s.h, m, l.ffnLnW(), l.ffnLnB(), eps, cfg.layerNormBefore());
            l.ffn().forward(k, s.h, m, s.ffn, s.att);
            Ops.add(s.x, 0, s.att, 0, m * d);                    // residual
            if (!cfg.layerNormBefore()) {
                normRows(s.x, s.x, m, l.ffnLnW(), l.ffnLnB(), eps, true);
            }
        }
        if (cfg.finalLayerNorm()) {
            normRows(s.x, s.x, m, w.finalLnW(), w.finalLnB(), eps, true);
        }
        s.length += m;
    }

    /** Logits of hidden rows [first, first+count) of s.x, written to logits[dst ...] (count x V). */
    private void head(State s, int count, float[] logits, int dst, int first) {
        int d = cfg.hiddenSize();
        float[] in = s.x;
        if (first != 0) {
            System.arraycopy(s.x, first * d, s.h, 0, count * d);
            in = s.h;
        }
        if (cfg.hasProjections()) {
            w.projectOut().apply(k, in, count, s.emb, null);
            in = s.emb;
        }
        w.lmHead().applyAt(k, in, count, logits, dst);
    }

    private void normRows(float[] in, float[] out, int m, float[] g, float[] b, float eps, boolean apply) {
        int d = cfg.hiddenSize();
        if (!apply) {
            if (in != out) {
                System.arraycopy(in, 0, out, 0, m * d);
            }
            return;
        }
        for (int t = 0; t < m; t++) {
            Ops.layerNorm(in, t * d, out, t * d, d, g, b, eps);
        }
    }

    @Override
    public void close() {
        Models.closeOwner(owner);
    }
}
