package dev.llmflash.runtime.tokenizer;

/**
 * A token matched in the raw text before pre-tokenization and BPE (tokenizer.json's
 * {@code added_tokens}; special tokens such as {@code </s>}).
 *
 * @param id         its id
 * @param content    the text it matches, exactly
 * @param special    skipped when decoding (HF's {@code skip_special_tokens=True})
 * @param lstrip     the match also swallows the whitespace before it
 * @param rstrip     the match also swallows the whitespace after it
 * @param singleWord matches only where no word character touches it on either side
 * @param normalized matched after normalization, in a second pass over the text the first pass left
 *                   (there is never a normalizer here, so only the order of the passes differs)
 */
record AddedToken(int id, String content, boolean special, boolean lstrip, boolean rstrip,
                  boolean singleWord, boolean normalized) {

    AddedToken {
        if (content.isEmpty()) {
            throw new IllegalArgumentException("empty added token");
        }
    }

    /** A special token as OPT and GPT-2 checkpoints without a tokenizer.json have them. */
    static AddedToken special(int id, String content) {
        return new AddedToken(id, content, true, false, false, false, false);
    }
}
