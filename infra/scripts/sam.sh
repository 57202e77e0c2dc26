#!/usr/bin/env bash
# AWS SAM for twofa: the pinned tools, the builds, the local stack, validation and deploys.
#
#   infra/scripts/sam.sh install    .venv-sam with the pinned aws-sam-cli, cargo-lambda, cfn-lint
#                                   (infra/sam/requirements.txt, every package pinned; idempotent)
#   infra/scripts/sam.sh build      sam build: every function of template.yaml (BuildMethod
#                                   rust-cargolambda, the release profile) for ARCH, then sizes
#   infra/scripts/sam.sh sizes      each built function's binary and zip (deflate -9) size
#   infra/scripts/sam.sh validate   cfn-lint and sam validate --lint on template.yaml
#   infra/scripts/sam.sh up         make local-aws: the whole API on sam local start-api, each
#                                   function in its Lambda container, AWS from moto (see below)
#   infra/scripts/sam.sh down       stop what `up` started (by pid, container id, network name)
#   infra/scripts/sam.sh env        the export lines of the running local stack (URL, account,
#                                   the table and secret twofa-admin reads)
#   infra/scripts/sam.sh deploy     sam build + sam deploy (--guided the first time: samconfig.toml)
#
# Environment: ARCH (x86_64 | arm64; default the host's), SAM_PORT (local API port, 3001; the
# step Lambda's `sam local start-lambda` takes SAM_PORT+1), MOTO_PORT (5055; the local stack's
# moto listens on the project network's gateway on it, its Lambda router on MOTO_PORT+1).
#
# `up` on this machine kind (a Docker engine, no container registry): the Lambda base image is
# built from the host's own files (infra/scripts/lambda-image.sh) and given to SAM with
# --invoke-image/--skip-pull-image; SAM adds the runtime interface emulator it ships. The
# containers are on a Docker network of ours (twofa-sam-$MOTO_PORT), whose gateway is an
# address of this machine: moto listens there, and the functions reach it through the
# template's AwsEndpointUrl parameter.
#
# Workflows run as on AWS: the template's state machine (infra/statemachine/workflow.asl.json)
# is created in moto, whose Step Functions executor invokes its Lambda Task through the Lambda
# router (infra/scripts/lambda_router.py, as in make test) into `sam local start-lambda`, which
# runs WorkflowStepFunction in its Lambda container:
#
#   client ─▶ sam local start-api ─▶ OtpFunction (container) ─▶ moto: StartExecution
#   moto Step Functions: Wait ─▶ lambda:invoke ─▶ router ─▶ sam local start-lambda ─▶ WorkflowStepFunction
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."
ROOT=$PWD
export SAM_CLI_TELEMETRY=0
VENV="$ROOT/.venv-sam"
REQUIREMENTS=infra/sam/requirements.txt
STAMP="$VENV/.stamp"
RUN="$ROOT/.run"
# Resolved before .venv-sam goes first on PATH: moto's .venv is made from the same python.
PYTHON="${PYTHON:-$(command -v python3 || echo python3)}"
export PYTHON
SAM_PORT="${SAM_PORT:-3001}"
MOTO_PORT="${MOTO_PORT:-5055}"
export MOTO_PORT
NETWORK="twofa-sam-${MOTO_PORT}"
SAM_PID="$RUN/sam-local.pid"
SAM_LOG="$RUN/sam-local.log"
# The step Lambda's invoke endpoint and the router moto's Step Functions calls it through.
LAMBDA_PORT=$((SAM_PORT + 1))
ROUTER_PORT=$((MOTO_PORT + 1))
LAMBDA_PID="$RUN/sam-lambda.pid"
LAMBDA_LOG="$RUN/sam-lambda.log"
ROUTER_PID="$RUN/sam-router.pid"
ROUTER_LOG="$RUN/sam-router.log"
# The state machine's Lambda, named as sam local start-lambda knows it (its logical id).
STEP_FUNCTION=WorkflowStepFunction
LOCAL_ENV="$RUN/local-aws.env"
# The local stack's moto: its own pid/log files, beside make test's.
export MOTO_NAME=moto-sam
BUILD_DIR="$ROOT/.aws-sam/build"

host_arch() {
    case "$(uname -m)" in
        x86_64) echo x86_64 ;;
        aarch64 | arm64) echo arm64 ;;
        *) uname -m ;;
    esac
}
ARCH="${ARCH:-$(host_arch)}"
case "$ARCH" in x86_64 | arm64) ;; *) echo "[sam] ARCH must be x86_64 or arm64, not $ARCH" >&2; exit 2 ;; esac

