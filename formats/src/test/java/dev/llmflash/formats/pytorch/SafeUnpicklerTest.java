package dev.llmflash.formats.pytorch;

import dev.llmflash.formats.FormatException;
import dev.llmflash.formats.pytorch.SafeUnpickler.PyBytes;
import dev.llmflash.formats.pytorch.SafeUnpickler.PyDict;
import dev.llmflash.formats.pytorch.SafeUnpickler.PyList;
import dev.llmflash.formats.pytorch.SafeUnpickler.PyNone;
import dev.llmflash.formats.pytorch.SafeUnpickler.PySet;
import dev.llmflash.formats.pytorch.SafeUnpickler.PyTuple;
import dev.llmflash.formats.pytorch.SafeUnpickler.StorageRef;
import dev.llmflash.formats.pytorch.SafeUnpickler.TensorRef;
import dev.llmflash.formats.tensor.DType;
import dev.llmflash.formats.testing.TestData;
import org.junit.jupiter.api.Test;

import java.io.IOException;
import java.math.BigInteger;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.HexFormat;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Random;
import java.util.Set;
import java.util.zip.ZipFile;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertInstanceOf;
import static org.junit.jupiter.api.Assertions.assertSame;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

class SafeUnpicklerTest {

    private static final Path FILE = Path.of("/models/suspect/pytorch_model.bin");

    // ------------------------------------------------------------------ oracles written by CPython's pickle

