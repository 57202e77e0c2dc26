#!/usr/bin/env bash
# make test-sam: the black-box API tests (tests/tests/sam_local.rs) against the whole API on
# `sam local start-api` (make local-aws), then a short make load against it (load.sh local-aws:
# an account made with twofa-admin, its test numbers, Locust for LOAD_SAM_DURATION, 20 s), then
# everything this script started is stopped: sam by its pid, the Lambda containers by our
# network, moto by its pid, the network by its name. Fails when Docker is missing, when the
# stack does not come up, when any test fails, when no test ran (a skipped test is not a
# pass), and when the load run's checks fail.
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

# make load's tool against the same stack, bounded (Locust's whole run under LOAD_TIMEOUT): run
# even when a test failed, since it checks something else.
start=$SECONDS
load_rc=0
bash infra/scripts/load.sh local-aws || load_rc=$?
LOAD=$((SECONDS - start))

passed=$(awk '/^test result:/ {p += $4} END {print p + 0}' "$LOG")
failed=$(awk '/^test result:/ {f += $6} END {print f + 0}' "$LOG")
echo
echo "==> test-sam timings: test build ${TESTS_BUILD}s, make local-aws ${UP}s (sam build, image, moto, seed, sam start), tests ${RUN}s, load ${LOAD}s, total $((SECONDS - T0))s"
if ((load_rc != 0)); then
    echo "==> the load run against make local-aws FAILED (exit ${load_rc}; report .run/load-sam-report.json)"
fi
if ((rc != 0 || failed != 0 || passed == 0 || load_rc != 0)); then
    echo "==> test-sam FAILED (exit ${rc}, ${passed} passed, ${failed} failed, load exit ${load_rc}); last lines of the sam log:"
    tail -n 30 .run/sam-local.log || true
    echo "sam: ${passed} passed, ${failed} failed"
    exit 1
fi
echo "sam: ${passed} passed, ${failed} failed"
