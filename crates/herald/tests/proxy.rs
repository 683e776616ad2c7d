//! The authorization proxy with real processes: `herald edge` asks an HTTP backend the test
//! starts about connects, subscribes and client publishes, and applies the answers: a denial
//! with the backend's code, rights narrowed on connect, user info on connect shown with the
//! member's presence, a rewritten payload, decisions cached; a slow backend times out into the
//! configured choice; a backend that goes down with fail closed refuses new connections and
//! leaves the open ones alone.

mod support;

use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio_tungstenite::tungstenite::Message;

use support::Herald;

const SECRET: &str = "proxy-test-secret-0123456789";
const KEY: &str = "proxy-test-admin-key-0123456789";
const PATIENCE: Duration = Duration::from_secs(30);

type Decide = Arc<dyn Fn(&Value) -> (Duration, Value) + Send + Sync>;

/// The backend: answers each POST with what `decide` says (after its delay), and keeps every
/// request it got.
struct Backend {
    port: u16,
    asked: Arc<Mutex<Vec<Value>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Backend {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Backend {
    async fn start(decide: Decide) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let asked = Arc::new(Mutex::new(Vec::new()));
        let log = asked.clone();
        let task = tokio::spawn(async move {
            let mut conns = tokio::task::JoinSet::new();
            loop {
                let Ok((s, _)) = listener.accept().await else { return };
                let (decide, log) = (decide.clone(), log.clone());
                conns.spawn(async move {
                    let (r, mut w) = s.into_split();
                    let mut r = BufReader::new(r);
                    // Keep-alive: one request after another on the connection.
                    loop {
                        let mut len = 0usize;
                        let mut line = String::new();
                        loop {
                            line.clear();
                            if r.read_line(&mut line).await.unwrap_or(0) == 0 {
                                return;
                            }
                            if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                                len = v.trim().parse().unwrap();
                            }
                            if line == "\r\n" {
                                break;
                            }
                        }
                        let mut body = vec![0; len];
                        r.read_exact(&mut body).await.unwrap();
                        let req: Value = serde_json::from_slice(&body).unwrap();
                        log.lock().unwrap().push(req.clone());
                        let (delay, answer) = decide(&req);
                        tokio::time::sleep(delay).await;
                        let answer = answer.to_string();
                        let resp = format!("HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{answer}", answer.len());
                        if w.write_all(resp.as_bytes()).await.is_err() {
                            return;
                        }
                    }
                });
            }
        });
        Self { port, asked, task }
    }

    fn asked(&self, event: &str) -> Vec<Value> {
        self.asked.lock().unwrap().iter().filter(|r| r["event"] == event).cloned().collect()
    }
}

/// An edge whose `[[auth.proxy]]` asks `port` (`extra` lines appended to the proxy's table).
fn edge(port: u16, extra: &str) -> Herald {
    let dir = std::env::temp_dir().join(format!("herald-proxy-{:08x}", rand::random::<u32>()));
    std::fs::create_dir_all(&dir).unwrap();
    let config = dir.join("herald.toml");
    std::fs::write(&config, format!("[[auth.proxy]]\nurl = \"http://127.0.0.1:{port}/herald/authorize\"\ntimeout_ms = 500\n{extra}\n")).unwrap();
    let edge = support::spawn(
        &["edge", "--listen", "127.0.0.1:0", "--bus", "memory", "--config", config.to_str().unwrap()],
        &[("HERALD_JWT_SECRET", SECRET), ("HERALD_ADMIN_API_KEY", KEY)],
    );
    // Read at start: the file is not needed once the edge listens.
    let _ = std::fs::remove_dir_all(&dir);
    edge
}

type Raw = tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// A raw WebSocket and the frames of a batched message not read yet (the edge may send several
/// frames, newline-separated, in one message).
struct Ws {
    ws: Raw,
    queue: std::collections::VecDeque<Value>,
}

/// A raw WebSocket for `user` with rights `subscribe`/`publish`, and its first frame (`welcome`,
/// or the `error` that refused it).
async fn connect(e: &Herald, user: &str, subscribe: &str, publish: &str) -> (Ws, Value) {
    let token = support::token_for_user(SECRET, "acme", user, subscribe, publish);
    let mut req = tokio_tungstenite::tungstenite::client::IntoClientRequest::into_client_request(format!("ws://{}/v1/ws", e.addr())).unwrap();
    req.headers_mut().insert("authorization", format!("Bearer {token}").parse().unwrap());
    let (ws, _) = tokio_tungstenite::connect_async(req).await.unwrap();
    let mut ws = Ws { ws, queue: Default::default() };
    let first = next(&mut ws).await;
    (ws, first)
}

