//! [`Presence`] in Redis, shared by every edge node of a region.
//!
//! # Layout (keys under a prefix, `herald:presence:` by default)
//! - `ch:<channel key>`: a hash, connection id → `{"u": user, "n": node, "i": info}` (`"i"` only
//!   when the member has user info). Occupancy is `HLEN` (O(1) at any size); a snapshot reads at
//!   most `limit` members with `HSCAN`.
//! - `node:<node>`: a set of `<channel key>\n<connection id>`, what the node added, so that a
//!   dead node's members can be removed without scanning every channel.
//! - `conns:<node>`: a hash, connection id → `{"a": account, "u": user, "t": transport, "o":
//!   opened at}`, every open connection of the node (subscribed or not), so that whoever removes
//!   a dead node reports each of its connections closed (reason `node_gone`), once: an entry is
//!   reported by the script that deletes it.
//! - `uconns:<account>\n<user>`: a hash, connection id → node, a user's open connections (written
//!   and deleted by the same scripts as `conns:<node>`), so that they are listed without reading
//!   every node's.
//! - `orders`, `revocations`: the region's orders ([`RedisOrders`], in `orders.rs`).
//! - `alive:<node>`: a key with a TTL, refreshed by the node's heartbeat.
//! - `nodes`: the set of node ids that ever added a member.
//! - `gen`: a random value written on first contact; when Redis restarts empty it is gone,
//!   which tells every node to write its members back.
//! - pub/sub channel `events`: every join and leave, as JSON, published by the same Lua script
//!   that changes the hash (so an event is published iff the membership changed).
//!
//! # Liveness
//! Every adapter runs a background task that, every `ttl / 3`, refreshes `alive:<node>` for the
//! nodes it serves, and reaps nodes whose `alive` key expired (their members leave, one leave
//! event each, then its connections close; several reapers at once are safe because entries are
//! taken with `SPOP` and connections deleted by a script that reports only what it deleted). So
//! a dead node's members leave within `ttl + ttl / 3` (20 s with the default 15 s TTL).
//!
//! # Feed
//! Joins and leaves reach the feed with the channel's `HLEN` right after the change, read by
//! the script that made it, so a join with occupancy 1 and a leave with 0 are exactly the
//! channel's becoming occupied and vacated.
//!
//! # Faults
//! The adapter keeps a mirror of what its own nodes added (members and connections). Writes that fail while Redis is
//! unreachable return [`PresenceError::Unavailable`] and mark the mirror dirty; the next
//! successful heartbeat reconciles Redis with the mirror (adds what is missing, removes what is
//! stale). After a Redis restart (the `gen` key changed) members are written back without join
//! events, so subscribers see no churn; after this node was reaped (its TTL ran out during a
//! partition, and leaves were published) they are written back with join events.
//!
//! # Connecting
//! `redis://` or `rediss://` (TLS, verified against [`RedisLogin::ca_file`] or the system's
//! roots, with an optional client certificate), logging in as an ACL user with a password given
//! in the URL or in [`RedisLogin`]. Standalone Redis only (a single primary, or a managed
//! endpoint in front of one): the scripts touch keys of several channels, which Redis Cluster
//! would refuse, and there is no Sentinel discovery. Errors say which part failed: the login
//! (`WRONGPASS`), the TLS handshake, or reaching the server.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod orders;
#[cfg(feature = "testing")]
pub mod testing;

pub use orders::RedisOrders;

use async_trait::async_trait;
use futures_util::StreamExt;
use parking_lot::Mutex;
use redis::aio::ConnectionManager;
use redis::{AsyncCommands, Script};
use serde::{Deserialize, Serialize};
use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;
use tokio::sync::{RwLock, broadcast};
use tokio_util::sync::CancellationToken;

use herald_core::{AccountId, ChannelKey, Connection, FeedEvent, NODE_GONE, Presence, PresenceChange, PresenceError, PresenceEvent, PresenceFeed, PresenceMember, PresenceSnapshot, UserConnection, UserInfo};

/// Settings for [`RedisPresence`].
#[derive(Clone, Debug)]
pub struct RedisPresenceOptions {
    /// `redis://HOST:PORT[/DB]`.
    pub url: String,
    /// Key prefix; two regions sharing one Redis need different prefixes.
    pub prefix: String,
    /// How long a node's entries outlive its last heartbeat.
    pub ttl: Duration,
    /// User, password and TLS files given outside the URL.
    pub login: RedisLogin,
}

impl RedisPresenceOptions {
    /// Defaults: prefix `herald:presence:`, TTL 15 s, the login in the URL.
    pub fn new(url: impl Into<String>) -> Self {
        Self { url: url.into(), prefix: "herald:presence:".into(), ttl: Duration::from_secs(15), login: RedisLogin::default() }
    }
}

/// How to log in to Redis beyond what the URL says. Set fields win over the URL's.
#[derive(Clone, Default)]
pub struct RedisLogin {
    /// The ACL user.
    pub username: Option<String>,
    /// The password.
    pub password: Option<String>,
    /// PEM file of the CA(s) that sign the server's certificate (`rediss://`; default: the
    /// system's roots).
    pub ca_file: Option<PathBuf>,
    /// PEM files of this client's certificate and key, for `tls-auth-clients yes`.
    pub client_cert: Option<(PathBuf, PathBuf)>,
}

