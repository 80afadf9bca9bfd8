package dev.llmflash.formats.pytorch;

import dev.llmflash.formats.FormatException;
import dev.llmflash.formats.tensor.DType;

import java.math.BigInteger;
import java.nio.ByteBuffer;
import java.nio.charset.CharacterCodingException;
import java.nio.charset.CodingErrorAction;
import java.nio.charset.StandardCharsets;
import java.nio.file.Path;
import java.util.ArrayDeque;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.Collections;
import java.util.HashMap;
import java.util.LinkedHashMap;
import java.util.LinkedHashSet;
import java.util.List;
import java.util.Map;

/**
 * A pickle virtual machine that reads the {@code data.pkl} of a {@code torch.save} archive and
 * constructs nothing but inert Java values: the state dict as a map from tensor name to
 * {@link TensorRef} (which storage, where in it, what shape and strides).
 *
 * <h2>Why our own VM</h2>
 * A pickle is a program: its {@code GLOBAL} opcode imports any callable and {@code REDUCE} calls it,
 * so loading an untrusted {@code pytorch_model.bin} with Python's pickle runs arbitrary code. A
 * general Java unpickler (e.g. {@code net.razorvine:pickle}) resolves globals to registered object
 * constructors and offers no hook that rejects a global <em>before</em> anything is built; it also
 * brings its own object model. Torch emits a small, fixed subset of the pickle language, so this
 * class implements that subset directly (about the size of a glue layer over a library) and keeps
 * every decision in view:
 * <ul>
 *   <li>{@code GLOBAL}/{@code STACK_GLOBAL} consult an <b>allow-list</b> at the moment the global is
 *       named: anything else ({@code os.system}, {@code builtins.eval}, ...) stops the load with a
 *       {@link FormatException}. Allowed globals become marker values, never Python objects.</li>
 *   <li>{@code REDUCE}, {@code NEWOBJ} and {@code BUILD} act only on those markers and only in the
 *       way torch uses them; anything else is refused.</li>
 *   <li>{@code BINPERSID} accepts only torch's storage ids
 *       {@code ('storage', <StorageType>, key, location, numel)} and yields a {@link StorageRef}.</li>
 *   <li>Opcodes that reach outside the pickle (extension registry {@code EXT*}, out-of-band buffers,
 *       {@code INST}/{@code OBJ}) and protocol-0 text opcodes, which torch never emits, are
 *       unsupported; an unknown opcode is an error.</li>
 * </ul>
 *
 * <h2>Allow-list</h2>
 * <pre>
 * collections.OrderedDict                    the state dict itself and empty backward-hook dicts
 * torch._utils._rebuild_tensor               (storage, offset, size, stride)
 * torch._utils._rebuild_tensor_v2            (storage, offset, size, stride, requires_grad, hooks[, metadata])
 * torch._utils._rebuild_tensor_v3            (untyped storage, offset, size, stride, requires_grad, hooks, dtype[, metadata])
 * torch._utils._rebuild_parameter            (tensor, requires_grad, hooks)            -> the tensor
 * torch._utils._rebuild_parameter_with_state (tensor, requires_grad, hooks, state)     -> the tensor
 * torch.{Float,Half,BFloat16,Double,Long,Int,Short,Char,Byte,Bool}Storage   storage types (persistent ids)
 * torch.UntypedStorage, torch.storage.UntypedStorage   storage type of v3 tensors (torch >= 2.1 writes
 *                                            float8 and uint16/32/64 tensors this way)
 * torch.{float8_e4m3fn,float8_e5m2,uint16,uint32,uint64}   dtypes, only as _rebuild_tensor_v3's argument
 * </pre>
 *
 * <h2>Value model</h2>
 * str -> {@link String}; int -> {@link Long} or {@link BigInteger}; float -> {@link Double}; bool ->
 * {@link Boolean}; None -> {@link PyNone}; bytes -> {@link PyBytes}; tuple, list, dict, set -> the
 * final classes {@link PyTuple}, {@link PyList}, {@link PyDict}, {@link PySet} with identity equality
 * (a hostile pickle can nest them deeply; nothing here recurses into them). Dict keys and set members
 * must be scalars (str, int, float, bool, None), so hashing is cheap and non-recursive.
 *
 * <h2>Resource bounds</h2>
 * Every length is checked against the bytes left in the pickle before anything is allocated, so a
 * pickle of n bytes makes O(n) objects of O(n) total size; the input itself is capped at
 * {@link #MAX_PICKLE_BYTES}.
 *
 * <p>Spec: Python's {@code Lib/pickletools.py} (opcode table and argument encodings) and
 * {@code Lib/pickle.py} ({@code _Unpickler} semantics: MARK as a metastack, memo indices).
 *
 * <p>Stateless static API; each call owns its VM, so concurrent calls are safe.
 */
public final class SafeUnpickler {

    /** Largest {@code data.pkl} accepted; a state dict needs ~100 bytes per tensor. */
    public static final int MAX_PICKLE_BYTES = 256 << 20;
    /** Highest pickle protocol (Python 3.8+); torch.save writes protocol 2. */
    static final int HIGHEST_PROTOCOL = 5;