/// The next frame that is not a ping.
async fn next(ws: &mut Ws) -> Value {
    loop {
        if let Some(v) = ws.queue.pop_front() {
            if v["type"] != "ping" {
                return v;
            }
            continue;
        }
        match tokio::time::timeout(PATIENCE, ws.ws.next()).await.expect("the edge answers") {
            Some(Ok(Message::Text(t))) => ws.queue.extend(t.as_str().lines().map(|l| serde_json::from_str::<Value>(l).unwrap())),
            Some(Ok(_)) => {}
            other => panic!("connection ended: {other:?}"),
        }
    }
}

async fn request(ws: &mut Ws, frame: Value) -> Value {
    ws.ws.send(Message::Text(frame.to_string().into())).await.unwrap();
    next(ws).await
}

/// The next frame `wanted` holds for, skipping others (presence events of other members, say).
async fn next_where(ws: &mut Ws, wanted: impl Fn(&Value) -> bool) -> Value {
    loop {
        let v = next(ws).await;
        if wanted(&v) {
            return v;
        }
    }
}

/// The next `join` or `leave` (`kind`) of `user`'s connection.
async fn presence_event(ws: &mut Ws, kind: &str, user: &str) -> Value {
    next_where(ws, |v| v["type"] == kind && v["member"]["user"] == user).await
}

/// Asks for `channel`'s presence; the members' info by user (`null` for a member without).
async fn members_info(ws: &mut Ws, id: u64, channel: &str) -> std::collections::BTreeMap<String, Value> {
    ws.ws.send(Message::Text(json!({"type": "presence", "id": id, "channel": channel}).to_string().into())).await.unwrap();
    let r = next_where(ws, |v| v["id"] == id).await;
    assert_eq!(r["type"], "presence", "{r}");
    r["members"].as_array().unwrap().iter().map(|m| (m["user"].as_str().unwrap().to_owned(), m["info"].clone())).collect()
}