impl std::fmt::Debug for RedisLogin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisLogin")
            .field("username", &self.username)
            .field("password", &self.password.as_ref().map(|_| "<redacted>"))
            .field("ca_file", &self.ca_file)
            .field("client_cert", &self.client_cert)
            .finish()
    }
}

/// A URL or TLS file that cannot be used, found before connecting.
#[derive(Debug)]
pub struct SettingsError(pub String);

impl std::fmt::Display for SettingsError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for SettingsError {}

impl From<SettingsError> for PresenceError {
    fn from(e: SettingsError) -> Self {
        PresenceError::Unavailable(e.0)
    }
}

/// A connection manager that connects at first use and reconnects by itself: `timeout` to
/// connect and for each answer, two retries, at most 2 s between them. What every Herald process
/// talking to the region's Redis uses (presence, orders, the push and webhooks workers).
pub fn lazy_manager(client: redis::Client, timeout: Duration) -> redis::RedisResult<ConnectionManager> {
    let cfg = redis::aio::ConnectionManagerConfig::new()
        .set_connection_timeout(Some(timeout))
        .set_response_timeout(Some(timeout))
        .set_number_of_retries(2)
        .set_max_delay(Duration::from_secs(2));
    ConnectionManager::new_lazy_with_config(client, cfg)
}

/// A client for `url` with `login`, without connecting; the TLS files are read now, and an
/// unreadable one is an error naming it (so `--check` finds it too).
pub fn client(url: &str, login: &RedisLogin) -> Result<redis::Client, SettingsError> {
    use redis::IntoConnectionInfo;
    let bad = SettingsError;
    let mut info = url.into_connection_info().map_err(|e| bad(format!("bad Redis URL: {e}")))?;
    let mut settings = info.redis_settings().clone();
    if let Some(u) = &login.username {
        settings = settings.set_username(u);
    }
    if let Some(p) = &login.password {
        settings = settings.set_password(p);
    }
    info = info.set_redis_settings(settings);
    let tls = matches!(info.addr(), redis::ConnectionAddr::TcpTls { .. });
    if !tls {
        if login.ca_file.is_some() || login.client_cert.is_some() {
            return Err(bad("TLS files are set but the URL is not rediss://".into()));
        }
        return redis::Client::open(info).map_err(|e| bad(e.to_string()));
    }
    // The redis crate builds its TLS settings on rustls's process-wide provider; which one that is
    // cannot be inferred when a build enables more than one (or none), so name the one Herald
    // uses everywhere (ring). A provider installed earlier stays.
    let _ = tokio_rustls::rustls::crypto::ring::default_provider().install_default();
    if login.ca_file.is_none() && login.client_cert.is_none() {
        return redis::Client::open(info).map_err(|e| bad(e.to_string()));
    }
    let read = |p: &PathBuf, what: &str| std::fs::read(p).map_err(|e| bad(format!("cannot read the {what} {}: {e}", p.display())));
    let root_cert = login.ca_file.as_ref().map(|p| read(p, "CA file")).transpose()?;
    let client_tls = match &login.client_cert {
        Some((cert, key)) => Some(redis::ClientTlsConfig { client_cert: read(cert, "client certificate")?, client_key: read(key, "client key")? }),
        None => None,
    };
    redis::Client::build_with_tls(info, redis::TlsCertificates { client_tls, root_cert }).map_err(|e| bad(format!("TLS settings: {e}")))
}

/// What one node added, by (channel, connection id).
type Mirror = HashMap<String, HashMap<(ChannelKey, String), PresenceMember>>;

/// What one node holds open, by connection id; and the reasons of closes not yet written.
#[derive(Default)]
struct ConnectionMirror {
    open: HashMap<String, HashMap<String, Connection>>,
    /// `(node, connection id)` → the connection and why it closed, for closes whose write
    /// failed (written by the next reconciliation).
    closing: HashMap<(String, String), (Connection, String)>,
}

/// Presence in Redis. Cheap to share (`Arc`); dropping the last handle stops its background task.
pub struct RedisPresence {
    inner: Arc<Inner>,
    stop: CancellationToken,
}

struct Inner {
    opts: RedisPresenceOptions,
    conn: ConnectionManager,
    events: broadcast::Sender<PresenceEvent>,
    /// Per node this adapter serves: what it added.
    mirror: Mutex<Mirror>,
    /// Per node this adapter serves: its open connections.
    connections: Mutex<ConnectionMirror>,
    /// Held for reading by join/leave, for writing by a reconciliation, so that a leave cannot
    /// slip between reading the mirror and writing it back.
    writes: RwLock<()>,
    /// The `gen` value last seen; `None` before the first heartbeat.
    generation: Mutex<Option<String>>,
    /// A write failed since the last reconciliation.
    dirty: AtomicBool,
    scripts: Scripts,
    feed: parking_lot::RwLock<Option<Arc<dyn PresenceFeed>>>,
}

struct Scripts {
    join: Script,
    leave: Script,
    heartbeat: Script,
    connect: Script,
    disconnect: Script,
}

/// An event as published on the pub/sub channel.
#[derive(Serialize, Deserialize)]
struct WireEvent {
    /// Channel key.
    c: String,
    /// `j` or `l`.
    k: String,
    /// Connection id.
    i: String,
    /// The stored member JSON (`{"u":…,"n":…}`, with `"i"` when it has info).
    m: String,
}

