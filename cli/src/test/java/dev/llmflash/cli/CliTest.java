package dev.llmflash.cli;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import dev.llmflash.formats.testing.TestData;
import org.apache.commons.compress.archivers.zip.ZipArchiveEntry;
import org.apache.commons.compress.archivers.zip.ZipArchiveOutputStream;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

import java.io.ByteArrayOutputStream;
import java.io.IOException;
import java.io.PrintWriter;
import java.io.StringWriter;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.channels.FileChannel;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.StandardOpenOption;
import java.util.stream.Stream;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

/** The command line end to end: outputs against the reference data, and one-line errors on bad input. */
class CliTest {
    @TempDir
    Path tmp;

    record Run(int code, String out, String err) {
    }

    static Run run(String... args) {
        StringWriter out = new StringWriter(), err = new StringWriter();
        int code = Main.run(args, new PrintWriter(out, true), new PrintWriter(err, true));
        return new Run(code, out.toString(), err.toString());
    }

    static JsonNode reference(String model, int prompt) throws IOException {
        return new ObjectMapper().readTree(TestData.reference("reference_outputs.json").toFile()).get(model).get("prompts").get(prompt);
    }

    @Test
    void generateJsonMatchesHuggingFaceGreedy() throws IOException {
        for (String model : new String[] {"opt-mini", "falcon-mini-relu"}) {
            JsonNode ref = reference(model, 0);
            Run r = run("generate", "--model", TestData.model(model).toString(), "--prompt", ref.get("text").asText(),
                    "--max-tokens", "32", "--temperature", "0", "--json");
            assertEquals(0, r.code(), r.err());
            JsonNode j = new ObjectMapper().readTree(r.out());
            assertEquals(ref.get("input_ids"), j.get("prompt_ids"), model);
            assertEquals(ref.get("greedy_new_ids"), j.get("generated_ids"), model);
            assertEquals(ref.get("greedy_text").asText(), j.get("text").asText(), model);
            assertEquals(32, j.get("metrics").get("generated_tokens").asInt());
            assertTrue(j.get("metrics").get("time_to_first_token_ms").asDouble() > 0);
        }
    }

    @Test
    void generateStreamsTextAndReportWritesJson() throws IOException {
        JsonNode ref = reference("opt-mini", 0);
        Path report = tmp.resolve("report.json");
        Run r = run("generate", "--model", TestData.model("opt-mini").toString(), "--prompt", ref.get("text").asText(),
                "--max-tokens", "32", "--report", report.toString());
        assertEquals(0, r.code(), r.err());
        assertEquals(ref.get("greedy_text").asText() + System.lineSeparator(), r.out());
        assertTrue(r.err().contains("tokens/s"), r.err());
        JsonNode j = new ObjectMapper().readTree(report.toFile());
        assertEquals(ref.get("greedy_new_ids"), j.get("generated_ids"));
    }

    @Test
    void samplingIsReproducibleBySeed() throws IOException {
        String[] args = {"generate", "--model", TestData.model("opt-mini").toString(), "--prompt", "The Lord said",
                "--max-tokens", "20", "--temperature", "0.9", "--top-k", "40", "--top-p", "0.9", "--seed", "7", "--json"};
        JsonNode a = new ObjectMapper().readTree(run(args).out());
        JsonNode b = new ObjectMapper().readTree(run(args).out());
        assertEquals(a.get("generated_ids"), b.get("generated_ids"));
        args[args.length - 2] = "8";
        JsonNode c = new ObjectMapper().readTree(run(args).out());
        assertTrue(!a.get("generated_ids").equals(c.get("generated_ids")), "another seed, another sample");
    }

    @Test
    void inspectDescribesEveryCheckpointKind() throws IOException {
        for (String model : new String[] {"opt-mini", "falcon-mini-relu", "opt-tiny-postln-bin"}) {
            Run r = run("inspect", TestData.model(model).toString(), "--json", "--verify");
            assertEquals(0, r.code(), r.err());
            JsonNode j = new ObjectMapper().readTree(r.out());
            assertTrue(j.get("parameters").asLong() > 0);
            assertTrue(j.get("verified").asBoolean());
        }
        JsonNode falcon = new ObjectMapper().readTree(run("inspect", TestData.model("falcon-mini-relu").toString(), "--json").out());
        assertEquals(1, falcon.get("config").get("kv_heads").asInt(), "multi_query without new arch: one K/V head");
    }

