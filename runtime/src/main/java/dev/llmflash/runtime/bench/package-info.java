/**
 * What only benchmarks use, kept out of the runtime's core: the yardsticks the runtime is measured
 * against ({@link dev.llmflash.runtime.bench.DiskProbe} for the disk,
 * {@link dev.llmflash.runtime.bench.MemoryProbe} for DRAM bandwidth) and the synthetic activity that
 * stands in for real sparsity on random-weight models ({@link dev.llmflash.runtime.bench.SyntheticActivity},
 * plugged into flash mode through {@link dev.llmflash.runtime.bench.SyntheticSelectors}). Nothing in the
 * core imports this package.
 */
package dev.llmflash.runtime.bench;
