package dev.llmflash.cli;

import dev.llmflash.formats.tensor.DType;

import java.util.Locale;

/** The {@code --dtype} values: f32, f16, bf16. */
final class Dtypes {
    private Dtypes() {
    }

    static DType parse(String s, String option) {
        return switch (s.toLowerCase(Locale.ROOT)) {
            case "f32", "float32", "fp32" -> DType.F32;
            case "f16", "float16", "fp16" -> DType.F16;
            case "bf16", "bfloat16" -> DType.BF16;
            default -> throw new IllegalArgumentException(option + " '" + s + "' is not one of f32, f16, bf16");
        };
    }
}
