#!/usr/bin/env bash
# launch/study --quick: the study pipeline end to end on SmolLM2 for a few steps, with the quick
# arms sft, soft and soft-last-distill (training each, evaluating every exit of them and of the
# base model, the generation benchmark, the figures and the document written from their JSON by
# scripts/write_study_results.py). Skips when the SmolLM2 GGUF is absent (launch/fetch-test-assets
# fetches it). Prints "study: N passed, M failed[, K skipped]".
set -uo pipefail
cd "$(dirname "$0")/../.."
gguf=vendor-data/SmolLM2-135M-Instruct.Q4_1.gguf
if [ ! -s "$gguf" ]; then
    echo "skip launch/study --quick: $gguf is absent"
    echo "study: 0 passed, 0 failed, 1 skipped"; exit 0
fi
passed=0; failed=0
check() { if eval "$2"; then echo "ok   $1"; passed=$((passed + 1)); else echo "FAIL $1"; failed=$((failed + 1)); fi; }
out=runs/study-quick; doc=$out/results.md; study=$out/study
arms="sft soft soft-last-distill"
export STUDY_DOC=$doc STUDY_ARMS=$arms
rm -rf "$out"
launch/study --quick > /tmp/study-quick.$$.log 2>&1; code=$?
check "launch/study --quick exits 0" "[ $code = 0 ] || { tail -5 /tmp/study-quick.$$.log; false; }"

# The rows of the first Markdown table after a heading of the document: [[cell, …], …], header first.
table_py='
import os, sys
def table(heading):
    text = open(os.environ["STUDY_DOC"]).read()
    assert heading in text, "no " + heading
    lines = text.split(heading, 1)[1].splitlines()
    start = next(i for i, l in enumerate(lines) if l.startswith("|"))
    rows = []
    for l in lines[start:]:
        if not l.startswith("|"):
            break
        rows.append([c.strip() for c in l.split("|")[1:-1]])
    assert rows[1] == ["---"] * len(rows[0]), rows[:2]
    return rows[0], rows[2:]
arms = os.environ["STUDY_ARMS"].split()
exits = [9, 12, 15, 18, 21, 24, 27, 30]
'
loss_table() { python3 -c "$table_py
header, rows = table('### Loss')
assert header == ['exit', 'base'] + arms, header
assert [int(r[0]) for r in rows] == exits, rows
assert all(len(r) == 2 + len(arms) and all(c.strip('*') != '-' for c in r) for r in rows), rows"; }
exact_table() { python3 -c "$table_py
header, rows = table('### Exact match')
assert header == ['exit', 'base'] + arms and [int(r[0]) for r in rows] == exits, (header, rows)
assert all(c.endswith('%') for r in rows for c in r[1:]), rows"; }
agreement_table() { python3 -c "$table_py
header, rows = table('### Agreement and KL')
assert header == ['exit'] + arms and [int(r[0]) for r in rows] == exits, (header, rows)
assert all(c.startswith('1.000 / ') for r in rows if r[0] == '30' for c in r[1:]), rows"; }
tradeoff_table() { python3 -c "$table_py
header, rows = table('## The trade-off a user chooses from')
assert [int(r[0]) for r in rows] == exits and all(len(r) == 6 for r in rows), rows"; }
targets_table() { python3 -c "$table_py
header, rows = table('## Targets')
assert [r[0] for r in rows] == ['\`' + a + '\`' for a in arms if a != 'sft'], rows
assert all(c in ('✓', '✗', '-') for r in rows for c in (r[4], r[6], r[8], r[9])), rows"; }
check "the loss table has a row for every exit and a column for base and each arm" loss_table
check "the exact-match table has every exit of base and each arm" exact_table
check "the agreement and KL table has every exit of each arm" agreement_table
check "the trade-off section has a row for every exit" tradeoff_table
check "the targets section checks every SoFT-family arm" targets_table
check "the targets section names a verdict" \
    "grep -Eq '^\*\*Verdict:\*\* (\`[a-z-]+\` meets every target|no arm meets every target)' $doc"
check "the document states what the numbers show" \
    "grep -q '^## What the numbers show' $doc && grep -q '^- At the last exit (30 layers) the lowest loss is' $doc"
check "the document lists every command of the run with its time" \
    "grep -q '^## Commands' $doc && [ \$(sed -n '/^## Commands/,\$p' $doc | grep -Ec '   # [0-9]+ s(;|\$)') -ge 7 ]"
check "the train commands note each arm's step time" \
    "( for a in $arms; do grep -q \"log.dir=$out/\$a .*its [0-9]* steps took\" $doc || exit 1; done )"
check "both figures are SVG, beside the document and shown in it" \
    "( for f in quality-per-exit training-curves; do grep -q '</svg>' $out/study-\$f.svg && grep -q \"(study-\$f.svg)\" $doc || exit 1; done )"
check "the study folder holds each arm's eval, bench and metrics" \
    "( [ -s $study/eval-base.json ] && for a in $arms; do [ -s $study/eval-\$a.json ] && [ -s $study/bench-\$a.json ] && [ -s $study/metrics-\$a.jsonl ] || exit 1; done )"
validation_lines() { python3 -c "
import json, os
for a in os.environ['STUDY_ARMS'].split():
    v = [json.loads(l)['validation'] for l in open('$out/' + a + '/metrics.jsonl') if 'validation' in l]
    assert v and all(len(x['exit_losses']) == 8 for x in v), a"; }
check "validation lines at every exit in each arm" validation_lines
rm -f /tmp/study-quick.$$.log
echo "study: $passed passed, $failed failed"
[ "$failed" = 0 ]
