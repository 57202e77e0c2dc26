#!/usr/bin/env bash
# Send + verify pairs against a twofa deployment with Locust (infra/load/locustfile.py).
#
#   infra/scripts/load.sh install   pinned Locust in .venv-load (idempotent)
#   infra/scripts/load.sh run       make load: ramp USERS users at RAMP a second for DURATION
#                                   against URL as SID/TOKEN, then print the report
#   infra/scripts/load.sh dev       make test's bounded run: a dev server of its own on a free
#                                   port, its account given test numbers, a short run, checks on
#                                   the report, the server stopped (by the pid recorded here)
#   infra/scripts/load.sh local-aws make test-sam's bounded run against the running make
#                                   local-aws (.run/local-aws.env): an account of its own made
#                                   with twofa-admin and given 20 test numbers, a short run
#                                   (LOAD_SAM_USERS 3, LOAD_SAM_DURATION 20s), the same checks
#                                   with a floor for sam local's speed (LOAD_TEST_MIN_PAIRS 10)
#   infra/scripts/load.sh check REPORT USERS   dev's checks on the REPORT=file.json of a run with
#                                   WRONG_PERCENT > 0 (LOAD_TEST_MIN_PAIRS, 200, the fewest
#                                   pairs it accepts)
#
# run's settings (environment, or make load's variables): URL, SID, TOKEN (required); NUMBERS,
# comma-separated test numbers as `to:code`, or `to` with CODE (the account's policy must list
# them: `twofa-admin account policy SID --json '{"testNumbers":[...]}'`); USERS (10), RAMP (users
# started a second, 2), DURATION (60s), WRONG_PERCENT (0: share of pairs that first try a wrong
# code), SERVICE (service name prefix, load), FROM (sender, Twofa), PROCESSES (Locust processes,
# 1; more when Locust's own CPU is the limit), REPORT (a JSON copy of the report).
# Its own venv: Locust pins its own versions of libraries moto and schemathesis also use.
set -euo pipefail

SCRIPT_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "${SCRIPT_DIR}/../.." && pwd)"
VERSION="2.47.0"
SPEC="locust==${VERSION}"
PYTHON="${PYTHON:-python3}"
VENV="${ROOT}/.venv-load"
RUN_DIR="${ROOT}/.run"
LOCUSTFILE="${ROOT}/infra/load/locustfile.py"

log() { printf '[load] %s\n' "$*" >&2; }
die() { printf '[load] ERROR: %s\n' "$*" >&2; exit 1; }
# shellcheck source=venv.sh
source "$(dirname "${BASH_SOURCE[0]}")/venv.sh"

cmd_install() { pip_install_pinned "${VENV}" "${SPEC}" locust; }

# locust_run URL USERS RAMP DURATION: one headless run with the TWOFA_LOAD_* environment set.
locust_run() {
    local url=$1 users=$2 ramp=$3 duration=$4 processes=${TWOFA_LOAD_PROCESSES:-1}
    local wrap=() extra=()
    # LOAD_TIMEOUT (seconds): make test's bound on the whole run, Locust's start and stop included.
    [[ -z "${LOAD_TIMEOUT:-}" ]] || wrap=(timeout "${LOAD_TIMEOUT}")
    ((processes <= 1)) || extra+=(--processes "${processes}")
    # --only-summary: the report at the end, not Locust's table every few seconds; --stop-timeout:
    # a pair under way at the end finishes (its verify is counted) instead of being cut.
    "${wrap[@]}" "${VENV}/bin/locust" -f "${LOCUSTFILE}" --headless --host "${url%/}" \
        --users "${users}" --spawn-rate "${ramp}" --run-time "${duration}" --stop-timeout 10 \
        --only-summary --loglevel WARNING "${extra[@]}"
}

