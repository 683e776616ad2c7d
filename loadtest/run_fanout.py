#!/usr/bin/env python3
"""Fan-out benchmark: one `herald dev` (release), S WebSocket subscribers on one channel spread over
several load processes, one paced publisher. Prints one JSON line with the aggregate.

usage: loadtest/run_fanout.py --subscribers 10000 --rate 100 --seconds 10 [--size 100] [--kafka]
       loadtest/run_fanout.py --kafka --resume 100000     (replay rate from an old cursor)

--kafka runs the same scenario through a real Kafka-compatible broker (tansu, installed by
scripts/install-test-tools.sh) instead of the in-memory bus.

Measures: deliveries/s (sum over load processes), publish->deliver latency (worst per-process
p50/p99/max), gaps and duplicates (must be 0), server RSS per connection once all are subscribed
(before publishing), server and load-generator CPU seconds. Bounded: everything stops by itself.
"""
import argparse, json, os, re, shutil, socket, subprocess, sys, time, urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TARGET = os.environ.get("CARGO_TARGET_DIR", os.path.join(ROOT, "target"))
HERALD = os.path.join(TARGET, "release", "herald")
LOAD = os.path.join(TARGET, "release", "herald-loadtest")
SECRET, KEY = "bench-secret-0123456789", "bench-key-0123456789"
PER_PROCESS = 5000


def rss_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        return int(re.search(r"VmRSS:\s+(\d+)", f.read()).group(1))


def cpu_s(pid):
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def start_broker():
    tansu = shutil.which("tansu") or os.path.expanduser("~/.cache/herald-tools/bin/tansu")
    port = free_port()
    url = f"tcp://127.0.0.1:{port}"
    proc = subprocess.Popen([tansu, "broker", "--listener-url", url, "--advertised-listener-url", url,
                             "--storage-engine", "memory://tansu/"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    for _ in range(200):
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.1).close()
            return proc, f"127.0.0.1:{port}"
        except OSError:
            time.sleep(0.05)
    raise SystemExit("tansu did not start")


def publish_one(addr, body):
    req = urllib.request.Request(f"http://{addr}/v1/publish", data=json.dumps(body).encode(), method="POST",
                                 headers={"authorization": f"Bearer {KEY}", "content-type": "application/json"})
    return json.loads(urllib.request.urlopen(req).read())


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--subscribers", type=int, default=1000)
    ap.add_argument("--rate", type=int, default=100, help="records/s published")
    ap.add_argument("--seconds", type=int, default=10)
    ap.add_argument("--size", type=int, default=100)
    ap.add_argument("--kafka", action="store_true", help="use a Kafka-compatible broker as the bus")
    ap.add_argument("--resume", type=int, default=0, help="measure replay of this many records from an old cursor")
    a = ap.parse_args()
    broker, bus = None, []
    if a.kafka:
        broker, baddr = start_broker()
        bus = ["--bus", f"kafka://{baddr}"]
    server = subprocess.Popen([HERALD, "dev", "--listen", "127.0.0.1:0", "--dev-secret", SECRET, "--dev-api-key", KEY] + bus,
                              stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, env={**os.environ, "RUST_LOG": "warn"})
    try:
        addr = server.stdout.readline().split("http://")[1].strip()
        token = subprocess.check_output([HERALD, "token", "--secret", SECRET, "--account", "load", "--sub", "bench",
                                         "--channels", "*", "--ttl", "1h"], text=True).strip()
        time.sleep(0.3)
        if a.resume:
            return resume(a, addr, token)
        rss0 = rss_kib(server.pid)
        procs = []
        left, i = a.subscribers, 0
        while left > 0:
            n = min(PER_PROCESS, left)
            left -= n
            i += 1
            procs.append(subprocess.Popen([LOAD, "subscribe", "--addr", addr, "--token", token, "--connections", str(n),
                                           "--source-ip", f"127.0.0.{1 + i}", "--idle-exit-secs", "3",
                                           "--max-secs", str(a.seconds + 120)],
                                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
        for p in procs:
            line = p.stderr.readline()
            if not line.startswith("ready"):
                raise SystemExit(f"subscriber process failed: {line}")
        time.sleep(1.0)
        rss1 = rss_kib(server.pid)
        cpu0 = cpu_s(server.pid)
        pub = subprocess.run([LOAD, "publish", "--addr", addr, "--key", KEY, "--account", "load", "--rate", str(a.rate),
                              "--seconds", str(a.seconds), "--size", str(a.size)], capture_output=True, text=True, timeout=a.seconds + 60)
        if pub.returncode != 0:
            raise SystemExit(f"publisher failed: {pub.stderr}")
        published = json.loads(pub.stdout)
        outs = [json.loads(p.communicate(timeout=a.seconds + 180)[0]) for p in procs]
        cpu1 = cpu_s(server.pid)
        expected = published["published"] * a.subscribers
        got = sum(o["deliveries"] for o in outs)
        span = max(o["seconds"] for o in outs)
        result = {
            "subscribers": a.subscribers, "rate": a.rate, "seconds": a.seconds, "size": a.size,
            "published": published["published"], "expected_deliveries": expected, "deliveries": got,
            "lost": expected - got, "gaps": sum(o["gaps"] for o in outs), "duplicates": sum(o["duplicates"] for o in outs),
            "deliveries_per_sec": round(got / span) if span else 0,
            "latency_ms": {k: max(o["latency_ms"][k] for o in outs) for k in ("p50", "p99", "p999", "max")},
            "ws_messages_per_delivery": round(sum(o["ws_messages"] for o in outs) / max(got, 1), 3),
            "server_rss_per_conn_kib": round((rss1 - rss0) / a.subscribers, 2),
            "server_cpu_s": round(cpu1 - cpu0, 2), "loadgen_cpu_s": round(sum(o["cpu_seconds"] for o in outs), 2),
            "publisher_cpu_s": published["cpu_seconds"],
        }
        print(json.dumps(result))
    finally:
        server.kill()
        server.wait()
        if broker:
            broker.kill()
            broker.wait()


def resume(a, addr, token):
    """Publishes N records with nobody subscribed, then one client resumes from before them."""
    # A record on another channel of the account gives the cursor's epoch and region.
    first = publish_one(addr, {"account": "load", "channel": "marker", "data": {}})
    epoch_region = first["cursor"].rsplit(".", 1)[0]
    since = f"{epoch_region}.0"
    rate = 20000
    pub = subprocess.run([LOAD, "publish", "--addr", addr, "--key", KEY, "--account", "load", "--rate", str(rate),
                          "--seconds", str(max(1, a.resume // rate)), "--size", str(a.size)], capture_output=True, text=True)
    published = json.loads(pub.stdout)["published"]
    sub = subprocess.run([LOAD, "subscribe", "--addr", addr, "--token", token, "--connections", "1", "--since", since,
                          "--idle-exit-secs", "3", "--max-secs", "300"], capture_output=True, text=True, timeout=400)
    out = json.loads(sub.stdout)
    print(json.dumps({"bus": "kafka" if a.kafka else "memory", "resumed_records": out["deliveries"], "expected": published,
                      "gaps": out["gaps"], "duplicates": out["duplicates"],
                      "replay_records_per_sec": round(out["deliveries_per_sec"]), "seconds": round(out["seconds"], 2)}))



if __name__ == "__main__":
    main()
