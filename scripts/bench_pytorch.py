#!/usr/bin/env python3
"""The PyTorch reference for `sortedtrain bench`: the same model, batch and exits, timed the
same way (median of N steps after warm-up: forward, backward, AdamW), eager float32 on CPU.

    python3 scripts/bench_pytorch.py [configs/bench-58m.json] [--steps 5] [--threads 2]

SoFT here is the straightforward PyTorch formulation: one forward through the layers,
final norm + LM head + cross-entropy at every exit (full logits per exit), mean of the exit
losses, one backward. Prints one JSON object. Needs: pip install torch transformers.
"""
import argparse, json, statistics, time


def main() -> None:
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    parser = argparse.ArgumentParser()
    parser.add_argument("config", nargs="?", default="configs/bench-58m.json")
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    run = json.load(open(args.config))
    m = run["model"]
    config = LlamaConfig(**m, attention_bias=False, mlp_bias=False, attn_implementation="sdpa")
    B, T = run["train"]["micro_batch_size"], run["train"]["sequence_length"]
    exits = run["sorted"]["exits"]
    torch.manual_seed(0)
    model = LlamaForCausalLM(config).float()
    tokens = torch.randint(0, m["vocab_size"], (B, T))
    targets = torch.randint(0, m["vocab_size"], (B, T))
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-4, weight_decay=0.1)
    position_ids = torch.arange(T).unsqueeze(0)

    def step(depths):
        optimizer.zero_grad(set_to_none=True)
        h = model.model.embed_tokens(tokens)
        rope = model.model.rotary_emb(h, position_ids)
        mask = None
        losses = []
        for i, layer in enumerate(model.model.layers[: max(depths)]):
            out = layer(h, attention_mask=mask, position_ids=position_ids, position_embeddings=rope)
            h = out[0] if isinstance(out, tuple) else out
            if i + 1 in depths:
                logits = model.lm_head(model.model.norm(h))
                losses.append(torch.nn.functional.cross_entropy(logits.view(-1, logits.size(-1)), targets.view(-1)))
        loss = torch.stack(losses).mean()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()

    def measure(depths):
        times = []
        for i in range(args.warmup + args.steps):
            start = time.perf_counter()
            step(depths)
            if i >= args.warmup:
                times.append(time.perf_counter() - start)
        return statistics.median(times)

    L = m["num_hidden_layers"]
    sft = measure([L])
    soft = measure(exits)
    print(json.dumps({"torch": torch.__version__, "threads": args.threads, "pytorch_sft_step_s": sft,
                      "pytorch_soft_step_s": soft, "pytorch_soft_sft_ratio": soft / sft, "exits": exits}))


if __name__ == "__main__":
    main()
