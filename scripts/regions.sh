#!/usr/bin/env bash
# A local multi-region Herald on loopback: N regions (2 or 3), each with its own Kafka-compatible
# broker (tansu), its own Redis (presence), an edge and a replicator pulling records and presence
# from every other region. Prints each region's
# URL, a client token and a publish command; Ctrl-C stops everything.
#
#   scripts/regions.sh            # regions a and b
#   scripts/regions.sh 3          # a, b, c
#   HERALD_BIN=target/release/herald scripts/regions.sh
#
# Needs tansu and redis-server (scripts/install-test-tools.sh installs both) and a built herald
# (cargo build -p herald).
set -euo pipefail
N=${1:-2}
[ "$N" = 2 ] || [ "$N" = 3 ] || { echo "usage: $0 [2|3]" >&2; exit 64; }
ROOT=$(cd "$(dirname "$0")/.." && pwd)
BIN=${HERALD_BIN:-$ROOT/target/debug/herald}
TANSU=$(command -v tansu || echo "$HOME/.cache/herald-tools/bin/tansu")
[ -x "$BIN" ] || { echo "no herald binary at $BIN: run cargo build -p herald (or set HERALD_BIN)" >&2; exit 1; }
[ -x "$TANSU" ] || { echo "tansu is missing: run scripts/install-test-tools.sh" >&2; exit 1; }
REDIS=$(command -v redis-server || echo /usr/bin/redis-server)
[ -x "$REDIS" ] || { echo "redis-server is missing: run scripts/install-test-tools.sh" >&2; exit 1; }
SECRET=${HERALD_JWT_SECRET:-regions-dev-secret-0123456789}
KEY=${HERALD_ADMIN_API_KEY:-regions-dev-key-0123456789}
WORK=$(mktemp -d)
PIDS=()
cleanup() { kill "${PIDS[@]}" 2>/dev/null || true; wait 2>/dev/null || true; rm -rf "$WORK"; }
trap cleanup EXIT INT TERM

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_port() { for _ in $(seq 100); do (echo >/dev/tcp/127.0.0.1/"$1") 2>/dev/null && return 0; sleep 0.1; done; echo "port $1 never opened" >&2; exit 1; }

REGIONS=(a b c); REGIONS=("${REGIONS[@]:0:$N}")
declare -A BROKER PRESENCE
for r in "${REGIONS[@]}"; do
  p=$(free_port)
  "$REDIS" --port "$p" --bind 127.0.0.1 --save '' --appendonly no >"$WORK/redis-$r.log" 2>&1 &
  PIDS+=($!); PRESENCE[$r]=redis://127.0.0.1:$p; wait_port "$p"
  p=$(free_port)
  "$TANSU" broker --listener-url "tcp://127.0.0.1:$p" --advertised-listener-url "tcp://127.0.0.1:$p" --storage-engine memory://tansu/ >"$WORK/tansu-$r.log" 2>&1 &
  PIDS+=($!); BROKER[$r]=127.0.0.1:$p; wait_port "$p"
done
for r in "${REGIONS[@]}"; do
  HERALD_JWT_SECRET=$SECRET HERALD_ADMIN_API_KEY=$KEY HERALD_PRESENCE=${PRESENCE[$r]} RUST_LOG=${RUST_LOG:-warn} "$BIN" edge --listen 127.0.0.1:0 --region "$r" --node "edge-$r" \
    --bus "kafka://${BROKER[$r]}" >"$WORK/edge-$r.out" 2>"$WORK/edge-$r.log" &
  PIDS+=($!)
  from=()
  for o in "${REGIONS[@]}"; do
    [ "$o" = "$r" ] || from+=(--from "$o=kafka://${BROKER[$o]}/herald.$o" --from-presence "$o=${PRESENCE[$o]}")
  done
  RUST_LOG=${RUST_LOG:-warn} "$BIN" replicate --region "$r" --to "kafka://${BROKER[$r]}" --presence "${PRESENCE[$r]}" \
    --metrics-listen 127.0.0.1:0 "${from[@]}" >"$WORK/replicate-$r.out" 2>"$WORK/replicate-$r.log" &
  PIDS+=($!)
done
for r in "${REGIONS[@]}"; do
  for _ in $(seq 300); do grep -q listening "$WORK/edge-$r.out" 2>/dev/null && break; sleep 0.1; done
done
TOKEN=$("$BIN" token --secret "$SECRET" --account demo --sub you --channels '*' --publish '*' --ttl 12h)
echo "Herald, $N regions on loopback (logs in $WORK):"
for r in "${REGIONS[@]}"; do
  url=$(sed -n 's/^herald listening on //p' "$WORK/edge-$r.out")
  metrics=$(sed -n 's/^herald replicate listening on //p' "$WORK/replicate-$r.out")
  echo "  region $r: edge $url   broker ${BROKER[$r]}   presence ${PRESENCE[$r]}   replicator metrics $metrics/metrics"
done
echo
echo "client token (account demo): $TOKEN"
echo "publish in region a, watch it arrive in the others:"
first=$(sed -n 's/^herald listening on //p' "$WORK/edge-a.out")
echo "  curl -s $first/v1/publish -H 'Authorization: Bearer $KEY' -d '{\"account\":\"demo\",\"channel\":\"news\",\"data\":{\"hello\":\"from a\"}}'"
echo "Ctrl-C stops everything."
wait