/// A member as stored in `ch:<channel>` (values written before info existed have no `i`).
#[derive(Serialize, Deserialize)]
struct StoredMember {
    u: String,
    n: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    i: Option<UserInfo>,
}

impl StoredMember {
    /// The member stored under `connection_id`.
    fn member(&self, connection_id: String) -> PresenceMember {
        PresenceMember { connection_id, user: self.u.clone(), info: self.i.clone() }
    }
}

/// A connection as stored in `conns:<node>`.
#[derive(Serialize, Deserialize)]
struct StoredConnection {
    a: String,
    u: String,
    t: String,
    /// Opened at (ms); absent in entries written before it was recorded.
    #[serde(default)]
    o: u64,
}

/// Returns the channel's member count after the join, or 0 when the member was there already.
const JOIN: &str = r#"
if redis.call('HSETNX', KEYS[1], ARGV[1], ARGV[2]) == 1 then
  redis.call('SADD', KEYS[2], ARGV[3])
  redis.call('SADD', KEYS[3], ARGV[4])
  if ARGV[5] == '1' then
    redis.call('PUBLISH', ARGV[6], cjson.encode({c=ARGV[7], k='j', i=ARGV[1], m=ARGV[2]}))
  end
  return redis.call('HLEN', KEYS[1])
end
return 0
"#;

/// Returns `{stored member, member count after}`, or nil when the member was not there.
const LEAVE: &str = r#"
local m = redis.call('HGET', KEYS[1], ARGV[1])
redis.call('SREM', KEYS[2], ARGV[2])
if not m then return false end
redis.call('HDEL', KEYS[1], ARGV[1])
redis.call('PUBLISH', ARGV[3], cjson.encode({c=ARGV[4], k='l', i=ARGV[1], m=m}))
return {m, redis.call('HLEN', KEYS[1])}
"#;

/// Returns 1 when the connection was added, 0 when it was there.
const CONNECT: &str = r#"
if redis.call('HSETNX', KEYS[1], ARGV[1], ARGV[2]) == 1 then
  redis.call('SADD', KEYS[2], ARGV[3])
  redis.call('HSET', KEYS[3], ARGV[1], ARGV[3])
  return 1
end
return 0
"#;

/// Returns the stored connection when this call deleted it, else nil: one report per connection
/// whoever else tries. Its user's index entry goes with it (the key is built from the stored
/// account and user: standalone Redis only, as the layout says).
const DISCONNECT: &str = r#"
local c = redis.call('HGET', KEYS[1], ARGV[1])
if not c then return false end
redis.call('HDEL', KEYS[1], ARGV[1])
local ok, d = pcall(cjson.decode, c)
if ok and d.a and d.u then
  redis.call('HDEL', ARGV[2] .. 'uconns:' .. d.a .. '\n' .. d.u, ARGV[1])
end
return c
"#;

const HEARTBEAT: &str = r#"
local g = redis.call('GET', KEYS[2])
if not g then
  redis.call('SET', KEYS[2], ARGV[3])
  g = ARGV[3]
end
redis.call('SADD', KEYS[3], ARGV[1])
local existed = redis.call('SET', KEYS[1], '1', 'PX', ARGV[2], 'XX')
if not existed then
  redis.call('SET', KEYS[1], '1', 'PX', ARGV[2])
  return {g, 0}
end
return {g, 1}
"#;

/// `url` with its password (if any) replaced by `***`, for logs.
pub fn redacted(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else { return url.to_owned() };
    let (authority, path) = rest.split_once('/').map_or((rest, ""), |(a, p)| (a, p));
    match authority.rsplit_once('@') {
        Some((userinfo, host)) if userinfo.contains(':') => {
            let user = userinfo.split(':').next().unwrap_or("");
            let slash = if rest.contains('/') { "/" } else { "" };
            format!("{scheme}://{user}:***@{host}{slash}{path}")
        }
        _ => url.to_owned(),
    }
}

/// A Redis error, saying which part failed so that an operator knows where to look.
fn unavailable(e: redis::RedisError) -> PresenceError {
    PresenceError::Unavailable(format!("{}: {e}", cause(&e)))
}

/// `login refused`, `TLS` or `unreachable`, for logs.
fn cause(e: &redis::RedisError) -> &'static str {
    let text = e.to_string();
    if e.kind() == redis::ErrorKind::AuthenticationFailed || text.contains("WRONGPASS") || text.contains("NOAUTH") || text.contains("NOPERM") {
        "login refused (check the user and password)"
    } else if ["certificate", "tls", "TLS", "handshake", "CertificateRequired", "UnknownIssuer"].iter().any(|w| text.contains(w)) {
        "TLS failed (check the CA, the client certificate, and that the port speaks TLS)"
    } else {
        "unreachable"
    }
}

fn node_entry(channel: &ChannelKey, connection_id: &str) -> String {
    format!("{channel}\n{connection_id}")
}

