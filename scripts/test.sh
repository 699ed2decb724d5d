#!/usr/bin/env bash
# Runs every check mapper has: formatting, clippy, and all tests, the kernel
# ones included (they need root; with MAPPER_REQUIRE_BPF=1 a missing
# requirement is a failure instead of a skip).
#
# Installs what it needs when missing (Debian packages, Chromium for the dashboard's browser
# test, Python's grpcio from PyPI, the dashboard page's npm packages).
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=scripts/lib.sh
source scripts/lib.sh

ensure_packages
ensure_python_grpc
ensure_helm >/dev/null
ensure_kernel_mounts
ensure_browser
warn_low_disk 5000
# The chart's tests render with real helm (and check mapper-deploy's engine against it): a
# helm that does not run is a failure here, not a fallback to the engine alone.
export MAPPER_REQUIRE_HELM=1

# The dashboard's page is bundled before cargo: cli/build.rs embeds it.
scripts/build-web.sh
# The dashboard's browser test must run here, not skip (Chromium was just ensured).
export MAPPER_REQUIRE_BROWSER=1
rm -f target/tmp/dashboard/figures.txt

step "cargo fmt --check"
cargo fmt --all -- --check

step "cargo clippy"
cargo clippy --workspace --all-targets --locked -- -D warnings

step "build binaries (the kernel tests drive them)"
cargo build --workspace --bins --locked

step "helm lint --strict deploy/helm/mapper (helm $("$MAPPER_HELM" version --short))"
"$MAPPER_HELM" lint --strict deploy/helm/mapper

# mapper-deploy's tests (in the workspace run below, so nothing is built twice) render the
# chart with this helm: `helm template` for every values set they use must give the objects
# mapper-deploy's engine renders, and with createNamespace=true those of deploy/manifests/.
step "cargo test (the chart's tests with real helm: helm template = mapper-deploy's engine = deploy/manifests/)"
cargo test --workspace --locked -- --test-threads="${MAPPER_TEST_THREADS:-4}"
# What the dashboard's browser test measured (its screenshots are beside it).
if [ -f target/tmp/dashboard/figures.txt ]; then
    step "dashboard in the browser (target/tmp/dashboard/*.png)"
    cat target/tmp/dashboard/figures.txt
else
    echo "test.sh: the dashboard's browser test wrote no figures (target/tmp/dashboard/figures.txt)" >&2
    exit 1
fi

# A short fuzz run of the declared-ClientIntents reader (MAPPER_FUZZ_SECONDS, default 15; 0
# leaves it out). The other targets build most of the tree again with instrumentation: run
# them with scripts/fuzz.sh.
if [ "${MAPPER_FUZZ_SECONDS:-15}" != 0 ]; then
    step "fuzz the ClientIntents reader for ${MAPPER_FUZZ_SECONDS:-15}s (scripts/fuzz.sh for every target)"
    scripts/fuzz.sh "${MAPPER_FUZZ_SECONDS:-15}" intents
fi
