package dev.llmflash.formats;

import com.fasterxml.jackson.core.JacksonException;
import com.fasterxml.jackson.core.StreamReadFeature;
import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.json.JsonMapper;

import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.NoSuchFileException;
import java.nio.file.Path;

/**
 * Typed access to the fields of a small JSON file (activations.json, predictors.json): every problem is
 * a one-line {@link FormatException} naming the file, the field and {@code fix}. Immutable, thread-safe.
 * A format with typed readers of its own (the bundle manifest) extends it.
 */
public class JsonFields {

    /** The JSON file, named in errors. */
    protected final Path file;
    /** What the user should do when the file is wrong. */
    protected final String fix;

    public JsonFields(Path file, String fix) {
        this.file = java.util.Objects.requireNonNull(file, "file");
        this.fix = java.util.Objects.requireNonNull(fix, "fix");
    }

    public Path file() {
        return file;
    }

    public String fix() {
        return fix;
    }

    /** Duplicate keys are refused: a hand-edited file must not mean two things. */
    public static final ObjectMapper JSON = JsonMapper.builder()
            .enable(StreamReadFeature.STRICT_DUPLICATE_DETECTION)
            .build();

    /**
     * Reads {@code file} (at most {@code maxBytes}) as a JSON object.
     *
     * @param missingFix what to do when the file does not exist
     */
    public JsonNode readObject(long maxBytes, String missingFix) {
        byte[] bytes;
        try {
            long size = Files.size(file);
            if (size > maxBytes) {
                throw new FormatException(file, "is " + size + " bytes, more than the " + maxBytes + " it may have", fix);
            }
            bytes = Files.readAllBytes(file);
        } catch (NoSuchFileException e) {
            throw new FormatException(file, "does not exist", missingFix, e);
        } catch (IOException e) {
            throw new FormatException(file, "cannot be read: " + e, "check that it is a readable file", e);
        }
        JsonNode root;
        try {
            root = JSON.readTree(bytes);
        } catch (JacksonException e) {
            throw new FormatException(file, "is not valid JSON: "
                    + e.getOriginalMessage().lines().findFirst().orElse(""), fix, e);
        } catch (IOException e) {
            throw new IllegalStateException("reading JSON from bytes cannot fail with I/O", e);
        }
        if (root == null || !root.isObject()) {
            throw new FormatException(file, "is not a JSON object", fix);
        }
        return root;
    }

    /**
     * Checks "format" and "version": another format is refused, a newer version is refused with
     * {@code upgradeFix}, a version below 1 never existed.
     */
    public void formatAndVersion(JsonNode root, String format, int version, String upgradeFix) {
        JsonNode f = root.get("format");
        if (f == null || !f.isTextual() || !f.textValue().equals(format)) {
            throw new FormatException(file, "is not an " + format + " file (its \"format\" is "
                    + (f == null ? "missing" : f.toString()) + ", not \"" + format + "\")", fix);
        }
        long v = integer(root, "version", "version", Long.MIN_VALUE, Long.MAX_VALUE);
        if (v > version) {
            throw new FormatException(file, format + " format version " + v + " is newer than this llmflash reads ("
                    + version + ")", upgradeFix);
        }
        if (v < 1) {
            throw new FormatException(file, "has " + format + " format version " + v + ", which never existed", fix);
        }
    }

    private JsonNode field(JsonNode parent, String key, String where) {
        JsonNode n = parent.get(key);
        if (n == null || n.isNull()) {
            throw new FormatException(file, "field '" + where + "' is missing", fix);
        }
        return n;
    }

    protected FormatException wrongType(String where, String expected, JsonNode n) {
        String shown = n.toString();
        if (shown.length() > 60) {
            shown = shown.substring(0, 57) + "...";
        }
        return new FormatException(file, "field '" + where + "' should be " + expected + ", not " + shown, fix);
    }

    public JsonNode object(JsonNode parent, String key, String where) {
        JsonNode n = field(parent, key, where);
        if (!n.isObject()) {
            throw wrongType(where, "an object", n);
        }
        return n;
    }

    public JsonNode array(JsonNode parent, String key, String where) {
        JsonNode n = field(parent, key, where);
        if (!n.isArray()) {
            throw wrongType(where, "an array", n);
        }
        return n;
    }