    /** The main job: the whole pipeline ends with the per-token latency table of naive, hybrid and flash. */
    @Test
    void demoRunsThePipelineAndEndsWithTheLatencyTable() {
        Path testdata = TestData.model("opt-mini").getParent().getParent();
        Run r = run("demo", "--models", testdata.toString(), "--record-tokens", "4096", "--max-tokens", "8", "--memory", "18M");
        assertEquals(0, r.code(), r.err());
        for (String step : new String[] {"llmflash convert", "llmflash inspect", "llmflash record", "llmflash train-predictor",
                "llmflash generate", "--mode flash"}) {
            assertTrue(r.out().contains(step), step + " in " + r.out());
        }
        String table = r.out().substring(r.out().indexOf("== per-token latency"));
        for (String mode : new String[] {"naive", "hybrid", "flash"}) {
            assertTrue(table.lines().anyMatch(l -> l.startsWith(mode + " ") && l.contains("%")), mode + " row in " + table);
        }
    }

    @Test
    void usageErrorsExitTwoWithOneLine() {
        Run r = run("generate", "--prompt", "x");
        assertEquals(Main.EXIT_USAGE, r.code());
        assertEquals(1, r.err().strip().lines().count(), r.err());
        Run t = run("generate", "--model", TestData.model("opt-mini").toString(), "--prompt", "x", "--temperature", "-1");
        assertEquals(Main.EXIT_ERROR, t.code());
        assertTrue(t.err().contains("--temperature"), t.err());
        Run m = run("generate", "--model", TestData.model("opt-mini").toString(), "--prompt", "x", "--mode", "flash");
        assertEquals(Main.EXIT_ERROR, m.code());
        assertTrue(m.err().contains("--mode flash"), m.err());
    }

    // ---- bad input: one line naming the file and the problem, exit 1, nothing on stdout ----

    void assertOneLineError(Path modelDir, String... mustContain) {
        Run r = run("generate", "--model", modelDir.toString(), "--prompt", "hello");
        assertEquals(Main.EXIT_ERROR, r.code(), r.err());
        assertEquals("", r.out());
        String err = r.err().strip();
        assertEquals(1, err.lines().count(), "one line, got: " + err);
        assertTrue(err.startsWith("llmflash: error: "), err);
        for (String s : mustContain) {
            assertTrue(err.contains(s), "'" + s + "' missing from: " + err);
        }
    }

    Path copyModel(String name) throws IOException {
        Path dst = tmp.resolve(name);
        Files.createDirectories(dst);
        try (Stream<Path> files = Files.list(TestData.model(name))) {
            for (Path f : files.toList()) {
                Files.copy(f, dst.resolve(f.getFileName()));
                dst.resolve(f.getFileName()).toFile().setWritable(true);
            }
        }
        return dst;
    }

    /** A tiny OPT config (vocab 16, d 8, 1 layer) for hand-made weights files. */
    Path tinyOptDir(String name) throws IOException {
        Path dir = Files.createDirectories(tmp.resolve(name));
        Files.writeString(dir.resolve("config.json"), """
                {"model_type": "opt", "vocab_size": 16, "hidden_size": 8, "num_hidden_layers": 1,
                 "num_attention_heads": 2, "ffn_dim": 16, "max_position_embeddings": 8, "word_embed_proj_dim": 8}
                """);
        for (String f : new String[] {"vocab.json", "merges.txt", "tokenizer_config.json"}) {
            Files.copy(TestData.model("opt-mini").resolve(f), dir.resolve(f));
        }
        return dir;
    }

    /** Writes a safetensors file from a raw header JSON and a data buffer of {@code dataBytes} zero bytes. */
    static void safetensors(Path file, String header, int dataBytes) throws IOException {
        byte[] h = header.getBytes(StandardCharsets.UTF_8);
        ByteBuffer b = ByteBuffer.allocate(8 + h.length + dataBytes).order(ByteOrder.LITTLE_ENDIAN);
        b.putLong(h.length).put(h);
        Files.write(file, b.array());
    }

