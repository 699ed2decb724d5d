#!/usr/bin/env bash
# Runs each fuzz target in fuzz/ for a bounded time: scripts/fuzz.sh [SECONDS] [TARGET...]
# (default 60 seconds each, every target that builds). A crash stops the run with the input
# saved under fuzz/artifacts/TARGET/; add it as a regression test where the code lives.
# scripts/test.sh runs intents only: the three others' first build takes ~20 CPU-minutes.
#
# Works on a stable toolchain: RUSTC_BOOTSTRAP=1 lets cargo-fuzz pass its -Z flags (the
# sanitizer, coverage instrumentation). Installs cargo-fuzz when missing.
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=scripts/lib.sh
source scripts/lib.sh

seconds="${1:-60}"
shift || true

targets=("$@")
if [ "${#targets[@]}" -eq 0 ]; then
    targets=(inventory intents dns ingest)
fi

if ! cargo fuzz --version >/dev/null 2>&1; then
    step "cargo install cargo-fuzz"
    cargo install cargo-fuzz --locked
fi

export RUSTC_BOOTSTRAP=1
cd fuzz
for target in "${targets[@]}"; do
    step "fuzz $target for ${seconds}s"
    mkdir -p "corpus/$target"
    # A first run starts from the test fixtures of what the target reads.
    if [ -z "$(ls -A "corpus/$target")" ]; then
        case "$target" in
            inventory) find ../mapper-cluster/tests/fixtures -name '*.yaml' -exec cp {} "corpus/$target/" \; ;;
            intents) find ../cli/tests/fixtures ../mapper-intents/tests -name '*.yaml' -exec cp {} "corpus/$target/" \; ;;
        esac
    fi
    # -O: an optimised build finds more per second; debug assertions stay on. intents builds
    # mapper-intents alone (about a minute); the other three share one build with all their
    # features, which instruments kube, tonic, aya and redb (about 20 CPU-minutes): one
    # feature set, so running a second of them does not rebuild the tree.
    features=()
    [ "$target" = intents ] || features=(--features inventory,dns,ingest)
    cargo fuzz run -O "${features[@]}" "$target" "corpus/$target" -- -max_total_time="$seconds" -max_len=65536 -timeout=10 \
        -rss_limit_mb=2048 -print_final_stats=1
done
