package dev.llmflash.formats.testing;

import java.nio.file.Files;
import java.nio.file.Path;

/**
 * The project's committed test data ({@code testdata/} at the repo root; the build passes its path in
 * the {@code llmflash.testdata} system property). A missing file fails the test: it never skips.
 */
public final class TestData {
    private TestData() {
    }

    public static Path root() {
        String p = System.getProperty("llmflash.testdata");
        if (p == null) {
            throw new IllegalStateException("system property llmflash.testdata is not set: run the tests through Maven (./build test)");
        }
        Path root = Path.of(p).toAbsolutePath().normalize();
        if (!Files.isDirectory(root)) {
            throw new IllegalStateException("test data folder missing: " + root);
        }
        return root;
    }

    /** A file or folder under testdata/, which must exist. */
    public static Path path(String relative) {
        Path p = root().resolve(relative);
        if (!Files.exists(p)) {
            throw new IllegalStateException("test data missing: " + p);
        }
        return p;
    }

    public static Path model(String name) {
        return path("models/" + name);
    }

    public static Path reference(String file) {
        return path("reference/" + file);
    }
}
