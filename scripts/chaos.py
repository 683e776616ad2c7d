#!/usr/bin/env python3
"""Chaos under load (issue 16): a real Herald cluster, steady load from raw-protocol clients that do
not dedupe, and faults injected on a schedule while records flow, every record counted by
publisher, channel and sequence.

Per region: a Kafka-compatible broker (tansu), Redis (presence), 3 `herald control` members, 3
`herald edge`s on the Kafka bus registered with the control plane. With --regions 2 each region is a
network namespace with its own address (10.77.0.1 and 10.77.0.2, on veth links this script creates)
and a `herald replicate` each way, so a partition is a real link cut (`ip link set down`).

Each fault runs in its own window: fresh channels, subscribers (herald-loadtest subscribe: reconnect
with backoff, resume from the last cursor, move to the next edge) and one publisher per edge
(herald-loadtest publish --retry-secs: idempotency keys, a failed batch retried on the next edge);
the fault is injected a few seconds into publishing and publishing continues through it and after.
Per window: published, delivered, lost, duplicated (live, and in a replay of the window's channels
from the log), time until every client was live again, latency during and after, /readyz and alert
metrics sampled, processes that died or restarted, and the fault's own checks (presence consistent
on every edge, acknowledged control-plane writes kept, stalled and slowloris clients cut, ...).

  scripts/chaos.py                          # one region on 127.0.0.1, every single-region fault
  scripts/chaos.py --regions 2              # two regions in network namespaces, every fault
  scripts/chaos.py --short                  # ~3 minutes: two regions, every fault once, short stops (CI)
  scripts/chaos.py --faults edge-kill,slowloris
  scripts/chaos.py --soak 30                # steady load with client churn, RSS and fd slopes

Exits 1 naming the fault windows that lost or duplicated anything, or whose checks failed.
Everything it starts is killed on exit (also on failure or a signal); namespaces it made are
deleted. Traffic goes to 127.0.0.0/8 and to the namespaces it creates only.
"""
import argparse, atexit, base64, json, os, re, shutil, signal, socket, subprocess, sys, tempfile, threading, time, urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SECRET, KEY = "chaos-secret-0123456789abcdef", "chaos-admin-key-0123456789"
CLUSTER_TOKEN, EDGE_TOKEN, ADMIN_TOKEN = "chaos-cluster-token-0123456789", "chaos-edge-token-0123456789", "chaos-admin-token-0123456789"
NS_PREFIX = "hchaos-"
SINGLE_FAULTS = ["edge-kill", "rolling-drain", "redis-kill", "control-leader-kill", "slow-consumer", "slowloris", "broker-stop"]
REGION_FAULTS = ["replicator-kill", "partition"]
PROCS = []          # every server process started, for cleanup and health
LOADS = []          # every load process (subscribers, publishers), killed at exit too
EVENTS = []         # (unix_s, proc name, what): unexpected exits seen by the health monitor
LOCK = threading.Lock()


