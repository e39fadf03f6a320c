#!/usr/bin/env python3
"""Makes the tokenizer and GGUF fixtures under Tests/Fixtures/tokenizers/.

The reference is the HF `tokenizers` library (and `gguf` for GGUF files; needs
`pip install tokenizers gguf numpy`). Everything is deterministic: the same library versions
give the same bytes.

  python3 scripts/make_tokenizer_fixture.py             # tokenizers + expected ids + small.gguf
  python3 scripts/make_tokenizer_fixture.py --smollm2 vendor-data/SmolLM2-135M-Instruct.Q4_1.gguf
      # also smollm2-expected.json: ids and tensor checksums for the real SmolLM2 GGUF (the
      # GGUF itself is not committed)
  ... --smollm2 GGUF --smollm2-tokenizer-json path/to/SmolLM2/tokenizer.json
      # also checks that the ids of SmolLM2's own tokenizer.json equal the ones rebuilt from
      # the GGUF (no model hub here, so this needs a copy of the file)
  ... --smollm2 GGUF --smollm2-write-tokenizer-json /tmp/smollm2/tokenizer.json
      # also writes that rebuilt tokenizer.json (2 MB, not committed), e.g. to compare
      # `sortedtrain tokenize --tokenizer` on it and on the GGUF line by line
  python3 scripts/make_tokenizer_fixture.py --make-corpus   # rebuild corpus.txt (rarely)

Outputs (all small):
  corpus.txt            training text for the fixture tokenizers (Python docstrings + own lines)
  strings.json          the test strings: ASCII, accents, CJK, emoji, whitespace runs, newlines,
                        digits, code, special tokens written in text, random mixes; then
                        whitespace cases: runs of spaces, tabs, newlines and Unicode spaces
                        before and after digits, punctuation and letters, leading and trailing
                        (appended, so the indices of earlier strings stay put)
  bytelevel.json        byte-level BPE like SmolLM2 (Digits + ByteLevel), 1200 ids
  llama3.json           byte-level BPE like LLaMA-3 (Split regex + ByteLevel, ignore_merges)
  spm-legacy.json       SentencePiece-style BPE like LLaMA-2 (Prepend/Replace normalizer,
                        byte fallback, <s> template)
  spm-metaspace.json    the same vocabulary with a Metaspace pre-tokenizer and decoder
  expected.json         for each tokenizer and string: ids without and with special tokens,
                        and tokenizers' decode of the ids
  small.gguf, small-gguf-expected.json   a GGUF with every metadata type and F32/F16/BF16/
                        Q8_0/Q4_0/Q4_1 tensors, and their values dequantised by gguf-py
  smollm2-expected.json ids of strings.json from SmolLM2's GGUF vocabulary (via tokenizers),
                        SmolLM2's tokenizer.json without its vocab and merges (the tests fill
                        them in from the GGUF and load it as a tokenizer.json) and checksums of
                        three of its tensors

The SmolLM2 reference is the tokenizer the model was trained with: HuggingFaceTB/SmolLM2's
tokenizer.json, whose pre-tokenizer is Sequence[Digits(individual_digits), ByteLevel(regex)]
(its vocabulary has no token joining a digit to anything, as that training gives). Do not use
transformers' GGUF loader (`from_pretrained(..., gguf_file=...)`) as the reference: it knows no
"smollm" pre-tokenizer and falls back to ByteLevel alone, which splits a run of spaces before a
digit differently ("  1 In" -> Ġ Ġ 1 ĠIn, where SmolLM2's tokenizer.json gives ĠĠ 1 ĠIn).
"""
import argparse
import json
import os
import random
import sys

import numpy as np
from tokenizers import AddedToken, Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers

HERE = os.path.dirname(os.path.abspath(__file__))
OUT = os.path.join(HERE, "..", "Tests", "Fixtures", "tokenizers")

LLAMA3_PATTERN = r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"

