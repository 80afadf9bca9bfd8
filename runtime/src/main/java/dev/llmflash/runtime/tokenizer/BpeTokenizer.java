package dev.llmflash.runtime.tokenizer;

import dev.llmflash.formats.FormatException;

import java.nio.file.Path;
import java.util.HashMap;
import java.util.HashSet;
import java.util.List;
import java.util.Map;
import java.util.Objects;
import java.util.OptionalInt;
import java.util.Set;

/**
 * A byte-level BPE tokenizer (GPT-2, OPT, Falcon) that gives the same ids and text as Hugging Face's
 * tokenizers library.
 * <p>Encoding, in order:
 * <ol>
 *   <li>added tokens ({@code </s>}, ...) that appear literally in the text are cut out and become their
 *       ids ({@link AddedTokenMatcher});</li>
 *   <li>each remaining stretch of text goes through the pre-tokenizer pipeline ({@link PreTokenizer}:
 *       GPT-2's regex split and the byte alphabet, plus Falcon's punctuation and digit splits);</li>
 *   <li>each piece becomes ids by BPE ({@link BpeModel}).</li>
 * </ol>
 * Decoding concatenates the bytes of the tokens (skipping special tokens, as HF's
 * {@code decode(ids, skip_special_tokens=True)}) and reads them as UTF-8, ill-formed bytes becoming
 * U+FFFD ({@link Utf8}). No {@code clean_up_tokenization_spaces}: the text comes back exactly.
 * <p>Files: a model folder's {@code tokenizer.json}, or its {@code vocab.json} + {@code merges.txt};
 * {@code tokenizer_config.json} for the BOS/EOS tokens and {@code add_bos_token} (see
 * {@link #fromModelDir}). What the loader does not implement is refused with a
 * {@link FormatException}, never approximated.
 * <p>Immutable and thread-safe (the per-piece BPE cache is a concurrent map); share one instance.
 */
public final class BpeTokenizer {
    private final BpeModel model;
    private final List<PreTokenizer> preTokenizers;
    private final AddedTokenMatcher addedTokens;
    private final Map<String, Integer> ids;  // vocabulary and added tokens
    private final String[] tokens;           // by id; null where no token has that id
    private final byte[][] tokenBytes;       // by id: the bytes decode() writes for it
    private final boolean[] special;         // by id
    private final int bosId;
    private final int eosId;
    private final boolean addBos;
    private final Path source;

    BpeTokenizer(Path source, BpeModel model, List<PreTokenizer> preTokenizers, List<AddedToken> added,
                 String bosToken, String eosToken, boolean addBos) {
        this.source = source;
        this.model = model;
        this.preTokenizers = List.copyOf(preTokenizers);
        this.addedTokens = new AddedTokenMatcher(added);
        Map<String, Integer> all = new HashMap<>(model.vocab());
        int size = 0;
        for (int id : model.vocab().values()) {
            size = Math.max(size, id + 1);
        }
        for (AddedToken t : added) {
            all.put(t.content(), t.id());
            size = Math.max(size, t.id() + 1);
        }
        this.ids = Map.copyOf(all);
        this.tokens = new String[size];
        model.vocab().forEach((t, id) -> tokens[id] = t);
        this.special = new boolean[size];
        for (AddedToken t : added) {
            tokens[t.id()] = t.content();
        }
        // HF skips a token when decoding if its text is that of a special added token.
        Set<String> specialTexts = new HashSet<>();
        for (AddedToken t : added) {
            if (t.special()) {
                specialTexts.add(t.content());
            }
        }
        this.tokenBytes = new byte[size][];
        for (int id = 0; id < size; id++) {
            tokenBytes[id] = tokens[id] == null ? new byte[0] : ByteLevelAlphabet.tokenBytes(tokens[id]);
            special[id] = tokens[id] != null && specialTexts.contains(tokens[id]);
        }
        this.bosId = requireId(bosToken, "BOS");
        this.eosId = requireId(eosToken, "EOS");
        this.addBos = addBos;
    }

    private int requireId(String token, String what) {
        Integer id = ids.get(token);
        if (id == null) {
            throw new FormatException(source, "the " + what + " token '" + token
                    + "' is neither in the vocabulary nor an added token",
                    "fix bos_token/eos_token in tokenizer_config.json");
        }
        return id;
    }

    /**
     * The tokenizer of a Hugging Face model folder: {@code tokenizer.json} if present, else
     * {@code vocab.json} + {@code merges.txt}; {@code tokenizer_config.json}, when present, names the
     * BOS/EOS tokens and says whether to add BOS. Without one, OPT's conventions hold: {@code </s>} is
     * BOS and EOS (GPT-2's {@code <|endoftext|>} where the vocabulary has no {@code </s>}), BOS is
     * added, and {@code <s> <pad> </s> <unk>} are special tokens.
     *
     * @throws FormatException if the folder has no tokenizer, or a file is unreadable, malformed or uses
     *                         a feature this tokenizer does not implement (the message names the file)
     */
    public static BpeTokenizer fromModelDir(Path dir) {
        return TokenizerFiles.fromModelDir(dir);
    }

