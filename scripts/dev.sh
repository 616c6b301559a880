#!/usr/bin/env bash
# Starts a local Tessera cluster (see README.md). Arguments go to `tessera dev`.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh build
exec cargo run --release -- dev "$@"
