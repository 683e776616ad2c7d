//! The server API's orders with real processes: two `herald edge` processes on one
//! `redis-server` (each on its own in-memory bus: orders and presence are what they share).
//! A disconnect issued on one edge ends the user's connections on both; a revoked token (by
//! `jti`, by user) cannot open a session on either and its open sessions end; a user's
//! connections are listed across edges; bad input changes nothing.

mod support;

use futures_util::StreamExt;
use serde_json::{Value, json};
use std::time::Duration;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

use herald_client::{Client, ClientConfig, ConnState, Event};
use herald_edge::{TokenClaims, TokenIssuer};
use herald_presence_redis::testing::RedisServer;
use support::{Herald, http, spawn};

const SECRET: &str = "orders-test-secret-0123456789";
const ADMIN: &str = "orders-admin-key-0123456789";
const PATIENCE: Duration = Duration::from_secs(30);

fn edge(redis: &RedisServer, node: &str) -> Herald {
    spawn(
        &["edge", "--listen", "127.0.0.1:0", "--bus", "memory", "--node", node],
        &[("HERALD_JWT_SECRET", SECRET), ("HERALD_PRESENCE", &redis.url()), ("HERALD_ADMIN_API_KEY", ADMIN)],
    )
}

fn now_s() -> u64 {
    herald_core::now_ms() / 1000
}

/// A token of `user` in `acme` that may read everything, with this `jti` and `iat`.
fn token(user: &str, jti: Option<&str>, iat: u64) -> String {
    let claims = TokenClaims {
        sub: user.into(),
        account: "acme".into(),
        exp: now_s() + 600,
        iat: Some(iat),
        nbf: None,
        jti: jti.map(str::to_owned),
        subscribe: vec!["*".into()],
        publish: vec![],
        presence: None,
    };
    TokenIssuer::hs256(SECRET.as_bytes()).issue(&claims)
}

/// The status line's code and the JSON body of a raw HTTP answer.
fn answer(raw: &str) -> (u16, Value) {
    let status = raw.split_whitespace().nth(1).unwrap().parse().unwrap();
    let body = raw.split("\r\n\r\n").nth(1).unwrap_or("");
    // Chunked bodies: the JSON is the line that starts with `{`.
    let json = body.lines().find(|l| l.starts_with('{')).map_or(Value::Null, |l| serde_json::from_str(l).unwrap());
    (status, json)
}

fn post(e: &Herald, path: &str, body: &Value) -> (u16, Value) {
    answer(&http(e.addr(), "POST", &format!("{path}?account=acme"), Some(ADMIN), &body.to_string()))
}

/// Connection ids of `user` in the region, with their nodes, as `GET /v1/connections` lists them.
fn connections(e: &Herald, user: &str) -> Vec<(String, String)> {
    let (status, body) = answer(&http(e.addr(), "GET", &format!("/v1/connections?account=acme&user={user}"), Some(ADMIN), ""));
    assert_eq!(status, 200, "{body}");
    body["connections"].as_array().unwrap().iter().map(|c| (c["node"].as_str().unwrap().to_owned(), c["connection_id"].as_str().unwrap().to_owned())).collect()
}

type Ws = tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// A raw WebSocket session with `token`: the socket and its connection id (from `welcome`), or
/// the HTTP status that refused it.
async fn open(e: &Herald, token: &str) -> Result<(Ws, String), u16> {
    let mut req = format!("ws://{}/v1/ws", e.addr()).into_client_request().unwrap();
    req.headers_mut().insert("authorization", format!("Bearer {token}").parse().unwrap());
    match tokio_tungstenite::connect_async(req).await {
        Ok((mut ws, _)) => {
            let welcome = next_frame(&mut ws).await;
            assert_eq!(welcome["type"], "welcome", "{welcome}");
            Ok((ws, welcome["connection_id"].as_str().unwrap().to_owned()))
        }
        Err(tokio_tungstenite::tungstenite::Error::Http(resp)) => Err(resp.status().as_u16()),
        Err(e) => panic!("connect failed: {e}"),
    }
}

/// The next JSON frame that is not a heartbeat.
async fn next_frame(ws: &mut Ws) -> Value {
    tokio::time::timeout(PATIENCE, async {
        loop {
            match ws.next().await.expect("open").expect("no error") {
                Message::Text(t) => {
                    for line in t.lines() {
                        let v: Value = serde_json::from_str(line).unwrap();
                        if v["type"] != "ping" {
                            return v;
                        }
                    }
                }
                Message::Close(c) => panic!("closed before a frame: {c:?}"),
                _ => {}
            }
        }
    })
    .await
    .expect("a frame arrives")
}