def log(msg):
    print(f"[chaos {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


# ---------------------------------------------------------------------------------------------
# Processes


class Proc:
    """One server process: restartable with the same command, its output in a log file. `down`
    says the orchestrator stopped it on purpose, so the health monitor does not count its exit."""

    def __init__(self, name, cmd, env, netns, logdir):
        self.name, self.cmd, self.env, self.netns = name, cmd, env, netns
        self.log = os.path.join(logdir, f"{name}.log")
        self.proc, self.down, self.starts, self.reported = None, False, 0, False
        PROCS.append(self)

    def start(self):
        full = (["ip", "netns", "exec", self.netns] if self.netns else []) + self.cmd
        out = open(self.log, "a")
        out.write(f"\n=== start {time.strftime('%H:%M:%S')} {' '.join(self.cmd)}\n")
        out.flush()
        self.offset = out.tell()
        self.proc = subprocess.Popen(full, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                     env={**os.environ, **self.env}, start_new_session=True)
        out.close()
        self.down, self.reported = False, False
        self.starts += 1
        return self

    def wait_line(self, pattern, timeout=60):
        """The first match of `pattern` in this start's output."""
        deadline = time.time() + timeout
        while time.time() < deadline:
            with open(self.log) as f:
                f.seek(self.offset)
                m = re.search(pattern, f.read())
            if m:
                return m
            if self.proc.poll() is not None:
                raise SystemExit(f"{self.name} exited ({self.proc.returncode}) at start; see {self.log}")
            time.sleep(0.05)
        raise SystemExit(f"{self.name} did not print {pattern!r} within {timeout}s; see {self.log}")

    @property
    def pid(self):
        return self.proc.pid if self.proc else None

    def alive(self):
        return self.proc is not None and self.proc.poll() is None

    def signal(self, sig):
        if self.alive():
            os.kill(self.proc.pid, sig)

    def kill9(self):
        self.down = True
        self.signal(signal.SIGKILL)
        self.proc.wait(timeout=10)

    def stop(self):
        """Ends it for good (cleanup): SIGCONT first in case it was stopped."""
        self.down = True
        if self.alive():
            try:
                os.kill(self.proc.pid, signal.SIGCONT)
                os.kill(self.proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                pass


def health_monitor(stop):
    """Every 0.5 s: any process that exited without the orchestrator stopping it is an event."""
    while not stop.wait(0.5):
        for p in list(PROCS):
            if p.proc is not None and not p.down and not p.reported and p.proc.poll() is not None:
                p.reported = True
                with LOCK:
                    EVENTS.append((time.time(), p.name, f"exited unexpectedly ({p.proc.returncode})"))
                log(f"!! {p.name} exited unexpectedly ({p.proc.returncode}); see {p.log}")


CLEANUPS = []


def cleanup():
    for p in LOADS:
        if p.poll() is None:
            p.kill()
    for p in reversed(PROCS):
        p.stop()
    for c in reversed(CLEANUPS):
        try:
            c()
        except Exception as e:  # cleanup goes on whatever failed
            log(f"cleanup: {e}")
    CLEANUPS.clear()


atexit.register(cleanup)
for _sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
    signal.signal(_sig, lambda *_: sys.exit(130))


def run(cmd, **kw):
    return subprocess.run(cmd, capture_output=True, text=True, **kw)


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def wait_port(host, port, what, timeout=30):
    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            socket.create_connection((host, port), timeout=0.2).close()
            return
        except OSError:
            time.sleep(0.05)
    raise SystemExit(f"{what} did not open {host}:{port}")


def http_get(url, timeout=1.0):
    """(status, body) or (None, error) when nothing answers."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as r:
            return r.status, r.read().decode(errors="replace")
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode(errors="replace")
    except Exception as e:  # refused, reset, timed out: the node is not answering
        return None, type(e).__name__


def metric_sums(text, names):
    """Each metric's value summed over its label sets."""
    out = {n: 0.0 for n in names}
    for line in text.splitlines():
        if not line or line[0] == "#":
            continue
        m = re.match(r"([a-z_:]+)(\{[^}]*\})?\s+(\S+)", line)
        if m and m.group(1) in out:
            try:
                out[m.group(1)] += float(m.group(3))
            except ValueError:
                pass
    return out


# ---------------------------------------------------------------------------------------------
# A minimal WebSocket client (presence queries), stdlib only


def ws_open(host, port, token, timeout=5.0):
    s = socket.create_connection((host, port), timeout=timeout)
    key = base64.b64encode(os.urandom(16)).decode()
    s.sendall((f"GET /v1/ws HTTP/1.1\r\nHost: {host}:{port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
               f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\nAuthorization: Bearer {token}\r\n\r\n").encode())
    head = b""
    while b"\r\n\r\n" not in head:
        chunk = s.recv(4096)
        if not chunk:
            raise OSError("closed during the handshake")
        head += chunk
    if b" 101 " not in head.split(b"\r\n")[0]:
        raise OSError(f"handshake refused: {head.split(chr(13).encode())[0]!r}")
    return [s, head.split(b"\r\n\r\n", 1)[1]]


def ws_send(ws, text):
    data = text.encode()
    mask = os.urandom(4)
    n = len(data)
    hdr = bytes([0x81]) + (bytes([0x80 | n]) if n < 126 else bytes([0x80 | 126]) + n.to_bytes(2, "big"))
    ws[0].sendall(hdr + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(data)))


def ws_recv(ws):
    """The next text message (pings answered on the way)."""
    s = ws[0]

    def need(n):
        while len(ws[1]) < n:
            chunk = s.recv(65536)
            if not chunk:
                raise OSError("closed")
            ws[1] += chunk
        out, ws[1] = ws[1][:n], ws[1][n:]
        return out

    while True:
        b0, b1 = need(2)
        n = b1 & 0x7F
        if n == 126:
            n = int.from_bytes(need(2), "big")
        elif n == 127:
            n = int.from_bytes(need(8), "big")
        payload = need(n)
        op = b0 & 0x0F
        if op == 9:
            mask = os.urandom(4)
            s.sendall(bytes([0x8A, 0x80 | len(payload)]) + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(payload)))
        elif op == 8:
            raise OSError("closed by the server")
        elif op in (1, 2):
            return payload.decode(errors="replace")


def presence_of(host, port, token, channel):
    """(occupancy, sorted connection ids) as one edge answers a `presence` request."""
    ws = ws_open(host, port, token)
    try:
        ws_send(ws, json.dumps({"type": "presence", "id": 7, "channel": channel}))
        deadline = time.time() + 5
        while time.time() < deadline:
            for line in ws_recv(ws).split("\n"):
                if '"type":"presence"' in line:
                    f = json.loads(line)
                    return f.get("occupancy"), sorted(m["connection_id"] for m in f.get("members", []))
                if '"type":"error"' in line:
                    raise OSError(line)
        raise OSError("no presence answer")
    finally:
        ws[0].close()


# ---------------------------------------------------------------------------------------------
# Network namespaces (--regions 2)

# Region r's services listen on one address on its namespace's loopback; the root namespace reaches
# each region over its own veth pair (the load runs there), and the two regions reach each other
# over a third veth pair, the inter-region link that a partition cuts.
NET = {
    "a": {"addr": "10.77.0.1", "root": ("hcx-ra0", "10.77.1.1"), "ns": ("hcx-ra1", "10.77.1.2"), "link": ("hcx-ab", "10.77.3.1")},
    "b": {"addr": "10.77.0.2", "root": ("hcx-rb0", "10.77.2.1"), "ns": ("hcx-rb1", "10.77.2.2"), "link": ("hcx-ba", "10.77.3.2")},
}


def sh(*cmd):
    r = run(list(cmd))
    if r.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed: {r.stderr.strip()}")


def remove_namespaces():
    for r in NET:
        run(["ip", "netns", "del", NS_PREFIX + r])
    for r in NET:
        run(["ip", "link", "del", NET[r]["root"][0]])


def make_namespaces():
    remove_namespaces()  # leftovers of an interrupted run
    CLEANUPS.append(remove_namespaces)
    for r, n in NET.items():
        ns = NS_PREFIX + r
        sh("ip", "netns", "add", ns)
        sh("ip", "-n", ns, "link", "set", "lo", "up")
        sh("ip", "-n", ns, "addr", "add", f"{n['addr']}/32", "dev", "lo")
        sh("ip", "link", "add", n["root"][0], "type", "veth", "peer", "name", n["ns"][0], "netns", ns)
        sh("ip", "addr", "add", f"{n['root'][1]}/30", "dev", n["root"][0])
        sh("ip", "link", "set", n["root"][0], "up")
        sh("ip", "-n", ns, "addr", "add", f"{n['ns'][1]}/30", "dev", n["ns"][0])
        sh("ip", "-n", ns, "link", "set", n["ns"][0], "up")
        sh("ip", "route", "add", f"{n['addr']}/32", "via", n["ns"][1])
    a, b = NET["a"], NET["b"]
    sh("ip", "link", "add", a["link"][0], "netns", NS_PREFIX + "a", "type", "veth", "peer", "name", b["link"][0], "netns", NS_PREFIX + "b")
    for r, other in (("a", "b"), ("b", "a")):
        ns, (dev, ip) = NS_PREFIX + r, NET[r]["link"]
        sh("ip", "-n", ns, "addr", "add", f"{ip}/30", "dev", dev)
        sh("ip", "-n", ns, "link", "set", dev, "up")
        sh("ip", "-n", ns, "route", "add", f"{NET[other]['addr']}/32", "via", NET[other]["link"][1])


def set_link(up):
    """The inter-region link, both ends: a real cut (packets in flight are lost, connections hang)."""
    for r in NET:
        sh("ip", "-n", NS_PREFIX + r, "link", "set", NET[r]["link"][0], "up" if up else "down")
    if up:
        for r, other in (("a", "b"), ("b", "a")):
            run(["ip", "-n", NS_PREFIX + r, "route", "replace", f"{NET[other]['addr']}/32", "via", NET[other]["link"][1]])


# ---------------------------------------------------------------------------------------------
# A region


EDGE_CONFIG = """# written by scripts/chaos.py
[edge]
# a small per-connection queue, so that a stalled reader is cut as lagged within seconds
max_queued_bytes = 131072
drain_grace_ms = {drain_grace_ms}
[presence]
ttl_secs = 15
"""


class Region:
    def __init__(self, name, host, netns, a, work):
        self.name, self.host, self.netns, self.a = name, host, netns, a
        self.dir = os.path.join(work, f"region-{name}")
        os.makedirs(self.dir, exist_ok=True)
        self.edges, self.members, self.replicator = [], [], None
        self.edge_ports, self.member_ports = [], []

    def proc(self, name, cmd, env=None):
        return Proc(f"{self.name}-{name}", cmd, {"RUST_LOG": "warn", **(env or {})}, self.netns, self.a.logdir)

    def start(self):
        h = self.host
        self.redis_port, self.broker_port = free_port(), free_port()
        self.redis = self.proc("redis", [shutil.which("redis-server") or "/usr/bin/redis-server", "--port", str(self.redis_port), "--bind", h,
                                         "--save", "", "--appendonly", "no",
                                         # it listens on a namespace's own address, not loopback: no protected mode there
                                         "--protected-mode", "no"]).start()
        wait_port(h, self.redis_port, "redis")
        self.presence = f"redis://{h}:{self.redis_port}"
        url = f"tcp://{h}:{self.broker_port}"
        self.broker = self.proc("broker", [self.a.tansu, "broker", "--listener-url", url, "--advertised-listener-url", url,
                                           "--storage-engine", "memory://tansu/"]).start()
        wait_port(h, self.broker_port, "tansu")
        self.bus = f"kafka://{h}:{self.broker_port}"
        self.member_ports = [free_port() for _ in range(3)]
        init = ",".join(f"{i + 1}={h}:{p}" for i, p in enumerate(self.member_ports))
        self.control = ",".join(f"{h}:{p}" for p in self.member_ports)
        tokens = {"HERALD_CONTROL_CLUSTER_TOKEN": CLUSTER_TOKEN, "HERALD_CONTROL_EDGE_TOKEN": EDGE_TOKEN, "HERALD_CONTROL_ADMIN_TOKEN": ADMIN_TOKEN}
        for i, p in enumerate(self.member_ports):
            cmd = [self.a.herald, "control", "--id", str(i + 1), "--listen", f"{h}:{p}", "--data", os.path.join(self.dir, f"control-{i + 1}"),
                   "--edge-heartbeat-ms", "1000", "--presence", self.presence] + (["--init", init] if i == 0 else [])
            self.members.append(self.proc(f"control-{i + 1}", cmd, tokens).start())
        for m in self.members:
            m.wait_line(r"listening on")
        conf = os.path.join(self.dir, "edge.toml")
        with open(conf, "w") as f:
            f.write(EDGE_CONFIG.format(drain_grace_ms=self.a.drain_grace_ms))
        env = {"HERALD_JWT_SECRET": SECRET, "HERALD_ADMIN_API_KEY": KEY, "HERALD_CONTROL": self.control,
               "HERALD_CONTROL_EDGE_TOKEN": EDGE_TOKEN, "HERALD_PRESENCE": self.presence}
        self.edge_ports = [free_port() for _ in range(self.a.edges)]
        for i, p in enumerate(self.edge_ports):
            cmd = [self.a.herald, "edge", "--config", conf, "--listen", f"{h}:{p}", "--bus", self.bus, "--region", self.name,
                   "--node", f"edge-{self.name}-{i + 1}"]
            self.edges.append(self.proc(f"edge-{i + 1}", cmd, env).start())
        for i in range(len(self.edges)):
            self.wait_edge_ready(i)
        self.ctl_retry(["status"], 30)
        if not self.first_cursor():
            raise SystemExit(f"region {self.name}: the first publish failed")
        log(f"region {self.name}: {len(self.edges)} edges on {self.bus}, control {self.control}, presence {self.presence}")

    def addr(self, i):
        return f"{self.host}:{self.edge_ports[i]}"

    def addrs(self, first=0):
        n = len(self.edge_ports)
        return [self.addr((first + k) % n) for k in range(n)]

    def wait_edge_ready(self, i, timeout=60):
        e = self.edges[i]
        e.wait_line(r"herald listening on", timeout)
        deadline = time.time() + timeout
        while time.time() < deadline:
            if http_get(f"http://{self.addr(i)}/readyz")[0] == 200:
                return time.time()
            if not e.alive():
                raise SystemExit(f"{e.name} exited; see {e.log}")
            time.sleep(0.1)
        raise SystemExit(f"{e.name} never became ready")

    def ctl(self, args, timeout=10):
        """`herald ctl --json ARGS` from this region's namespace: (ok, stdout, stderr)."""
        cmd = (["ip", "netns", "exec", self.netns] if self.netns else []) + [self.a.herald, "ctl", "--control", self.control, "--json"] + args
        try:
            r = run(cmd, env={**os.environ, "HERALD_CONTROL_ADMIN_TOKEN": ADMIN_TOKEN}, timeout=timeout)
        except subprocess.TimeoutExpired:
            return False, "", "timed out"
        return r.returncode == 0, r.stdout, r.stderr.strip()

    def ctl_retry(self, args, patience):
        deadline = time.time() + patience
        while True:
            ok, out, err = self.ctl(args)
            if ok:
                return json.loads(out) if out.strip() else None
            if time.time() > deadline:
                raise SystemExit(f"herald ctl {' '.join(args)} kept failing: {err}")
            time.sleep(0.3)

    def marker_cursor(self):
        """The cursor of a marker record published now (records after it are the ones published
        from now on), or None when no edge can publish."""
        for i in range(len(self.edge_ports)):
            req = urllib.request.Request(f"http://{self.addr(i)}/v1/publish", method="POST",
                                         data=json.dumps({"account": "chaos", "channel": "marker", "data": {}}).encode(),
                                         headers={"authorization": f"Bearer {KEY}", "content-type": "application/json"})
            try:
                with urllib.request.urlopen(req, timeout=5) as resp:
                    return json.loads(resp.read())["cursor"]
            except Exception:  # this edge cannot publish now: try the next one
                continue
        return None

    def first_cursor(self):
        """A cursor just after the first record of this region's partition for the account (a
        marker published when the region started, so nothing of the load is before it): from a
        marker's cursor (`c1|c2.<epoch>.<region>.<offset>…`) with the local offset set to 0."""
        if getattr(self, "_first", None):
            return self._first
        for i in range(len(self.edge_ports)):
            req = urllib.request.Request(f"http://{self.addr(i)}/v1/publish", method="POST",
                                         data=json.dumps({"account": "chaos", "channel": "marker", "data": {}}).encode(),
                                         headers={"authorization": f"Bearer {KEY}", "content-type": "application/json"})
            try:
                with urllib.request.urlopen(req, timeout=5) as resp:
                    cur = json.loads(resp.read())["cursor"]
            except Exception:  # this edge cannot publish now: try the next one
                continue
            parts = cur.split(".")
            self._first = f"c1.{parts[1]}.{parts[2]}.0"
            return self._first
        return None

    def start_replicator(self, other):
        p = free_port()
        self.replicator_metrics = f"{self.host}:{p}"
        cmd = [self.a.herald, "replicate", "--region", self.name, "--to", self.bus, "--from", f"{other.name}={other.bus}/herald.{other.name}",
               "--presence", self.presence, "--from-presence", f"{other.name}={other.presence}", "--metrics-listen", self.replicator_metrics]
        if self.replicator is None:
            self.replicator = self.proc("replicator", cmd)
        self.replicator.start()
        self.replicator.wait_line(r"listening on")

    def servers(self):
        """The processes whose health, RSS and fds are watched."""
        out = [self.broker, self.redis] + self.members + self.edges
        return out + ([self.replicator] if self.replicator else [])


# ---------------------------------------------------------------------------------------------
# Load: herald-loadtest processes


class Sub:
    """A `herald-loadtest subscribe` process: its stderr read on a thread (the `ready` line, the
    `status` lines, errors), its report the JSON line on stdout at the end."""

    def __init__(self, a, label, base, connections, addrs, source_ip, extra=()):
        self.label, self.base, self.connections = label, base, connections
        cmd = [a.loadtest, "subscribe", "--addr", ",".join(addrs), "--token", a.token, "--channel", base, "--channels", str(a.channels),
               "--connections", str(connections), "--control-stdin", "--status-ms", "200", "--idle-exit-secs", str(a.idle_exit_secs),
               "--max-secs", str(a.sub_max_secs), "--ready-timeout-secs", "60"] + (["--source-ip", source_ip] if source_ip else []) + list(extra)
        self.proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        LOADS.append(self.proc)
        self.ready, self.status, self.errors, self.ready_event = None, [], [], threading.Event()
        self.out = []
        threading.Thread(target=self._drain, daemon=True).start()
        self.out_thread = threading.Thread(target=lambda: self.out.append(self.proc.stdout.read()), daemon=True)
        self.out_thread.start()

    def _drain(self):
        for line in self.proc.stderr:
            w = line.split()
            if w[:1] == ["status"] and len(w) == 6 and all(x.isdigit() for x in w[1:]):
                self.status.append(tuple(int(x) for x in w[1:]))
            elif w[:1] == ["ready"] and self.ready is None:
                self.ready = int(w[1])
                self.ready_event.set()
            elif len(self.errors) < 20:
                self.errors.append(line.rstrip())
        self.ready_event.set()

    def send(self, line):
        try:
            self.proc.stdin.write(line + "\n")
            self.proc.stdin.flush()
        except OSError:
            pass

    def live_now(self):
        return self.status[-1][1] if self.status else 0

    def result(self, timeout):
        try:
            self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.out_thread.join(timeout=10)
        out = self.out[0] if self.out else ""
        lines = [l for l in (out or "").splitlines() if l.startswith("{")]
        if not lines:
            return {"role": "subscribe", "connections": self.connections, "ready": 0, "failed": f"no report ({self.proc.returncode}): {self.errors[-3:]}"}
        return json.loads(lines[-1])


class Pub:
    def __init__(self, a, label, base, addrs, until_file, prefix, seconds, size):
        self.label, self.base = label, base
        cmd = [a.loadtest, "publish", "--addr", ",".join(addrs), "--key", KEY, "--account", "chaos", "--channel", base,
               "--channels", str(a.channels), "--rate", str(a.rate), "--seconds", str(seconds), "--size", str(size),
               "--retry-secs", "60", "--request-timeout-ms", "3000", "--tick-ms", "100", "--idempotency-prefix", prefix, "--until-file", until_file]
        self.proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                     env={**os.environ, "RUST_BACKTRACE": "0"})
        LOADS.append(self.proc)

    def result(self, timeout):
        try:
            out, err = self.proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            out, err = self.proc.communicate()
        try:
            return json.loads(out)
        except ValueError:
            return {"role": "publish", "failed": (err or "").strip()[:400] or f"exit {self.proc.returncode}", "published": [], "published_total": 0}


class Sampler:
    """During a window: every edge's /readyz every 0.5 s, every edge's and replicator's alert
    metrics every second."""

    EDGE_METRICS = ["herald_bus_gaps_total", "herald_bus_errors_total", "herald_publish_errors_total", "herald_lagged_disconnects_total",
                    "herald_copies_dropped_total", "herald_presence_errors_total", "herald_ready", "herald_probe_ok", "herald_draining",
                    "herald_connections"]
    REPL_METRICS = ["herald_replicated_total", "herald_replication_errors_total", "herald_replication_lag_records", "herald_replication_lag_seconds"]

    def __init__(self, regions):
        self.regions, self.readyz, self.metrics = regions, [], []
        self.stop_ev = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self):
        tick = 0
        while not self.stop_ev.wait(0.5):
            now = time.time()
            for r in self.regions:
                for i, e in enumerate(r.edges):
                    code, body = http_get(f"http://{r.addr(i)}/readyz", timeout=0.4)
                    m = re.search(r'"status":"(\w+)"', body or "")
                    self.readyz.append((now, e.name, code, m.group(1) if m else ("no answer" if code is None else str(code))))
            tick += 1
            if tick % 2:
                continue
            for r in self.regions:
                for i, e in enumerate(r.edges):
                    code, body = http_get(f"http://{r.addr(i)}/metrics", timeout=0.5)
                    if code == 200:
                        self.metrics.append((now, e.name, metric_sums(body, self.EDGE_METRICS)))
                if r.replicator:
                    code, body = http_get(f"http://{r.replicator_metrics}/metrics", timeout=0.5)
                    if code == 200:
                        self.metrics.append((now, r.replicator.name, metric_sums(body, self.REPL_METRICS)))

    def finish(self):
        self.stop_ev.set()
        self.thread.join(timeout=5)

    def summary(self, t0, t1):
        ready = {}
        for t, name, code, status in self.readyz:
            if t0 <= t <= t1:
                ready.setdefault(name, {}).setdefault(status, 0)
                ready[name][status] += 1
        series = {}
        for t, name, vals in self.metrics:
            if t0 - 2 <= t <= t1:
                series.setdefault(name, []).append(vals)
        metrics = {}
        for name, rows in series.items():
            out = {}
            for k in rows[0]:
                vals = [r[k] for r in rows]
                if k.endswith("_total"):
                    # Increments over the window; a restarted process starts again from 0.
                    out[k] = int(sum(c - p if c >= p else c for p, c in zip(vals, vals[1:])))
                elif k in ("herald_replication_lag_records", "herald_replication_lag_seconds"):
                    out[k + "_max"] = max(vals)
                else:
                    out[k + "_min"] = min(vals)
            # Counters that did not move are left out; gauges are always shown.
            metrics[name] = {k: v for k, v in out.items() if v or not k.endswith("_total")}
        return {"readyz": ready, "metrics": metrics}


