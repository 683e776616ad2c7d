//! The task that owns the connection: connect, resubscribe with cursors, dedupe, reconnect.

use futures_util::{SinkExt, StreamExt};
use http::HeaderValue;
use serde::Deserialize;
use serde_json::value::RawValue;
use std::collections::{HashMap, HashSet, VecDeque};
use std::time::Duration;
use tokio::sync::{mpsc, oneshot, watch};
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::{Error as WsError, Message as WsMessage};
use tokio_tungstenite::WebSocketStream;

use herald_protocol::proto::{ProtoReader, encode_client_frame};
use herald_protocol::{Encoding, decode_client_frame, split_batch};

use crate::deflate::DeflateIo;
use crate::{ClientConfig, ClientError, Command, ConnState, Event, Message, Published};

type Ws = WebSocketStream<DeflateIo<herald_http_client::Stream>>;

struct Channel {
    events: mpsc::Sender<Event>,
    presence: bool,
    cursor: Option<String>,
    seen: HashSet<Box<str>>,
    order: VecDeque<Box<str>>,
    done: Option<oneshot::Sender<Result<(), ClientError>>>,
}

impl Channel {
    /// Remembers `id`; false when it was already delivered.
    fn first_time(&mut self, id: &str, window: usize) -> bool {
        if self.seen.contains(id) {
            return false;
        }
        let id: Box<str> = id.into();
        self.seen.insert(id.clone());
        self.order.push_back(id);
        if self.order.len() > window
            && let Some(old) = self.order.pop_front() {
                self.seen.remove(&old);
            }
        true
    }
}

enum Pending {
    Subscribe { channel: String, resumed: bool },
    Publish(oneshot::Sender<Result<Published, ClientError>>),
    Presence(oneshot::Sender<Result<serde_json::Value, ClientError>>),
    Refresh(oneshot::Sender<Result<(), ClientError>>),
    Device(oneshot::Sender<Result<bool, ClientError>>),
}

enum Outcome {
    Reconnect { after: Option<Duration>, reason: String },
    Failed(String),
    /// A backend's `disconnect` said not to reconnect.
    Ended { code: String, reason: String },
    Closed,
}

#[derive(Deserialize)]
struct Member {
    connection_id: String,
    user: String,
    #[serde(default)]
    info: Option<serde_json::Value>,
}

#[derive(Deserialize)]
struct Frame<'a> {
    #[serde(rename = "type")]
    ty: &'a str,
    #[serde(default)]
    id: Option<serde_json::Value>,
    #[serde(default)]
    channel: Option<String>,
    #[serde(default)]
    cursor: Option<String>,
    #[serde(default)]
    ts: Option<u64>,
    #[serde(default, borrow)]
    data: Option<&'a RawValue>,
    #[serde(default)]
    recovered: Option<bool>,
    #[serde(default)]
    code: Option<String>,
    #[serde(default)]
    message: Option<String>,
    #[serde(default)]
    after_ms: Option<u64>,
    #[serde(default)]
    reason: Option<String>,
    #[serde(default)]
    reconnect: Option<bool>,
    #[serde(default)]
    heartbeat_ms: Option<u64>,
    #[serde(default)]
    connection_id: Option<String>,
    #[serde(default)]
    node: Option<String>,
    #[serde(default)]
    member: Option<Member>,
    #[serde(default)]
    message_id: Option<String>,
    #[serde(default)]
    duplicate: Option<bool>,
    #[serde(default)]
    registered: Option<bool>,
}

struct Driver {
    config: ClientConfig,
    rx: mpsc::Receiver<Command>,
    state: watch::Sender<ConnState>,
    channels: HashMap<String, Channel>,
    pending: HashMap<u64, Pending>,
    next_id: u64,
    /// Requests made while disconnected, sent after the next connect.
    queued: Vec<Command>,
    /// Whether the current connection's messages come compressed.
    compressed: bool,
}

