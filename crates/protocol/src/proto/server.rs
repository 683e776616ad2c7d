//! Server frames in the compact encoding, and the hot-path record body.
//!
//! A `message` frame is built in two parts. [`encode_record`] writes the fields every recipient
//! shares (offset, message id, time, payload, other origins) once per record; each connection
//! then writes the few bytes of [`record_prefix`] in front of it: the frame's length, the
//! `message` field's header and its own subscription number. Protobuf merges the fields of
//! concatenated bytes, so the two parts read as one `Message`.

use bytes::{BufMut, Bytes, BytesMut};
use prost::encoding::{encode_key, encoded_len_varint, WireType};

use herald_core::{Cursor, RegionName, VersionVector};

use super::{pb, put_varint};
use crate::server::ServerFrame;

/// Crockford's base32 alphabet, as message ids use it.
pub(crate) const CROCKFORD: &[u8; 32] = b"0123456789ABCDEFGHJKMNPQRSTVWXYZ";

/// The value of one uppercase Crockford character.
fn crockford_value(c: u8) -> Option<u128> {
    CROCKFORD.iter().position(|&a| a == c).map(|v| v as u128)
}

/// The compact form of a message id: field number and bytes.
enum IdForm {
    Ulid([u8; 16]),
    Keyed([u8; 16]),
    Text,
}

/// A ULID (26 characters, the first 0-7) as 128 bits; a keyed id (`K` and 25 characters) as the
/// 125 bits of its 25 characters; anything else stays text. Both forms decode to the same string.
fn id_form(id: &str) -> IdForm {
    let b = id.as_bytes();
    let bits = |chars: &[u8]| chars.iter().try_fold(0u128, |acc, &c| crockford_value(c).map(|v| (acc << 5) | v));
    if b.len() == 26
        && b[0] <= b'7'
        && let Some(v) = bits(b)
    {
        return IdForm::Ulid(v.to_be_bytes());
    }
    if b.len() == 26
        && b[0] == b'K'
        && let Some(v) = bits(&b[1..])
    {
        return IdForm::Keyed(v.to_be_bytes());
    }
    IdForm::Text
}

/// The shared part of a record's `message` frame: its offset, message id, publish time,
/// payload (JSON text) and, in multi-region streams, every other origin's position after it (the
/// cursor's tail, `origins` as in [`Cursor::with_origins`]). Encoded once per record.
pub fn encode_record(offset: u64, id: &str, ts_ms: u64, data: &[u8], origins: &VersionVector) -> Bytes {
    let origins_len: usize = origins.iter().map(|(r, n)| 2 + origin_len(r, n) + 1).sum();
    let mut b = BytesMut::with_capacity(32 + id.len() + data.len() + origins_len);
    if offset != 0 {
        encode_key(2, WireType::Varint, &mut b);
        put_varint(&mut b, offset);
    }
    match id_form(id) {
        IdForm::Ulid(bits) => put_bytes_field(&mut b, 3, &bits),
        IdForm::Keyed(bits) => put_bytes_field(&mut b, 4, &bits),
        IdForm::Text => put_bytes_field(&mut b, 5, id.as_bytes()),
    }
    if ts_ms != 0 {
        encode_key(6, WireType::Varint, &mut b);
        put_varint(&mut b, ts_ms);
    }
    put_bytes_field(&mut b, 7, data);
    for (region, next) in origins.iter() {
        encode_key(8, WireType::LengthDelimited, &mut b);
        put_varint(&mut b, origin_len(region, next) as u64);
        put_bytes_field(&mut b, 1, region.as_str().as_bytes());
        if next != 0 {
            encode_key(2, WireType::Varint, &mut b);
            put_varint(&mut b, next);
        }
    }
    b.freeze()
}

fn origin_len(region: &RegionName, next: u64) -> usize {
    let r = region.as_str().len();
    1 + encoded_len_varint(r as u64) + r + if next == 0 { 0 } else { 1 + encoded_len_varint(next) }
}

fn put_bytes_field(b: &mut BytesMut, field: u32, v: &[u8]) {
    encode_key(field, WireType::LengthDelimited, b);
    put_varint(b, v.len() as u64);
    b.put_slice(v);
}

/// The bytes a connection writes before a record body of [`encode_record`]: the frame's length,
/// the `ServerFrame.message` header and `Message.sub`. At most 17 bytes, on the stack.
#[derive(Clone, Copy, Debug)]
pub struct RecordPrefix {
    buf: [u8; 20],
    len: u8,
}

