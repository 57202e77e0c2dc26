#!/usr/bin/env bash
# The console's browser tests (tests/browser: pytest + Playwright, axe-core) in headless Chromium.
#
#   infra/scripts/browser.sh install   Debian's chromium (apt-get, as root or with sudo -n) when
#                                      missing, and pinned Playwright, pytest and
#                                      axe-playwright-python in .venv-browser (idempotent)
#   infra/scripts/browser.sh run       make test-browser: build the dev server (the workspace's
#                                      debug build, a no-op after make test's), start it on a
#                                      free port, run every browser test, stop it (by the pid
#                                      recorded here); ends with `browser: N passed, N failed`.
#                                      The passkeys tests open it as http://localhost:PORT
#                                      (WebAuthn wants a domain; it binds 127.0.0.1)
#   infra/scripts/browser.sh sam       make test-sam's step: the one test marked `deployed` (sign
#                                      in, overview, sign out) against the running make local-aws
#                                      (.run/local-aws.env: its URL, account sid and token)
#
# Playwright downloads no browser here (none can be fetched): the tests launch Debian's chromium
# by its path (TWOFA_CHROMIUM, default /usr/lib/chromium/chromium). Screenshots of every page go
# to .run/console-*.png (.run/console-sam-*.png from `sam`); pytest's output to .run/browser.log
# (.run/browser-sam.log). TWOFA_DEV_BIN=path runs that dev server binary instead of building
# one. Extra arguments go to pytest (`infra/scripts/browser.sh run -k sign_in -x`).
set -euo pipefail

SCRIPT_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "${SCRIPT_DIR}/../.." && pwd)"
# One spec line: the stamp names all three, so changing any one reinstalls.
SPEC="playwright==1.65.2 pytest==9.2.0 axe-playwright-python==0.1.8"
PYTHON="${PYTHON:-python3}"
VENV="${ROOT}/.venv-browser"
RUN_DIR="${ROOT}/.run"
TESTS="${ROOT}/tests/browser"
PID_FILE="${RUN_DIR}/browser-dev.pid"
DEV_LOG="${RUN_DIR}/browser-dev.log"
# make test-browser's bound on pytest (the suite takes about a minute).
MAX_SECONDS="${BROWSER_MAX_SECONDS:-300}"
CHROMIUM="${TWOFA_CHROMIUM:-/usr/lib/chromium/chromium}"

log() { printf '[browser] %s\n' "$*" >&2; }
die() { printf '[browser] ERROR: %s\n' "$*" >&2; exit 1; }
# shellcheck source=venv.sh
source "${SCRIPT_DIR}/venv.sh"

