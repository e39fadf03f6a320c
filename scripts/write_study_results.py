#!/usr/bin/env python3
"""Writes the study's document (docs/results.md) from the JSON and JSONL that launch/study's
commands produced — no figure is typed by hand. Standard library only.

    python3 scripts/write_study_results.py docs/study --doc docs/results.md --openblas Haswell

STUDY holds, for every arm that has finished (an arm is configs/study/smollm2-ARM.json; ARM-long
is the same config at twice the steps):
  eval-ARM.json       sortedtrain eval --json: the arm at every exit (agreement and KL against
                      its own deepest exit)
  bench-ARM.json      sortedtrain bench generate --json: speed per depth, early exit, speculation
  metrics-ARM.jsonl   the arm's training metrics
and eval-base.json (the untouched model at every exit), commands.txt (COMMAND<TAB>SECONDS, "-"
for a step kept from an earlier run), quality-per-exit.svg and training-curves.svg (copied
beside the document as study-*.svg; when no arm meets the targets, study-trade-off.svg is drawn
here from the same numbers). The arms are the eval-*.json files present; an arm
without its bench or metrics file still has its quality rows ("-" where data is missing).
"""
import argparse
import glob
import json
import os
import platform
import re
import shutil

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# The targets a SoFT-family arm must meet (section "Targets").
LAST_LOSS_RATIO = 1.02    # (a) last-exit loss ≤ 1.02 × SFT's
EXACT_MATCH_POINTS = 1.0  # (b) last-exit exact match ≥ SFT's − 1 point
SHALLOW_MAX_DEPTH = 21    # (c) every exit ≤ 21 …
SHALLOW_LOSS_RATIO = 1.10  # … has loss ≤ 1.10 × SoFT's at that exit
EPS = 1e-9                # float noise in the comparisons (0.35 − 0.36 is not −1.0000000000000009 points)

FIGURES = (("quality-per-exit.svg", "per-exit quality"), ("training-curves.svg", "training curves"))


# ---------------------------------------------------------------------------------------------
# Reading

def load(path):
    with open(path) as f:
        return json.load(f)


def load_optional(path):
    # Absent, or still being written by a running launch/study (its output is redirected there).
    return load(path) if os.path.exists(path) and os.path.getsize(path) > 0 else None


def training_cost(metrics_path):
    """Steps, step time, throughput and peak memory from an arm's metrics.jsonl (None if absent)."""
    if not os.path.exists(metrics_path):
        return None
    steps = []
    for line in open(metrics_path):
        if '"step_s"' not in line:
            continue
        try:
            steps.append(json.loads(line))
        except ValueError:  # a line cut short by a killed run
            continue
    seconds = sum(s["step_s"] for s in steps)
    tokens = sum(s.get("tokens", 0) for s in steps)
    rss = max((s.get("peak_rss_mb", 0) for s in steps), default=0)
    last = steps[-1] if steps else {}
    return {"steps": last.get("step", 0), "seconds": seconds, "tokens_per_s": tokens / seconds if seconds else 0,
            "peak_rss_mb": rss, "tokens_per_step": last.get("tokens", 0)}


def recorded_commands(out):
    """(command, seconds or None) of launch/study's runs, from STUDY/commands.txt."""
    path = os.path.join(out, "commands.txt")
    if not os.path.exists(path):
        return []
    rows = []
    for line in open(path):
        line = line.rstrip("\n")
        if not line.strip():
            continue
        command, tab, seconds = line.rpartition("\t")
        if not tab:
            command, seconds = line, "-"
        seconds = seconds.strip()
        rows.append((command.strip(), int(seconds) if seconds.isdigit() else None))
    return rows


def base_arm(arm):
    return arm[:-len("-long")] if arm.endswith("-long") else arm


def is_long(arm):
    return arm.endswith("-long")


def arm_order(arm):
    """sft, soft, then the others alphabetically; the -long arms after all others, in the same order."""
    b = base_arm(arm)
    return (is_long(arm), {"sft": 0, "soft": 1}.get(b, 2), b)


def discover_arms(out):
    arms = []
    for path in glob.glob(os.path.join(out, "eval-*.json")):
        arm = os.path.basename(path)[len("eval-"):-len(".json")]
        if arm == "base" or not arm:
            continue
        if load(path).get("compared"):  # a side-by-side report of an older launch/study, not an arm
            continue
        arms.append(arm)
    return sorted(arms, key=arm_order)


def arm_config(arm):
    path = os.path.join(REPO, "configs", "study", f"smollm2-{base_arm(arm)}.json")
    return load(path) if os.path.exists(path) else None


# ---------------------------------------------------------------------------------------------
# Formatting

def fmt(x, digits=3):
    return "-" if x is None else f"{x:.{digits}f}"


def percent(x):
    return "-" if x is None else f"{100 * x:.1f}%"


def ratio(a, b):
    return None if a is None or b is None or b == 0 else a / b


def times(x, digits=2):
    return "-" if x is None else f"{x:.{digits}f}×"


def minutes(seconds):
    return "-" if seconds is None else f"{seconds / 60:.1f} min"


def mark(ok):
    return "-" if ok is None else ("✓" if ok else "✗")


def number(x):
    return f"{x:g}"


def join_words(words):
    words = list(words)
    if len(words) <= 1:
        return "".join(words)
    return ", ".join(words[:-1]) + " and " + words[-1]


def code(arm):
    return f"`{arm}`"


def depth_list(depths):
    depths = list(depths)
    if len(depths) > 4 and all(b - a == depths[1] - depths[0] for a, b in zip(depths, depths[1:])):
        return f"{depths[0]}, {depths[1]}, …, {depths[-1]}"
    return ", ".join(map(str, depths))


def answers_phrase(graded):
    counts = sorted({st["answered"] for _, g in graded if g for st in g.get("strategies") or []})
    return "/".join(map(str, counts)) or "the"


