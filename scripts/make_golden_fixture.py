#!/usr/bin/env python3
"""Generate the golden reference fixtures for sortedtrain's Swift LLaMA trainer.

What it makes
-------------
Two safetensors files, each a tiny LLaMA (HF ``LlamaForCausalLM``) plus everything
needed to check the Swift forward pass, the sorted (SoFT) loss, its gradients and
three AdamW steps against PyTorch/transformers:

* ``golden-gqa-tied.safetensors``     - GQA (4 query / 2 KV heads), tied embeddings.
* ``golden-mha-untied.safetensors``   - MHA, untied ``lm_head``, and head_dim (8) with
  num_heads * head_dim (32) != hidden_size (24) on purpose.

How to run (from the repository root)::

    python3 scripts/make_golden_fixture.py --out Tests/Fixtures

Requirements: torch, transformers (v5 API: ``rope_parameters``), safetensors.
The output is deterministic (fixed seeds, single thread, deterministic algorithms).

What is computed
----------------
* Weights are drawn in float32 from a fixed seed (linear ~ N(0, 0.15^2), embeddings
  and an untied lm_head ~ N(0, 0.5^2), RMSNorm weights = 1 + 0.1 N(0, 1)). The model
  is then converted with ``model.double()`` and *everything* below is computed in
  float64, so the stored F32 weights are exactly the starting point.
* Batch B=2, T=12 (``golden-gqa-long``: T=520, past the Swift attention's query and key
  tiles, with three query heads per KV head), ``labels`` = ``input_ids`` (HF convention,
  unshifted) with -100 on row 0 positions 0..3 and row 1 positions 0..2 and the last two.
* Sorted loss: exits {1,2,3,4}. The exit-k model is embedding -> first k decoder
  layers -> the shared final norm -> the shared lm_head -> HF causal-LM cross-entropy
  (mean over non-ignored shifted targets). ``loss.total`` = mean of the four exit
  losses. The exit-k forward reuses the real HF module with ``model.model.layers`` and
  ``config.num_hidden_layers`` temporarily truncated to k.
* Gradients of ``loss.total`` w.r.t. every parameter at the start weights.
* 3 steps of ``torch.optim.AdamW`` on the same batch, with global grad-norm clipping
  (``torch.nn.utils.clip_grad_norm_``; note torch scales by
  ``max_norm / (norm + 1e-6)`` when ``norm > max_norm``). Decay group: every 2-D
  projection weight (+ untied lm_head.weight); no-decay group: RMSNorm weights and
  ``model.embed_tokens.weight`` (so a tied head is not decayed).

float64 faithfulness (important)
--------------------------------
transformers hard-codes float32 "upcasts" that become *downcasts* in a float64 model:
RMSNorm (``hidden_states.to(torch.float32)``), eager softmax (``dtype=torch.float32``),
RoPE (``inv_freq`` built in float32, cos/sin computed in float32) and the causal-LM
loss (``logits.float()``). Left alone they cap the "float64" reference at float32
precision. This script replaces exactly those four spots with float64 versions that are
otherwise op-for-op identical (see ``make_float64_faithful``), and verifies that

  (a) exit-4 loss == a plain full-model ``model(input_ids, labels=labels).loss``;
  (b) exit-2 loss == a freshly built 2-layer LlamaForCausalLM strictly loaded with the
      first 2 layers + norm + head (to 1e-12);
  (c) an independent from-scratch float64 LLaMA implementation reproduces every exit
      loss/logit and every gradient;
  (d) the *unpatched* HF model (with its float32 internals) agrees to float32 accuracy,
      i.e. the patches change precision only, not semantics.

Any failed check raises and no file is written for that fixture.

File contents (tensor names)
----------------------------
``<param>`` (F32 start weights, HF state_dict names; ``lm_head.weight`` only when
untied), ``input_ids``/``labels`` (I64 [B,T]), ``loss.exit_{1..4}``/``loss.total``
(F64 [1]), ``logits.exit_{1..4}`` (F32 [B,T,V]), ``grad.<param>`` (F32, computed in
F64; tied: only ``grad.model.embed_tokens.weight``, including the head contribution),
``adamw.step_loss_{1..3}``/``adamw.grad_norm_{1..3}`` (F64 [1]; loss before each
update, pre-clip global norm), ``adamw.param.<param>`` (F32, after step 3).
``__metadata__``: ``config``, ``exits``, ``reduction``, ``adamw``, ``generator``.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import struct
import sys
import types

import torch
import torch.nn as nn
import torch.nn.functional as F

import safetensors
import transformers
from safetensors import safe_open
from safetensors.torch import save_file
from transformers import LlamaConfig, LlamaForCausalLM
from transformers.models.llama import modeling_llama

# --------------------------------------------------------------------------------------
# Fixed settings
# --------------------------------------------------------------------------------------

B, T = 2, 12   # the batch of a fixture that names none
EXITS = [1, 2, 3, 4]
IGNORE = -100
ADAMW = {"lr": 1e-2, "beta1": 0.9, "beta2": 0.95, "eps": 1e-8, "weight_decay": 0.1}
ADAMW_STEPS = 3

FIXTURES = {
    "golden-gqa-tied": {
        "seed": 1001,
        "config": {
            "hidden_size": 32,
            "intermediate_size": 56,
            "num_hidden_layers": 4,
            "num_attention_heads": 4,
            "num_key_value_heads": 2,
            "head_dim": 8,
            "vocab_size": 96,
            "rms_norm_eps": 1e-5,
            "rope_theta": 10000.0,
            "tie_word_embeddings": True,
            "max_position_embeddings": 64,
        },
        # 0.5 x the step-1 (start-weights) global grad norm, rounded to 4 significant
        # digits. Obtained once from a dry run and pinned here; the script checks that
        # step 1 actually clips.
        "max_grad_norm": 5.839,
    },
    "golden-mha-untied": {
        "seed": 2002,
        "config": {
            "hidden_size": 24,
            "intermediate_size": 40,
            "num_hidden_layers": 4,
            "num_attention_heads": 4,
            "num_key_value_heads": 4,
            "head_dim": 8,  # deliberately 4 * 8 = 32 != hidden_size 24
            "vocab_size": 80,
            "rms_norm_eps": 1e-6,
            "rope_theta": 500000.0,
            "tie_word_embeddings": False,
            "max_position_embeddings": 64,
        },
        "max_grad_norm": 3.25,  # see above
    },
    "golden-gqa-long": {
        "seed": 3003,
        "batch": (2, 520),
        "config": {
            "hidden_size": 48,
            "intermediate_size": 64,
            "num_hidden_layers": 4,
            "num_attention_heads": 6,
            "num_key_value_heads": 2,
            "head_dim": 8,
            "vocab_size": 64,
            "rms_norm_eps": 1e-5,
            "rope_theta": 10000.0,
            "tie_word_embeddings": True,
            "max_position_embeddings": 1024,
        },
        "max_grad_norm": 2.566,  # see above
    },
}

# Tolerances for the self-checks (all in float64).
TOL_SAME_GRAPH = 1e-12   # (a), (b)
TOL_INDEPENDENT = 1e-10  # (c) different op order, float64
TOL_NATIVE_HF = 1e-5     # (d) unpatched HF computes parts in float32


class FixtureError(RuntimeError):
    pass


def check(cond: bool, msg: str) -> None:
    if not cond:
        raise FixtureError(msg)


# --------------------------------------------------------------------------------------
# Model construction
# --------------------------------------------------------------------------------------


def make_config(c: dict, num_layers: int | None = None) -> LlamaConfig:
    return LlamaConfig(
        vocab_size=c["vocab_size"],
        hidden_size=c["hidden_size"],
        intermediate_size=c["intermediate_size"],
        num_hidden_layers=c["num_hidden_layers"] if num_layers is None else num_layers,
        num_attention_heads=c["num_attention_heads"],
        num_key_value_heads=c["num_key_value_heads"],
        head_dim=c["head_dim"],
        rms_norm_eps=c["rms_norm_eps"],
        # transformers v5: rope_theta lives in rope_parameters (a legacy `rope_theta=`
        # kwarg is converted into this and the config has no `rope_theta` attribute).
        rope_parameters={"rope_type": "default", "rope_theta": c["rope_theta"]},
        tie_word_embeddings=c["tie_word_embeddings"],
        max_position_embeddings=c["max_position_embeddings"],
        attention_bias=False,
        mlp_bias=False,
        hidden_act="silu",
        use_cache=False,
        attention_dropout=0.0,
        attn_implementation="eager",
    )


def param_kind(name: str) -> str:
    if name.endswith("layernorm.weight") or name == "model.norm.weight":
        return "norm"
    if name in ("model.embed_tokens.weight", "lm_head.weight"):
        return "embedding"
    if name.endswith("_proj.weight"):
        return "linear"
    raise FixtureError(f"unclassified parameter {name}")


def init_weights_(model: nn.Module, seed: int) -> None:
    """Overwrite every (unique) parameter in float32 from a fixed generator."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            check(p.dtype == torch.float32, f"{name} not float32 before init")
            z = torch.randn(p.shape, generator=g, dtype=torch.float32)
            kind = param_kind(name)
            if kind == "norm":
                p.copy_(1.0 + 0.1 * z)
            elif kind == "embedding":
                p.copy_(0.5 * z)
            else:
                p.copy_(0.15 * z)


