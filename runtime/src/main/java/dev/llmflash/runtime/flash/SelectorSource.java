package dev.llmflash.runtime.flash;

import java.util.Map;

/**
 * Flash mode's active sets from somewhere other than the bundle's predictors: a plug-in the caller
 * supplies with {@link FlashRuntime.Options#withSelectorSource} (benchmarks on random-weight models use
 * {@code bench.SyntheticSelectors}, which have no real activity). When set it replaces the
 * {@link FlashRuntime.Selector}: no predictors are read, and the budget counts what it reports.
 * Called while the runtime is opened and the model is built, from one thread.
 */
public interface SelectorSource {

    /** Layer {@code layer}'s own selector (a fresh one each call: selectors keep per-sequence state). */
    ActiveSelector layer(int layer);

    /** The expected share of a layer's neurons selected per token, in (0, 1]: the budget's cache floors. */
    double density();

    /** Bytes the source's predictors hold (emulated ones included): counted in the budget. */
    long predictorBytes();

    /**
     * The look-ahead that layer {@code from} runs to prefetch layer {@code from + 1}, given that layer's
     * own selector: {own (possibly replaced), look-ahead}, or {own, null} for none.
     */
    ActiveSelector[] lookahead(int from, ActiveSelector ownOfNext);

    /** The run report's {@code selector} value. */
    String name();

    /** Entries the run report adds at its top level to show the source (its parameters). */
    Map<String, Object> describe();
}
