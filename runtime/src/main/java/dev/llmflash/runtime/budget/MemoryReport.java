package dev.llmflash.runtime.budget;

import java.util.LinkedHashMap;
import java.util.Map;

/**
 * What a run holds in DRAM, by the paper's categories, in bytes. {@code neuronCache} is the FFN held
 * in memory: the flash caches' preallocated rows, hybrid's resident neurons, or dense mode's whole
 * (memory-mapped) FFN.
 *
 * @param budgetBytes the budget the run was planned for (-1: none, dense mode)
 * @param buffers     I/O bounce buffers, streamed-layer buffers, activation scratch and logits
 */
public record MemoryReport(long budgetBytes, long attention, long embeddings, long predictors, long neuronCache,
                           long kvCache, long buffers) {

    public long total() {
        return attention + embeddings + predictors + neuronCache + kvCache + buffers;
    }

    /** The JSON object {@code memory} of the CLI's reports, with the process's resident set now and at peak. */
    public Map<String, Object> toJson(long baselineRssBytes) {
        Map<String, Object> m = new LinkedHashMap<>();
        m.put("budget_bytes", budgetBytes);
        m.put("attention", attention);
        m.put("embeddings", embeddings);
        m.put("predictors", predictors);
        m.put("neuron_cache", neuronCache);
        m.put("kv_cache", kvCache);
        m.put("buffers", buffers);
        m.put("total", total());
        m.put("process_rss_bytes", ProcessMemory.rssBytes());
        m.put("process_peak_rss_bytes", ProcessMemory.peakRssBytes());
        m.put("jvm_baseline_rss_bytes", baselineRssBytes);
        m.put("jvm_heap_committed_bytes", Runtime.getRuntime().totalMemory());
        return m;
    }
}
