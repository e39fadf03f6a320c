#!/usr/bin/env bash
# End-to-end checks of serving a SoFT model: a small model is trained for a few hundred
# steps (exits 2 and 4), then `generate` at a fixed depth, with early exit and
# self-speculatively (whose greedy output must equal full-depth greedy byte for byte),
# `generate --prompts-file`, `eval` (JSON, SVG, and the same numbers under mpirun -np 2),
# `bench generate`, GGUF export (scripts/check_gguf.py when python3 has gguf), and bad arguments (one line, exit 1). With the SmolLM2 GGUF in
# vendor-data/, also self-speculative = full greedy on the real model. Run by launch/test
# after the release build; prints "inference: N passed, M failed, K skipped".
set -uo pipefail
cd "$(dirname "$0")/../.."
source launch/common.sh
bin=${SORTEDTRAIN_BIN:-$PWD/.build/release/sortedtrain}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
passed=0; failed=0; skipped=0
pass() { echo "ok   $1"; passed=$((passed + 1)); }
fail() { echo "FAIL $1: $2"; failed=$((failed + 1)); }
skip() { echo "skip $1: $2"; skipped=$((skipped + 1)); }
# check NAME COMMAND...: passes when the command exits 0.
check() { local name=$1; shift; if "$@" > "$work/check.out" 2>&1; then pass "$name"; else fail "$name" "$(tail -3 "$work/check.out")"; fi; }

"$bin" synth --output "$work/data" --train 4000 --validation 40 --seed 7 >/dev/null
cat > "$work/run.json" <<JSON
{"model": {"vocab_size": 259, "hidden_size": 64, "intermediate_size": 160, "num_hidden_layers": 4,
           "num_attention_heads": 4, "num_key_value_heads": 2, "max_position_embeddings": 128, "tie_word_embeddings": true},
 "data": {"train": "$work/data/train.jsonl", "validation": "$work/data/validation.jsonl", "tokenizer": "byte", "template": "none"},
 "sorted": {"exits": [2, 4]},
 "optim": {"lr": 3e-3, "weight_decay": 0.01, "max_grad_norm": 1.0},
 "schedule": {"type": "cosine", "warmup_steps": 20, "min_lr": 3e-4},
 "train": {"micro_batch_size": 8, "sequence_length": 64, "max_steps": 300, "seed": 5},
 "log": {"dir": "$work/run", "progress": "lines", "every": 1000, "eval_every": 150},
 "checkpoint": {"every": 300, "keep": 1}}
JSON
if ! mpirun_local 2 "$bin" train --config "$work/run.json" > "$work/train.out" 2>&1; then
    fail "train the model the inference checks use" "$(tail -3 "$work/train.out")"
    echo "inference: $passed passed, $failed failed, $skipped skipped"; exit 1
fi
ckpt=$work/run/checkpoints
q="Sort the letters of qwertyuiopasd alphabetically."

# Fixed depth, early exit and speculation answer; speculation equals full-depth greedy.
"$bin" generate "$ckpt" --prompt "$q" --max-new-tokens 24 > "$work/full.txt" 2>"$work/full.err"
check "generate at full depth answers" test -s "$work/full.txt"
"$bin" generate "$ckpt" --prompt "$q" --depth 2 --max-new-tokens 24 > "$work/d2.txt" 2>&1
check "generate at depth 2 answers" test -s "$work/d2.txt"
for n in 1 3 auto; do
    "$bin" generate "$ckpt" --prompt "$q" --draft-depth 2 --speculate $n --max-new-tokens 24 --stats > "$work/spec.txt" 2> "$work/spec.err"
    if cmp -s "$work/spec.txt" "$work/full.txt" && grep -q "drafts accepted" "$work/spec.err" \
        && grep -q "identical outputs 1 of 1" "$work/spec.err"; then
        pass "self-speculative (draft 2, --speculate $n) prints exactly the full-depth greedy answer"
    else
        fail "self-speculative --speculate $n" "$(cat "$work/spec.txt" "$work/spec.err" | tail -3) vs $(cat "$work/full.txt")"
    fi
