package dev.llmflash.formats.tensor;

import java.util.Locale;

/**
 * Element types of stored tensors, named as safetensors names them. Compute happens in f32; weights
 * stay in memory in their stored type (F32, F16, BF16). Integer types are read correctly but no model
 * computes on them yet.
 */
public enum DType {
    BOOL(1), U8(1), I8(1), I16(2), U16(2), F16(2), BF16(2), I32(4), U32(4), F32(4), F64(8), I64(8), U64(8),
    F8_E4M3(1), F8_E5M2(1);

    private final int bytes;

    DType(int bytes) {
        this.bytes = bytes;
    }

    /** Bytes per element. */
    public int bytes() {
        return bytes;
    }

    /** True for the three floating-point types our kernels compute on. */
    public boolean isComputeType() {
        return this == F32 || this == F16 || this == BF16;
    }

    /** Parses a safetensors dtype string ("F16", "BF16", ...); null if unknown. */
    public static DType fromSafetensors(String s) {
        try {
            return valueOf(s.toUpperCase(Locale.ROOT));
        } catch (IllegalArgumentException e) {
            return null;
        }
    }
}
