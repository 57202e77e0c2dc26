#!/usr/bin/env bash
# The whole check, as CI runs it: rustfmt, clippy, then every test against a local moto.
# Extra arguments go to `cargo test` (e.g. `infra/scripts/test.sh -- --nocapture`).
# Each phase runs even if an earlier one failed; the script exits non-zero if any failed.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/../.."
MOTO=infra/scripts/moto.sh
export CARGO_TERM_COLOR=never

T0=$SECONDS
FAILED=()
SUMMARY=()

# phase NAME CMD...: run CMD, record its outcome and how long it took.
phase() {
    local name="$1"
    shift
    local start=$SECONDS rc=0
    echo "==> ${name}: $*"
    "$@" || rc=$?
    local took=$((SECONDS - start))
    if ((rc == 0)); then
        SUMMARY+=("ok      ${took}s  ${name}")
        echo "==> ${name}: ok (${took}s)"
    else
        SUMMARY+=("FAILED  ${took}s  ${name} (exit ${rc})")
        FAILED+=("${name}")
        echo "==> ${name}: FAILED with exit ${rc} (${took}s)"
    fi
    return 0
}

# --- moto ------------------------------------------------------------------------------
STARTED_MOTO=0
STARTED_WORKFLOW=0
WORKFLOW=infra/scripts/workflow_e2e.sh
declare -A INSTALL_PID=() INSTALL_RC=()
cleanup() {
    # An install still running (the script ended early) is stopped too.
    local pid
    for pid in "${INSTALL_PID[@]}"; do
        kill "${pid}" 2>/dev/null || true
    done
    if ((STARTED_WORKFLOW)); then
        bash "${WORKFLOW}" stop || true
    fi
    if ((STARTED_MOTO)); then
        bash "${MOTO}" stop || true
    fi
}
trap cleanup EXIT

# --- moto and the Python tools, installed while the builds compile -----------------------
# Each is a pinned pip install into a virtualenv of its own (idempotent: a stamp says when it is
# done), mostly download and unpack: run beside the CPU-bound builds instead of between them.
# A phase that needs one waits for it first; a failed install fails that phase.
mkdir -p .run
background_install() { # background_install NAME CMD...
    local name=$1
    shift
    "$@" >".run/install-${name}.log" 2>&1 &
    INSTALL_PID[$name]=$!
}
installed() { # installed NAME: waits for its install (once); prints its log if it failed
    if [[ -z "${INSTALL_RC[$1]+set}" ]]; then
        local rc=0
        wait "${INSTALL_PID[$1]}" || rc=$?
        INSTALL_RC[$1]=${rc}
        if ((rc != 0)); then
            echo "==> installing $1 failed (exit ${rc}):"
            cat ".run/install-$1.log"
        fi
    fi
    return "${INSTALL_RC[$1]}"
}
# moto and cargo-lambda share .venv: one install after the other.
background_install moto bash -c "bash ${MOTO} install && bash ${WORKFLOW} install"
background_install sam bash infra/scripts/sam.sh install
background_install schemathesis bash infra/scripts/schemathesis.sh install
background_install load bash infra/scripts/load.sh install

# --- checks ----------------------------------------------------------------------------
phase "rustfmt" cargo fmt --all -- --check
# One debug build of everything, with the features the tests unify: the tests, the step Lambda
# the workflow harness runs, the seeder and admin command make test-sam runs all reuse it.
phase "build" cargo build --workspace --all-targets --features twofa/aws
phase "clippy" cargo clippy --workspace --all-targets --features twofa/aws -- -D warnings
# --- moto (installed beside the builds above; started once they are done) ----------------
start=$SECONDS
installed moto
if bash "${MOTO}" status >/dev/null 2>&1; then
    echo "==> moto: reusing the running moto"
    bash "${MOTO}" start
else
    # Set before starting, so a start that fails half-way is cleaned up too.
    STARTED_MOTO=1
    bash "${MOTO}" start
