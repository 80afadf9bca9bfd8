package dev.llmflash.formats.pytorch;

import org.apache.commons.compress.archivers.zip.ZipArchiveEntry;
import org.apache.commons.compress.archivers.zip.Zip64Mode;
import org.apache.commons.compress.archivers.zip.ZipArchiveOutputStream;

import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.charset.StandardCharsets;
import java.nio.file.Path;
import java.util.HashSet;
import java.util.LinkedHashMap;
import java.util.Map;
import java.util.Set;
import java.util.zip.CRC32;
import java.util.zip.ZipEntry;

/**
 * Writes a torch.save-style zip for tests: entries under {@code <archive>/} in insertion order
 * (data.pkl, byteorder, version, serialization_id, then what the test adds), all STORED and 64-byte
 * aligned as torch does, unless a test asks for an entry to be deflated.
 */
final class TorchZipWriter {
    private final String archive;
    private final Map<String, byte[]> entries = new LinkedHashMap<>();
    private final Set<String> deflated = new HashSet<>();
    private boolean zip64;

    TorchZipWriter(String archive, byte[] pickle) {
        this.archive = archive;
        entries.put("data.pkl", pickle);
        entries.put("byteorder", "little".getBytes(StandardCharsets.US_ASCII));
        entries.put("version", "3\n".getBytes(StandardCharsets.US_ASCII));
        entries.put(".data/serialization_id", "0123456789".getBytes(StandardCharsets.US_ASCII));
    }

    /** Adds or replaces {@code <archive>/<name>}. */
    TorchZipWriter entry(String name, byte[] data) {
        entries.put(name, data);
        return this;
    }

    TorchZipWriter storage(String key, byte[] data) {
        return entry("data/" + key, data);
    }

    TorchZipWriter remove(String name) {
        entries.remove(name);
        return this;
    }

    /** Writes zip64 records for every entry, as torch does for files over 4 GiB. */
    TorchZipWriter zip64() {
        zip64 = true;
        return this;
    }

    TorchZipWriter deflate(String name) {
        deflated.add(name);
        return this;
    }

    Path write(Path file) throws IOException {
        try (ZipArchiveOutputStream zip = new ZipArchiveOutputStream(file)) {
            if (zip64) {
                zip.setUseZip64(Zip64Mode.Always);
            }
            for (Map.Entry<String, byte[]> e : entries.entrySet()) {
                ZipArchiveEntry z = new ZipArchiveEntry(archive + "/" + e.getKey());
                byte[] data = e.getValue();
                if (deflated.contains(e.getKey())) {
                    z.setMethod(ZipEntry.DEFLATED);
                } else {
                    z.setMethod(ZipEntry.STORED);
                    z.setSize(data.length);
                    CRC32 crc = new CRC32();
                    crc.update(data);
                    z.setCrc(crc.getValue());
                    z.setAlignment(64);
                }
                zip.putArchiveEntry(z);
                zip.write(data);
                zip.closeArchiveEntry();
            }
        }
        return file;
    }

    static byte[] f32(float... v) {
        ByteBuffer b = ByteBuffer.allocate(4 * v.length).order(ByteOrder.LITTLE_ENDIAN);
        for (float f : v) {
            b.putFloat(f);
        }
        return b.array();
    }

    /** bf16 = the top 16 bits of an f32; callers pass values that bf16 represents exactly. */
    static byte[] bf16(float... v) {
        ByteBuffer b = ByteBuffer.allocate(2 * v.length).order(ByteOrder.LITTLE_ENDIAN);
        for (float f : v) {
            int bits = Float.floatToRawIntBits(f);
            if ((bits & 0xffff) != 0) {
                throw new IllegalArgumentException(f + " is not exactly representable in bf16");
            }
            b.putShort((short) (bits >>> 16));
        }
        return b.array();
    }
}
