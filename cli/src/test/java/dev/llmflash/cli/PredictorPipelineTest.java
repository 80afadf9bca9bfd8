package dev.llmflash.cli;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import dev.llmflash.formats.activations.ActivationReader;
import dev.llmflash.formats.bundle.Bundle;
import dev.llmflash.formats.predictor.LayerPredictor;
import dev.llmflash.formats.predictor.PredictorFile;
import dev.llmflash.formats.predictor.Predictors;
import dev.llmflash.formats.testing.TestData;
import dev.llmflash.runtime.tokenizer.BpeTokenizer;
import dev.llmflash.runtime.generate.Sampler;
import dev.llmflash.runtime.model.Models;
import dev.llmflash.runtime.model.LanguageModel;
import dev.llmflash.runtime.kernels.Kernels;
import dev.llmflash.runtime.flash.FlashRuntime;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.channels.FileChannel;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.StandardCopyOption;
import java.nio.file.StandardOpenOption;
import java.util.stream.Stream;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertNull;
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * The predictor pipeline through the CLI on opt-mini (small: 12,288 recorded positions, 4 epochs):
 * convert, record, train-predictor, then perplexity with --mode flash against --mode dense; and the
 * refusals: predictors of another model, a corrupted activation chunk.
 */
class PredictorPipelineTest {
    @TempDir
    static Path tmp;
    static Path bundle;
    static Path acts;
    static Path dev;

    @BeforeAll
    static void pipeline() throws IOException {
        bundle = tmp.resolve("opt.bundle");
        acts = tmp.resolve("opt.acts");
        dev = tmp.resolve("dev-head.txt");
        Files.writeString(dev, Files.readString(TestData.reference("dev.txt")).substring(0, 30_000));
        CliTest.Run c = CliTest.run("convert", "--input", TestData.model("opt-mini").toString(), "--output", bundle.toString());
        assertEquals(0, c.code(), c.err());
        CliTest.Run r = CliTest.run("record", "--model", bundle.toString(), "--text", TestData.reference("train-sample.txt").toString(),
                "--tokens", "12288", "--output", acts.toString());
        assertEquals(0, r.code(), r.err());
        CliTest.Run t = CliTest.run("train-predictor", "--model", bundle.toString(), "--activations", acts.toString(), "--epochs", "4");
        assertEquals(0, t.code(), t.err());
        assertTrue(t.out().contains("wrote predictors"), t.out());
    }

    static JsonNode perplexity(Path model, String mode) throws IOException {
        CliTest.Run p = CliTest.run("perplexity", "--model", model.toString(), "--text", dev.toString(), "--mode", mode, "--json");
        assertEquals(0, p.code(), p.err());
        JsonNode j = new ObjectMapper().readTree(p.out());
        assertEquals(mode, j.get("mode").asText());
        return j;
    }

    @Test
    void predictedModeComputesOnlyPredictedNeuronsAndStaysClose() throws IOException {
        double dense = perplexity(bundle, "dense").get("perplexity").asDouble();
        JsonNode f = perplexity(bundle, "predicted");
        double flash = f.get("perplexity").asDouble();
        JsonNode layers = f.get("predicted_layers");
        assertTrue(layers != null && layers.size() >= 3, "most layers are predicted: " + layers);
        for (JsonNode l : layers) {
            assertTrue(l.get("recall").asDouble() > 0.8, "recall on dev: " + l);
            assertTrue(l.get("predicted_density").asDouble() < 0.75, "predicted density: " + l);
        }
        assertTrue(flash != dense, "predicted neurons change the output a little");
        assertTrue(Math.abs(flash - dense) / dense < 0.10, "flash " + flash + " vs dense " + dense);
        JsonNode info = new ObjectMapper().readTree(bundle.resolve("predictors.json").toFile());
        assertTrue(info.toString().contains("predicted_density"), info.toString());
    }

