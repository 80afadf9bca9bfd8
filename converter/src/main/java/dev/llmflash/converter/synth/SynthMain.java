package dev.llmflash.converter.synth;

import dev.llmflash.formats.LlmflashException;
import dev.llmflash.formats.tensor.DType;

import java.io.PrintStream;
import java.nio.file.Path;
import java.util.Locale;

/**
 * {@code synth} on the command line, until the CLI wires it as {@code llmflash synth}:
 * <pre>
 * java --add-modules jdk.incubator.vector --enable-native-access=ALL-UNNAMED -cp ... \
 *     dev.llmflash.converter.synth.SynthMain --shape opt-6.7b --output /data/opt-6.7b \
 *     [--seed 0] [--dtype F16|BF16|F32] [--shard-size 2GB] [--threads N] [--ffn-active 0.03] [--force]
 * SynthMain --list
 * </pre>
 * Progress goes to stderr, the summary line to stdout. Exit status: 0 done, 1 error (one line), 2 usage.
 */
public final class SynthMain {
    private SynthMain() {
    }

    public static void main(String[] args) {
        System.exit(run(args, System.out, System.err));
    }

    /** Runs the command; returns the exit status. */
    public static int run(String[] args, PrintStream out, PrintStream err) {
        String shape = null;
        Path output = null;
        SynthOptions o;
        long seed = 0;
        DType dtype = DType.F16;
        long shard = SynthOptions.DEFAULT_SHARD_BYTES;
        Integer threads = null;
        Double active = null;
        boolean force = false;
        try {
            for (int i = 0; i < args.length; i++) {
                String a = args[i];
                switch (a) {
                    case "--shape" -> shape = value(args, ++i, a);
                    case "--output" -> output = Path.of(value(args, ++i, a));
                    case "--seed" -> seed = Long.parseLong(value(args, ++i, a));
                    case "--dtype" -> dtype = dtype(value(args, ++i, a));
                    case "--shard-size" -> shard = size(value(args, ++i, a));
                    case "--threads" -> threads = Integer.parseInt(value(args, ++i, a));
                    case "--ffn-active" -> active = Double.parseDouble(value(args, ++i, a));
                    case "--force" -> force = true;
                    case "--list" -> {
                        list(out);
                        return 0;
                    }
                    case "-h", "--help" -> {
                        usage(out);
                        return 0;
                    }
                    default -> throw new IllegalArgumentException("unknown option '" + a + "'");
                }
            }
            if (shape == null || output == null) {
                throw new IllegalArgumentException("--shape and --output are required");
            }
        } catch (IllegalArgumentException e) { // NumberFormatException included
            err.println("synth: " + e.getMessage());
            usage(err);
            return 2;
        }
        try {
            o = SynthOptions.of(shape, output).withSeed(seed).withDtype(dtype).withShardBytes(shard).withForce(force);
            if (threads != null) {
                o = o.withThreads(threads);
            }
            if (active != null) {
                o = o.withFfnActive(active);
            }
            String name = shape;
            long start = System.nanoTime();
            long[] last = {0};
            SynthResult r = Synth.run(o, (done, total) -> {
                long now = System.nanoTime();
                if (now - last[0] >= 1_000_000_000L || done == total) {
                    last[0] = now;
                    double s = (now - start) / 1e9;
                    err.printf(Locale.ROOT, "\rsynth %s: %.2f / %.2f GB (%.0f%%), %.2f GB/s   ", name, done / 1e9,
                            total / 1e9, 100.0 * done / total, done / 1e9 / Math.max(s, 1e-9));
                    if (done == total) {
                        err.println();
                    }
                }
            });
            out.printf(Locale.ROOT, "wrote %s: %s, %,d parameters, %.2f GB of %s weights in %d files, %.1f s (%.2f GB/s)%n",
                    r.dir(), r.shape(), r.parameters(), r.weightBytes() / 1e9, o.dtype(), r.files().size(),
                    r.nanos() / 1e9, r.gbPerSecond());
            return 0;
        } catch (LlmflashException e) {
            err.println("synth: error: " + e.getMessage());
            return 1;
        }
    }

    private static void list(PrintStream out) {
        for (String n : Shapes.names()) {
            Shape s = Shapes.get(n);
            out.printf(Locale.ROOT, "%-16s %,15d parameters  %6.2f GB as F16  %s%n", n, s.parameters(),
                    s.weightBytes(DType.F16) / 1e9, s.source());
        }
    }

    private static void usage(PrintStream p) {
        p.println("usage: synth --shape NAME --output DIR [--seed N] [--dtype F16|BF16|F32] [--shard-size 2GB]");
        p.println("             [--threads N] [--ffn-active FRACTION] [--force]");
        p.println("       synth --list");
        p.println("shapes: " + String.join(", ", Shapes.names()));
    }

    private static String value(String[] args, int i, String option) {
        if (i >= args.length) {
            throw new IllegalArgumentException(option + " needs a value");
        }
        return args[i];
    }

    private static DType dtype(String s) {
        return switch (s.toLowerCase(Locale.ROOT)) {
            case "f16", "float16", "fp16" -> DType.F16;
            case "bf16", "bfloat16" -> DType.BF16;
            case "f32", "float32", "fp32" -> DType.F32;
            default -> throw new IllegalArgumentException("--dtype '" + s + "' is not F16, BF16 or F32");
        };
    }

    /**
     * A size as save_pretrained's max_shard_size spells it: bytes, or a number with KB/MB/GB (powers
     * of 1000) or KiB/MiB/GiB (powers of 1024).
     */
    static long size(String s) {
        String t = s.trim().toUpperCase(Locale.ROOT);
        long unit = 1;
        String[][] units = {{"KIB", "1024"}, {"MIB", "1048576"}, {"GIB", "1073741824"},
                {"KB", "1000"}, {"MB", "1000000"}, {"GB", "1000000000"}, {"B", "1"}};
        for (String[] u : units) {
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
            throw new IllegalArgumentException("--shard-size '" + s + "' is not a size like 2GB, 500MB or 1GiB");
        }
    }
}
