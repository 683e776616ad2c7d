//! The Rust client SDK for Herald (used by services, the integration tests and the load tool).
//!
//! A [`Client`] keeps one WebSocket connection and hides its losses: it reconnects with
//! exponential backoff and full jitter, honours the server's `reconnect` hint, resubscribes every
//! channel with the cursor of the last message it delivered, and drops messages it has already
//! delivered (by message id), so a subscriber sees every record once, in order, across drops.
//!
//! # Layout
//! - [`Client`] and [`ClientConfig`]: the handle an application holds.
//! - [`Subscription`] and [`Event`]: what a subscriber receives.
//! - `history` (private): [`Client::history`] over HTTP, [`HistoryOptions`], [`HistoryPage`].
//! - `driver` (private): the task that owns the socket, the per-channel cursors and the
//!   dedupe windows.
//! - [`deflate`]: reading `permessage-deflate` messages ([`ClientConfig::compression`]),
//!   which tungstenite cannot; the load tool uses it too.
//!
//! `http://`/`ws://` and `https://`/`wss://` URLs both work: TLS (rustls) trusts the public web's
//! CAs, or [`ClientConfig::ca_file`]'s.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod deflate;
mod driver;
mod history;

pub use history::{HistoryOptions, HistoryPage};

use serde_json::value::RawValue;
use std::time::Duration;
use tokio::sync::{mpsc, oneshot, watch};

/// The personal channel of `user` (a token's `sub`): subscribe to it to receive what backends
/// publish to that user with `POST /v1/publish {"user": …}` (docs/protocol.md, "Personal
/// channels"). Only that user's tokens may subscribe to it. An error when the id is empty or too
/// long to name a channel.
pub fn personal_channel(user: &str) -> Result<String, String> {
    herald_core::ChannelName::personal(user).map(|c| c.as_str().to_owned()).map_err(|e| e.to_string())
}

/// Where fresh tokens come from (your backend's token endpoint, typically).
pub type TokenSource = std::sync::Arc<dyn Fn() -> std::pin::Pin<Box<dyn std::future::Future<Output = Result<String, String>> + Send>> + Send + Sync>;

/// Client settings.
#[derive(Clone)]
pub struct ClientConfig {
    /// The server's base URL, `http://host:port` (or `ws://…`).
    pub url: String,
    /// The client token (JWT).
    pub token: String,
    /// When set, the client asks it for a new token when the server says the current one is
    /// expiring (and refreshes the live connection), before every reconnect, and after the
    /// server refused an expired token. Short-lived tokens then need no other handling.
    pub token_source: Option<TokenSource>,
    /// First reconnect delay; doubles on each failure up to `backoff_max` (full jitter).
    pub backoff_initial: Duration,
    /// Largest reconnect delay.
    pub backoff_max: Duration,
    /// How long a request (subscribe, publish) may wait for its reply.
    pub request_timeout: Duration,
    /// Message ids remembered per channel for dedupe.
    pub dedupe_window: usize,
    /// The wire encoding: JSON v1 (the default) or the compact `herald.v1.proto`. Either way the
    /// application sees the same messages and cursors.
    pub encoding: herald_protocol::Encoding,
    /// For an `https://` (`wss://`) server: a PEM file of the CAs to trust instead of the
    /// public web's (a cluster with its own CA).
    pub ca_file: Option<String>,
    /// Ask for `permessage-deflate` (off by default). The server may refuse it (it is off
    /// unless configured, and a busy node stops granting it); the connection then works
    /// uncompressed. [`ConnState::Connected`] says which it is.
    pub compression: bool,
}

impl ClientConfig {
    /// Defaults: backoff 100 ms to 10 s, 10 s requests, 10k ids per channel.
    pub fn new(url: impl Into<String>, token: impl Into<String>) -> Self {
        Self {
            url: url.into(),
            token: token.into(),
            token_source: None,
            backoff_initial: Duration::from_millis(100),
            backoff_max: Duration::from_secs(10),
            request_timeout: Duration::from_secs(10),
            dedupe_window: 10_000,
            encoding: herald_protocol::Encoding::Json,
            ca_file: None,
            compression: false,
        }
    }
}

/// A delivered record.
#[derive(Clone, Debug)]
pub struct Message {
    /// The channel (relative to the account).
    pub channel: String,
    /// The stable message id.
    pub id: String,
    /// The record's cursor.
    pub cursor: String,
    /// Publish time, ms since the Unix epoch.
    pub ts: u64,
    /// The payload.
    pub data: Box<RawValue>,
}