done
"$bin" generate "$ckpt" --prompt "$q" --early-exit 0.5 --max-new-tokens 24 --stats > "$work/ee.txt" 2> "$work/ee.err"
if [ -s "$work/ee.txt" ] && grep -qE "layers per token, exits \{" "$work/ee.err" && grep -q "agreement with full-depth greedy" "$work/ee.err"; then
    pass "early exit answers and reports layers per token, exits and agreement"
else
    fail "early exit" "$(tail -2 "$work/ee.err")"
fi

# A prompts file: one JSON answer per prompt, in order.
printf '%s\n' '{"instruction": "What is 2 + 2?"}' '{"prompt": "Reverse the word cat."}' '{"instruction": "Is 7 even or odd?", "input": ""}' > "$work/prompts.jsonl"
"$bin" generate "$ckpt" --prompts-file "$work/prompts.jsonl" --batch-size 2 --max-new-tokens 16 > "$work/answers.jsonl" 2>&1
if [ "$(grep -c '"index"' "$work/answers.jsonl")" = 3 ] && python3 -c "
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
assert [r['index'] for r in rows] == [0, 1, 2] and all(isinstance(r['output'], str) for r in rows)" "$work/answers.jsonl" 2>/dev/null; then
    pass "generate --prompts-file answers every prompt as a JSON line"
else
    fail "generate --prompts-file" "$(head -3 "$work/answers.jsonl")"
fi

# eval: JSON and SVG; mpirun -np 2 gives the numbers of one process.
"$bin" eval "$ckpt" --limit 12 --json "$work/eval1.json" --svg "$work/eval.svg" > "$work/eval.out" 2>&1
check "eval prints a table with every exit" grep -qE "^4 +[0-9.]+" "$work/eval.out"
check "eval --svg writes an SVG chart" grep -q "</svg>" "$work/eval.svg"
mpirun_local 2 "$bin" eval "$ckpt" --limit 12 --json "$work/eval2.json" > "$work/eval2.out" 2>&1
if python3 - "$work/eval1.json" "$work/eval2.json" <<'PY'
import json, sys
a, b = (json.load(open(p))["exits"] for p in sys.argv[1:])
assert [e["depth"] for e in a] == [2, 4], a
for x, y in zip(a, b):
    for key in ("loss", "accuracy", "agreement", "kl_from_deepest", "exact_match"):
        assert abs(x[key] - y[key]) <= 1e-6 * max(1, abs(x[key])), (key, x[key], y[key])
    assert x["loss_tokens"] == y["loss_tokens"] and x["answered"] == y["answered"] == 12
assert a[1]["agreement"] == 1 and a[1]["kl_from_deepest"] == 0 and a[0]["kl_from_deepest"] > 0
PY
then pass "eval under mpirun -np 2 reports the numbers of one process"
else fail "eval under mpirun" "$(tail -3 "$work/eval2.out")"
fi
# Validation during training (log.eval_every 150): lines at steps 0, 150, 300, and the last
# one equals what `eval` reports for the saved model.
if python3 - "$work/run/metrics.jsonl" "$work/eval1.json" <<'PY'
import json, sys
lines = [json.loads(l) for l in open(sys.argv[1])]
val = [l for l in lines if "validation" in l]
assert [l["step"] for l in val] == [0, 150, 300], [l["step"] for l in val]
last = val[-1]["validation"]
for e in json.load(open(sys.argv[2]))["exits"]:
    d = str(e["depth"])
    assert abs(last["exit_losses"][d] - e["loss"]) <= 1e-5 * e["loss"], (d, last["exit_losses"][d], e["loss"])
    assert abs(last["accuracy"][d] - e["accuracy"]) <= 1e-9
