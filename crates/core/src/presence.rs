//! Presence: who is subscribed to which channel right now, with join and leave events.
//!
//! Membership is per connection: every subscription joins, every unsubscribe or disconnect
//! leaves. Entries belong to the edge node that holds the connection, so that when a node dies
//! its members can be removed in one step ([`Presence::node_gone`]). Two adapters implement the
//! trait: in memory (one process) and Redis (a region). Both pass `testing::presence_conformance`.
//!
//! Presence also knows every open connection of a node, subscribed or not
//! ([`Presence::connect`], [`Presence::disconnect`]), so that the connections of a node that died
//! are reported closed (reason [`NODE_GONE`]) exactly once, by whoever removes the node.
//! [`Presence::user_connections`] lists a user's open connections across the region.
//! Everything backends hear about (joins, leaves, connections, refused publishes) goes to the
//! [`PresenceFeed`] as a [`FeedEvent`].

use async_trait::async_trait;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::value::RawValue;
use std::sync::Arc;
use tokio::sync::broadcast;

use crate::names::{AccountId, ChannelKey, ChannelName};

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
    /// What the authorization proxy said about the user when the connection opened (absent from
    /// JSON when there is none).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub info: Option<UserInfo>,
}

/// User info an authorization proxy attached to a connection (its connect answer's `info`): one
/// JSON object of at most [`UserInfo::MAX_LEN`] bytes, kept in its compact form and shown with
/// the connection wherever presence shows it. Cheap to clone.
#[derive(Clone, Debug)]
pub struct UserInfo(Arc<RawValue>);

/// Why text is not [`UserInfo`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UserInfoError {
    /// Not JSON, or JSON but not an object.
    #[error("info is not a JSON object")]
    NotAnObject,
    /// Longer than [`UserInfo::MAX_LEN`] once compact.
    #[error("info is {0} bytes, more than {max}", max = UserInfo::MAX_LEN)]
    TooLarge(usize),
}

impl UserInfo {
    /// The largest info, in bytes of compact JSON.
    pub const MAX_LEN: usize = 1024;

    /// The info `json` holds: one JSON object (any whitespace), at most [`Self::MAX_LEN`] bytes
    /// once compact.
    pub fn parse(json: &str) -> Result<Self, UserInfoError> {
        let object: serde_json::Map<String, serde_json::Value> = serde_json::from_str(json).map_err(|_| UserInfoError::NotAnObject)?;
        Self::from_object(&object)
    }

    fn from_object(object: &serde_json::Map<String, serde_json::Value>) -> Result<Self, UserInfoError> {
        let compact = serde_json::to_string(object).map_err(|_| UserInfoError::NotAnObject)?;
        if compact.len() > Self::MAX_LEN {
            return Err(UserInfoError::TooLarge(compact.len()));
        }
        Ok(Self(Arc::from(RawValue::from_string(compact).map_err(|_| UserInfoError::NotAnObject)?)))
    }

    /// The compact JSON text.
    pub fn as_str(&self) -> &str {
        self.0.get()
    }
}

impl PartialEq for UserInfo {
    fn eq(&self, other: &Self) -> bool {
        self.as_str() == other.as_str()
    }
}

impl Eq for UserInfo {}

impl std::hash::Hash for UserInfo {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.as_str().hash(state);
    }
}

impl Serialize for UserInfo {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.0.serialize(s)
    }
}

impl<'de> Deserialize<'de> for UserInfo {
    /// From a JSON object (read as a map, not raw text, so that it also works inside the
    /// buffered content of tagged enums).
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let object = serde_json::Map::deserialize(d)?;
        Self::from_object(&object).map_err(serde::de::Error::custom)
    }
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

/// A client connection as presence records it: one per WebSocket or SSE session, subscribed
/// or not.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Connection {
    /// The connection's id (unique per connection, across nodes).
    pub connection_id: String,
    /// The account the token belongs to.
    pub account: AccountId,
    /// The token's `sub`.
    pub user: String,
    /// `websocket` or `sse`.
    pub transport: String,
    /// When it opened (ms since the Unix epoch).
    pub opened_at_ms: u64,
}

/// An open connection of a user, and the node that holds it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UserConnection {
    /// The edge node.
    pub node: String,
    /// The connection.
    pub connection: Connection,
}

/// The close reason of the connections of a node that was removed (it died, or stopped without
/// closing them).
pub const NODE_GONE: &str = "node_gone";

/// What a [`PresenceFeed`] is told.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum FeedEvent {
    /// A join or a leave, and the channel's member count right after it (so a join with
    /// occupancy 1 took the channel from empty to occupied, a leave with 0 emptied it).
    Presence {
        /// The change.
        event: PresenceEvent,
        /// Members of the channel right after the change.
        occupancy: u64,
    },
    /// A connection opened.
    ConnectionOpened(Connection),
    /// A connection closed.
    ConnectionClosed {
        /// Which.
        connection: Connection,
        /// Why: `client_closed`, `timeout`, `lagged`, `drain`, `peer_gone`, [`NODE_GONE`], or an
        /// error code of the protocol (`token_expired`, `frame_too_large`…) for a connection
        /// ended with an error frame.
        reason: String,
    },
    /// A publish was refused (nothing was written).
    PublishRejected {
        /// The account it was for.
        account: AccountId,
        /// The channel, when the refusal concerns one (an account's rate limit on a batch does
        /// not).
        channel: Option<ChannelName>,
        /// The protocol's error code (`rate_limited`, `message_too_large`…).
        code: String,
    },
}