    /*
     * VALUES_P<n> = pickle.dumps(v, protocol=n).hex() by python3 for
     * v = {'ints': [0, 1, -1, 255, 256, 65535, 65536, -2**31, 2**31, 2**63-1, -2**63, 2**70, -2**70],
     *      'f': [1.5, -0.0, 1e300], 's': ['', 'héllo', 'x'*260], 't': (1, (2, 3), ()), 'n': None,
     *      'bool': [True, False], 'd': {1: 'one', 'k': {}}}
     * and, for protocol 5 only (earlier protocols spell these with builtins globals):
     *      v['b'] = [b'xy', bytearray(b'z')]; v['set'] = {1, 2}; v['fs'] = frozenset(['a'])
     *
     * STATE_DICT_P<n>: what torch.save's pickler writes for OrderedDict(w=F32[2,3] over storage '0' (6
     * floats), wt=its transpose [3,2] stride (1,3), b=BF16[3] at offset 1 of storage '1' (4 elements)),
     * produced by python3's pickle with stand-in torch modules and torch's persistent_id scheme.
     */
    private static final String VALUES_P2 = """
            80027d7100285804000000696e747371015d7102284b004b014affffffff4bff4d00014dffff4a000001004a00000080
            8a0500000080008a08ffffffffffffff7f8a0800000000000000808a090000000000000000408a090000000000000000
            c06558010000006671035d710428473ff8000000000000478000000000000000477e37e43c8800759c65580100000073
            71055d71062858000000007107580600000068c3a96c6c6f710858040100007878787878787878787878787878787878
            787878787878787878787878787878787878787878787878787878787878787878787878787878787878787878787878
            787878787878787878787878787878787878787878787878787878787878787878787878787878787878787878787878
            787878787878787878787878787878787878787878787878787878787878787878787878787878787878787878787878
            787878787878787878787878787878787878787878787878787878787878787878787878787878787878787878787878
            787878787878787878787878787878787878787878787878787878787878787878787878787878787878787878787878
            787878710965580100000074710a4b014b024b0386710b2987710c58010000006e710d4e5804000000626f6f6c710e5d
            710f2888896558010000006471107d7111284b0158030000006f6e65711258010000006b71137d711475752e
            """;
    private static final String VALUES_P3 = """
            80037d7100285804000000696e747371015d7102284b004b014affffffff4bff4d00014dffff4a000001004a00000080
            8a0500000080008a08ffffffffffffff7f8a0800000000000000808a090000000000000000408a090000000000000000
            c06558010000006671035d710428473ff8000000000000478000000000000000477e37e43c8800759c65580100000073
            71055d71062858000000007107580600000068c3a96c6c6f710858040100007878787878787878787878787878787878
            787878787878787878787878787878787878787878787878787878787878787878787878787878787878787878787878
            787878787878787878787878787878787878787878787878787878787878787878787878787878787878787878787878
            787878787878787878787878787878787878787878787878787878787878787878787878787878787878787878787878
            787878787878787878787878787878787878787878787878787878787878787878787878787878787878787878787878
            787878787878787878787878787878787878787878787878787878787878787878787878787878787878787878787878
            787878710965580100000074710a4b014b024b0386710b2987710c58010000006e710d4e5804000000626f6f6c710e5d
            710f2888896558010000006471107d7111284b0158030000006f6e65711258010000006b71137d711475752e
            """;
    private static final String VALUES_P4 = """
            800495d4010000000000007d94288c04696e7473945d94284b004b014affffffff4bff4d00014dffff4a000001004a00
            0000808a0500000080008a08ffffffffffffff7f8a0800000000000000808a090000000000000000408a090000000000
            000000c0658c0166945d9428473ff8000000000000478000000000000000477e37e43c8800759c658c0173945d94288c
            00948c0668c3a96c6c6f9458040100007878787878787878787878787878787878787878787878787878787878787878
            787878787878787878787878787878787878787878787878787878787878787878787878787878787878787878787878
            787878787878787878787878787878787878787878787878787878787878787878787878787878787878787878787878
            787878787878787878787878787878787878787878787878787878787878787878787878787878787878787878787878
            787878787878787878787878787878787878787878787878787878787878787878787878787878787878787878787878
            78787878787878787878787878787878787878787878787878787878787878787878787894658c0174944b014b024b03
            86942987948c016e944e8c04626f6f6c945d94288889658c0164947d94284b018c036f6e65948c016b947d9475752e
            """;
    private static final String VALUES_P5 = """
            80059506020000000000007d94288c04696e7473945d94284b004b014affffffff4bff4d00014dffff4a000001004a00
            0000808a0500000080008a08ffffffffffffff7f8a0800000000000000808a090000000000000000408a090000000000
            000000c0658c0166945d9428473ff8000000000000478000000000000000477e37e43c8800759c658c0173945d94288c
            00948c0668c3a96c6c6f9458040100007878787878787878787878787878787878787878787878787878787878787878
            787878787878787878787878787878787878787878787878787878787878787878787878787878787878787878787878
            787878787878787878787878787878787878787878787878787878787878787878787878787878787878787878787878
            787878787878787878787878787878787878787878787878787878787878787878787878787878787878787878787878
            787878787878787878787878787878787878787878787878787878787878787878787878787878787878787878787878
            78787878787878787878787878787878787878787878787878787878787878787878787894658c0174944b014b024b03
            86942987948c016e944e8c04626f6f6c945d94288889658c0164947d94284b018c036f6e65948c016b947d94758c0162
            945d942843027879949601000000000000007a94658c03736574948f94284b014b02908c02667394288c016194919475
            2e
            """;
    private static final String STATE_DICT_P2 = """
            800263636f6c6c656374696f6e730a4f726465726564446963740a71002952710128580100000077710263746f726368
            2e5f7574696c730a5f72656275696c645f74656e736f725f76320a71032828580700000073746f72616765710463746f
            7263680a466c6f617453746f726167650a71055801000000307106580300000063707571074b06747108514b004b024b
            038671094b034b0186710a8968002952710b74710c52710d58020000007774710e6803282868046805680668074b0674
            710f514b004b034b028671104b014b038671118968002952711274711352711458010000006271156803282868046374
            6f7263680a42466c6f6174313653746f726167650a7116580100000031711768074b04747118514b014b038571194b01
            85711a8968002952711b74711c52711d752e
            """;
    private static final String STATE_DICT_P4 = """
            80049507010000000000008c0b636f6c6c656374696f6e73948c0b4f72646572656444696374949394295294288c0177
            948c0c746f7263682e5f7574696c73948c125f72656275696c645f74656e736f725f763294939428288c0773746f7261
            6765948c05746f726368948c0c466c6f617453746f726167659493948c0130948c03637075944b067494514b004b024b
            0386944b034b018694896802295294749452948c02777494680728286808680b680c680d4b067494514b004b034b0286
            944b014b038694896802295294749452948c01629468072828680868098c0f42466c6f6174313653746f726167659493
            948c013194680d4b047494514b014b0385944b01859489680229529474945294752e
            """;
    private static final String STATE_DICT_P5 = """
            80059507010000000000008c0b636f6c6c656374696f6e73948c0b4f72646572656444696374949394295294288c0177
            948c0c746f7263682e5f7574696c73948c125f72656275696c645f74656e736f725f763294939428288c0773746f7261
            6765948c05746f726368948c0c466c6f617453746f726167659493948c0130948c03637075944b067494514b004b024b
            0386944b034b018694896802295294749452948c02777494680728286808680b680c680d4b067494514b004b034b0286
            944b014b038694896802295294749452948c01629468072828680868098c0f42466c6f6174313653746f726167659493
            948c013194680d4b047494514b014b0385944b01859489680229529474945294752e
            """;

