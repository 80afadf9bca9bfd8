package dev.llmflash.converter;

import dev.llmflash.formats.FormatException;
import dev.llmflash.formats.LlmflashException;
import dev.llmflash.formats.bundle.Bundle;
import dev.llmflash.formats.bundle.BundleManifest;
import dev.llmflash.formats.bundle.FfnFileWriter;
import dev.llmflash.formats.bundle.FfnGeometry;
import dev.llmflash.formats.bundle.MappedPages;
import dev.llmflash.formats.bundle.Quantization;
import dev.llmflash.formats.hf.FalconConfig;
import dev.llmflash.formats.hf.HfCheckpoint;
import dev.llmflash.formats.hf.HfConfig;
import dev.llmflash.formats.hf.ModelConfig;
import dev.llmflash.formats.hf.OptConfig;
import dev.llmflash.formats.safetensors.SafetensorsFile;
import dev.llmflash.formats.safetensors.SafetensorsWriter;
import dev.llmflash.formats.tensor.DType;
import dev.llmflash.formats.tensor.Quant;
import dev.llmflash.formats.tensor.Tensor;

import java.io.IOException;
import java.io.InputStream;
import java.io.UncheckedIOException;
import java.lang.foreign.MemorySegment;
import java.nio.ByteBuffer;
import java.nio.channels.ClosedByInterruptException;
import java.nio.channels.FileChannel;
import java.nio.channels.WritableByteChannel;
import java.nio.file.Files;
import java.nio.file.LinkOption;
import java.nio.file.Path;
import java.nio.file.StandardOpenOption;
import java.time.Instant;
import java.time.temporal.ChronoUnit;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.HashSet;
import java.util.List;
import java.util.Map;
import java.util.Properties;
import java.util.Set;
import java.util.zip.CRC32C;

/**
 * Converts a Hugging Face model folder (OPT or Falcon; safetensors or PyTorch .bin, sharded or not)
 * into an llmflash bundle (docs/FORMAT.md):
 * <ol>
 *   <li>resident.safetensors: every tensor but the FFN weight matrices, in name order, float tensors
 *       converted to the bundle dtype or, with {@code --quant}, weight matrices quantized
 *       ({@link #residentType}; stored as U8 rows, the manifest records the logical dtype); a tied LM
 *       head identical to the embedding is left out;</li>
 *   <li>ffn.bin: each layer's up rows and down columns, bundled or split ({@link FfnFileWriter},
 *       fed by {@link LayerSource});</li>
 *   <li>the tokenizer files, copied byte for byte;</li>
 *   <li>manifest.json, last.</li>
 * </ol>
 *
 * <h2>Memory</h2>
 * Source tensors are memory-mapped and streamed: resident tensors 1 MiB at a time through
 * {@link SafetensorsWriter}'s {@code Content} callback, FFN weights a few MB of neurons at a time. The
 * heap stays at a few tens of MB whatever the model's size. Mapped pages are handed back to the kernel
 * once read ({@link MappedPages}), so the resident set stays near one down matrix rather than growing
 * to the model's size.
 *
 * <h2>Atomicity and errors</h2>
 * Everything is written into a temporary sibling folder and fsynced, the manifest last; the bundle is
 * re-opened (cheap checks) and then renamed into place ({@link StagingDirectory}). A failure or an
 * interrupt leaves neither an output nor a temporary folder. Problems a user can act on - an input
 * that is not a model folder, an unsupported architecture, an existing output, an unwritable or
 * missing output folder, too little disk space - are one-line {@link LlmflashException}s; free space
 * is checked before anything is written.
 *
 * <p>Thread-safety: one conversion per call; calls on different outputs may run concurrently.
 */
public final class Converter {
    /** Bytes of one resident-tensor chunk: converted, checksummed and written at once. */
    static final int RESIDENT_CHUNK_BYTES = 1 << 20;
    /** "llmflash" plus the build's version, for the manifest's created_by. */
    static final String CREATED_BY = "llmflash " + version();

