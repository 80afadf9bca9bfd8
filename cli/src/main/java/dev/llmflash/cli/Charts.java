package dev.llmflash.cli;

import dev.llmflash.formats.LlmflashException;

import org.knowm.xchart.AnnotationText;
import org.knowm.xchart.BitmapEncoder;
import org.knowm.xchart.CategoryChart;
import org.knowm.xchart.CategorySeries;
import org.knowm.xchart.XYChart;
import org.knowm.xchart.XYSeries;
import org.knowm.xchart.internal.chartpart.Chart;
import org.knowm.xchart.style.AxesChartStyler;
import org.knowm.xchart.style.Styler;
import org.knowm.xchart.style.markers.Marker;
import org.knowm.xchart.style.markers.SeriesMarkers;

import java.awt.BasicStroke;
import java.awt.Color;
import java.awt.Font;
import java.io.IOException;
import java.math.BigDecimal;
import java.math.MathContext;
import java.nio.file.AccessDeniedException;
import java.nio.file.FileSystemException;
import java.nio.file.Files;
import java.nio.file.NoSuchFileException;
import java.nio.file.Path;
import java.nio.file.StandardCopyOption;
import java.util.ArrayList;
import java.util.HashSet;
import java.util.List;
import java.util.Locale;
import java.util.Map;
import java.util.TreeMap;

/**
 * The PNG charts of {@code llmflash bench}, drawn with XChart: one static method per chart, each writing
 * one {@value #WIDTH}x{@value #HEIGHT} PNG with a title, axis titles with units and a legend.
 *
 * <ul>
 *   <li>{@link #latencyBreakdown}: time per token of each method as a stacked bar (I/O, memory
 *       management, compute), with the bar's total written above it (the paper's latency tables as a picture);
 *   <li>{@link #windowTradeoff}: latency per token and DRAM used versus the sliding-window size, on a
 *       left and a right y axis;
 *   <li>{@link #readThroughput}: random-read throughput versus chunk size, one line per thread count, on
 *       a log2 chunk-size axis, optionally with a dashed sequential-read reference (the paper's Figure 2b);
 *   <li>{@link #ttftVsPrompt}: time to first token versus prompt length, one line per method.
 * </ul>
 *
 * <p><b>Headless.</b> The static initializer sets {@code java.awt.headless=true} before any AWT class is
 * loaded through this class, so charts render on servers without a display (and never try to reach an X
 * server named by a stale {@code DISPLAY}). Fonts still come from the system (fontconfig): a JDK on a host
 * without any font files cannot render text.
 *
 * <p><b>Files.</b> Each PNG is rendered in memory, written to a temporary file in the destination's
 * folder and moved over the destination with one atomic rename, so a reader never sees half a PNG and a
 * failed write leaves the old file (if any) alone. The folder must exist. A file that cannot be written
 * gives a {@link LlmflashException} with one line naming it.
 *
 * <p><b>Inputs</b> are checked before anything is drawn: equal lengths, at least one point, finite
 * values {@code >= 0}, x values strictly increasing; violations are {@link IllegalArgumentException}s
 * (they are bugs of the caller, not user errors).
 *
 * <p>Stateless; all methods are thread-safe (each call builds, renders and drops its own chart object).
 */
final class Charts {
    static {
        // Must run before the first AWT class loads: GraphicsEnvironment reads it once.
        System.setProperty("java.awt.headless", "true");
    }

    /** Image size in pixels. */
    static final int WIDTH = 900;
    static final int HEIGHT = 560;

    /** Segment colours of the latency breakdown (Okabe-Ito palette: tells apart for colour-blind readers). */
    static final Color IO_COLOR = new Color(0xD55E00);
    static final Color MEMORY_COLOR = new Color(0xE69F00);
    static final Color COMPUTE_COLOR = new Color(0x0072B2);
    /** Lines of {@link #windowTradeoff}. */
    static final Color LATENCY_COLOR = new Color(0x0072B2);
    static final Color DRAM_COLOR = new Color(0xD55E00);
    /** One colour per thread count in {@link #readThroughput}, in increasing thread order, cycling. */
    static final Color[] THREAD_COLORS = {
        new Color(0x0072B2), new Color(0xD55E00), new Color(0x009E73), new Color(0xCC79A7),
        new Color(0xE69F00), new Color(0x56B4E9), new Color(0x8C564B), new Color(0x7F7F00),
    };
    /** Dark slate, not grey: anti-aliased black text is grey, the reference line should stay apart. */
    static final Color SEQUENTIAL_COLOR = new Color(0x2F4F4F);