fi
eval "$(bash "${MOTO}" env)"
# moto serves one request at a time and shares 2 cores with the tests: it can take seconds
# where DynamoDB takes milliseconds, so the suite gives the SDK generous timeouts. The fault
# tests (tests/tests/faults.rs) use the production ones, against motos of their own.
# (30 s an attempt: the concurrency tests queue 200 requests at once behind moto's one-at-a-time
# lock, beside the rest of the suite.)
export TWOFA_AWS_ATTEMPT_TIMEOUT_MS="${TWOFA_AWS_ATTEMPT_TIMEOUT_MS:-30000}"
export TWOFA_AWS_OPERATION_TIMEOUT_MS="${TWOFA_AWS_OPERATION_TIMEOUT_MS:-90000}"
# (a search opens up to 64 connections at once, which moto accepts one by one)
export TWOFA_AWS_CONNECT_TIMEOUT_MS="${TWOFA_AWS_CONNECT_TIMEOUT_MS:-10000}"
SUMMARY+=("ok      $((SECONDS - start))s  moto start (and what is left of its install)")
echo "==> moto: ready at ${AWS_ENDPOINT_URL} ($((SECONDS - start))s)"

# cfn-lint and sam validate --lint, from the pinned .venv-sam (no Docker, no AWS account).
validate() { installed sam && bash infra/scripts/sam.sh validate; }
phase "template lint" validate
# The workflow state machine's harness (tests/tests/workflow_sfn.rs): the real step Lambda (the
# build phase's binary) behind cargo lambda watch's Runtime API and the router moto's Step
# Functions Task invokes. If it does not come up, those tests fail on its missing env.
start_workflow() {
    installed moto || return 1
    STARTED_WORKFLOW=1
    bash "${WORKFLOW}" start && eval "$(bash "${WORKFLOW}" env)"
}
phase "workflow harness (cargo lambda watch + router)" start_workflow
# The output is kept so the totals of every test binary can be summed at the end.
TEST_LOG=.run/cargo-test.log
run_tests() {
    mkdir -p .run
    # Every test binary runs even when one fails, so a run shows every failure at once.
    cargo test --workspace --no-fail-fast --features twofa/aws "$@" 2>&1 | tee "${TEST_LOG}"
}
phase "tests" run_tests "$@"
# The heat model (make bench's, issue 26) on a small burst, holding every key to the issue's
# rules: no key of one account over 500 WCU/s (or 1,500 RCU/s, or 20 transactions/s on one
# item) at 10,000 pairs/s, no key both accounts write over that at 100,000, every sharded family
# within 1.5x of its mean, and no fresh OTP or usage in an unsharded partition.
heat_check() { HEAT_PAIRS=20 HEAT_CHECK=1 target/debug/heat-model; }
phase "heat model check (moto)" heat_check
# The dev server against openapi.yaml (starts and stops its own server, by pid).
schemathesis() { installed schemathesis && bash infra/scripts/schemathesis.sh run; }
phase "schemathesis" schemathesis
# make load's tool on a short bounded run (5 users, 15 s) against a dev server of its own: pairs
# verified, wrong codes answered 474, nothing else (starts and stops its server, by pid).
load_test() { installed load && bash infra/scripts/load.sh dev; }
phase "load (Locust, dev server)" load_test

# One plain closing line: cargo prints a result per test binary (the last one is the doc-tests,
# often "0 passed"), so the sum over all of them is what this run actually tested.
totals() {
    local passed failed
    read -r passed failed < <(awk '/^test result:/ {p += $4; f += $6} END {print p + 0, f + 0}' "${TEST_LOG}" 2>/dev/null || echo "0 0")
    echo "tests: ${passed} passed, ${failed} failed"
}

echo
echo "==> summary (total $((SECONDS - T0))s)"
printf '    %s\n' "${SUMMARY[@]}"
if ((${#FAILED[@]})); then
    echo "==> FAILED: ${FAILED[*]}"
    totals
    exit 1
fi
echo "==> all checks passed"
totals
