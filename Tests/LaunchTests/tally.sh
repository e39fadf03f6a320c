#!/usr/bin/env bash
# The closing line of launch/test comes from launch/tally; check it on recorded runner
# output (XCTest all passing, one failure, skips, a crash; Swift Testing; our own runners;
# no test at all). Prints "launch: N passed, M failed".
set -uo pipefail
cd "$(dirname "$0")/../.."
rec=Tests/LaunchTests/recorded
passed=0; failed=0

# expect NAME EXIT "CLOSING LINE" LOG...
expect() {
    local name=$1 code=$2 line=$3; shift 3
    local out rc
    out=$(launch/tally "$@" 2>/dev/null); rc=$?
    if [ "$rc" = "$code" ] && [ "$out" = "$line" ]; then
        echo "ok   tally: $name"; passed=$((passed + 1))
    else
        echo "FAIL tally: $name: got '$out' (exit $rc), want '$line' (exit $code)"; failed=$((failed + 1))
    fi
}

expect "XCTest, all pass"         0 "tests: 2 passed, 0 failed, 0 skipped" $rec/xctest-all-pass.log
expect "XCTest, one failing test" 1 "tests: 2 passed, 1 failed, 0 skipped" $rec/xctest-one-failure.log
expect "XCTest, a skipped test"   0 "tests: 2 passed, 0 failed, 1 skipped" $rec/xctest-skips.log
expect "XCTest, crashed part-way" 1 "tests: 1 passed, 0 failed, 0 skipped" $rec/xctest-crashed.log
expect "Swift Testing"            1 "tests: 1 passed, 1 failed, 1 skipped" $rec/swift-testing.log
expect "mpi, cli and launch lines" 1 "tests: 50 passed, 1 failed, 2 skipped" $rec/ours.log
expect "no test ran"              1 "tests: 0 passed, 0 failed, 0 skipped" $rec/nothing.log
expect "all runners together"     1 "tests: 55 passed, 2 failed, 4 skipped" \
    $rec/xctest-all-pass.log $rec/xctest-skips.log $rec/swift-testing.log $rec/ours.log

echo "launch: $passed passed, $failed failed"
[ "$failed" = 0 ]
