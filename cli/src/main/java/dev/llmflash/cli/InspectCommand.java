package dev.llmflash.cli;

import dev.llmflash.formats.LlmflashException;
import dev.llmflash.formats.bundle.Bundle;
import dev.llmflash.formats.bundle.BundleManifest;
import dev.llmflash.formats.bundle.Quantization;
import dev.llmflash.runtime.budget.MemoryPlan;
import dev.llmflash.formats.checkpoint.Checkpoint;
import dev.llmflash.formats.hf.FalconConfig;
import dev.llmflash.formats.hf.HfCheckpoint;
import dev.llmflash.formats.hf.ModelConfig;
import dev.llmflash.formats.hf.OptConfig;
import dev.llmflash.formats.tensor.DType;
import dev.llmflash.formats.tensor.Tensor;
import picocli.CommandLine;
import picocli.CommandLine.Command;
import picocli.CommandLine.Option;
import picocli.CommandLine.Parameters;

import java.io.PrintWriter;
import java.nio.file.Path;
import java.util.EnumMap;
import java.util.LinkedHashMap;
import java.util.Map;
import java.util.concurrent.Callable;

@Command(name = "inspect", mixinStandardHelpOptions = true,
        description = {"Describe a bundle or a Hugging Face model folder: architecture, tensors, sizes.",
                "For a bundle: resident vs flash bytes and the DRAM split at budgets of 100/75/50/25% of the model;"
                        + " --verify checks every checksum. For an HF folder: --verify reads every value and checks it is finite."})
final class InspectCommand implements Callable<Integer> {
    @CommandLine.Spec
    CommandLine.Model.CommandSpec spec;

    @Parameters(paramLabel = "DIR", description = "A bundle (llmflash convert) or a Hugging Face model folder.")
    Path dir;

    @Option(names = "--verify", description = "Bundle: check every checksum. HF folder: read every value, check all are finite.")
    boolean verify;

    @Option(names = "--tensors", description = "List every tensor (name, dtype, shape).")
    boolean tensors;

    @Option(names = "--json", description = "Print one JSON object instead of text.")
    boolean json;

    @Option(names = "--verbose", description = "Print stack traces on errors.")
    boolean verbose;

    @Override
    public Integer call() {
        return Bundle.looksLikeBundle(dir) ? bundle() : huggingFace();
    }

    private int bundle() {
        PrintWriter out = spec.commandLine().getOut();
        try (Bundle b = Bundle.open(dir)) {
            if (verify) {
                b.verify();
            }
            BundleManifest m = b.manifest();
            ModelConfig c = b.config();
            long resident = m.resident().size();
            long flash = m.ffn().size();
            int context = MemoryPlan.defaultContext(c);
            Map<String, Object> j = new LinkedHashMap<>();
            j.put("path", dir.toString());
            j.put("kind", "bundle");
            j.put("format_version", m.version());
            j.put("config", configMap(c));
            j.put("dtype", m.dtype().name());
            j.put("quant", m.quant().jsonName());
            j.put("ffn_dtype", m.ffn().dtype().name());
            Map<String, Long> residentByType = new java.util.TreeMap<>();
            for (BundleManifest.ResidentTensor t : m.resident().tensors()) {
                residentByType.merge(t.dtype().name(), t.length(), Long::sum);
            }
            j.put("resident_bytes_by_dtype", residentByType);
            j.put("layout", m.ffn().layout().name().toLowerCase());
            j.put("bundle_stride", m.ffn().bundleStride());
            j.put("alignment", m.ffn().alignment());
            j.put("resident_bytes", resident);
            j.put("flash_bytes", flash);
            j.put("fingerprint", m.fingerprint());
            j.put("source", m.source().path());
            java.util.List<Map<String, Object>> plans = new java.util.ArrayList<>();
            for (int pct : new int[] {100, 75, 50, 25}) {
                MemoryPlan p = MemoryPlan.of(c, resident, flash, (resident + flash) * pct / 100, context);
                Map<String, Object> row = new LinkedHashMap<>();
                row.put("budget_percent", pct);
                row.put("budget_bytes", p.budgetBytes());
                row.put("resident_bytes", p.residentBytes());
                row.put("kv_cache_bytes", p.kvCacheBytes());
                row.put("ffn_cache_bytes", p.ffnCacheBytes());
                row.put("ffn_cached_fraction", p.ffnCachedFraction());
                row.put("fits", p.fits());
                plans.add(row);
            }
            j.put("kv_context_tokens", context);
            j.put("budgets", plans);
            if (verify) {
                j.put("verified", true);
            }
            if (json) {
                out.println(Json.write(j));
                return 0;
            }
            out.printf("%s: llmflash bundle v%d, %s, %s layout (bundle stride %,d bytes, alignment %d)%n", dir,
                    m.version(), m.dtype(), j.get("layout"), m.ffn().bundleStride(), m.ffn().alignment());
            if (m.quant() != Quantization.NONE) {
                out.printf("  %-22s %s: FFN %s, weight matrices %s, token embeddings %s, %d weights per f16 scale;"
                                + " norms and biases %s%n", "quantization", m.quant().jsonName(), m.ffn().dtype(),
                        m.quant().matrices(), m.quant().embeddings(), m.ffn().dtype().blockSize(), m.dtype());
            }
            StringBuilder byType = new StringBuilder();
            residentByType.forEach((k, v) -> byType.append(byType.isEmpty() ? "" : ", ").append(k).append(' ')
                    .append(String.format("%,d", v)));
            out.printf("  %-22s %s bytes%n", "resident by dtype", byType);
            configMap(c).forEach((k, v) -> out.printf("  %-22s %s%n", k, v));
            out.printf("  %-22s %,d bytes (embeddings, attention, norms, biases: always in DRAM)%n", "resident", resident);
            out.printf("  %-22s %,d bytes (FFN, streamed from flash)%n", "flash", flash);
            out.printf("  DRAM at a budget of (KV cache for %d tokens, f32):%n", context);
            out.printf("    %-8s %16s %16s %16s %18s%n", "budget", "bytes", "KV cache", "FFN cache", "FFN cached");
            for (Map<String, Object> row : plans) {
                boolean fits = (Boolean) row.get("fits");
                out.printf("    %-8s %,16d %,16d %,16d %18s%n", row.get("budget_percent") + "%", (Long) row.get("budget_bytes"),
                        (Long) row.get("kv_cache_bytes"), (Long) row.get("ffn_cache_bytes"),
                        fits ? String.format("%.0f%%", 100 * (Double) row.get("ffn_cached_fraction")) : "does not fit");
            }
            if (verify) {
                out.println("  verified: every checksum matches");
            }
        }
        return 0;
    }