    private static byte[] hex(String block) {
        return HexFormat.of().parseHex(block.replaceAll("\\s", ""));
    }

    private static List<Object> items(Object list) {
        return assertInstanceOf(PyList.class, list).items;
    }

    @Test
    void plainValuesMatchCPythonAtEveryProtocol() {
        for (String pickle : List.of(VALUES_P2, VALUES_P3, VALUES_P4, VALUES_P5)) {
            PyDict d = assertInstanceOf(PyDict.class, SafeUnpickler.load(FILE, hex(pickle)));
            assertFalse(d.ordered);
            BigInteger two70 = BigInteger.TWO.pow(70);
            assertEquals(List.of(0L, 1L, -1L, 255L, 256L, 65535L, 65536L, (long) Integer.MIN_VALUE, 1L << 31,
                    Long.MAX_VALUE, Long.MIN_VALUE, two70, two70.negate()), items(d.map.get("ints")));
            List<Object> f = items(d.map.get("f"));
            assertEquals(1.5, f.get(0));
            assertEquals(Double.doubleToRawLongBits(-0.0), Double.doubleToRawLongBits((Double) f.get(1)));
            assertEquals(1e300, f.get(2));
            assertEquals(List.of("", "héllo", "x".repeat(260)), items(d.map.get("s")));
            PyTuple t = assertInstanceOf(PyTuple.class, d.map.get("t"));
            assertEquals(3, t.size());
            assertEquals(1L, t.get(0));
            assertEquals(List.of(2L, 3L), ((PyTuple) t.get(1)).items);
            assertEquals(0, ((PyTuple) t.get(2)).size());
            assertSame(PyNone.NONE, d.map.get("n"));
            assertEquals(List.of(true, false), items(d.map.get("bool")));
            PyDict inner = assertInstanceOf(PyDict.class, d.map.get("d"));
            assertEquals("one", inner.map.get(1L));
            assertTrue(((PyDict) inner.map.get("k")).map.isEmpty());
        }
        PyDict d = (PyDict) SafeUnpickler.load(FILE, hex(VALUES_P5));
        List<Object> b = items(d.map.get("b"));
        assertArrayEquals("xy".getBytes(), ((PyBytes) b.get(0)).bytes());
        assertArrayEquals("z".getBytes(), ((PyBytes) b.get(1)).bytes());
        PySet set = (PySet) d.map.get("set");
        assertFalse(set.frozen);
        assertEquals(Set.of(1L, 2L), set.items);
        PySet fs = (PySet) d.map.get("fs");
        assertTrue(fs.frozen);
        assertEquals(Set.of("a"), fs.items);
    }

