package dev.llmflash.converter;

import dev.llmflash.formats.safetensors.SafetensorsWriter;
import dev.llmflash.formats.tensor.DType;

import java.io.IOException;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.nio.ByteOrder;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.SplittableRandom;

/**
 * Writes a small random OPT checkpoint in Hugging Face's layout, for the cases the committed ones do
 * not cover: F32 weights, the "decoder." prefix, odd sizes (padding in both layouts), an untied LM
 * head, an integer tensor.
 */
final class SyntheticOpt {
    static final int VOCAB = 50;
    static final int POSITIONS = 16;

    /** What lm_head.weight the checkpoint holds. */
    enum LmHead { NONE, EQUAL_TO_EMBEDDING, DIFFERENT }

    private SyntheticOpt() {
    }

    static Path write(Path dir, DType dtype, String prefix, int d, int f, int layers, boolean tieConfig,
                      LmHead lmHead) throws IOException {
        Files.createDirectories(dir);
        Files.writeString(dir.resolve("config.json"), """
                {"model_type": "opt", "hidden_size": %d, "num_attention_heads": 2, "num_hidden_layers": %d,
                 "ffn_dim": %d, "vocab_size": %d, "max_position_embeddings": %d, "word_embed_proj_dim": %d,
                 "do_layer_norm_before": true, "tie_word_embeddings": %b}
                """.formatted(d, layers, f, VOCAB, POSITIONS, d, tieConfig));
        SplittableRandom random = new SplittableRandom(d * 31L + f);
        SafetensorsWriter w = new SafetensorsWriter().metadata("format", "pt");
        MemorySegment embedding = random(random, dtype, (long) VOCAB * d);
        w.add(prefix + "embed_tokens.weight", dtype, new long[] {VOCAB, d}, embedding);
        w.add(prefix + "embed_positions.weight", dtype, new long[] {POSITIONS + 2, d}, random(random, dtype, (POSITIONS + 2L) * d));
        for (int l = 0; l < layers; l++) {
            String p = prefix + "layers." + l + ".";
            for (String proj : new String[] {"q_proj", "k_proj", "v_proj", "out_proj"}) {
                w.add(p + "self_attn." + proj + ".weight", dtype, new long[] {d, d}, random(random, dtype, (long) d * d));
                w.add(p + "self_attn." + proj + ".bias", dtype, new long[] {d}, random(random, dtype, d));
            }
            for (String ln : new String[] {"self_attn_layer_norm", "final_layer_norm"}) {
                w.add(p + ln + ".weight", dtype, new long[] {d}, random(random, dtype, d));
                w.add(p + ln + ".bias", dtype, new long[] {d}, random(random, dtype, d));
            }
            w.add(p + "fc1.weight", dtype, new long[] {f, d}, random(random, dtype, (long) f * d));
            w.add(p + "fc1.bias", dtype, new long[] {f}, random(random, dtype, f));
            w.add(p + "fc2.weight", dtype, new long[] {d, f}, random(random, dtype, (long) d * f));
            w.add(p + "fc2.bias", dtype, new long[] {d}, random(random, dtype, d));
        }
        w.add(prefix + "final_layer_norm.weight", dtype, new long[] {d}, random(random, dtype, d));
        w.add(prefix + "final_layer_norm.bias", dtype, new long[] {d}, random(random, dtype, d));
        MemorySegment ids = MemorySegment.ofArray(new byte[POSITIONS * 8]);
        for (int i = 0; i < POSITIONS; i++) {
            ids.setAtIndex(ValueLayout.JAVA_LONG_UNALIGNED.withOrder(ByteOrder.LITTLE_ENDIAN), i, 1000L * i - 7);
        }
        w.add(prefix + "position_ids", DType.I64, new long[] {POSITIONS}, ids);
        switch (lmHead) {
            case NONE -> {
            }
            case EQUAL_TO_EMBEDDING -> w.add("lm_head.weight", dtype, new long[] {VOCAB, d}, copy(embedding));
            case DIFFERENT -> {
                MemorySegment head = copy(embedding);
                head.set(ValueLayout.JAVA_BYTE, 5, (byte) (head.get(ValueLayout.JAVA_BYTE, 5) ^ 1));
                w.add("lm_head.weight", dtype, new long[] {VOCAB, d}, head);
            }
        }
        w.write(dir.resolve("model.safetensors"));
        return dir;
    }

    private static MemorySegment copy(MemorySegment s) {
        return MemorySegment.ofArray(s.toArray(ValueLayout.JAVA_BYTE));
    }

    /** Weights-like values (Gaussian, sd 0.1), with a sprinkle of exact rounding ties for F16 and BF16. */
    private static MemorySegment random(SplittableRandom random, DType dtype, long count) {
        MemorySegment s = MemorySegment.ofArray(new byte[Math.toIntExact(count * dtype.bytes())]);
        for (long i = 0; i < count; i++) {
            float v = (float) (random.nextGaussian() * 0.1);
            if (random.nextInt(8) == 0) {
                // Keep 8 or 11 significant bits plus exactly one half: a tie for bf16 or f16.
                int bits = Float.floatToRawIntBits(v);
                bits = random.nextBoolean() ? (bits & 0xFFFF0000) | 0x8000 : (bits & 0xFFFFE000) | 0x1000;
                v = Float.intBitsToFloat(bits);
            }
            switch (dtype) {
                case F32 -> s.setAtIndex(ValueLayout.JAVA_FLOAT_UNALIGNED.withOrder(ByteOrder.LITTLE_ENDIAN), i, v);
                case F16 -> s.setAtIndex(ValueLayout.JAVA_SHORT_UNALIGNED.withOrder(ByteOrder.LITTLE_ENDIAN), i,
                        Float.floatToFloat16(v));
                case BF16 -> s.setAtIndex(ValueLayout.JAVA_SHORT_UNALIGNED.withOrder(ByteOrder.LITTLE_ENDIAN), i,
                        (short) (Float.floatToRawIntBits(v) >>> 16));
                default -> throw new AssertionError(dtype);
            }
        }
        return s;
    }
}