OWN_LINES = """\
The quick brown fox jumps over the lazy dog. Pack my box with five dozen liquor jugs!
Café au lait, naïve résumé, déjà vu, jalapeño, Straße, smørrebrød, crème brûlée.
Москва — столица России. Ελληνικά γράμματα. Zażółć gęślą jaźń.
東京は日本の首都です。北京是中国的首都。서울은 한국의 수도입니다.
Numbers: 0 1 2 3 4 5 6 7 8 9 10 42 100 1000 2024 3.14159 1,000,000 -17 +3 1e-5
def add(a, b):\n    return a + b  # returns the sum
let x: [Int] = [1, 2, 3].map { $0 * 2 }
{"key": "value", "list": [1, 2, 3], "nested": {"a": null}}
I'm sure you're right; they've said we'll go, and he'd agree. It's John's.
Emoji: 🙂 🦙 👍🏽 🎉 ❤️
"""

STRINGS = [
    "", " ", "  ", "   ", "\t", "\n", "\n\n", "\n\n\n", "\t\n", "\r\n", " \n ", "a", "A",
    "Hello world", " Hello world", "Hello World", " Hello World", " Hello World!", "Hello, world!",
    " Hello, world!", "hello  world", "hello   world  ", "  leading spaces", "trailing spaces   ",
    "tabs\tand\ttabs", "line one\nline two\n\nline four", "windows\r\nline\r\nendings",
    "it's", "It'S", "I'LL", "we'Re", "'s 't 're 've 'm 'll 'd", "don't won't can't shouldn't",
    "rock'n'roll", "''quoted''", "'", "''", "John's book's cover",
    "café", "naïve", "résumé", "e\u0301 (combining accent)", "Straße", "Ångström", "ﬁ ligature",
    "Москва", "Ελληνικά", "Zażółć gęślą jaźń", "مرحبا بالعالم", "שלום עולם", "हिन्दी", "ไทย",
    "你好，世界", "日本語のテキストです。", "한국어 문장", "中文 English 混合 text",
    "🙂", "🦙", "👍🏽", "👨‍👩‍👧", "🇫🇷 flag", "❤️ heart", " this is 🦙.cpp", "emoji🎉inside",
    "0", "12", "123", "1234", "12345", "3.14159", "1,000,000", "-17", "+3", "1e-5", "2024-06-01",
    "٣٤٥ Arabic digits", "½ ¾ ² ³", "Ⅻ roman", "007 agent", "abc123def", "x=1+2*3",
    "def add(a, b):\n    return a + b\n", "let x: [Int] = [1, 2, 3].map { $0 * 2 }",
    "if (x > 0) { y = -x; } else { y = x; }", "    indented\n        more\n",
    '{"key": "value", "list": [1, 2, 3]}', "<html><body>Hi</body></html>", "a_b_c __init__ snake_case",
    "http://example.com/path?q=1&r=2", "user@example.com", "C:\\Windows\\System32",
    "<|endoftext|>", "<|im_start|>user\nHi there<|im_end|>\n<|im_start|>assistant\n",
    "text<|im_end|>more", "<|im_start|><|im_end|>", "<s>", "</s>", "<s> Hello</s>", "<unk>",
    "not <special> token", "<|begin_of_text|>Hello", "< |im_start| >",
    "\u00a0nbsp\u00a0", "zero\u200bwidth", "nel\u0085char", "\u3000ideographic space", "\u2028line sep",
    "\x00null\x01ctrl\x7f", "\u2581meta symbol", "▁▁", "\u0301combining first", " \u0483x", "\u200dzwj first", "  \u0301", "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
    "a" * 100, "ab" * 60, "supercalifragilisticexpialidocious" * 3, "The" + "e" * 70 + "nd",
    "                                                                  many spaces",
    "!!!???...,,,;;;:::", "—–-", "«quotes» „German“ ‘single’", "$100 €50 £30 ¥1000",
    "∑∫√∞≠≤≥", "←↑→↓", "™®©", "ＦＵＬＬ ｗｉｄｔｈ", "𝔘𝔫𝔦𝔠𝔬𝔡𝔢 math", "𐍈 gothic",
]


