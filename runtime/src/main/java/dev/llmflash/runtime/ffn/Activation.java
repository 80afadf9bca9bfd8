package dev.llmflash.runtime.ffn;

import dev.llmflash.runtime.kernels.Ops;

/** The FFN nonlinearity. Only ReLU gives the exact zeros that flash loading exploits. */
public enum Activation {
    RELU, GELU;

    public static Activation of(String hfName) {
        return switch (hfName) {
            case "relu" -> RELU;
            case "gelu" -> GELU;
            default -> throw new IllegalArgumentException("unsupported activation " + hfName);
        };
    }

    /** In place over x[off, off+n). */
    public void apply(float[] x, int off, int n) {
        if (this == RELU) {
            Ops.relu(x, off, n);
        } else {
            Ops.gelu(x, off, n);
        }
    }
}
