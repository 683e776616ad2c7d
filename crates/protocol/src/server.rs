//! Frames the server sends.

use bytes::{BufMut, Bytes, BytesMut};
use serde::Serialize;

use herald_core::PresenceMember;

use crate::client::RequestId;
use crate::codes::ErrorCode;

/// A frame from the server (all but `message`, which has [`encode_message`]).
#[derive(Debug, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ServerFrame<'a> {
    /// After authentication.
    Welcome {
        /// This connection's id.
        connection_id: &'a str,
        /// The serving node's name.
        node: &'a str,
        /// The serving region.
        region: &'a str,
        /// Server heartbeat interval.
        heartbeat_ms: u64,
        /// Protocol version.
        protocol: u32,
        /// The token's expiry (seconds since the Unix epoch).
        #[serde(skip_serializing_if = "Option::is_none")]
        expires_at: Option<u64>,
    },
    /// Reply to `subscribe`.
    Subscribed {
        /// Request id.
        #[serde(skip_serializing_if = "Option::is_none")]
        id: Option<&'a RequestId>,
        /// Channel.
        channel: &'a str,
        /// The current position (before any replayed record).
        cursor: &'a str,
        /// Whether the history after `since` is complete.
        recovered: bool,
    },
    /// Reply to `unsubscribe`, or a server-ended subscription (with `code`).
    Unsubscribed {
        /// Request id.
        #[serde(skip_serializing_if = "Option::is_none")]
        id: Option<&'a RequestId>,
        /// Channel.
        channel: &'a str,
        /// Why the server ended it.
        #[serde(skip_serializing_if = "Option::is_none")]
        code: Option<ErrorCode>,
    },
    /// Reply to `pause`: deliveries stopped after this position.
    Paused {
        /// Request id.
        id: &'a RequestId,
        /// Channel.
        channel: &'a str,
        /// Where `resume` will continue.
        cursor: &'a str,
    },
    /// Reply to `publish`.
    Published {
        /// Request id.
        id: &'a RequestId,
        /// Channel.
        channel: &'a str,
        /// The record's cursor.
        cursor: &'a str,
        /// The record's message id.
        message_id: &'a str,
        /// True when the idempotency key matched an earlier record.
        duplicate: bool,
    },
    /// Reply to `presence`.
    Presence {
        /// Request id.
        id: &'a RequestId,
        /// Channel.
        channel: &'a str,
        /// Member count.
        occupancy: u64,
        /// Members (possibly limited).
        members: &'a [PresenceMember],
    },
    /// Someone subscribed.
    Join {
        /// Channel.
        channel: &'a str,
        /// Who.
        member: &'a PresenceMember,
    },
    /// Someone left.
    Leave {
        /// Channel.
        channel: &'a str,
        /// Who.
        member: &'a PresenceMember,
    },
    /// The token expires soon: send `refresh` with a new one.
    TokenExpiring {
        /// When it expires (seconds since the Unix epoch).
        expires_at: u64,
    },
    /// Reply to `refresh`.
    Refreshed {
        /// Request id.
        id: &'a RequestId,
        /// The new token's expiry.
        expires_at: u64,
    },
    /// Reply to a client `ping`.
    Pong {
        /// Request id.
        #[serde(skip_serializing_if = "Option::is_none")]
        id: Option<&'a RequestId>,
    },
    /// Heartbeat.
    Ping {},
    /// A failed request, or a failed connection.
    Error {
        /// The request this answers.
        #[serde(skip_serializing_if = "Option::is_none")]
        id: Option<&'a RequestId>,
        /// The code.
        code: ErrorCode,
        /// Explanation.
        message: &'a str,
    },
    /// Reply to `register_device` (`registered: true`) and `unregister_device` (`false`).
    Device {
        /// Request id.
        id: &'a RequestId,
        /// Whether the device is now registered.
        registered: bool,
    },
    /// The node is going away; reconnect after `after_ms`.
    Reconnect {
        /// Delay before reconnecting (jittered per connection).
        after_ms: u64,
        /// Why.
        reason: &'a str,
    },
    /// The backend ended this connection; it closes right after.
    Disconnect {
        /// `disconnected` or `revoked`.
        code: DisconnectCode,
        /// The backend's text.
        reason: &'a str,
        /// Whether the client may reconnect (after its usual backoff).
        reconnect: bool,
    },
}

