#!/usr/bin/env bash
# Local AWS for the integration tests: a pinned moto server in a project-local virtualenv.
#
#   infra/scripts/moto.sh install   create .venv and install the pinned moto[server] (idempotent)
#   infra/scripts/moto.sh start     start moto on $MOTO_HOST:$MOTO_PORT (127.0.0.1:5055), or reuse ours
#   infra/scripts/moto.sh stop      stop the moto recorded in .run/${MOTO_NAME}.pid
#   infra/scripts/moto.sh status    exit 0 if the moto recorded in .run/${MOTO_NAME}.pid is alive
#   infra/scripts/moto.sh env       print the export lines the tests need
#
# Never kills anything by name: only the pid this script recorded.
set -euo pipefail

SCRIPT_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "${SCRIPT_DIR}/../.." && pwd)"
MOTO_VERSION="5.2.5"
# Everything pip installs, pinned; the stamp records it so a change re-installs.
MOTO_SPEC="moto[server]==${MOTO_VERSION}"
MOTO_PORT="${MOTO_PORT:-5055}"
# moto's Step Functions executor calls AWS (a Task's Lambda invoke) at http://localhost:$MOTO_PORT
# of its own environment: that is pointed at the Lambda router of workflow_e2e.sh, which sends
# Lambda invokes to the real step Lambda and everything else back to this moto.
LAMBDA_ROUTER_PORT="${TWOFA_LAMBDA_ROUTER_PORT:-$((MOTO_PORT + 1))}"
# The address moto listens on: loopback, or (make local-aws) the gateway of the project's own
# Docker network, which the Lambda containers reach and which is an address of this machine.
MOTO_HOST="${MOTO_HOST:-127.0.0.1}"
PYTHON="${PYTHON:-python3}"

VENV="${ROOT}/.venv"
STAMP="${VENV}/.moto-stamp"
RUN_DIR="${ROOT}/.run"
# MOTO_NAME names the pid and log files, so a second moto (make local-aws's) can run beside
# make test's.
MOTO_NAME="${MOTO_NAME:-moto}"
PID_FILE="${RUN_DIR}/${MOTO_NAME}.pid"
LOG_FILE="${RUN_DIR}/${MOTO_NAME}.log"
BASE_URL="http://${MOTO_HOST}:${MOTO_PORT}"

log() { printf '[moto] %s\n' "$*" >&2; }
die() { printf '[moto] ERROR: %s\n' "$*" >&2; exit 1; }
# shellcheck source=venv.sh
source "$(dirname "${BASH_SOURCE[0]}")/venv.sh"

# http METHOD URL [BODY]: prints the response body; non-zero exit on connection error or non-2xx.
# Uses the venv's python so nothing beyond python3 is needed on the machine.
http() {
    "${VENV}/bin/python" - "$@" <<'PY'
import sys, urllib.request
method, url = sys.argv[1], sys.argv[2]
body = sys.argv[3].encode() if len(sys.argv) > 3 else None
req = urllib.request.Request(url, data=body, method=method)
if body is not None:
    req.add_header("Content-Type", "application/json")
try:
    with urllib.request.urlopen(req, timeout=5) as r:
        sys.stdout.write(r.read().decode("utf-8", "replace"))
except Exception as e:  # connection refused, timeout, HTTP error
    sys.stderr.write(f"{e}\n")
    sys.exit(1)
PY
}

stamp_wanted() { printf '%s\n' "${MOTO_SPEC}"; }

cmd_install() {
    if [[ -x "${VENV}/bin/moto_server" && -f "${STAMP}" ]] && [[ "$(cat "${STAMP}")" == "$(stamp_wanted)" ]]; then
        log "moto ${MOTO_VERSION} already installed in .venv"
        return 0
    fi
    make_venv "${VENV}"
    log "installing ${MOTO_SPEC}"
    "${VENV}/bin/python" -m pip install --quiet --disable-pip-version-check "${MOTO_SPEC}" >&2
    [[ -x "${VENV}/bin/moto_server" ]] || die "moto_server missing after install"
    "${VENV}/bin/python" -c "import moto.server, boto3" || die "moto server extra does not import"
    stamp_wanted >"${STAMP}"
    log "installed $("${VENV}/bin/python" -c 'import moto; print("moto", moto.__version__)')"
}

# Is PID alive and a moto server?
is_moto_pid() {
    local pid="$1"
    [[ "${pid}" =~ ^[0-9]+$ ]] || return 1
    kill -0 "${pid}" 2>/dev/null || return 1
    [[ -r "/proc/${pid}/cmdline" ]] || return 1
    tr '\0' ' ' <"/proc/${pid}/cmdline" | grep -q 'moto_serial_server'
}

