#!/usr/bin/env bash
# Runs the randomized consistency checker (tests/clients/consistency.py) on a fresh 3x3
# `tessera dev` cluster for a while and prints its summary: operations, faults, violations.
# With --regions, the region checker instead (tests/clients/regions_checker.py: two regions
# whose link is cut and restored).
#   scripts/soak.sh [--regions] [DURATION] [SEED]
# DURATION: seconds, or with a unit (90s, 30m, 2h); default 30m. SEED: replays a run's faults
# (default: TESSERA_SEED, else random; the seed is printed either way). The binary is
# TESSERA_BIN (default target/release/tessera), the interpreter PYTHON (default .venv/bin/python,
# which has boto3). Exits 1 when there was a violation.
set -euo pipefail
cd "$(dirname "$0")/.."
checker=consistency.py
if [ "${1:-}" = --regions ]; then
  checker=regions_checker.py
  shift
fi
duration="${1:-30m}"
seed="${2:-${TESSERA_SEED:-}}"
case "$duration" in
  *h) secs=$(( ${duration%h} * 3600 )) ;;
  *m) secs=$(( ${duration%m} * 60 )) ;;
  *s) secs="${duration%s}" ;;
  *)  secs="$duration" ;;
esac
python="${PYTHON:-.venv/bin/python}"
[ -x "$python" ] && python="$(cd "$(dirname "$python")" && pwd)/$(basename "$python")" || python=python3
# Made absolute: the checker runs from tests/clients.
export TESSERA_BIN="$(realpath "${TESSERA_BIN:-target/release/tessera}")"
args=(--secs "$secs")
[ -n "$seed" ] && args+=(--seed "$seed")
cd tests/clients
exec "$python" "$checker" "${args[@]}"
