/**
 * Reading FFN bundles from SSD: {@link dev.llmflash.runtime.io.IoEngine} issues many positional reads
 * in parallel, coalesces neighbours, and bypasses the page cache with O_DIRECT where the filesystem
 * allows it ("LLM in a flash", technique 5: parallel reads of 32 KiB+ chunks, measured without the
 * page cache). {@link dev.llmflash.runtime.io.IoStats} counts what it did.
 */
package dev.llmflash.runtime.io;
