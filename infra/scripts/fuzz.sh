#!/usr/bin/env bash
# make fuzz: every cargo-fuzz target coverage-guided with libFuzzer, FUZZ_SECONDS each
# (default 600). Seeds: fuzz/corpus/<target> (in the repo); what the run finds goes to
# .run/fuzz/<target> (merge the useful inputs into the repo's corpus by hand). A crash stops
# the run and leaves its input in fuzz/artifacts/<target>/.
#
# The machine has one stable toolchain: cargo-fuzz runs without a sanitizer (`-s none`) and
# with RUSTC_BOOTSTRAP=1 for the one unstable flag libFuzzer's instrumentation needs.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."
CARGO_FUZZ_VERSION=0.13.2
SECONDS_EACH="${FUZZ_SECONDS:-600}"
TARGETS=(params limit_buckets workflow_channels page_token lambda_event)

if [[ "$(cargo fuzz --version 2>/dev/null)" != "cargo-fuzz ${CARGO_FUZZ_VERSION}" ]]; then
    echo "==> installing cargo-fuzz ${CARGO_FUZZ_VERSION}"
    cargo install cargo-fuzz --version "${CARGO_FUZZ_VERSION}" --locked
fi
export RUSTC_BOOTSTRAP=1
for t in "${TARGETS[@]}"; do
    mkdir -p ".run/fuzz/$t"
    echo "==> fuzz $t for ${SECONDS_EACH} s"
    cargo fuzz run --fuzz-dir fuzz -s none "$t" ".run/fuzz/$t" "fuzz/corpus/$t" -- \
        -max_total_time="${SECONDS_EACH}" -rss_limit_mb=4096 -print_final_stats=1 2>&1 \
        | grep -E '^(#[0-9]+ *DONE|stat::number_of_executed_units|stat::peak_rss|==|INFO: seed corpus)|panicked|SUMMARY|Test unit written' || true
    if compgen -G "fuzz/artifacts/$t/crash-*" >/dev/null; then
        echo "==> fuzz $t: CRASH, input in fuzz/artifacts/$t/"
        exit 1
    fi
    echo "==> fuzz $t: no crash"
done