# --------------------------------------------------------------------------------------
# float64-faithful replacements for HF's hard-coded float32 internals
# --------------------------------------------------------------------------------------


def _rmsnorm_forward_f64(self, hidden_states):
    # HF: x.to(float32); var = x^2.mean; x * rsqrt(var + eps); weight * x.to(in_dtype)
    variance = hidden_states.pow(2).mean(-1, keepdim=True)
    return self.weight * (hidden_states * torch.rsqrt(variance + self.variance_epsilon))


def _rotary_forward_f64(self, x, position_ids):
    # HF: same, but position_ids.float() * inv_freq.float(), cos/sin in float32.
    freqs = position_ids[..., None].to(torch.float64) * self.inv_freq.to(torch.float64)
    emb = torch.cat((freqs, freqs), dim=-1)
    cos = emb.cos() * self.attention_scaling
    sin = emb.sin() * self.attention_scaling
    return cos.to(dtype=x.dtype), sin.to(dtype=x.dtype)


_EAGER_F64_CALLS = [0]


def _eager_attention_forward_f64(module, query, key, value, attention_mask, scaling,
                                 dropout=0.0, **kwargs):
    # HF eager_attention_forward with softmax in the query dtype instead of float32.
    _EAGER_F64_CALLS[0] += 1
    key_states = modeling_llama.repeat_kv(key, module.num_key_value_groups)
    value_states = modeling_llama.repeat_kv(value, module.num_key_value_groups)
    attn_weights = torch.matmul(query, key_states.transpose(2, 3)) * scaling
    if attention_mask is not None:
        attn_weights = attn_weights + attention_mask
    attn_weights = F.softmax(attn_weights, dim=-1, dtype=query.dtype)
    attn_weights = F.dropout(attn_weights, p=dropout, training=module.training)
    attn_output = torch.matmul(attn_weights, value_states)
    attn_output = attn_output.transpose(1, 2).contiguous()
    return attn_output, attn_weights