    private static final Marker[] THREAD_MARKERS = {
        SeriesMarkers.CIRCLE, SeriesMarkers.SQUARE, SeriesMarkers.DIAMOND, SeriesMarkers.TRIANGLE_UP,
    };
    private static final Color GRID_COLOR = new Color(0xDDDDDD);
    private static final String FONT = Font.SANS_SERIF;

    private Charts() {
    }

    /**
     * Time per token of each method as one stacked bar: I/O wait, memory management, compute (bottom to top),
     * y in ms per token on a linear axis from 0, each bar's total printed above it (the totals can differ
     * 100x, so the short bars are read from their label).
     *
     * @param methods   bar labels, e.g. "naive", "flash"; non-blank and distinct
     * @param ioMs      I/O wait per token of each method (the reads not hidden behind compute), ms
     * @param memMs     memory-management time per token (DRAM bookkeeping, copies), ms
     * @param computeMs compute time per token, ms
     * @throws IllegalArgumentException if the arrays differ in length from {@code methods}, are empty, or
     *                                  hold a negative or non-finite value
     * @throws LlmflashException        if {@code png} cannot be written
     */
    static void latencyBreakdown(Path png, String title, List<String> methods, double[] ioMs, double[] memMs,
                                 double[] computeMs) {
        requireNonNull(png, "png");
        requireNonNull(title, "title");
        requireNonNull(methods, "methods");
        if (methods.isEmpty()) {
            throw new IllegalArgumentException("methods is empty: a latency chart needs at least one method");
        }
        var seen = new HashSet<String>();
        for (int i = 0; i < methods.size(); i++) {
            String m = methods.get(i);
            if (m == null || m.isBlank()) {
                throw new IllegalArgumentException("methods[" + i + "] is blank: every bar needs a name");
            }
            if (!seen.add(m)) {
                throw new IllegalArgumentException("methods[" + i + "] repeats \"" + m + "\": names must be distinct");
            }
        }
        int n = methods.size();
        checkValues("ioMs", ioMs, n, "methods");
        checkValues("memMs", memMs, n, "methods");
        checkValues("computeMs", computeMs, n, "methods");

        CategoryChart chart = new CategoryChart(WIDTH, HEIGHT);
        chart.setTitle(title);
        chart.setXAxisTitle("method");
        chart.setYAxisTitle("time per token (ms)");
        var styler = chart.getStyler();
        style(styler);
        styler.setStacked(true);
        styler.setAvailableSpaceFill(0.55);
        styler.setPlotGridVerticalLinesVisible(false);
        styler.setYAxisDecimalPattern("#,##0.#");

        // Series order = stacking order, bottom up.
        addBar(chart, "I/O wait", methods, ioMs, IO_COLOR);
        addBar(chart, "memory management", methods, memMs, MEMORY_COLOR);
        addBar(chart, "compute", methods, computeMs, COMPUTE_COLOR);

        double[] totals = new double[n];
        double maxTotal = 0;
        for (int i = 0; i < n; i++) {
            totals[i] = ioMs[i] + memMs[i] + computeMs[i];
            maxTotal = Math.max(maxTotal, totals[i]);
        }
        // Head room for the total labels; an all-zero chart still needs a non-empty axis.
        double yMax = maxTotal > 0 ? maxTotal * 1.12 : 1.0;
        styler.setYAxisMin(0.0);
        styler.setYAxisMax(yMax);
        for (int i = 0; i < n; i++) {
            // A category axis of strings spans [0, n] in chart space: bar i is centred on i + 0.5.
            chart.addAnnotation(new AnnotationText(formatMs(totals[i]), i + 0.5, totals[i] + yMax * 0.035, false));
        }
        write(chart, png);
    }