/// Reads the `disconnect` frame, then the close frame: both as the client sees them.
async fn ended(ws: &mut Ws) -> (Value, u16) {
    let frame = next_frame(ws).await;
    let code = tokio::time::timeout(PATIENCE, async {
        loop {
            match ws.next().await {
                Some(Ok(Message::Close(Some(c)))) => return u16::from(c.code),
                Some(Ok(Message::Close(None))) | None => panic!("closed without a code"),
                Some(Ok(_)) => continue,
                Some(Err(e)) => panic!("{e}"),
            }
        }
    })
    .await
    .expect("the connection closes");
    (frame, code)
}

async fn eventually(what: &str, mut check: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + PATIENCE;
    while !check() {
        assert!(tokio::time::Instant::now() < deadline, "never: {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn disconnecting_a_user_ends_their_connections_on_every_edge_and_the_sdk_stays_disconnected() {
    let redis = RedisServer::start();
    let (a, b) = (edge(&redis, "edge-a"), edge(&redis, "edge-b"));
    let alice = token("alice", None, now_s());
    let (mut on_a, id_a) = open(&a, &alice).await.unwrap();
    let (mut on_b, id_b) = open(&b, &alice).await.unwrap();
    let sdk = Client::connect(ClientConfig::new(b.url.clone(), alice.clone()));
    sdk.wait_connected(PATIENCE).await.unwrap();
    let mut sub = sdk.subscribe("incidents").await.unwrap();
    let bob = Client::connect(ClientConfig::new(a.url.clone(), token("bob", None, now_s())));
    bob.wait_connected(PATIENCE).await.unwrap();

    // Every edge lists the user's connections on both.
    let listed = connections(&b, "alice");
    assert_eq!(listed.len(), 3, "{listed:?}");
    assert!(listed.contains(&("edge-a".into(), id_a.clone())) && listed.contains(&("edge-b".into(), id_b.clone())), "{listed:?}");

    // Bad input is refused with a clear error and changes nothing.
    let refused = [
        post(&a, "/v1/disconnect", &json!({"reason": "no target"})),
        post(&a, "/v1/disconnect", &json!({"user": "alice", "connection_id": id_a})),
        post(&a, "/v1/disconnect", &json!({"user": "alice", "kick": true})),
        post(&a, "/v1/revoke", &json!({"user": "alice", "until": now_s() - 1})),
        post(&a, "/v1/revoke", &json!({"user": "alice"})),
    ];
    for (status, body) in &refused {
        assert_eq!((*status, body["error"]["code"].as_str()), (400, Some("bad_request")), "{body}");
    }
    assert!(refused[0].1["error"]["message"].as_str().unwrap().contains("exactly one of user and connection_id"));
    let (status, body) = answer(&http(a.addr(), "POST", "/v1/disconnect", Some(&alice), r#"{"user":"alice"}"#));
    assert_eq!((status, body["error"]["code"].as_str()), (403, Some("forbidden")), "a client token is no credential here: {body}");
    let (status, _) = answer(&http(a.addr(), "GET", "/v1/connections?account=acme", Some(ADMIN), ""));
    assert_eq!(status, 400, "no user");
    assert_eq!(connections(&a, "alice").len(), 3, "nothing was disconnected");
    let (_still, _) = open(&a, &alice).await.expect("nothing was revoked");

    // One order on edge A ends alice's sessions on both edges.
    let (status, body) = post(&a, "/v1/disconnect", &json!({"user": "alice", "reason": "account suspended", "reconnect": false}));
    assert_eq!(status, 202, "{body}");
    assert!(body["order"].as_str().is_some_and(|id| !id.is_empty()));
    let want = json!({"type": "disconnect", "code": "disconnected", "reason": "account suspended", "reconnect": false});
    assert_eq!(ended(&mut on_a).await, (want.clone(), 4010));
    assert_eq!(ended(&mut on_b).await, (want, 4010));

    // The SDK is told, and does not reconnect.
    let told = tokio::time::timeout(PATIENCE, async {
        loop {
            if let Some(Event::Disconnected { code, reason, reconnect }) = sub.next().await {
                return (code, reason, reconnect);
            }
        }
    })
    .await
    .unwrap();
    assert_eq!(told, ("disconnected".into(), "account suspended".into(), false));
    let mut state = sdk.state();
    let ended_state = tokio::time::timeout(PATIENCE, state.wait_for(|s| matches!(s, ConnState::Ended { .. }))).await.unwrap().unwrap().clone();
    assert_eq!(ended_state, ConnState::Ended { code: "disconnected".into(), reason: "account suspended".into() });
    eventually("alice's connections are gone from presence", || connections(&a, "alice").is_empty()).await;
    assert!(matches!(*sdk.state().borrow(), ConnState::Ended { .. }), "still not reconnected");

    // Bob was not concerned.
    assert!(matches!(*bob.state().borrow(), ConnState::Connected { .. }));
    assert_eq!(connections(&b, "bob").len(), 1);

    // One connection by id: only that one ends, and it may reconnect.
    let (mut one, one_id) = open(&b, &token("carol", None, now_s())).await.unwrap();
    let (mut other, _) = open(&a, &token("carol", None, now_s())).await.unwrap();
    let (status, _) = post(&a, "/v1/disconnect", &json!({"connection_id": one_id, "reason": "rebalance"}));
    assert_eq!(status, 202);
    let (frame, code) = ended(&mut one).await;
    assert_eq!((frame["code"].as_str(), frame["reconnect"].as_bool(), code), (Some("disconnected"), Some(true), 4010));
    eventually("carol keeps one connection", || connections(&a, "carol").len() == 1).await;
    drop(other.close(None).await);

    // The same through the control plane's admin service and `herald ctl`.
    let data = std::env::temp_dir().join(format!("herald-orders-{:08x}", rand::random::<u32>()));
    let port = herald_presence_redis::testing::free_port();
    let _control = support::member(1, port, &data, Some(&format!("1=127.0.0.1:{port}")), &["--presence", &redis.url()]);
    let control = format!("127.0.0.1:{port}");
    let listed = support::ctl(&control, &["connections", "acme", "bob"]);
    assert_eq!(listed["connections"][0]["node"], "edge-a", "{listed}");
    let (ok, err) = support::ctl_as(&control, Some(support::ADMIN_TOKEN), &["disconnect", "acme"]);
    assert!(!ok && err.contains("--user"), "a target is required: {err}");
    support::ctl(&control, &["disconnect", "acme", "--user", "bob", "--reason", "maintenance", "--no-reconnect"]);
    let mut state = bob.state();
    let gone = tokio::time::timeout(PATIENCE, state.wait_for(|s| matches!(s, ConnState::Ended { .. }))).await.unwrap().unwrap().clone();
    assert_eq!(gone, ConnState::Ended { code: "disconnected".into(), reason: "maintenance".into() });
    let _ = std::fs::remove_dir_all(&data);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revoked_token_cannot_reconnect_on_any_edge_and_its_sessions_end() {
    let redis = RedisServer::start();
    let (a, b) = (edge(&redis, "edge-a"), edge(&redis, "edge-b"));

    // By jti: the stolen token's sessions on both edges end, and it opens no other.
    let stolen = token("alice", Some("stolen-1"), now_s());
    let other_jti = token("alice", Some("phone-2"), now_s());
    let (mut on_a, _) = open(&a, &stolen).await.unwrap();
    let (mut on_b, _) = open(&b, &stolen).await.unwrap();
    let (status, body) = post(&b, "/v1/revoke", &json!({"jti": "stolen-1", "until": now_s() + 600, "reason": "token leaked"}));
    assert_eq!(status, 202, "{body}");
    let want = json!({"type": "disconnect", "code": "revoked", "reason": "token leaked", "reconnect": false});
    assert_eq!(ended(&mut on_a).await, (want.clone(), 4011));
    assert_eq!(ended(&mut on_b).await, (want, 4011));
    for e in [&a, &b] {
        assert_eq!(open(e, &stolen).await.err(), Some(401), "the revoked jti is refused on {}", e.url);
        open(e, &other_jti).await.expect("another jti of the same user works");
    }

    // By user: every token issued before the revocation dies on both edges, HTTP included.
    let before = token("bob", None, now_s() - 5);
    let (mut on_a, _) = open(&a, &before).await.unwrap();
    let (mut on_b, _) = open(&b, &before).await.unwrap();
    let (status, _) = post(&a, "/v1/revoke", &json!({"user": "bob", "until": now_s() + 600, "reason": "logged out everywhere"}));
    assert_eq!(status, 202);
    let revoked_at = now_s();
    assert_eq!(ended(&mut on_a).await.1, 4011);
    assert_eq!(ended(&mut on_b).await.1, 4011);
    for e in [&a, &b] {
        assert_eq!(open(e, &before).await.err(), Some(401));
        let (status, body) = answer(&http(e.addr(), "GET", "/v1/history?channel=incidents", Some(&before), ""));
        assert_eq!((status, body["error"]["message"].as_str()), (401, Some("token revoked")), "{body}");
    }
    // A token issued after the revocation works everywhere.
    let after = token("bob", None, revoked_at + 1);
    for e in [&a, &b] {
        open(e, &after).await.expect("a token issued after the revocation opens a session");
    }
    // An edge started later refuses it too (the standing revocations are loaded at start).
    let c = edge(&redis, "edge-c");
    assert_eq!(open(&c, &before).await.err(), Some(401));
    assert_eq!(open(&c, &stolen).await.err(), Some(401));
}
