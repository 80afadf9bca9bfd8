package dev.llmflash.formats;

import java.util.Locale;

/** Byte sizes as users write them: {@code 1234}, {@code 500MB}, {@code 2GB}, {@code 1GiB}, {@code 6G} (= GiB), {@code 1.5GB}. */
public final class ByteSize {
    private ByteSize() {
    }

    private static final String[][] UNITS = {{"KIB", "1024"}, {"MIB", "1048576"}, {"GIB", "1073741824"}, {"TIB", "1099511627776"},
            {"KB", "1000"}, {"MB", "1000000"}, {"GB", "1000000000"}, {"TB", "1000000000000"},
            {"K", "1024"}, {"M", "1048576"}, {"G", "1073741824"}, {"T", "1099511627776"}, {"B", "1"}};

    /**
     * Parses a positive size.
     *
     * @param option the option's name, for the message (e.g. "--shard-size")
     * @throws IllegalArgumentException with a one-line message naming the option
     */
    public static long parse(String s, String option) {
        String t = s.trim().toUpperCase(Locale.ROOT);
        long unit = 1;
        for (String[] u : UNITS) {
            if (t.endsWith(u[0])) {
                unit = Long.parseLong(u[1]);
                t = t.substring(0, t.length() - u[0].length()).trim();
                break;
            }
        }
        try {
            double v = Double.parseDouble(t);
            if (!(v > 0) || v * unit > Long.MAX_VALUE) {
                throw new NumberFormatException();
            }
            return (long) (v * unit);
        } catch (NumberFormatException e) {
            throw new IllegalArgumentException(option + " '" + s + "' is not a size like 2GB, 500MB, 1GiB or 6G");
        }
    }
}
