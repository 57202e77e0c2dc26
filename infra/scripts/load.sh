#!/usr/bin/env bash
# Send + verify pairs against a twofa deployment with Locust (infra/load/locustfile.py).
#
#   infra/scripts/load.sh install   pinned Locust in .venv-load (idempotent)
#   infra/scripts/load.sh run       make load: ramp USERS users at RAMP a second for DURATION
#                                   against URL as SID/TOKEN, then print the report
#   infra/scripts/load.sh dev       make test's bounded run: a dev server of its own on a free
#                                   port, its account given test numbers, a short run, checks on
#                                   the report, the server stopped (by the pid recorded here)
#   infra/scripts/load.sh check REPORT USERS   dev's checks on the REPORT=file.json of a run with
#                                   WRONG_PERCENT > 0 (a bounded run against make local-aws;
#                                   LOAD_TEST_MIN_PAIRS, 200, the fewest pairs it accepts)
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
STAMP="${VENV}/.stamp"
RUN_DIR="${ROOT}/.run"
LOCUSTFILE="${ROOT}/infra/load/locustfile.py"

log() { printf '[load] %s\n' "$*" >&2; }
die() { printf '[load] ERROR: %s\n' "$*" >&2; exit 1; }
# shellcheck source=venv.sh
source "$(dirname "${BASH_SOURCE[0]}")/venv.sh"

cmd_install() {
    if [[ -x "${VENV}/bin/locust" && -f "${STAMP}" && "$(cat "${STAMP}")" == "${SPEC}" ]]; then
        log "${SPEC} already installed in .venv-load"
        return 0
    fi
    make_venv "${VENV}"
    log "installing ${SPEC}"
    "${VENV}/bin/python" -m pip install --quiet --disable-pip-version-check "${SPEC}" >&2
    [[ -x "${VENV}/bin/locust" ]] || die "locust missing after install"
    echo "${SPEC}" >"${STAMP}"
}

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
    # 20 test numbers (the most an account may have), one code: what an operator sets with
    # twofa-admin on a deployment, here through the dev route.
    local numbers=() i
    for i in $(seq 100 119); do numbers+=("+14155550${i}"); done
    "${py}" - "${url}" "${sid}" "${numbers[@]}" <<'PY' || die "setting the test numbers failed"
import json, sys, urllib.request
url, sid, numbers = sys.argv[1], sys.argv[2], sys.argv[3:]
body = {"accountSid": sid, "testNumbers": [{"to": n, "code": "246810"} for n in numbers]}
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
        TWOFA_LOAD_CODE=246810 TWOFA_LOAD_WRONG_PERCENT=10 TWOFA_LOAD_REPORT="${DEV_REPORT}" LOAD_TIMEOUT=120 \
        locust_run "${url}" "${users}" 1 "${duration}" || rc=$?
    ((rc == 0)) || die "locust failed (exit ${rc}; dev server log .run/load-dev.log)"
    [[ -f "${DEV_REPORT}" ]] || die "no report at ${DEV_REPORT}"
    check_report "${DEV_REPORT}" "${users}"
}

# check_report FILE USERS: what a sound run of the dev server must show. Every send answers 200; every
# right code 200; every wrong code 401/474 (and nothing else); no 5xx; and enough pairs that the
# run did real work (a floor far below what 2 shared cores do: about 1,000 pairs a second).
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
    check) check_report "${2:?report file}" "${3:?users}" ;;
    *)
        echo "usage: $0 {install|run|dev|check REPORT USERS}" >&2
        exit 2
        ;;
esac