def _causal_lm_loss_f64(logits, labels, vocab_size, num_items_in_batch=None,
                        ignore_index=IGNORE, shift_labels=None, **kwargs):
    # HF ForCausalLMLoss without `logits = logits.float()`.
    check(num_items_in_batch is None, "unexpected num_items_in_batch")
    if shift_labels is None:
        labels = F.pad(labels, (0, 1), value=ignore_index)
        shift_labels = labels[..., 1:].contiguous()
    logits = logits.view(-1, vocab_size)
    shift_labels = shift_labels.view(-1).to(logits.device)
    return F.cross_entropy(logits, shift_labels, ignore_index=ignore_index, reduction="mean")


@contextlib.contextmanager
def float64_eager_attention():
    """Swap the module-level eager attention used by LlamaAttention (looked up at call time)."""
    original = modeling_llama.eager_attention_forward
    modeling_llama.eager_attention_forward = _eager_attention_forward_f64
    try:
        yield
    finally:
        modeling_llama.eager_attention_forward = original


def expected_inv_freq(theta: float, head_dim: int) -> torch.Tensor:
    return 1.0 / (theta ** (torch.arange(0, head_dim, 2, dtype=torch.float64) / head_dim))


def make_float64_faithful(model: LlamaForCausalLM, c: dict) -> None:
    """Per-instance patches (RMSNorm, RoPE, loss); attention via float64_eager_attention()."""
    for mod in model.modules():
        if isinstance(mod, modeling_llama.LlamaRMSNorm):
            mod.forward = types.MethodType(_rmsnorm_forward_f64, mod)
    rot = model.model.rotary_emb
    check(rot.rope_type == "default", f"unexpected rope_type {rot.rope_type}")
    check(rot.attention_scaling == 1.0, "unexpected RoPE attention_scaling")
    with torch.no_grad():
        rot.inv_freq = expected_inv_freq(c["rope_theta"], c["head_dim"])
        rot.original_inv_freq = rot.inv_freq.clone()
    rot.forward = types.MethodType(_rotary_forward_f64, rot)
    model.loss_function = _causal_lm_loss_f64