    /**
     * The flash runtime (predictor, window cache, reads from ffn.bin within a budget) computes what the
     * predicted-sparse path computes: the same perplexity up to summation order.
     */
    @Test
    void flashModeGivesThePredictedSparsePerplexityWithinItsBudget() throws IOException {
        double predicted = perplexity(bundle, "predicted").get("perplexity").asDouble();
        for (String[] extra : new String[][] {{}, {"--memory", "24M", "--window", "4"}}) {
            String[] args = java.util.stream.Stream.concat(java.util.stream.Stream.of("perplexity", "--model", bundle.toString(),
                    "--text", dev.toString(), "--mode", "flash", "--max-tokens", "4096", "--json"), java.util.Arrays.stream(extra))
                    .toArray(String[]::new);
            CliTest.Run p = CliTest.run(args);
            assertEquals(0, p.code(), p.err());
            JsonNode j = new ObjectMapper().readTree(p.out());
            CliTest.Run q = CliTest.run("perplexity", "--model", bundle.toString(), "--text", dev.toString(), "--mode", "predicted",
                    "--max-tokens", "4096", "--json");
            double want = new ObjectMapper().readTree(q.out()).get("perplexity").asDouble();
            double got = j.get("perplexity").asDouble();
            assertEquals(want, got, want * 1e-4, "flash " + String.join(" ", extra) + " vs predicted");
            JsonNode m = j.get("metrics");
            assertEquals("flash", m.get("mode").asText());
            assertTrue(m.get("bytes_read_per_token").asDouble() > 0, m.toString());
            JsonNode mem = m.get("memory");
            assertTrue(mem.get("total").asLong() <= mem.get("budget_bytes").asLong(), mem.toString());
        }
        assertTrue(predicted > 0);
    }

    /** {@code llmflash bench --json}: every method's per-token split, bytes and memory, at one budget. */
    @Test
    void benchReportsEveryMethodAtOneBudget() throws IOException {
        CliTest.Run b = CliTest.run("bench", "--model", bundle.toString(), "--memory", "16M", "--io-threads", "4", "--tokens", "6",
                "--warmup", "2", "--json");
        assertEquals(0, b.code(), b.err());
        JsonNode j = new ObjectMapper().readTree(b.out());
        JsonNode methods = j.get("methods");
        assertEquals(4, methods.size(), methods.toString());
        String[] names = {"naive", "hybrid", "predictor", "flash"};
        for (int i = 0; i < names.length; i++) {
            JsonNode m = methods.get(i);
            assertEquals(names[i], m.get("method").asText());
            assertEquals(6, m.get("tokens").asInt(), "measured tokens after the warm-up");
            assertEquals(m.get("total_ms").asDouble(), m.get("io_wait_ms").asDouble() + m.get("mem_ms").asDouble() + m.get("compute_ms").asDouble(),
                    1e-6, m.toString());
            assertTrue(m.get("memory").get("total").asLong() <= 16L << 20, m.toString());
        }
        double naive = methods.get(0).get("bytes_read_per_token").asDouble();
        assertEquals(6L * 1024 * 1024, (long) naive, "naive reads opt-mini's whole FFN (6 layers x 1024 neurons x 1 KiB) per token");
        assertTrue(methods.get(1).get("bytes_read_per_token").asDouble() < naive, "hybrid holds part of the FFN");
        assertTrue(methods.get(3).get("bytes_read_per_token").asDouble() < methods.get(2).get("bytes_read_per_token").asDouble(),
                "the window saves reads");
        CliTest.Run bad = CliTest.run("bench", "--model", bundle.toString(), "--memory", "16M", "--methods", "fast");
        assertEquals(Main.EXIT_ERROR, bad.code());
        assertTrue(bad.err().contains("unknown method"), bad.err());
    }

