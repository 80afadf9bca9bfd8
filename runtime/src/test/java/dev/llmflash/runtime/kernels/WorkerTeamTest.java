package dev.llmflash.runtime.kernels;

import org.junit.jupiter.api.Test;

import java.util.concurrent.atomic.AtomicIntegerArray;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertSame;
import static org.junit.jupiter.api.Assertions.assertThrows;

/** The fork/join hand-off: every part runs exactly once per job, failures reach the caller. */
class WorkerTeamTest {

    @Test
    void everyPartRunsOncePerJobOverManyJobs() throws Exception {
        for (int parties = 1; parties <= 4; parties++) {
            try (WorkerTeam team = new WorkerTeam(parties, "test-team")) {
                AtomicIntegerArray runs = new AtomicIntegerArray(parties);
                int jobs = 10_000;
                for (int j = 0; j < jobs; j++) {
                    if (j % 2500 == 2499) {
                        Thread.sleep(2 * WorkerTeam.SPIN_NANOS / 1_000_000 + 5); // let workers park
                    }
                    int p = parties;
                    team.run((part, n) -> {
                        assertEquals(p, n);
                        runs.incrementAndGet(part);
                    });
                }
                for (int k = 0; k < parties; k++) {
                    assertEquals(jobs, runs.get(k), "part " + k + " of " + parties);
                }
            }
        }
    }

    @Test
    void partZeroRunsOnTheCaller() {
        try (WorkerTeam team = new WorkerTeam(3, "test-team")) {
            Thread caller = Thread.currentThread();
            Thread[] seen = new Thread[3];
            team.run((part, n) -> seen[part] = Thread.currentThread());
            assertSame(caller, seen[0]);
            assertEquals("test-team-1", seen[1].getName());
            assertEquals("test-team-2", seen[2].getName());
        }
    }

    @Test
    void workerFailureReachesTheCallerAndTeamStaysUsable() {
        try (WorkerTeam team = new WorkerTeam(3, "test-team")) {
            IllegalStateException boom = new IllegalStateException("boom");
            IllegalStateException e = assertThrows(IllegalStateException.class, () -> team.run((part, n) -> {
                if (part == 2) {
                    throw boom;
                }
            }));
            assertSame(boom, e);
            AtomicIntegerArray runs = new AtomicIntegerArray(3);
            team.run((part, n) -> runs.incrementAndGet(part));
            assertEquals(1, runs.get(0) + runs.get(1) + runs.get(2) - 2);
        }
    }

    @Test
    void nestedRunIsRejected() {
        try (WorkerTeam team = new WorkerTeam(2, "test-team")) {
            assertThrows(IllegalStateException.class, () -> team.run((part, n) -> {
                if (part == 0) {
                    team.run((p, m) -> { });
                }
            }));
        }
    }
}
