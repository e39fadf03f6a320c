#!/usr/bin/env python3
"""Checks that an HF directory exported by `sortedtrain export --format hf` loads unchanged
as transformers' LlamaForCausalLM and reproduces sortedtrain's logits.

    python3 scripts/check_hf_export.py EXPORT_DIR EXPECTED.safetensors

EXPECTED holds `input_ids` (I64 [B, T]) and `logits` (F32 [B, T, V]) computed by sortedtrain
for the same depth. Exit status 0 when every logit is within 1e-4 + 1e-4·|expected|, 1 when
not, 2 when PyTorch/transformers are missing. Needs: pip install torch transformers safetensors.
"""
import sys


def main() -> int:
    if len(sys.argv) != 3:
        print(__doc__)
        return 2
    try:
        import torch
        from safetensors.torch import load_file
        from transformers import LlamaForCausalLM
    except ImportError as error:
        print(f"check_hf_export: {error}; install torch, transformers and safetensors")
        return 2
    export_dir, expected_path = sys.argv[1], sys.argv[2]
    expected = load_file(expected_path)
    model = LlamaForCausalLM.from_pretrained(export_dir, torch_dtype=torch.float32, attn_implementation="eager")
    model.eval()
    with torch.no_grad():
        logits = model(input_ids=expected["input_ids"]).logits
    reference = expected["logits"]
    if logits.shape != reference.shape:
        print(f"check_hf_export: logits shape {tuple(logits.shape)} != expected {tuple(reference.shape)}")
        return 1
    excess = (logits - reference).abs() - (1e-4 + 1e-4 * reference.abs())
    worst = float((logits - reference).abs().max())
    tied = model.config.tie_word_embeddings
    print(f"check_hf_export: {model.config.num_hidden_layers} layers, tied={tied}, max |Δlogit| = {worst:.3e}")
    return 0 if float(excess.max()) <= 0 else 1


if __name__ == "__main__":
    sys.exit(main())