def cpu_model():
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def trade_off_svg(points, path, shallowest):
    """A scatter of the arms: exit-`shallowest` loss ÷ SoFT's (x) against last-exit loss ÷ SFT's
    (y), the targets as dashed lines. Written by hand (standard library only)."""
    width, height, left, right, top, bottom = 560, 380, 70, 150, 20, 50
    xs = [p[1] for p in points] + [1.0, SHALLOW_LOSS_RATIO]
    ys = [p[2] for p in points] + [1.0, LAST_LOSS_RATIO]
    x0, x1 = min(xs) - 0.02, max(xs) + 0.02
    y0, y1 = min(ys) - 0.02, max(ys) + 0.05

    def px(x):
        return left + (x - x0) / (x1 - x0) * (width - left - right)

    def py(y):
        return height - bottom - (y - y0) / (y1 - y0) * (height - top - bottom)

    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" font-family="sans-serif" font-size="12">',
           f'<rect width="{width}" height="{height}" fill="white"/>',
           f'<rect x="{left}" y="{top}" width="{width - left - right}" height="{height - top - bottom}" fill="none" stroke="#888"/>']
    for k in range(6):
        x = x0 + (x1 - x0) * k / 5
        y = y0 + (y1 - y0) * k / 5
        out.append(f'<text x="{px(x):.1f}" y="{height - bottom + 16}" text-anchor="middle">{x:.2f}</text>')
        out.append(f'<text x="{left - 6}" y="{py(y) + 4:.1f}" text-anchor="end">{y:.2f}</text>')
    out.append(f'<text x="{(left + width - right) / 2:.1f}" y="{height - 12}" text-anchor="middle">exit-{shallowest} loss ÷ SoFT\'s (lower is better)</text>')
    out.append(f'<text transform="translate(16,{(top + height - bottom) / 2:.1f}) rotate(-90)" text-anchor="middle">last-exit loss ÷ SFT\'s (lower is better)</text>')
    # The targets: last exit ≤ 1.02 × SFT's; shallow exits ≤ 1.10 × SoFT's.
    out.append(f'<line x1="{left}" x2="{width - right}" y1="{py(LAST_LOSS_RATIO):.1f}" y2="{py(LAST_LOSS_RATIO):.1f}" stroke="#2a2" stroke-dasharray="5,4"/>')
    out.append(f'<text x="{width - right + 4}" y="{py(LAST_LOSS_RATIO) + 4:.1f}" fill="#2a2">target {LAST_LOSS_RATIO:.2f}×</text>')
    out.append(f'<line x1="{px(SHALLOW_LOSS_RATIO):.1f}" x2="{px(SHALLOW_LOSS_RATIO):.1f}" y1="{top}" y2="{height - bottom}" stroke="#2a2" stroke-dasharray="5,4"/>')
    out.append(f'<text x="{px(SHALLOW_LOSS_RATIO) + 4:.1f}" y="{height - bottom - 22}" fill="#2a2">{SHALLOW_LOSS_RATIO:.2f}×</text>')
    for arm, x, y in points:
        out.append(f'<circle cx="{px(x):.1f}" cy="{py(y):.1f}" r="4" fill="#1f5fa8"/>')
        out.append(f'<text x="{px(x) + 7:.1f}" y="{py(y) + 4:.1f}">{arm}</text>')
    out.append("</svg>")
    with open(path, "w") as f:
        f.write("\n".join(out) + "\n")


def dynamic_bounds(bench, arms):
    """One bullet per arm: how long the answers are, the share of tokens early exit cannot
    shorten (each answer's first token comes from the prefill at full depth), the mean depth of
    the tokens it decides, and each dynamic strategy's speed-up against its byte bound."""
    lines = []
    for arm in arms:
        b = bench.get(arm) or {}
        prompts, tokens = b.get("answered_prompts"), b.get("answered_tokens")
        strategies = b.get("strategies") or []
        full = next((x for x in strategies if x["strategy"].startswith("full depth")), None)
        if not prompts or not tokens or not full:
            continue
        deepest = full["mean_layers_per_token"]
        parts = []
        for x in strategies:
            name = x["strategy"]
            if not (name.startswith("early exit by probes") or name.startswith("self-speculative")):
                continue
            bytes_ratio = x.get("bytes_over_full_depth")
            if not bytes_ratio:
                continue
            text = f"{name}: {x['speedup_over_full_depth']:.2f}× against a byte bound of {1 / bytes_ratio:.2f}×"
            if name.startswith("early exit"):
                decided = (x["mean_layers_per_token"] * tokens - deepest * prompts) / max(tokens - prompts, 1)
                text += f", the other tokens at {decided:.1f} layers on average"
            if x.get("acceptance_rate") is not None:
                text += f", acceptance {x['acceptance_rate']:.2f}"
            parts.append(text)
        if parts:
            lines.append(f"- {code(arm)}: answers of {tokens / prompts:.1f} tokens on average ({tokens} tokens, {prompts} prompts), "
                         f"so {100 * prompts / tokens:.0f}% of the tokens are first tokens, made by the prefill at full depth; "
                         + "; ".join(parts) + ".")
    return lines


def table(header, rows):
    """A Markdown table; every row padded or checked to the header's width."""
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for row in rows:
        assert len(row) == len(header), (header, row)
        lines.append("| " + " | ".join(str(c) for c in row) + " |")
    return lines


def describe_objective(config, deepest):
    """What an arm trains, from its config's sorted section."""
    if config is None:
        return "its config is absent"
    s = config.get("sorted", {})
    exits = s.get("exits", [deepest])
    if len(exits) == 1:
        text = f"the loss at layer {exits[0]} only"
    else:
        weights = s.get("weights")
        reduction = s.get("reduction", "mean")
        if weights and len(weights) == len(exits) and len(set(weights)) > 1:
            groups = []  # runs of exits with one weight
            for e, w in zip(exits, weights):
                if groups and groups[-1][1] == w:
                    groups[-1][0].append(e)
                else:
                    groups.append(([e], w))
            parts = [f"{number(w)} on exit{'s' if len(es) > 1 else ''} "
                     + (f"{es[0]}–{es[-1]}" if len(es) > 2 else ", ".join(map(str, es))) for es, w in groups]
            text = (f"the weighted {reduction} over exits {depth_list(exits)} (weight {join_words(parts)})")
        else:
            text = f"the {reduction} over exits {depth_list(exits)}"
        if s.get("scale"):
            text += f", weights scaled by depth ({s['scale']})"
    sampling = s.get("sampling", "all")
    if sampling == "random":
        text += f"; one exit drawn per step plus layer {deepest}"
    elif len(exits) > 1:
        text += "; every exit every step"
    if s.get("curriculum", "none") != "none":
        text += f" ({s['curriculum']} curriculum)"
    d = s.get("distill")
    if d:
        text += (f"; plus self-distillation of every exit from the {d.get('teacher', 'last')} exit "
                 f"(weight {number(d.get('weight', 1))}, temperature {number(d.get('temperature', 1))})")
    return text