    /**
     * Latency per token (left axis, ms) and DRAM used (right axis, GiB) versus the window size in tokens,
     * two lines with markers; both axes start at 0 so their slopes are honest.
     *
     * @param windows   window sizes in tokens, strictly increasing, {@code >= 0}
     * @param latencyMs latency per token at each window, ms
     * @param dramGiB   DRAM used at each window, GiB
     * @throws IllegalArgumentException on unequal lengths, no points, windows not increasing, negative or
     *                                  non-finite values
     * @throws LlmflashException        if {@code png} cannot be written
     */
    static void windowTradeoff(Path png, String title, int[] windows, double[] latencyMs, double[] dramGiB) {
        requireNonNull(png, "png");
        requireNonNull(title, "title");
        checkIncreasing("windows", windows, 0);
        checkValues("latencyMs", latencyMs, windows.length, "windows");
        checkValues("dramGiB", dramGiB, windows.length, "windows");

        XYChart chart = new XYChart(WIDTH, HEIGHT);
        chart.setTitle(title);
        chart.setXAxisTitle("window (tokens)");
        chart.setYAxisGroupTitle(0, "latency per token (ms)");
        chart.setYAxisGroupTitle(1, "DRAM used (GiB)");
        var styler = chart.getStyler();
        style(styler);
        styler.setYAxisGroupPosition(1, Styler.YAxisPosition.Right);
        styler.setYAxisMin(0, 0.0);
        styler.setYAxisMin(1, 0.0);
        styler.setYAxisGroupTitleColor(0, LATENCY_COLOR);
        styler.setYAxisGroupTitleColor(1, DRAM_COLOR);
        styler.setYAxisGroupTickLabelsColorMap(0, LATENCY_COLOR);
        styler.setYAxisGroupTickLabelsColorMap(1, DRAM_COLOR);
        styler.setXAxisDecimalPattern("#,##0.#");

        double[] x = toDoubles(windows);
        XYSeries latency = chart.addSeries("latency per token (ms, left)", x, latencyMs.clone());
        latency.setYAxisGroup(0);
        line(latency, LATENCY_COLOR, SeriesMarkers.CIRCLE, SOLID);
        XYSeries dram = chart.addSeries("DRAM used (GiB, right)", x, dramGiB.clone());
        dram.setYAxisGroup(1);
        line(dram, DRAM_COLOR, SeriesMarkers.SQUARE, SOLID);
        write(chart, png);
    }

    /** {@link #readThroughput(Path, String, int[], Map, double)} without the sequential reference line. */
    static void readThroughput(Path png, String title, int[] chunkBytes, Map<Integer, double[]> gbpsByThreads) {
        readThroughput(png, title, chunkBytes, gbpsByThreads, Double.NaN);
    }

