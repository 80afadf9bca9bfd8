package dev.llmflash.trainer;

import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.ExecutionException;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;
import java.util.concurrent.Future;
import java.util.concurrent.atomic.AtomicInteger;
import java.util.function.IntConsumer;

/**
 * A fixed team for the trainer's parallel phases: {@code threads - 1} daemon platform threads
 * ({@code llmflash-trainer-N-k}) plus the calling thread. {@link #run} calls {@code part(0..threads-1)}
 * once each, part 0 on the caller, and returns when all are done. A training step is milliseconds, so
 * an executor hand-off (tens of microseconds) is noise here; the runtime's spinning team is not needed.
 * <p>Determinism: parts are fixed ranges ({@link #lo}), and every kernel computes each output element
 * in one part with a fixed summation order, so results do not depend on the thread count.
 * <p>Thread-safety: one caller at a time. Close when done (stops the threads).
 */
final class Team implements AutoCloseable {
    private static final AtomicInteger INSTANCES = new AtomicInteger();

    private final int threads;
    private final ExecutorService pool;

    Team(int threads) {
        this.threads = threads;
        if (threads == 1) {
            pool = null;
        } else {
            String prefix = "llmflash-trainer-" + INSTANCES.incrementAndGet() + "-";
            AtomicInteger k = new AtomicInteger();
            pool = Executors.newFixedThreadPool(threads - 1, r -> {
                Thread t = new Thread(r, prefix + k.incrementAndGet());
                t.setDaemon(true);
                return t;
            });
        }
    }

    int threads() {
        return threads;
    }

    /** Runs {@code part.accept(p)} for p in [0, threads); rethrows the first failure. */
    void run(IntConsumer part) {
        if (pool == null) {
            part.accept(0);
            return;
        }
        List<Future<?>> futures = new ArrayList<>(threads - 1);
        for (int p = 1; p < threads; p++) {
            int q = p;
            futures.add(pool.submit(() -> part.accept(q)));
        }
        Throwable failure = null;
        try {
            part.accept(0);
        } catch (Throwable t) {
            failure = t;
        }
        for (Future<?> f : futures) {
            try {
                f.get();
            } catch (ExecutionException e) {
                if (failure == null) {
                    failure = e.getCause();
                }
            } catch (InterruptedException e) {
                Thread.currentThread().interrupt();
                if (failure == null) {
                    failure = e;
                }
            }
        }
        if (failure instanceof RuntimeException re) {
            throw re;
        }
        if (failure instanceof Error er) {
            throw er;
        }
        if (failure != null) {
            throw new IllegalStateException(failure);
        }
    }

    /** Start of part p of parts over [0, n), rounded down to a multiple of {@code align} (end: n). */
    static int lo(int n, int p, int parts, int align) {
        if (p >= parts) {
            return n;
        }
        long v = (long) n * p / parts;
        return (int) (v / align * align);
    }

    @Override
    public void close() {
        if (pool != null) {
            pool.shutdownNow();
        }
    }
}