    private final ConvertOptions options;
    private final Progress progress;
    private final HfCheckpoint hf;
    private final ModelConfig config;
    private final SourceLayout source;
    private final DType dtype;
    /** The FFN's dtype: the bundle dtype, or the quantized one. */
    private final DType ffnDtype;
    private final FfnGeometry geometry;
    /** The dtype each resident tensor is written in (its logical dtype: Q8_0 / Q4_0 where quantized). */
    private final Map<String, DType> residentTypes = new HashMap<>();
    private final List<Tensor> residentTensors = new ArrayList<>();
    private final Map<String, Integer> residentCrcs = new HashMap<>();
    private final List<Path> tokenizerSources = new ArrayList<>();
    private final SafetensorsWriter residentWriter = new SafetensorsWriter();
    private final long totalBytes;
    private final ByteBuffer chunk = ByteBuffer.allocateDirect(RESIDENT_CHUNK_BYTES);
    private final MemorySegment chunkSegment = MemorySegment.ofBuffer(chunk);
    /** Quantization's f32 rows (grown to a chunk's). */
    private float[] f32 = new float[0];
    private StagingDirectory staging;
    private Progress.Stage stage = Progress.Stage.RESIDENT;
    private long doneBytes;

    private Converter(ConvertOptions options, Progress progress, HfCheckpoint hf) {
        this.options = options;
        this.progress = progress;
        this.hf = hf;
        this.config = hf.config();
        this.source = SourceLayout.of(config, hf.weights());
        this.dtype = options.dtype() != null ? options.dtype() : hf.weights().tensor(source.up(0)).dtype();
        Quantization quant = options.quant();
        this.ffnDtype = quant == Quantization.NONE ? dtype : quant.matrices();
        if (!ffnDtype.fitsRow(config.hiddenSize())) {
            throw new LlmflashException("cannot quantize " + options.input() + " to " + quant.jsonName() + ": its"
                    + " hidden size " + config.hiddenSize() + " is not a multiple of the " + ffnDtype.blockSize()
                    + "-weight block; convert it without --quant");
        }
        this.geometry = FfnGeometry.of(options.layout(), ffnDtype, config.numLayers(), config.hiddenSize(),
                config.ffnSize());
        long residentBytes = planResident();
        long tokenizerBytes = planTokenizer();
        this.totalBytes = residentBytes + config.numLayers() * geometry.weightBytesPerLayer() + tokenizerBytes;
    }

    /**
     * Converts {@code options.input()} into a bundle at {@code options.output()}.
     *
     * @param progress told about the progress; an exception it throws aborts the conversion cleanly
     * @return what was written
     * @throws LlmflashException (or its FormatException) with a one-line message for any problem a user
     *         can act on; nothing is then left at the output or next to it
     */
    public static ConvertResult convert(ConvertOptions options, Progress progress) {
        long start = System.nanoTime();
        checkInput(options.input());
        checkOutput(options);
        Path parent = options.output().getParent();
        long needed = 0;
        long free = -1;
        try (HfCheckpoint hf = HfCheckpoint.open(options.input())) {
            Converter c = new Converter(options, progress, hf);
            needed = c.bytesNeeded();
            free = Files.getFileStore(parent).getUsableSpace();
            checkFreeSpace(parent, needed, free);
            List<Path> files = c.run();
            long written = 0;
            for (Path f : files) {
                written += Files.size(f);
            }
            ConvertResult result = new ConvertResult(options.output(), written, (System.nanoTime() - start) / 1e9, files,
                    c.sourceBytes());
            progress.finished(result);
            return result;
        } catch (IOException | UncheckedIOException | LlmflashException e) {
            if (isNoSpace(e)) {
                throw new LlmflashException("ran out of disk space writing the bundle in " + parent + ": it needs "
                        + needed + " bytes (" + TerminalProgress.size(needed) + ") and " + free + " bytes ("
                        + TerminalProgress.size(Math.max(0, free)) + ") were free when the conversion started;"
                        + " free some space or choose another output folder", e);
            }
            if (e instanceof LlmflashException le) {
                throw le;
            }
            if (e instanceof ClosedByInterruptException) {
                throw new LlmflashException("the conversion was interrupted; nothing was written to "
                        + options.output(), e);
            }
            throw new LlmflashException("cannot write the bundle " + options.output() + ": " + e.getMessage()
                    + " (check write permission and free space in " + parent + ")", e);
        }
    }

