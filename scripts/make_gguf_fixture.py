#!/usr/bin/env python3
"""Makes Tests/Fixtures/smollm2-gguf-reference.safetensors: what `transformers` predicts
from the real SmolLM2 GGUF, for checking sortedtrain's GGUF import (ModelFiles.readGGUF).

How to run (from the repository root, after launch/fetch-test-assets)::

    pip install torch transformers gguf accelerate safetensors numpy
    python3 scripts/make_gguf_fixture.py
    python3 scripts/make_gguf_fixture.py --gguf vendor-data/SmolLM2-135M-Instruct.Q4_1.gguf \
        --out Tests/Fixtures/smollm2-gguf-reference.safetensors

What it does
------------
* Loads the GGUF with ``AutoModelForCausalLM.from_pretrained(dir, gguf_file=name)``:
  transformers dequantises every tensor (Q4_1, Q8_0, F32) to float32, undoes llama.cpp's
  row permutation of attn_q / attn_k, and ties lm_head to the embedding because the file
  has no ``output.weight``. The model runs in float32, eager attention, one thread.
* Checks transformers' un-permutation against an independent one (the exact inverse of
  convert_hf_to_gguf.py's ``LlamaModel.permute``) on layer 0's q and k, and that
  lm_head is the embedding, so the reference does not rest on one implementation only.
* Tokenises a few prompts with the GGUF's own tokenizer (AutoTokenizer from the same file;
  SmolLM2 adds no BOS) and runs each prompt alone (batch 1, no padding).

File contents (all small; about 11 KB)
-----------------------------------------
For each prompt i in 0..<N:
  ``prompt.{i}.input_ids``      I64 [T_i]   the token ids
  ``prompt.{i}.top_ids``        I64 [10]    the 10 largest last-position logits' ids, descending
  ``prompt.{i}.top_logits``     F32 [10]    their logits
  ``prompt.{i}.logsumexp``      F32 [1]     logsumexp of the full last-position logits
  ``prompt.{i}.sampled_logits`` F32 [S]     last-position logits of ids 0, STRIDE, 2·STRIDE, …
                                            (a spread over the whole vocabulary; the full
                                            49152 floats would be 192 KB per prompt)
``__metadata__``: ``prompts`` (JSON list of the texts), ``top_k``, ``sample_stride``,
``gguf_file``, ``gguf_bytes`` (file size, so a test notices a different file), ``generator``
(library versions). The tensors are bit-for-bit reproducible with the same library versions;
the header's key order is not (safetensors writes its metadata map unordered).
"""
import argparse
import json
import os

import numpy as np
import torch

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.normpath(os.path.join(HERE, ".."))
DEFAULT_GGUF = os.path.join(ROOT, "vendor-data", "SmolLM2-135M-Instruct.Q4_1.gguf")
DEFAULT_OUT = os.path.join(ROOT, "Tests", "Fixtures", "smollm2-gguf-reference.safetensors")

PROMPTS = [
    "The capital of France is",
    "def fibonacci(n):\n    if n <= 1:\n        return",
    "<|im_start|>user\nWhat is 2 + 2?<|im_end|>\n<|im_start|>assistant\n",
    "Once upon a time, there was a little",
]
TOP_K = 10
SAMPLE_STRIDE = 97


