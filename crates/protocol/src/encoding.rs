//! Which encoding a WebSocket connection speaks, and the per-connection state the compact one
//! needs.
//!
//! JSON v1 (`herald.v1.json`) is the default; the compact encoding (`herald.v1.proto`) is asked
//! for with `Sec-WebSocket-Protocol`. SSE and long-poll always speak JSON.

use bytes::Bytes;

use crate::proto::json::{ControlFrame, SubChange};
use crate::proto::{self, ReadError, RecordPrefix};
use crate::server::ServerFrame;

/// The subprotocol name of JSON v1.
pub const SUBPROTOCOL_JSON: &str = "herald.v1.json";
/// The subprotocol name of the compact encoding.
pub const SUBPROTOCOL_PROTO: &str = "herald.v1.proto";

/// A wire encoding of the frames.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Encoding {
    /// JSON text frames (`herald.v1.json`, and what a client that names no subprotocol gets).
    Json,
    /// Protobuf binary frames (`herald.v1.proto`).
    Proto,
}

impl Encoding {
    /// The subprotocol name.
    pub fn subprotocol(self) -> &'static str {
        match self {
            Self::Json => SUBPROTOCOL_JSON,
            Self::Proto => SUBPROTOCOL_PROTO,
        }
    }

    /// The encoding for a client's `Sec-WebSocket-Protocol` header values (each a comma-separated
    /// list): the first name it lists that this server speaks. `None` when it lists none of them;
    /// the server then answers without the header and speaks JSON.
    pub fn negotiate<'a>(header_values: impl IntoIterator<Item = &'a str>) -> Option<Self> {
        header_values.into_iter().flat_map(|v| v.split(',')).map(str::trim).find_map(|name| match name {
            SUBPROTOCOL_JSON => Some(Self::Json),
            SUBPROTOCOL_PROTO => Some(Self::Proto),
            _ => None,
        })
    }
}

/// The compact encoding's state for one connection, held by the connection's writer.
///
/// A `message` names its subscription by a small number. The writer gives the number out when it
/// writes the channel's `subscribed` frame, keeps it while the channel stays subscribed (a
/// `resume` answers `subscribed` again and keeps it), forgets it when it writes `unsubscribed`,
/// and never reuses one on the connection. Because this happens in the order frames go out, a
/// record always follows its channel's `subscribed`; a record of a channel no longer subscribed
/// (a low-priority record overtaken by its `unsubscribed`) has no number and is not sent: the
/// client would drop it.
#[derive(Debug, Default)]
pub struct ProtoWriter {
    last: u32,
    by_channel: Vec<(Box<str>, u32)>,
}

impl ProtoWriter {
    /// The state of a new connection.
    pub fn new() -> Self {
        Self::default()
    }

    /// A server frame in the compact encoding, length-prefixed, numbering subscriptions.
    pub fn encode(&mut self, frame: &ServerFrame<'_>) -> Bytes {
        let sub = match *frame {
            ServerFrame::Subscribed { channel, .. } => self.number(channel),
            ServerFrame::Unsubscribed { channel, .. } => self.forget(channel),
            _ => 0,
        };
        proto::server::encode_server_frame(frame, sub)
    }

    /// A control frame the session queued as JSON v1 (with its newline), in the compact encoding.
    pub fn transcode(&mut self, json: &[u8]) -> Result<Bytes, ReadError> {
        let f = ControlFrame::parse(json)?;
        let sub = match f.change() {
            SubChange::Subscribed(channel) => self.number(channel),
            SubChange::Unsubscribed(channel) => self.forget(channel),
            SubChange::None => 0,
        };
        Ok(f.encode(sub))
    }

    /// The bytes to write before the shared compact body of a record of `channel`
    /// ([`proto::encode_record`], `body_len` bytes long); `None` when the channel is not
    /// subscribed (any more).
    pub fn record_prefix(&self, channel: &str, body_len: usize) -> Option<RecordPrefix> {
        Some(proto::record_prefix(self.sub(channel)?, body_len))
    }

    /// The subscription number of `channel` on this connection; `None` when it is not
    /// subscribed (any more).
    pub fn sub(&self, channel: &str) -> Option<u32> {
        Some(self.by_channel.iter().find(|(c, _)| &**c == channel)?.1)
    }

