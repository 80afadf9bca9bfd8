package dev.llmflash.converter.synth;

import com.fasterxml.jackson.core.util.DefaultIndenter;
import com.fasterxml.jackson.core.util.DefaultPrettyPrinter;
import com.fasterxml.jackson.core.util.Separators;
import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.ObjectWriter;

import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;

/**
 * Writes JSON files the way transformers does ({@code json.dumps(obj, indent=2) + "\n"}): two-space
 * indentation, {@code "key": value}, arrays one element per line, a final newline. Stateless.
 */
final class HfJson {
    private static final DefaultIndenter INDENT = new DefaultIndenter("  ", "\n");
    private static final ObjectWriter WRITER = new ObjectMapper().writer(new DefaultPrettyPrinter()
            .withSeparators(Separators.createDefaultInstance().withObjectFieldValueSpacing(Separators.Spacing.AFTER))
            .withObjectIndenter(INDENT).withArrayIndenter(INDENT));

    private HfJson() {
    }

    static void write(Path file, JsonNode node) throws IOException {
        Files.writeString(file, WRITER.writeValueAsString(node) + "\n", StandardCharsets.UTF_8);
    }
}
