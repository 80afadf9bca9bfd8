package dev.llmflash.runtime;

import org.junit.jupiter.api.Test;

import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Set;
import java.util.TreeMap;
import java.util.regex.Matcher;
import java.util.regex.Pattern;
import java.util.stream.Stream;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * Imports inside the runtime point one way (docs: DESIGN.md): kernels, weights, ffn, model, io, budget,
 * flash, bench, generate, each package using only the ones before it in that order, with one exception:
 * generation is core and, like everything else in the core, does not use the bench package. Reads the
 * main sources; a reference counts whether it is an import or a fully qualified name in code (comments
 * and Javadoc links do not count).
 */
class LayeringTest {

    /** Per runtime package, the runtime packages it may use. Every package must be listed. */
    static final Map<String, Set<String>> ALLOWED = new LinkedHashMap<>();

    static {
        ALLOWED.put("kernels", Set.of());
        ALLOWED.put("weights", Set.of("kernels"));
        ALLOWED.put("ffn", Set.of("kernels", "weights"));
        ALLOWED.put("model", Set.of("kernels", "weights", "ffn"));
        ALLOWED.put("io", Set.of("kernels", "weights", "ffn", "model"));
        ALLOWED.put("budget", Set.of("kernels", "weights", "ffn", "model", "io"));
        ALLOWED.put("flash", Set.of("kernels", "weights", "ffn", "model", "io", "budget"));
        ALLOWED.put("bench", Set.of("kernels", "weights", "ffn", "model", "io", "budget", "flash"));
        ALLOWED.put("generate", Set.of("kernels", "weights", "ffn", "model", "io", "budget", "flash", "tokenizer"));
        // Beside the stack: text to ids and back, used by nothing below generation.
        ALLOWED.put("tokenizer", Set.of());
        // The root holds only the package's Javadoc.
        ALLOWED.put("", Set.of());
    }

    private static final Path SOURCES = Path.of("src/main/java/dev/llmflash/runtime");
    private static final Pattern REFERENCE = Pattern.compile("\\bdev\\.llmflash\\.runtime\\.([a-z][a-z0-9_]*)\\b");

    @Test
    void importsPointOneWay() throws IOException {
        assertTrue(Files.isDirectory(SOURCES), "the runtime's main sources are not at " + SOURCES.toAbsolutePath());
        Map<Path, String> sources = new TreeMap<>();
        try (Stream<Path> files = Files.walk(SOURCES)) {
            for (Path p : files.filter(f -> f.toString().endsWith(".java")).toList()) {
                sources.put(SOURCES.relativize(p), Files.readString(p));
            }
        }
        assertTrue(sources.size() > 50, "found only " + sources.size() + " sources under " + SOURCES.toAbsolutePath());
        List<String> bad = violations(sources);
        assertTrue(bad.isEmpty(), "runtime packages that use a package above them (or one not in LayeringTest.ALLOWED):\n  "
                + String.join("\n  ", bad));
    }

    /** The checker itself: a bad import, a fully qualified use, a new package; comments ignored. */
    @Test
    void theCheckerCatchesAnUpwardImport() {
        Map<Path, String> sources = new TreeMap<>();
        sources.put(Path.of("ffn/Bad.java"), """
                package dev.llmflash.runtime.ffn;

                import dev.llmflash.runtime.kernels.Kernels;
                import dev.llmflash.runtime.model.Ops;
                /** See {@link dev.llmflash.runtime.flash.FlashFfn}. */
                class Bad { // dev.llmflash.runtime.generate.Generator
                    Object o = dev.llmflash.runtime.flash.FlashFfn.class;
                }
                """);
        sources.put(Path.of("extra/New.java"), "package dev.llmflash.runtime.extra;\nclass New {}\n");
        assertEquals(List.of(
                "extra/New.java: package 'extra' is not in LayeringTest.ALLOWED",
                "ffn/Bad.java:4: dev.llmflash.runtime.model (ffn may use only [kernels, weights])",
                "ffn/Bad.java:7: dev.llmflash.runtime.flash (ffn may use only [kernels, weights])"), violations(sources));
    }

    /** "file:line: referenced package (what the file's package may use)", in file order. */
    static List<String> violations(Map<Path, String> sources) {
        List<String> out = new ArrayList<>();
        for (Map.Entry<Path, String> e : sources.entrySet()) {
            Path file = e.getKey();
            String pkg = file.getNameCount() == 1 ? "" : file.getName(0).toString();
            Set<String> allowed = ALLOWED.get(pkg);
            if (allowed == null) {
                out.add(slashes(file) + ": package '" + pkg + "' is not in LayeringTest.ALLOWED");
                continue;
            }
            String[] lines = withoutComments(e.getValue()).split("\n", -1);
            for (int i = 0; i < lines.length; i++) {
                if (lines[i].startsWith("package ")) {
                    continue;
                }
                Matcher m = REFERENCE.matcher(lines[i]);
                while (m.find()) {
                    String used = m.group(1);
                    if (!used.equals(pkg) && !allowed.contains(used)) {
                        out.add(slashes(file) + ":" + (i + 1) + ": dev.llmflash.runtime." + used + " (" + (pkg.isEmpty() ? "the root" : pkg)
                                + " may use only " + allowed.stream().sorted(LayeringTest::byLayer).toList() + ")");
                    }
                }
            }
        }
        return out;
    }

    private static int byLayer(String a, String b) {
        List<String> order = new ArrayList<>(ALLOWED.keySet());
        return Integer.compare(order.indexOf(a), order.indexOf(b));
    }

    private static String slashes(Path p) {
        return p.toString().replace('\\', '/');
    }

    /** The source with comments blanked (newlines kept, so line numbers hold); strings left alone. */
    static String withoutComments(String s) {
        StringBuilder b = new StringBuilder(s.length());
        int i = 0, n = s.length();
        while (i < n) {
            char c = s.charAt(i);
            if (c == '"' || c == '\'') {  // a literal (text blocks too: their quotes pair up)
                int j = i + 1;
                while (j < n && s.charAt(j) != c && s.charAt(j) != '\n') {
                    j += s.charAt(j) == '\\' ? 2 : 1;
                }
                j = Math.min(n, j + 1);
                b.append(s, i, j);
                i = j;
            } else if (s.startsWith("//", i)) {
                while (i < n && s.charAt(i) != '\n') {
                    i++;
                }
            } else if (s.startsWith("/*", i)) {
                int end = s.indexOf("*/", i + 2);
                end = end < 0 ? n : end + 2;
                for (int k = i; k < end; k++) {
                    if (s.charAt(k) == '\n') {
                        b.append('\n');
                    }
                }
                i = end;
            } else {
                b.append(c);
                i++;
            }
        }
        return b.toString();
    }
}
