#!/usr/bin/env bash
# End-to-end checks of the sortedtrain command under faults: a stuck rank, a dead rank, a
# process killed while writing a checkpoint, damaged checkpoints and bad configs. Each must
# end with a non-zero exit and one clear line, within a bounded time, and never damage an
# earlier checkpoint. Also: progress output under mpirun (plain lines into files, the bar
# on a terminal) and the benchmarks' smoke runs. Run by launch/test after the release build; prints "cli: N passed, M failed".
set -uo pipefail
cd "$(dirname "$0")/../.."
source launch/common.sh
bin=${SORTEDTRAIN_BIN:-$PWD/.build/release/sortedtrain}  # SORTEDTRAIN_BIN: another build (an absolute path)
work=$(mktemp -d)
trap 'pkill -KILL -f "$work" 2>/dev/null; umount "$work/full" 2>/dev/null; rm -rf "$work"' EXIT
passed=0; failed=0
pass() { echo "ok   $1"; passed=$((passed + 1)); }
fail() { echo "FAIL $1: $2"; failed=$((failed + 1)); }

"$bin" synth --output "$work/data" --train 2000 --validation 10 >/dev/null
cat > "$work/small.json" <<JSON
{"model": {"vocab_size": 259, "hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 4,
           "num_attention_heads": 4, "num_key_value_heads": 2, "max_position_embeddings": 128, "tie_word_embeddings": true},
 "data": {"train": "$work/data/train.jsonl", "tokenizer": "byte", "template": "none"},
 "sorted": {"exits": [2, 4]},
 "train": {"micro_batch_size": 4, "sequence_length": 96, "max_steps": 100000},
 "log": {"dir": "$work/run", "progress": "lines", "every": 1000},
 "distributed": {"timeout_s": 3}}
JSON

# The PID of rank $1 among this test's sortedtrain processes.
rank_pid() {
    for pid in $(pgrep -f "$bin train --config $work"); do
        if tr '\0' '\n' < /proc/$pid/environ 2>/dev/null | grep -qx "OMPI_COMM_WORLD_RANK=$1"; then echo "$pid"; return; fi
    done
}

# Waits (up to 60 s) until the metrics file has at least $1 lines.
wait_for_steps() {
    for _ in $(seq 600); do
        [ "$( { wc -l < "$work/run/metrics.jsonl"; } 2>/dev/null || echo 0)" -ge "$1" ] && return 0
        sleep 0.1
    done
    return 1
}

fault_run() {  # $1: signal for rank 1, $2: name
    rm -rf "$work/run"
    local start=$SECONDS
    mpirun_local 2 "$bin" train --config "$work/small.json" > "$work/$2.out" 2> "$work/$2.err" &
    local job=$!
    if ! wait_for_steps 3; then kill -KILL $job 2>/dev/null; fail "$2" "training did not start"; return; fi
    local victim; victim=$(rank_pid 1)
    [ -n "$victim" ] || { kill -KILL $job; fail "$2" "rank 1 not found"; return; }
    kill "-$1" "$victim"
    # The job must end by itself: timeout_s is 3 s; allow 40 s in all.
    for _ in $(seq 400); do kill -0 $job 2>/dev/null || break; sleep 0.1; done
    if kill -0 $job 2>/dev/null; then
        kill -KILL $job "$victim" 2>/dev/null
        fail "$2" "the job was still running $((SECONDS - start)) s after rank 1 got SIG$1"
        return
    fi
    wait $job; local code=$?
    kill -KILL "$victim" 2>/dev/null
    # A line of sortedtrain's own must name the rank (mpirun's own report does not count).
    local ours='^(sortedtrain: |Error: |rank [0-9]+: ).*rank 1'
    if [ $code -ne 0 ] && grep -Eq "$ours" "$work/$2.err" "$work/$2.out"; then
        pass "$2: exit $code after $((SECONDS - start)) s, message names rank 1: $(grep -Eh -m1 "$ours" "$work/$2.err" "$work/$2.out" | head -c 160)"
    else
        fail "$2" "exit $code; output: $(tail -c 400 "$work/$2.err")"
    fi
}

