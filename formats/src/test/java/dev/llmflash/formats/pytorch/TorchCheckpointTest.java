package dev.llmflash.formats.pytorch;

import dev.llmflash.formats.FormatException;
import dev.llmflash.formats.pytorch.PickleWriter.TensorSpec;
import dev.llmflash.formats.tensor.DType;
import dev.llmflash.formats.tensor.Tensor;
import dev.llmflash.formats.testing.TestData;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

import java.io.IOException;
import java.lang.foreign.ValueLayout;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.HexFormat;
import java.util.List;
import java.util.Set;
import java.util.TreeSet;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

class TorchCheckpointTest {

    @TempDir
    Path dir;

    // ------------------------------------------------------------------ the committed real checkpoint

    /**
     * Oracle from python3 (zipfile + pickle with a find_class that only builds tuples, and numpy):
     * name | storage key | shape | sum of all elements (f64) | sum of squares (f64) | first three fp16
     * bit patterns | last bit pattern. Produced independently of this reader from the file itself.
     */
    private static final String ORACLE = """
            model.decoder.embed_tokens.weight|0|8192,32|-28.11955451965332|105.13617039303213|0xa0c1,0x28e8,0x245e|0x272a
            model.decoder.embed_positions.weight|1|130,64|0.6192944049835205|3.3245569149314704|0xa6e1,0x23a2,0x1d72|0xa09d
            model.decoder.project_out.weight|2|32,64|1.8812313079833984|0.8055290015879422|0x9e08,0x2b24,0x28e2|0xa2f6
            model.decoder.project_in.weight|3|64,32|0.2744452953338623|0.8459391877144853|0xa2b6,0xa40f,0x9ed9|0x23a4
            model.decoder.layers.0.self_attn.k_proj.weight|4|64,64|-0.023528993129730225|1.6376092532084066|0x9eda,0x180f,0x28de|0xa07c
            model.decoder.layers.0.self_attn.k_proj.bias|5|64|0.0|0.0|0x0000,0x0000,0x0000|0x0000
            model.decoder.layers.0.self_attn.v_proj.weight|6|64,64|-0.08126604557037354|1.6087734803425917|0x1687,0xa88c,0x28b7|0x1435
            model.decoder.layers.0.self_attn.v_proj.bias|7|64|0.0|0.0|0x0000,0x0000,0x0000|0x0000
            model.decoder.layers.0.self_attn.q_proj.weight|8|64,64|0.6376773118972778|1.6554204238631485|0x0695,0xaa1c,0x1a9b|0x2840
            model.decoder.layers.0.self_attn.q_proj.bias|9|64|0.0|0.0|0x0000,0x0000,0x0000|0x0000
            model.decoder.layers.0.self_attn.out_proj.weight|10|64,64|0.1315942406654358|1.5911687134640893|0x2678,0x2509,0x286d|0xa4ef
            model.decoder.layers.0.self_attn.out_proj.bias|11|64|0.0|0.0|0x0000,0x0000,0x0000|0x0000
            model.decoder.layers.0.self_attn_layer_norm.weight|12|64|64.0|64.0|0x3c00,0x3c00,0x3c00|0x3c00
            model.decoder.layers.0.self_attn_layer_norm.bias|13|64|0.0|0.0|0x0000,0x0000,0x0000|0x0000
            model.decoder.layers.0.fc1.weight|14|256,64|2.2211772799491882|6.623065013915362|0xa006,0xa133,0x9c06|0x2218
            model.decoder.layers.0.fc1.bias|15|256|0.0|0.0|0x0000,0x0000,0x0000|0x0000
            model.decoder.layers.0.fc2.weight|16|64,256|3.2072303891181946|6.590510868523342|0x22fb,0xa705,0x24e8|0x1da7
            model.decoder.layers.0.fc2.bias|17|64|0.0|0.0|0x0000,0x0000,0x0000|0x0000
            model.decoder.layers.0.final_layer_norm.weight|18|64|64.0|64.0|0x3c00,0x3c00,0x3c00|0x3c00
            model.decoder.layers.0.final_layer_norm.bias|19|64|0.0|0.0|0x0000,0x0000,0x0000|0x0000
            model.decoder.layers.1.self_attn.k_proj.weight|20|64,64|1.2752012610435486|1.6864255493608304|0xa4d1,0x2451,0x28b9|0xa127
            model.decoder.layers.1.self_attn.k_proj.bias|21|64|0.0|0.0|0x0000,0x0000,0x0000|0x0000
            model.decoder.layers.1.self_attn.v_proj.weight|22|64,64|-2.639962315559387|1.65187623715196|0xa51f,0xa7b9,0x274f|0xa428
            model.decoder.layers.1.self_attn.v_proj.bias|23|64|0.0|0.0|0x0000,0x0000,0x0000|0x0000
            model.decoder.layers.1.self_attn.q_proj.weight|24|64,64|-2.209510087966919|1.6467554806394915|0xa882,0x213f,0xa58f|0xa356
            model.decoder.layers.1.self_attn.q_proj.bias|25|64|0.0|0.0|0x0000,0x0000,0x0000|0x0000
            model.decoder.layers.1.self_attn.out_proj.weight|26|64,64|0.30747759342193604|1.6263499000300712|0x1f98,0xa519,0x2156|0x9e69
            model.decoder.layers.1.self_attn.out_proj.bias|27|64|0.0|0.0|0x0000,0x0000,0x0000|0x0000
            model.decoder.layers.1.self_attn_layer_norm.weight|28|64|64.0|64.0|0x3c00,0x3c00,0x3c00|0x3c00
            model.decoder.layers.1.self_attn_layer_norm.bias|29|64|0.0|0.0|0x0000,0x0000,0x0000|0x0000
            model.decoder.layers.1.fc1.weight|30|256,64|0.7801476120948792|6.67367153720782|0x9c27,0x1d05,0xa557|0x1ffa
            model.decoder.layers.1.fc1.bias|31|256|0.0|0.0|0x0000,0x0000,0x0000|0x0000
            model.decoder.layers.1.fc2.weight|32|64,256|1.6125744581222534|6.55142208050983|0x2256,0xa66c,0xa255|0x9d5c
            model.decoder.layers.1.fc2.bias|33|64|0.0|0.0|0x0000,0x0000,0x0000|0x0000
            model.decoder.layers.1.final_layer_norm.weight|34|64|64.0|64.0|0x3c00,0x3c00,0x3c00|0x3c00
            model.decoder.layers.1.final_layer_norm.bias|35|64|0.0|0.0|0x0000,0x0000,0x0000|0x0000
            lm_head.weight|0|8192,32|-28.11955451965332|105.13617039303213|0xa0c1,0x28e8,0x245e|0x272a
            """;