    // Opcodes (pickletools.py). Only the ones we execute or name in messages.
    private static final int MARK = '(';
    private static final int STOP = '.';
    private static final int POP = '0';
    private static final int POP_MARK = '1';
    private static final int DUP = '2';
    private static final int BININT = 'J';
    private static final int BININT1 = 'K';
    private static final int BININT2 = 'M';
    private static final int NONE = 'N';
    private static final int BINPERSID = 'Q';
    private static final int REDUCE = 'R';
    private static final int BINSTRING = 'T';
    private static final int SHORT_BINSTRING = 'U';
    private static final int BINUNICODE = 'X';
    private static final int APPEND = 'a';
    private static final int BUILD = 'b';
    private static final int GLOBAL = 'c';
    private static final int DICT = 'd';
    private static final int EMPTY_DICT = '}';
    private static final int APPENDS = 'e';
    private static final int BINGET = 'h';
    private static final int LONG_BINGET = 'j';
    private static final int LIST = 'l';
    private static final int EMPTY_LIST = ']';
    private static final int BINPUT = 'q';
    private static final int LONG_BINPUT = 'r';
    private static final int SETITEM = 's';
    private static final int TUPLE = 't';
    private static final int EMPTY_TUPLE = ')';
    private static final int SETITEMS = 'u';
    private static final int BINFLOAT = 'G';
    private static final int BINBYTES = 'B';
    private static final int SHORT_BINBYTES = 'C';
    // protocol 2
    private static final int PROTO = 0x80;
    private static final int NEWOBJ = 0x81;
    private static final int TUPLE1 = 0x85;
    private static final int TUPLE2 = 0x86;
    private static final int TUPLE3 = 0x87;
    private static final int NEWTRUE = 0x88;
    private static final int NEWFALSE = 0x89;
    private static final int LONG1 = 0x8a;
    private static final int LONG4 = 0x8b;
    // protocol 4
    private static final int SHORT_BINUNICODE = 0x8c;
    private static final int BINUNICODE8 = 0x8d;
    private static final int BINBYTES8 = 0x8e;
    private static final int EMPTY_SET = 0x8f;
    private static final int ADDITEMS = 0x90;
    private static final int FROZENSET = 0x91;
    private static final int NEWOBJ_EX = 0x92;
    private static final int STACK_GLOBAL = 0x93;
    private static final int MEMOIZE = 0x94;
    private static final int FRAME = 0x95;
    // protocol 5
    private static final int BYTEARRAY8 = 0x96;

    /** Opcodes we know but refuse, with the reason (pickletools names). */
    private static final Map<Integer, String> REFUSED = Map.ofEntries(
            Map.entry((int) 'i', "INST constructs an arbitrary class"),
            Map.entry((int) 'o', "OBJ constructs an arbitrary class"),
            Map.entry(0x82, "EXT1 refers to the extension registry"),
            Map.entry(0x83, "EXT2 refers to the extension registry"),
            Map.entry(0x84, "EXT4 refers to the extension registry"),
            Map.entry(0x97, "NEXT_BUFFER needs out-of-band buffers"),
            Map.entry(0x98, "READONLY_BUFFER needs out-of-band buffers"),
            Map.entry((int) 'P', "PERSID is a protocol-0 text opcode"),
            Map.entry((int) 'I', "INT is a protocol-0 text opcode"),
            Map.entry((int) 'L', "LONG is a protocol-0 text opcode"),
            Map.entry((int) 'S', "STRING is a protocol-0 text opcode"),
            Map.entry((int) 'V', "UNICODE is a protocol-0 text opcode"),
            Map.entry((int) 'F', "FLOAT is a protocol-0 text opcode"),
            Map.entry((int) 'g', "GET is a protocol-0 text opcode"),
            Map.entry((int) 'p', "PUT is a protocol-0 text opcode"));

    // ---------------------------------------------------------------- results

    /**
     * A storage named by a persistent id: the archive entry {@code <archive>/data/<key>} holding
     * {@code numel} elements of {@code dtype}. An untyped storage ({@code untyped}) counts bytes:
     * its dtype is {@link DType#U8}.
     */
    public record StorageRef(String key, DType dtype, boolean untyped, String location, long numel) {
        /** The storage's size in bytes; throws ArithmeticException on overflow. */
        public long byteSize() {
            return Math.multiplyExact(numel, dtype.bytes());
        }
    }

    /**
     * A tensor as torch describes it: a strided view of {@code storage}, in elements of
     * {@code dtype} (the storage's dtype, or the explicit dtype of a v3 tensor over an untyped storage).
     * All numbers are non-negative; {@code size} and {@code stride} have the same length.
     */
    public record TensorRef(StorageRef storage, DType dtype, long storageOffset, long[] size, long[] stride) {
        public TensorRef {
            size = size.clone();
            stride = stride.clone();
        }

        @Override
        public long[] size() {
            return size.clone();
        }

        @Override
        public long[] stride() {
            return stride.clone();
        }