def last_exit_share(config):
    """The deepest exit's share of an arm's cross-entropy objective, from its exit weights
    (normalised); under random sampling the mean over the exit drawn (uniformly among all exits;
    when the deepest is drawn it trains alone). None without a config, or when the share changes
    during training or with depth (scales, curricula, weight warm-ups)."""
    if config is None:
        return None
    s = config.get("sorted", {})
    if any(k in s for k in ("scale", "weight_start", "warmup_steps")) or s.get("curriculum", "none") != "none":
        return None
    exits = s.get("exits", [])
    if len(exits) <= 1:
        return 1.0
    weights = s.get("weights") or [1.0] * len(exits)
    last, others = weights[-1], weights[:-1]
    if s.get("sampling", "all") == "random":
        return (sum(last / (last + w) for w in others) + 1) / len(exits)
    return last / sum(weights)


# ---------------------------------------------------------------------------------------------
# The document

class Study:
    def __init__(self, out):
        self.out = out
        self.arms = discover_arms(out)
        self.evals = {arm: load(os.path.join(out, f"eval-{arm}.json")) for arm in self.arms}
        base = load_optional(os.path.join(out, "eval-base.json"))
        self.base = {e["depth"]: e for e in base["exits"]} if base else {}
        self.exit = {arm: {e["depth"]: e for e in self.evals[arm]["exits"]} for arm in self.arms}
        self.bench = {arm: load_optional(os.path.join(out, f"bench-{arm}.json")) for arm in self.arms}
        self.cost = {arm: training_cost(os.path.join(out, f"metrics-{arm}.jsonl")) for arm in self.arms}
        self.config = {arm: arm_config(arm) for arm in self.arms}
        self.commands = recorded_commands(out)
        depths = set(self.base)
        for arm in self.arms:
            depths |= set(self.exit[arm])
        self.depths = sorted(depths)
        self.deepest = self.depths[-1] if self.depths else 30
        self.shallowest = self.depths[0] if self.depths else 9

    # values ------------------------------------------------------------------------------------
    def value(self, arm, depth, key):
        e = (self.base if arm == "base" else self.exit[arm]).get(depth)
        return None if e is None else e.get(key)

    def loss(self, arm, depth):
        return self.value(arm, depth, "loss")

    def exact(self, arm, depth):
        return self.value(arm, depth, "exact_match")

    def last(self, arm):
        """The arm's deepest exit."""
        return max(self.exit[arm]) if self.exit[arm] else self.deepest

    def sft_reference(self, arm):
        ref = "sft-long" if is_long(arm) else "sft"
        return ref if ref in self.arms else None

    def soft_reference(self, arm):
        ref = "soft-long" if is_long(arm) else "soft"
        return ref if ref in self.arms else None

    def is_sft(self, arm):
        return base_arm(arm) == "sft"

    def depth_speed(self, arm, depth):
        bench = self.bench.get(arm)
        if not bench:
            return None
        return next((d for d in bench.get("depths", []) if d["depth"] == depth), None)

    def strategy(self, arm, prefix):
        bench = self.bench.get(arm)
        if not bench:
            return None
        return next((s for s in bench.get("strategies", []) if s["strategy"].startswith(prefix)), None)

    def any_bench(self):
        for arm in ["soft"] + self.arms:
            if self.bench.get(arm):
                return arm, self.bench[arm]
        return None, None

    def train_seconds(self, arm):
        c = self.cost.get(arm)
        return c["seconds"] if c else None

    # targets -----------------------------------------------------------------------------------
    def targets(self, arm):
        """The three criteria of a non-SFT arm: values, ratios, and True/False/None (not checked)."""
        sft, soft = self.sft_reference(arm), self.soft_reference(arm)
        last = self.last(arm)
        t = {"arm": arm, "sft": sft, "soft": soft, "last": last, "loss": self.loss(arm, last),
             "exact": self.exact(arm, last)}
        t["loss_ratio"] = ratio(t["loss"], self.loss(sft, self.last(sft))) if sft else None
        t["a"] = None if t["loss_ratio"] is None else t["loss_ratio"] <= LAST_LOSS_RATIO + EPS
        sft_exact = self.exact(sft, self.last(sft)) if sft else None
        t["exact_points"] = None if t["exact"] is None or sft_exact is None else 100 * (t["exact"] - sft_exact)
        t["b"] = None if t["exact_points"] is None else t["exact_points"] >= -EXACT_MATCH_POINTS - EPS
        shallow = []
        if soft:
            for d in self.depths:
                if d <= SHALLOW_MAX_DEPTH:
                    r = ratio(self.loss(arm, d), self.loss(soft, d))
                    if r is not None:
                        shallow.append((r, d))
        t["shallow"] = max(shallow) if shallow else None  # (worst ratio, its exit)
        t["c"] = None if t["shallow"] is None else t["shallow"][0] <= SHALLOW_LOSS_RATIO + EPS
        checks = [t["a"], t["b"], t["c"]]
        t["meets"] = t["a"] is not None and False not in checks
        t["failed"] = sum(1 for c in checks if c is False)
        return t

    def candidates(self):
        return [arm for arm in self.arms if not self.is_sft(arm)]

    def choose(self):
        """The arm of the trade-off section, the arms that meet the targets, and every arm's targets."""
        checked = {arm: self.targets(arm) for arm in self.candidates()}
        meeting = [arm for arm, t in checked.items() if t["meets"]]

        def mean_loss(arm):
            losses = [self.loss(arm, d) for d in self.depths if self.loss(arm, d) is not None]
            return sum(losses) / len(losses) if losses else float("inf")

        if meeting:
            pool = [a for a in meeting if not is_long(a)] or meeting
            best = min(pool, key=lambda a: (mean_loss(a), arm_order(a)))
        else:
            pool = [a for a in self.candidates() if not is_long(a)] or self.candidates()
            scored = [a for a in pool if self.loss(a, self.last(a)) is not None]
            best = min(scored, key=lambda a: (self.loss(a, self.last(a)), arm_order(a))) if scored else None
        return best, meeting, checked


