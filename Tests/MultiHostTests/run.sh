#!/usr/bin/env bash
# Multi-host checks on one machine (issue 24). Two hosts are network namespaces joined by a
# bridge (launch/netns-hosts: each its own address on 10.77.0.0/24 and its own hostname,
# node1 and node2); mpirun runs on node1 and starts node2's ranks from a hostfile through an
# rsh agent that enters node2's namespace; MPI and mpirun's own traffic are TCP over that
# network only (launch/common.sh mpirun_hosts with btl tcp,self: no shared memory at all).
#   - 2 hosts × 2 ranks train exactly as mpirun -np 4 on one host: every step's losses,
#     gradient norm and learning rate, and the final weights and AdamW moments (h5diff);
#   - Tests/MPITests (sortedtrain-mpi-tests beside the binary) pass across the two hosts;
#   - a checkpoint of the two hosts resumes on one host, and one of one host on two hosts
#     (train --resume auto), bit-exact with the straight runs;
#   - a host whose link goes down (its switch port: packets vanish, nothing is closed) ends
#     the whole job, mpirun included, non-zero, within distributed.timeout_s + 10 s, leaves
#     no process on any host, and a line of sortedtrain's names the ranks and their host;
#     with the link back, --resume auto continues bit-exactly;
#   - through a lossy link (5% of frames dropped, 20 ms delay, each way: launch/netns-relay,
#     since this kernel has no sch_netem) 12 steps give the same numbers; the slowdown is shown;
#   - SIGKILL of a random rank at a random moment (saves included), then --resume auto:
#     bit-exact with the straight run (MULTIHOST_KILL_TRIALS trials, 3 by default).
# Needs root (network namespaces); skips otherwise. Every namespace, link and process it
# made is removed on exit, failed or not. Run by launch/test after the release build;
# prints "multihost: N passed, M failed, K skipped". SORTEDTRAIN_BIN: another build (absolute).
set -uo pipefail
cd "$(dirname "$0")/../.."
source launch/common.sh
bin=${SORTEDTRAIN_BIN:-$PWD/.build/release/sortedtrain}
kill_trials=${MULTIHOST_KILL_TRIALS:-3}
timeout_s=5   # distributed.timeout_s of the lost-host run (the others wait 60 s: a loaded
              # machine can hold a collective past 5 s, and only that run measures the bound)
passed=0; failed=0; skipped=0
pass() { echo "ok   $1"; passed=$((passed + 1)); }
fail() { echo "FAIL $1: $2"; failed=$((failed + 1)); }
skip() { echo "skip $1"; skipped=$((skipped + 1)); }
finish() { echo "multihost: $passed passed, $failed failed, $skipped skipped"; [ $failed -eq 0 ]; exit $?; }
tests=("2 hosts × 2 ranks = -np 4 on one host" "the MPI checks across two hosts" "a two-host checkpoint resumes on one host"
       "a one-host checkpoint resumes on two hosts" "a lost host ends the job" "a lossy link (5% loss, 20 ms delay) trains the same numbers"
       "SIGKILL of a random rank, then resume")
skip_all() { for t in "${tests[@]}"; do skip "$t: $1"; done; finish; }

