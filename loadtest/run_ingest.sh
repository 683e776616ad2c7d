#!/usr/bin/env bash
# Publish ingest: one `herald dev` (release) on CPU 0, one `herald-loadtest publish` on CPU 1
# sending batched POST /v1/publish over C channels at R records/s each for S seconds, 100-byte
# records. With --kafka, a tansu broker (in memory) is the bus and shares CPU 0 with herald.
# Prints the records published per second and the server's (and broker's) CPU per record.
# With --raw-kafka N: no herald; the raw rdkafka producer (crates/bus-kafka/examples/produce_rate.rs,
# the bus's producer settings) sends N records to the broker, both on CPU 0: the physical limit
# of the Kafka path on this machine.
# With --ws (first): the records go as WebSocket `publish` frames on one connection (a client
# token with publish rights), each tick's batch newline-separated in messages of at most 48 KiB.
# usage: [LINGER_MS=N] loadtest/run_ingest.sh [--ws] [--kafka] [R] [C] [S]   (default 40000 10 10)
#        loadtest/run_ingest.sh --raw-kafka [N]         (default 2000000)
set -euo pipefail
KAFKA=0
WS=0
if [ "${1:-}" = --ws ]; then WS=1; shift; fi
if [ "${1:-}" = --kafka ]; then KAFKA=1; shift; fi
T=${CARGO_TARGET_DIR:-$(cd "$(dirname "$0")/.." && pwd)/target}/release
HERALD=${HERALD_BIN:-$T/herald}
DIR=$(mktemp -d)
PIDS=()
trap 'kill "${PIDS[@]}" 2>/dev/null; rm -rf "$DIR"' EXIT
free_port() { python3 -c "import socket;s=socket.socket();s.bind(('127.0.0.1',0));print(s.getsockname()[1])"; }
cpu() { awk '{print $14+$15}' "/proc/$1/stat"; }
if [ "${1:-}" = --raw-kafka ]; then
  N=${2:-2000000}
  TANSU=$(command -v tansu || echo "${HOME}/.cache/herald-tools/bin/tansu")
  P=$(free_port)
  taskset -c 0 "$TANSU" broker --listener-url "tcp://127.0.0.1:$P" --advertised-listener-url "tcp://127.0.0.1:$P" --storage-engine memory://tansu/ >/dev/null 2>&1 &
  PIDS+=($!); BP=$!
  for _ in $(seq 100); do (exec 3<>/dev/tcp/127.0.0.1/$P) 2>/dev/null && break; sleep 0.1; done
  B0=$(cpu $BP)
  OUT=$(BROKERS=127.0.0.1:$P RECORDS=$N taskset -c 0 "$T/examples/produce_rate")
  B1=$(cpu $BP)
  python3 -c "import json,sys; d=json.loads(sys.argv[1]); b=int(sys.argv[2])/100; d.update(bus='raw rdkafka producer -> tansu', broker_cpu_s=b, broker_cpu_us_per_record=round(b*1e6/max(d['acknowledged'],1),2)); print(json.dumps(d))" "$OUT" $((B1 - B0))
  exit 0
fi
R=${1:-40000}; C=${2:-10}; S=${3:-10}
# The account limit is raised so that the limit is the server, not the default 50,000/s.
printf '[limits]\npublish_per_second_per_account = 100000000\npublish_per_second_per_connection = 100000000\n' > "$DIR/herald.toml"
# LINGER_MS=N: the producer's linger.ms through [kafka.properties] (Herald's default is 1).
if [ -n "${LINGER_MS:-}" ]; then printf '[kafka.properties]\n"linger.ms" = "%s"\n' "$LINGER_MS" >> "$DIR/herald.toml"; fi
BUS=()
if [ $KAFKA = 1 ]; then
  TANSU=$(command -v tansu || echo "${HOME}/.cache/herald-tools/bin/tansu")
  P=$(free_port)
  taskset -c 0 "$TANSU" broker --listener-url "tcp://127.0.0.1:$P" --advertised-listener-url "tcp://127.0.0.1:$P" --storage-engine memory://tansu/ >/dev/null 2>&1 &
  PIDS+=($!); BP=$!
  BUS=(--bus "kafka://127.0.0.1:$P")
fi
RUST_LOG=warn taskset -c 0 "$HERALD" dev --config "$DIR/herald.toml" "${BUS[@]}" --listen 127.0.0.1:0 \
  --dev-secret bench-secret-0123456789 --dev-api-key bench-key-0123456789 >"$DIR/out" 2>/dev/null &
PIDS+=($!); SP=$!
for _ in $(seq 100); do grep -q http:// "$DIR/out" 2>/dev/null && break; sleep 0.1; done
ADDR=$(head -1 "$DIR/out" | sed 's#.*http://##')
for _ in $(seq 300); do curl -sf "http://$ADDR/readyz" >/dev/null && break; sleep 0.1; done
C0=$(cpu $SP); B0=$([ $KAFKA = 1 ] && cpu $BP || echo 0)
VIA=()
if [ $WS = 1 ]; then
  TOKEN=$("$HERALD" token --secret bench-secret-0123456789 --account load --sub ingest --channels '*' --publish '*' --ttl 1h)
  VIA=(--ws-token "$TOKEN")
fi
taskset -c 1 "$T/herald-loadtest" publish --addr "$ADDR" --key bench-key-0123456789 --account load \
  --channels "$C" --rate "$R" --seconds "$S" --size 100 "${VIA[@]}" >"$DIR/pub.json"
C1=$(cpu $SP); B1=$([ $KAFKA = 1 ] && cpu $BP || echo 0)
python3 - "$DIR/pub.json" $((C1 - C0)) $((B1 - B0)) $KAFKA <<'PY'
import json, sys
d = json.load(open(sys.argv[1]))
n, server, broker, kafka = d["published_total"], int(sys.argv[2]) / 100, int(sys.argv[3]) / 100, sys.argv[4] == "1"
if "acknowledged" in d:
    n = d["acknowledged"]
out = {"bus": "kafka (tansu)" if kafka else "memory", "via": "websocket" if "acknowledged" in d else "http", "published": n, "seconds": round(d["seconds"], 2),
       "records_per_sec": round(d["rate"]), "server_cpu_s": server, "server_cpu_us_per_record": round(server * 1e6 / max(n, 1), 2),
       "records_per_server_cpu_second": round(n / server) if server else None}
if kafka:
    out.update(broker_cpu_s=broker, broker_cpu_us_per_record=round(broker * 1e6 / max(n, 1), 2))
if "acknowledged" in d:
    out.update(sent=d["sent"], refused=d["refused"])
print(json.dumps(out))
PY
