#!/usr/bin/env bash
# Idle-connection memory: one `herald dev` (release), N WebSocket connections held open without
# subscribing (answering heartbeats), spread over load processes of at most 5000 connections each
# (a process here may hold at most 20,000 files). Prints server RSS per connection.
# usage: loadtest/run_idle.sh [N]   (default 15000)
set -euo pipefail
N=${1:-15000}
T=${CARGO_TARGET_DIR:-$(cd "$(dirname "$0")/.." && pwd)/target}/release
OUT=$(mktemp)
RUST_LOG=warn "$T/herald" dev --listen 127.0.0.1:0 --dev-secret bench-secret-0123456789 --dev-api-key bench-key-0123456789 >"$OUT" 2>/dev/null &
SP=$!
trap 'kill $SP 2>/dev/null; rm -f "$OUT"' EXIT
for _ in $(seq 50); do grep -q listening "$OUT" && break; sleep 0.1; done
ADDR=$(head -1 "$OUT" | sed 's#.*http://##')
TOK=$("$T/herald" token --secret bench-secret-0123456789 --account load --sub idle --channels '*')
rss() { awk '/VmRSS/ {print $2}' /proc/$SP/status; }
R0=$(rss)
PROCS=$(( (N + 4999) / 5000 ))
HOLD=$(( 10 + PROCS * 4 ))
for i in $(seq 1 $PROCS); do
  n=$(( N - (i - 1) * 5000 )); [ $n -gt 5000 ] && n=5000
  "$T/herald-loadtest" subscribe --addr "$ADDR" --token "$TOK" --connections $n --source-ip 127.0.0.$((i + 1)) --idle-hold-secs $HOLD >/dev/null 2>&1 &
done
sleep $(( PROCS * 4 + 4 ))
R1=$(rss)
CONNS=$(curl -s "http://$ADDR/metrics" | awk '/^herald_connections / {print $2}')
echo "{\"connections\": $CONNS, \"rss_before_kib\": $R0, \"rss_after_kib\": $R1, \"rss_per_conn_kib\": $(python3 -c "print(round(($R1-$R0)/$N,2))")}"
wait $(jobs -p | grep -v "^$SP$") 2>/dev/null || true