fn publish(e: &Herald, channel: &str, data: Value) {
    let out = support::http(e.addr(), "POST", "/v1/publish", Some(KEY), &json!({"account": "acme", "channel": channel, "data": data}).to_string());
    assert!(out.starts_with("HTTP/1.1 200"), "{out}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_backend_denies_narrows_rewrites_and_its_decisions_are_cached() {
    let backend = Backend::start(Arc::new(|r: &Value| {
        let answer = match (r["event"].as_str().unwrap(), r["user"].as_str().unwrap(), r["channel"].as_str().unwrap_or("")) {
            ("connect", "mallory", _) => json!({"allow": false, "code": "unauthorized", "message": "account suspended"}),
            // Alice's token reads everything; on this backend she is on incident 7's team only.
            ("connect", "alice", _) => json!({"allow": true, "subscribe": ["incident-7", "chat"], "publish": ["chat"], "info": {"name": "Alice Ng", "role": "responder"}}),
            ("connect", "carol", _) => json!({"allow": true, "info": {"name": "Carol", "teams": ["sre", 7]}}),
            ("connect", "dave", _) => json!({"allow": true, "info": {"name": "Dave", "pager": true}}),
            // Info that is not a JSON object of at most 1 KiB: not a decision.
            ("connect", "oscar", _) => json!({"allow": true, "info": "Oscar"}),
            ("connect", "olga", _) => json!({"allow": true, "info": {"bio": "x".repeat(1100)}}),
            ("connect", _, _) => json!({"allow": true}),
            ("subscribe", _, "incident-7") => json!({"allow": true}),
            ("subscribe", _, "chat") => json!({"allow": true}),
            ("subscribe", _, _) => json!({"allow": false, "code": "forbidden", "message": "not on this incident's team"}),
            ("publish", _, _) if r["data"]["text"].as_str().is_some_and(|t| t.contains("password")) => json!({"allow": false, "code": "bad_request", "message": "no secrets in chat"}),
            ("publish", _, _) => json!({"allow": true, "data": {"text": r["data"]["text"], "by": r["user"]}}),
            _ => json!({"allow": false}),
        };
        (Duration::ZERO, answer)
    }))
    .await;
    let e = edge(backend.port, "cache_ttl_ms = 60000");

    // A denied connect: the backend's code and message, then the close.
    let (_ws, first) = connect(&e, "mallory", "*", "*").await;
    assert_eq!((first["type"].as_str(), first["code"].as_str(), first["message"].as_str()), (Some("error"), Some("unauthorized"), Some("account suspended")), "{first}");

    let (mut ws, first) = connect(&e, "alice", "*", "*").await;
    assert_eq!(first["type"], "welcome", "{first}");
    let asked = backend.asked("connect");
    let alice = asked.iter().find(|r| r["user"] == "alice").unwrap();
    assert_eq!((alice["account"].as_str(), alice["transport"].as_str(), alice["client_ip"].as_str()), (Some("acme"), Some("websocket"), Some("127.0.0.1")), "{alice}");
    assert_eq!(alice["connection_id"], first["connection_id"]);

    // Narrowed: incident 8 is refused by the edge itself (the connect answer's rights), without
    // asking; incident 7 is asked and allowed.
    let r = request(&mut ws, json!({"type": "subscribe", "id": 1, "channel": "incident-8"})).await;
    assert_eq!((r["type"].as_str(), r["code"].as_str()), (Some("error"), Some("forbidden")), "{r}");
    assert!(backend.asked("subscribe").is_empty(), "a channel outside the connection's rights is refused before asking");
    let r = request(&mut ws, json!({"type": "subscribe", "id": 2, "channel": "incident-7"})).await;
    assert_eq!(r["type"], "subscribed", "{r}");
    // A refreshed token does not widen what the backend narrowed: it is asked again.
    let fresh = support::token_for_user(SECRET, "acme", "alice", "*", "*");
    assert_eq!(request(&mut ws, json!({"type": "refresh", "id": 20, "token": fresh})).await["type"], "refreshed");
    let r = request(&mut ws, json!({"type": "subscribe", "id": 21, "channel": "incident-8"})).await;
    assert_eq!(r["code"], "forbidden", "still outside the connection's rights after a refresh: {r}");
    assert_eq!(backend.asked("subscribe").len(), 1);

    // A subscribe the backend denies: its code and message.
    let (mut bob, first) = connect(&e, "bob", "*", "*").await;
    assert_eq!(first["type"], "welcome", "{first}");
    let r = request(&mut bob, json!({"type": "subscribe", "id": 1, "channel": "incident-9"})).await;
    assert_eq!((r["type"].as_str(), r["code"].as_str(), r["message"].as_str()), (Some("error"), Some("forbidden"), Some("not on this incident's team")), "{r}");
    // SSE and long-poll ask the same questions.
    let bob_token = support::token_for_user(SECRET, "acme", "bob", "*", "");
    let out = support::http(e.addr(), "GET", "/v1/poll?channels=incident-9", Some(&bob_token), "");
    assert!(out.starts_with("HTTP/1.1 403") && out.contains("not on this incident's team"), "{out}");
    // Cached: asking again within the TTL does not reach the backend.
    let before = backend.asked("subscribe").len();
    let r = request(&mut bob, json!({"type": "subscribe", "id": 2, "channel": "incident-9"})).await;
    assert_eq!(r["code"], "forbidden");
    assert_eq!(backend.asked("subscribe").len(), before, "the denial came from the cache");

    // A client publish is rewritten by the backend, or refused with its code; nothing refused is written.
    assert_eq!(request(&mut ws, json!({"type": "subscribe", "id": 3, "channel": "chat"})).await["type"], "subscribed");
    let r = request(&mut ws, json!({"type": "publish", "id": 4, "channel": "chat", "data": {"text": "my password is hunter2"}})).await;
    assert_eq!((r["type"].as_str(), r["code"].as_str()), (Some("error"), Some("bad_request")), "{r}");
    let r = request(&mut ws, json!({"type": "publish", "id": 5, "channel": "chat", "data": {"text": "on it"}})).await;
    assert_eq!(r["type"], "published", "{r}");
    let m = next(&mut ws).await;
    assert_eq!((m["type"].as_str(), m["data"].clone()), (Some("message"), json!({"text": "on it", "by": "alice"})), "the rewritten payload, and only it: {m}");
    // Backends' own publishes do not go through the proxy.
    let asked = backend.asked.lock().unwrap().len();
    publish(&e, "incident-7", json!({"status": "resolved"}));
    assert_eq!(next(&mut ws).await["data"]["status"], "resolved");
    assert_eq!(backend.asked.lock().unwrap().len(), asked);

    // User info from the connect answer travels with the member: Bob watches incident 7's
    // presence and sees Carol (WebSocket) and Dave (SSE) join with theirs, Alice listed with hers,
    // Bob (no info) without any.
    let r = request(&mut bob, json!({"type": "subscribe", "id": 3, "channel": "incident-7", "presence": true})).await;
    assert_eq!(r["type"], "subscribed", "{r}");
    let (mut carol, first) = connect(&e, "carol", "*", "").await;
    assert_eq!(first["type"], "welcome", "{first}");
    assert_eq!(request(&mut carol, json!({"type": "subscribe", "id": 1, "channel": "incident-7"})).await["type"], "subscribed");
    let join = presence_event(&mut bob, "join", "carol").await;
    assert_eq!(join["member"]["info"], json!({"name": "Carol", "teams": ["sre", 7]}), "{join}");
    let dave = sse(&e, "dave", "incident-7").await;
    let join = presence_event(&mut bob, "join", "dave").await;
    assert_eq!(join["member"]["info"], json!({"name": "Dave", "pager": true}), "{join}");
    let members = members_info(&mut bob, 4, "incident-7").await;
    assert_eq!(members["alice"], json!({"name": "Alice Ng", "role": "responder"}));
    assert_eq!((&members["carol"]["name"], &members["dave"]["name"]), (&json!("Carol"), &json!("Dave")));
    assert_eq!(members["bob"], Value::Null, "a member whose connect answer had no info has none: {members:?}");
    drop(carol);
    let leave = presence_event(&mut bob, "leave", "carol").await;
    assert_eq!(leave["member"]["info"]["name"], "Carol", "the leave carries the info too: {leave}");
    drop(dave);

    // An info that is not an object, or is over 1 KiB, makes the answer a failed one: on_error
    // (here the default, deny) decides.
    for user in ["oscar", "olga"] {
        let (_ws, first) = connect(&e, user, "*", "").await;
        assert_eq!((first["type"].as_str(), first["code"].as_str()), (Some("error"), Some("unavailable")), "{user}: {first}");
    }
    let text = support::http(e.addr(), "GET", "/metrics", None, "");
    assert!(text.lines().any(|l| l.starts_with("herald_proxy_errors_total{") && l.contains("kind=\"answer\"")), "counted as answers that are not decisions: {text}");
}

/// An SSE stream of `user` on `channel`, open once the edge answered 200.
async fn sse(e: &Herald, user: &str, channel: &str) -> tokio::net::TcpStream {
    let token = support::token_for_user(SECRET, "acme", user, "*", "");
    let mut s = tokio::net::TcpStream::connect(e.addr()).await.unwrap();
    let req = format!("GET /v1/sse?channels={channel} HTTP/1.1\r\nhost: herald\r\nauthorization: Bearer {token}\r\naccept: text/event-stream\r\n\r\n");
    s.write_all(req.as_bytes()).await.unwrap();
    let mut head = Vec::new();
    while !head.ends_with(b"\r\n\r\n") {
        let mut b = [0u8; 1];
        assert_eq!(tokio::time::timeout(PATIENCE, s.read(&mut b)).await.expect("the edge answers").unwrap(), 1, "the edge closed the SSE request");
        head.push(b[0]);
    }
    assert!(head.starts_with(b"HTTP/1.1 200"), "{}", String::from_utf8_lossy(&head));
    s
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_backend_times_out_into_the_configured_choice() {
    let slow = Backend::start(Arc::new(|_: &Value| (Duration::from_secs(3), json!({"allow": true})))).await;
    let closed = edge(slow.port, "on_error = \"deny\"");
    let (_ws, first) = connect(&closed, "alice", "*", "*").await;
    assert_eq!((first["type"].as_str(), first["code"].as_str()), (Some("error"), Some("unavailable")), "fail closed: {first}");
    let open = edge(slow.port, "on_error = \"allow\"");
    let (mut ws, first) = connect(&open, "alice", "incident-*", "").await;
    assert_eq!(first["type"], "welcome", "fail open: {first}");
    // With the token's own rights: no more.
    let r = request(&mut ws, json!({"type": "subscribe", "id": 1, "channel": "billing"})).await;
    assert_eq!(r["code"], "forbidden");
    let text = support::http(open.addr(), "GET", "/metrics", None, "");
    assert!(text.lines().any(|l| l.starts_with("herald_proxy_errors_total{") && l.contains("kind=\"timeout\"")), "timeouts are counted: {text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backend_that_goes_down_refuses_new_connections_and_leaves_open_ones_alone() {
    let backend = Backend::start(Arc::new(|_: &Value| (Duration::ZERO, json!({"allow": true})))).await;
    let port = backend.port;
    let e = edge(port, "on_error = \"deny\"\ncache_ttl_ms = 0");
    let (mut ws, first) = connect(&e, "alice", "*", "*").await;
    assert_eq!(first["type"], "welcome");
    assert_eq!(request(&mut ws, json!({"type": "subscribe", "id": 1, "channel": "incident-7"})).await["type"], "subscribed");
    drop(backend);
    // The port is closed now (nothing listens): new connections are refused, `unavailable`.
    let (_refused, first) = connect(&e, "bob", "*", "*").await;
    assert_eq!((first["type"].as_str(), first["code"].as_str()), (Some("error"), Some("unavailable")), "{first}");
    // Alice's connection and subscription carry on.
    publish(&e, "incident-7", json!({"n": 1}));
    assert_eq!(next(&mut ws).await["data"]["n"], 1);
    // A new subscription needs the backend: refused while it is down.
    let r = request(&mut ws, json!({"type": "subscribe", "id": 2, "channel": "incident-8"})).await;
    assert_eq!(r["code"], "unavailable");
    publish(&e, "incident-7", json!({"n": 2}));
    assert_eq!(next(&mut ws).await["data"]["n"], 2, "still delivered after the refusal");
}

#[test]
fn check_names_a_proxy_that_cannot_be_used() {
    let dir = std::env::temp_dir().join(format!("herald-proxy-check-{:08x}", rand::random::<u32>()));
    std::fs::create_dir_all(&dir).unwrap();
    for (text, named) in [
        ("url = \"authz:8080\"", "auth.proxy.url"),
        ("url = \"https://authz\"\nca_file = \"/no/such/ca.pem\"", "ca_file"),
        ("url = \"http://authz\"\nevents = [\"join\"]", "auth.proxy.events"),
    ] {
        let config = dir.join("herald.toml");
        std::fs::write(&config, format!("[[auth.proxy]]\n{text}\n")).unwrap();
        let out = std::process::Command::new(support::BIN).args(["edge", "--config", config.to_str().unwrap(), "--check"]).env("HERALD_JWT_SECRET", SECRET).output().unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(64), "{text}: {err}");
        assert!(err.contains(named), "{text}: the error names {named}: {err}");
    }
    let _ = std::fs::remove_dir_all(&dir);
}

/// The same decisions over gRPC: a backend implementing `herald.proxy.v1.AuthProxy`
/// (proto/herald/proxy/v1/proxy.proto) narrows a connection's rights, gives it user info that
/// presence shows, denies a subscribe with its code, and rewrites a payload.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_grpc_backend_decides_the_same_way() {
    use herald_edge::proxy::pb::{self, auth_proxy_server::{AuthProxy, AuthProxyServer}};
    struct Backend(Arc<Mutex<Vec<String>>>);
    #[tonic::async_trait]
    impl AuthProxy for Backend {
        async fn authorize_connect(&self, r: tonic::Request<pb::ConnectRequest>) -> Result<tonic::Response<pb::Decision>, tonic::Status> {
            let r = r.into_inner();
            self.0.lock().unwrap().push(format!("connect {} {} {}", r.user, r.transport, r.client_ip));
            let subscribe = Some(pb::Patterns { patterns: vec!["incident-*".into(), "chat".into()] });
            // Mallory's info is a JSON array: not a decision.
            let info = if r.user == "mallory" { b"[1]".to_vec() } else { json!({"name": r.user}).to_string().into_bytes() };
            let publish = Some(pb::Patterns { patterns: vec!["chat".into()] });
            Ok(tonic::Response::new(pb::Decision { allow: true, subscribe, publish, info: Some(info), ..Default::default() }))
        }
        async fn authorize_subscribe(&self, r: tonic::Request<pb::SubscribeRequest>) -> Result<tonic::Response<pb::Decision>, tonic::Status> {
            let r = r.into_inner();
            self.0.lock().unwrap().push(format!("subscribe {}", r.channel));
            let allow = r.channel != "incident-9";
            Ok(tonic::Response::new(pb::Decision { allow, code: if allow { String::new() } else { "rate_limited".into() }, message: "try later".into(), ..Default::default() }))
        }
        async fn authorize_publish(&self, r: tonic::Request<pb::PublishRequest>) -> Result<tonic::Response<pb::Decision>, tonic::Status> {
            let r = r.into_inner();
            let v: Value = serde_json::from_slice(&r.data).unwrap();
            let data = json!({"text": v["text"], "checked": true}).to_string().into_bytes();
            Ok(tonic::Response::new(pb::Decision { allow: true, data: Some(data), ..Default::default() }))
        }
    }
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let asked = Arc::new(Mutex::new(Vec::new()));
    let server = tonic::transport::Server::builder().add_service(AuthProxyServer::new(Backend(asked.clone())));
    let task = tokio::spawn(server.serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(listener)));

    let dir = std::env::temp_dir().join(format!("herald-proxy-grpc-{:08x}", rand::random::<u32>()));
    std::fs::create_dir_all(&dir).unwrap();
    let config = dir.join("herald.toml");
    std::fs::write(&config, format!("[[auth.proxy]]\nurl = \"grpc://127.0.0.1:{port}\"\ntimeout_ms = 2000\n")).unwrap();
    let e = support::spawn(&["edge", "--listen", "127.0.0.1:0", "--bus", "memory", "--config", config.to_str().unwrap()], &[("HERALD_JWT_SECRET", SECRET), ("HERALD_ADMIN_API_KEY", KEY)]);
    let _ = std::fs::remove_dir_all(&dir);
    let (mut ws, first) = connect(&e, "alice", "*", "*").await;
    assert_eq!(first["type"], "welcome", "{first}");
    let r = request(&mut ws, json!({"type": "subscribe", "id": 1, "channel": "billing"})).await;
    assert_eq!(r["code"], "forbidden", "outside the rights the connect answer gave: {r}");
    let r = request(&mut ws, json!({"type": "subscribe", "id": 2, "channel": "incident-9"})).await;
    assert_eq!((r["code"].as_str(), r["message"].as_str()), (Some("rate_limited"), Some("try later")), "{r}");
    assert_eq!(request(&mut ws, json!({"type": "subscribe", "id": 3, "channel": "chat"})).await["type"], "subscribed");
    assert_eq!(request(&mut ws, json!({"type": "publish", "id": 4, "channel": "chat", "data": {"text": "hi"}})).await["type"], "published");
    assert_eq!(next(&mut ws).await["data"], json!({"text": "hi", "checked": true}));
    let asked = asked.lock().unwrap().clone();
    assert_eq!(asked, ["connect alice websocket 127.0.0.1", "subscribe incident-9", "subscribe chat"]);

    // The connect answers' info in presence: Bob watches chat, sees Carol join with hers, and
    // lists Alice, Carol and himself with theirs.
    let (mut bob, first) = connect(&e, "bob", "*", "").await;
    assert_eq!(first["type"], "welcome", "{first}");
    assert_eq!(request(&mut bob, json!({"type": "subscribe", "id": 1, "channel": "chat", "presence": true})).await["type"], "subscribed");
    let (mut carol, _) = connect(&e, "carol", "*", "").await;
    assert_eq!(request(&mut carol, json!({"type": "subscribe", "id": 1, "channel": "chat"})).await["type"], "subscribed");
    let join = presence_event(&mut bob, "join", "carol").await;
    assert_eq!(join["member"]["info"], json!({"name": "carol"}), "{join}");
    let members = members_info(&mut bob, 2, "chat").await;
    assert_eq!(members.into_iter().collect::<Vec<_>>(), [("alice", "alice"), ("bob", "bob"), ("carol", "carol")].map(|(u, n)| (u.to_owned(), json!({"name": n}))));
    // An info that is not a JSON object: a failed answer, and on_error (deny) refuses.
    let (_ws, first) = connect(&e, "mallory", "*", "").await;
    assert_eq!((first["type"].as_str(), first["code"].as_str()), (Some("error"), Some("unavailable")), "{first}");
    task.abort();
}