    /**
     * The look-ahead predictors (layer l-1's input -> layer l's neurons): trained for every predicted
     * layer l >= 1, at the --recall target on the held-out tokens; stored ones keep that recall on
     * positions of another text (dev.txt) they never saw.
     */
    @Test
    void lookaheadPredictorsTargetEveryPredictedLayerAndGeneralize() throws IOException {
        String fp;
        int layers;
        try (Bundle b = Bundle.open(bundle)) {
            fp = b.manifest().fingerprint();
            layers = b.config().numLayers();
        }
        Predictors p = PredictorFile.read(bundle, fp);
        JsonNode info = new ObjectMapper().readTree(bundle.resolve("predictors.json").toFile()).get("training");
        JsonNode ahead = info.get("lookahead_layers");
        int at = 0;
        for (int l = 1; l < layers; l++) {
            if (p.layer(l).dense()) {
                assertNull(p.lookahead(l - 1), "target layer " + l + " is dense: no look-ahead");
                continue;
            }
            JsonNode a = ahead.get(at++);
            assertEquals(l, a.get("layer").asInt(), ahead.toString());
            assertTrue(a.get("recall").asDouble() >= 0.985, "held-out recall " + a);
            assertEquals(a.get("stored").asBoolean(), p.lookahead(l - 1) != null, a.toString());
            if (p.lookahead(l - 1) != null) {
                assertEquals(l, p.lookahead(l - 1).layer());
                assertTrue(a.get("predicted_density").asDouble() <= 0.5, a.toString());
            }
        }
        assertEquals(at, ahead.size(), ahead.toString());
        assertNull(p.lookahead(layers - 1));
        assertTrue(p.hasLookahead());

        Path fresh = tmp.resolve("dev.acts");
        assertEquals(0, CliTest.run("record", "--model", bundle.toString(), "--text", dev.toString(), "--tokens", "2048",
                "--output", fresh.toString()).code());
        ActivationReader acts = ActivationReader.open(fresh);
        int stored = 0;
        for (int l = 0; l + 1 < layers; l++) {
            LayerPredictor la = p.lookahead(l);
            if (la == null) {
                continue;
            }
            stored++;
            double recall = recall(la, acts.load(l), acts.load(l + 1));
            System.out.printf("look-ahead layer %d -> %d: dev recall %.4f%n", l, l + 1, recall);
            assertTrue(recall >= 0.95, "look-ahead " + l + " -> " + (l + 1) + ": recall on dev " + recall);
        }
        assertTrue(stored >= 2, "stored look-aheads: " + stored);
    }

    /** Recall of {@code p} reading {@code in}'s inputs against {@code target}'s labels at the same positions. */
    private static double recall(LayerPredictor p, ActivationReader.LayerData in, ActivationReader.LayerData target) {
        int d = p.inputs(), f = p.neurons(), r = p.rank();
        long positives = 0, kept = 0;
        double[] h = new double[r];
        for (int t = 0; t < in.tokens(); t++) {
            for (int k = 0; k < r; k++) {
                double s = 0;
                for (int j = 0; j < d; j++) {
                    s += p.a()[k * d + j] * in.x()[t * d + j];
                }
                h[k] = s;
            }
            for (int i = 0; i < f; i++) {
                if (!target.label(t, i)) {
                    continue;
                }
                positives++;
                double z = p.c()[i];
                for (int k = 0; k < r; k++) {
                    z += p.b()[i * r + k] * h[k];
                }
                if (1 / (1 + Math.exp(-z)) > p.threshold()) {
                    kept++;
                }
            }
        }
        return (double) kept / positives;
    }

    /** Own and look-ahead predictors are bit for bit the same trained on 1 or 2 threads. */
    @Test
    void trainingIsBitIdenticalOnOneAndTwoThreads() throws IOException {
        byte[][] bins = new byte[2][];
        for (int threads = 1; threads <= 2; threads++) {
            Path copy = tmp.resolve("threads-" + threads + ".bundle");
            Files.createDirectories(copy);
            try (Stream<Path> s = Files.list(bundle)) {
                for (Path f : s.toList()) {
                    Files.copy(f, copy.resolve(f.getFileName()));
                }
            }
            CliTest.Run t = CliTest.run("train-predictor", "--model", copy.toString(), "--activations", acts.toString(),
                    "--epochs", "1", "--rank", "16", "--rank-last", "16", "--recall", "0.95", "--threads", String.valueOf(threads));
            assertEquals(0, t.code(), t.err());
            assertTrue(t.out().contains("la.recall"), t.out());
            bins[threads - 1] = Files.readAllBytes(copy.resolve("predictors.bin"));
            try (Bundle b = Bundle.open(copy)) {
                assertTrue(PredictorFile.read(copy, b.manifest().fingerprint()).hasLookahead(), t.out());
            }
        }
        assertArrayEquals(bins[0], bins[1]);
    }

    @Test
    void noLookaheadTrainsOnlyTheOwnPredictors() throws IOException {
        Path copy = tmp.resolve("no-lookahead.bundle");
        Files.createDirectories(copy);
        try (Stream<Path> s = Files.list(bundle)) {
            for (Path f : s.toList()) {
                Files.copy(f, copy.resolve(f.getFileName()));
            }
        }
        CliTest.Run t = CliTest.run("train-predictor", "--model", copy.toString(), "--activations", acts.toString(),
                "--epochs", "1", "--rank", "8", "--rank-last", "8", "--no-lookahead");
        assertEquals(0, t.code(), t.err());
        assertFalse(t.out().contains("la.recall"), t.out());
        try (Bundle b = Bundle.open(copy)) {
            Predictors p = PredictorFile.read(copy, b.manifest().fingerprint());
            assertTrue(p.lookaheads().isEmpty());
            assertFalse(p.hasLookahead());
        }
    }