        /** Row-major (C order) as torch defines it: dimensions of extent 1 may have any stride. */
        public boolean isContiguous() {
            long expected = 1;
            for (int d = size.length - 1; d >= 0; d--) {
                if (size[d] == 0) {
                    return true;
                }
                if (size[d] != 1 && stride[d] != expected) {
                    return false;
                }
                expected *= size[d]; // cannot overflow once numel() succeeded
            }
            return true;
        }

        /** Element count; throws ArithmeticException on overflow. */
        public long numel() {
            long n = 1;
            for (long d : size) {
                n = Math.multiplyExact(n, d);
            }
            return n;
        }

        /**
         * One past the highest storage element the view touches ({@code storageOffset} when empty);
         * throws ArithmeticException on overflow.
         */
        public long storageEnd() {
            long last = storageOffset;
            for (int d = 0; d < size.length; d++) {
                if (size[d] == 0) {
                    return storageOffset;
                }
                last = Math.addExact(last, Math.multiplyExact(size[d] - 1, stride[d]));
            }
            return Math.addExact(last, 1);
        }

        @Override
        public boolean equals(Object o) {
            return o instanceof TensorRef t && storage.equals(t.storage) && dtype == t.dtype
                    && storageOffset == t.storageOffset && Arrays.equals(size, t.size)
                    && Arrays.equals(stride, t.stride);
        }

        @Override
        public int hashCode() {
            return storage.hashCode() * 31 + Arrays.hashCode(size);
        }

        @Override
        public String toString() {
            return "TensorRef[" + storage.key() + " " + dtype + Arrays.toString(size) + " stride "
                    + Arrays.toString(stride) + " +" + storageOffset + "]";
        }
    }

    // ---------------------------------------------------------------- value model

    /** Python's None. */
    enum PyNone { NONE }

    /** An immutable tuple; identity equality (see the class Javadoc). */
    static final class PyTuple {
        final List<Object> items;

        PyTuple(List<Object> items) {
            this.items = Collections.unmodifiableList(items);
        }

        int size() {
            return items.size();
        }

        Object get(int i) {
            return items.get(i);
        }
    }

    /** A list. */
    static final class PyList {
        final List<Object> items = new ArrayList<>();
    }

    /** A dict; {@code ordered} for collections.OrderedDict, which (unlike dict) accepts BUILD. */
    static final class PyDict {
        final boolean ordered;
        final Map<Object, Object> map = new LinkedHashMap<>();

        PyDict(boolean ordered) {
            this.ordered = ordered;
        }
    }

    /** A set or frozenset. */
    static final class PySet {
        final boolean frozen;
        final LinkedHashSet<Object> items = new LinkedHashSet<>();

        PySet(boolean frozen) {
            this.frozen = frozen;
        }
    }

    /** A bytes or bytearray value (never a dict key). */
    record PyBytes(byte[] bytes) {
    }

    /** The allow-listed functions and classes that can be called. */
    enum Callable {
        ORDERED_DICT("collections", "OrderedDict"),
        REBUILD_TENSOR("torch._utils", "_rebuild_tensor"),
        REBUILD_TENSOR_V2("torch._utils", "_rebuild_tensor_v2"),
        REBUILD_TENSOR_V3("torch._utils", "_rebuild_tensor_v3"),
        REBUILD_PARAMETER("torch._utils", "_rebuild_parameter"),
        REBUILD_PARAMETER_WITH_STATE("torch._utils", "_rebuild_parameter_with_state");

        final String module;
        final String name;

        Callable(String module, String name) {
            this.module = module;
            this.name = name;
        }
    }

    /** A torch storage class, only usable inside a persistent id; {@code dtype} null for untyped. */
    record StorageType(String qualifiedName, DType dtype) {
    }

    /** A torch dtype object, only usable as {@code _rebuild_tensor_v3}'s dtype argument. */
    record TorchDType(String qualifiedName, DType dtype) {
    }

    /** (module + '\n' + name) -> marker value. The '\n' cannot occur in a GLOBAL line. */
    private static final Map<String, Object> ALLOWED = allowList();

    private static Map<String, Object> allowList() {
        Map<String, Object> m = new HashMap<>();
        for (Callable c : Callable.values()) {
            m.put(c.module + '\n' + c.name, c);
        }
        Object[][] storages = {
                {"FloatStorage", DType.F32}, {"HalfStorage", DType.F16}, {"BFloat16Storage", DType.BF16},
                {"DoubleStorage", DType.F64}, {"LongStorage", DType.I64}, {"IntStorage", DType.I32},
                {"ShortStorage", DType.I16}, {"CharStorage", DType.I8}, {"ByteStorage", DType.U8},
                {"BoolStorage", DType.BOOL}};
        for (Object[] s : storages) {
            m.put("torch\n" + s[0], new StorageType("torch." + s[0], (DType) s[1]));
        }
        m.put("torch\nUntypedStorage", new StorageType("torch.UntypedStorage", null));
        m.put("torch.storage\nUntypedStorage", new StorageType("torch.storage.UntypedStorage", null));
        Object[][] dtypes = {
                {"float8_e4m3fn", DType.F8_E4M3}, {"float8_e5m2", DType.F8_E5M2},
                {"uint16", DType.U16}, {"uint32", DType.U32}, {"uint64", DType.U64}};
        for (Object[] d : dtypes) {
            m.put("torch\n" + d[0], new TorchDType("torch." + d[0], (DType) d[1]));
        }
        return Map.copyOf(m);
    }

