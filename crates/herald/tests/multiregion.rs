//! Regions linked by `herald replicate`, each with its own broker and edge, on loopback: records
//! cross regions exactly once with per-origin order, through replicator crashes and cuts, and
//! three regions form no loops.

mod support;

use herald_bus_kafka::testing::{Broker, unique_topic};
use herald_client::{Client, ClientConfig, Subscription};
use rdkafka::Message;
use rdkafka::consumer::{BaseConsumer, Consumer};
use std::collections::{BTreeMap, HashSet};
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use herald_presence_redis::testing::RedisServer;
use support::{BIN, Herald, http, next_presence, spawn};

const SECRET: &str = "regions-test-secret-0123456789";
const KEY: &str = "regions-test-key-0123456789";
const PATIENCE: Duration = Duration::from_secs(60);

/// One region: a broker, its topic, an edge.
struct Region {
    name: &'static str,
    broker: Broker,
    topic: String,
    edge: Herald,
}

fn region(name: &'static str) -> Region {
    region_with(name, &[])
}

fn region_with(name: &'static str, env: &[(&str, &str)]) -> Region {
    let broker = Broker::start();
    let topic = unique_topic(&format!("herald-{name}"));
    let mut all = vec![("HERALD_JWT_SECRET", SECRET), ("HERALD_ADMIN_API_KEY", KEY), ("HERALD_KAFKA_TOPIC", topic.as_str())];
    all.extend_from_slice(env);
    let edge = spawn(&["edge", "--listen", "127.0.0.1:0", "--bus", &format!("kafka://{}", broker.addr), "--node", &format!("edge-{name}"), "--region", name], &all);
    Region { name, broker, topic, edge }
}

/// A `herald replicate` process, killed on drop, and its metrics address.
struct Replicator(Child, String);

impl Drop for Replicator {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Replicates every region in `from` into `to`.
fn replicator(to: &Region, from: &[&Region]) -> Replicator {
    replicator_with(to, from, &[])
}

fn replicator_with(to: &Region, from: &[&Region], extra: &[String]) -> Replicator {
    let mut cmd = Command::new(BIN);
    cmd.args(["replicate", "--region", to.name, "--to", &format!("kafka://{}", to.broker.addr), "--to-topic", &to.topic, "--metrics-listen", "127.0.0.1:0"]);
    for f in from {
        cmd.args(["--from", &format!("{}=kafka://{}/{}", f.name, f.broker.addr, f.topic)]);
    }
    cmd.args(extra);
    let mut child = cmd.env("RUST_LOG", "error").stdout(Stdio::piped()).stderr(Stdio::null()).spawn().unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap()).read_line(&mut line).unwrap();
    let addr = line.trim().strip_prefix("herald replicate listening on http://").unwrap_or_else(|| panic!("{line:?}")).to_owned();
    Replicator(child, addr)
}

