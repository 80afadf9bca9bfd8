// Regenerates the oracle files in this folder with Hugging Face's tokenizers library (its Node.js
// binding, npm package "tokenizers" 0.23.2). Run from a folder where that package is installed:
//   npm install tokenizers@0.23.2 && NODE_PATH=$PWD/node_modules node <repo>/testdata/tokenizer/make_oracle.js <repo>/testdata
// Deterministic: the random strings come from a seeded generator.
'use strict';
const { Tokenizer } = require('tokenizers');
const fs = require('fs');
const path = require('path');

const testdata = process.argv[2];
const out = path.join(testdata, 'tokenizer');

// ---------------------------------------------------------------- random strings (mulberry32)
function rng(seed) {
  return function () {
    seed |= 0; seed = (seed + 0x6D2B79F5) | 0;
    let t = Math.imul(seed ^ (seed >>> 15), 1 | seed);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}
const FRAGMENTS = [
  'the', ' the', 'The', 'quick', ' brown', 'fox', 'Hello', 'world', 'a', 'aa', 'aaaa', 'ing', 'tion',
  ' ', '  ', '   ', '    ', '\t', '\n', '\n\n', '\r\n', ' \n ', '\t\t ',
  "'s", "'t", "'re", "'ve", "'m", "'ll", "'d", "'S", "'", "''", " '", "don't", "I'm", "rock'n'roll",
  '0', '7', '42', '123', '2024', '3.14159', '1,000,000', '12345678', '$100', '50%', '#1',
  '.', ',', '!', '?', '...', '!!', '--', '—', '–', '(', ')', '[x]', '{y}', '"', '“', '”', '«', '»', '…',
  '<', '>', '/', '\\', '@', '&', '*', '+', '=', '~', '`', '^', '|', '_', '__init__', 'http://x.org/a?b=c',
  'é', 'café', 'naïve', 'ß', 'Straße', 'жизнь', 'мир', 'Ελλάδα', 'שָׁלוֹם', 'مرحبا', 'हिन्दी', 'ไทย',
  '日本語', 'のテキスト', '中文', '한국어', 'e\u0301', 'n\u0303o', 'ﬁ', 'Ⅻ', '½', '²', '³', '¹', '¼', '٣٤٥', '१२',
  '🤖', '🚀', '👍🏽', '🇺🇸', '❤️', '👨‍👩‍👧', '🙂', '𝔘𝔫𝔦', '\u00a0', '\u2003', '\u3000', '\u2028', '\u0085',
  '\u000b', '\u000c', '\u001c', '\u001f', '\u0000', '\u007f', '\u200b', '\u200d', '\ufeff', '\ufffd',
  '</s>', '<s>', '<pad>', '<unk>', '<|endoftext|>', '</s', 's>', '<<s>>', '</s></s>',
];
function randomStrings(seed, count) {
  const r = rng(seed);
  const list = [];
  for (let k = 0; k < count; k++) {
    const parts = 1 + Math.floor(r() * 14);
    let s = '';
    for (let p = 0; p < parts; p++) {
      if (r() < 0.15) {
        // a random code point from a few blocks
        const blocks = [[0x20, 0x7e], [0xa0, 0x17f], [0x370, 0x3ff], [0x400, 0x4ff], [0x2000, 0x206f],
                        [0x3040, 0x30ff], [0x4e00, 0x4fff], [0xac00, 0xacff], [0x1f300, 0x1f64f], [0x0, 0x1f]];
        const b = blocks[Math.floor(r() * blocks.length)];
        s += String.fromCodePoint(b[0] + Math.floor(r() * (b[1] - b[0] + 1)));
      } else {
        s += FRAGMENTS[Math.floor(r() * FRAGMENTS.length)];
      }
    }
    list.push(s);
  }
  return list;
}

async function cases(tok, texts) {
  const res = [];
  for (const text of texts) {
    const e = await tok.encode(text, null, { addSpecialTokens: false });
    const ids = Array.from(e.getIds());
    res.push({ text, ids, decoded: await tok.decode(ids, true) });
  }
  return res;
}

// One case per line: small diffs, readable files.
function casesJson(list, indent) {
  return '[\n' + list.map((c) => indent + ' ' + JSON.stringify(c)).join(',\n') + '\n' + indent + ']';
}
function write(name, value) {
  let text;
  if (Array.isArray(value) && value.length > 0 && value[0].cases) {
    text = '[\n' + value.map((v) => {
      const head = JSON.stringify({ ...v, cases: undefined });
      return ' ' + head.slice(0, -1) + ', "cases": ' + casesJson(v.cases, ' ') + '}';
    }).join(',\n') + '\n]';
  } else if (Array.isArray(value)) {
    text = casesJson(value, '');
  } else {
    text = JSON.stringify(value, null, 1);
  }
  fs.writeFileSync(path.join(out, name), text + '\n');
}

function byteLevelAlphabet() {
  const bs = [];
  for (let b = 0x21; b <= 0x7e; b++) bs.push(b);
  for (let b = 0xa1; b <= 0xac; b++) bs.push(b);
  for (let b = 0xae; b <= 0xff; b++) bs.push(b);
  const chars = new Array(256);
  let n = 0;
  for (let b = 0; b < 256; b++) chars[b] = bs.includes(b) ? String.fromCharCode(b) : String.fromCharCode(256 + n++);
  return chars;
}

(async () => {
  // 1. Random strings through the opt-mini checkpoint's own tokenizer.json.
  const opt = Tokenizer.fromFile(path.join(testdata, 'models/opt-mini/tokenizer.json'));
  write('opt_mini_fuzz_cases.json', await cases(opt, randomStrings(1, 400)));

  // 1b. Whole corpora (too many ids to list): count, FNV-1a 32 over the ids as 4-byte little-endian
  //     ints, and the first and last 64 ids.
  const corpora = [];
  for (const file of ['reference/dev.txt', 'reference/train-sample.txt']) {
    const text = fs.readFileSync(path.join(testdata, file), 'utf8');
    const ids = Array.from((await opt.encode(text, null, { addSpecialTokens: false })).getIds());
    let h = 0x811c9dc5;
    for (const id of ids) {
      for (let k = 0; k < 4; k++) { h ^= (id >>> (8 * k)) & 0xff; h = Math.imul(h, 0x01000193) >>> 0; }
    }
    corpora.push({ file, count: ids.length, fnv1a32: h.toString(16).padStart(8, '0'),
                   first: ids.slice(0, 64), last: ids.slice(-64) });
  }
  fs.writeFileSync(path.join(out, 'opt_mini_corpus_digests.json'),
    '[\n' + corpora.map((c) => ' ' + JSON.stringify(c)).join(',\n') + '\n]\n');

  // 2. The same through real GPT-2 (vocab.json + merges.txt as GPT2TokenizerFast builds them).
  const gpt2Vocab = JSON.parse(fs.readFileSync(path.join(testdata, 'reference/gpt2-vocab.json'), 'utf8'));
  const gpt2Merges = fs.readFileSync(path.join(testdata, 'reference/gpt2-merges.txt'), 'utf8')
    .split('\n').filter((l) => l.length > 0 && !l.startsWith('#version'));
  const gpt2 = Tokenizer.fromString(JSON.stringify({
    version: '1.0', truncation: null, padding: null,
    added_tokens: [{ id: 50256, content: '<|endoftext|>', single_word: false, lstrip: false, rstrip: false,
                     normalized: false, special: true }],
    normalizer: null,
    pre_tokenizer: { type: 'ByteLevel', add_prefix_space: false, trim_offsets: true, use_regex: true },
    post_processor: { type: 'ByteLevel', add_prefix_space: true, trim_offsets: false, use_regex: true },
    decoder: { type: 'ByteLevel', add_prefix_space: true, trim_offsets: true, use_regex: true },
    model: { type: 'BPE', dropout: null, unk_token: null, continuing_subword_prefix: null,
             end_of_word_suffix: null, fuse_unk: false, byte_fallback: false, ignore_merges: false,
             vocab: gpt2Vocab, merges: gpt2Merges },
  }));
  write('gpt2_fuzz_cases.json', await cases(gpt2, randomStrings(2, 300)));

  // 3. A small hand-built tokenizer.json laid out like Falcon-7B's: Falcon's added tokens and its
  //    pre-tokenizer Sequence; the merges are the first 700 of opt-mini's, written as strings like
  //    Falcon's file.
  const falconSpecials = ['>>TITLE<<', '>>ABSTRACT<<', '>>INTRODUCTION<<', '>>SUMMARY<<', '>>COMMENT<<',
    '>>ANSWER<<', '>>QUESTION<<', '>>DOMAIN<<', '>>PREFIX<<', '>>SUFFIX<<', '>>MIDDLE<<', '<|endoftext|>'];
  const vocab = {};
  falconSpecials.forEach((t, i) => { vocab[t] = i; });
  for (const c of byteLevelAlphabet()) vocab[c] = Object.keys(vocab).length;
  const optMerges = JSON.parse(fs.readFileSync(path.join(testdata, 'models/opt-mini/tokenizer.json'), 'utf8')).model.merges;
  const merges = [];
  for (const [a, b] of optMerges) {
    if (merges.length === 700) break;
    if (!(a in vocab) || !(b in vocab)) continue;
    if (!((a + b) in vocab)) vocab[a + b] = Object.keys(vocab).length;
    merges.push(a + ' ' + b);
  }
  const falconPre = {
    type: 'Sequence',
    pretokenizers: [
      { type: 'Punctuation', behavior: 'Contiguous' },
      { type: 'ByteLevel', add_prefix_space: false, trim_offsets: true, use_regex: true },
      { type: 'Digits', individual_digits: false },
      { type: 'Split', pattern: { Regex: '[0-9][0-9][0-9]' }, behavior: 'Isolated', invert: false },
    ],
  };
  const falconAdded = falconSpecials.map((t, i) => ({ id: i, content: t, single_word: false, lstrip: false,
    rstrip: false, normalized: false, special: true }));
  const base = {
    version: '1.0', truncation: null, padding: null, added_tokens: falconAdded, normalizer: null,
    pre_tokenizer: falconPre,
    post_processor: { type: 'ByteLevel', add_prefix_space: true, trim_offsets: false, use_regex: true },
    decoder: { type: 'ByteLevel', add_prefix_space: true, trim_offsets: true, use_regex: true },
    model: { type: 'BPE', dropout: null, unk_token: null, continuing_subword_prefix: null,
             end_of_word_suffix: null, fuse_unk: false, byte_fallback: false, vocab, merges },
  };
  write('falcon_style_tokenizer.json', base);

  const falconTexts = [
    'Hello world', 'hello, world!! ...ok', 'abc 123456 def', 'price: 12,345.67', 'a  12', ' 999', '1234567',
    '12½3456', '½6789', 'м and мир 999', 'x²y', '٣٤٥', "Don't stop at 3.14159265!", '(555) 123-4567 ext. 89',
    '  leading and  multiple   spaces', 'trailing 12   ', 'tabs\there\nnewline 42', '', 'naïve café — “quotes”',
    '>>QUESTION<<What is 2+2?>>ANSWER<<4<|endoftext|>', 'a>>TITLE<<b', '>>TITLE<<>>TITLE<<', '>>>>TITLE<<<<',
    'emoji 🤖🚀 and 👍🏽', '日本語のテキスト', "It's a test: don't, won't, I'm, you'll, we've, he'd.",
    'https://example.com/path?q=1&r=2', '$100,000.00 (approx.)', '---===---', '¿Qué? ¡Sí!', '«ok»',
  ];
  const falconTok = Tokenizer.fromString(JSON.stringify(base));
  write('falcon_style_cases.json', await cases(falconTok, falconTexts.concat(randomStrings(3, 150))));

  // 4. Variants of that tokenizer, one feature each, with cases from the library.
  const variantTexts = [
    'the-final--countdown', 'a  b   c', "Don't stop at 3.14159265!", 'x1y22z333w4444', 'hello, world!! ...ok',
    ' leading space', 'no-space-at-all', 'tabs\there\nnewline 42', '½²³ and м', 'MiXeD CaSe 12ab34',
    "'s 'S 'll 'LL we'RE", '  <|endoftext|>  x', 'a<|endoftext|>b', 'x >>TITLE<< y', 'x>>TITLE<<y',
    ' >>TITLE<<y', 'end >>TITLE<<', '<|endoftext|><|endoftext|>', '', '   ', 'word>>ANSWER<<', 'q >>ANSWER<<',
    'a,>>ANSWER<<,b', 'mid>>SUMMARY<< x', 'sep>>COMMENT<<', '2+2=4, >>COMMENT<< ok',
  ];
  const llama3 = "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";
  const bl = { type: 'ByteLevel', add_prefix_space: false, trim_offsets: true, use_regex: true };
  const split = (pattern, behavior, invert) => ({ type: 'Split', pattern, behavior, invert });
  const seq = (...p) => ({ type: 'Sequence', pretokenizers: p });
  const variants = [
    ['byte_level_prefix_space', { ...bl, add_prefix_space: true }],
    ['byte_level_no_regex', { ...bl, use_regex: false }],
    ['digits_individual', seq(bl, { type: 'Digits', individual_digits: true })],
    ['digits_before_byte_level', seq({ type: 'Digits', individual_digits: false }, bl)],
    ['punctuation_isolated', seq({ type: 'Punctuation', behavior: 'Isolated' }, bl)],
    ['punctuation_removed', seq({ type: 'Punctuation', behavior: 'Removed' }, bl)],
    ['punctuation_merged_with_previous', seq({ type: 'Punctuation', behavior: 'MergedWithPrevious' }, bl)],
    ['punctuation_merged_with_next', seq({ type: 'Punctuation', behavior: 'MergedWithNext' }, bl)],
    ['split_string_merged_with_next', seq(split({ String: '-' }, 'MergedWithNext', false), bl)],
    ['split_string_removed', seq(split({ String: ' ' }, 'Removed', false), bl)],
    ['split_regex_inverted', seq(split({ Regex: '\\p{L}+' }, 'Isolated', true), bl)],
    ['split_regex_contiguous', seq(bl, split({ Regex: '[0-9]' }, 'Contiguous', false))],
    ['split_regex_merged_with_previous', seq(split({ Regex: '\\s+' }, 'MergedWithPrevious', false), bl)],
    ['llama3_split_then_byte_level', seq(split({ Regex: llama3 }, 'Isolated', false), { ...bl, use_regex: false })],
  ];
  const results = [];
  for (const [name, pre] of variants) {
    const t = Tokenizer.fromString(JSON.stringify({ ...base, pre_tokenizer: pre }));
    results.push({ name, pre_tokenizer: pre, cases: await cases(t, variantTexts) });
  }
  // Added-token flags (on the plain ByteLevel pre-tokenizer).
  const flagged = falconAdded.map((a) => ({ ...a }));
  flagged[0].single_word = true;                      // >>TITLE<<
  flagged[5].lstrip = true;                           // >>ANSWER<<
  flagged[3].rstrip = true;                           // >>SUMMARY<<
  flagged[4].lstrip = true; flagged[4].rstrip = true; // >>COMMENT<<
  flagged[11].normalized = true;                      // <|endoftext|>, matched in the second pass
  flagged[11].special = false;                        // and kept by decode
  const t = Tokenizer.fromString(JSON.stringify({ ...base, pre_tokenizer: bl, added_tokens: flagged }));
  results.push({ name: 'added_token_flags', pre_tokenizer: bl, added_tokens: flagged, cases: await cases(t, variantTexts) });
  write('pretokenizer_variants.json', results);
})();
