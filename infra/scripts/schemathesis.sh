#!/usr/bin/env bash
# schemathesis against the dev server with openapi.yaml: no 5xx, every status, content type,
# header and body as the spec says, and credentials enforced (`ignored_auth`).
#
#   infra/scripts/schemathesis.sh install   pinned schemathesis in .venv-schemathesis (idempotent)
#   infra/scripts/schemathesis.sh run       build and start the dev server on a free port, run,
#                                           stop the server (by the pid recorded here)
#
# Bounded: SCHEMATHESIS_EXAMPLES cases per operation (default 10) over the examples, coverage
# and fuzzing phases (about 5 000 calls, about 80 s on 2 shared cores); the run fails under
# SCHEMATHESIS_MIN_CALLS calls (1000) or past SCHEMATHESIS_MAX_SECONDS (180).
# Its own venv: schemathesis and moto pin different versions of the same libraries.
# One worker: with two, hypothesis' ast.parse in threads trips a CPython 3.11.7 bug ("AST
# constructor recursion depth mismatch"), a runtime error of the tool, not of the API.
set -euo pipefail

SCRIPT_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "${SCRIPT_DIR}/../.." && pwd)"
VERSION="4.32.5"
SPEC="schemathesis==${VERSION}"
PYTHON="${PYTHON:-python3}"
VENV="${ROOT}/.venv-schemathesis"
RUN_DIR="${ROOT}/.run"
PID_FILE="${RUN_DIR}/schemathesis-dev.pid"
DEV_LOG="${RUN_DIR}/schemathesis-dev.log"
ST_LOG="${RUN_DIR}/schemathesis.log"
EXAMPLES="${SCHEMATHESIS_EXAMPLES:-10}"
MIN_CALLS="${SCHEMATHESIS_MIN_CALLS:-1000}"
MAX_SECONDS="${SCHEMATHESIS_MAX_SECONDS:-180}"
SEED="${SCHEMATHESIS_SEED:-20261201}"
# The dev account the run authenticates as (fixed, so the command line can name it).
SID="AC5c4e3a7e515000000000000000000000"
TOKEN="schemathesis-token-$(od -An -N8 -tx1 /dev/urandom | tr -d ' \n')"

log() { printf '[schemathesis] %s\n' "$*" >&2; }
die() { printf '[schemathesis] ERROR: %s\n' "$*" >&2; exit 1; }
# shellcheck source=venv.sh
source "$(dirname "${BASH_SOURCE[0]}")/venv.sh"

cmd_install() { pip_install_pinned "${VENV}" "${SPEC}" schemathesis; }

free_port() {
    "${VENV}/bin/python" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

stop_dev() {
    local pid
    pid="$(cat "${PID_FILE}" 2>/dev/null || true)"
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
    rm -f "${PID_FILE}"
}

cmd_run() {
    cmd_install
    mkdir -p "${RUN_DIR}"
    cd "${ROOT}"
    # The workspace's debug build (make test's build phase; a no-op after it): `-p twofa-local`
    # alone would build the dependencies again with other features.
    cargo build -q --workspace --all-targets --features twofa/aws
    local bin="${CARGO_TARGET_DIR:-${ROOT}/target}/debug/twofa-local"
    [[ -x "${bin}" ]] || die "no dev server binary at ${bin}"
    local port
    port="$(free_port)"
    trap stop_dev EXIT
    PORT="${port}" TWOFA_DEV_ACCOUNT_SID="${SID}" TWOFA_DEV_AUTH_TOKEN="${TOKEN}" RUST_LOG=warn \
        "${bin}" </dev/null >"${DEV_LOG}" 2>&1 &
    echo $! >"${PID_FILE}"
    local deadline=$((SECONDS + 30))
    until "${VENV}/bin/python" -c "import urllib.request; urllib.request.urlopen('http://127.0.0.1:${port}/health', timeout=1)" 2>/dev/null; do
        kill -0 "$(cat "${PID_FILE}")" 2>/dev/null || { tail -n 20 "${DEV_LOG}" >&2; die "the dev server exited"; }
        ((SECONDS < deadline)) || die "the dev server did not answer on port ${port} within 30 s"
        sleep 0.2
    done
    log "dev server on 127.0.0.1:${port} (pid $(cat "${PID_FILE}")); ${EXAMPLES} examples per operation, seed ${SEED}"
    local start=${SECONDS} rc=0
    timeout "${MAX_SECONDS}" "${VENV}/bin/schemathesis" run "${ROOT}/openapi.yaml" \
        --url "http://127.0.0.1:${port}" \
        --auth "${SID}:${TOKEN}" \
        --checks not_a_server_error,status_code_conformance,content_type_conformance,response_headers_conformance,response_schema_conformance,ignored_auth \
        --phases examples,coverage,fuzzing \
        --max-examples "${EXAMPLES}" \
        --seed "${SEED}" \
        --workers 1 \
        --generation-database none \
        --no-color \
        --report-dir "${RUN_DIR}/schemathesis-report" \
        >"${ST_LOG}" 2>&1 || rc=$?
    local took=$((SECONDS - start))
    # The summary and any failure, not the whole progress output.
    sed -n '/FAILURES\|SUMMARY/,$p' "${ST_LOG}" >&2
    ((rc != 124)) || die "schemathesis ran past ${MAX_SECONDS} s"
    ((rc == 0)) || die "schemathesis failed (exit ${rc}; full output in .run/schemathesis.log, server log .run/schemathesis-dev.log)"
    local calls
    calls="$(grep -oE '[0-9]+ generated' "${ST_LOG}" | tail -1 | grep -oE '[0-9]+' || echo 0)"
    ((calls >= MIN_CALLS)) || die "only ${calls} calls (want at least ${MIN_CALLS})"
    log "${calls} calls in ${took} s: no 5xx, every response as openapi.yaml says"
}

case "${1:-}" in
    install) cmd_install ;;
    run) cmd_run ;;
    *)
        echo "usage: $0 {install|run}" >&2
        exit 2
        ;;
esac