def whitespace_strings():
    """Runs of spaces, tabs, newlines and Unicode spaces next to digits, punctuation and
    letters: where pre-tokenizers differ (GPT-2's \\s+(?!\\S) leaves the last space of a run
    to the next word; Digits splitting first keeps a run before a digit whole)."""
    lines = [
        "  1 In the beginning", "  2 And the earth", " 10 And", "100 And", "Genesis 1\n\n  1 In",
        "  1", "   12", "    123", "a  1", "a   1 b", "1  2   3    4", "x =  1", "x =\t\t1",
        "price:   $5", "ends with a digit  9", "9  ", "9\t", "9\n", "9 \n", "9\t\n", "9\n\n",
        "\t9", "\n9", "\n\n  1", "\n  1", " \n1", "\t 1", " \t 1", "\t \t1", "\r\n  1",
        ",  1", ".  2", "!   3", "(  4  )", "[ 5 ]", "1 ,2", "1  ,  2", "3 .14", "3.  14",
        "  .", "  ,", "   ...", "a  .", "a  !", "a\t.", "a\n.", "...  ", ".\t\t", "!\n\n", "?  a",
        "  's", " 's", "  'll", "it  's", "  -1", "  +1", "  1.5", "  1,000", "  $100", "  100%",
        "   leading", "\tleading tab", "\n\nleading newlines", " \t\n mixed leading",
        "trailing ", "trailing  ", "trailing\t", "trailing\n", "trailing \n", "trailing\n ",
        "a \t\n b", "a\t \n\tb", "a\n \n b", "a \r\n b", "a\r\n\r\n\r\nb", "\t\n\t\n",
        " \t \t ", "\n \n ", "     ", "\t\t\t", "\n\n\n\n1", "line\n\n\n  2. item",
        "\u00a01", " \u00a01", "\u00a0 1", "1\u00a0000", "a\u00a0\u00a0b", "\u2009 1", "1\u2009km",
        "\u3000\u30001", "\u3000 a", "\u2028 1", "\u2029x", "\u0085 1", "\u000b1", "\u000c 1",
        "\u202f1", "\u205f a", "\u1680 a", "\u180e a", "\u200b 1", "\ufeff 1",
        "  \u0663\u0664", "  \u00bd", "  \u216b", "  \uff11", "  \U0001d7d9", "\u00b2  3",
        "\x04\x06\x13\x14\x16\x1d controls", " \x1d1", "\U00040000 plane 4", "\U00080000",
    ]
    pads = [" ", "  ", "   ", "\t", "\t\t", " \t", "\t ", "\n", "\n\n", " \n", "\n ", "\r\n",
            " \t\n ", "\u00a0", " \u00a0", "\u3000", "\u2009 "]
    for pad in pads:
        for x in ["1", "42", ".", "(", "a", "\u00e9", "\u4e2d", "\U0001f642"]:
            lines += [pad + x, "a" + pad + x + pad, x + pad]
    return lines


def whitespace_random_strings(count, seed):
    """Random mixes of whitespace runs, digits, punctuation and words."""
    rng = random.Random(seed)
    parts = [" ", "  ", "   ", "\t", "\n", "\n\n", "\r\n", " \n", "\t ", "\u00a0", "\u3000", "\u2009",
             "0", "7", "12", "2024", ".", ",", "!", "?", ";", ":", "(", ")", "-", "'", "'s", "\"", "$", "%",
             "a", "the", "The", "word", "caf\u00e9", "\u4e2d\u6587", "\U0001f642", "<|im_end|>"]
    return ["".join(rng.choice(parts) for _ in range(rng.randint(1, 14))) for _ in range(count)]


def random_strings(count, seed):
    rng = random.Random(seed)
    pools = [
        "abcdefghijklmnopqrstuvwxyz", "ABCDEFGHIJKLMNOPQRSTUVWXYZ", "0123456789", " ", "  \t\n",
        ".,;:!?'\"()[]{}<>-_=+*/\\|@#$%^&~`", "éèêëàâäôöûüçñßøå", "абвгдежзийклмнопрстуфхцчшщъыьэюя",
        "的一是不了人我在有他这中大来上国", "ひらがなカタカナ", "🙂🦙👍🎉🔥💡", "٠١٢٣٤٥٦٧٨٩", "\u00a0\u2009\u3000",
    ]
    out = []
    for _ in range(count):
        n = rng.randint(1, 40)
        s = "".join(rng.choice(rng.choice(pools)) for _ in range(n))
        if rng.random() < 0.1:
            s = rng.choice(["<|im_start|>", "<|im_end|>", "<s>", "</s>", "<|endoftext|>"]).join([s, s[::-1]])
        out.append(s)
    return out


