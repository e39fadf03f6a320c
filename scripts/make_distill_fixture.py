#!/usr/bin/env python3
"""Golden reference for sortedtrain's weighted, self-distilled sorted loss, from PyTorch +
transformers on the start weights and batch of the golden fixtures (make_golden_fixture.py).

    python3 scripts/make_distill_fixture.py --fixtures Tests/Fixtures

For golden-gqa-tied, golden-mha-untied and golden-gqa-long it writes golden-distill-<name>.safetensors with the
loss and every parameter's gradient (F32, computed in float64 with make_golden_fixture's
float64-faithful HF model) of

    total = Σ_k w_k·CE_k + α·τ²·Σ_{k<4} KL(softmax(z_4/τ) ‖ softmax(z_k/τ))

over the exits k = 1..4: CE_k is HF's causal-LM loss of the exit-k prefix model (mean over the
labelled, shifted tokens), z_k its logits at those tokens, the teacher's distribution detached
(torch .detach()), KL averaged over the same tokens; w is torchtune's linear loss scale at
step 0 (w_k = k / Σ k, sortedtrain's sorted.scale "linear"); α = 0.5, τ = 2. Metadata:
alpha, temperature, scale, weights, source fixture. Needs torch, transformers, safetensors.
"""
import argparse
import json
import os
import sys

import torch
import torch.nn.functional as F
from safetensors import safe_open
from safetensors.torch import save_file

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import make_golden_fixture as golden  # noqa: E402

ALPHA, TAU = 0.5, 2.0


def make(fixtures: str, name: str) -> str:
    source = os.path.join(fixtures, f"{name}.safetensors")
    with safe_open(source, framework="pt") as f:
        meta = f.metadata()
        c = json.loads(meta["config"])
        exits = json.loads(meta["exits"])
        start = {k: f.get_tensor(k) for k in f.keys() if not k.split(".")[0] in ("loss", "logits", "grad", "adamw")
                 and k not in ("input_ids", "labels")}
        input_ids, labels = f.get_tensor("input_ids"), f.get_tensor("labels")
    torch.set_num_threads(1)
    torch.use_deterministic_algorithms(True)
    model = golden.build_model(c, start)
    weights = [k / sum(exits) for k in exits]
    mask = labels[:, 1:] != golden.IGNORE
    logits, ce = {}, {}
    for k in exits:
        with golden.truncated(model, k):
            out = model(input_ids=input_ids, labels=labels)
        golden.check(out.logits.dtype == torch.float64, "float64 logits")
        ce[k], logits[k] = out.loss, out.logits[:, :-1][mask]
    teacher = F.softmax(logits[exits[-1]] / TAU, dim=-1).detach()
    kl = {k: (teacher * (torch.log(teacher) - F.log_softmax(logits[k] / TAU, dim=-1))).sum(-1).mean() for k in exits[:-1]}
    total = sum(w * ce[k] for w, k in zip(weights, exits)) + ALPHA * TAU * TAU * sum(kl.values())
    model.zero_grad()
    total.backward()
    tensors = {"distill.loss.total": total.detach().reshape(1)}
    for k in exits:
        tensors[f"distill.loss.exit_{k}"] = ce[k].detach().reshape(1)
    for k in exits[:-1]:
        tensors[f"distill.kl.exit_{k}"] = kl[k].detach().reshape(1)
    for pname, p in model.named_parameters():
        if c["tie_word_embeddings"] and pname == "lm_head.weight":
            continue
        tensors[f"distill.grad.{pname}"] = p.grad.detach().to(torch.float32).contiguous()
    metadata = {"alpha": repr(ALPHA), "temperature": repr(TAU), "scale": "linear", "weights": json.dumps(weights),
                "source": f"{name}.safetensors", "generator": f"torch {torch.__version__}"}
    out_path = os.path.join(fixtures, f"golden-distill-{name.removeprefix('golden-')}.safetensors")
    save_file(tensors, out_path, metadata=metadata)
    golden.canonicalize_header(out_path)
    print(f"wrote {out_path}: total {total.item():.12g}, KL {[round(v.item(), 9) for v in kl.values()]}")
    return out_path


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--fixtures", default="Tests/Fixtures")
    args = ap.parse_args()
    for name in ("golden-gqa-tied", "golden-mha-untied", "golden-gqa-long"):
        make(args.fixtures, name)
    return 0


if __name__ == "__main__":
    sys.exit(main())
