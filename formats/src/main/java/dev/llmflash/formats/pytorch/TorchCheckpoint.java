package dev.llmflash.formats.pytorch;

import dev.llmflash.formats.FormatException;
import dev.llmflash.formats.checkpoint.Checkpoint;
import dev.llmflash.formats.checkpoint.ShardedCheckpoint;
import dev.llmflash.formats.pytorch.SafeUnpickler.StorageRef;
import dev.llmflash.formats.pytorch.SafeUnpickler.TensorRef;
import dev.llmflash.formats.tensor.Tensor;
import org.apache.commons.compress.archivers.zip.ZipArchiveEntry;
import org.apache.commons.compress.archivers.zip.ZipFile;
import org.apache.commons.compress.archivers.zip.ZipMethod;

import java.io.IOException;
import java.io.InputStream;
import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.nio.channels.FileChannel;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.NoSuchFileException;
import java.nio.file.Path;
import java.nio.file.StandardOpenOption;
import java.util.Arrays;
import java.util.Collections;
import java.util.Enumeration;
import java.util.HashMap;
import java.util.Map;
import java.util.SortedSet;
import java.util.TreeMap;
import java.util.TreeSet;
import java.util.concurrent.atomic.AtomicBoolean;

/**
 * A PyTorch {@code pytorch_model.bin} written by {@code torch.save} (the zip format, default since
 * torch 1.6), opened without Python and without running its pickle.
 *
 * <h2>Layout</h2>
 * A zip archive (zip64 when large) whose entries all live under one folder {@code <archive>/}
 * (torch names it after the file, e.g. {@code pytorch_model/}):
 * <pre>
 * &lt;archive&gt;/data.pkl                 pickle (protocol 2) of the state dict; storages appear as persistent ids
 *                                    ('storage', torch.HalfStorage, '&lt;key&gt;', 'cpu', numel)
 * &lt;archive&gt;/data/&lt;key&gt;               raw little-endian bytes of one storage, STORED (not compressed),
 *                                    data start aligned to 64 bytes by torch (.storage_alignment)
 * &lt;archive&gt;/byteorder                "little" (absent in files from torch &lt; 1.13, which were little-endian)
 * &lt;archive&gt;/version                  archive format version, "3" today (torch's reader accepts 1..10)
 * &lt;archive&gt;/.format_version, .storage_alignment, .data/serialization_id   not needed here
 * </pre>
 * A tensor is {@code (storage, storage offset, size, stride)} in elements of its dtype, decoded by
 * {@link SafeUnpickler}, which refuses any pickle that asks for more than a state dict needs.
 *
 * <h2>Memory</h2>
 * The whole file is memory-mapped once (read-only, {@link Arena#ofShared()}); a contiguous tensor is a
 * slice of its storage in place, so several tensors sharing a storage (tied weights) share bytes.
 * A non-contiguous tensor (a transposed or strided view saved as such) is copied once, at open, into a
 * contiguous off-heap buffer owned by this checkpoint (at most the file's size plus
 * {@link #COPY_ALLOWANCE} in all, so a tiny hostile file cannot demand terabytes). A compressed storage entry is refused: torch
 * never writes one, and decompressing would defeat mapping.
 *
 * <h2>Ownership and threads</h2>
 * Owns the mapping and the copies; {@link #close()} releases both, after which every tensor's data is
 * invalid. Immutable once opened: concurrent reads are safe; close must not race with readers.
 * The legacy pre-1.6 format (a bare pickle stream) is recognised and refused.
 */
public final class TorchCheckpoint implements Checkpoint {

