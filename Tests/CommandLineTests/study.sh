#!/usr/bin/env bash
# launch/study --quick: the SFT-vs-SoFT study pipeline end to end on SmolLM2 for a few steps
# (training both arms, evaluating every exit of them and of the base model, the generation
# benchmark, the figures and the document written from their JSON). Skips when the SmolLM2
# GGUF is absent (launch/fetch-test-assets fetches it). Prints "study: N passed, M failed, K skipped".
set -uo pipefail
cd "$(dirname "$0")/../.."
gguf=vendor-data/SmolLM2-135M-Instruct.Q4_1.gguf
if [ ! -s "$gguf" ]; then
    echo "skip launch/study --quick: $gguf is absent"
    echo "study: 0 passed, 0 failed, 1 skipped"; exit 0
fi
passed=0; failed=0
check() { if eval "$2"; then echo "ok   $1"; passed=$((passed + 1)); else echo "FAIL $1"; failed=$((failed + 1)); fi; }
rm -rf runs/study-quick
launch/study --quick > /tmp/study-quick.$$.log 2>&1; code=$?
check "launch/study --quick exits 0" "[ $code = 0 ] || { tail -5 /tmp/study-quick.$$.log; false; }"
doc=runs/study-quick/results.md
check "the document has a row for every exit of the three models" \
    "python3 -c \"import sys; t = open('$doc').read().split('## Every exit')[1].split('##')[0]; rows = [l.split('|')[1:-1] for l in t.splitlines() if l.startswith('| ') and l.split('|')[1].strip().isdigit()]; assert [int(r[0]) for r in rows] == [9, 12, 15, 18, 21, 24, 27, 30] and all(len(r) == 14 for r in rows), rows\""
check "the document states what the numbers show" "grep -q 'SoFT.s loss is' $doc"
check "the document lists every command of the run with its time" \
    "grep -q '^## Commands' $doc && [ \$(grep -c 'sortedtrain .*   # [0-9]* s\$' $doc) -ge 5 ]"
check "both figures are SVG" "grep -q '</svg>' runs/study-quick/study-quality-per-exit.svg && grep -q '</svg>' runs/study-quick/study-training-curves.svg"
check "validation lines at every exit in both arms" \
    "python3 -c \"import json; [exec('assert len(json.loads(l)[\\'validation\\'][\\'exit_losses\\']) == 8') for a in ('sft', 'soft') for l in open('runs/study-quick/' + a + '/metrics.jsonl') if 'validation' in l]\""
rm -f /tmp/study-quick.$$.log
echo "study: $passed passed, $failed failed"
[ "$failed" = 0 ]