    @Test
    void flashModeNeedsPredictorsOfThisModel() throws IOException {
        Path other = tmp.resolve("falcon.bundle");
        assertEquals(0, CliTest.run("convert", "--input", TestData.model("falcon-mini-relu").toString(), "--output", other.toString()).code());
        CliTest.Run none = CliTest.run("perplexity", "--model", other.toString(), "--text", dev.toString(), "--mode", "flash");
        assertEquals(Main.EXIT_ERROR, none.code());
        assertTrue(none.err().contains("train-predictor"), none.err());
        for (String f : new String[] {"predictors.bin", "predictors.json"}) {
            Files.copy(bundle.resolve(f), other.resolve(f), StandardCopyOption.REPLACE_EXISTING);
        }
        CliTest.Run wrong = CliTest.run("perplexity", "--model", other.toString(), "--text", dev.toString(), "--mode", "flash");
        assertEquals(Main.EXIT_ERROR, wrong.code());
        assertEquals(1, wrong.err().strip().lines().count(), wrong.err());
        assertTrue(wrong.err().contains("another model"), wrong.err());
        CliTest.Run hf = CliTest.run("perplexity", "--model", TestData.model("opt-mini").toString(), "--text", dev.toString(), "--mode", "flash");
        assertEquals(Main.EXIT_ERROR, hf.code());
        assertTrue(hf.err().contains("needs a bundle"), hf.err());
    }

    @Test
    void aCorruptedActivationChunkIsReportedNotTrainedOn() throws IOException {
        Path copy = tmp.resolve("corrupt.acts");
        Files.createDirectories(copy);
        Path chunk = null;
        try (Stream<Path> s = Files.list(acts)) {
            for (Path p : s.toList()) {
                Files.copy(p, copy.resolve(p.getFileName()));
                if (p.getFileName().toString().startsWith("layer-03")) {
                    chunk = copy.resolve(p.getFileName());
                }
            }
        }
        assertTrue(chunk != null, "a layer-3 chunk exists");
        try (FileChannel ch = FileChannel.open(chunk, StandardOpenOption.READ, StandardOpenOption.WRITE)) {
            ByteBuffer b = ByteBuffer.allocate(1);
            long pos = ch.size() / 2;
            ch.read(b, pos);
            b.put(0, (byte) (b.get(0) ^ 0x40)).rewind();
            ch.write(b, pos);
        }
        CliTest.Run t = CliTest.run("train-predictor", "--model", bundle.toString(), "--activations", copy.toString(), "--epochs", "1");
        assertEquals(Main.EXIT_ERROR, t.code());
        assertTrue(t.err().contains(chunk.getFileName().toString()), t.err());
    }

    @Test
    void anInterruptedRecordingResumesWhereItStopped() {
        Path text = TestData.reference("train-sample.txt");
        Path resumed = tmp.resolve("resumed.acts");
        Path fresh = tmp.resolve("fresh.acts");
        assertEquals(0, CliTest.run("record", "--model", bundle.toString(), "--text", text.toString(), "--tokens", "1024",
                "--output", resumed.toString()).code());
        CliTest.Run more = CliTest.run("record", "--model", bundle.toString(), "--text", text.toString(), "--tokens", "2560",
                "--output", resumed.toString());
        assertEquals(0, more.code(), more.err());
        assertTrue(more.out().contains("resumed at 1024"), more.out());
        assertEquals(0, CliTest.run("record", "--model", bundle.toString(), "--text", text.toString(), "--tokens", "2560",
                "--output", fresh.toString()).code());
        var a = ActivationReader.open(resumed);
        var b = ActivationReader.open(fresh);
        for (int layer = 0; layer < b.layers(); layer++) {
            var la = a.load(layer);
            var lb = b.load(layer);
            assertEquals(2560, la.tokens());
            assertEquals(lb.tokens(), la.tokens());
            // The same positions in the same order: inputs equal up to the last bits that the kernels' lane
            // reductions may round differently between runs (before and after the JIT compiles them).
            for (int i = 0; i < la.x().length; i++) {
                assertEquals(lb.x()[i], la.x()[i], 1e-2f * Math.max(1f, Math.abs(lb.x()[i])), "layer " + layer + " x[" + i + "]");
            }
            int differ = 0;
            for (int i = 0; i < la.labels().length; i++) {
                differ += Integer.bitCount((la.labels()[i] ^ lb.labels()[i]) & 0xff);
            }
            assertTrue(differ <= la.labels().length * 8 / 1000, "layer " + layer + ": " + differ + " labels differ");
        }
    }

