/**
 * "LLM in a flash" DRAM management: the per-layer cache of FFN neuron bundles read from {@code ffn.bin}
 * (sliding window of recently active neurons, deletion by moving the last rows into the holes).
 */
package dev.llmflash.runtime.flash;