impl RecordPrefix {
    /// The prefix's bytes.
    pub fn as_bytes(&self) -> &[u8] {
        &self.buf[..self.len as usize]
    }
}

/// The prefix that makes `body` (from [`encode_record`]) a length-prefixed `ServerFrame` for
/// subscription `sub` on one connection.
pub fn record_prefix(sub: u32, body_len: usize) -> RecordPrefix {
    let msg_len = 1 + encoded_len_varint(sub as u64) + body_len;
    let frame_len = 1 + encoded_len_varint(msg_len as u64) + msg_len;
    let mut p = RecordPrefix { buf: [0; 20], len: 0 };
    let mut w = &mut p.buf[..];
    put_varint(&mut w, frame_len as u64);
    encode_key(1, WireType::LengthDelimited, &mut w); // ServerFrame.message
    put_varint(&mut w, msg_len as u64);
    encode_key(1, WireType::Varint, &mut w); // Message.sub
    put_varint(&mut w, sub as u64);
    let remaining = w.len();
    p.len = (p.buf.len() - remaining) as u8;
    p
}

/// A server frame in the compact encoding, length-prefixed (a one-frame batch). `sub` is the
/// subscription number a `subscribed` frame assigns; other frames ignore it.
pub fn encode_server_frame(frame: &ServerFrame<'_>, sub: u32) -> Bytes {
    super::delimited(&to_pb(frame, sub))
}

fn rid(id: Option<&crate::RequestId>) -> Option<pb::RequestId> {
    id.map(pb::RequestId::from)
}

fn member(m: &herald_core::PresenceMember) -> pb::Member {
    pb::Member { connection_id: m.connection_id.clone(), user: m.user.clone(), info: m.info.as_ref().map_or_else(Bytes::new, |i| Bytes::copy_from_slice(i.as_str().as_bytes())) }
}