    private static Path realBin() {
        return TestData.model("opt-tiny-postln-bin").resolve("pytorch_model.bin");
    }

    /** The tensor names OPT-350m-style (project_in/out, post-LN) has, written out from the architecture. */
    private static Set<String> expectedOptNames() {
        Set<String> names = new TreeSet<>(List.of("model.decoder.embed_tokens.weight", "model.decoder.embed_positions.weight",
                "model.decoder.project_in.weight", "model.decoder.project_out.weight", "lm_head.weight"));
        for (int l = 0; l < 2; l++) {
            String p = "model.decoder.layers." + l + ".";
            for (String m : List.of("self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj", "self_attn.out_proj",
                    "self_attn_layer_norm", "fc1", "fc2", "final_layer_norm")) {
                names.add(p + m + ".weight");
                names.add(p + m + ".bias");
            }
        }
        return names;
    }

    @Test
    void realCheckpointHasEveryOptTensorWithTheRightShape() {
        try (TorchCheckpoint c = TorchCheckpoint.open(realBin())) {
            assertEquals(expectedOptNames(), c.tensorNames());
            assertEquals(realBin(), c.location());
            assertArrayEquals(new long[]{8192, 32}, c.tensor("model.decoder.embed_tokens.weight").shape());
            assertArrayEquals(new long[]{130, 64}, c.tensor("model.decoder.embed_positions.weight").shape());
            assertArrayEquals(new long[]{64, 32}, c.tensor("model.decoder.project_in.weight").shape());
            assertArrayEquals(new long[]{32, 64}, c.tensor("model.decoder.project_out.weight").shape());
            assertArrayEquals(new long[]{256, 64}, c.tensor("model.decoder.layers.1.fc1.weight").shape());
            assertArrayEquals(new long[]{64, 256}, c.tensor("model.decoder.layers.0.fc2.weight").shape());
            assertArrayEquals(new long[]{64}, c.tensor("model.decoder.layers.0.self_attn_layer_norm.bias").shape());
            for (String n : c.tensorNames()) {
                assertEquals(DType.F16, c.tensor(n).dtype(), n);
            }
        }
    }