impl RedisPresence {
    /// Connects, subscribes to the event channel and starts the heartbeat/reaper task for
    /// `node`. If Redis is unreachable this still returns (after a short wait) and keeps
    /// retrying in the background: presence must never stop an edge from serving.
    pub async fn start(opts: RedisPresenceOptions, node: &str) -> Result<Self, PresenceError> {
        let client = client(&opts.url, &opts.login)?;
        let conn = lazy_manager(client.clone(), Duration::from_secs(2)).map_err(unavailable)?;
        let inner = Arc::new(Inner {
            conn,
            events: broadcast::channel(8192).0,
            mirror: Mutex::new(HashMap::from([(node.to_owned(), HashMap::new())])),
            connections: Mutex::new(ConnectionMirror::default()),
            writes: RwLock::new(()),
            generation: Mutex::new(None),
            dirty: AtomicBool::new(false),
            scripts: Scripts {
                join: Script::new(JOIN),
                leave: Script::new(LEAVE),
                heartbeat: Script::new(HEARTBEAT),
                connect: Script::new(CONNECT),
                disconnect: Script::new(DISCONNECT),
            },
            feed: parking_lot::RwLock::new(None),
            opts,
        });
        let stop = CancellationToken::new();
        let (subscribed_tx, subscribed_rx) = tokio::sync::oneshot::channel();
        tokio::spawn(pump_events(inner.clone(), client, stop.clone(), subscribed_tx));
        // Wait (briefly) for the subscription so that events of the first joins are not missed.
        if tokio::time::timeout(Duration::from_secs(3), subscribed_rx).await.is_err() {
            tracing::warn!(url = %redacted(&inner.opts.url), "presence: Redis unreachable at start; serving without it and retrying");
        }
        if let Err(e) = inner.beat_all().await {
            tracing::warn!(error = %e, "presence: first heartbeat failed");
        }
        tokio::spawn(liveness(inner.clone(), stop.clone()));
        Ok(Self { inner, stop })
    }

    /// Stops the background task without removing this node's members (as a crash would; used
    /// by tests to simulate a dead node).
    pub fn abandon(&self) {
        self.stop.cancel();
    }

    /// Stops heartbeating `node` without removing its members: they leave when its TTL runs
    /// out, unless it is synced again first. For nodes mirrored from another region.
    pub fn forget_node(&self, node: &str) {
        self.inner.mirror.lock().remove(node);
        self.inner.connections.lock().open.remove(node);
    }

    /// Makes `node`'s members exactly `members` (joins and leaves for the differences, with
    /// events), and heartbeats it from now on. For nodes mirrored from another region.
    pub async fn sync_node(&self, node: &str, members: Vec<(ChannelKey, PresenceMember)>) -> Result<(), PresenceError> {
        let wanted = members.into_iter().map(|(c, m)| ((c, m.connection_id.clone()), m)).collect();
        self.inner.mirror.lock().insert(node.to_owned(), wanted);
        // Alive first (see `join`), then exactly these members.
        self.inner.mark_dirty(self.inner.beat(node).await)?;
        let r = self.inner.reconcile(node, true).await;
        self.inner.mark_dirty(r)
    }
}

/// One member of another region's store.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RemoteEntry {
    /// The channel.
    pub channel: ChannelKey,
    /// The node that added it there.
    pub node: String,
    /// Who.
    pub member: PresenceMember,
}

/// Reads another region's presence store, for mirroring it (the replicator's presence link).
pub struct RemoteStore {
    client: redis::Client,
    prefix: String,
}

impl RemoteStore {
    /// A reader of the store at `url` under `prefix`, logging in with `login`.
    pub fn new(url: &str, login: &RedisLogin, prefix: &str) -> Result<Self, PresenceError> {
        Ok(Self { client: client(url, login)?, prefix: prefix.to_owned() })
    }

    /// Every member the region's own edges added (entries it mirrors from other regions, whose
    /// node names contain `/`, are left out, so that regions never mirror each other in loops).
    pub async fn snapshot(&self) -> Result<Vec<RemoteEntry>, PresenceError> {
        let mut conn = self.client.get_multiplexed_async_connection().await.map_err(unavailable)?;
        let pattern = format!("{}ch:*", self.prefix);
        let mut keys: Vec<String> = Vec::new();
        let mut cursor: u64 = 0;
        loop {
            let (next, page): (u64, Vec<String>) =
                redis::cmd("SCAN").arg(cursor).arg("MATCH").arg(&pattern).arg("COUNT").arg(1000).query_async(&mut conn).await.map_err(unavailable)?;
            keys.extend(page);
            if next == 0 {
                break;
            }
            cursor = next;
        }
        let mut out = Vec::new();
        for key in keys {
            let Ok(channel) = ChannelKey::parse(&key[pattern.len() - 1..]) else { continue };
            let members: HashMap<String, String> = conn.hgetall(&key).await.map_err(unavailable)?;
            for (id, stored) in members {
                let Ok(m) = serde_json::from_str::<StoredMember>(&stored) else { continue };
                if !m.n.contains('/') {
                    out.push(RemoteEntry { channel: channel.clone(), member: m.member(id), node: m.n });
                }
            }
        }
        Ok(out)
    }

