//! What every client connection goes through, whatever its transport (WebSocket, SSE; long-poll
//! requests have no session): its id, the welcome frame, its opening and closing in presence
//! (for `connection_opened`/`connection_closed` webhooks), its place among the node's live
//! sessions (where a backend's disconnect or revocation finds it), presence join and leave, a
//! drain, an expired token and the way it ended. The transports call these so that they behave
//! and count alike.

use parking_lot::Mutex;
use std::collections::HashMap;
use std::sync::Arc;

use herald_core::{ChannelKey, Connection, PresenceMember, TokenFacts};
use herald_engine::outbox::{CloseReason, OutItem, Outbox};
use herald_protocol::{DisconnectCode, ErrorCode, PROTOCOL_VERSION, ServerFrame};

use crate::auth::Grant;
use crate::state::Edge;

/// How a session reaches its client.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Transport {
    /// A WebSocket.
    WebSocket,
    /// Server-Sent Events.
    Sse,
}

impl Transport {
    /// `websocket` or `sse`, as presence and the APIs name it.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::WebSocket => "websocket",
            Self::Sse => "sse",
        }
    }
}

/// One open session as orders see it: whose token, and how to end it.
struct LiveSession {
    grant: Grant,
    outbox: Arc<Outbox>,
    transport: Transport,
}

/// The node's open sessions by connection id.
#[derive(Default)]
pub struct LiveSessions(Mutex<HashMap<String, LiveSession>>);

impl LiveSessions {
    /// Ends every session `matches` picks (connection id, token) with a `disconnect` frame;
    /// returns how many.
    pub fn end(&self, matches: impl Fn(&str, TokenFacts<'_>) -> bool, code: DisconnectCode, reason: &str, reconnect: bool) -> usize {
        let sessions = self.0.lock();
        let mut n = 0;
        for (id, s) in sessions.iter().filter(|(id, s)| matches(id, s.grant.facts())) {
            tracing::info!(conn = %id, account = %s.grant.account, code = code.as_str(), "session ended by a backend's order");
            disconnect(&s.outbox, s.transport, code, reason, reconnect);
            n += 1;
        }
        n
    }
}

/// Keeps a session among the node's live sessions while it is held.
pub struct Live {
    edge: Arc<Edge>,
    connection_id: String,
}

impl Drop for Live {
    fn drop(&mut self) {
        self.edge.live.0.lock().remove(&self.connection_id);
    }
}

/// Sends the `disconnect` frame (an SSE `disconnect` event) and closes the connection: 4010 or
/// 4011 on a WebSocket, the end of the stream on SSE.
pub fn disconnect(outbox: &Outbox, transport: Transport, code: DisconnectCode, reason: &str, reconnect: bool) {
    let frame = ServerFrame::Disconnect { code, reason, reconnect }.encode();
    let item = match transport {
        Transport::WebSocket => OutItem::Frame(frame),
        Transport::Sse => {
            let mut event = b"event: disconnect\ndata: ".to_vec();
            event.extend_from_slice(&frame);
            event.push(b'\n');
            OutItem::Raw(event.into())
        }
    };
    // A closing connection takes no more frames: it ends anyway.
    outbox.push(item);
    outbox.close(CloseReason::Ordered(code));
}

/// A session's token changed (`refresh`): orders now judge it by the new one.
pub fn refreshed(edge: &Edge, connection_id: &str, grant: &Grant) {
    if let Some(s) = edge.live.0.lock().get_mut(connection_id) {
        s.grant = grant.clone();
    }
}

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

/// Adds a session to the node's live sessions (for as long as the returned guard lives) and
/// records its connection in presence, before any of its joins. A revocation that arrived
/// after its token was verified ends it at once. A presence failure is counted and logged,
/// never fatal (like [`join`]).
pub async fn opened(edge: &Arc<Edge>, connection_id: &str, grant: &Grant, transport: Transport, outbox: &Arc<Outbox>) -> Live {
    let live = LiveSession { grant: grant.clone(), outbox: outbox.clone(), transport };
    edge.live.0.lock().insert(connection_id.to_owned(), live);
    if let Some(reason) = edge.standing.refusal(grant.facts()) {
        disconnect(outbox, transport, DisconnectCode::Revoked, &reason, false);
    }
    let connection = Connection {
        connection_id: connection_id.to_owned(),
        account: grant.account.clone(),
        user: grant.user.clone(),
        transport: transport.as_str().to_owned(),
        opened_at_ms: herald_core::now_ms(),
    };
    if let Err(e) = edge.presence.connect(&edge.node, connection).await {
        edge.metrics.presence_errors.increment(1);
        tracing::warn!(error = %e, "presence: recording a connection failed");
    }
    Live { edge: edge.clone(), connection_id: connection_id.to_owned() }
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
/// `peer_gone`, `disconnected` or `revoked` (a backend's order), or the error code the connection
/// was ended with.
pub fn close_reason_name(reason: Option<CloseReason>) -> &'static str {
    match reason {
        Some(CloseReason::ClientClosed) => "client_closed",
        Some(CloseReason::Timeout) => "timeout",
        Some(CloseReason::Lagged) => "lagged",
        Some(CloseReason::Drain) => "drain",
        Some(CloseReason::Fatal(code)) => code.as_str(),
        Some(CloseReason::Ordered(code)) => code.as_str(),
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
