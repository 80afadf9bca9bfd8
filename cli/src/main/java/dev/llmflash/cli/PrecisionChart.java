package dev.llmflash.cli;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;

import java.io.IOException;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;

/**
 * ms per token by method and precision in one chart, from several {@code bench --json} results
 * ({@code scripts/scale-bench.sh --quant}): one stacked bar (I/O wait, memory management, compute) per
 * method of each result, labelled "LABEL method".
 * <pre>
 * java -cp cli/target/llmflash.jar dev.llmflash.cli.PrecisionChart OUT.png TITLE LABEL=bench.json ...
 * </pre>
 */
public final class PrecisionChart {
    private PrecisionChart() {
    }

    public static void main(String[] args) throws IOException {
        if (args.length < 3) {
            System.err.println("usage: PrecisionChart OUT.png TITLE LABEL=bench.json [LABEL=bench.json ...]");
            System.exit(2);
        }
        List<String> bars = new ArrayList<>();
        List<double[]> parts = new ArrayList<>();
        ObjectMapper json = new ObjectMapper();
        for (int i = 2; i < args.length; i++) {
            int eq = args[i].indexOf('=');
            if (eq < 1) {
                throw new IllegalArgumentException("argument " + args[i] + " is not LABEL=bench.json");
            }
            String label = args[i].substring(0, eq);
            JsonNode root = json.readTree(Path.of(args[i].substring(eq + 1)).toFile());
            for (JsonNode m : root.get("methods")) {
                bars.add(label + " " + m.get("method").asText());
                parts.add(new double[] {m.get("io_wait_ms").asDouble(), m.get("mem_ms").asDouble(),
                        m.get("compute_ms").asDouble()});
            }
        }
        double[] io = new double[bars.size()];
        double[] mem = new double[bars.size()];
        double[] compute = new double[bars.size()];
        for (int i = 0; i < bars.size(); i++) {
            io[i] = parts.get(i)[0];
            mem[i] = parts.get(i)[1];
            compute[i] = parts.get(i)[2];
        }
        Charts.latencyBreakdown(Path.of(args[0]), args[1], bars, io, mem, compute);
    }
}