    /**
     * Random-read throughput (GB/s) versus chunk size, one line per thread count ("1 thread",
     * "8 threads", ... in increasing order), x on a log2 scale labelled in KiB, plus a dashed horizontal
     * "sequential" line at {@code sequentialGbps} (the paper's Figure 2b).
     *
     * @param chunkBytes     chunk sizes in bytes, strictly increasing, {@code > 0}
     * @param gbpsByThreads  thread count ({@code >= 1}) to throughput at each chunk size, GB/s
     * @param sequentialGbps sequential-read throughput, GB/s, {@code >= 0}; NaN draws no reference line
     * @throws IllegalArgumentException on no chunk sizes or thread counts, unequal lengths, chunk sizes not
     *                                  increasing, negative or non-finite values
     * @throws LlmflashException        if {@code png} cannot be written
     */
    static void readThroughput(Path png, String title, int[] chunkBytes, Map<Integer, double[]> gbpsByThreads,
                               double sequentialGbps) {
        requireNonNull(png, "png");
        requireNonNull(title, "title");
        checkIncreasing("chunkBytes", chunkBytes, 1);
        requireNonNull(gbpsByThreads, "gbpsByThreads");
        if (gbpsByThreads.isEmpty()) {
            throw new IllegalArgumentException("gbpsByThreads is empty: a throughput chart needs at least one thread count");
        }
        var byThreads = new TreeMap<Integer, double[]>();
        for (var e : gbpsByThreads.entrySet()) {
            Integer threads = e.getKey();
            if (threads == null || threads < 1) {
                throw new IllegalArgumentException("gbpsByThreads has thread count " + threads + ": thread counts must be >= 1");
            }
            checkValues("gbpsByThreads[" + threads + "]", e.getValue(), chunkBytes.length, "chunkBytes");
            byThreads.put(threads, e.getValue());
        }
        if (!Double.isNaN(sequentialGbps) && !(Double.isFinite(sequentialGbps) && sequentialGbps >= 0)) {
            throw new IllegalArgumentException("sequentialGbps is " + sequentialGbps + ": it must be finite and >= 0 (or NaN for none)");
        }

        XYChart chart = new XYChart(WIDTH, HEIGHT);
        chart.setTitle(title);
        chart.setXAxisTitle("chunk size (KiB, log2 scale)");
        chart.setYAxisTitle("random-read throughput (GB/s)");
        var styler = chart.getStyler();
        style(styler);
        styler.setYAxisMin(0.0);
        styler.setYAxisDecimalPattern("#,##0.##");
        double[] x = new double[chunkBytes.length];
        for (int i = 0; i < x.length; i++) {
            x[i] = log2(chunkBytes[i] / 1024.0);
        }
        // Log2 axis: XChart's log axes are base 10, so plot log2(KiB) on a linear axis and label each tick
        // with 2^tick. For power-of-two chunk sizes the ticks sit exactly on the measured sizes (XChart
        // puts ticks on equally spaced x data); other sizes get ticks at XChart's round steps of log2,
        // labelled with their KiB value to three digits (e.g. 5.66 between 4 and 8). Blank labels for the
        // in-between ticks are not an option: XChart widens the tick step until all labels are distinct.
        styler.setxAxisTickLabelsFormattingFunction(Charts::kibLabel);
        int k = 0;
        for (var e : byThreads.entrySet()) {
            int threads = e.getKey();
            XYSeries s = chart.addSeries(threads == 1 ? "1 thread" : threads + " threads", x, e.getValue().clone());
            line(s, THREAD_COLORS[k % THREAD_COLORS.length], THREAD_MARKERS[k % THREAD_MARKERS.length], SOLID);
            k++;
        }
        if (!Double.isNaN(sequentialGbps)) {
            // A series rather than an AnnotationLine, so it has a legend entry. With a single chunk size the
            // line would be a point: widen it by half a step each side.
            double x0 = x[0] - (x.length == 1 ? 0.5 : 0);
            double x1 = x[x.length - 1] + (x.length == 1 ? 0.5 : 0);
            XYSeries seq = chart.addSeries("sequential (" + String.format(Locale.ROOT, "%.2f", sequentialGbps) + " GB/s)",
                    new double[] {x0, x1}, new double[] {sequentialGbps, sequentialGbps});
            line(seq, SEQUENTIAL_COLOR, SeriesMarkers.NONE, DASHED);
        }
        write(chart, png);
    }

    /**
     * Time to first token (seconds) versus prompt length (tokens), one line with markers per method, in the
     * map's order, colours as {@link #THREAD_COLORS}; y from 0.
     *
     * @param promptTokens     prompt lengths, strictly increasing, {@code >= 1}
     * @param ttftSecByMethod  method name (non-blank) to the time to first token at each length, seconds
     * @throws IllegalArgumentException on no lengths or methods, unequal lengths, lengths not increasing,
     *                                  negative or non-finite values, a blank method name
     * @throws LlmflashException        if {@code png} cannot be written
     */
    static void ttftVsPrompt(Path png, String title, int[] promptTokens, Map<String, double[]> ttftSecByMethod) {
        requireNonNull(png, "png");
        requireNonNull(title, "title");
        checkIncreasing("promptTokens", promptTokens, 1);
        requireNonNull(ttftSecByMethod, "ttftSecByMethod");
        if (ttftSecByMethod.isEmpty()) {
            throw new IllegalArgumentException("ttftSecByMethod is empty: a time-to-first-token chart needs at least one method");
        }
        for (var e : ttftSecByMethod.entrySet()) {
            if (e.getKey() == null || e.getKey().isBlank()) {
                throw new IllegalArgumentException("ttftSecByMethod has a blank method name: every line needs a name");
            }
            checkValues("ttftSecByMethod[" + e.getKey() + "]", e.getValue(), promptTokens.length, "promptTokens");
        }
        XYChart chart = new XYChart(WIDTH, HEIGHT);
        chart.setTitle(title);
        chart.setXAxisTitle("prompt length (tokens)");
        chart.setYAxisTitle("time to first token (s)");
        var styler = chart.getStyler();
        style(styler);
        styler.setYAxisMin(0.0);
        styler.setXAxisDecimalPattern("#,##0");
        styler.setYAxisDecimalPattern("#,##0.###");
        double[] x = toDoubles(promptTokens);
        int k = 0;
        for (var e : ttftSecByMethod.entrySet()) {
            XYSeries s = chart.addSeries(e.getKey(), x, e.getValue().clone());
            line(s, THREAD_COLORS[k % THREAD_COLORS.length], THREAD_MARKERS[k % THREAD_MARKERS.length], SOLID);
            k++;
        }
        write(chart, png);
    }

