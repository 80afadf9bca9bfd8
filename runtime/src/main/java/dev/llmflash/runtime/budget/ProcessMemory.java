package dev.llmflash.runtime.budget;

import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;

/** This process's resident memory as Linux reports it ({@code /proc/self/status}); -1 where unavailable. */
public final class ProcessMemory {
    private ProcessMemory() {
    }

    /** VmRSS: resident set now, bytes (anonymous + file-backed, mapped weights included). */
    public static long rssBytes() {
        return field("VmRSS:");
    }

    /** VmHWM: the peak resident set so far, bytes. */
    public static long peakRssBytes() {
        return field("VmHWM:");
    }

    private static long field(String name) {
        try {
            for (String line : Files.readAllLines(Path.of("/proc/self/status"))) {
                if (line.startsWith(name)) {
                    String[] parts = line.substring(name.length()).trim().split("\\s+");
                    return Long.parseLong(parts[0]) * 1024;
                }
            }
        } catch (IOException | RuntimeException e) {
            return -1;
        }
        return -1;
    }
}