pub(crate) async fn run(config: ClientConfig, rx: mpsc::Receiver<Command>, state: watch::Sender<ConnState>) {
    let mut d = Driver { config, rx, state, channels: HashMap::new(), pending: HashMap::new(), next_id: 1, queued: Vec::new(), compressed: false };
    let mut failures: u32 = 0;
    let mut first = true;
    loop {
        d.state.send_replace(ConnState::Connecting);
        // Every reconnect starts with a fresh token when there is a source of them.
        if !first
            && let Some(source) = d.config.token_source.clone() {
                match source().await {
                    Ok(t) => d.config.token = t,
                    Err(e) => tracing::warn!(error = %e, "token source failed; trying the current token"),
                }
            }
        first = false;
        let outcome = match connect(&d.config).await {
            Ok(ws) => {
                d.compressed = ws.get_ref().is_inflating();
                d.serve(ws, &mut failures).await
            }
            Err(ConnectError::Refused(m)) => Outcome::Failed(m),
            Err(ConnectError::Io(m)) => Outcome::Reconnect { after: None, reason: m },
        };
        d.fail_pending();
        let wait = match outcome {
            Outcome::Closed => {
                d.state.send_replace(ConnState::Closed);
                return;
            }
            Outcome::Ended { code, reason } => {
                d.state.send_replace(ConnState::Ended { code, reason });
                return;
            }
            Outcome::Failed(m) if d.config.token_source.is_none() => {
                d.state.send_replace(ConnState::Failed(m));
                return;
            }
            // With a token source, a refused token is replaced at the next attempt.
            Outcome::Failed(m) => {
                d.state.send_replace(ConnState::Disconnected(m));
                failures = failures.saturating_add(1);
                backoff(&d.config, failures)
            }
            Outcome::Reconnect { after, reason } => {
                d.state.send_replace(ConnState::Disconnected(reason));
                match after {
                    Some(a) => a,
                    None => {
                        failures = failures.saturating_add(1);
                        backoff(&d.config, failures)
                    }
                }
            }
        };
        // Wait, still taking commands (so subscribe/close work while disconnected).
        let until = Instant::now() + wait;
        loop {
            tokio::select! {
                _ = tokio::time::sleep_until(until) => break,
                c = d.rx.recv() => match c {
                    None | Some(Command::Close) => {
                        d.state.send_replace(ConnState::Closed);
                        return;
                    }
                    Some(c) => d.offline(c),
                },
            }
        }
    }
}

/// Full jitter: uniform in `[0, min(max, initial · 2^failures)]`.
fn backoff(config: &ClientConfig, failures: u32) -> Duration {
    let cap = config.backoff_initial.saturating_mul(1u32 << failures.min(16)).min(config.backoff_max);
    let ms = cap.as_millis() as u64;
    Duration::from_millis(if ms == 0 { 0 } else { rand::random::<u64>() % (ms + 1) })
}

enum ConnectError {
    Refused(String),
    Io(String),
}

async fn connect(config: &ClientConfig) -> Result<Ws, ConnectError> {
    // The server's address and TLS (`https://`/`wss://`, the public web's CAs or `ca_file`'s).
    let target = herald_http_client::Target::new(&crate::history::http_base(&config.url), config.ca_file.as_deref()).map_err(|e| ConnectError::Refused(e.0))?;
    let base = config.url.trim_end_matches('/').replacen("http://", "ws://", 1).replacen("https://", "wss://", 1);
    let mut req = format!("{base}/v1/ws").into_client_request().map_err(|e| ConnectError::Refused(e.to_string()))?;
    let auth = HeaderValue::from_str(&format!("Bearer {}", config.token)).map_err(|e| ConnectError::Refused(e.to_string()))?;
    req.headers_mut().insert(http::header::AUTHORIZATION, auth);
    if config.encoding == Encoding::Proto {
        req.headers_mut().insert(http::header::SEC_WEBSOCKET_PROTOCOL, HeaderValue::from_static(herald_protocol::SUBPROTOCOL_PROTO));
    }
    if config.compression {
        req.headers_mut().insert(http::header::SEC_WEBSOCKET_EXTENSIONS, HeaderValue::from_static(crate::deflate::OFFER));
    }
    let cfg = WebSocketConfig::default().read_buffer_size(16 << 10).write_buffer_size(0);
    let handshake = async {
        let stream = target.open().await.map_err(|e| WsError::Io(std::io::Error::other(e.to_string())))?;
        let io = if config.compression { DeflateIo::inflating(stream, 64 << 20) } else { DeflateIo::plain(stream) };
        let (mut ws, resp) = tokio_tungstenite::client_async_with_config(req, io, Some(cfg)).await?;
        if !crate::deflate::granted(resp.headers().get(http::header::SEC_WEBSOCKET_EXTENSIONS).and_then(|v| v.to_str().ok())) {
            ws.get_mut().stop_inflating();
        }
        Ok::<_, WsError>(ws)
    };
    match tokio::time::timeout(Duration::from_secs(10), handshake).await {
        Err(_) => Err(ConnectError::Io("connect timed out".into())),
        Ok(Ok(ws)) => Ok(ws),
        Ok(Err(WsError::Http(resp))) if resp.status() == 401 => {
            let body = resp.body().as_ref().map(|b| String::from_utf8_lossy(b).into_owned()).unwrap_or_default();
            Err(ConnectError::Refused(format!("token refused: {body}")))
        }
        Ok(Err(e)) => Err(ConnectError::Io(e.to_string())),
    }
}