    /** Local file header signature "PK\3\4"; "PK\5\6" starts an empty archive. */
    private static final byte[] ZIP_MAGIC = {'P', 'K', 3, 4};
    private static final byte[] ZIP_EMPTY_MAGIC = {'P', 'K', 5, 6};
    /**
     * The legacy format begins with pickle.dumps(0x1950a86a20f9469cfc6c, protocol=2) without the STOP:
     * PROTO 2, LONG1 of 10 bytes (torch/serialization.py MAGIC_NUMBER).
     */
    private static final byte[] LEGACY_MAGIC = {
            (byte) 0x80, 0x02, (byte) 0x8a, 0x0a, 0x6c, (byte) 0xfc, (byte) 0x9c, 0x46,
            (byte) 0xf9, 0x20, 0x6a, (byte) 0xa8, 0x50, 0x19};
    /** Highest archive version torch's PyTorchStreamReader accepts (kMaxSupportedFileFormatVersion). */
    static final int MAX_ARCHIVE_VERSION = 10;
    /**
     * Bytes of contiguous copies of non-contiguous views allowed beyond the file's own size: honest
     * views (transposes) never need more than their storage, but a broadcast (stride 0) view may, and a
     * hostile one could ask for terabytes from a tiny file.
     */
    static final long COPY_ALLOWANCE = 64L << 20;
    private static final String FIX_REDOWNLOAD = "the file is truncated or corrupt; re-download it";

    private final Path file;
    private final Arena arena;
    private final Map<String, Tensor> tensors;
    private final SortedSet<String> names;
    private final AtomicBoolean closed = new AtomicBoolean();

    private TorchCheckpoint(Path file, Arena arena, Map<String, Tensor> tensors) {
        this.file = file;
        this.arena = arena;
        this.tensors = tensors;
        this.names = Collections.unmodifiableSortedSet(new TreeSet<>(tensors.keySet()));
    }

    /**
     * Opens and validates a {@code torch.save} zip checkpoint: every tensor is checked against its
     * storage and every storage against the file before this returns.
     *
     * @throws FormatException if the file is not such a checkpoint, is damaged, or its pickle asks for
     *         anything a state dict does not need
     */
    public static TorchCheckpoint open(Path file) {
        long fileSize;
        try {
            fileSize = Files.size(file);
        } catch (NoSuchFileException e) {
            throw new FormatException(file, "does not exist", "check the path", e);
        } catch (IOException e) {
            throw new FormatException(file, "cannot be read: " + oneLine(e), "check that the file exists and is readable", e);
        }
        checkMagic(file, fileSize);
        Archive archive = readArchive(file, fileSize);
        Map<String, TensorRef> refs = SafeUnpickler.readStateDict(file, archive.pickle);

        Arena arena = Arena.ofShared();
        try {
            MemorySegment mapped;
            try (FileChannel ch = FileChannel.open(file, StandardOpenOption.READ)) {
                mapped = ch.map(FileChannel.MapMode.READ_ONLY, 0, fileSize, arena);
            }
            Map<String, MemorySegment> storages = new HashMap<>();
            Map<String, StorageRef> seen = new HashMap<>();
            Map<String, Tensor> tensors = new TreeMap<>();
            long[] copyBudget = {fileSize + COPY_ALLOWANCE};
            for (Map.Entry<String, TensorRef> e : refs.entrySet()) {
                TensorRef t = e.getValue();
                StorageRef s = t.storage();
                StorageRef earlier = seen.putIfAbsent(s.key(), s);
                if (earlier != null && (earlier.dtype() != s.dtype() || earlier.numel() != s.numel())) {
                    throw new FormatException(file, "its pickle describes storage '" + SafeUnpickler.printable(s.key())
                            + "' twice, as " + earlier.numel() + " x " + earlier.dtype() + " and as " + s.numel() + " x " + s.dtype(),
                            FIX_REDOWNLOAD);
                }
                MemorySegment storage = storages.get(s.key());
                if (storage == null) {
                    storage = storage(file, archive, s, mapped);
                    storages.put(s.key(), storage);
                }
                tensors.put(e.getKey(), view(file, e.getKey(), t, storage, arena, copyBudget));
            }
            return new TorchCheckpoint(file, arena, tensors);
        } catch (IOException e) {
            arena.close();
            throw new FormatException(file, "cannot be memory-mapped: " + oneLine(e), "check that the file is readable", e);
        } catch (RuntimeException e) {
            arena.close();
            throw e;
        }
    }