    @Test
    void realCheckpointValuesMatchNumpy() {
        int rows = 0;
        try (TorchCheckpoint c = TorchCheckpoint.open(realBin())) {
            for (String line : ORACLE.strip().split("\n")) {
                String[] f = line.split("\\|");
                Tensor t = c.tensor(f[0]);
                long[] shape = Arrays.stream(f[2].split(",")).mapToLong(Long::parseLong).toArray();
                assertArrayEquals(shape, t.shape(), f[0]);
                double sum = 0;
                double sumSq = 0;
                for (long i = 0; i < t.numel(); i++) {
                    double v = t.getFloat(i);
                    sum += v;
                    sumSq += v * v;
                }
                // numpy sums pairwise, we sum in order: the f64 results agree to rounding only.
                assertEquals(Double.parseDouble(f[3]), sum, 1e-9, f[0] + " sum");
                assertEquals(Double.parseDouble(f[4]), sumSq, 1e-9, f[0] + " sum of squares");
                String[] first = f[5].split(",");
                for (int i = 0; i < 3; i++) {
                    assertEquals(Integer.decode(first[i]).shortValue(), t.data().getAtIndex(ValueLayout.JAVA_SHORT_UNALIGNED, i), f[0] + "[" + i + "]");
                }
                assertEquals(Integer.decode(f[6]).shortValue(), t.data().getAtIndex(ValueLayout.JAVA_SHORT_UNALIGNED, t.numel() - 1), f[0] + " last");
                rows++;
            }
            // A few single elements (numpy: np.frombuffer(..., '<f2').reshape(shape)[i, j]).
            assertEquals(-0.02252197265625f, c.tensor("model.decoder.layers.0.fc1.weight").getFloat(5 * 64 + 7));
            assertEquals(-0.00901031494140625f, c.tensor("model.decoder.embed_positions.weight").getFloat(129 * 64 + 63));
            assertEquals(-0.01551055908203125f, c.tensor("model.decoder.embed_tokens.weight").getFloat(4000 * 32 + 17));
        }
        assertEquals(37, rows);
    }

    @Test
    void tiedWeightsShareTheirStorageInPlace() {
        try (TorchCheckpoint c = TorchCheckpoint.open(realBin())) {
            Tensor emb = c.tensor("model.decoder.embed_tokens.weight");
            Tensor head = c.tensor("lm_head.weight");
            assertEquals(emb.data().address(), head.data().address());
            assertEquals(emb.data().byteSize(), head.data().byteSize());
            // Slices of the mapping, not copies: storage 0 starts where numpy's zipfile found it (64-aligned).
            assertTrue(emb.data().isMapped());
        }
    }

    // ------------------------------------------------------------------ hand-built archives

    private static final float[] W = {1.5f, -2.25f, 3.0f, 0.125f, -0.5f, 1e-3f};

    /** w: F32 [2,3]; wt: its transpose (a non-contiguous view of the same storage); row: w[1] by offset; b: BF16 [3] at offset 1. */
    private static TorchZipWriter small(boolean zip64) {
        byte[] pkl = PickleWriter.stateDict(List.of(
                new TensorSpec("w", "FloatStorage", "0", 6, 0, new long[]{2, 3}, new long[]{3, 1}),
                new TensorSpec("wt", "FloatStorage", "0", 6, 0, new long[]{3, 2}, new long[]{1, 3}),
                new TensorSpec("row", "FloatStorage", "0", 6, 3, new long[]{3}, new long[]{1}),
                new TensorSpec("b", "BFloat16Storage", "1", 4, 1, new long[]{3}, new long[]{1})));
        TorchZipWriter z = new TorchZipWriter("small", pkl)
                .storage("0", TorchZipWriter.f32(W))
                .storage("1", TorchZipWriter.bf16(7.0f, -0.375f, 1.0f / 64, 0x1.8p40f));
        return zip64 ? z.zip64() : z;
    }

