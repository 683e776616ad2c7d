//! Every acknowledged record reaches every subscriber exactly once, live and in a replay from a
//! cursor before it, with several writers on one Kafka bus (issue 23): three edges publishing at
//! once, two regions publishing at once, a replicator killed with kill -9 while records flow, and
//! an edge running a source killed with kill -9 while the backend produces.
//!
//! Subscribers are raw WebSocket clients that speak the protocol directly and drop nothing, so a
//! duplicate shows. Records are counted by origin and sequence number.
//!
//! Round and kill counts: `HERALD_EXACTLY_ONCE_ROUNDS` (default 5), `HERALD_EXACTLY_ONCE_KILLS`
//! (default 4) and records per writer per round `HERALD_EXACTLY_ONCE_RECORDS` (default 100). The full run of the issue (30 rounds, 10 kills) is
//! `HERALD_EXACTLY_ONCE_ROUNDS=30 HERALD_EXACTLY_ONCE_KILLS=10 cargo test -p herald --test exactly_once`.

mod support;

use futures_util::{SinkExt, StreamExt};
use herald_bus_kafka::testing::{Broker, unique_topic};
use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use support::{BIN, Herald, http, spawn};
use tokio_tungstenite::tungstenite::Message as WsMessage;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

const SECRET: &str = "exactly-once-secret-0123456789";
const KEY: &str = "exactly-once-key-0123456789";
const PATIENCE: Duration = Duration::from_secs(60);

fn rounds() -> usize {
    std::env::var("HERALD_EXACTLY_ONCE_ROUNDS").ok().and_then(|v| v.parse().ok()).unwrap_or(5)
}

/// Records each writer publishes per round (`HERALD_EXACTLY_ONCE_RECORDS`, default 100).
fn per_writer() -> u64 {
    std::env::var("HERALD_EXACTLY_ONCE_RECORDS").ok().and_then(|v| v.parse().ok()).unwrap_or(100)
}

fn kills() -> usize {
    std::env::var("HERALD_EXACTLY_ONCE_KILLS").ok().and_then(|v| v.parse().ok()).unwrap_or(4)
}

type Ws = tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// A raw subscription: what `subscribed` said, and the socket.
struct RawSub {
    ws: Ws,
    cursor: String,
    recovered: Option<bool>,
    /// Records that arrived in the same message as the `subscribed` reply.
    early: Vec<serde_json::Value>,
}

/// Connects to `addr` and subscribes to `account`'s `channel`, from `since` when given; returns
/// once the server confirmed the subscription.
async fn subscribe_to(addr: &str, account: &str, channel: &str, since: Option<&str>) -> RawSub {
    let token = support::token(SECRET, account, "*", "");
    let mut req = format!("ws://{addr}/v1/ws").into_client_request().unwrap();
    req.headers_mut().insert("authorization", format!("Bearer {token}").parse().unwrap());
    let (mut ws, _) = tokio_tungstenite::connect_async(req).await.expect("websocket connects");
    let mut frame = serde_json::json!({"type": "subscribe", "id": 1, "channel": channel});
    if let Some(s) = since {
        frame["since"] = s.into();
    }
    ws.send(WsMessage::Text(frame.to_string().into())).await.unwrap();
    let deadline = Instant::now() + PATIENCE;
    let mut early = Vec::new();
    loop {
        let msg = tokio::time::timeout_at(deadline.into(), ws.next()).await.expect("subscribed arrives").expect("socket open").unwrap();
        let WsMessage::Text(text) = msg else { continue };
        let mut subscribed = None;
        for line in text.lines().filter(|l| !l.is_empty()) {
            let v: serde_json::Value = serde_json::from_str(line).unwrap();
            match v["type"].as_str() {
                Some("subscribed") => subscribed = Some(v),
                Some("message") if subscribed.is_some() => early.push(v),
                Some("error") => panic!("subscribe refused: {v}"),
                _ => {}
            }
        }
        if let Some(v) = subscribed {
            return RawSub { cursor: v["cursor"].as_str().unwrap().to_owned(), recovered: v["recovered"].as_bool(), ws, early };
        }
    }
}