def make_corpus(path):
    import inspect
    import textwrap
    modules = ["json", "random", "collections", "itertools", "functools", "string", "textwrap",
               "argparse", "pathlib", "datetime", "fractions", "statistics", "heapq", "bisect"]
    parts = [OWN_LINES]
    for name in modules:
        mod = __import__(name)
        for attr in sorted(dir(mod)):
            doc = inspect.getdoc(getattr(mod, attr, None)) or ""
            if doc and not attr.startswith("_"):
                parts.append(textwrap.dedent(doc).strip())
    text = "\n\n".join(parts)
    text = text[:80_000]
    with open(path, "w", encoding="utf-8") as f:
        f.write(text)


def byte_level_tokenizer(corpus, vocab_size=1200):
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Digits(individual_digits=True),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True),
    ])
    tok.decoder = decoders.ByteLevel()
    tok.post_processor = processors.ByteLevel(trim_offsets=True)
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, show_progress=False,
                                  special_tokens=["<|endoftext|>", "<|im_start|>", "<|im_end|>"],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(corpus.splitlines(), trainer=trainer)
    return tok


def llama3_tokenizer(corpus, vocab_size=1000):
    tok = Tokenizer(models.BPE(ignore_merges=True))
    tok.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(LLAMA3_PATTERN), behavior="isolated", invert=False),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
    ])
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, show_progress=False,
                                  special_tokens=["<|begin_of_text|>", "<|end_of_text|>"],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(corpus.splitlines(), trainer=trainer)
    tok.post_processor = processors.TemplateProcessing(
        single="<|begin_of_text|> $A", special_tokens=[("<|begin_of_text|>", tok.token_to_id("<|begin_of_text|>"))])
    return tok


def spm_vocab(corpus, vocab_size=900):
    """A LLaMA-2-like vocabulary: <unk> <s> </s>, 256 byte tokens, then BPE pieces trained on
    whitespace-split words with the ▁ meta symbol (as SentencePiece splits)."""
    from collections import Counter
    # The 120 most frequent characters (ties by code point, so the result is deterministic);
    # the rest are left out of training, so the tokenizer meets them only through byte fallback.
    counts = Counter(c for c in corpus if not c.isspace())
    keep = {c for c, _ in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))[:120]}
    lines = ["".join(c if c in keep or c.isspace() else " " for c in line) for line in corpus.splitlines()]
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="always", split=True)
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, show_progress=False)
    tok.train_from_iterator(lines, trainer=trainer)
    model = json.loads(tok.to_str())["model"]
    trained = sorted(model["vocab"].items(), key=lambda kv: kv[1])
    vocab = {"<unk>": 0, "<s>": 1, "</s>": 2}
    for b in range(256):
        vocab["<0x%02X>" % b] = len(vocab)
    for token, _ in trained:
        if token not in vocab:
            vocab[token] = len(vocab)
    merges = [tuple(m.split(" ")) if isinstance(m, str) else tuple(m) for m in model["merges"]]
    return vocab, merges


def spm_legacy_tokenizer(vocab, merges):
    tok = Tokenizer(models.BPE(vocab=vocab, merges=merges, unk_token="<unk>", byte_fallback=True, fuse_unk=True))
    tok.normalizer = normalizers.Sequence([normalizers.Prepend("▁"), normalizers.Replace(" ", "▁")])
    tok.decoder = decoders.Sequence([decoders.Replace("▁", " "), decoders.ByteFallback(), decoders.Fuse(),
                                     decoders.Strip(content=" ", left=1, right=0)])
    tok.add_special_tokens([AddedToken(t, normalized=False, special=True) for t in ["<unk>", "<s>", "</s>"]])
    tok.post_processor = processors.TemplateProcessing(single="<s> $A", special_tokens=[("<s>", 1)])
    return tok


def spm_metaspace_tokenizer(vocab, merges):
    tok = Tokenizer(models.BPE(vocab=vocab, merges=merges, unk_token="<unk>", byte_fallback=True, fuse_unk=True))
    tok.pre_tokenizer = pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="first", split=True)
    tok.decoder = decoders.Sequence([decoders.ByteFallback(), decoders.Metaspace(replacement="▁", prepend_scheme="first")])
    tok.add_special_tokens([AddedToken(t, normalized=False, special=True) for t in ["<unk>", "<s>", "</s>"]])
    tok.post_processor = processors.TemplateProcessing(single="<s> $A", special_tokens=[("<s>", 1)])
    return tok


