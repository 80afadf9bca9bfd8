package dev.llmflash.converter.synth;

import dev.llmflash.converter.synth.TensorSpec.Role;
import dev.llmflash.formats.LlmflashException;
import dev.llmflash.formats.hf.FalconConfig;
import dev.llmflash.formats.hf.ModelConfig;
import dev.llmflash.formats.hf.OptConfig;

import java.util.List;

/**
 * Plants ReLU activation sparsity ({@code --ffn-active}): gives every FFN neuron a negative constant
 * offset so that about a target fraction {@code p} of the neurons is active (pre-activation > 0) for
 * each token, as in trained ReLU LLMs (OPT-6.7B: ~3% active, "LLM in a flash" &sect;3.1).
 *
 * <p>The heuristic. The up projection reads the output {@code h} of a layer norm with weight 1 and
 * bias 0, so {@code h} has mean 0 and {@code |h|^2 = d} for EVERY token (up to LayerNorm's epsilon).
 * Neuron j's pre-activation is {@code w_j . h + b_j}; its weights are independent of {@code h} with
 * standard deviation {@code s}, so over the neurons {@code w_j . h} is normal with mean 0 and standard
 * deviation {@code s sqrt(d)} (central limit theorem, d terms). With {@code b_j = -z s sqrt(d)} where
 * {@code z = Phi^-1(1 - p)}, a fraction {@code p} of the neurons is positive, per token. Trained models
 * differ in detail (which neurons fire is correlated across tokens there), but the count matches.
 *
 * <p>Where the offset goes:
 * <ul>
 *   <li>{@link Mode#BIAS}: the up projection has a bias (every OPT: {@code fc1.bias}); it is set to the
 *       offset. Works for pre-LN and post-LN OPT alike (post-LN: fc1 reads the attention block's
 *       normalized output, also of norm sqrt(d)).</li>
 *   <li>{@link Mode#CONSTANT_CHANNEL}: no bias (Falcon: {@code bias: false}). Hidden channel 0 of the
 *       layer norm feeding the MLP is made a constant 1 (its LayerNorm weight 0, bias 1) and column 0
 *       of the up projection is set to the offset: {@code w_j . h} then contains the constant term
 *       exactly, as a bias would. The other d - 1 channels carry the token, so the offset uses
 *       {@code sqrt(d - 1)}. Trained LLMs grow such constant "massive activation" channels themselves
 *       (Sun et al. 2024). In Falcon-7B the same layer norm also feeds attention, whose q/k/v then see
 *       a constant input of 1 on channel 0 times random weights: a small constant bias, harmless.</li>
 * </ul>
 * Refused (LlmflashException): a non-ReLU model (GELU has no exact zeros: use falcon-7b-relu), and a
 * model with neither a bias nor a pre-LN affine layer norm in front of the FFN.
 *
 * @param activeFraction the target fraction p of active neurons, in (0, 1)
 * @param z              Phi^-1(1 - p)
 * @param mode           where the offset goes
 * @param offset         the constant added to every pre-activation: -z s sqrt(d) or -z s sqrt(d - 1)
 */
public record FfnPlanting(double activeFraction, double z, Mode mode, float offset) {

    /** Where the offset goes. */
    public enum Mode { BIAS, CONSTANT_CHANNEL }

    /** The hidden channel that CONSTANT_CHANNEL makes constant. */
    public static final int CHANNEL = 0;

    /** Plans the planting for {@code model} with weights of standard deviation {@code std}. */
    public static FfnPlanting plan(String shapeName, ModelConfig model, List<TensorSpec> tensors, float std,
                                   double activeFraction) {
        if (!(activeFraction > 0 && activeFraction < 1)) {
            throw new LlmflashException("--ffn-active " + activeFraction + " is not a fraction between 0 and 1 (e.g. 0.03)");
        }
        String activation = switch (model) {
            case OptConfig c -> c.activation();
            case FalconConfig c -> c.activation();
        };
        if (!activation.equals("relu")) {
            throw new LlmflashException("--ffn-active plants ReLU sparsity but shape '" + shapeName + "' uses "
                    + activation.toUpperCase(java.util.Locale.ROOT) + ", which has no exact zeros"
                    + (shapeName.startsWith("falcon") ? " (use falcon-7b-relu)" : ""));
        }
        double z = inverseNormalCdf(1 - activeFraction);
        int d = model.hiddenSize();
        boolean hasBias = tensors.stream().anyMatch(t -> t.role() == Role.FFN_UP_BIAS);
        boolean hasNorm = tensors.stream().anyMatch(t -> t.role() == Role.FFN_NORM_WEIGHT)
                && tensors.stream().anyMatch(t -> t.role() == Role.FFN_NORM_BIAS);
        if (hasBias) {
            return new FfnPlanting(activeFraction, z, Mode.BIAS, (float) (-z * std * Math.sqrt(d)));
        }
        if (hasNorm && d > 1) {
            return new FfnPlanting(activeFraction, z, Mode.CONSTANT_CHANNEL, (float) (-z * std * Math.sqrt(d - 1.0)));
        }
        throw new LlmflashException("--ffn-active cannot be planted in shape '" + shapeName
                + "': its FFN up projection has no bias and no pre-LN affine layer norm in front of it");
    }

    /** The values of {@code t} under this planting, or {@code dflt} when the planting leaves it alone. */
    public Init apply(TensorSpec t, Init dflt) {
        return switch (mode) {
            case BIAS -> t.role() == Role.FFN_UP_BIAS ? new Init.Constant(offset) : dflt;
            case CONSTANT_CHANNEL -> switch (t.role()) {
                case FFN_UP_WEIGHT -> new Init.WithColumn(dflt, t.columns(), CHANNEL, offset);
                case FFN_NORM_WEIGHT -> new Init.WithColumn(dflt, t.columns(), CHANNEL, 0f);
                case FFN_NORM_BIAS -> new Init.WithColumn(dflt, t.columns(), CHANNEL, 1f);
                default -> dflt;
            };
        };
    }

    /**
     * Phi^-1(q), the standard normal quantile, by Abramowitz &amp; Stegun 26.2.23 (absolute error below
     * 4.5e-4, i.e. under 0.01 percentage points of active fraction at p = 3%).
     */
    static double inverseNormalCdf(double q) {
        if (!(q > 0 && q < 1)) {
            throw new IllegalArgumentException("quantile of " + q);
        }
        if (q < 0.5) {
            return -inverseNormalCdf(1 - q);
        }
        double t = Math.sqrt(-2 * Math.log(1 - q));
        return t - (2.515517 + 0.802853 * t + 0.010328 * t * t)
                / (1 + 1.432788 * t + 0.189269 * t * t + 0.001308 * t * t * t);
    }
}