    // ---- styling -------------------------------------------------------------------------------------

    /** The look shared by every chart: white, light grid, fonts readable at 900 px, legend below. */
    private static void style(AxesChartStyler styler) {
        styler.setChartBackgroundColor(Color.WHITE);
        styler.setPlotBackgroundColor(Color.WHITE);
        styler.setPlotBorderColor(Color.GRAY);
        styler.setPlotGridLinesColor(GRID_COLOR);
        styler.setChartFontColor(Color.BLACK);
        styler.setAxisTickLabelsColor(Color.BLACK);
        styler.setChartTitleFont(new Font(FONT, Font.BOLD, 20));
        styler.setChartTitleBoxVisible(false);
        styler.setAxisTitleFont(new Font(FONT, Font.PLAIN, 16));
        styler.setAxisTickLabelsFont(new Font(FONT, Font.PLAIN, 14));
        styler.setLegendFont(new Font(FONT, Font.PLAIN, 14));
        styler.setLegendPosition(Styler.LegendPosition.OutsideS);
        styler.setLegendLayout(Styler.LegendLayout.Horizontal);
        styler.setLegendBorderColor(Color.WHITE);
        styler.setAnnotationTextFont(new Font(FONT, Font.BOLD, 14));
        styler.setAnnotationTextFontColor(Color.BLACK);
        styler.setMarkerSize(9);
        styler.setChartPadding(14);
        styler.setLocale(Locale.ROOT);
        styler.setAntiAlias(true);
    }

    private static void addBar(CategoryChart chart, String name, List<String> methods, double[] ms, Color color) {
        List<Double> values = new ArrayList<>(ms.length);
        for (double v : ms) {
            values.add(v);
        }
        CategorySeries s = chart.addSeries(name, new ArrayList<>(methods), values);
        s.setFillColor(color);
    }

    /** Solid lines, 2.5 px. */
    private static final BasicStroke SOLID = new BasicStroke(2.5f, BasicStroke.CAP_ROUND, BasicStroke.JOIN_ROUND);
    /** Long dashes (XChart's DASH_DASH is too short at this width: it reads as dots). */
    private static final BasicStroke DASHED = new BasicStroke(2.5f, BasicStroke.CAP_BUTT, BasicStroke.JOIN_ROUND,
            10f, new float[] {12f, 7f}, 0f);

    private static void line(XYSeries s, Color color, Marker marker, BasicStroke stroke) {
        s.setXYSeriesRenderStyle(XYSeries.XYSeriesRenderStyle.Line);
        s.setLineColor(color);
        s.setLineStyle(stroke);
        s.setMarker(marker);
        s.setMarkerColor(color);
    }

    /** "7,012 ms", "305 ms", "4.2 ms", "0.35 ms": three significant digits at most for small totals. */
    static String formatMs(double ms) {
        String pattern = ms >= 100 ? "%,.0f ms" : ms >= 10 ? "%.1f ms" : "%.2f ms";
        return String.format(Locale.ROOT, pattern, ms);
    }

    /** Tick label of the log2 chunk-size axis: the chunk size in KiB, 2^tick. */
    static String kibLabel(double log2Kib) {
        double kib = Math.pow(2, log2Kib);
        double rounded = Math.rint(kib);
        if (rounded >= 1 && Math.abs(kib - rounded) < 1e-6 * kib) {
            return String.format(Locale.ROOT, "%,.0f", rounded);
        }
        return new BigDecimal(kib).round(new MathContext(3)).stripTrailingZeros().toPlainString();
    }