    /// The region's joins and leaves from now on (its own edges' only), until the connection
    /// drops.
    pub async fn changes(&self) -> Result<impl futures_util::Stream<Item = (PresenceChange, RemoteEntry)> + Send + 'static, PresenceError> {
        let mut ps = self.client.get_async_pubsub().await.map_err(unavailable)?;
        ps.subscribe(format!("{}events", self.prefix)).await.map_err(unavailable)?;
        Ok(ps.into_on_message().filter_map(|msg| async move {
            let w: WireEvent = serde_json::from_slice(msg.get_payload_bytes()).ok()?;
            let m: StoredMember = serde_json::from_str(&w.m).ok()?;
            if m.n.contains('/') {
                return None;
            }
            let change = match w.k.as_str() {
                "j" => PresenceChange::Join,
                "l" => PresenceChange::Leave,
                _ => return None,
            };
            Some((change, RemoteEntry { channel: ChannelKey::parse(&w.c).ok()?, member: m.member(w.i), node: m.n }))
        }))
    }
}

impl Drop for RedisPresence {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

impl Inner {
    fn key(&self, rest: &str) -> String {
        format!("{}{rest}", self.opts.prefix)
    }

    /// `uconns:<account>\n<user>`, a user's open connections.
    fn user_key(&self, account: &AccountId, user: &str) -> String {
        self.key(&format!("uconns:{account}\n{user}"))
    }

    fn events_channel(&self) -> String {
        self.key("events")
    }

    async fn write_join(&self, node: &str, channel: &ChannelKey, member: &PresenceMember, publish: bool) -> Result<bool, PresenceError> {
        let stored = serde_json::to_string(&StoredMember { u: member.user.clone(), n: node.to_owned(), i: member.info.clone() }).expect("serializable");
        let mut conn = self.conn.clone();
        let occupancy: u64 = self
            .scripts
            .join
            .key(self.key(&format!("ch:{channel}")))
            .key(self.key(&format!("node:{node}")))
            .key(self.key("nodes"))
            .arg(&member.connection_id)
            .arg(stored)
            .arg(node_entry(channel, &member.connection_id))
            .arg(node)
            .arg(if publish { "1" } else { "0" })
            .arg(self.events_channel())
            .arg(channel.to_string())
            .invoke_async(&mut conn)
            .await
            .map_err(unavailable)?;
        if occupancy > 0 && publish {
            let event = PresenceEvent { channel: channel.clone(), change: PresenceChange::Join, member: member.clone() };
            self.feed(node, FeedEvent::Presence { event, occupancy });
        }
        Ok(occupancy > 0)
    }

    fn feed(&self, node: &str, event: FeedEvent) {
        if let Some(feed) = &*self.feed.read() {
            feed.publish(node, &event);
        }
    }

    async fn write_leave(&self, node: &str, channel: &str, connection_id: &str) -> Result<(), PresenceError> {
        let mut conn = self.conn.clone();
        // The stored member and the count after, when it was there (the script removed it).
        let removed: Option<(String, u64)> = self
            .scripts
            .leave
            .key(self.key(&format!("ch:{channel}")))
            .key(self.key(&format!("node:{node}")))
            .arg(connection_id)
            .arg(format!("{channel}\n{connection_id}"))
            .arg(self.events_channel())
            .arg(channel)
            .invoke_async(&mut conn)
            .await
            .map_err(unavailable)?;
        if let (Some((stored, occupancy)), Ok(channel)) = (removed, ChannelKey::parse(channel))
            && let Ok(m) = serde_json::from_str::<StoredMember>(&stored) {
                let member = m.member(connection_id.to_owned());
                self.feed(&m.n, FeedEvent::Presence { event: PresenceEvent { channel, change: PresenceChange::Leave, member }, occupancy });
            }
        Ok(())
    }

    /// Adds a connection to `conns:<node>`; with `publish`, reports it opened when it was not
    /// there.
    async fn write_connect(&self, node: &str, connection: &Connection, publish: bool) -> Result<(), PresenceError> {
        let stored =
            StoredConnection { a: connection.account.as_str().to_owned(), u: connection.user.clone(), t: connection.transport.clone(), o: connection.opened_at_ms };
        let mut conn = self.conn.clone();
        let added: i64 = self
            .scripts
            .connect
            .key(self.key(&format!("conns:{node}")))
            .key(self.key("nodes"))
            .key(self.user_key(&connection.account, &connection.user))
            .arg(&connection.connection_id)
            .arg(serde_json::to_string(&stored).expect("serializable"))
            .arg(node)
            .invoke_async(&mut conn)
            .await
            .map_err(unavailable)?;
        if added == 1 && publish {
            self.feed(node, FeedEvent::ConnectionOpened(connection.clone()));
        }
        Ok(())
    }

    /// Deletes a connection from `conns:<node>` and reports it closed, if this call deleted it.
    async fn write_disconnect(&self, node: &str, connection_id: &str, reason: &str) -> Result<(), PresenceError> {
        let mut conn = self.conn.clone();
        let removed: Option<String> =
            self.scripts.disconnect.key(self.key(&format!("conns:{node}"))).arg(connection_id).arg(&self.opts.prefix).invoke_async(&mut conn).await.map_err(unavailable)?;
        if let Some(stored) = removed
            && let Ok(c) = serde_json::from_str::<StoredConnection>(&stored)
            && let Ok(account) = AccountId::new(&c.a)
        {
            let connection = Connection { connection_id: connection_id.to_owned(), account, user: c.u, transport: c.t, opened_at_ms: c.o };
            self.feed(node, FeedEvent::ConnectionClosed { connection, reason: reason.to_owned() });
        }
        Ok(())
    }

