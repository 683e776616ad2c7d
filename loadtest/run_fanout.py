#!/usr/bin/env python3
"""Fan-out benchmark: one `herald dev` (release), S WebSocket subscribers on one channel spread over
several load processes, one paced publisher. Prints one JSON line with the aggregate.

usage: loadtest/run_fanout.py --subscribers 10000 --rate 100 --seconds 10 [--size 100] [--kafka] [--name NAME]
       loadtest/run_fanout.py --subscribers 15000 --rate 20 --seconds 20 --storm 8 --storm-within-ms 5000  (reconnect storm)
       loadtest/run_fanout.py --subscribers 5000 --rate 20 --seconds 30 --mobile 5       (background/foreground at random)
       loadtest/run_fanout.py --regions 2 --subscribers 100 --rate 1000 --seconds 10   (publish in a, receive in b)
       loadtest/run_fanout.py --regions 2 --cut 60 --rate 1000                         (catch-up after a 60 s cut)
       loadtest/run_fanout.py --kafka --resume 100000     (replay rate from an old cursor)

--kafka runs the same scenario through a real Kafka-compatible broker (tansu, installed by
scripts/install-test-tools.sh) instead of the in-memory bus.

Measures: deliveries/s (sum over load processes), publish->deliver latency (the processes'
histograms merged exactly: p50 p90 p99 p99.9 p99.99 max), lost records, gaps and duplicates (the run
fails unless all are 0), reconnects, server RSS per connection once all are subscribed (before
publishing), server CPU and RSS every second, server and load-generator CPU seconds. With --name, a
JSON report, a text summary and an SVG latency plot go to loadtest/results/NAME/. Bounded:
everything stops by itself.
"""
import argparse, json, os, re, shutil, socket, subprocess, sys, threading, time, urllib.request

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
    ap.add_argument("--regions", type=int, default=1, choices=[1, 2],
                    help="2: publish in region a, subscribe in region b, through herald replicate (implies --kafka)")
    ap.add_argument("--cut", type=int, default=0,
                    help="with --regions 2: stop the replicator, publish for this many seconds, restart it and time the catch-up")
    ap.add_argument("--edges", type=int, default=1,
                    help="run this many edges on one Kafka bus (implies --kafka); subscribers spread over them and "
                         "each reconnect moves to the next edge")
    ap.add_argument("--storm", type=float, default=0,
                    help="reconnect storm: this many seconds after subscribing, every subscriber drops and reconnects "
                         "within --storm-within-ms, resuming from its cursor")
    ap.add_argument("--storm-within-ms", type=int, default=5000)
    ap.add_argument("--mobile", type=float, default=0,
                    help="mobile: subscribers go to the background and come back at random (mean seconds), resuming")
    ap.add_argument("--transport", default="ws", choices=["ws", "sse", "poll"], help="how subscribers connect")
    ap.add_argument("--peer", default="", choices=["", "nats"],
                    help="run the same scenario against a peer instead: nats = Debian's nats-server, its WebSocket listener")
    ap.add_argument("--idle", type=int, default=0, help="with --peer nats: hold this many idle connections and report RSS per connection")
    ap.add_argument("--chat", type=int, default=0, help="chat: this many rooms of --members members, each publishing --chat-rate messages/s")
    ap.add_argument("--members", type=int, default=5)
    ap.add_argument("--chat-rate", type=float, default=1.0)
    ap.add_argument("--name", default="", help="write report.json, summary.txt and latency.svg to loadtest/results/NAME/")
    a = ap.parse_args()
    if a.regions == 2 or a.edges > 1:
        a.kafka = True
    broker, bus, others = None, [], []
    if a.kafka:
        broker, baddr = start_broker()
        bus = ["--bus", f"kafka://{baddr}"]
    if a.peer == "nats":
        server, addr, pub_addr = start_nats()
    else:
        server = subprocess.Popen([HERALD, "dev", "--listen", "127.0.0.1:0", "--dev-secret", SECRET, "--dev-api-key", KEY] + bus,
                                  stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, env={**os.environ, "RUST_LOG": "warn"})
        pub_addr = None
    try:
        if a.peer == "nats":
            if a.idle:
                return idle_peer(a, server, addr)
            a.transport = "nats"
            token = "-"
        else:
            addr = server.stdout.readline().split("http://")[1].strip()
            replicate = None
            if a.regions == 2:
                # `server` above is region "local" (herald dev's region): the subscribers' region. Region
                # a gets its own broker and edge, where records are published; a replicator copies them.
                broker_a, baddr_a = start_broker()
                others.append(broker_a)
                edge_a = subprocess.Popen([HERALD, "edge", "--listen", "127.0.0.1:0", "--region", "a", "--node", "edge-a",
                                           "--bus", f"kafka://{baddr_a}"], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
                                          env={**os.environ, "RUST_LOG": "warn", "HERALD_JWT_SECRET": SECRET, "HERALD_ADMIN_API_KEY": KEY})
                others.append(edge_a)
                pub_addr = edge_a.stdout.readline().split("http://")[1].strip()
                repl_cmd = [HERALD, "replicate", "--region", "local", "--to", f"kafka://{baddr}", "--from", f"a=kafka://{baddr_a}",
                            "--metrics-listen", "127.0.0.1:0"]
                replicate = subprocess.Popen(repl_cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, env={**os.environ, "RUST_LOG": "warn"})
                others.append(replicate)
                replicate.stdout.readline()
                if a.cut:
                    return catch_up(a, pub_addr, replicate, repl_cmd, others)
            for e in range(1, a.edges):
                # More edges of the same region on the same bus: a cluster behind a load balancer.
                edge = subprocess.Popen([HERALD, "edge", "--listen", "127.0.0.1:0", "--region", "local", "--node", f"edge-{e}",
                                         "--bus", f"kafka://{baddr}"], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
                                        env={**os.environ, "RUST_LOG": "warn", "HERALD_JWT_SECRET": SECRET, "HERALD_ADMIN_API_KEY": KEY})
                others.append(edge)
                addr += "," + edge.stdout.readline().split("http://")[1].strip()
                pub_addr = addr.split(",")[0]
            for edge_addr in addr.split(",")[1:]:
                # An edge listens before its bus is connected (unready, 503): wait until it is ready.
                for _ in range(600):
                    try:
                        if urllib.request.urlopen(f"http://{edge_addr}/readyz", timeout=1).status == 200:
                            break
                    except OSError:
                        pass
                    time.sleep(0.1)
                else:
                    raise SystemExit(f"edge {edge_addr} never became ready")
            token = subprocess.check_output([HERALD, "token", "--secret", SECRET, "--account", "load", "--sub", "bench",
                                             "--channels", "*", "--ttl", "1h"], text=True).strip()
        time.sleep(0.3)
        if a.resume:
            return resume(a, addr, token)
        if a.chat:
            return chat(a, server, addr)
        rss0 = rss_kib(server.pid)
        procs = []
        left, i = a.subscribers, 0
        while left > 0:
            n = min(PER_PROCESS, left)
            left -= n
            i += 1
            # A subscriber process ends once nothing arrived for this long (after the first record);
            # a storm or a background period must not look like the end of the run.
            idle_exit = str(int(a.storm_within_ms / 1000) + 15 if a.storm else int(a.mobile * 4) + 3 if a.mobile else 3)
            scenario = []
            if a.storm:
                scenario = ["--storm-at-secs", str(a.storm), "--storm-within-ms", str(a.storm_within_ms)]
            elif a.mobile:
                scenario = ["--mobile-mean-secs", str(a.mobile)]
            procs.append(subprocess.Popen([LOAD, "subscribe", "--addr", addr, "--token", token, "--connections", str(n),
                                           "--source-ip", f"127.0.0.{1 + i}", "--idle-exit-secs", idle_exit,
                                           "--max-secs", str(a.seconds + 120), "--transport", a.transport] + scenario,
                                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
        for p in procs:
            line = p.stderr.readline()
            if not line.startswith("ready"):
                raise SystemExit(f"subscriber process failed: {line}")
        time.sleep(1.0)
        rss1 = rss_kib(server.pid)
        cpu0 = cpu_s(server.pid)
        edge_pids = [server.pid] + [p.pid for p in others if p.args[:2] == [HERALD, "edge"] and a.edges > 1]
        edges_cpu0 = sum(cpu_s(p) for p in edge_pids)
        # Server CPU and RSS over time, once a second, while the load runs.
        samples, t0 = [], time.time()
        sampling = threading.Event()

        def sample():
            while not sampling.wait(1.0):
                try:
                    samples.append([round(time.time() - t0, 1), round(cpu_s(server.pid) - cpu0, 2), rss_kib(server.pid)])
                except OSError:
                    return
        threading.Thread(target=sample, daemon=True).start()
        pub = subprocess.run([LOAD, "publish", "--addr", pub_addr or addr, "--key", KEY, "--account", "load", "--rate", str(a.rate),
                              "--seconds", str(a.seconds), "--size", str(a.size)] + (["--nats"] if a.peer else []),
                             capture_output=True, text=True, timeout=a.seconds + 60)
        if pub.returncode != 0:
            raise SystemExit(f"publisher failed: {pub.stderr}")
        published = json.loads(pub.stdout)
        raw = [p.communicate(timeout=a.seconds + 180)[0] for p in procs]
        sampling.set()
        outs = [json.loads(r) for r in raw]
        cpu1 = cpu_s(server.pid)
        edges_cpu1 = sum(cpu_s(p) for p in edge_pids)
        out_dir = os.path.join(ROOT, "loadtest", "results", a.name) if a.name else None
        if out_dir:
            os.makedirs(out_dir, exist_ok=True)
        title = f"{a.subscribers} {a.transport} subscribers x {a.rate} records/s" + (" (reconnect storm)" if a.storm else " (mobile)" if a.mobile else "")
        merged = json.loads(subprocess.run([LOAD, "merge", "--title", title] + (["--svg", os.path.join(out_dir, "latency.svg")] if out_dir else []),
                                           input="".join(raw), capture_output=True, text=True, check=True).stdout)
        expected = published["published"] * a.subscribers
        got = sum(o["deliveries"] for o in outs)
        span = max(o["seconds"] for o in outs)
        result = {
            "server": a.peer or "herald", "regions": a.regions, "transport": a.transport,
            "subscribers": a.subscribers, "rate": a.rate, "seconds": a.seconds, "size": a.size,
            "published": published["published"], "expected_deliveries": expected, "deliveries": got,
            "lost": expected - got, "gaps": sum(o["gaps"] for o in outs), "duplicates": sum(o["duplicates"] for o in outs),
            "deliveries_per_sec": round(got / span) if span else 0,
            "latency_ms": merged["latency_ms"],
            "reconnects": merged.get("reconnects", 0), "unrecovered": merged.get("unrecovered", 0),
            "ws_messages_per_delivery": round(sum(o["ws_messages"] for o in outs) / max(got, 1), 3),
            "server_rss_per_conn_kib": round((rss1 - rss0) / a.subscribers, 2),
            "server_cpu_s": round(cpu1 - cpu0, 2), "edges": a.edges, "all_edges_cpu_s": round(edges_cpu1 - edges_cpu0, 2), "loadgen_cpu_s": round(sum(o["cpu_seconds"] for o in outs), 2),
            "publisher_cpu_s": published["cpu_seconds"],
            "server_samples": samples,
        }
        print(json.dumps(result))
        lat = result["latency_ms"]
        summary = (f"{title}, {a.size}-byte records, {a.seconds} s{', Kafka' if a.kafka else ''}\n"
                   f"  deliveries {got:,} of {expected:,}: lost {result['lost']}, gaps {result['gaps']}, duplicates {result['duplicates']}"
                   f"{', reconnects ' + str(result['reconnects']) if result['reconnects'] else ''}\n"
                   f"  {result['deliveries_per_sec']:,} deliveries/s; latency ms p50 {lat['p50']} p90 {lat['p90']} p99 {lat['p99']} "
                   f"p99.9 {lat['p999']} p99.99 {lat['p9999']} max {lat['max']}\n"
                   f"  server CPU {result['server_cpu_s']} s, peak RSS {max([x[2] for x in samples] or [rss1]) // 1024} MiB; "
                   f"load generator CPU {result['loadgen_cpu_s']} s\n")
        print(summary, file=sys.stderr, end="")
        if out_dir:
            with open(os.path.join(out_dir, "report.json"), "w") as f:
                json.dump(result, f, indent=1)
            with open(os.path.join(out_dir, "summary.txt"), "w") as f:
                f.write(summary)
        # Core NATS promises at most once: its loss is reported, not a failed run.
        if (result["gaps"] or result["duplicates"] or result["lost"]) and not a.peer:
            raise SystemExit("records were lost or duplicated")
    finally:
        for p in [server] + others + ([broker] if broker else []):
            p.kill()
            p.wait()


def chat(a, server, addr):
    """Many small rooms; every member publishes over its WebSocket and receives everyone's messages."""
    token = subprocess.check_output([HERALD, "token", "--secret", SECRET, "--account", "load", "--sub", "chat",
                                     "--channels", "room-*", "--publish", "room-*", "--ttl", "1h"], text=True).strip()
    rooms_per_proc = max(1, PER_PROCESS // a.members)
    procs, room, i = [], 0, 0
    while room < a.chat:
        n = min(rooms_per_proc, a.chat - room)
        i += 1
        procs.append(subprocess.Popen([LOAD, "chat", "--addr", addr, "--token", token, "--rooms", str(n), "--first-room", str(room),
                                       "--members", str(a.members), "--rate", str(a.chat_rate), "--seconds", str(a.seconds),
                                       "--source-ip", f"127.0.0.{1 + i}"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
        room += n
    for p in procs:
        line = p.stderr.readline()
        if not line.startswith("ready"):
            raise SystemExit(f"chat process failed: {line}")
    cpu0 = cpu_s(server.pid)
    raw = [p.communicate(timeout=a.seconds + 120)[0] for p in procs]
    cpu1 = cpu_s(server.pid)
    outs = [json.loads(r) for r in raw]
    merged = json.loads(subprocess.run([LOAD, "merge"], input="".join(raw), capture_output=True, text=True, check=True).stdout)
    expected = sum(o["expected_deliveries"] for o in outs)
    got = sum(o["deliveries"] for o in outs)
    result = {"scenario": "chat", "rooms": a.chat, "members": a.members, "members_total": a.chat * a.members,
              "messages_per_member_per_sec": a.chat_rate, "seconds": a.seconds,
              "published": sum(o["published"] for o in outs), "expected_deliveries": expected, "deliveries": got,
              "lost": expected - got, "gaps": merged["gaps"], "duplicates": merged["duplicates"],
              "deliveries_per_sec": round(got / max(o["seconds"] for o in outs)), "latency_ms": merged["latency_ms"],
              "server_cpu_s": round(cpu1 - cpu0, 2), "loadgen_cpu_s": round(sum(o["cpu_seconds"] for o in outs), 2)}
    print(json.dumps(result))
    lat = result["latency_ms"]
    print(f"chat: {a.chat} rooms x {a.members} members, {a.chat_rate} msg/s each, {a.seconds} s\n"
          f"  deliveries {got:,} of {expected:,}: lost {result['lost']}, gaps {result['gaps']}, duplicates {result['duplicates']}\n"
          f"  latency ms p50 {lat['p50']} p90 {lat['p90']} p99 {lat['p99']} p99.9 {lat['p999']} max {lat['max']}; "
          f"server CPU {result['server_cpu_s']} s, load generator CPU {result['loadgen_cpu_s']} s", file=sys.stderr)
    if result["lost"] or result["gaps"] or result["duplicates"]:
        raise SystemExit("messages were lost or duplicated")


def start_nats():
    """Debian's nats-server on loopback with its WebSocket listener; returns (process, ws addr, tcp addr)."""
    exe = shutil.which("nats-server") or "/usr/sbin/nats-server"
    if not os.path.exists(exe):
        raise SystemExit("nats-server is missing: apt-get install -y nats-server")
    tcp, ws = free_port(), free_port()
    conf = os.path.join(os.environ.get("TMPDIR", "/tmp"), f"herald-bench-nats-{os.getpid()}.conf")
    with open(conf, "w") as f:
        f.write(f"listen: 127.0.0.1:{tcp}\nmax_payload: 1048576\nwebsocket {{\n  listen: \"127.0.0.1:{ws}\"\n  no_tls: true\n}}\n")
    proc = subprocess.Popen([exe, "-c", conf], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    for _ in range(200):
        try:
            socket.create_connection(("127.0.0.1", ws), timeout=0.1).close()
            return proc, f"127.0.0.1:{ws}", f"127.0.0.1:{tcp}"
        except OSError:
            time.sleep(0.05)
    raise SystemExit("nats-server did not start")


def idle_peer(a, server, addr):
    """N idle WebSocket connections to the peer (each with one subscription), RSS per connection."""
    rss0 = rss_kib(server.pid)
    procs, left, i = [], a.idle, 0
    hold = 10 + (a.idle // PER_PROCESS + 1) * 4
    while left > 0:
        n = min(PER_PROCESS, left)
        left -= n
        i += 1
        procs.append(subprocess.Popen([LOAD, "subscribe", "--addr", addr, "--token", "-", "--connections", str(n), "--transport", "nats",
                                       "--source-ip", f"127.0.0.{1 + i}", "--idle-hold-secs", str(hold)],
                                      stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
    for p in procs:
        line = p.stderr.readline()
        if not line.startswith("ready"):
            raise SystemExit(f"idle process failed: {line}")
    time.sleep(2)
    rss1 = rss_kib(server.pid)
    for p in procs:
        p.communicate(timeout=hold + 30)
    print(json.dumps({"server": a.peer, "connections": a.idle, "rss_before_kib": rss0, "rss_after_kib": rss1,
                      "rss_per_conn_kib": round((rss1 - rss0) / a.idle, 2)}))


def catch_up(a, pub_addr, replicate, repl_cmd, others):
    """Stops the replicator, publishes for --cut seconds into region a, restarts it and times how
    long it takes to copy everything (from its herald_replicated_total)."""
    replicate.kill()
    replicate.wait()
    pub = subprocess.run([LOAD, "publish", "--addr", pub_addr, "--key", KEY, "--account", "load", "--rate", str(a.rate),
                          "--seconds", str(a.cut), "--size", str(a.size)], capture_output=True, text=True, timeout=a.cut + 60)
    if pub.returncode != 0:
        raise SystemExit(f"publisher failed: {pub.stderr}")
    published = json.loads(pub.stdout)["published"]
    start = time.time()
    again = subprocess.Popen(repl_cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, env={**os.environ, "RUST_LOG": "warn"})
    others.append(again)
    murl = again.stdout.readline().split("listening on ")[1].strip() + "/metrics"
    copied = 0
    while time.time() - start < 600:
        text = urllib.request.urlopen(murl, timeout=5).read().decode()
        m = re.search(r'^herald_replicated_total\{[^}]*\} (\d+)', text, re.M)
        copied = int(m.group(1)) if m else 0
        if copied >= published:
            break
        time.sleep(0.05)
    took = time.time() - start
    print(json.dumps({"regions": 2, "cut_seconds": a.cut, "rate": a.rate, "published_during_cut": published,
                      "copied": copied, "catch_up_seconds": round(took, 2), "catch_up_records_per_sec": round(copied / took) if took else 0}))


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