    // ---------------------------------------------------------------- API

    /**
     * Runs the pickle and interprets its result as a state dict: a dict (or OrderedDict) from tensor
     * name to tensor.
     *
     * @param file   the checkpoint, for messages
     * @param pickle the bytes of {@code data.pkl}
     * @return tensor name -> description, in pickle order
     * @throws FormatException if the pickle is malformed, asks for anything outside the allow-list, or
     *         is not a flat state dict of tensors
     */
    public static Map<String, TensorRef> readStateDict(Path file, byte[] pickle) {
        Object top = load(file, pickle);
        if (!(top instanceof PyDict dict)) {
            throw new FormatException(file, "its pickle holds " + describe(top) + ", not a state dict (a dict of tensors)",
                    "save model.state_dict() with torch.save, or use a safetensors checkpoint");
        }
        Map<String, TensorRef> out = new LinkedHashMap<>();
        for (Map.Entry<Object, Object> e : dict.map.entrySet()) {
            if (!(e.getKey() instanceof String name)) {
                throw new FormatException(file, "its state dict has a key of type " + describe(e.getKey())
                        + " where a tensor name belongs", "save model.state_dict() with torch.save, or use a safetensors checkpoint");
            }
            if (!(e.getValue() instanceof TensorRef t)) {
                throw new FormatException(file, "its state dict entry '" + printable(name) + "' is " + describe(e.getValue())
                        + ", not a tensor", "save model.state_dict() with torch.save, or use a safetensors checkpoint");
            }
            out.put(name, t);
        }
        return out;
    }

    /** Runs the pickle and returns its result in the value model above (package-private: tests). */
    static Object load(Path file, byte[] pickle) {
        if (pickle.length > MAX_PICKLE_BYTES) {
            throw new FormatException(file, "its pickle (data.pkl) has " + pickle.length + " bytes, more than the "
                    + MAX_PICKLE_BYTES + " a state dict could need", "the file is corrupt or not a state dict; use a safetensors checkpoint");
        }
        return new SafeUnpickler(file, pickle).run();
    }

    // ---------------------------------------------------------------- the machine

    private final Path file;
    private final byte[] in;
    private int pos;
    /** Start of the opcode being executed, for messages. */
    private int opStart;
    private int op;
    private ArrayList<Object> stack = new ArrayList<>();
    /** Stacks saved by MARK, as in pickle.py's _Unpickler.metastack. */
    private final ArrayDeque<ArrayList<Object>> metastack = new ArrayDeque<>();
    private final HashMap<Long, Object> memo = new HashMap<>();

    private SafeUnpickler(Path file, byte[] in) {
        this.file = file;
        this.in = in;
    }