assert val[0]["validation"]["exit_losses"]["4"] > last["exit_losses"]["4"]
PY
then pass "log.eval_every writes validation lines, the last equal to eval's numbers"
else fail "log.eval_every" "$(grep validation "$work/run/metrics.jsonl" | tail -2)"
fi
"$bin" eval "$ckpt" --limit 4 --compare "$ckpt" --json - > "$work/compare.json" 2>&1
check "eval --compare puts a second model beside the first" python3 -c "
import json, sys; r = json.load(open(sys.argv[1]))
key = lambda e: (e['depth'], e['loss'], e['exact_match'])
assert list(map(key, r['compared']['exits'])) == list(map(key, r['exits']))" "$work/compare.json"

# bench generate: every section of the JSON, on the small model (smoke only, no timing asserted).
"$bin" bench generate "$ckpt" --new-tokens 8 --prompt-tokens 16 --batch-size 2 --answers 5 --repeats 1 --json > "$work/bench.json" 2> "$work/bench.err"
check "bench generate reports depths, strategies (on --answers prompts) and the bandwidth limit" python3 -c "
import json, sys; r = json.load(open(sys.argv[1]))
assert [d['depth'] for d in r['depths']] == [2, 4] and r['read_bandwidth_gb_per_s'] > 0
assert r['answered_prompts'] == 5 and r['answered_tokens'] > 0 and r['batch_size'] == 2
assert all(d['fraction_of_bandwidth_limit'] > 0 for d in r['depths'])
s = {x['strategy'].split()[0]: x for x in r['strategies']}
assert s['self-speculative']['identical_to_full_depth'] and 'early' in s" "$work/bench.json"

# Quantized weights (--dtype): every block format answers; bench generate names the format
# and reads fewer weight bytes per token than float32.
for dtype in q8_0 q4_0 q4_1; do
    "$bin" generate "$ckpt" --prompt "$q" --dtype $dtype --max-new-tokens 24 > "$work/$dtype.txt" 2> "$work/$dtype.err"
    check "generate --dtype $dtype answers" test -s "$work/$dtype.txt"
done
"$bin" generate "$ckpt" --prompt "$q" --dtype q8_0 --max-new-tokens 24 --draft-depth 2 --speculate 8 > "$work/q8-spec.txt" 2>&1
check "self-speculative on Q8_0 weights prints exactly the Q8_0 full-depth greedy answer" cmp "$work/q8-spec.txt" "$work/q8_0.txt"
"$bin" bench generate "$ckpt" --dtype q8_0 --new-tokens 8 --prompt-tokens 16 --batch-size 2 --repeats 1 --json > "$work/bench-q8.json" 2>/dev/null
check "bench generate --dtype q8_0 reports the format, its kernels and fewer bytes per token" python3 -c "
import json, sys; q = json.load(open(sys.argv[1])); f = json.load(open(sys.argv[2]))
assert q['weight_format'] == 'q8_0' and q['quant_kernel'] in ('avx512-vnni', 'avx512', 'avx2', 'portable'), q['quant_kernel']
assert f['weight_format'] == 'f32'
assert q['depths'][-1]['bytes_per_token'] < 0.5 * f['depths'][-1]['bytes_per_token']" "$work/bench-q8.json" "$work/bench.json"

# Exit probes: calibrate fits them beside the checkpoint; generate and bench generate decide
# by them (--early-exit-agreement); a full-depth export carries them (HF file, GGUF metadata)
# and a shallower one leaves them out; inspect shows the same calibration from every copy.
"$bin" calibrate "$ckpt" --data "$work/data/validation.jsonl" --prompts 40 --max-new-tokens 16 --json > "$work/calibrate.json" 2> "$work/calibrate.err"
probes=$(ls "$ckpt"/step-*/exit-probes.json 2>/dev/null | head -1)
check "calibrate writes exit-probes.json into the checkpoint, with measured levels" python3 -c "
import json, sys; r = json.load(open(sys.argv[1])); p = json.load(open(sys.argv[2]))
assert r['exits'] == [2] and p['layers'] == 4 and len(p['probes'][0]['weights']) == 64, r
levels = r['levels']; assert len(levels) >= 3 and all(0 <= l['agreement'] <= 1 and 2 <= l['layers_per_token'] <= 4 for l in levels)
assert levels[0]['thresholds'][0] >= levels[-1]['thresholds'][0]
assert r['calibration']['fit_prompts'] == 30 and r['calibration']['held_out_prompts'] == 10" "$work/calibrate.json" "$probes"
"$bin" generate "$ckpt" --prompt "$q" --early-exit-agreement 0.9 --max-new-tokens 24 --stats > "$work/probe.txt" 2> "$work/probe.err"
check "generate --early-exit-agreement answers by the probes and reports its agreement" \
    grep -q "agreement with full-depth greedy" "$work/probe.err"
