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
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * {@code llmflash bench} with synthetic activity on opt-mini (bundled and split): every method of the
 * paper's ablation, the window sweep, the reference limits, the charts, and one method in its own JVM.
 */
class BenchCommandTest {
    @TempDir
    static Path tmp;
    static Path bundled;
    static Path split;

    @BeforeAll
    static void convert() {
        bundled = tmp.resolve("opt.bundle");
        split = tmp.resolve("opt-split.bundle");
        Path hf = TestData.model("opt-mini");
        assertEquals(0, CliTest.run("convert", "--input", hf.toString(), "--output", bundled.toString()).code());
        assertEquals(0, CliTest.run("convert", "--input", hf.toString(), "--output", split.toString(), "--layout", "split").code());
    }

    @Test
    void syntheticActivityRunsThePapersAblationWithLimitsAndCharts() throws IOException {
        Path charts = tmp.resolve("charts");
        CliTest.Run r = CliTest.run("bench", "--model", bundled.toString(), "--split-model", split.toString(), "--memory", "15M",
                "--activity", "synthetic", "--predictor-rank", "8", "--tokens", "6", "--warmup", "2", "--io-threads", "4",
                "--window-sweep", "1,4", "--limits", "--charts", charts.toString(), "--sweep-bytes", "262144", "--json");
        assertEquals(0, r.code(), r.err());
        JsonNode j = new ObjectMapper().readTree(r.out());
        JsonNode methods = j.get("methods");
        String[] names = {"naive", "hybrid", "predictor", "window", "all"};
        assertEquals(names.length, methods.size());
        for (int i = 0; i < names.length; i++) {
            JsonNode m = methods.get(i);
            assertEquals(names[i], m.get("method").asText());
            for (String k : new String[] {"io_ms", "mem_ms", "compute_ms", "total_ms", "bytes_read_per_token", "peak_rss_bytes"}) {
                assertTrue(m.get(k).isNumber(), k + " in " + m);
            }
            assertEquals(m.get("total_ms").asDouble(), m.get("io_wait_ms").asDouble() + m.get("mem_ms").asDouble() + m.get("compute_ms").asDouble(), 1e-6);
        }
        assertTrue(methods.get(2).get("model").asText().contains("split"), "predictor runs on the split bundle");
        assertTrue(methods.get(3).get("model").asText().contains("split"), "window runs on the split bundle");
        assertTrue(!methods.get(4).get("model").asText().contains("split"), "all runs on the bundled layout");
        JsonNode synth = methods.get(4).get("synthetic_activity");
        assertEquals(0.105, synth.get("density").asDouble(), 1e-9);
        // The window saves reads: predictor (window 0) reads the whole predicted set each token.
        assertTrue(methods.get(3).get("bytes_read_per_token").asDouble() < methods.get(2).get("bytes_read_per_token").asDouble());
        assertEquals(2, j.get("window_sweep").size());
        JsonNode lim = j.get("limits");
        for (String k : new String[] {"seq_read_gbps", "random_read_gbps", "memory_gbps", "limit_ms_per_token"}) {
            assertTrue(lim.get(k).asDouble() > 0, k + " in " + lim);
        }
        for (String png : new String[] {"latency-breakdown.png", "window-tradeoff.png", "read-throughput.png"}) {
            byte[] b = Files.readAllBytes(charts.resolve(png));
            assertTrue(b.length > 1000 && (b[1] & 0xff) == 'P' && (b[2] & 0xff) == 'N' && (b[3] & 0xff) == 'G', png);
        }
    }