# SIGTERM finishes the current step, saves a checkpoint and exits 0.
rm -rf "$work/run"
"$bin" train --config "$work/small.json" > "$work/term.out" 2>&1 &
job=$!
if wait_for_steps 3; then
    kill -TERM $job
    for _ in $(seq 200); do kill -0 $job 2>/dev/null || break; sleep 0.1; done
    if kill -0 $job 2>/dev/null; then
        kill -KILL $job; fail "SIGTERM saves and exits" "still running 20 s after SIGTERM"
    else
        wait $job; code=$?
        step=$(sed -n 's/^stopped by signal after step \([0-9]*\);.*/\1/p' "$work/term.out")
        if [ $code -eq 0 ] && [ -n "$step" ] && [ "$(cat "$work/run/checkpoints/latest" 2>/dev/null)" = "$(printf 'step-%08d' "$step")" ]; then
            pass "SIGTERM saves and exits: stopped after step $step, checkpoint $(printf 'step-%08d' "$step") saved"
        else
            fail "SIGTERM saves and exits" "exit $code; $(tail -2 "$work/term.out")"
        fi
    fi
else
    kill -KILL $job 2>/dev/null; fail "SIGTERM saves and exits" "training did not start"
fi

# Under mpirun, SIGUSR1 to mpirun reaches every rank unchanged: they stop after the same
# step, save together and the job exits 0.
rm -rf "$work/run"
mpirun_local 2 "$bin" train --config "$work/small.json" > "$work/usr1.out" 2>&1 &
job=$!
if wait_for_steps 3; then
    # To mpirun itself ($job is the subshell running it).
    pkill -USR1 -f "mpirun.*$work/small.json"
    for _ in $(seq 200); do kill -0 $job 2>/dev/null || break; sleep 0.1; done
    wait $job; code=$?
    step=$(sed -n 's/^stopped by signal after step \([0-9]*\);.*/\1/p' "$work/usr1.out")
    if [ $code -eq 0 ] && [ -n "$step" ] && [ "$(cat "$work/run/checkpoints/latest" 2>/dev/null)" = "$(printf 'step-%08d' "$step")" ] \
        && [ -f "$work/run/checkpoints/$(printf 'step-%08d' "$step")/shard-00001-of-00002.h5" ]; then
        pass "SIGUSR1 to mpirun saves and exits 0: both ranks stopped after step $step and wrote their shards"
    else
        fail "SIGUSR1 to mpirun" "exit $code; $(tail -3 "$work/usr1.out")"
    fi
else
    kill -KILL $job 2>/dev/null; fail "SIGUSR1 to mpirun" "training did not start"
fi

fault_run STOP "a stuck rank ends the job"
fault_run KILL "a dead rank ends the job"

# A process killed while writing a checkpoint leaves the previous one intact.
cat > "$work/big.json" <<JSON
{"model": {"vocab_size": 32000, "hidden_size": 512, "intermediate_size": 1376, "num_hidden_layers": 8,
           "num_attention_heads": 8, "max_position_embeddings": 128},
 "data": {"train": "$work/data/train.jsonl", "tokenizer": "byte", "template": "none"},
 "sorted": {"exits": [4, 8]},
 "train": {"micro_batch_size": 1, "sequence_length": 64, "max_steps": 1000},
 "log": {"dir": "$work/big", "progress": "lines"},
 "checkpoint": {"every": 1, "keep": 5}}