    // ------------------------------------------------------------------------------------------------
    // Checks before anything is written

    private static void checkInput(Path input) {
        if (!Files.exists(input)) {
            throw new FormatException(input, "does not exist", "check the path of the Hugging Face model folder");
        }
        if (!Files.isDirectory(input)) {
            throw new FormatException(input, "is a file, not a Hugging Face model folder",
                    "point at the folder that holds config.json and the weights");
        }
        if (Bundle.looksLikeBundle(input)) {
            throw new FormatException(input, "is already an llmflash bundle", "run it directly; convert only"
                    + " Hugging Face model folders");
        }
        if (!HfCheckpoint.looksLikeHfDir(input)) {
            throw new FormatException(input, "is not a Hugging Face model folder (it has no " + HfConfig.FILE_NAME + ")",
                    "point at the folder save_pretrained wrote, with config.json, the weights and the tokenizer files");
        }
    }

    private static void checkOutput(ConvertOptions options) {
        Path output = options.output();
        Path parent = output.getParent();
        if (Files.exists(parent) && !Files.isDirectory(parent)) {
            throw new LlmflashException("cannot create the bundle " + output + ": " + parent
                    + " is a file, not a folder (choose another output)");
        }
        if (!Files.isDirectory(parent)) {
            throw new LlmflashException("cannot create the bundle " + output + ": the folder " + parent
                    + " does not exist (create it first, or choose another output)");
        }
        if (!Files.isWritable(parent)) {
            throw new LlmflashException("cannot create the bundle " + output + ": the folder " + parent
                    + " is not writable (choose another output, or fix its permissions)");
        }
        if (Files.exists(output, LinkOption.NOFOLLOW_LINKS)) {
            if (!options.force()) {
                throw new LlmflashException(output + " already exists: use --force to replace it, or choose another"
                        + " output");
            }
            if (!Bundle.looksLikeBundle(output) && !isEmptyDirectory(output)) {
                // --force replaces bundles, never arbitrary user data.
                throw new LlmflashException(output + " exists and is not an llmflash bundle, so even --force will not"
                        + " replace it: remove it yourself or choose another output");
            }
        }
    }

    private static boolean isEmptyDirectory(Path dir) {
        if (!Files.isDirectory(dir, LinkOption.NOFOLLOW_LINKS)) {
            return false;
        }
        try (var entries = Files.list(dir)) {
            return entries.findAny().isEmpty();
        } catch (IOException e) {
            return false;
        }
    }

    /** @throws LlmflashException if {@code free} bytes cannot hold {@code needed} */
    static void checkFreeSpace(Path dir, long needed, long free) {
        if (free < needed) {
            throw new LlmflashException("not enough disk space for the bundle in " + dir + ": it needs " + needed
                    + " bytes (" + TerminalProgress.size(needed) + ") but only " + free + " bytes ("
                    + TerminalProgress.size(free) + ") are free; free some space or choose another output folder");
        }
    }

    /** True if {@code t} or a cause is the operating system's "disk full" error. */
    static boolean isNoSpace(Throwable t) {
        for (Throwable c = t; c != null; c = c.getCause()) {
            String m = c.getMessage();
            if (c instanceof IOException && m != null
                    && (m.contains("No space left on device") || m.contains("not enough space on the disk"))) {
                return true;
            }
        }
        return false;
    }

    // ------------------------------------------------------------------------------------------------
    // Planning

