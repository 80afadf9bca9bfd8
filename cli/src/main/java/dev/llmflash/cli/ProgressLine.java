package dev.llmflash.cli;

import java.io.PrintWriter;
import java.util.Locale;

/**
 * Progress of a long byte-counting job on stderr: on a terminal one line redrawn in place with a bar,
 * bytes, GB/s and ETA (at most 5 times a second); otherwise a plain line every 10%.
 */
final class ProgressLine {
    private final PrintWriter err;
    private final String label;
    private final boolean terminal = System.console() != null;
    private final long start = System.nanoTime();
    private long lastDraw;
    private int lastDecile = -1;
    private boolean drawn;
    private final String unit;

    /** Counts bytes (shown in GB). */
    ProgressLine(PrintWriter err, String label) {
        this(err, label, null);
    }

    /** Counts {@code unit}s (e.g. "tokens"), shown as plain counts. */
    ProgressLine(PrintWriter err, String label, String unit) {
        this.err = err;
        this.label = label;
        this.unit = unit;
    }

    private String amount(double v) {
        return unit == null ? String.format(Locale.ROOT, "%.2f GB", v / 1e9) : String.format(Locale.ROOT, "%,.0f %s", v, unit);
    }

    private String rate(double perSecond) {
        return unit == null ? String.format(Locale.ROOT, "%.2f GB/s", perSecond / 1e9) : String.format(Locale.ROOT, "%,.0f %s/s", perSecond, unit);
    }

    void update(long done, long total) {
        long now = System.nanoTime();
        double secs = Math.max(1e-9, (now - start) / 1e9);
        double rate = done / secs;
        double frac = total > 0 ? Math.min(1.0, (double) done / total) : 1.0;
        if (terminal) {
            if (now - lastDraw < 200_000_000L && done < total) {
                return;
            }
            lastDraw = now;
            int width = 30;
            int filled = (int) (frac * width);
            String bar = "#".repeat(filled) + "-".repeat(width - filled);
            double eta = rate > 0 ? (total - done) / rate : Double.NaN;
            err.printf(Locale.ROOT, "\r%s [%s] %5.1f%% %s / %s, %s, ETA %s   ", label, bar, 100 * frac, amount(done),
                    amount(total), rate(rate), Double.isFinite(eta) ? String.format(Locale.ROOT, "%.0fs", eta) : "?");
            drawn = true;
        } else {
            int decile = (int) (frac * 10);
            if (decile == lastDecile) {
                return;
            }
            lastDecile = decile;
            err.printf(Locale.ROOT, "%s: %3d%% %s / %s, %s, %.0f s%n", label, decile * 10, amount(done), amount(total),
                    rate(rate), secs);
        }
        err.flush();
    }

    void finish() {
        if (drawn) {
            err.println();
            err.flush();
        }
    }
}