def build_model(c: dict, start: dict[str, torch.Tensor], num_layers: int | None = None,
                faithful: bool = True) -> LlamaForCausalLM:
    """Fresh float64 model holding `start` weights (strict load)."""
    model = LlamaForCausalLM(make_config(c, num_layers))
    model.double()
    sd = {k: v.to(torch.float64) for k, v in start.items()}
    if c["tie_word_embeddings"]:
        sd["lm_head.weight"] = sd["model.embed_tokens.weight"]
    model.load_state_dict(sd, strict=True)
    if c["tie_word_embeddings"]:
        check(model.lm_head.weight is model.model.embed_tokens.weight, "tie lost after load")
    if faithful:
        make_float64_faithful(model, c)
    model.train()  # no dropout anywhere; train() only for clarity
    return model


# --------------------------------------------------------------------------------------
# Sorted (SoFT) loss via the real HF module
# --------------------------------------------------------------------------------------


@contextlib.contextmanager
def truncated(model: LlamaForCausalLM, k: int):
    layers = model.model.layers
    n = model.config.num_hidden_layers
    model.model.layers = nn.ModuleList(list(layers)[:k])
    model.config.num_hidden_layers = k  # LlamaModel iterates layers[: config.num_hidden_layers]
    try:
        yield
    finally:
        model.model.layers = layers
        model.config.num_hidden_layers = n


def sorted_loss(model, input_ids, labels, require_f64=True):
    losses, logits = {}, {}
    for k in EXITS:
        with truncated(model, k):
            out = model(input_ids=input_ids, labels=labels)
        check(out.logits.dtype == torch.float64, f"exit {k} logits are {out.logits.dtype}")
        # Unpatched HF returns a float32 loss (ForCausalLMLoss does logits.float()).
        check(out.loss.dtype == torch.float64 or not require_f64, f"exit {k} loss is {out.loss.dtype}")
        losses[k], logits[k] = out.loss, out.logits
    check(model.config.num_hidden_layers == len(EXITS) and len(model.model.layers) == len(EXITS),
          "model not restored after exits")
    total = torch.stack([losses[k] for k in EXITS]).mean()
    return total, losses, logits


# --------------------------------------------------------------------------------------
# Independent from-scratch float64 reference (check (c))
# --------------------------------------------------------------------------------------


