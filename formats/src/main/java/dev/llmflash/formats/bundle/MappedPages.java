package dev.llmflash.formats.bundle;

import java.lang.foreign.MemorySegment;

/**
 * Gives the pages of a read-only file mapping back to the kernel once a sequential pass is done with
 * them, so that streaming through a memory-mapped file much larger than RAM keeps the process's
 * resident set small (the converter's target: under 1 GiB for a 13 GB model).
 *
 * <p>Uses {@link MemorySegment#unload()}, which on Linux is {@code madvise(MADV_DONTNEED)} on the
 * segment's page-aligned range (the JDK does the page rounding and restricts it to mapped segments).
 * On a read-only file-backed mapping that drops only this process's page-table entries: the data stays
 * in the page cache, and touching the pages again simply faults them back in, so releasing a page some
 * other tensor shares is harmless. It is never applied to anonymous memory (copies), where it would
 * zero the data: {@link MemorySegment#isMapped()} guards that. Stateless and thread-safe.
 */
public final class MappedPages {
    private MappedPages() {
    }

    /**
     * Hints that {@code segment}'s pages are no longer needed. Does nothing for segments that are not
     * file mappings, and silently nothing if the platform refuses (it is only a hint).
     */
    public static void release(MemorySegment segment) {
        if (segment.isMapped() && segment.byteSize() > 0) {
            try {
                segment.unload();
            } catch (RuntimeException e) {
                // A hint only: an unsupported platform or a closed scope must not fail the caller's work.
            }
        }
    }
}