    private int huggingFace() {
        PrintWriter out = spec.commandLine().getOut();
        try (HfCheckpoint hf = HfCheckpoint.open(dir)) {
            Checkpoint w = hf.weights();
            ModelConfig c = hf.config();
            Map<DType, Long> bytesByType = new EnumMap<>(DType.class);
            long params = 0;
            long ffnParams = 0;
            Map<String, Object> list = new LinkedHashMap<>();
            long nonFinite = 0;
            for (String name : w.tensorNames()) {
                Tensor t = w.tensor(name);
                bytesByType.merge(t.dtype(), t.data().byteSize(), Long::sum);
                params += t.numel();
                if (isFfn(c, name)) {
                    ffnParams += t.numel();
                }
                list.put(name, t.shapeString());
                if (verify && t.dtype().isComputeType()) {
                    for (long i = 0, n = t.numel(); i < n; i++) {
                        if (!Float.isFinite(t.getFloat(i))) {
                            nonFinite++;
                        }
                    }
                }
            }
            if (verify && nonFinite > 0) {
                throw new LlmflashException(w.location() + ": " + nonFinite + " weight values are NaN or infinite (the checkpoint is corrupt; re-download it)");
            }
            Map<String, Object> j = new LinkedHashMap<>();
            j.put("path", dir.toString());
            j.put("kind", "huggingface");
            j.put("weights", w.location().getFileName().toString());
            j.put("config", configMap(c));
            j.put("tensor_count", w.tensorNames().size());
            j.put("parameters", params);
            j.put("ffn_parameters", ffnParams);
            Map<String, Long> bt = new LinkedHashMap<>();
            bytesByType.forEach((k, v) -> bt.put(k.name(), v));
            j.put("bytes_by_dtype", bt);
            if (verify) {
                j.put("verified", true);
            }
            if (tensors) {
                j.put("tensors", list);
            }
            if (json) {
                out.println(Json.write(j));
            } else {
                out.printf("%s: Hugging Face %s checkpoint (%s)%n", dir, c.modelType(), w.location().getFileName());
                configMap(c).forEach((k, v) -> out.printf("  %-22s %s%n", k, v));
                out.printf("  %-22s %d%n", "tensors", w.tensorNames().size());
                out.printf("  %-22s %,d (FFN %.1f%%)%n", "parameters", params, 100.0 * ffnParams / Math.max(1, params));
                bt.forEach((k, v) -> out.printf("  %-22s %,d bytes%n", k, v));
                if (tensors) {
                    list.forEach((k, v) -> out.printf("    %-60s %s%n", k, v));
                }
                if (verify) {
                    out.println("  verified: every value read, all finite");
                }
            }
        }
        return 0;
    }

    private static boolean isFfn(ModelConfig c, String name) {
        return c instanceof OptConfig ? name.contains(".fc1.") || name.contains(".fc2.")
                : name.contains(".mlp.dense_h_to_4h.") || name.contains(".mlp.dense_4h_to_h.");
    }

    static Map<String, Object> configMap(ModelConfig c) {
        Map<String, Object> m = new LinkedHashMap<>();
        m.put("architecture", c.modelType());
        m.put("layers", c.numLayers());
        m.put("hidden_size", c.hiddenSize());
        m.put("heads", c.numHeads());
        m.put("head_dim", c.headDim());
        m.put("ffn_size", c.ffnSize());
        m.put("vocab_size", c.vocabSize());
        m.put("max_positions", c.maxPositions());
        switch (c) {
            case OptConfig o -> {
                m.put("activation", o.activation());
                m.put("layer_norm", o.layerNormBefore() ? "pre" : "post");
                m.put("word_embed_proj_dim", o.wordEmbedProjDim());
            }
            case FalconConfig f -> {
                m.put("activation", f.activation());
                m.put("kv_heads", f.numKvHeads());
                m.put("qkv_layout", f.qkvLayout().name().toLowerCase());
                m.put("parallel_attn", f.parallelAttn());
                m.put("rope_theta", f.ropeTheta());
            }
        }
        return m;
    }
}