JSON
"$bin" train --config "$work/big.json" > "$work/big.out" 2>&1 &
job=$!
killed=""
for _ in $(seq 1200); do
    if [ -f "$work/big/checkpoints/latest" ] && ls -d "$work"/big/checkpoints/*.tmp >/dev/null 2>&1; then
        kill -KILL $job; killed=yes; break
    fi
    sleep 0.05
done
wait $job 2>/dev/null
if [ -z "$killed" ]; then
    fail "SIGKILL during a checkpoint write" "never caught a write in progress"
else
    latest=$(cat "$work/big/checkpoints/latest")
    if "$bin" inspect "$work/big/checkpoints/$latest" >/dev/null \
        && "$bin" train --config "$work/big.json" --resume auto --set train.max_steps=$(( ${latest#step-} + 1 )) > "$work/resume.out" 2>&1 \
        && grep -q "resumed from $work/big/checkpoints/$latest" "$work/resume.out"; then
        pass "SIGKILL during a checkpoint write: $latest intact, --resume auto picks it"
    else
        fail "SIGKILL during a checkpoint write" "$(tail -3 "$work/resume.out")"
    fi
fi

# Damaged checkpoints and bad input: one line naming the problem, exit 1, no backtrace.
one_line_error() {  # $1 name, $2 expected text (an extended regex), command…
    local name=$1 expected=$2; shift 2
    local out; out=$("$@" 2>&1); local code=$?
    local lines; lines=$(printf '%s\n' "$out" | grep -c .)
    if [ $code -ne 0 ] && [ "$lines" -eq 1 ] && [[ "$out" =~ $expected ]]; then
        pass "$name: $out"
    else
        fail "$name" "exit $code, $lines line(s): $out"
    fi
}
ckpt="$work/big/checkpoints/$(cat "$work/big/checkpoints/latest")"
cp -r "$ckpt" "$work/damaged"
python3 - "$work/damaged/shard-00000-of-00001.h5" <<'PY'
import sys
path = sys.argv[1]
data = bytearray(open(path, "rb").read())
for i in range(len(data) // 2, len(data) // 2 + 4096): data[i] ^= 0xFF
open(path, "wb").write(bytes(data))
PY
one_line_error "damaged checkpoint" "checksum mismatch|is damaged or truncated" "$bin" train --config "$work/big.json" --resume "$work/damaged" --quiet
one_line_error "inspect refuses the damaged checkpoint as train does" "checksum mismatch|is damaged or truncated" "$bin" inspect "$work/damaged"
rm "$work/damaged/shard-00000-of-00001.h5"
one_line_error "missing shard" "shard-00000-of-00001\.h5: is missing" "$bin" train --config "$work/big.json" --resume "$work/damaged" --quiet
one_line_error "other model shape" "num_hidden_layers = 8, the config asks for 6" "$bin" train --config "$work/big.json" --resume "$ckpt" --set model.num_hidden_layers=6 --set sorted.exits=[3,6] --quiet
# Training from step 0 over checkpoints only when asked; a damaged newest checkpoint is
# skipped loudly, and kept.
one_line_error "no --resume over existing checkpoints" "already holds checkpoints .*--resume none" "$bin" train --config "$work/big.json" --quiet
skip=(--config "$work/small.json" --set "log.dir=$work/skip" --set checkpoint.every=1 --set train.micro_batch_size=1)
"$bin" train "${skip[@]}" --set train.max_steps=2 --quiet > /dev/null 2>&1
head -c 300 "$work/skip/checkpoints/step-00000002/checkpoint.h5" > "$work/truncated.h5"
mv "$work/truncated.h5" "$work/skip/checkpoints/step-00000002/checkpoint.h5"
"$bin" train "${skip[@]}" --set train.max_steps=3 --resume auto > "$work/skip.out" 2> "$work/skip.err"; code=$?
if [ $code -eq 0 ] && grep -q "warning: skipped checkpoint $work/skip/checkpoints/step-00000002: .*checkpoint.h5" "$work/skip.err" \
    && grep -q "resumed from $work/skip/checkpoints/step-00000001 at step 1" "$work/skip.out" \
    && [ -d "$work/skip/checkpoints/step-00000001" ] && [ -d "$work/skip/checkpoints/step-00000003" ] \
    && [ -f "$work/skip/checkpoints/step-00000002.damaged/shard-00000-of-00001.h5" ] \
    && grep -q "the damaged checkpoint .*step-00000002 is kept as .*step-00000002.damaged" "$work/skip.err"; then
    pass "--resume auto skips a damaged newest checkpoint loudly, prunes no intact one, and saving that step again keeps the damaged one aside"
else
    fail "--resume auto skips a damaged newest checkpoint" "exit $code; $(cat "$work/skip.err" | head -c 300); $(tail -2 "$work/skip.out")"
fi
rm "$work"/skip/checkpoints/step-0000000[123]/shard-00000-of-00001.h5
one_line_error "every checkpoint damaged: no fresh start" "no intact checkpoint .*--resume none" "$bin" train "${skip[@]}" --set train.max_steps=4 --resume auto --quiet
one_line_error "unknown config key" "optim\.learning_rate: unknown key" "$bin" train --config "$work/small.json" --set optim.learning_rate=1
one_line_error "bad exits" "sorted\.exits: depth 9 is outside 1\.\.\.4" "$bin" train --config "$work/small.json" --set sorted.exits=[2,9]
echo '{"instruction": "x", "output": "y"}' > "$work/bad.jsonl"; echo '{"instruction": "x",' >> "$work/bad.jsonl"
one_line_error "malformed data line" "bad\.jsonl:2: " "$bin" train --config "$work/small.json" --set "data.train=$work/bad.jsonl"
"$bin" prepare --tokenizer byte "$work/data/train.jsonl" --output "$work/prepared.bin" > /dev/null 2>&1
head -c 20 "$work/prepared.bin" > "$work/cut.bin"
one_line_error "a truncated prepared file is refused, not trained on as text" "cut\.bin: .*truncated" "$bin" train --config "$work/small.json" --set "data.train=$work/cut.bin"
# A full disk: a checkpoint.dir whose file system cannot take one checkpoint, or a read-only
# one, is refused before step 1; one that fills during a save ends the run with the reason,
# the previous checkpoint intact and still `latest`, and no partial step folder.
mkdir -p "$work/full"
if [ "$(id -u)" = 0 ] && mount -t tmpfs -o size=2m tmpfs "$work/full" 2>/dev/null; then
    one_line_error "a checkpoint.dir too small for one checkpoint is refused before step 1" "free on its file system; one checkpoint needs" \
        "$bin" train --config "$work/small.json" --set "checkpoint.dir=$work/full/ck" --set train.max_steps=2
    mount -o remount,ro "$work/full"
    one_line_error "a read-only checkpoint.dir is refused before step 1" "cannot create the checkpoint folder|is not writable" \
        "$bin" train --config "$work/small.json" --set "checkpoint.dir=$work/full/ck" --set train.max_steps=2
    umount "$work/full"
    mount -t tmpfs -o size=7m tmpfs "$work/full"
    out=$("$bin" train --config "$work/small.json" --set "log.dir=$work/fill" --set "checkpoint.dir=$work/full/ck" \
          --set checkpoint.every=1 --set checkpoint.keep=3 --set train.max_steps=8 --quiet 2>&1); code=$?
    latest=$(cat "$work/full/ck/latest" 2>/dev/null)
    if [ $code -ne 0 ] && grep -q "could not save step" <<< "$out" && [ -n "$latest" ] \
       && "$bin" inspect "$work/full/ck/$latest" > /dev/null 2>&1 && ! ls -d "$work"/full/ck/*.tmp > /dev/null 2>&1; then
        pass "a disk that fills during a save: $(grep -o 'could not save step [0-9]*' <<< "$out"), $latest intact and latest, no partial folder"
    else
        fail "a disk that fills during a save" "exit $code, latest '$latest': $(tail -n 2 <<< "$out") $(ls "$work/full/ck")"
    fi
    umount "$work/full"
    # checkpoint.on_error = continue: the failed saves warn and training goes on to its last
    # step; the final save, which fails too, still ends the run, the last good checkpoint intact.
    mount -t tmpfs -o size=7m tmpfs "$work/full"
    out=$("$bin" train --config "$work/small.json" --set "log.dir=$work/fill-on" --set "checkpoint.dir=$work/full/ck" \
          --set checkpoint.every=1 --set checkpoint.keep=3 --set checkpoint.on_error=continue --set train.max_steps=8 --set log.every=1 --quiet 2>&1); code=$?
    latest=$(cat "$work/full/ck/latest" 2>/dev/null)
    last_step=$(tail -n 1 "$work/fill-on/metrics.jsonl" 2>/dev/null | grep -o '"step":[0-9]*')
    if [ $code -ne 0 ] && grep -q "training goes on (checkpoint.on_error = continue)" <<< "$out" && grep -q "could not save step 8" <<< "$out" \
       && [ "$last_step" = '"step":8' ] && [ -n "$latest" ] && "$bin" inspect "$work/full/ck/$latest" > /dev/null 2>&1 \
       && ! ls -d "$work"/full/ck/*.tmp > /dev/null 2>&1; then
        pass "checkpoint.on_error = continue: $(grep -c 'training goes on' <<< "$out") failed saves warned, trained to step 8, the final save's failure ends the run, $latest intact"
    else
        fail "checkpoint.on_error = continue" "exit $code, latest '$latest', last metrics $last_step: $(tail -n 3 <<< "$out")"
    fi
    umount "$work/full"
    one_line_error "a bad checkpoint.on_error" "checkpoint\.on_error" "$bin" train --config "$work/small.json" --set checkpoint.on_error=retry
else
    echo "skip disk-full checks: mounting a small tmpfs needs root"; skipped=$((${skipped:-0} + 1))
fi
one_line_error "missing config" "cannot be read" "$bin" train --config "$work/none.json"
one_line_error "--init-from a checkpoint says it is resumed, not started from" "is a checkpoint: continue its run with --resume" "$bin" train --config "$work/small.json" --init-from "$work/big/checkpoints"
one_line_error "a data.validation file that does not exist, before step 1" "data\.validation: .*nothing\.jsonl does not exist" "$bin" train --config "$work/small.json" --set "data.validation=$work/nothing.jsonl"
one_line_error "no usable example says which limit drops them" "train\.sequence_length \(8\)" "$bin" train --config "$work/small.json" --set train.sequence_length=8
one_line_error "bad config under mpirun: one line, not one per rank" "sorted\.exits: depth 0" mpirun_local 2 --quiet "$bin" train --config "$work/small.json" --set sorted.exits=[0]

# Progress under mpirun: Open MPI gives every rank a pseudo-terminal whatever mpirun's own
# output is, so a log file must still get plain lines (no ESC, no carriage return), and a
# real terminal the live bar. Three steps of the small model each.
unset SORTEDTRAIN_PROGRESS  # what the launcher decides, not what this shell may have exported
escapes() { tr -dc '\033\r' < "$1" | wc -c; }  # ESC and CR bytes in file $1
short=(--config "$work/small.json" --set train.max_steps=3 --set log.progress=auto --set "log.dir=$work/progress")
progress_lines() {  # $1 name, $2 output file, $3 exit code: plain lines, no escape byte
    local name=$1 out=$2 code=$3
    if [ "$code" -eq 0 ] && grep -q "^step 3/3 | " "$out" && [ "$(escapes "$out")" -eq 0 ]; then
        pass "$name: plain lines, no ESC or CR"
    else
        fail "$name" "exit $code, $(escapes "$out") ESC/CR byte(s); $(tail -c 300 "$out" | cat -v)"
    fi
}
rm -rf "$work/progress"
mpirun_local 2 "$bin" train "${short[@]}" > "$work/progress-file.out" 2>&1
progress_lines "progress under mpirun_local into a file" "$work/progress-file.out" $?
# A bare mpirun (no launcher to say what its stdout is): lines.
rm -rf "$work/progress"
root=(); [ "$(id -u)" -eq 0 ] && root=(--allow-run-as-root)
TERM=xterm mpirun -np 2 --bind-to none "${root[@]}" "$bin" train "${short[@]}" > "$work/progress-bare.out" 2>&1
progress_lines "progress under a bare mpirun into a file" "$work/progress-bare.out" $?
# The config's log.progress = lines wins over the launcher's SORTEDTRAIN_PROGRESS=bar.
rm -rf "$work/progress"
SORTEDTRAIN_PROGRESS=bar mpirun_local 2 "$bin" train "${short[@]}" --set log.progress=lines > "$work/progress-explicit.out" 2>&1
progress_lines "log.progress = lines wins over SORTEDTRAIN_PROGRESS=bar" "$work/progress-explicit.out" $?
# On a real terminal: script(1) (util-linux, in Debian's bsdutils) runs the launcher on a
# pseudo-terminal and copies what it draws to a file.
if ! command -v script >/dev/null 2>&1; then
    echo "skip progress bar on a terminal: script(1) is not installed (Debian package bsdutils)"
elif ! script -qfc true /dev/null < /dev/null > /dev/null 2>&1; then
    echo "skip progress bar on a terminal: script(1) cannot open a pseudo-terminal here"
else
    rm -rf "$work/progress"
    inner=$(printf '%q ' env TERM=xterm bash -c 'source launch/common.sh && mpirun_local 2 "$@"' _ "$bin" train "${short[@]}")
    timeout 120 script -qfec "$inner" /dev/null < /dev/null > "$work/progress-tty.out" 2>&1; code=$?
    bars=$(grep -c $'\e\\[2Kstep 3/3 ' "$work/progress-tty.out")
    if [ $code -eq 0 ] && [ "$bars" -ge 1 ] && grep -q $'\e\\[2Kstep 1/3 ' "$work/progress-tty.out"; then
        pass "progress under mpirun_local on a terminal: the live bar is drawn"
    else
        fail "progress under mpirun_local on a terminal" "exit $code, no bar; $(tail -c 300 "$work/progress-tty.out" | cat -v)"
    fi
fi

# Writers never replace what they did not create: an existing --out / --output needs
# --overwrite, and a checkpoint is never a target. The originals stay unchanged by hash.
tree_hash() { find "$1" -type f -print0 | sort -z | xargs -0 sha256sum | sha256sum; }
mkdir -p "$work/keep" && echo precious > "$work/keep/notes.txt"
before_ckpt=$(tree_hash "$work/big/checkpoints"); before_keep=$(tree_hash "$work/keep")
one_line_error "prepare onto an existing folder" "already exists; pass --overwrite" \
    "$bin" prepare --tokenizer byte --output "$work/keep" "$work/data/train.jsonl"
one_line_error "prepare --overwrite onto a folder" "is a folder, not the file" \
    "$bin" prepare --tokenizer byte --output "$work/keep" --overwrite "$work/data/train.jsonl"
one_line_error "export into a checkpoint's step folder" "is inside the checkpoint" \
    "$bin" export "$ckpt" --depth 4 --format hdf5 --out "$ckpt/model.h5" --overwrite
one_line_error "export onto the checkpoints folder" "inside the checkpoint|holds checkpoints" \
    "$bin" export "$ckpt" --depth 4 --format hf --out "$work/big/checkpoints" --overwrite
"$bin" export "$ckpt" --depth 4 --format hdf5 --out "$work/depth4.h5" > /dev/null 2>&1
before_h5=$(sha256sum < "$work/depth4.h5")
one_line_error "export onto an existing .h5" "already exists; pass --overwrite" \
    "$bin" export "$ckpt" --depth 4 --format hdf5 --out "$work/depth4.h5"
if [ "$(tree_hash "$work/big/checkpoints")" = "$before_ckpt" ] && [ "$(tree_hash "$work/keep")" = "$before_keep" ] \
    && [ "$(sha256sum < "$work/depth4.h5")" = "$before_h5" ]; then
    pass "refused writes left the checkpoints, the folder and the export unchanged"
else
    fail "refused writes" "a target changed"
fi
if "$bin" export "$ckpt" --depth 2 --format hdf5 --out "$work/depth4.h5" --overwrite --force > /dev/null 2>&1 \
    && [ "$(sha256sum < "$work/depth4.h5")" != "$before_h5" ]; then
    pass "export --overwrite replaces an earlier export"
else
    fail "export --overwrite" "the file was not replaced"
fi

# The benchmarks run end to end on a small model (smoke only: no timing is asserted).
bench_keys() {  # $1 name, $2 required keys, command…
    local name=$1 keys=$2; shift 2
    local out; out=$("$@" 2>/dev/null); local code=$?
    local missing=""
    for k in $keys; do [[ "$out" == *"\"$k\""* ]] || missing="$missing $k"; done
    if [ $code -eq 0 ] && [ -z "$missing" ]; then pass "$name"; else fail "$name" "exit $code, missing:$missing"; fi
}
bench_keys "bench step --json" "sft_step_s soft_step_s sft_gflops sgemm_peak_gflops sft_peak_fraction flop_ratio soft_sft_ratio sft_peak_rss_mb soft_peak_rss_mb openblas_core threads" \
    "$bin" bench step --config "$work/small.json" --steps 1 --warmup 0 --json
# oneDNN 2.6 multiplies bf16 only from AVX-512 up (emulated without AVX512_BF16).
if grep -qw avx512bw /proc/cpuinfo; then
    bench_keys "bench gemm --json" "rows exits shapes openblas_core onednn_isa bf16_native step_fp32_gemm_s step_bf16_gemm_s step_gemm_speedup rounding_gb_per_s" \
        "$bin" bench gemm --config "$work/small.json" --repeats 1 --json
else
    one_line_error "bench gemm without AVX-512 says so" "oneDNN has no bfloat16 matmul on this CPU" \
        "$bin" bench gemm --config "$work/small.json" --repeats 1
fi
# train.precision bf16: a checkpoint does not depend on the precision (fp32 steps resume in bf16);
# where the CPU has no bf16 arithmetic it is refused with the key named.
if grep -qE ' (avx512_bf16|amx_bf16)( |$)' /proc/cpuinfo; then
    "$bin" bench step --config "$work/small.json" --precision fp32,bf16 --steps 1 --warmup 0 --skip-distill --json > "$work/precisions.json" 2>/dev/null
    if python3 -c "
import json, sys; r = json.load(open(sys.argv[1]))
assert [x['precision'] for x in r['lengths']] == ['fp32', 'bf16'] and all(x['soft_step_s'] > 0 for x in r['lengths'])
c, = r['precisions']; assert c['precision'] == 'bf16' and c['baseline'] == 'fp32'
assert abs(c['soft_time_ratio'] - r['lengths'][1]['soft_step_s'] / r['lengths'][0]['soft_step_s']) < 1e-9" "$work/precisions.json"; then
        pass "bench step --precision fp32,bf16 measures both and gives bf16's ratios to fp32's"
    else
        fail "bench step --precision fp32,bf16 measures both and gives bf16's ratios to fp32's" "$(head -c 300 "$work/precisions.json")"
    fi
    if "$bin" train --config "$work/small.json" --set "log.dir=$work/prec" --set train.max_steps=2 --set checkpoint.every=2 --quiet 2>/dev/null \
       && out=$("$bin" train --config "$work/small.json" --set "log.dir=$work/prec" --set train.max_steps=4 --set checkpoint.every=2 \
                --set train.precision=bf16 --resume auto 2>&1) && grep -q "resumed from" <<< "$out" \
       && [ "$(cat "$work/prec/checkpoints/latest")" = step-00000004 ]; then
        pass "an fp32 checkpoint resumes in bf16"
    else
        fail "an fp32 checkpoint resumes in bf16" "$(tail -n 2 <<< "${out:-}")"
    fi
else
    one_line_error "bf16 without bf16 arithmetic is refused" "train\.precision: bf16 needs a CPU with AVX512_BF16" \
        "$bin" train --config "$work/small.json" --set train.precision=bf16
fi
one_line_error "a bad train.precision" "train\.precision: 'fp8' is not one of: fp32, bf16" "$bin" train --config "$work/small.json" --set train.precision=fp8
one_line_error "a bad bench step --precision" "--precision: 'fp16' is not fp32 or bf16" "$bin" bench step --config "$work/small.json" --precision fp32,fp16
bench_keys "bench checkpoint --json" "checkpoint_write_mb_s plain_write_mb_s write_ratio read_ratio resume_s" \
    "$bin" bench checkpoint --config "$work/small.json" --dir "$work/bench" --repeats 1 --json
bench_keys "bench under mpirun --json" "exposed_comm_fraction bucketed_allreduce_gbps plain_allreduce_gbps" \
    mpirun_local 2 "$bin" bench step --config "$work/small.json" --steps 1 --warmup 0 --json
progress=$("$bin" bench step --config "$work/small.json" --steps 1 --warmup 0 2>&1 >/dev/null)
[[ "$progress" == *"SFT step 1/1"* ]] && pass "bench progress on stderr" || fail "bench progress on stderr" "$progress"

# bench step --sequence-lengths: one result per length (in the order given, at --batch), each
# with positive step times, peak RSS and peak fraction; bad lengths are one line naming the option.
if "$bin" bench step --config "$work/small.json" --sequence-lengths 16,32 --batch 2 --steps 1 --warmup 0 --skip-distill \
        --recompute --json > "$work/sweep.json" 2> "$work/sweep.err" && python3 - "$work/sweep.json" <<'PY'
import json, sys
lengths = json.load(open(sys.argv[1]))["lengths"]
assert [r["sequence_length"] for r in lengths] == [16, 32], lengths
for r in lengths:
    assert r["batch"] == 2, r
    for key in ("sft_step_s", "soft_step_s", "sft_peak_rss_mb", "soft_peak_rss_mb", "sgemm_peak_gflops", "sft_peak_fraction"):
        assert r[key] > 0, (key, r)
    assert "distill_step_s" not in r, r
    assert r["recompute_step_s"] > 0 and r["recompute_peak_rss_mb"] > 0, r
PY
then pass "bench step --sequence-lengths 16,32 --recompute --json: one result per length"; else fail "bench step --sequence-lengths" "$(tail -2 "$work/sweep.err")"; fi
one_line_error "bench --sequence-lengths 0" "--sequence-lengths: '0' is not a sequence length" \
    "$bin" bench step --config "$work/small.json" --sequence-lengths 0
one_line_error "bench --sequence-lengths abc" "--sequence-lengths: 'abc' is not a sequence length" \
    "$bin" bench step --config "$work/small.json" --sequence-lengths 16,abc
one_line_error "bench --sequence-lengths above max_position_embeddings" "--sequence-lengths: 256 exceeds the model's max_position_embeddings 128" \
    "$bin" bench step --config "$work/small.json" --sequence-lengths 16,256
one_line_error "bench --batch 0" "--batch must be at least 1" "$bin" bench step --config "$work/small.json" --batch 0

# scripts/bench_pytorch.py: with torch, one result per (attention, length, mode), and eager
# attention as causal as sdpa (the same first loss); without torch, one line and exit 2.
if python3 -c "import torch, transformers" 2>/dev/null; then
    if python3 scripts/bench_pytorch.py "$work/small.json" --attention sdpa --sequence-lengths 16,32 --steps 1 --warmup 0 \
            > "$work/torch.json" 2> "$work/torch.err" && python3 - "$work/torch.json" <<'PY'
import json, sys
results = json.load(open(sys.argv[1]))["results"]
seen = sorted((r["attention"], r["sequence_length"], r["mode"]) for r in results)
assert seen == [("sdpa", t, m) for t in (16, 32) for m in ("sft", "soft")], seen
assert all(r["step_s"] > 0 and r["peak_rss_mb"] > 0 for r in results), results
PY
    then pass "bench_pytorch.py: one result per length and mode"; else fail "bench_pytorch.py" "$(tail -2 "$work/torch.err")"; fi
    if python3 scripts/bench_pytorch.py "$work/small.json" --attention both --modes soft --steps 1 --warmup 0 \
            > "$work/both.json" 2> "$work/both.err" && python3 - "$work/both.json" <<'PY'
import json, sys
eager, sdpa = json.load(open(sys.argv[1]))["results"]
assert (eager["attention"], sdpa["attention"]) == ("eager", "sdpa"), (eager, sdpa)
assert abs(eager["loss"] - sdpa["loss"]) < 1e-4, (eager["loss"], sdpa["loss"])
PY
    then pass "bench_pytorch.py: eager and sdpa attention give the same loss"; else fail "bench_pytorch.py eager vs sdpa" "$(tail -2 "$work/both.err")"; fi
    # bf16 autocast: the same model and batch, so its first loss is fp32's within bf16's rounding
    # (8-bit mantissa: a relative 2^-8 per rounded operand; 2% covers the model's few layers).
    if python3 scripts/bench_pytorch.py "$work/small.json" --attention sdpa --modes soft --precisions fp32,bf16 --steps 1 --warmup 0 \
            > "$work/autocast.json" 2> "$work/autocast.err" && python3 - "$work/autocast.json" <<'PY'
import json, sys
fp32, bf16 = json.load(open(sys.argv[1]))["results"]
assert (fp32["precision"], bf16["precision"]) == ("fp32", "bf16"), (fp32, bf16)
assert fp32["loss"] != bf16["loss"] and abs(fp32["loss"] - bf16["loss"]) < 0.02 * fp32["loss"], (fp32["loss"], bf16["loss"])
PY
    then pass "bench_pytorch.py --precisions fp32,bf16: autocast's loss is float32's within bf16 rounding"; else fail "bench_pytorch.py --precisions" "$(tail -2 "$work/autocast.err")"; fi
    one_line_error "bench_pytorch.py --precisions fp16" "--precisions: 'fp16' is not a list of fp32, bf16" \
        python3 scripts/bench_pytorch.py "$work/small.json" --precisions fp16
    # bench step --pytorch: every sortedtrain precision against PyTorch's float32, and bf16's also against autocast.
    if grep -qE ' (avx512_bf16|amx_bf16)( |$)' /proc/cpuinfo; then
        if "$bin" bench step --config "$work/small.json" --precision fp32,bf16 --pytorch --steps 1 --warmup 0 --skip-distill --json \
                > "$work/vs-torch.json" 2> "$work/vs-torch.err" && python3 - "$work/vs-torch.json" <<'PY'
import json, sys
rows = json.load(open(sys.argv[1]))["pytorch"]
assert sorted((r["precision"], r["pytorch_precision"]) for r in rows) == [("bf16", "bf16"), ("bf16", "fp32"), ("fp32", "bf16"), ("fp32", "fp32")], rows
assert all(r["soft_time_ratio"] > 0 and r["pytorch_soft_step_s"] > 0 for r in rows), rows
PY
        then pass "bench step --precision fp32,bf16 --pytorch: each precision against PyTorch's fp32 and bf16 autocast"
        else fail "bench step --pytorch" "$(tail -2 "$work/vs-torch.err")"; fi
    else
        echo "skip bench step --pytorch in bf16: no bf16 arithmetic on this CPU"; skipped=$((${skipped:-0} + 1))
    fi
else
    out=$(python3 scripts/bench_pytorch.py "$work/small.json" 2>&1); code=$?
    if [ $code -eq 2 ] && [ "$(printf '%s\n' "$out" | grep -c .)" -eq 1 ] && [[ "$out" == *"needs torch and transformers"* ]]; then
        pass "bench_pytorch.py without torch: one line, exit 2"
    else
        fail "bench_pytorch.py without torch" "exit $code: $out"
    fi
fi

echo "cli: $passed passed, $failed failed${skipped:+, $skipped skipped}"
[ $failed -eq 0 ]