impl Driver {
    fn fail_pending(&mut self) {
        for (_, p) in self.pending.drain() {
            match p {
                Pending::Publish(tx) => drop(tx.send(Err(ClientError::Disconnected))),
                Pending::Presence(tx) => drop(tx.send(Err(ClientError::Disconnected))),
                Pending::Refresh(tx) => drop(tx.send(Err(ClientError::Disconnected))),
                Pending::Device(tx) => drop(tx.send(Err(ClientError::Disconnected))),
                Pending::Subscribe { .. } => {}
            }
        }
    }

    fn add_channel(&mut self, channel: String, presence: bool, since: Option<String>, events: mpsc::Sender<Event>, done: oneshot::Sender<Result<(), ClientError>>) {
        let ch = Channel { events, presence, cursor: since, seen: HashSet::new(), order: VecDeque::new(), done: Some(done) };
        self.channels.insert(channel, ch);
    }

    /// A command while disconnected.
    fn offline(&mut self, c: Command) {
        match c {
            Command::Subscribe { channel, presence, since, events, done } => self.add_channel(channel, presence, since, events, done),
            Command::Unsubscribe { channel } => {
                self.channels.remove(&channel);
            }
            Command::Refresh { token, done } => {
                self.config.token = token;
                let _ = done.send(Ok(()));
            }
            Command::Credentials { done } => drop(done.send((self.config.url.clone(), self.config.token.clone()))),
            Command::DropConnection | Command::Close => {}
            c => self.queued.push(c),
        }
    }

    /// A client frame (JSON v1 text) as a message in the connection's encoding.
    fn out(&self, json: String) -> WsMessage {
        match self.config.encoding {
            Encoding::Json => WsMessage::Text(json.into()),
            // The driver only builds well-formed frames; were one not, the server reads JSON
            // text on a compact connection too, and answers it with a precise error.
            Encoding::Proto => match decode_client_frame(&json) {
                Ok(frame) => WsMessage::Binary(encode_client_frame(&frame)),
                Err(_) => WsMessage::Text(json.into()),
            },
        }
    }

    fn id(&mut self) -> u64 {
        self.next_id += 1;
        self.next_id
    }

    async fn send_subscribe(&mut self, ws: &mut Ws, channel: &str) -> Result<(), WsError> {
        let id = self.id();
        let ch = &self.channels[channel];
        let mut f = serde_json::json!({ "type": "subscribe", "id": id, "channel": channel, "presence": ch.presence });
        if let Some(c) = &ch.cursor {
            f["since"] = c.clone().into();
        }
        self.pending.insert(id, Pending::Subscribe { channel: channel.to_owned(), resumed: ch.cursor.is_some() });
        ws.send(self.out(f.to_string())).await
    }