cmd_run() {
    [[ -n "${URL:-}" ]] || die "URL= the API's base URL (the stack's ApiUrl output; http://127.0.0.1:3000 for make run)"
    [[ -n "${SID:-}" && -n "${TOKEN:-}" ]] || die "SID= and TOKEN= the account's sid and auth token"
    [[ -n "${NUMBERS:-}" ]] || die "NUMBERS= the account's test numbers, to:code,to:code,... (or to,to,... with CODE=)"
    cmd_install
    TWOFA_LOAD_SID="${SID}" TWOFA_LOAD_TOKEN="${TOKEN}" TWOFA_LOAD_NUMBERS="${NUMBERS}" \
        TWOFA_LOAD_CODE="${CODE:-}" TWOFA_LOAD_SERVICE="${SERVICE:-load}" TWOFA_LOAD_FROM="${FROM:-Twofa}" \
        TWOFA_LOAD_WRONG_PERCENT="${WRONG_PERCENT:-0}" TWOFA_LOAD_PROCESSES="${PROCESSES:-1}" \
        TWOFA_LOAD_REPORT="${REPORT:-}" \
        locust_run "${URL}" "${USERS:-10}" "${RAMP:-2}" "${DURATION:-60s}"
}

# 20 test numbers (the most an account may have), one a line; their code is TEST_CODE.
TEST_CODE=246810
test_numbers() {
    local i
    for i in $(seq 100 119); do echo "+14155550${i}"; done
}

# --- make test's bounded run against the dev server -------------------------------------
DEV_PID_FILE="${RUN_DIR}/load-dev.pid"
DEV_LOG="${RUN_DIR}/load-dev.log"
DEV_REPORT="${RUN_DIR}/load-report.json"

stop_dev() {
    local pid
    pid="$(cat "${DEV_PID_FILE}" 2>/dev/null || true)"
    if [[ "${pid}" =~ ^[0-9]+$ ]] && kill -0 "${pid}" 2>/dev/null \
        && tr '\0' ' ' <"/proc/${pid}/cmdline" 2>/dev/null | grep -q twofa-local; then
        log "stopping the dev server (pid ${pid})"
        kill "${pid}" 2>/dev/null || true
        local _
        for _ in $(seq 1 50); do
            kill -0 "${pid}" 2>/dev/null || break
            sleep 0.1
        done
    fi
    rm -f "${DEV_PID_FILE}"
}

cmd_dev() {
    cmd_install
    mkdir -p "${RUN_DIR}"
    cd "${ROOT}"
    # The workspace's debug build (make test's build phase; a no-op after it).
    cargo build -q --workspace --all-targets --features twofa/aws
    local bin="${CARGO_TARGET_DIR:-${ROOT}/target}/debug/twofa-local"
    [[ -x "${bin}" ]] || die "no dev server binary at ${bin}"
    local py="${VENV}/bin/python" port sid token
    port="$("${py}" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
    sid="AC10ad0000000000000000000000000000"
    token="load-token-$(od -An -N8 -tx1 /dev/urandom | tr -d ' \n')"
    trap stop_dev EXIT
    PORT="${port}" TWOFA_DEV_ACCOUNT_SID="${sid}" TWOFA_DEV_AUTH_TOKEN="${token}" RUST_LOG=warn \
        "${bin}" </dev/null >"${DEV_LOG}" 2>&1 &
    echo $! >"${DEV_PID_FILE}"
    local url="http://127.0.0.1:${port}" deadline=$((SECONDS + 30))
    until "${py}" -c "import urllib.request; urllib.request.urlopen('${url}/health', timeout=1)" 2>/dev/null; do
        kill -0 "$(cat "${DEV_PID_FILE}")" 2>/dev/null || { tail -n 20 "${DEV_LOG}" >&2; die "the dev server exited"; }
        ((SECONDS < deadline)) || die "the dev server did not answer on port ${port} within 30 s"
        sleep 0.2
    done
    # What an operator sets with twofa-admin on a deployment, here through the dev route.
    local numbers=()
    mapfile -t numbers < <(test_numbers)
    "${py}" - "${url}" "${sid}" "${TEST_CODE}" "${numbers[@]}" <<'PY' || die "setting the test numbers failed"
import json, sys, urllib.request
url, sid, code, numbers = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4:]
body = {"accountSid": sid, "testNumbers": [{"to": n, "code": code} for n in numbers]}
req = urllib.request.Request(url + "/dev/accounts", data=json.dumps(body).encode(), method="POST",
                             headers={"Content-Type": "application/json"})