    /**
     * A GPT-2-style tokenizer from its two files (GPT-2's pre-tokenizer, no prefix space), with OPT's
     * conventions for the special tokens (see {@link #fromModelDir}).
     *
     * @throws FormatException if a file is missing, unreadable or malformed
     */
    public static BpeTokenizer fromVocabMerges(Path vocabJson, Path mergesTxt) {
        return TokenizerFiles.fromVocabMerges(vocabJson, mergesTxt, TokenizerConfig.ABSENT);
    }

    /**
     * A tokenizer from a tokenizers-library {@code tokenizer.json} alone: a BPE model, no normalizer,
     * pre-tokenizers ByteLevel / Punctuation / Digits / Split (in a Sequence or alone), a ByteLevel
     * decoder, and no post-processor other than ByteLevel or a TemplateProcessing that only puts a BOS
     * token in front. BOS/EOS as in {@link #fromModelDir} without a tokenizer_config.json.
     *
     * @throws FormatException if the file is missing, unreadable, malformed, or uses anything else
     */
    public static BpeTokenizer fromTokenizerJson(Path tokenizerJson) {
        return TokenizerFiles.fromTokenizerJson(tokenizerJson, TokenizerConfig.ABSENT);
    }

    /** The ids of {@code text}, without BOS. */
    public int[] encode(String text) {
        IntList out = new IntList(text.length() / 3 + 4);
        encodeInto(text, out);
        return out.toArray();
    }

    /** The ids of {@code text}, with BOS in front if the tokenizer adds one ({@link #addsBos()}). */
    public int[] encodeWithBos(String text) {
        IntList out = new IntList(text.length() / 3 + 5);
        if (addBos) {
            out.add(bosId);
        }
        encodeInto(text, out);
        return out.toArray();
    }

    private void encodeInto(String text, IntList out) {
        Objects.requireNonNull(text, "text");
        for (AddedTokenMatcher.Segment seg : addedTokens.split(text)) {
            if (seg.tokenId() >= 0) {
                out.add(seg.tokenId());
                continue;
            }
            for (String piece : PreTokenizer.run(preTokenizers, seg.text())) {
                model.encode(piece, out);
            }
        }
    }

    /**
     * The text of {@code ids}, skipping special tokens (HF {@code decode(ids, skip_special_tokens=True)}).
     * Ids with no token are skipped too, as HF does.
     */
    public String decode(int[] ids) {
        return decode(ids, 0, ids.length, true);
    }

    /** The text of {@code ids[from, to)}, skipping special tokens. */
    public String decode(int[] ids, int from, int to) {
        return decode(ids, from, to, true);
    }

    /** The text of {@code ids[from, to)}; with {@code skipSpecialTokens} false, {@code </s>} etc. appear. */
    public String decode(int[] ids, int from, int to, boolean skipSpecialTokens) {
        Objects.checkFromToIndex(from, to, ids.length);
        int n = 0;
        for (int k = from; k < to; k++) {
            n += bytesOf(ids[k], skipSpecialTokens).length;
        }
        byte[] buf = new byte[n];
        int o = 0;
        for (int k = from; k < to; k++) {
            byte[] b = bytesOf(ids[k], skipSpecialTokens);
            System.arraycopy(b, 0, buf, o, b.length);
            o += b.length;
        }
        return Utf8.decode(buf, 0, n);
    }

    private static final byte[] NO_BYTES = new byte[0];

    private byte[] bytesOf(int id, boolean skipSpecial) {
        if (id < 0 || id >= tokenBytes.length || (skipSpecial && special[id])) {
            return NO_BYTES;
        }
        return tokenBytes[id];
    }

    /** The bytes {@link #decode} writes for {@code id} (none for a special token or an unknown id). */
    byte[] decodeBytes(int id) {
        return bytesOf(id, true);
    }

    /** A new decoder for printing tokens as they come. */
    public StreamingDecoder decoder() {
        return new StreamingDecoder(this);
    }

    public int bosId() {
        return bosId;
    }

    public int eosId() {
        return eosId;
    }

    /** Whether {@link #encodeWithBos} puts {@link #bosId()} in front. */
    public boolean addsBos() {
        return addBos;
    }

    /** One past the largest token id (vocabulary and added tokens). */
    public int vocabSize() {
        return tokens.length;
    }

    /**
     * The token with this id, as the vocabulary writes it (byte alphabet: {@code "Ġthe"}).
     *
     * @throws IllegalArgumentException if no token has this id
     */
    public String token(int id) {
        if (id < 0 || id >= tokens.length || tokens[id] == null) {
            throw new IllegalArgumentException("no token has id " + id + " (vocabulary size " + tokens.length + ")");
        }
        return tokens[id];
    }

    /** The id of a token written as the vocabulary writes it, if there is one. */
    public OptionalInt id(String token) {
        Integer id = ids.get(token);
        return id == null ? OptionalInt.empty() : OptionalInt.of(id);
    }

    /** Whether {@code id} is a special token (skipped by {@link #decode(int[])}). */
    public boolean isSpecial(int id) {
        return id >= 0 && id < special.length && special[id];
    }

    @Override
    public String toString() {
        return "BpeTokenizer[" + source + ", " + tokens.length + " tokens, " + model.mergeCount() + " merges]";
    }
}