for args in "--draft-depth 2 --draft-vocabulary shortlist" "--draft-depth auto --speculate auto" "--draft-depth auto --draft-vocabulary shortlist --speculate auto"; do
    "$bin" generate "$ckpt" --prompt "$q" $args --max-new-tokens 24 > "$work/spec-probe.txt" 2> "$work/spec-probe.err"
    check "self-speculative $args prints exactly the full-depth greedy answer" cmp "$work/spec-probe.txt" "$work/full.txt"
done
"$bin" bench generate "$ckpt" --new-tokens 8 --prompt-tokens 16 --batch-size 2 --repeats 1 --early-exit-agreement 0.5,1 --draft-vocabulary full,shortlist --json > "$work/bench-probes.json" 2>/dev/null
check "bench generate --early-exit-agreement measures early exit by probes" python3 -c "
import json, sys; r = json.load(open(sys.argv[1]))
rows = [s for s in r['strategies'] if 'probes' in s['strategy']]
assert len(rows) == 2 and all(0 <= x['agreement_with_full_depth'] <= 1 and 2 <= x['mean_layers_per_token'] <= 4 for x in rows), rows
spec = [s for s in r['strategies'] if s['strategy'].startswith('self-speculative')]
assert len(spec) == 2 and 'shortlist' in spec[1]['strategy'] and all(s['identical_to_full_depth'] for s in spec), spec" "$work/bench-probes.json"
"$bin" eval "$ckpt" --limit 12 --early-exit-agreement 0.5,1 --json "$work/eval-probes.json" > /dev/null 2>&1
check "eval --early-exit-agreement grades early exit by probes beside the exits" python3 -c "
import json, sys; r = json.load(open(sys.argv[1])); s = r['strategies']
assert len(s) == 2 and all(x['answered'] == 12 and 0 <= x['exact_match'] <= 1 and 2 <= x['layers_per_token'] <= 4 for x in s), s
assert all(0 <= x['agreement_with_full_depth'] <= 1 for x in s), s" "$work/eval-probes.json"
"$bin" export "$ckpt" --depth 4 --format gguf --out "$work/d4.gguf" > /dev/null 2>&1
"$bin" export "$ckpt" --depth 4 --format hf --out "$work/d4-hf" > /dev/null 2>&1
"$bin" export "$ckpt" --depth 2 --format hf --out "$work/d2-probes-hf" > "$work/d2-probes.out" 2>&1
for m in "$ckpt" "$work/d4.gguf" "$work/d4-hf"; do "$bin" inspect "$m" --json > "$work/inspect-$(basename "$m").json"; done
check "the probes survive export and reload: inspect shows the same calibration for checkpoint, GGUF and HF" python3 -c "
import json, sys; a, b, c = (json.load(open(p))['exit_probes'] for p in sys.argv[1:])
assert a == b == c and a['exits'] == [2], (a, b, c)" "$work/inspect-checkpoints.json" "$work/inspect-d4.gguf.json" "$work/inspect-d4-hf.json"
"$bin" generate "$work/d4.gguf" --prompt "$q" --early-exit-agreement 0.9 --max-new-tokens 24 > "$work/probe-gguf.txt" 2>&1
check "the f32 GGUF's embedded probes answer as the checkpoint's" cmp "$work/probe-gguf.txt" "$work/probe.txt"
check "a depth-2 export leaves the probes out and says why" \
    sh -c "grep -q 'exit probes predict agreement with layer 4' '$work/d2-probes.out' && [ ! -e '$work/d2-probes-hf/exit-probes.json' ]"