/// The prost form of a server frame.
pub fn to_pb(frame: &ServerFrame<'_>, sub: u32) -> pb::ServerFrame {
    use pb::server_frame::Kind;
    let kind = match *frame {
        ServerFrame::Welcome { connection_id, node, region, heartbeat_ms, protocol, expires_at } => Kind::Welcome(pb::Welcome {
            connection_id: connection_id.into(),
            node: node.into(),
            region: region.into(),
            heartbeat_ms,
            protocol,
            expires_at,
        }),
        ServerFrame::Subscribed { id, channel, cursor, recovered } => {
            // The fixed part of every cursor of this subscription.
            let (cursor_epoch, cursor_region) = match Cursor::parse(cursor) {
                Ok(c) => (c.epoch.as_str().to_owned(), c.issuer().0.as_str().to_owned()),
                Err(_) => (String::new(), String::new()),
            };
            Kind::Subscribed(pb::Subscribed { id: rid(id), channel: channel.into(), cursor: cursor.into(), recovered, sub, cursor_epoch, cursor_region })
        }
        ServerFrame::Unsubscribed { id, channel, code } => {
            Kind::Unsubscribed(pb::Unsubscribed { id: rid(id), channel: channel.into(), code: code.map(|c| c.as_str().into()).unwrap_or_default() })
        }
        ServerFrame::Paused { id, channel, cursor } => Kind::Paused(pb::Paused { id: rid(Some(id)), channel: channel.into(), cursor: cursor.into() }),
        ServerFrame::Published { id, channel, cursor, message_id, duplicate } => Kind::Published(pb::Published {
            id: rid(Some(id)),
            channel: channel.into(),
            cursor: cursor.into(),
            message_id: message_id.into(),
            duplicate,
        }),
        ServerFrame::Presence { id, channel, occupancy, members } => Kind::Presence(pb::Presence {
            id: rid(Some(id)),
            channel: channel.into(),
            occupancy,
            members: members.iter().map(member).collect(),
        }),
        ServerFrame::Join { channel, member: m } => Kind::Join(pb::PresenceEvent { channel: channel.into(), member: Some(member(m)) }),
        ServerFrame::Leave { channel, member: m } => Kind::Leave(pb::PresenceEvent { channel: channel.into(), member: Some(member(m)) }),
        ServerFrame::TokenExpiring { expires_at } => Kind::TokenExpiring(pb::TokenExpiring { expires_at }),
        ServerFrame::Refreshed { id, expires_at } => Kind::Refreshed(pb::Refreshed { id: rid(Some(id)), expires_at }),
        ServerFrame::Pong { id } => Kind::Pong(pb::Pong { id: rid(id) }),
        ServerFrame::Ping {} => Kind::Ping(pb::Ping {}),
        ServerFrame::Error { id, code, message } => Kind::Error(pb::Error { id: rid(id), code: code.as_str().into(), message: message.into() }),
        ServerFrame::Reconnect { after_ms, reason } => Kind::Reconnect(pb::Reconnect { after_ms, reason: reason.into() }),
        ServerFrame::Device { id, registered } => Kind::Device(pb::DeviceReply { id: rid(Some(id)), registered }),
        ServerFrame::Disconnect { code, reason, reconnect } => Kind::Disconnect(pb::Disconnect { code: code.as_str().into(), reason: reason.into(), reconnect }),
    };
    pb::ServerFrame { kind: Some(kind) }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::split_batch;
    use prost::Message as _;

    fn region(s: &str) -> RegionName {
        RegionName::new(s).unwrap()
    }

    #[test]
    fn a_prefixed_record_body_decodes_as_one_message_frame() {
        let origins: VersionVector = [(region("ap-south"), 0), (region("us-east"), 17)].into_iter().collect();
        let body = encode_record(41, "01JDX7ZQ3V5W8B0C2D4E6F8G9H", 1_763_996_400_123, br#"{"a":1}"#, &origins);
        let prefix = record_prefix(300, body.len());
        let wire = [prefix.as_bytes(), &body].concat();
        let frames: Vec<_> = split_batch(&wire).map(Result::unwrap).collect();
        assert_eq!(frames.len(), 1);
        let f = pb::ServerFrame::decode(frames[0]).unwrap();
        let Some(pb::server_frame::Kind::Message(m)) = f.kind else { panic!("not a message: {f:?}") };
        assert_eq!((m.sub, m.offset, m.ts), (300, 41, 1_763_996_400_123));
        assert_eq!(&m.data[..], br#"{"a":1}"#);
        assert!(matches!(m.id, Some(pb::message::Id::Ulid(ref b)) if b.len() == 16));
        let o: Vec<_> = m.origins.iter().map(|o| (o.region.as_str(), o.next)).collect();
        assert_eq!(o, [("ap-south", 0), ("us-east", 17)]);
        // The hand-written body is what prost itself writes for the same fields.
        let mut same = m.clone();
        same.sub = 0;
        assert_eq!(same.encode_to_vec(), body.to_vec());
    }

    #[test]
    fn ids_take_the_shortest_form_that_gives_the_same_string_back() {
        assert!(matches!(id_form("01JDX7ZQ3V5W8B0C2D4E6F8G9H"), IdForm::Ulid(_)));
        assert!(matches!(id_form("7ZZZZZZZZZZZZZZZZZZZZZZZZZ"), IdForm::Ulid(_)));
        assert!(matches!(id_form("KZZZZZZZZZZZZZZZZZZZZZZZZZ"), IdForm::Keyed(_)));
        // Too large for 128 bits, lowercase, letters outside the alphabet, other lengths: text.
        for text in ["8ZZZZZZZZZZZZZZZZZZZZZZZZZ", "01jdx7zq3v5w8b0c2d4e6f8g9h", "01JDX7ZQ3V5W8B0C2D4E6F8GIU", "F12", "K123"] {
            assert!(matches!(id_form(text), IdForm::Text), "{text}");
        }
    }

    #[test]
    fn a_typical_record_costs_at_most_40_bytes_more_than_its_payload() {
        let data = vec![b'x'; 100];
        let id = herald_core::MessageId::generate(1_763_996_400_123);
        // Offsets up to 2^28 (a Kafka partition of a quarter of a billion records).
        let body = encode_record((1 << 28) - 1, id.as_str(), 1_763_996_400_123, &data, &herald_core::VersionVector::new());
        let on_wire = record_prefix(12, body.len()).as_bytes().len() + body.len();
        assert!(on_wire - data.len() <= 40, "{} bytes of overhead", on_wire - data.len());
    }

    #[test]
    fn subscribed_carries_the_number_and_the_cursor_fixed_part() {
        let id = crate::RequestId::Num(1);
        let f = ServerFrame::Subscribed { id: Some(&id), channel: "incidents", cursor: "c2.8f2a.eu-west.41.us-east.9", recovered: true };
        let Some(pb::server_frame::Kind::Subscribed(s)) = to_pb(&f, 7).kind else { panic!() };
        assert_eq!((s.sub, s.cursor_epoch.as_str(), s.cursor_region.as_str()), (7, "8f2a", "eu-west"));
    }
}
