#!/usr/bin/env bash
# Renders the seed's two charts with real helm into the manifests of the release revisions the
# seed scenario keeps (deploy/local/scenarios/seed.yaml `releases:`; mapper-lab up writes them
# into the inventory as Helm's release Secrets). The lab's tests check these files are current
# when helm is installed (scripts/lib.sh ensure_helm). Run from the repository root:
#   bash deploy/local/helm/render.sh [HELM [OUT]]     (OUT: default deploy/local/helm/rendered)
set -euo pipefail
helm=${1:-${MAPPER_HELM:-helm}}
dir=deploy/local/helm
out=${2:-$dir/rendered}
# transaction-service revision 1: the seed's ClientIntents (ledger).
"$helm" template transaction-service "$dir/transaction-service" -n team1 >"$out/transaction-service-1.yaml"
# revision 2: the edit that added telemetry and lost ledger (as deploy/local/charts/transaction-service/).
"$helm" template transaction-service "$dir/transaction-service" -n team1 --set 'calls={telemetry.team4}' \
  >"$out/transaction-service-2.yaml"
# ledger revision 1: allow-access-to-ledger admits team2 only.
"$helm" template ledger "$dir/ledger" -n team3 --set 'allowedNamespaces={team2}' >"$out/ledger-1.yaml"
# revision 2: team1 too, once transaction-service called ledger.
"$helm" template ledger "$dir/ledger" -n team3 >"$out/ledger-2.yaml"
