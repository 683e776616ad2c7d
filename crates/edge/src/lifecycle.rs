//! What every client connection goes through, whatever its transport (WebSocket, SSE; long-poll
//! requests have no session): its id, the welcome frame, its opening and closing in presence
//! (for `connection_opened`/`connection_closed` webhooks), presence join and leave, a drain, an
//! expired token and the way it ended. The transports call these so that they behave and count
//! alike.

use herald_core::{ChannelKey, Connection, PresenceMember};
use herald_engine::outbox::{CloseReason, OutItem, Outbox};
use herald_protocol::{ErrorCode, PROTOCOL_VERSION, ServerFrame};

use crate::auth::Grant;
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

/// Records a session's connection in presence, before any of its joins. A failure is counted
/// and logged, never fatal (like [`join`]).
pub async fn opened(edge: &Edge, connection_id: &str, grant: &Grant, transport: &str) {
    let connection = Connection { connection_id: connection_id.to_owned(), account: grant.account.clone(), user: grant.user.clone(), transport: transport.to_owned() };
    if let Err(e) = edge.presence.connect(&edge.node, connection).await {
        edge.metrics.presence_errors.increment(1);
        tracing::warn!(error = %e, "presence: recording a connection failed");
    }
}

/// Records the end of a session, after its leaves, with why it ended (`None`: the outbox was
/// never closed, so the peer went away).
pub async fn closed(edge: &Edge, connection_id: &str, reason: Option<CloseReason>) {
    if let Err(e) = edge.presence.disconnect(&edge.node, connection_id, close_reason_name(reason)).await {
        edge.metrics.presence_errors.increment(1);
        tracing::warn!(error = %e, "presence: recording a closed connection failed");
    }
}

/// The `reason` of a `connection_closed` event: `client_closed`, `timeout`, `lagged`, `drain`,
/// `peer_gone`, or the error code the connection was ended with.
pub fn close_reason_name(reason: Option<CloseReason>) -> &'static str {
    match reason {
        Some(CloseReason::ClientClosed) => "client_closed",
        Some(CloseReason::Timeout) => "timeout",
        Some(CloseReason::Lagged) => "lagged",
        Some(CloseReason::Drain) => "drain",
        Some(CloseReason::Fatal(code)) => code.as_str(),
        Some(CloseReason::PeerGone) | None => "peer_gone",
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
