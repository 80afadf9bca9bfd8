package dev.llmflash.runtime.kernels;

import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicBoolean;
import java.util.concurrent.atomic.AtomicInteger;
import java.util.concurrent.locks.LockSupport;

/**
 * A fixed team of {@code parties} participants that run one job at a time: the calling thread is
 * participant 0 and {@code parties - 1} daemon platform threads are participants 1.., so the caller
 * does its share instead of idling. Built for many small jobs in a row (a forward pass calls a kernel
 * ~40 times per token, a few microseconds each), where a {@code ForkJoinPool} or executor hand-off
 * costs more than the work.
 * <p>Protocol: the caller publishes the job and bumps {@link #generation} (a volatile write); workers
 * spin on {@code generation} for {@link #SPIN_NANOS}, then park after announcing it in their
 * {@code sleeping} flag (the caller unparks only sleepers). Each worker counts down {@link #pending}
 * when done; the caller runs part 0, then spins, then parks the same way until {@code pending == 0}.
 * Both hand-shakes are Dekker-style on volatiles: a party either sees the other's write or the other
 * sees its flag, so no wake-up is lost ({@link LockSupport#unpark} before {@code park} is remembered).
 * <p>Thread-safety: one job at a time; a second concurrent {@link #run} (or a nested one from inside a
 * job) throws {@link IllegalStateException} rather than deadlocking. {@link #close} is idempotent and
 * must not race with {@link #run}.
 */
final class WorkerTeam implements AutoCloseable {

    /** One job, split into {@code parts} disjoint parts; part {@code part} runs on one participant. */
    @FunctionalInterface
    interface Job {
        void run(int part, int parts);
    }

    /**
     * How long an idle worker (and the waiting caller) spins before parking. Long enough to span the
     * gaps between the kernels of one token (attention, norms: microseconds), short enough not to
     * burn a shared core between tokens for long. Un-parking costs tens of microseconds.
     */
    static final long SPIN_NANOS = 100_000;
    /**
     * After this long, spinning goes on with {@link Thread#yield} between checks, so that with more
     * threads than free cores (a busy machine, or threads > cores) the thread being waited for gets
     * the core instead of losing it to a spinner for a whole time slice.
     */
    static final long PAUSE_NANOS = 10_000;

    private final int parties;
    private final Worker[] workers;
    private final AtomicBoolean busy = new AtomicBoolean();
    private final AtomicInteger pending = new AtomicInteger();
    private volatile long generation;
    private volatile Job job;
    private volatile Thread waiter;
    private volatile Throwable failure;
    private volatile boolean closed;

    WorkerTeam(int parties, String name) {
        if (parties < 1) {
            throw new IllegalArgumentException("parties must be >= 1, got " + parties);
        }
        this.parties = parties;
        this.workers = new Worker[parties - 1];
        for (int k = 1; k < parties; k++) {
            Worker w = new Worker(k);
            Thread t = Thread.ofPlatform().daemon(true).name(name + "-" + k).unstarted(w);
            w.thread = t;
            workers[k - 1] = w;
        }
        for (Worker w : workers) {
            w.thread.start();
        }
    }

    int parties() {
        return parties;
    }

    /** The thread of participant {@code part} (1 .. parties-1). */
    Thread worker(int part) {
        return workers[part - 1].thread;
    }

    /** Runs all parts of {@code j}, part 0 on the calling thread; returns when every part is done. */
    void run(Job j) {
        if (!busy.compareAndSet(false, true)) {
            throw new IllegalStateException("kernels used by two threads at once (or from inside a kernel)");
        }
        try {
            if (closed) {
                throw new IllegalStateException("kernels already closed");
            }
            if (parties == 1) {
                j.run(0, 1);
                return;
            }
            failure = null;
            job = j;
            pending.set(parties - 1);
            generation = generation + 1; // only this thread writes it (busy flag)
            for (Worker w : workers) {
                if (w.sleeping) {
                    LockSupport.unpark(w.thread);
                }
            }
            Throwable own = null;
            try {
                j.run(0, parties);
            } catch (Throwable t) {
                own = t;
            }
            awaitWorkers();
            job = null; // drop references to the caller's arrays
            Throwable t = own != null ? own : failure;
            if (t != null) {
                failure = null;
                if (t instanceof RuntimeException e) {
                    throw e;
                }
                if (t instanceof Error e) {
                    throw e;
                }
                throw new IllegalStateException("kernel job failed", t);
            }
        } finally {
            busy.set(false);
        }
    }

    private void awaitWorkers() {
        if (pending.get() == 0) {
            return;
        }
        long start = System.nanoTime();
        while (pending.get() != 0) {
            long waited = System.nanoTime() - start;
            if (waited > SPIN_NANOS) {
                waiter = Thread.currentThread();
                while (pending.get() != 0) {
                    LockSupport.park(this);
                }
                waiter = null;
                return;
            }
            pause(waited);
        }
    }

    private static void pause(long waitedNanos) {
        if (waitedNanos < PAUSE_NANOS) {
            Thread.onSpinWait();
        } else {
            Thread.yield();
        }
    }

    @Override
    public void close() {
        if (closed) {
            return;
        }
        closed = true;
        generation = generation + 1;
        for (Worker w : workers) {
            LockSupport.unpark(w.thread);
        }
        for (Worker w : workers) {
            try {
                w.thread.join(TimeUnit.SECONDS.toMillis(5));
            } catch (InterruptedException e) {
                Thread.currentThread().interrupt();
                return;
            }
        }
    }

    private final class Worker implements Runnable {
        private final int part;
        private Thread thread;
        private volatile boolean sleeping;

        Worker(int part) {
            this.part = part;
        }

        @Override
        public void run() {
            long seen = 0;
            while (true) {
                long g = awaitGeneration(seen);
                seen = g;
                if (closed) {
                    return;
                }
                try {
                    job.run(part, parties);
                } catch (Throwable t) {
                    failure = t;
                } finally {
                    if (pending.decrementAndGet() == 0) {
                        Thread w = waiter;
                        if (w != null) {
                            LockSupport.unpark(w);
                        }
                    }
                }
            }
        }

        private long awaitGeneration(long seen) {
            long g = generation;
            if (g != seen) {
                return g;
            }
            long start = System.nanoTime();
            while ((g = generation) == seen) {
                long waited = System.nanoTime() - start;
                if (waited > SPIN_NANOS) {
                    sleeping = true;
                    while ((g = generation) == seen) {
                        LockSupport.park(this);
                    }
                    sleeping = false;
                    return g;
                }
                pause(waited);
            }
            return g;
        }
    }
}
