//! A test edge on 127.0.0.1:0 with the in-memory bus, and raw protocol helpers.
#![allow(dead_code)]

use futures_util::{SinkExt, StreamExt};
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;
use serde_json::{Value, json};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};
use tokio_util::sync::CancellationToken;

use herald_bus_memory::{MemoryBus, MemoryBusConfig};
use herald_config::Config;
use herald_edge::{Edge, EdgeDeps, EdgeMetrics, TokenClaims, TokenIssuer};
use herald_presence_memory::MemoryPresence;

pub const SECRET: &str = "test-secret-0123456789";
pub const ADMIN_KEY: &str = "admin-key-0123456789";
pub const ACME_KEY: &str = "acme-key-0123456789";

/// Generous bound for "eventually": tests check behaviour, not speed.
pub const PATIENCE: Duration = Duration::from_secs(30);

pub struct TestEdge {
    pub addr: SocketAddr,
    pub edge: Arc<Edge>,
    pub stop: CancellationToken,
    pub served: tokio::task::JoinHandle<()>,
}

impl TestEdge {
    pub async fn start() -> Self {
        Self::start_with(|_| {}).await
    }

    pub async fn start_with(tune: impl FnOnce(&mut Config)) -> Self {
        Self::start_on(|bus| bus, tune).await
    }