/// [`subscribe_to`] for account acme.
async fn subscribe(addr: &str, channel: &str, since: Option<&str>) -> RawSub {
    subscribe_to(addr, "acme", channel, since).await
}

/// What a subscriber received, by origin: sequence numbers in arrival order, and the cursor of
/// the last record.
#[derive(Default, Debug)]
struct Received {
    by_origin: BTreeMap<String, Vec<u64>>,
    last_cursor: Option<String>,
}

impl Received {
    fn count(&self) -> usize {
        self.by_origin.values().map(Vec::len).sum()
    }

    fn take(&mut self, v: &serde_json::Value) {
        let data = &v["data"];
        let origin = data["o"].as_str().expect("data.o").to_owned();
        let seq = data["s"].as_u64().expect("data.s");
        self.by_origin.entry(origin).or_default().push(seq);
        self.last_cursor = v["cursor"].as_str().map(str::to_owned);
    }

    /// Asserts every origin's records `0..per_origin` arrived once each, in order.
    fn assert_exact(&self, what: &str, origins: &[&str], per_origin: u64) {
        for o in origins {
            let got = self.by_origin.get(*o).cloned().unwrap_or_default();
            let want: Vec<u64> = (0..per_origin).collect();
            if got != want {
                let missing: Vec<u64> = want.iter().filter(|s| !got.contains(s)).copied().collect();
                let mut seen = std::collections::HashSet::new();
                let twice: Vec<u64> = got.iter().filter(|s| !seen.insert(**s)).copied().collect();
                panic!("{what}: from {o}: {} records, missing {missing:?}, twice {twice:?}, order ok: {}", got.len(), got.windows(2).all(|w| w[0] < w[1]));
            }
        }
        let extra: Vec<&String> = self.by_origin.keys().filter(|k| !origins.contains(&k.as_str())).collect();
        assert!(extra.is_empty(), "{what}: records from unknown origins {extra:?}");
    }
}

/// Reads `sub` until `want` records arrived, then for `grace` more (a duplicate would show).
async fn receive(mut sub: RawSub, want: usize, grace: Duration) -> Received {
    let mut got = Received::default();
    for v in std::mem::take(&mut sub.early) {
        got.take(&v);
    }
    let mut deadline = Instant::now() + PATIENCE;
    let mut settled = false;
    loop {
        if !settled && got.count() >= want {
            settled = true;
            deadline = Instant::now() + grace;
        }
        let next = tokio::time::timeout_at(deadline.into(), sub.ws.next()).await;
        let Ok(Some(Ok(msg))) = next else { break };
        let WsMessage::Text(text) = msg else { continue };
        for line in text.lines().filter(|l| !l.is_empty()) {
            let v: serde_json::Value = serde_json::from_str(line).unwrap();
            match v["type"].as_str() {
                Some("message") => got.take(&v),
                Some("reconnect") | Some("error") | Some("unsubscribed") => panic!("subscriber cut: {v}"),
                _ => {}
            }
        }
    }
    got
}

