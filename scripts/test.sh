#!/usr/bin/env bash
# The whole test suite, from a fresh machine: installs what the tests need when it is missing
# (scripts/install-test-tools.sh), then runs every test. CI runs exactly this (.ci/run).
set -euo pipefail
cd "$(dirname "$0")/.."

if [ -x scripts/install-test-tools.sh ]; then
  scripts/install-test-tools.sh
  export PATH="${HERALD_TOOLS:-$HOME/.cache/herald-tools}/bin:$PATH"
fi

echo "== cargo test (workspace)"
cargo test --workspace --locked --no-fail-fast

echo "== clippy (workspace, every target, warnings are errors)"
if cargo clippy --version >/dev/null 2>&1; then
  cargo clippy --workspace --all-targets --locked -- -D warnings
else
  echo "WARNING: clippy is not installed with this Rust toolchain: the lint step did not run" >&2
fi

echo "== TypeScript SDK: npm run build reproduces the committed sdk/js/dist byte for byte; unit tests"
(cd sdk/js && npm run build --silent)
if ! git diff --quiet HEAD -- sdk/js/dist || [ -n "$(git ls-files --others --exclude-standard -- sdk/js/dist)" ]; then
  git status --short -- sdk/js/dist
  echo "sdk/js/dist is not what sdk/js/src builds to: run (cd sdk/js && npm run build) and commit sdk/js/dist" >&2
  exit 1
fi
(cd sdk/js && node --test test/unit/)

echo "== browser end-to-end (demo page and SDK in headless chromium, against herald dev)"
export HERALD_BIN="$(cd "${CARGO_TARGET_DIR:-target}" && pwd)/debug/herald"
(cd tests/browser && node --test)

echo "== container image: the runtime image built with podman from the CI binary, run as the chart runs it"
scripts/check-image.sh "$HERALD_BIN"

if [ -x scripts/check-helm.sh ]; then
  echo "== helm chart checks"
  scripts/check-helm.sh
fi

echo "== chaos under load, short (two regions in network namespaces, every fault once, ~4 min; docs/reliability.md)"; chaos_out="$(mktemp -d)"; python3 scripts/chaos.py --short --bin-dir "$(cd "${CARGO_TARGET_DIR:-target}" && pwd)/debug" --out "$chaos_out"