got = json.load(urllib.request.urlopen(req, timeout=5))
assert len(got["policy"]["testNumbers"]) == len(numbers), got
PY
    local users="${LOAD_TEST_USERS:-5}" duration="${LOAD_TEST_DURATION:-15s}"
    log "dev server on ${url} (pid $(cat "${DEV_PID_FILE}")); ${users} users, 1 more a second, ${duration}, 10 % wrong codes first"
    rm -f "${DEV_REPORT}"
    local rc=0
    TWOFA_LOAD_SID="${sid}" TWOFA_LOAD_TOKEN="${token}" TWOFA_LOAD_NUMBERS="$(IFS=,; echo "${numbers[*]}")" \
        TWOFA_LOAD_CODE="${TEST_CODE}" TWOFA_LOAD_WRONG_PERCENT=10 TWOFA_LOAD_REPORT="${DEV_REPORT}" LOAD_TIMEOUT=120 \
        locust_run "${url}" "${users}" 1 "${duration}" || rc=$?
    ((rc == 0)) || die "locust failed (exit ${rc}; dev server log .run/load-dev.log)"
    [[ -f "${DEV_REPORT}" ]] || die "no report at ${DEV_REPORT}"
    check_report "${DEV_REPORT}" "${users}"
}

# --- make test-sam's bounded run against make local-aws -----------------------------------
SAM_REPORT="${RUN_DIR}/load-sam-report.json"

# The stack make local-aws runs, as a client and an operator see it: its API URL, and the table,
# secret and moto endpoint twofa-admin needs (.run/local-aws.env, written by sam.sh up). The
# account is made as on a deployment (twofa-admin account create, then its policy's test
# numbers): the stack's own account (the sam_local tests') is left as it is.
cmd_local_aws() {
    cmd_install
    cd "${ROOT}"
    local env_file="${RUN_DIR}/local-aws.env"
    [[ -f "${env_file}" ]] || die "the local stack is not up (no .run/local-aws.env): make local-aws first"
    # shellcheck disable=SC1090
    source "${env_file}"
    [[ -n "${TWOFA_SAM_URL:-}" && -n "${TWOFA_MOTO_URL:-}" && -n "${TWOFA_TABLE:-}" && -n "${TWOFA_SECRET_ARN:-}" ]] \
        || die ".run/local-aws.env lacks TWOFA_SAM_URL, TWOFA_MOTO_URL, TWOFA_TABLE or TWOFA_SECRET_ARN: make local-aws-down, then make local-aws"
    # The workspace's debug build (make test-sam's first step; a no-op after it).
    local admin="${CARGO_TARGET_DIR:-${ROOT}/target}/debug/twofa-admin"
    [[ -x "${admin}" ]] || cargo build -q --workspace --all-targets --features twofa/aws
    [[ -x "${admin}" ]] || die "no twofa-admin binary at ${admin}"
    local aws_env=(AWS_ENDPOINT_URL="${TWOFA_MOTO_URL}" AWS_ACCESS_KEY_ID=testing AWS_SECRET_ACCESS_KEY=testing
        AWS_REGION=us-east-1 TWOFA_AWS_ATTEMPT_TIMEOUT_MS=10000 TWOFA_AWS_OPERATION_TIMEOUT_MS=30000)
    local created sid token numbers=() policy
    created="$(env "${aws_env[@]}" "${admin}" account create --email load@example.com --any-sender)" \
        || die "twofa-admin account create failed"
    sid="$(sed -n 's/^ACCOUNT_SID=//p' <<<"${created}")"
    token="$(sed -n 's/^AUTH_TOKEN=//p' <<<"${created}")"
    [[ -n "${sid}" && -n "${token}" ]] || die "twofa-admin account create printed no account"
    mapfile -t numbers < <(test_numbers)
    policy="$(printf '{"to":"%s","code":"'"${TEST_CODE}"'"},' "${numbers[@]}")"
    env "${aws_env[@]}" "${admin}" account policy "${sid}" --json "{\"testNumbers\":[${policy%,}]}" >/dev/null \
        || die "twofa-admin account policy (test numbers) failed"
    # sam local serves each function from one warm container, one request at a time: a few users
    # keep it busy (more only queue). Measured here: ~2.6 pairs a second, 54 in 20 s; the floor
    # of 10 holds on a machine 3x slower and still fails a run that did nothing. A wrong code
    # on 30 % of the pairs makes a run without a 474 unlikely (0.7^20: under 0.1 % at 20 pairs).
    local users="${LOAD_SAM_USERS:-3}" duration="${LOAD_SAM_DURATION:-20s}"
    log "account ${sid} (twofa-admin, ${#numbers[@]} test numbers) on ${TWOFA_SAM_URL}: ${users} users at once, ${duration}, 30 % wrong codes first"
    rm -f "${SAM_REPORT}"
    local rc=0
    TWOFA_LOAD_SID="${sid}" TWOFA_LOAD_TOKEN="${token}" TWOFA_LOAD_NUMBERS="$(IFS=,; echo "${numbers[*]}")" \
        TWOFA_LOAD_CODE="${TEST_CODE}" TWOFA_LOAD_WRONG_PERCENT=30 TWOFA_LOAD_REPORT="${SAM_REPORT}" LOAD_TIMEOUT=180 \
        locust_run "${TWOFA_SAM_URL}" "${users}" "${users}" "${duration}" || rc=$?
    ((rc == 0)) || die "locust failed (exit ${rc}; the stack's log: .run/sam-local.log)"
    [[ -f "${SAM_REPORT}" ]] || die "no report at ${SAM_REPORT}"
    LOAD_TEST_MIN_PAIRS="${LOAD_TEST_MIN_PAIRS:-10}" check_report "${SAM_REPORT}" "${users}"
}

