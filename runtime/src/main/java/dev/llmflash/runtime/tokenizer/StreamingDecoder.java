package dev.llmflash.runtime.tokenizer;

import java.util.Arrays;

/**
 * Decodes token ids one at a time, for printing text as it is generated. A character whose UTF-8
 * bytes are split over several tokens (common for emoji and CJK in a byte-level vocabulary) is held
 * back until its last byte arrives, so {@link #push} never returns part of a character; the
 * concatenation of everything {@link #push} and {@link #flush} return equals
 * {@link BpeTokenizer#decode(int[])} of all the ids. Special tokens are skipped, as there.
 * <p>Not thread-safe: one decoder per output stream. Holds at most 3 pending bytes between calls (plus
 * those of the last token). Nothing to close.
 */
public final class StreamingDecoder {
    private final BpeTokenizer tokenizer;
    private byte[] pending = new byte[16];
    private int pendingLength;

    StreamingDecoder(BpeTokenizer tokenizer) {
        this.tokenizer = tokenizer;
    }

    /**
     * Adds one token and returns the text it completes: every whole character decoded so far and not yet
     * returned (possibly empty). Ill-formed bytes come out as U+FFFD as soon as they are known to be
     * ill-formed; an unfinished but so-far well-formed sequence waits for the next token.
     */
    public String push(int id) {
        byte[] b = tokenizer.decodeBytes(id);
        if (b.length == 0) {
            return "";
        }
        if (pendingLength + b.length > pending.length) {
            pending = Arrays.copyOf(pending, Math.max(pending.length * 2, pendingLength + b.length));
        }
        System.arraycopy(b, 0, pending, pendingLength, b.length);
        pendingLength += b.length;
        StringBuilder out = new StringBuilder(pendingLength);
        int done = Utf8.decode(pending, 0, pendingLength, out, false);
        System.arraycopy(pending, done, pending, 0, pendingLength - done);
        pendingLength -= done;
        return out.toString();
    }

    /**
     * Ends the stream: returns what is still held back (an unfinished sequence becomes U+FFFD, as a
     * full decode would make it) and resets the decoder for a new stream.
     */
    public String flush() {
        String s = Utf8.decode(pending, 0, pendingLength);
        pendingLength = 0;
        return s;
    }
}
