#!/usr/bin/env bash
# The workflow state machine end to end on moto: the real step Lambda binary behind the Lambda
# Runtime API of `cargo lambda watch`, reached by moto's Step Functions Task through the router.
#
#   moto (MOTO_PORT, started by moto.sh with its internal AWS endpoint = the router)
#     └─ Step Functions Task: lambda:invoke ─▶ router (ROUTER_PORT) ─▶ cargo lambda watch (WATCH_PORT)
#                                                   └─ anything else ─▶ moto        └─ twofa-workflow-step ×2
#                                                                                      (DynamoDB on moto)
#
# cargo lambda watch serves only the Lambda APIs (--only-lambda-apis); the function is the debug
# binary of the workspace's own build (`cargo build --workspace --all-targets`, make test's build
# phase, with the same features as the tests), run here as two instances polling its Runtime API.
# Letting cargo lambda build it would compile its dependencies a second time with other features.
#
#   infra/scripts/workflow_e2e.sh install   pinned cargo-lambda into .venv (idempotent)
#   infra/scripts/workflow_e2e.sh start     router + cargo lambda watch + the step Lambda; returns
#                                           once it answers (moto must be running)
#   infra/scripts/workflow_e2e.sh stop      stop both, by the pids recorded in .run/
#   infra/scripts/workflow_e2e.sh env       print the export lines tests/tests/workflow_sfn.rs needs
#
# Never kills anything by name: only the pids (and their process groups) this script recorded.
set -euo pipefail

SCRIPT_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "${SCRIPT_DIR}/../.." && pwd)"
CARGO_LAMBDA_VERSION="1.9.2"
MOTO_PORT="${MOTO_PORT:-5055}"
# The router's port is the one moto.sh gives moto as its internal endpoint: keep them together.
ROUTER_PORT="${TWOFA_LAMBDA_ROUTER_PORT:-$((MOTO_PORT + 1))}"
WATCH_PORT="${TWOFA_LAMBDA_WATCH_PORT:-$((MOTO_PORT + 2))}"
FUNCTION="twofa-workflow-step"
# What the step Lambda runs against: its own table on moto and a fixed test master key.
TABLE="${TWOFA_WORKFLOW_TABLE:-twofa-workflow-e2e}"
SECRET_KEY="${TWOFA_WORKFLOW_SECRET_KEY:-5f0e2a9c7b1d4e3f8a6c0b2d4f6e8a0c1e3a5c7e9b1d3f5a7c9e1b3d5f7a9c0e}"
START_TIMEOUT_S="${TWOFA_LAMBDA_START_TIMEOUT_S:-120}"
# Instances of the step Lambda polling the Runtime API (executions run side by side in tests).
INSTANCES=2
BINARY="${CARGO_TARGET_DIR:-${ROOT}/target}/debug/${FUNCTION}"

VENV="${ROOT}/.venv"
STAMP="${VENV}/.cargo-lambda-stamp"
RUN_DIR="${ROOT}/.run"
ROUTER_PID="${RUN_DIR}/lambda-router.pid"
WATCH_PID="${RUN_DIR}/lambda-watch.pid"
ROUTER_LOG="${RUN_DIR}/lambda-router.log"
WATCH_LOG="${RUN_DIR}/lambda-watch.log"
# The step Lambda instance i: .run/lambda-step-$i.pid / .log
step_pid() { echo "${RUN_DIR}/lambda-step-$1.pid"; }
MOTO_URL="http://127.0.0.1:${MOTO_PORT}"
ROUTER_URL="http://127.0.0.1:${ROUTER_PORT}"
WATCH_URL="http://127.0.0.1:${WATCH_PORT}"

log() { printf '[workflow-e2e] %s\n' "$*" >&2; }
die() { printf '[workflow-e2e] ERROR: %s\n' "$*" >&2; exit 1; }

# http METHOD URL [BODY]: prints the status code, then the body; exit 1 only if no answer.
http() {
    "${VENV}/bin/python" - "$@" <<'PY'
import sys, urllib.request, urllib.error
method, url = sys.argv[1], sys.argv[2]
body = sys.argv[3].encode() if len(sys.argv) > 3 else None
req = urllib.request.Request(url, data=body, method=method)
try:
    with urllib.request.urlopen(req, timeout=600) as r:
        print(r.status); sys.stdout.write(r.read().decode("utf-8", "replace"))
except urllib.error.HTTPError as e:
    print(e.code); sys.stdout.write(e.read().decode("utf-8", "replace"))
except Exception as e:
    sys.stderr.write(f"{e}\n"); sys.exit(1)
PY
}