def expectations(tok, strings):
    """ids per string; with_special for the first 60 strings; decoded only where it differs
    from the string (null where decode(encode(s)) == s)."""
    out = {"ids": [], "with_special": [], "decoded": []}
    for i, s in enumerate(strings):
        ids = tok.encode(s, add_special_tokens=False).ids
        out["ids"].append(ids)
        if i < 60:
            out["with_special"].append(tok.encode(s, add_special_tokens=True).ids)
        decoded = tok.decode(ids, skip_special_tokens=False)
        out["decoded"].append(None if decoded == s else decoded)
    return out


def write_json(name, obj, compact=True):
    with open(os.path.join(OUT, name), "w", encoding="utf-8") as f:
        if compact:
            json.dump(obj, f, ensure_ascii=False, separators=(",", ":"))
        else:
            json.dump(obj, f, ensure_ascii=False, indent=1)
        f.write("\n")


def make_small_gguf():
    import gguf
    from gguf import GGMLQuantizationType as Q
    path = os.path.join(OUT, "small.gguf")
    w = gguf.GGUFWriter(path, arch="llama")
    w.add_uint8("test.u8", 200)
    w.add_int8("test.i8", -100)
    w.add_uint16("test.u16", 60000)
    w.add_int16("test.i16", -30000)
    w.add_uint32("test.u32", 4000000000)
    w.add_int32("test.i32", -2000000000)
    w.add_float32("test.f32", 1.5)
    w.add_bool("test.bool", True)
    w.add_string("test.string", "héllo wörld ✓")
    w.add_uint64("test.u64", 2**63 + 5)
    w.add_int64("test.i64", -(2**62))
    w.add_float64("test.f64", 2.718281828459045)
    w.add_array("test.array.ints", [1, 2, 3, -4])
    w.add_array("test.array.strings", ["a", "bc", "", "∂"])
    w.add_array("test.array.floats", [0.5, -1.25])
    rng = np.random.default_rng(3)
    expected = {}
    specs = [("t.f32", Q.F32, (3, 4)), ("t.f16", Q.F16, (2, 32)), ("t.bf16", Q.BF16, (2, 8)),
             ("t.q8_0", Q.Q8_0, (2, 64)), ("t.q4_0", Q.Q4_0, (1, 64)), ("t.q4_1", Q.Q4_1, (3, 32))]
    for name, qtype, shape in specs:
        x = rng.standard_normal(shape).astype(np.float32)
        if qtype == Q.F32:
            data = x
        elif qtype == Q.F16:
            data = x.astype(np.float16)
        else:
            data = gguf.quants.quantize(x, qtype)
        w.add_tensor(name, data, raw_dtype=qtype)
        deq = data.astype(np.float32) if qtype in (Q.F32, Q.F16) else gguf.quants.dequantize(data, qtype)
        expected[name] = {"shape": list(shape), "type": qtype.name, "values": [float(v) for v in deq.reshape(-1)]}
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    write_json("small-gguf-expected.json", expected)


def smollm2_tokenizer(reader):
    """SmolLM2's tokenizer.json rebuilt from its GGUF: the GGUF's vocabulary and merges, and
    the rest as HuggingFaceTB/SmolLM2 ships it (Digits individual + ByteLevel with the GPT-2
    regex, ByteLevel post-processor and decoder, the 17 control tokens as special tokens)."""
    f = reader.fields
    tokens = f["tokenizer.ggml.tokens"].contents()
    types = f["tokenizer.ggml.token_type"].contents()
    merges = f["tokenizer.ggml.merges"].contents()
    vocab = {t: i for i, t in enumerate(tokens)}
    tok = Tokenizer(models.BPE(vocab=vocab, merges=[tuple(m.split(" ")) for m in merges]))
    tok.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Digits(individual_digits=True),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True),
    ])
    tok.post_processor = processors.ByteLevel(trim_offsets=True)
    tok.decoder = decoders.ByteLevel()
    tok.add_special_tokens([AddedToken(tokens[i], normalized=False, special=True) for i, t in enumerate(types) if t == 3])
    return tok


