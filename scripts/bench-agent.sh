#!/usr/bin/env bash
# The cost of watching traffic, measured side by side in one run (needs root):
# the same traffic between two pod namespaces watched by nothing, by mapper-agent,
# by a per-event bpftrace program on the same tracepoint, by `conntrack -E` and by
# a poller of /proc/net/tcp{,6} of every pod namespace, in alternating rounds, for
# a connect-only workload and a request/response one (keep-alive, 1 KB each way).
# For each observer: the rate against none, its CPU seconds per million
# connections (requests), and the share of 1 ms connections it saw; then the
# kernel's own accounting of each agent program (run_time_ns / run_cnt, with
# kernel.bpf_stats_enabled=1 in rounds of their own) per connection and per
# request. Prints one JSON object.
# Then the agent's CPU with the connect-only workload paced to a tenth of its rate
# and at full rate, 15 s each (--scaling-round). The agent runs as deployed: it
# reports to a real mapper-server on loopback (an empty inventory) and drains at
# the chart's interval, 5 s (--agent-interval).
# Arguments are passed to `mapper-lab bench-agent` (--connections, --requests,
# --rounds, --clients, --payload, --probe, --accounting-rounds, --scaling-round;
# --parts observers,scaling,accounting runs only some of it).
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=scripts/lib.sh
source scripts/lib.sh
ensure_packages
ensure_bench_tools
ensure_kernel_mounts
step "building release binaries"
cargo build --release --locked -p mapper-agent -p mapper-lab -p mapper-ebpf -p mapper-server --bins
step "benchmarking (takes a few minutes)"
target/release/mapper-lab bench-agent --agent target/release/mapper-agent \
  --floor target/release/mapper-bpf-floor --server target/release/mapper-server "$@"
