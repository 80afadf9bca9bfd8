package dev.llmflash.cli;

import dev.llmflash.formats.LlmflashException;

import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

import javax.imageio.ImageIO;
import java.awt.Color;
import java.awt.GraphicsEnvironment;
import java.awt.image.BufferedImage;
import java.io.ByteArrayInputStream;
import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.Arrays;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.concurrent.TimeUnit;
import java.util.stream.Stream;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * Charts: every chart is a real PNG of the promised size with something drawn on it; the drawn bars
 * follow the data; bad input and unwritable destinations are refused with clear messages; rendering is
 * headless even when a DISPLAY is set.
 */
class ChartsTest {
    private static final byte[] PNG_SIGNATURE = {(byte) 0x89, 0x50, 0x4E, 0x47, 0x0D, 0x0A, 0x1A, 0x0A};

    private static final List<String> METHODS = List.of("naive", "hybrid", "flash", "all");
    private static final double[] IO = {6800, 900, 420, 180};
    private static final double[] MEM = {0, 40, 60, 35};
    private static final double[] COMPUTE = {212, 210, 95, 90};

    private static final int[] CHUNKS = {4096, 8192, 16384, 32768, 65536, 131072, 262144, 524288};

    @TempDir
    Path dir;

    // ---- each chart renders --------------------------------------------------------------------------

    @Test
    void latencyBreakdownWritesAPng() throws IOException {
        Path png = dir.resolve("latency.png");
        Charts.latencyBreakdown(png, "OPT 6.7B, 50% memory", METHODS, IO, MEM, COMPUTE);
        BufferedImage img = readPng(png);
        assertNotBlank(img);
        // Each segment colour appears, in more than a legend swatch's worth of pixels.
        assertTrue(countColor(img, Charts.IO_COLOR) > 2000, "I/O bars drawn");
        assertTrue(countColor(img, Charts.MEMORY_COLOR) > 100, "memory bars drawn");
        assertTrue(countColor(img, Charts.COMPUTE_COLOR) > 1000, "compute bars drawn");
        assertTrue(GraphicsEnvironment.isHeadless(), "Charts switched AWT to headless");
    }

    @Test
    void barAreaFollowsTheData() throws IOException {
        // Same axis in all three (the compute bar of "b" fixes the maximum); only the I/O of "a" changes.
        // The chart with no I/O at all counts the legend swatch; 5x the I/O must give about 5x the bar area.
        List<String> methods = List.of("a", "b");
        long none = ioPixels(methods, 0);
        long small = ioPixels(methods, 100) - none;
        long large = ioPixels(methods, 500) - none;
        assertTrue(none > 0, "legend swatch drawn");
        assertTrue(small > 0, "small I/O bar drawn");
        double ratio = (double) large / small;
        assertTrue(ratio > 4.5 && ratio < 5.5, "I/O area ratio " + ratio + " should be about 5");
    }

    private long ioPixels(List<String> methods, double ioOfA) throws IOException {
        Path png = dir.resolve("io-" + ioOfA + ".png");
        Charts.latencyBreakdown(png, "t", methods, new double[] {ioOfA, 0}, new double[] {0, 0}, new double[] {0, 1000});
        return countColor(readPng(png), Charts.IO_COLOR);
    }

    @Test
    void windowTradeoffWritesAPng() throws IOException {
        Path png = dir.resolve("window.png");
        Charts.windowTradeoff(png, "window size trade-off", new int[] {1, 2, 4, 8, 16},
                new double[] {520, 410, 330, 300, 290}, new double[] {2.1, 2.6, 3.4, 4.9, 7.8});
        BufferedImage img = readPng(png);
        assertNotBlank(img);
        assertTrue(countColor(img, Charts.LATENCY_COLOR) > 200, "latency line drawn");
        assertTrue(countColor(img, Charts.DRAM_COLOR) > 200, "DRAM line drawn");
    }

