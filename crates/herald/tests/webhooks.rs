//! `herald webhooks` with real processes: a Kafka broker (tansu), Redis, `herald edge`s, `herald
//! webhooks` and an HTTP receiver started here, which checks every request's signature and
//! keeps every event it was sent (duplicates too; receivers dedupe by id).

mod support;

use herald_client::{Client, ClientConfig};
use herald_presence_redis::testing::RedisServer;
use herald_webhooks::signature::{self, SignatureError};
use herald_webhooks::{Event, EventType};
use std::collections::{HashMap, HashSet};
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use support::{Herald, spawn};
use tokio_util::sync::CancellationToken;

use herald_bus_kafka::testing::{Broker, unique_topic};

/// How long the receiver stays down in the outage test.
const OUTAGE: Duration = Duration::from_secs(60);
/// How many connections come and go during the outage.
const OUTAGE_CONNECTIONS: usize = 6;
/// The endpoints' batch size: at most this many events are sent twice when an instance dies.
const BATCH: usize = 10;

const SECRET: &str = "webhooks-test-secret-0123456789";
const KEY: &str = "webhooks-test-key-0123456789";
const OLD_SECRET: &str = "whsec-old-0123456789abcdef";
const NEW_SECRET: &str = "whsec-new-0123456789abcdef";
/// How long anything the tests wait for may take.
const PATIENCE: Duration = Duration::from_secs(60);

/// One request as the receiver got it.
struct Request {
    signature: String,
    body: Vec<u8>,
}

/// An HTTP receiver on a loopback port that answers 200 to every POST and keeps it; it can be
/// stopped (connections refused) and started again on the same port.
struct Receiver {
    port: u16,
    got: Arc<Mutex<Vec<Request>>>,
    stop: CancellationToken,
}

impl Receiver {
    async fn start() -> Self {
        Self::start_on(0, Arc::default()).await
    }

    async fn start_on(port: u16, got: Arc<Mutex<Vec<Request>>>) -> Self {
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", port)).await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let stop = CancellationToken::new();
        let (g, s) = (got.clone(), stop.clone());
        tokio::spawn(async move {
            loop {
                let tcp = tokio::select! {
                    _ = s.cancelled() => return,
                    a = listener.accept() => match a { Ok((tcp, _)) => tcp, Err(_) => continue },
                };
                let (g, s) = (g.clone(), s.clone());
                tokio::spawn(async move {
                    let service = hyper::service::service_fn(move |req: hyper::Request<hyper::body::Incoming>| {
                        let g = g.clone();
                        async move {
                            use http_body_util::BodyExt;
                            let signature = req.headers().get("herald-signature").and_then(|v| v.to_str().ok()).unwrap_or_default().to_owned();
                            let body = req.into_body().collect().await?.to_bytes().to_vec();
                            g.lock().unwrap().push(Request { signature, body });
                            Ok::<_, hyper::Error>(hyper::Response::new(http_body_util::Full::new(bytes::Bytes::from_static(b"ok"))))
                        }
                    });
                    let conn = hyper::server::conn::http1::Builder::new().serve_connection(hyper_util::rt::TokioIo::new(tcp), service);
                    tokio::select! {
                        _ = conn => {}
                        _ = s.cancelled() => {}
                    }
                });
            }
        });
        Self { port, got, stop }
    }

    /// Down: the listener and every connection close.
    fn stop(&self) {
        self.stop.cancel();
    }

    /// Up again on the same port, keeping what it got.
    async fn restart(&self) -> Self {
        Self::start_on(self.port, self.got.clone()).await
    }

    /// Every event received, in arrival order, duplicates included.
    fn events(&self) -> Vec<Event> {
        let got = self.got.lock().unwrap();
        got.iter()
            .flat_map(|r| {
                let v: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
                serde_json::from_value::<Vec<Event>>(v["events"].clone()).unwrap()
            })
            .collect()
    }

    /// Each event once (the first time it arrived), in arrival order: what a receiver that
    /// dedupes by id sees.
    fn deduped(&self) -> Vec<Event> {
        let mut seen = HashSet::new();
        self.events().into_iter().filter(|e| seen.insert(e.id.clone())).collect()
    }