/// Why a `disconnect` frame ended a connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DisconnectCode {
    /// A backend disconnected the user or the connection.
    Disconnected,
    /// The connection's token was revoked: reconnect only with a new one.
    Revoked,
}

impl DisconnectCode {
    /// `disconnected` or `revoked`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Disconnected => "disconnected",
            Self::Revoked => "revoked",
        }
    }

    /// The code with this wire name.
    pub fn from_wire(s: &str) -> Option<Self> {
        [Self::Disconnected, Self::Revoked].into_iter().find(|c| c.as_str() == s)
    }

    /// The WebSocket close code that follows the frame: 4010 or 4011.
    pub fn close_code(self) -> u16 {
        match self {
            Self::Disconnected => 4010,
            Self::Revoked => 4011,
        }
    }
}

impl ServerFrame<'_> {
    /// The frame as JSON followed by `\n`.
    pub fn encode(&self) -> Bytes {
        let mut v = serde_json::to_vec(self).expect("server frames always serialize");
        v.push(b'\n');
        Bytes::from(v)
    }
}

/// Encodes a `message` frame directly: `{"type":"message","channel":…,"id":…,"cursor":…,"ts":…,"data":…}\n`.
///
/// `channel`, `id` and `cursor` are validated names (no characters that need JSON escaping);
/// `data` is already-validated JSON text. The result is shared by every recipient.
pub fn encode_message(channel: &str, id: &str, cursor: &str, ts_ms: u64, data: &[u8]) -> Bytes {
    debug_assert!([channel, id, cursor].iter().all(|s| !s.bytes().any(|b| b == b'"' || b == b'\\' || b < 0x20)));
    let mut b = BytesMut::with_capacity(64 + channel.len() + id.len() + cursor.len() + data.len());
    b.put_slice(b"{\"type\":\"message\",\"channel\":\"");
    b.put_slice(channel.as_bytes());
    b.put_slice(b"\",\"id\":\"");
    b.put_slice(id.as_bytes());
    b.put_slice(b"\",\"cursor\":\"");
    b.put_slice(cursor.as_bytes());
    b.put_slice(b"\",\"ts\":");
    b.put_slice(ts_ms.to_string().as_bytes());
    b.put_slice(b",\"data\":");
    b.put_slice(data);
    b.put_slice(b"}\n");
    b.freeze()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn message_frames_are_valid_json_ending_in_newline() {
        let b = encode_message("incidents", "01ABC", "c1.e.r.5", 17, br#"{"ent":"incident"}"#);
        assert_eq!(b.last(), Some(&b'\n'));
        let v: serde_json::Value = serde_json::from_slice(&b).unwrap();
        assert_eq!(v["type"], "message");
        assert_eq!(v["channel"], "incidents");
        assert_eq!(v["cursor"], "c1.e.r.5");
        assert_eq!(v["ts"], 17);
        assert_eq!(v["data"]["ent"], "incident");
    }

    #[test]
    fn a_disconnect_frame_is_exactly_the_documented_json() {
        let b = ServerFrame::Disconnect { code: DisconnectCode::Revoked, reason: "logged \"out\"", reconnect: false }.encode();
        assert_eq!(&b[..], b"{\"type\":\"disconnect\",\"code\":\"revoked\",\"reason\":\"logged \\\"out\\\"\",\"reconnect\":false}\n");
        assert_eq!((DisconnectCode::Disconnected.close_code(), DisconnectCode::Revoked.close_code()), (4010, 4011));
        assert_eq!(DisconnectCode::from_wire("disconnected"), Some(DisconnectCode::Disconnected));
        assert_eq!(DisconnectCode::from_wire("kicked"), None);
    }

    #[test]
    fn control_frames_omit_absent_ids() {
        let b = ServerFrame::Error { id: None, code: ErrorCode::Lagged, message: "x" }.encode();
        assert_eq!(&b[..], b"{\"type\":\"error\",\"code\":\"lagged\",\"message\":\"x\"}\n");
        let id = RequestId::Num(3);
        let b = ServerFrame::Pong { id: Some(&id) }.encode();
        assert_eq!(&b[..], b"{\"type\":\"pong\",\"id\":3}\n");
    }
}
