#!/usr/bin/env python3
"""The mutation suite: damaged, mutated and absurd inputs for every reader of sortedtrain.

usage: mutate.py BIN [--seed N] [--scale X] [--keep DIR]

For each surface (run configs, --set overrides, data files, tokenizer.json, GGUF, HF
folders with safetensors, HDF5 checkpoints, command-line arguments) it makes seeded mutants
of a valid input, runs the command that reads them and asserts for every mutant:
  - no signal and no hang (it ends within the time limit);
  - exit code 0, or 1 with exactly one line on stderr;
  - every input file is unchanged afterwards (SHA-256).
Prints each failure, one summary per surface and the closing line
"mutation: N passed, M failed". Python's standard library only.
"""
import argparse
import copy
import hashlib
import json
import os
import random
import shutil
import struct
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
FIXTURES = os.path.join(HERE, "..", "Fixtures")
TIMEOUT = 60

# Values a careless or hostile file may hold where a number, string or list is expected.
ABSURD = [0, -1, 1, 2, 7, 10**6, 10**9, 10**15, 2**31, 2**63, 2**64 + 1, -(2**63), 1e308, -1e308, 1e-320, 0.5, -0.0,
          "", " ", "x", "../elsewhere", "\u0000", "é" * 3, "a" * 5000, None, True, False, [], {}, [1, 2, 3], [[[]]],
          {"a": 1}, [-1], ["x"], [0, 0]]


def digest_tree(paths):
    """SHA-256 of every file under `paths` (files or folders)."""
    out = {}
    for p in paths:
        if os.path.isdir(p):
            for root, _, files in os.walk(p):
                for f in files:
                    full = os.path.join(root, f)
                    out[full] = sha256(full)
        elif os.path.exists(p):
            out[p] = sha256(p)
    return out


def sha256(path):
    if not os.path.isfile(path):
        return "not a regular file"
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


class Suite:
    def __init__(self, binary, work, rng):
        self.binary = binary
        self.work = work
        self.rng = rng
        self.passed = 0
        self.failed = 0
        self.counter = 0
        self.summary = {}
        self.verbose = False

    def scratch(self, surface):
        self.counter += 1
        d = os.path.join(self.work, "mutants", f"{surface}-{self.counter:04d}")
        os.makedirs(d)
        return d

    def check(self, surface, what, argv, inputs, cwd, skip_hash=()):
        """Runs one mutant and records whether it behaved."""
        before = digest_tree(inputs)
        env = dict(os.environ, SORTEDTRAIN_PROGRESS="lines")
        try:
            proc = subprocess.run([self.binary] + argv, cwd=cwd, env=env, stdin=subprocess.DEVNULL,
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=TIMEOUT)
        except subprocess.TimeoutExpired:
            self.record(surface, what, argv, [f"still running after {TIMEOUT} s (a hang)"], "", None)
            return
        stderr = proc.stderr.decode("utf-8", "replace")
        lines = [l for l in stderr.splitlines() if l.strip()]
        problems = []
        if proc.returncode < 0:
            problems.append(f"killed by signal {-proc.returncode}")
        elif proc.returncode not in (0, 1):
            problems.append(f"exit code {proc.returncode}")
        elif proc.returncode == 1 and len(lines) != 1:
            problems.append(f"{len(lines)} lines on stderr")
        after = digest_tree(inputs)
        changed = sorted(p for p, h in before.items() if after.get(p) != h and os.path.basename(p) not in skip_hash)
        if changed:
            problems.append("changed or removed " + ", ".join(os.path.relpath(p, self.work) for p in changed[:3]))
        self.record(surface, what, argv, problems, stderr, proc.returncode)

    def record(self, surface, what, argv, problems, stderr, code):
        s = self.summary.setdefault(surface, {"mutants": 0, "refused": 0, "accepted": 0, "failed": 0})
        s["mutants"] += 1
        if problems:
            self.failed += 1
            s["failed"] += 1
            shown = " ".join(a if len(a) < 60 else a[:57] + "..." for a in argv)
            print(f"FAIL {surface}: {what}: {'; '.join(problems)}\n     sortedtrain {shown}\n     stderr: {stderr.strip()[-400:]!r}")
        else:
            self.passed += 1
            s["refused" if code == 1 else "accepted"] += 1
            if self.verbose:
                print(f"ok   {surface}: {what}: exit {code}: {stderr.strip().splitlines()[-1][:200] if stderr.strip() else ''}")

    def pick(self, seq):
        return self.rng.choice(seq)


# ---------------------------------------------------------------------------------------
# Generic mutations


