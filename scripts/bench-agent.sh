#!/usr/bin/env bash
# The agent's cost, measured side by side in one run (needs root):
#   - connections per second between two pod namespaces, without and with the
#     agent (alternating rounds; the median of each, and their ratio);
#   - the agent's CPU seconds (user + system) per million connections.
# Arguments are passed to `mapper-lab bench-agent` (--connections, --rounds, --clients).
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=scripts/lib.sh
source scripts/lib.sh
ensure_packages
ensure_kernel_mounts
step "building release binaries"
cargo build --release --locked -p mapper-agent -p mapper-lab
step "benchmarking (takes a minute or two)"
target/release/mapper-lab bench-agent --agent target/release/mapper-agent "$@"