def write(study, args, figures):
    s = study
    arms = s.arms
    lines = []
    add = lines.append
    extend = lines.extend

    add("# SoFT objectives against SFT on SmolLM2-135M-Instruct, every exit")
    add("")
    add(f"Written by `scripts/write_study_results.py` from the output of `launch/study` in `{args.out}/` "
        "(the JSON of `sortedtrain eval` and `sortedtrain bench generate`, and each arm's training metrics); "
        "no figure here is typed by hand.")
    add("")
    bench_arm, bench = s.any_bench()
    machine = f"Machine: {cpu_model()}, {os.cpu_count()} cores; OpenBLAS kernel `{args.openblas}`"
    if bench:
        machine += (f", {bench['threads']} threads; read bandwidth {bench['read_bandwidth_gb_per_s']:.1f} GB/s "
                    f"(measured in `{bench_arm}`'s benchmark run).")
    else:
        machine += "; no benchmark file, so no thread count or bandwidth."
    add(machine)
    add("")

    # The arms.
    common = next((s.config[a] for a in arms if s.config[a]), None)
    intro = (f"{len(arms)} arm{'s' if len(arms) != 1 else ''}, each a fine-tuning of the same GGUF with the same data "
             "order, schedule, seed and ranks (`mpirun -np 2`)")
    if common:
        tr, sched, opt = common.get("train", {}), common.get("schedule", {}), common.get("optim", {})
        intro += (f": micro-batch {tr.get('micro_batch_size', '-')} × {tr.get('sequence_length', '-')} tokens per rank, "
                  f"lr {number(opt.get('lr', 0))} ({sched.get('type', '-')}), seed {tr.get('seed', '-')}")
    intro += ". An arm is `configs/study/smollm2-ARM.json`; `ARM-long` is the same config at twice the steps:"
    add(intro)
    add("")
    for arm in arms:
        c = s.cost[arm]
        steps = f"{c['steps']} steps" if c else "no training metrics"
        note = f", the config of `{base_arm(arm)}`" if is_long(arm) else ""
        add(f"- {code(arm)} ({steps}{note}): {describe_objective(s.config[arm], s.deepest)}.")
    if not arms:
        add("- none: STUDY holds no eval-ARM.json yet.")
    add("")
    costs = [(a, s.cost[a]) for a in arms if s.cost[a]]
    if costs:
        short = sorted({c["steps"] for a, c in costs if not is_long(a)})
        per_step = sorted({c["tokens_per_step"] for a, c in costs})
        budget = (f"Budget: {join_words(map(str, short)) or '-'} steps per arm"
                  + (" (twice that for the -long arms)" if any(is_long(a) for a, _ in costs) else "")
                  + f" of {join_words(map(str, per_step))} tokens; step time "
                  + ", ".join(f"{minutes(c['seconds'])} ({a})" for a, c in costs))
    else:
        budget = "Budget: no arm has training metrics"
    if s.commands:
        after = sum(t or 0 for c, t in s.commands if " train " not in c and " synth " not in c)
        total = sum(t or 0 for _, t in s.commands)
        budget += (f"; evaluation, benchmarks and figures {after / 60:.0f} min; the commands of `commands.txt` took "
                   f"{total / 3600:.1f} h of wall time in all")
        if any(t is None for _, t in s.commands):
            budget += " (not counting steps kept from an earlier run)"
    add(budget + ".")
    add("")

    # Every exit.
    add("## Every exit on held-out data (response tokens)")
    add("")
    add("### Loss")
    add("")
    add("The lowest loss of an arm at each exit in bold.")
    add("")
    rows = []
    for d in s.depths:
        values = [s.loss(a, d) for a in arms]
        best = min((v for v in values if v is not None), default=None)
        rows.append([str(d), fmt(s.loss("base", d))]
                    + [f"**{fmt(v)}**" if v is not None and v == best and len(arms) > 1 else fmt(v) for v in values])
    extend(table(["exit", "base"] + arms, rows))
    add("")
    add("### Exact match")
    add("")
    answered = sorted({e.get("answered", 0) for a in arms for e in s.evals[a]["exits"]})
    add(f"Greedy answers equal to the reference, over {join_words(map(str, answered)) or '-'} answers per exit "
        "(\"-\": none generated).")
    add("")
    rows = [[str(d), percent(s.exact("base", d))] + [percent(s.exact(a, d)) for a in arms] for d in s.depths]
    extend(table(["exit", "base"] + arms, rows))
    add("")
    add(f"### Agreement and KL with the arm's exit {s.deepest}")
    add("")
    add(f"Each cell: the fraction of next tokens equal to the arm's own exit {s.deepest}'s / the KL divergence "
        "from it (nats per token).")
    add("")
    rows = [[str(d)] + [f"{fmt(s.value(a, d, 'agreement'))} / {fmt(s.value(a, d, 'kl_from_deepest'))}"
                        if d in s.exit[a] else "-" for a in arms] for d in s.depths]
    extend(table(["exit"] + arms, rows))
    add("")
    if "quality-per-exit.svg" in figures:
        add(f"![{dict(FIGURES)['quality-per-exit.svg']}]({figures['quality-per-exit.svg']})")
        add("")

    best, meeting, checked = s.choose()

    # The trade-off.
    add("## The trade-off a user chooses from")
    add("")
    if best is None:
        add("No SoFT-family arm has results yet.")
    else:
        sft = s.sft_reference(best)
        sft_last = s.loss(sft, s.last(sft)) if sft else None
        why = ("it meets the targets below" + (f" with the lowest mean loss over the exits of those that do"
                                                 if len(meeting) > 1 else "")
               if best in meeting else "no arm meets the targets below; it has the lowest last-exit loss "
               "among the SoFT-family arms" + (" at the shorter budget" if any(is_long(a) for a in arms) else ""))
        add(f"One {code(best)} model serves every depth ({why}). Each exit against "
            + (f"{code(sft)}'s exit {s.last(sft)} (loss {fmt(sft_last)})" if sft else "SFT (no SFT arm)")
            + (f", with the decode speed of that depth from {code(best)}'s benchmark:" if s.bench.get(best)
               else f"; {code(best)} has no benchmark file:"))
        add("")
        rows = []
        for d in s.depths:
            speed = s.depth_speed(best, d)
            rows.append([str(d), fmt(s.loss(best, d)), times(ratio(s.loss(best, d), sft_last), 3), percent(s.exact(best, d)),
                         fmt(speed and speed["decode_tokens_per_s_batch1"], 1),
                         times(speed and speed["speedup_over_full_depth"])])
        extend(table(["exit", "loss", f"÷ {sft or 'SFT'}'s last-exit loss", "exact match", "decode tok/s (batch 1)",
                      f"× depth {s.deepest}"], rows))
        if sft:
            speed = s.depth_speed(sft, s.last(sft))
            add("")
            sft_exact = s.exact(sft, s.last(sft))
            add(f"For comparison, {code(sft)} at exit {s.last(sft)}: loss {fmt(sft_last)}, "
                + ("exact match not measured" if sft_exact is None else f"exact match {percent(sft_exact)}")
                + (f", {speed['decode_tokens_per_s_batch1']:.1f} tok/s." if speed else "."))
    add("")

    # Targets.
    add("## Targets")
    add("")
    add(f"A SoFT-family arm should keep SFT's quality at the last exit and SoFT's at the shallow ones: "
        f"(a) last-exit loss ≤ {LAST_LOSS_RATIO:.2f} × SFT's; (b) last-exit exact match ≥ SFT's − "
        f"{number(EXACT_MATCH_POINTS)} point; (c) at every exit ≤ {SHALLOW_MAX_DEPTH}, loss ≤ "
        f"{SHALLOW_LOSS_RATIO:.2f} × `soft`'s. The -long arms are held to `sft-long` and `soft-long`. "
        "\"-\": not checked (the reference arm or the data is absent).")
    add("")
    if not checked:
        add("No SoFT-family arm has results yet.")
        add("")
    else:
        rows = []
        for arm, t in checked.items():
            shallow = t["shallow"]
            rows.append([code(arm), " and ".join(code(r) for r in (t["sft"], t["soft"]) if r) or "-",
                         fmt(t["loss"]), times(t["loss_ratio"], 3), mark(t["a"]),
                         "-" if t["exact_points"] is None else f"{t['exact_points']:+.1f}", mark(t["b"]),
                         "-" if shallow is None else f"{shallow[0]:.3f}× (exit {shallow[1]})", mark(t["c"]),
                         "✓" if t["meets"] else ("-" if t["a"] is None and not t["failed"] else "✗")])
        extend(table(["arm", "against", "last-exit loss", "÷ SFT's", "(a)", "exact match − SFT's (points)", "(b)",
                      f"worst exit ≤ {SHALLOW_MAX_DEPTH} ÷ SoFT's", "(c)", "all"], rows))
        add("")
        if meeting:
            t = checked[best]
            others = [a for a in meeting if a != best]
            sft_exact = s.exact(t["sft"], s.last(t["sft"]))
            text = (f"**Verdict:** {code(best)} meets every target: its last-exit loss is {fmt(t['loss'])}, "
                    f"{times(t['loss_ratio'], 3)} {code(t['sft'])}'s {fmt(s.loss(t['sft'], s.last(t['sft'])))}, and its "
                    + ("exact match was not measured" if t["exact_points"] is None else
                       f"exact match {percent(t['exact'])} against {percent(sft_exact)} ({t['exact_points']:+.1f} points)")
                    + ".")
            if others:
                text += (f" {join_words(map(code, others))} also meet{'s' if len(others) == 1 else ''} them; the trade-off "
                         f"above shows {code(best)}, the one with the lowest mean loss over the exits"
                         + (" among the arms at the shorter budget" if not is_long(best) and any(map(is_long, others))
                            else "") + ".")
            add(text)
            add("")
            soft = t["soft"]
            cost = []
            if soft:
                lo = s.shallowest
                a_, b_ = s.loss(best, lo), s.loss(soft, lo)
                cost.append(f"at exit {lo} its loss is {fmt(a_)} against {code(soft)}'s {fmt(b_)} "
                            f"({times(ratio(a_, b_), 3)})"
                            + (f", and {t['shallow'][0]:.3f}× at worst over the exits ≤ {SHALLOW_MAX_DEPTH} (exit {t['shallow'][1]})"
                               if t["shallow"] else ""))
            sft = t["sft"]
            r = ratio(s.train_seconds(best), s.train_seconds(sft)) if sft else None
            if r is not None:
                cost.append(f"its training took {minutes(s.train_seconds(best))} of step time against "
                            f"{code(sft)}'s {minutes(s.train_seconds(sft))} ({times(r)})")
            if cost:
                add("What it costs: " + "; ".join(cost) + ".")
                add("")
        elif all(t["a"] is None for t in checked.values()):
            add("**Verdict:** no arm meets every target: there is no SFT arm to check them against.")
            add("")
        else:
            add("**Verdict:** no arm meets every target.")
            add("")
            add("The trade-off they offer instead, sorted by last-exit loss: each arm's last-exit loss ÷ SFT's and "
                f"exit-{s.shallowest} loss ÷ SoFT's (1 is the reference; lower is better on both).")
            add("")
            curve = []
            for arm in arms:
                sft, soft = s.sft_reference(arm), s.soft_reference(arm)
                last = s.loss(arm, s.last(arm))
                curve.append((arm, last, ratio(last, s.loss(sft, s.last(sft))) if sft else None,
                              ratio(s.loss(arm, s.shallowest), s.loss(soft, s.shallowest)) if soft else None))
            curve.sort(key=lambda c: (c[2] is None, c[2] if c[2] is not None else 0, c[1] if c[1] is not None else 0))
            rows = [[code(a), fmt(last), times(r_last, 3), times(r_shallow, 3)] for a, last, r_last, r_shallow in curve]
            extend(table(["arm", "last-exit loss", "÷ SFT's", f"exit-{s.shallowest} loss ÷ SoFT's"], rows))
            add("")
            # SFT's shallow exits are far off any useful scale: the chart holds the SoFT family.
            points = [(a, r_shallow, r_last) for a, _, r_last, r_shallow in curve
                      if r_last is not None and r_shallow is not None and not s.is_sft(a)]
            if len(points) > 1:
                name = "study-trade-off.svg"
                trade_off_svg(points, os.path.join(os.path.dirname(os.path.abspath(args.doc)), name), s.shallowest)
                add(f"![the trade-off across arms]({name})")
                add("")
                add(f"Dashed: the targets, (a) last-exit loss ≤ {LAST_LOSS_RATIO:.2f}× SFT's and (c) loss ≤ {SHALLOW_LOSS_RATIO:.2f}× "
                    f"SoFT's at every exit ≤ {SHALLOW_MAX_DEPTH} (exit {s.shallowest} shown; an arm left of the line can "
                    "still miss (c) at a deeper exit).")
                add("")
            scored = [t for t in checked.values() if t["a"] is not None]
            if scored:
                close = min(scored, key=lambda t: (t["failed"], t["loss_ratio"], arm_order(t["arm"])))
                gaps = []
                if close["a"] is False:
                    ref_loss = s.loss(close["sft"], s.last(close["sft"]))
                    gaps.append(f"its last-exit loss is {times(close['loss_ratio'], 3)} {code(close['sft'])}'s "
                                f"({fmt(close['loss'])}; the target is ≤ {fmt(LAST_LOSS_RATIO * ref_loss)}, "
                                f"{fmt(close['loss'] - LAST_LOSS_RATIO * ref_loss)} away)")
                if close["b"] is False:
                    gaps.append(f"its exact match is {-close['exact_points']:.1f} points below {code(close['sft'])}'s "
                                f"({-close['exact_points'] - EXACT_MATCH_POINTS:.1f} more than allowed)")
                if close["c"] is False:
                    ratio_c, depth_c = close["shallow"]
                    gaps.append(f"at exit {depth_c} its loss is {ratio_c:.3f}× {code(close['soft'])}'s "
                                f"(the target is ≤ {SHALLOW_LOSS_RATIO:.2f}×)")
                add(f"Closest: {code(close['arm'])}, which misses {close['failed']} of the 3 targets: "
                    + "; ".join(gaps) + ".")
                add("")
            # Why: what the last exit's gap follows, from the arms' own numbers.
            shares = [(a, last_exit_share(s.config[a]), r_last) for a, _, r_last, _ in curve
                      if r_last is not None and not s.is_sft(a) and not is_long(a)
                      and not (s.config[a] or {}).get("sorted", {}).get("distill")]
            shares = [x for x in shares if x[1] is not None]
            # Only when every such arm falls short at the last exit, and their shares differ.
            if len(shares) > 1 and all(r > 1 for _, _, r in shares) and len({round(x[1], 6) for x in shares}) == len(shares):
                shares.sort(key=lambda x: x[1])
                follows = all(b[2] < a[2] for a, b in zip(shares, shares[1:]))
                add("Why the last exit falls short: it trains on its share of each step's objective, the shared final norm "
                    "and head serving the other exits too. Without distillation, the gap "
                    + ("shrinks as that share grows: " if follows else "does not simply follow that share: ")
                    + "; ".join(f"{code(a)} gives exit {s.deepest} {share:.0%} of the cross-entropy and ends at "
                                f"{times(r, 3)} SFT's loss" for a, share, r in shares) + ".")
                pairs = [(a, a + "-long") for a, _, _ in shares if a + "-long" in arms and s.sft_reference(a + "-long")]
                for short, long in pairs:
                    r_short = ratio(s.loss(short, s.last(short)), s.loss(s.sft_reference(short), s.last(s.sft_reference(short))))
                    r_long = ratio(s.loss(long, s.last(long)), s.loss(s.sft_reference(long), s.last(s.sft_reference(long))))
                    if r_short is not None and r_long is not None:
                        change = "narrows" if r_long < r_short else "widens" if r_long > r_short else "stays"
                        add(f"With twice the steps the gap {change}: {code(short)} "
                            f"{times(r_short, 3)} SFT's last-exit loss at {(s.cost[short] or {}).get('steps', '-')} steps, {code(long)} "
                            f"{times(r_long, 3)} at {(s.cost[long] or {}).get('steps', '-')}.")
                add("")

    # Speed.
    add("## Generation speed per depth (batch 1 and batched greedy decoding)")
    add("")
    speed_arm = "soft" if s.bench.get("soft") else bench_arm
    if speed_arm:
        add(f"From {code(speed_arm)}'s benchmark (the depths cost the same in every arm: one architecture).")
        add("")
        rows = [[str(d["depth"]), f"{d['decode_tokens_per_s_batch1']:.1f}", f"{d['speedup_over_full_depth']:.2f}",
                 f"{d['decode_tokens_per_s_batched']:.1f}", f"{d['prefill_tokens_per_s']:.0f}",
                 f"{d['fraction_of_bandwidth_limit']:.2f}"] for d in s.bench[speed_arm]["depths"]]
        extend(table(["exit", "decode tok/s", f"× depth {s.deepest}", "batched tok/s", "prefill tok/s",
                      "of the bandwidth limit"], rows))
    else:
        add("No arm has a benchmark file.")
    add("")
    add("## Dynamic inference")
    add("")
    add("Early exit by the paper's softmax thresholds pays a head pass at every exit tried; early exit by the "
        "calibrated probes (`sortedtrain calibrate`) decides on the hidden state and runs the head once, at the exit "
        "chosen. Self-speculation drafts at an exit (9, or the plan `auto` makes from the probes' agreement and the "
        "bytes each exit reads) over the whole vocabulary or the calibrated shortlist; its greedy output equals full "
        "depth's. Weight bytes per token are counted by the decoder (layers, heads, state propagation; not the KV cache), "
        "over full-depth decoding's.")
    current = [a for a in arms if (s.bench.get(a) or {}).get("answered_prompts")]
    older = [a for a in arms if s.bench.get(a) and a not in current]
    if current and older:
        add("")
        add(f"The benchmarks of {join_words(map(code, current))} answered {s.bench[current[0]]['answered_prompts']} prompts "
            f"with the current decoder; those of {join_words(map(code, older))} come from an earlier run, which answered "
            f"{s.bench[older[0]].get('batch_size', '-')} prompts and whose speculative verifications and batches went through sgemm (which packs the weights first, "
            "so 2 rows cost nearly twice one): compare speeds within an arm, not across the two groups.")
    add("")
    rows = []
    for arm in arms:
        for st in (s.bench[arm] or {}).get("strategies", []):
            rows.append([code(arm), st["strategy"], f"{st['tokens_per_s']:.1f}", f"{st['speedup_over_full_depth']:.2f}",
                         f"{st['mean_layers_per_token']:.2f}", fmt(st.get("bytes_over_full_depth"), 2),
                         f"{st['agreement_with_full_depth']:.3f}", fmt(st.get("acceptance_rate"), 2)])
    if rows:
        extend(table(["arm", "strategy", "tok/s", "× full depth", "layers per token", "weight bytes × full depth",
                      "agreement with full-depth greedy", "acceptance"], rows))
    missing = [a for a in arms if not s.bench[a]]
    if missing:
        add("")
        add(f"No benchmark file for {join_words(map(code, missing))}.")
    add("")
    bounds = dynamic_bounds(s.bench, arms)
    if bounds:
        add("What bounds them, from each benchmark's own counts (the arms whose benchmark counted its answers; "
            "weight bytes per token over full depth's are the byte bound: the speed-up a memory-bound decoder "
            "could reach at most):")
        add("")
        extend(bounds)
        add("")
    calibrated = [(arm, load_optional(os.path.join(s.out, f"calibration-{arm}.json"))) for arm in arms]
    calibrated = [(arm, c) for arm, c in calibrated if c]
    if calibrated:
        add("### Calibrated exit probes")
        add("")
        add("Per arm, the levels `calibrate` stored: the token risk that set the thresholds, and what generating with "
            "them gave on the prompts that chose them and on held-out prompts neither the probes nor the thresholds saw "
            "(token agreement with full-depth greedy answers, layers per token).")
        add("")
        rows = []
        for arm, c in calibrated:
            for level in c["levels"]:
                rows.append([code(arm), f"{level['token_risk']:.3f}", f"{level['agreement']:.3f}", f"{level['layers_per_token']:.2f}",
                             f"{level['held_out_agreement']:.3f}", f"{level['held_out_layers_per_token']:.2f}"])
        extend(table(["arm", "token risk", "agreement", "layers per token", "held-out agreement", "held-out layers per token"], rows))
        add("")
        graded = [(arm, load_optional(os.path.join(s.out, f"graded-{arm}.json"))) for arm, _ in calibrated]
        rows = []
        for arm, g in graded:
            if not g:
                continue
            last = max(g["exits"], key=lambda e: e["depth"], default=None)
            depth = last["depth"] if last else "-"
            rows.append([code(arm), f"full depth {depth}", percent(last.get("exact_match") if last else None), f"{depth}", "1.000"])
            for st in g.get("strategies") or []:
                rows.append([code(arm), st["strategy"], percent(st["exact_match"]), f"{st['layers_per_token']:.2f}",
                             fmt(st.get("agreement_with_full_depth"))])
        if rows:
            # Speeds are in the table above, measured alike; the graded answers' tok/s are not
            # (full depth batched, early exit one prompt at a time).
            add(f"On the task: exact match of {answers_phrase(graded)} greedy answers at full depth and with "
                "early exit by probes, with the token agreement with the full-depth answers.")
            add("")
            extend(table(["arm", "strategy", "exact match", "layers per token", "agreement with full depth"], rows))
            add("")
        for arm, c in calibrated:
            cal = c["calibration"]
            agreements = ", ".join(f"{d}: {a:.3f}" for d, a in zip(c["exits"], c["exit_agreement"]))
            split = (f"thresholds cross-fitted in {cal['folds']} folds, {cal['threshold_prompts']} of them also measured the levels"
                     if cal.get("folds") else f"{cal['threshold_prompts']} more chose thresholds")
            add(f"- {code(arm)}: probes fitted on {cal['fit_tokens']} answer tokens of {cal['fit_prompts']} prompts "
                f"({split}, {cal['held_out_prompts']} held out) in {cal['seconds']:.0f} s; "
                f"top-1 agreement with exit 30 per exit: {agreements}; draft shortlist {c.get('shortlist_tokens', 0)} tokens, "
                f"covering {100 * cal.get('shortlist_coverage', 0):.1f}% of the held-out answers' tokens.")
        add("")

    # Training.
    add("## Training cost")
    add("")
    rows = []
    for arm in arms:
        c = s.cost[arm]
        ref = s.sft_reference(arm)
        if c is None:
            rows.append([code(arm)] + ["-"] * 5)
            continue
        rows.append([code(arm), str(c["steps"]), minutes(c["seconds"]),
                     times(ratio(c["seconds"], s.train_seconds(ref))) + (f" ({ref})" if ref and ref != "sft" else "")
                     if ref else "-", f"{c['tokens_per_s']:.0f}", f"{c['peak_rss_mb']:.0f} MiB"])
    extend(table(["arm", "steps", "step time (sum)", "÷ SFT's", "tokens/s", "peak RSS per rank"], rows))
    add("")
    if "training-curves.svg" in figures:
        add(f"![{dict(FIGURES)['training-curves.svg']}]({figures['training-curves.svg']})")
        add("")

    # Findings.
    add("## What the numbers show")
    add("")
    for depth, label in ((s.shallowest, "the shallowest exit"), (s.deepest, "the last exit")):
        values = [(a, s.loss(a, depth)) for a in arms if s.loss(a, depth) is not None]
        if not values:
            continue
        lowest = min(values, key=lambda v: v[1])
        add(f"- At {label} ({depth} layers) the lowest loss is {code(lowest[0])}'s {lowest[1]:.3f}; "
            + ", ".join(f"{a} {v:.3f}" for a, v in values if a != lowest[0])
            + (", " if len(values) > 1 else "") + f"base model {fmt(s.loss('base', depth))}.")
    worse = []
    for arm in s.candidates():
        sft = s.sft_reference(arm)
        if not sft:
            continue
        above = [d for d in s.depths if s.loss(arm, d) is not None and s.loss(sft, d) is not None
                 and s.loss(arm, d) > s.loss(sft, d)]
        worse.append(f"{arm}{' (against sft-long)' if is_long(arm) else ''}: "
                     + (", ".join(map(str, above)) if above else "none"))
    if worse:
        add(f"- Exits where an arm's loss is above SFT's: {'; '.join(worse)}.")
    shallow_best = []
    for arm in s.candidates():
        soft = s.soft_reference(arm)
        if soft and soft != arm:
            r = ratio(s.loss(arm, s.shallowest), s.loss(soft, s.shallowest))
            if r is not None:
                shallow_best.append(f"{arm} {r:.2f}×")
    if shallow_best:
        add(f"- Exit-{s.shallowest} loss against SoFT's (the mean over all exits): {', '.join(shallow_best)}.")
    spec = [(a, s.strategy(a, "self-speculative")) for a in arms if s.strategy(a, "self-speculative")]
    if spec:
        draft = re.search(r"draft (\d+)", spec[0][1]["strategy"])
        add(f"- Self-speculative decoding" + (f" with exit {draft.group(1)} as the draft" if draft else "")
            + ", its acceptance rate and speed against full depth: "
            + "; ".join(f"{a} {fmt(st.get('acceptance_rate'), 2)} at {st['speedup_over_full_depth']:.2f}×" for a, st in spec)
            + ".")
    early = [(a, s.strategy(a, "early exit")) for a in arms if s.strategy(a, "early exit")]
    if early:
        add("- Early exit with the paper's thresholds (each exit tried costs a pass of the shared head), the share "
            "of tokens equal to full-depth greedy decoding, the layers per token and the speed against full depth: "
            + "; ".join(f"{a} {100 * st['agreement_with_full_depth']:.0f}%, {st['mean_layers_per_token']:.1f} layers, "
                        f"{st['speedup_over_full_depth']:.2f}×" for a, st in early) + ".")
    timing = []
    for arm in arms:
        ref = s.sft_reference(arm)
        r = ratio(s.train_seconds(arm), s.train_seconds(ref)) if ref and ref != arm else None
        if r is not None:
            timing.append(f"{arm} {r:.2f}×")
    if timing:
        add(f"- Training time against SFT's for the same steps: {', '.join(timing)}.")
    longer = []
    for arm in arms:
        short = base_arm(arm)
        if is_long(arm) and short in arms:
            longer.append(f"{arm} {fmt(s.loss(short, s.last(short)))} → {fmt(s.loss(arm, s.last(arm)))} at exit "
                          f"{s.last(arm)}, {fmt(s.loss(short, s.shallowest))} → {fmt(s.loss(arm, s.shallowest))} "
                          f"at exit {s.shallowest}")
    if longer:
        add(f"- Twice the steps: {'; '.join(longer)}.")
    add("")

    # Commands.
    if s.commands:
        add("## Commands")
        add("")
        add("As `launch/study` ran them (`mpirun_local 2` is `mpirun -np 2 --bind-to none` with the thread and progress "
            "settings of `launch/common.sh`), with their wall time; a step whose output was still current when "
            "`launch/study` was rerun keeps the time of the run that made it:")
        add("")
        add("```")
        for command, seconds in s.commands:
            note = "from an earlier run" if seconds is None else f"{seconds} s"
            arm = train_arm(command, arms)
            if arm and s.cost[arm]:
                note += f"; its {s.cost[arm]['steps']} steps took {minutes(s.cost[arm]['seconds'])} (metrics-{arm}.jsonl)"
            add(f"{command}   # {note}")
        add("```")
        add("")
    return "\n".join(lines)


