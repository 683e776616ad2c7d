//! JSON v1 server frames read back, so that a compact connection's writer can re-encode the
//! control frames the session queued as JSON (replies, presence events, errors). Sessions and
//! the fan-out hub then stay encoding-blind, and the JSON path is untouched; control frames are
//! rare next to records, which never take this path.

use bytes::Bytes;
use serde::Deserialize;

use herald_core::PresenceMember;

use super::reader::ReadError;
use super::server::encode_server_frame;
use crate::client::RequestId;
use crate::codes::ErrorCode;
use crate::server::{DisconnectCode, ServerFrame};

/// A server control frame with owned fields, as JSON v1 carries it.
#[derive(Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum Owned {
    Welcome { connection_id: String, node: String, region: String, heartbeat_ms: u64, protocol: u32, expires_at: Option<u64> },
    Subscribed { id: Option<RequestId>, channel: String, cursor: String, recovered: bool },
    Unsubscribed { id: Option<RequestId>, channel: String, code: Option<ErrorCode> },
    Paused { id: RequestId, channel: String, cursor: String },
    Published { id: RequestId, channel: String, cursor: String, message_id: String, duplicate: bool },
    Presence { id: RequestId, channel: String, occupancy: u64, members: Vec<PresenceMember> },
    Join { channel: String, member: PresenceMember },
    Leave { channel: String, member: PresenceMember },
    TokenExpiring { expires_at: u64 },
    Refreshed { id: RequestId, expires_at: u64 },
    Pong { id: Option<RequestId> },
    Ping {},
    Error { id: Option<RequestId>, code: ErrorCode, message: String },
    Reconnect { after_ms: u64, reason: String },
    Device { id: RequestId, registered: bool },
    Disconnect { code: DisconnectCode, reason: String, reconnect: bool },
}

/// What a JSON control frame is to the compact writer: its channel when it starts or ends a
/// subscription (the writer keeps its numbers), and a way to encode it with a number.
pub struct ControlFrame(Owned);

/// The subscription change a control frame makes.
pub enum SubChange<'a> {
    /// `subscribed` to this channel.
    Subscribed(&'a str),
    /// `unsubscribed` from this channel.
    Unsubscribed(&'a str),
    /// None.
    None,
}

impl ControlFrame {
    /// Reads a JSON v1 control frame (with or without its newline).
    pub fn parse(json: &[u8]) -> Result<Self, ReadError> {
        serde_json::from_slice(json).map(Self).map_err(|e| ReadError(format!("not a JSON v1 control frame: {e}")))
    }

    /// The subscription this frame starts or ends.
    pub fn change(&self) -> SubChange<'_> {
        match &self.0 {
            Owned::Subscribed { channel, .. } => SubChange::Subscribed(channel),
            Owned::Unsubscribed { channel, .. } => SubChange::Unsubscribed(channel),
            _ => SubChange::None,
        }
    }

    /// The frame in the compact encoding, length-prefixed; `sub` numbers a `subscribed` frame.
    pub fn encode(&self, sub: u32) -> Bytes {
        let f = match &self.0 {
            Owned::Welcome { connection_id, node, region, heartbeat_ms, protocol, expires_at } => ServerFrame::Welcome {
                connection_id,
                node,
                region,
                heartbeat_ms: *heartbeat_ms,
                protocol: *protocol,
                expires_at: *expires_at,
            },
            Owned::Subscribed { id, channel, cursor, recovered } => ServerFrame::Subscribed { id: id.as_ref(), channel, cursor, recovered: *recovered },
            Owned::Unsubscribed { id, channel, code } => ServerFrame::Unsubscribed { id: id.as_ref(), channel, code: *code },
            Owned::Paused { id, channel, cursor } => ServerFrame::Paused { id, channel, cursor },
            Owned::Published { id, channel, cursor, message_id, duplicate } => ServerFrame::Published { id, channel, cursor, message_id, duplicate: *duplicate },
            Owned::Presence { id, channel, occupancy, members } => ServerFrame::Presence { id, channel, occupancy: *occupancy, members },
            Owned::Join { channel, member } => ServerFrame::Join { channel, member },
            Owned::Leave { channel, member } => ServerFrame::Leave { channel, member },
            Owned::TokenExpiring { expires_at } => ServerFrame::TokenExpiring { expires_at: *expires_at },
            Owned::Refreshed { id, expires_at } => ServerFrame::Refreshed { id, expires_at: *expires_at },
            Owned::Pong { id } => ServerFrame::Pong { id: id.as_ref() },
            Owned::Ping {} => ServerFrame::Ping {},
            Owned::Error { id, code, message } => ServerFrame::Error { id: id.as_ref(), code: *code, message },
            Owned::Reconnect { after_ms, reason } => ServerFrame::Reconnect { after_ms: *after_ms, reason },
            Owned::Device { id, registered } => ServerFrame::Device { id, registered: *registered },
            Owned::Disconnect { code, reason, reconnect } => ServerFrame::Disconnect { code: *code, reason, reconnect: *reconnect },
        };
        encode_server_frame(&f, sub)
    }
}
