#!/usr/bin/env bash
# mapper end to end on one machine, for real: a lab "cluster" of network
# namespaces, eBPF capture of its traffic by mapper-agent, mapper-server
# resolving flows to workloads over gRPC, and the `mapper` CLI exporting
# ClientIntents. Needs root (the agent loads BPF programs).
#
#   scripts/demo.sh                      the seed scenario, checked against its golden export
#   scripts/demo.sh --scenario FILE      another scenario (exports all its namespaces), e.g.
#                                        deploy/local/scenarios/realistic.yaml (DNS, probes, dual stack, ...)
#   scripts/demo.sh --keep               leave it running; prints how to reach the server
#   scripts/demo.sh --down               tear a kept run down
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=scripts/lib.sh
source scripts/lib.sh

SCENARIO=deploy/local/scenarios/seed.yaml
GOLDEN=deploy/local/golden/seed-v1alpha2.yaml
KEEP=0
DOWN=0
while [ $# -gt 0 ]; do
  case "$1" in
    --scenario) SCENARIO="$2"; GOLDEN=""; shift 2 ;;
    --keep) KEEP=1; shift ;;
    --down) DOWN=1; shift ;;
    -h|--help) sed -n '2,11p' "$0"; exit 0 ;;
    *) echo "demo.sh: unknown argument $1 (try --help)" >&2; exit 2 ;;
  esac
done

STATE=${MAPPER_DEMO_STATE:-/tmp/mapper-demo}
PORT=${MAPPER_DEMO_PORT:-19090}
BIN=target/release
BPFFS=/sys/fs/bpf/mapper-demo

teardown() {
  # The agent first, waiting until it has exited (its last drain and flush
  # need the server; its metrics port is free again), then the server.
  stop_pid "$STATE/agent.pid" 10
  stop_pid "$STATE/server.pid" 10
  [ -x "$BIN/mapper-lab" ] && "$BIN/mapper-lab" down --state-dir "$STATE" 2>/dev/null || true
  [ -x "$BIN/mapper-agent" ] && "$BIN/mapper-agent" --uninstall --bpffs "$BPFFS" >/dev/null 2>&1 || true
  rm -rf "$STATE"
}

if [ "$DOWN" = 1 ]; then
  teardown
  echo "demo torn down"
  exit 0
fi

if [ "$(id -u)" -ne 0 ]; then
  echo "demo.sh: run as root (the agent loads BPF programs; the lab creates network namespaces)" >&2
  exit 1
fi

ensure_packages
ensure_kernel_mounts
# The dashboard page is bundled before cargo: cli/build.rs embeds it into `mapper`.
scripts/build-web.sh
step "building (release)"
cargo build --release --locked --workspace --bins

teardown
mkdir -p "$STATE"
[ "$KEEP" = 1 ] || trap teardown EXIT

step "lab up: $SCENARIO"
"$BIN/mapper-lab" up --scenario "$SCENARIO" --state-dir "$STATE"

step "starting mapper-server (inventory from the lab) and mapper-agent"
head -c 24 /dev/urandom | od -An -tx1 | tr -d ' \n' > "$STATE/token"
"$BIN/mapper-server" --inventory "$STATE/inventory.yaml" --data-dir "$STATE/data" \
  --listen "127.0.0.1:$PORT" --token-file "$STATE/token" --metrics-listen "127.0.0.1:$((PORT + 1))" \
  > "$STATE/server.log" 2>&1 &
echo $! > "$STATE/server.pid"
"$BIN/mapper-agent" --mapper-url "http://127.0.0.1:$PORT" --token-file "$STATE/token" \
  --report-interval 500ms --bpffs "$BPFFS" --host-netns /run/netns/mlab-node --spool-dir "$STATE/spool" \
  --metrics-listen "127.0.0.1:$((PORT + 2))" --node-name lab-node --detach-on-exit \
  > "$STATE/agent.log" 2>&1 &
echo $! > "$STATE/agent.pid"

metric() { # metric URL NAME -> value (0 when absent)
  local v
  v=$(curl -fsS "$1" 2>/dev/null | awk -v n="$2" '$1 == n { print $2 }' | head -n1)
  echo "${v:-0}"
}
wait_for() { # wait_for SECONDS DESCRIPTION COMMAND...
  local until=$((SECONDS + $1)) what=$2; shift 2
  until "$@"; do
    if [ $SECONDS -ge $until ]; then
      echo "demo.sh: timed out waiting for $what; logs in $STATE/*.log" >&2
      tail -n 20 "$STATE/server.log" "$STATE/agent.log" >&2
      exit 1
    fi
    sleep 0.2
  done
}
ready() { curl -fsS "http://127.0.0.1:$((PORT + $1))/readyz" >/dev/null 2>&1; }
wait_for 30 "mapper-server to be ready" ready 1
wait_for 30 "mapper-agent to attach" ready 2