    @Test
    void torchStyleStateDictAtProtocols2To5() {
        StorageRef s0 = new StorageRef("0", DType.F32, false, "cpu", 6);
        StorageRef s1 = new StorageRef("1", DType.BF16, false, "cpu", 4);
        Map<String, TensorRef> expected = new LinkedHashMap<>();
        expected.put("w", new TensorRef(s0, DType.F32, 0, new long[]{2, 3}, new long[]{3, 1}));
        expected.put("wt", new TensorRef(s0, DType.F32, 0, new long[]{3, 2}, new long[]{1, 3}));
        expected.put("b", new TensorRef(s1, DType.BF16, 1, new long[]{3}, new long[]{1}));
        for (String pickle : List.of(STATE_DICT_P2, STATE_DICT_P4, STATE_DICT_P5)) {
            Map<String, TensorRef> got = SafeUnpickler.readStateDict(FILE, hex(pickle));
            assertEquals(expected, got);
            assertEquals(List.of("w", "wt", "b"), new ArrayList<>(got.keySet()), "pickle order is kept");
        }
        TensorRef wt = expected.get("wt");
        assertFalse(wt.isContiguous());
        assertTrue(expected.get("w").isContiguous());
        assertEquals(6, wt.storageEnd());
        assertEquals(4, expected.get("b").storageEnd());
    }

    @Test
    void parameterWrappersYieldTheirTensor() {
        byte[] pkl = new PickleWriter().proto(2).emptyDict()
                .str("p").global("torch._utils", "_rebuild_parameter").mark()
                .tensorV2("HalfStorage", "0", 4, 0, new long[]{2, 2}, new long[]{2, 1})
                .raw(0x88).global("collections", "OrderedDict").emptyTuple().reduce().tuple().reduce().setitem()
                .str("q").global("torch._utils", "_rebuild_parameter_with_state").mark()
                .tensorV2("HalfStorage", "0", 4, 2, new long[]{2}, new long[]{1})
                .raw(0x88).global("collections", "OrderedDict").emptyTuple().reduce().emptyDict().tuple().reduce().setitem()
                .stop().bytes();
        Map<String, TensorRef> sd = SafeUnpickler.readStateDict(FILE, pkl);
        assertEquals(DType.F16, sd.get("p").dtype());
        assertArrayEquals(new long[]{2, 2}, sd.get("p").size());
        assertEquals(2, sd.get("q").storageOffset());
    }

    @Test
    void committedCheckpointPickleParses() throws IOException {
        byte[] pkl = realPickle();
        Map<String, TensorRef> sd = SafeUnpickler.readStateDict(FILE, pkl);
        assertEquals(37, sd.size());
        TensorRef emb = sd.get("model.decoder.embed_tokens.weight");
        assertEquals(new StorageRef("0", DType.F16, false, "cpu", 262144), emb.storage());
        assertEquals(emb.storage(), sd.get("lm_head.weight").storage());
    }

    /** The data.pkl of the committed checkpoint, read with the JDK's zip reader. */
    private static byte[] realPickle() throws IOException {
        try (ZipFile z = new ZipFile(TestData.model("opt-tiny-postln-bin").resolve("pytorch_model.bin").toFile())) {
            return z.getInputStream(z.getEntry("pytorch_model/data.pkl")).readAllBytes();
        }
    }

    // ------------------------------------------------------------------ the allow-list

    private static FormatException refused(byte[] pickle) {
        return assertThrows(FormatException.class, () -> SafeUnpickler.load(FILE, pickle));
    }

    private static void assertMessage(FormatException e, String... parts) {
        String m = e.getMessage();
        assertFalse(m.contains("\n") || m.contains("\r"), m);
        assertTrue(m.startsWith(FILE + ": "), m);
        assertEquals(FILE, e.file());
        for (String p : parts) {
            assertTrue(m.contains(p), "'" + p + "' not in: " + m);
        }
    }