    fn mark_dirty<T>(&self, r: Result<T, PresenceError>) -> Result<T, PresenceError> {
        if r.is_err() {
            self.dirty.store(true, Ordering::Release);
        }
        r
    }

    /// Heartbeats every node this adapter serves; reconciles when Redis lost data, when a node
    /// was reaped, or after failed writes.
    async fn beat_all(&self) -> Result<(), PresenceError> {
        let nodes: Vec<String> = self.mirror.lock().keys().cloned().collect();
        for node in nodes {
            self.beat(&node).await?;
        }
        Ok(())
    }

    /// A node's first member or connection: make the node alive before it is listed in `nodes`,
    /// or another edge's reaper could take it for dead in between.
    async fn alive_first(&self, node: &str) {
        let new_node = !self.mirror.lock().contains_key(node);
        if new_node {
            self.mirror.lock().entry(node.to_owned()).or_default();
            if let Err(e) = self.beat(node).await {
                self.dirty.store(true, Ordering::Release);
                tracing::debug!(error = %e, node, "presence: first heartbeat of a node failed");
            }
        }
    }

    async fn beat(&self, node: &str) -> Result<(), PresenceError> {
        let candidate = format!("{:016x}", rand::random::<u64>());
        let mut conn = self.conn.clone();
        let (generation, existed): (String, i64) = self
            .scripts
            .heartbeat
            .key(self.key(&format!("alive:{node}")))
            .key(self.key("gen"))
            .key(self.key("nodes"))
            .arg(node)
            .arg(self.opts.ttl.as_millis() as u64)
            .arg(candidate)
            .invoke_async(&mut conn)
            .await
            .map_err(unavailable)?;
        let previous = self.generation.lock().replace(generation.clone());
        let redis_lost_data = previous.as_ref().is_some_and(|p| *p != generation);
        let reaped = existed == 0 && previous.is_some();
        let dirty = self.dirty.swap(false, Ordering::AcqRel);
        if redis_lost_data || reaped || dirty || previous.is_none() {
            // Silent after a Redis restart (nobody saw these members leave); with join events
            // when this node was reaped (everybody saw them leave).
            let result = self.reconcile(node, !redis_lost_data).await;
            if result.is_err() {
                self.dirty.store(true, Ordering::Release);
            }
            if redis_lost_data {
                tracing::info!(node, "presence: Redis lost its data; this node's members were written back");
            } else if reaped {
                tracing::warn!(node, "presence: this node was reaped (heartbeats missed); its members were written back");
            }
            result?;
        }
        Ok(())
    }

    /// Makes Redis hold exactly the mirror's entries for `node`.
    async fn reconcile(&self, node: &str, publish: bool) -> Result<(), PresenceError> {
        let _exclusive = self.writes.write().await;
        let wanted: HashMap<(ChannelKey, String), PresenceMember> = self.mirror.lock().get(node).cloned().unwrap_or_default();
        let mut conn = self.conn.clone();
        let present: HashSet<String> = conn.smembers(self.key(&format!("node:{node}"))).await.map_err(unavailable)?;
        let wanted_entries: HashSet<String> = wanted.keys().map(|(c, id)| node_entry(c, id)).collect();
        for stale in present.difference(&wanted_entries) {
            if let Some((channel, id)) = stale.split_once('\n') {
                self.write_leave(node, channel, id).await?;
            }
        }
        for ((channel, _), member) in &wanted {
            self.write_join(node, channel, member, publish).await?;
        }
        // Then the connections: closes that could not be written (with their reason; a
        // connection left over from an earlier life of this node name died with it), and the
        // open ones written back (reported opened again only if they had been reported closed).
        let (open, closing) = {
            let c = self.connections.lock();
            let closing: HashMap<String, (Connection, String)> = c.closing.iter().filter(|((n, _), _)| n == node).map(|((_, id), v)| (id.clone(), v.clone())).collect();
            (c.open.get(node).cloned().unwrap_or_default(), closing)
        };
        let stored: HashSet<String> = conn.hkeys(self.key(&format!("conns:{node}"))).await.map_err(unavailable)?;
        for id in stored.iter().filter(|id| !open.contains_key(*id)) {
            let reason = closing.get(id).map_or(NODE_GONE, |(_, r)| r.as_str());
            self.write_disconnect(node, id, reason).await?;
        }
        if !publish {
            // Redis lost its data, and with it these connections: nobody else can report them.
            for (id, (connection, reason)) in &closing {
                if !stored.contains(id) {
                    self.feed(node, FeedEvent::ConnectionClosed { connection: connection.clone(), reason: reason.clone() });
                }
            }
        }
        // (When this node was reaped instead, they were reported closed with `node_gone`.)
        self.connections.lock().closing.retain(|(n, _), _| n != node);
        for c in open.values() {
            self.write_connect(node, c, publish).await?;
        }
        Ok(())
    }

