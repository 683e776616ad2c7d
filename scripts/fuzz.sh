#!/usr/bin/env bash
# A short, bounded fuzz run of every target (default 20 s each, about a minute in all):
#   scripts/fuzz.sh [seconds-per-target]
# Targets: client_frame (the frame decoder, batched), cursor (parse/print round trip),
# channel_name (account isolation). Needs cargo-fuzz (`cargo install cargo-fuzz --locked`);
# RUSTC_BOOTSTRAP lets the stable toolchain take the sanitizer flags libFuzzer needs.
# For a long run, raise the seconds; crashes land in fuzz/artifacts/<target>/.
set -euo pipefail
cd "$(dirname "$0")/../fuzz"
SECS=${1:-20}
command -v cargo-fuzz >/dev/null || cargo install cargo-fuzz --locked
for t in client_frame cursor channel_name; do
  echo "== fuzz $t for ${SECS}s"
  log=$(mktemp)
  if ! RUSTC_BOOTSTRAP=1 cargo fuzz run "$t" --fuzz-dir . -- -max_total_time="$SECS" >"$log" 2>&1; then
    grep -E "ERROR|panicked|SUMMARY|error" "$log" | head -20
    echo "fuzz $t FAILED (full log: $log; the crashing input is in fuzz/artifacts/$t/)"
    exit 1
  fi
  grep -E "^Done" "$log"
  rm -f "$log"
done