    private static final String[][] FORBIDDEN = {
            {"os", "system"}, {"posix", "system"}, {"builtins", "eval"}, {"builtins", "exec"}, {"__builtin__", "getattr"},
            {"builtins", "getattr"}, {"subprocess", "Popen"}, {"torch", "load"}, {"torch._utils", "_rebuild_qtensor"},
            {"torch._tensor", "_rebuild_from_type_v2"}, {"numpy.core.multiarray", "_reconstruct"},
            {"collections", "defaultdict"}, {"_codecs", "encode"}, {"builtins", "set"}, {"pickle", "loads"},
            {"torch", "ComplexFloatStorage"}, {"torch.storage", "TypedStorage"}, {"torch", "OrderedDict"},
            {"collections", "OrderedDict.fromkeys"}, {"torch._utils", "_rebuild_tensor_v2.__globals__"}};

    @Test
    void forbiddenGlobalsAreRefusedWhenNamed() {
        for (String[] g : FORBIDDEN) {
            // The global is followed by a call that would run it: the load must stop before.
            byte[] viaGlobal = new PickleWriter().proto(2).global(g[0], g[1]).str("id").raw(0x85).reduce().stop().bytes();
            assertMessage(refused(viaGlobal), "refusing to load", "global '" + g[0] + "." + g[1] + "'", "malicious", "safetensors");
            byte[] viaStack = new PickleWriter().proto(4).stackGlobal(g[0], g[1]).str("id").raw(0x85).reduce().stop().bytes();
            assertMessage(refused(viaStack), "refusing to load", "global '" + g[0] + "." + g[1] + "'");
        }
    }

    @Test
    void forbiddenGlobalNameIsShownOnOneLine() {
        byte[] pkl = new PickleWriter().proto(4).stackGlobal("os", "system\n\u001b[2Jrm -rf /").stop().bytes();
        assertMessage(refused(pkl), "'os.system\\u000a\\u001b[2Jrm -rf /'");
    }

    @Test
    void callingAnythingButAnAllowedFunctionIsRefused() {
        // A storage class is allowed as a name (persistent ids need it) but not as something to call.
        assertMessage(refused(new PickleWriter().proto(2).global("torch", "FloatStorage").emptyTuple().reduce().stop().bytes()),
                "refusing to load", "calls the class torch.FloatStorage");
        assertMessage(refused(new PickleWriter().proto(2).str("os.system").emptyTuple().reduce().stop().bytes()),
                "refusing to load", "calls a str");
        assertMessage(refused(new PickleWriter().proto(2).global("torch", "HalfStorage").emptyTuple().raw(0x81).stop().bytes()),
                "refusing to load", "instantiates the class torch.HalfStorage");
        assertMessage(refused(new PickleWriter().proto(2).global("torch._utils", "_rebuild_tensor_v2").emptyTuple().raw(0x81).stop().bytes()),
                "refusing to load", "instantiates the function torch._utils._rebuild_tensor_v2");
        assertMessage(refused(new PickleWriter().proto(2).global("collections", "OrderedDict").str("x").raw(0x85).reduce().stop().bytes()),
                "refusing to load", "OrderedDict with arguments");
        // BUILD (setstate) only on an OrderedDict.
        assertMessage(refused(new PickleWriter().proto(2).emptyDict().emptyDict().build().stop().bytes()),
                "refusing to load", "sets the state of a dict");
        byte[] buildOnTensor = new PickleWriter().proto(2)
                .tensorV2("FloatStorage", "0", 1, 0, new long[]{1}, new long[]{1}).emptyDict().build().stop().bytes();
        assertMessage(refused(buildOnTensor), "refusing to load", "sets the state of a tensor");
        // The OrderedDict state torch writes (_metadata) is accepted.
        byte[] ok = new PickleWriter().proto(2).global("collections", "OrderedDict").emptyTuple().reduce()
                .emptyDict().str("_metadata").emptyDict().setitem().build().stop().bytes();
        assertTrue(((PyDict) SafeUnpickler.load(FILE, ok)).ordered);
    }

    @Test
    void persistentIdsMustBeTorchStorages() {
        assertMessage(refused(new PickleWriter().proto(2).str("evil").binpersid().stop().bytes()), "persistent id");
        assertMessage(refused(new PickleWriter().proto(2).mark().str("storage").str("torch.FloatStorage").str("0").str("cpu")
                .integer(1).tuple().binpersid().stop().bytes()), "persistent id whose type is a str");
        assertMessage(refused(new PickleWriter().proto(2).mark().str("storage").global("torch", "FloatStorage").str("0").str("cpu")
                .integer(-1).tuple().binpersid().stop().bytes()), "storage size that is -1");
    }