cmd_install() {
    [[ -x "${VENV}/bin/python" ]] || bash "${SCRIPT_DIR}/moto.sh" install
    if [[ -x "${VENV}/bin/cargo-lambda" && -f "${STAMP}" && "$(cat "${STAMP}")" == "${CARGO_LAMBDA_VERSION}" ]]; then
        log "cargo-lambda ${CARGO_LAMBDA_VERSION} already installed in .venv"
        return 0
    fi
    log "installing cargo-lambda==${CARGO_LAMBDA_VERSION} into .venv"
    "${VENV}/bin/python" -m pip install --quiet --disable-pip-version-check "cargo-lambda==${CARGO_LAMBDA_VERSION}" >&2
    [[ -x "${VENV}/bin/cargo-lambda" ]] || die "cargo-lambda missing after install"
    echo "${CARGO_LAMBDA_VERSION}" >"${STAMP}"
}

# alive PIDFILE PATTERN: the recorded pid is alive and its command line matches.
alive() {
    local pid
    pid="$(cat "$1" 2>/dev/null || true)"
    [[ "${pid}" =~ ^[0-9]+$ ]] && kill -0 "${pid}" 2>/dev/null \
        && tr '\0' ' ' <"/proc/${pid}/cmdline" 2>/dev/null | grep -q -- "$2"
}

# stop_group PIDFILE PATTERN NAME: each was started with setsid, so its pid is its process
# group: the group goes too (cargo lambda watch runs cargo, which runs the binary).
stop_group() {
    local file="$1" pattern="$2" name="$3" pid
    [[ -f "${file}" ]] || return 0
    pid="$(cat "${file}")"
    if alive "${file}" "${pattern}"; then
        log "stopping ${name} (pid ${pid})"
        kill -- "-${pid}" 2>/dev/null || kill "${pid}" 2>/dev/null || true
        local _
        for _ in $(seq 1 50); do
            kill -0 "${pid}" 2>/dev/null || break
            sleep 0.1
        done
        if kill -0 "${pid}" 2>/dev/null; then
            log "${name} (pid ${pid}) ignored SIGTERM; sending SIGKILL"
            kill -9 -- "-${pid}" 2>/dev/null || true
        fi
        # cargo lambda runs each function instance in a process group of its own, inside the
        # session setsid gave it (session id = the recorded pid): end what is left of it.
        local left
        left="$(ps -eo pid=,sid= | awk -v s="${pid}" '$2 == s {print $1}')"
        if [[ -n "${left}" ]]; then
            log "ending what ${name} left running: ${left//$'\n'/ }"
            # shellcheck disable=SC2086
            kill ${left} 2>/dev/null || true
        fi
    fi
    rm -f "${file}"
}