    /// Waits until `done` holds for the deduped events.
    async fn wait_for(&self, what: &str, done: impl Fn(&[Event]) -> bool) {
        let deadline = tokio::time::Instant::now() + PATIENCE;
        loop {
            let events = self.deduped();
            if done(&events) {
                return;
            }
            assert!(tokio::time::Instant::now() < deadline, "{what}: not received within {PATIENCE:?}; got {:#?}", events.iter().map(|e| (&e.id, e.kind, &e.user)).collect::<Vec<_>>());
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Every request verifies with the old and with the new secret (a rotation), and not with
    /// another one.
    fn check_signatures(&self) {
        let got = self.got.lock().unwrap();
        assert!(!got.is_empty());
        let now = herald_core::now_ms() / 1000;
        for r in got.iter() {
            assert_eq!(signature::verify(&r.signature, &r.body, OLD_SECRET.as_bytes(), now, 300), Ok(()), "{}", r.signature);
            assert_eq!(signature::verify(&r.signature, &r.body, NEW_SECRET.as_bytes(), now, 300), Ok(()), "{}", r.signature);
            assert_eq!(signature::verify(&r.signature, &r.body, b"whsec-wrong-0123456789abcd", now, 300), Err(SignatureError::Mismatch));
        }
    }
}

/// The region's config: Kafka, Redis (TTL 3 s), one endpoint at the receiver, signing with two
/// secrets (a rotation in progress).
fn config(dir: &std::path::Path, broker: &Broker, redis: &RedisServer, receiver: &Receiver) -> std::path::PathBuf {
    std::fs::create_dir_all(dir).unwrap();
    let path = dir.join("herald.toml");
    let toml = format!(
        "[edge]\nregion = \"eu\"\n[bus]\nurl = \"kafka://{}\"\ntopic = \"{}\"\npartitions = 2\n[presence]\nurl = \"{}\"\nttl_secs = 3\n\
         [webhooks]\nlease_ttl_ms = 2000\n[[webhooks.endpoints]]\nname = \"backend\"\nurl = \"http://127.0.0.1:{}/hooks\"\n\
         secrets = [\"env:HOOK_SECRET_OLD\", \"env:HOOK_SECRET_NEW\"]\nbatch_size = {BATCH}\nlinger_ms = 50\nmax_backoff_ms = 2000\ntimeout_ms = 2000\n",
        broker.addr,
        unique_topic("hooks"),
        redis.url(),
        receiver.port
    );
    std::fs::write(&path, toml).unwrap();
    path
}

fn edge(config: &std::path::Path, node: &str) -> Herald {
    spawn(&["edge", "--listen", "127.0.0.1:0", "--config", config.to_str().unwrap(), "--node", node], &[("HERALD_JWT_SECRET", SECRET), ("HERALD_ADMIN_API_KEY", KEY)])
}

/// A `herald webhooks` process, killed on drop.
struct Webhooks {
    child: Child,
    /// Its metrics listener, `127.0.0.1:PORT`.
    addr: String,
}

impl Drop for Webhooks {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Webhooks {
    fn start(config: &std::path::Path) -> Self {
        let mut child = Command::new(support::BIN)
            .args(["webhooks", "--config", config.to_str().unwrap(), "--metrics-listen", "127.0.0.1:0"])
            .env("HOOK_SECRET_OLD", OLD_SECRET)
            .env("HOOK_SECRET_NEW", NEW_SECRET)
            .env("RUST_LOG", "error")
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap()).read_line(&mut line).unwrap();
        let addr = line.trim().strip_prefix("herald webhooks listening on http://").unwrap_or_else(|| panic!("herald webhooks did not start: {line:?}")).to_owned();
        Self { child, addr }
    }

    /// The sum of a metric's series.
    fn metric(&self, name: &str) -> f64 {
        let text = support::http(&self.addr, "GET", "/metrics", None, "");
        text.lines().filter(|l| l.strip_prefix(name).is_some_and(|r| r.starts_with(' ') || r.starts_with('{'))).filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok()).sum()
    }

    async fn wait_leader(&self) {
        let deadline = tokio::time::Instant::now() + PATIENCE;
        while self.metric("herald_webhooks_leader") != 1.0 {
            assert!(tokio::time::Instant::now() < deadline, "herald webhooks never took the lease");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

fn client(e: &Herald, account: &str, user: &str) -> Client {
    Client::connect(ClientConfig::new(e.url.clone(), support::token_for_user(SECRET, account, user, "*", "")))
}

/// A connection of `user` that subscribes to `room`, then closes: opened, join (and occupied),
/// leave (and vacated), closed.
async fn come_and_go(e: &Herald, account: &str, user: &str) {
    let c = client(e, account, user);
    let _sub = c.subscribe("room").await.unwrap();
    c.close().await;
}

/// Waits until the pipeline delivers: connections come and go until one's events arrive (the
/// endpoint stores its starting position when it first runs; events before that are not its).
async fn warm_up(e: &Herald, receiver: &Receiver) {
    for n in 0.. {
        let user = format!("warm-up-{n}");
        come_and_go(e, "warm", &user).await;
        let deadline = tokio::time::Instant::now() + Duration::from_secs(3);
        while tokio::time::Instant::now() < deadline {
            if receiver.deduped().iter().any(|ev| ev.kind == EventType::ConnectionClosed && ev.user.as_deref() == Some(user.as_str())) {
                return;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        assert!(n < 20, "no event ever reached the receiver");
    }
}

fn of_user<'a>(events: &'a [Event], user: &str, kind: EventType) -> Vec<&'a Event> {
    events.iter().filter(|e| e.kind == kind && e.user.as_deref() == Some(user)).collect()
}

/// `(partition, offset, n)` of an event id `region:partition:offset[:n]`.
fn position(id: &str) -> (u32, u64, u32) {
    let parts: Vec<&str> = id.split(':').collect();
    (parts[1].parse().unwrap(), parts[2].parse().unwrap(), parts.get(3).map_or(0, |n| n.parse().unwrap()))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_killed_with_its_edge_is_reported_closed_once_per_region_with_its_leaves() {
    let broker = Broker::start();
    let redis = RedisServer::start();
    let receiver = Receiver::start().await;
    let dir = std::env::temp_dir().join(format!("herald-hooks-kill-{:08x}", rand::random::<u32>()));
    let cfg = config(&dir, &broker, &redis, &receiver);
    // Two edges survive the third: both reap it, and only one may report it.
    let a = edge(&cfg, "edge-a");
    let mut b = edge(&cfg, "edge-b");
    let c = edge(&cfg, "edge-c");
    let hooks = Webhooks::start(&cfg);
    hooks.wait_leader().await;
    warm_up(&a, &receiver).await;

    let victim = client(&b, "acme", "victim");
    let _sub = victim.subscribe("room").await.unwrap();
    receiver.wait_for("the victim's join", |ev| !of_user(ev, "victim", EventType::PresenceJoin).is_empty()).await;
    let opened = receiver.deduped().into_iter().find(|e| e.kind == EventType::ConnectionOpened && e.user.as_deref() == Some("victim")).expect("opened before the join");
    let connection_id = opened.connection_id.clone().unwrap();

    b.child.kill().unwrap();
    b.child.wait().unwrap();
    receiver
        .wait_for("the victim's close and leave", |ev| !of_user(ev, "victim", EventType::ConnectionClosed).is_empty() && !of_user(ev, "victim", EventType::PresenceLeave).is_empty())
        .await;
    // Long enough for both reapers to have run several times (each every second); then a
    // connection of each survivor comes and goes, and its events arriving means the feed got
    // past anything the reapers wrote.
    tokio::time::sleep(Duration::from_secs(3)).await;
    come_and_go(&a, "acme", "marker-a").await;
    come_and_go(&c, "acme", "marker-c").await;
    receiver
        .wait_for("the markers", |ev| !of_user(ev, "marker-a", EventType::ConnectionClosed).is_empty() && !of_user(ev, "marker-c", EventType::ConnectionClosed).is_empty())
        .await;

    let all = receiver.events();
    let closed: Vec<&Event> = all.iter().filter(|e| e.kind == EventType::ConnectionClosed && e.connection_id.as_deref() == Some(connection_id.as_str())).collect();
    let ids: HashSet<&str> = closed.iter().map(|e| e.id.as_str()).collect();
    assert_eq!(ids.len(), 1, "one connection_closed event for the killed connection: {closed:#?}");
    assert_eq!(closed[0].reason.as_deref(), Some("node_gone"));
    assert_eq!((closed[0].user.as_deref(), closed[0].account.as_str(), closed[0].node.as_str()), (Some("victim"), "acme", "edge-b"));
    let deduped = receiver.deduped();
    let victims_closed: HashSet<&str> = of_user(&deduped, "victim", EventType::ConnectionClosed).iter().filter_map(|e| e.connection_id.as_deref()).collect();
    assert_eq!(victims_closed, HashSet::from([connection_id.as_str()]), "counted by connection id: one close, of the one connection");
    let leaves = of_user(&deduped, "victim", EventType::PresenceLeave);
    assert_eq!(leaves.len(), 1, "{leaves:#?}");
    assert_eq!((leaves[0].channel.as_deref(), leaves[0].occupancy), (Some("room"), Some(0)));
    let vacated: Vec<&Event> = deduped.iter().filter(|e| e.kind == EventType::ChannelVacated && e.account == "acme").collect();
    assert_eq!(vacated.len(), 3, "room emptied by the victim's leave, then by each marker's: {vacated:#?}");
    assert!(position(&leaves[0].id) < position(&closed[0].id), "the leave comes before the close");
    receiver.check_signatures();
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_receiver_down_for_a_minute_gets_every_event_after_it_returns_in_order() {
    let broker = Broker::start();
    let redis = RedisServer::start();
    let receiver = Receiver::start().await;
    let dir = std::env::temp_dir().join(format!("herald-hooks-outage-{:08x}", rand::random::<u32>()));
    let cfg = config(&dir, &broker, &redis, &receiver);
    let e = edge(&cfg, "edge-a");
    let hooks = Webhooks::start(&cfg);
    hooks.wait_leader().await;
    warm_up(&e, &receiver).await;

    receiver.stop();
    let users: Vec<(String, String)> = (0..OUTAGE_CONNECTIONS).map(|i| ((if i % 2 == 0 { "acme" } else { "beta" }).to_owned(), format!("user-{i}"))).collect();
    for (account, user) in &users {
        come_and_go(&e, account, user).await;
        tokio::time::sleep(OUTAGE / OUTAGE_CONNECTIONS as u32).await;
    }
    assert!(hooks.metric("herald_webhooks_failed_total") > 0.0, "deliveries failed while the receiver was down");
    assert!(hooks.metric("herald_webhooks_retrying") > 0.0);
    let receiver = receiver.restart().await;
    receiver.wait_for("every connection's close", |ev| users.iter().all(|(_, u)| !of_user(ev, u, EventType::ConnectionClosed).is_empty())).await;

    let all = receiver.events();
    let deduped = receiver.deduped();
    for (account, user) in &users {
        // Exactly these, each once after dedupe.
        let kinds: Vec<EventType> = deduped.iter().filter(|ev| ev.user.as_deref() == Some(user.as_str())).map(|ev| ev.kind).collect();
        assert_eq!(kinds, [EventType::ConnectionOpened, EventType::PresenceJoin, EventType::PresenceLeave, EventType::ConnectionClosed], "{user}");
        let ids: Vec<&str> = deduped.iter().filter(|ev| ev.user.as_deref() == Some(user.as_str())).map(|ev| ev.id.as_str()).collect();
        assert!(ids.iter().all(|id| all.iter().any(|ev| ev.id == *id && ev.account == *account)));
    }
    let occupied = deduped.iter().filter(|ev| ev.kind == EventType::ChannelOccupied && ev.account != "warm").count();
    let vacated = deduped.iter().filter(|ev| ev.kind == EventType::ChannelVacated && ev.account != "warm").count();
    assert_eq!((occupied, vacated), (OUTAGE_CONNECTIONS, OUTAGE_CONNECTIONS), "each connection was alone in its room");
    // In order per account: one account's events are in one partition, and arrive by offset.
    let mut by_account: HashMap<&str, Vec<(u32, u64, u32)>> = HashMap::new();
    for ev in &deduped {
        by_account.entry(ev.account.as_str()).or_default().push(position(&ev.id));
    }
    for (account, positions) in by_account {
        assert!(positions.windows(2).all(|w| w[0] < w[1]), "{account}: {positions:?}");
    }
    assert_eq!(hooks.metric("herald_webhooks_retrying"), 0.0, "caught up");
    receiver.check_signatures();
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_standby_instance_sends_nothing_until_the_active_one_dies_then_takes_over() {
    let broker = Broker::start();
    let redis = RedisServer::start();
    let receiver = Receiver::start().await;
    let dir = std::env::temp_dir().join(format!("herald-hooks-lease-{:08x}", rand::random::<u32>()));
    let cfg = config(&dir, &broker, &redis, &receiver);
    let e = edge(&cfg, "edge-a");
    let first = Webhooks::start(&cfg);
    first.wait_leader().await;
    let second = Webhooks::start(&cfg);
    warm_up(&e, &receiver).await;
    let before: Vec<String> = (0..5).map(|i| format!("before-{i}")).collect();
    for u in &before {
        come_and_go(&e, "acme", u).await;
    }
    receiver.wait_for("the events before the kill", |ev| before.iter().all(|u| !of_user(ev, u, EventType::ConnectionClosed).is_empty())).await;
    assert_eq!(second.metric("herald_webhooks_leader"), 0.0, "the second instance stands by");
    assert_eq!(second.metric("herald_webhooks_delivered_total"), 0.0, "and has sent nothing");

    let mut first = first;
    first.child.kill().unwrap();
    first.child.wait().unwrap();
    let after: Vec<String> = (0..5).map(|i| format!("after-{i}")).collect();
    for u in &after {
        come_and_go(&e, "acme", u).await;
    }
    second.wait_leader().await;
    receiver.wait_for("the events after the kill", |ev| after.iter().all(|u| !of_user(ev, u, EventType::ConnectionClosed).is_empty())).await;
    assert!(second.metric("herald_webhooks_delivered_total") > 0.0, "the second instance delivered them");
    let all = receiver.events();
    let deduped = receiver.deduped();
    for u in before.iter().chain(&after) {
        let kinds: Vec<EventType> = deduped.iter().filter(|ev| ev.user.as_deref() == Some(u.as_str())).map(|ev| ev.kind).collect();
        assert_eq!(kinds, [EventType::ConnectionOpened, EventType::PresenceJoin, EventType::PresenceLeave, EventType::ConnectionClosed], "{u}");
    }
    let twice = all.len() - deduped.len();
    assert!(twice <= BATCH, "only the batch in flight at the kill may come twice: {twice} events did");
    receiver.check_signatures();
    let _ = std::fs::remove_dir_all(&dir);
}

/// `--check` reads the secrets and needs Kafka and Redis: each problem is refused with exit 64
/// naming it, and a good configuration passes, without connecting to anything.
#[test]
fn check_names_what_is_wrong_with_a_webhooks_configuration() {
    let dir = std::env::temp_dir().join(format!("herald-hooks-check-{:08x}", rand::random::<u32>()));
    std::fs::create_dir_all(&dir).unwrap();
    let cfg = dir.join("herald.toml");
    let endpoint = "[[webhooks.endpoints]]\nname = \"backend\"\nurl = \"https://hooks.example/herald\"\nsecrets = [\"env:HOOK_SECRET_OLD\"]\n";
    let good = format!("[bus]\nurl = \"kafka://127.0.0.1:9\"\n[presence]\nurl = \"redis://127.0.0.1:9\"\n{endpoint}");
    let run = |toml: &str, secret: Option<&str>| {
        std::fs::write(&cfg, toml).unwrap();
        let mut cmd = Command::new(support::BIN);
        cmd.args(["webhooks", "--config", cfg.to_str().unwrap(), "--check"]).env_remove("HOOK_SECRET_OLD");
        if let Some(s) = secret {
            cmd.env("HOOK_SECRET_OLD", s);
        }
        let out = cmd.output().unwrap();
        (out.status.code(), String::from_utf8_lossy(&out.stderr).into_owned())
    };
    for (what, toml, secret, needle) in [
        ("secret unset", good.clone(), None, "HOOK_SECRET_OLD is not set"),
        ("secret too short", good.clone(), Some("short"), "shorter than 16"),
        ("memory bus", good.replace("kafka://127.0.0.1:9", "memory"), Some(OLD_SECRET), "needs a kafka:// bus"),
        ("memory presence", good.replace("redis://127.0.0.1:9", "memory"), Some(OLD_SECRET), "needs a redis:// URL"),
        ("no endpoint", good.replace(endpoint, ""), Some(OLD_SECRET), "no endpoint"),
        ("unknown event", format!("{good}events = [\"joined\"]\n"), Some(OLD_SECRET), "unknown event type"),
    ] {
        let (code, err) = run(&toml, secret);
        assert_eq!(code, Some(64), "{what}: {err}");
        assert!(err.contains(needle), "{what}: {err}");
    }
    assert_eq!(run(&good, Some(OLD_SECRET)).0, Some(0));
    let _ = std::fs::remove_dir_all(&dir);
}
