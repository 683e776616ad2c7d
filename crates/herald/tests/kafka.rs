//! Two edge processes on one Kafka topic: a record published through one reaches a subscriber of
//! the other, and a client whose edge is killed mid-stream resumes on the other edge with every
//! record exactly once.

use herald_bus_kafka::testing::{Broker, unique_topic};
use herald_client::{Client, ClientConfig, Event};
use std::io::{BufRead, BufReader, Write};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

const BIN: &str = env!("CARGO_BIN_EXE_herald");
const SECRET: &str = "kafka-test-secret-0123456789";
const KEY: &str = "kafka-test-key-0123456789";

struct Edge {
    child: Child,
    url: String,
}

impl Drop for Edge {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn edge(broker: &Broker, topic: &str, node: &str) -> Edge {
    let mut child = Command::new(BIN)
        .args(["edge", "--listen", "127.0.0.1:0", "--bus", &format!("kafka://{}", broker.addr), "--node", node])
        .env("HERALD_JWT_SECRET", SECRET)
        .env("HERALD_ADMIN_API_KEY", KEY)
        .env("HERALD_KAFKA_TOPIC", topic)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap()).read_line(&mut line).unwrap();
    let url = line.trim().strip_prefix("herald listening on ").unwrap_or_else(|| panic!("edge did not start: {line:?}")).to_owned();
    Edge { child, url }
}

fn token() -> String {
    let out = Command::new(BIN).args(["token", "--secret", SECRET, "--account", "acme", "--sub", "u", "--channels", "*", "--ttl", "10m"]).output().unwrap();
    String::from_utf8(out.stdout).unwrap().trim().to_owned()
}

