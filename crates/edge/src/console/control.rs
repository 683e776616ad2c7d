//! What the console needs from a control plane, as a trait: the edge knows no gRPC, the binary
//! implements it over the control plane's `Admin` service.

use serde::Serialize;

/// Why a control-plane call failed, as the console reports it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ControlCallError {
    /// The request was malformed (a bad name, a value out of range).
    #[error("{0}")]
    Invalid(String),
    /// Well formed, but refused in this state (an unknown node).
    #[error("{0}")]
    Refused(String),
    /// The control plane refused the console's admin token.
    #[error("the control plane refused the console's admin token (console.control_admin_token): {0}")]
    Unauthenticated(String),
    /// No member answered, or none leads now.
    #[error("the control plane is unavailable: {0}")]
    Unavailable(String),
}

/// A control-plane member.
#[derive(Clone, Debug, Serialize)]
pub struct Member {
    /// Its Raft id.
    pub id: u64,
    /// Its address.
    pub address: String,
    /// `leader`, `voter` or `learner`.
    pub role: &'static str,
}

/// The Raft group's state, as one member sees it.
#[derive(Clone, Debug, Serialize)]
pub struct ControlStatus {
    /// The member that answered.
    pub this_node: u64,
    /// The leader (0: none known).
    pub leader: u64,
    /// The Raft term.
    pub term: u64,
    /// The last log index.
    pub last_log_index: u64,
    /// The last applied index.
    pub last_applied: u64,
    /// Every member.
    pub members: Vec<Member>,
}

/// An edge as the control plane knows it.
#[derive(Clone, Debug, Serialize)]
pub struct EdgeNode {
    /// Its node name.
    pub node: String,
    /// Its region.
    pub region: String,
    /// Where clients reach it.
    pub address: String,
    /// A heartbeat was seen recently.
    pub healthy: bool,
    /// It has a drain order.
    pub draining: bool,
    /// Open connections at its last heartbeat.
    pub connections: u64,
    /// Milliseconds since its last heartbeat (-1: none).
    pub last_heartbeat_ms_ago: i64,
    /// Its Herald version (empty: not reported).
    pub version: String,
    /// Deliveries per second over the last minute.
    pub deliveries_per_second: f64,
    /// Mean publish-to-fan-out milliseconds over the last minute.
    pub fanout_lag_ms: u64,
}

/// An account's limits (0: the edge's default).
#[derive(Clone, Copy, Debug, Default, Serialize, serde::Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct Limits {
    /// Open connections.
    pub connections: u64,
    /// Publishes per second.
    pub publish_per_second: u64,
    /// Subscriptions per connection.
    pub max_subscriptions: u32,
    /// Largest message, bytes.
    pub max_message_bytes: u32,
}

/// An account: its keys by digest (never the keys) and its limits.
#[derive(Clone, Debug, Serialize)]
pub struct AccountView {
    /// The account.
    pub name: String,
    /// Its publish API keys: `(id, sha256 digest)`.
    pub keys: Vec<KeyDigest>,
    /// Its token verification keys: `(kid, algorithm)`.
    pub token_keys: Vec<(String, String)>,
    /// Its limits.
    pub limits: Limits,
}

/// A publish API key as stored: its id and digest.
#[derive(Clone, Debug, Serialize)]
pub struct KeyDigest {
    /// The key's id (the digest's first 12 hex digits).
    pub id: String,
    /// `sha256:` + hex digest.
    pub sha256: String,
}

/// The control-plane calls the console makes.
#[async_trait::async_trait]
pub trait ControlView: Send + Sync + 'static {
    /// Members, leader, term and indexes.
    async fn status(&self) -> Result<ControlStatus, ControlCallError>;
    /// Every registered edge.
    async fn nodes(&self) -> Result<Vec<EdgeNode>, ControlCallError>;
    /// Orders `node` to drain.
    async fn drain(&self, node: &str) -> Result<(), ControlCallError>;
    /// Every account.
    async fn accounts(&self) -> Result<Vec<AccountView>, ControlCallError>;
    /// Creates `account` or sets its limits.
    async fn put_limits(&self, account: &str, limits: Limits) -> Result<AccountView, ControlCallError>;
}