    @Test
    void handBuiltArchiveReadsBackExactly() throws IOException {
        for (boolean zip64 : new boolean[]{false, true}) {
            Path f = small(zip64).write(dir.resolve("small" + zip64 + ".bin"));
            try (TorchCheckpoint c = TorchCheckpoint.open(f)) {
                assertEquals(Set.of("b", "row", "w", "wt"), c.tensorNames());
                Tensor w = c.tensor("w");
                assertEquals(DType.F32, w.dtype());
                assertArrayEquals(new long[]{2, 3}, w.shape());
                assertArrayEquals(W, w.toFloatArray());
                Tensor row = c.tensor("row");
                assertArrayEquals(new float[]{W[3], W[4], W[5]}, row.toFloatArray());
                assertEquals(w.data().address() + 12, row.data().address(), "a contiguous view is a slice in place");
                Tensor wt = c.tensor("wt");
                assertArrayEquals(new long[]{3, 2}, wt.shape());
                // wt[i][j] = w[j][i]
                assertArrayEquals(new float[]{W[0], W[3], W[1], W[4], W[2], W[5]}, wt.toFloatArray());
                assertFalse(wt.data().isMapped(), "a non-contiguous view is copied");
                Tensor b = c.tensor("b");
                assertEquals(DType.BF16, b.dtype());
                assertArrayEquals(new float[]{-0.375f, 1.0f / 64, 0x1.8p40f}, b.toFloatArray());
            }
        }
    }

    @Test
    void pytorchStoragesMapToTheirDtypes() throws IOException {
        String[][] types = {{"FloatStorage", "F32"}, {"HalfStorage", "F16"}, {"BFloat16Storage", "BF16"},
                {"DoubleStorage", "F64"}, {"LongStorage", "I64"}, {"IntStorage", "I32"}, {"ShortStorage", "I16"},
                {"CharStorage", "I8"}, {"ByteStorage", "U8"}, {"BoolStorage", "BOOL"}};
        List<TensorSpec> specs = new ArrayList<>();
        for (int i = 0; i < types.length; i++) {
            specs.add(new TensorSpec("t" + i, types[i][0], "k" + i, 3, 0, new long[]{3}, new long[]{1}));
        }
        TorchZipWriter z = new TorchZipWriter("types", PickleWriter.stateDict(specs));
        for (int i = 0; i < types.length; i++) {
            int bytes = DType.valueOf(types[i][1]).bytes();
            byte[] data = new byte[3 * bytes];
            for (int j = 0; j < data.length; j++) {
                data[j] = (byte) (i * 16 + j);
            }
            z.storage("k" + i, data);
        }
        try (TorchCheckpoint c = TorchCheckpoint.open(z.write(dir.resolve("types.bin")))) {
            for (int i = 0; i < types.length; i++) {
                Tensor t = c.tensor("t" + i);
                assertEquals(DType.valueOf(types[i][1]), t.dtype(), types[i][0]);
                byte[] got = t.data().toArray(ValueLayout.JAVA_BYTE);
                for (int j = 0; j < got.length; j++) {
                    assertEquals((byte) (i * 16 + j), got[j]);
                }
            }
        }
    }