    private Object run() {
        while (true) {
            if (pos >= in.length) {
                throw bad("ends at byte " + in.length + " without a STOP opcode (it is truncated)");
            }
            opStart = pos;
            op = in[pos++] & 0xff;
            switch (op) {
                case PROTO -> {
                    int v = u8();
                    if (v < 2 || v > HIGHEST_PROTOCOL) {
                        throw bad("declares pickle protocol " + v + "; only protocols 2 to " + HIGHEST_PROTOCOL + " exist with PROTO");
                    }
                }
                case FRAME -> {
                    // Framing only batches reads (PEP 3154); opcodes inside are parsed as usual.
                    long n = u64();
                    if (n > in.length - pos) {
                        throw bad("has a FRAME of " + Long.toUnsignedString(n) + " bytes but only " + (in.length - pos) + " follow");
                    }
                }
                case STOP -> {
                    Object result = pop();
                    if (!metastack.isEmpty()) {
                        throw bad("stops with an unclosed MARK");
                    }
                    return result;
                }
                case MARK -> {
                    metastack.push(stack);
                    stack = new ArrayList<>();
                }
                case POP -> {
                    if (stack.isEmpty()) {
                        popMark(); // pickle.py: POP on an empty stack discards the mark
                    } else {
                        pop();
                    }
                }
                case POP_MARK -> popMark();
                case DUP -> push(peek());
                case NONE -> push(PyNone.NONE);
                case NEWTRUE -> push(Boolean.TRUE);
                case NEWFALSE -> push(Boolean.FALSE);
                case BININT -> push((long) s32());
                case BININT1 -> push((long) u8());
                case BININT2 -> push((long) u16());
                case LONG1 -> push(longFrom(bytes(u8())));
                case LONG4 -> {
                    int n = s32();
                    if (n < 0) {
                        throw bad("has a LONG4 with negative length " + n);
                    }
                    push(longFrom(bytes(n)));
                }
                case BINFLOAT -> push(Double.longBitsToDouble(ByteBuffer.wrap(bytes(8)).getLong())); // big-endian
                case BINSTRING -> {
                    int n = s32();
                    if (n < 0) {
                        throw bad("has a BINSTRING with negative length " + n);
                    }
                    push(utf8(bytes(n)));
                }
                case SHORT_BINSTRING -> push(utf8(bytes(u8())));
                case BINUNICODE -> push(utf8(bytes(u32())));
                case SHORT_BINUNICODE -> push(utf8(bytes(u8())));
                case BINUNICODE8 -> push(utf8(bytes(u64())));
                case BINBYTES -> push(new PyBytes(bytes(u32())));
                case SHORT_BINBYTES -> push(new PyBytes(bytes(u8())));
                case BINBYTES8, BYTEARRAY8 -> push(new PyBytes(bytes(u64())));
                case EMPTY_TUPLE -> push(new PyTuple(List.of()));
                case TUPLE -> push(new PyTuple(popMark()));
                case TUPLE1 -> {
                    Object a = pop();
                    push(new PyTuple(List.of(a)));
                }
                case TUPLE2 -> {
                    Object b = pop();
                    Object a = pop();
                    push(new PyTuple(List.of(a, b)));
                }
                case TUPLE3 -> {
                    Object c = pop();
                    Object b = pop();
                    Object a = pop();
                    push(new PyTuple(List.of(a, b, c)));
                }
                case EMPTY_LIST -> push(new PyList());
                case LIST -> {
                    PyList l = new PyList();
                    l.items.addAll(popMark());
                    push(l);
                }
                case APPEND -> {
                    Object v = pop();
                    listAt(peek(), "APPEND").items.add(v);
                }
                case APPENDS -> {
                    List<Object> vs = popMark();
                    listAt(peek(), "APPENDS").items.addAll(vs);
                }
                case EMPTY_DICT -> push(new PyDict(false));
                case DICT -> {
                    PyDict d = new PyDict(false);
                    putAll(d, popMark());
                    push(d);
                }
                case SETITEM -> {
                    Object v = pop();
                    Object k = pop();
                    dictAt(peek(), "SETITEM").map.put(key(k), v);
                }
                case SETITEMS -> {
                    List<Object> kvs = popMark();
                    putAll(dictAt(peek(), "SETITEMS"), kvs);
                }
                case EMPTY_SET -> push(new PySet(false));
                case ADDITEMS -> {
                    List<Object> vs = popMark();
                    Object target = peek();
                    if (!(target instanceof PySet s) || s.frozen) {
                        throw bad("applies ADDITEMS to " + describe(target) + ", which is not a set");
                    }
                    for (Object v : vs) {
                        s.items.add(key(v));
                    }
                }
                case FROZENSET -> {
                    PySet s = new PySet(true);
                    for (Object v : popMark()) {
                        s.items.add(key(v));
                    }
                    push(s);
                }
                case BINPUT -> memo.put((long) u8(), peek());
                case LONG_BINPUT -> memo.put(u32(), peek());
                case MEMOIZE -> memo.put((long) memo.size(), peek());
                case BINGET -> push(memoGet(u8()));
                case LONG_BINGET -> push(memoGet(u32()));
                case GLOBAL -> {
                    String module = line();
                    String name = line();
                    push(global(module, name));
                }
                case STACK_GLOBAL -> {
                    Object name = pop();
                    Object module = pop();
                    if (!(module instanceof String m) || !(name instanceof String n)) {
                        throw bad("has a STACK_GLOBAL whose module and name are not strings");
                    }
                    push(global(m, n));
                }
                case REDUCE -> {
                    Object args = pop();
                    Object callable = pop();
                    push(reduce(callable, tupleArg(args, "REDUCE")));
                }
                case NEWOBJ -> {
                    Object args = pop();
                    Object cls = pop();
                    tupleArg(args, "NEWOBJ");
                    push(newObject(cls));
                }
                case NEWOBJ_EX -> {
                    pop(); // kwargs
                    Object args = pop();
                    Object cls = pop();
                    tupleArg(args, "NEWOBJ_EX");
                    push(newObject(cls));
                }
                case BUILD -> build(pop(), peek());
                case BINPERSID -> push(persistentLoad(pop()));
                default -> {
                    String why = REFUSED.get(op);
                    throw bad(why != null
                            ? "uses opcode 0x" + hex(op) + " at byte " + opStart + ", which torch.save never writes (" + why + ")"
                            : "has unknown opcode 0x" + hex(op) + " at byte " + opStart);
                }
            }
        }
    }

    // ---------------------------------------------------------------- security-relevant operations

    /** GLOBAL / STACK_GLOBAL: the allow-list check, before anything else happens. */
    private Object global(String module, String name) {
        Object marker = ALLOWED.get(module + '\n' + name);
        if (marker == null) {
            throw new FormatException(file, "refusing to load: its pickle asks for global '" + printable(module + "." + name)
                    + "', which a PyTorch state dict never needs; the file may be malicious",
                    "use a safetensors checkpoint instead");
        }
        return marker;
    }

