/** Kernels, tokenizer, forward passes, sampling and generation. */
package dev.llmflash.runtime;