/// What a subscription yields.
#[derive(Clone, Debug)]
pub enum Event {
    /// A record, never one already delivered.
    Message(Message),
    /// The subscription was (re)established. `recovered: false` after a resume means history
    /// was lost (retention, or the log was reset): refetch state.
    Subscribed {
        /// Whether this was a resume with a cursor.
        resumed: bool,
        /// Whether the history after the cursor was complete.
        recovered: bool,
    },
    /// A presence join.
    Join {
        /// The member's connection id.
        connection_id: String,
        /// The member's user.
        user: String,
        /// What the authorization proxy said about the user on connect (a JSON object), if
        /// anything.
        info: Option<serde_json::Value>,
    },
    /// A presence leave.
    Leave {
        /// The member's connection id.
        connection_id: String,
        /// The member's user.
        user: String,
        /// The info the member joined with, if any.
        info: Option<serde_json::Value>,
    },
    /// The server ended the subscription (e.g. a refreshed token no longer allows it).
    Ended {
        /// The protocol error code.
        code: String,
    },
    /// A backend ended the connection (the server's `disconnect` frame), told to every
    /// subscription. With `reconnect: false` (always so for `revoked`) the client stops: its
    /// state becomes [`ConnState::Ended`] and the application connects again when it decides to.
    Disconnected {
        /// `disconnected` or `revoked` (the token is dead: connect again with a new one).
        code: String,
        /// The backend's text.
        reason: String,
        /// Whether the client reconnects (after its usual backoff).
        reconnect: bool,
    },
}

/// A subscription's stream of events.
pub struct Subscription {
    /// The channel.
    pub channel: String,
    rx: mpsc::Receiver<Event>,
}

impl Subscription {
    /// The next event; `None` when the client is closed.
    pub async fn next(&mut self) -> Option<Event> {
        self.rx.recv().await
    }

    /// The next record, skipping other events.
    pub async fn next_message(&mut self) -> Option<Message> {
        loop {
            if let Event::Message(m) = self.next().await? {
                return Some(m);
            }
        }
    }
}

/// The connection's state.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ConnState {
    /// Opening a connection.
    Connecting,
    /// Connected and authenticated.
    Connected {
        /// The connection id from `welcome`.
        connection_id: String,
        /// The serving node.
        node: String,
        /// Whether the server's messages come compressed (`permessage-deflate` was agreed).
        compressed: bool,
    },
    /// Waiting before reconnecting, with the reason.
    Disconnected(String),
    /// Gave up (the token was refused); no more reconnects.
    Failed(String),
    /// A backend ended the connection and said not to reconnect (or revoked its token); no more
    /// reconnects.
    Ended {
        /// `disconnected` or `revoked`.
        code: String,
        /// The backend's text.
        reason: String,
    },
    /// Closed by the application.
    Closed,
}

/// What can fail.
#[derive(Debug, Clone, thiserror::Error)]
pub enum ClientError {
    /// The server refused the request.
    #[error("{code}: {message}")]
    Refused {
        /// The protocol error code.
        code: String,
        /// The message.
        message: String,
    },
    /// No reply in time.
    #[error("request timed out")]
    Timeout,
    /// The client is closed.
    #[error("client closed")]
    Closed,
    /// The connection dropped before the reply came; the request may or may not have taken
    /// effect (publish with an idempotency key to retry safely).
    #[error("connection lost before the reply")]
    Disconnected,
}

/// The reply to a publish.
#[derive(Clone, Debug)]
pub struct Published {
    /// The record's cursor.
    pub cursor: String,
    /// The record's message id.
    pub message_id: String,
    /// Whether the idempotency key matched an earlier record.
    pub duplicate: bool,
}

pub(crate) enum Command {
    Subscribe { channel: String, presence: bool, since: Option<String>, events: mpsc::Sender<Event>, done: oneshot::Sender<Result<(), ClientError>> },
    Unsubscribe { channel: String },
    Publish { channel: String, data: Box<RawValue>, idempotency_key: Option<String>, done: oneshot::Sender<Result<Published, ClientError>> },
    Presence { channel: String, done: oneshot::Sender<Result<serde_json::Value, ClientError>> },
    Refresh { token: String, done: oneshot::Sender<Result<(), ClientError>> },
    /// The server URL and the current token (for HTTP calls).
    Credentials { done: oneshot::Sender<(String, String)> },
    /// `register_device` or `unregister_device` without its id.
    Device { frame: serde_json::Value, done: oneshot::Sender<Result<bool, ClientError>> },
    DropConnection,
    Close,
}

/// A Herald client. Cheap to clone; the connection closes when [`Client::close`] is called or
/// every clone is dropped.
#[derive(Clone)]
pub struct Client {
    cmd: mpsc::Sender<Command>,
    state: watch::Receiver<ConnState>,
    timeout: Duration,
    ca_file: Option<String>,
}

impl Client {
    /// Starts connecting in the background.
    pub fn connect(config: ClientConfig) -> Self {
        let (cmd, rx) = mpsc::channel(1024);
        let (state_tx, state) = watch::channel(ConnState::Connecting);
        let (timeout, ca_file) = (config.request_timeout, config.ca_file.clone());
        tokio::spawn(driver::run(config, rx, state_tx));
        Self { cmd, state, timeout, ca_file }
    }

    /// The connection state, as a watch.
    pub fn state(&self) -> watch::Receiver<ConnState> {
        self.state.clone()
    }

