#!/usr/bin/env bash
# Measure the SQLite event store (issue #8): ingest N generated timeline events (default 5,000,000)
# into a fresh database, next to a baseline of the same rows in a bare table, then time the typical
# timeline queries (p50/p95 of RUNS runs: the page with its Total counted up to 10,000 as the API
# does by default, the page with its exact Total, the page alone, the Total
# alone). Usage: bench/events.sh [N] [RUNS=20] [eventbench flags...].
# The database lives under $BENCH_DIR (default /tmp/quarry-bench) and is kept for -reuse runs:
#   go run ./bench/eventbench -reuse -dir /tmp/quarry-bench
set -euo pipefail
N=${1:-5000000}
RUNS=${2:-20}
BENCH_DIR=${BENCH_DIR:-/tmp/quarry-bench}
here=$(cd "$(dirname "$0")/.." && pwd)
mkdir -p "$BENCH_DIR"
cd "$here"
go build -o "$BENCH_DIR/eventbench" ./bench/eventbench
echo "eventbench: $N events, $RUNS runs per query, $(nproc) CPUs, $(go env GOVERSION), load $(cut -d' ' -f1-3 /proc/loadavg)"
"$BENCH_DIR/eventbench" -n "$N" -runs "$RUNS" -dir "$BENCH_DIR" "${@:3}"
echo "load at the end: $(cut -d' ' -f1-3 /proc/loadavg)"
