package dev.llmflash.converter.synth;

import dev.llmflash.formats.tensor.DType;

import java.io.IOException;
import java.io.InterruptedIOException;
import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.channels.WritableByteChannel;
import java.util.ArrayDeque;
import java.util.List;
import java.util.concurrent.ArrayBlockingQueue;
import java.util.concurrent.ExecutionException;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;
import java.util.concurrent.Future;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicInteger;
import java.util.function.LongConsumer;

/**
 * Produces the bytes of a sequence of synthesized tensors on worker threads while the caller writes
 * them to disk, in order. The sequence is cut into chunks (a tensor's elements {@code [first, first +
 * count)}, at most {@code chunkBytes} of output); workers fill chunks ahead of the writer, at most
 * {@code depth} at a time, each into its own off-heap buffer. The writer takes the chunks in sequence,
 * writes them, and hands each buffer back. So memory stays at {@code depth x chunkBytes} whatever the
 * model's size, generation runs on every core, and it overlaps the disk writes.
 *
 * <p>Chunk contents: {@link Init#fill} into an f32 block of {@link #BLOCK} elements (small enough to
 * stay in cache), then encoded little-endian as the target dtype: F32 as is, F16 by
 * {@link Float#floatToFloat16} (round to nearest even), BF16 by rounding the upper 16 bits to nearest
 * even (no NaN is ever produced).
 *
 * <p>Threads: one writer (the caller of {@link #write}, not thread-safe) plus {@code threads} daemon
 * workers ({@code llmflash-synth-N}). Close to stop the workers and free the buffers; close only after
 * the writer is done (or has failed).
 */
final class ChunkPipeline implements AutoCloseable {

    /** Elements generated and encoded at a time by a worker (64 KiB of f32). */
    static final int BLOCK = 16384;

    private static final ValueLayout.OfShort LE_SHORT = ValueLayout.JAVA_SHORT_UNALIGNED.withOrder(ByteOrder.LITTLE_ENDIAN);
    private static final ValueLayout.OfFloat LE_FLOAT = ValueLayout.JAVA_FLOAT_UNALIGNED.withOrder(ByteOrder.LITTLE_ENDIAN);
    private static final AtomicInteger POOLS = new AtomicInteger();

    /** A tensor to produce: what it is and how its values are made. */
    record Item(TensorSpec spec, Init init) {
    }

    private record Chunk(int item, long first, int count, MemorySegment buffer) {
    }

    private final List<Item> items;
    private final DType dtype;
    private final long chunkElements;
    private final int depth;
    private final ExecutorService pool;
    private final Arena arena;
    private final ArrayBlockingQueue<MemorySegment> free;
    private final ArrayDeque<Future<Chunk>> inFlight = new ArrayDeque<>();
    private final ThreadLocal<float[]> floats = ThreadLocal.withInitial(() -> new float[BLOCK]);
    private final ThreadLocal<short[]> shorts = ThreadLocal.withInitial(() -> new short[BLOCK]);

    /** The next chunk to submit: item index and first element. */
    private int submitItem;
    private long submitFirst;
    /** The item whose bytes {@link #write} hands out next. */
    private int writeItem;

    /**
     * @param items      the tensors, in the order they will be written
     * @param dtype      F16, BF16 or F32
     * @param chunkBytes bytes per chunk (rounded down to whole elements)
     * @param threads    worker threads, at least 1
     */
    ChunkPipeline(List<Item> items, DType dtype, long chunkBytes, int threads) {
        if (dtype != DType.F16 && dtype != DType.BF16 && dtype != DType.F32) {
            throw new IllegalArgumentException("synth writes F16, BF16 or F32, not " + dtype);
        }
        if (threads < 1 || chunkBytes < dtype.bytes() || chunkBytes > (1L << 30)) {
            throw new IllegalArgumentException("threads " + threads + ", chunk bytes " + chunkBytes);
        }
        this.items = List.copyOf(items);
        this.dtype = dtype;
        this.chunkElements = chunkBytes / dtype.bytes();
        this.depth = 2 * threads + 1;
        int id = POOLS.incrementAndGet();
        AtomicInteger n = new AtomicInteger();
        this.pool = Executors.newFixedThreadPool(threads, r -> {
            Thread t = new Thread(r, "llmflash-synth-" + id + "-" + n.incrementAndGet());
            t.setDaemon(true);
            return t;
        });
        this.arena = Arena.ofShared();
        this.free = new ArrayBlockingQueue<>(depth);
        for (int i = 0; i < depth; i++) {
            free.add(arena.allocate(chunkElements * dtype.bytes(), 64));
        }
    }