# ---------------------------------------------------------------------------------------------
# A fault window


def channel_name(base, channels, i):
    return base if channels <= 1 else f"{base}-{i % channels}"


class Window:
    """One fault with its own channels, publishers and subscribers."""

    def __init__(self, ctx, idx, fault):
        self.ctx, self.idx, self.fault = ctx, idx, fault
        self.tag = f"w{idx}"
        self.faulted = set()      # processes the fault stops or restarts on purpose
        self.checks, self.problems = {}, []
        self.t_fault = self.t_fault_end = None
        self.post_checks = []     # f(subs, outs): checks that need the clients' counts

    def run(self, inject, size=None, extra_subs=()):
        a, ctx = self.ctx.a, self.ctx
        size = size or a.size
        self.dir = os.path.join(a.out, f"{self.idx:02d}-{self.fault}")
        os.makedirs(self.dir, exist_ok=True)
        until = os.path.join(self.dir, "stop-publishing")
        if os.path.exists(until):  # left by an earlier run into the same --out
            os.remove(until)
        t_start = time.time()
        log(f"window {self.idx} {self.fault}: starting load")
        # One publisher per edge of every region; its subscribers spread over every region.
        specs = [(r, j, f"{self.tag}{r.name}{j}") for r in ctx.regions for j in range(a.publishers)]
        groups = len(specs) * len(ctx.regions)
        per = max(a.channels, a.subscribers // groups)
        subs, ip = [], 20
        for (r, j, base) in specs:
            for q in ctx.regions:
                ip += 1
                src = f"127.0.0.{ip}" if ctx.loopback else None
                subs.append(Sub(a, f"{base}@{q.name}", base, per, q.addrs(first=j), src))
        for (label, base, n, region, extra) in extra_subs:
            subs.append(Sub(a, label, base, n, region.addrs(), None, extra))
        deadline = time.time() + 60
        for s in subs:
            s.ready_event.wait(max(0.1, deadline - time.time()))
            if s.ready != s.connections:
                self.problems.append(f"{s.label}: only {s.ready} of {s.connections} clients subscribed before the fault")
        # Where this window's records start in each region's log: the replay reads from here.
        self.since = {r.name: r.marker_cursor() or r.first_cursor() for r in ctx.regions}
        sampler = Sampler(ctx.regions)
        pubs = [Pub(a, base, base, r.addrs(first=j), until, f"{a.run_id}-{base}", a.pub_max_secs, size) for (r, j, base) in specs]
        time.sleep(a.pre)
        self.t_fault = time.time()
        log(f"window {self.idx} {self.fault}: injecting")
        try:
            inject(self)
        except (Exception, SystemExit) as e:  # a fault that could not be carried out, or did not heal, fails the window
            self.problems.append(f"the fault could not be injected: {type(e).__name__}: {e}")
        self.t_fault_end = self.t_fault_end or time.time()
        log(f"window {self.idx} {self.fault}: fault over after {self.t_fault_end - self.t_fault:.1f}s; publishing {a.post}s more")
        time.sleep(a.post)
        open(until, "w").close()
        published = [p.result(180) for p in pubs]
        t_pub_end = time.time()
        for (r, j, base), pr in zip(specs, published):
            counts = ",".join(str(n) for n in pr.get("published", [])) or "0"
            for s in subs:
                if s.base == base:
                    s.send(f"end {counts}")
        outs = [s.result(a.idle_exit_secs + 120) for s in subs]
        t_end = time.time()
        sampler.finish()
        self.sampler = sampler
        self.replay = self.replay_check(specs, published)
        return self.summarize(subs, outs, pubs, published, sampler, t_start, t_pub_end, t_end)

    def replay_check(self, specs, published):
        """What the log holds: for each publisher, fresh clients (one per channel) replay the
        partition from a marker published just before the window's load (or from the log's first
        record) on an edge of the publisher's region, and must count every
        acknowledged record once. Tells a record that never reached the log from one that did
        but was not delivered live."""
        a = self.ctx.a
        out = {"lost": 0, "duplicates": 0, "gaps": 0, "unrecovered": 0, "delivered": 0, "failed": []}
        started = []
        for (r, j, base), pr in zip(specs, published):
            counts = pr.get("published") or [0]
            since = self.since.get(r.name) or r.first_cursor()
            if since is None:
                out["failed"].append(f"{base}: no edge of region {r.name} answers a publish")
                continue
            s = Sub(a, f"replay-{base}", base, a.channels, r.addrs(first=j + 1), None, ["--since", since])
            s.send("end " + ",".join(str(n) for n in counts))
            started.append((base, s))
        self.replay_outs = []
        for base, s in started:
            o = s.result(120)
            self.replay_outs.append((base, o))
            if o.get("failed"):
                out["failed"].append(f"{base}: {o['failed']}")
            for k in ("lost", "duplicates", "gaps", "unrecovered"):
                out[k] += o.get(k, 0) or 0
            out["delivered"] += o.get("deliveries", 0)
        return out

    def summarize(self, subs, outs, pubs, published, sampler, t_start, t_pub_end, t_end):
        a = self.ctx.a
        doc = {"name": f"chaos-{self.tag}-{self.fault}", "scenario": "fanout", "server": "herald", "strict": True,
               "params": {"fault": self.fault}, "processes": outs, "publishers": published, "servers": [], "notes": []}
        r = run([a.loadtest, "report", "--dir", self.dir], input=json.dumps(doc))
        try:
            with open(os.path.join(self.dir, "report.json")) as f:
                rep = json.load(f)
        except (OSError, ValueError):
            rep = {}
            self.problems.append(f"herald-loadtest report failed: {r.stderr.strip()[-300:]}")
        for p in published:
            if p.get("failed"):
                self.problems.append(f"a publisher failed: {p['failed']}")
        for s, o in zip(subs, outs):
            if o.get("failed"):
                self.problems.append(f"{s.label}: {o['failed']}")
        for f in self.post_checks:
            f(subs, outs)
        lost, dups = rep.get("lost", 0), rep.get("duplicates", 0)
        for k in ("lost", "duplicates", "gaps", "unrecovered"):
            if rep.get(k):
                self.problems.append(f"{k}: {rep[k]}")
        for k in ("lost", "duplicates", "gaps", "unrecovered"):
            if self.replay.get(k):
                self.problems.append(f"replay from the log: {k} {self.replay[k]}")
        self.problems += [f"replay failed: {f}" for f in self.replay["failed"]]
        # Time until every client was live again: per subscriber process, the end of the last
        # status sample after the fault began in which fewer than all its clients were live.
        recover = 0.0
        for s in subs:
            down = [t / 1000 for (t, live, *_rest) in s.status if t / 1000 >= self.t_fault and live < s.connections]
            if down:
                recover = max(recover, down[-1] + 0.2 - self.t_fault)
        tl = rep.get("timeline", [])
        before = [x["p99"] for x in tl if x["unix_s"] < self.t_fault - 1]
        base = sorted(before)[len(before) // 2] if before else 0
        bound = max(250.0, 3 * base)
        during = [x["p99"] for x in tl if self.t_fault <= x["unix_s"] + 1 and x["unix_s"] <= self.t_fault_end]
        after = [x["p99"] for x in tl if x["unix_s"] > self.t_fault_end + 1]
        high = [x["unix_s"] + 1 for x in tl if x["unix_s"] + 1 >= self.t_fault and x["p99"] > bound]
        unexpected = [{"t": round(t - self.t_fault, 1), "process": n, "what": w} for (t, n, w) in EVENTS if t_start <= t <= t_end]
        others = [u for u in unexpected if u["process"] not in self.faulted]
        if others:
            self.problems.append(f"processes other than the faulted one died: {others}")
        pub_stats = {k: sum(p.get(k, 0) for p in published) for k in ("retries", "failovers", "duplicates_answered")}
        pub_stats["longest_batch_ms"] = max([p.get("longest_batch_ms", 0) for p in published] or [0])
        self.problems += [f"check {k} failed: {v.get('why', '')}" for k, v in self.checks.items() if isinstance(v, dict) and v.get("ok") is False]
        for v in self.checks.values():
            if isinstance(v, dict) and v.get("ok") is not False:
                v.pop("why", None)  # the explanation is for failures only
        out = {
            "window": self.idx, "fault": self.fault, "ok": not self.problems, "problems": self.problems,
            "fault_started_unix": round(self.t_fault, 2), "fault_seconds": round(self.t_fault_end - self.t_fault, 2),
            "publishing_seconds": round(t_pub_end - self.t_fault + a.pre, 1),
            "published": rep.get("published", 0), "expected_deliveries": rep.get("expected_deliveries"), "delivered": rep.get("deliveries", 0),
            "lost": lost, "duplicated": dups, "gaps": rep.get("gaps", 0), "unrecovered_resumes": rep.get("unrecovered", 0),
            "clients": sum(s.connections for s in subs),
            "replay": self.replay,
            "reconnects": rep.get("reconnects", 0), "lagged": rep.get("lagged", 0), "drains": rep.get("drains", 0),
            "connect_errors": rep.get("connect_errors", 0),
            "live_again_s": round(recover, 2),
            "latency_ms": rep.get("latency_ms", {}),
            "p99_before_ms": base, "worst_1s_p99_during_ms": max(during or [0]), "worst_1s_p99_after_ms": max(after or [0]),
            "latency_recovered_s": round(max(high) - self.t_fault, 1) if high else 0.0,
            "publisher": pub_stats,
            "checks": self.checks,
            **sampler.summary(self.t_fault - 1, t_pub_end),
            "processes": {"faulted": sorted(self.faulted), "unexpected_exits": unexpected,
                          "restarted_by_the_fault": sorted(p.name for p in PROCS if p.name in self.faulted)},
            "subscriber_processes": [{"label": s.label, "connections": s.connections, "lost": o.get("lost"), "duplicates": o.get("duplicates"),
                                      "lagged": o.get("lagged"), "reconnects": o.get("reconnects"), "stalls": o.get("stalls")} for s, o in zip(subs, outs)],
            "report": os.path.relpath(os.path.join(self.dir, "report.json"), ROOT),
        }
        if lost or dups or self.replay.get("lost") or self.replay.get("duplicates"):
            # Where the records went: the last batches' answers (cursors = offsets in the log) and
            # where each replay and some live clients stopped.
            out["evidence"] = {
                "publishers_last_answers": {p.label: pr.get("last_answers") for p, pr in zip(pubs, published)},
                "replay_final_cursors": {b: o.get("final_cursors") for b, o in getattr(self, "replay_outs", [])},
                "live_final_cursors": {s.label: o.get("final_cursors") for s, o in zip(subs, outs)},
            }
        with open(os.path.join(self.dir, "window.json"), "w") as f:
            json.dump(out, f, indent=1)
        verdict = "ok" if out["ok"] else "FAILED: " + "; ".join(self.problems)
        log(f"window {self.idx} {self.fault}: published {out['published']}, delivered {out['delivered']}, lost {lost}, duplicated {dups}, "
            f"live again {out['live_again_s']}s -> {verdict}")
        return out


# ---------------------------------------------------------------------------------------------
# The faults. Each runs while records flow, notes what it did in w.checks, and marks the
# processes it stops on purpose in w.faulted.


def clients_unaffected(w, label="clients"):
    """A fault that must not touch the clients: none reconnected, none was cut."""
    def check(subs, outs):
        rec = sum(o.get("reconnects", 0) for s, o in zip(subs, outs) if not s.label.startswith("slow"))
        lag = sum(o.get("lagged", 0) for s, o in zip(subs, outs) if not s.label.startswith("slow"))
        w.checks[f"{label}_unaffected"] = {"ok": rec == 0 and lag == 0, "reconnects": rec, "lagged": lag,
                                           "why": f"{rec} reconnects, {lag} lagged cuts among clients the fault should not touch"}
    w.post_checks.append(check)


def fault_edge_kill(w):
    r = w.ctx.regions[0]
    i = 1 % len(r.edges)
    e = r.edges[i]
    w.faulted.add(e.name)
    e.kill9()
    t_kill = time.time()
    time.sleep(w.ctx.a.edge_down_secs)
    e.start()
    t_ready = r.wait_edge_ready(i)
    w.checks["edge_kill"] = {"killed": e.name, "down_s": round(w.ctx.a.edge_down_secs, 1), "restarted_ready_after_s": round(t_ready - t_kill, 2)}


def fault_rolling_drain(w):
    r = w.ctx.regions[0]
    steps = []
    for i, e in enumerate(r.edges):
        node = f"edge-{r.name}-{i + 1}"
        w.faulted.add(e.name)
        e.down = True
        t0 = time.time()
        r.ctl_retry(["drain", node], 20)
        try:
            e.proc.wait(timeout=w.ctx.a.drain_grace_ms / 1000 + 20)
            exited = round(time.time() - t0, 2)
        except subprocess.TimeoutExpired:
            exited = None
            e.kill9()
        e.start()
        ready = r.wait_edge_ready(i)
        steps.append({"node": node, "exited_after_s": exited, "ready_again_after_s": round(ready - t0, 2)})
    ok = all(s["exited_after_s"] is not None for s in steps)
    w.checks["rolling_drain"] = {"ok": ok, "edges": steps, "why": "a drained edge did not exit by itself"}


def fault_broker_stop(w):
    r = w.ctx.regions[0]
    b = r.broker
    w.faulted.add(b.name)
    b.signal(signal.SIGSTOP)
    time.sleep(w.ctx.a.broker_stop_secs)
    b.signal(signal.SIGCONT)
    t_cont = time.time()
    ready = [None] * len(r.edges)
    while time.time() - t_cont < 60 and None in ready:
        for i in range(len(r.edges)):
            if ready[i] is None and http_get(f"http://{r.addr(i)}/readyz")[0] == 200:
                ready[i] = round(time.time() - t_cont, 2)
        time.sleep(0.2)
    w.checks["broker_stop"] = {"ok": None not in ready, "stopped_s": w.ctx.a.broker_stop_secs, "edges_ready_after_resume_s": ready,
                               "why": "edges not ready (/readyz 200) within 60 s of the broker's SIGCONT",
                               "restart": "not done: tansu here stores in memory (memory://), a restarted broker has lost every "
                                          "record by design; see docs/reliability.md"}


def presence_view(w, region, channel):
    """Every edge's answer for `channel`: {edge: (occupancy, ids)} (an error string when it failed)."""
    out = {}
    for i, e in enumerate(region.edges):
        host, port = region.addr(i).rsplit(":", 1)
        try:
            out[e.name] = presence_of(host, int(port), w.ctx.a.token, channel)
        except Exception as ex:  # an edge that cannot answer is inconsistent
            out[e.name] = f"{type(ex).__name__}: {ex}"
    return out


def presence_consistent(view, expected):
    vals = list(view.values())
    return all(isinstance(v, tuple) for v in vals) and all(v == vals[0] for v in vals) and vals[0][0] == expected and len(vals[0][1]) == expected


def fault_redis_kill(w):
    a, r = w.ctx.a, w.ctx.regions[0]
    base = f"{w.tag}{r.name}0"
    channel = channel_name(base, a.channels, 0)
    # Every region's subscribers of this publisher joined this channel (mirrored across regions).
    per = max(a.channels, a.subscribers // (a.publishers * len(w.ctx.regions) ** 2))
    expected = len(w.ctx.regions) * len([i for i in range(per) if i % a.channels == 0])
    before = presence_view(w, r, channel)
    ok_before = presence_consistent(before, expected)
    w.faulted.add(r.redis.name)
    r.redis.kill9()
    t_kill = time.time()
    time.sleep(a.redis_down_secs)
    r.redis.start()
    wait_port(r.host, r.redis_port, "redis")
    t_back = time.time()
    view, took = None, None
    while time.time() - t_back < a.presence_patience:
        view = presence_view(w, r, channel)
        if presence_consistent(view, expected):
            took = round(time.time() - t_back, 2)
            break
        time.sleep(0.5)
    brief = {k: (v[0] if isinstance(v, tuple) else v) for k, v in (view or {}).items()}
    w.checks["presence"] = {"ok": ok_before and took is not None, "channel": channel, "expected_members": expected,
                            "consistent_before_kill": ok_before, "redis_down_s": round(t_back - t_kill, 2),
                            "consistent_after_restart_s": took, "occupancy_by_edge_at_end": brief,
                            "why": f"edges disagree or miss members {a.presence_patience}s after Redis came back: {brief}"
                                   if ok_before else f"presence was wrong before the kill: {before}"}


def fault_control_leader_kill(w):
    a, r = w.ctx.a, w.ctx.regions[0]
    writes, stop = [], threading.Event()

    def writer():
        n = 0
        while not stop.is_set():
            name = f"chaos-{a.run_id}-{w.tag}-{n}"
            t = time.time()
            ok, _out, err = r.ctl(["account", name, "--connections", str(1000 + n)], timeout=15)
            writes.append({"account": name, "connections": 1000 + n, "acked": ok, "t": t, "took": time.time() - t, "error": err[-120:] if not ok else ""})
            n += 1
    th = threading.Thread(target=writer, daemon=True)
    th.start()
    time.sleep(2)
    status = r.ctl_retry(["status"], 20)
    leader = int(status["leader"])
    m = r.members[leader - 1]
    w.faulted.add(m.name)
    m.kill9()
    t_kill = time.time()
    time.sleep(a.leader_down_secs)
    m.start()
    m.wait_line(r"listening on")
    time.sleep(2)
    stop.set()
    th.join(timeout=30)
    new = r.ctl_retry(["status"], 20)
    accounts = {x["name"]: x["limits"]["connections"] for x in r.ctl_retry(["accounts"], 20)}
    acked = [x for x in writes if x["acked"]]
    missing = [x["account"] for x in acked if accounts.get(x["account"]) != x["connections"]]
    after_kill = [x for x in writes if x["t"] >= t_kill]
    first_ok = min([x["t"] + x["took"] for x in after_kill if x["acked"]] or [None]) if after_kill else None
    w.checks["control_writes"] = {"ok": not missing and bool(acked), "killed_leader": leader, "new_leader": new["leader"], "writes": len(writes),
                                  "acknowledged": len(acked), "refused_or_failed": len(writes) - len(acked),
                                  "acknowledged_but_missing": missing[:20],
                                  "writes_unavailable_s": round(first_ok - t_kill, 2) if first_ok else None,
                                  "why": f"{len(missing)} acknowledged writes are missing" if acked else "no write was acknowledged"}
    clients_unaffected(w)


def fault_slow_consumer(w):
    a = w.ctx.a
    # The stalled clients (started with the window, see SLOW below) stop reading now; wait for the
    # stall to end and for them to be cut and resume.
    time.sleep(a.stall_secs + 3)

    def check(subs, outs):
        slow = [o for s, o in zip(subs, outs) if s.label.startswith("slow")]
        stalls = sum(o.get("stalls", 0) for o in slow)
        # The server cuts a stalled client: a `lagged` error it may never read, then the socket is
        # dropped (the client sees a reset or an end of stream and reconnects).
        reconnects = sum(o.get("reconnects", 0) for o in slow)
        edges = w.sampler.summary(w.t_fault - 1, time.time())["metrics"]
        cut = sum(m.get("herald_lagged_disconnects_total", 0) for m in edges.values())
        w.checks["slow_consumer"] = {"ok": stalls >= 1 and cut >= stalls and reconnects >= stalls, "stalled_clients": stalls,
                                     "herald_lagged_disconnects_total": cut, "slow_client_reconnects": reconnects,
                                     "slow_client_lost": sum(o.get("lost", 0) for o in slow), "slow_client_duplicates": sum(o.get("duplicates", 0) for o in slow),
                                     "why": f"{stalls} clients stalled, the edges cut {cut} as lagged, they reconnected {reconnects} times"}
    w.post_checks.append(check)
    clients_unaffected(w, "other_clients")


def fault_slowloris(w):
    a, r = w.ctx.a, w.ctx.regions[0]
    host, port = r.addr(0).rsplit(":", 1)
    header = b"GET /v1/ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nX-Slow: " + b"a" * 10000
    socks, idle = [], []
    for _ in range(a.slowloris):
        s = socket.create_connection((host, int(port)), timeout=2)
        s.setblocking(False)
        socks.append([s, 0, None])
    for _ in range(3):
        s = socket.create_connection((host, int(port)), timeout=2)
        s.setblocking(False)
        idle.append([s, 0, None])
    t0 = time.time()
    limit = a.slowloris_patience
    while time.time() - t0 < limit and any(x[2] is None for x in socks + idle):
        for x in socks + idle:
            if x[2] is not None:
                continue
            try:
                if x in socks:
                    x[0].send(header[x[1]:x[1] + 1])
                    x[1] += 1
                data = x[0].recv(4096)
                if data == b"" or data:
                    # An answer (408/400) or the end of the stream: the server gave up on it.
                    x[2] = time.time() - t0
            except BlockingIOError:
                pass
            except OSError:
                x[2] = time.time() - t0
        time.sleep(0.5)
    for x in socks + idle:
        x[0].close()
    closed = [x[2] for x in socks if x[2] is not None]
    idle_closed = [x[2] for x in idle if x[2] is not None]
    ok = len(closed) == len(socks)
    w.checks["slowloris"] = {"ok": ok, "connections": len(socks), "closed": len(closed), "bytes_sent_each_max": max(x[1] for x in socks),
                             "closed_after_s_max": round(max(closed), 1) if closed else None,
                             "closed_after_s_min": round(min(closed), 1) if closed else None,
                             "idle_connections_closed": len(idle_closed), "idle_closed_after_s_max": round(max(idle_closed), 1) if idle_closed else None,
                             "why": f"{len(socks) - len(closed)} of {len(socks)} trickling connections still open after {limit}s"}
    clients_unaffected(w)


def fault_replicator_kill(w):
    a, r = w.ctx.a, w.ctx.regions[1]
    rep = r.replicator
    w.faulted.add(rep.name)
    kills = []
    for k in range(a.replicator_kills):
        rep.kill9()
        kills.append(round(time.time() - w.t_fault, 2))
        time.sleep(1.0)
        rep.start()
        rep.wait_line(r"listening on")
        time.sleep(1.5 + (k % 3))
    w.checks["replicator_kill"] = {"replicator": rep.name, "kills_at_s": kills}


def replication_state(region):
    """(records of the other region not yet copied here, records copied so far), or None."""
    code, body = http_get(f"http://{region.replicator_metrics}/metrics", timeout=1)
    if code != 200:
        return None
    m = metric_sums(body, ["herald_replication_lag_records", "herald_replicated_total"])
    return m["herald_replication_lag_records"], m["herald_replicated_total"]


def fault_partition(w):
    a = w.ctx.a
    set_link(False)
    t_cut = time.time()
    time.sleep(a.partition_secs)
    set_link(True)
    t_heal = time.time()
    # Caught up: both replicators are less than a second of publishing behind again (under steady
    # publishing the lag is rarely exactly 0 records).
    # The lag gauge can still show its value from before the cut: count only once each replicator
    # has copied something since the heal.
    second = a.rate * a.channels * a.publishers
    at_heal = [replication_state(r) for r in w.ctx.regions]
    caught = None
    while time.time() - t_heal < a.catch_up_patience:
        now = [replication_state(r) for r in w.ctx.regions]
        if all(n is not None and h is not None and n[1] > h[1] and n[0] <= second for n, h in zip(now, at_heal)):
            caught = round(time.time() - t_heal, 2)
            break
        time.sleep(0.25)
    w.t_fault_end = t_heal
    w.checks["partition"] = {"ok": caught is not None, "cut_s": round(t_heal - t_cut, 1), "replication_caught_up_after_heal_s": caught,
                             "how": "ip link set down on both ends of the inter-region veth",
                             "why": f"replication lag stayed above a second of publishing for {a.catch_up_patience} s after the heal"}


FAULTS = {"edge-kill": fault_edge_kill, "rolling-drain": fault_rolling_drain, "broker-stop": fault_broker_stop, "redis-kill": fault_redis_kill,
          "control-leader-kill": fault_control_leader_kill, "slow-consumer": fault_slow_consumer, "slowloris": fault_slowloris,
          "replicator-kill": fault_replicator_kill, "partition": fault_partition}


# ---------------------------------------------------------------------------------------------
# Soak: RSS and open fds of every process over time


def proc_rss_fds(pid):
    try:
        with open(f"/proc/{pid}/status") as f:
            rss = int(re.search(r"VmRSS:\s+(\d+)", f.read()).group(1))
        return rss, len(os.listdir(f"/proc/{pid}/fd"))
    except (OSError, AttributeError):
        return None


def slope_per_min(points):
    """Least-squares slope of [(t_s, v)], per minute."""
    n = len(points)
    if n < 3:
        return 0.0
    mt = sum(t for t, _ in points) / n
    mv = sum(v for _, v in points) / n
    var = sum((t - mt) ** 2 for t, _ in points)
    return 60 * sum((t - mt) * (v - mv) for t, v in points) / var if var else 0.0


def growth(points, per_min_limit):
    """(slope per minute, growing): growing when the slope is over the limit and each third of the
    series (after warm-up) is higher on average than the one before."""
    s = slope_per_min(points)
    k = len(points) // 3
    if k < 2:
        return s, False
    thirds = [sum(v for _, v in points[i * k:(i + 1) * k]) / k for i in range(3)]
    return s, s > per_min_limit and thirds[0] < thirds[1] < thirds[2]


def soak(ctx):
    a = ctx.a
    minutes = a.soak
    log(f"soak: {minutes} min of steady load with client churn (each client away and back, mean {a.soak_churn_s}s)")
    r = ctx.regions[0]
    w = Window(ctx, 0, "soak")
    w.dir = os.path.join(a.out, "soak")
    os.makedirs(w.dir, exist_ok=True)
    until = os.path.join(w.dir, "stop-publishing")
    if os.path.exists(until):
        os.remove(until)
    specs = [(r, j, f"soak{r.name}{j}") for j in range(a.publishers)]
    per = max(a.channels, a.subscribers // len(specs))
    a.sub_max_secs = int(minutes * 60) + 600
    subs = [Sub(a, base, base, per, r.addrs(first=j), f"127.0.0.{30 + j}" if ctx.loopback else None,
                ["--mobile-mean-secs", str(a.soak_churn_s)]) for (r, j, base) in specs]
    for s in subs:
        s.ready_event.wait(60)
    pubs = [Pub(a, base, base, r.addrs(first=j), until, f"{a.run_id}-{base}", int(minutes * 60), a.size) for (r, j, base) in specs]
    samples = {p.name: [] for p in PROCS}
    t0 = time.time()
    while time.time() - t0 < minutes * 60:
        for p in PROCS:
            v = proc_rss_fds(p.pid) if p.alive() else None
            if v:
                samples[p.name].append((time.time() - t0, v[0], v[1]))
        time.sleep(a.soak_sample_s)
    open(until, "w").close()
    published = [p.result(120) for p in pubs]
    for (r_, j, base), pr in zip(specs, published):
        for s in subs:
            if s.base == base:
                s.send("end " + (",".join(str(n) for n in pr.get("published", [])) or "0"))
    outs = [s.result(a.idle_exit_secs + 180) for s in subs]
    # Once the load is gone (and the edges' idle partition consumers have lingered out,
    # edge.consumer_linger_ms = 30 s): what each process still holds. A leak keeps it; a backlog
    # of work in flight (readers of resuming clients) gives it back.
    time.sleep(35)
    after = {p.name: proc_rss_fds(p.pid) for p in PROCS if p.alive()}
    warm = max(120.0, minutes * 60 * 0.2)
    rows, leaks = [], []
    for name, pts in samples.items():
        pts = [x for x in pts if x[0] >= warm]
        if len(pts) < 6:
            continue
        rs, rgrow = growth([(t, rss) for t, rss, _ in pts], max(64.0, 0.002 * pts[0][1]))
        fs, fgrow = growth([(t, fd) for t, _, fd in pts], 0.5)
        idle = after.get(name)
        # Open files that are all given back once the load is gone were work in flight, not a leak.
        if fgrow and idle and idle[1] <= pts[0][2] + 5:
            fgrow = False
        row = {"process": name, "rss_kib_first": pts[0][1], "rss_kib_last": pts[-1][1], "rss_slope_kib_per_min": round(rs, 1),
               "fds_first": pts[0][2], "fds_last": pts[-1][2], "fds_slope_per_min": round(fs, 2), "rss_growing": rgrow, "fds_growing": fgrow,
               "rss_kib_after_load": idle[0] if idle else None, "fds_after_load": idle[1] if idle else None}
        rows.append(row)
        if rgrow or fgrow:
            leaks.append(name)
    rep_dir = w.dir
    doc = {"name": "chaos-soak", "scenario": "fanout", "server": "herald", "strict": True, "params": {"soak_minutes": minutes},
           "processes": outs, "publishers": published, "servers": [], "notes": []}
    run([a.loadtest, "report", "--dir", rep_dir], input=json.dumps(doc))
    try:
        with open(os.path.join(rep_dir, "report.json")) as f:
            rep = json.load(f)
    except (OSError, ValueError):
        rep = {}
    problems = list(rep.get("problems", ["no report"]))
    problems += [f"{s.label}: {s.errors[:3]}" for s in subs if s.errors]
    problems += [f"publisher: {p['failed']}" for p in published if p.get("failed")]
    problems += [f"{n} keeps growing (RSS or fds) after warm-up" for n in leaks]
    problems += [f"{n} exited unexpectedly" for (_, n, _w) in EVENTS]
    out = {"soak_minutes": minutes, "warm_up_s": warm, "sample_every_s": a.soak_sample_s, "ok": not problems, "problems": problems,
           "published": rep.get("published"), "delivered": rep.get("deliveries"), "lost": rep.get("lost"), "duplicated": rep.get("duplicates"),
           "reconnects": rep.get("reconnects"), "latency_ms": rep.get("latency_ms"), "processes": rows,
           "samples": {k: v for k, v in samples.items()}}
    with open(os.path.join(a.out, "soak.json"), "w") as f:
        json.dump(out, f, indent=1)
    print(f"\nsoak {minutes} min (warm-up {warm:.0f}s excluded): published {out['published']}, delivered {out['delivered']}, "
          f"lost {out['lost']}, duplicated {out['duplicated']}")
    print(f"{'process':<22}{'RSS KiB first→last→idle':>30}{'KiB/min':>10}{'fds first→last→idle':>22}{'fds/min':>9}  growing")
    for x in rows:
        print(f"{x['process']:<22}{str(x['rss_kib_first']) + '→' + str(x['rss_kib_last']) + '→' + str(x['rss_kib_after_load']):>30}"
              f"{x['rss_slope_kib_per_min']:>10}{str(x['fds_first']) + '→' + str(x['fds_last']) + '→' + str(x['fds_after_load']):>22}"
              f"{x['fds_slope_per_min']:>9}  "
              f"{'RSS ' if x['rss_growing'] else ''}{'fds' if x['fds_growing'] else ''}")
    return out


# ---------------------------------------------------------------------------------------------
# Main


class Ctx:
    pass


def print_table(results):
    print(f"\n{'#':>2} {'fault':<20}{'published':>10}{'delivered':>11}{'lost':>6}{'dup':>5}{'live again s':>13}"
          f"{'p99 before/during/after ms':>28}{'readyz ≠ ready':>16}  verdict")
    for x in results:
        not_ready = sum(n for e in x.get("readyz", {}).values() for st, n in e.items() if st != "ready")
        p = f"{x['p99_before_ms']:.0f}/{x['worst_1s_p99_during_ms']:.0f}/{x['worst_1s_p99_after_ms']:.0f}"
        print(f"{x['window']:>2} {x['fault']:<20}{x['published']:>10}{x['delivered']:>11}{x['lost']:>6}{x['duplicated']:>5}"
              f"{x['live_again_s']:>13}{p:>28}{not_ready:>16}  {'ok' if x['ok'] else 'FAILED'}")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--regions", type=int, default=1, choices=[1, 2], help="2: two regions in network namespaces, with replicators")
    ap.add_argument("--short", action="store_true", help="about 3 minutes: two regions, every fault once, short stops (CI)")
    ap.add_argument("--faults", default="", help="comma-separated subset, in this order (default: all that apply)")
    ap.add_argument("--soak", type=float, default=0, help="soak for this many minutes instead of injecting faults")
    ap.add_argument("--edges", type=int, default=3)
    ap.add_argument("--publishers", type=int, default=0, help="publishers per region (default: one per edge)")
    ap.add_argument("--subscribers", type=int, default=300, help="subscribers per window, over every publisher's channels and region")
    ap.add_argument("--channels", type=int, default=2, help="channels per publisher")
    ap.add_argument("--rate", type=int, default=50, help="records/s per channel")
    ap.add_argument("--size", type=int, default=200, help="record payload bytes")
    ap.add_argument("--pre", type=float, default=5, help="seconds of publishing before the fault")
    ap.add_argument("--post", type=float, default=8, help="seconds of publishing after the fault")
    ap.add_argument("--broker-stop-secs", type=float, default=20)
    ap.add_argument("--partition-secs", type=float, default=60)
    ap.add_argument("--edge-down-secs", type=float, default=3)
    ap.add_argument("--redis-down-secs", type=float, default=3)
    ap.add_argument("--leader-down-secs", type=float, default=6)
    ap.add_argument("--stall-secs", type=float, default=20, help="slow consumer: how long it stops reading")
    ap.add_argument("--slowloris", type=int, default=20, help="slowloris connections")
    ap.add_argument("--replicator-kills", type=int, default=3)
    ap.add_argument("--drain-grace-ms", type=int, default=6000)
    ap.add_argument("--soak-churn-s", type=float, default=60, help="soak: mean seconds a client stays, and stays away")
    ap.add_argument("--soak-sample-s", type=float, default=5)
    ap.add_argument("--bin-dir", default="", help="where herald and herald-loadtest are (default: $CARGO_TARGET_DIR/release, else debug)")
    ap.add_argument("--out", default="", help="results directory (default loadtest/results/chaos-TIME)")
    a = ap.parse_args()
    if a.short:
        a.regions = 2
        a.subscribers = min(a.subscribers, 120)
        a.pre, a.post = 3, 4
        a.broker_stop_secs, a.partition_secs, a.stall_secs = 6, 10, 10
        a.edge_down_secs, a.redis_down_secs, a.leader_down_secs = 1.5, 1.5, 3
        a.slowloris, a.replicator_kills, a.drain_grace_ms = 10, 2, 3000
    a.publishers = a.publishers or a.edges
    a.presence_patience = 45.0
    a.slowloris_patience = 30.0
    a.catch_up_patience = 60.0 if a.short else 180.0
    a.idle_exit_secs = 60  # a client that got nothing for this long (nobody away) will get nothing more
    a.sub_max_secs = 900
    a.pub_max_secs = 600
    a.run_id = time.strftime("%Y%m%d%H%M%S")
    target = os.environ.get("CARGO_TARGET_DIR", os.path.join(ROOT, "target"))
    dirs = [a.bin_dir] if a.bin_dir else [os.path.join(target, "release"), os.path.join(target, "debug")]
    for d in dirs:
        if os.access(os.path.join(d, "herald"), os.X_OK) and os.access(os.path.join(d, "herald-loadtest"), os.X_OK):
            a.herald, a.loadtest = os.path.join(d, "herald"), os.path.join(d, "herald-loadtest")
            break
    else:
        raise SystemExit(f"no herald and herald-loadtest in {dirs}: build first, e.g.\n"
                         f"  CARGO_TARGET_DIR={target} cargo build --release --locked -p herald -p herald-loadtest")
    a.tansu = shutil.which("tansu") or os.path.expanduser("~/.cache/herald-tools/bin/tansu")
    if not os.access(a.tansu, os.X_OK):
        raise SystemExit("tansu is missing: run scripts/install-test-tools.sh")
    if not (shutil.which("redis-server") or os.access("/usr/bin/redis-server", os.X_OK)):
        raise SystemExit("redis-server is missing: run scripts/install-test-tools.sh")
    if a.regions == 2 and (os.geteuid() != 0 or not shutil.which("ip")):
        raise SystemExit("--regions 2 needs root and iproute2 (network namespaces)")
    # The broker stop goes last: after it, publishing in that region has been seen not to recover
    # (docs/reliability.md), which would fail every later window.
    default = SINGLE_FAULTS[:-1] + (REGION_FAULTS if a.regions == 2 else []) + SINGLE_FAULTS[-1:]
    names = [f for f in (a.faults.split(",") if a.faults else default) if f]
    for f in names:
        if f not in FAULTS:
            raise SystemExit(f"unknown fault {f}; known: {', '.join(FAULTS)}")
        if f in REGION_FAULTS and a.regions != 2:
            raise SystemExit(f"{f} needs --regions 2")
    a.out = os.path.abspath(a.out or os.path.join(ROOT, "loadtest", "results", f"chaos-{'soak' if a.soak else 'short' if a.short else 'r' + str(a.regions)}-{a.run_id}"))
    a.logdir = os.path.join(a.out, "logs")
    os.makedirs(a.logdir, exist_ok=True)
    work = tempfile.mkdtemp(prefix="herald-chaos-")
    CLEANUPS.append(lambda: shutil.rmtree(work, ignore_errors=True))
    import resource
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    a.token = run([a.herald, "token", "--secret", SECRET, "--account", "chaos", "--sub", "chaos", "--channels", "*", "--ttl", "6h"]).stdout.strip()
    stop = threading.Event()
    threading.Thread(target=health_monitor, args=(stop,), daemon=True).start()
    ctx = Ctx()
    ctx.a = a
    t_begin = time.time()
    if a.regions == 2:
        # One two-region run at a time on a machine: the namespaces and addresses are fixed, and a
        # second run would delete the first one's namespaces.
        import fcntl
        lock = open("/run/herald-chaos.lock", "w")
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            raise SystemExit("another two-region chaos run is going on (/run/herald-chaos.lock)")
        a.lock = lock
        make_namespaces()
        ctx.regions = [Region(r, NET[r]["addr"], NS_PREFIX + r, a, work) for r in ("a", "b")]
        ctx.loopback = False
    else:
        ctx.regions = [Region("a", "127.0.0.1", None, a, work)]
        ctx.loopback = True
    for r in ctx.regions:
        r.start()
    if a.regions == 2:
        ctx.regions[0].start_replicator(ctx.regions[1])
        ctx.regions[1].start_replicator(ctx.regions[0])
    log(f"cluster up in {time.time() - t_begin:.1f}s; results in {a.out}")
    if a.soak:
        out = soak(ctx)
        sys.exit(0 if out["ok"] else 1)
    results = []
    for idx, f in enumerate(names, 1):
        w = Window(ctx, idx, f)
        extra, size = (), None
        if f == "slow-consumer":
            r = ctx.regions[0]
            # Two clients that stop reading when the fault starts (about `pre` s after the load's
            # clients are ready), with a small receive buffer so the server's queue fills soon.
            extra = [("slow", f"{w.tag}{r.name}0", 2, r, ["--stall-after-secs", str(a.pre + 1.5), "--stall-secs", str(a.stall_secs), "--recv-buffer", "4096"])]
            size = 1000
        results.append(w.run(FAULTS[f], size=size, extra_subs=extra))
    stop.set()
    summary = {"command": " ".join(sys.argv), "regions": a.regions, "edges_per_region": a.edges, "subscribers_per_window": a.subscribers,
               "rate_per_channel": a.rate, "channels_per_publisher": a.channels, "publishers_per_region": a.publishers,
               "seconds": round(time.time() - t_begin, 1), "ok": all(x["ok"] for x in results), "windows": results}
    with open(os.path.join(a.out, "report.json"), "w") as f:
        json.dump(summary, f, indent=1)
    print_table(results)
    failed = [f"window {x['window']} ({x['fault']}): {'; '.join(x['problems'])}" for x in results if not x["ok"]]
    print(f"\nchaos: {len(results) - len(failed)} passed, {len(failed)} failed")
    print(f"({summary['seconds']}s; {os.path.relpath(a.out, os.getcwd())}/report.json)")
    for line in failed:
        print("FAILED " + line)
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