    @Test
    void tensorArgumentsAreChecked() {
        assertMessage(refused(new PickleWriter().proto(2)
                .tensorV2("FloatStorage", "0", 6, 0, new long[]{2, 3}, new long[]{1}).stop().bytes()), "rank 2", "rank 1");
        assertMessage(refused(new PickleWriter().proto(2)
                .tensorV2("FloatStorage", "0", 6, 0, new long[]{2, -3}, new long[]{3, 1}).stop().bytes()), "size entry that is -3");
        assertMessage(refused(new PickleWriter().proto(2).global("torch._utils", "_rebuild_tensor")
                .mark().str("not a storage").integer(0).ints().ints().tuple().reduce().stop().bytes()), "where a storage belongs");
        // torch's tensor metadata: a set neg/conj bit means the bytes are not the values.
        byte[] neg = new PickleWriter().proto(2).global("torch._utils", "_rebuild_tensor_v2").mark()
                .storage("FloatStorage", "0", 1).integer(0).ints(1).ints(1).newFalse().emptyDict()
                .emptyDict().str("neg_bit").raw(0x88).setitem().tuple().reduce().stop().bytes();
        assertMessage(refused(neg), "metadata 'neg_bit'");
        byte[] noBits = new PickleWriter().proto(2).global("torch._utils", "_rebuild_tensor_v2").mark()
                .storage("FloatStorage", "0", 1).integer(0).ints(1).ints(1).newFalse().emptyDict()
                .emptyDict().tuple().reduce().stop().bytes();
        assertInstanceOf(TensorRef.class, SafeUnpickler.load(FILE, noBits));
    }

    @Test
    void aStateDictHoldsOnlyTensors() {
        assertMessage(assertThrows(FormatException.class, () -> SafeUnpickler.readStateDict(FILE,
                new PickleWriter().proto(2).raw(']').stop().bytes())), "holds a list, not a state dict");
        byte[] nested = new PickleWriter().proto(2).emptyDict().str("model").emptyDict().setitem().stop().bytes();
        assertMessage(assertThrows(FormatException.class, () -> SafeUnpickler.readStateDict(FILE, nested)),
                "entry 'model' is a dict, not a tensor");
    }

    // ------------------------------------------------------------------ malformed pickles

    @Test
    void everyTruncationIsAFormatException() throws IOException {
        for (byte[] whole : List.of(hex(STATE_DICT_P2), hex(STATE_DICT_P4), hex(VALUES_P5), realPickle())) {
            for (int cut = 0; cut < whole.length; cut++) {
                byte[] part = java.util.Arrays.copyOf(whole, cut);
                FormatException e = assertThrows(FormatException.class, () -> SafeUnpickler.load(FILE, part), "cut at " + cut);
                assertMessage(e, "data.pkl");
            }
        }
    }

    @Test
    void unknownAndUnsupportedOpcodesAreRefused() {
        assertMessage(refused(new PickleWriter().proto(2).raw(0xff).stop().bytes()), "unknown opcode 0xff at byte 2");
        assertMessage(refused(new PickleWriter().proto(2).raw(0x00).stop().bytes()), "unknown opcode 0x00");
        assertMessage(refused(new PickleWriter().proto(2).raw(0x82, 1).stop().bytes()), "0x82", "extension registry");
        assertMessage(refused(new PickleWriter().proto(2).raw('i').raw("os\nsystem\n".getBytes()).stop().bytes()), "INST");
        assertMessage(refused(new PickleWriter().proto(5).raw(0x97).stop().bytes()), "out-of-band");
        assertMessage(refused(new PickleWriter().raw('I').raw("1\n".getBytes()).stop().bytes()), "protocol-0");
        assertMessage(refused(new PickleWriter().proto(6).stop().bytes()), "protocol 6");
    }

