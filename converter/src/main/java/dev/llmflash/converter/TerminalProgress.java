package dev.llmflash.converter;

import java.io.PrintStream;
import java.util.Locale;
import java.util.function.LongSupplier;

/**
 * Shows a conversion's progress to a person. On a terminal: one line, redrawn in place at most every
 * {@value #REDRAW_MILLIS} ms, with the stage, a bar, the percentage, bytes written, speed and time left:
 * <pre>FFN weights      [#########-----------]  46%  6.16/13.40 GB  1.52 GB/s  ETA 0:04</pre>
 * Elsewhere (a log, a pipe): a plain line when a stage starts and at every tenth of the total.
 * Sizes and speeds are decimal (1 GB = 10^9 bytes). Single-threaded, like the conversion that drives it.
 */
public final class TerminalProgress implements Progress {
    static final long REDRAW_MILLIS = 200;
    private static final int BAR = 20;

    private final PrintStream out;
    private final boolean interactive;
    private final LongSupplier nanoClock;
    private long startNanos = -1;
    private long lastDrawNanos;
    private Stage lastStage;
    private int lastTenth = -1;
    private int lastWidth;

    /** Writes to standard error; redraws in place when a console is attached. */
    public TerminalProgress() {
        this(System.err, System.console() != null, System::nanoTime);
    }

    /**
     * @param out         where to write
     * @param interactive redraw one line in place (a terminal) rather than print plain lines
     * @param nanoClock   the time source, {@link System#nanoTime} outside tests
     */
    public TerminalProgress(PrintStream out, boolean interactive, LongSupplier nanoClock) {
        this.out = out;
        this.interactive = interactive;
        this.nanoClock = nanoClock;
    }

    @Override
    public void update(Stage stage, long bytesDone, long bytesTotal) {
        long now = nanoClock.getAsLong();
        if (startNanos < 0) {
            startNanos = now;
        }
        if (interactive) {
            boolean due = stage != lastStage || now - lastDrawNanos >= REDRAW_MILLIS * 1_000_000 || bytesDone >= bytesTotal;
            if (due) {
                draw(render(stage, bytesDone, bytesTotal, now));
                lastDrawNanos = now;
            }
        } else {
            int tenth = bytesTotal > 0 ? (int) Math.min(10, bytesDone * 10 / bytesTotal) : 10;
            if (stage != lastStage || tenth > lastTenth) {
                out.println("convert: " + stage.label() + ", " + percent(bytesDone, bytesTotal) + "% ("
                        + size(bytesDone) + " of " + size(bytesTotal) + ")");
                lastTenth = tenth;
            }
        }
        lastStage = stage;
    }

    @Override
    public void finished(ConvertResult result) {
        String line = "converted " + size(result.bytesWritten()) + " in " + String.format(Locale.ROOT, "%.1f",
                result.seconds()) + " s (" + speed(result.bytesPerSecond()) + ") -> " + result.bundle();
        if (interactive) {
            draw(line);
            out.println();
        } else {
            out.println("convert: " + line);
        }
        out.flush();
    }

    /** The in-place line; package-private for tests. */
    String render(Stage stage, long done, long total, long nowNanos) {
        int pct = percent(done, total);
        int filled = total > 0 ? (int) Math.min(BAR, done * BAR / total) : BAR;
        double seconds = (nowNanos - startNanos) / 1e9;
        double rate = seconds > 0 ? done / seconds : 0;
        String eta = rate > 0 ? clock((long) Math.ceil((total - done) / rate)) : "--:--";
        return String.format(Locale.ROOT, "%-16s [%s%s] %3d%%  %s  %s  ETA %s", stage.label(),
                "#".repeat(filled), "-".repeat(BAR - filled), pct, fraction(done, total), speed(rate), eta);
    }

    private void draw(String line) {
        // Blank out what a longer previous line left behind.
        out.print("\r" + line + " ".repeat(Math.max(0, lastWidth - line.length())));
        out.flush();
        lastWidth = line.length();
    }

    private static int percent(long done, long total) {
        return total > 0 ? (int) Math.min(100, done * 100 / total) : 100;
    }

    /** "13.40 GB" or "512.0 MB". */
    static String size(long bytes) {
        return bytes >= 1_000_000_000L ? String.format(Locale.ROOT, "%.2f GB", bytes / 1e9)
                : String.format(Locale.ROOT, "%.1f MB", bytes / 1e6);
    }

    /** "6.16/13.40 GB" or "3.2/14.2 MB": both numbers in the total's unit. */
    static String fraction(long done, long total) {
        return total >= 1_000_000_000L ? String.format(Locale.ROOT, "%.2f/%.2f GB", done / 1e9, total / 1e9)
                : String.format(Locale.ROOT, "%.1f/%.1f MB", done / 1e6, total / 1e6);
    }

    private static String speed(double bytesPerSecond) {
        return bytesPerSecond >= 1e9 ? String.format(Locale.ROOT, "%.2f GB/s", bytesPerSecond / 1e9)
                : String.format(Locale.ROOT, "%.0f MB/s", bytesPerSecond / 1e6);
    }

    private static String clock(long seconds) {
        return seconds >= 3600 ? String.format(Locale.ROOT, "%d:%02d:%02d", seconds / 3600, seconds / 60 % 60, seconds % 60)
                : String.format(Locale.ROOT, "%d:%02d", seconds / 60, seconds % 60);
    }
}
