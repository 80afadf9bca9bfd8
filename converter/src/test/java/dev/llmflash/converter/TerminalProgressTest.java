package dev.llmflash.converter;

import org.junit.jupiter.api.Test;

import java.io.ByteArrayOutputStream;
import java.io.PrintStream;
import java.nio.charset.StandardCharsets;
import java.nio.file.Path;
import java.util.List;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

class TerminalProgressTest {

    private final long[] now = {0};

    @Test
    void plainOutputPrintsAStageLineAndEveryTenth() {
        ByteArrayOutputStream bytes = new ByteArrayOutputStream();
        TerminalProgress p = new TerminalProgress(new PrintStream(bytes, true, StandardCharsets.UTF_8), false,
                () -> now[0]);
        long total = 1000;
        for (long done = 0; done <= 300; done += 7) {
            p.update(Progress.Stage.RESIDENT, done, total);
        }
        for (long done = 301; done <= total; done += 3) {
            p.update(Progress.Stage.FFN, done, total);
        }
        p.update(Progress.Stage.MANIFEST, total, total);
        p.finished(new ConvertResult(Path.of("/b"), 2_000_000_000L, 2.0, List.of()));
        List<String> lines = bytes.toString(StandardCharsets.UTF_8).lines().toList();
        assertEquals("convert: resident tensors, 0% (0.0 MB of 0.0 MB)", lines.getFirst());
        assertEquals(List.of("convert: resident tensors, 0%", "convert: resident tensors, 10%",
                        "convert: resident tensors, 20%", "convert: FFN weights, 30%", "convert: FFN weights, 40%",
                        "convert: FFN weights, 50%", "convert: FFN weights, 60%", "convert: FFN weights, 70%",
                        "convert: FFN weights, 80%", "convert: FFN weights, 90%", "convert: FFN weights, 100%",
                        "convert: manifest, 100%"),
                lines.subList(0, lines.size() - 1).stream().map(l -> l.substring(0, l.indexOf(" ("))).toList());
        assertEquals("convert: converted 2.00 GB in 2.0 s (1.00 GB/s) -> /b", lines.getLast());
    }

    @Test
    void terminalOutputRedrawsOneLineWithBarSpeedAndEta() {
        ByteArrayOutputStream bytes = new ByteArrayOutputStream();
        TerminalProgress p = new TerminalProgress(new PrintStream(bytes, true, StandardCharsets.UTF_8), true,
                () -> now[0]);
        long total = 13_400_000_000L;
        p.update(Progress.Stage.FFN, 0, total);
        now[0] = 4_000_000_000L; // 4 s later, 6.7 GB done: 1.675 GB/s, 4 s left
        assertEquals("FFN weights      [##########----------]  50%  6.70/13.40 GB  1.68 GB/s  ETA 0:04",
                p.render(Progress.Stage.FFN, 6_700_000_000L, total, now[0]));
        p.update(Progress.Stage.FFN, 6_700_000_000L, total);
        now[0] += 1_000_000; // 1 ms later: not redrawn
        p.update(Progress.Stage.FFN, 6_800_000_000L, total);
        String out = bytes.toString(StandardCharsets.UTF_8);
        assertEquals(2, out.chars().filter(c -> c == '\r').count(), out);
        assertTrue(out.endsWith("ETA 0:04"), out);
        assertTrue(!out.contains("\n"), "one line, redrawn in place");
    }
}