def unpermute(w, n_head):
    """Inverse of llama.cpp's LlamaModel.permute:
    w.reshape(n_head, 2, dim // n_head // 2, *rest).swapaxes(1, 2).reshape(w.shape)."""
    half = w.shape[0] // n_head // 2
    return w.reshape(n_head, half, 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--gguf", default=DEFAULT_GGUF)
    parser.add_argument("--out", default=DEFAULT_OUT)
    args = parser.parse_args()

    from importlib.metadata import version

    from gguf import GGUFReader
    from gguf.quants import dequantize
    from safetensors.numpy import save_file
    from transformers import AutoModelForCausalLM, AutoTokenizer

    torch.manual_seed(0)
    torch.set_num_threads(1)
    directory, name = os.path.split(os.path.abspath(args.gguf))
    tokenizer = AutoTokenizer.from_pretrained(directory, gguf_file=name)
    model = AutoModelForCausalLM.from_pretrained(directory, gguf_file=name, dtype=torch.float32,
                                                 attn_implementation="eager")
    model.eval()
    config = model.config
    print(f"config: layers {config.num_hidden_layers}, hidden {config.hidden_size}, heads "
          f"{config.num_attention_heads}/{config.num_key_value_heads}, vocab {config.vocab_size}, "
          f"tied {config.tie_word_embeddings}, rope_theta {getattr(config, 'rope_theta', None) or config.rope_parameters}")

    # Independent checks of what transformers did to the weights.
    reader = GGUFReader(args.gguf)
    raw = {t.name: t for t in reader.tensors}

    def dequantised(tensor_name):
        t = raw[tensor_name]
        return dequantize(t.data, t.tensor_type).reshape([int(d) for d in reversed(t.shape)])

    layer0 = model.model.layers[0].self_attn
    for gguf_name, module, heads in [("blk.0.attn_q.weight", layer0.q_proj, config.num_attention_heads),
                                     ("blk.0.attn_k.weight", layer0.k_proj, config.num_key_value_heads)]:
        mine = unpermute(dequantised(gguf_name), heads)
        theirs = module.weight.detach().numpy()
        assert np.array_equal(mine, theirs), f"{gguf_name}: transformers' un-permutation differs"
        assert not np.array_equal(dequantised(gguf_name), theirs), f"{gguf_name}: no permutation was undone"
    assert "output.weight" not in raw and config.tie_word_embeddings
    assert model.lm_head.weight.data_ptr() == model.model.embed_tokens.weight.data_ptr()
    assert np.array_equal(dequantised("token_embd.weight"), model.model.embed_tokens.weight.detach().numpy())

    tensors = {}
    vocab = config.vocab_size
    for i, text in enumerate(PROMPTS):
        ids = tokenizer(text, add_special_tokens=True)["input_ids"]
        with torch.no_grad():
            logits = model(torch.tensor([ids])).logits[0, -1].float()
        assert logits.shape[0] == vocab
        top = torch.topk(logits, TOP_K)
        tensors[f"prompt.{i}.input_ids"] = np.array(ids, dtype=np.int64)
        tensors[f"prompt.{i}.top_ids"] = top.indices.numpy().astype(np.int64)
        tensors[f"prompt.{i}.top_logits"] = top.values.numpy().astype(np.float32)
        tensors[f"prompt.{i}.logsumexp"] = np.array([torch.logsumexp(logits, 0).item()], dtype=np.float32)
        tensors[f"prompt.{i}.sampled_logits"] = logits[::SAMPLE_STRIDE].numpy().astype(np.float32)
        words = [tokenizer.decode([t]) for t in top.indices.tolist()[:3]]
        print(f"prompt {i}: {len(ids)} tokens, next {top.indices[0].item()} {words[0]!r} "
              f"(then {words[1]!r}, {words[2]!r}), top logit {top.values[0].item():.4f}")

    metadata = {
        "prompts": json.dumps(PROMPTS),
        "top_k": str(TOP_K),
        "sample_stride": str(SAMPLE_STRIDE),
        "gguf_file": name,
        "gguf_bytes": str(os.path.getsize(args.gguf)),
        "generator": "scripts/make_gguf_fixture.py; " + ", ".join(
            f"{package} {version(package)}" for package in ["torch", "transformers", "gguf", "safetensors", "numpy"]),
    }
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    save_file(tensors, args.out, metadata=metadata)
    print(f"wrote {args.out} ({os.path.getsize(args.out)} bytes)")


if __name__ == "__main__":
    main()