    /**
     * Opens a sharded PyTorch checkpoint from its {@code pytorch_model.bin.index.json}.
     *
     * @throws FormatException if the index or any shard is bad, or a shard is missing (named)
     */
    public static Checkpoint openSharded(Path indexJson) {
        return ShardedCheckpoint.open(indexJson, TorchCheckpoint::open);
    }

    // ---------------------------------------------------------------- archive

    /** What we need from the zip directory: the pickle and each entry by name. */
    private record Archive(String prefix, byte[] pickle, Map<String, ZipArchiveEntry> entries, long fileSize) {
    }

    private static void checkMagic(Path file, long fileSize) {
        byte[] head = new byte[LEGACY_MAGIC.length];
        int n;
        try (InputStream in = Files.newInputStream(file)) {
            n = in.readNBytes(head, 0, head.length);
        } catch (IOException e) {
            throw new FormatException(file, "cannot be read: " + oneLine(e), "check that the file exists and is readable", e);
        }
        if (startsWith(head, n, ZIP_MAGIC) || startsWith(head, n, ZIP_EMPTY_MAGIC)) {
            return;
        }
        if (startsWith(head, n, LEGACY_MAGIC)) {
            throw new FormatException(file, "legacy PyTorch format (before 1.6) is not supported",
                    "re-save with torch.save or convert to safetensors");
        }
        throw new FormatException(file, fileSize == 0 ? "is empty" : "is not a PyTorch checkpoint (torch.save writes a zip archive; this file does not start with one)",
                "point at a pytorch_model.bin written by torch.save, or at a safetensors checkpoint");
    }

    private static boolean startsWith(byte[] head, int n, byte[] magic) {
        return n >= magic.length && Arrays.equals(head, 0, magic.length, magic, 0, magic.length);
    }

    private static Archive readArchive(Path file, long fileSize) {
        try (ZipFile zip = ZipFile.builder().setPath(file).get()) {
            Map<String, ZipArchiveEntry> entries = new HashMap<>();
            String prefix = null;
            for (Enumeration<ZipArchiveEntry> it = zip.getEntries(); it.hasMoreElements(); ) {
                ZipArchiveEntry e = it.nextElement();
                if (entries.put(e.getName(), e) != null) {
                    throw new FormatException(file, "has two zip entries named '" + SafeUnpickler.printable(e.getName()) + "'",
                            "the archive is corrupt or crafted; re-download it");
                }
                String name = e.getName();
                int slash = name.indexOf('/');
                if (slash > 0 && name.substring(slash).equals("/data.pkl")) {
                    if (prefix != null) {
                        throw new FormatException(file, "holds two pickles ('" + prefix + "data.pkl' and '" + SafeUnpickler.printable(name) + "')",
                                "the archive is corrupt or not written by torch.save; re-download it");
                    }
                    prefix = name.substring(0, slash + 1);
                }
            }
            if (prefix == null) {
                throw new FormatException(file, "is a zip archive without a '<name>/data.pkl' entry, so not a torch.save checkpoint",
                        "point at a pytorch_model.bin written by torch.save, or at a safetensors checkpoint");
            }
            ZipArchiveEntry byteorder = entries.get(prefix + "byteorder");
            if (byteorder != null) {
                String order = new String(read(file, zip, byteorder, 16), StandardCharsets.US_ASCII).strip();
                if (!order.equals("little")) {
                    throw new FormatException(file, "stores its tensors in '" + SafeUnpickler.printable(order) + "' byte order; only little-endian is supported",
                            "re-save it on a little-endian machine or convert it to safetensors");
                }
            }
            ZipArchiveEntry version = entries.get(prefix + "version");
            if (version != null) {
                String v = new String(read(file, zip, version, 16), StandardCharsets.US_ASCII).strip();
                if (!v.matches("[0-9]{1,3}") || Integer.parseInt(v) < 1 || Integer.parseInt(v) > MAX_ARCHIVE_VERSION) {
                    throw new FormatException(file, "has archive version '" + SafeUnpickler.printable(v) + "'; torch writes 1 to "
                            + MAX_ARCHIVE_VERSION, "the file is corrupt or from an unknown torch; re-save it or convert it to safetensors");
                }
            }
            ZipArchiveEntry pkl = entries.get(prefix + "data.pkl");
            byte[] pickle = read(file, zip, pkl, SafeUnpickler.MAX_PICKLE_BYTES);
            return new Archive(prefix, pickle, Map.copyOf(entries), fileSize);
        } catch (IOException e) {
            throw new FormatException(file, "is not a readable zip archive: " + oneLine(e), FIX_REDOWNLOAD, e);
        } catch (FormatException e) {
            throw e;
        } catch (RuntimeException e) {
            // commons-compress signals some malformed structures (e.g. extra fields) with unchecked exceptions.
            throw new FormatException(file, "is not a readable zip archive: " + oneLine(e), FIX_REDOWNLOAD, e);
        }
    }

