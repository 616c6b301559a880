#!/usr/bin/env bash
# Runs the whole test suite: Rust unit and integration tests (real node and gateway processes),
# then the client tests that drive the cluster with boto3 and two aws CLIs over http and https.
# One release build serves both. TESSERA_SKIP_LARGE=1 skips the large transfers (1 GiB and 3 GiB).
#
# Beside the tests, every fuzz target runs for TESSERA_FUZZ_SECONDS each (default 60;
# scripts/fuzz.sh builds them first), at the lowest CPU priority: the tests wait on their
# processes and leave a core idle much of the time, which the fuzzers take, so a minute per target
# costs the run little of its 45 minutes (run after the tests, 5 s per target and the build took
# about 6 minutes). Its output is in target/fuzz.log and printed at the end; a crash fails the run.
# TESSERA_SKIP_FUZZ=1 skips it for quick local runs.
set -euo pipefail
cd "$(dirname "$0")/.."
# Each step's end, in seconds from the start: what a run that nears CI's 45 minutes spent where.
step_done() { echo "== $1 done at $SECONDS s"; }
scripts/install-deps.sh test
step_done "installing dependencies"
cargo build --release --all-targets
step_done "the release build"

fuzz_pid=
if [ "${TESSERA_SKIP_FUZZ:-0}" != 1 ]; then
  # A session of its own, so that a failed run stops the fuzzers along with the script.
  setsid nice -n 19 scripts/fuzz.sh "${TESSERA_FUZZ_SECONDS:-60}" >target/fuzz.log 2>&1 &
  fuzz_pid=$!
  trap '[ -n "$fuzz_pid" ] && kill -- "-$fuzz_pid" 2>/dev/null; true' EXIT
fi

cargo test --release --workspace
step_done "the Rust tests"
export TESSERA_BIN="$PWD/target/release/tessera"
pytest_args=(-v -ra --durations=15 tests/clients)
if [ "${TESSERA_SKIP_LARGE:-0}" != 1 ]; then
  pytest_args+=(-m "large or not large")
fi
.venv/bin/python -m pytest "${pytest_args[@]}" -s
step_done "the client tests"

if [ -n "$fuzz_pid" ]; then
  echo "== fuzzing (beside the tests; waiting for it to end)"
  fuzz_status=0
  wait "$fuzz_pid" || fuzz_status=$?
  fuzz_pid=
  cat target/fuzz.log
  exit "$fuzz_status"
fi
