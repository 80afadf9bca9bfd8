package dev.llmflash.formats.pytorch;

import java.io.ByteArrayOutputStream;
import java.nio.charset.StandardCharsets;
import java.util.List;

/**
 * Writes pickle opcodes by hand for tests, the way torch.save (protocol 2) spells a state dict.
 * Opcode bytes are from Python's pickletools; nothing here is validated, so tests can write broken
 * pickles on purpose.
 */
final class PickleWriter {
    private final ByteArrayOutputStream out = new ByteArrayOutputStream();

    /** One tensor of a state dict: a strided view of storage {@code key}. */
    record TensorSpec(String name, String storageType, String key, long numel, long offset, long[] size, long[] stride) {
    }

    /** A whole torch-style state dict pickle: OrderedDict of _rebuild_tensor_v2 calls. */
    static byte[] stateDict(List<TensorSpec> tensors) {
        PickleWriter w = new PickleWriter().proto(2).global("collections", "OrderedDict").emptyTuple().reduce().mark();
        for (TensorSpec t : tensors) {
            w.str(t.name()).tensorV2(t.storageType(), t.key(), t.numel(), t.offset(), t.size(), t.stride());
        }
        return w.setitems().stop().bytes();
    }

    PickleWriter raw(int... bytes) {
        for (int b : bytes) {
            out.write(b);
        }
        return this;
    }

    PickleWriter raw(byte[] bytes) {
        out.writeBytes(bytes);
        return this;
    }

    PickleWriter proto(int v) {
        return raw(0x80, v);
    }

    PickleWriter global(String module, String name) {
        return raw('c').raw((module + "\n" + name + "\n").getBytes(StandardCharsets.UTF_8));
    }

    PickleWriter stackGlobal(String module, String name) {
        return shortStr(module).shortStr(name).raw(0x93);
    }

    /** BINUNICODE. */
    PickleWriter str(String s) {
        byte[] b = s.getBytes(StandardCharsets.UTF_8);
        return raw('X').le32(b.length).raw(b);
    }

    /** SHORT_BINUNICODE. */
    PickleWriter shortStr(String s) {
        byte[] b = s.getBytes(StandardCharsets.UTF_8);
        return raw(0x8c, b.length).raw(b);
    }

    /** The shortest of BININT1, BININT2, BININT, LONG1 (as pickle.py chooses). */
    PickleWriter integer(long v) {
        if (v >= 0 && v < 256) {
            return raw('K', (int) v);
        }
        if (v >= 0 && v < 65536) {
            return raw('M', (int) (v & 0xff), (int) (v >>> 8));
        }
        if (v >= Integer.MIN_VALUE && v <= Integer.MAX_VALUE) {
            return raw('J').le32((int) v);
        }
        raw(0x8a, 8);
        for (int i = 0; i < 8; i++) {
            out.write((int) (v >>> (8 * i)));
        }
        return this;
    }

    PickleWriter le32(int v) {
        return raw(v & 0xff, (v >>> 8) & 0xff, (v >>> 16) & 0xff, (v >>> 24) & 0xff);
    }

    PickleWriter mark() {
        return raw('(');
    }

    PickleWriter tuple() {
        return raw('t');
    }

    PickleWriter emptyTuple() {
        return raw(')');
    }

    PickleWriter emptyDict() {
        return raw('}');
    }

    PickleWriter reduce() {
        return raw('R');
    }

    PickleWriter build() {
        return raw('b');
    }

    PickleWriter setitem() {
        return raw('s');
    }

    PickleWriter setitems() {
        return raw('u');
    }

    PickleWriter binpersid() {
        return raw('Q');
    }

    PickleWriter newFalse() {
        return raw(0x89);
    }

    PickleWriter none() {
        return raw('N');
    }

    PickleWriter stop() {
        return raw('.');
    }

    PickleWriter ints(long... values) {
        mark();
        for (long v : values) {
            integer(v);
        }
        return tuple();
    }

    /** The persistent id torch writes for a storage. */
    PickleWriter storage(String storageType, String key, long numel) {
        return mark().str("storage").global("torch", storageType).str(key).str("cpu").integer(numel).tuple().binpersid();
    }

    /** _rebuild_tensor_v2(storage, offset, size, stride, False, OrderedDict()). */
    PickleWriter tensorV2(String storageType, String key, long numel, long offset, long[] size, long[] stride) {
        return global("torch._utils", "_rebuild_tensor_v2").mark().storage(storageType, key, numel).integer(offset)
                .ints(size).ints(stride).newFalse().global("collections", "OrderedDict").emptyTuple().reduce()
                .tuple().reduce();
    }

    byte[] bytes() {
        return out.toByteArray();
    }
}