    /** REDUCE: calls one of the allow-listed functions on inert values. */
    private Object reduce(Object callable, PyTuple args) {
        if (!(callable instanceof Callable c)) {
            throw refuse("calls " + describe(callable) + ", which is not an allowed function");
        }
        return switch (c) {
            case ORDERED_DICT -> {
                if (args.size() != 0) {
                    throw refuse("calls collections.OrderedDict with arguments, which torch.save never does");
                }
                yield new PyDict(true);
            }
            case REBUILD_TENSOR -> {
                arity(c, args, 4, 4);
                StorageRef s = storageArg(c, args.get(0));
                if (s.untyped()) {
                    throw bad("passes an untyped storage to " + name(c) + ", which needs a typed one");
                }
                yield tensor(c, s, s.dtype(), args, null);
            }
            case REBUILD_TENSOR_V2 -> {
                arity(c, args, 6, 7);
                StorageRef s = storageArg(c, args.get(0));
                if (s.untyped()) {
                    throw bad("passes an untyped storage to " + name(c) + ", which needs a typed one");
                }
                yield tensor(c, s, s.dtype(), args, args.size() == 7 ? args.get(6) : null);
            }
            case REBUILD_TENSOR_V3 -> {
                arity(c, args, 7, 8);
                StorageRef s = storageArg(c, args.get(0));
                if (!(args.get(6) instanceof TorchDType dt)) {
                    throw bad("passes " + describe(args.get(6)) + " as the dtype of " + name(c));
                }
                yield tensor(c, s, dt.dtype(), args, args.size() == 8 ? args.get(7) : null);
            }
            case REBUILD_PARAMETER, REBUILD_PARAMETER_WITH_STATE -> {
                // A Parameter is a tensor with requires_grad; its hooks and Python state do not matter here.
                arity(c, args, c == Callable.REBUILD_PARAMETER ? 3 : 4, c == Callable.REBUILD_PARAMETER ? 3 : 4);
                if (!(args.get(0) instanceof TensorRef t)) {
                    throw bad("passes " + describe(args.get(0)) + " to " + name(c) + " where a tensor belongs");
                }
                yield t;
            }
        };
    }

    /** The common tail of the _rebuild_tensor variants: offset, size, stride, hooks, metadata. */
    private TensorRef tensor(Callable c, StorageRef s, DType dtype, PyTuple args, Object metadata) {
        long offset = nonNegative(args.get(1), c, "storage offset");
        long[] size = longs(args.get(2), c, "size");
        long[] stride = longs(args.get(3), c, "stride");
        if (size.length != stride.length) {
            throw bad("gives " + name(c) + " a size of rank " + size.length + " but a stride of rank " + stride.length);
        }
        if (args.size() > 4 && !(args.get(4) instanceof Boolean)) {
            throw bad("gives " + name(c) + " a requires_grad that is " + describe(args.get(4)));
        }
        if (args.size() > 5 && !(args.get(5) instanceof PyDict)) {
            throw bad("gives " + name(c) + " backward hooks that are " + describe(args.get(5)) + ", not a dict");
        }
        if (metadata != null && metadata != PyNone.NONE) {
            // torch's get_tensor_metadata: {"conj_bit": True} / {"neg_bit": True} mark lazily conjugated or
            // negated views; their stored bytes are not the tensor's values.
            if (!(metadata instanceof PyDict md)) {
                throw bad("gives " + name(c) + " tensor metadata that is " + describe(metadata));
            }
            for (Map.Entry<Object, Object> e : md.map.entrySet()) {
                if (!Boolean.FALSE.equals(e.getValue())) {
                    throw new FormatException(file, "a tensor in its pickle carries metadata '" + printable(String.valueOf(e.getKey()))
                            + "' (a lazy conjugate/negative view), which this reader does not apply",
                            "call .resolve_conj().resolve_neg() before saving, or use a safetensors checkpoint");
                }
            }
        }
        return new TensorRef(s, dtype, offset, size, stride);
    }

    /** NEWOBJ / NEWOBJ_EX: cls.__new__(cls); only OrderedDict (a fresh empty dict) is allowed. */
    private Object newObject(Object cls) {
        if (cls == Callable.ORDERED_DICT) {
            return new PyDict(true);
        }
        throw refuse("instantiates " + describe(cls) + ", which is not an allowed class");
    }

    /** BUILD: only an OrderedDict's instance attributes (torch stores the state dict's _metadata there). */
    private void build(Object state, Object target) {
        if (!(target instanceof PyDict d) || !d.ordered) {
            throw refuse("sets the state of " + describe(target) + ", which only an OrderedDict may receive");
        }
        boolean ok = state instanceof PyDict || state == PyNone.NONE
                || state instanceof PyTuple t && t.size() == 2
                && (t.get(0) instanceof PyDict || t.get(0) == PyNone.NONE)
                && (t.get(1) instanceof PyDict || t.get(1) == PyNone.NONE);
        if (!ok) {
            throw bad("sets the state of an OrderedDict to " + describe(state));
        }
        // The attributes (e.g. _metadata with module versions) carry no tensor data: dropped.
    }