    /// Waits until connected (or until `timeout`).
    pub async fn wait_connected(&self, timeout: Duration) -> Result<(), ClientError> {
        let mut st = self.state.clone();
        tokio::time::timeout(timeout, st.wait_for(|s| matches!(s, ConnState::Connected { .. } | ConnState::Failed(_) | ConnState::Ended { .. } | ConnState::Closed)))
            .await
            .map_err(|_| ClientError::Timeout)?
            .map_err(|_| ClientError::Closed)
            .and_then(|s| match &*s {
                ConnState::Connected { .. } => Ok(()),
                ConnState::Failed(m) => Err(ClientError::Refused { code: "failed".into(), message: m.clone() }),
                ConnState::Ended { code, reason } => Err(ClientError::Refused { code: code.clone(), message: reason.clone() }),
                _ => Err(ClientError::Closed),
            })
    }

    async fn request<T>(&self, make: impl FnOnce(oneshot::Sender<Result<T, ClientError>>) -> Command) -> Result<T, ClientError> {
        let (tx, rx) = oneshot::channel();
        self.cmd.send(make(tx)).await.map_err(|_| ClientError::Closed)?;
        match tokio::time::timeout(self.timeout, rx).await {
            Ok(Ok(r)) => r,
            Ok(Err(_)) => Err(ClientError::Closed),
            Err(_) => Err(ClientError::Timeout),
        }
    }

    /// Subscribes to `channel` (live from now). Resolves once the server confirmed it.
    pub async fn subscribe(&self, channel: &str) -> Result<Subscription, ClientError> {
        self.subscribe_with(channel, None, false).await
    }

    /// Subscribes, resuming after `since` when given, and asking for presence events.
    pub async fn subscribe_with(&self, channel: &str, since: Option<String>, presence: bool) -> Result<Subscription, ClientError> {
        let (events, rx) = mpsc::channel(65_536);
        let channel_s = channel.to_owned();
        self.request(|done| Command::Subscribe { channel: channel_s, presence, since, events, done }).await?;
        Ok(Subscription { channel: channel.to_owned(), rx })
    }

    /// Ends a subscription.
    pub async fn unsubscribe(&self, channel: &str) {
        let _ = self.cmd.send(Command::Unsubscribe { channel: channel.to_owned() }).await;
    }

    /// Publishes `data` (any JSON) on `channel`.
    pub async fn publish(&self, channel: &str, data: &serde_json::Value, idempotency_key: Option<&str>) -> Result<Published, ClientError> {
        let data = RawValue::from_string(data.to_string()).expect("a Value serializes to valid JSON");
        let (channel, idempotency_key) = (channel.to_owned(), idempotency_key.map(str::to_owned));
        self.request(|done| Command::Publish { channel, data, idempotency_key, done }).await
    }

    /// Who is subscribed to `channel` (the raw `presence` reply).
    pub async fn presence(&self, channel: &str) -> Result<serde_json::Value, ClientError> {
        let channel = channel.to_owned();
        self.request(|done| Command::Presence { channel, done }).await
    }

    /// Replaces the token on the live connection (and for later reconnects).
    pub async fn refresh(&self, token: &str) -> Result<(), ClientError> {
        let token = token.to_owned();
        self.request(|done| Command::Refresh { token, done }).await
    }

    /// A page of `channel`'s history (docs/protocol.md, "History") over HTTP with the client's
    /// current token: the newest records by default, then subscribe with `since` set to the
    /// page's `cursor` to continue live with nothing missed or repeated.
    pub async fn history(&self, channel: &str, options: &HistoryOptions) -> Result<HistoryPage, ClientError> {
        let (done, rx) = oneshot::channel();
        self.cmd.send(Command::Credentials { done }).await.map_err(|_| ClientError::Closed)?;
        let (url, token) = rx.await.map_err(|_| ClientError::Closed)?;
        history::fetch(&url, self.ca_file.as_deref(), &token, channel, options, self.timeout).await
    }

    /// Registers this device for mobile push (docs/push.md): `platform` is `apns` or `fcm`,
    /// `token` the device token the platform gave the app, `app` its bundle id (APNs) or Firebase
    /// project id (FCM). Sent on the connection (queued until connected).
    pub async fn register_device(&self, platform: &str, token: &str, app: &str) -> Result<(), ClientError> {
        let frame = serde_json::json!({ "type": "register_device", "platform": platform, "token": token, "app": app });
        self.request(|done| Command::Device { frame, done }).await.map(|_| ())
    }

    /// Removes this device's registration (when the user logs out).
    pub async fn unregister_device(&self, platform: &str, token: &str) -> Result<(), ClientError> {
        let frame = serde_json::json!({ "type": "unregister_device", "platform": platform, "token": token });
        self.request(|done| Command::Device { frame, done }).await.map(|_| ())
    }

    /// Drops the socket abruptly, as a network failure would (for tests and chaos drills); the
    /// client reconnects and resumes.
    pub async fn drop_connection(&self) {
        let _ = self.cmd.send(Command::DropConnection).await;
    }

    /// Closes the client.
    pub async fn close(&self) {
        let _ = self.cmd.send(Command::Close).await;
    }
}