    /** A small entry's bytes (the pickle, version, byteorder), any compression, at most {@code max}. */
    private static byte[] read(Path file, ZipFile zip, ZipArchiveEntry e, int max) throws IOException {
        long size = e.getSize();
        if (size < 0 || size > max) {
            throw new FormatException(file, "has entry '" + SafeUnpickler.printable(e.getName()) + "' of " + size
                    + " bytes, more than the " + max + " expected", "the archive is corrupt or not a state dict; re-download it");
        }
        if (!zip.canReadEntryData(e)) {
            throw new FormatException(file, "has entry '" + SafeUnpickler.printable(e.getName())
                    + "' that is encrypted or uses an unsupported compression", "re-save it with torch.save");
        }
        try (InputStream in = zip.getInputStream(e)) {
            byte[] b = in.readNBytes((int) size);
            if (b.length != size || in.read() != -1) {
                throw new FormatException(file, "has entry '" + SafeUnpickler.printable(e.getName()) + "' whose data does not match its declared size "
                        + size, FIX_REDOWNLOAD);
            }
            return b;
        }
    }

    /** The bytes of one storage, in place in the mapping, after every check against the file. */
    private static MemorySegment storage(Path file, Archive archive, StorageRef s, MemorySegment mapped) {
        String name = archive.prefix() + "data/" + s.key();
        String shown = SafeUnpickler.printable(name);
        ZipArchiveEntry e = archive.entries().get(name);
        if (e == null) {
            throw new FormatException(file, "its pickle refers to storage '" + SafeUnpickler.printable(s.key())
                    + "' but the archive has no entry '" + shown + "'", FIX_REDOWNLOAD);
        }
        if (e.getGeneralPurposeBit().usesEncryption()) {
            throw new FormatException(file, "storage entry '" + shown + "' is encrypted", "re-save it with torch.save");
        }
        if (e.getMethod() != ZipMethod.STORED.getCode()) {
            ZipMethod m = ZipMethod.getMethodByCode(e.getMethod());
            throw new FormatException(file, "storage entry '" + shown + "' is compressed (" + (m == null ? "method " + e.getMethod() : m)
                    + "); torch.save stores tensors uncompressed so they can be mapped in place",
                    "re-save it with torch.save (do not re-zip it), or convert it to safetensors");
        }
        long expected;
        try {
            expected = s.byteSize();
        } catch (ArithmeticException ex) {
            throw new FormatException(file, "its pickle gives storage '" + SafeUnpickler.printable(s.key()) + "' an impossible size of "
                    + s.numel() + " elements", FIX_REDOWNLOAD);
        }
        long size = e.getSize();
        if (size != expected || e.getCompressedSize() != size) {
            throw new FormatException(file, "storage entry '" + shown + "' holds " + size + " bytes but its pickle says "
                    + s.numel() + " x " + s.dtype() + " = " + expected + " bytes", FIX_REDOWNLOAD);
        }
        long offset = e.getDataOffset();
        if (offset < 0 || offset > archive.fileSize() || size > archive.fileSize() - offset) {
            throw new FormatException(file, "storage entry '" + shown + "' spans bytes " + offset + ".." + (offset + size)
                    + " but the file has " + archive.fileSize() + " bytes", FIX_REDOWNLOAD);
        }
        return mapped.asSlice(offset, size);
    }

