#!/usr/bin/env bash
# make bench: every figure of the performance table as a ratio to its baseline, in one run on
# the machine at hand (release builds; baselines in infra/bench, built the same way).
#
#   sizes     each function's zip (bootstrap, zip -9) vs the lambda_http hello's
#   init      process start -> first Runtime API poll, vs the hello; and process start -> the
#             first invocation's answer (the cold start a caller sees), with its network calls
#   dev       POST /2fa/send to new numbers on the dev server vs axum hello JSON (wrk; server on
#             CPU 0, load on CPU 1), p50/p99 of send and verify, RSS after each load round; both
#             built with profile.speed (opt-level 3), as the dev server is meant to run
#   dynamodb  round trips and capacity units per operation, cost per million OTPs (on moto)
#   heat      the heat model: units per send+verify pair on each partition key in a burst on
#             moto, and the highest pairs/s per account and per deployment, with the key and
#             rule that set each (infra/bench/src/bin/heat_model.rs; HEAT_PAIRS per account)
#
# Needs wrk and zip (installed with apt-get when missing: as root, or with sudo); moto comes
# from `.venv` as in make test.
# BENCH_SECONDS (default 8) sets each load round's length. Never part of make test.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."
ROOT=$PWD
export CARGO_TERM_COLOR=never
SECONDS_PER_ROUND="${BENCH_SECONDS:-8}"
BENCH_PORT_BASE="${BENCH_PORT_BASE:-3201}"
MOTO=infra/scripts/moto.sh
WORK=$(mktemp -d)
PIDS=()
cleanup() {
    local p
    for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
    if [[ -n "${STARTED_MOTO:-}" ]]; then bash "$MOTO" stop >/dev/null 2>&1 || true; fi
    rm -rf "$WORK"
}
trap cleanup EXIT
# wrk and zip come from Debian's packages: installed here when missing (root, or sudo).
MISSING=()
for tool in wrk zip; do command -v "$tool" >/dev/null || MISSING+=("$tool"); done
if ((${#MISSING[@]})); then
    echo "==> installing ${MISSING[*]} (apt-get)"
    if [[ $(id -u) -eq 0 ]]; then AS_ROOT=(env); elif command -v sudo >/dev/null; then AS_ROOT=(sudo -n env); else AS_ROOT=(); fi
    if ! { ((${#AS_ROOT[@]})) && command -v apt-get >/dev/null &&
        "${AS_ROOT[@]}" DEBIAN_FRONTEND=noninteractive apt-get update -qq &&
        "${AS_ROOT[@]}" DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${MISSING[@]}" >/dev/null; }; then
        echo "bench: ${MISSING[*]} missing and not installed (needs apt-get, as root or with sudo): install them and run again" >&2
        exit 1
    fi
fi
for tool in wrk zip taskset; do
    command -v "$tool" >/dev/null || { echo "bench: $tool is missing (Debian: apt-get install $tool)" >&2; exit 1; }
done
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b == 0) print "n/a"; else printf "%.2fx", a / b }'; }

echo "==> release builds (profile.release of Cargo.toml)"
start=$SECONDS
# Every function of template.yaml (the Makefile's `lambda` list).
FUNCTIONS=(twofa-otp twofa-limits twofa-records twofa-workflows twofa-workflow-step twofa-callbacks twofa-receipts twofa-console twofa-factors)
# shellcheck disable=SC2046
cargo build --release -q $(printf -- '-p %s ' "${FUNCTIONS[@]}")
echo "    functions built in $((SECONDS - start)) s (incremental: only what changed)"
cargo build --release -q -p twofa-bench
TARGET="${CARGO_TARGET_DIR:-target}/release"
# The dev server and its baseline, the axum hello, alike: profile.speed (release at opt-level 3),
# as a long-running server is built; the Lambdas keep the size-first release profile.
echo "    dev server and axum hello (profile.speed)"
cargo build --profile speed -q -p twofa-local -p twofa-bench --bin twofa-local --bin hello-axum
SPEED="${CARGO_TARGET_DIR:-target}/speed"

echo
echo "==> zip sizes ($(uname -m); Lambda runs arm64: cargo lambda build --release --arm64)"
zipsize() {
    rm -rf "$WORK/zip" && mkdir -p "$WORK/zip" && cp "$1" "$WORK/zip/bootstrap"
    (cd "$WORK/zip" && zip -q -9 ../f.zip bootstrap) && stat -c %s "$WORK/f.zip" && rm -f "$WORK/f.zip"
}
HELLO_ZIP=$(zipsize "$TARGET/hello-lambda")
printf '    %-20s %8s bytes (binary %s)\n' hello-lambda "$HELLO_ZIP" "$(stat -c %s "$TARGET/hello-lambda")"
for f in "${FUNCTIONS[@]}"; do
    z=$(zipsize "$TARGET/$f")
    printf '    %-20s %8s bytes (binary %s)  %s of hello  %s\n' "$f" "$z" "$(stat -c %s "$TARGET/$f")" \
        "$(ratio "$z" "$HELLO_ZIP")" "$( ((z <= 4000000)) && echo 'goal <= 4 MB: met' || echo 'goal <= 4 MB: NOT met')"
done

echo
echo "==> init: process start -> first Runtime API poll (median of 30; fake Runtime API and AWS)"
bash "$MOTO" install >/dev/null 2>&1
PY="$ROOT/.venv/bin/python"
"$PY" infra/bench/init_time.py 30 "$TARGET/hello-lambda" $(printf -- "$TARGET/%s " "${FUNCTIONS[@]}") | tee "$WORK/init.txt" | sed 's/^/    /'
"$PY" infra/bench/init_time.py --parts "$TARGET/init-parts" | sed 's/^/    where the time goes (one process, each step alone): /'
hello_ms=$(awk '/^hello-lambda/ { sub("median_ms=", "", $2); print $2 }' "$WORK/init.txt")
hello_answer=$(awk '/^hello-lambda/ { sub("answer_ms=", "", $5); print $5 }' "$WORK/init.txt")
awk -v h="$hello_ms" -v ha="$hello_answer" '!/^hello/ { m = $2; sub("median_ms=", "", m); c = $4; sub("calls=", "", c);
    a = $5; sub("answer_ms=", "", a);
    printf "    %-20s init %.2fx the hello (goal <= 2x: %s); first answer %.2fx the hello%s, %d network call(s) in the cold start (goal <= 1)\n",
    $1, m / h, (m / h <= 2 ? "met" : "NOT met"), a / ha, (c + 0 > 0 ? ", the secret included" : ""), c }' "$WORK/init.txt"
echo
echo "==> dev server: server on CPU 0, wrk on CPU 1 (1 thread, 32 connections, ${SECONDS_PER_ROUND} s a round)"
wait_port() {
    local i
    for i in $(seq 1 100); do
        (echo >"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0
        sleep 0.1
    done
    echo "bench: nothing listens on $1" >&2
    return 1
}
rps() { awk '/^Requests\/sec/ { print $2 }' "$1"; }
pct() { awk -v p="$2%" '$1 == p { print $2 }' "$1"; }
non2xx() { awk '/Non-2xx/ { print $5 }' "$1" | grep . || echo 0; }
load() { # load OUT SCRIPT URL [SECONDS]
    taskset -c 1 wrk -t1 -c32 -d"${4:-$SECONDS_PER_ROUND}"s --latency -s "$2" "$3" >"$1"
}
rss_kb() { awk '/VmRSS/ { print $2 }' "/proc/$1/status"; }

# The hello answers a round just before each send round (both servers stay up, idle in turn):
# this machine's speed drifts by 10-20 % from minute to minute, so each send round is held
# against a hello round beside it, and the figure is the median of the three ratios.
HELLO_PORT=$BENCH_PORT_BASE
PORT=$HELLO_PORT taskset -c 0 "$SPEED/hello-axum" &
PIDS+=($!)
HELLO_PID=$!
wait_port "$HELLO_PORT"

SID="AC$(printf '%032d' 1)"
TOKEN="bench-token"
export BENCH_AUTH
BENCH_AUTH=$(printf '%s:%s' "$SID" "$TOKEN" | base64 -w0)
DEV_PORT=$((BENCH_PORT_BASE + 1))
start_dev() { # start_dev PORT [ENV...]
    local port=$1
    shift
    env PORT="$port" TWOFA_DEV_ACCOUNT_SID="$SID" TWOFA_DEV_AUTH_TOKEN="$TOKEN" TWOFA_DEV_PUMPING_GUARD=off \
        RUST_LOG=warn "$@" taskset -c 0 "$SPEED/twofa-local" >"$WORK/dev-$port.log" 2>&1 &
    PIDS+=($!)
    DEV_PID=$!
    wait_port "$port"
}
start_dev "$DEV_PORT"
RATIOS=()
for round in 1 2 3; do
    load "$WORK/hello$round.txt" infra/bench/wrk/hello.lua "http://127.0.0.1:$HELLO_PORT"
    echo "    axum hello JSON, round $round: $(rps "$WORK/hello$round.txt") req/s, p50 $(pct "$WORK/hello$round.txt" 50) p99 $(pct "$WORK/hello$round.txt" 99)"
    area=$((200 + round * 101))
    BENCH_AREA=$area load "$WORK/send$round.txt" infra/bench/wrk/send.lua "http://127.0.0.1:$DEV_PORT"
    RATIOS+=("$(ratio "$(rps "$WORK/send$round.txt")" "$(rps "$WORK/hello$round.txt")")")
    echo "    send round $round: $(rps "$WORK/send$round.txt") req/s (${RATIOS[-1]} the hello round before it; $(non2xx "$WORK/send$round.txt") not 2xx), p50 $(pct "$WORK/send$round.txt" 50) p99 $(pct "$WORK/send$round.txt" 99), RSS after: $(( $(rss_kb "$DEV_PID") / 1024 )) MB"
done
MEDIAN=$(printf '%s\n' "${RATIOS[@]}" | tr -d x | sort -n | sed -n 2p)
echo "    send vs axum hello: ${MEDIAN}x, the median of rounds ${RATIOS[*]} (goal >= 0.5x: $(awk -v m="$MEDIAN" 'BEGIN { print (m >= 0.5 ? "met" : "NOT met") }')); RSS stays put once 50 000 OTPs are kept"
kill "$DEV_PID" "$HELLO_PID"

# Verify: a dev server that keeps every OTP and message of a round of sends, then the right
# code of each, once.
VERIFY_PORT=$((BENCH_PORT_BASE + 2))
start_dev "$VERIFY_PORT" TWOFA_DEV_OUTBOX_MAX=2000000 TWOFA_DEV_MAX_OTPS=2000000
BENCH_AREA=212 load "$WORK/prep.txt" infra/bench/wrk/send.lua "http://127.0.0.1:$VERIFY_PORT"
"$PY" - "http://127.0.0.1:$VERIFY_PORT/dev/outbox" "$WORK/pairs.txt" <<'PY'
import json, re, sys, urllib.request
msgs = json.load(urllib.request.urlopen(sys.argv[1], timeout=60))["messages"]
with open(sys.argv[2], "w") as f:
    for m in reversed(msgs):
        f.write(f"{m['requestID']} {re.sub(r'[^0-9]', '', m['body'])}\n")
PY
PAIRS=$(wc -l <"$WORK/pairs.txt")
BENCH_PAIRS="$WORK/pairs.txt" load "$WORK/verify.txt" infra/bench/wrk/verify.lua "http://127.0.0.1:$VERIFY_PORT" 2
echo "    verify: $(rps "$WORK/verify.txt") req/s over ${PAIRS} OTPs ($(non2xx "$WORK/verify.txt") not 2xx: codes used twice once the OTPs run out), p50 $(pct "$WORK/verify.txt" 50) p99 $(pct "$WORK/verify.txt" 99)"
kill "$DEV_PID"

echo
echo "==> DynamoDB (moto; units computed from the items, see infra/bench/src/bin/dynamo_costs.rs)"
if ! bash "$MOTO" status >/dev/null 2>&1; then
    STARTED_MOTO=1
    bash "$MOTO" start >/dev/null 2>&1
fi
eval "$(bash "$MOTO" env)"
"$TARGET/dynamo-costs" | sed 's/^/    /'

echo
echo "==> DynamoDB heat model (moto; which key caps pairs/s per account and per deployment)"
"$TARGET/heat-model" | sed 's/^/    /'