    /// The channel's number, given out now if it has none.
    fn number(&mut self, channel: &str) -> u32 {
        if let Some((_, n)) = self.by_channel.iter().find(|(c, _)| &**c == channel) {
            return *n;
        }
        self.last += 1;
        self.by_channel.push((channel.into(), self.last));
        self.last
    }

    fn forget(&mut self, channel: &str) -> u32 {
        self.by_channel.retain(|(c, _)| &**c != channel);
        0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::{ProtoReader, encode_record};
    use crate::{ErrorCode, RequestId};

    #[test]
    fn the_first_subprotocol_the_client_lists_that_we_speak_wins() {
        assert_eq!(Encoding::negotiate(["herald.v1.proto, herald.v1.json"]), Some(Encoding::Proto));
        assert_eq!(Encoding::negotiate(["chat", "herald.v1.json,herald.v1.proto"]), Some(Encoding::Json));
        assert_eq!(Encoding::negotiate(["chat, mqtt"]), None);
        assert_eq!(Encoding::negotiate([]), None);
    }

    #[test]
    fn subscription_numbers_follow_subscribe_resume_and_unsubscribe() {
        let mut w = ProtoWriter::new();
        let id = RequestId::Num(1);
        let subscribed = |ch| ServerFrame::Subscribed { id: Some(&id), channel: ch, cursor: "c1.e.r.0", recovered: false };
        let mut reader = ProtoReader::new();
        reader.read(&w.encode(&subscribed("a")));
        reader.read(&w.transcode(&subscribed("b").encode()).unwrap());
        let body = encode_record(0, "F1", 1, b"1", &herald_core::VersionVector::new());
        let record = |w: &ProtoWriter, ch| w.record_prefix(ch, body.len()).map(|p| [p.as_bytes(), &body].concat());
        let a = record(&w, "a").unwrap();
        assert!(reader.read(&a)[0].as_ref().unwrap().starts_with(br#"{"type":"message","channel":"a""#));
        // A resume answers `subscribed` again: the number stays.
        reader.read(&w.transcode(&subscribed("a").encode()).unwrap());
        assert_eq!(record(&w, "a").unwrap(), a);
        // After unsubscribing, the channel's records have no number; a new subscription gets a new one.
        w.transcode(&ServerFrame::Unsubscribed { id: Some(&id), channel: "a", code: None }.encode()).unwrap();
        assert!(record(&w, "a").is_none());
        reader.read(&w.encode(&subscribed("a")));
        assert_ne!(record(&w, "a").unwrap(), a);
        assert!(reader.read(&record(&w, "b").unwrap())[0].as_ref().unwrap().starts_with(br#"{"type":"message","channel":"b""#));
    }

    #[test]
    fn transcoded_control_frames_read_back_as_the_same_json() {
        let id = RequestId::Str("x".into());
        let m = herald_core::PresenceMember { connection_id: "c".into(), user: "u".into(), info: herald_core::UserInfo::parse(r#"{"name":"Ann"}"#).ok() };
        let frames = [
            ServerFrame::Welcome { connection_id: "k", node: "n", region: "local", heartbeat_ms: 5, protocol: 1, expires_at: Some(9) },
            ServerFrame::Subscribed { id: Some(&id), channel: "ch", cursor: "c1.e.r.3", recovered: true },
            ServerFrame::Join { channel: "ch", member: &m },
            ServerFrame::Presence { id: &id, channel: "ch", occupancy: 1, members: std::slice::from_ref(&m) },
            ServerFrame::Error { id: None, code: ErrorCode::Lagged, message: "slow \u{1F40C}" },
            ServerFrame::Unsubscribed { id: None, channel: "ch", code: Some(ErrorCode::Forbidden) },
            ServerFrame::Reconnect { after_ms: 3, reason: "drain" },
            ServerFrame::Disconnect { code: crate::DisconnectCode::Revoked, reason: "logged out", reconnect: false },
            ServerFrame::Ping {},
        ];
        let mut w = ProtoWriter::new();
        let mut reader = ProtoReader::new();
        for f in &frames {
            let json = f.encode();
            assert_eq!(reader.read(&w.transcode(&json).unwrap()), vec![Ok(json)]);
        }
        assert!(w.transcode(b"{\"type\":\"message\"}\n").is_err());
        assert!(w.transcode(b"garbage").is_err());
    }
}
