#!/usr/bin/env bash
# CPU time per operation of each role (gateway, storage nodes, the load generator) while
# `tessera bench` loads a running `tessera dev` cluster: steadier than throughput on a noisy
# machine, so it is what A/B comparisons of two builds should look at first.
#
# usage: scripts/cpu-per-op.sh WORKLOAD SIZE CONCURRENCY
#   DATA_DIR   the cluster's --data-dir (default ./tessera-data): picks its processes
#   ENDPOINT   default http://127.0.0.1:9000;  DURATION  seconds, default 15;  KEYS  as --keys
#   TESSERA_BIN default target/release/tessera; credentials as for `tessera bench`
# The CPU is sampled from /proc/PID/stat (user + system) between 4 s into the run and 4 s before
# its end, so that the set-up writes of a GET run and the last stragglers are left out.
set -euo pipefail
[ $# -eq 3 ] || { sed -n 6,11p "$0"; exit 2; }
workload=$1 size=$2 concurrency=$3
data_dir=$(realpath "${DATA_DIR:-tessera-data}")
duration=${DURATION:-15}
bin=${TESSERA_BIN:-target/release/tessera}
out=$(mktemp)
trap 'rm -f "$out"' EXIT

ticks() { # "pid role ticks" for the cluster's processes and the load generator
  for pid in $(pgrep -f -- "--config $data_dir/") "$bench"; do
    [ -r "/proc/$pid/stat" ] || continue
    cmd=$(tr '\0' ' ' < "/proc/$pid/cmdline")
    case $cmd in
      *" bench "*) role=bench ;;
      *gateway.toml*) role=gateway ;;
      *) role=nodes ;;
    esac
    echo "$pid $role $(awk '{print $14 + $15}' "/proc/$pid/stat")"
  done | sort -u
}

"$bin" bench --endpoint "${ENDPOINT:-http://127.0.0.1:9000}" --workload "$workload" --size "$size" \
  --concurrency "$concurrency" --objects 100000000 --duration "$duration" ${KEYS:+--keys $KEYS} \
  --json > "$out" &
bench=$!
# A GET run first writes its key set, not measured: keep it small (--keys) or the sample takes
# some of it in.
sleep 4
before=$(ticks)
window=$((duration - 8))
sleep "$window"
after=$(ticks)
wait "$bench"

python3 - "$out" "$window" "$(getconf CLK_TCK)" "$before" "$after" <<'PY'
import json, sys
report, window, hz = json.load(open(sys.argv[1])), float(sys.argv[2]), float(sys.argv[3])
def parse(text):
    return {(p, r): int(t) for p, r, t in (line.split() for line in text.splitlines() if line)}
before, after = parse(sys.argv[4]), parse(sys.argv[5])
op = report["operations"][0]
ops = op["objects_per_s"] * window
spent = {}
for key, t in after.items():
    if key in before:
        spent[key[1]] = spent.get(key[1], 0) + (t - before[key]) / hz
roles = " ".join(f"{r} {spent.get(r, 0) * 1e6 / ops:.0f}" for r in ("gateway", "nodes", "bench"))
lat = op["latency_ms"]
print(f"{op['op']} {op['objects_per_s']:.0f}/s {op['mib_per_s']:.1f} MiB/s "
      f"p50 {lat['p50']:.2f} p99 {lat['p99']:.2f} ms | CPU us/op: {roles} "
      f"total {sum(spent.values()) * 1e6 / ops:.0f}")
PY