AGENT_METRICS="http://127.0.0.1:$((PORT + 2))/metrics"
# Runs the scenario's calls (one round, or all with no argument) and waits
# until the agent's flows are acknowledged.
traffic() {
  local round=()
  [ $# -gt 0 ] && round=(--round "$1")
  step "traffic${1:+ (round $1)}"
  "$BIN/mapper-lab" traffic --scenario "$SCENARIO" --state-dir "$STATE" "${round[@]}" | tee -a "$STATE/traffic.jsonl"
  step "waiting until the agent's flows are acknowledged"
  drains_before=$(metric "$AGENT_METRICS" mapper_agent_drains_total)
  wait_for 30 "the flows to be acknowledged" flushed
}
flushed() {
  local drains pending
  drains=$(metric "$AGENT_METRICS" mapper_agent_drains_total)
  pending=$(metric "$AGENT_METRICS" mapper_agent_pending_flows)
  # Two drains after the traffic ended (all of it has left the kernel), and
  # nothing waiting for the server's acknowledgement.
  [ "${drains%.*}" -ge $(( ${drains_before%.*} + 2 )) ] && [ "${pending%.*}" -eq 0 ]
}

# expect_status CODE WHAT COMMAND...: runs COMMAND, which must exit CODE (it found WHAT).
expect_status() {
  local want=$1 what=$2 status
  shift 2
  set +e
  "$@"
  status=$?
  set -e
  if [ "$status" -ne "$want" ]; then
    echo "demo.sh: $(basename "$1") exited $status; expected $want ($what)" >&2
    exit 1
  fi
}

if [ -n "$GOLDEN" ]; then
  # The seed's round 1 is the example of Otterize's docs; round 2 is the audit story.
  traffic 1
else
  traffic
fi

export MAPPER_URL="http://127.0.0.1:$PORT" MAPPER_TOKEN_FILE="$STATE/token"
if [ -n "$GOLDEN" ]; then
  step "mapper export -n team1 -n team2 --output-version v1alpha2"
  "$BIN/mapper" export -n team1 -n team2 --output-version v1alpha2 | tee "$STATE/export.yaml"
  if diff -u "$GOLDEN" "$STATE/export.yaml" >&2; then
    echo "# the export is byte-identical to $GOLDEN"
  else
    echo "demo.sh: the export differs from $GOLDEN (diff above)" >&2
    exit 1
  fi
else
  # Every namespace the lab has is the scenario's.
  step "mapper export"
  "$BIN/mapper" export | tee "$STATE/export.yaml"
fi

step "mapper list"
"$BIN/mapper" list

step "mapper policy -f <the export above>"
"$BIN/mapper" policy -f "$STATE/export.yaml"

if [ -n "$GOLDEN" ]; then
  traffic 2
  CHART=deploy/local/charts/transaction-service/
  step "mapper audit --declared $CHART"
  echo "# transaction-service's new release calls telemetry; its chart now declares telemetry and, by accident, not ledger"
  expect_status 3 "a missing call" "$BIN/mapper" audit --declared "$CHART"
  echo "# mapper audit exited 3: a call the chart does not declare would be blocked"
  step "mapper export --declared $CHART (the fix, in the chart's own version)"
  "$BIN/mapper" export --declared "$CHART" | tee "$STATE/fixed.yaml"
  "$BIN/mapper" audit --declared "$STATE/fixed.yaml" >/dev/null
  echo "# the fixed ClientIntents pass the audit (exit 0)"

  # The Helm side of the story. The lab has no API server: the release records (Secrets, as
  # Helm stores them) are in its inventory, and --release-records reads them there. On a
  # cluster, leave it out: they are read with your kubeconfig.
  RECORDS=(--release-records "$STATE/inventory.yaml")
  step "mapper helm history transaction-service -n team1"
  echo "# transaction-service's chart history: which revision dropped ledger, and whether traffic still needs it"
  expect_status 3 "a removed call still in use" "$BIN/mapper" helm history transaction-service -n team1 "${RECORDS[@]}"
  step "mapper audit --helm-release ledger -n team3 --revision 1 (before anyone runs helm rollback ledger 1)"
  echo "# ledger's revision 1 carries allow-access-to-ledger admitting team2 only; namespace labels from the inventory"
  expect_status 3 "a call the rollback would deny" "$BIN/mapper" audit --helm-release ledger -n team3 --revision 1 \
    "${RECORDS[@]}" --inventory "$STATE/inventory.yaml"
  echo "# exit 3: rolling ledger back to revision 1 would block transaction-service.team1 -> ledger.team3"
fi

if [ "$KEEP" = 1 ]; then
  step "kept running; to reach the server:"
  echo "MAPPER_URL=$MAPPER_URL"
  echo "MAPPER_TOKEN_FILE=$MAPPER_TOKEN_FILE"
  echo "# the live map in a browser (prints its URL; --no-browser on a machine without one;"
  echo "# from another machine: ssh -L 8090:127.0.0.1:8090 this-host, then open the URL there):"
  echo "MAPPER_URL=$MAPPER_URL MAPPER_TOKEN_FILE=$MAPPER_TOKEN_FILE $BIN/mapper dashboard"
  echo "# tear down with: scripts/demo.sh --down"
fi