log() { printf '[sam] %s\n' "$*" >&2; }
die() { printf '[sam] ERROR: %s\n' "$*" >&2; exit 1; }
# shellcheck source=venv.sh
source "$(dirname "${BASH_SOURCE[0]}")/venv.sh"

cmd_install() {
    local want
    want=$(sha256sum "$REQUIREMENTS" | cut -d' ' -f1)
    if [[ -x "$VENV/bin/sam" && -f "$STAMP" && "$(cat "$STAMP")" == "$want" ]]; then
        return 0
    fi
    local start=$SECONDS
    make_venv "$VENV"
    log "installing $REQUIREMENTS (aws-sam-cli, cargo-lambda, cfn-lint and their dependencies, pinned)"
    "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check -r "$REQUIREMENTS" >&2
    "$VENV/bin/sam" --version >&2
    "$VENV/bin/cargo-lambda" lambda --version >&2
    echo "$want" >"$STAMP"
    log "installed in $((SECONDS - start)) s"
}

# The tools on PATH: sam finds cargo-lambda there, cargo-lambda finds zig (ziglang) there.
use_venv() {
    cmd_install
    export PATH="$VENV/bin:$PATH"
}

# The Binary of every rust-cargolambda function of template.yaml, one a line.
template_binaries() {
    "$VENV/bin/python" - template.yaml <<'PY'
import sys
from samcli.yamlhelper import yaml_parse
t = yaml_parse(open(sys.argv[1]).read())
for r in t["Resources"].values():
    meta = r.get("Metadata") or {}
    if r.get("Type") == "AWS::Serverless::Function" and meta.get("BuildMethod") == "rust-cargolambda":
        print(meta["BuildProperties"]["Binary"])
PY
}

cmd_sizes() {
    [[ -d "$BUILD_DIR" ]] || die "nothing built yet: run make build"
    "$VENV/bin/python" - "$BUILD_DIR" <<'PY'
import io, os, sys, zipfile
build = sys.argv[1]
print(f"    {'function':<26} {'binary':>12} {'zip (deflate -9)':>18}")
for fn in sorted(os.listdir(build)):
    path = os.path.join(build, fn, "bootstrap")
    if not os.path.isfile(path):
        continue
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED, compresslevel=9) as z:
        z.write(path, "bootstrap")
    size = os.path.getsize(path)
    print(f"    {fn:<26} {size:>12,} {len(buf.getvalue()):>18,}   ({size / 1e6:.2f} MB / {len(buf.getvalue()) / 1e6:.2f} MB)")
PY
}

cmd_build() {
    use_venv
    command -v cargo >/dev/null || die "cargo is not installed"
    if [[ "$ARCH" != "$(host_arch)" ]]; then
        local triple=aarch64-unknown-linux-gnu
        [[ "$ARCH" == x86_64 ]] && triple=x86_64-unknown-linux-gnu
        if ! rustup target list --installed 2>/dev/null | grep -qx "$triple"; then
            die "ARCH=$ARCH needs the Rust standard library for $triple (rustup target add $triple), which this toolchain does not have; cargo-lambda brings the linker (zig), not the target. Build ARCH=$(host_arch) here, or on a machine with the target."
        fi
    fi
    local start=$SECONDS bins flags=()
    # Every binary at once first, with the flags sam build passes (cargo lambda build --release
    # --bin X [--arm64]): cargo links them in parallel, and each function's own cargo-lambda
    # run inside sam build then finds it fresh.
    bins=$(template_binaries)
    [[ -n "$bins" ]] || die "no rust-cargolambda function in template.yaml"
    [[ "$ARCH" == arm64 ]] && flags+=(--arm64)
    log "cargo lambda build --release (ARCH=$ARCH): $(echo $bins)"
    # shellcheck disable=SC2046
    cargo lambda build --release "${flags[@]}" $(printf -- '--bin %s ' $bins) >&2
    log "binaries built in $((SECONDS - start)) s; sam build"
    sam build --beta-features --parameter-overrides "Architecture=$ARCH" >&2
    log "make build took $((SECONDS - start)) s"
    echo "==> function sizes ($ARCH, .aws-sam/build)"
    cmd_sizes
}