fn publish(r: &Region, seq: u64) {
    let body = format!(r#"{{"account":"acme","channel":"news","data":{{"origin":"{}","seq":{seq}}}}}"#, r.name);
    let out = http(r.edge.addr(), "POST", "/v1/publish", Some(KEY), &body);
    assert!(out.starts_with("HTTP/1.1 200"), "{out}");
}

fn subscriber(r: &Region) -> Client {
    Client::connect(ClientConfig::new(r.edge.url.clone(), support::token(SECRET, "acme", "*", "")))
}

/// Receives until `want` records arrived; asserts per-origin order and no duplicate on the way.
async fn receive(sub: &mut Subscription, got: &mut BTreeMap<String, Vec<u64>>, want: usize) {
    while got.values().map(Vec::len).sum::<usize>() < want {
        let m = tokio::time::timeout(PATIENCE, sub.next_message()).await.expect("records keep arriving").unwrap();
        let v: serde_json::Value = serde_json::from_str(m.data.get()).unwrap();
        let (origin, seq) = (v["origin"].as_str().unwrap().to_owned(), v["seq"].as_u64().unwrap());
        let list = got.entry(origin.clone()).or_default();
        assert!(list.last().is_none_or(|last| *last < seq), "from {origin}: {seq} after {:?}", list.last());
        list.push(seq);
    }
}

/// Every acme record in `r`'s topic, as (origin region, origin offset or local offset, message id).
fn topic_records(r: &Region) -> Vec<(String, u64, String)> {
    let consumer: BaseConsumer = rdkafka::ClientConfig::new().set("bootstrap.servers", &r.broker.addr).set("group.id", "count").create().unwrap();
    let md = consumer.fetch_metadata(Some(&r.topic), Duration::from_secs(10)).unwrap();
    let mut out = Vec::new();
    for p in md.topics()[0].partitions() {
        let (low, high) = consumer.fetch_watermarks(&r.topic, p.id(), Duration::from_secs(10)).unwrap();
        if high <= low {
            continue;
        }
        let mut tpl = rdkafka::TopicPartitionList::new();
        tpl.add_partition_offset(&r.topic, p.id(), rdkafka::Offset::Offset(low)).unwrap();
        consumer.assign(&tpl).unwrap();
        let mut next = low;
        let deadline = Instant::now() + PATIENCE;
        while next < high {
            assert!(Instant::now() < deadline, "reading {} stalled", r.topic);
            let Some(Ok(m)) = consumer.poll(Duration::from_millis(500)) else { continue };
            next = m.offset() + 1;
            if m.key() != Some(&b"acme"[..]) {
                continue;
            }
            let header = |name: &str| {
                use rdkafka::message::Headers;
                m.headers().and_then(|h| h.iter().find(|x| x.key == name)).and_then(|x| x.value).map(|v| String::from_utf8_lossy(v).into_owned())
            };
            let origin = header("herald-or").unwrap_or_else(|| r.name.to_owned());
            let offset = header("herald-oo").map(|o| o.parse().unwrap()).unwrap_or(m.offset() as u64);
            out.push((origin, offset, header("herald-id").unwrap()));
        }
    }
    out
}

/// Waits until `r`'s topic holds exactly `want` acme records with distinct ids.
fn wait_topic_count(r: &Region, want: usize) -> Vec<(String, u64, String)> {
    let deadline = Instant::now() + PATIENCE;
    loop {
        let recs = topic_records(r);
        let ids: HashSet<&String> = recs.iter().map(|(_, _, id)| id).collect();
        assert_eq!(ids.len(), recs.len(), "a record was copied twice into {}", r.topic);
        assert!(recs.len() <= want, "{} holds {} records, more than the {want} published", r.topic, recs.len());
        if recs.len() == want {
            return recs;
        }
        assert!(Instant::now() < deadline, "{} holds {} of {want} records", r.topic, recs.len());
        std::thread::sleep(Duration::from_millis(250));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_regions_see_every_record_once_through_crashes_and_cuts() {
    let a = region("a");
    let b = region("b");
    let into_a = replicator(&a, &[&b]);
    let mut into_b = replicator(&b, &[&a]);
    let on_a = subscriber(&a);
    let on_b = subscriber(&b);
    let mut sub_a = on_a.subscribe("news").await.unwrap();
    let mut sub_b = on_b.subscribe("news").await.unwrap();

    // Both regions publish at once; each subscriber sees both streams, each in order.
    let (pa, pb) = (&a, &b);
    std::thread::scope(|s| {
        s.spawn(|| (0..50).for_each(|i| publish(pa, i)));
        s.spawn(|| (0..50).for_each(|i| publish(pb, i)));
    });
    let (mut got_a, mut got_b) = (BTreeMap::new(), BTreeMap::new());
    receive(&mut sub_a, &mut got_a, 100).await;
    receive(&mut sub_b, &mut got_b, 100).await;

    // The a→b replicator crashes mid-stream while a keeps publishing.
    std::thread::scope(|s| {
        s.spawn(|| (50..150).for_each(|i| publish(pa, i)));
        std::thread::sleep(Duration::from_millis(200));
        into_b.0.kill().unwrap();
        into_b.0.wait().unwrap();
    });
    // Then the link is cut both ways (both replicators stopped) while both regions keep
    // publishing, and healed.
    drop(into_a);
    std::thread::scope(|s| {
        s.spawn(|| (150..200).for_each(|i| publish(pa, i)));
        s.spawn(|| (50..80).for_each(|i| publish(pb, i)));
    });
    drop(into_b);
    let _into_a = replicator(&a, &[&b]);
    let _into_b = replicator(&b, &[&a]);
    (200..220).for_each(|i| publish(&a, i));
    receive(&mut sub_b, &mut got_b, 300).await;
    receive(&mut sub_a, &mut got_a, 300).await;
    for got in [&got_a, &got_b] {
        assert_eq!(got["a"], (0..220).collect::<Vec<_>>());
        assert_eq!(got["b"], (0..80).collect::<Vec<_>>());
    }
    // And the topics themselves hold each record once (the client's dedupe is not hiding copies).
    let in_b = wait_topic_count(&b, 300);
    let from_a: Vec<u64> = in_b.iter().filter(|(o, ..)| o == "a").map(|(_, off, _)| *off).collect();
    assert_eq!(from_a.len(), 220);
    wait_topic_count(&a, 300);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_regions_in_a_full_mesh_make_no_loops() {
    let (a, b, c) = (region("a"), region("b"), region("c"));
    let _r = [replicator(&a, &[&b, &c]), replicator(&b, &[&a, &c]), replicator(&c, &[&a, &b])];
    for r in [&a, &b, &c] {
        (0..5).for_each(|i| publish(r, i));
    }
    for r in [&a, &b, &c] {
        let recs = wait_topic_count(r, 15);
        for origin in ["a", "b", "c"] {
            assert_eq!(recs.iter().filter(|(o, ..)| o == origin).count(), 5, "{} holds 5 records from {origin}", r.name);
        }
    }
    // Nothing more arrives later: a loop would keep copying.
    std::thread::sleep(Duration::from_secs(2));
    for r in [&a, &b, &c] {
        assert_eq!(topic_records(r).len(), 15);
    }
    // Each link reports what it copied and, caught up, no lag.
    let metrics = http(&_r[1].1, "GET", "/metrics", None, "");
    for link in ["a->b", "c->b"] {
        let value = |name: &str| -> f64 {
            let prefix = format!("{name}{{link=\"{link}\"}} ");
            metrics.lines().find_map(|l| l.strip_prefix(prefix.as_str())).unwrap_or_else(|| panic!("no {prefix} in {metrics}")).parse().unwrap()
        };
        assert_eq!(value("herald_replicated_total"), 5.0);
        assert_eq!(value("herald_replication_lag_records"), 0.0);
        assert_eq!(value("herald_replication_lag_seconds"), 0.0);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_of_a_failed_region_resumes_in_another_with_exactly_what_it_missed() {
    let a = region("a");
    let mut b = region("b");
    let _into_a = replicator(&a, &[&b]);
    let _into_b = replicator(&b, &[&a]);
    let on_a = subscriber(&a);
    let mut sub = on_a.subscribe("news").await.unwrap();
    // Both regions publish; the client in a sees both streams interleaved.
    for i in 0..20 {
        publish(&a, i);
        if i % 2 == 0 {
            publish(&b, i / 2);
        }
    }
    let mut seen = Vec::new();
    let mut cursor = String::new();
    while seen.len() < 25 {
        let m = tokio::time::timeout(PATIENCE, sub.next_message()).await.expect("records arrive in a").unwrap();
        let v: serde_json::Value = serde_json::from_str(m.data.get()).unwrap();
        seen.push((v["origin"].as_str().unwrap().to_owned(), v["seq"].as_u64().unwrap()));
        cursor = m.cursor;
    }
    assert!(cursor.starts_with("c2."), "once records of two origins flow, cursors carry both: {cursor}");
    on_a.close().await;
    // More is published in a and replicated to b before region a fails.
    (20..30).for_each(|i| publish(&a, i));
    wait_topic_count(&b, 40);
    drop(a);
    // b goes on publishing.
    (10..15).for_each(|i| publish(&b, i));

    // The client comes back through the load balancer, now to b, with its cursor from a.
    let on_b = subscriber(&b);
    let mut sub = on_b.subscribe_with("news", Some(cursor), false).await.unwrap();
    let mut all: HashSet<(String, u64)> = (0..30).map(|i| ("a".to_owned(), i)).chain((0..15).map(|i| ("b".to_owned(), i))).collect();
    for s in &seen {
        all.remove(s);
    }
    let mut got: Vec<(String, u64)> = Vec::new();
    while got.len() < all.len() {
        let m = tokio::time::timeout(PATIENCE, sub.next_message()).await.expect("the missed records arrive in b").unwrap();
        let v: serde_json::Value = serde_json::from_str(m.data.get()).unwrap();
        let rec = (v["origin"].as_str().unwrap().to_owned(), v["seq"].as_u64().unwrap());
        assert!(!seen.contains(&rec), "{rec:?} was seen in a already");
        assert!(!got.contains(&rec), "{rec:?} arrived twice");
        got.push(rec);
    }
    assert_eq!(got.iter().cloned().collect::<HashSet<_>>(), all);
    // Per origin, in order.
    for origin in ["a", "b"] {
        let seqs: Vec<u64> = got.iter().filter(|(o, _)| o == origin).map(|(_, s)| *s).collect();
        assert!(seqs.windows(2).all(|w| w[0] < w[1]), "{origin}: {seqs:?}");
    }
    // Nothing else follows.
    publish(&b, 99);
    let m = tokio::time::timeout(PATIENCE, sub.next_message()).await.unwrap().unwrap();
    assert_eq!(serde_json::from_str::<serde_json::Value>(m.data.get()).unwrap()["seq"], 99);
    b.edge.child.kill().unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn presence_answers_for_every_region_and_forgets_a_lost_one_within_its_ttl() {
    let (redis_a, redis_b) = (RedisServer::start(), RedisServer::start());
    let (url_a, url_b) = (redis_a.url(), redis_b.url());
    let ttl = [("HERALD_PRESENCE_TTL_SECS", "3")];
    let a = region_with("a", &[("HERALD_PRESENCE", url_a.as_str()), ttl[0]]);
    let b = region_with("b", &[("HERALD_PRESENCE", url_b.as_str()), ttl[0]]);
    let presence_args = |own: &str, other: &str, url: &str| -> Vec<String> {
        ["--presence", own, "--from-presence", &format!("{other}={url}"), "--presence-ttl-secs", "3"].iter().map(|s| s.to_string()).collect()
    };
    let _into_a = replicator_with(&a, &[&b], &presence_args(&url_a, "b", &url_b));
    let mut into_b = replicator_with(&b, &[&a], &presence_args(&url_b, "a", &url_a));

    let token = |user: &str| support::token_for_user(SECRET, "acme", user, "*", "");
    let alice = Client::connect(ClientConfig::new(a.edge.url.clone(), token("alice")));
    let mut on_a = alice.subscribe_with("room", None, true).await.unwrap();
    assert_eq!(next_presence(&mut on_a).await, (true, "alice".into()));
    let bob = Client::connect(ClientConfig::new(b.edge.url.clone(), token("bob")));
    let mut on_b = bob.subscribe_with("room", None, true).await.unwrap();
    assert_eq!(next_presence(&mut on_b).await, (true, "bob".into()));
    // Alice in a sees bob of region b join; presence in either region lists both.
    assert_eq!(next_presence(&mut on_a).await, (true, "bob".into()));
    for client in [&alice, &bob] {
        let here = client.presence("room").await.unwrap();
        let mut users: Vec<&str> = here["members"].as_array().unwrap().iter().map(|m| m["user"].as_str().unwrap()).collect();
        users.sort();
        assert_eq!(users, ["alice", "bob"]);
    }
    // A leave crosses regions too.
    alice.unsubscribe("room").await;
    assert_eq!(next_presence(&mut on_b).await, (false, "alice".into()));
    let _resub = alice.subscribe_with("room", None, false).await.unwrap();
    assert_eq!(next_presence(&mut on_b).await, (true, "alice".into()));

    // The link a→b goes away: b stops vouching for a's members, which leave within the TTL.
    into_b.0.kill().unwrap();
    into_b.0.wait().unwrap();
    assert_eq!(next_presence(&mut on_b).await, (false, "alice".into()));
    let here = bob.presence("room").await.unwrap();
    assert_eq!(here["members"].as_array().unwrap().len(), 1);
}