    /** Chooses the resident tensors and their dtypes, queues them on the writer; returns their bytes. */
    private long planResident() {
        var weights = hf.weights();
        Set<String> ffnNames = new HashSet<>();
        for (int i = 0; i < config.numLayers(); i++) {
            ffnNames.add(source.up(i));
            ffnNames.add(source.down(i));
        }
        boolean dropHead = tied() && source.lmHeadIsEmbedding(weights);
        long bytes = 0;
        for (String name : weights.tensorNames()) {
            if (ffnNames.contains(name) || (dropHead && name.equals(source.lmHead()))) {
                continue;
            }
            Tensor t = weights.tensor(name);
            if (DTypeConversion.isOtherFloat(t.dtype())) {
                throw new FormatException(weights.location(), "tensor '" + name + "' is " + t.dtype()
                        + ", which the converter cannot convert (it converts F64, F32, F16 and BF16)",
                        "use an unquantized checkpoint");
            }
            DType out = DTypeConversion.isConvertibleFloat(t.dtype()) ? residentType(t) : t.dtype();
            residentTensors.add(t);
            residentTypes.put(name, out);
            residentWriter.add(name, BundleManifest.storedDType(out), BundleManifest.storedShape(out, t.shape()),
                    ch -> writeResident(t, out, ch));
            bytes += out.storageBytes(t.shape());
        }
        // HF refuses safetensors without this metadata; it keeps the resident file loadable by HF tools too.
        residentWriter.metadata("format", "pt");
        return bytes;
    }

    /**
     * The dtype a float resident tensor is written in: without quantization the bundle dtype; with it,
     * the token embedding in {@link Quantization#embeddings()}, every other weight matrix (rank 2,
     * rows of whole blocks; not the learned position embeddings) in {@link Quantization#matrices()},
     * the rest (norms, biases, position embeddings) in the bundle dtype.
     */
    private DType residentType(Tensor t) {
        Quantization q = options.quant();
        if (q == Quantization.NONE || t.rank() != 2) {
            return dtype;
        }
        if (t.name().equals(source.embedding())) {
            return q.embeddings().fitsRow(t.shape()[1]) ? q.embeddings() : dtype;
        }
        if (t.name().contains("embed_positions")) {
            return dtype;
        }
        return q.matrices().fitsRow(t.shape()[1]) ? q.matrices() : dtype;
    }

    private boolean tied() {
        return switch (config) {
            case OptConfig c -> c.tieWordEmbeddings();
            case FalconConfig c -> c.tieWordEmbeddings();
        };
    }

    private long planTokenizer() {
        long bytes = 0;
        for (String name : Bundle.TOKENIZER_FILES) {
            Path p = options.input().resolve(name);
            if (Files.isRegularFile(p)) {
                tokenizerSources.add(p);
                try {
                    bytes += Files.size(p);
                } catch (IOException e) {
                    throw new FormatException(p, "cannot be read: " + e, "check that it is a readable file", e);
                }
            }
        }
        return bytes;
    }

    /** Bytes of the source read: every resident tensor, both FFN matrices of every layer, the tokenizer files. */
    private long sourceBytes() {
        long bytes = 0;
        for (Tensor t : residentTensors) {
            bytes += t.data().byteSize();
        }
        for (int i = 0; i < config.numLayers(); i++) {
            bytes += hf.weights().tensor(source.up(i)).data().byteSize();
            bytes += hf.weights().tensor(source.down(i)).data().byteSize();
        }
        for (Path p : tokenizerSources) {
            try {
                bytes += Files.size(p);
            } catch (IOException e) {
                // Sized once already when planned; the figure is informative.
            }
        }
        return bytes;
    }

    /** Bytes the bundle will occupy, with an allowance for the manifest and file-system blocks. */
    private long bytesNeeded() {
        long entries = residentTensors.size() + config.numLayers() + tokenizerSources.size();
        long manifest = (64 << 10) + 256 * entries;
        long blocks = 4096L * (3 + tokenizerSources.size());
        return 8 + residentWriter.header().length + totalBytes - config.numLayers() * geometry.weightBytesPerLayer()
                + geometry.fileSize() + manifest + blocks;
    }

    // ------------------------------------------------------------------------------------------------
    // Writing

