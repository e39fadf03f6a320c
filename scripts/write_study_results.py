#!/usr/bin/env python3
"""Writes the study's document (docs/results.md) from the JSON and JSONL that launch/study's
commands produced — no figure is typed by hand. Standard library only.

    python3 scripts/write_study_results.py runs/study --doc docs/results.md --openblas Haswell

Reads OUT/eval-soft-sft.json and OUT/eval-base.json (sortedtrain eval --json), OUT/bench-ARM.json
(sortedtrain bench generate --json), OUT/ARM/metrics.jsonl (training), and copies
OUT/quality-per-exit.svg and OUT/training-curves.svg beside the document.
"""
import argparse
import json
import os
import platform
import shutil


def load(path):
    with open(path) as f:
        return json.load(f)


def training_cost(metrics_path):
    steps = [json.loads(line) for line in open(metrics_path) if '"step_s"' in line]
    seconds = sum(s["step_s"] for s in steps)
    tokens = sum(s["tokens"] for s in steps)
    rss = max((s.get("peak_rss_mb", 0) for s in steps), default=0)
    last = steps[-1] if steps else {}
    return {"steps": last.get("step", 0), "seconds": seconds, "tokens_per_s": tokens / seconds if seconds else 0,
            "peak_rss_mb": rss, "tokens_per_step": last.get("tokens", 0)}


def recorded_commands(out):
    """(command, seconds or None) of this run's launch/study, from OUT/commands.txt."""
    path = os.path.join(out, "commands.txt")
    if not os.path.exists(path):
        return []
    rows = []
    for line in open(path):
        command, _, seconds = line.rstrip("\n").rpartition("\t")
        rows.append((command.strip(), None if seconds == "-" else int(seconds)))
    return rows


def fmt(x, digits=3):
    return "-" if x is None else f"{x:.{digits}f}"


def percent(x):
    return "-" if x is None else f"{100 * x:.1f}%"