# check_report FILE USERS: what a sound run must show. Every send answers 200; every right code
# 200; every wrong code 401/474 (and nothing else); no 5xx; and at least LOAD_TEST_MIN_PAIRS
# pairs, so the run did real work (make test's default, 200, is far below what the dev server
# does on 2 shared cores, about 600 pairs a second; load.sh local-aws sets its own floor).
check_report() {
    "${VENV}/bin/python" - "$1" "$2" "${LOAD_TEST_MIN_PAIRS:-200}" <<'PY'
import json, sys
rep = json.load(open(sys.argv[1]))
users, min_pairs = int(sys.argv[2]), int(sys.argv[3])
bad = []
rows = rep["answers"]
count = lambda op, status, code: sum(r["count"] for r in rows if (r["op"], r["status"], r["code"]) == (op, status, code))
sends = count("send", 200, 200)
verified = count("verify", 200, 200)
wrong = count("verify", 401, 474)
for r in rows:
    if (r["op"], r["status"], r["code"]) not in {("send", 200, 200), ("verify", 200, 200), ("verify", 401, 474)}:
        bad.append(f"unexpected answers: {r}")
if rep["pairsVerified"] < min_pairs:
    bad.append(f"only {rep['pairsVerified']} pairs verified (want at least {min_pairs})")
# Every send is verified, but for a pair a user had not finished when the run was stopped.
if verified != rep["pairsVerified"] or not 0 <= sends - verified <= users:
    bad.append(f"{sends} sends, {verified} verify 200s, {rep['pairsVerified']} pairs counted: they should agree")
if wrong != rep["wrongCodesTried"] or wrong == 0:
    bad.append(f"{rep['wrongCodesTried']} wrong codes tried, {wrong} answered 474")
for op in ("send", "verify"):
    if rep["latency"][op]["p99Ms"] is None:
        bad.append(f"no {op} latency")
if bad:
    print("\n".join("[load] CHECK FAILED: " + b for b in bad), file=sys.stderr)
    sys.exit(1)
print(f"[load] ok: {verified} pairs verified, {wrong} wrong codes answered 474, no other answer", file=sys.stderr)
PY
}

case "${1:-}" in
    install) cmd_install ;;
    run) cmd_run ;;
    dev) cmd_dev ;;
    local-aws) cmd_local_aws ;;
    check) check_report "${2:?report file}" "${3:?users}" ;;
    *)
        echo "usage: $0 {install|run|dev|local-aws|check REPORT USERS}" >&2
        exit 2
        ;;
esac