    /// An edge whose bus is `wrap` of the memory bus (a test double that injects faults).
    pub async fn start_on(wrap: impl FnOnce(Arc<dyn herald_core::Bus>) -> Arc<dyn herald_core::Bus>, tune: impl FnOnce(&mut Config)) -> Self {
        let mut config = Config::default();
        config.auth.jwt_secret = Some(SECRET.into());
        config.auth.admin_api_key = Some(ADMIN_KEY.into());
        config.auth.account_keys.insert(herald_core::AccountId::new("acme").unwrap(), vec![ACME_KEY.into()]);
        config.edge.node = "test-node".into();
        tune(&mut config);
        config.validate().expect("test config is valid");
        let mut bc = MemoryBusConfig::new(config.edge.region.clone());
        bc.partitions = config.bus.partitions;
        bc.retention_records = config.bus.retention_records;
        let deps = EdgeDeps {
            bus: wrap(Arc::new(MemoryBus::new(bc))),
            presence: Arc::new(MemoryPresence::new()),
            metrics: EdgeMetrics::new(),
            dev: None,
            devices: Some(Arc::new(herald_push::MemoryRegistry::new())),
            orders: Arc::new(herald_presence_memory::MemoryOrders::new()),
        };
        let edge = Edge::new(&config, deps).unwrap();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let stop = CancellationToken::new();
        let served = tokio::spawn({
            let (edge, stop) = (edge.clone(), stop.clone());
            async move { herald_edge::serve(listener, edge, stop).await.unwrap() }
        });
        // Ready means: consumers positioned, accepting.
        for _ in 0..1000 {
            if edge.is_ready() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        assert!(edge.is_ready());
        Self { addr, edge, stop, served }
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// A token for `account` that may subscribe to and publish on every channel.
    pub fn token(&self, account: &str, sub: &str) -> String {
        token_with(account, sub, &["*"], &["*"], 3600)
    }

    pub async fn publish(&self, body: Value) -> (u16, Value) {
        http_post(self.addr, "/v1/publish", ADMIN_KEY, &body.to_string()).await
    }

    /// Publishes `{"seq":n}` to `account/channel` with the admin key.
    pub async fn publish_seq(&self, account: &str, channel: &str, n: u64) -> Value {
        let (status, v) = self.publish(json!({"account": account, "channel": channel, "data": {"seq": n}})).await;
        assert_eq!(status, 200, "{v}");
        v
    }
}

pub fn token_with(account: &str, sub: &str, subscribe: &[&str], publish: &[&str], ttl: i64) -> String {
    let now = herald_core::now_ms() as i64 / 1000;
    let claims = TokenClaims {
        sub: sub.into(),
        account: account.into(),
        exp: (now + ttl).max(0) as u64,
        iat: Some(now as u64),
        nbf: None,
        jti: None,
        subscribe: subscribe.iter().map(|s| s.to_string()).collect(),
        publish: publish.iter().map(|s| s.to_string()).collect(),
        presence: None,
    };
    TokenIssuer::hs256(SECRET.as_bytes()).issue(&claims)
}

pub async fn http_request(addr: SocketAddr, method: &str, path: &str, bearer: Option<&str>, body: &str) -> (u16, hyper::HeaderMap, Vec<u8>) {
    let tcp = TcpStream::connect(addr).await.unwrap();
    let (mut send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tcp)).await.unwrap();
    tokio::spawn(conn);
    let mut req = hyper::Request::builder().method(method).uri(path).header("host", "test");
    if let Some(b) = bearer {
        req = req.header("authorization", format!("Bearer {b}"));
    }
    let resp = send.send_request(req.body(Full::new(bytes::Bytes::from(body.to_owned()))).unwrap()).await.unwrap();
    let status = resp.status().as_u16();
    let headers = resp.headers().clone();
    let body = resp.into_body().collect().await.unwrap().to_bytes().to_vec();
    (status, headers, body)
}

pub async fn http_post(addr: SocketAddr, path: &str, key: &str, body: &str) -> (u16, Value) {
    let (s, _, b) = http_request(addr, "POST", path, Some(key), body).await;
    (s, serde_json::from_slice(&b).unwrap_or(Value::Null))
}

pub async fn http_get_json(addr: SocketAddr, path: &str) -> (u16, Value) {
    let (s, _, b) = http_request(addr, "GET", path, None, "").await;
    (s, serde_json::from_slice(&b).unwrap_or(Value::Null))
}

pub type RawWs = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// A raw WebSocket client that remembers frames of a batched message it has not consumed yet.
/// On a compact connection it sends and reads binary frames, shown to the test as their JSON v1
/// form (as SDKs do), so one test body covers both encodings.
pub struct Conn {
    pub ws: RawWs,
    queue: std::collections::VecDeque<Value>,
    reader: Option<herald_protocol::proto::ProtoReader>,
}

/// Runs an `async fn(Encoding)` test body once per wire encoding, as `<name>::json` and
/// `<name>::proto`.
#[macro_export]
macro_rules! over_both_encodings {
    ($($name:ident),* $(,)?) => {$(
        mod $name {
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn json() {
                super::$name(herald_protocol::Encoding::Json).await
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn proto() {
                super::$name(herald_protocol::Encoding::Proto).await
            }
        }
    )*};
}

/// A client config speaking `encoding`.
pub fn client_config(url: String, token: String, encoding: herald_protocol::Encoding) -> herald_client::ClientConfig {
    let mut c = herald_client::ClientConfig::new(url, token);
    c.encoding = encoding;
    c
}

/// How a raw connection ended.
pub enum Next {
    Frame(Value),
    Closed(Option<CloseFrame>),
}

/// A raw WebSocket with the token in the Authorization header (none if `token` is None).
pub async fn raw_ws(addr: SocketAddr, token: Option<&str>) -> Result<Conn, tokio_tungstenite::tungstenite::Error> {
    raw_ws_speaking(addr, token, herald_protocol::Encoding::Json).await
}

/// [`raw_ws`] asking for `encoding`'s subprotocol (JSON: none, as most clients do).
pub async fn raw_ws_speaking(addr: SocketAddr, token: Option<&str>, encoding: herald_protocol::Encoding) -> Result<Conn, tokio_tungstenite::tungstenite::Error> {
    let mut req = format!("ws://{addr}/v1/ws").into_client_request().unwrap();
    if let Some(t) = token {
        req.headers_mut().insert("authorization", format!("Bearer {t}").parse().unwrap());
    }
    let proto = encoding == herald_protocol::Encoding::Proto;
    if proto {
        req.headers_mut().insert("sec-websocket-protocol", herald_protocol::SUBPROTOCOL_PROTO.parse().unwrap());
    }
    let (ws, resp) = tokio_tungstenite::connect_async(req).await?;
    if proto {
        assert_eq!(resp.headers().get("sec-websocket-protocol").unwrap(), herald_protocol::SUBPROTOCOL_PROTO);
    }
    Ok(Conn { ws, queue: Default::default(), reader: proto.then(herald_protocol::proto::ProtoReader::new) })
}

/// Sends a client frame, given as JSON v1, in the connection's encoding. A frame the compact
/// encoding cannot express (a test's malformed one, e.g. a string where a number belongs) goes
/// as JSON text, which a compact connection also reads.
/// Several client frames as one WebSocket message in `encoding`: JSON lines, or compact frames
/// back to back.
pub fn batch_message(encoding: herald_protocol::Encoding, frames: &[Value]) -> Message {
    match encoding {
        herald_protocol::Encoding::Json => Message::Text(frames.iter().map(Value::to_string).collect::<Vec<_>>().join("\n").into()),
        herald_protocol::Encoding::Proto => Message::Binary(
            frames
                .iter()
                .flat_map(|f| herald_protocol::proto::encode_client_frame(&herald_protocol::decode_client_frame(&f.to_string()).unwrap()).to_vec())
                .collect::<Vec<u8>>()
                .into(),
        ),
    }
}

pub async fn send(c: &mut Conn, v: Value) {
    let text = v.to_string();
    let m = match (&c.reader, herald_protocol::decode_client_frame(&text)) {
        (Some(_), Ok(frame)) => Message::Binary(herald_protocol::proto::encode_client_frame(&frame)),
        _ => Message::Text(text.into()),
    };
    c.ws.send(m).await.unwrap();
}

impl Conn {
    /// The next frame (batched messages are split), or how the connection ended.
    pub async fn next(&mut self) -> Next {
        loop {
            if let Some(f) = self.queue.pop_front() {
                return Next::Frame(f);
            }
            match self.next_message().await {
                Ok(frames) => self.queue.extend(frames),
                Err(f) => return Next::Closed(f),
            }
        }
    }

    /// The frames of the next WebSocket data message (one batch), past any queued by [`Conn::next`];
    /// `Err` when the connection ended.
    pub async fn next_message(&mut self) -> Result<Vec<Value>, Option<CloseFrame>> {
        loop {
            match tokio::time::timeout(PATIENCE, self.ws.next()).await.expect("the server answers") {
                Some(Ok(Message::Text(t))) => {
                    return Ok(herald_protocol::split_batch(t.as_str()).map(|l| serde_json::from_str::<Value>(l).expect("server frames are JSON")).collect());
                }
                Some(Ok(Message::Binary(b))) => {
                    let reader = self.reader.as_mut().expect("binary frames only on a compact connection");
                    let frames = reader.read(&b).into_iter().map(|f| serde_json::from_slice(&f.expect("server frames are well-formed")).expect("read back as JSON"));
                    return Ok(frames.collect());
                }
                Some(Ok(Message::Close(f))) => return Err(f),
                Some(Ok(_)) => continue,
                Some(Err(_)) | None => return Err(None),
            }
        }
    }
}

/// Reads frames until one has type `ty` (returning it), skipping pings and others.
pub async fn expect_type(c: &mut Conn, ty: &str) -> Value {
    loop {
        match c.next().await {
            Next::Frame(f) if f["type"] == ty => return f,
            Next::Frame(_) => {}
            Next::Closed(f) => panic!("connection ended while waiting for {ty}: {f:?}"),
        }
    }
}

/// Reads until the connection closes; returns every frame seen and the close frame.
pub async fn read_until_closed(c: &mut Conn) -> (Vec<Value>, Option<CloseFrame>) {
    let mut all = Vec::new();
    loop {
        match c.next().await {
            Next::Frame(f) => all.push(f),
            Next::Closed(f) => return (all, f),
        }
    }
}