    @Test
    void readThroughputWritesAPngWithAndWithoutTheSequentialLine() throws IOException {
        var byThreads = new LinkedHashMap<Integer, double[]>();
        byThreads.put(32, new double[] {1.1, 2.0, 3.2, 4.6, 5.6, 5.9, 6.0, 6.1});
        byThreads.put(1, new double[] {0.05, 0.1, 0.19, 0.35, 0.6, 0.95, 1.4, 1.9});
        byThreads.put(8, new double[] {0.35, 0.7, 1.3, 2.3, 3.5, 4.6, 5.3, 5.7});
        Path plain = dir.resolve("read.png");
        Path withSeq = dir.resolve("read-seq.png");
        Charts.readThroughput(plain, "random reads, 4 KiB - 512 KiB", CHUNKS, byThreads);
        Charts.readThroughput(withSeq, "random reads, 4 KiB - 512 KiB", CHUNKS, byThreads, 6.1);
        BufferedImage a = readPng(plain);
        BufferedImage b = readPng(withSeq);
        assertNotBlank(a);
        assertNotBlank(b);
        for (int k = 0; k < 3; k++) {
            assertTrue(countColor(a, Charts.THREAD_COLORS[k]) > 200, "line " + k + " drawn");
        }
        assertEquals(0, countColor(a, Charts.SEQUENTIAL_COLOR), "no sequential line unless asked for");
        assertTrue(countColor(b, Charts.SEQUENTIAL_COLOR) > 100, "dashed sequential line drawn");
    }

    @Test
    void ttftVsPromptWritesAPng() throws IOException {
        Path png = dir.resolve("ttft.png");
        var byMethod = new LinkedHashMap<String, double[]>();
        byMethod.put("dense", new double[] {0.05, 0.09, 0.18, 0.35});
        byMethod.put("flash", new double[] {0.4, 0.6, 0.9, 1.5});
        Charts.ttftVsPrompt(png, "time to first token", new int[] {64, 128, 256, 512}, byMethod);
        assertTrue(Files.size(png) > 1000, "non-empty");
        BufferedImage img = readPng(png);
        assertNotBlank(img);
        assertTrue(countColor(img, Charts.THREAD_COLORS[0]) > 200, "first method's line drawn");
        assertTrue(countColor(img, Charts.THREAD_COLORS[1]) > 200, "second method's line drawn");
        assertRefused("promptTokens[1] is 64 after 128",
                () -> Charts.ttftVsPrompt(png, "t", new int[] {128, 64}, Map.of("a", new double[] {1, 2})));
        assertRefused("ttftSecByMethod[a] has 1 values but promptTokens has 2",
                () -> Charts.ttftVsPrompt(png, "t", new int[] {64, 128}, Map.of("a", new double[] {1})));
        assertRefused("ttftSecByMethod is empty",
                () -> Charts.ttftVsPrompt(png, "t", new int[] {64}, Map.of()));
    }

    @Test
    void singlePointChartsRender() throws IOException {
        Charts.latencyBreakdown(dir.resolve("one.png"), "t", List.of("flash"), new double[] {0}, new double[] {0},
                new double[] {0});
        Charts.windowTradeoff(dir.resolve("w.png"), "t", new int[] {0}, new double[] {3}, new double[] {1});
        Charts.readThroughput(dir.resolve("r.png"), "t", new int[] {4096}, Map.of(4, new double[] {0.5}), 2);
        for (String f : List.of("one.png", "w.png", "r.png")) {
            assertNotBlank(readPng(dir.resolve(f)));
        }
    }

    @Test
    void overwritesAnExistingFileWithUsualPermissionsAndLeavesNoTempFiles() throws IOException {
        Path png = dir.resolve("latency.png");
        Files.writeString(png, "old content");
        Charts.latencyBreakdown(png, "t", METHODS, IO, MEM, COMPUTE);
        readPng(png);
        // Same permissions as any new file here (umask), not the owner-only ones of a temp file.
        Path reference = Files.createFile(dir.resolve("reference"));
        assertEquals(Files.getPosixFilePermissions(reference), Files.getPosixFilePermissions(png));
        assertEquals(List.of(png, reference), listDir(), "no temp file left");
    }

    @Test
    void labels() {
        assertEquals("7,012 ms", Charts.formatMs(7012.4));
        assertEquals("305 ms", Charts.formatMs(305));
        assertEquals("42.5 ms", Charts.formatMs(42.49));
        assertEquals("0.35 ms", Charts.formatMs(0.349));
        assertEquals("4", Charts.kibLabel(2));
        assertEquals("1,024", Charts.kibLabel(10));
        assertEquals("0.5", Charts.kibLabel(-1));
        assertEquals("5.66", Charts.kibLabel(2.5));
    }

    // ---- refused input -------------------------------------------------------------------------------

