#!/usr/bin/env bash
# make test-sam: the black-box API tests (tests/tests/sam_local.rs) against the whole API on
# `sam local start-api` (make local-aws), then the console in a browser (browser.sh sam: the
# browser test marked `deployed`, sign in, overview, sign out, as the stack's account), then a
# short make load against it (load.sh local-aws: an account made with twofa-admin, its test
# numbers, Locust for LOAD_SAM_DURATION, 20 s), then everything this script started is stopped:
# sam by its pid, the Lambda containers by our network, moto by its pid, the network by its
# name. Fails when Docker is missing, when the stack does not come up, when any test fails (the
# browser's included), when no test ran (a skipped test is not a pass), and when the load run's
# checks fail. Beside the stack, issue 26's sweep test runs at
# its full size (5,000 due OTPs) on a moto of its own.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."
export CARGO_TERM_COLOR=never
SAM=infra/scripts/sam.sh
T0=$SECONDS
LOG=.run/test-sam.log
mkdir -p .run

STARTED=0
cleanup() {
    if ((STARTED)); then
        echo "==> stopping the local stack"
        bash "$SAM" down || true
    fi
}
trap cleanup EXIT

# Built first, while nothing runs: the release build of the functions and the debug build of
# the tests, the seeder and the admin command are the long parts, each done once. The debug
# build is make test's own (a no-op after it): the same command, so the same features.
start=$SECONDS
cargo build -q --workspace --all-targets --features twofa/aws
TESTS_BUILD=$((SECONDS - start))

# Issue 26's sweep at full size, beside the stack's start (which is mostly a release build and
# an image build): 5,000 due OTPs over the due index's shards, one canceled between its read and
# its write, all settled by one sweep, on a moto of its own (port SWEEP_MOTO_PORT, MOTO_PORT+10
# by default). make test runs the same test with 600: moto sorts the whole table for each of
# the sweep's 513 Queries, so the full size takes minutes (331 s of sweep on a busy 2-core
# machine), too long for make test's budget.
SWEEP_LOG=.run/test-sam-sweep.log
SWEEP_MOTO=(env MOTO_NAME=moto-sweep MOTO_PORT="${SWEEP_MOTO_PORT:-$((${MOTO_PORT:-5055} + 10))}")
sweep_full() {
    "${SWEEP_MOTO[@]}" bash infra/scripts/moto.sh start >/dev/null || return 1
    local rc=0
    (
        eval "$("${SWEEP_MOTO[@]}" bash infra/scripts/moto.sh env)"
        export TWOFA_AWS_ATTEMPT_TIMEOUT_MS=30000 TWOFA_AWS_OPERATION_TIMEOUT_MS=90000 TWOFA_AWS_CONNECT_TIMEOUT_MS=10000
        TWOFA_SWEEP_TEST_OTPS="${TWOFA_SWEEP_TEST_OTPS:-5000}" cargo test -q --workspace --features twofa/aws --test sweeper \
            dynamodb::thousands -- --nocapture
    ) || rc=$?
    "${SWEEP_MOTO[@]}" bash infra/scripts/moto.sh stop >/dev/null || true
    return "$rc"
}
sweep_start=$SECONDS
# In a process group of its own (job control on for this one job), so a stop ends its cargo too.
set -m
sweep_full >"$SWEEP_LOG" 2>&1 &
SWEEP_PID=$!
set +m
stop_sweep() {
    kill -- -"$SWEEP_PID" 2>/dev/null || true
    "${SWEEP_MOTO[@]}" bash infra/scripts/moto.sh stop >/dev/null 2>&1 || true
}
trap 'stop_sweep; cleanup' EXIT

STARTED=1
start=$SECONDS
bash "$SAM" up
UP=$((SECONDS - start))
# shellcheck disable=SC1091
source .run/local-aws.env

start=$SECONDS
rc=0
cargo test --workspace --features twofa/aws --test sam_local -- --ignored --test-threads=1 2>&1 | tee "$LOG" || rc=$?
RUN=$((SECONDS - start))

# The console's pages through the stack's console function, in headless Chromium (the pinned
# .venv-browser and Debian's chromium, installed by browser.sh when missing): run even when a
# test above failed, since it checks something else. Counted with the tests above.
start=$SECONDS
browser_rc=0
rm -f .run/browser-sam.log
bash infra/scripts/browser.sh sam || browser_rc=$?
BROWSER=$((SECONDS - start))
read -r browser_passed browser_failed < <(awk '/^browser-sam: [0-9]+ passed, [0-9]+ failed/ {p = $2; f = $4} END {print p + 0, f + 0}' .run/browser-sam.log 2>/dev/null || echo "0 0")
((browser_rc == 0)) || ((browser_failed > 0)) || browser_failed=1

# make load's tool against the same stack, bounded (Locust's whole run under LOAD_TIMEOUT): run
# even when a test failed, since it checks something else.
start=$SECONDS
load_rc=0
bash infra/scripts/load.sh local-aws || load_rc=$?
LOAD=$((SECONDS - start))

sweep_rc=0
wait "$SWEEP_PID" || sweep_rc=$?
SWEEP=$((SECONDS - sweep_start))
trap cleanup EXIT
echo "==> the full-size sweep (5,000 due OTPs on moto; log ${SWEEP_LOG}):"
grep -E 'settled|stored|test result' "$SWEEP_LOG" || tail -n 20 "$SWEEP_LOG"

passed=$(awk '/^test result:/ {p += $4} END {print p + 0}' "$LOG" "$SWEEP_LOG")
failed=$(awk '/^test result:/ {f += $6} END {print f + 0}' "$LOG" "$SWEEP_LOG")
passed=$((passed + browser_passed))
failed=$((failed + browser_failed))
if ! grep -q '^test result: ok. 1 passed' "$SWEEP_LOG"; then
    sweep_rc=1
fi
echo
echo "==> test-sam timings: test build ${TESTS_BUILD}s, make local-aws ${UP}s (sam build, image, moto, seed, sam start), tests ${RUN}s, browser ${BROWSER}s, load ${LOAD}s, full-size sweep ${SWEEP}s (beside the rest), total $((SECONDS - T0))s"
if ((load_rc != 0)); then
    echo "==> the load run against make local-aws FAILED (exit ${load_rc}; report .run/load-sam-report.json)"
fi
if ((sweep_rc != 0)); then
    echo "==> the full-size sweep FAILED (log ${SWEEP_LOG})"
fi
if ((browser_rc != 0)); then
    echo "==> the browser test against make local-aws FAILED (exit ${browser_rc}; .run/browser-sam.log, screenshots .run/console-sam-*.png)"
fi
if ((rc != 0 || failed != 0 || passed == 0 || load_rc != 0 || sweep_rc != 0 || browser_rc != 0)); then
    echo "==> test-sam FAILED (exit ${rc}, ${passed} passed, ${failed} failed, load exit ${load_rc}, sweep exit ${sweep_rc}, browser exit ${browser_rc}); last lines of the sam log:"
    tail -n 30 .run/sam-local.log || true
    echo "sam: ${passed} passed, ${failed} failed"
    exit 1
fi
echo "sam: ${passed} passed, ${failed} failed"
