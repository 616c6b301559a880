#!/usr/bin/env bash
# What replication costs a region's own PUTs, on this machine: `tessera bench` PUTs against
# us-east-1 of `tessera dev` (one region), of `tessera dev --regions 2` with eu-west-1 up (every
# PUT is also written there, by processes that share this machine's cores), and with eu-west-1's
# gateway stopped, once with the bench bucket kept in us-east-1 (`tessera admin replication set
# BUCKET` with no region: nothing is queued) and once replicating (each PUT is queued in the
# outbox, and nothing is sent). The last two differ only by the outbox. Each run has a fresh
# cluster, so that none inherits another's data.
# Usage: scripts/replication-cost.sh [SECONDS]   (default 20 per run; build with
# `cargo build --release` first). Prints one line per run.
set -euo pipefail
cd "$(dirname "$0")/.."
secs=${1:-20}
bin=target/release/tessera
export TESSERA_ACCESS_KEY_ID=BENCHKEY TESSERA_SECRET_ACCESS_KEY=bench-secret-key
work=$(mktemp -d)
dev=
trap '[ -n "$dev" ] && kill "$dev" 2>/dev/null; wait 2>/dev/null; rm -rf "$work"' EXIT

# shellcheck source=scripts/wait-dev.sh
. scripts/wait-dev.sh

start() { # start DIR ARGS...: tessera dev, waiting for its endpoints
  local dir=$1; shift
  "$bin" dev --data-dir "$dir" --s3-port 19400 "$@" >"$dir.log" 2>&1 &
  dev=$!
  wait_dev "$dir.log"
}

stop() {
  kill "$dev"
  wait "$dev" 2>/dev/null || true
  dev=
}

bench() { # bench LABEL: PUT 4 KiB at 32 in flight, then 1 MiB at 8
  for run in "4KiB 32" "1MiB 8"; do
    set -- $run
    "$bin" bench --endpoint http://127.0.0.1:19400 --workload put --size "$1" \
      --concurrency "$2" --duration "$secs" --json >"$work/out.json"
    python3 - "$label" "$1" "$2" "$work/out.json" <<'EOF'
import json, sys
label, size, conc, path = sys.argv[1:]
r = json.load(open(path))["operations"][0]
print(f"{label:<24} PUT {size:>4} c={conc:<2} {r['objects_per_s']:7.0f} objects/s "
      f"{r['mib_per_s']:7.1f} MiB/s  p50 {r['latency_ms']['p50']:6.1f} ms  "
      f"p99 {r['latency_ms']['p99']:6.1f} ms  errors {r['errors']}")
EOF
  done
}

bucket=tessera-bench
admin() { "$bin" admin --endpoint http://127.0.0.1:19400 "$@" >/dev/null; }

start "$work/one"
label="one region" bench
stop

start "$work/two" --regions 2
label="two regions, link up" bench
stop

for kept in local replicating; do
  start "$work/$kept" --regions 2
  if [ "$kept" = local ]; then
    # The bench makes its bucket: a moment's bench first, so that the bucket can be kept here.
    "$bin" bench --endpoint http://127.0.0.1:19400 --workload put --size 1KiB --concurrency 1 \
      --duration 1 >/dev/null 2>&1
    admin replication set "$bucket"
  fi
  kill -9 "$(cat "$work/$kept/eu-west-1/gateway/pid")"
  label="peer down, bucket $kept" bench
  stop
done