    /** BINPERSID: torch's ('storage', storage_type, key, location, numel). */
    private StorageRef persistentLoad(Object pid) {
        if (!(pid instanceof PyTuple t) || t.size() != 5 || !"storage".equals(t.get(0))) {
            throw bad("has a persistent id that is not torch's ('storage', type, key, location, numel)");
        }
        if (!(t.get(1) instanceof StorageType type)) {
            throw bad("has a storage persistent id whose type is " + describe(t.get(1)));
        }
        if (!(t.get(2) instanceof String key) || key.isEmpty()) {
            throw bad("has a storage persistent id whose key is " + describe(t.get(2)));
        }
        if (!(t.get(3) instanceof String location)) {
            throw bad("has a storage persistent id whose location is " + describe(t.get(3)));
        }
        long numel = nonNegative(t.get(4), null, "storage size");
        return type.dtype() == null
                ? new StorageRef(key, DType.U8, true, location, numel)
                : new StorageRef(key, type.dtype(), false, location, numel);
    }

    // ---------------------------------------------------------------- argument helpers

    private void arity(Callable c, PyTuple args, int min, int max) {
        if (args.size() < min || args.size() > max) {
            throw bad("calls " + name(c) + " with " + args.size() + " arguments; torch passes "
                    + (min == max ? String.valueOf(min) : min + " or " + max));
        }
    }

    private StorageRef storageArg(Callable c, Object v) {
        if (!(v instanceof StorageRef s)) {
            throw bad("passes " + describe(v) + " to " + name(c) + " where a storage belongs");
        }
        return s;
    }

    private long nonNegative(Object v, Callable c, String what) {
        if (!(v instanceof Long l) || l < 0) {
            throw bad("gives " + (c == null ? "" : name(c) + " ") + "a " + what + " that is "
                    + (v instanceof Long l2 ? String.valueOf(l2) : describe(v)) + ", not a non-negative int");
        }
        return l;
    }

    private long[] longs(Object v, Callable c, String what) {
        if (!(v instanceof PyTuple t)) {
            throw bad("gives " + name(c) + " a " + what + " that is " + describe(v) + ", not a tuple");
        }
        long[] out = new long[t.size()];
        for (int i = 0; i < out.length; i++) {
            out[i] = nonNegative(t.get(i), c, what + " entry");
        }
        return out;
    }

    private PyTuple tupleArg(Object args, String opName) {
        if (!(args instanceof PyTuple t)) {
            throw bad("gives " + opName + " arguments that are " + describe(args) + ", not a tuple");
        }
        return t;
    }

    private PyList listAt(Object target, String opName) {
        if (!(target instanceof PyList l)) {
            throw bad("applies " + opName + " to " + describe(target) + ", which is not a list");
        }
        return l;
    }

    private PyDict dictAt(Object target, String opName) {
        if (!(target instanceof PyDict d)) {
            throw bad("applies " + opName + " to " + describe(target) + ", which is not a dict");
        }
        return d;
    }

    private void putAll(PyDict d, List<Object> kvs) {
        if (kvs.size() % 2 != 0) {
            throw bad("has an odd number of items for a dict");
        }
        for (int i = 0; i < kvs.size(); i += 2) {
            d.map.put(key(kvs.get(i)), kvs.get(i + 1));
        }
    }

    /** Dict keys and set members: scalars only, so hashing is cheap and never recursive. */
    private Object key(Object k) {
        if (k instanceof String || k instanceof Long || k instanceof Boolean || k instanceof Double || k == PyNone.NONE) {
            return k;
        }
        throw bad("uses " + describe(k) + " as a dict key or set member; a state dict only uses strings and numbers");
    }

    // ---------------------------------------------------------------- stack and memo

    private void push(Object v) {
        stack.add(v);
    }

    private Object pop() {
        if (stack.isEmpty()) {
            throw bad("pops an empty stack (opcode 0x" + hex(op) + " at byte " + opStart + ")");
        }
        return stack.removeLast();
    }

    private Object peek() {
        if (stack.isEmpty()) {
            throw bad("reads an empty stack (opcode 0x" + hex(op) + " at byte " + opStart + ")");
        }
        return stack.getLast();
    }

    /** Items pushed since the last MARK; restores the stack below it. */
    private List<Object> popMark() {
        if (metastack.isEmpty()) {
            throw bad("needs a MARK that is not there (opcode 0x" + hex(op) + " at byte " + opStart + ")");
        }
        List<Object> items = stack;
        stack = metastack.pop();
        return items;
    }

    private Object memoGet(long index) {
        Object v = memo.get(index);
        if (v == null) {
            throw bad("reads memo slot " + index + " that was never written (byte " + opStart + ")");
        }
        return v;
    }

    // ---------------------------------------------------------------- reading arguments

    private void need(long n) {
        if (n > in.length - pos) {
            throw bad("is truncated: opcode 0x" + hex(op) + " at byte " + opStart + " needs " + Long.toUnsignedString(n)
                    + " bytes but only " + (in.length - pos) + " remain");
        }
    }

