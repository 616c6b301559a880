#!/usr/bin/env bash
# The replication lag target with each region on a core of its own: on this 2-core machine two
# regions otherwise share both cores, and half of one region's PUT rate plus the replicas the
# other region writes is more than the machine has. So each region gets one core, as if on
# hardware of its own:
#   1. one region (`tessera dev`) and the load generator pinned to core 0: its PUT rate R, 4 KiB
#      at 32 in flight, flat out;
#   2. two regions (`tessera dev --regions 2`): us-east-1 with the load generator on core 0,
#      eu-west-1 on core 1; 4 KiB PUTs into us-east-1 at R/2 a second (`tessera bench --rate`)
#      for SECONDS, the age of the oldest entry pending for eu-west-1 sampled every second.
# Prints R, the rate reached, and the largest and mean oldest-entry age. Build first
# (`cargo build --release`). Usage: scripts/geo-lag.sh [SECONDS] (default 60).
set -euo pipefail
cd "$(dirname "$0")/.."
secs=${1:-60}
bin=$PWD/target/release/tessera
export TESSERA_ACCESS_KEY_ID=LAGKEY TESSERA_SECRET_ACCESS_KEY=lag-secret-0123456789
work=$(mktemp -d)
dev=
stop() {
  [ -z "$dev" ] && return
  kill -- "-$dev" 2>/dev/null || true
  sleep 2
  kill -9 -- "-$dev" 2>/dev/null || true
  dev=
}
trap 'stop; rm -rf "$work"' EXIT

# shellcheck source=scripts/wait-dev.sh
. scripts/wait-dev.sh

start() { # start DIR ARGS...: tessera dev on core 0 in a session of its own
  local dir=$1
  shift
  setsid taskset -c 0 "$bin" dev --data-dir "$dir" --s3-port 19500 "$@" >"$dir.log" 2>&1 &
  dev=$!
  wait_dev "$dir.log"
}

bench() { # bench ARGS...: 4 KiB PUTs into us-east-1 from core 0, the report as JSON
  taskset -c 0 "$bin" bench --endpoint http://127.0.0.1:19500 --workload put --size 4KiB \
    --concurrency 32 --json "$@" 2>/dev/null
}

field() { python3 -c "import json,sys; print(round(json.load(sys.stdin)['operations'][0]['$1']))"; }

start "$work/one"
rate=$(bench --bucket alone --duration 20 | field objects_per_s)
stop
echo "one region on one core: $rate PUTs/s of 4 KiB at 32 in flight"

start "$work/two" --regions 2
# Every process of eu-west-1 (each thread) moves to core 1.
for pid in $(pgrep -f -- "$work/two/eu-west-1/"); do taskset -a -cp 1 "$pid" >/dev/null; done
target=$((rate / 2))
bench --bucket steady --rate "$target" --duration "$secs" >"$work/steady.json" &
load=$!
ages=()
for _ in $(seq "$secs"); do
  sleep 1
  age=$("$bin" admin --endpoint http://127.0.0.1:19500 --json replication 2>/dev/null |
    python3 -c "import json,sys; l=json.load(sys.stdin)['links']; print(max((x.get('oldest_pending_secs') or 0) for x in l) if l else 0)" ||
    echo "?")
  ages+=("$age")
done
wait "$load"
reached=$(field objects_per_s <"$work/steady.json")
python3 - "$target" "$reached" "${ages[@]}" <<'EOF'
import sys
target, reached, ages = sys.argv[1], sys.argv[2], [float(a) for a in sys.argv[3:] if a != "?"]
print(f"two regions, one core each: {reached} PUTs/s into us-east-1 (asked {target}); oldest "
      f"pending entry for eu-west-1 at most {max(ages):.1f} s, mean {sum(ages) / len(ages):.1f} s "
      f"over {len(ages)} samples")
EOF
