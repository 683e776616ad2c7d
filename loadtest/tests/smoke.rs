//! Every Herald scenario at tiny scale against real edges (in this process, on loopback, the
//! in-memory bus), checked through the same report the orchestrator writes: zero loss, zero
//! duplicates, every client subscribed. And once through the binary, as separate processes
//! steered over stdin, the way `run_fanout.py` drives it.

use herald_bus_memory::{MemoryBus, MemoryBusConfig};
use herald_config::Config;
use herald_edge::{Edge, EdgeDeps, EdgeMetrics, TokenClaims, TokenIssuer};
use herald_loadtest::{chat, publish, report, subscribe};
use herald_presence_memory::MemoryPresence;
use serde_json::{Value, json};
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

const SECRET: &str = "smoke-secret-0123456789";
const KEY: &str = "smoke-admin-key-0123456789";

/// Edges on one in-memory bus: a cluster, so a client can resume on another edge.
struct Cluster {
    addrs: Vec<String>,
    stop: CancellationToken,
}

impl Drop for Cluster {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

async fn cluster(edges: usize, tune: impl Fn(&mut Config)) -> Cluster {
    let mut config = Config::default();
    config.auth.jwt_secret = Some(SECRET.into());
    config.auth.admin_api_key = Some(KEY.into());
    tune(&mut config);
    config.validate().expect("valid config");
    let mut bc = MemoryBusConfig::new(config.edge.region.clone());
    bc.partitions = config.bus.partitions;
    bc.retention_records = config.bus.retention_records;
    let bus = Arc::new(MemoryBus::new(bc));
    let stop = CancellationToken::new();
    let mut addrs = Vec::new();
    for n in 0..edges {
        let mut c = config.clone();
        c.edge.node = format!("smoke-{n}");
        let deps = EdgeDeps { bus: bus.clone(), presence: Arc::new(MemoryPresence::new()), metrics: EdgeMetrics::new(), dev: None, devices: None, orders: Arc::new(herald_presence_memory::MemoryOrders::new()) };
        let edge = Edge::new(&c, deps).unwrap();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        addrs.push(listener.local_addr().unwrap().to_string());
        let (e, s) = (edge.clone(), stop.clone());
        tokio::spawn(async move { herald_edge::serve(listener, e, s).await.unwrap() });
        for _ in 0..1000 {
            if edge.is_ready() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        assert!(edge.is_ready(), "edge {n} never became ready");
    }
    Cluster { addrs, stop }
}

fn token(publish: bool) -> String {
    let now = herald_core::now_ms() / 1000;
    let claims = TokenClaims {
        sub: "smoke".into(),
        account: "load".into(),
        exp: now + 3600,
        iat: Some(now),
        nbf: None,
        jti: None,
        subscribe: vec!["*".into()],
        publish: if publish { vec!["*".into()] } else { vec![] },
        presence: None,
    };
    TokenIssuer::hs256(SECRET.as_bytes()).issue(&claims)
}

fn sub_args(addr: &str, connections: usize, transport: &str) -> subscribe::Args {
    subscribe::Args {
        addr: addr.into(),
        token: token(false),
        channel: "fanout".into(),
        channels: 1,
        first_client: 0,
        connections,
        source_ip: None,
        idle_exit_secs: 3,
        max_secs: 30,
        ready_timeout_secs: 15,
        idle_hold_secs: None,
        idle_subscribe: false,
        connect_gap_ms: 0,
        deflate: false,
        since: None,
        mobile_mean_secs: None,
        transport: transport.into(),
        proto: false,
        control_stdin: true,
        status_ms: 0,
        stall_after_secs: None,
        stall_secs: 1.0,
        recv_buffer: 0,
    }
}

fn pub_args(addr: &str, rate: u64, seconds: u64, channels: usize) -> publish::Args {
    publish::Args {
        addr: addr.into(),
        key: KEY.into(),
        account: "load".into(),
        channel: "fanout".into(),
        channels,
        rate: vec![rate],
        seconds: Some(seconds),
        step_secs: 1,
        size: 100,
        tick_ms: 10,
        nats: false,
        retry_secs: 0,
        request_timeout_ms: 5000,
        idempotency_prefix: "smoke".into(),
        until_file: None,
        ws_token: None,
    }
}

/// Subscribers (several processes' worth), then the publisher, then `end`: the report.
async fn fanout(subs: Vec<subscribe::Args>, publisher: publish::Args, storm: Option<(u64, u64)>) -> Value {
    let n: usize = subs.iter().map(|a| a.connections).sum();
    let mut controls = Vec::new();
    let mut runs = Vec::new();
    for a in subs {
        let (tx, ctl) = subscribe::control();
        controls.push(tx);
        runs.push(tokio::spawn(subscribe::run(a, ctl)));
    }
    // Everyone subscribed before the first record: that is what zero loss is measured against.
    wait_ready(&controls, n).await;
    if let Some((after_ms, within_ms)) = storm {
        for c in &controls {
            c.storm(subscribe::Storm { at_us: herald_loadtest::now_us() + after_ms * 1000, within_ms });
        }
    }
    let published = publish::run(publisher).await.unwrap();
    let counts: Vec<u64> = published["published"].as_array().unwrap().iter().map(|v| v.as_u64().unwrap()).collect();
    for c in &controls {
        c.end(counts.clone());
    }
    let mut processes = Vec::new();
    for r in runs {
        processes.push(r.await.unwrap().unwrap());
    }
    let run = json!({"name": "smoke", "scenario": "fanout", "server": "herald", "strict": true, "processes": processes, "publishers": [published]});
    let (rep, text, _) = report::build(&run).unwrap();
    eprint!("{text}");
    rep
}

/// Waits until `n` clients have subscribed.
async fn wait_ready(controls: &[subscribe::ControlTx], n: usize) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    while controls.iter().map(|c| c.ready()).sum::<u64>() < n as u64 {
        assert!(tokio::time::Instant::now() < deadline, "{n} clients never subscribed");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn assert_clean(rep: &Value) {
    assert_eq!(rep["ok"], true, "{}", report::summary(rep));
    assert_eq!(rep["lost"], 0);
    assert_eq!(rep["duplicates"], 0);
    assert_eq!(rep["deliveries"], rep["expected_deliveries"]);
    assert!(rep["latency_ms"]["count"].as_u64().unwrap() > 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fanout_over_websocket_two_channels_two_processes() {
    let c = cluster(1, |_| {}).await;
    let mut a = sub_args(&c.addrs[0], 6, "ws");
    a.channels = 2;
    let mut b = a.clone();
    b.first_client = 6;
    b.connections = 5;
    let rep = fanout(vec![a, b], pub_args(&c.addrs[0], 40, 1, 2), None).await;
    assert_clean(&rep);
    // 11 clients, 40 records on each of 2 channels.
    assert_eq!(rep["expected_deliveries"], 11 * 40);
    assert_eq!(rep["processes"], 2);
}

/// The compact encoding: the same records, each once, and fewer bytes on the wire than JSON.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fanout_over_the_compact_encoding_carries_fewer_bytes() {
    let c = cluster(1, |_| {}).await;
    let json = fanout(vec![sub_args(&c.addrs[0], 4, "ws")], pub_args(&c.addrs[0], 50, 1, 1), None).await;
    assert_clean(&json);
    let mut a = sub_args(&c.addrs[0], 4, "ws");
    a.proto = true;
    let proto = fanout(vec![a], pub_args(&c.addrs[0], 50, 1, 1), None).await;
    assert_clean(&proto);
    let bytes = |r: &Value| r["wire_bytes_per_delivery"].as_f64().unwrap();
    assert!(bytes(&proto) > 0.0 && bytes(&proto) < bytes(&json), "compact {} vs JSON {} bytes per delivery", bytes(&proto), bytes(&json));
}

/// A publisher over the WebSocket: every record a `publish` frame, every one answered, and the
/// subscribers get each exactly once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn publishing_over_a_websocket_is_acknowledged_and_delivered() {
    let c = cluster(1, |c| c.limits.publish_per_second_per_connection = 10_000).await;
    let mut publisher = pub_args(&c.addrs[0], 200, 1, 2);
    publisher.ws_token = Some(token(true));
    let mut subs = sub_args(&c.addrs[0], 3, "ws");
    subs.channels = 2;
    let rep = fanout(vec![subs], publisher, None).await;
    assert_clean(&rep);
    assert_eq!(rep["expected_deliveries"], 3 * 200, "{rep}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fanout_over_sse_and_long_poll() {
    let c = cluster(1, |_| {}).await;
    for transport in ["sse", "poll"] {
        let rep = fanout(vec![sub_args(&c.addrs[0], 5, transport)], pub_args(&c.addrs[0], 50, 1, 1), None).await;
        assert_clean(&rep);
        assert_eq!(rep["expected_deliveries"], 5 * 50, "{transport}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reconnect_storm_across_edges_of_one_bus() {
    let c = cluster(2, |_| {}).await;
    let addr = c.addrs.join(",");
    let a = sub_args(&addr, 12, "ws");
    // Cut everyone 400 ms into publishing, back within 300 ms, each on the other edge.
    let publisher = pub_args(&c.addrs[0], 100, 2, 1);
    let n = a.connections;
    let (tx, ctl) = subscribe::control();
    let run = tokio::spawn(subscribe::run(a, ctl));
    wait_ready(std::slice::from_ref(&tx), n).await;
    tx.storm(subscribe::Storm { at_us: herald_loadtest::now_us() + 400_000, within_ms: 300 });
    let published = publish::run(publisher).await.unwrap();
    tx.end(vec![published["published_total"].as_u64().unwrap()]);
    let out = run.await.unwrap().unwrap();
    let (rep, text, _) = report::build(&json!({"scenario": "storm", "processes": [out], "publishers": [published]})).unwrap();
    eprint!("{text}");
    assert_clean(&rep);
    assert_eq!(rep["planned_cuts"], 12, "every client was cut once");
    assert!(rep["reconnects"].as_u64().unwrap() >= 12);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mobile_clients_come_and_go() {
    let c = cluster(1, |_| {}).await;
    let mut a = sub_args(&c.addrs[0], 8, "ws");
    a.mobile_mean_secs = Some(0.3);
    let rep = fanout(vec![a], pub_args(&c.addrs[0], 50, 2, 1), None).await;
    assert_clean(&rep);
    assert!(rep["planned_cuts"].as_u64().unwrap() >= 8, "{}", report::summary(&rep));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mobile_over_sse() {
    let c = cluster(1, |_| {}).await;
    let mut a = sub_args(&c.addrs[0], 4, "sse");
    a.mobile_mean_secs = Some(0.3);
    let rep = fanout(vec![a], pub_args(&c.addrs[0], 50, 2, 1), None).await;
    assert_clean(&rep);
    assert!(rep["planned_cuts"].as_u64().unwrap() >= 4);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lagged_connection_resumes_without_loss() {
    // A tiny send queue and bursts far bigger than it: the edge cuts connections as lagged and
    // they come back from their cursors.
    let c = cluster(1, |c| {
        c.edge.max_frame_bytes = 4 * 1024;
        c.edge.max_message_bytes = 2 * 1024;
        c.edge.max_queued_bytes = 16 * 1024;
        c.edge.max_batch_bytes = 4 * 1024;
        c.edge.conflate_above_bytes = 8 * 1024;
    })
    .await;
    let a = sub_args(&c.addrs[0], 3, "ws");
    let mut p = pub_args(&c.addrs[0], 3000, 1, 1);
    p.size = 1000;
    p.tick_ms = 200;
    let rep = fanout(vec![a], p, None).await;
    assert_clean(&rep);
    let resumed = rep["lagged"].as_u64().unwrap() + rep["resubscribes"].as_u64().unwrap();
    assert!(resumed > 0, "the queue never overflowed: {}", report::summary(&rep));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retrying_publisher_moves_past_a_dead_server_and_counts_each_record_once() {
    // The first address refuses connections (nothing listens there): every batch that goes to it
    // is retried, with the same idempotency keys, on the next one.
    let c = cluster(2, |_| {}).await;
    let dead = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().to_string()
    };
    let addrs = format!("{dead},{},{}", c.addrs[0], c.addrs[1]);
    let mut p = pub_args(&addrs, 100, 2, 2);
    p.retry_secs = 10;
    p.request_timeout_ms = 1000;
    let mut a = sub_args(&format!("{},{}", c.addrs[0], c.addrs[1]), 4, "ws");
    a.channels = 2;
    let rep = fanout(vec![a], p, None).await;
    assert_clean(&rep);
    // 2 s at 100/s on each of 2 channels; every one of the 4 clients gets its channel's 200.
    assert_eq!(rep["expected_deliveries"], 4 * 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_stops_reading_is_cut_and_resumes_without_loss() {
    let c = cluster(1, |c| {
        c.edge.max_frame_bytes = 4 * 1024;
        c.edge.max_message_bytes = 2 * 1024;
        c.edge.max_queued_bytes = 16 * 1024;
        c.edge.max_batch_bytes = 4 * 1024;
        c.edge.conflate_above_bytes = 8 * 1024;
        c.edge.lag_close_grace_ms = 200;
    })
    .await;
    let mut a = sub_args(&c.addrs[0], 1, "ws");
    a.stall_after_secs = Some(0.3);
    a.stall_secs = 2.0;
    a.recv_buffer = 4096;
    let mut p = pub_args(&c.addrs[0], 400, 3, 1);
    p.size = 1000;
    let rep = fanout(vec![a], p, None).await;
    assert_clean(&rep);
    assert!(rep["reconnects"].as_u64().unwrap() > 0, "the stalled client was never cut: {}", report::summary(&rep));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chat_rooms() {
    let c = cluster(1, |_| {}).await;
    let a = chat::Args {
        addr: c.addrs[0].clone(),
        token: token(true),
        rooms: 3,
        first_room: 0,
        members: 3,
        rate: 10.0,
        seconds: 1,
        grace_secs: 5,
        ready_timeout_secs: 10,
        size: 80,
        source_ip: None,
    };
    let out = chat::run(a).await.unwrap();
    assert_eq!(out["published"], 90);
    let (rep, text, _) = report::build(&json!({"scenario": "chat", "processes": [out]})).unwrap();
    eprint!("{text}");
    assert_clean(&rep);
    assert_eq!(rep["deliveries"], 270, "every member sees every message of its room");
    assert_eq!(rep["acked"], 90);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_connections() {
    let c = cluster(1, |_| {}).await;
    for subscribe_too in [false, true] {
        let mut a = sub_args(&c.addrs[0], 10, "ws");
        a.idle_hold_secs = Some(1);
        a.idle_subscribe = subscribe_too;
        let out = subscribe::run(a, subscribe::control().1).await.unwrap();
        assert_eq!(out["ready"], 10);
        let (rep, _, _) = report::build(&json!({"scenario": "idle", "processes": [out]})).unwrap();
        assert_eq!(rep["ok"], true);
    }
}

/// The binary as the orchestrator runs it: two subscriber processes steered over stdin, a
/// publisher process, and `report` writing the files.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn processes_and_report_files() {
    use std::io::{BufRead, Write};
    use std::process::{Command, Stdio};
    let c = cluster(1, |_| {}).await;
    let exe = env!("CARGO_BIN_EXE_herald-loadtest");
    let tok = token(false);
    let mut subs = Vec::new();
    for (first, n) in [(0, 3), (3, 2)] {
        let mut child = Command::new(exe)
            .args(["subscribe", "--addr", &c.addrs[0], "--token", &tok, "--connections", &n.to_string(), "--first-client", &first.to_string()])
            .args(["--channels", "2", "--control-stdin", "--source-ip", "127.0.0.1", "--max-secs", "30"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let mut err = std::io::BufReader::new(child.stderr.take().unwrap());
        let mut line = String::new();
        err.read_line(&mut line).unwrap();
        assert_eq!(line.trim(), format!("ready {n}"));
        subs.push(child);
    }
    let out = Command::new(exe)
        .args(["publish", "--addr", &c.addrs[0], "--key", KEY, "--rate", "20,40", "--step-secs", "1", "--channels", "2"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let published: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(published["published"], json!([60, 60]));
    assert_eq!(published["steps"].as_array().unwrap().len(), 2);
    let mut processes = Vec::new();
    for mut child in subs {
        writeln!(child.stdin.as_mut().unwrap(), "end 60,60").unwrap();
        let out = tokio::task::spawn_blocking(move || child.wait_with_output().unwrap()).await.unwrap();
        assert!(out.status.success());
        processes.push(serde_json::from_slice::<Value>(&out.stdout).unwrap());
    }
    let dir = std::env::temp_dir().join(format!("herald-loadtest-smoke-{}", std::process::id()));
    let run = json!({"name": "smoke", "scenario": "fanout", "server": "herald", "strict": true, "params": {"subscribers": 5},
                     "processes": processes, "publishers": [published],
                     "servers": [{"name": "herald", "samples": [[1.0, 0.0, 100], [2.0, 0.5, 120]]}]});
    let mut child = Command::new(exe)
        .args(["report", "--dir", dir.to_str().unwrap()])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(run.to_string().as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    let summary = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{summary}");
    let rep: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(rep["deliveries"], 5 * 60);
    assert_eq!(rep["lost"], 0);
    assert_eq!(rep["steps"].as_array().unwrap().len(), 2);
    for f in ["report.json", "summary.txt", "latency.svg"] {
        assert!(dir.join(f).exists(), "{f} missing");
    }
    std::fs::remove_dir_all(&dir).unwrap();
    // A failed run exits 1.
    let mut bad = run.clone();
    bad["processes"][0]["lost"] = json!(1);
    let mut child = Command::new(exe).args(["report"]).stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
    child.stdin.take().unwrap().write_all(bad.to_string().as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(1));
}
