#!/usr/bin/env bash
# What `read_fallback` costs a read that misses, on this machine: `tessera dev --regions 2`
# without and with `--read-fallback`; boto3 (from the `.venv` of scripts/install-deps.sh) HEADs,
# one at a time, in eu-west-1, a key both regions have and a key no region has. Prints the
# median and 99th percentile latency of each. Build with `cargo build --release` first.
set -euo pipefail
cd "$(dirname "$0")/.."
bin=$PWD/target/release/tessera
python=$PWD/.venv/bin/python
export TESSERA_ACCESS_KEY_ID=FALLBACKKEY TESSERA_SECRET_ACCESS_KEY=fallback-secret-key
work=$(mktemp -d)
dev=
trap '[ -n "$dev" ] && kill "$dev" 2>/dev/null; wait 2>/dev/null; rm -rf "$work"' EXIT

for mode in off on; do
  args=()
  [ "$mode" = on ] && args=(--read-fallback)
  rm -rf "$work/data"
  "$bin" dev --data-dir "$work/data" --regions 2 --s3-port 19700 --console-port 19701 \
    "${args[@]}" >"$work/dev.log" 2>&1 &
  dev=$!
  for _ in $(seq 600); do
    grep -q "Stop with Ctrl-C" "$work/dev.log" && break
    sleep 0.1
  done
  echo "read_fallback $mode:"
  "$python" - <<'PY'
import os, statistics, time
import boto3
from botocore.config import Config

def client(port, region):
    return boto3.client("s3", endpoint_url=f"http://127.0.0.1:{port}", region_name=region,
                        aws_access_key_id=os.environ["TESSERA_ACCESS_KEY_ID"],
                        aws_secret_access_key=os.environ["TESSERA_SECRET_ACCESS_KEY"],
                        config=Config(retries={"max_attempts": 0}))

east, west = client(19700, "us-east-1"), client(19702, "eu-west-1")
east.create_bucket(Bucket="fallback")
east.put_object(Bucket="fallback", Key="present", Body=b"x" * 4096)
deadline = time.time() + 30
while True:
    try:
        west.head_object(Bucket="fallback", Key="present")
        break
    except Exception:
        if time.time() > deadline:
            raise
        time.sleep(0.2)

def latency(key, n=500):
    took = []
    for _ in range(n):
        start = time.perf_counter()
        try:
            west.head_object(Bucket="fallback", Key=key)
        except west.exceptions.ClientError:
            pass
        took.append((time.perf_counter() - start) * 1000)
    took.sort()
    return f"median {statistics.median(took):.2f} ms, p99 {took[int(len(took) * 0.99)]:.2f} ms"

print("  HEAD of a key both regions have: ", latency("present"))
print("  HEAD of a key no region has:     ", latency("nowhere"))
PY
  kill "$dev"
  wait "$dev" 2>/dev/null || true
  dev=
done
