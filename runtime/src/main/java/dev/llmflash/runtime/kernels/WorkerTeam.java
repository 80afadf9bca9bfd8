package dev.llmflash.runtime.kernels;

import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicBoolean;
import java.util.concurrent.atomic.AtomicInteger;
import java.util.concurrent.locks.LockSupport;

/**
 * A fixed team of {@code parties} participants that run one job at a time: the calling thread is
 * participant 0 and {@code parties - 1} daemon platform threads are participants 1... Built for many
 * small jobs in a row (a forward pass calls a kernel ~40 times per token, a few microseconds each),
 * where a {@code ForkJoinPool} or executor hand-off costs more than the work.
 * <p>Protocol: a job is cut into {@code chunks} pieces that participants claim from a shared counter
 * ({@link Run#next}), the caller included, so the caller never waits for a worker to <em>start</em>:
 * on a busy machine a worker that is not scheduled simply claims nothing, and the caller does the
 * whole job itself. The caller only waits for chunks that workers have claimed to finish
 * ({@link Run#done}). Publication: the caller stores the job in {@link #current}, then bumps
 * {@link #generation} (volatile). Idle workers spin on {@code generation} (yielding after
 * {@link #PAUSE_NANOS}), and after {@link #SPIN_NANOS} park after announcing it in their
 * {@code sleeping} flag, which the caller checks after the bump (both sides write, then read the
 * other's volatile: no lost wake-up; an early {@code unpark} is remembered by {@code park}). A worker
 * that wakes late and finds an older or finished job claims nothing from it.
 * <p>Thread-safety: one job at a time; a second concurrent {@link #run} (or a nested one from inside a
 * job) throws {@link IllegalStateException} rather than deadlocking. {@link #close} is idempotent and
 * must not race with {@link #run}.
 */
final class WorkerTeam implements AutoCloseable {

    /** One job: chunk {@code chunk} of {@code chunks}, run by participant {@code participant}. */
    @FunctionalInterface
    interface Job {
        void run(int chunk, int chunks, int participant);
    }

    /**
     * How long an idle worker (and the waiting caller) spins before parking. Long enough to span the
     * gaps between the kernels of one token (attention, norms: microseconds), short enough not to
     * burn a shared core between tokens for long. Un-parking costs tens of microseconds.
     */
    static final long SPIN_NANOS = 100_000;
    /**
     * After this long, spinning goes on with {@link Thread#yield} between checks, so that with more
     * threads than free cores (a busy machine, or threads > cores) a thread with work gets the core
     * instead of losing it to a spinner for a whole time slice.
     */
    static final long PAUSE_NANOS = 10_000;

    private final int parties;
    private final Worker[] workers;
    private final AtomicBoolean busy = new AtomicBoolean();
    private volatile long generation;
    private volatile Run current;
    private volatile boolean closed;

    /** One call of {@link #run}: its chunk counters, its failure, who waits for it. */
    private static final class Run {
        final Job job;
        final int chunks;
        final AtomicInteger next = new AtomicInteger();
        final AtomicInteger done = new AtomicInteger();
        volatile Throwable failure;
        volatile Thread waiter;

        Run(Job job, int chunks) {
            this.job = job;
            this.chunks = chunks;
        }

        /** Claims and runs chunks until none is left. */
        void work(int participant) {
            int k;
            while ((k = next.getAndIncrement()) < chunks) {
                try {
                    job.run(k, chunks, participant);
                } catch (Throwable t) {
                    if (failure == null) {
                        failure = t;
                    }
                } finally {
                    if (done.incrementAndGet() == chunks) {
                        Thread w = waiter;
                        if (w != null) {
                            LockSupport.unpark(w);
                        }
                    }
                }
            }
        }
    }

    WorkerTeam(int parties, String name) {
        if (parties < 1) {
            throw new IllegalArgumentException("parties must be >= 1, got " + parties);
        }
        this.parties = parties;
        this.workers = new Worker[parties - 1];
        for (int k = 1; k < parties; k++) {
            Worker w = new Worker(k);
            w.thread = Thread.ofPlatform().daemon(true).name(name + "-" + k).unstarted(w);
            workers[k - 1] = w;
        }
        for (Worker w : workers) {
            w.thread.start();
        }
    }

    int parties() {
        return parties;
    }

    /** The thread of participant {@code participant} (1 .. parties-1). */
    Thread worker(int participant) {
        return workers[participant - 1].thread;
    }

    /**
     * Runs chunks 0 .. chunks-1 of {@code job}, each exactly once, on the caller and whichever
     * workers join in; returns when all are done, rethrowing the first failure.
     */
    void run(Job job, int chunks) {
        if (!busy.compareAndSet(false, true)) {
            throw new IllegalStateException("kernels used by two threads at once (or from inside a kernel)");
        }
        try {
            if (closed) {
                throw new IllegalStateException("kernels already closed");
            }
            Run run = new Run(job, chunks);
            if (parties > 1 && chunks > 1) {
                current = run;
                generation = generation + 1; // only this thread writes it (busy flag)
                for (Worker w : workers) {
                    if (w.sleeping) {
                        LockSupport.unpark(w.thread);
                    }
                }
            }
            run.work(0);
            awaitChunks(run);
            current = null; // drop references to the caller's arrays
            Throwable t = run.failure;
            if (t != null) {
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

    /** Waits for chunks that workers claimed and are still running. */
    private static void awaitChunks(Run run) {
        if (run.done.get() == run.chunks) {
            return;
        }
        long start = System.nanoTime();
        while (run.done.get() != run.chunks) {
            long waited = System.nanoTime() - start;
            if (waited > SPIN_NANOS) {
                run.waiter = Thread.currentThread();
                while (run.done.get() != run.chunks) {
                    LockSupport.park(run);
                }
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
        private final int participant;
        private Thread thread;
        private volatile boolean sleeping;

        Worker(int participant) {
            this.participant = participant;
        }

        @Override
        public void run() {
            long seen = 0;
            while (true) {
                seen = awaitGeneration(seen);
                if (closed) {
                    return;
                }
                Run run = current;
                if (run != null) {
                    run.work(participant);
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