    /// Removes every member `node` added, one leave event each.
    async fn clear_node(&self, node: &str) -> Result<(), PresenceError> {
        let set = self.key(&format!("node:{node}"));
        let mut conn = self.conn.clone();
        loop {
            let batch: Vec<String> = redis::cmd("SPOP").arg(&set).arg(256).query_async(&mut conn).await.map_err(unavailable)?;
            if batch.is_empty() {
                break;
            }
            let leaves = batch.iter().filter_map(|e| e.split_once('\n')).map(|(ch, id)| self.write_leave(node, ch, id));
            for r in futures_util::future::join_all(leaves).await {
                r?;
            }
        }
        // Its connections close after their leaves.
        let conns = self.key(&format!("conns:{node}"));
        let ids: Vec<String> = conn.hkeys(&conns).await.map_err(unavailable)?;
        for id in ids {
            self.write_disconnect(node, &id, NODE_GONE).await?;
        }
        let _: () = redis::pipe()
            .srem(self.key("nodes"), node)
            .ignore()
            .del(self.key(&format!("alive:{node}")))
            .ignore()
            .query_async(&mut conn)
            .await
            .map_err(unavailable)?;
        Ok(())
    }

    /// Clears every node whose `alive` key expired.
    async fn reap(&self) -> Result<(), PresenceError> {
        let mut conn = self.conn.clone();
        let nodes: Vec<String> = conn.smembers(self.key("nodes")).await.map_err(unavailable)?;
        let ours: HashSet<String> = self.mirror.lock().keys().cloned().collect();
        for node in nodes.into_iter().filter(|n| !ours.contains(n)) {
            let alive: bool = conn.exists(self.key(&format!("alive:{node}"))).await.map_err(unavailable)?;
            if !alive {
                tracing::info!(node = %node, "presence: node missed its heartbeats; removing its members");
                self.clear_node(&node).await?;
            }
        }
        Ok(())
    }

    fn decode(&self, payload: &[u8]) -> Option<PresenceEvent> {
        let w: WireEvent = serde_json::from_slice(payload).ok()?;
        let m: StoredMember = serde_json::from_str(&w.m).ok()?;
        let change = match w.k.as_str() {
            "j" => PresenceChange::Join,
            "l" => PresenceChange::Leave,
            _ => return None,
        };
        Some(PresenceEvent {
            channel: ChannelKey::parse(&w.c).ok()?,
            change,
            member: m.member(w.i),
        })
    }
}

/// Forwards pub/sub events to the local broadcast channel, reconnecting forever.
async fn pump_events(inner: Arc<Inner>, client: redis::Client, stop: CancellationToken, subscribed: tokio::sync::oneshot::Sender<()>) {
    let mut subscribed = Some(subscribed);
    let mut delay = Duration::from_millis(100);
    while !stop.is_cancelled() {
        let attempt = async {
            let mut ps = client.get_async_pubsub().await?;
            ps.subscribe(inner.events_channel()).await?;
            Ok::<_, redis::RedisError>(ps)
        };
        let ps = tokio::select! {
            _ = stop.cancelled() => return,
            r = tokio::time::timeout(Duration::from_secs(3), attempt) => r,
        };
        match ps {
            Ok(Ok(mut ps)) => {
                delay = Duration::from_millis(100);
                if let Some(s) = subscribed.take() {
                    let _ = s.send(());
                }
                let mut stream = ps.on_message();
                loop {
                    tokio::select! {
                        _ = stop.cancelled() => return,
                        msg = stream.next() => match msg {
                            Some(msg) => match inner.decode(msg.get_payload_bytes()) {
                                // No receivers is fine: nobody asked for events.
                                Some(e) => { let _ = inner.events.send(e); }
                                None => tracing::warn!("presence: undecodable event on the pub/sub channel"),
                            },
                            None => break,
                        },
                    }
                }
                tracing::warn!("presence: lost the Redis pub/sub connection; events are missed until it is back");
            }
            Ok(Err(e)) => tracing::debug!(error = %e, "presence: pub/sub connect failed"),
            Err(_) => tracing::debug!("presence: pub/sub connect timed out"),
        }
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep(delay) => {}
        }
        delay = (delay * 2).min(Duration::from_secs(2));
    }
}

/// Heartbeats and reaps every `ttl / 3`.
async fn liveness(inner: Arc<Inner>, stop: CancellationToken) {
    let period = inner.opts.ttl / 3;
    let mut tick = tokio::time::interval(period);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tick.tick().await;
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tick.tick() => {}
        }
        if let Err(e) = inner.beat_all().await {
            tracing::warn!(error = %e, "presence: heartbeat failed");
            continue;
        }
        if let Err(e) = inner.reap().await {
            tracing::warn!(error = %e, "presence: reaping dead nodes failed");
        }
    }
}

#[async_trait]
impl Presence for RedisPresence {
    async fn join(&self, node: &str, channel: &ChannelKey, member: PresenceMember) -> Result<(), PresenceError> {
        let inner = &self.inner;
        inner.alive_first(node).await;
        let _shared = inner.writes.read().await;
        inner.mirror.lock().entry(node.to_owned()).or_default().insert((channel.clone(), member.connection_id.clone()), member.clone());
        inner.mark_dirty(inner.write_join(node, channel, &member, true).await).map(|_| ())
    }