cmd_validate() {
    use_venv
    local start=$SECONDS
    cfn-lint template.yaml
    sam validate --lint --region us-east-1 >/dev/null
    log "cfn-lint and sam validate --lint: clean ($((SECONDS - start)) s)"
}

# --- the local stack -----------------------------------------------------------------------

need_docker() {
    command -v docker >/dev/null || die "make local-aws needs Docker: the docker command is missing (Debian: apt-get install docker.io, then start dockerd)"
    docker info >/dev/null 2>&1 || die "make local-aws needs a running Docker engine: docker info fails ($(docker info 2>&1 | tail -1))"
}

gateway() {
    docker network inspect -f '{{range .IPAM.Config}}{{.Gateway}}{{end}}' "$NETWORK"
}

alive() { [[ -f "$1" ]] && kill -0 "$(cat "$1")" 2>/dev/null; }

wait_http() { # wait_http URL SECONDS PID
    local deadline=$((SECONDS + $2))
    until "$VENV/bin/python" -c 'import sys, urllib.request, urllib.error
try:
    urllib.request.urlopen(sys.argv[1], timeout=2)
except urllib.error.HTTPError:
    pass' "$1" 2>/dev/null; do
        kill -0 "$3" 2>/dev/null || return 1
        ((SECONDS < deadline)) || return 1
        sleep 0.5
    done
}

# sam_local COMMAND PORT WARM LOG PIDFILE: `sam local start-api|start-lambda` on the built
# template, in the background: the emulation image, our network, the env-vars file and moto's
# endpoint of cmd_up (its $image and $endpoint).
# WhatsApp through the Social stand-in beside moto: any phone number id will do.
WHATSAPP_NUMBER_ID="phone-number-id-0123456789abcdef0123456789abcdef"
# End User Messaging SMS through the SMS Voice v2 stand-in beside moto: any pool id will do. Given,
# the stack has the end-user-messaging SMS route (accounts' routing tables may name it); the
# default route stays sns.
SMS_ORIGINATION_IDENTITY="pool-0123456789abcdef0123456789abcdef"
# Calls through the same stand-in (SendVoiceMessage), from this caller number.
VOICE_ORIGINATION="+18005550199"

sam_local() {
    env AWS_ACCESS_KEY_ID=testing AWS_SECRET_ACCESS_KEY=testing AWS_DEFAULT_REGION=us-east-1 \
        setsid "$VENV/bin/sam" local "$1" \
        --template "$BUILD_DIR/template.yaml" \
        --host 127.0.0.1 --port "$2" \
        --invoke-image "$image" --skip-pull-image \
        --docker-network "$NETWORK" \
        --warm-containers "$3" \
        --env-vars "$RUN/sam-env.json" \
        --parameter-overrides "Architecture=$ARCH" "AwsEndpointUrl=$endpoint" \
            "WhatsappPhoneNumberId=$WHATSAPP_NUMBER_ID" "WhatsappTemplate=twofa_code" \
            "SmsOriginationIdentity=$SMS_ORIGINATION_IDENTITY" "VoiceOrigination=$VOICE_ORIGINATION" \
        --region us-east-1 \
        </dev/null >"$4" 2>&1 &
    echo $! >"$5"
}