    @Test
    void float8TensorsWrittenAsUntypedStorageWithV3Read() throws IOException {
        // torch >= 2.1: _rebuild_tensor_v3(UntypedStorage, offset, size, stride, False, OrderedDict(), torch.float8_e4m3fn)
        byte[] pkl = new PickleWriter().proto(2).global("collections", "OrderedDict").emptyTuple().reduce().mark()
                .str("f8").global("torch._utils", "_rebuild_tensor_v3").mark()
                .mark().str("storage").global("torch.storage", "UntypedStorage").str("0").str("cpu").integer(4).tuple().binpersid()
                .integer(1).ints(2).ints(1).newFalse().global("collections", "OrderedDict").emptyTuple().reduce()
                .global("torch", "float8_e4m3fn").tuple().reduce()
                .setitems().stop().bytes();
        Path f = new TorchZipWriter("f8", pkl).storage("0", new byte[]{0x11, 0x38, (byte) 0xc0, 0x22}).write(dir.resolve("f8.bin"));
        try (TorchCheckpoint c = TorchCheckpoint.open(f)) {
            Tensor t = c.tensor("f8");
            assertEquals(DType.F8_E4M3, t.dtype());
            assertArrayEquals(new byte[]{0x38, (byte) 0xc0}, t.data().toArray(ValueLayout.JAVA_BYTE));
        }
    }

    // ------------------------------------------------------------------ damaged or hostile archives

    private FormatException refused(Path f) {
        return assertThrows(FormatException.class, () -> TorchCheckpoint.open(f).close());
    }

    private static void assertOneLineNaming(FormatException e, Path f, String... parts) {
        String m = e.getMessage();
        assertFalse(m.contains("\n"), m);
        assertTrue(m.startsWith(f.toString()), m);
        assertEquals(f, e.file());
        for (String p : parts) {
            assertTrue(m.contains(p), "'" + p + "' not in: " + m);
        }
    }

    @Test
    void forbiddenGlobalInsideArchiveIsRefusedNamingFileAndGlobal() throws IOException {
        byte[] pkl = new PickleWriter().proto(2).global("os", "system").str("echo pwned").raw(0x85).reduce().stop().bytes();
        Path f = new TorchZipWriter("evil", pkl).write(dir.resolve("evil.bin"));
        assertOneLineNaming(refused(f), f, "'os.system'", "malicious", "safetensors");
    }

    @Test
    void storageMissingFromTheZipIsReported() throws IOException {
        Path f = small(false).remove("data/1").write(dir.resolve("missing.bin"));
        assertOneLineNaming(refused(f), f, "storage '1'", "no entry 'small/data/1'");
    }

    @Test
    void tensorReachingPastItsStorageIsRefused() throws IOException {
        byte[] pkl = PickleWriter.stateDict(List.of(
                new TensorSpec("w", "FloatStorage", "0", 6, 2, new long[]{2, 3}, new long[]{3, 1})));
        Path f = new TorchZipWriter("a", pkl).storage("0", TorchZipWriter.f32(W)).write(dir.resolve("past.bin"));
        assertOneLineNaming(refused(f), f, "tensor 'w'", "reaches element 8", "has 6");

        byte[] strided = PickleWriter.stateDict(List.of(
                new TensorSpec("s", "FloatStorage", "0", 6, 0, new long[]{3, 2}, new long[]{1, 4})));
        Path g = new TorchZipWriter("a", strided).storage("0", TorchZipWriter.f32(W)).write(dir.resolve("strided.bin"));
        assertOneLineNaming(refused(g), g, "tensor 's'", "reaches element 7");
    }

    @Test
    void hugeBroadcastViewIsRefusedInsteadOfCopied() throws IOException {
        // One float expanded to 2^20 x 2^20 (stride 0): 4 TiB if copied.
        byte[] pkl = PickleWriter.stateDict(List.of(
                new TensorSpec("x", "FloatStorage", "0", 1, 0, new long[]{1 << 20, 1 << 20}, new long[]{0, 0})));
        Path f = new TorchZipWriter("a", pkl).storage("0", TorchZipWriter.f32(3)).write(dir.resolve("broadcast.bin"));
        assertOneLineNaming(refused(f), f, "tensor 'x'", "strided view", "4398046511104 bytes");

        // A small broadcast is copied.
        byte[] small = PickleWriter.stateDict(List.of(
                new TensorSpec("y", "FloatStorage", "0", 2, 0, new long[]{3, 2}, new long[]{0, 1})));
        Path g = new TorchZipWriter("a", small).storage("0", TorchZipWriter.f32(3, -4)).write(dir.resolve("bcast-ok.bin"));
        try (TorchCheckpoint c = TorchCheckpoint.open(g)) {
            assertArrayEquals(new float[]{3, -4, 3, -4, 3, -4}, c.tensor("y").toFloatArray());
        }
    }

