package dev.llmflash.converter;

import dev.llmflash.formats.bundle.Bundle;
import dev.llmflash.formats.bundle.BundleManifest;
import dev.llmflash.formats.bundle.FfnFile;
import dev.llmflash.formats.checkpoint.Checkpoint;
import dev.llmflash.formats.tensor.DType;
import dev.llmflash.formats.tensor.Tensor;

import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.nio.ByteOrder;
import java.util.HashSet;
import java.util.Set;
import java.util.TreeSet;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.fail;

/**
 * What a bundle must contain, computed from the source checkpoint element by element, independently of
 * the converter's code paths: the expected bits of each converted element come from scalar definitions
 * ({@link #bf16} is a nearest-value search, not the converter's bit trick).
 */
final class Oracle {
    private static final ValueLayout.OfShort S16 = ValueLayout.JAVA_SHORT_UNALIGNED.withOrder(ByteOrder.LITTLE_ENDIAN);
    private static final ValueLayout.OfInt S32 = ValueLayout.JAVA_INT_UNALIGNED.withOrder(ByteOrder.LITTLE_ENDIAN);
    private static final ValueLayout.OfLong S64 = ValueLayout.JAVA_LONG_UNALIGNED.withOrder(ByteOrder.LITTLE_ENDIAN);

    private Oracle() {
    }

    /**
     * float -> bfloat16 by definition: of the two bf16 values around x (truncation toward zero and the
     * next one up in magnitude), the nearer; on a tie, the one with an even last bit. Infinity counts as
     * 2^128 (where the next bf16 would be), so values past max + half an ulp overflow, as IEEE says.
     * NaN -> 0x7FC0, as torch writes it.
     */
    static short bf16(float x) {
        if (Float.isNaN(x)) {
            return 0x7FC0;
        }
        int bits = Float.floatToRawIntBits(x);
        int sign = (bits >>> 16) & 0x8000;
        int mag = bits & 0x7FFFFFFF;
        int lo = mag >>> 16;
        if ((mag & 0xFFFF) == 0) {
            return (short) (sign | lo); // exactly representable (zeros, infinities included)
        }
        int hi = lo + 1;
        double v = Math.abs((double) x);
        double vlo = Float.intBitsToFloat(lo << 16);
        double vhi = hi == 0x7F80 ? 0x1p128 : Float.intBitsToFloat(hi << 16);
        double below = v - vlo; // exact: all three are floats of nearby magnitude
        double above = vhi - v;
        int pick = below < above ? lo : above < below ? hi : ((lo & 1) == 0 ? lo : hi);
        return (short) (sign | pick);
    }

    /** The element bits {@code to} must hold for a source element of type {@code from} with these bits. */
    static long convert(DType from, DType to, long bits) {
        if (from == to) {
            return bits;
        }
        float x = switch (from) {
            case F32 -> Float.intBitsToFloat((int) bits);
            case F16 -> Float.float16ToFloat((short) bits);
            case BF16 -> Float.intBitsToFloat(((int) bits & 0xFFFF) << 16);
            case F64 -> (float) Double.longBitsToDouble(bits);
            default -> throw new AssertionError("no float conversion from " + from);
        };
        return switch (to) {
            case F32 -> Float.floatToRawIntBits(x) & 0xFFFFFFFFL;
            case F16 -> Float.floatToFloat16(x) & 0xFFFF;
            case BF16 -> bf16(x) & 0xFFFF;
            default -> throw new AssertionError("no float conversion to " + to);
        };
    }

    /** Element {@code i}'s raw bits, zero-extended. */
    static long bits(MemorySegment data, DType dtype, long i) {
        return switch (dtype.bytes()) {
            case 1 -> data.get(ValueLayout.JAVA_BYTE, i) & 0xFFL;
            case 2 -> data.getAtIndex(S16, i) & 0xFFFFL;
            case 4 -> data.getAtIndex(S32, i) & 0xFFFFFFFFL;
            default -> data.getAtIndex(S64, i);
        };
    }

    /** The raw bits of the element starting at byte {@code offset}. */
    static long bitsAt(MemorySegment data, DType dtype, long offset) {
        return switch (dtype.bytes()) {
            case 2 -> data.get(S16, offset) & 0xFFFFL;
            case 4 -> data.get(S32, offset) & 0xFFFFFFFFL;
            default -> throw new AssertionError("FFN weights are 2 or 4 bytes, not " + dtype);
        };
    }

    static boolean isFloat(DType dtype) {
        return dtype == DType.F64 || dtype.isComputeType();
    }

    /**
     * Checks the bundle against its source: exactly the expected resident tensors, each element the
     * conversion of its source element; every FFN up row and down column likewise.
     *
     * @param droppedLmHead whether the source's lm_head must be absent (tied and equal to the embedding)
     */
    static void assertBundleMatches(Checkpoint source, Bundle bundle, String upNames, String downNames,
                                    boolean droppedLmHead) {
        DType target = bundle.dtype();
        int layers = bundle.config().numLayers();
        Set<String> ffn = new HashSet<>();
        for (int l = 0; l < layers; l++) {
            ffn.add(upNames.replace("{layer}", "" + l));
            ffn.add(downNames.replace("{layer}", "" + l));
        }
        Set<String> expected = new TreeSet<>(source.tensorNames());
        expected.removeAll(ffn);
        if (droppedLmHead) {
            assertEquals(true, expected.remove("lm_head.weight"), "the source has an lm_head to drop");
        }
        assertEquals(expected, bundle.resident().tensorNames());
        for (String name : expected) {
            Tensor s = source.tensor(name);
            Tensor b = bundle.resident().tensor(name);
            DType out = isFloat(s.dtype()) ? target : s.dtype();
            assertEquals(out, b.dtype(), name);
            assertArrayEquals(s.shape(), b.shape(), name);
            for (long i = 0; i < s.numel(); i++) {
                long want = isFloat(s.dtype()) ? convert(s.dtype(), out, bits(s.data(), s.dtype(), i))
                        : bits(s.data(), s.dtype(), i);
                long got = bits(b.data(), out, i);
                if (want != got) {
                    fail(name + "[" + i + "]: expected bits " + Long.toHexString(want) + ", bundle has "
                            + Long.toHexString(got));
                }
            }
        }

        FfnFile file = bundle.ffn();
        BundleManifest.Ffn m = bundle.manifest().ffn();
        assertEquals(upNames, m.upNames());
        assertEquals(downNames, m.downNames());
        int d = file.dModel();
        int f = file.dFfn();
        long es = target.bytes();
        for (int l = 0; l < layers; l++) {
            Tensor up = source.tensor(m.upName(l));
            Tensor down = source.tensor(m.downName(l));
            MemorySegment block = file.block(l);
            for (int i = 0; i < f; i++) {
                long upAt = file.upOffset(i);
                long downAt = file.downOffset(i);
                for (int j = 0; j < d; j++) {
                    long wantUp = convert(up.dtype(), target, bits(up.data(), up.dtype(), (long) i * d + j));
                    long wantDown = convert(down.dtype(), target, bits(down.data(), down.dtype(), (long) j * f + i));
                    long gotUp = bitsAt(block, target, upAt + j * es);
                    long gotDown = bitsAt(block, target, downAt + j * es);
                    if (wantUp != gotUp || wantDown != gotDown) {
                        fail("layer " + l + " neuron " + i + " element " + j + ": up " + Long.toHexString(gotUp)
                                + " (expected " + Long.toHexString(wantUp) + "), down " + Long.toHexString(gotDown)
                                + " (expected " + Long.toHexString(wantDown) + ")");
                    }
                }
            }
        }
    }
}