# GGUF export (llama.cpp's format): generating from the f32 file prints what depth 2 of the
# checkpoint prints; scripts/check_gguf.py checks llama.cpp's requirements with gguf-py, a numpy
# llama.cpp-style forward against the HF export of the same depth and, with transformers,
# transformers' load of the file (skipped when python3 has no gguf package).
"$bin" export "$ckpt" --depth 2 --format hf --out "$work/d2-hf" > /dev/null 2>&1
for dtype in f32 f16 q8_0 q4_0 q4_1; do
    if ! "$bin" export "$ckpt" --depth 2 --format gguf --dtype $dtype --out "$work/d2-$dtype.gguf" > "$work/gguf-$dtype.out" 2>&1; then
        fail "export --format gguf --dtype $dtype" "$(tail -2 "$work/gguf-$dtype.out")"; continue
    fi
    if [ $dtype = f32 ]; then
        "$bin" generate "$work/d2-$dtype.gguf" --prompt "$q" --max-new-tokens 24 > "$work/gguf-d2.txt" 2>&1
        check "generate from the f32 GGUF of depth 2 prints the checkpoint's depth-2 answer" cmp "$work/gguf-d2.txt" "$work/d2.txt"
    elif [ $dtype != f16 ]; then
        # The file's blocks are decoded as stored: the same answer as quantizing the f32 export at load.
        "$bin" generate "$work/d2-$dtype.gguf" --prompt "$q" --max-new-tokens 24 > "$work/gguf-d2-$dtype.txt" 2>&1
        "$bin" generate "$work/d2-f32.gguf" --dtype $dtype --prompt "$q" --max-new-tokens 24 > "$work/gguf-d2-f32-$dtype.txt" 2>&1
        check "generate from the $dtype GGUF (blocks as stored) equals the f32 GGUF quantized at load" cmp "$work/gguf-d2-$dtype.txt" "$work/gguf-d2-f32-$dtype.txt"
    fi
    if python3 -c 'import gguf' 2>/dev/null; then
        check "check_gguf.py on the $dtype export" python3 scripts/check_gguf.py "$work/d2-$dtype.gguf" --hf "$work/d2-hf"
    else
        skip "check_gguf.py on the $dtype export" "python3 has no gguf package (pip install gguf)"
    fi
done

# bench generate --llama-bench: a stand-in llama-bench (its JSON as llama.cpp prints it) gives
# the same-run reference; sortedtrain's full-depth rates are divided by its rates; memory is reported.
cat > "$work/llama-bench" <<'SH'
#!/bin/sh
echo "$@" > "$(dirname "$0")/llama-bench.args"
echo '[{"build_commit": "fake123", "n_prompt": 16, "n_gen": 0, "avg_ts": 400.0}, {"build_commit": "fake123", "n_prompt": 0, "n_gen": 8, "avg_ts": 50.0}]'
SH
chmod +x "$work/llama-bench"
"$bin" bench generate "$work/d2-q8_0.gguf" --tokenizer byte --exits 2 --new-tokens 8 --prompt-tokens 16 --batch-size 1 --repeats 1 \
    --llama-bench "$work/llama-bench" --json > "$work/bench-llama.json" 2> "$work/bench-llama.err"