def train_arm(command, arms):
    """The arm a `sortedtrain train` command trains: its log.dir's last folder (exactly, so that soft is
    not soft-last), else its config's name when no log.dir is set."""
    if " train " not in f" {command} ":
        return None
    m = re.search(r"log\.dir=(\S+)", command)
    if m:
        arm = os.path.basename(m.group(1).rstrip("/").strip("'\""))
        return arm if arm in arms else None
    m = re.search(r"smollm2-([A-Za-z0-9_-]+)\.json", command)
    return m.group(1) if m and m.group(1) in arms else None


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("out", help="the study folder (docs/study, runs/study-quick/study)")
    parser.add_argument("--doc", required=True)
    parser.add_argument("--openblas", default="unknown")
    args = parser.parse_args()
    out = args.out.rstrip("/") or args.out

    study = Study(out)
    args.out = out
    doc_dir = os.path.dirname(os.path.abspath(args.doc))
    os.makedirs(doc_dir, exist_ok=True)
    figures = {}
    for name, _ in FIGURES:
        source = os.path.join(out, name)
        if not os.path.exists(source):
            continue
        target = os.path.join(doc_dir, f"study-{name}")
        if os.path.abspath(source) != os.path.abspath(target):
            shutil.copyfile(source, target)
        figures[name] = os.path.basename(target)

    text = write(study, args, figures)
    with open(args.doc, "w") as f:
        f.write(text)
    print(f"wrote {args.doc} ({len(study.arms)} arm{'s' if len(study.arms) != 1 else ''}: {', '.join(study.arms)})")


if __name__ == "__main__":
    main()
