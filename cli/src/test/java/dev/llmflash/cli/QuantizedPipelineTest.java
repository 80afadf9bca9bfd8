package dev.llmflash.cli;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import dev.llmflash.formats.testing.TestData;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * The whole pipeline on quantized bundles of opt-mini through the CLI: convert --quant q8 and q4,
 * inspect (shows the quantization, verifies the checksums), perplexity dense against the f16 bundle
 * (the quality goals: q8 within +0.5%, q4 within +5%), record and train-predictor on the q4
 * bundle, perplexity --mode flash equal to --mode predicted within a budget, generate, and bench
 * (naive / hybrid / predictor / flash reading 4.5-bit bundles).
 */
class QuantizedPipelineTest {
    @TempDir
    static Path tmp;
    static Path f16;
    static Path q8;
    static Path q4;
    static Path dev;

    @BeforeAll
    static void convert() throws IOException {
        dev = tmp.resolve("dev-head.txt");
        Files.writeString(dev, Files.readString(TestData.reference("dev.txt")).substring(0, 30_000));
        f16 = tmp.resolve("f16.bundle");
        q8 = tmp.resolve("q8.bundle");
        q4 = tmp.resolve("q4.bundle");
        for (Object[] c : new Object[][]{{f16, "none"}, {q8, "q8"}, {q4, "q4"}}) {
            CliTest.Run r = CliTest.run("convert", "--input", TestData.model("opt-mini").toString(), "--output",
                    c[0].toString(), "--dtype", "f16", "--quant", (String) c[1]);
            assertEquals(0, r.code(), r.err());
        }
        CliTest.Run r = CliTest.run("record", "--model", q4.toString(), "--text",
                TestData.reference("train-sample.txt").toString(), "--tokens", "12288", "--output",
                tmp.resolve("q4.acts").toString());
        assertEquals(0, r.code(), r.err());
        CliTest.Run t = CliTest.run("train-predictor", "--model", q4.toString(), "--activations",
                tmp.resolve("q4.acts").toString(), "--epochs", "4");
        assertEquals(0, t.code(), t.err());
        assertTrue(t.out().contains("wrote predictors"), t.out());
    }

    static double perplexity(Path model, String mode, String... extra) throws IOException {
        String[] args = java.util.stream.Stream.concat(java.util.stream.Stream.of("perplexity", "--model", model.toString(),
                "--text", dev.toString(), "--mode", mode, "--max-tokens", "4096", "--json"), java.util.Arrays.stream(extra))
                .toArray(String[]::new);
        CliTest.Run p = CliTest.run(args);
        assertEquals(0, p.code(), p.err());
        return new ObjectMapper().readTree(p.out()).get("perplexity").asDouble();
    }

    @Test
    void inspectShowsTheQuantizationAndVerifies() throws IOException {
        CliTest.Run r = CliTest.run("inspect", q4.toString(), "--json", "--verify");
        assertEquals(0, r.code(), r.err());
        JsonNode j = new ObjectMapper().readTree(r.out());
        assertEquals(2, j.get("format_version").asInt());
        assertEquals("q4", j.get("quant").asText());
        assertEquals("Q4_0", j.get("ffn_dtype").asText());
        assertTrue(j.get("verified").asBoolean());
        JsonNode byType = j.get("resident_bytes_by_dtype");
        assertTrue(byType.get("Q4_0").asLong() > 0 && byType.get("Q8_0").asLong() > 0 && byType.get("F16").asLong() > 0,
                byType.toString());
        CliTest.Run text = CliTest.run("inspect", q4.toString());
        assertTrue(text.out().contains("quantization           q4: FFN Q4_0"), text.out());
        JsonNode plain = new ObjectMapper().readTree(CliTest.run("inspect", f16.toString(), "--json").out());
        assertEquals(1, plain.get("format_version").asInt());
        assertEquals("none", plain.get("quant").asText());
    }

    @Test
    void densePerplexityStaysWithinTheQualityGoals() throws IOException {
        double base = perplexity(f16, "dense");
        double p8 = perplexity(q8, "dense");
        double p4 = perplexity(q4, "dense");
        assertTrue(Math.abs(p8 / base - 1) <= 0.005, "q8 " + p8 + " vs f16 " + base);
        assertTrue(p4 / base - 1 <= 0.05, "q4 " + p4 + " vs f16 " + base);
        assertTrue(p4 != base && p8 != base, "quantization changes the output (else this could not tell)");
    }

    @Test
    void flashOnQ4GivesThePredictedPerplexityWithinItsBudget() throws IOException {
        double predicted = perplexity(q4, "predicted");
        double dense = perplexity(q4, "dense");
        assertEquals(predicted, perplexity(q4, "flash"), predicted * 1e-4, "flash vs predicted");
        // The tightest budget flash accepts here (its cache about one token's predicted set): from its own refusal.
        CliTest.Run low = CliTest.run("perplexity", "--model", q4.toString(), "--text", dev.toString(), "--mode", "flash",
                "--max-tokens", "4096", "--io-threads", "4", "--memory", "1M");
        assertEquals(Main.EXIT_ERROR, low.code());
        java.util.regex.Matcher m = java.util.regex.Pattern.compile("raise --memory to at least (\\S+)").matcher(low.err());
        assertTrue(m.find(), low.err());
        assertEquals(predicted, perplexity(q4, "flash", "--memory", m.group(1), "--io-threads", "4", "--window", "4"),
                predicted * 1e-4, "flash at " + m.group(1) + " vs predicted");
        assertTrue(Math.abs(predicted / dense - 1) < 0.10, "predicted " + predicted + " vs dense " + dense);
    }

    @Test
    void generateAndBenchRunOnQ4() throws IOException {
        CliTest.Run g = CliTest.run("generate", "--model", q4.toString(), "--prompt", "The Lord said", "--max-tokens", "12",
                "--temperature", "0", "--mode", "flash", "--json");
        assertEquals(0, g.code(), g.err());
        JsonNode gj = new ObjectMapper().readTree(g.out());
        assertEquals(12, gj.get("generated_ids").size());
        CliTest.Run d = CliTest.run("generate", "--model", q4.toString(), "--prompt", "The Lord said", "--max-tokens", "12",
                "--temperature", "0", "--json");
        assertEquals(0, d.code(), d.err());
        assertFalse(new ObjectMapper().readTree(d.out()).get("text").asText().isEmpty());

        CliTest.Run b = CliTest.run("bench", "--model", q4.toString(), "--memory", "12M", "--io-threads", "4", "--tokens", "6",
                "--warmup", "2", "--json");
        assertEquals(0, b.code(), b.err());
        JsonNode methods = new ObjectMapper().readTree(b.out()).get("methods");
        assertEquals(4, methods.size(), methods.toString());
        for (JsonNode m : methods) {
            assertTrue(m.get("memory").get("total").asLong() <= 12L << 20, m.toString());
        }
        // 6 layers x 1024 neurons x a 320-byte Q4_0 bundle (up and down rows of 256 weights: 2 x 144 bytes, padded to 32).
        assertEquals(6L * 1024 * 320, (long) methods.get(0).get("bytes_read_per_token").asDouble(),
                "naive reads the whole q4 FFN per token");
        assertTrue(methods.get(3).get("bytes_read_per_token").asDouble() < methods.get(0).get("bytes_read_per_token").asDouble());
    }
}