check "bench generate --llama-bench runs it on the same file and lengths and divides by its rates" python3 -c "
import json, sys; r = json.load(open(sys.argv[1])); l = r['llama_cpp']; d = r['depths'][-1]
args = open(sys.argv[2]).read().split()
assert args[args.index('-m') + 1].endswith('d2-q8_0.gguf') and args[args.index('-p') + 1] == '16' and args[args.index('-n') + 1] == '8', args
assert l['build'] == 'fake123' and l['prefill_tokens_per_s'] == 400 and l['decode_tokens_per_s'] == 50
assert abs(l['prefill_ratio'] - d['prefill_tokens_per_s'] / 400) < 1e-9 and abs(l['decode_ratio'] - d['decode_tokens_per_s_batch1'] / 50) < 1e-9
assert r['weight_format'] == 'q8_0' and r['model_file_bytes'] > r['weight_bytes'] > 0 and r['kv_cache_bytes_batch1'] > 0
assert r['peak_rss_batch1_mb'] is None or r['peak_rss_batch1_mb'] > r['weight_bytes'] / 2**20" "$work/bench-llama.json" "$work/llama-bench.args"
"$bin" bench generate "$work/d2-q8_0.gguf" --tokenizer byte --exits 2 --new-tokens 4 --prompt-tokens 8 --batch-size 1 --repeats 1 \
    --llama-bench /bin/false > "$work/bench-false.txt" 2>&1
check "a llama-bench that fails is reported as skipped, with sortedtrain's figures kept" grep -q "llama.cpp comparison skipped: /bin/false exited 1" "$work/bench-false.txt"

# Bad arguments: one line on stderr, exit 1, no backtrace.
bad() {  # NAME ARGS...
    local name=$1; shift
    "$bin" "$@" > "$work/bad.out" 2> "$work/bad.err"; local code=$?
    if [ $code = 1 ] && [ "$(grep -c . "$work/bad.err")" -le 2 ] && ! grep -qiE "fatal error|backtrace|stack dump" "$work/bad.err"; then
        pass "$name: $(head -1 "$work/bad.err")"
    else
        fail "$name" "exit $code: $(head -3 "$work/bad.err")"
    fi
}
bad "generate --temperature nan" generate "$ckpt" --prompt hi --temperature nan
bad "generate --depth 9 on a 4-layer model" generate "$ckpt" --prompt hi --depth 9
bad "generate --draft-depth 4 (the last layer cannot draft)" generate "$ckpt" --prompt hi --draft-depth 4
bad "generate --early-exit with a word" generate "$ckpt" --prompt hi --early-exit high
bad "generate --depth with --draft-depth" generate "$ckpt" --prompt hi --depth 2 --draft-depth 2
bad "eval --exits 4,2" eval "$ckpt" --exits 4,2
bad "eval --exits empty" eval "$ckpt" --exits ""
bad "generate --early-exit-agreement without probes" generate "$work/d2-probes-hf" --tokenizer byte --prompt hi --early-exit-agreement 0.9
bad "generate --early-exit-agreement 1.5" generate "$ckpt" --prompt hi --early-exit-agreement 1.5
bad "generate --early-exit-agreement with --depth" generate "$ckpt" --prompt hi --early-exit-agreement 0.9 --depth 2
bad "generate --draft-vocabulary shortlist without a calibration" generate "$work/d2-probes-hf" --tokenizer byte --prompt hi --draft-depth 1 --draft-vocabulary shortlist
bad "generate --draft-depth auto without probes" generate "$work/d2-probes-hf" --tokenizer byte --prompt hi --draft-depth auto
bad "generate --draft-depth deep" generate "$ckpt" --prompt hi --draft-depth deep
bad "calibrate --exits 9 on a 4-layer model" calibrate "$ckpt" --data "$work/data/validation.jsonl" --exits 9
# A model whose weights hold NaN (a diverged run) is refused at load, naming the tensor.
cp -r "$work/d2-probes-hf" "$work/nan-hf"
python3 - "$work/nan-hf/model.safetensors" <<'PY'
import json, struct, sys
path = sys.argv[1]
data = bytearray(open(path, "rb").read())
n = struct.unpack("<Q", data[:8])[0]
header = json.loads(data[8:8 + n])
name = next(k for k in sorted(header) if k.endswith("down_proj.weight"))
start = 8 + n + header[name]["data_offsets"][0]
data[start:start + 4] = struct.pack("<f", float("nan"))
open(path, "wb").write(data)
PY
bad "generate from a model whose weights hold NaN" generate "$work/nan-hf" --tokenizer byte --prompt hi
grep -q "down_proj.*NaN or infinite" "$work/bad.err" && pass "the NaN refusal names the tensor" || fail "the NaN refusal names the tensor" "$(cat "$work/bad.err")"
bad "train --init-from weights that hold NaN" train --config "$work/run.json" --init-from "$work/nan-hf"
grep -q "down_proj.*cannot be trained from" "$work/bad.err" && pass "training refuses NaN initial weights by name, not as a NaN loss" \
    || fail "training refuses NaN initial weights" "$(cat "$work/bad.err")"
