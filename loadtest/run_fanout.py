#!/usr/bin/env python3
"""The load-test orchestrator: starts the servers (a release `herald dev`, several edges on one Kafka
bus, or Debian's nats-server as the peer), spreads the clients over `herald-loadtest` processes of at
most 5,000 connections each on distinct 127.x.y.z source addresses (new for each run), samples the
servers' CPU and RSS (and the load generator's CPU) every second, and hands everything to
`herald-loadtest report`, which merges the histograms exactly and writes
loadtest/results/NAME/{report.json,summary.txt,latency.svg}.
Exits 1 when a run that promises no loss lost or duplicated anything.

  fan-out      run_fanout.py --subscribers 10000 --rate 100 --seconds 10 [--channels 4] [--size 100]
               run_fanout.py --subscribers 1000 --rate 500,1000,2000 --step-secs 10          (stepped rate)
               run_fanout.py --subscribers 1000 --rate 100 --transport sse|poll
  storm        run_fanout.py --subscribers 15000 --rate 10 --seconds 30 --storm 8 --storm-within-ms 5000
               run_fanout.py --subscribers 45000 --edges 3 --kafka --rate 10 --seconds 60 --storm 15 --storm-within-ms 10000
  mobile       run_fanout.py --subscribers 2000 --rate 20 --seconds 30 --mobile 5
  chat         run_fanout.py --chat 1000 --members 5 --chat-rate 1 --seconds 20
  idle         run_fanout.py --idle 15000 [--idle-subscribed]
  peer         run_fanout.py --peer nats --subscribers 1000 --rate 500        (the same, against nats-server)
               run_fanout.py --compare nats --subscribers 1000 --rate 500     (Herald, then NATS, then the ratios)
               run_fanout.py --compare nats --idle 15000
  other        run_fanout.py --kafka --subscribers 100 --rate 1000            (through a Kafka broker, tansu)
               run_fanout.py --regions 2 --subscribers 100 --rate 1000        (publish in region a, receive in b)
               run_fanout.py --regions 2 --cut 60 --rate 1000                 (catch-up after a 60 s cut)
               run_fanout.py --kafka --resume 100000                          (replay rate from an old cursor)

Everything is bounded and stops by itself; every child process is killed on exit. Traffic goes to
127.0.0.0/8 only.
"""
import argparse, atexit, json, os, re, resource, shutil, signal, socket, subprocess, sys, threading, time, urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TARGET = os.environ.get("CARGO_TARGET_DIR", os.path.join(ROOT, "target"))
# HERALD_BIN: another herald binary (an A/B of two builds with the same load tool).
HERALD = os.environ.get("HERALD_BIN") or os.path.join(TARGET, "release", "herald")
LOAD = os.path.join(TARGET, "release", "herald-loadtest")
SECRET, KEY = "bench-secret-0123456789", "bench-key-0123456789"
CHILDREN = []


# --pin: the CPU servers run on and the CPU load processes run on (None: not pinned).
PIN = {"server": None, "load": None}


def spawn(cmd, **kw):
    """A child process, killed when this script ends however it ends; with --pin, bound to the
    servers' or the load processes' core."""
    cpu = PIN["load"] if cmd[0] == LOAD else PIN["server"]
    if cpu is not None:
        kw["preexec_fn"] = lambda: os.sched_setaffinity(0, {cpu})
    p = subprocess.Popen(cmd, **kw)
    CHILDREN.append(p)
    return p


def kill_children():
    for p in reversed(CHILDREN):
        if p.poll() is None:
            p.kill()
    for p in CHILDREN:
        try:
            p.wait(timeout=10)
        except subprocess.TimeoutExpired:
            pass
    CHILDREN.clear()


atexit.register(kill_children)
for _sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
    signal.signal(_sig, lambda *_: sys.exit(130))


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


def wait_port(port, what):
    for _ in range(300):
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.1).close()
            return
        except OSError:
            time.sleep(0.05)
    raise SystemExit(f"{what} did not start")


# ---------------------------------------------------------------------------------------------
# Preflight