def flip_bytes(data, rng, n=None):
    b = bytearray(data)
    for _ in range(n or rng.randint(1, 4)):
        if b:
            i = rng.randrange(len(b))
            b[i] ^= 1 << rng.randrange(8)
    return bytes(b)


def truncate(data, rng):
    return data[: rng.randrange(max(1, len(data)))]


def json_paths(value, prefix=()):
    """Every path to a node of a JSON value."""
    yield prefix
    if isinstance(value, dict):
        for k, v in value.items():
            yield from json_paths(v, prefix + (k,))
    elif isinstance(value, list):
        for i, v in enumerate(value[:20]):
            yield from json_paths(v, prefix + (i,))


def set_path(root, path, value):
    if not path:
        return value
    node = root
    for k in path[:-1]:
        node = node[k]
    node[path[-1]] = value
    return root


def delete_path(root, path):
    node = root
    for k in path[:-1]:
        node = node[k]
    del node[path[-1]]
    return root


def mutate_json(value, rng, extra_keys=()):
    """One structural mutation of a JSON value; returns (description, text)."""
    v = copy.deepcopy(value)
    paths = [p for p in json_paths(v)]
    kind = rng.choice(["replace", "replace", "replace", "delete", "add", "duplicate", "text"])
    if kind == "replace" or (kind == "delete" and len(paths) < 2):
        path = rng.choice(paths)
        new = copy.deepcopy(rng.choice(ABSURD))
        return f"{'/'.join(map(str, path)) or 'root'} = {json.dumps(new)[:40]}", json.dumps(set_path(v, path, new))
    if kind == "delete":
        path = rng.choice(paths[1:])
        return f"delete {'/'.join(map(str, path))}", json.dumps(delete_path(v, path))
    if kind == "add":
        objects = [p for p in paths if isinstance(get_path(v, p), dict)]
        path = rng.choice(objects)
        key = rng.choice(list(extra_keys) + ["unknown_key", "", "Train"])
        get_path(v, path)[key] = copy.deepcopy(rng.choice(ABSURD))
        return f"add {'/'.join(map(str, path + (key,)))}", json.dumps(v)
    if kind == "duplicate":
        # A key written twice: json.dumps cannot, so splice the text.
        objects = [p for p in paths if isinstance(get_path(v, p), dict) and get_path(v, p)]
        if not objects:
            return "root = []", "[]"
        path = rng.choice(objects)
        node = get_path(v, path)
        key = rng.choice(list(node.keys()))
        marker = "\u2063marker\u2063"
        node[marker] = 0
        text = json.dumps(v).replace(json.dumps(marker) + ": 0", f"{json.dumps(key)}: {json.dumps(rng.choice(ABSURD))}")
        return f"duplicate key {'/'.join(map(str, path + (key,)))}", text
    text = json.dumps(v, indent=1).encode()
    choice = rng.choice(["flip", "truncate", "empty", "garbage"])
    if choice == "flip":
        return "flipped bytes", flip_bytes(text, rng).decode("latin-1")
    if choice == "truncate":
        return "truncated", truncate(text, rng).decode("latin-1")
    if choice == "empty":
        return "empty file", ""
    return "garbage after the value", text.decode() + "\n}{ ]"


def get_path(root, path):
    node = root
    for k in path:
        node = node[k]
    return node


def write(path, text_or_bytes):
    mode = "wb" if isinstance(text_or_bytes, bytes) else "w"
    with open(path, mode, **({} if mode == "wb" else {"encoding": "latin-1"})) as f:
        f.write(text_or_bytes)


# ---------------------------------------------------------------------------------------
# GGUF and safetensors writers for the tiny fixtures (the real formats, written plainly)

GGUF_TYPES = {"u32": 4, "i32": 5, "f32": 6, "bool": 7, "str": 8, "arr": 9, "u64": 10}


def gguf_bytes(meta, tensors, version=3, alignment=32, overrides=None):
    """meta: [(key, type, value)]; tensors: [(name, dims in ggml order, ggml type, data bytes)].
    overrides: {"tensor_offsets": {name: offset}, "tensor_count": n, "kv_count": n} for mutants."""
    overrides = overrides or {}
    out = bytearray(b"GGUF")
    out += struct.pack("<I", version)
    out += struct.pack("<Q", overrides.get("tensor_count", len(tensors)))
    out += struct.pack("<Q", overrides.get("kv_count", len(meta)))

    def string(s):
        b = s.encode()
        return struct.pack("<Q", len(b)) + b

    def value(t, v):
        if t == "u32":
            return struct.pack("<I", v & 0xFFFFFFFF)
        if t == "i32":
            return struct.pack("<i", v)
        if t == "u64":
            return struct.pack("<Q", v & (2**64 - 1))
        if t == "f32":
            return struct.pack("<f", v)
        if t == "bool":
            return struct.pack("<B", v)
        if t == "str":
            return string(v)
        element, items = v
        return struct.pack("<IQ", GGUF_TYPES[element], len(items)) + b"".join(value(element, i) for i in items)

    for key, t, v in meta:
        out += string(key) + struct.pack("<I", GGUF_TYPES[t]) + value(t, v)
    offset = 0
    placed = []
    for name, dims, ggml_type, data in tensors:
        placed.append(offset)
        at = overrides.get("tensor_offsets", {}).get(name, offset)
        out += string(name) + struct.pack("<I", len(dims)) + b"".join(struct.pack("<Q", d) for d in dims)
        out += struct.pack("<IQ", ggml_type, at)
        offset += (len(data) + alignment - 1) // alignment * alignment
    out += b"\0" * ((-len(out)) % alignment)
    for (name, dims, ggml_type, data), at in zip(tensors, placed):
        out += data + b"\0" * ((-len(data)) % alignment)
    return bytes(out)


