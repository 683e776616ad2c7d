//! The control plane end to end, with real processes: three `herald control` members, edges that
//! register with them, keys rotated live, edges that keep serving while the whole control plane
//! is down, and `herald ctl drain` moving clients to another edge with nothing lost.

mod support;

use herald_bus_kafka::testing::{Broker, free_port, unique_topic};
use herald_client::{Client, ClientConfig, ConnState, Event};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};
use support::{EDGE_TOKEN, Herald, Member, ctl, ctl_as, http, member, spawn};

const SECRET: &str = "control-test-secret-0123456789";
const PATIENCE: Duration = Duration::from_secs(30);

/// Three members on fixed ports (so that they can be restarted on them).
fn control_plane(ports: &[u16], data: &Path) -> Vec<Member> {
    let init: Vec<String> = ports.iter().enumerate().map(|(i, p)| format!("{}=127.0.0.1:{p}", i + 1)).collect();
    let init = init.join(",");
    ports.iter().enumerate().map(|(i, p)| member(i as u64 + 1, *p, data, (i == 0).then_some(init.as_str()), &[])).collect()
}

fn endpoints(ports: &[u16]) -> String {
    ports.iter().map(|p| format!("127.0.0.1:{p}")).collect::<Vec<_>>().join(",")
}

fn publish_status(edge: &Herald, key: &str, n: u64) -> u16 {
    let out = http(edge.addr(), "POST", "/v1/publish", Some(key), &format!(r#"{{"account":"acme","channel":"news","data":{{"seq":{n}}}}}"#));
    out[9..12].parse().unwrap()
}

/// Waits until publishing with `key` answers `want`.
fn until_publish_answers(edge: &Herald, key: &str, want: u16) {
    let deadline = Instant::now() + PATIENCE;
    loop {
        let got = publish_status(edge, key, 0);
        if got == want {
            return;
        }
        assert!(Instant::now() < deadline, "publishing with the key answers {got}, never {want}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn temp_dir(name: &str) -> PathBuf {
    std::env::temp_dir().join(format!("herald-{name}-{:08x}", rand::random::<u32>()))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_rotate_live_and_edges_outlive_the_control_plane() {
    let data = temp_dir("ctl");
    let ports: Vec<u16> = (0..3).map(|_| free_port()).collect();
    let members = control_plane(&ports, &data);
    let control = endpoints(&ports);
    let edge = spawn(
        &["edge", "--listen", "127.0.0.1:0", "--bus", "memory", "--node", "edge-a"],
        &[("HERALD_JWT_SECRET", SECRET), ("HERALD_CONTROL", &control), ("HERALD_CONTROL_EDGE_TOKEN", EDGE_TOKEN)],
    );

    // Operators need the admin token; the edge's token does not do.
    ctl(&control, &["status"]);
    for token in [None, Some(EDGE_TOKEN)] {
        let (ok, err) = ctl_as(&control, token, &["account", "intruder"]);
        assert!(!ok && err.contains("unauthenticated"), "{err}");
    }

    // An account and a key made with ctl work on the edge without a restart.
    ctl(&control, &["account", "acme"]);
    let k1 = ctl(&control, &["add-key", "acme"]);
    let k1_key = k1["key"].as_str().unwrap().to_owned();
    until_publish_answers(&edge, &k1_key, 200);

    // Rotation: a second key, then the first revoked; the old one stops working.
    let k2 = ctl(&control, &["add-key", "acme"]);
    let k2_key = k2["key"].as_str().unwrap().to_owned();
    ctl(&control, &["revoke-key", "acme", k1["key_id"].as_str().unwrap()]);
    until_publish_answers(&edge, &k1_key, 401);
    assert_eq!(publish_status(&edge, &k2_key, 1), 200);
    let nodes = ctl(&control, &["nodes"]);
    assert_eq!(nodes[0]["node"], "edge-a");
    assert!(ctl(&control, &["accounts"]).as_array().unwrap().iter().all(|a| a["name"] != "intruder"), "the refused call changed nothing");

    // Limits set with ctl apply live too: records over 1 KiB are refused, then allowed again.
    let big = format!(r#"{{"account":"acme","channel":"news","data":"{}"}}"#, "x".repeat(2000));
    let status = |body: &str| -> u16 { http(edge.addr(), "POST", "/v1/publish", Some(&k2_key), body)[9..12].parse().unwrap() };
    assert_eq!(status(&big), 200);
    ctl(&control, &["account", "acme", "--max-message-bytes", "1024"]);
    let deadline = Instant::now() + PATIENCE;
    while status(&big) != 413 {
        assert!(Instant::now() < deadline, "the new limit never applied");
        std::thread::sleep(Duration::from_millis(100));
    }
    ctl(&control, &["account", "acme"]);
    let deadline = Instant::now() + PATIENCE;
    while status(&big) != 200 {
        assert!(Instant::now() < deadline, "the limit was never lifted");
        std::thread::sleep(Duration::from_millis(100));
    }

    // Token keys too: a client whose token is signed with a key the control plane added connects;
    // once the key is revoked, it no longer can.
    let pair = rcgen::KeyPair::generate().unwrap();
    let pub_file = data.join("k1.pub.pem");
    std::fs::create_dir_all(&data).unwrap();
    std::fs::write(&pub_file, pair.public_key_pem()).unwrap();
    let es256_token = {
        let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::ES256);
        header.kid = Some("k1".into());
        let exp = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() + 600;
        let claims = serde_json::json!({"sub": "dave", "account": "acme", "exp": exp, "subscribe": ["*"], "publish": []});
        jsonwebtoken::encode(&header, &claims, &jsonwebtoken::EncodingKey::from_ec_pem(pair.serialize_pem().as_bytes()).unwrap()).unwrap()
    };
    let connects = |token: String| {
        let url = edge.url.clone();
        async move { Client::connect(ClientConfig::new(url, token)).wait_connected(Duration::from_secs(5)).await.is_ok() }
    };
    assert!(!connects(es256_token.clone()).await, "no such key yet");
    ctl(&control, &["add-token-key", "acme", "--kid", "k1", "--algorithm", "ES256", "--public-key-file", pub_file.to_str().unwrap()]);
    let deadline = Instant::now() + PATIENCE;
    while !connects(es256_token.clone()).await {
        assert!(Instant::now() < deadline, "the new token key never applied");
    }
    ctl(&control, &["revoke-token-key", "acme", "k1"]);
    let deadline = Instant::now() + PATIENCE;
    while connects(es256_token.clone()).await {
        assert!(Instant::now() < deadline, "the revoked token key still works");
    }

    // The whole control plane goes away: the edge keeps its last config and keeps serving.
    drop(members);
    let client = Client::connect(ClientConfig::new(edge.url.clone(), support::token(SECRET, "acme", "*", "")));
    let mut sub = client.subscribe("news").await.unwrap();
    assert_eq!(publish_status(&edge, &k2_key, 7), 200);
    let m = tokio::time::timeout(PATIENCE, sub.next_message()).await.unwrap().unwrap();
    assert_eq!(serde_json::from_str::<serde_json::Value>(m.data.get()).unwrap()["seq"], 7);
    assert_eq!(publish_status(&edge, &k1_key, 8), 401, "a revoked key stays revoked");

    // It comes back from its files; the edge re-registers and follows new changes.
    let _members = control_plane(&ports, &data);
    let deadline = Instant::now() + PATIENCE;
    while ctl(&control, &["nodes"])[0]["healthy"] != true {
        assert!(Instant::now() < deadline, "the edge never showed healthy again");
        std::thread::sleep(Duration::from_millis(200));
    }
    let k3 = ctl(&control, &["add-key", "acme"]);
    until_publish_answers(&edge, k3["key"].as_str().unwrap(), 200);
    let _ = std::fs::remove_dir_all(&data);
}

/// One drain between publishes (a quiet moment). A rolling drain of every edge while records
/// flow is the `rolling-drain` window of `scripts/chaos.py` (docs/reliability.md).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_drained_edge_sends_its_clients_to_another_with_nothing_lost() {
    let data = temp_dir("drain");
    let port = free_port();
    let _member = member(1, port, &data, Some(&format!("1=127.0.0.1:{port}")), &[]);
    let control = endpoints(&[port]);
    let broker = Broker::start();
    let topic = unique_topic("drain");
    let bus = format!("kafka://{}", broker.addr);
    let env = [("HERALD_JWT_SECRET", SECRET), ("HERALD_CONTROL", control.as_str()), ("HERALD_CONTROL_EDGE_TOKEN", EDGE_TOKEN), ("HERALD_KAFKA_TOPIC", topic.as_str()), ("HERALD_ADMIN_API_KEY", "admin-key-0123456789")];
    let a = spawn(&["edge", "--listen", "127.0.0.1:0", "--bus", &bus, "--node", "edge-a"], &env);
    let b = spawn(&["edge", "--listen", "127.0.0.1:0", "--bus", &bus, "--node", "edge-b"], &env);
    let deadline = Instant::now() + PATIENCE;
    while ctl(&control, &["nodes"]).as_array().unwrap().len() < 2 {
        assert!(Instant::now() < deadline, "the edges never registered");
        std::thread::sleep(Duration::from_millis(100));
    }

    let token = support::token(SECRET, "acme", "*", "");
    let on_a = Client::connect(ClientConfig::new(a.url.clone(), token.clone()));
    let mut sub = on_a.subscribe("news").await.unwrap();
    let mut got = Vec::new();
    let mut cursor = None;
    let seq = |m: &herald_client::Message| serde_json::from_str::<serde_json::Value>(m.data.get()).unwrap()["seq"].as_u64().unwrap();
    for n in 0..10 {
        assert_eq!(publish_status(&b, "admin-key-0123456789", n), 200);
    }
    while got.len() < 10 {
        let m = tokio::time::timeout(PATIENCE, sub.next_message()).await.expect("records arrive").unwrap();
        got.push(seq(&m));
        cursor = Some(m.cursor);
    }

    // The operator drains edge-a: it tells its clients to reconnect.
    let mut state = on_a.state();
    ctl(&control, &["drain", "edge-a"]);
    tokio::time::timeout(PATIENCE, async {
        loop {
            if let ConnState::Disconnected(why) = &*state.borrow_and_update() {
                assert!(why.contains("reconnect"), "{why}");
                return;
            }
            state.changed().await.unwrap();
        }
    })
    .await
    .expect("edge-a sends reconnect");
    on_a.close().await;
    // Drained and empty, edge-a exits and deregisters; edge-b stays.
    let deadline = Instant::now() + PATIENCE;
    loop {
        let names: Vec<String> = ctl(&control, &["nodes"]).as_array().unwrap().iter().map(|n| n["node"].as_str().unwrap().to_owned()).collect();
        if names == ["edge-b"] {
            break;
        }
        assert!(Instant::now() < deadline, "nodes: {names:?}");
        std::thread::sleep(Duration::from_millis(100));
    }
    for n in 10..30 {
        assert_eq!(publish_status(&b, "admin-key-0123456789", n), 200);
    }
    // The client resumes on edge-b (where a load balancer would send it) with its cursor.
    let on_b = Client::connect(ClientConfig::new(b.url.clone(), token));
    let mut sub = on_b.subscribe_with("news", cursor, false).await.unwrap();
    while got.len() < 30 {
        match tokio::time::timeout(PATIENCE, sub.next()).await.expect("the rest arrives").unwrap() {
            Event::Message(m) => got.push(seq(&m)),
            Event::Subscribed { recovered, .. } => assert!(recovered),
            _ => {}
        }
    }
    assert_eq!(got, (0..30).collect::<Vec<_>>());
    let _ = std::fs::remove_dir_all(&data);
}
