package dev.llmflash.benchmarks;

import dev.llmflash.formats.checkpoint.Checkpoint;
import dev.llmflash.formats.hf.HfCheckpoint;
import dev.llmflash.formats.safetensors.SafetensorsWriter;
import dev.llmflash.formats.tensor.DType;
import dev.llmflash.formats.tensor.Tensor;
import dev.llmflash.runtime.generate.Perplexity;
import dev.llmflash.runtime.kernels.Kernels;
import dev.llmflash.runtime.model.LanguageModel;
import dev.llmflash.runtime.model.Models;
import dev.llmflash.runtime.tokenizer.BpeTokenizer;

import java.io.IOException;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.Comparator;
import java.util.Locale;
import java.util.stream.Stream;

/**
 * How the 4-bit block layout was chosen (docs/FORMAT.md, "Quantized bundles"): perplexity against
 * bits per weight for Q4_0 (one f16 scale per block, levels -8..7) and Q4_1 (an f16 scale and an
 * f16 minimum per block, levels 0..15) at block sizes 32, 64 and 128, next to Q8_0/32 and the
 * unquantized model. Each variant is simulated exactly: every weight matrix is quantized and
 * dequantized to f32 (the token embeddings in Q8_0/32 in every variant, as the converter stores them;
 * norms, biases and position embeddings untouched), written as an f32 Hugging Face folder, and
 * scored by the dense runtime on the text, as {@code llmflash perplexity} scores (windows of 256).
 * <pre>
 * java --add-modules jdk.incubator.vector -cp benchmarks/target/llmflash-benchmarks.jar \
 *     dev.llmflash.benchmarks.QuantBlockSweep HF_DIR TEXT [HF_DIR TEXT ...]
 * </pre>
 */
public final class QuantBlockSweep {

    private record Variant(String name, boolean minimum, int block, int levels) {
        double bits() {
            return Math.log(levels + 1) / Math.log(2) + (minimum ? 32.0 : 16.0) / block;
        }
    }

    private static final Variant[] VARIANTS = {
        new Variant("q8_0/32", false, 32, 255),
        new Variant("q4_0/32", false, 32, 15), new Variant("q4_0/64", false, 64, 15),
        new Variant("q4_0/128", false, 128, 15),
        new Variant("q4_1/32", true, 32, 15), new Variant("q4_1/64", true, 64, 15),
        new Variant("q4_1/128", true, 128, 15),
    };

    private QuantBlockSweep() {
    }

    public static void main(String[] args) throws IOException {
        if (args.length < 2 || args.length % 2 != 0) {
            System.err.println("usage: QuantBlockSweep HF_DIR TEXT [HF_DIR TEXT ...]");
            System.exit(2);
        }
        System.out.println("| model | variant | bits/weight (matrices) | perplexity | vs f32 |");
        System.out.println("|---|---|---|---|---|");
        for (int a = 0; a < args.length; a += 2) {
            Path dir = Path.of(args[a]);
            String text = Files.readString(Path.of(args[a + 1]));
            double base = perplexity(dir, text);
            String model = dir.getFileName().toString();
            System.out.printf(Locale.ROOT, "| %s | f32 (as stored) | 32 | %.4f | - |%n", model, base);
            for (Variant v : VARIANTS) {
                Path tmp = Files.createTempDirectory("llmflash-qsweep");
                try {
                    write(dir, tmp, v);
                    double p = perplexity(tmp, text);
                    System.out.printf(Locale.ROOT, "| %s | %s | %.3f | %.4f | %+.2f%% |%n", model, v.name, v.bits(), p,
                            100 * (p / base - 1));
                } catch (UnsupportedOperationException e) {
                    System.out.printf(Locale.ROOT, "| %s | %s | %.3f | n/a (%s) | |%n", model, v.name, v.bits(),
                            e.getMessage());
                } finally {
                    try (Stream<Path> s = Files.walk(tmp)) {
                        s.sorted(Comparator.reverseOrder()).forEach(p -> p.toFile().delete());
                    }
                }
            }
        }
    }