def tiny_gguf_parts(rng):
    D, F, L, H, KV, V = 16, 32, 2, 2, 1, 259
    Dh = D // H
    meta = [("general.architecture", "str", "llama"), ("general.name", "str", "tiny"),
            ("llama.block_count", "u32", L), ("llama.context_length", "u32", 64), ("llama.embedding_length", "u32", D),
            ("llama.feed_forward_length", "u32", F), ("llama.attention.head_count", "u32", H),
            ("llama.attention.head_count_kv", "u32", KV), ("llama.rope.freq_base", "f32", 10000.0),
            ("llama.attention.layer_norm_rms_epsilon", "f32", 1e-5), ("general.file_type", "u32", 0)]

    def f32(*shape):
        n = 1
        for s in shape:
            n *= s
        return struct.pack(f"<{n}f", *[rng.uniform(-0.1, 0.1) for _ in range(n)])

    # dims in ggml order (fastest first): a [out, in] weight is (in, out).
    tensors = [("token_embd.weight", (D, V), 0, f32(V, D)), ("output_norm.weight", (D,), 0, f32(D))]
    for l in range(L):
        p = f"blk.{l}."
        tensors += [(p + "attn_norm.weight", (D,), 0, f32(D)), (p + "attn_q.weight", (D, H * Dh), 0, f32(H * Dh, D)),
                    (p + "attn_k.weight", (D, KV * Dh), 0, f32(KV * Dh, D)), (p + "attn_v.weight", (D, KV * Dh), 0, f32(KV * Dh, D)),
                    (p + "attn_output.weight", (H * Dh, D), 0, f32(D, H * Dh)), (p + "ffn_norm.weight", (D,), 0, f32(D)),
                    (p + "ffn_gate.weight", (D, F), 0, f32(F, D)), (p + "ffn_up.weight", (D, F), 0, f32(F, D)),
                    (p + "ffn_down.weight", (F, D), 0, f32(D, F))]
    return meta, tensors


def read_safetensors(path):
    with open(path, "rb") as f:
        data = f.read()
    n = struct.unpack("<Q", data[:8])[0]
    return json.loads(data[8:8 + n]), data[8 + n:]


def safetensors_bytes(header, payload, length_delta=0, length=None):
    text = json.dumps(header).encode()
    text += b" " * ((-len(text)) % 8)
    return struct.pack("<Q", length if length is not None else len(text) + length_delta) + text + payload


# ---------------------------------------------------------------------------------------
# The surfaces


def base_config(work):
    return {"model": {"vocab_size": 259, "hidden_size": 16, "intermediate_size": 32, "num_hidden_layers": 2,
                      "num_attention_heads": 2, "num_key_value_heads": 1, "max_position_embeddings": 128,
                      "tie_word_embeddings": True},
            "data": {"train": os.path.join(work, "data", "train.jsonl"), "tokenizer": "byte", "template": "none"},
            "sorted": {"exits": [1, 2]},
            "optim": {"lr": 1e-3},
            "train": {"micro_batch_size": 2, "sequence_length": 96, "max_steps": 2},
            "log": {"dir": "run", "progress": "lines", "every": 1},
            "checkpoint": {"every": 1, "keep": 10},
            "distributed": {"timeout_s": 30}}


def surface_config(s, fx, n):
    extra = ["lr", "weights", "reduction", "path", "eval_every", "validation", "system_prompt"]
    for _ in range(n):
        what, text = mutate_json(fx["config"], s.rng, extra)
        d = s.scratch("config")
        path = os.path.join(d, "mutant.json")
        write(path, text)
        s.check("config", what, ["train", "--config", path, "--quiet", "--set", "train.max_steps=1"], [path, fx["data"]], d)
    # Not a file at all: a folder, a FIFO, a missing path.
    d = s.scratch("config")
    os.mkfifo(os.path.join(d, "fifo.json"))
    for what, path in [("a folder", d), ("a FIFO", os.path.join(d, "fifo.json")), ("missing", os.path.join(d, "none.json"))]:
        s.check("config", what, ["train", "--config", path, "--quiet"], [fx["data"]], d)