[ "$(id -u)" -eq 0 ] || skip_all "network namespaces need root"
command -v ip >/dev/null && command -v unshare >/dev/null || skip_all "needs iproute2 (ip) and util-linux (unshare)"
command -v h5diff >/dev/null || skip_all "needs h5diff (Debian package hdf5-tools)"
tag=mh$(( $$ % 100000 ))
work=$(mktemp -d)
cleanup() {
    launch/netns-hosts down "$tag" 2>/dev/null
    rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM
if ! launch/netns-hosts up "$tag" 2 2> "$work/up.err"; then
    skip_all "cannot make network namespaces here: $(head -c 200 "$work/up.err")"
fi

# Run under names of their own: another session stopping or killing `mpirun` or
# `sortedtrain` by name must not catch these mid-measurement (mpirun finds orted beside it).
mkdir -p "$work/bin"
ln -s "$(readlink -f "$(command -v mpirun)")" "$work/bin/mhrun"
ln -s "$(readlink -f "$(command -v orted)")" "$work/bin/orted"
ln -s "$bin" "$work/bin/trainer"
trainer=$work/bin/trainer
export MPIRUN=$work/bin/mhrun SORTEDTRAIN_NETWORK=$(launch/netns-hosts subnet) SORTEDTRAIN_BTL=tcp,self
launch/netns-hosts hostfile "$tag" 2 2 > "$work/hosts"
agent="$PWD/launch/netns-hosts rsh $tag"

"$bin" synth --output "$work/data" --train 2000 --validation 10 >/dev/null
# A constant learning rate: a run cut short at any step continues the same numbers whatever
# train.max_steps it was started with.
cat > "$work/small.json" <<JSON
{"model": {"vocab_size": 259, "hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 4,
           "num_attention_heads": 4, "num_key_value_heads": 2, "max_position_embeddings": 128, "tie_word_embeddings": true},
 "data": {"train": "$work/data/train.jsonl", "tokenizer": "byte", "template": "none"},
 "sorted": {"exits": [2, 4]},
 "schedule": {"type": "constant", "warmup_steps": 2},
 "train": {"micro_batch_size": 4, "sequence_length": 96, "max_steps": 40},
 "log": {"dir": "$work/run", "progress": "lines", "every": 1},
 "checkpoint": {"every": 4, "keep": 20},
 "distributed": {"timeout_s": 60}}
JSON

# Every process below runs in the namespaces (mpirun on node1), so `down` ends them all.
two_hosts() {  # $1 log dir, then train options: 2 hosts × 2 ranks
    local dir=$1; shift
    launch/netns-hosts exec "$tag" node1 bash -c 'source launch/common.sh && mpirun_hosts "$@"' _ \
        "$work/hosts" 4 --mca plm_rsh_agent "$agent" "$trainer" train --config "$work/small.json" --set "log.dir=$dir" "$@"
}
one_host() {  # $1 log dir, then train options: mpirun -np 4 on node1 alone (shared memory)
    local dir=$1; shift
    launch/netns-hosts exec "$tag" node1 bash -c 'source launch/common.sh && mpirun_local 4 "$@"' _ \
        "$trainer" train --config "$work/small.json" --set "log.dir=$dir" "$@"
}

# Nothing printed when metrics files $1 and $2 agree exactly on steps $3…$4 (losses per exit,
# exit weights, gradient norm, learning rate, token counts); else the first difference.
metrics_differ() {
    python3 - "$@" <<'PY'
import json, sys
a, b, first, last = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
keys = ("loss", "exit_losses", "exit_weights", "grad_norm", "lr", "loss_tokens", "tokens", "skipped")
def steps(path):
    try:
        lines = [json.loads(line) for line in open(path)]
    except OSError as e:
        return {}
    return {r["step"]: {k: r.get(k) for k in keys} for r in lines if "exit_losses" in r}
A, B = steps(a), steps(b)
for s in range(first, last + 1):
    if s not in A or s not in B:
        print(f"step {s} is missing from {a if s not in A else b}"); break
    if A[s] != B[s]:
        print(f"step {s}: {A[s]} against {B[s]}"); break
PY
}
# Nothing printed when checkpoints $1 and $2 hold the same weights and AdamW moments.
weights_differ() {
    for group in /model /optimizer; do
        h5diff -q --follow-symlinks "$1/checkpoint.h5" "$2/checkpoint.h5" "$group" "$group" > /dev/null 2>&1 \
            || echo "$group differs between $1 and $2"
    done
}
# Both of the above for run $1 against run $2 over steps $3…$4, and their step-$4 checkpoints.
runs_differ() {
    local last; last=$(printf 'step-%08d' "$4")
    metrics_differ "$1/metrics.jsonl" "$2/metrics.jsonl" "$3" "$4"
    if [ -d "$1/checkpoints/$last" ] && [ -d "$2/checkpoints/$last" ]; then
        weights_differ "$1/checkpoints/$last" "$2/checkpoints/$last"
    else
        echo "no $last checkpoint in $1 or $2"
    fi
}
# A fresh run folder $2 whose checkpoints are only run $1's step $3 (for --resume auto).
seed_from() {
    local ckpt; ckpt=$(printf 'step-%08d' "$3")
    mkdir -p "$2/checkpoints" && cp -r "$1/checkpoints/$ckpt" "$2/checkpoints/" && echo "$ckpt" > "$2/checkpoints/latest"
}
# Waits (up to 60 s) until metrics file $1 has at least $2 lines.
wait_for_steps() {
    for _ in $(seq 600); do
        [ "$( { wc -l < "$1"; } 2>/dev/null || echo 0)" -ge "$2" ] && return 0
        sleep 0.1
    done
    return 1
}
# Waits (up to $1 s) until no process is left in the namespaces; true when none is.
namespaces_empty() {
    for _ in $(seq $(( $1 * 10 ))); do
        [ -z "$(launch/netns-hosts pids "$tag")" ] && return 0
        sleep 0.1
    done
    return 1
}
leftovers() { launch/netns-hosts pids "$tag" | xargs -r ps -o pid=,comm= -p | tr '\n' ' '; }
# Ends whatever a failed check left running in the namespaces, so the next check starts clean.
reap() { for pid in $(launch/netns-hosts pids "$tag"); do kill -KILL "$pid" 2>/dev/null; done; namespaces_empty 5; }

# 1. The straight runs: two hosts, and one host.
t=$SECONDS
two_hosts "$work/a" > "$work/a.out" 2>&1; code_a=$?
t_a=$((SECONDS - t)); t=$SECONDS
one_host "$work/b" > "$work/b.out" 2>&1; code_b=$?
t_b=$((SECONDS - t))
name="2 hosts × 2 ranks = -np 4 on one host"
if [ $code_a -ne 0 ] || [ $code_b -ne 0 ]; then
    fail "$name" "exit $code_a (two hosts), $code_b (one host): $(tail -n 3 "$work/a.out" "$work/b.out" | head -c 600)"
elif [ "$(launch/netns-hosts exec "$tag" node2 hostname)" != node2 ]; then
    fail "$name" "node2 does not have its own hostname"
elif diff=$(runs_differ "$work/a" "$work/b" 1 40) && [ -n "$diff" ]; then
    fail "$name" "$diff"
else
    pass "$name: 40 steps, every loss and the final weights and moments identical (two hosts ${t_a} s, one host ${t_b} s)"
fi

# The multi-rank checks of Tests/MPITests across the two hosts (the binary beside $bin).
name="the MPI checks across two hosts"
mpi_tests=$(dirname "$bin")/sortedtrain-mpi-tests
if [ ! -x "$mpi_tests" ]; then
    skip "$name: $mpi_tests is not built"
else
    t=$SECONDS
    launch/netns-hosts exec "$tag" node1 bash -c 'source launch/common.sh && mpirun_hosts "$@"' _ \
        "$work/hosts" 4 --mca plm_rsh_agent "$agent" "$mpi_tests" > "$work/mpi.out" 2>&1; code=$?
    summary=$(sed -n 's/^mpi: \([0-9]*\) passed, \([0-9]*\) failed\(, [0-9]* skipped\)\{0,1\}$/\1 \2/p' "$work/mpi.out")
    if [ $code -eq 0 ] && [ -n "$summary" ] && [ "${summary#* }" = 0 ]; then
        pass "$name: ${summary% *} passed at np 4 over TCP ($((SECONDS - t)) s)"
    else
        fail "$name" "exit $code: $(grep -E '^FAIL|unexpected' "$work/mpi.out" | head -n 3) $(tail -n 2 "$work/mpi.out" | head -c 300)"
    fi
fi

# 2. Resume across topologies from step 20.
name="a two-host checkpoint resumes on one host"
t=$SECONDS
seed_from "$work/a" "$work/c" 20
one_host "$work/c" --resume auto > "$work/c.out" 2>&1; code=$?
if [ $code -ne 0 ] || ! grep -q "resumed from $work/c/checkpoints/step-00000020" "$work/c.out"; then
    fail "$name" "exit $code: $(tail -n 3 "$work/c.out" | head -c 400)"
elif diff=$(runs_differ "$work/c" "$work/a" 21 40) && [ -n "$diff" ]; then
    fail "$name" "$diff"
else
    pass "$name: steps 21–40 and the final weights and moments as the straight run ($((SECONDS - t)) s)"
fi
name="a one-host checkpoint resumes on two hosts"
t=$SECONDS
seed_from "$work/b" "$work/d" 20
two_hosts "$work/d" --resume auto > "$work/d.out" 2>&1; code=$?
if [ $code -ne 0 ] || ! grep -q "resumed from $work/d/checkpoints/step-00000020" "$work/d.out"; then
    fail "$name" "exit $code: $(tail -n 3 "$work/d.out" | head -c 400)"
elif diff=$(runs_differ "$work/d" "$work/b" 21 40) && [ -n "$diff" ]; then
    fail "$name" "$diff"
else
    pass "$name: steps 21–40 and the final weights and moments as the straight run ($((SECONDS - t)) s)"
fi

# 3. A lost host: node2's switch port goes down after step 10. Its packets vanish; no
# connection is closed, so only timeouts and keepalive probes can tell.
name="a lost host ends the job"
t=$SECONDS
two_hosts "$work/lost" --set train.max_steps=100000 --set distributed.timeout_s=$timeout_s > "$work/lost.out" 2>&1 &
job=$!
if ! wait_for_steps "$work/lost/metrics.jsonl" 10; then
    fail "$name" "training did not start: $(tail -n 3 "$work/lost.out" | head -c 400)"
else
    start=$(date +%s%N)
    launch/netns-hosts link "$tag" node2 down
    limit=$((timeout_s + 10))
    for _ in $(seq $(( (limit + 30) * 10 ))); do kill -0 $job 2>/dev/null || break; sleep 0.1; done
    elapsed=$(( ($(date +%s%N) - start) / 1000000 ))
    seconds=$(printf '%d.%01d' $((elapsed / 1000)) $((elapsed % 1000 / 100)))
    if kill -0 $job 2>/dev/null; then
        fail "$name" "still running ${seconds} s after node2's link went down; left: $(leftovers); output: $(grep -v '^step ' "$work/lost.out" | tail -n 8 | head -c 800)"
    else
        wait $job; lost_code=$?
        ours='^(sortedtrain: |Error: ).*ranks 2, 3 on node2.*(node2 unreachable|lost communication with node2)'
        line=$(grep -Eh -m1 "$ours" "$work/lost.out")
        if [ $lost_code -eq 0 ]; then
            fail "$name" "exit 0 after ${seconds} s"
        elif [ $elapsed -gt $((limit * 1000)) ]; then
            fail "$name" "ended after ${seconds} s, more than distributed.timeout_s + 10 = $limit s; output: $(grep -v '^step ' "$work/lost.out" | tail -n 12 | head -c 1200)"
        elif ! namespaces_empty $(( limit + 2 - elapsed / 1000 )); then
            fail "$name" "processes left $((limit + 2)) s after node2's link went down: $(leftovers)"
        elif [ -z "$line" ]; then
            fail "$name" "no line names ranks 2, 3 and node2: $(grep -v '^step ' "$work/lost.out" | tail -n 6 | head -c 600)"
        else
            launch/netns-hosts link "$tag" node2 up
            two_hosts "$work/lost" --resume auto > "$work/lost-resume.out" 2>&1; code=$?
            from=$(sed -n 's/^resumed from .*step-0*\([0-9]*\) at step.*/\1/p' "$work/lost-resume.out")
            if [ $code -ne 0 ] || [ -z "$from" ]; then
                fail "$name" "link down: exit $code after ${seconds} s, but --resume auto failed: $(tail -n 3 "$work/lost-resume.out" | head -c 400)"
            elif diff=$(runs_differ "$work/lost" "$work/a" 1 40) && [ -n "$diff" ]; then
                fail "$name" "resumed from step $from: $diff"
            else
                pass "$name: link down → job ended (exit $lost_code) after ${seconds} s (limit $limit s), no process left on either host by $((limit + 2)) s, '$(head -c 200 <<< "$line")'; with the link back, --resume auto from step $from to 40 as the straight run ($((SECONDS - t)) s in all)"
            fi
        fi
    fi
fi
launch/netns-hosts link "$tag" node2 up
reap

# 4. A lossy, slow link: node2's cable through a relay that drops 5% of the frames and delays
# the rest by 20 ms, each way (this kernel has no sch_netem). 12 steps must give the losses,
# weights and moments of the clean run; the slowdown is reported (mean step time).
name="a lossy link (5% loss, 20 ms delay) trains the same numbers"
t=$SECONDS
if ! launch/netns-hosts impair "$tag" node2 0.05 20 2> "$work/impair.err"; then
    fail "$name" "could not put node2's cable through the relay: $(head -c 300 "$work/impair.err")"
else
    two_hosts "$work/lossy" --set train.max_steps=12 > "$work/lossy.out" 2>&1; code=$?
    wall=$((SECONDS - t))
    launch/netns-hosts impair "$tag" node2 off
    if [ $code -ne 0 ]; then
        fail "$name" "exit $code: $(tail -n 3 "$work/lossy.out" | head -c 400)"
    elif diff=$(runs_differ "$work/lossy" "$work/a" 1 12) && [ -n "$diff" ]; then
        fail "$name" "$diff"
    else
        slowdown=$(python3 - "$work/lossy/metrics.jsonl" "$work/a/metrics.jsonl" <<'PY'
import json, sys
def mean_step(path):
    steps = [json.loads(line) for line in open(path)]
    times = [r["step_s"] for r in steps if "step_s" in r and 2 <= r["step"] <= 12]
    return sum(times) / len(times)
lossy, clean = mean_step(sys.argv[1]), mean_step(sys.argv[2])
print(f"mean step {lossy:.3f} s against {clean:.3f} s on a clean link ({lossy / clean:.1f}×)")
PY
)
        pass "$name: 12 steps, losses, weights and moments as on a clean link; $slowdown, ${wall} s in all"
    fi
fi
reap

# 5. SIGKILL of a random rank at a random moment, saves included (every 4 steps), then
# --resume auto on the two hosts: bit-exact with the straight run. Every trial runs; the
# check passes when all of them resumed exactly.
name="SIGKILL of a random rank, then resume"
kill_trial() {  # $1 trial number; prints why it failed, nothing when it resumed exactly
    local dir=$work/kill$1 rank victim pid job code at attempt
    for attempt in 1 2 3; do
        # A random step of the 40 (1–36), then a random moment within it (0–49 ms; a step
        # takes 30–70 ms here), so the kill lands before the run ends; if it ended anyway,
        # draw again.
        rank=$((SRANDOM % 4)); victim=""
        rm -rf "$dir"
        two_hosts "$dir" > "$dir.out" 2>&1 &
        job=$!
        wait_for_steps "$dir/metrics.jsonl" $((1 + SRANDOM % 36)) || { echo "training did not start"; return; }
        sleep "0.0$((SRANDOM % 5))$((SRANDOM % 10))"
        for pid in $(launch/netns-hosts pids "$tag"); do
            { tr '\0' '\n' < "/proc/$pid/environ"; } 2>/dev/null | grep -qx "OMPI_COMM_WORLD_RANK=$rank" \
                && [ "$(cat "/proc/$pid/comm" 2>/dev/null)" = trainer ] && victim=$pid && break
        done
        [ -n "$victim" ] && break
        wait $job
    done
    [ -n "$victim" ] || { echo "three runs ended before rank $rank could be killed"; return; }
    at=$( { wc -l < "$dir/metrics.jsonl"; } 2>/dev/null || echo 0)
    kill -KILL "$victim"
    for _ in $(seq 600); do kill -0 $job 2>/dev/null || break; sleep 0.1; done
    kill -0 $job 2>/dev/null && { echo "the job did not end 60 s after rank $rank was killed"; return; }
    wait $job; code=$?
    namespaces_empty 5 || { echo "processes left after rank $rank was killed: $(leftovers)"; return; }
    ls -d "$dir"/checkpoints/*.tmp > /dev/null 2>&1 && saves=$((saves + 1))
    two_hosts "$dir" --resume auto > "$dir-resume.out" 2>&1 \
        || { echo "resume failed: $(grep -v '^step ' "$dir-resume.out" | grep -v 'help message\|help / error' | tail -n 4 | head -c 600)"; return; }
    local diff; diff=$(runs_differ "$dir" "$work/a" 1 40)
    [ -z "$diff" ] || { echo "rank $rank killed after step $at (exit $code): $diff"; return; }
    killed[$rank]=$(( ${killed[$rank]:-0} + 1 ))
    steps+=("$at")
}
t=$SECONDS
ok=0; first_failure=""; saves=0; killed=(); steps=()
for trial in $(seq "$kill_trials"); do
    kill_trial "$trial" > "$work/why" 2>&1
    if [ -s "$work/why" ]; then
        [ -n "$first_failure" ] || first_failure="trial $trial: $(head -c 600 "$work/why")"
        reap
    else
        ok=$((ok + 1))
    fi
    rm -rf "$work/kill$trial"
done
reap
summary="rank 0/1/2/3 killed and resumed exactly ${killed[0]:-0}/${killed[1]:-0}/${killed[2]:-0}/${killed[3]:-0} times, after steps $(printf '%s\n' "${steps[@]:-0}" | sort -n | head -1)–$(printf '%s\n' "${steps[@]:-0}" | sort -n | tail -1), $saves during a save"
if [ -z "$first_failure" ]; then
    pass "$name: $ok of $kill_trials trials resumed bit-exact; $summary ($((SECONDS - t)) s)"
else
    fail "$name" "$ok of $kill_trials trials resumed bit-exact ($summary); first failure, $first_failure"
fi

finish
