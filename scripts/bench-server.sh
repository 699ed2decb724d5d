#!/usr/bin/env bash
# The central mapper's cost, measured in one run (no root needed), printed as
# JSON on stdout (progress on stderr):
#   - flows ingested per second over gRPC on loopback, with 1 and 200 concurrent
#     agent streams of 250-flow batches (batches/s, p50/p99 batch latency), and with
#     200 sending their agents' batches at 1 000 000 flows/s cluster-wide (25 000 flows,
#     one drain each per 5 s report interval);
#   - resolution cost per flow (resolve_local + resolve_remote);
#   - memory per 100k edges in the edge store (RSS) and the redb file's size;
#   - a generated 150 000-pod cluster: load and reload time, RSS (cluster state per pod);
#   - RSS and store bytes per edge at 100k and 1M edges, and a query's peak given back.
#   - reading a large map end to end (cli/benches/query.rs): time and peak RSS of
#     the server and of `mapper export`, `list`, `audit -n` at 100 000 and
#     1 000 000 edges (BENCH_QUERY_SMALL=1: 100 000 only; BENCH_QUERY_EDGES=N,M
#     picks the sizes), and `visualize --format svg` at its size limit.
# BENCH_PARTS=cluster (or edges, memory, retention, ingest) runs one part of the first.
# Sizes can be changed through BENCH_* variables (see mapper-server/benches/ingest.rs);
# BENCH_DIR picks where the temporary stores live (each batch is an fsync).
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=scripts/lib.sh
source scripts/lib.sh
step "benchmarking mapper-server (builds first; the run takes a minute or two)"
cargo bench -p mapper-server --bench ingest
step "benchmarking reads of a large map (builds first; 1 000 000 edges take a few minutes)"
scripts/build-web.sh # mapper-cli embeds the dashboard page
cargo bench -p mapper-cli --bench query
