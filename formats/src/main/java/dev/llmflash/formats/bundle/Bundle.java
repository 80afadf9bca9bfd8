package dev.llmflash.formats.bundle;

import dev.llmflash.formats.FormatException;
import dev.llmflash.formats.checkpoint.Checkpoint;
import dev.llmflash.formats.hf.ModelConfig;
import dev.llmflash.formats.safetensors.SafetensorsFile;
import dev.llmflash.formats.tensor.DType;
import dev.llmflash.formats.tensor.Tensor;

import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.Arrays;
import java.util.HashMap;
import java.util.HashSet;
import java.util.List;
import java.util.Map;
import java.util.Set;
import java.util.SortedSet;
import java.util.TreeSet;

/**
 * An llmflash bundle: a folder made by the converter (docs/FORMAT.md) holding
 * <pre>
 * manifest.json          {@link BundleManifest}: config, dtype, file sizes, tensor table, checksums
 * resident.safetensors   every tensor except the FFN weight matrices ({@link #resident()})
 * ffn.bin                the FFN weights, neuron-major ({@link #ffn()}, {@link FfnFile})
 * vocab.json, merges.txt, tokenizer.json, ...   copied byte for byte from the source folder
 * </pre>
 *
 * <h2>Validation</h2>
 * {@link #open} does the cheap checks, reading no weight bytes: the manifest ({@link BundleManifest#read});
 * every file's size against the manifest ("truncated" / "has N extra bytes"); ffn.bin's header against
 * the manifest ({@link FfnFile#open(Path, BundleManifest.Ffn)}); the resident tensor table against
 * resident.safetensors' header (names, dtypes, shapes, offsets, lengths); the tokenizer files' presence.
 * {@link #verify()} does the full check: the CRC32C of every resident tensor, FFN block and tokenizer
 * file (reading the whole bundle once).
 *
 * <h2>Ownership, threads, closing</h2>
 * Owns the mapped resident file and ffn.bin: tensors and blocks obtained from them are valid until
 * {@link #close()}. Immutable after open: concurrent reads are safe; close must not race with readers.
 */
public final class Bundle implements AutoCloseable {

    public static final String MANIFEST = BundleManifest.FILE_NAME;
    public static final String RESIDENT = "resident.safetensors";
    public static final String FFN = "ffn.bin";
    /**
     * The files copied from the source folder when present, so that the tokenizer (and generation
     * defaults) load from a bundle folder as from the Hugging Face one. The manifest lists them under
     * "tokenizer", generation_config.json included.
     */
    public static final List<String> TOKENIZER_FILES = List.of("vocab.json", "merges.txt", "tokenizer.json",
            "tokenizer_config.json", "special_tokens_map.json", "generation_config.json");

    private static final String FIX_CORRUPT = "the bundle is corrupt; re-convert the model";

    private final Path dir;
    private final BundleManifest manifest;
    private final SafetensorsFile resident;
    private final Checkpoint residentView;
    private final FfnFile ffn;

    private Bundle(Path dir, BundleManifest manifest, SafetensorsFile resident, FfnFile ffn) {
        this.dir = dir;
        this.manifest = manifest;
        this.resident = resident;
        this.residentView = quantizedView(resident, manifest);
        this.ffn = ffn;
    }

    /** True when {@code dir} looks like a bundle: a folder with a manifest.json. */
    public static boolean looksLikeBundle(Path dir) {
        return Files.isDirectory(dir) && Files.isRegularFile(dir.resolve(MANIFEST));
    }

    /**
     * Opens the bundle in {@code dir}, with the cheap checks of the class comment.
     *
     * @throws FormatException naming the file and the first problem
     */
    public static Bundle open(Path dir) {
        if (!Files.exists(dir)) {
            throw new FormatException(dir, "does not exist", "check the --model path");
        }
        if (!Files.isDirectory(dir)) {
            throw new FormatException(dir, "is a file, not a bundle folder", "point --model at the bundle's folder");
        }
        if (!Files.isRegularFile(dir.resolve(MANIFEST))) {
            throw new FormatException(dir, "is not an llmflash bundle (it has no " + MANIFEST + ")",
                    "convert a Hugging Face model folder with 'llmflash convert', or point --model at a bundle");
        }
        BundleManifest m = BundleManifest.read(dir.resolve(MANIFEST));

        Path residentPath = dir.resolve(m.resident().file());
        checkSize(residentPath, m.resident().size());
        Path ffnPath = dir.resolve(m.ffn().file());
        checkSize(ffnPath, m.ffn().size());
        for (BundleManifest.TokenizerFile t : m.tokenizer()) {
            checkSize(dir.resolve(t.file()), t.size());
        }

        SafetensorsFile resident = SafetensorsFile.open(residentPath);
        FfnFile ffn = null;
        try {
            checkResidentTable(residentPath, resident, m.resident().tensors());
            ffn = FfnFile.open(ffnPath, m.ffn());
            return new Bundle(dir, m, resident, ffn);
        } catch (RuntimeException | Error e) {
            resident.close();
            if (ffn != null) {
                ffn.close();
            }
            throw e;
        }
    }

    /** The resident file as the manifest describes it: quantized tensors retyped, the rest as stored. */
    private static Checkpoint quantizedView(SafetensorsFile st, BundleManifest m) {
        Map<String, BundleManifest.ResidentTensor> quantized = new HashMap<>();
        for (BundleManifest.ResidentTensor t : m.resident().tensors()) {
            if (t.dtype().isQuantized()) {
                quantized.put(t.name(), t);
            }
        }
        if (quantized.isEmpty()) {
            return st;
        }
        return new Checkpoint() {
            @Override
            public Path location() {
                return st.location();
            }

            @Override
            public SortedSet<String> tensorNames() {
                return st.tensorNames();
            }

            @Override
            public Tensor tensor(String name) {
                Tensor stored = st.tensor(name);
                BundleManifest.ResidentTensor q = quantized.get(name);
                return q == null ? stored : new Tensor(name, q.dtype(), q.shape(), stored.data());
            }

            @Override
            public void close() {
                st.close();
            }
        };
    }