install_chromium() {
    [[ -x "${CHROMIUM}" ]] && return 0
    log "installing Debian's chromium (apt-get)"
    local as_root=()
    if [[ "$(id -u)" -eq 0 ]]; then
        as_root=(env)
    elif command -v sudo >/dev/null && sudo -n true 2>/dev/null; then
        as_root=(sudo -n env)
    fi
    if ! { ((${#as_root[@]})) && command -v apt-get >/dev/null &&
        { "${as_root[@]}" DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null ||
            { "${as_root[@]}" DEBIAN_FRONTEND=noninteractive apt-get update -qq &&
                "${as_root[@]}" DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; }; }; }; then
        die "chromium is missing and could not be installed (needs apt-get, as root or with sudo): apt-get install chromium, then run again"
    fi
    [[ -x "${CHROMIUM}" ]] || die "chromium installed, but no browser at ${CHROMIUM} (set TWOFA_CHROMIUM)"
}

cmd_install() {
    install_chromium
    # venv.sh's pip_install_pinned, for several packages: the stamp names the whole SPEC.
    if [[ -x "${VENV}/bin/pytest" && -f "${VENV}/.stamp" && "$(cat "${VENV}/.stamp")" == "${SPEC}" ]]; then
        log "${SPEC} already installed in .venv-browser"
    else
        make_venv "${VENV}"
        log "installing ${SPEC}"
        local specs
        read -ra specs <<<"${SPEC}"
        "${VENV}/bin/python" -m pip install --quiet --disable-pip-version-check "${specs[@]}" >&2
        [[ -x "${VENV}/bin/pytest" ]] || die "pytest missing after install"
        echo "${SPEC}" >"${VENV}/.stamp"
    fi
    "${VENV}/bin/python" -c 'import playwright, axe_playwright_python' \
        || die "playwright or axe-playwright-python missing in .venv-browser"
    log "chromium: $("${CHROMIUM}" --version 2>/dev/null || echo "${CHROMIUM}")"
}

# run_pytest LABEL ARGS...: the suite, its output kept in .run/LABEL.log; closes with
# `LABEL: N passed, N failed` from pytest's summary (errors count as failures). No test run
# (pytest's exit 5) fails too.
run_pytest() {
    local label=$1 rc=0
    local log_file="${RUN_DIR}/${label}.log"
    shift
    PYTHONDONTWRITEBYTECODE=1 TWOFA_CHROMIUM="${CHROMIUM}" timeout "${MAX_SECONDS}" "${VENV}/bin/python" -m pytest "${TESTS}" \
        -p no:cacheprovider -q -rfE "$@" 2>&1 | tee "${log_file}" || rc=$?
    ((rc != 124)) || log "the browser tests ran past ${MAX_SECONDS} s"
    local summary passed failed
    summary="$(grep -E '[0-9]+ (passed|failed|errors?|skipped|deselected).* in [0-9.]+s' "${log_file}" | tail -1 || true)"
    passed="$(grep -oE '[0-9]+ passed' <<<"${summary}" | grep -oE '[0-9]+' || echo 0)"
    failed="$({ grep -oE '[0-9]+ (failed|errors?)' <<<"${summary}" || true; } | awk '{n += $1} END {print n + 0}')"
    echo "${label}: ${passed} passed, ${failed} failed" | tee -a "${log_file}"
    ((rc == 0 && passed > 0))
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
    local bin="${TWOFA_DEV_BIN:-}"
    if [[ -z "${bin}" ]]; then
        # The workspace's debug build (make test's build phase; a no-op after it): `-p twofa-local`
        # alone would build the dependencies again with other features.
        log "building the dev server (the workspace's debug build)"
        cargo build -q --workspace --all-targets --features twofa/aws
        bin="${CARGO_TARGET_DIR:-${ROOT}/target}/debug/twofa-local"
    fi
    [[ -x "${bin}" ]] || die "no dev server binary at ${bin}"
    local port
    port="$("${VENV}/bin/python" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
    trap stop_dev EXIT
    # The dev account is not used: each test makes the accounts it signs in as (POST /dev/accounts).
    PORT="${port}" TWOFA_DEV_AUTH_TOKEN="browser-$(od -An -N8 -tx1 /dev/urandom | tr -d ' \n')" RUST_LOG=warn \
        "${bin}" </dev/null >"${DEV_LOG}" 2>&1 &
    echo $! >"${PID_FILE}"
    local url="http://127.0.0.1:${port}" deadline=$((SECONDS + 30))
    until "${VENV}/bin/python" -c "import urllib.request; urllib.request.urlopen('${url}/health', timeout=1)" 2>/dev/null; do
        kill -0 "$(cat "${PID_FILE}")" 2>/dev/null || { tail -n 20 "${DEV_LOG}" >&2; die "the dev server exited"; }
        ((SECONDS < deadline)) || die "the dev server did not answer on port ${port} within 30 s"
        sleep 0.2
    done
    log "dev server on ${url} (pid $(cat "${PID_FILE}")); tests in tests/browser, screenshots in .run/console-*.png"
    local start=${SECONDS} rc=0
    TWOFA_BROWSER_URL="${url}" TWOFA_BROWSER_DEV=1 run_pytest browser "$@" || rc=$?
    log "browser tests took $((SECONDS - start)) s (pytest log .run/browser.log, server log .run/browser-dev.log)"
    return "${rc}"
}

cmd_sam() {
    cmd_install
    cd "${ROOT}"
    local env_file="${RUN_DIR}/local-aws.env"
    [[ -f "${env_file}" ]] || die "the local stack is not up (no .run/local-aws.env): make local-aws first"
    # shellcheck disable=SC1090
    source "${env_file}"
    [[ -n "${TWOFA_SAM_URL:-}" && -n "${TWOFA_ACCOUNT_SID:-}" && -n "${TWOFA_AUTH_TOKEN:-}" ]] \
        || die ".run/local-aws.env lacks TWOFA_SAM_URL, TWOFA_ACCOUNT_SID or TWOFA_AUTH_TOKEN"
    log "the deployed-path test against ${TWOFA_SAM_URL} as ${TWOFA_ACCOUNT_SID}"
    TWOFA_BROWSER_URL="${TWOFA_SAM_URL}" TWOFA_BROWSER_SID="${TWOFA_ACCOUNT_SID}" \
        TWOFA_BROWSER_TOKEN="${TWOFA_AUTH_TOKEN}" TWOFA_BROWSER_SHOT_PREFIX=console-sam- \
        run_pytest browser-sam -m deployed "$@"
}

case "${1:-}" in
    install) cmd_install ;;
    run) shift; cmd_run "$@" ;;
    sam) shift; cmd_sam "$@" ;;
    *)
        echo "usage: $0 {install|run|sam} [pytest args...]" >&2
        exit 2
        ;;
esac
