/**
 * Byte-level BPE tokenization (GPT-2, OPT, Falcon) matching Hugging Face's tokenizers library id for id.
 * <p>The public API is {@link dev.llmflash.runtime.tokenizer.BpeTokenizer} (load, encode, decode) and
 * {@link dev.llmflash.runtime.tokenizer.StreamingDecoder} (decode while generating). The pipeline inside:
 * <pre>
 *   text ─ AddedTokenMatcher ─┬─ added token ──────────────────────────────────────────────┬─ ids
 *                             └─ plain text ─ PreTokenizer steps ─ pieces ─ BpeModel ──────┘
 *   ids ─ token bytes (ByteLevelAlphabet) ─ Utf8 (lossy, as HF) ─ text
 * </pre>
 * Files are read and validated by {@code TokenizerFiles} and {@code TokenizerConfig}.
 */
package dev.llmflash.runtime.tokenizer;
