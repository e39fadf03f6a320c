#!/usr/bin/env python3
"""The PyTorch reference for `sortedtrain bench step`: the same model, batch and exits, timed
the same way (median of N steps after warm-up: forward, backward, gradient clipping, AdamW),
on CPU, with transformers' `eager` or `sdpa` attention, in float32 or in bf16 autocast (the
mixed precision of HF Trainer's bf16=True: float32 master weights and AdamW, the forward's
matmuls and attention in bfloat16 under torch.autocast, the backward following it).

    python3 scripts/bench_pytorch.py configs/bench-smollm2.json [--attention eager|sdpa|both]
        [--sequence-lengths 256,1024,2048] [--batch 4] [--modes sft,soft]
        [--precisions fp32,bf16] [--steps 5] [--warmup 1] [--threads 2]

The run config is read as sortedtrain reads it: `model` holds HF config keys inline or
{"path": "config.json"}; train.micro_batch_size and train.sequence_length are the defaults of
--batch and --sequence-lengths; optim sets AdamW and the clipping norm. SFT trains the last
layer's exit; SoFT is the straightforward PyTorch formulation of sortedtrain's objective: one
forward through the layers, final norm + LM head + cross-entropy at every exit (full logits
per exit), the exit losses weighted as sorted.weights / sorted.scale / sorted.reduction weight
them, one backward. (A weight warm-up changes no work and is left out; per-step exit sampling
and curricula are refused, as they change the work from step to step.)

Every (precision, attention, length, mode) runs in a process of its own, so its peak RSS (VmHWM) is its
own and not a larger earlier run's. Progress goes to stderr; stdout gets one JSON object:
{"torch", "transformers", "threads", "batch", "exits", "exit_weights", "steps", "warmup",
 "results": [{"precision", "attention", "sequence_length", "mode", "step_s", "tokens_per_s",
              "peak_rss_mb", "loss"} or {"precision", "attention", "sequence_length", "mode", "error"}, ...]};
the exit status is 1 when any measurement failed.
Exits 2 with one line when torch or transformers is not installed (pip install torch transformers).
"""
import argparse, importlib.metadata, itertools, importlib.util, json, math, os, resource, statistics, subprocess, sys, time


def fail(message: str, code: int = 1) -> None:
    print(f"bench_pytorch.py: {message}", file=sys.stderr)
    sys.exit(code)


def model_fields(run: dict) -> dict:
    """The HF config keys of the run config's `model` (inline, or the config.json it names)."""
    model = run.get("model")
    if not isinstance(model, dict):
        fail("the config has no 'model' section (HF config keys inline, or {\"path\": \"config.json\"})")
    if "path" in model:
        try:
            with open(model["path"]) as f:
                model = json.load(f)
        except (OSError, json.JSONDecodeError) as error:
            fail(f"model.path {model['path']}: {error}")
    fields = dict(model)
    # transformers before 4.56 reads rope_theta only.
    if "rope_theta" not in fields and isinstance(fields.get("rope_parameters"), dict):
        fields["rope_theta"] = fields["rope_parameters"].get("rope_theta", 10000.0)
    fields.update(attention_bias=False, mlp_bias=False, hidden_act="silu")
    return fields


def exit_weights(sorted_section: dict, layers: int) -> tuple:
    """The SoFT exits and each one's factor in the loss, as SortedObjective.activeExits gives
    them with every exit trained every step."""
    if sorted_section.get("sampling", "all") != "all" or sorted_section.get("curriculum", "none") != "none":
        fail("sorted.sampling / sorted.curriculum change the exits from step to step; benchmark a config that trains every exit every step")
    exits = sorted_section.get("exits", [layers])
    depths = [float(d) for d in exits]
    scale = sorted_section.get("scale")
    if scale is not None:
        running = []
        for d in depths:
            running.append((running[-1] if running else 0.0) + d)
        raw = {"uniform": [1.0] * len(depths), "linear": depths, "sum": running,
               "sqrt": [math.sqrt(d) for d in depths], "inverse": [1 / d for d in depths],
               "inverse_sqrt": [1 / math.sqrt(d) for d in depths]}.get(scale)
        if raw is None:
            fail(f"sorted.scale '{scale}' is not one of uniform, linear, sum, sqrt, inverse, inverse_sqrt")
        raw = [w / sum(raw) for w in raw]
    else:
        raw = [float(w) for w in sorted_section.get("weights", [1.0] * len(exits))]
    total = sum(raw) if sorted_section.get("reduction", "mean") == "mean" else 1.0
    return exits, [w / total for w in raw]