    @Test
    void absurdLengthsAreRefusedBeforeAllocating() {
        assertMessage(refused(new PickleWriter().proto(2).raw('X', 0xff, 0xff, 0xff, 0xff).raw("abc".getBytes()).stop().bytes()),
                "declares 4294967295 bytes but only 4 remain");
        assertMessage(refused(new PickleWriter().proto(4).raw(0x8d, 0, 0, 0, 0, 0, 0, 0, 0x80).stop().bytes()),
                "declares 9223372036854775808 bytes");
        assertMessage(refused(new PickleWriter().proto(4).raw(0x8e, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff).stop().bytes()),
                "declares 18446744073709551615 bytes");
        assertMessage(refused(new PickleWriter().proto(2).raw(0x8b).le32(-5).stop().bytes()), "LONG4 with negative length");
        assertMessage(refused(new PickleWriter().proto(2).raw('T').le32(Integer.MIN_VALUE).stop().bytes()), "negative length");
        assertMessage(refused(new PickleWriter().proto(4).raw(0x95, 0, 0, 0, 0, 1, 0, 0, 0).stop().bytes()), "FRAME of 4294967296 bytes");
    }

    @Test
    void stackAndMemoMisuseIsRefused() {
        assertMessage(refused(new PickleWriter().proto(2).raw('h', 7).stop().bytes()), "memo slot 7");
        assertMessage(refused(new PickleWriter().proto(2).stop().bytes()), "empty stack");
        assertMessage(refused(new PickleWriter().proto(2).raw('t').stop().bytes()), "MARK that is not there");
        assertMessage(refused(new PickleWriter().proto(2).mark().none().stop().bytes()), "unclosed MARK");
        assertMessage(refused(new PickleWriter().proto(2).emptyDict().mark().str("k").setitems().stop().bytes()), "odd number");
        assertMessage(refused(new PickleWriter().proto(2).none().str("v").raw('a').stop().bytes()), "APPEND to None");
        assertMessage(refused(new PickleWriter().proto(2).emptyDict().raw(']').none().setitem().stop().bytes()), "a list as a dict key");
        assertMessage(refused(new PickleWriter().proto(2).raw(0x8c, 2, 0xc3, 0x28).stop().bytes()), "not valid UTF-8");
        assertMessage(refused(new PickleWriter().proto(2).raw('c').raw("os".getBytes()).bytes()), "no end of line");
        assertMessage(refused(new PickleWriter().proto(2).none().bytes()), "without a STOP");
    }

    @Test
    void deepNestingNeitherRecursesNorHashes() {
        // 200,000 nested one-tuples: nothing in the VM or its messages may recurse into them.
        PickleWriter w = new PickleWriter().proto(2).none();
        for (int i = 0; i < 200_000; i++) {
            w.raw(0x85);
        }
        byte[] deep = w.stop().bytes();
        assertInstanceOf(PyTuple.class, SafeUnpickler.load(FILE, deep));
        PickleWriter k = new PickleWriter().proto(2).emptyDict().none();
        for (int i = 0; i < 200_000; i++) {
            k.raw(0x85);
        }
        assertMessage(refused(k.none().setitem().stop().bytes()), "a tuple of 1 as a dict key");
    }

    @Test
    void randomCorruptionOfARealPickleOnlyEverGivesFormatException() throws IOException {
        byte[] real = realPickle();
        Random rnd = new Random(20240611);
        int refusedCount = 0;
        for (int trial = 0; trial < 3000; trial++) {
            byte[] b = real.clone();
            int flips = 1 + rnd.nextInt(4);
            for (int i = 0; i < flips; i++) {
                b[rnd.nextInt(b.length)] = (byte) rnd.nextInt(256);
            }
            try {
                SafeUnpickler.readStateDict(FILE, b);
            } catch (FormatException e) {
                assertMessage(e);
                refusedCount++;
            }
        }
        assertTrue(refusedCount > 500, "most corruptions are caught: " + refusedCount);
    }
}