def smollm2_expected(gguf_path, strings, tokenizer_json=None, write_tokenizer_json=None):
    """Reference ids for SmolLM2's GGUF vocabulary, from the tokenizer smollm2_tokenizer
    rebuilds; with `tokenizer_json` (SmolLM2's own file), first checks it gives the same ids."""
    import gguf
    r = gguf.GGUFReader(gguf_path)
    tok = smollm2_tokenizer(r)
    if write_tokenizer_json:
        os.makedirs(os.path.dirname(os.path.abspath(write_tokenizer_json)), exist_ok=True)
        tok.save(write_tokenizer_json, pretty=False)
    out = {"ids": [tok.encode(s, add_special_tokens=False).ids for s in strings]}
    if tokenizer_json:
        own = Tokenizer.from_file(tokenizer_json)
        differ = [s for s, ids in zip(strings, out["ids"]) if own.encode(s, add_special_tokens=False).ids != ids]
        if differ:
            sys.exit(f"{tokenizer_json} and the tokenizer rebuilt from {gguf_path} differ on {len(differ)} "
                     f"strings, e.g. {differ[0]!r}")
        print(f"{tokenizer_json}: same ids as the GGUF rebuild on all {len(strings)} strings")
    decoded = [tok.decode(ids, skip_special_tokens=False) for ids in out["ids"]]
    out["decoded"] = [None if d == s else d for d, s in zip(decoded, strings)]
    # The tokenizer.json without its vocabulary and merges: the tests fill those in from the
    # GGUF, so the tokenizer.json loader is checked on SmolLM2's real vocabulary too.
    definition = json.loads(tok.to_str())
    del definition["model"]["vocab"], definition["model"]["merges"]
    out["tokenizer_json"] = definition
    tensors = {}
    by_name = {t.name: t for t in r.tensors}
    for name in ["token_embd.weight", "blk.0.ffn_down.weight", "blk.0.attn_norm.weight"]:
        t = by_name[name]
        deq = gguf.quants.dequantize(t.data, t.tensor_type).astype(np.float64).reshape(-1)
        tensors[name] = {"type": t.tensor_type.name, "shape": [int(d) for d in reversed(t.shape)],
                         "sum": float(deq.sum()), "sum_abs": float(np.abs(deq).sum()),
                         "first": [float(v) for v in deq[:16]], "last": [float(v) for v in deq[-16:]]}
    out["tensors"] = tensors
    out["tensor_count"] = len(r.tensors)
    write_json("smollm2-expected.json", out)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--smollm2", help="path to SmolLM2-135M-Instruct.Q4_1.gguf")
    ap.add_argument("--smollm2-tokenizer-json", help="SmolLM2's own tokenizer.json, to check the GGUF rebuild against")
    ap.add_argument("--smollm2-write-tokenizer-json", help="where to write the tokenizer.json rebuilt from the GGUF")
    ap.add_argument("--make-corpus", action="store_true")
    args = ap.parse_args()
    os.makedirs(OUT, exist_ok=True)
    corpus_path = os.path.join(OUT, "corpus.txt")
    if args.make_corpus or not os.path.exists(corpus_path):
        make_corpus(corpus_path)
    corpus = open(corpus_path, encoding="utf-8").read()
    held_out = [line for line in corpus.splitlines() if len(line) > 20][::60][:40]
    strings = STRINGS + random_strings(150, seed=7) + held_out + whitespace_strings() + whitespace_random_strings(100, seed=11)
    write_json("strings.json", strings, compact=False)

    spm_v, spm_m = spm_vocab(corpus)
    tokenizers_by_name = {
        "bytelevel": byte_level_tokenizer(corpus),
        "llama3": llama3_tokenizer(corpus),
        "spm-legacy": spm_legacy_tokenizer(spm_v, spm_m),
        "spm-metaspace": spm_metaspace_tokenizer(spm_v, spm_m),
    }
    expected = {}
    for name, tok in tokenizers_by_name.items():
        tok.save(os.path.join(OUT, name + ".json"), pretty=False)
        expected[name] = expectations(tok, strings)
    write_json("expected.json", expected)
    make_small_gguf()
    if args.smollm2:
        smollm2_expected(args.smollm2, strings, args.smollm2_tokenizer_json, args.smollm2_write_tokenizer_json)
    import tokenizers
    print(f"wrote {len(strings)} strings x {len(tokenizers_by_name)} tokenizers with tokenizers {tokenizers.__version__}")


if __name__ == "__main__":
    sys.exit(main())