def peak_rss_mib() -> float:
    """This process's peak resident memory (VmHWM on Linux, else ru_maxrss)."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return rss / (1024 * 1024) if sys.platform == "darwin" else rss / 1024


def measure(spec: dict) -> dict:
    """One (precision, attention, length, mode) measurement; run in a child process of its own."""
    import contextlib
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.set_num_threads(spec["threads"])
    config = LlamaConfig(**spec["model"], attn_implementation=spec["attention"])
    B, T = spec["batch"], spec["sequence_length"]
    depths, weights = spec["exits"], spec["weights"]
    torch.manual_seed(0)
    model = LlamaForCausalLM(config).float()
    vocab = config.vocab_size
    tokens = torch.randint(0, vocab, (B, T))
    targets = torch.randint(0, vocab, (B, T))
    optim = spec["optim"]
    optimizer = torch.optim.AdamW(model.parameters(), lr=optim.get("lr", 3e-4),
                                  betas=(optim.get("beta1", 0.9), optim.get("beta2", 0.95)),
                                  eps=optim.get("eps", 1e-8), weight_decay=optim.get("weight_decay", 0.0))
    clip = optim.get("max_grad_norm", 1.0)
    position_ids = torch.arange(T).unsqueeze(0)
    # sdpa is causal by itself when given no mask; eager attention adds the mask it is given.
    mask = None if spec["attention"] == "sdpa" else torch.full((T, T), float("-inf")).triu(1)[None, None]

    # bf16: autocast runs the forward's matmuls (and sdpa) in bfloat16; the parameters, their
    # gradients and AdamW stay float32, as in HF Trainer's bf16=True.
    autocast = (torch.autocast("cpu", dtype=torch.bfloat16) if spec["precision"] == "bf16"
                else contextlib.nullcontext())

    def forward() -> "torch.Tensor":
        h = model.model.embed_tokens(tokens)
        rope = model.model.rotary_emb(h, position_ids)
        loss = 0
        for i, layer in enumerate(model.model.layers[: max(depths)]):
            out = layer(h, attention_mask=mask, position_ids=position_ids, position_embeddings=rope)
            h = out[0] if isinstance(out, tuple) else out
            if i + 1 in depths:
                logits = model.lm_head(model.model.norm(h))
                ce = torch.nn.functional.cross_entropy(logits.view(-1, vocab), targets.view(-1))
                loss = loss + weights[depths.index(i + 1)] * ce
        return loss

    def step() -> float:
        optimizer.zero_grad(set_to_none=True)
        with autocast:
            loss = forward()
        loss.backward()
        if clip > 0:
            torch.nn.utils.clip_grad_norm_(model.parameters(), clip)
        optimizer.step()
        return loss.item()

    times, first_loss = [], None
    for i in range(spec["warmup"] + spec["steps"]):
        start = time.perf_counter()
        loss = step()
        elapsed = time.perf_counter() - start
        first_loss = loss if first_loss is None else first_loss
        if i >= spec["warmup"]:
            times.append(elapsed)
    seconds = statistics.median(times)
    return {"precision": spec["precision"], "attention": config._attn_implementation, "sequence_length": T, "mode": spec["mode"],
            "step_s": seconds, "tokens_per_s": B * T / seconds, "peak_rss_mb": peak_rss_mib(), "loss": first_loss}


def parse_list(text: str, option: str, minimum: int) -> list:
    try:
        values = [int(v) for v in text.split(",")]
    except ValueError:
        values = []
    if not values or min(values) < minimum:
        fail(f"{option}: '{text}' is not a comma-separated list of whole numbers ≥ {minimum}")
    return values


def main() -> None:
    if len(sys.argv) == 3 and sys.argv[1] == "--child":
        print(json.dumps(measure(json.loads(sys.argv[2]))))
        return
    parser = argparse.ArgumentParser(description="PyTorch reference timings for sortedtrain bench step.")
    parser.add_argument("config", nargs="?", default="configs/bench-58m.json")
    parser.add_argument("--attention", choices=["eager", "sdpa", "both"], default="both")
    parser.add_argument("--sequence-lengths", help="e.g. 256,1024,2048 (default: the config's train.sequence_length)")
    parser.add_argument("--batch", type=int, help="sequences per step (default: the config's train.micro_batch_size)")
    parser.add_argument("--modes", default="sft,soft", help="sft, soft or both (default sft,soft)")
    parser.add_argument("--precisions", default="fp32",
                        help="fp32 (float32 throughout), bf16 (autocast), or both: fp32,bf16 (default fp32)")
    parser.add_argument("--steps", type=int, default=5, help="timed steps (the median is reported)")
    parser.add_argument("--warmup", type=int, default=1, help="untimed steps first")
    parser.add_argument("--threads", type=int, default=2, help="torch.set_num_threads")
    args = parser.parse_args()
    try:
        with open(args.config) as f:
            run = json.load(f)
    except (OSError, json.JSONDecodeError) as error:
        fail(f"{args.config}: {error}")
    fields = model_fields(run)
    train = run.get("train", {})
    batch = args.batch if args.batch is not None else train.get("micro_batch_size", 4)
    lengths = (parse_list(args.sequence_lengths, "--sequence-lengths", 2) if args.sequence_lengths
               else [train.get("sequence_length", 256)])
    limit = fields.get("max_position_embeddings", 2048)
    if max(lengths) > limit:
        fail(f"--sequence-lengths: {max(lengths)} exceeds the model's max_position_embeddings {limit}")
    modes = args.modes.split(",")
    if not modes or any(m not in ("sft", "soft") for m in modes):
        fail(f"--modes: '{args.modes}' is not a list of sft, soft")
    precisions = args.precisions.split(",")
    if any(p not in ("fp32", "bf16") for p in precisions) or len(set(precisions)) != len(precisions):
        fail(f"--precisions: '{args.precisions}' is not a list of fp32, bf16 (each once)")
    for option, value, minimum in (("--batch", batch, 1), ("--steps", args.steps, 1), ("--warmup", args.warmup, 0),
                                   ("--threads", args.threads, 1)):
        if value < minimum:
            fail(f"{option} must be at least {minimum}, got {value}")
    layers = fields["num_hidden_layers"]
    exits, weights = exit_weights(run.get("sorted", {}), layers)
    attentions = ["eager", "sdpa"] if args.attention == "both" else [args.attention]
    # Found, not imported: this process stays small; the children import them.
    missing = [name for name in ("torch", "transformers") if importlib.util.find_spec(name) is None]
    if missing:
        fail(f"needs torch and transformers (pip install torch transformers): no module named {', '.join(missing)}", code=2)

    results = []
    for precision, attention, T, mode in itertools.product(precisions, attentions, lengths, modes):
        spec = {"model": fields, "precision": precision, "attention": attention, "sequence_length": T, "mode": mode, "batch": batch,
                "exits": [layers] if mode == "sft" else exits, "weights": [1.0] if mode == "sft" else weights,
                "optim": run.get("optim", {}), "steps": args.steps, "warmup": args.warmup,
                "threads": args.threads}
        child = subprocess.run([sys.executable, os.path.abspath(__file__), "--child", json.dumps(spec)],
                               capture_output=True, text=True)
        if child.returncode == 0:
            result = json.loads(child.stdout.strip().splitlines()[-1])
            print(f"{precision} {attention:5} length {T:5} {mode:4}: {result['step_s']:.3f} s per step, "
                  f"peak RSS {result['peak_rss_mb']:.0f} MiB, loss {result['loss']:.4f}", file=sys.stderr)
        else:
            # One failed measurement (out of memory, most likely: the kernel kills it) leaves the sweep's others.
            last = (child.stderr.strip().splitlines() or ["no output"])[-1]
            killed = " (killed by a signal: out of memory?)" if child.returncode < 0 else ""
            result = {"precision": precision, "attention": attention, "sequence_length": T, "mode": mode,
                      "error": f"exit {child.returncode}{killed}: {last}"}
            print(f"{precision} {attention:5} length {T:5} {mode:4}: failed, {result['error']}", file=sys.stderr)
        results.append(result)
    print(json.dumps({"torch": importlib.metadata.version("torch"), "transformers": importlib.metadata.version("transformers"),
                      "threads": args.threads,
                      "batch": batch, "exits": exits, "exit_weights": weights, "steps": args.steps,
                      "warmup": args.warmup, "results": results}))
    if any("error" in r for r in results):
        sys.exit(1)


if __name__ == "__main__":
    main()