impl FeedEvent {
    /// The account the event belongs to.
    pub fn account(&self) -> &AccountId {
        match self {
            Self::Presence { event, .. } => &event.channel.account,
            Self::ConnectionOpened(c) | Self::ConnectionClosed { connection: c, .. } => &c.account,
            Self::PublishRejected { account, .. } => account,
        }
    }
}

/// Where presence changes go besides the live event stream: a Kafka topic, so that backends can
/// react to connects and disconnects (`herald webhooks` reads it). Called once per change, by
/// the node that made it (or reaped it), never for the silent write-back after a storage
/// restart.
pub trait PresenceFeed: Send + Sync + 'static {
    /// One event; `node` is the edge the member or connection was on. Must not block.
    fn publish(&self, node: &str, event: &FeedEvent);
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

    /// Removes every member `node` added (the node died or shut down), with a leave event each,
    /// then closes its connections (reason [`NODE_GONE`]).
    async fn node_gone(&self, node: &str) -> Result<(), PresenceError>;

    /// Tells storage `node` is alive (adapters with TTLs refresh them).
    async fn heartbeat(&self, node: &str) -> Result<(), PresenceError>;

    /// Records `connection` as open on `node`, with a [`FeedEvent::ConnectionOpened`]. Opening
    /// it twice is a no-op (no second event).
    async fn connect(&self, node: &str, connection: Connection) -> Result<(), PresenceError>;

    /// Records a connection of `node` as closed, with a [`FeedEvent::ConnectionClosed`] giving
    /// `reason`. Closing an unknown (or already closed) connection is a no-op (no event).
    /// [`Presence::node_gone`] and the removal of a dead node close its connections with
    /// [`NODE_GONE`], after their leaves.
    async fn disconnect(&self, node: &str, connection_id: &str, reason: &str) -> Result<(), PresenceError>;

    /// Every open connection of `user` in `account`, on every node, in connection id order
    /// (without reading every node's connections).
    async fn user_connections(&self, account: &AccountId, user: &str) -> Result<Vec<UserConnection>, PresenceError>;

    /// Sends an event presence does not store (a refused publish) to the feed, if there is one.
    fn report(&self, node: &str, event: FeedEvent);

    /// Sends every later change this adapter makes to `feed` too (replacing an earlier feed).
    fn set_feed(&self, feed: std::sync::Arc<dyn PresenceFeed>);

    /// Every join and leave in the region from now on, for fan-out to local subscribers.
    /// A receiver that falls behind gets `RecvError::Lagged` and should re-read snapshots.
    fn events(&self) -> broadcast::Receiver<PresenceEvent>;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn user_info_is_one_compact_object_of_at_most_1_kib() {
        let info = UserInfo::parse("{ \"name\": \"Ann\",\n \"teams\": [1, 2] }").unwrap();
        assert_eq!(info.as_str(), r#"{"name":"Ann","teams":[1,2]}"#);
        assert_eq!(UserInfo::parse(info.as_str()).unwrap(), info, "parsing the compact form changes nothing");
        for bad in ["[1]", "\"ann\"", "null", "{", "{\"a\":1} {}", ""] {
            assert_eq!(UserInfo::parse(bad).unwrap_err(), UserInfoError::NotAnObject, "{bad:?}");
        }
        let fits = format!(r#"{{"a":"{}"}}"#, "x".repeat(UserInfo::MAX_LEN - 8));
        assert_eq!(UserInfo::parse(&fits).unwrap().as_str().len(), UserInfo::MAX_LEN);
        let over = format!(r#"{{"a":"{}"}}"#, "x".repeat(UserInfo::MAX_LEN - 7));
        assert_eq!(UserInfo::parse(&over).unwrap_err(), UserInfoError::TooLarge(UserInfo::MAX_LEN + 1));
    }

    #[test]
    fn a_member_without_info_has_no_info_key_and_one_with_info_reads_back() {
        let bare = PresenceMember { connection_id: "c1".into(), user: "ann".into(), info: None };
        assert_eq!(serde_json::to_string(&bare).unwrap(), r#"{"connection_id":"c1","user":"ann"}"#);
        let with = PresenceMember { info: Some(UserInfo::parse(r#"{"name":"Ann"}"#).unwrap()), ..bare };
        let json = serde_json::to_string(&with).unwrap();
        assert_eq!(json, r#"{"connection_id":"c1","user":"ann","info":{"name":"Ann"}}"#);
        assert_eq!(serde_json::from_str::<PresenceMember>(&json).unwrap(), with);
        assert!(serde_json::from_str::<PresenceMember>(r#"{"connection_id":"c1","user":"ann","info":[1]}"#).is_err());
    }
}