/// Publishes records `0..n` of `account` with origin tag `origin` on `channel` through `addr`, one
/// request each; every one must be acknowledged.
fn publish_to(addr: String, account: String, channel: String, origin: String, n: u64) -> std::thread::JoinHandle<()> {
    std::thread::spawn(move || {
        for s in 0..n {
            let body = format!(r#"{{"account":"{account}","channel":"{channel}","data":{{"o":"{origin}","s":{s}}}}}"#);
            let out = http(&addr, "POST", "/v1/publish", Some(KEY), &body);
            assert!(out.starts_with("HTTP/1.1 200"), "publish {origin}/{s} through {addr}: {out}");
        }
    })
}

/// Publishes acme records `0, 1, …` with origin tag `origin` on `channel` through `addr`, one
/// request every few milliseconds, until `stop` is set; returns how many were acknowledged
/// (every one must be). For fault tests: records flow for as long as the faults go on.
fn publish_until(addr: String, channel: String, origin: String, stop: std::sync::Arc<std::sync::atomic::AtomicBool>) -> std::thread::JoinHandle<u64> {
    std::thread::spawn(move || {
        let mut s = 0u64;
        while !stop.load(std::sync::atomic::Ordering::Acquire) {
            let body = format!(r#"{{"account":"acme","channel":"{channel}","data":{{"o":"{origin}","s":{s}}}}}"#);
            let out = http(&addr, "POST", "/v1/publish", Some(KEY), &body);
            assert!(out.starts_with("HTTP/1.1 200"), "publish {origin}/{s} through {addr}: {out}");
            s += 1;
            std::thread::sleep(Duration::from_millis(5));
        }
        s
    })
}

/// The account of a round: a fresh one each round, so that rounds spread over partitions (the
/// test broker lists a partition's whole log on every fetch, so one ever-growing partition
/// would slow it down until it stalls; Herald itself does not care).
fn round_account(round: usize) -> String {
    format!("acct{round}")
}

fn edge_on(broker: &Broker, topic: &str, node: &str, region: &str) -> Herald {
    spawn(
        &["edge", "--listen", "127.0.0.1:0", "--bus", &format!("kafka://{}", broker.addr), "--node", node, "--region", region],
        &[("HERALD_JWT_SECRET", SECRET), ("HERALD_ADMIN_API_KEY", KEY), ("HERALD_KAFKA_TOPIC", topic)],
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn three_edges_publishing_at_once_deliver_every_record_once_live_and_in_replay() {
    let broker = Broker::start();
    let topic = unique_topic("three-edges");
    let edges: Vec<Herald> = ["ea", "eb", "ec"].iter().map(|n| edge_on(&broker, &topic, n, "local")).collect();
    let origins = ["ea", "eb", "ec"];
    let n = per_writer();
    for round in 0..rounds() {
        let (account, channel) = (round_account(round), format!("r{round}"));
        let mut subs = Vec::new();
        for e in &edges {
            subs.push(subscribe_to(e.addr(), &account, &channel, None).await);
        }
        let cursors: Vec<String> = subs.iter().map(|s| s.cursor.clone()).collect();
        let readers: Vec<_> = subs.into_iter().map(|s| tokio::spawn(receive(s, 3 * n as usize, Duration::from_millis(300)))).collect();
        let writers: Vec<_> = edges.iter().zip(origins).map(|(e, o)| publish_to(e.addr().to_owned(), account.clone(), channel.clone(), o.to_owned(), n)).collect();
        for w in writers {
            w.join().unwrap();
        }
        for (i, r) in readers.into_iter().enumerate() {
            r.await.unwrap().assert_exact(&format!("round {round}, live on {}", origins[i]), &origins, n);
        }
        // A fresh client on each edge, from the cursor the live subscriber started at.
        for (i, e) in edges.iter().enumerate() {
            let replay = subscribe_to(e.addr(), &account, &channel, Some(&cursors[i])).await;
            assert_eq!(replay.recovered, Some(true), "round {round}: replay on {}", origins[i]);
            receive(replay, 3 * n as usize, Duration::from_millis(200)).await.assert_exact(&format!("round {round}, replay on {}", origins[i]), &origins, n);
        }
    }
    for e in &edges {
        assert_eq!(support::metric(e.addr(), "herald_bus_gaps_total"), 0.0, "no hole was ever confirmed");
    }
}

/// One region: a broker, its topic, an edge.
struct Region {
    name: &'static str,
    broker: Broker,
    topic: String,
    edge: Herald,
}

fn region(name: &'static str) -> Region {
    let broker = Broker::start();
    let topic = unique_topic(&format!("herald-{name}"));
    let edge = edge_on(&broker, &topic, &format!("edge-{name}"), name);
    Region { name, broker, topic, edge }
}

/// A `herald replicate` process, killed on drop.
struct Replicator(Child);

impl Drop for Replicator {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn replicator(to: &Region, from: &Region) -> Replicator {
    let mut cmd = Command::new(BIN);
    cmd.args(["replicate", "--region", to.name, "--to", &format!("kafka://{}", to.broker.addr), "--to-topic", &to.topic, "--metrics-listen", "127.0.0.1:0"]);
    cmd.args(["--from", &format!("{}=kafka://{}/{}", from.name, from.broker.addr, from.topic)]);
    let mut child = cmd.env("RUST_LOG", "error").stdout(Stdio::piped()).stderr(Stdio::null()).spawn().unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap()).read_line(&mut line).unwrap();
    assert!(line.contains("listening on"), "herald replicate did not start: {line:?}");
    Replicator(child)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_regions_publishing_at_once_deliver_every_record_once_in_both() {
    let a = region("ra");
    let b = region("rb");
    let _ab = replicator(&b, &a);
    let _ba = replicator(&a, &b);
    let n = per_writer();
    for round in 0..rounds() {
        let (account, channel) = (round_account(round), format!("r{round}"));
        let (sa, sb) = (subscribe_to(a.edge.addr(), &account, &channel, None).await, subscribe_to(b.edge.addr(), &account, &channel, None).await);
        let cursors = [sa.cursor.clone(), sb.cursor.clone()];
        let readers = [tokio::spawn(receive(sa, 2 * n as usize, Duration::from_millis(300))), tokio::spawn(receive(sb, 2 * n as usize, Duration::from_millis(300)))];
        let writers = [
            publish_to(a.edge.addr().to_owned(), account.clone(), channel.clone(), "ra".into(), n),
            publish_to(b.edge.addr().to_owned(), account.clone(), channel.clone(), "rb".into(), n),
        ];
        for w in writers {
            w.join().unwrap();
        }
        let mut last_in_b = None;
        for (r, name) in readers.into_iter().zip(["ra", "rb"]) {
            let got = r.await.unwrap();
            got.assert_exact(&format!("round {round}, live in {name}"), &["ra", "rb"], n);
            last_in_b = got.last_cursor.clone();
        }
        if round == 0 {
            // A cursor from region b resumes in region a; one that names another life of b's log
            // (as after b's topic was recreated) is not recovered there.
            let cursor = last_in_b.expect("b's subscriber got records");
            let here = subscribe_to(a.edge.addr(), &account, &channel, Some(&cursor)).await;
            assert_eq!(here.recovered, Some(true), "b's cursor {cursor} in region a");
            let mut parts: Vec<&str> = cursor.split('.').collect();
            assert_eq!(parts[2], "rb", "issued by b: {cursor}");
            parts[1] = "0ther";
            let reset = parts.join(".");
            let there = subscribe_to(a.edge.addr(), &account, &channel, Some(&reset)).await;
            assert_eq!(there.recovered, Some(false), "a cursor of another epoch of b's log: {reset}");
        }
        for ((region, cursor), name) in [&a, &b].into_iter().zip(&cursors).zip(["ra", "rb"]) {
            let replay = subscribe_to(region.edge.addr(), &account, &channel, Some(cursor)).await;
            assert_eq!(replay.recovered, Some(true), "round {round}: replay in {name}");
            receive(replay, 2 * n as usize, Duration::from_millis(200)).await.assert_exact(&format!("round {round}, replay in {name}"), &["ra", "rb"], n);
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_replicator_killed_while_records_flow_delivers_every_record_once() {
    let a = region("ka");
    let b = region("kb");
    let channel = "flow";
    let kills = kills();
    // The subscriber's socket and outbox hold what arrives until it reads, after the faults.
    let sb = subscribe(b.edge.addr(), channel, None).await;
    let start = sb.cursor.clone();
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let writer = publish_until(a.edge.addr().to_owned(), channel.into(), "ka".into(), stop.clone());
    let mut link = replicator(&b, &a);
    for _ in 0..kills {
        // A random moment while records flow, then kill -9 and start again at once.
        tokio::time::sleep(Duration::from_millis(100 + rand::random::<u64>() % 400)).await;
        link.0.kill().unwrap();
        link.0.wait().unwrap();
        link = replicator(&b, &a);
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    stop.store(true, std::sync::atomic::Ordering::Release);
    let n = writer.join().unwrap();
    receive(sb, n as usize, Duration::from_millis(500)).await.assert_exact("live in kb", &["ka"], n);
    let replay = subscribe(b.edge.addr(), channel, Some(&start)).await;
    assert_eq!(replay.recovered, Some(true));
    receive(replay, n as usize, Duration::from_millis(300)).await.assert_exact("replay in kb", &["ka"], n);
    eprintln!("{kills} replicator kills, {n} records: second copies dropped by kb's edge: {}", support::metric(b.edge.addr(), "herald_copies_dropped_total"));
    drop(link);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_edge_running_a_source_killed_while_the_backend_produces_delivers_every_record_once() {
    use rdkafka::producer::{FutureProducer, FutureRecord};
    let broker = Broker::start();
    let topic = unique_topic("records");
    let input = unique_topic("pagerduty.events");
    let admin: rdkafka::admin::AdminClient<rdkafka::client::DefaultClientContext> =
        rdkafka::ClientConfig::new().set("bootstrap.servers", &broker.addr).create().unwrap();
    admin
        .create_topics(&[rdkafka::admin::NewTopic::new(&input, 1, rdkafka::admin::TopicReplication::Fixed(1))], &rdkafka::admin::AdminOptions::new())
        .await
        .unwrap();
    let dir = std::env::temp_dir().join(format!("herald-eo-src-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let cfg = dir.join("herald.toml");
    std::fs::write(
        &cfg,
        format!(
            r#"
[bus]
url = "kafka://{addr}"
topic = "{topic}"

[[sources]]
name = "incidents"
topic = "{input}"
account = "/account_id"
channel = "incidents"
drop = [{{ field = "/entity", equals = "alerts::alert" }}]
keep = {{ o = "/origin", s = "/seq" }}
"#,
            addr = broker.addr
        ),
    )
    .unwrap();
    let source_edge = || spawn(&["edge", "--listen", "127.0.0.1:0", "--config", cfg.to_str().unwrap(), "--node", "src"], &[("HERALD_JWT_SECRET", SECRET), ("HERALD_ADMIN_API_KEY", KEY)]);
    // Subscribers on an edge that runs no source, so they stay connected through the kills.
    let viewer = edge_on(&broker, &topic, "viewer", "local");
    let sub = subscribe(viewer.addr(), "incidents", None).await;
    let start = sub.cursor.clone();
    let kills = kills();
    let backend: FutureProducer = rdkafka::ClientConfig::new().set("bootstrap.servers", &broker.addr).create().unwrap();
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    // The backend produces until the faults are over; the subscriber reads afterwards.
    let produce = {
        let (input, stop) = (input.clone(), stop.clone());
        tokio::spawn(async move {
            let mut s = 0u64;
            while !stop.load(std::sync::atomic::Ordering::Acquire) {
                // An alert now and then, which the source drops.
                if s.is_multiple_of(10) {
                    let alert = r#"{"account_id":"acme","entity":"alerts::alert","origin":"pd","seq":-1}"#;
                    backend.send(FutureRecord::<(), _>::to(&input).payload(alert), Duration::from_secs(10)).await.unwrap();
                }
                let v = format!(r#"{{"account_id":"acme","entity":"incident","origin":"pd","seq":{s}}}"#);
                backend.send(FutureRecord::<(), _>::to(&input).payload(&v), Duration::from_secs(10)).await.unwrap();
                s += 1;
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            s
        })
    };
    let mut e = source_edge();
    for _ in 0..kills {
        tokio::time::sleep(Duration::from_millis(300 + rand::random::<u64>() % 700)).await;
        e.child.kill().unwrap();
        e.child.wait().unwrap();
        e = source_edge();
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    stop.store(true, std::sync::atomic::Ordering::Release);
    let n = produce.await.unwrap();
    receive(sub, n as usize, Duration::from_millis(500)).await.assert_exact("live", &["pd"], n);
    let replay = subscribe(viewer.addr(), "incidents", Some(&start)).await;
    assert_eq!(replay.recovered, Some(true));
    receive(replay, n as usize, Duration::from_millis(300)).await.assert_exact("replay", &["pd"], n);
    eprintln!("{kills} source edge kills, {n} records: second copies dropped by the viewer: {}", support::metric(viewer.addr(), "herald_copies_dropped_total"));
    drop(e);
    std::fs::remove_dir_all(&dir).unwrap();
}