    /// A command while connected. Returns an outcome when the connection must end.
    async fn online(&mut self, ws: &mut Ws, c: Command) -> Result<Option<Outcome>, WsError> {
        match c {
            Command::Subscribe { channel, presence, since, events, done } => {
                self.add_channel(channel.clone(), presence, since, events, done);
                self.send_subscribe(ws, &channel).await?;
            }
            Command::Unsubscribe { channel } => {
                if self.channels.remove(&channel).is_some() {
                    let id = self.id();
                    ws.send(self.out(serde_json::json!({"type":"unsubscribe","id":id,"channel":channel}).to_string())).await?;
                }
            }
            Command::Publish { channel, data, idempotency_key, done } => {
                let id = self.id();
                let mut f = format!(r#"{{"type":"publish","id":{id},"channel":{},"data":{}"#, serde_json::Value::from(channel), data.get());
                if let Some(k) = idempotency_key {
                    f.push_str(&format!(r#","idempotency_key":{}"#, serde_json::Value::from(k)));
                }
                f.push('}');
                self.pending.insert(id, Pending::Publish(done));
                ws.send(self.out(f)).await?;
            }
            Command::Presence { channel, done } => {
                let id = self.id();
                self.pending.insert(id, Pending::Presence(done));
                ws.send(self.out(serde_json::json!({"type":"presence","id":id,"channel":channel}).to_string())).await?;
            }
            Command::Refresh { token, done } => {
                let id = self.id();
                self.config.token = token.clone();
                self.pending.insert(id, Pending::Refresh(done));
                ws.send(self.out(serde_json::json!({"type":"refresh","id":id,"token":token}).to_string())).await?;
            }
            Command::Credentials { done } => drop(done.send((self.config.url.clone(), self.config.token.clone()))),
            Command::Device { mut frame, done } => {
                let id = self.id();
                frame["id"] = id.into();
                self.pending.insert(id, Pending::Device(done));
                ws.send(self.out(frame.to_string())).await?;
            }
            Command::DropConnection => return Ok(Some(Outcome::Reconnect { after: Some(Duration::ZERO), reason: "dropped by the application".into() })),
            Command::Close => {
                let _ = ws.close(None).await;
                return Ok(Some(Outcome::Closed));
            }
        }
        Ok(None)
    }

    async fn serve(&mut self, mut ws: Ws, failures: &mut u32) -> Outcome {
        let mut hb = Duration::from_secs(30);
        let mut last_heard = Instant::now();
        let mut check = tokio::time::interval(Duration::from_millis(500));
        // The compact encoding's subscription numbers are per connection.
        let mut reader = ProtoReader::new();
        let channels: Vec<String> = self.channels.keys().cloned().collect();
        for ch in channels {
            if let Err(e) = self.send_subscribe(&mut ws, &ch).await {
                return Outcome::Reconnect { after: None, reason: e.to_string() };
            }
        }
        for c in std::mem::take(&mut self.queued) {
            match self.online(&mut ws, c).await {
                Ok(None) => {}
                Ok(Some(o)) => return o,
                Err(e) => return Outcome::Reconnect { after: None, reason: e.to_string() },
            }
        }
        loop {
            tokio::select! {
                c = self.rx.recv() => {
                    let Some(c) = c else {
                        let _ = ws.close(None).await;
                        return Outcome::Closed;
                    };
                    match self.online(&mut ws, c).await {
                        Ok(None) => {}
                        Ok(Some(o)) => return o,
                        Err(e) => return Outcome::Reconnect { after: None, reason: e.to_string() },
                    }
                }
                m = ws.next() => {
                    last_heard = Instant::now();
                    match m {
                        Some(Ok(WsMessage::Text(t))) => {
                            for line in split_batch(t.as_str()) {
                                match self.frame(&mut ws, line, &mut hb, failures).await {
                                    Ok(None) => {}
                                    Ok(Some(o)) => return o,
                                    Err(e) => return Outcome::Reconnect { after: None, reason: e.to_string() },
                                }
                            }
                        }
                        Some(Ok(WsMessage::Binary(b))) if self.config.encoding == Encoding::Proto => {
                            for json in reader.read(&b) {
                                let line = match &json {
                                    Ok(j) => std::str::from_utf8(j).unwrap_or_default(),
                                    Err(e) => {
                                        tracing::warn!(error = %e, "unreadable frame from server");
                                        continue;
                                    }
                                };
                                match self.frame(&mut ws, line, &mut hb, failures).await {
                                    Ok(None) => {}
                                    Ok(Some(o)) => return o,
                                    Err(e) => return Outcome::Reconnect { after: None, reason: e.to_string() },
                                }
                            }
                        }
                        Some(Ok(WsMessage::Close(f))) => {
                            let reason = f.map(|f| format!("closed by server: {} {}", u16::from(f.code), f.reason)).unwrap_or_else(|| "closed by server".into());
                            return Outcome::Reconnect { after: None, reason };
                        }
                        Some(Ok(_)) => {}
                        Some(Err(e)) => return Outcome::Reconnect { after: None, reason: e.to_string() },
                        None => return Outcome::Reconnect { after: None, reason: "connection closed".into() },
                    }
                }
                _ = check.tick() => {
                    if last_heard.elapsed() > 2 * hb {
                        return Outcome::Reconnect { after: Some(Duration::ZERO), reason: "heartbeat timeout".into() };
                    }
                }
            }
        }
    }

    async fn frame(&mut self, ws: &mut Ws, line: &str, hb: &mut Duration, failures: &mut u32) -> Result<Option<Outcome>, WsError> {
        let f: Frame<'_> = match serde_json::from_str(line) {
            Ok(f) => f,
            Err(e) => {
                tracing::warn!(error = %e, "unreadable frame from server");
                return Ok(None);
            }
        };
        let req_id = f.id.as_ref().and_then(|v| v.as_u64());
        match f.ty {
            "message" => {
                let (Some(channel), Some(cursor), Some(data)) = (f.channel, f.cursor, f.data) else { return Ok(None) };
                let Some(id) = f.id.as_ref().and_then(|v| v.as_str()).map(str::to_owned) else { return Ok(None) };
                let window = self.config.dedupe_window;
                if let Some(ch) = self.channels.get_mut(&channel) {
                    ch.cursor = Some(cursor.clone());
                    if ch.first_time(&id, window) {
                        let m = Message { channel, id, cursor, ts: f.ts.unwrap_or(0), data: data.to_owned() };
                        let _ = ch.events.send(Event::Message(m)).await;
                    }
                }
            }
            "welcome" => {
                *hb = Duration::from_millis(f.heartbeat_ms.unwrap_or(25_000));
                *failures = 0;
                let (connection_id, node) = (f.connection_id.unwrap_or_default(), f.node.unwrap_or_default());
                self.state.send_replace(ConnState::Connected { connection_id, node, compressed: self.compressed });
            }
            "subscribed" => {
                let Some(Pending::Subscribe { channel, resumed }) = req_id.and_then(|i| self.pending.remove(&i)) else { return Ok(None) };
                let recovered = f.recovered.unwrap_or(false);
                if let Some(ch) = self.channels.get_mut(&channel) {
                    if !resumed || !recovered {
                        ch.cursor = f.cursor;
                    }
                    if let Some(done) = ch.done.take() {
                        let _ = done.send(Ok(()));
                    }
                    let _ = ch.events.send(Event::Subscribed { resumed, recovered }).await;
                }
            }
            "published" => {
                if let Some(Pending::Publish(tx)) = req_id.and_then(|i| self.pending.remove(&i)) {
                    let _ = tx.send(Ok(Published {
                        cursor: f.cursor.unwrap_or_default(),
                        message_id: f.message_id.unwrap_or_default(),
                        duplicate: f.duplicate.unwrap_or(false),
                    }));
                }
            }
            "presence" => {
                if let Some(Pending::Presence(tx)) = req_id.and_then(|i| self.pending.remove(&i)) {
                    let _ = tx.send(serde_json::from_str(line).map_err(|e| ClientError::Refused { code: "bad_reply".into(), message: e.to_string() }));
                }
            }
            "refreshed" => {
                if let Some(Pending::Refresh(tx)) = req_id.and_then(|i| self.pending.remove(&i)) {
                    let _ = tx.send(Ok(()));
                }
            }
            "device" => {
                if let Some(Pending::Device(tx)) = req_id.and_then(|i| self.pending.remove(&i)) {
                    let _ = tx.send(Ok(f.registered.unwrap_or(false)));
                }
            }
            "join" | "leave" => {
                let (Some(channel), Some(m)) = (f.channel, f.member) else { return Ok(None) };
                if let Some(ch) = self.channels.get(&channel) {
                    let e = if f.ty == "join" {
                        Event::Join { connection_id: m.connection_id, user: m.user, info: m.info }
                    } else {
                        Event::Leave { connection_id: m.connection_id, user: m.user, info: m.info }
                    };
                    let _ = ch.events.send(e).await;
                }
            }
            "unsubscribed" => {
                if let (None, Some(code), Some(channel)) = (req_id, f.code, f.channel) {
                    if code == "lagged" && self.channels.contains_key(&channel) {
                        // A low-priority subscription shed by a backed-up connection: resume it
                        // from its cursor, losing nothing.
                        self.send_subscribe(ws, &channel).await?;
                    } else if let Some(ch) = self.channels.remove(&channel) {
                        let _ = ch.events.send(Event::Ended { code }).await;
                    }
                }
            }
            "ping" => ws.send(self.out(r#"{"type":"pong"}"#.into())).await?,
            "token_expiring" => {
                if let Some(source) = self.config.token_source.clone() {
                    match source().await {
                        Ok(token) => {
                            let id = self.id();
                            self.config.token = token.clone();
                            // Tracked like an application refresh, so its reply (or error) is
                            // matched to it and never mistaken for a connection error.
                            let (tx, _rx) = oneshot::channel();
                            self.pending.insert(id, Pending::Refresh(tx));
                            ws.send(self.out(serde_json::json!({"type":"refresh","id":id,"token":token}).to_string())).await?;
                        }
                        Err(e) => tracing::warn!(error = %e, "token source failed; the connection will close at expiry and reconnect"),
                    }
                }
            }
            "reconnect" => {
                let after = Duration::from_millis(f.after_ms.unwrap_or(0));
                return Ok(Some(Outcome::Reconnect { after: Some(after), reason: "server asked to reconnect".into() }));
            }
            "disconnect" => {
                let code = f.code.unwrap_or_default();
                let reason = f.reason.unwrap_or_default();
                // `revoked` means the token is dead, whatever `reconnect` says.
                let reconnect = f.reconnect.unwrap_or(false) && code != "revoked";
                for ch in self.channels.values() {
                    let _ = ch.events.send(Event::Disconnected { code: code.clone(), reason: reason.clone(), reconnect }).await;
                }
                return Ok(Some(if reconnect {
                    Outcome::Reconnect { after: None, reason: format!("{code}: {reason}") }
                } else {
                    Outcome::Ended { code, reason }
                }));
            }
            "error" => {
                let code = f.code.unwrap_or_default();
                let message = f.message.unwrap_or_default();
                let refused = ClientError::Refused { code: code.clone(), message: message.clone() };
                match req_id.and_then(|i| self.pending.remove(&i)) {
                    Some(Pending::Subscribe { channel, .. }) => {
                        if let Some(mut ch) = self.channels.remove(&channel)
                            && let Some(done) = ch.done.take() {
                                let _ = done.send(Err(refused));
                            }
                    }
                    Some(Pending::Publish(tx)) => drop(tx.send(Err(refused))),
                    Some(Pending::Presence(tx)) => drop(tx.send(Err(refused))),
                    Some(Pending::Refresh(tx)) => drop(tx.send(Err(refused))),
                    Some(Pending::Device(tx)) => drop(tx.send(Err(refused))),
                    None => match code.as_str() {
                        "unauthorized" | "token_expired" => return Ok(Some(Outcome::Failed(format!("{code}: {message}")))),
                        "lagged" => return Ok(Some(Outcome::Reconnect { after: Some(Duration::ZERO), reason: "lagged".into() })),
                        _ => tracing::warn!(%code, %message, "server error"),
                    },
                }
            }
            _ => {}
        }
        Ok(None)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_is_bounded_by_the_doubling_cap_and_the_maximum() {
        let mut c = ClientConfig::new("http://x", "t");
        c.backoff_initial = Duration::from_millis(100);
        c.backoff_max = Duration::from_secs(1);
        for f in 0..20 {
            let cap = (100u64 << f.min(16)).min(1000);
            for _ in 0..50 {
                assert!(backoff(&c, f).as_millis() as u64 <= cap);
            }
        }
    }

    #[test]
    fn dedupe_forgets_the_oldest_ids_beyond_the_window() {
        let (tx, _rx) = mpsc::channel(1);
        let mut ch = Channel { events: tx, presence: false, cursor: None, seen: HashSet::new(), order: VecDeque::new(), done: None };
        assert!(ch.first_time("a", 2));
        assert!(!ch.first_time("a", 2));
        assert!(ch.first_time("b", 2));
        assert!(ch.first_time("c", 2));
        assert!(ch.first_time("a", 2), "a fell out of the window");
        assert_eq!(ch.seen.len(), 2);
    }
}