    private static double perplexity(Path dir, String text) {
        try (Kernels k = new Kernels(Runtime.getRuntime().availableProcessors());
             LanguageModel m = Models.openHf(dir, k)) {
            BpeTokenizer tok = BpeTokenizer.fromModelDir(dir);
            return Perplexity.evaluate(m, tok.encode(text), tok.bosId(), 256, 16384).perplexity();
        }
    }

    /** The HF folder {@code src} with every weight matrix fake-quantized by {@code v}, as f32. */
    private static void write(Path src, Path dst, Variant v) throws IOException {
        try (Stream<Path> files = Files.list(src)) {
            for (Path f : files.toList()) {
                String n = f.getFileName().toString();
                if (!n.endsWith(".safetensors") && !n.endsWith(".bin") && !n.endsWith(".index.json")) {
                    Files.copy(f, dst.resolve(n));
                }
            }
        }
        SafetensorsWriter w = new SafetensorsWriter().metadata("format", "pt");
        try (HfCheckpoint hf = HfCheckpoint.open(src)) {
            Checkpoint c = hf.weights();
            for (String name : c.tensorNames()) {
                Tensor t = c.tensor(name);
                float[] x = t.toFloatArray();
                if (t.rank() == 2 && !name.contains("embed_positions")) {
                    boolean embedding = name.endsWith("embed_tokens.weight") || name.endsWith("word_embeddings.weight");
                    Variant u = embedding ? VARIANTS[0] : v;
                    if (t.dim(1) % u.block != 0) {
                        throw new UnsupportedOperationException(name + " has rows of " + t.dim(1));
                    }
                    fakeQuantize(x, t.dim(1), u);
                }
                MemorySegment m = MemorySegment.ofArray(new byte[4 * x.length]);
                MemorySegment.copy(x, 0, m, ValueLayout.JAVA_FLOAT_UNALIGNED, 0, x.length);
                w.add(name, DType.F32, t.shape(), m);
            }
        }
        w.write(dst.resolve("model.safetensors"));
    }

    /** Quantize-dequantize in place, per row of c, blocks of v.block. */
    static void fakeQuantize(float[] x, int c, Variant v) {
        for (int o = 0; o < x.length; o += v.block) {
            float lo = Float.MAX_VALUE;
            float hi = -Float.MAX_VALUE;
            float max = 0;
            for (int j = 0; j < v.block; j++) {
                float e = x[o + j];
                lo = Math.min(lo, e);
                hi = Math.max(hi, e);
                if (Math.abs(e) > Math.abs(max)) {
                    max = e;
                }
            }
            if (v.minimum) { // Q4_1: x = min + d q, q in 0..15
                float d = f16((hi - lo) / v.levels);
                float m = f16(lo);
                float inv = d == 0 ? 0 : 1 / d;
                for (int j = 0; j < v.block; j++) {
                    int q = Math.clamp(Math.round((x[o + j] - m) * inv), 0, v.levels);
                    x[o + j] = m + d * q;
                }
            } else if (v.levels == 255) { // Q8_0
                float d = f16(Math.abs(max) / 127);
                float inv = d == 0 ? 0 : 1 / d;
                for (int j = 0; j < v.block; j++) {
                    x[o + j] = d * Math.clamp(Math.round(x[o + j] * inv), -127, 127);
                }
            } else { // Q4_0: x = d (q - 8)
                float d = f16(max / -8);
                float inv = d == 0 ? 0 : 1 / d;
                for (int j = 0; j < v.block; j++) {
                    x[o + j] = d * (Math.clamp(Math.round(x[o + j] * inv) + 8, 0, 15) - 8);
                }
            }
        }
    }

    private static float f16(float v) {
        return Float.float16ToFloat(Float.floatToFloat16(v));
    }
}
