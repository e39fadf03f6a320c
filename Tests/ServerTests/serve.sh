#!/usr/bin/env bash
# End-to-end checks of `sortedtrain serve`, with curl on a free loopback port: every
# endpoint, streaming, the per-request depth (an answer at NAME@2 equals `generate --depth 2`
# greedy; self-speculation equals full depth), stop strings, the bad inputs (malformed JSON,
# an empty body, NaN, wrong types, unknown model, max_tokens ≤ 0 or absurd, n > 1, a prompt
# longer than the context, a 100 MB body, a client that stalls mid-request), a full queue,
# the time limit, disconnecting clients, the chat page in headless Chromium, the official
# `openai` client (skips without it), and a clean stop on SIGTERM. A small SoFT model (exits
# 2 and 4) is trained and calibrated first. Prints "serve: N passed, M failed, K skipped".
set -uo pipefail
cd "$(dirname "$0")/../.."
source launch/common.sh
bin=${SORTEDTRAIN_BIN:-$PWD/.build/release/sortedtrain}
work=$(mktemp -d)
servers=()
cleanup() {
    for pid in "${servers[@]}"; do kill -9 "$pid" 2>/dev/null; done
    rm -rf "$work"
}
trap cleanup EXIT
[ -n "${KEEP:-}" ] && trap - EXIT
passed=0; failed=0; skipped=0
pass() { echo "ok   $1"; passed=$((passed + 1)); }
fail() { echo "FAIL $1: $2"; failed=$((failed + 1)); }
skip() { echo "skip $1: $2"; skipped=$((skipped + 1)); }
finish() { echo "serve: $passed passed, $failed failed, $skipped skipped"; [ $failed -eq 0 ]; exit $?; }

"$bin" synth --output "$work/data" --train 2000 --validation 200 --seed 3 >/dev/null
cat > "$work/run.json" <<JSON
{"model": {"vocab_size": 259, "hidden_size": 48, "intermediate_size": 96, "num_hidden_layers": 4,
           "num_attention_heads": 4, "num_key_value_heads": 2, "max_position_embeddings": 128, "tie_word_embeddings": true},
 "data": {"train": "$work/data/train.jsonl", "validation": "$work/data/validation.jsonl", "tokenizer": "byte", "template": "none"},
 "sorted": {"exits": [2, 4]},
 "optim": {"lr": 3e-3},
 "train": {"micro_batch_size": 8, "sequence_length": 64, "max_steps": 60, "seed": 5},
 "log": {"dir": "$work/run", "progress": "lines", "every": 1000},
 "checkpoint": {"every": 60, "keep": 1}}
JSON
if ! mpirun_local 2 "$bin" train --config "$work/run.json" > "$work/train.out" 2>&1 \
   || ! "$bin" calibrate "$work/run/checkpoints" --data "$work/data/validation.jsonl" --prompts 32 > "$work/calibrate.out" 2>&1; then
    fail "train and calibrate the model the server checks use" "$(tail -n 3 "$work/train.out" "$work/calibrate.out")"
    finish
fi
ckpt=$work/run/checkpoints

# start_server NAME ARGS...: starts `serve` on a free port; sets $url (empty on failure).
start_server() {
    local name=$1; shift
    "$bin" serve "$ckpt" --port 0 --name tiny "$@" > "$work/$name.out" 2> "$work/$name.err" &
    servers+=($!)
    pid=$!
    url=""
    for _ in $(seq 100); do
        url=$(grep -o 'at http://[0-9.]*:[0-9]*' "$work/$name.err" | head -1 | cut -c4-)
        [ -n "$url" ] && return 0
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.2
    done
    fail "$name: the server started" "$(tail -2 "$work/$name.err")"
    return 1
}
# post PATH JSON: prints "STATUS BODY" (bounded in time).
post() {
    local out; out=$(mktemp -p "$work")
    curl -s -m 60 -o "$out" -w '%{http_code}' "$url$1" -H 'Content-Type: application/json' -d "$2"; echo " $(cat "$out")"
    rm -f "$out"
}
# field JSON PYTHON-EXPRESSION-ON-d
field() { python3 -c "import json,sys; d=json.loads(sys.argv[1]); print($2)" "$1" 2>/dev/null; }
q="Sort the letters of qwertyuiop alphabetically."
chat() { echo "{\"model\": \"$1\", \"messages\": [{\"role\": \"user\", \"content\": \"$q\"}], \"temperature\": 0, \"max_tokens\": ${2:-20}${3:+, $3}}"; }

