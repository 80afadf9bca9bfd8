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
            assertEquals(m.get("total_ms").asDouble(), m.get("io_ms").asDouble() + m.get("mem_ms").asDouble() + m.get("compute_ms").asDouble(), 1e-6);
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
        CliTest.Run r = CliTest.run("bench", "--model", bundled.toString(), "--memory", "15M", "--activity", "synthetic",
                "--predictor-rank", "0", "--methods", "all", "--tokens", "3", "--warmup", "1", "--io-threads", "2", "--isolate", "--json");
        assertEquals(0, r.code(), r.err());
        JsonNode m = new ObjectMapper().readTree(r.out()).get("methods").get(0);
        assertEquals("all", m.get("method").asText());
        assertEquals(3, m.get("tokens").asInt());
        assertTrue(m.get("peak_rss_bytes").asLong() > 0);
    }
}