def cpu_model():
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("out")
    parser.add_argument("--doc", required=True)
    parser.add_argument("--openblas", default="unknown")
    args = parser.parse_args()
    out = args.out

    pair = load(os.path.join(out, "eval-soft-sft.json"))
    base = load(os.path.join(out, "eval-base.json"))["exits"]
    soft, sft = pair["exits"], pair["compared"]["exits"]
    bench = {arm: load(os.path.join(out, f"bench-{arm}.json")) for arm in ("sft", "soft")}
    cost = {arm: training_cost(os.path.join(out, arm, "metrics.jsonl")) for arm in ("sft", "soft")}

    doc_dir = os.path.dirname(os.path.abspath(args.doc))
    os.makedirs(doc_dir, exist_ok=True)
    figures = {}
    for name in ("quality-per-exit.svg", "training-curves.svg"):
        target = os.path.join(doc_dir, f"study-{name}")
        shutil.copyfile(os.path.join(out, name), target)
        figures[name] = os.path.basename(target)

    lines = []
    add = lines.append
    add("# SoFT vs SFT on SmolLM2-135M-Instruct, every exit")
    add("")
    add(f"Written by `scripts/write_study_results.py` from the output of `launch/study` in `{out}/` "
        "(the JSON of `sortedtrain eval` and `sortedtrain bench generate`, and each arm's metrics.jsonl); "
        "no figure here is typed by hand.")
    add("")
    add(f"Machine: {cpu_model()}, {os.cpu_count()} cores; OpenBLAS kernel `{args.openblas}`, "
        f"{bench['soft']['threads']} threads; read bandwidth {bench['soft']['read_bandwidth_gb_per_s']:.1f} GB/s "
        "(measured in the benchmark run).")
    add("")
    add(f"Both arms: the same data order, schedule, seed and ranks (`mpirun -np 2`), "
        f"{cost['soft']['steps']} steps; SFT trains the loss at layer 30 only, SoFT the mean over exits "
        f"{', '.join(str(e['depth']) for e in soft)}. Commands: `launch/study` (configs in `configs/study/`)"
        + (", listed at the end." if recorded_commands(out) else "."))
    add("")
    commands = recorded_commands(out)
    tokens_per_step = cost["soft"]["tokens_per_step"]
    after_training = sum(t or 0 for c, t in commands if " train " not in c and " synth " not in c)
    budget = (f"Budget: {cost['soft']['steps']} steps of {tokens_per_step} tokens per arm, chosen so that the whole study "
              f"fits about two hours on this 2-core machine: training took {cost['sft']['seconds'] / 60:.0f} min (SFT) "
              f"and {cost['soft']['seconds'] / 60:.0f} min (SoFT) of step time")
    if commands:
        budget += f", evaluation, benchmarks and plots {after_training / 60:.0f} min"
    add(budget + ".")
    add("")
    add("## Every exit on held-out data (response tokens)")
    add("")
    add("| exit | loss base | loss SFT | loss SoFT | accuracy base | accuracy SFT | accuracy SoFT | "
        "agreement SFT | agreement SoFT | KL SFT | KL SoFT | exact match base | exact match SFT | exact match SoFT |")
    add("|" + "---|" * 14)
    for b, f, s in zip(base, sft, soft):
        add(f"| {s['depth']} | {fmt(b['loss'])} | {fmt(f['loss'])} | {fmt(s['loss'])} | {fmt(b['accuracy'])} | "
            f"{fmt(f['accuracy'])} | {fmt(s['accuracy'])} | {fmt(f['agreement'])} | {fmt(s['agreement'])} | "
            f"{fmt(f['kl_from_deepest'])} | {fmt(s['kl_from_deepest'])} | {percent(b.get('exact_match'))} | "
            f"{percent(f.get('exact_match'))} | {percent(s.get('exact_match'))} |")
    add("")
    add(f"Agreement and KL are against the arm's own exit 30. Exact match over {soft[0]['answered']} greedy answers per exit.")
    add("")
    add(f"![per-exit quality]({figures['quality-per-exit.svg']})")
    add("")
    add("## Generation speed per depth (batch 1 and batched greedy decoding)")
    add("")
    add("| exit | SoFT decode tok/s | × depth 30 | batched tok/s | prefill tok/s | of the bandwidth limit |")
    add("|---|---|---|---|---|---|")
    for d in bench["soft"]["depths"]:
        add(f"| {d['depth']} | {d['decode_tokens_per_s_batch1']:.1f} | {d['speedup_over_full_depth']:.2f} | "
            f"{d['decode_tokens_per_s_batched']:.1f} | {d['prefill_tokens_per_s']:.0f} | {d['fraction_of_bandwidth_limit']:.2f} |")
    add("")
    add("## Dynamic inference")
    add("")
    add("| arm | strategy | tok/s | × full depth | layers per token | agreement with full-depth greedy | acceptance |")
    add("|---|---|---|---|---|---|---|")
    for arm in ("sft", "soft"):
        for s in bench[arm]["strategies"]:
            add(f"| {arm.upper() if arm == 'sft' else 'SoFT'} | {s['strategy']} | {s['tokens_per_s']:.1f} | "
                f"{s['speedup_over_full_depth']:.2f} | {s['mean_layers_per_token']:.2f} | {s['agreement_with_full_depth']:.3f} | "
                f"{fmt(s.get('acceptance_rate'), 2)} |")
    add("")
    add("## Training cost")
    add("")
    add("| arm | steps | wall time (sum of steps) | tokens/s | peak RSS per rank |")
    add("|---|---|---|---|---|")
    for arm in ("sft", "soft"):
        c = cost[arm]
        add(f"| {arm.upper() if arm == 'sft' else 'SoFT'} | {c['steps']} | {c['seconds'] / 60:.1f} min | "
            f"{c['tokens_per_s']:.0f} | {c['peak_rss_mb']:.0f} MiB |")
    add("")
    add(f"![training curves]({figures['training-curves.svg']})")
    add("")
    add("## What the numbers show")
    add("")
    shallow, deepest = 0, len(soft) - 1
    for i, label in ((shallow, "the shallowest exit"), (deepest, "the last exit")):
        d = soft[i]["depth"]
        diff = soft[i]["loss"] - sft[i]["loss"]
        verdict = "lower" if diff < 0 else "higher"
        add(f"- At {label} ({d} layers) SoFT's loss is {soft[i]['loss']:.3f}, {abs(diff):.3f} {verdict} than SFT's "
            f"{sft[i]['loss']:.3f} (base model {base[i]['loss']:.3f}).")
    worse = [s["depth"] for s, f in zip(soft, sft) if s["loss"] > f["loss"]]
    add(f"- Exits where SoFT does not beat SFT on loss: {', '.join(map(str, worse)) if worse else 'none'}.")
    spec = {arm: next((s for s in bench[arm]["strategies"] if s["strategy"].startswith("self-speculative")), None)
            for arm in ("sft", "soft")}
    if spec["soft"] and spec["sft"]:
        add(f"- Self-speculative decoding with exit 9 as the draft: acceptance {fmt(spec['soft'].get('acceptance_rate'), 2)} "
            f"for SoFT against {fmt(spec['sft'].get('acceptance_rate'), 2)} for SFT; "
            f"{spec['soft']['speedup_over_full_depth']:.2f}× and {spec['sft']['speedup_over_full_depth']:.2f}× full-depth speed.")
    early = {arm: next((s for s in bench[arm]["strategies"] if s["strategy"].startswith("early exit")), None)
             for arm in ("sft", "soft")}
    if early["soft"] and early["sft"]:
        add(f"- Early exit with the paper's thresholds: SoFT answers like its full depth on "
            f"{100 * early['soft']['agreement_with_full_depth']:.0f}% of tokens using {early['soft']['mean_layers_per_token']:.1f} "
            f"layers per token at {early['soft']['speedup_over_full_depth']:.2f}× full-depth speed; SFT on "
            f"{100 * early['sft']['agreement_with_full_depth']:.0f}% with {early['sft']['mean_layers_per_token']:.1f} layers at "
            f"{early['sft']['speedup_over_full_depth']:.2f}× (each exit tried costs a pass of the shared head).")
    ratio = cost["soft"]["seconds"] / cost["sft"]["seconds"] if cost["sft"]["seconds"] else 0
    add(f"- SoFT's training took {ratio:.2f}× SFT's time for the same steps.")
    add("")
    if commands:
        add("## Commands")
        add("")
        add("As `launch/study` ran them (`mpirun_local 2` is `mpirun -np 2 --bind-to none` with the thread and progress "
            "settings of `launch/common.sh`), with their wall time; a step whose output was still current when "
            "`launch/study` was rerun keeps the time of the run that made it:")
        add("")
        add("```")
        for command, seconds in commands:
            note = "from an earlier run" if seconds is None else f"{seconds} s"
            arm = next((a for a in ("sft", "soft") if f"smollm2-{a}.json" in command), None)
            if arm and " train " in command:
                note += f"; its {cost[arm]['steps']} steps took {cost[arm]['seconds'] / 60:.1f} min (metrics.jsonl)"
            add(f"{command}   # {note}")
        add("```")
        add("")
    with open(args.doc, "w") as f:
        f.write("\n".join(lines))
    print(f"wrote {args.doc}")


if __name__ == "__main__":
    main()