    @Test
    void invalidInputIsRefused() {
        Path png = dir.resolve("x.png");
        double[] three = {1, 2, 3};
        assertRefused("ioMs has 3 values but methods has 4",
                () -> Charts.latencyBreakdown(png, "t", METHODS, three, MEM, COMPUTE));
        assertRefused("methods is empty",
                () -> Charts.latencyBreakdown(png, "t", List.of(), new double[0], new double[0], new double[0]));
        assertRefused("memMs[1] is NaN",
                () -> Charts.latencyBreakdown(png, "t", METHODS, IO, new double[] {0, Double.NaN, 0, 0}, COMPUTE));
        assertRefused("computeMs[3] is -1.0",
                () -> Charts.latencyBreakdown(png, "t", METHODS, IO, MEM, new double[] {1, 1, 1, -1}));
        assertRefused("ioMs[0] is Infinity",
                () -> Charts.latencyBreakdown(png, "t", METHODS, new double[] {Double.POSITIVE_INFINITY, 1, 1, 1}, MEM, COMPUTE));
        assertRefused("repeats \"naive\"",
                () -> Charts.latencyBreakdown(png, "t", List.of("naive", "naive"), new double[2], new double[2], new double[2]));
        assertRefused("methods[0] is blank",
                () -> Charts.latencyBreakdown(png, "t", List.of(" "), new double[1], new double[1], new double[1]));

        assertRefused("windows is empty",
                () -> Charts.windowTradeoff(png, "t", new int[0], new double[0], new double[0]));
        assertRefused("dramGiB has 1 values but windows has 2",
                () -> Charts.windowTradeoff(png, "t", new int[] {1, 2}, new double[] {1, 2}, new double[] {1}));
        assertRefused("windows[1] is 2 after 4",
                () -> Charts.windowTradeoff(png, "t", new int[] {4, 2}, new double[] {1, 2}, new double[] {1, 2}));
        assertRefused("windows[0] is -1",
                () -> Charts.windowTradeoff(png, "t", new int[] {-1}, new double[] {1}, new double[] {1}));
        assertRefused("latencyMs[0] is NaN",
                () -> Charts.windowTradeoff(png, "t", new int[] {1}, new double[] {Double.NaN}, new double[] {1}));

        assertRefused("gbpsByThreads is empty",
                () -> Charts.readThroughput(png, "t", CHUNKS, Map.of()));
        assertRefused("chunkBytes[0] is 0",
                () -> Charts.readThroughput(png, "t", new int[] {0, 4096}, Map.of(1, new double[] {1, 1})));
        assertRefused("chunkBytes[1] is 4096 after 4096",
                () -> Charts.readThroughput(png, "t", new int[] {4096, 4096}, Map.of(1, new double[] {1, 1})));
        assertRefused("gbpsByThreads[8] has 2 values but chunkBytes has 8",
                () -> Charts.readThroughput(png, "t", CHUNKS, Map.of(8, new double[] {1, 1})));
        assertRefused("thread count 0",
                () -> Charts.readThroughput(png, "t", new int[] {4096}, Map.of(0, new double[] {1})));
        assertRefused("sequentialGbps is -2.0",
                () -> Charts.readThroughput(png, "t", new int[] {4096}, Map.of(1, new double[] {1}), -2));
        assertRefused("png is null",
                () -> Charts.readThroughput(null, "t", new int[] {4096}, Map.of(1, new double[] {1})));
        assertFalse(Files.exists(png), "nothing written for refused input");
    }

    // ---- unwritable destinations ---------------------------------------------------------------------

    @Test
    void aPathUnderARegularFileIsAOneLineError() throws IOException {
        Path file = Files.writeString(dir.resolve("not-a-folder"), "x");
        Path png = file.resolve("chart.png");
        var e = assertThrows(LlmflashException.class,
                () -> Charts.windowTradeoff(png, "t", new int[] {1}, new double[] {1}, new double[] {1}));
        assertOneLineNaming(e, png);
        assertEquals("x", Files.readString(file), "the regular file is untouched");
    }

    @Test
    void aMissingFolderIsAOneLineError() {
        Path png = dir.resolve("no-such-folder").resolve("chart.png");
        var e = assertThrows(LlmflashException.class,
                () -> Charts.readThroughput(png, "t", new int[] {4096}, Map.of(1, new double[] {1})));
        assertOneLineNaming(e, png);
        assertTrue(e.getMessage().contains("no such folder"), e.getMessage());
    }

