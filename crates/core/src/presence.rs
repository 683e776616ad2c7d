//! Presence: who is subscribed to which channel right now, with join and leave events.
//!
//! Membership is per connection: every subscription joins, every unsubscribe or disconnect
//! leaves. Entries belong to the edge node that holds the connection, so that when a node dies
//! its members can be removed in one step ([`Presence::node_gone`]). Two adapters implement the
//! trait: in memory (one process) and Redis (a region). Both pass `testing::presence_conformance`.

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use tokio::sync::broadcast;

use crate::names::ChannelKey;

/// What can go wrong talking to presence storage.
#[derive(Debug, Clone, thiserror::Error)]
pub enum PresenceError {
    /// Storage cannot be reached now.
    #[error("presence storage unavailable: {0}")]
    Unavailable(String),
}

/// One member of a channel: a connection and the user (token subject) behind it.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct PresenceMember {
    /// The connection's id (unique per connection, across nodes).
    pub connection_id: String,
    /// The token's `sub`.
    pub user: String,
}

/// A join or a leave.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PresenceChange {
    /// The member subscribed.
    Join,
    /// The member unsubscribed or disconnected.
    Leave,
}

/// A change in a channel's membership.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PresenceEvent {
    /// The channel.
    pub channel: ChannelKey,
    /// Join or leave.
    pub change: PresenceChange,
    /// Who.
    pub member: PresenceMember,
}

/// A channel's membership at one moment.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PresenceSnapshot {
    /// How many members the channel has (may exceed `members.len()` when a limit applied).
    pub occupancy: u64,
    /// Members, up to the requested limit.
    pub members: Vec<PresenceMember>,
}

/// Where presence changes go besides the live event stream: a Kafka topic, so that backends can
/// react to connects and disconnects. Called once per change, by the node that made it (or
/// reaped it), never for the silent write-back after a storage restart.
pub trait PresenceFeed: Send + Sync + 'static {
    /// One change; `node` is the edge the member was on. Must not block.
    fn publish(&self, node: &str, event: &PresenceEvent);
}

/// Presence storage for a region.
#[async_trait]
pub trait Presence: Send + Sync + 'static {
    /// Adds `member` to `channel` on behalf of `node`. Joining twice is a no-op (no second event).
    async fn join(&self, node: &str, channel: &ChannelKey, member: PresenceMember) -> Result<(), PresenceError>;

    /// Removes a connection from `channel`. Leaving when absent is a no-op (no event).
    async fn leave(&self, node: &str, channel: &ChannelKey, connection_id: &str) -> Result<(), PresenceError>;

    /// The channel's members, at most `limit` of them, and the total count.
    async fn snapshot(&self, channel: &ChannelKey, limit: usize) -> Result<PresenceSnapshot, PresenceError>;

    /// Removes every member `node` added (the node died or shut down), with a leave event each.
    async fn node_gone(&self, node: &str) -> Result<(), PresenceError>;

    /// Tells storage `node` is alive (adapters with TTLs refresh them).
    async fn heartbeat(&self, node: &str) -> Result<(), PresenceError>;

    /// Sends every later change this adapter makes to `feed` too (replacing an earlier feed).
    fn set_feed(&self, feed: std::sync::Arc<dyn PresenceFeed>);

    /// Every join and leave in the region from now on, for fan-out to local subscribers.
    /// A receiver that falls behind gets `RecvError::Lagged` and should re-read snapshots.
    fn events(&self) -> broadcast::Receiver<PresenceEvent>;
}
