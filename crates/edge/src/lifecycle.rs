//! What every client connection goes through, whatever its transport (WebSocket, SSE; long-poll
//! requests have no session): its id, the welcome frame, presence join and leave, a drain, an
//! expired token and the way it ended. The transports call these so that they behave and count
//! alike.

use herald_core::{ChannelKey, PresenceMember};
use herald_engine::outbox::{CloseReason, OutItem, Outbox};
use herald_protocol::{ErrorCode, PROTOCOL_VERSION, ServerFrame};

use crate::state::Edge;

/// A new connection id: unique per connection across nodes (64 random bits).
pub fn connection_id() -> String {
    format!("{:016x}", rand::random::<u64>())
}

/// The first frame of every session.
pub fn welcome<'a>(edge: &'a Edge, connection_id: &'a str, expires_at: u64) -> ServerFrame<'a> {
    ServerFrame::Welcome {
        connection_id,
        node: &edge.node,
        region: edge.region.as_str(),
        heartbeat_ms: edge.config.heartbeat_ms,
        protocol: PROTOCOL_VERSION,
        expires_at: Some(expires_at),
    }
}

/// Adds a connection to a channel's presence. A failure is counted and logged, never fatal: the
/// subscription works without presence.
pub async fn join(edge: &Edge, channel: &ChannelKey, member: PresenceMember) {
    if let Err(e) = edge.presence.join(&edge.node, channel, member).await {
        edge.metrics.presence_errors.increment(1);
        tracing::warn!(error = %e, channel = %channel, "presence join failed");
    }
}

/// Removes a connection from a channel's presence (counted and logged like [`join`]; a member
/// left behind goes when its node's presence expires).
pub async fn leave(edge: &Edge, channel: &ChannelKey, connection_id: &str) {
    if let Err(e) = edge.presence.leave(&edge.node, channel, connection_id).await {
        edge.metrics.presence_errors.increment(1);
        tracing::warn!(error = %e, channel = %channel, "presence leave failed");
    }
}

/// A random delay in `[0, drain_grace/2]`, so drained clients do not all reconnect at once.
pub fn drain_delay_ms(edge: &Edge) -> u64 {
    let spread = edge.config.drain_grace_ms / 2;
    if spread == 0 { 0 } else { rand::random::<u64>() % spread }
}

/// The node drains: tells the client when to reconnect and closes the connection.
pub fn drain(edge: &Edge, outbox: &Outbox) {
    outbox.push(OutItem::Frame(ServerFrame::Reconnect { after_ms: drain_delay_ms(edge), reason: "drain" }.encode()));
    outbox.close(CloseReason::Drain);
}

/// Ends a connection with a fatal error frame (counted by its code).
pub fn fail(edge: &Edge, outbox: &Outbox, code: ErrorCode, message: &str) {
    edge.metrics.protocol_error(code);
    outbox.push(OutItem::Frame(ServerFrame::Error { id: None, code, message }.encode()));
    outbox.close(CloseReason::Fatal(code));
}

/// The token's life is over.
pub fn token_expired(edge: &Edge, outbox: &Outbox) {
    fail(edge, outbox, ErrorCode::TokenExpired, "token has expired; reconnect with a new one");
}

/// Counts how a connection ended, for the reasons that have their own metric.
pub fn ended(edge: &Edge, reason: CloseReason) {
    if reason == CloseReason::Lagged {
        edge.metrics.lagged_disconnects.increment(1);
    }
}