    /**
     * Writes all bytes of {@code spec}, which must be the next tensor in the sequence, to {@code out}.
     * {@code progress} receives the number of bytes of each chunk written.
     */
    void write(TensorSpec spec, WritableByteChannel out, LongConsumer progress) throws IOException {
        if (writeItem >= items.size() || !items.get(writeItem).spec().equals(spec)) {
            throw new IllegalStateException("tensor " + spec + " requested out of order; next is "
                    + (writeItem < items.size() ? items.get(writeItem).spec() : "none"));
        }
        long elements = spec.numel();
        long done = 0;
        while (done < elements) {
            topUp();
            Chunk c = take(spec);
            if (c.item != writeItem || c.first != done) {
                throw new IllegalStateException("chunk of item " + c.item + " at " + c.first + ", expected item "
                        + writeItem + " at " + done);
            }
            long bytes = (long) c.count * dtype.bytes();
            ByteBuffer bb = c.buffer.asSlice(0, bytes).asByteBuffer();
            while (bb.hasRemaining()) {
                out.write(bb);
            }
            free.add(c.buffer);
            done += c.count;
            progress.accept(bytes);
        }
        writeItem++;
        topUp();
    }

    /** Submits chunks until {@code depth} are in flight or all are submitted. */
    private void topUp() {
        while (inFlight.size() < depth && submitItem < items.size()) {
            long numel = items.get(submitItem).spec().numel();
            if (submitFirst >= numel) { // also skips empty tensors
                submitItem++;
                submitFirst = 0;
                continue;
            }
            int item = submitItem;
            long first = submitFirst;
            int count = (int) Math.min(chunkElements, numel - first);
            submitFirst += count;
            inFlight.add(pool.submit(() -> fill(item, first, count)));
        }
    }

    private Chunk take(TensorSpec spec) throws IOException {
        Future<Chunk> f = inFlight.poll();
        if (f == null) {
            throw new IllegalStateException("no chunk in flight for " + spec);
        }
        try {
            return f.get();
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
            throw new InterruptedIOException("interrupted while generating " + spec.name());
        } catch (ExecutionException e) {
            throw new IOException("generating " + spec.name() + " failed: " + e.getCause(), e.getCause());
        }
    }

    /** Worker: produces one chunk into a free buffer. */
    private Chunk fill(int item, long first, int count) throws InterruptedException {
        MemorySegment buf = free.take(); // at most depth chunks are in flight, so one is free
        Init init = items.get(item).init();
        float[] f = floats.get();
        short[] s = shorts.get();
        for (int off = 0; off < count; off += BLOCK) {
            int n = Math.min(BLOCK, count - off);
            init.fill(first + off, f, n);
            long pos = (long) off * dtype.bytes();
            switch (dtype) {
                case F32 -> MemorySegment.copy(f, 0, buf, LE_FLOAT, pos, n);
                case F16 -> {
                    for (int i = 0; i < n; i++) {
                        s[i] = Float.floatToFloat16(f[i]);
                    }
                    MemorySegment.copy(s, 0, buf, LE_SHORT, pos, n);
                }
                case BF16 -> {
                    for (int i = 0; i < n; i++) {
                        s[i] = toBf16(f[i]);
                    }
                    MemorySegment.copy(s, 0, buf, LE_SHORT, pos, n);
                }
                default -> throw new IllegalStateException(dtype.toString());
            }
        }
        return new Chunk(item, first, count, buf);
    }

    /** f32 -> bf16, round to nearest even (finite inputs). */
    static short toBf16(float v) {
        int bits = Float.floatToRawIntBits(v);
        return (short) ((bits + 0x7FFF + ((bits >>> 16) & 1)) >>> 16);
    }

    @Override
    public void close() {
        pool.shutdownNow();
        try {
            if (!pool.awaitTermination(1, TimeUnit.MINUTES)) {
                return; // a worker is stuck: leak the buffers rather than free memory it may touch
            }
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
            return;
        }
        arena.close();
    }
}
