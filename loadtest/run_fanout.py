#!/usr/bin/env python3
"""Fan-out benchmark: one `herald dev` (release), S WebSocket subscribers on one channel spread over
several load processes, one paced publisher. Prints one JSON line with the aggregate.

usage: loadtest/run_fanout.py --subscribers 10000 --rate 100 --seconds 10 [--size 100]

Measures: deliveries/s (sum over load processes), publish->deliver latency (worst per-process
p50/p99/max), gaps and duplicates (must be 0), server RSS per connection once all are subscribed
(before publishing), server and load-generator CPU seconds. Bounded: everything stops by itself.
"""
import argparse, json, os, re, subprocess, sys, time

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


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--subscribers", type=int, default=1000)
    ap.add_argument("--rate", type=int, default=100, help="records/s published")
    ap.add_argument("--seconds", type=int, default=10)
    ap.add_argument("--size", type=int, default=100)
    a = ap.parse_args()
    server = subprocess.Popen([HERALD, "dev", "--listen", "127.0.0.1:0", "--dev-secret", SECRET, "--dev-api-key", KEY],
                              stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, env={**os.environ, "RUST_LOG": "warn"})
    try:
        addr = server.stdout.readline().split("http://")[1].strip()
        token = subprocess.check_output([HERALD, "token", "--secret", SECRET, "--account", "load", "--sub", "bench",
                                         "--channels", "*", "--ttl", "1h"], text=True).strip()
        time.sleep(0.3)
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


if __name__ == "__main__":
    main()
