/** JMH kernel benchmarks and the end-to-end benchmark harness. */
package dev.llmflash.benchmarks;