fn publish(url: &str, seq: u64) {
    let body = format!(r#"{{"account":"acme","channel":"incidents","data":{{"seq":{seq}}}}}"#);
    let mut s = std::net::TcpStream::connect(url.strip_prefix("http://").unwrap()).unwrap();
    write!(s, "POST /v1/publish HTTP/1.1\r\nhost: x\r\nauthorization: Bearer {KEY}\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}", body.len()).unwrap();
    let mut out = String::new();
    std::io::Read::read_to_string(&mut s, &mut out).unwrap();
    assert!(out.starts_with("HTTP/1.1 200"), "{out}");
}

fn seq(m: &herald_client::Message) -> u64 {
    serde_json::from_str::<serde_json::Value>(m.data.get()).unwrap()["seq"].as_u64().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_of_a_killed_edge_resumes_on_another_with_every_record_once() {
    let broker = Broker::start();
    let topic = unique_topic("edges");
    let a = edge(&broker, &topic, "edge-a");
    let mut b = edge(&broker, &topic, "edge-b");
    let on_b = Client::connect(ClientConfig::new(b.url.clone(), token()));
    let mut sub = on_b.subscribe("incidents").await.unwrap();
    // Published through A, received through B: the bus carries it.
    let mut got = Vec::new();
    let mut cursor = None;
    for n in 0..20 {
        publish(&a.url, n);
    }
    while got.len() < 20 {
        let m = tokio::time::timeout(Duration::from_secs(30), sub.next_message()).await.expect("records arrive through kafka").unwrap();
        got.push(seq(&m));
        cursor = Some(m.cursor);
    }
    // B dies mid-stream; publishing goes on.
    b.child.kill().unwrap();
    b.child.wait().unwrap();
    for n in 20..50 {
        publish(&a.url, n);
    }
    on_b.close().await;
    // The client moves to A with its last cursor.
    let on_a = Client::connect(ClientConfig::new(a.url.clone(), token()));
    let mut sub = on_a.subscribe_with("incidents", cursor, false).await.unwrap();
    while got.len() < 50 {
        match tokio::time::timeout(Duration::from_secs(30), sub.next()).await.expect("the rest arrives").unwrap() {
            Event::Message(m) => got.push(seq(&m)),
            Event::Subscribed { recovered, .. } => assert!(recovered),
            _ => {}
        }
    }
    assert_eq!(got, (0..50).collect::<Vec<_>>());
}

fn metric(url: &str, name: &str) -> f64 {
    let mut s = std::net::TcpStream::connect(url.strip_prefix("http://").unwrap()).unwrap();
    write!(s, "GET /metrics HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n").unwrap();
    let mut out = String::new();
    std::io::Read::read_to_string(&mut s, &mut out).unwrap();
    out.lines().find(|l| l.starts_with(name) && l[name.len()..].starts_with(' ')).and_then(|l| l.rsplit(' ').next()).and_then(|v| v.parse().ok()).unwrap_or(0.0)
}

fn token_for(account: &str) -> String {
    let out = Command::new(BIN).args(["token", "--secret", SECRET, "--account", account, "--sub", "u", "--channels", "*", "--ttl", "10m"]).output().unwrap();
    String::from_utf8(out.stdout).unwrap().trim().to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn edges_serving_different_accounts_read_only_those_accounts_partitions() {
    // Two accounts that live in different partitions of the (16-partition) topic.
    let p = |a: &str| herald_core::partition_for(&herald_core::AccountId::new(a).unwrap(), 16);
    // Every node also reads its probe's partition, so both accounts live elsewhere.
    let probe_partition = p("herald-probe");
    let first = (0..100).map(|i| format!("acme{i}")).find(|a| p(a) != probe_partition).unwrap();
    let first = first.as_str();
    let second = (0..100).map(|i| format!("beta{i}")).find(|a| p(a) != p(first) && p(a) != probe_partition).unwrap();
    let broker = Broker::start();
    let topic = unique_topic("routing");
    let a = edge(&broker, &topic, "edge-a");
    let b = edge(&broker, &topic, "edge-b");
    // Before any subscription a node reads one partition only: its own probe's.
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while metric(&a.url, "herald_partitions_consumed") != 1.0 {
        assert!(std::time::Instant::now() < deadline, "the probe never started");
        std::thread::sleep(Duration::from_millis(50));
    }
    let on_a = Client::connect(ClientConfig::new(a.url.clone(), token_for(first)));
    let mut sub_a = on_a.subscribe("incidents").await.unwrap();
    let on_b = Client::connect(ClientConfig::new(b.url.clone(), token_for(&second)));
    let mut sub_b = on_b.subscribe("incidents").await.unwrap();
    for (account, n) in [(first, 1u64), (second.as_str(), 2), (first, 3)] {
        let body = format!(r#"{{"account":"{account}","channel":"incidents","data":{{"seq":{n}}}}}"#);
        let mut s = std::net::TcpStream::connect(a.url.strip_prefix("http://").unwrap()).unwrap();
        write!(s, "POST /v1/publish HTTP/1.1\r\nhost: x\r\nauthorization: Bearer {KEY}\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}", body.len()).unwrap();
        let mut out = String::new();
        std::io::Read::read_to_string(&mut s, &mut out).unwrap();
        assert!(out.starts_with("HTTP/1.1 200"), "{out}");
    }
    assert_eq!(seq(&sub_a.next_message().await.unwrap()), 1);
    assert_eq!(seq(&sub_a.next_message().await.unwrap()), 3);
    assert_eq!(seq(&sub_b.next_message().await.unwrap()), 2);
    assert_eq!(metric(&a.url, "herald_partitions_consumed"), 2.0, "its account's partition and the probe's");
    assert_eq!(metric(&b.url, "herald_partitions_consumed"), 2.0);
    assert_eq!(metric(&a.url, "herald_records_in_total"), 2.0, "edge A never read the other account's partition");
    assert_eq!(metric(&b.url, "herald_records_in_total"), 1.0, "edge B never read the other account's partition");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_source_turns_a_backends_topic_into_thin_events_on_phones() {
    use rdkafka::producer::{FutureProducer, FutureRecord};
    let broker = Broker::start();
    let input = unique_topic("pd.events");
    let admin: rdkafka::admin::AdminClient<rdkafka::client::DefaultClientContext> =
        rdkafka::ClientConfig::new().set("bootstrap.servers", &broker.addr).create().unwrap();
    admin
        .create_topics(&[rdkafka::admin::NewTopic::new(&input, 1, rdkafka::admin::TopicReplication::Fixed(1))], &rdkafka::admin::AdminOptions::new())
        .await
        .unwrap();
    let dir = std::env::temp_dir().join(format!("herald-src-{}", std::process::id()));
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
keep = {{ ent = "/entity", id = "/id", type = "/event_type" }}
"#,
            addr = broker.addr,
            topic = unique_topic("records"),
        ),
    )
    .unwrap();
    let mut child = Command::new(BIN)
        .args(["edge", "--listen", "127.0.0.1:0", "--config", cfg.to_str().unwrap()])
        .env("HERALD_JWT_SECRET", SECRET)
        .env("HERALD_ADMIN_API_KEY", KEY)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap()).read_line(&mut line).unwrap();
    let e = Edge { child, url: line.trim().strip_prefix("herald listening on ").unwrap().to_owned() };
    let phone = Client::connect(ClientConfig::new(e.url.clone(), token()));
    let mut sub = phone.subscribe("incidents").await.unwrap();
    let backend: FutureProducer = rdkafka::ClientConfig::new().set("bootstrap.servers", &broker.addr).create().unwrap();
    for v in [
        r#"{"account_id":"acme","entity":"alerts::alert","event_type":"created","id":"AL1"}"#,
        r#"{"account_id":"beta","entity":"incident","event_type":"created","id":"PBETA"}"#,
        r#"{"account_id":"acme","entity":"incident","event_type":"updated","id":"PAM4FGS","incident":{"title":"db down"}}"#,
    ] {
        backend.send(FutureRecord::<(), _>::to(&input).payload(v), Duration::from_secs(10)).await.unwrap();
    }
    let m = tokio::time::timeout(Duration::from_secs(60), sub.next_message()).await.expect("the source delivers").unwrap();
    assert_eq!(m.data.get(), r#"{"ent":"incident","id":"PAM4FGS","type":"updated"}"#, "only acme's incident, projected");
    drop(e);
    std::fs::remove_dir_all(&dir).unwrap();
}

fn get_status(addr: &str, path: &str) -> Option<u16> {
    let mut s = std::net::TcpStream::connect(addr).ok()?;
    write!(s, "GET {path} HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n").ok()?;
    let mut out = String::new();
    std::io::Read::read_to_string(&mut s, &mut out).ok()?;
    out.split_whitespace().nth(1)?.parse().ok()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_edge_started_before_kafka_is_alive_but_unready_until_kafka_answers() {
    let broker_port = herald_bus_kafka::testing::free_port();
    let edge_port = herald_bus_kafka::testing::free_port();
    let edge_addr = format!("127.0.0.1:{edge_port}");
    let child = Command::new(BIN)
        .args(["edge", "--listen", &edge_addr, "--bus", &format!("kafka://127.0.0.1:{broker_port}"), "--node", "early"])
        .env("HERALD_JWT_SECRET", SECRET)
        .env("HERALD_KAFKA_TOPIC", unique_topic("early"))
        .env("RUST_LOG", "error")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let _edge = Edge { child, url: format!("http://{edge_addr}") };
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while get_status(&edge_addr, "/readyz").is_none() {
        assert!(std::time::Instant::now() < deadline, "the edge never listened");
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(get_status(&edge_addr, "/readyz"), Some(503));
    assert_eq!(get_status(&edge_addr, "/healthz"), Some(200));
    let _broker = Broker::start_on(broker_port);
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while get_status(&edge_addr, "/readyz") != Some(200) {
        assert!(std::time::Instant::now() < deadline, "the edge never became ready once kafka answered");
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn when_kafka_goes_away_publishes_get_503_with_a_retry_hint_and_clients_stay_connected() {
    let broker = Broker::start();
    let e = edge(&broker, &unique_topic("lost"), "edge-lost");
    let phone = Client::connect(ClientConfig::new(e.url.clone(), token()));
    let _sub = phone.subscribe("incidents").await.unwrap();
    publish(&e.url, 1);
    drop(broker);
    let body = r#"{"account":"acme","channel":"incidents","data":{"seq":2}}"#;
    let mut s = std::net::TcpStream::connect(e.url.strip_prefix("http://").unwrap()).unwrap();
    write!(s, "POST /v1/publish HTTP/1.1\r\nhost: x\r\nauthorization: Bearer {KEY}\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}", body.len()).unwrap();
    let mut out = String::new();
    std::io::Read::read_to_string(&mut s, &mut out).unwrap();
    assert!(out.starts_with("HTTP/1.1 503"), "{out}");
    assert!(out.to_ascii_lowercase().contains("retry-after: 1"), "{out}");
    assert!(out.contains(r#""code":"unavailable""#), "{out}");
    assert!(matches!(*phone.state().borrow(), herald_client::ConnState::Connected { .. }), "the client keeps its connection");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_bus_turns_readyz_unready_and_recovery_turns_it_back() {
    let broker = Broker::start();
    let dir = std::env::temp_dir().join(format!("herald-probe-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let cfg = dir.join("herald.toml");
    std::fs::write(&cfg, format!("[edge]\nprobe_interval_ms = 200\nprobe_stall_ms = 1500\n[bus]\nurl = \"kafka://{}\"\ntopic = \"{}\"\n", broker.addr, unique_topic("probe"))).unwrap();
    let mut child = Command::new(BIN)
        .args(["edge", "--listen", "127.0.0.1:0", "--config", cfg.to_str().unwrap()])
        .env("HERALD_JWT_SECRET", SECRET)
        .env("RUST_LOG", "error")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap()).read_line(&mut line).unwrap();
    let e = Edge { child, url: line.trim().strip_prefix("herald listening on ").unwrap().to_owned() };
    let addr = e.url.strip_prefix("http://").unwrap().to_owned();
    let wait_for = |want: u16, what: &str| {
        let deadline = std::time::Instant::now() + Duration::from_secs(60);
        while get_status(&addr, "/readyz") != Some(want) {
            assert!(std::time::Instant::now() < deadline, "{what}");
            std::thread::sleep(Duration::from_millis(100));
        }
    };
    wait_for(200, "the node never became ready");
    // Freeze the broker: records stop flowing, the probe notices.
    Command::new("kill").args(["-STOP", &broker.pid().to_string()]).status().unwrap();
    wait_for(503, "a stalled bus never made the node unready");
    assert_eq!(get_status(&addr, "/healthz"), Some(200), "alive, just not ready");
    Command::new("kill").args(["-CONT", &broker.pid().to_string()]).status().unwrap();
    wait_for(200, "the node never became ready again after the bus recovered");
    std::fs::remove_dir_all(&dir).unwrap();
}