long=$(python3 -c "print('Sort these words alphabetically: ' + ' '.join(['banana cherry apple'] * 20))")
bad "generate with a prompt longer than the model's 128 positions" generate "$ckpt" --prompt "$long"
bad "generate --context beyond the model's positions" generate "$ckpt" --prompt hi --context 500
bad "bench generate --answers beyond the prompts it has" bench generate "$ckpt" --answers 9 --new-tokens 2 --prompt-tokens 4
bad "bench generate with a prompt longer than --context" bench generate "$ckpt" --context 8 --prompt-tokens 4 --new-tokens 2
"$bin" generate "$ckpt" --prompt "$long" --truncate left --max-new-tokens 8 > "$work/cut.txt" 2> "$work/cut.err"
check "generate --truncate left answers from the prompt's last tokens and says so" grep -q "keeping its last 127" "$work/cut.err"
bad "generate --dtype q5_k" generate "$ckpt" --prompt hi --dtype q5_k
bad "calibrate --prompts 3" calibrate "$ckpt" --data "$work/data/validation.jsonl" --prompts 3
bad "calibrate with a missing --data file" calibrate "$ckpt" --data "$work/none.jsonl"
printf '{"format": 1, "layers": ' > "$work/d4-hf/exit-probes.json"
bad "generate --early-exit-agreement with a damaged exit-probes.json" generate "$work/d4-hf" --tokenizer byte --prompt hi --early-exit-agreement 0.9
"$bin" generate "$work/d4-hf" --tokenizer byte --prompt hi --max-new-tokens 4 > "$work/damaged.txt" 2> "$work/damaged.err"
check "a damaged exit-probes.json does not stop a command that needs no probes: it warns, naming the file" \
    sh -c "grep -q 'Warning: .*exit-probes.json: is not a probes file' '$work/damaged.err' && [ -s '$work/damaged.txt' ]"
bad "generate on a missing model" generate "$work/nothing" --prompt hi
bad "bench generate --llama-bench on a checkpoint (llama.cpp reads GGUF only)" bench generate "$ckpt" --llama-bench /bin/true
bad "export --format hf --dtype q8_0" export "$ckpt" --depth 2 --format hf --dtype q8_0 --out "$work/hf-q8"
bad "export --format gguf onto an existing non-.gguf file" export "$ckpt" --depth 2 --format gguf --out "$work/run.json" --overwrite

# The real model: self-speculative greedy equals full-depth greedy on SmolLM2 (GGUF).
gguf=vendor-data/SmolLM2-135M-Instruct.Q4_1.gguf
if [ -s "$gguf" ]; then
    "$bin" generate "$gguf" --prompt "Name three colours." --max-new-tokens 24 > "$work/smol-full.txt" 2>&1
    "$bin" generate "$gguf" --prompt "Name three colours." --max-new-tokens 24 --draft-depth 20 --speculate 3 > "$work/smol-spec.txt" 2>&1
    if [ -s "$work/smol-full.txt" ] && cmp -s "$work/smol-full.txt" "$work/smol-spec.txt"; then
        pass "SmolLM2 GGUF: self-speculative (draft 20) prints exactly the full-depth greedy answer"
    else
        fail "SmolLM2 GGUF speculation" "$(head -c 300 "$work/smol-spec.txt") vs $(head -c 300 "$work/smol-full.txt")"
    fi
else
    skip "SmolLM2 GGUF generation" "$gguf is absent (launch/fetch-test-assets fetches it)"
fi

echo "inference: $passed passed, $failed failed, $skipped skipped"
[ "$failed" = 0 ]