    /** Writes the bundle into the staging folder and moves it into place; returns its files, manifest last. */
    private List<Path> run() throws IOException {
        try (StagingDirectory s = StagingDirectory.create(options.output())) {
            staging = s;
            Path dir = s.dir();
            advance(0);
            residentWriter.write(dir.resolve(Bundle.RESIDENT));

            stage = Progress.Stage.FFN;
            advance(0);
            List<BundleManifest.Block> blocks = writeFfn(dir.resolve(Bundle.FFN));

            stage = Progress.Stage.TOKENIZER;
            advance(0);
            List<BundleManifest.TokenizerFile> tokenizer = new ArrayList<>();
            for (Path src : tokenizerSources) {
                tokenizer.add(copy(src, dir.resolve(src.getFileName().toString())));
            }

            stage = Progress.Stage.MANIFEST;
            advance(0);
            manifest(dir, blocks, tokenizer).write(dir.resolve(Bundle.MANIFEST));
            s.syncDirectory();
            // The cheap checks every reader does: a bundle this converter cannot reopen must not appear.
            Bundle.open(dir).close();
            s.commit(options.force());

            List<Path> files = new ArrayList<>();
            files.add(options.output().resolve(Bundle.RESIDENT));
            files.add(options.output().resolve(Bundle.FFN));
            for (BundleManifest.TokenizerFile t : tokenizer) {
                files.add(options.output().resolve(t.file()));
            }
            files.add(options.output().resolve(Bundle.MANIFEST));
            return files;
        }
    }

    /** One resident tensor, converted 1 MiB at a time, checksummed on the way; source pages released. */
    private void writeResident(Tensor t, DType out, WritableByteChannel ch) throws IOException {
        if (out.isQuantized()) {
            writeQuantized(t, out, ch);
            return;
        }
        long inBytes = t.dtype().bytes();
        long outBytes = out.bytes();
        long perChunk = RESIDENT_CHUNK_BYTES / Math.max(inBytes, outBytes);
        long count = t.numel();
        CRC32C crc = new CRC32C();
        for (long first = 0; first < count; first += perChunk) {
            long n = Math.min(perChunk, count - first);
            MemorySegment src = t.data().asSlice(first * inBytes, n * inBytes);
            DTypeConversion.convert(src, t.dtype(), chunkSegment.asSlice(0, n * outBytes), out);
            ByteBuffer bb = chunk.clear().limit(Math.toIntExact(n * outBytes));
            crc.update(bb.duplicate());
            while (bb.hasRemaining()) {
                ch.write(bb);
            }
            MappedPages.release(src);
            advance(n * outBytes);
        }
        residentCrcs.put(t.name(), (int) crc.getValue());
    }

    /** A weight matrix quantized a chunk of rows at a time (through f32), checksummed, pages released. */
    private void writeQuantized(Tensor t, DType out, WritableByteChannel ch) throws IOException {
        int rows = t.dim(0);
        int cols = t.dim(1);
        long inRow = (long) cols * t.dtype().bytes();
        long outRow = out.rowBytes(cols);
        int perChunk = (int) Math.max(1, RESIDENT_CHUNK_BYTES / (4L * cols)); // f32 is the widest form of a row
        if (outRow > RESIDENT_CHUNK_BYTES) {
            throw new LlmflashException("tensor '" + t.name() + "' has rows of " + cols + " weights, too long to"
                    + " quantize here; convert without --quant");
        }
        if (f32.length < perChunk * cols) {
            f32 = new float[perChunk * cols];
        }
        CRC32C crc = new CRC32C();
        for (int first = 0; first < rows; first += perChunk) {
            int n = Math.min(perChunk, rows - first);
            MemorySegment src = t.data().asSlice(first * inRow, n * inRow);
            DTypeConversion.toFloats(src, t.dtype(), f32, n * cols);
            try {
                Quant.quantize(out, f32, 0, n, cols, chunkSegment, 0);
            } catch (IllegalArgumentException e) {
                throw new FormatException(hf.weights().location(), "tensor '" + t.name() + "' cannot be quantized to "
                        + out + " (row " + first + " ff.): " + e.getMessage(), "convert it without --quant", e);
            }
            ByteBuffer bb = chunk.clear().limit(Math.toIntExact(n * outRow));
            crc.update(bb.duplicate());
            while (bb.hasRemaining()) {
                ch.write(bb);
            }
            MappedPages.release(src);
            advance(n * outRow);
        }
        residentCrcs.put(t.name(), (int) crc.getValue());
    }