def surface_overrides(s, fx, n):
    keys = [f"{sec}.{k}" for sec, v in fx["config"].items() for k in v] + [
        "train..max_steps", ".x", "train.", "nosection.key", "train.max_steps.extra", "optim.weight_decay",
        "sorted.weights", "log.eval_every", "data.validation", "checkpoint.dir", "log.dir", "data.tokenizer"]
    for _ in range(n):
        overrides = []
        for _ in range(s.rng.randint(1, 3)):
            key = s.pick(keys)
            value = s.pick(ABSURD)
            form = s.rng.random()
            if form < 0.1:
                overrides.append(key)   # no '='
            else:
                overrides.append(f"{key}={value if isinstance(value, str) and form < 0.4 else json.dumps(value)}")
        d = s.scratch("overrides")
        path = os.path.join(d, "config.json")
        write(path, json.dumps(fx["config"]))
        argv = ["train", "--config", path, "--quiet"]
        for o in overrides:
            argv += ["--set", o]
        s.check("overrides", " ".join(overrides)[:80], argv + ["--set", "train.max_steps=1"], [path, fx["data"]], d)


def surface_data(s, fx, n):
    with open(fx["train"], "rb") as f:
        original = f.read()
    lines = original.split(b"\n")
    junk_records = [b"{}", b"[]", b"\"x\"", b"5", b"null", b'{"instruction": 5}', b'{"instruction": "", "output": ""}',
                    b'{"instruction": "' + b"a" * 100000 + b'", "output": "b"}', b"[" * 600 + b"]" * 600,
                    b'{"messages": [{"role": "nobody", "content": "x"}]}', b'{"messages": 3}', b'{"text": null}',
                    b'{"instruction": "\\ud800", "output": "x"}', b"\xff\xfe\x00", b'{"instruction": "a", "instruction": "b", "output": "c"}']
    for i in range(n):
        kind = s.rng.choice(["flip", "truncate", "junk", "junk", "nul", "empty", "bom", "array", "folder"])
        d = s.scratch("data")
        path = os.path.join(d, "train.jsonl")
        if kind == "flip":
            write(path, flip_bytes(original, s.rng, 8))
        elif kind == "truncate":
            write(path, truncate(original, s.rng))
        elif kind == "junk":
            mutated = list(lines)
            mutated[s.rng.randrange(len(mutated))] = s.pick(junk_records)
            write(path, b"\n".join(mutated))
        elif kind == "nul":
            write(path, original[:100] + b"\0" * 64 + original[100:])
        elif kind == "empty":
            write(path, s.pick([b"", b"\n\n  \n"]))
        elif kind == "bom":
            write(path, b"\xef\xbb\xbf" + original)
        elif kind == "array":
            path = os.path.join(d, "train.json")
            write(path, s.pick([b"[" + b",".join(lines[:5]) + b"]", b"[" + b",".join(lines[:5]), b"{\"a\": 1}"]))
        else:
            path = os.path.join(d, "folder")
            os.mkdir(path)
        s.check("data", kind, ["train", "--config", fx["config_path"], "--quiet", "--set", f"data.train={path}",
                               "--set", "train.max_steps=1", "--set", f"log.dir={d}/run"], [path, fx["config_path"]], d)


def surface_tokenizer(s, fx, n):
    with open(fx["tokenizer"], encoding="utf-8") as f:
        original = json.load(f)
    targeted = [(("added_tokens",), "added_tokens not an array", {"id": 1}), (("model", "merges"), "merges not an array", "x"),
                (("model", "vocab"), "vocab empty", {}), (("model", "type"), "model type", "WordPiece")]
    for i in range(n):
        d = s.scratch("tokenizer")
        path = os.path.join(d, "tokenizer.json")
        if i < len(targeted):
            p, what, value = targeted[i]
            write(path, json.dumps(set_path(copy.deepcopy(original), p, value)))
        elif i == len(targeted):
            what = "added_tokens id 2^33"
            m = copy.deepcopy(original)
            m.setdefault("added_tokens", []).append({"id": 2**33, "content": "<big>", "special": True})
            write(path, json.dumps(m))
        elif i == len(targeted) + 1:
            what = "merges removed"
            m = copy.deepcopy(original)
            del m["model"]["merges"]
            write(path, json.dumps(m))
        else:
            what, text = mutate_json(original, s.rng, ["merges", "added_tokens", "pre_tokenizer"])
            write(path, text)
        s.check("tokenizer", what, ["tokenize", "--tokenizer", path, fx["corpus"]], [path, fx["corpus"]], d)