    private static double log2(double v) {
        return Math.log(v) / Math.log(2);
    }

    private static double[] toDoubles(int[] v) {
        double[] d = new double[v.length];
        for (int i = 0; i < v.length; i++) {
            d[i] = v[i];
        }
        return d;
    }

    // ---- validation ----------------------------------------------------------------------------------

    private static void requireNonNull(Object o, String name) {
        if (o == null) {
            throw new IllegalArgumentException(name + " is null");
        }
    }

    /** {@code values} has {@code n} finite values {@code >= 0} ({@code n} = the length of {@code along}). */
    private static void checkValues(String name, double[] values, int n, String along) {
        requireNonNull(values, name);
        if (values.length != n) {
            throw new IllegalArgumentException(name + " has " + values.length + " values but " + along + " has " + n
                    + ": they must have one value per " + along + " entry");
        }
        for (int i = 0; i < n; i++) {
            double v = values[i];
            if (!Double.isFinite(v) || v < 0) {
                throw new IllegalArgumentException(name + "[" + i + "] is " + v + ": values must be finite and >= 0");
            }
        }
    }

    /** {@code values} is non-empty, strictly increasing and {@code >= min}. */
    private static void checkIncreasing(String name, int[] values, int min) {
        requireNonNull(values, name);
        if (values.length == 0) {
            throw new IllegalArgumentException(name + " is empty: a chart needs at least one point");
        }
        for (int i = 0; i < values.length; i++) {
            if (values[i] < min) {
                throw new IllegalArgumentException(name + "[" + i + "] is " + values[i] + ": it must be >= " + min);
            }
            if (i > 0 && values[i] <= values[i - 1]) {
                throw new IllegalArgumentException(name + "[" + i + "] is " + values[i] + " after " + values[i - 1]
                        + ": " + name + " must be strictly increasing");
            }
        }
    }

    // ---- output --------------------------------------------------------------------------------------

    /** Renders {@code chart} to PNG bytes, then writes them to {@code png} by temp file + atomic rename. */
    private static void write(Chart<?, ?> chart, Path png) {
        byte[] bytes;
        try {
            bytes = BitmapEncoder.getBitmapBytes(chart, BitmapEncoder.BitmapFormat.PNG);
        } catch (IOException e) {
            // In-memory encoding: an IOException here is an ImageIO bug, not a user error.
            throw new IllegalStateException("PNG encoding failed: " + e, e);
        }
        Path target = png.toAbsolutePath();
        Path dir = target.getParent();
        Path tmp = null;
        try {
            // Not Files.createTempFile: that makes the file owner-only (0600) and the chart would keep it;
            // a plain new file gets the usual permissions (umask), like any file the user writes.
            tmp = Files.createFile(dir.resolve("." + target.getFileName() + "." + ProcessHandle.current().pid()
                    + "." + Long.toHexString(System.nanoTime()) + ".tmp"));
            Files.write(tmp, bytes);
            Files.move(tmp, target, StandardCopyOption.REPLACE_EXISTING, StandardCopyOption.ATOMIC_MOVE);
            tmp = null;
        } catch (IOException e) {
            throw new LlmflashException("cannot write chart " + png + ": " + reason(e)
                    + " (check that its folder exists and is writable and that it is not a folder)", e);
        } finally {
            if (tmp != null) {
                try {
                    Files.deleteIfExists(tmp);
                } catch (IOException ignored) {
                    // The original failure is the one to report; a stray hidden .tmp file is harmless.
                }
            }
        }
    }

    /** One-line reason of an I/O failure: "Not a directory", "no such folder", "permission denied", ... */
    private static String reason(IOException e) {
        String r = switch (e) {
            case NoSuchFileException x -> "no such folder";
            case AccessDeniedException x -> "permission denied";
            case FileSystemException x when x.getReason() != null -> x.getReason();
            default -> e.getMessage() != null ? e.getMessage() : e.getClass().getSimpleName();
        };
        return r.replaceAll("\\s+", " ").strip();
    }
}
