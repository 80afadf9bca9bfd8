/**
 * Weight views over a checkpoint's tensors ({@link dev.llmflash.runtime.weights.Matrix}): the memory
 * belongs to the checkpoint. Below the FFN variants and the forward passes, which both read weights.
 */
package dev.llmflash.runtime.weights;