recorded_pid() {
    if [[ -f "${PID_FILE}" ]]; then
        cat "${PID_FILE}" 2>/dev/null || true
    fi
}

cmd_status() {
    local pid
    pid="$(recorded_pid)"
    if [[ -n "${pid}" ]] && is_moto_pid "${pid}"; then
        echo "moto running (pid ${pid}) at ${BASE_URL}"
        return 0
    fi
    echo "moto not running"
    return 1
}

configure() {
    http POST "${BASE_URL}/moto-api/config" \
        '{"stepfunctions":{"execute_state_machine":true},"lambda":{"use_docker":false}}' >/dev/null \
        || die "POST /moto-api/config failed"
}

cmd_start() {
    [[ -x "${VENV}/bin/moto_server" ]] || cmd_install
    mkdir -p "${RUN_DIR}"
    local pid
    pid="$(recorded_pid)"
    if [[ -n "${pid}" ]] && is_moto_pid "${pid}"; then
        if http GET "${BASE_URL}/moto-api/" >/dev/null 2>&1; then
            log "reusing moto (pid ${pid}) at ${BASE_URL}"
            configure
            return 0
        fi
        die "moto pid ${pid} is alive but ${BASE_URL} does not answer (another port?); run: $0 stop"
    fi
    rm -f "${PID_FILE}"
    if http GET "${BASE_URL}/moto-api/" >/dev/null 2>&1; then
        die "something not started by this script already answers on ${BASE_URL}; stop it or set MOTO_PORT"
    fi

    log "starting moto on ${BASE_URL} (log: .run/${MOTO_NAME}.log)"
    # setsid: its own session, so it outlives the caller's process group (make moto-up).
    # Serialised requests: see moto_serial_server.py for why.
    env MOTO_PORT="${LAMBDA_ROUTER_PORT}" setsid "${VENV}/bin/python" "${SCRIPT_DIR}/moto_serial_server.py" "${MOTO_HOST}" "${MOTO_PORT}" \
        </dev/null >"${LOG_FILE}" 2>&1 &
    pid=$!
    echo "${pid}" >"${PID_FILE}"

    local deadline=$((SECONDS + 30))
    until http GET "${BASE_URL}/moto-api/" >/dev/null 2>&1; do
        if ! kill -0 "${pid}" 2>/dev/null; then
            rm -f "${PID_FILE}"
            printf '[moto] moto exited during start-up; last lines of %s:\n' "${LOG_FILE}" >&2
            tail -n 30 "${LOG_FILE}" >&2 || true
            exit 1
        fi
        if ((SECONDS >= deadline)); then
            printf '[moto] moto did not answer on %s within 30 s; last lines of %s:\n' "${BASE_URL}" "${LOG_FILE}" >&2
            tail -n 30 "${LOG_FILE}" >&2 || true
            cmd_stop
            exit 1
        fi
        sleep 0.3
    done
    configure
    log "moto ready (pid ${pid})"
}

cmd_stop() {
    local pid
    pid="$(recorded_pid)"
    if [[ -z "${pid}" ]]; then
        log "no .run/${MOTO_NAME}.pid: nothing to stop"
        return 0
    fi
    if is_moto_pid "${pid}"; then
        log "stopping moto (pid ${pid})"
        kill "${pid}" 2>/dev/null || true
        local _
        for _ in $(seq 1 50); do
            kill -0 "${pid}" 2>/dev/null || break
            sleep 0.1
        done
        if kill -0 "${pid}" 2>/dev/null && is_moto_pid "${pid}"; then
            log "moto (pid ${pid}) ignored SIGTERM; sending SIGKILL"
            kill -9 "${pid}" 2>/dev/null || true
        fi
    else
        log "pid ${pid} in .run/${MOTO_NAME}.pid is not a live moto; removing the stale pid file"
    fi
    rm -f "${PID_FILE}"
}

cmd_env() {
    cat <<EOF
export AWS_ENDPOINT_URL=${BASE_URL}
export AWS_ACCESS_KEY_ID=testing
export AWS_SECRET_ACCESS_KEY=testing
export AWS_REGION=us-east-1
export AWS_DEFAULT_REGION=us-east-1
export TWOFA_MOTO_URL=${BASE_URL}
EOF
}

case "${1:-}" in
    install) cmd_install ;;
    start) cmd_start ;;
    stop) cmd_stop ;;
    status) cmd_status ;;
    env) cmd_env ;;
    *)
        echo "usage: $0 {install|start|stop|status|env}" >&2
        exit 2
        ;;
esac