def reference_sorted_loss(P: dict[str, torch.Tensor], c: dict, input_ids, labels):
    H, nh, nkv, hd = c["hidden_size"], c["num_attention_heads"], c["num_key_value_heads"], c["head_dim"]
    V, eps = c["vocab_size"], c["rms_norm_eps"]
    Bn, Tn = input_ids.shape
    head = P["model.embed_tokens.weight"] if c["tie_word_embeddings"] else P["lm_head.weight"]
    ang = torch.arange(Tn, dtype=torch.float64)[:, None] * expected_inv_freq(c["rope_theta"], hd)[None, :]
    cos = torch.cat((ang.cos(), ang.cos()), -1)
    sin = torch.cat((ang.sin(), ang.sin()), -1)
    causal = torch.triu(torch.ones(Tn, Tn, dtype=torch.bool), diagonal=1)

    def rms(x, w):
        return w * (x / torch.sqrt(x.pow(2).mean(-1, keepdim=True) + eps))

    def rope(x):  # [B, heads, T, hd], rotate-half convention
        x1, x2 = x[..., : hd // 2], x[..., hd // 2:]
        return x * cos + torch.cat((-x2, x1), -1) * sin

    x = P["model.embed_tokens.weight"][input_ids]
    losses, logits = {}, {}
    for i in range(max(EXITS)):
        p = f"model.layers.{i}."
        h = rms(x, P[p + "input_layernorm.weight"])
        q = (h @ P[p + "self_attn.q_proj.weight"].T).view(Bn, Tn, nh, hd).transpose(1, 2)
        kk = (h @ P[p + "self_attn.k_proj.weight"].T).view(Bn, Tn, nkv, hd).transpose(1, 2)
        v = (h @ P[p + "self_attn.v_proj.weight"].T).view(Bn, Tn, nkv, hd).transpose(1, 2)
        q, kk = rope(q), rope(kk)
        kk = kk.repeat_interleave(nh // nkv, dim=1)  # KV head j serves query heads j*g..j*g+g-1
        v = v.repeat_interleave(nh // nkv, dim=1)
        s = (q @ kk.transpose(-1, -2)) / math.sqrt(hd)
        a = torch.softmax(s.masked_fill(causal, float("-inf")), -1)
        o = (a @ v).transpose(1, 2).reshape(Bn, Tn, nh * hd)
        x = x + o @ P[p + "self_attn.o_proj.weight"].T
        h = rms(x, P[p + "post_attention_layernorm.weight"])
        g = F.silu(h @ P[p + "mlp.gate_proj.weight"].T) * (h @ P[p + "mlp.up_proj.weight"].T)
        x = x + g @ P[p + "mlp.down_proj.weight"].T
        k = i + 1
        if k in EXITS:
            lg = rms(x, P["model.norm.weight"]) @ head.T
            logits[k] = lg
            losses[k] = F.cross_entropy(lg[:, :-1].reshape(-1, V), labels[:, 1:].reshape(-1),
                                        ignore_index=IGNORE)
    total = torch.stack([losses[k] for k in EXITS]).mean()
    return total, losses, logits


# --------------------------------------------------------------------------------------
# Fixture generation
# --------------------------------------------------------------------------------------


def make_batch(c: dict, seed: int, batch: tuple[int, int]):
    b, t = batch
    g = torch.Generator().manual_seed(seed + 7)
    input_ids = torch.randint(0, c["vocab_size"], (b, t), generator=g, dtype=torch.int64)
    labels = input_ids.clone()
    labels[0, 0:4] = IGNORE          # prompt
    labels[1, 0:3] = IGNORE          # prompt
    labels[1, t - 2:t] = IGNORE      # padding
    return input_ids, labels


def param_groups(model: LlamaForCausalLM):
    decay, no_decay = [], []
    for name, p in model.named_parameters():  # unique params: tied head is not listed
        kind = param_kind(name)
        if kind == "linear" or name == "lm_head.weight":
            check(p.ndim == 2, f"{name} should be 2-D")
            decay.append(p)
        else:
            no_decay.append(p)
    return decay, no_decay


def generate(name: str, spec: dict, out_dir: str, max_norm_override: float | None) -> str:
    c = spec["config"]
    seed = spec["seed"]
    print(f"\n=== {name} ===")

    # ---- start weights (float32) ----
    torch.manual_seed(seed)
    m32 = LlamaForCausalLM(make_config(c))
    init_weights_(m32, seed)
    start = {n: p.detach().clone().contiguous() for n, p in m32.named_parameters()}
    if c["tie_word_embeddings"]:
        check("lm_head.weight" not in start, "tied model unexpectedly lists lm_head.weight")
        check(m32.lm_head.weight is m32.model.embed_tokens.weight, "tied weights are not shared")
    else:
        check("lm_head.weight" in start, "untied model lacks lm_head.weight")
    # RoPE theta actually used by HF (inv_freq built in float32 by HF)
    hf_inv = m32.model.rotary_emb.inv_freq.to(torch.float64)
    check(torch.allclose(hf_inv, expected_inv_freq(c["rope_theta"], c["head_dim"]), rtol=1e-6, atol=0),
          f"HF inv_freq {hf_inv} does not match theta={c['rope_theta']}")
    check(m32.config.head_dim == c["head_dim"], "head_dim not honoured")
    check(m32.model.layers[0].self_attn.q_proj.weight.shape
          == (c["num_attention_heads"] * c["head_dim"], c["hidden_size"]), "q_proj shape")
    check(m32.model.layers[0].self_attn.k_proj.weight.shape
          == (c["num_key_value_heads"] * c["head_dim"], c["hidden_size"]), "k_proj shape")
    del m32

    input_ids, labels = make_batch(c, seed, spec.get("batch", (B, T)))

    with float64_eager_attention():
        model = build_model(c, start)
        params = dict(model.named_parameters())
        check(list(params) == list(start), "parameter order/name mismatch")

        # ---- sorted loss, logits, gradients at start weights ----
        model.zero_grad(set_to_none=True)
        calls0 = _EAGER_F64_CALLS[0]
        total, losses, logits = sorted_loss(model, input_ids, labels)
        check(_EAGER_F64_CALLS[0] - calls0 == sum(EXITS), "float64 eager attention not used")
        total.backward()
        grads = {n: p.grad.detach().clone() for n, p in params.items()}
        model.zero_grad(set_to_none=True)

        # (a) exit 4 == plain full-model loss
        with torch.no_grad():
            full = model(input_ids=input_ids, labels=labels).loss
        da = abs(full.item() - losses[4].item())
        check(da <= TOL_SAME_GRAPH, f"(a) exit-4 loss {losses[4].item()!r} != full {full.item()!r}")
        print(f"check (a) exit-4 vs full model: |diff| = {da:.3e}")

        # (b) exit 2 == fresh 2-layer model with a strict load
        sub_start = {n: t for n, t in start.items()
                     if not (n.startswith("model.layers.") and int(n.split(".")[2]) >= 2)}
        m2 = build_model(c, sub_start, num_layers=2)
        check(len(m2.model.layers) == 2, "fresh 2-layer model has wrong depth")
        with torch.no_grad():
            out2 = m2(input_ids=input_ids, labels=labels)
        db = abs(out2.loss.item() - losses[2].item())
        dbl = (out2.logits - logits[2]).abs().max().item()
        check(db <= TOL_SAME_GRAPH and dbl <= TOL_SAME_GRAPH,
              f"(b) fresh 2-layer loss {out2.loss.item()!r} != exit-2 {losses[2].item()!r} (logits {dbl:.3e})")
        print(f"check (b) exit-2 vs fresh 2-layer model: |dloss| = {db:.3e}, max|dlogits| = {dbl:.3e}")
        del m2

    # (c) independent float64 implementation: losses, logits, gradients
    P = {n: t.to(torch.float64).requires_grad_(True) for n, t in start.items()}
    rtotal, rlosses, rlogits = reference_sorted_loss(P, c, input_ids, labels)
    rtotal.backward()
    dc_loss = max(abs(rlosses[k].item() - losses[k].item()) for k in EXITS)
    dc_loss = max(dc_loss, abs(rtotal.item() - total.item()))
    dc_logit = max((rlogits[k] - logits[k]).abs().max().item() for k in EXITS)
    dc_grad = max(((P[n].grad - grads[n]).abs().max() / grads[n].abs().max().clamp_min(1e-300)).item()
                  for n in start)
    check(dc_loss <= TOL_INDEPENDENT and dc_logit <= TOL_INDEPENDENT and dc_grad <= TOL_INDEPENDENT,
          f"(c) independent reference mismatch: loss {dc_loss:.3e}, logits {dc_logit:.3e}, grad {dc_grad:.3e}")
    print(f"check (c) independent float64 reference: max|dloss| = {dc_loss:.3e}, "
          f"max|dlogits| = {dc_logit:.3e}, max rel dgrad = {dc_grad:.3e}")

    # (d) native (unpatched) HF float64 model: float32 internals, same semantics
    native = build_model(c, start, faithful=False)
    ntotal, nlosses, _ = sorted_loss(native, input_ids, labels, require_f64=False)
    ntotal.backward()
    dd_loss = max(abs(nlosses[k].item() - losses[k].item()) for k in EXITS)
    dd_grad = max(((p.grad - grads[n]).abs().max() / grads[n].abs().max()).item()
                  for n, p in native.named_parameters())
    check(dd_loss <= TOL_NATIVE_HF and dd_grad <= 1e-4,
          f"(d) native HF disagrees beyond float32 noise: loss {dd_loss:.3e}, grad {dd_grad:.3e}")
    print(f"check (d) native HF (float32 internals) vs faithful float64: max|dloss| = {dd_loss:.3e}, "
          f"max rel dgrad = {dd_grad:.3e}")
    del native

    # ---- AdamW ----
    step1_norm = torch.linalg.vector_norm(
        torch.stack([torch.linalg.vector_norm(g) for g in grads.values()])).item()
    max_norm = spec["max_grad_norm"] if max_norm_override is None else max_norm_override
    print(f"step-1 grad norm {step1_norm:.6f}; 0.5x = {0.5 * step1_norm:.4g}; max_grad_norm used = {max_norm}")

    with float64_eager_attention():
        model = build_model(c, start)
        decay, no_decay = param_groups(model)
        all_params = list(model.parameters())
        check(len(decay) + len(no_decay) == len(all_params), "param groups do not cover all params")
        opt = torch.optim.AdamW(
            [{"params": decay, "weight_decay": ADAMW["weight_decay"]},
             {"params": no_decay, "weight_decay": 0.0}],
            lr=ADAMW["lr"], betas=(ADAMW["beta1"], ADAMW["beta2"]), eps=ADAMW["eps"],
            amsgrad=False, maximize=False, foreach=False, fused=False,
        )
        step_losses, step_norms = [], []
        for step in range(1, ADAMW_STEPS + 1):
            opt.zero_grad(set_to_none=True)
            t, _, _ = sorted_loss(model, input_ids, labels)
            t.backward()
            gn = torch.nn.utils.clip_grad_norm_(all_params, max_norm, norm_type=2.0, foreach=False)
            opt.step()
            step_losses.append(t.detach().clone())
            step_norms.append(gn.detach().clone())
            print(f"adamw step {step}: loss {t.item():.12f}  pre-clip norm {gn.item():.9f}  "
                  f"clipped={gn.item() > max_norm}")
        check(abs(step_losses[0].item() - total.item()) <= TOL_SAME_GRAPH, "step-1 loss != loss.total")
        check(abs(step_norms[0].item() - step1_norm) <= 1e-9 * step1_norm, "step-1 norm != start grad norm")
        check(step_norms[0].item() > max_norm, "step 1 does not clip; lower max_grad_norm")
        final = {n: p.detach().clone() for n, p in model.named_parameters()}

    # ---- assemble ----
    tensors: dict[str, torch.Tensor] = {}
    for n, t in start.items():
        tensors[n] = t.to(torch.float32).contiguous()
    tensors["input_ids"] = input_ids.contiguous()
    tensors["labels"] = labels.contiguous()
    for k in EXITS:
        tensors[f"loss.exit_{k}"] = losses[k].detach().reshape(1).to(torch.float64).clone()
        tensors[f"logits.exit_{k}"] = logits[k].detach().to(torch.float32).contiguous()
    tensors["loss.total"] = total.detach().reshape(1).to(torch.float64).clone()
    for n, g in grads.items():
        tensors[f"grad.{n}"] = g.to(torch.float32).contiguous()
    for i in range(ADAMW_STEPS):
        tensors[f"adamw.step_loss_{i + 1}"] = step_losses[i].reshape(1).to(torch.float64)
        tensors[f"adamw.grad_norm_{i + 1}"] = step_norms[i].reshape(1).to(torch.float64)
    for n, p in final.items():
        tensors[f"adamw.param.{n}"] = p.to(torch.float32).contiguous()

    metadata = {
        "config": json.dumps({k: c[k] for k in (
            "hidden_size", "intermediate_size", "num_hidden_layers", "num_attention_heads",
            "num_key_value_heads", "head_dim", "vocab_size", "rms_norm_eps", "rope_theta",
            "tie_word_embeddings", "max_position_embeddings")}),
        "exits": json.dumps(EXITS, separators=(",", ":")),
        "reduction": "mean",
        "adamw": json.dumps({**ADAMW, "max_grad_norm": max_norm}),
        "generator": f"scripts/make_golden_fixture.py, torch {torch.__version__}, "
                     f"transformers {transformers.__version__}",
    }
    path = os.path.join(out_dir, f"{name}.safetensors")
    save_file(tensors, path, metadata=metadata)
    canonicalize_header(path)
    verify_file(path, tensors, metadata)
    return path


def canonicalize_header(path: str) -> None:
    """Rewrite the safetensors JSON header with sorted __metadata__ keys.

    safetensors serializes __metadata__ from a hash map, so its key order (and hence the
    file bytes) varies between runs. Tensor entries and the data section are already
    deterministic; data offsets are relative to the end of the header, so only the
    header bytes change here.
    """
    with open(path, "rb") as f:
        blob = f.read()
    (n,) = struct.unpack("<Q", blob[:8])
    header = json.loads(blob[8:8 + n])
    data = blob[8 + n:]
    meta = header.pop("__metadata__")
    new = {"__metadata__": dict(sorted(meta.items())), **header}
    hb = json.dumps(new, separators=(",", ":")).encode("utf-8")
    hb += b" " * (-len(hb) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(hb)) + hb + data)


def verify_file(path: str, tensors: dict[str, torch.Tensor], metadata: dict[str, str]) -> None:
    with safe_open(path, framework="pt") as f:
        check(f.metadata() == metadata, f"{path}: metadata mismatch after write")
        check(sorted(f.keys()) == sorted(tensors), f"{path}: tensor names mismatch after write")
        for k in f.keys():
            t = f.get_tensor(k)
            check(t.dtype == tensors[k].dtype and torch.equal(t, tensors[k]), f"{path}: {k} mismatch")


def summarize(path: str) -> None:
    print(f"\n--- {path} ({os.path.getsize(path)} bytes) ---")
    with safe_open(path, framework="pt") as f:
        meta = f.metadata()
        names = list(f.keys())
        tensors = {n: f.get_tensor(n) for n in names}
    for k, v in sorted(meta.items()):
        print(f"meta {k}: {v}")
    for n in names:
        t = tensors[n]
        print(f"  {n:60s} {str(t.dtype).replace('torch.', ''):8s} {list(t.shape)}")
    max_norm = json.loads(meta["adamw"])["max_grad_norm"]
    for k in EXITS:
        print(f"loss.exit_{k} = {tensors[f'loss.exit_{k}'].item():.15f}")
    print(f"loss.total  = {tensors['loss.total'].item():.15f}")
    for i in range(1, ADAMW_STEPS + 1):
        gn = tensors[f"adamw.grad_norm_{i}"].item()
        print(f"adamw step {i}: loss {tensors[f'adamw.step_loss_{i}'].item():.15f}, "
              f"grad_norm {gn:.12f}, clipped {gn > max_norm} (max_norm {max_norm})")
    gabs = torch.cat([t.abs().flatten().double() for n, t in tensors.items() if n.startswith("grad.")])
    print(f"|grad| stats: max {gabs.max().item():.3e}, median {gabs.median().item():.3e}, "
          f"min nonzero {gabs[gabs > 0].min().item():.3e}, zeros {(gabs == 0).sum().item()}")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", default="Tests/Fixtures", help="output directory")
    ap.add_argument("--only", choices=sorted(FIXTURES), help="generate a single fixture")
    args = ap.parse_args(argv)

    torch.set_num_threads(1)
    torch.use_deterministic_algorithms(True)
    torch.set_default_dtype(torch.float32)
    transformers.logging.set_verbosity_error()
    os.makedirs(args.out, exist_ok=True)
    print(f"torch {torch.__version__}, transformers {transformers.__version__}, "
          f"safetensors {safetensors.__version__}, python {sys.version.split()[0]}")

    paths = []
    for name, spec in FIXTURES.items():
        if args.only and name != args.only:
            continue
        paths.append(generate(name, spec, args.out, None))
    for p in paths:
        summarize(p)
    return 0


if __name__ == "__main__":
    sys.exit(main())