cmd_start() {
    cmd_install
    mkdir -p "${RUN_DIR}"
    http GET "${MOTO_URL}/moto-api/" >/dev/null 2>&1 || die "moto does not answer on ${MOTO_URL}: run moto.sh start first"

    if alive "${ROUTER_PID}" lambda_router.py; then
        log "reusing the router (pid $(cat "${ROUTER_PID}")) at ${ROUTER_URL}"
    else
        rm -f "${ROUTER_PID}"
        http GET "${ROUTER_URL}/_router/invocations" >/dev/null 2>&1 \
            && die "something not started by this script answers on ${ROUTER_URL}"
        setsid "${VENV}/bin/python" "${SCRIPT_DIR}/lambda_router.py" 127.0.0.1 "${ROUTER_PORT}" "${MOTO_URL}" "${WATCH_URL}" \
            </dev/null >"${ROUTER_LOG}" 2>&1 &
        echo $! >"${ROUTER_PID}"
    fi

    local t0=${SECONDS}
    if [[ ! -x "${BINARY}" ]]; then
        log "building the workspace (make test's build: cargo build --workspace --all-targets)"
        (cd "${ROOT}" && cargo build -q --workspace --all-targets --features twofa/aws) >&2
    fi
    if alive "${WATCH_PID}" cargo-lambda; then
        log "reusing cargo lambda watch (pid $(cat "${WATCH_PID}")) at ${WATCH_URL}"
    else
        rm -f "${WATCH_PID}"
        log "starting cargo lambda watch --only-lambda-apis on ${WATCH_URL} (log: .run/lambda-watch.log)"
        (
            cd "${ROOT}"
            exec setsid "${VENV}/bin/cargo-lambda" lambda watch --only-lambda-apis \
                --invoke-address 127.0.0.1 --invoke-port "${WATCH_PORT}"
        ) </dev/null >"${WATCH_LOG}" 2>&1 &
        echo $! >"${WATCH_PID}"
    fi
    # The instances exit if the Runtime API is not there yet: it listens first.
    until (: >"/dev/tcp/127.0.0.1/${WATCH_PORT}") 2>/dev/null; do
        alive "${WATCH_PID}" cargo-lambda || { tail -n 40 "${WATCH_LOG}" >&2; die "cargo lambda watch exited during start-up"; }
        ((SECONDS - t0 < START_TIMEOUT_S)) || { cmd_stop; die "cargo lambda watch did not listen within ${START_TIMEOUT_S} s"; }
        sleep 0.2
    done
    local i
    for i in $(seq 1 "${INSTANCES}"); do
        if alive "$(step_pid "$i")" "${FUNCTION}"; then
            continue
        fi
        # The function's environment: the Runtime API's path for this function, the SDK straight
        # at moto (its calls need no routing), its table and master key, the suite's generous
        # SDK timeouts for a loaded moto.
        (
            export AWS_LAMBDA_RUNTIME_API="${WATCH_URL}/.rt/${FUNCTION}" AWS_LAMBDA_FUNCTION_NAME="${FUNCTION}" \
                AWS_LAMBDA_FUNCTION_VERSION='$LATEST' AWS_LAMBDA_FUNCTION_MEMORY_SIZE=256 \
                AWS_LAMBDA_LOG_GROUP_NAME="/aws/lambda/${FUNCTION}" AWS_LAMBDA_LOG_STREAM_NAME="local-$i" \
                AWS_ENDPOINT_URL="${MOTO_URL}" AWS_ACCESS_KEY_ID=testing AWS_SECRET_ACCESS_KEY=testing \
                AWS_REGION=us-east-1 AWS_DEFAULT_REGION=us-east-1 \
                TWOFA_TABLE="${TABLE}" TWOFA_SECRET_KEY="${SECRET_KEY}" RUST_LOG="${RUST_LOG:-info}" \
                TWOFA_VOICE_ORIGINATION=+18005550199 AWS_ENDPOINT_URL_PINPOINT_SMS_VOICE_V2="${ROUTER_URL}" \
                TWOFA_AWS_ATTEMPT_TIMEOUT_MS="${TWOFA_AWS_ATTEMPT_TIMEOUT_MS:-10000}" \
                TWOFA_AWS_OPERATION_TIMEOUT_MS="${TWOFA_AWS_OPERATION_TIMEOUT_MS:-30000}"
            unset TWOFA_SECRET_ARN
            exec setsid "${BINARY}"
        ) </dev/null >"${RUN_DIR}/lambda-step-$i.log" 2>&1 &
        echo $! >"$(step_pid "$i")"
    done

    # Ready when the step Lambda itself answers: an empty event is refused by its deserializer
    # (a function error), which proves the binary is built and running.
    local out status
    until out="$(http POST "${WATCH_URL}/2015-03-31/functions/${FUNCTION}/invocations" '{}' 2>/dev/null)" \
        && status="$(head -n1 <<<"${out}")" && [[ "${status}" == 200 || "${status}" == 500 ]] \
        && grep -q errorType <<<"${out}"; do
        if ! alive "${WATCH_PID}" cargo-lambda; then
            tail -n 40 "${WATCH_LOG}" >&2 || true
            die "cargo lambda watch exited during start-up"
        fi
        if ! alive "$(step_pid 1)" "${FUNCTION}"; then
            tail -n 40 "${RUN_DIR}/lambda-step-1.log" >&2 || true
            die "the step Lambda exited during start-up"
        fi
        if ((SECONDS - t0 >= START_TIMEOUT_S)); then
            tail -n 40 "${WATCH_LOG}" >&2 || true
            cmd_stop
            die "the step Lambda did not answer within ${START_TIMEOUT_S} s"
        fi
        sleep 1
    done
    alive "${ROUTER_PID}" lambda_router.py || { tail -n 20 "${ROUTER_LOG}" >&2; die "the router exited"; }
    log "step Lambda ready (${INSTANCES} instances behind cargo lambda watch) in $((SECONDS - t0)) s; router at ${ROUTER_URL}"
}

cmd_stop() {
    local i
    for i in $(seq 1 "${INSTANCES}"); do
        stop_group "$(step_pid "$i")" "${FUNCTION}" "the step Lambda ($i)"
    done
    stop_group "${WATCH_PID}" cargo-lambda "cargo lambda watch"
    stop_group "${ROUTER_PID}" lambda_router.py "the Lambda router"
}

cmd_env() {
    cat <<EOF
export TWOFA_LAMBDA_ROUTER_URL=${ROUTER_URL}
export TWOFA_WORKFLOW_STEP_FUNCTION=${FUNCTION}
export TWOFA_WORKFLOW_TABLE=${TABLE}
export TWOFA_WORKFLOW_SECRET_KEY=${SECRET_KEY}
EOF
}

case "${1:-}" in
    install) cmd_install ;;
    start) cmd_start ;;
    stop) cmd_stop ;;
    env) cmd_env ;;
    *)
        echo "usage: $0 {install|start|stop|env}" >&2
        exit 2
        ;;
esac