    public JsonNode element(JsonNode array, int i, String where) {
        JsonNode n = array.get(i);
        if (!n.isObject()) {
            throw wrongType(where, "an object", n);
        }
        return n;
    }

    public String text(JsonNode parent, String key, String where) {
        JsonNode n = field(parent, key, where);
        if (!n.isTextual()) {
            throw wrongType(where, "a string", n);
        }
        return n.textValue();
    }

    public long integer(JsonNode parent, String key, String where, long min, long max) {
        JsonNode n = field(parent, key, where);
        if (!n.isIntegralNumber() || !n.canConvertToLong()) {
            throw wrongType(where, "an integer", n);
        }
        long v = n.longValue();
        if (v < min || v > max) {
            throw new FormatException(file, "field '" + where + "' is " + v + ", outside [" + min + ", " + max + "]", fix);
        }
        return v;
    }

    public int int32(JsonNode parent, String key, String where, int min) {
        return (int) integer(parent, key, where, min, Integer.MAX_VALUE);
    }

    public boolean bool(JsonNode parent, String key, String where) {
        JsonNode n = field(parent, key, where);
        if (!n.isBoolean()) {
            throw wrongType(where, "true or false", n);
        }
        return n.booleanValue();
    }

    public double number(JsonNode parent, String key, String where) {
        JsonNode n = field(parent, key, where);
        if (!n.isNumber() || !Double.isFinite(n.doubleValue())) {
            throw wrongType(where, "a number", n);
        }
        return n.doubleValue();
    }

    /** 8 hex digits, as a CRC32C is written. */
    public int crc(JsonNode parent, String key, String where) {
        String s = text(parent, key, where);
        if (s.length() != 8 || !s.chars().allMatch(c -> Character.digit(c, 16) >= 0)) {
            throw new FormatException(file, "field '" + where + "' is \"" + s + "\", not 8 hex digits", fix);
        }
        return (int) Long.parseLong(s, 16);
    }

    /** 64 lower-case hex digits, as a SHA-256 is written. */
    public String sha256(JsonNode parent, String key, String where) {
        String s = text(parent, key, where);
        if (s.length() != 64 || !s.chars().allMatch(c -> (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'))) {
            throw new FormatException(file, "field '" + where + "' is not 64 lower-case hex digits", fix);
        }
        return s;
    }

    /** A plain file name: no folders, no "..", nothing that escapes the folder it lives in. */
    public String fileName(JsonNode parent, String key, String where) {
        String s = text(parent, key, where);
        if (s.isEmpty() || s.equals(".") || s.equals("..") || s.indexOf('/') >= 0 || s.indexOf('\\') >= 0
                || s.indexOf('\0') >= 0) {
            throw new FormatException(file, "field '" + where + "' is \"" + s + "\", not a plain file name", fix);
        }
        return s;
    }

    /** Any int (ids may be negative). */
    public int anyInt(JsonNode parent, String key, String where) {
        return (int) integer(parent, key, where, Integer.MIN_VALUE, Integer.MAX_VALUE);
    }

    /** A safetensors dtype name, spelled exactly ("F16", "BF16", ...). */
    public dev.llmflash.formats.tensor.DType dtype(JsonNode parent, String key, String where) {
        String s = text(parent, key, where);
        dev.llmflash.formats.tensor.DType d = dev.llmflash.formats.tensor.DType.fromSafetensors(s);
        if (d == null || !d.name().equals(s)) {
            throw new FormatException(file, "field '" + where + "' names unknown dtype \"" + s + "\"", fix);
        }
        return d;
    }

    /** An array of non-negative integers. */
    public long[] shape(JsonNode parent, String key, String where) {
        JsonNode n = array(parent, key, where);
        long[] shape = new long[n.size()];
        for (int i = 0; i < shape.length; i++) {
            JsonNode v = n.get(i);
            if (!v.isIntegralNumber() || !v.canConvertToLong() || v.longValue() < 0) {
                throw wrongType(where, "an array of non-negative integers", n);
            }
            shape[i] = v.longValue();
        }
        return shape;
    }
}
