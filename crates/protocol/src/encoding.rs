//! Which encoding a WebSocket connection speaks, and the per-connection state it needs.
//!
//! JSON v1 (`herald.v1.json`) is the default; the compact encoding (`herald.v1.proto`) is asked
//! for with `Sec-WebSocket-Protocol`. SSE and long-poll always speak JSON.

use bytes::Bytes;
use std::sync::Mutex;

use crate::proto::{self, RecordPrefix};
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

/// One connection's encoder of server frames.
///
/// In the compact encoding a `message` names its subscription by a small number, given out by
/// the `subscribed` frame this encoder writes, kept while the channel stays subscribed (a
/// `resume` keeps it), forgotten at `unsubscribed`, and never reused on the connection. The
/// connection's writer asks [`Wire::record_prefix`] for the bytes that complete a shared record
/// body for this connection; a record of a channel no longer subscribed gets none and is not
/// sent (the client would drop it).
#[derive(Debug)]
pub enum Wire {
    /// JSON v1.
    Json,
    /// The compact encoding, with the connection's subscription numbers.
    Proto(Mutex<SubNumbers>),
}

/// The subscription numbers of one compact connection.
#[derive(Debug, Default)]
pub struct SubNumbers {
    last: u32,
    by_channel: Vec<(Box<str>, u32)>,
}

impl Wire {
    /// The encoder for a new connection speaking `encoding`.
    pub fn new(encoding: Encoding) -> Self {
        match encoding {
            Encoding::Json => Self::Json,
            Encoding::Proto => Self::Proto(Mutex::new(SubNumbers::default())),
        }
    }

    /// The connection's encoding.
    pub fn encoding(&self) -> Encoding {
        match self {
            Self::Json => Encoding::Json,
            Self::Proto(_) => Encoding::Proto,
        }
    }

    /// A server frame in this connection's encoding (JSON ends in `\n`; proto is length-prefixed),
    /// ready to be batched with others.
    pub fn encode(&self, frame: &ServerFrame<'_>) -> Bytes {
        let Self::Proto(subs) = self else { return frame.encode() };
        let mut subs = subs.lock().unwrap_or_else(|e| e.into_inner());
        let sub = match *frame {
            ServerFrame::Subscribed { channel, .. } => subs.number(channel),
            ServerFrame::Unsubscribed { channel, .. } => {
                subs.by_channel.retain(|(c, _)| &**c != channel);
                0
            }
            _ => 0,
        };
        proto::server::encode_server_frame(frame, sub)
    }

    /// The bytes this connection writes before the shared compact body of a record of `channel`
    /// ([`proto::encode_record`], `body_len` bytes long); `None` when the channel is not
    /// subscribed (any more), or on a JSON connection.
    pub fn record_prefix(&self, channel: &str, body_len: usize) -> Option<RecordPrefix> {
        let Self::Proto(subs) = self else { return None };
        let sub = subs.lock().unwrap_or_else(|e| e.into_inner()).by_channel.iter().find(|(c, _)| &**c == channel)?.1;
        Some(proto::record_prefix(sub, body_len))
    }
}

impl SubNumbers {
    /// The channel's number, given out now if it has none.
    fn number(&mut self, channel: &str) -> u32 {
        if let Some((_, n)) = self.by_channel.iter().find(|(c, _)| &**c == channel) {
            return *n;
        }
        self.last += 1;
        self.by_channel.push((channel.into(), self.last));
        self.last
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::RequestId;
    use crate::proto::{ProtoReader, encode_record};

    #[test]
    fn the_first_subprotocol_the_client_lists_that_we_speak_wins() {
        assert_eq!(Encoding::negotiate(["herald.v1.proto, herald.v1.json"]), Some(Encoding::Proto));
        assert_eq!(Encoding::negotiate(["chat", "herald.v1.json,herald.v1.proto"]), Some(Encoding::Json));
        assert_eq!(Encoding::negotiate(["chat, mqtt"]), None);
        assert_eq!(Encoding::negotiate([]), None);
    }

    #[test]
    fn json_connections_encode_frames_exactly_as_before() {
        let id = RequestId::Num(1);
        let f = ServerFrame::Subscribed { id: Some(&id), channel: "c", cursor: "c1.e.r.0", recovered: false };
        assert_eq!(Wire::new(Encoding::Json).encode(&f), f.encode());
        assert!(Wire::new(Encoding::Json).record_prefix("c", 10).is_none());
    }

    #[test]
    fn subscription_numbers_follow_subscribe_resume_and_unsubscribe() {
        let wire = Wire::new(Encoding::Proto);
        let id = RequestId::Num(1);
        let subscribed = |ch| ServerFrame::Subscribed { id: Some(&id), channel: ch, cursor: "c1.e.r.0", recovered: false };
        let mut reader = ProtoReader::new();
        reader.read(&wire.encode(&subscribed("a")));
        reader.read(&wire.encode(&subscribed("b")));
        let body = encode_record(0, "F1", 1, b"1", &[]);
        let record = |ch| wire.record_prefix(ch, body.len()).map(|p| [p.as_bytes(), &body].concat());
        let a = record("a").unwrap();
        assert!(reader.read(&a)[0].as_ref().unwrap().starts_with(br#"{"type":"message","channel":"a""#));
        // A resume answers `subscribed` again: the number stays.
        reader.read(&wire.encode(&subscribed("a")));
        assert_eq!(record("a").unwrap(), a);
        // After unsubscribing, the channel's records have no number; a new subscription gets a new one.
        wire.encode(&ServerFrame::Unsubscribed { id: Some(&id), channel: "a", code: None });
        assert!(record("a").is_none());
        reader.read(&wire.encode(&subscribed("a")));
        assert_ne!(record("a").unwrap(), a);
        assert!(reader.read(&record("b").unwrap())[0].as_ref().unwrap().starts_with(br#"{"type":"message","channel":"b""#));
    }
}