def preflight(a):
    missing = [p for p in (HERALD, LOAD) if not os.access(p, os.X_OK)]
    if missing:
        raise SystemExit(f"missing {', '.join(missing)}: build first with\n"
                         f"  CARGO_TARGET_DIR={TARGET} cargo build --release -p herald -p herald-loadtest")
    if a.peer == "nats" or a.compare == "nats":
        if not nats_exe():
            if os.geteuid() == 0 and shutil.which("apt-get"):
                print("nats-server is missing: installing Debian's package (apt-get install -y nats-server)", file=sys.stderr)
                r = subprocess.run(["apt-get", "install", "-y", "nats-server"], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
                if r.returncode != 0:
                    subprocess.run(["apt-get", "update"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
                    subprocess.run(["apt-get", "install", "-y", "nats-server"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            if not nats_exe():
                raise SystemExit("nats-server is missing: apt-get install -y nats-server (Debian's package, 2.9)")
    if a.kafka and not tansu_exe():
        raise SystemExit("tansu is missing: run scripts/install-test-tools.sh")
    # Children inherit the limit: raise the soft limit on open files to the hard one.
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    per_server = max(a.subscribers, a.idle, a.chat * a.members) / max(1, a.edges)
    if per_server + 200 > hard and not a.peer and a.compare is None:
        raise SystemExit(f"{int(per_server)} connections on one server do not fit its open-file limit ({hard}): "
                         f"spread them with --edges N (with --kafka: one cluster; without: one herald dev per group)")
    if a.per_process + 100 > hard:
        raise SystemExit(f"--per-process {a.per_process} does not fit the open-file limit ({hard})")


def nats_exe():
    e = shutil.which("nats-server") or "/usr/sbin/nats-server"
    return e if os.access(e, os.X_OK) else None


def tansu_exe():
    e = shutil.which("tansu") or os.path.expanduser("~/.cache/herald-tools/bin/tansu")
    return e if os.access(e, os.X_OK) else None


# ---------------------------------------------------------------------------------------------
# Servers


class Server:
    """One server process to sample: a herald dev or edge, or nats-server."""

    def __init__(self, name, proc):
        self.name, self.proc, self.samples = name, proc, []
        self.rss_before = rss_kib(proc.pid)
        self.rss_ready = 0
        self.connections = 0


class Group:
    """Servers that share a bus (clients may resume on any of them) and the address to publish to."""

    def __init__(self, addrs, pub_addr, servers):
        self.addrs, self.pub_addr, self.servers, self.procs, self.subscribers = addrs, pub_addr, servers, [], 0

    def count(self, n):
        """This group's clients: n, spread over its servers."""
        self.subscribers = n
        for s, share in zip(self.servers, spread(n, len(self.servers))):
            s.connections = share


def start_broker():
    port = free_port()
    url = f"tcp://127.0.0.1:{port}"
    proc = spawn([tansu_exe(), "broker", "--listener-url", url, "--advertised-listener-url", url, "--storage-engine", "memory://tansu/"],
                 stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait_port(port, "tansu")
    return proc, f"127.0.0.1:{port}"


def start_herald(args, env=None):
    proc = spawn([HERALD] + args, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
                 env={**os.environ, "RUST_LOG": "warn", **(env or {})})
    line = proc.stdout.readline()
    if "http://" not in line:
        raise SystemExit(f"herald {args[0]} did not start: {line!r}")
    addr = line.split("http://")[1].strip()
    # Ready: its bus consumers are positioned (GET /readyz answers 200).
    for _ in range(600):
        try:
            if urllib.request.urlopen(f"http://{addr}/readyz", timeout=1).status == 200:
                return proc, addr
        except OSError:
            pass
        time.sleep(0.05)
    raise SystemExit(f"herald {args[0]} at {addr} never became ready")


def start_nats():
    """Debian's nats-server on loopback with its WebSocket listener."""
    tcp, ws = free_port(), free_port()
    conf = os.path.join(os.environ.get("TMPDIR", "/tmp"), f"herald-bench-nats-{os.getpid()}.conf")
    with open(conf, "w") as f:
        f.write(f"listen: 127.0.0.1:{tcp}\nmax_payload: 1048576\nwebsocket {{\n  listen: \"127.0.0.1:{ws}\"\n  no_tls: true\n}}\n")
    proc = spawn([nats_exe(), "-c", conf], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait_port(ws, "nats-server")
    wait_port(tcp, "nats-server")
    return proc, f"127.0.0.1:{ws}", f"127.0.0.1:{tcp}"


def start_servers(a, notes):
    """Returns (groups, servers, token)."""
    servers, groups = [], []
    if a.peer == "nats":
        proc, ws, tcp = start_nats()
        servers.append(Server("nats-server", proc))
        groups.append(Group([ws], tcp, servers[:]))
        return groups, servers, "-"
    dev = ["dev", "--listen", "127.0.0.1:0", "--dev-secret", SECRET, "--dev-api-key", KEY]
    if a.deflate:
        # Compression is off by default: turn it on, at the default level, for this run.
        conf = os.path.join(os.environ.get("TMPDIR", "/tmp"), f"herald-bench-deflate-{os.getpid()}.toml")
        with open(conf, "w") as f:
            f.write(f"[edge.compression]\nenabled = true\nlevel = {a.deflate_level}\n")
        atexit.register(lambda: os.path.exists(conf) and os.remove(conf))
        dev += ["--config", conf]
    edge_env = {"HERALD_JWT_SECRET": SECRET, "HERALD_ADMIN_API_KEY": KEY}
    if a.kafka:
        _, baddr = start_broker()
        proc, addr = start_herald(dev + ["--bus", f"kafka://{baddr}"])
        servers.append(Server("herald-dev", proc))
        group = Group([addr], addr, servers[:])
        if a.regions == 2:
            # The dev server is region "local", the subscribers' region. Region a gets its own broker and
            # edge, where records are published; a replicator copies them over.
            _, baddr_a = start_broker()
            edge_a, group.pub_addr = start_herald(["edge", "--listen", "127.0.0.1:0", "--region", "a", "--node", "edge-a",
                                                   "--bus", f"kafka://{baddr_a}"], edge_env)
            servers.append(Server("herald-edge-a", edge_a))
            a.repl_cmd = [HERALD, "replicate", "--region", "local", "--to", f"kafka://{baddr}", "--from", f"a=kafka://{baddr_a}",
                          "--metrics-listen", "127.0.0.1:0"]
            a.replicate = spawn(a.repl_cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, env={**os.environ, "RUST_LOG": "warn"})
            a.replicate.stdout.readline()
        for e in range(1, a.edges):
            # More edges of the same region on the same bus: a cluster behind a load balancer.
            proc, addr = start_herald(["edge", "--listen", "127.0.0.1:0", "--region", "local", "--node", f"edge-{e}",
                                       "--bus", f"kafka://{baddr}"], edge_env)
            servers.append(Server(f"herald-edge-{e}", proc))
            group.servers.append(servers[-1])
            group.addrs.append(addr)
        groups.append(group)
        if a.edges > 1:
            notes.append(f"{a.edges} edges on one Kafka bus (tansu); each reconnect moves to the next edge")
    else:
        for e in range(a.edges):
            proc, addr = start_herald(dev)
            servers.append(Server(f"herald-dev-{e}" if a.edges > 1 else "herald-dev", proc))
            groups.append(Group([addr], addr, [servers[-1]]))
        if a.edges > 1:
            notes.append(f"{a.edges} independent herald dev servers (the in-memory bus is not shared between processes): "
                         "each has its own publisher and its clients resume on it; use --kafka for one cluster")
    token = subprocess.check_output([HERALD, "token", "--secret", SECRET, "--account", "load", "--sub", "bench",
                                     "--channels", "*", "--publish", "*", "--ttl", "2h"], text=True).strip()
    return groups, servers, token


# ---------------------------------------------------------------------------------------------
# Load processes


class Load:
    """A herald-loadtest process: its stderr drained on a thread (so it can never block), the
    first `ready N` line noted."""

    def __init__(self, cmd, expect_ready, control=True):
        self.expect_ready = expect_ready
        self.proc = spawn(cmd, stdin=subprocess.PIPE if control else subprocess.DEVNULL, stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, text=True)
        self.ready, self.errors, self.ready_event = None, [], threading.Event()
        self.out = None
        threading.Thread(target=self._drain, daemon=True).start()

    def _drain(self):
        for line in self.proc.stderr:
            line = line.rstrip()
            if self.ready is None and line.startswith("ready "):
                self.ready = int(line.split()[1])
                self.ready_event.set()
            elif len(self.errors) < 20:
                self.errors.append(line)
        self.ready_event.set()

    def send(self, line):
        try:
            self.proc.stdin.write(line + "\n")
            self.proc.stdin.flush()
        except (BrokenPipeError, OSError):
            pass

    def result(self, timeout):
        try:
            out, _ = self.proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            out, _ = self.proc.communicate()
        lines = [l for l in (out or "").splitlines() if l.startswith("{")]
        if self.proc.returncode != 0 or not lines:
            raise SystemExit(f"load process failed ({self.proc.returncode}): {' | '.join(self.errors[-5:])}")
        return json.loads(lines[-1])


def wait_ready(loads, timeout):
    deadline = time.time() + timeout
    for l in loads:
        l.ready_event.wait(max(0.1, deadline - time.time()))
        if l.ready is None:
            raise SystemExit(f"a load process never got ready: {' | '.join(l.errors[-5:])}")
        if l.ready < l.expect_ready:
            print(f"only {l.ready} of {l.expect_ready} clients of a process subscribed: {' | '.join(l.errors[-3:])}", file=sys.stderr)


class Sampler:
    """Every second: each server's cumulative CPU and RSS, the load processes' CPU."""

    def __init__(self, servers, load_pids):
        self.servers, self.load_pids, self.loadgen = servers, load_pids, []
        self.last_seen = {}
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _load_cpu(self):
        # Cumulative: a process that has exited keeps its last reading.
        for pid in self.load_pids():
            try:
                self.last_seen[pid] = cpu_s(pid)
            except OSError:
                pass
        return sum(self.last_seen.values())

    def _run(self):
        while True:
            t = round(time.time(), 2)
            for s in self.servers:
                try:
                    s.samples.append([t, round(cpu_s(s.proc.pid), 3), rss_kib(s.proc.pid)])
                except OSError:
                    pass
            self.loadgen.append([t, round(self._load_cpu(), 3)])
            if self.stop.wait(1.0):
                return

    def start(self):
        self.thread.start()

    def finish(self):
        self.stop.set()
        self.thread.join()


# Load processes connect from 127.B.C.n, with B.C new for each run: the ports of the previous
# run's connections stay in TIME_WAIT for a minute, and reusing their source addresses made the
# kernel's port search burn both cores and spread 15,000 handshakes over 25 s instead of one.
RUN_NET = f"{1 + (os.getpid() + int(time.time())) % 254}.{int(time.time() * 1000) % 256}"


def source_ip(n):
    """The source address of the run's n-th load process."""
    return f"127.{RUN_NET}.{n}"


def subscriber_cmd(a, group, token, n, first, ip, scenario):
    cmd = [LOAD, "subscribe", "--addr", ",".join(group.addrs), "--token", token, "--connections", str(n),
           "--first-client", str(first), "--channels", str(a.channels), "--source-ip", source_ip(ip),
           "--transport", "nats" if a.peer == "nats" else a.transport, "--control-stdin",
           "--ready-timeout-secs", str(60 + n // 100), "--max-secs", str(a.seconds + 240 + int(a.mobile * 10)),
           "--idle-exit-secs", str(max(5, int(a.mobile * 3)))] + scenario
    if a.proto and a.peer != "nats":
        cmd.append("--proto")
    if a.deflate and a.peer != "nats":
        cmd.append("--deflate")
    return cmd


def spread(total, parts):
    return [total // parts + (1 if i < total % parts else 0) for i in range(parts)]


# ---------------------------------------------------------------------------------------------
# Scenarios


def fanout(a, groups, servers, token, notes):
    """Fan-out, storm and mobile: subscribers first, then the publishers, then `end`."""
    scenario = []
    if a.mobile:
        scenario = ["--mobile-mean-secs", str(a.mobile)]
    loads, ip = [], 1
    for g, share in zip(groups, spread(a.subscribers, len(groups))):
        g.count(share)
        first = 0
        for n in [a.per_process] * (share // a.per_process) + ([share % a.per_process] if share % a.per_process else []):
            ip += 1
            l = Load(subscriber_cmd(a, g, token, n, first, ip, scenario), n)
            g.procs.append(l)
            loads.append(l)
            first += n
    wait_ready(loads, 120 + a.subscribers / 200)
    time.sleep(1.0)
    for s in servers:
        s.rss_ready = rss_kib(s.proc.pid)
    pubs_running = []
    sampler = Sampler(servers, lambda: [l.proc.pid for l in loads] + [p.pid for p in pubs_running])
    sampler.start()
    if a.storm:
        at_ms = int((time.time() + a.storm) * 1000)
        for l in loads:
            l.send(f"storm {at_ms} {a.storm_within_ms}")
    rate = ",".join(str(r) for r in a.rate)
    pub_base = ["--key", KEY, "--account", "load", "--rate", rate, "--seconds", str(a.seconds), "--step-secs", str(a.step_secs),
                "--size", str(a.size), "--channels", str(a.channels)] + (["--nats"] if a.peer == "nats" else [])
    for g in groups:
        pubs_running.append(spawn([LOAD, "publish", "--addr", g.pub_addr] + pub_base, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
    published = []
    for g, p in zip(groups, pubs_running):
        out, err = p.communicate(timeout=a.seconds * 2 + 120)
        if p.returncode != 0:
            raise SystemExit(f"publisher failed: {err.strip()}")
        pub = json.loads(out)
        published.append(pub)
        for l in g.procs:
            l.send("end " + ",".join(str(n) for n in pub["published"]))
    outs = [l.result(a.seconds + 400 + a.mobile * 20) for l in loads]
    sampler.finish()
    if a.peer == "nats":
        notes.append("NATS core delivery is at most once: loss is counted and reported, not a failure; "
                     "a NATS client that is cut reconnects live (there is no cursor to resume from)")
    return outs, published, sampler


def chat(a, groups, servers, token, notes):
    """Many small rooms; every member publishes over its WebSocket and receives everyone's messages."""
    g = groups[0]
    rooms_per_proc = max(1, a.per_process // a.members)
    loads, room, ip = [], 0, 1
    while room < a.chat:
        n = min(rooms_per_proc, a.chat - room)
        ip += 1
        loads.append(Load([LOAD, "chat", "--addr", g.addrs[0], "--token", token, "--rooms", str(n), "--first-room", str(room),
                           "--members", str(a.members), "--rate", str(a.chat_rate), "--seconds", str(a.seconds),
                           "--size", str(a.size), "--source-ip", source_ip(ip)], n * a.members, control=False))
        room += n
    g.count(a.chat * a.members)
    wait_ready(loads, 120 + a.chat * a.members / 200)
    servers[0].rss_ready = rss_kib(servers[0].proc.pid)
    sampler = Sampler(servers, lambda: [l.proc.pid for l in loads])
    sampler.start()
    outs = [l.result(a.seconds + 120) for l in loads]
    sampler.finish()
    if a.chat * a.members * a.chat_rate > 40000:
        notes.append("above 50,000 publishes/s the account's default publish limit refuses records")
    return outs, [], sampler


def idle(a, groups, servers, token, notes):
    """Idle connections (each holding one subscription with --idle-subscribed): RSS per connection."""
    loads, ip = [], 1
    hold = 600
    for g, share in zip(groups, spread(a.idle, len(groups))):
        g.count(share)
        left = share
        while left > 0:
            n = min(a.per_process, left)
            left -= n
            ip += 1
            cmd = [LOAD, "subscribe", "--addr", ",".join(g.addrs), "--token", token, "--connections", str(n),
                   "--transport", "nats" if a.peer == "nats" else "ws", "--source-ip", source_ip(ip),
                   "--idle-hold-secs", str(hold), "--control-stdin", "--ready-timeout-secs", str(60 + n // 100)]
            if a.idle_subscribed:
                cmd.append("--idle-subscribe")
            if a.connect_gap_ms:
                cmd += ["--connect-gap-ms", str(a.connect_gap_ms)]
            l = Load(cmd, n)
            loads.append(l)
    sampler = Sampler(servers, lambda: [l.proc.pid for l in loads])
    sampler.start()
    wait_ready(loads, 120 + a.idle / 200)
    time.sleep(a.idle_settle)
    for s in servers:
        s.rss_ready = rss_kib(s.proc.pid)
    for l in loads:
        l.send("end 0")
    outs = [l.result(60) for l in loads]
    sampler.finish()
    notes.append("idle connections " + ("each hold one subscription" if a.idle_subscribed else "hold no subscription")
                 + "; RSS per connection = (RSS with all connected - RSS before) / connections")
    return outs, [], sampler


def default_name(a):
    what = scenario_of(a)
    server = a.peer or "herald"
    size = a.idle or a.subscribers if what != "chat" else a.chat
    wire = ("proto" if a.proto and not a.peer else a.transport) if what not in ('chat', 'idle') else 'ws'
    return f"{what}-{server}-{wire}-{size}-{time.strftime('%Y%m%d-%H%M%S')}"


def scenario_of(a):
    if a.idle:
        return "idle"
    if a.chat:
        return "chat"
    if a.storm:
        return "storm"
    if a.mobile:
        return "mobile"
    return "fanout"


def params_of(a):
    what = scenario_of(a)
    p = {"bus": "nats" if a.peer else "kafka" if a.kafka else "memory", "edges": a.edges}
    if what == "idle":
        p.update(connections=a.idle, subscribed=a.idle_subscribed)
    elif what == "chat":
        p.update(rooms=a.chat, members=a.members, messages_per_member_per_sec=a.chat_rate, seconds=a.seconds, size=a.size)
    else:
        p.update(subscribers=a.subscribers, channels=a.channels, transport="nats-ws" if a.peer else ("ws-proto" if a.proto else a.transport),
                 rate_per_channel=",".join(map(str, a.rate)), seconds=a.seconds, size=a.size)
        if a.deflate and not a.peer:
            p.update(deflate_level=a.deflate_level)
        if a.storm:
            p.update(storm_at_s=a.storm, storm_within_ms=a.storm_within_ms)
        if a.mobile:
            p.update(mobile_mean_s=a.mobile)
        if a.regions == 2:
            p.update(regions=2)
    return p


def run(a):
    """One run; returns the report's exit code."""
    notes = []
    if a.pin:
        notes.append(f"pinned: servers on CPU {PIN['server']}, load processes on CPU {PIN['load']}")
    name = a.name or default_name(a)
    groups, servers, token = start_servers(a, notes)
    try:
        time.sleep(0.3)
        if a.resume:
            return resume(a, groups[0].addrs[0], token)
        if a.cut:
            return catch_up(a, groups[0].pub_addr)
        what = scenario_of(a)
        fn = {"idle": idle, "chat": chat}.get(what, fanout)
        outs, published, sampler = fn(a, groups, servers, token, notes)
        doc = {"name": name, "scenario": what, "server": "nats" if a.peer == "nats" else "herald",
               "strict": a.peer != "nats", "params": params_of(a), "processes": outs, "publishers": published,
               "servers": [{"name": s.name, "connections": s.connections, "rss_before_kib": s.rss_before, "rss_ready_kib": s.rss_ready,
                            "samples": s.samples} for s in servers],
               "loadgen_samples": sampler.loadgen, "notes": notes}
        out_dir = os.path.join(ROOT, "loadtest", "results", name)
        r = subprocess.run([LOAD, "report", "--dir", out_dir], input=json.dumps(doc), text=True)
        print(f"-> {os.path.relpath(out_dir, os.getcwd())}/", file=sys.stderr)
        return r.returncode
    finally:
        kill_children()


def compare(a):
    """The same scenario on Herald, then on the peer, then both side by side."""
    base = a.name or default_name(a).replace("-herald-", "-herald-vs-nats-")
    codes = []
    for peer in ("", a.compare):
        b = argparse.Namespace(**vars(a))
        b.peer, b.compare, b.name = peer, None, f"{base}/{peer or 'herald'}"
        if peer:
            b.kafka, b.edges = False, 1
        codes.append(run(b))
        time.sleep(2)
    out_dir = os.path.join(ROOT, "loadtest", "results", base)
    subprocess.run([LOAD, "compare", os.path.join(out_dir, "herald", "report.json"), os.path.join(out_dir, a.compare, "report.json"),
                    "--dir", out_dir], check=True, stdout=subprocess.DEVNULL)
    return codes[0]


def publish_one(addr, body):
    req = urllib.request.Request(f"http://{addr}/v1/publish", data=json.dumps(body).encode(), method="POST",
                                 headers={"authorization": f"Bearer {KEY}", "content-type": "application/json"})
    return json.loads(urllib.request.urlopen(req).read())


def catch_up(a, pub_addr):
    """Stops the replicator, publishes for --cut seconds into region a, restarts it and times how
    long it takes to copy everything (from its herald_replicated_total)."""
    a.replicate.kill()
    a.replicate.wait()
    pub = subprocess.run([LOAD, "publish", "--addr", pub_addr, "--key", KEY, "--account", "load", "--rate", str(a.rate[0]),
                          "--seconds", str(a.cut), "--size", str(a.size)], capture_output=True, text=True, timeout=a.cut + 60)
    if pub.returncode != 0:
        raise SystemExit(f"publisher failed: {pub.stderr}")
    published = json.loads(pub.stdout)["published_total"]
    start = time.time()
    again = spawn(a.repl_cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, env={**os.environ, "RUST_LOG": "warn"})
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
    print(json.dumps({"regions": 2, "cut_seconds": a.cut, "rate": a.rate[0], "published_during_cut": published,
                      "copied": copied, "catch_up_seconds": round(took, 2), "catch_up_records_per_sec": round(copied / took) if took else 0}))
    return 0 if copied >= published else 1


def resume(a, addr, token):
    """Publishes N records with nobody subscribed, then one client resumes from before them."""
    # A record on another channel of the account gives the cursor's epoch and region.
    first = publish_one(addr, {"account": "load", "channel": "marker", "data": {}})
    epoch_region = first["cursor"].rsplit(".", 1)[0]
    since = f"{epoch_region}.0"
    rate = 20000
    pub = subprocess.run([LOAD, "publish", "--addr", addr, "--key", KEY, "--account", "load", "--rate", str(rate),
                          "--seconds", str(max(1, a.resume // rate)), "--size", str(a.size)], capture_output=True, text=True)
    published = json.loads(pub.stdout)["published_total"]
    sub = subprocess.run([LOAD, "subscribe", "--addr", addr, "--token", token, "--connections", "1", "--since", since,
                          "--idle-exit-secs", "3", "--max-secs", "300"], capture_output=True, text=True, timeout=400)
    out = json.loads(sub.stdout)
    print(json.dumps({"bus": "kafka" if a.kafka else "memory", "resumed_records": out["deliveries"], "expected": published,
                      "gaps": out["gaps"], "duplicates": out["duplicates"],
                      "replay_records_per_sec": round(out["deliveries_per_sec"]), "seconds": round(out["seconds"], 2)}))
    return 0 if out["deliveries"] == published and not out["gaps"] and not out["duplicates"] else 1


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--subscribers", type=int, default=1000)
    ap.add_argument("--channels", type=int, default=1, help="fan-out channels; subscribers spread evenly, each channel gets --rate")
    ap.add_argument("--rate", default="100", help="records/s per channel; a comma-separated list steps through rates (--step-secs each)")
    ap.add_argument("--step-secs", type=int, default=10)
    ap.add_argument("--seconds", type=int, default=0, help="publishing time (default 10, or --step-secs per rate)")
    ap.add_argument("--size", type=int, default=100, help="record payload bytes")
    ap.add_argument("--transport", default="ws", choices=["ws", "sse", "poll"], help="how subscribers connect")
    ap.add_argument("--deflate", action="store_true", help="WebSocket subscribers ask for permessage-deflate (turned on in the server); bytes on the wire counted compressed")
    ap.add_argument("--deflate-level", type=int, default=1, help="with --deflate: the server's DEFLATE level (default 1)")
    ap.add_argument("--proto", action="store_true", help="WebSocket subscribers speak the compact encoding (herald.v1.proto); NATS runs ignore it")
    ap.add_argument("--kafka", action="store_true", help="use a Kafka-compatible broker (tansu) as the bus")
    ap.add_argument("--edges", type=int, default=1,
                    help="with --kafka: this many edges on one bus (clients spread over them, each reconnect moves to the next); "
                         "without: this many independent herald dev servers, each with its share of clients and its own publisher")
    ap.add_argument("--storm", type=float, default=0,
                    help="reconnect storm: this many seconds into publishing, every subscriber is cut (no close handshake) "
                         "and reconnects within --storm-within-ms, resuming from its cursor")
    ap.add_argument("--storm-within-ms", type=int, default=5000)
    ap.add_argument("--mobile", type=float, default=0,
                    help="mobile: subscribers go to the background and come back at random (exponential, this mean in seconds), resuming")
    ap.add_argument("--chat", type=int, default=0, help="chat: this many rooms of --members members, each publishing --chat-rate messages/s")
    ap.add_argument("--members", type=int, default=5)
    ap.add_argument("--chat-rate", type=float, default=1.0)
    ap.add_argument("--idle", type=int, default=0, help="idle: hold this many connections and report RSS per connection")
    ap.add_argument("--idle-subscribed", action="store_true", help="idle connections each hold one subscription")
    ap.add_argument("--connect-gap-ms", type=int, default=0, metavar="MS",
                    help="idle: each load process starts one connection every MS ms (slow arrival; default a burst)")
    ap.add_argument("--idle-settle", type=float, default=3.0, metavar="SECS",
                    help="idle: seconds between all connected and the RSS reading (past 25 s, every connection has had a heartbeat)")
    ap.add_argument("--peer", default="", choices=["", "nats"], help="run the scenario against Debian's nats-server instead")
    ap.add_argument("--compare", default=None, choices=["nats"], help="run the scenario on Herald, then on the peer, and write the ratios")
    ap.add_argument("--per-process", type=int, default=5000, help="connections per load process (at most 5000: herald's per-IP limit)")
    ap.add_argument("--resume", type=int, default=0, help="measure replay of this many records from an old cursor")
    ap.add_argument("--regions", type=int, default=1, choices=[1, 2],
                    help="2: publish in region a, subscribe in region b, through herald replicate (implies --kafka)")
    ap.add_argument("--cut", type=int, default=0,
                    help="with --regions 2: stop the replicator, publish for this many seconds, restart it and time the catch-up")
    ap.add_argument("--pin", default="", metavar="S,L",
                    help="run the servers (Herald, NATS, the broker) on CPU S and the load processes on CPU L, e.g. 0,1")
    ap.add_argument("--name", default="", help="results go to loadtest/results/NAME/ (default: scenario, server, size and time)")
    a = ap.parse_args()
    if a.pin:
        server_cpu, load_cpu = (int(x) for x in a.pin.split(","))
        PIN.update(server=server_cpu, load=load_cpu)
    a.rate = [int(r) for r in a.rate.split(",")]
    if not a.seconds:
        a.seconds = a.step_secs * len(a.rate) if len(a.rate) > 1 else 10
    if a.regions == 2:
        a.kafka = True
    if a.cut and a.regions != 2:
        raise SystemExit("--cut needs --regions 2")
    if a.per_process > 5000:
        raise SystemExit("--per-process is at most 5000 (herald's default connections per IP address)")
    if a.storm and a.storm + a.storm_within_ms / 1000 + 2 > a.seconds:
        raise SystemExit("the storm and its reconnects must end before publishing does: raise --seconds")
    if a.peer and (a.chat or a.storm or a.mobile or a.kafka or a.transport != "ws"):
        raise SystemExit("--peer nats runs the fan-out (WebSocket subscribers) and idle scenarios")
    preflight(a)
    sys.exit(compare(a) if a.compare else run(a))


if __name__ == "__main__":
    main()