    @Test
    void nonCheckpointDirectory() throws IOException {
        Path dir = Files.createDirectories(tmp.resolve("photos"));
        Files.writeString(dir.resolve("cat.txt"), "meow");
        assertOneLineError(dir, "photos", "config.json");
        assertOneLineError(tmp.resolve("nowhere"), "nowhere", "does not exist");
    }

    @Test
    void truncatedSafetensors() throws IOException {
        Path dir = copyModel("opt-mini");
        Path st = dir.resolve("model.safetensors");
        try (FileChannel ch = FileChannel.open(st, StandardOpenOption.WRITE)) {
            ch.truncate(ch.size() / 2);
        }
        assertOneLineError(dir, "model.safetensors", "truncated");
    }

    @Test
    void headerOffsetsPastTheEnd() throws IOException {
        Path dir = tinyOptDir("past-end");
        safetensors(dir.resolve("model.safetensors"),
                "{\"model.decoder.embed_tokens.weight\":{\"dtype\":\"F32\",\"shape\":[16,8],\"data_offsets\":[0,512]}}", 100);
        assertOneLineError(dir, "model.safetensors", "model.decoder.embed_tokens.weight");
    }

    @Test
    void dtypeShapeMismatch() throws IOException {
        Path dir = tinyOptDir("mismatch");
        safetensors(dir.resolve("model.safetensors"),
                "{\"model.decoder.embed_tokens.weight\":{\"dtype\":\"F16\",\"shape\":[16,8],\"data_offsets\":[0,200]}}", 200);
        assertOneLineError(dir, "model.safetensors", "model.decoder.embed_tokens.weight", "256");
    }

    @Test
    void missingTensor() throws IOException {
        Path dir = tinyOptDir("missing-tensor");
        safetensors(dir.resolve("model.safetensors"),
                "{\"model.decoder.embed_tokens.weight\":{\"dtype\":\"F32\",\"shape\":[16,8],\"data_offsets\":[0,512]}}", 512);
        assertOneLineError(dir, "model.safetensors", "model.decoder.embed_positions.weight");
    }

    @Test
    void missingShard() throws IOException {
        Path dir = copyModel("falcon-mini-relu");
        Files.delete(dir.resolve("model-00002-of-00003.safetensors"));
        assertOneLineError(dir, "model.safetensors.index.json", "model-00002-of-00003.safetensors");
    }

    @Test
    void unsupportedArchitecture() throws IOException {
        Path dir = copyModel("opt-mini");
        String cfg = Files.readString(dir.resolve("config.json")).replace("\"model_type\": \"opt\"", "\"model_type\": \"llama\"");
        Files.writeString(dir.resolve("config.json"), cfg);
        assertOneLineError(dir, "config.json", "llama");
    }

    @Test
    void pickleWithForbiddenGlobal() throws IOException {
        Path dir = tinyOptDir("evil");
        // protocol 2 pickle: GLOBAL 'os system', the string 'echo pwned', TUPLE1, REDUCE, STOP
        ByteArrayOutputStream p = new ByteArrayOutputStream();
        p.write(new byte[] {(byte) 0x80, 2});
        p.writeBytes("cos\nsystem\n".getBytes(StandardCharsets.US_ASCII));
        byte[] cmd = "echo pwned".getBytes(StandardCharsets.US_ASCII);
        p.write('X');
        p.writeBytes(ByteBuffer.allocate(4).order(ByteOrder.LITTLE_ENDIAN).putInt(cmd.length).array());
        p.writeBytes(cmd);
        p.write(0x85);
        p.write('R');
        p.write('.');
        try (ZipArchiveOutputStream zip = new ZipArchiveOutputStream(dir.resolve("pytorch_model.bin").toFile())) {
            for (String[] e : new String[][] {{"archive/data.pkl", null}, {"archive/version", "3\n"}}) {
                byte[] data = e[1] == null ? p.toByteArray() : e[1].getBytes(StandardCharsets.US_ASCII);
                ZipArchiveEntry entry = new ZipArchiveEntry(e[0]);
                entry.setMethod(ZipArchiveEntry.STORED);
                entry.setSize(data.length);
                java.util.zip.CRC32 crc = new java.util.zip.CRC32();
                crc.update(data);
                entry.setCrc(crc.getValue());
                zip.putArchiveEntry(entry);
                zip.write(data);
                zip.closeArchiveEntry();
            }
        }
        assertOneLineError(dir, "pytorch_model.bin", "os");
        assertTrue(!Files.exists(Path.of("pwned")));
    }