    @Test
    void storageEntryCutShortIsRefused() throws IOException {
        // The pickle says 6 floats; the entry holds 5.
        byte[] pkl = PickleWriter.stateDict(List.of(
                new TensorSpec("w", "FloatStorage", "0", 6, 0, new long[]{5}, new long[]{1})));
        Path f = new TorchZipWriter("a", pkl).storage("0", TorchZipWriter.f32(1, 2, 3, 4, 5)).write(dir.resolve("short.bin"));
        assertOneLineNaming(refused(f), f, "'a/data/0' holds 20 bytes", "6 x F32 = 24 bytes");
    }

    @Test
    void storageEntryRunningPastTheEndOfTheFileIsRefused() throws IOException {
        // The central directory claims the last entry holds 4,000,000 bytes; the file is far smaller.
        long numel = 1_000_000;
        byte[] pkl = PickleWriter.stateDict(List.of(
                new TensorSpec("w", "FloatStorage", "0", numel, 0, new long[]{numel}, new long[]{1})));
        Path f = new TorchZipWriter("a", pkl).storage("0", TorchZipWriter.f32(W)).write(dir.resolve("eof.bin"));
        patchCentralDirectorySize(f, "a/data/0", numel * 4);
        // commons-compress already rejects the directory; TorchCheckpoint re-checks offset + size itself.
        assertOneLineNaming(refused(f), f, "truncated or corrupt");
    }

    /** Rewrites the compressed and uncompressed sizes of one central directory record (APPNOTE 4.3.12). */
    private static void patchCentralDirectorySize(Path f, String name, long size) throws IOException {
        byte[] b = Files.readAllBytes(f);
        ByteBuffer bb = ByteBuffer.wrap(b).order(ByteOrder.LITTLE_ENDIAN);
        byte[] want = name.getBytes(StandardCharsets.UTF_8);
        for (int i = 0; i + 46 < b.length; i++) {
            if (bb.getInt(i) == 0x02014b50 && (bb.getShort(i + 28) & 0xffff) == want.length
                    && Arrays.equals(b, i + 46, i + 46 + want.length, want, 0, want.length)) {
                bb.putInt(i + 20, (int) size);
                bb.putInt(i + 24, (int) size);
                Files.write(f, b);
                return;
            }
        }
        throw new AssertionError("no central directory record for " + name);
    }

    @Test
    void truncatedFileIsRefused() throws IOException {
        Path whole = small(false).write(dir.resolve("whole.bin"));
        byte[] b = Files.readAllBytes(whole);
        for (int cut : new int[]{b.length / 2, b.length - 10, 10, 4}) {
            Path f = Files.write(dir.resolve("cut" + cut + ".bin"), Arrays.copyOf(b, cut));
            assertOneLineNaming(refused(f), f, "zip");
        }
    }

    @Test
    void compressedStorageEntryIsRefused() throws IOException {
        Path f = small(false).deflate("data/0").write(dir.resolve("deflated.bin"));
        assertOneLineNaming(refused(f), f, "'small/data/0' is compressed", "DEFLATED");
    }

    @Test
    void deflatedPickleIsStillRead() throws IOException {
        // Only storages must be mapped in place; a re-zipped data.pkl is harmless.
        Path f = small(false).deflate("data.pkl").write(dir.resolve("pkl-deflated.bin"));
        try (TorchCheckpoint c = TorchCheckpoint.open(f)) {
            assertArrayEquals(W, c.tensor("w").toFloatArray());
        }
    }

    @Test
    void bigEndianArchiveIsRefused() throws IOException {
        Path f = small(false).entry("byteorder", "big".getBytes(StandardCharsets.US_ASCII)).write(dir.resolve("big.bin"));
        assertOneLineNaming(refused(f), f, "'big' byte order", "little-endian");
    }

    @Test
    void archiveWithoutByteorderIsLittleEndian() throws IOException {
        // torch < 1.13 wrote no byteorder record.
        try (TorchCheckpoint c = TorchCheckpoint.open(small(false).remove("byteorder").write(dir.resolve("old.bin")))) {
            assertArrayEquals(W, c.tensor("w").toFloatArray());
        }
    }