    private int u8() {
        need(1);
        return in[pos++] & 0xff;
    }

    private int u16() {
        need(2);
        int v = (in[pos] & 0xff) | (in[pos + 1] & 0xff) << 8;
        pos += 2;
        return v;
    }

    private int s32() {
        need(4);
        int v = (in[pos] & 0xff) | (in[pos + 1] & 0xff) << 8 | (in[pos + 2] & 0xff) << 16 | (in[pos + 3] & 0xff) << 24;
        pos += 4;
        return v;
    }

    private long u32() {
        return s32() & 0xffffffffL;
    }

    /** Unsigned 64-bit; a value above Long.MAX_VALUE is negative here and fails {@link #bytes}' check. */
    private long u64() {
        long lo = u32();
        long hi = u32();
        return lo | hi << 32;
    }

    /** The next n bytes; n is checked against what is left, so a lying length allocates nothing. */
    private byte[] bytes(long n) {
        if (n < 0 || n > in.length - pos) {
            throw bad("is truncated or corrupt: opcode 0x" + hex(op) + " at byte " + opStart + " declares "
                    + Long.toUnsignedString(n) + " bytes but only " + (in.length - pos) + " remain");
        }
        byte[] b = Arrays.copyOfRange(in, pos, pos + (int) n);
        pos += (int) n;
        return b;
    }

    /** A GLOBAL argument: text up to '\n'. */
    private String line() {
        int start = pos;
        while (pos < in.length && in[pos] != '\n') {
            pos++;
        }
        if (pos >= in.length) {
            throw bad("is truncated: the GLOBAL at byte " + opStart + " has no end of line");
        }
        byte[] b = Arrays.copyOfRange(in, start, pos);
        pos++;
        return utf8(b);
    }

    private String utf8(byte[] b) {
        try {
            return StandardCharsets.UTF_8.newDecoder()
                    .onMalformedInput(CodingErrorAction.REPORT)
                    .onUnmappableCharacter(CodingErrorAction.REPORT)
                    .decode(ByteBuffer.wrap(b)).toString();
        } catch (CharacterCodingException e) {
            throw bad("has a string that is not valid UTF-8 (opcode at byte " + opStart + ")");
        }
    }

    /** LONG1/LONG4 payload: little-endian two's complement (pickle.decode_long). */
    private static Object longFrom(byte[] le) {
        if (le.length == 0) {
            return 0L;
        }
        byte[] be = new byte[le.length];
        for (int i = 0; i < le.length; i++) {
            be[i] = le[le.length - 1 - i];
        }
        BigInteger v = new BigInteger(be);
        return v.bitLength() < 64 ? (Object) v.longValue() : v;
    }

    // ---------------------------------------------------------------- messages

    private FormatException bad(String problem) {
        return new FormatException(file, "its pickle (data.pkl) " + problem,
                "the file is corrupt or was not written by torch.save; re-download it or use a safetensors checkpoint");
    }

    private FormatException refuse(String problem) {
        return new FormatException(file, "refusing to load: its pickle " + problem
                + ", which a PyTorch state dict never needs; the file may be malicious",
                "use a safetensors checkpoint instead");
    }

    private static String name(Callable c) {
        return c.module + "." + c.name;
    }

    private static String hex(int b) {
        return String.format("%02x", b);
    }

    /** A short type description of a value, never its (possibly huge or deeply nested) contents. */
    static String describe(Object v) {
        return switch (v) {
            case null -> "nothing";
            case String _ -> "a str";
            case Long _ -> "an int";
            case BigInteger _ -> "an int";
            case Double _ -> "a float";
            case Boolean _ -> "a bool";
            case PyNone _ -> "None";
            case PyBytes _ -> "a bytes";
            case PyTuple t -> "a tuple of " + t.size();
            case PyList _ -> "a list";
            case PyDict d -> d.ordered ? "an OrderedDict" : "a dict";
            case PySet s -> s.frozen ? "a frozenset" : "a set";
            case Callable c -> "the function " + name(c);
            case StorageType s -> "the class " + s.qualifiedName();
            case TorchDType d -> "the dtype " + d.qualifiedName();
            case StorageRef _ -> "a storage";
            case TensorRef _ -> "a tensor";
            default -> v.getClass().getSimpleName();
        };
    }

    /** Text from the file made safe for a one-line message: control characters escaped, length capped. */
    static String printable(String s) {
        StringBuilder sb = new StringBuilder();
        for (int i = 0; i < s.length() && sb.length() < 120; i++) {
            char ch = s.charAt(i);
            if (ch < 0x20 || ch == 0x7f || Character.isISOControl(ch) || Character.getType(ch) == Character.LINE_SEPARATOR
                    || Character.getType(ch) == Character.PARAGRAPH_SEPARATOR) {
                sb.append(String.format("\\u%04x", (int) ch));
            } else {
                sb.append(ch);
            }
        }
        if (sb.length() >= 120 && s.length() > 120) {
            sb.append("...");
        }
        return sb.toString();
    }
}