    private List<BundleManifest.Block> writeFfn(Path file) throws IOException {
        try (FfnFileWriter w = FfnFileWriter.create(file, geometry)) {
            LayerSource layer = new LayerSource(ffnDtype, config.hiddenSize(), config.ffnSize(), this::advance);
            for (int i = 0; i < config.numLayers(); i++) {
                layer.layer(hf.weights().tensor(source.up(i)), hf.weights().tensor(source.down(i)));
                try {
                    w.writeLayer(layer);
                } catch (IllegalArgumentException e) {
                    if (!ffnDtype.isQuantized()) {
                        throw e;
                    }
                    throw new FormatException(hf.weights().location(), "layer " + i + "'s FFN weights cannot be"
                            + " quantized to " + ffnDtype + ": " + e.getMessage(), "convert it without --quant", e);
                }
                layer.release();
            }
            return w.finish();
        }
    }

    /** Copies a file byte for byte, with its CRC32C, and forces it to disk. */
    private BundleManifest.TokenizerFile copy(Path src, Path dst) throws IOException {
        CRC32C crc = new CRC32C();
        long size = 0;
        try (FileChannel in = FileChannel.open(src, StandardOpenOption.READ);
             FileChannel out = FileChannel.open(dst, StandardOpenOption.CREATE_NEW, StandardOpenOption.WRITE)) {
            while (in.read(chunk.clear()) >= 0) {
                chunk.flip();
                crc.update(chunk.duplicate());
                size += chunk.remaining();
                advance(chunk.remaining());
                while (chunk.hasRemaining()) {
                    out.write(chunk);
                }
            }
            out.force(true);
        }
        return new BundleManifest.TokenizerFile(dst.getFileName().toString(), size, (int) crc.getValue());
    }

    private BundleManifest manifest(Path dir, List<BundleManifest.Block> blocks,
                                    List<BundleManifest.TokenizerFile> tokenizer) throws IOException {
        Path residentPath = dir.resolve(Bundle.RESIDENT);
        List<BundleManifest.ResidentTensor> table = new ArrayList<>();
        try (SafetensorsFile st = SafetensorsFile.open(residentPath)) {
            for (Tensor src : residentTensors) {
                Tensor t = st.tensor(src.name());
                DType logical = residentTypes.get(t.name());
                table.add(new BundleManifest.ResidentTensor(t.name(), logical, logical.isQuantized() ? src.shape()
                        : t.shape(), st.fileOffset(t.name()), t.data().byteSize(), residentCrcs.get(t.name())));
            }
        }
        BundleManifest.Resident resident = new BundleManifest.Resident(Bundle.RESIDENT, Files.size(residentPath), table);
        BundleManifest.Ffn ffn = BundleManifest.Ffn.of(Bundle.FFN, geometry, source.upNames(), source.downNames(), blocks);
        byte[] configJson = Files.readAllBytes(options.input().resolve(HfConfig.FILE_NAME));
        BundleManifest.Source src = new BundleManifest.Source(options.input().toString(),
                hf.weights().location().getFileName().toString(),
                BundleManifest.sourceFingerprint(configJson, hf.weights()));
        String fingerprint = BundleManifest.fingerprint(config, dtype, geometry.layout(), table, blocks);
        return new BundleManifest(CREATED_BY, Instant.now().truncatedTo(ChronoUnit.SECONDS), config, dtype, src,
                fingerprint, resident, ffn, tokenizer);
    }

    /** Counts written bytes, tells the progress, and stops if the JVM is shutting down or we were interrupted. */
    private void advance(long bytes) {
        doneBytes += bytes;
        if (staging != null) {
            staging.checkNotCancelled();
        }
        if (Thread.currentThread().isInterrupted()) {
            throw new LlmflashException("the conversion was interrupted; nothing was written to " + options.output());
        }
        progress.update(stage, doneBytes, totalBytes);
    }

    private static String version() {
        try (InputStream in = Converter.class.getResourceAsStream("version.properties")) {
            if (in != null) {
                Properties p = new Properties();
                p.load(in);
                String v = p.getProperty("version");
                if (v != null && !v.isBlank() && !v.startsWith("${")) {
                    return v;
                }
            }
        } catch (IOException e) {
            // Fall through: the version is informative only.
        }
        return "(unknown version)";
    }
}