    @Test
    void isolatedMethodsRunInTheirOwnJvm() throws IOException {
        Path prompt = Files.writeString(tmp.resolve("isolated-prompt.txt"), "The quick brown fox jumps over the lazy dog.");
        CliTest.Run r = CliTest.run("bench", "--model", bundled.toString(), "--memory", "15M", "--activity", "synthetic",
                "--predictor-rank", "0", "--methods", "all", "--tokens", "3", "--warmup", "1", "--io-threads", "2", "--isolate",
                "--prompt-file", prompt.toString(), "--prompt-tokens", "23", "--prompt-sweep", "9", "--json");
        assertEquals(0, r.code(), r.err());
        JsonNode m = new ObjectMapper().readTree(r.out()).get("methods").get(0);
        assertEquals("all", m.get("method").asText());
        assertEquals(3, m.get("tokens").asInt());
        assertTrue(m.get("peak_rss_bytes").asLong() > 0);
        assertEquals(23, m.get("prompt_tokens").asInt(), "the child got --prompt-file and --prompt-tokens");
        assertEquals(23, m.get("prefill_step").get("tokens").asInt());
        JsonNode pt = new ObjectMapper().readTree(r.out()).get("prompt_sweep");
        assertEquals(1, pt.size(), pt.toString());
        assertEquals(9, pt.get(0).get("prompt_tokens").asInt(), "the sweep point's child got its length");
        assertTrue(r.err().contains("bench: all, prompt of 9 tokens"), r.err());
    }

    @Test
    void promptFileAndPromptTokensGiveExactlyNTokensForEveryMethodWithDenseAndTheIoSplit() throws IOException {
        Path prompt = Files.writeString(tmp.resolve("prompt.txt"), "Once upon a time, in a land far away, there lived a king.");
        CliTest.Run r = CliTest.run("bench", "--model", bundled.toString(), "--memory", "15M", "--activity", "synthetic",
                "--predictor-rank", "0", "--methods", "dense,naive,flash", "--tokens", "3", "--warmup", "1", "--io-threads", "2",
                "--prompt-file", prompt.toString(), "--prompt-tokens", "40", "--json");
        assertEquals(0, r.code(), r.err());
        JsonNode methods = new ObjectMapper().readTree(r.out()).get("methods");
        assertEquals(3, methods.size());
        for (JsonNode m : methods) {
            assertEquals(40, m.get("prompt_tokens").asInt(), m.toString());
            JsonNode pre = m.get("prefill_step");
            assertEquals(40, pre.get("tokens").asInt(), m.toString());
            for (String k : new String[] {"ms", "io_ms", "io_wait_ms", "mem_ms", "bytes_read"}) {
                assertTrue(pre.get(k).isNumber(), k + " in " + pre);
            }
            assertTrue(m.get("time_to_first_token_ms").asDouble() > 0, m.toString());
            assertTrue(m.get("io_ms").isNumber() && m.get("io_wait_ms").isNumber(), m.toString());
            assertEquals(m.get("total_ms").asDouble(), m.get("io_wait_ms").asDouble() + m.get("mem_ms").asDouble()
                    + m.get("compute_ms").asDouble(), 1e-6, m.toString());
        }
        JsonNode dense = methods.get(0);
        assertEquals("dense", dense.get("method").asText());
        assertEquals(0.0, dense.get("io_ms").asDouble());
        assertEquals(0.0, dense.get("io_wait_ms").asDouble());
        assertEquals(0.0, dense.get("bytes_read_per_token").asDouble());
        assertEquals(0, dense.get("prefill_step").get("bytes_read").asLong());
        assertTrue(dense.get("overlap").isNull(), "no reads, no overlap: " + dense.get("overlap"));
        assertEquals(Files.size(bundled.resolve("resident.safetensors")) + Files.size(bundled.resolve("ffn.bin")),
                dense.get("preload").get("bytes").asLong(), "every mapped page read before timing");
        assertTrue(dense.get("memory").get("total").asLong() > 0, dense.toString());
        JsonNode flash = methods.get(2);
        assertEquals("flash", flash.get("method").asText());
        assertTrue(flash.get("io_ms").asDouble() > 0, "reads in flight: " + flash);
        double overlap = flash.get("overlap").asDouble(-1);
        assertTrue(overlap >= 0 && overlap <= 1, "overlap " + flash.get("overlap"));
        // clamped: waiting can outlast the reads' own in-flight time (wake-up after completion)
        assertEquals(Math.max(0, Math.min(1, 1 - flash.get("io_wait_ms").asDouble() / flash.get("io_ms").asDouble())), overlap, 1e-9);
        assertTrue(flash.get("prefill").asText().startsWith("layer-major"), flash.get("prefill").asText());
        assertTrue(flash.get("prefill_step").get("bytes_read").asLong() > 0, flash.toString());
    }