    /** Logits of every position of {@code ids} from one forward call (layer-major) or one call per token. */
    static float[] flashLogits(FlashRuntime.Options o, int[] ids, boolean layerMajor, int[] greedy) {
        try (Kernels k = new dev.llmflash.runtime.kernels.Kernels(2);
             FlashRuntime rt = FlashRuntime.open(bundle, o);
             LanguageModel m = Models.open(bundle, k, rt.wrapper())) {
            int n = ids.length, v = m.config().vocabSize();
            float[] out = new float[n * v], one = new float[v];
            LanguageModel.State st = m.newState(n + greedy.length);
            if (layerMajor) {
                m.forward(st, ids, n, true, out);
                System.arraycopy(out, (n - 1) * v, one, 0, v);
            } else {
                for (int t = 0; t < n; t++) {
                    m.forward(st, new int[]{ids[t]}, 1, false, one);
                    System.arraycopy(one, 0, out, t * v, v);
                }
            }
            for (int g = 0; g < greedy.length; g++) {
                greedy[g] = Sampler.argmax(one, v);
                m.forward(st, new int[]{greedy[g]}, 1, false, one);
            }
            if (o.lookahead()) {
                assertTrue(rt.metrics().snapshot().prefetched() > 0, "the look-ahead prefetched neurons");
            }
            return out;
        }
    }

    /**
     * Layer-major flash prefill with the trained predictors, on a 520-token prompt of dev.txt, against
     * token-by-token flash: 99% of the positions within max |diff| <= 1e-4 x max |logit| (a neuron whose
     * predictor score sits at the threshold may be chosen on one side only when the summation order moves
     * it by an ulp), the same 16-token greedy continuation; and decode with the look-ahead prefetch gives
     * what decode without it gives.
     */
    @Test
    void trainedFlashPrefillIsTokenByTokenFlashAndTheLookAheadChangesNothing() throws IOException {
        int[] all = BpeTokenizer.fromModelDir(bundle).encodeWithBos(Files.readString(TestData.reference("dev.txt")));
        int[] ids = java.util.Arrays.copyOf(all, 520);
        var o = FlashRuntime.Options.of(FlashRuntime.Mode.FLASH, 540).withIoThreads(4).withWindow(2);
        int[] ga = new int[16], gb = new int[16], gc = new int[16];
        float[] a = flashLogits(o, ids, true, ga);
        float[] b = flashLogits(o, ids, false, gb);
        float[] c = flashLogits(o.withLookahead(false), ids, false, gc);
        int v = a.length / ids.length, over = 0, overLa = 0;
        double worst = 0;
        for (int t = 0; t < ids.length; t++) {
            float maxLogit = 0, diff = 0, diffLa = 0;
            for (int j = 0; j < v; j++) {
                maxLogit = Math.max(maxLogit, Math.abs(b[t * v + j]));
                diff = Math.max(diff, Math.abs(a[t * v + j] - b[t * v + j]));
                diffLa = Math.max(diffLa, Math.abs(b[t * v + j] - c[t * v + j]));
            }
            worst = Math.max(worst, diff / maxLogit);
            over += diff > 1e-4 * maxLogit ? 1 : 0;
            overLa += diffLa > 1e-4 * maxLogit ? 1 : 0;
        }
        assertTrue(over <= ids.length / 100, over + " of " + ids.length + " positions beyond 1e-4 x max |logit| (worst " + worst + ")");
        assertTrue(overLa <= ids.length / 100, overLa + " positions changed by the look-ahead beyond 1e-4 x max |logit|"
                + " (it changes only the order in which the chosen neurons are summed)");
        assertArrayEquals(gb, ga, "greedy continuation after a layer-major prompt vs token by token");
        assertArrayEquals(gb, gc, "greedy continuation with and without the look-ahead");
    }
}