cmd_up() {
    need_docker
    use_venv
    local t0=$SECONDS
    if alive "$SAM_PID"; then
        log "the local stack is already up (sam pid $(cat "$SAM_PID")): make local-aws-down first"
        cat "$LOCAL_ENV"
        return 0
    fi
    mkdir -p "$RUN"
    # A start that fails half-way stops what it had started.
    trap 'rc=$?; if ((rc)); then log "make local-aws failed: stopping what it started"; cmd_down; fi' EXIT
    # 1. the functions, built once (cargo is incremental: a no-op when nothing changed)
    if [[ "${SAM_SKIP_BUILD:-0}" != 1 ]]; then cmd_build; fi
    [[ -f "$BUILD_DIR/template.yaml" ]] || die "no .aws-sam/build/template.yaml: run make build"
    # 2. the Lambda base image
    local start=$SECONDS image
    bash infra/scripts/lambda-image.sh build "$ARCH"
    image=$(bash infra/scripts/lambda-image.sh name "$ARCH")
    log "emulation image ready in $((SECONDS - start)) s"
    # 3. the network and moto on its gateway
    docker network inspect "$NETWORK" >/dev/null 2>&1 || docker network create "$NETWORK" >/dev/null
    local gw
    gw=$(gateway)
    [[ -n "$gw" ]] || die "network $NETWORK has no gateway address"
    bash infra/scripts/moto.sh install
    MOTO_HOST="$gw" bash infra/scripts/moto.sh start
    local endpoint="http://$gw:$MOTO_PORT"
    # 4. the table, the master secret and a sender (what sam deploy makes on AWS), then an
    # account made as on AWS: with the admin command
    start=$SECONDS
    local seed account target="${CARGO_TARGET_DIR:-$ROOT/target}/debug"
    # Both come from the workspace's debug test build (make test's, so a no-op after it; their
    # own `cargo build` would build the dependencies again with other features).
    [[ "${SAM_SKIP_BUILD:-0}" == 1 ]] || cargo build -q --workspace --all-targets --features twofa/aws
    local aws_env=(AWS_ENDPOINT_URL="$endpoint" AWS_ACCESS_KEY_ID=testing AWS_SECRET_ACCESS_KEY=testing
        AWS_REGION=us-east-1 TWOFA_AWS_ATTEMPT_TIMEOUT_MS=10000 TWOFA_AWS_OPERATION_TIMEOUT_MS=30000
        TWOFA_AWS_CONNECT_TIMEOUT_MS=10000)
    seed=$(env "${aws_env[@]}" "$target/twofa-seed" --table twofa-local --secret twofa-local-master --sender otp@example.com)
    eval "$seed"
    account=$(env "${aws_env[@]}" TWOFA_TABLE="$TWOFA_TABLE" TWOFA_SECRET_ARN="$TWOFA_SECRET_ARN" \
        "$target/twofa-admin" account create --email local@example.com --any-sender)
    TWOFA_ACCOUNT_SID=$(sed -n 's/^ACCOUNT_SID=//p' <<<"$account")
    TWOFA_AUTH_TOKEN=$(sed -n 's/^AUTH_TOKEN=//p' <<<"$account")
    [[ -n "$TWOFA_ACCOUNT_SID" && -n "$TWOFA_AUTH_TOKEN" ]] || die "twofa-admin account create printed no account"
    log "moto seeded in $((SECONDS - start)) s (table, master secret, SES sender; twofa-admin made account $TWOFA_ACCOUNT_SID)"
    # sam local resolves the template's `!If [HasAwsEndpointUrl, ...]` to "" whatever the
    # parameter, and --env-vars only sets variables the template declares: so the endpoint and
    # the emulator timeouts are declared there (empty on AWS) and given here.
    # The workflow state machine, from the template's own definition file and substitution.
    local machine
    machine=$(env AWS_ENDPOINT_URL="$endpoint" AWS_ACCESS_KEY_ID=testing AWS_SECRET_ACCESS_KEY=testing \
        AWS_DEFAULT_REGION=us-east-1 "$VENV/bin/python" - "$STEP_FUNCTION" <<'PY'
import sys, boto3
from samcli.yamlhelper import yaml_parse
template = yaml_parse(open("template.yaml").read())
props = template["Resources"]["WorkflowStateMachine"]["Properties"]
definition = open(props["DefinitionUri"]).read()
for name in props["DefinitionSubstitutions"]:
    # Every substitution is the step Lambda's ARN; the router cuts it to the function name.
    definition = definition.replace("${" + name + "}", f"arn:aws:lambda:us-east-1:123456789012:function:{sys.argv[1]}")
assert "${" not in definition, "a substitution the local stack does not know"
sfn = boto3.client("stepfunctions")
print(sfn.create_state_machine(name="twofa-local-workflow", definition=definition, type=props["Type"],
                               roleArn="arn:aws:iam::123456789012:role/twofa-workflow")["stateMachineArn"])
PY
    )
    log "workflow state machine $machine"
    "$VENV/bin/python" - "$RUN/sam-env.json" "$TWOFA_TABLE" "$TWOFA_SECRET_ARN" "$endpoint" "$machine" \
        "$SMS_ORIGINATION_IDENTITY" "$VOICE_ORIGINATION" <<'PY'
import json, sys
json.dump({"Parameters": {
    "TWOFA_TABLE": sys.argv[2], "TWOFA_SECRET_ARN": sys.argv[3], "AWS_ENDPOINT_URL": sys.argv[4],
    "TWOFA_AWS_ATTEMPT_TIMEOUT_MS": "10000", "TWOFA_AWS_OPERATION_TIMEOUT_MS": "30000",
    "TWOFA_AWS_CONNECT_TIMEOUT_MS": "10000",
    # sam local would pass the state machine's logical id: the one made in moto instead.
    "TWOFA_WORKFLOW_STATE_MACHINE_ARN": sys.argv[5],
    # The stack's own SES configuration set is not in moto: emails go without a set.
    "TWOFA_SES_CONFIGURATION_SET": "",
    # No provider of your own: SMS through SNS (moto) by default, whatever sam makes of the
    # template's conditional variables.
    "TWOFA_SMS_PROVIDER_URL": "", "TWOFA_SMS_PROVIDER_SECRET": "", "TWOFA_SMS_PROVIDER_NAME": "",
    # WhatsApp through the Social stand-in beside moto (moto_serial_server.py): any number id.
    # (Also given as the template's parameters to sam local, so its conditional variables exist.)
    "TWOFA_WHATSAPP_PHONE_NUMBER_ID": "phone-number-id-0123456789abcdef0123456789abcdef",
    "TWOFA_WHATSAPP_TEMPLATE": "twofa_code",
    "TWOFA_WHATSAPP_LANGUAGES": "en_US",
    # The end-user-messaging SMS route, through the SMS Voice v2 stand-in beside moto (also
    # given as the template's parameter). The stack's own configuration set is not in moto:
    # texts go without a set (the stand-in needs none).
    "TWOFA_SMS_ORIGINATION_IDENTITY": sys.argv[6],
    "TWOFA_SMS_CONFIGURATION_SET": "",
    "TWOFA_SMS_ROUTE": "sns",
    # Calls through the SMS Voice v2 stand-in too (voices from moto's Polly); the stack's voice
    # configuration set is not in moto: calls go without one.
    "TWOFA_VOICE_ORIGINATION": sys.argv[7],
    "TWOFA_VOICE_CONFIGURATION_SET": "",
}}, open(sys.argv[1], "w"))
PY
    # 5. sam local start-api, each function's container started at once (EAGER) and kept warm.
    # SAM picks each container's host port at random before Docker binds it, so two containers
    # started together can draw the same port ("port is already allocated", about one start in
    # a hundred): such a start is stopped, its containers removed, and tried again.
    start=$SECONDS
    local try
    for try in 1 2 3; do
        log "sam local start-api on http://127.0.0.1:$SAM_PORT (log: .run/sam-local.log; try $try)"
        sam_local start-api "$SAM_PORT" EAGER "$SAM_LOG" "$SAM_PID"
        if wait_http "http://127.0.0.1:$SAM_PORT/2fa/search" 300 "$(cat "$SAM_PID")"; then
            break
        fi
        tail -n 40 "$SAM_LOG" >&2
        grep -q "port is already allocated" "$SAM_LOG" && ((try < 3)) \
            || die "sam local start-api did not come up (log above)"
        log "two Lambda containers drew the same host port: starting sam local start-api again"
        stop_pid "$SAM_PID" "sam local start-api"
        remove_containers
    done
    # 6. the step Lambda for the state machine: sam local start-lambda (containers made on the
    # first invoke), and the router between moto's Step Functions and it
    log "sam local start-lambda on http://127.0.0.1:$LAMBDA_PORT (log: .run/sam-lambda.log)"
    sam_local start-lambda "$LAMBDA_PORT" LAZY "$LAMBDA_LOG" "$LAMBDA_PID"
    setsid "$VENV/bin/python" infra/scripts/lambda_router.py 127.0.0.1 "$ROUTER_PORT" "$endpoint" \
        "http://127.0.0.1:$LAMBDA_PORT" </dev/null >"$ROUTER_LOG" 2>&1 &
    echo $! >"$ROUTER_PID"
    if ! wait_http "http://127.0.0.1:$LAMBDA_PORT/2015-03-31/functions/$STEP_FUNCTION/invocations" 120 "$(cat "$LAMBDA_PID")"; then
        tail -n 40 "$LAMBDA_LOG" >&2
        die "sam local start-lambda did not come up (log above)"
    fi
    wait_http "http://127.0.0.1:$ROUTER_PORT/_router/invocations" 30 "$(cat "$ROUTER_PID")" \
        || { tail -n 20 "$ROUTER_LOG" >&2; die "the Lambda router did not come up (log above)"; }
    local sam_took=$((SECONDS - start))
    {
        echo "export TWOFA_SAM_URL=http://127.0.0.1:$SAM_PORT"
        echo "export TWOFA_MOTO_URL=$endpoint"
        echo "export TWOFA_LAMBDA_ROUTER_URL=http://127.0.0.1:$ROUTER_PORT"
        echo "export TWOFA_ACCOUNT_SID=$TWOFA_ACCOUNT_SID"
        echo "export TWOFA_AUTH_TOKEN=$TWOFA_AUTH_TOKEN"
        # What twofa-admin reads, for more accounts on this stack (with
        # AWS_ENDPOINT_URL=$TWOFA_MOTO_URL and moto's credentials: load.sh local-aws does so).
        echo "export TWOFA_TABLE=$TWOFA_TABLE"
        echo "export TWOFA_SECRET_ARN=$TWOFA_SECRET_ARN"
    } >"$LOCAL_ENV"
    trap - EXIT
    log "sam local start-api answered in $sam_took s; make local-aws took $((SECONDS - t0)) s in all"
    cat <<EOF
==> the API: http://127.0.0.1:$SAM_PORT (each function in its Lambda container; AWS from moto at $endpoint)
    account: $TWOFA_ACCOUNT_SID  token: $TWOFA_AUTH_TOKEN   (also in .run/local-aws.env, with the
    table and secret twofa-admin needs: source it, then AWS_ENDPOINT_URL=$endpoint AWS_REGION=us-east-1
    AWS_ACCESS_KEY_ID=testing AWS_SECRET_ACCESS_KEY=testing target/debug/twofa-admin account …)
    load: infra/scripts/load.sh local-aws   (an account with test numbers, then a short make load)
    curl -s -u "$TWOFA_ACCOUNT_SID:$TWOFA_AUTH_TOKEN" http://127.0.0.1:$SAM_PORT/2fa/send -H 'Content-Type: application/json' \\
      -d '{"service":"2FA","from":"Twofa","to":"+14155550100","body":"Your verification code is: {code}"}'
    the SMS sent (with its code): curl -s $endpoint/moto-api/data.json   (sns.SMS; the default route)
    on the end-user-messaging route (an account's routing table naming it): curl -s $endpoint/_twofa/sms-voice/messages
    stop it all: make local-aws-down
EOF
}

stop_pid() { # stop_pid PIDFILE NAME
    if alive "$1"; then
        local pid
        pid=$(cat "$1")
        log "stopping $2 (pid $pid)"
        kill "$pid" 2>/dev/null || true
        for _ in $(seq 1 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
        kill -9 "$pid" 2>/dev/null || true
    fi
    rm -f "$1"
}

# The Lambda containers SAM left on our network (it removes them on a clean exit).
remove_containers() {
    if command -v docker >/dev/null && docker info >/dev/null 2>&1; then
        local ids
        ids=$(docker ps -aq --filter "network=$NETWORK" || true)
        if [[ -n "$ids" ]]; then
            log "removing containers $(echo "$ids" | tr '\n' ' ')"
            # shellcheck disable=SC2086
            docker rm -f $ids >/dev/null || true
        fi
    fi
}

cmd_down() {
    stop_pid "$SAM_PID" "sam local start-api"
    stop_pid "$LAMBDA_PID" "sam local start-lambda"
    stop_pid "$ROUTER_PID" "the Lambda router"
    remove_containers
    bash infra/scripts/moto.sh stop || true
    if command -v docker >/dev/null && docker network inspect "$NETWORK" >/dev/null 2>&1; then
        docker network rm "$NETWORK" >/dev/null || true
    fi
    rm -f "$LOCAL_ENV"
}

cmd_env() {
    [[ -f "$LOCAL_ENV" ]] && alive "$SAM_PID" || die "the local stack is not up: make local-aws"
    cat "$LOCAL_ENV"
}

cmd_deploy() {
    use_venv
    cmd_build
    if [[ -f samconfig.toml ]]; then
        sam deploy --parameter-overrides "Architecture=$ARCH"
    else
        log "first deploy: sam deploy --guided writes samconfig.toml; later deploys reuse it"
        sam deploy --guided --capabilities CAPABILITY_IAM --parameter-overrides "Architecture=$ARCH"
    fi
}

case "${1:-}" in
    install) cmd_install ;;
    build) cmd_build ;;
    sizes) cmd_sizes ;;
    validate) cmd_validate ;;
    up) cmd_up ;;
    down) cmd_down ;;
    env) cmd_env ;;
    deploy) cmd_deploy ;;
    *)
        echo "usage: $0 {install|build|sizes|validate|up|down|env|deploy}" >&2
        exit 2
        ;;
esac
