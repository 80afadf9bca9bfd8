package dev.llmflash.runtime.kernels;

import org.junit.jupiter.api.Test;

import java.util.Set;
import java.util.concurrent.ConcurrentHashMap;
import java.util.concurrent.atomic.AtomicIntegerArray;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertSame;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

/** The fork/join hand-off: every chunk runs exactly once per job, failures reach the caller. */
class WorkerTeamTest {

    @Test
    void everyChunkRunsOncePerJobOverManyJobs() throws Exception {
        for (int parties = 1; parties <= 4; parties++) {
            try (WorkerTeam team = new WorkerTeam(parties, "test-team")) {
                int chunks = 7;
                AtomicIntegerArray runs = new AtomicIntegerArray(chunks);
                int jobs = 10_000;
                for (int j = 0; j < jobs; j++) {
                    if (j % 2500 == 2499) {
                        Thread.sleep(2 * WorkerTeam.SPIN_NANOS / 1_000_000 + 5); // let workers park
                    }
                    int p = parties;
                    team.run((k, n, who) -> {
                        assertEquals(chunks, n);
                        assertTrue(who >= 0 && who < p, "participant " + who);
                        runs.incrementAndGet(k);
                    }, chunks);
                }
                for (int k = 0; k < chunks; k++) {
                    assertEquals(jobs, runs.get(k), "chunk " + k + " with " + parties + " parties");
                }
            }
        }
    }

    @Test
    void workersTakeChunksAndNameTheirThreads() {
        try (WorkerTeam team = new WorkerTeam(3, "test-team")) {
            Set<String> seen = ConcurrentHashMap.newKeySet();
            Thread caller = Thread.currentThread();
            // Slow chunks: the workers, spinning or woken, join in long before the caller is done.
            for (int round = 0; round < 50 && seen.size() < 3; round++) {
                team.run((k, n, who) -> {
                    Thread t = Thread.currentThread();
                    assertEquals(who == 0, t == caller, "participant 0 is the caller");
                    seen.add(t == caller ? "caller" : t.getName());
                    long end = System.nanoTime() + 200_000;
                    while (System.nanoTime() < end) {
                        Thread.onSpinWait();
                    }
                }, 64);
            }
            assertEquals(Set.of("caller", "test-team-1", "test-team-2"), seen);
        }
    }

    @Test
    void failureReachesTheCallerAndTeamStaysUsable() {
        try (WorkerTeam team = new WorkerTeam(3, "test-team")) {
            IllegalStateException boom = new IllegalStateException("boom");
            IllegalStateException e = assertThrows(IllegalStateException.class, () -> team.run((k, n, who) -> {
                if (k == 5) {
                    throw boom;
                }
            }, 8));
            assertSame(boom, e);
            AtomicIntegerArray runs = new AtomicIntegerArray(8);
            team.run((k, n, who) -> runs.incrementAndGet(k), 8);
            for (int k = 0; k < 8; k++) {
                assertEquals(1, runs.get(k));
            }
        }
    }

    @Test
    void nestedRunIsRejected() {
        try (WorkerTeam team = new WorkerTeam(2, "test-team")) {
            assertThrows(IllegalStateException.class, () -> team.run((k, n, who) -> {
                if (k == 0) {
                    team.run((k2, n2, w2) -> { }, 1);
                }
            }, 2));
        }
    }
}