    @Test
    void perplexityJson() throws IOException {
        Path text = tmp.resolve("t.txt");
        Files.writeString(text, Files.readString(TestData.reference("dev.txt")).substring(0, 6000));
        Run r = run("perplexity", "--model", TestData.model("opt-mini").toString(), "--text", text.toString(), "--json");
        assertEquals(0, r.code(), r.err());
        JsonNode j = new ObjectMapper().readTree(r.out());
        assertTrue(j.get("perplexity").asDouble() > 1 && j.get("perplexity").asDouble() < 1000, r.out());
        assertEquals(j.get("windows").asInt() * 255, j.get("scored_tokens").asInt());
    }

    // ---- bundles: convert, inspect, run; synth ----

    @Test
    void convertInspectAndGenerateFromABundle() throws IOException {
        JsonNode ref = reference("falcon-mini-relu", 1);
        Path bundle = tmp.resolve("falcon.bundle");
        Run c = run("convert", "--input", TestData.model("falcon-mini-relu").toString(), "--output", bundle.toString(), "--json");
        assertEquals(0, c.code(), c.err());
        assertTrue(new ObjectMapper().readTree(c.out()).get("bytes_written").asLong() > 7_000_000);
        Run again = run("convert", "--input", TestData.model("falcon-mini-relu").toString(), "--output", bundle.toString());
        assertEquals(Main.EXIT_ERROR, again.code());
        assertTrue(again.err().contains("--force"), again.err());

        Run i = run("inspect", bundle.toString(), "--verify", "--json");
        assertEquals(0, i.code(), i.err());
        JsonNode j = new ObjectMapper().readTree(i.out());
        assertEquals("bundle", j.get("kind").asText());
        assertTrue(j.get("verified").asBoolean());
        assertEquals(4, j.get("budgets").size());
        assertTrue(j.get("resident_bytes").asLong() > 0 && j.get("flash_bytes").asLong() > 0);

        Run g = run("generate", "--model", bundle.toString(), "--prompt", ref.get("text").asText(), "--max-tokens", "32", "--json");
        assertEquals(0, g.code(), g.err());
        assertEquals(ref.get("greedy_new_ids"), new ObjectMapper().readTree(g.out()).get("generated_ids"));
    }

    @Test
    void corruptBundleIsNamedByVerify() throws IOException {
        Path bundle = tmp.resolve("opt.bundle");
        assertEquals(0, run("convert", "--input", TestData.model("opt-mini").toString(), "--output", bundle.toString(),
                "--layout", "split", "--dtype", "f32").code());
        Path ffn = bundle.resolve("ffn.bin");
        try (FileChannel ch = FileChannel.open(ffn, StandardOpenOption.READ, StandardOpenOption.WRITE)) {
            ByteBuffer b = ByteBuffer.allocate(1);
            long pos = ch.size() - 1000; // inside the last layer's block
            ch.read(b, pos);
            b.put(0, (byte) (b.get(0) ^ 0x10)).rewind();
            ch.write(b, pos);
        }
        Run v = run("inspect", bundle.toString(), "--verify");
        assertEquals(Main.EXIT_ERROR, v.code());
        assertEquals(1, v.err().strip().lines().count(), v.err());
        assertTrue(v.err().contains("ffn.bin") && v.err().contains("layer 5"), v.err());
    }

    @Test
    void synthWritesARunnableCheckpoint() throws IOException {
        Path out = tmp.resolve("tiny-synth");
        Run s = run("synth", "--shape", "falcon-test", "--output", out.toString(), "--seed", "5");
        assertEquals(0, s.code(), s.err());
        Run g = run("generate", "--model", out.toString(), "--prompt", "Hello", "--max-tokens", "4", "--json");
        assertEquals(0, g.code(), g.err());
        assertEquals(4, new ObjectMapper().readTree(g.out()).get("generated_ids").size());
        Run bad = run("synth", "--shape", "gpt-5", "--output", tmp.resolve("x").toString());
        assertEquals(Main.EXIT_ERROR, bad.code());
        assertTrue(bad.err().contains("gpt-5"), bad.err());
        Run list = run("synth", "--list");
        assertTrue(list.out().contains("opt-6.7b"), list.out());
    }
}