    @Test
    void aFolderInTheWayIsAnErrorAndTheTempFileIsRemoved() throws IOException {
        // The temp file is written, the final rename fails: the temp file must not be left behind.
        Path png = Files.createDirectory(dir.resolve("chart.png"));
        var e = assertThrows(LlmflashException.class,
                () -> Charts.latencyBreakdown(png, "t", METHODS, IO, MEM, COMPUTE));
        assertOneLineNaming(e, png);
        assertEquals(List.of(png), listDir(), "only the folder remains");
        assertTrue(Files.isDirectory(png));
    }

    // ---- headless --------------------------------------------------------------------------------------

    /**
     * A JVM with DISPLAY pointing at an X server that does not exist: without java.awt.headless=true AWT
     * would try to connect to it and fail; Charts must still write its PNG.
     */
    @Test
    void rendersInAFreshJvmWithABogusDisplay() throws Exception {
        Path png = dir.resolve("child.png");
        Path java = Path.of(System.getProperty("java.home"), "bin", "java");
        var pb = new ProcessBuilder(java.toString(), "-cp", System.getProperty("java.class.path"),
                ChildMain.class.getName(), png.toString());
        pb.environment().put("DISPLAY", ":97");
        pb.redirectErrorStream(true);
        Process p = pb.start();
        String out = new String(p.getInputStream().readAllBytes());
        assertTrue(p.waitFor(60, TimeUnit.SECONDS), "child JVM finished");
        assertEquals(0, p.exitValue(), "child JVM output: " + out);
        assertEquals("headless=true", out.strip());
        assertNotBlank(readPng(png));
    }

    /** Entry point of the child JVM above: draws one chart, then reports whether AWT is headless. */
    public static final class ChildMain {
        public static void main(String[] args) {
            Charts.latencyBreakdown(Path.of(args[0]), "t", METHODS, IO, MEM, COMPUTE);
            System.out.println("headless=" + GraphicsEnvironment.isHeadless());
        }
    }

    // ---- helpers ---------------------------------------------------------------------------------------

    /** Checks the PNG signature, decodes the file and checks the size. */
    private static BufferedImage readPng(Path png) throws IOException {
        byte[] bytes = Files.readAllBytes(png);
        assertTrue(bytes.length > PNG_SIGNATURE.length, png + " is too short");
        assertArrayEquals(PNG_SIGNATURE, Arrays.copyOf(bytes, PNG_SIGNATURE.length), "PNG signature");
        BufferedImage img = ImageIO.read(new ByteArrayInputStream(bytes));
        assertTrue(img != null, png + " decodes");
        assertEquals(Charts.WIDTH, img.getWidth(), "width");
        assertEquals(Charts.HEIGHT, img.getHeight(), "height");
        return img;
    }

    /** Background = the corner pixel; at least 1% of the image differs from it (text, axes, data). */
    private static void assertNotBlank(BufferedImage img) {
        int background = img.getRGB(0, 0);
        long differing = 0;
        for (int y = 0; y < img.getHeight(); y++) {
            for (int x = 0; x < img.getWidth(); x++) {
                if (img.getRGB(x, y) != background) {
                    differing++;
                }
            }
        }
        assertTrue(differing > img.getWidth() * img.getHeight() / 100, "only " + differing + " pixels drawn");
    }

    private static long countColor(BufferedImage img, Color c) {
        int rgb = c.getRGB() & 0xFFFFFF;
        long n = 0;
        for (int y = 0; y < img.getHeight(); y++) {
            for (int x = 0; x < img.getWidth(); x++) {
                if ((img.getRGB(x, y) & 0xFFFFFF) == rgb) {
                    n++;
                }
            }
        }
        return n;
    }

    private List<Path> listDir() throws IOException {
        try (Stream<Path> s = Files.list(dir)) {
            return s.sorted().toList();
        }
    }

    private static void assertRefused(String expected, org.junit.jupiter.api.function.Executable call) {
        var e = assertThrows(IllegalArgumentException.class, call);
        assertTrue(e.getMessage().contains(expected), "message \"" + e.getMessage() + "\" should contain \"" + expected + "\"");
    }

    private static void assertOneLineNaming(LlmflashException e, Path png) {
        String m = e.getMessage();
        assertFalse(m.contains("\n") || m.contains("\r"), "one line: " + m);
        assertTrue(m.contains(png.toString()), "names " + png + ": " + m);
    }
}