start_server main --parallel 4 || finish
main_pid=$pid

# Endpoints.
check_status() { # NAME EXPECTED-STATUS RESPONSE [GREP]
    local status=${3%% *} body=${3#* }
    if [ "$status" = "$2" ] && { [ -z "${4:-}" ] || grep -q -- "$4" <<< "$body"; }; then pass "$1"; else fail "$1" "HTTP $status: ${body:0:200}"; fi
}
check_status "GET /health" 200 "$(curl -s -m 10 -o "$work/body" -w '%{http_code}' "$url/health"; echo " $(cat "$work/body")")" '"ok"'
models=$(curl -s -m 10 "$url/v1/models")
if [ "$(field "$models" '" ".join(m["id"] for m in d["data"])')" = "tiny@2 tiny tiny@auto" ]; then
    pass "GET /v1/models lists tiny@2, tiny and tiny@auto"
else
    fail "GET /v1/models" "$models"
fi
page=$(curl -s -m 10 "$url/")
if grep -q '<html' <<< "$page" && ! grep -qE '(src|href)="https?://' <<< "$page"; then pass "GET / is the chat page, with no external assets"; else fail "GET /" "${page:0:200}"; fi

# The per-request depth: tiny@2 greedy equals generate --depth 2; sortedtrain.depth the same.
"$bin" generate "$ckpt" --prompt "$q" --depth 2 --max-new-tokens 20 > "$work/gen2.txt" 2>/dev/null
"$bin" generate "$ckpt" --prompt "$q" --max-new-tokens 20 > "$work/gen4.txt" 2>/dev/null
r=$(post /v1/chat/completions "$(chat tiny@2)")
if [ "$(field "${r#* }" 'd["choices"][0]["message"]["content"]')" = "$(cat "$work/gen2.txt")" ] \
   && [ "$(field "${r#* }" 'float(d["sortedtrain"]["layers_per_token"]) == 2')" = True ]; then
    pass "chat at tiny@2 answers exactly what generate --depth 2 prints, at 2 layers per token"
else
    fail "chat at tiny@2 = generate --depth 2" "${r:0:300} vs $(cat "$work/gen2.txt")"
fi
r=$(post /v1/chat/completions "$(chat tiny 20 '"sortedtrain": {"depth": 2}')")
[ "$(field "${r#* }" 'd["choices"][0]["message"]["content"]')" = "$(cat "$work/gen2.txt")" ] \
    && pass "sortedtrain {\"depth\": 2} equals tiny@2" || fail "sortedtrain depth" "${r:0:300}"
r=$(post /v1/chat/completions "$(chat tiny 20 '"sortedtrain": {"draft_depth": 2, "speculate": 3}')")
[ "$(field "${r#* }" 'd["choices"][0]["message"]["content"]')" = "$(cat "$work/gen4.txt")" ] \
    && pass "self-speculative greedy (draft 2) equals full-depth generate" || fail "speculative" "${r:0:300} vs $(cat "$work/gen4.txt")"
r=$(post /v1/chat/completions "$(chat tiny@auto)")
lpt=$(field "${r#* }" 'd["sortedtrain"]["layers_per_token"]')
if [ "${r%% *}" = 200 ] && python3 -c "import sys; sys.exit(not 2 <= float('$lpt') <= 4)" 2>/dev/null; then
    pass "tiny@auto answers by early exit ($lpt layers per token)"
else
    fail "tiny@auto" "${r:0:300}"
fi
r=$(post /v1/completions "{\"model\": \"tiny\", \"prompt\": \"abc\", \"max_tokens\": 5, \"temperature\": 0.8, \"seed\": 7}")
r2=$(post /v1/completions "{\"model\": \"tiny\", \"prompt\": \"abc\", \"max_tokens\": 5, \"temperature\": 0.8, \"seed\": 7}")
if [ "${r%% *}" = 200 ] && [ "$(field "${r#* }" 'd["choices"][0]["text"]')" = "$(field "${r2#* }" 'd["choices"][0]["text"]')" ] \
   && [ "$(field "${r#* }" 'd["usage"]["completion_tokens"] <= 5 and d["object"] == "text_completion"')" = True ]; then
    pass "/v1/completions samples reproducibly with a seed, within max_tokens"
else
    fail "/v1/completions" "${r:0:300} / ${r2:0:200}"
fi

# Streaming: the deltas add up to the whole answer; a last chunk with usage; [DONE].
curl -s -N -m 60 "$url/v1/chat/completions" -d "$(chat tiny@2 20 '"stream": true, "stream_options": {"include_usage": true}')" > "$work/sse"
streamed=$(python3 - "$work/sse" <<'PY' 2>&1
import json, sys
events = [l[6:] for l in open(sys.argv[1]).read().split("\n") if l.startswith("data: ")]
assert events[-1] == "[DONE]", events[-1]
chunks = [json.loads(e) for e in events[:-1]]
text = "".join(c["choices"][0]["delta"].get("content", "") for c in chunks if c["choices"])
finish = [c for c in chunks if c["choices"] and c["choices"][0]["finish_reason"]]
assert len(finish) == 1 and "usage" in finish[0], finish
assert chunks[-1]["choices"] == [] and chunks[-1]["usage"]["completion_tokens"] > 0
print(text)
PY
)
[ "$streamed" = "$(cat "$work/gen2.txt")" ] && pass "a streamed answer's deltas add up to the whole answer; usage; [DONE]" \
    || fail "streaming" "$streamed"

# Stop strings end the answer before them (a seeded sample, long enough to cut).
for seed in 1 2 3 4 5 6 7 8; do
    sample="{\"model\": \"tiny\", \"prompt\": \"Sort\", \"max_tokens\": 40, \"temperature\": 0.8, \"top_k\": 8, \"seed\": $seed"
    r=$(post /v1/completions "$sample}")
    full=$(field "${r#* }" 'd["choices"][0]["text"]')
    [ ${#full} -ge 8 ] && LC_ALL=C grep -qx '[[:print:]]*' <<< "$full" && break
done
stopword=${full:4:2}
if [ ${#full} -ge 8 ]; then
    r=$(post /v1/completions "$sample, \"stop\": [\"zzz\", \"$stopword\"]}")
    got=$(field "${r#* }" 'd["choices"][0]["text"] + "|" + d["choices"][0]["finish_reason"]')
    expected="${full%%"$stopword"*}|stop"
    [ "$got" = "$expected" ] && pass "a stop string ends the answer before it ('$stopword' in '$full')" || fail "stop string '$stopword'" "$got vs $expected"
else
    fail "stop strings" "no seeded sample of 8 characters or more to cut ('$full')"
fi

# Bad input: an OpenAI-style error with the right status, and the server goes on.
bad() { # NAME STATUS BODY
    local r; r=$(post /v1/chat/completions "$3")
    local kind; kind=$(field "${r#* }" 'd["error"]["type"] + ":" + str(bool(d["error"]["message"]))')
    if [ "${r%% *}" = "$2" ] && [ "${kind#*:}" = True ]; then pass "$1 → $2 ($(field "${r#* }" 'd["error"]["message"]' | cut -c1-70))"
    else fail "$1" "${r:0:300}"; fi
}
bad "malformed JSON" 400 '{"model": "tiny", "messages": ['
bad "an empty body" 400 ''
bad "a NaN temperature" 400 '{"model": "tiny", "messages": [{"role": "user", "content": "x"}], "temperature": NaN}'
bad "a temperature of the wrong type" 400 '{"model": "tiny", "messages": [{"role": "user", "content": "x"}], "temperature": "hot"}'
bad "messages of the wrong type" 400 '{"model": "tiny", "messages": "hello"}'
bad "an unknown role" 400 '{"model": "tiny", "messages": [{"role": "wizard", "content": "x"}]}'
bad "an unknown model" 404 '{"model": "gpt-4", "messages": [{"role": "user", "content": "x"}]}'
bad "a depth the model does not have" 404 '{"model": "tiny@9", "messages": [{"role": "user", "content": "x"}]}'
bad "max_tokens 0" 400 '{"model": "tiny", "messages": [{"role": "user", "content": "x"}], "max_tokens": 0}'
bad "max_tokens -1" 400 '{"model": "tiny", "messages": [{"role": "user", "content": "x"}], "max_tokens": -1}'
bad "an absurd max_tokens" 400 '{"model": "tiny", "messages": [{"role": "user", "content": "x"}], "max_tokens": 1000000000}'
bad "n = 5" 400 '{"model": "tiny", "messages": [{"role": "user", "content": "x"}], "n": 5}'
bad "a bad sortedtrain field" 400 '{"model": "tiny", "messages": [{"role": "user", "content": "x"}], "sortedtrain": {"depth": "deep"}}'
long=$(head -c 400 /dev/zero | tr '\0' a)
bad "a prompt longer than the context" 400 "{\"model\": \"tiny\", \"messages\": [{\"role\": \"user\", \"content\": \"$long\"}]}"
head -c 100000000 /dev/zero | tr '\0' ' ' > "$work/huge"
status=$(curl -s -m 60 -o "$work/body" -w '%{http_code}' "$url/v1/chat/completions" -H 'Content-Type: application/json' --data-binary @"$work/huge")
rm -f "$work/huge"
[ "$status" = 413 ] && pass "a 100 MB body → 413" || fail "a 100 MB body" "HTTP $status $(head -c 200 "$work/body")"
r=$(curl -s -m 10 -o /dev/null -w '%{http_code}' "$url/v1/nothing")
[ "$r" = 404 ] && pass "an unknown path → 404" || fail "an unknown path" "HTTP $r"

# A client that stalls mid-request holds no one up; one that disconnects mid-stream is let go.
host=${url#http://}
exec 7<>"/dev/tcp/${host%:*}/${host#*:}"
printf 'POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Length: 500\r\n\r\n{"mod' >&7
for i in 1 2 3; do
    curl -s -N -m 0.3 "$url/v1/chat/completions" -d "$(chat tiny 100 '"stream": true')" > /dev/null 2>&1
done
r=$(post /v1/chat/completions "$(chat tiny@2)")
[ "$(field "${r#* }" 'd["choices"][0]["message"]["content"]')" = "$(cat "$work/gen2.txt")" ] \
    && pass "a stalled client and three that hung up mid-stream do not stop the next answer" || fail "after stalled/disconnected clients" "${r:0:200}"
exec 7>&-

# Concurrent requests at several depths all answer, each as it would alone.
clients=()
for i in $(seq 8); do
    m=$([ $((i % 2)) = 0 ] && echo tiny@2 || echo tiny)
    (post /v1/chat/completions "$(chat $m)" > "$work/concurrent.$i") &
    clients+=($!)
done
wait "${clients[@]}"
ok=1
for i in $(seq 8); do
    expected=$([ $((i % 2)) = 0 ] && cat "$work/gen2.txt" || cat "$work/gen4.txt")
    r=$(cat "$work/concurrent.$i")
    [ "$(field "${r#* }" 'd["choices"][0]["message"]["content"]')" = "$expected" ] || { ok=0; fail "concurrent request $i" "${r:0:200}"; }
done
[ $ok = 1 ] && pass "8 concurrent requests at depths 2 and 4 each answer as they would alone"

metrics=$(curl -s -m 10 "$url/metrics")
if grep -q 'sortedtrain_requests_total{endpoint="/v1/chat/completions",status="400"}' <<< "$metrics" \
   && grep -q 'sortedtrain_time_to_first_token_seconds_bucket{le="+Inf"}' <<< "$metrics" \
   && grep -q 'sortedtrain_token_latency_seconds_count' <<< "$metrics" \
   && grep -q 'sortedtrain_tokens_by_depth_total{depth="2"}' <<< "$metrics"; then
    pass "GET /metrics: requests by status, latency histograms, tokens by depth"
else
    fail "GET /metrics" "$(head -5 <<< "$metrics")"
fi

# The chat page in headless Chromium; the official openai client.
Tests/ServerTests/chat-page.sh "$url" tiny@2 "$work/chat-page.png" > "$work/page.out" 2>&1
cat "$work/page.out"
read -r p f s < <(sed -n 's/^chat-page: \([0-9]*\) passed, \([0-9]*\) failed, \([0-9]*\) skipped$/\1 \2 \3/p' "$work/page.out")
passed=$((passed + ${p:-0})); failed=$((failed + ${f:-1})); skipped=$((skipped + ${s:-0}))
if python3 -c "import openai" 2>/dev/null; then
    if python3 Tests/ServerTests/openai_client.py "$url" tiny@2 "$(cat "$work/gen2.txt")" > "$work/openai.out" 2>&1; then
        pass "the openai client: $(tail -1 "$work/openai.out")"
    else
        fail "the openai client" "$(tail -3 "$work/openai.out")"
    fi
else
    skip "the openai client" "python3 has no openai package"
fi

# SIGTERM stops the server cleanly.
kill -TERM "$main_pid"
for _ in $(seq 50); do kill -0 "$main_pid" 2>/dev/null || break; sleep 0.2; done
if ! kill -0 "$main_pid" 2>/dev/null && wait "$main_pid" && grep -q "server stopped" "$work/main.err"; then
    pass "SIGTERM stops the server cleanly (exit 0)"
else
    fail "SIGTERM" "$(tail -2 "$work/main.err")"
fi

# A full queue answers 503; the time limit 504.
if start_server busy --parallel 1 --queue 1; then
    clients=()
    # Long answers (ignore_eos), so the one slot stays busy while the others arrive.
    for i in $(seq 12); do (post /v1/chat/completions "$(chat tiny 100 '"ignore_eos": true')" > "$work/busy.$i") & clients+=($!); done
    wait "${clients[@]}"
    if grep -q '^503 .*server_busy' "$work"/busy.* && grep -q '^200 ' "$work"/busy.*; then
        pass "a full queue answers 503 (server_busy) and serves the rest"
    else
        fail "full queue" "$(head -c 100 "$work"/busy.*)"
    fi
    kill -TERM "$pid"
fi
if start_server gone --parallel 1; then
    clients=()
    # 24 answers of 80 tokens through one slot take far longer than the 30 ms the clients wait.
    for i in $(seq 24); do
        curl -s -m 0.03 -o /dev/null "$url/v1/chat/completions" -d "$(chat tiny 80 '"ignore_eos": true')" & clients+=($!)
    done
    wait "${clients[@]}"
    sleep 1
    r=$(post /v1/chat/completions "$(chat tiny@2)")
    gone=$(grep -c "cancelled: the client went away" "$work/gone.err")
    if [ "$gone" -ge 1 ] && [ "$(field "${r#* }" 'd["choices"][0]["message"]["content"]')" = "$(cat "$work/gen2.txt")" ]; then
        pass "clients that hang up before their answer cancel its work ($gone of 24 logged), and the server answers the next"
    else
        fail "disconnecting clients" "$gone cancelled; $(tail -n 2 "$work/gone.err")"
    fi
    kill -TERM "$pid"
fi
if start_server cut --truncate left; then
    r=$(post /v1/chat/completions "{\"model\": \"tiny\", \"messages\": [{\"role\": \"user\", \"content\": \"$long\"}], \"max_tokens\": 4}")
    if [ "${r%% *}" = 200 ] && grep -q "keeping its last 127 (--truncate left)" "$work/cut.err"; then
        pass "--truncate left answers a prompt longer than the context from its last tokens, and logs it"
    else
        fail "--truncate left" "${r:0:200} $(tail -n 1 "$work/cut.err")"
    fi
    kill -TERM "$pid"
fi
if start_server slow --timeout 0.001; then
    # 80 tokens (ignore_eos) take far longer than the 1 ms limit, however fast the build.
    bad "an answer past the time limit" 504 "$(chat tiny 100 '"ignore_eos": true')"
    kill -TERM "$pid"
fi
finish
