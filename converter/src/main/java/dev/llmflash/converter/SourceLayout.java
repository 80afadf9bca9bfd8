package dev.llmflash.converter;

import dev.llmflash.formats.FormatException;
import dev.llmflash.formats.bundle.BundleManifest;
import dev.llmflash.formats.bundle.MappedPages;
import dev.llmflash.formats.checkpoint.Checkpoint;
import dev.llmflash.formats.hf.FalconConfig;
import dev.llmflash.formats.hf.ModelConfig;
import dev.llmflash.formats.hf.OptConfig;
import dev.llmflash.formats.tensor.Tensor;

import java.util.Arrays;

/**
 * Where an architecture keeps, under Hugging Face's names, the tensors the converter treats specially:
 * <pre>
 * OPT     up   {prefix}layers.{i}.fc1.weight                    [f, d]   prefix "model.decoder." or "decoder."
 *         down {prefix}layers.{i}.fc2.weight                    [d, f]
 *         embedding {prefix}embed_tokens.weight, LM head lm_head.weight
 * Falcon  up   transformer.h.{i}.mlp.dense_h_to_4h.weight       [f, d]
 *         down transformer.h.{i}.mlp.dense_4h_to_h.weight       [d, f]
 *         embedding transformer.word_embeddings.weight, LM head lm_head.weight
 * </pre>
 * (nn.Linear stores weight as [out, in]: the up projection's row i and the down projection's column i
 * belong to FFN neuron i.)
 *
 * @param upNames   up projection name with {@value BundleManifest#LAYER_PLACEHOLDER} for the layer
 * @param downNames down projection name, likewise
 * @param embedding the token embedding's name
 * @param lmHead    the LM head's name (absent from checkpoints saved with tied weights)
 */
record SourceLayout(String upNames, String downNames, String embedding, String lmHead) {

    static final String LM_HEAD = "lm_head.weight";
    private static final String[] OPT_PREFIXES = {"model.decoder.", "decoder."};
    private static final String FIX = "the weights do not match config.json; re-download the checkpoint";

    /**
     * The layout of {@code weights}, checked: every layer's up and down weights exist, with the shapes
     * the config implies and a float dtype the converter reads (F32, F16, BF16).
     *
     * @throws FormatException naming the checkpoint and the first tensor that is missing or wrong
     */
    static SourceLayout of(ModelConfig config, Checkpoint weights) {
        String layer = BundleManifest.LAYER_PLACEHOLDER;
        SourceLayout s = switch (config) {
            case OptConfig c -> {
                String prefix = null;
                for (String p : OPT_PREFIXES) {
                    if (weights.contains(p + "layers.0.fc1.weight")) {
                        prefix = p;
                        break;
                    }
                }
                if (prefix == null) {
                    throw new FormatException(weights.location(), "has no OPT FFN weights (looked for "
                            + OPT_PREFIXES[0] + "layers.0.fc1.weight and " + OPT_PREFIXES[1] + "layers.0.fc1.weight)",
                            "check that this is an OPT checkpoint saved by transformers");
                }
                yield new SourceLayout(prefix + "layers." + layer + ".fc1.weight",
                        prefix + "layers." + layer + ".fc2.weight", prefix + "embed_tokens.weight", LM_HEAD);
            }
            case FalconConfig c -> new SourceLayout("transformer.h." + layer + ".mlp.dense_h_to_4h.weight",
                    "transformer.h." + layer + ".mlp.dense_4h_to_h.weight", "transformer.word_embeddings.weight",
                    LM_HEAD);
        };
        int d = config.hiddenSize();
        int f = config.ffnSize();
        for (int i = 0; i < config.numLayers(); i++) {
            s.check(weights, weights.tensor(s.up(i)), f, d, "ffn_size x hidden_size");
            s.check(weights, weights.tensor(s.down(i)), d, f, "hidden_size x ffn_size");
        }
        return s;
    }

    private void check(Checkpoint weights, Tensor t, int rows, int cols, String what) {
        if (t.rank() != 2 || t.shape()[0] != rows || t.shape()[1] != cols) {
            throw new FormatException(weights.location(), "tensor '" + t.name() + "' is " + t.shapeString()
                    + " but config.json implies [" + rows + ", " + cols + "] (" + what + ")", FIX);
        }
        if (!t.dtype().isComputeType()) {
            throw new FormatException(weights.location(), "tensor '" + t.name() + "' is " + t.dtype()
                    + "; the converter reads FFN weights in F32, F16 or BF16",
                    "use an unquantized checkpoint");
        }
    }

    String up(int layer) {
        return upNames.replace(BundleManifest.LAYER_PLACEHOLDER, Integer.toString(layer));
    }

    String down(int layer) {
        return downNames.replace(BundleManifest.LAYER_PLACEHOLDER, Integer.toString(layer));
    }

    /**
     * True when the checkpoint's LM head is the embedding, byte for byte (HF saves tied weights once,
     * or twice sharing one storage): then the bundle leaves it out and the runtime uses the embedding.
     */
    boolean lmHeadIsEmbedding(Checkpoint weights) {
        if (!weights.contains(lmHead) || !weights.contains(embedding)) {
            return false;
        }
        Tensor head = weights.tensor(lmHead);
        Tensor emb = weights.tensor(embedding);
        if (head.dtype() != emb.dtype() || !Arrays.equals(head.shape(), emb.shape())) {
            return false;
        }
        if (head.data().equals(emb.data())) {
            return true; // one storage saved under both names (torch.save of a tied model)
        }
        boolean same = head.data().mismatch(emb.data()) == -1;
        MappedPages.release(head.data());
        MappedPages.release(emb.data());
        return same;
    }
}
