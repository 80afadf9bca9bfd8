package dev.llmflash.formats.bundle;

import java.io.IOException;
import java.lang.foreign.MemorySegment;
import java.nio.ByteBuffer;
import java.nio.channels.FileChannel;
import java.nio.charset.StandardCharsets;
import java.nio.file.Path;
import java.nio.file.StandardOpenOption;
import java.security.MessageDigest;
import java.security.NoSuchAlgorithmException;
import java.util.HexFormat;
import java.util.zip.CRC32C;

/**
 * The bundle's checksums: CRC32C (Castagnoli, {@link CRC32C}, hardware-accelerated by the JVM) over
 * tensors, FFN blocks and files, written as 8 lower-case hex digits; and SHA-256 fingerprints written
 * as 64 lower-case hex digits. Stateless and thread-safe.
 */
public final class Checksums {
    /** Bytes handed to the CRC at once: keeps ByteBuffer views of mapped memory far below 2 GiB. */
    private static final long CHUNK = 16L << 20;

    private Checksums() {
    }

    /**
     * CRC32C of a segment's bytes. When {@code release} is set and the segment is file-mapped, each
     * chunk's pages are given back to the kernel once summed ({@link MappedPages#release}), so that
     * checking a file larger than memory does not grow the process's resident set by the file's size.
     */
    public static int crc32c(MemorySegment data, boolean release) {
        CRC32C crc = new CRC32C();
        for (long off = 0; off < data.byteSize(); off += CHUNK) {
            MemorySegment chunk = data.asSlice(off, Math.min(CHUNK, data.byteSize() - off));
            crc.update(chunk.asByteBuffer());
            if (release) {
                MappedPages.release(chunk);
            }
        }
        return (int) crc.getValue();
    }

    /** CRC32C of a whole file, read sequentially (small files: the tokenizer files). */
    public static int crc32c(Path file) throws IOException {
        CRC32C crc = new CRC32C();
        ByteBuffer buf = ByteBuffer.allocate(1 << 20);
        try (FileChannel ch = FileChannel.open(file, StandardOpenOption.READ)) {
            while (ch.read(buf.clear()) >= 0) {
                crc.update(buf.flip());
            }
        }
        return (int) crc.getValue();
    }

    /** 8 lower-case hex digits, as the manifest writes a CRC32C. */
    public static String hex(int crc) {
        return HexFormat.of().toHexDigits(crc);
    }

    /** Parses 8 hex digits (either case); null if {@code s} is not exactly that. */
    public static Integer parseHex(String s) {
        if (s == null || s.length() != 8) {
            return null;
        }
        for (int i = 0; i < 8; i++) {
            if (Character.digit(s.charAt(i), 16) < 0) {
                return null;
            }
        }
        return (int) Long.parseLong(s, 16);
    }

    /** A fresh SHA-256 digest (present in every JDK). */
    public static MessageDigest sha256() {
        try {
            return MessageDigest.getInstance("SHA-256");
        } catch (NoSuchAlgorithmException e) {
            throw new IllegalStateException("the JDK has no SHA-256", e);
        }
    }

    /** Feeds the UTF-8 bytes of {@code s} to {@code digest}. */
    public static void update(MessageDigest digest, String s) {
        digest.update(s.getBytes(StandardCharsets.UTF_8));
    }

    /** The digest as 64 lower-case hex digits. */
    public static String hex(MessageDigest digest) {
        return HexFormat.of().formatHex(digest.digest());
    }

    /** True for exactly 64 lower-case hex digits (a SHA-256 as this format writes it). */
    public static boolean isSha256Hex(String s) {
        if (s == null || s.length() != 64) {
            return false;
        }
        for (int i = 0; i < s.length(); i++) {
            char c = s.charAt(i);
            if (!(c >= '0' && c <= '9') && !(c >= 'a' && c <= 'f')) {
                return false;
            }
        }
        return true;
    }
}
