#!/usr/bin/env bash
# Runs the whole test suite: Rust unit and integration tests (real node and gateway processes),
# then the client tests that drive the cluster with boto3 and two aws CLIs over http and https.
# One release build serves both. TESSERA_SKIP_LARGE=1 skips the large transfers (1 GiB and 3 GiB).
# Last, every fuzz target runs for TESSERA_FUZZ_SECONDS each (default 5: CI must stay within 45
# minutes, a CI run of 2026-12-04 took 46.6 minutes with 20 and one 44.7 with 10; scripts/fuzz.sh, about 6 minutes with its build);
# TESSERA_SKIP_FUZZ=1 skips that for quick local runs.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh test
cargo build --release --all-targets
cargo test --release --workspace
export TESSERA_BIN="$PWD/target/release/tessera"
pytest_args=(-v -ra --durations=15 tests/clients)
if [ "${TESSERA_SKIP_LARGE:-0}" != 1 ]; then
  pytest_args+=(-m "large or not large")
fi
.venv/bin/python -m pytest "${pytest_args[@]}" -s
if [ "${TESSERA_SKIP_FUZZ:-0}" != 1 ]; then
  scripts/fuzz.sh "${TESSERA_FUZZ_SECONDS:-5}"
fi