    @Test
    void denseAloneNeedsNoMemoryAndTheTableShowsTtftAndIoWait() {
        CliTest.Run r = CliTest.run("bench", "--model", bundled.toString(), "--methods", "dense", "--tokens", "2", "--warmup", "0",
                "--prompt-tokens", "5");
        assertEquals(0, r.code(), r.err());
        String header = r.out().lines().findFirst().orElseThrow();
        for (String col : new String[] {"prompt", "I/O wait ms", "overlap", "total ms", "TTFT ms"}) {
            assertTrue(header.contains(col), col + " in " + header);
        }
        String row = r.out().lines().filter(l -> l.startsWith("dense")).findFirst().orElseThrow();
        assertTrue(row.matches("dense\\s+2\\s+5\\s+0\\.00\\s+-\\s.*"), row);
    }

    @Test
    void promptSweepHasOnePointPerMethodAndLengthAndACharts() throws IOException {
        Path charts = tmp.resolve("sweep-charts");
        CliTest.Run r = CliTest.run("bench", "--model", bundled.toString(), "--memory", "15M", "--activity", "synthetic",
                "--predictor-rank", "0", "--methods", "dense,flash", "--tokens", "2", "--warmup", "0", "--io-threads", "2",
                "--prompt-sweep", "16,8", "--charts", charts.toString(), "--json");
        assertEquals(0, r.code(), r.err());
        JsonNode j = new ObjectMapper().readTree(r.out());
        JsonNode pts = j.get("prompt_sweep");
        assertEquals(4, pts.size(), pts.toString());
        String[] methods = {"dense", "dense", "flash", "flash"};
        int[] lengths = {8, 16, 8, 16};
        for (int i = 0; i < 4; i++) {
            JsonNode p = pts.get(i);
            assertEquals(methods[i], p.get("method").asText(), p.toString());
            assertEquals(lengths[i], p.get("prompt_tokens").asInt(), p.toString());
            assertTrue(p.get("time_to_first_token_ms").asDouble() > 0, p.toString());
            assertTrue(p.get("prefill_ms").asDouble() > 0, p.toString());
            assertTrue(p.get("decode_ms_per_token").asDouble() > 0, p.toString());
            assertEquals(methods[i].equals("dense"), p.get("prefill_bytes_read").asLong() == 0, p.toString());
        }
        java.awt.image.BufferedImage img = javax.imageio.ImageIO.read(charts.resolve("ttft-vs-prompt.png").toFile());
        assertTrue(img != null && Files.size(charts.resolve("ttft-vs-prompt.png")) > 1000);
        assertEquals(Charts.WIDTH, img.getWidth());
        assertEquals(Charts.HEIGHT, img.getHeight());
    }

    @Test
    void badPromptOptionsAreOneLineErrorsNamingTheFileOrFlag() throws IOException {
        Path missing = tmp.resolve("no-such-prompt.txt");
        CliTest.Run r = CliTest.run("bench", "--model", bundled.toString(), "--memory", "15M", "--prompt-file", missing.toString());
        assertEquals(1, r.code(), r.err());
        assertOneLine(r.err(), missing.toString());
        Path empty = Files.writeString(tmp.resolve("empty-prompt.txt"), " \n");
        r = CliTest.run("bench", "--model", bundled.toString(), "--memory", "15M", "--prompt-file", empty.toString());
        assertEquals(1, r.code(), r.err());
        assertOneLine(r.err(), empty.toString());
        r = CliTest.run("bench", "--model", bundled.toString(), "--memory", "15M", "--prompt-tokens", "0");
        assertEquals(1, r.code(), r.err());
        assertOneLine(r.err(), "--prompt-tokens");
        r = CliTest.run("bench", "--model", bundled.toString(), "--memory", "15M", "--prompt-tokens", "1000", "--tokens", "20", "--warmup", "4");
        assertEquals(1, r.code(), r.err());
        assertOneLine(r.err(), "--prompt-tokens");
        assertTrue(r.err().contains("1024"), r.err());
        r = CliTest.run("bench", "--model", bundled.toString(), "--methods", "naive");
        assertEquals(1, r.code(), r.err());
        assertOneLine(r.err(), "--memory");
    }

    private static void assertOneLine(String err, String naming) {
        assertEquals(1, err.strip().lines().count(), err);
        assertTrue(err.contains(naming), naming + " in " + err);
    }
}
