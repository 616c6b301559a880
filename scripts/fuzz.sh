#!/usr/bin/env bash
# Runs every fuzz target in fuzz/ (cargo fuzz, libFuzzer) for a bounded time each:
#   scripts/fuzz.sh [SECONDS_PER_TARGET]   (default 60)
# Each target starts from its corpus in fuzz/corpus/<target>/ (kept in the repository) and adds
# what it finds there; minimize a grown corpus before committing it (`cargo fuzz cmin`, see
# docs/testing.md). A crash fails the script, and its input is left under fuzz/artifacts/ (the
# path and the command to reproduce it are printed).
#
# Built without a sanitizer (-s none): the code under test is safe Rust, where AddressSanitizer
# finds nothing that the bounds checks do not already turn into panics, and it costs CI time: the
# build took 308 CPU-seconds with it against 262 without (2026-12-02), and each target runs
# slower under it. Overflow checks and debug assertions stay on
# (cargo fuzz's default). The targets link only gateway, node-rpc, erasure and placement, which do
# not build RocksDB, so the build takes a few minutes.
set -euo pipefail
cd "$(dirname "$0")/../fuzz"
seconds="${1:-60}"
toolchain="${FUZZ_TOOLCHAIN:-nightly}"

# cargo fuzz wants a nightly compiler. Where none is installed and none can be fetched, the
# default toolchain builds the targets as well: without a sanitizer, cargo fuzz passes it only
# stable -C flags, and RUSTC_BOOTSTRAP covers any unstable one.
fuzz=(cargo "+$toolchain" fuzz)
if ! cargo "+$toolchain" --version >/dev/null 2>&1 &&
  ! rustup toolchain install "$toolchain" --profile minimal; then
  echo "no $toolchain toolchain: building the fuzz targets with the default one"
  export RUSTC_BOOTSTRAP=1
  fuzz=(cargo fuzz)
fi
if ! cargo fuzz --version >/dev/null 2>&1; then
  cargo install cargo-fuzz --locked
fi
"${fuzz[@]}" build -s none

failed=()
for target in $("${fuzz[@]}" list); do
  mkdir -p "corpus/$target"
  log="$(mktemp)"
  echo "== fuzz $target for ${seconds}s"
  # XML bodies may be large: deeply nested ones once overflowed the stack.
  max_len=()
  [ "$target" = xml_bodies ] && max_len=(-max_len=262144)
  if "${fuzz[@]}" run -s none "$target" "corpus/$target" -- \
    -max_total_time="$seconds" -rss_limit_mb=2048 -print_final_stats=1 "${max_len[@]}" >"$log" 2>&1; then
    runs="$(grep -m1 -oE '^stat::number_of_executed_units: *[0-9]+' "$log" | grep -oE '[0-9]+$' || echo '?')"
    echo "   $target: $runs executions, corpus $(ls "corpus/$target" | wc -l) files"
  else
    grep -E -m2 -A2 'panicked at|ERROR: libFuzzer' "$log" || tail -n 40 "$log"
    echo "   $target: CRASHED; input: $(grep -oE 'Test unit written to [^ ]+' "$log" | sed 's/.* //' | head -1)"
    echo "   reproduce: (cd fuzz && ${fuzz[*]} run -s none $target <that file>)"
    failed+=("$target")
  fi
  rm -f "$log"
done

if [ "${#failed[@]}" -gt 0 ]; then
  echo "fuzzing found crashes in: ${failed[*]}" >&2
  exit 1
fi
echo "fuzzing: no crashes"