    async fn leave(&self, node: &str, channel: &ChannelKey, connection_id: &str) -> Result<(), PresenceError> {
        let inner = &self.inner;
        let _shared = inner.writes.read().await;
        if let Some(m) = inner.mirror.lock().get_mut(node) {
            m.remove(&(channel.clone(), connection_id.to_owned()));
        }
        inner.mark_dirty(inner.write_leave(node, &channel.to_string(), connection_id).await)
    }

    async fn snapshot(&self, channel: &ChannelKey, limit: usize) -> Result<PresenceSnapshot, PresenceError> {
        let inner = &self.inner;
        let key = inner.key(&format!("ch:{channel}"));
        let mut conn = inner.conn.clone();
        let occupancy: u64 = conn.hlen(&key).await.map_err(unavailable)?;
        let mut members = Vec::new();
        let mut cursor: u64 = 0;
        while members.len() < limit {
            let (next, page): (u64, Vec<(String, String)>) = redis::cmd("HSCAN")
                .arg(&key)
                .arg(cursor)
                .arg("COUNT")
                .arg(limit.clamp(10, 1000))
                .query_async(&mut conn)
                .await
                .map_err(unavailable)?;
            for (id, stored) in page {
                if members.len() == limit {
                    break;
                }
                if let Ok(m) = serde_json::from_str::<StoredMember>(&stored) {
                    members.push(m.member(id));
                }
            }
            if next == 0 {
                break;
            }
            cursor = next;
        }
        Ok(PresenceSnapshot { occupancy, members })
    }

    async fn node_gone(&self, node: &str) -> Result<(), PresenceError> {
        self.inner.mirror.lock().remove(node);
        {
            let mut c = self.inner.connections.lock();
            c.open.remove(node);
            c.closing.retain(|(n, _), _| n != node);
        }
        self.inner.clear_node(node).await
    }

    async fn heartbeat(&self, node: &str) -> Result<(), PresenceError> {
        self.inner.mirror.lock().entry(node.to_owned()).or_default();
        self.inner.beat(node).await
    }

    async fn connect(&self, node: &str, connection: Connection) -> Result<(), PresenceError> {
        let inner = &self.inner;
        inner.alive_first(node).await;
        let _shared = inner.writes.read().await;
        inner.connections.lock().open.entry(node.to_owned()).or_default().insert(connection.connection_id.clone(), connection.clone());
        inner.mark_dirty(inner.write_connect(node, &connection, true).await)
    }

    async fn disconnect(&self, node: &str, connection_id: &str, reason: &str) -> Result<(), PresenceError> {
        let inner = &self.inner;
        let _shared = inner.writes.read().await;
        let Some(connection) = inner.connections.lock().open.get_mut(node).and_then(|m| m.remove(connection_id)) else { return Ok(()) };
        let r = inner.write_disconnect(node, connection_id, reason).await;
        if r.is_err() {
            inner.connections.lock().closing.insert((node.to_owned(), connection_id.to_owned()), (connection, reason.to_owned()));
        }
        inner.mark_dirty(r)
    }

    async fn user_connections(&self, account: &AccountId, user: &str) -> Result<Vec<UserConnection>, PresenceError> {
        let inner = &self.inner;
        let mut conn = inner.conn.clone();
        let mut index: Vec<(String, String)> = conn.hgetall(inner.user_key(account, user)).await.map_err(unavailable)?;
        index.sort();
        if index.is_empty() {
            return Ok(Vec::new());
        }
        let mut pipe = redis::pipe();
        for (id, node) in &index {
            pipe.hget(inner.key(&format!("conns:{node}")), id);
        }
        let stored: Vec<Option<String>> = pipe.query_async(&mut conn).await.map_err(unavailable)?;
        Ok(index
            .into_iter()
            .zip(stored)
            .filter_map(|((id, node), s)| {
                let c: StoredConnection = serde_json::from_str(&s?).ok()?;
                let connection = Connection { connection_id: id, account: account.clone(), user: c.u, transport: c.t, opened_at_ms: c.o };
                Some(UserConnection { node, connection })
            })
            .collect())
    }

    fn report(&self, node: &str, event: FeedEvent) {
        self.inner.feed(node, event);
    }

    fn set_feed(&self, feed: Arc<dyn PresenceFeed>) {
        *self.inner.feed.write() = Some(feed);
    }

    fn events(&self) -> broadcast::Receiver<PresenceEvent> {
        self.inner.events.subscribe()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_password_in_a_url_is_never_logged() {
        assert_eq!(redacted("rediss://herald:s3cret@redis:6380/2"), "rediss://herald:***@redis:6380/2");
        assert_eq!(redacted("redis://:s3cret@redis"), "redis://:***@redis");
        assert_eq!(redacted("redis://herald@redis:6379"), "redis://herald@redis:6379");
        assert_eq!(redacted("redis://redis:6379/0"), "redis://redis:6379/0");
    }

    #[test]
    fn tls_files_without_rediss_and_unreadable_files_are_errors_naming_them() {
        let login = RedisLogin { ca_file: Some("/nonexistent/ca.pem".into()), ..RedisLogin::default() };
        let e = client("redis://127.0.0.1:6379", &login).expect_err("plain URL with a CA").to_string();
        assert!(e.contains("not rediss://"), "{e}");
        let e = client("rediss://127.0.0.1:6380", &login).expect_err("missing CA file").to_string();
        assert!(e.contains("/nonexistent/ca.pem"), "{e}");
    }
}