    private static void checkSize(Path file, long expected) {
        long actual;
        try {
            if (!Files.isRegularFile(file)) {
                throw new FormatException(file, "is missing (manifest.json lists it)", FIX_CORRUPT);
            }
            actual = Files.size(file);
        } catch (IOException e) {
            throw new FormatException(file, "cannot be read: " + e, "check that it is a readable file", e);
        }
        FfnFile.checkSize(file, actual, expected, "manifest.json says");
    }

    private static void checkResidentTable(Path file, SafetensorsFile st, List<BundleManifest.ResidentTensor> table) {
        Set<String> listed = new HashSet<>();
        for (BundleManifest.ResidentTensor t : table) {
            listed.add(t.name());
            if (!st.contains(t.name())) {
                throw new FormatException(file, "has no tensor '" + t.name() + "' but manifest.json lists it",
                        FIX_CORRUPT);
            }
            Tensor actual = st.tensor(t.name());
            long offset = st.fileOffset(t.name());
            if (actual.dtype() != BundleManifest.storedDType(t.dtype())
                    || !Arrays.equals(actual.shape(), BundleManifest.storedShape(t.dtype(), t.shape()))
                    || offset != t.offset()
                    || actual.data().byteSize() != t.length()) {
                throw new FormatException(file, "tensor '" + t.name() + "' is " + actual.shapeString() + " at bytes ["
                        + offset + ", " + (offset + actual.data().byteSize()) + ") but manifest.json says "
                        + BundleManifest.storedDType(t.dtype()) + Arrays.toString(BundleManifest.storedShape(t.dtype(), t.shape()))
                        + " at [" + t.offset() + ", " + (t.offset() + t.length())
                        + ")", FIX_CORRUPT);
            }
        }
        Set<String> extra = new TreeSet<>(st.tensorNames());
        extra.removeAll(listed);
        if (!extra.isEmpty()) {
            throw new FormatException(file, "has tensor '" + extra.iterator().next() + "' that manifest.json does not"
                    + " list" + (extra.size() > 1 ? " (and " + (extra.size() - 1) + " more)" : ""), FIX_CORRUPT);
        }
    }

    /**
     * Reads the whole bundle and checks every CRC32C the manifest records: each resident tensor, each FFN
     * layer block, each copied file. Pages are released as they are checked, so verifying a bundle
     * larger than memory does not fill the process's memory.
     *
     * @throws FormatException naming the file and the tensor, layer or file that fails its checksum
     */
    public void verify() {
        Path residentPath = dir.resolve(manifest.resident().file());
        for (BundleManifest.ResidentTensor t : manifest.resident().tensors()) {
            int crc = Checksums.crc32c(resident.tensor(t.name()).data(), true);
            if (crc != t.crc32c()) {
                throw new FormatException(residentPath, "tensor '" + t.name() + "' fails its checksum (crc32c "
                        + Checksums.hex(crc) + ", expected " + Checksums.hex(t.crc32c()) + "): the file is corrupt",
                        "re-convert the model");
            }
        }
        for (BundleManifest.Block b : manifest.ffn().blocks()) {
            int crc = Checksums.crc32c(ffn.block(b.layer()), true);
            if (crc != b.crc32c()) {
                throw new FormatException(ffn.path(), "layer " + b.layer() + "'s FFN block fails its checksum (crc32c "
                        + Checksums.hex(crc) + ", expected " + Checksums.hex(b.crc32c()) + "): the file is corrupt",
                        "re-convert the model");
            }
        }
        for (BundleManifest.TokenizerFile t : manifest.tokenizer()) {
            Path p = dir.resolve(t.file());
            int crc;
            try {
                crc = Checksums.crc32c(p);
            } catch (IOException e) {
                throw new FormatException(p, "cannot be read: " + e, "check that it is a readable file", e);
            }
            if (crc != t.crc32c()) {
                throw new FormatException(p, "fails its checksum (crc32c " + Checksums.hex(crc) + ", expected "
                        + Checksums.hex(t.crc32c()) + "): the file is corrupt", "re-convert the model");
            }
        }
    }

    public Path dir() {
        return dir;
    }

    public BundleManifest manifest() {
        return manifest;
    }

    public ModelConfig config() {
        return manifest.config();
    }

    /**
     * The bundle's float dtype: of every float resident tensor that is not quantized, and of the FFN
     * weights unless the bundle is quantized ({@link #ffn()}'s dtype says; {@link BundleManifest#quant()}).
     */
    public DType dtype() {
        return manifest.dtype();
    }

    /**
     * Every tensor but the FFN weight matrices, under its Hugging Face name, with the dtype and shape
     * the manifest records (a quantized tensor comes out as Q8_0 / Q4_0 of its logical shape, over the
     * U8 bytes resident.safetensors stores); owned by this bundle.
     */
    public Checkpoint resident() {
        return residentView;
    }

    /** The FFN weights; owned by this bundle. */
    public FfnFile ffn() {
        return ffn;
    }

    /** Closes ffn.bin and resident.safetensors; what they handed out becomes invalid. Idempotent. */
    @Override
    public void close() {
        try {
            ffn.close();
        } finally {
            resident.close();
        }
    }

    @Override
    public String toString() {
        return "Bundle[" + dir + ", " + manifest.config().modelType() + " " + manifest.dtype() + " "
                + manifest.ffn().layout().jsonName() + "]";
    }
}