    @Test
    void unknownArchiveVersionIsRefused() throws IOException {
        Path f = small(false).entry("version", "99\n".getBytes(StandardCharsets.US_ASCII)).write(dir.resolve("v99.bin"));
        assertOneLineNaming(refused(f), f, "archive version '99'");
    }

    @Test
    void legacyFormatIsRefusedWithAdvice() throws IOException {
        // torch < 1.6: pickle.dumps(MAGIC_NUMBER, protocol=2) then more pickles; python3 printed these bytes.
        Path f = Files.write(dir.resolve("legacy.bin"), HexFormat.of().parseHex("80028a0a6cfc9c46f9206aa850192e80024de9032e"));
        assertEquals(f + ": legacy PyTorch format (before 1.6) is not supported (re-save with torch.save or convert to safetensors)",
                refused(f).getMessage());
    }

    @Test
    void otherFilesAreNotCheckpoints() throws IOException {
        Path empty = Files.write(dir.resolve("empty.bin"), new byte[0]);
        assertOneLineNaming(refused(empty), empty, "is empty");
        Path text = Files.writeString(dir.resolve("text.bin"), "{\"not\": \"a checkpoint\"}");
        assertOneLineNaming(refused(text), text, "not a PyTorch checkpoint");
        Path nowhere = dir.resolve("nowhere.bin");
        assertOneLineNaming(refused(nowhere), nowhere, "does not exist");
        Path noPickle = new TorchZipWriter("x", new byte[0]).remove("data.pkl").write(dir.resolve("nopkl.bin"));
        assertOneLineNaming(refused(noPickle), noPickle, "without a '<name>/data.pkl'");
    }

    @Test
    void oneStorageDescribedWithTwoDtypesIsRefused() throws IOException {
        byte[] pkl = PickleWriter.stateDict(List.of(
                new TensorSpec("a", "FloatStorage", "0", 6, 0, new long[]{6}, new long[]{1}),
                new TensorSpec("b", "IntStorage", "0", 6, 0, new long[]{6}, new long[]{1})));
        Path f = new TorchZipWriter("a", pkl).storage("0", TorchZipWriter.f32(W)).write(dir.resolve("twotypes.bin"));
        assertOneLineNaming(refused(f), f, "storage '0' twice");
    }

    @Test
    void randomCorruptionOfAnArchiveOnlyEverGivesFormatException() throws IOException {
        byte[] whole = Files.readAllBytes(small(false).write(dir.resolve("fuzz-src.bin")));
        java.util.Random rnd = new java.util.Random(7);
        Path f = dir.resolve("fuzz.bin");
        int opened = 0;
        for (int trial = 0; trial < 1500; trial++) {
            byte[] b = whole.clone();
            for (int i = 1 + rnd.nextInt(3); i > 0; i--) {
                b[rnd.nextInt(b.length)] = (byte) rnd.nextInt(256);
            }
            Files.write(f, b);
            try (TorchCheckpoint c = TorchCheckpoint.open(f)) {
                for (String n : c.tensorNames()) {
                    c.tensor(n).toFloatArray(); // every view stays inside the mapping
                }
                opened++;
            } catch (FormatException e) {
                assertOneLineNaming(e, f);
            }
        }
        assertTrue(opened > 0 && opened < 1500, "some corruptions hit unused bytes, others are caught: " + opened);
    }

    @Test
    void missingTensorIsNamedAndClosedCheckpointRefusesReads() throws IOException {
        TorchCheckpoint c = TorchCheckpoint.open(small(false).write(dir.resolve("c.bin")));
        FormatException e = assertThrows(FormatException.class, () -> c.tensor("nope"));
        assertTrue(e.getMessage().contains("'nope'"), e.getMessage());
        Tensor w = c.tensor("w");
        c.close();
        c.close(); // idempotent
        assertThrows(IllegalStateException.class, () -> c.tensor("w"));
        assertThrows(IllegalStateException.class, () -> w.getFloat(0), "views die with the checkpoint");
    }
}