    /**
     * A tensor's bytes: a slice of its storage when contiguous, otherwise a contiguous copy in
     * {@code arena} charged to {@code copyBudget} (a broadcast view can be far larger than the file).
     */
    private static Tensor view(Path file, String name, TensorRef t, MemorySegment storage, Arena arena, long[] copyBudget) {
        String shown = SafeUnpickler.printable(name);
        long[] size = t.size();
        long[] stride = t.stride();
        int bytes = t.dtype().bytes();
        long numel;
        long end;
        long endByte;
        try {
            numel = t.numel();
            end = t.storageEnd();
            endByte = Math.multiplyExact(end, bytes);
            Math.multiplyExact(numel, bytes);
        } catch (ArithmeticException ex) {
            throw new FormatException(file, "tensor '" + shown + "' has an impossible shape " + Arrays.toString(size)
                    + " / stride " + Arrays.toString(stride), FIX_REDOWNLOAD);
        }
        if (endByte > storage.byteSize()) {
            throw new FormatException(file, "tensor '" + shown + "' " + t.dtype() + Arrays.toString(size) + " (offset "
                    + t.storageOffset() + ", stride " + Arrays.toString(stride) + ") reaches element " + end
                    + " but its storage '" + SafeUnpickler.printable(t.storage().key()) + "' has " + storage.byteSize() / bytes,
                    FIX_REDOWNLOAD);
        }
        if (t.isContiguous()) {
            return new Tensor(name, t.dtype(), size, storage.asSlice(t.storageOffset() * bytes, numel * bytes));
        }
        if (numel * bytes > copyBudget[0]) {
            throw new FormatException(file, "tensor '" + shown + "' " + t.dtype() + Arrays.toString(size) + " is a strided view (stride "
                    + Arrays.toString(stride) + ") whose contiguous copy would need " + numel * bytes
                    + " bytes, more than this reader allows for the file's size",
                    "save tensor.contiguous() / .clone() instead of an expanded view, or convert to safetensors");
        }
        copyBudget[0] -= numel * bytes;
        return new Tensor(name, t.dtype(), size, gather(t, storage, arena));
    }

    /**
     * Copies a strided view into a fresh row-major buffer. Legend: {@code idx} is the multi-index of
     * the next element (odometer, last dimension fastest), {@code src} its storage element index
     * {@code offset + sum(idx[d] * stride[d])}.
     */
    private static MemorySegment gather(TensorRef t, MemorySegment storage, Arena arena) {
        long[] size = t.size();
        long[] stride = t.stride();
        int bytes = t.dtype().bytes();
        long numel = t.numel();
        MemorySegment out = arena.allocate(numel * bytes, 64);
        int rank = size.length;
        long[] idx = new long[rank];
        long src = t.storageOffset();
        for (long i = 0; i < numel; i++) {
            MemorySegment.copy(storage, src * bytes, out, i * bytes, bytes);
            for (int d = rank - 1; d >= 0; d--) {
                if (++idx[d] < size[d]) {
                    src += stride[d];
                    break;
                }
                src -= (size[d] - 1) * stride[d];
                idx[d] = 0;
            }
        }
        return out;
    }

    private static String oneLine(Exception e) {
        String m = e.getMessage() == null ? e.getClass().getSimpleName() : e.getMessage();
        return m.replaceAll("\\s+", " ").strip();
    }

    // ---------------------------------------------------------------- Checkpoint

    @Override
    public Path location() {
        return file;
    }

    @Override
    public SortedSet<String> tensorNames() {
        return names;
    }

    @Override
    public Tensor tensor(String name) {
        if (closed.get()) {
            throw new IllegalStateException(file + " is closed");
        }
        Tensor t = tensors.get(name);
        if (t == null) {
            throw new FormatException(file, "has no tensor '" + name + "'",
                    "the checkpoint is incomplete or of another architecture");
        }
        return t;
    }

    /** Unmaps the file and frees the copies; idempotent. */
    @Override
    public void close() {
        if (closed.compareAndSet(false, true)) {
            arena.close();
        }
    }

    @Override
    public String toString() {
        return "TorchCheckpoint[" + file + ", " + tensors.size() + " tensors]";
    }
}