def surface_gguf(s, fx, n):
    meta, tensors = tiny_gguf_parts(random.Random(5))
    edits = [("llama.block_count", "u32", 10**9), ("llama.block_count", "u32", 0), ("llama.block_count", "u32", 3),
             ("llama.block_count", "u32", 1), ("llama.embedding_length", "u32", 10**6), ("llama.embedding_length", "u32", 0),
             ("llama.attention.head_count", "u32", 0), ("llama.attention.head_count", "u32", 3),
             ("llama.attention.head_count_kv", "u32", 5), ("llama.feed_forward_length", "u64", 2**40),
             ("llama.context_length", "u64", 2**62), ("llama.context_length", "u32", 0),
             ("llama.attention.layer_norm_rms_epsilon", "f32", -1.0), ("llama.attention.layer_norm_rms_epsilon", "f32", float("nan")),
             ("llama.rope.freq_base", "f32", 0.0), ("general.alignment", "u32", 3), ("general.alignment", "u32", 0),
             ("general.architecture", "str", "qwen2"), ("general.architecture", "u32", 7), ("llama.vocab_size", "u32", 2**31),
             ("tokenizer.ggml.tokens", "arr", ("u32", [1, 2, 3])), ("llama.expert_count", "u32", 8),
             ("llama.rope.dimension_count", "u32", 4), ("llama.attention.key_length", "u32", 7)]
    for i in range(n):
        d = s.scratch("gguf")
        path = os.path.join(d, "model.gguf")
        kind = i % 4
        if kind == 0:
            key, t, v = edits[(i // 4) % len(edits)]
            m = [e for e in meta if e[0] != key] + [(key, t, v)]
            what = f"{key} = {v}"
            write(path, gguf_bytes(m, tensors))
        elif kind == 1:
            choice = s.rng.choice(["dims", "type", "offset", "overlap", "misaligned", "duplicate", "extra", "missing", "count"])
            ts = list(tensors)
            overrides = {}
            j = s.rng.randrange(len(ts))
            name, dims, ty, data = ts[j]
            if choice == "dims":
                ts[j] = (name, s.pick([(2**62, 4), (0, 16), (16, 16, 16), (16,) * 9, (7, 16)]), ty, data)
            elif choice == "type":
                ts[j] = (name, dims, s.pick([99, 12, 2, 1, 30]), data)
            elif choice == "offset":
                overrides["tensor_offsets"] = {name: s.pick([2**40, 2**63, 10**6])}
            elif choice == "overlap":
                overrides["tensor_offsets"] = {ts[-1][0]: 0}
            elif choice == "misaligned":
                overrides["tensor_offsets"] = {ts[-1][0]: 4}
            elif choice == "duplicate":
                ts.append(ts[j])
            elif choice == "extra":
                ts.append(("blk.0.attn_q.bias", (16,), 0, b"\0" * 64))
            elif choice == "missing":
                del ts[j]
            else:
                overrides[s.pick(["tensor_count", "kv_count"])] = s.pick([2**63, 10**9, 0])
            what = f"tensor directory: {choice} ({name})"
            write(path, gguf_bytes(meta, ts, overrides=overrides))
        elif kind == 2:
            good = gguf_bytes(meta, tensors)
            header = 4096 if len(good) > 4096 else len(good) // 2
            what = s.pick(["flipped header bytes", "truncated", "version"])
            if what == "flipped header bytes":
                write(path, flip_bytes(good[:header], s.rng, 3) + good[header:])
            elif what == "truncated":
                write(path, truncate(good, s.rng))
            else:
                write(path, gguf_bytes(meta, tensors, version=s.pick([0, 1, 4, 2**31])))
        else:
            good = gguf_bytes(meta, tensors)
            what = "flipped tensor bytes (valid: other weights)"
            write(path, good[:4096] + flip_bytes(good[4096:], s.rng, 6))
        argv = s.pick([["generate", path, "--tokenizer", "byte", "--prompt", "hi", "--raw", "--max-new-tokens", "2"],
                       ["inspect", path]])
        s.check("gguf", what, argv, [path], d)


def surface_hf(s, fx, n):
    header, payload = read_safetensors(os.path.join(fx["hf"], "model.safetensors"))
    with open(os.path.join(fx["hf"], "config.json")) as f:
        config = json.load(f)
    config_edits = [("hidden_act", "gelu"), ("model_type", "mistral"), ("num_hidden_layers", 1), ("num_hidden_layers", 3),
                    ("num_hidden_layers", 10**9), ("hidden_size", 10**6), ("intermediate_size", 10**6), ("vocab_size", 10),
                    ("head_dim", 7), ("rope_scaling", {"type": "linear", "factor": 2}), ("attention_bias", True),
                    ("tie_word_embeddings", False), ("num_key_value_heads", 3), ("rms_norm_eps", 0),
                    ("max_position_embeddings", 0), ("vocab_size", 2**40)]
    names = sorted(k for k in header if k != "__metadata__")
    for i in range(n):
        d = s.scratch("hf")
        folder = os.path.join(d, "model")
        shutil.copytree(fx["hf"], folder)
        kind = i % 3
        if kind == 0:
            key, value = config_edits[(i // 3) % len(config_edits)]
            c = dict(config)
            c[key] = value
            write(os.path.join(folder, "config.json"), json.dumps(c))
            what = f"config.json {key} = {value}"
        elif kind == 1:
            choice = s.rng.choice(["length+1", "length-1", "length 2^63", "shape", "offsets reversed", "dtype", "bias",
                                   "overlap", "gap", "missing tensor"])
            h = copy.deepcopy(header)
            name = s.pick(names)
            delta, length = 0, None
            if choice == "length+1":
                delta = 1
            elif choice == "length-1":
                delta = -1
            elif choice == "length 2^63":
                length = 2**63
            elif choice == "shape":
                h[name]["shape"] = s.pick([[2**62, 4], [-1, 16], [16, 16, 16], []])
            elif choice == "offsets reversed":
                a, b = h[name]["data_offsets"]
                h[name]["data_offsets"] = [b, a] if a != b else [a + 8, a]
            elif choice == "dtype":
                h[name]["dtype"] = s.pick(["I8", "F8_E4M3", "BOOL", 5])
            elif choice == "bias":
                end = max(v["data_offsets"][1] for k, v in h.items() if k != "__metadata__")
                h["model.layers.0.self_attn.q_proj.bias"] = {"dtype": "F32", "shape": [4], "data_offsets": [end, end + 16]}
                payload_m = payload + b"\0" * 16
            elif choice == "overlap":
                h[name]["data_offsets"] = [0, h[name]["data_offsets"][1] - h[name]["data_offsets"][0]]
            elif choice == "gap":
                a, b = h[name]["data_offsets"]
                h[name]["data_offsets"] = [a + 4, b + 4]
            else:
                del h[name]
            data = safetensors_bytes(h, payload_m if choice == "bias" else payload, delta, length)
            write(os.path.join(folder, "model.safetensors"), data)
            what = f"safetensors {choice} ({name})"
        else:
            path = os.path.join(folder, "model.safetensors")
            with open(path, "rb") as f:
                good = f.read()
            what = s.pick(["truncated", "flipped header bytes", "removed", "flipped weights (valid)"])
            if what == "truncated":
                write(path, truncate(good, s.rng))
            elif what == "flipped header bytes":
                n_header = struct.unpack("<Q", good[:8])[0]
                write(path, flip_bytes(good[:8 + n_header], s.rng, 2) + good[8 + n_header:])
            elif what == "removed":
                os.remove(path)
            else:
                n_header = struct.unpack("<Q", good[:8])[0]
                write(path, good[:8 + n_header] + flip_bytes(good[8 + n_header:], s.rng, 4))
        argv = s.pick([["generate", folder, "--tokenizer", "byte", "--prompt", "hi", "--raw", "--max-new-tokens", "2"],
                       ["inspect", folder]])
        s.check("hf", what, argv, [folder], d)


def surface_checkpoint(s, fx, n):
    for i in range(n):
        d = s.scratch("checkpoint")
        root = os.path.join(d, "checkpoints")
        shutil.copytree(fx["checkpoints"], root)
        step1, step2 = os.path.join(root, "step-00000001"), os.path.join(root, "step-00000002")
        files = {"index 2": os.path.join(step2, "checkpoint.h5"), "shard 2": os.path.join(step2, "shard-00000-of-00001.h5"),
                 "index 1": os.path.join(step1, "checkpoint.h5"), "shard 1": os.path.join(step1, "shard-00000-of-00001.h5")}
        kind = s.rng.choice(["flip", "flip", "truncate", "delete", "mix shard", "mix index", "latest", "zero", "folder is a file"])
        target = s.pick(list(files))
        path = files[target]
        with open(path, "rb") as f:
            good = f.read()
        if kind == "flip":
            write(path, flip_bytes(good, s.rng, s.rng.randint(1, 16)))
        elif kind == "truncate":
            write(path, truncate(good, s.rng))
        elif kind == "delete":
            os.remove(path)
        elif kind == "mix shard":
            shutil.copy(files["shard 1"], files["shard 2"])
            target = "shard 2 ← shard 1"
        elif kind == "mix index":
            shutil.copy(files["index 1"], files["index 2"])
            target = "index 2 ← index 1"
        elif kind == "latest":
            write(os.path.join(root, "latest"), s.pick(["step-99999999\n", "", "../../etc\n", "\0\0\0"]))
            target = "latest"
        elif kind == "zero":
            start = s.rng.randrange(len(good))
            write(path, good[:start] + b"\0" * min(4096, len(good) - start) + good[start + 4096:])
        else:
            shutil.rmtree(step2)
            write(step2, b"not a folder")
            target = "step-00000002"
        config = copy.deepcopy(fx["config"])
        config["checkpoint"] = {"dir": root, "every": 0, "keep": 10}
        config["log"]["dir"] = os.path.join(d, "run")
        config_path = os.path.join(d, "config.json")
        write(config_path, json.dumps(config))
        command = s.rng.choice(["resume", "inspect", "export"])
        if command == "resume":
            argv = ["train", "--config", config_path, "--resume", "auto", "--quiet", "--set", "train.max_steps=3"]
        elif command == "inspect":
            argv = ["inspect", s.pick([root, step2])]
        else:
            argv = ["export", s.pick([root, step2, step1]), "--depth", "2", "--out", os.path.join(d, "export")]
        s.check("checkpoint", f"{kind} {target}, then {command}", argv, [root], d, skip_hash=("latest",))


def surface_cli(s, fx, n):
    """A valid command line of each reading command, with one or two flags given absurd values,
    one added, or the model replaced: so the mutants reach the command's own checks."""
    values = ["-1", "0", "-0", "1e309", "nan", "inf", "", " ", "abc", "99999999999999999999", "4,2", ",", "2,,3", "1,1",
              "/nonexistent/x", fx["work"], fx["config_path"], fx["train"], "-", "é", "1000000000", "3",
              "9223372036854775807", "-9223372036854775808", "0.0001", "1e-400", "2", "1,2"]
    models = [fx["checkpoints"], fx["hf"], fx["gguf"], fx["h5"], fx["exported_gguf"], fx["train"], "/nonexistent", fx["work"]]
    data = os.path.join(fx["work"], "data", "validation.jsonl")

    def out(d):
        return os.path.join(d, "out")
    valid = {
        "generate": lambda d: ["generate", fx["checkpoints"], "--prompt", "hi", "--max-new-tokens", "2"],
        "generate-early": lambda d: ["generate", fx["checkpoints"], "--prompt", "hi", "--max-new-tokens", "2",
                                     "--early-exit", "0.9", "--exits", "1,2"],
        "generate-speculate": lambda d: ["generate", fx["hf"], "--tokenizer", "byte", "--prompt", "hi", "--max-new-tokens", "3",
                                         "--draft-depth", "1", "--speculate", "2"],
        "eval": lambda d: ["eval", fx["checkpoints"], "--data", data, "--limit", "2", "--max-new-tokens", "2"],
        "inspect": lambda d: ["inspect", fx["checkpoints"], "--json"],
        "export": lambda d: ["export", fx["checkpoints"], "--depth", "2", "--out", out(d)],
        "export-gguf": lambda d: ["export", fx["checkpoints"], "--depth", "2", "--format", "gguf", "--dtype", "q8_0",
                                  "--out", out(d) + ".gguf"],
        "tokenize": lambda d: ["tokenize", "--tokenizer", "byte", fx["corpus"]],
        "plot": lambda d: ["plot", os.path.join(fx["work"], "run"), "-o", out(d) + ".svg"],
        "prepare": lambda d: ["prepare", "--tokenizer", "byte", fx["train"], "--output", out(d)],
        "synth": lambda d: ["synth", "--output", out(d), "--train", "3", "--validation", "1"],
    }
    extra_flags = {
        "generate": ["--depth", "--temperature", "--top-k", "--top-p", "--seed", "--batch-size", "--confidence",
                     "--draft-confidence", "--max-draft", "--prompts-file", "--template", "--tokenizer"],
        "eval": ["--exits", "--batch-size", "--compare", "--json", "--svg", "--template", "--tokenizer"],
        "inspect": [], "export": ["--format", "--force", "--dtype"], "tokenize": ["--decode", "--add-special"],
        "plot": ["--smooth", "--exits", "--title"], "prepare": ["--max-length", "--truncation", "--format", "--template"],
        "synth": ["--seed", "--hard-fraction"],
    }
    without_value = {"--json", "--force", "--decode", "--add-special", "--log-y", "--raw"}
    for _ in range(n):
        name = s.pick(list(valid))
        d = s.scratch("cli")
        argv = valid[name](d)
        base = name.split("-")[0]
        kind = s.rng.choice(["value", "value", "add", "model", "two"])
        positions = [i for i, a in enumerate(argv) if a.startswith("--") and a not in without_value and i + 1 < len(argv)]
        for _ in range(2 if kind == "two" else 1):
            if kind in ("value", "two") and positions:
                i = s.pick(positions) + 1
                argv[i] = s.pick(values)
            elif kind == "model" and len(argv) > 1 and not argv[1].startswith("--"):
                argv[1] = s.pick(models)
            elif extra_flags[base]:
                flag = s.pick(extra_flags[base])
                argv += [flag] if flag in without_value else [flag, s.pick(values)]
        s.check("cli", " ".join(a if len(a) < 30 else "…" + a[-25:] for a in argv), argv,
                [fx["checkpoints"], fx["hf"], fx["gguf"], fx["h5"], fx["exported_gguf"], fx["train"], fx["config_path"], fx["corpus"],
                 data], d,
                skip_hash=("latest",))


# ---------------------------------------------------------------------------------------


def setup(binary, work):
    """The valid inputs every surface mutates, made with sortedtrain itself."""
    def run(*argv, cwd=work):
        proc = subprocess.run([binary] + list(argv), cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              stdin=subprocess.DEVNULL, timeout=300, env=dict(os.environ, SORTEDTRAIN_PROGRESS="lines"))
        if proc.returncode != 0:
            raise RuntimeError(f"setup: sortedtrain {' '.join(argv)} failed: {proc.stderr.decode()[-400:]}")
    fx = {"work": work}
    run("synth", "--output", os.path.join(work, "data"), "--train", "48", "--validation", "8", "--seed", "3")
    fx["data"] = os.path.join(work, "data")
    fx["train"] = os.path.join(work, "data", "train.jsonl")
    fx["config"] = base_config(work)
    fx["config_path"] = os.path.join(work, "config.json")
    write(fx["config_path"], json.dumps(fx["config"]))
    run("train", "--config", fx["config_path"], "--quiet")
    fx["checkpoints"] = os.path.join(work, "run", "checkpoints")
    fx["hf"] = os.path.join(work, "hf")
    run("export", fx["checkpoints"], "--depth", "2", "--out", fx["hf"])
    fx["h5"] = os.path.join(work, "model.h5")
    run("export", fx["checkpoints"], "--depth", "1", "--format", "hdf5", "--out", fx["h5"])
    fx["exported_gguf"] = os.path.join(work, "export.gguf")
    run("export", fx["checkpoints"], "--depth", "2", "--format", "gguf", "--dtype", "f16", "--out", fx["exported_gguf"])
    meta, tensors = tiny_gguf_parts(random.Random(5))
    fx["gguf"] = os.path.join(work, "tiny.gguf")
    write(fx["gguf"], gguf_bytes(meta, tensors))
    run("generate", fx["gguf"], "--tokenizer", "byte", "--prompt", "hi", "--raw", "--max-new-tokens", "2")
    fx["tokenizer"] = os.path.join(FIXTURES, "tokenizers", "bytelevel.json")
    fx["corpus"] = os.path.join(FIXTURES, "tokenizers", "corpus.txt")
    return fx


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("binary")
    parser.add_argument("--seed", type=int, default=20261202)
    parser.add_argument("--scale", type=float, default=1.0, help="multiplies every surface's mutant count")
    parser.add_argument("--keep", help="work in this folder and keep it (default: a temporary one)")
    parser.add_argument("--verbose", action="store_true", help="print every mutant, not only the failures")
    args = parser.parse_args()
    binary = os.path.abspath(args.binary)
    work = args.keep or tempfile.mkdtemp(prefix="sortedtrain-mutants-")
    os.makedirs(work, exist_ok=True)
    suite = Suite(binary, work, random.Random(args.seed))
    suite.verbose = args.verbose
    try:
        fx = setup(binary, work)
        counts = {"config": 40, "overrides": 30, "data": 30, "tokenizer": 40, "gguf": 60, "hf": 48, "checkpoint": 40, "cli": 80}
        for name, count in counts.items():
            globals()["surface_" + name](suite, fx, max(1, int(count * args.scale)))
    except RuntimeError as error:
        print(f"FAIL {error}")
        suite.failed += 1
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
    for name, s in suite.summary.items():
        print(f"  {name}: {s['mutants']} mutants: {s['refused']} refused with one line, {s['accepted']} accepted, {s['failed']} failed")
    print(f"mutation: {suite.passed} passed, {suite.failed} failed")
    sys.exit(1 if suite.failed else 0)


if __name__ == "__main__":
    main()
