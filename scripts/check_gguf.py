#!/usr/bin/env python3
"""Checks a GGUF file written by `sortedtrain export --format gguf` against what llama.cpp's
llama loader requires, and its logits against a reference.

    python3 scripts/check_gguf.py FILE.gguf [--expected LOGITS.json] [--hf HF_DIR] [--no-transformers]

With the `gguf` package (pip install gguf; it brings numpy):
  * metadata: every key the llama loader reads, with the types it accepts (u32 sizes,
    f32 epsilon and RoPE base), general.file_type matching the tensor types, a tokenizer
    (gpt2 with merges and a known pre-tokenizer, or llama with scores);
  * tensors: exactly the llama tensor names for llama.block_count blocks, ggml shapes
    (ne[0] innermost) implied by the metadata, norms F32, matrices F32/F16/Q8_0/Q4_0/Q4_1, offsets aligned;
  * logits: a numpy forward pass with llama.cpp's semantics (adjacent-pair RoPE on the
    permuted q/k rows as stored) on the dequantised tensors.
The numpy logits are compared with --expected (JSON {"input_ids": [...], "logits": [[...]],
"tolerance": r}, e.g. written by sortedtrain's tests), else with --hf (an HF export of the same
depth, run through transformers), each within r of the reference's logit range (max |Δ| /
(max − min)). With `transformers` (with torch and accelerate) installed and without --no-transformers,
AutoModelForCausalLM.from_pretrained(dir, gguf_file=...) must load the file and agree with the
numpy logits (same weights: within 1e-4 of the range).

Prints one line per check; "skipped: ..." and exit 0 when gguf is not installed; exit 1 on a failure.
"""
import argparse
import json
import os
import sys


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("file")
    ap.add_argument("--expected")
    ap.add_argument("--hf")
    ap.add_argument("--no-transformers", action="store_true")
    args = ap.parse_args()
    try:
        import numpy as np
        from gguf import GGUFReader, GGMLQuantizationType as Q, GGUFValueType as V
        from gguf.quants import dequantize
    except ImportError as error:
        print(f"skipped: check_gguf needs the gguf Python package ({error}); pip install gguf")
        return 0

    failures = []

    def check(ok, what):
        print(("ok   " if ok else "FAIL ") + what)
        if not ok:
            failures.append(what)
        return ok

    r = GGUFReader(args.file)
    fields = r.fields

    def value(key):
        f = fields.get(key)
        return None if f is None else f.contents()

    def vtype(key):
        f = fields.get(key)
        return None if f is None else f.types[0]

    # --- metadata -----------------------------------------------------------------------
    check(value("general.architecture") == "llama", f"general.architecture is 'llama' ({value('general.architecture')!r})")
    check(value("general.alignment") in (None, 32), "general.alignment is 32")
    u32 = ["llama.block_count", "llama.context_length", "llama.embedding_length", "llama.feed_forward_length",
           "llama.attention.head_count", "llama.attention.head_count_kv", "llama.rope.dimension_count", "general.file_type"]
    for key in u32:
        check(vtype(key) == V.UINT32, f"{key} is a u32 ({value(key)})")
    for key in ["llama.attention.layer_norm_rms_epsilon", "llama.rope.freq_base"]:
        check(vtype(key) == V.FLOAT32, f"{key} is an f32 ({value(key)})")
    check(isinstance(value("general.name"), str), "general.name is a string")
    L = value("llama.block_count")
    D = value("llama.embedding_length")
    F = value("llama.feed_forward_length")
    H = value("llama.attention.head_count")
    Hkv = value("llama.attention.head_count_kv")
    Dh = value("llama.attention.key_length") or D // H
    check(value("llama.rope.dimension_count") == Dh, f"llama.rope.dimension_count = head dim {Dh}")
    check(value("llama.attention.value_length") in (None, Dh), "llama.attention.value_length = key length")

    model = value("tokenizer.ggml.model")
    tokens = value("tokenizer.ggml.tokens")
    check(model in ("gpt2", "llama"), f"tokenizer.ggml.model is gpt2 or llama ({model!r})")
    check(isinstance(tokens, list) and len(tokens) > 0, "tokenizer.ggml.tokens is a list of strings")
    Vocab = len(tokens)
    types = value("tokenizer.ggml.token_type")
    check(types is not None and len(types) == Vocab, "tokenizer.ggml.token_type has one entry per token")
    if model == "gpt2":
        merges = value("tokenizer.ggml.merges")
        check(merges is not None, f"tokenizer.ggml.merges present ({len(merges or [])} merges)")
        check(value("tokenizer.ggml.pre") in ("default", "gpt-2", "llama-bpe", "smollm"),
              f"tokenizer.ggml.pre is a pre-tokenizer llama.cpp knows ({value('tokenizer.ggml.pre')!r})")
    elif model == "llama":
        scores = value("tokenizer.ggml.scores")
        check(scores is not None and len(scores) == Vocab, "tokenizer.ggml.scores has one score per token")
    for key in ["bos_token_id", "eos_token_id", "padding_token_id", "unknown_token_id"]:
        v = value("tokenizer.ggml." + key)
        if v is not None:
            check(vtype("tokenizer.ggml." + key) == V.UINT32 and 0 <= v < Vocab, f"tokenizer.ggml.{key} {v} is a u32 token id")
    if value("llama.vocab_size") is not None:
        check(value("llama.vocab_size") == Vocab, "llama.vocab_size = number of tokens")

    # --- tensors ------------------------------------------------------------------------
    tensors = {t.name: t for t in r.tensors}
    ggml = {t.name: [int(x) for x in t.shape] for t in r.tensors}
    want = {"token_embd.weight": [D, Vocab], "output_norm.weight": [D]}
    if "output.weight" in tensors:
        want["output.weight"] = [D, Vocab]
    for i in range(L):
        want.update({f"blk.{i}.attn_norm.weight": [D], f"blk.{i}.attn_q.weight": [D, H * Dh],
                     f"blk.{i}.attn_k.weight": [D, Hkv * Dh], f"blk.{i}.attn_v.weight": [D, Hkv * Dh],
                     f"blk.{i}.attn_output.weight": [H * Dh, D], f"blk.{i}.ffn_norm.weight": [D],
                     f"blk.{i}.ffn_gate.weight": [D, F], f"blk.{i}.ffn_up.weight": [D, F], f"blk.{i}.ffn_down.weight": [F, D]})
    check(set(tensors) == set(want), f"tensors are exactly the llama loader's {len(want)} "
          f"(missing {sorted(set(want) - set(tensors))[:3]}, extra {sorted(set(tensors) - set(want))[:3]})")
    bad_shapes = [n for n in want if n in ggml and ggml[n] != want[n]]
    check(not bad_shapes, f"ggml shapes (ne[0] first) match the metadata {[(n, ggml[n], want[n]) for n in bad_shapes[:2]]}")
    norms_f32 = all(t.tensor_type == Q.F32 for t in r.tensors if len(t.shape) == 1)
    check(norms_f32, "1-D tensors (norms) are F32")
    kinds = {t.tensor_type for t in r.tensors if len(t.shape) == 2}
    check(kinds <= {Q.F32, Q.F16, Q.Q8_0, Q.Q4_0, Q.Q4_1}, f"matrices are F32/F16/Q8_0/Q4_0/Q4_1 ({sorted(k.name for k in kinds)})")
    file_type = value("general.file_type")
    main_type = {0: Q.F32, 1: Q.F16, 7: Q.Q8_0, 2: Q.Q4_0, 3: Q.Q4_1}.get(file_type)
    check(main_type is not None and main_type in kinds, f"general.file_type {file_type} names the matrices' type")
    check(all(t.data_offset % 32 == 0 for t in r.tensors), "tensor data offsets are 32-byte aligned")
    if failures:
        print(f"check_gguf: {len(failures)} check(s) failed")
        return 1

    # --- numpy forward, llama.cpp semantics -----------------------------------------------
    def w(name):
        t = tensors[name]
        return dequantize(t.data, t.tensor_type).astype(np.float64).reshape(list(reversed(ggml[name])))

    eps = float(value("llama.attention.layer_norm_rms_epsilon"))
    base = float(value("llama.rope.freq_base"))

    def rms(x, g):
        return x / np.sqrt((x * x).mean(-1, keepdims=True) + eps) * g

    def forward(ids):
        T = len(ids)
        x = w("token_embd.weight")[ids]
        pos = np.arange(T)[:, None]
        inv = base ** (-np.arange(0, Dh, 2) / Dh)
        ang = pos * inv[None, :]
        cos, sin = np.cos(ang), np.sin(ang)

        def rope(v, heads):     # ggml's LLAMA_ROPE_TYPE_NORM: adjacent pairs (2i, 2i+1)
            v = v.reshape(T, heads, Dh // 2, 2)
            a, b = v[..., 0], v[..., 1]
            c, s = cos[:, None, :], sin[:, None, :]
            return np.stack([a * c - b * s, a * s + b * c], -1).reshape(T, heads, Dh)

        mask = np.triu(np.full((T, T), -np.inf), 1)
        for i in range(L):
            h = rms(x, w(f"blk.{i}.attn_norm.weight"))
            q = rope(h @ w(f"blk.{i}.attn_q.weight").T, H)
            k = rope(h @ w(f"blk.{i}.attn_k.weight").T, Hkv)
            v = (h @ w(f"blk.{i}.attn_v.weight").T).reshape(T, Hkv, Dh)
            out = np.zeros((T, H, Dh))
            for head in range(H):
                kv = head // (H // Hkv)
                s = q[:, head] @ k[:, kv].T / np.sqrt(Dh) + mask
                p = np.exp(s - s.max(-1, keepdims=True))
                out[:, head] = (p / p.sum(-1, keepdims=True)) @ v[:, kv]
            x = x + out.reshape(T, H * Dh) @ w(f"blk.{i}.attn_output.weight").T
            h = rms(x, w(f"blk.{i}.ffn_norm.weight"))
            g = h @ w(f"blk.{i}.ffn_gate.weight").T
            x = x + ((g / (1 + np.exp(-g))) * (h @ w(f"blk.{i}.ffn_up.weight").T)) @ w(f"blk.{i}.ffn_down.weight").T
        head_w = w("output.weight") if "output.weight" in tensors else w("token_embd.weight")
        return rms(x, w("output_norm.weight")) @ head_w.T

    def relative(got, ref):
        ref = np.asarray(ref, dtype=np.float64)
        return float(np.abs(np.asarray(got) - ref).max() / (ref.max() - ref.min()))

    if args.expected:
        expected = json.load(open(args.expected))
        ids = expected["input_ids"]
        reference, tolerance, source = expected["logits"], float(expected["tolerance"]), "sortedtrain's"
    else:
        ids = [(7 * i + 3) % Vocab for i in range(12)]
        reference, tolerance, source = None, {0: 1e-4, 1: 3e-3, 7: 8e-2, 2: 0.6, 3: 0.45}[file_type], None
    mine = forward(ids)

    have_transformers = False
    if not args.no_transformers:
        try:
            import torch
            from transformers import AutoModelForCausalLM
            import accelerate  # noqa: F401  (transformers needs it to load a GGUF)
            have_transformers = True
        except ImportError as error:
            print(f"skipped: transformers load ({error})")
    if reference is None and args.hf:
        if have_transformers:
            hf = AutoModelForCausalLM.from_pretrained(args.hf, torch_dtype=torch.float32)
            with torch.no_grad():
                reference = hf(torch.tensor([ids])).logits[0].double().numpy()
            source = f"the HF export {args.hf} (transformers)"
        else:
            print("skipped: comparing with the HF export needs transformers")
    if reference is not None:
        rel = relative(mine, reference)
        check(rel <= tolerance, f"numpy llama.cpp-style logits vs {source}: max |Δ| / range = {rel:.2e} (≤ {tolerance:g})")
    if have_transformers:
        folder, name = os.path.split(os.path.abspath(args.file))
        try:
            tm = AutoModelForCausalLM.from_pretrained(folder, gguf_file=name, torch_dtype=torch.float32)
        except Exception as error:  # transformers' own message, on one line
            check(False, f"transformers loads the GGUF: {str(error).splitlines()[0] if str(error) else type(error).__name__}")
        else:
            check(tm.config.num_hidden_layers == L, f"transformers loads the GGUF as {type(tm).__name__} with {L} layers")
            with torch.no_grad():
                theirs = tm(torch.tensor([ids])).logits[0].double().numpy()
            rel = relative(theirs, mine)
            check(rel <= 1e-4, f"transformers' logits of the GGUF vs numpy llama.cpp-style: max |Δ| / range = {rel:.2e} (≤ 1e-4)")
            if reference is not None:
                print(f"info transformers' logits of the GGUF vs {source}: max |Δ| / range = {relative(theirs, reference):.2e}")
    if failures:
        print(f"check_gguf: {len(failures)} check(s) failed")
        return 1
    print(f"check_gguf: {args.file}: all checks passed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
