//! The client's side of the compact encoding: server frames back to their JSON v1 form.
//!
//! A client keeps one [`ProtoReader`] per connection. It learns each subscription's number and
//! the fixed part of its cursors from `subscribed`, and turns every frame into the exact JSON v1
//! frame the server would have sent on a JSON connection, cursor included: an SDK keeps one frame
//! handler, and a resume from a cursor taken on a compact connection is the same as from JSON.

use bytes::Bytes;
use prost::Message as _;
use std::collections::HashMap;

use herald_core::{ChannelName, Cursor, Epoch, MessageId, PresenceMember, RegionName, UserInfo, VersionVector};

use super::server::CROCKFORD;
use super::{BatchError, pb, split_batch};
use crate::client::RequestId;
use crate::codes::ErrorCode;
use crate::server::{DisconnectCode, ServerFrame, encode_message};

/// Why a server frame could not be read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReadError(pub String);

impl std::fmt::Display for ReadError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl From<BatchError> for ReadError {
    fn from(e: BatchError) -> Self {
        Self(e.to_string())
    }
}

fn err(m: impl Into<String>) -> ReadError {
    ReadError(m.into())
}

/// What a subscription's `subscribed` frame said about its records.
#[derive(Debug, Clone)]
struct Sub {
    channel: ChannelName,
    epoch: Epoch,
    region: RegionName,
}

/// One connection's reader of compact server frames.
#[derive(Debug, Default)]
pub struct ProtoReader {
    subs: HashMap<u32, Sub>,
}

impl ProtoReader {
    /// A reader for a new connection (it knows no subscription yet).
    pub fn new() -> Self {
        Self::default()
    }

    /// Every frame of a binary message, each as its JSON v1 text ending in `\n`. A `message` of a
    /// subscription this reader does not know (one the client left) is left out; a frame that
    /// cannot be read is an error item, and the frames around it are still read.
    pub fn read(&mut self, message: &[u8]) -> Vec<Result<Bytes, ReadError>> {
        split_batch(message)
            .filter_map(|f| match f {
                Ok(frame) => self.frame(frame).transpose(),
                Err(e) => Some(Err(e.into())),
            })
            .collect()
    }

    /// One frame (without its length prefix) as JSON v1 text; `None` for a message of an unknown
    /// subscription.
    pub fn frame(&mut self, frame: &[u8]) -> Result<Option<Bytes>, ReadError> {
        match decode(frame)? {
            pb::server_frame::Kind::Message(m) => self.message(m),
            other => self.control(other).map(Some),
        }
    }

    /// One frame for a client that handles records itself (a load generator, a bridge): a
    /// record's payload and position without its JSON form or cursor (build the cursor of the
    /// last one kept with [`ProtoReader::cursor`]), any other frame as its JSON v1 text.
    ///
    /// `frame` is one frame of a message (see [`Bytes::slice_ref`]); the payload is a view into
    /// it, not a copy. A plain record (no origins, a binary id) is read without the generated
    /// decoder, which costs a quarter of a load generator's time; anything else goes through it.
    pub fn frame_lean(&mut self, frame: &Bytes) -> Result<Lean, ReadError> {
        if let Some(r) = plain_record(frame) {
            if !self.subs.contains_key(&r.sub) {
                return Ok(Lean::Skipped);
            }
            let next = r.offset.checked_add(1).ok_or_else(|| err("message offset out of range"))?;
            return Ok(Lean::Record(LeanRecord { sub: r.sub, next, origins: Vec::new(), ts: r.ts, data: frame.slice(r.data) }));
        }
        let f = pb::ServerFrame::decode(frame.clone()).map_err(|e| err(format!("not a herald.v1.ServerFrame: {e}")))?;
        match f.kind.ok_or_else(|| err("frame has no known type"))? {
            pb::server_frame::Kind::Message(m) if self.subs.contains_key(&m.sub) => {
                if m.id.is_none() {
                    return Err(err("message without an id"));
                }
                let next = m.offset.checked_add(1).ok_or_else(|| err("message offset out of range"))?;
                Ok(Lean::Record(LeanRecord { sub: m.sub, next, origins: m.origins, ts: m.ts, data: m.data }))
            }
            pb::server_frame::Kind::Message(_) => Ok(Lean::Skipped),
            other => self.control(other).map(Lean::Json),
        }
    }

    /// The cursor after `record` (exactly the one its JSON form carries); an error if its
    /// subscription is unknown or its origins are not well formed.
    pub fn cursor(&self, record: &LeanRecord) -> Result<String, ReadError> {
        let sub = self.subs.get(&record.sub).ok_or_else(|| err("message of an unknown subscription"))?;
        cursor_of(sub, record.next, &record.origins)
    }

    /// Every frame but a record, as its JSON v1 text (noting what `subscribed` and
    /// `unsubscribed` say about subscription numbers).
    fn control(&mut self, kind: pb::server_frame::Kind) -> Result<Bytes, ReadError> {
        use pb::server_frame::Kind;
        let json = match kind {
            Kind::Message(_) => return Err(err("a record is not a control frame")),
            Kind::Subscribed(s) => {
                let id = request_id(s.id);
                let channel = ChannelName::new(&s.channel).map_err(|e| err(format!("subscribed: {e}")))?;
                let epoch = Epoch::new(&s.cursor_epoch).map_err(|e| err(format!("subscribed: {e}")))?;
                let region = RegionName::new(&s.cursor_region).map_err(|e| err(format!("subscribed: {e}")))?;
                self.subs.retain(|_, sub| sub.channel != channel);
                self.subs.insert(s.sub, Sub { channel, epoch, region });
                ServerFrame::Subscribed { id: id.as_ref(), channel: &s.channel, cursor: &s.cursor, recovered: s.recovered }.encode()
            }
            Kind::Unsubscribed(u) => {
                self.subs.retain(|_, sub| sub.channel.as_str() != u.channel);
                let code = if u.code.is_empty() { None } else { Some(code(&u.code)?) };
                ServerFrame::Unsubscribed { id: request_id(u.id).as_ref(), channel: &u.channel, code }.encode()
            }
            Kind::Welcome(w) => ServerFrame::Welcome {
                connection_id: &w.connection_id,
                node: &w.node,
                region: &w.region,
                heartbeat_ms: w.heartbeat_ms,
                protocol: w.protocol,
                expires_at: w.expires_at,
            }
            .encode(),
            Kind::Paused(p) => ServerFrame::Paused { id: &required(p.id)?, channel: &p.channel, cursor: &p.cursor }.encode(),
            Kind::Published(p) => ServerFrame::Published {
                id: &required(p.id)?,
                channel: &p.channel,
                cursor: &p.cursor,
                message_id: &p.message_id,
                duplicate: p.duplicate,
            }
            .encode(),
            Kind::Presence(p) => {
                let members = p.members.into_iter().map(member).collect::<Result<Vec<PresenceMember>, _>>()?;
                ServerFrame::Presence { id: &required(p.id)?, channel: &p.channel, occupancy: p.occupancy, members: &members }.encode()
            }
            Kind::Join(e) => ServerFrame::Join { channel: &e.channel, member: &member(e.member.unwrap_or_default())? }.encode(),
            Kind::Leave(e) => ServerFrame::Leave { channel: &e.channel, member: &member(e.member.unwrap_or_default())? }.encode(),
            Kind::TokenExpiring(t) => ServerFrame::TokenExpiring { expires_at: t.expires_at }.encode(),
            Kind::Refreshed(r) => ServerFrame::Refreshed { id: &required(r.id)?, expires_at: r.expires_at }.encode(),
            Kind::Pong(p) => ServerFrame::Pong { id: request_id(p.id).as_ref() }.encode(),
            Kind::Ping(_) => ServerFrame::Ping {}.encode(),
            Kind::Error(e) => ServerFrame::Error { id: request_id(e.id).as_ref(), code: code(&e.code)?, message: &e.message }.encode(),
            Kind::Reconnect(r) => ServerFrame::Reconnect { after_ms: r.after_ms, reason: &r.reason }.encode(),
            Kind::Device(d) => ServerFrame::Device { id: &required(d.id)?, registered: d.registered }.encode(),
            Kind::Disconnect(d) => {
                let code = DisconnectCode::from_wire(&d.code).ok_or_else(|| err(format!("unknown disconnect code {:?}", d.code.chars().take(32).collect::<String>())))?;
                ServerFrame::Disconnect { code, reason: &d.reason, reconnect: d.reconnect }.encode()
            }
        };
        Ok(json)
    }

    fn message(&self, m: pb::Message) -> Result<Option<Bytes>, ReadError> {
        let Some(sub) = self.subs.get(&m.sub) else { return Ok(None) };
        let id = message_id(m.id.ok_or_else(|| err("message without an id"))?)?;
        let next = m.offset.checked_add(1).ok_or_else(|| err("message offset out of range"))?;
        let cursor = cursor_of(sub, next, &m.origins)?;
        Ok(Some(encode_message(sub.channel.as_str(), id.as_str(), &cursor, m.ts, &m.data)))
    }
}

/// A frame as [`ProtoReader::frame_lean`] reads it.
#[derive(Debug, Clone, PartialEq)]
pub enum Lean {
    /// A record of a known subscription.
    Record(LeanRecord),
    /// Any other frame, as its JSON v1 text.
    Json(Bytes),
    /// A record of a subscription the reader does not know (one the client left).
    Skipped,
}

/// A record's payload and position, as a compact frame carries them.
#[derive(Debug, Clone, PartialEq)]
pub struct LeanRecord {
    /// The subscription's number on this connection.
    pub sub: u32,
    /// The stream position after this record (its offset + 1).
    pub next: u64,
    origins: Vec<pb::Origin>,
    /// Publish time, milliseconds since the Unix epoch.
    pub ts: u64,
    /// The payload: one JSON value as UTF-8 text.
    pub data: Bytes,
}

/// A record frame's fields, read by [`plain_record`].
struct PlainRecord {
    sub: u32,
    offset: u64,
    ts: u64,
    data: std::ops::Range<usize>,
}

/// A `ServerFrame` holding a `Message` with a binary id (`ulid` or `keyed`) and no origins, read
/// field by field; `None` for anything else (another frame, origins, a text id, a field this
/// reader does not know, malformed bytes), which the generated decoder then reads and judges.
fn plain_record(frame: &[u8]) -> Option<PlainRecord> {
    let mut w = WireReader { b: frame, at: 0 };
    // Field 1 (`message`), length-delimited, and nothing after it.
    if w.varint()? != (1 << 3 | 2) {
        return None;
    }
    let len = usize::try_from(w.varint()?).ok()?;
    if w.at.checked_add(len)? != frame.len() {
        return None;
    }
    let mut r = PlainRecord { sub: 0, offset: 0, ts: 0, data: 0..0 };
    let mut id = false;
    while w.at < frame.len() {
        let key = w.varint()?;
        match (key >> 3, key & 7) {
            (1, 0) => r.sub = u32::try_from(w.varint()?).ok()?,
            (2, 0) => r.offset = w.varint()?,
            (3 | 4, 2) => {
                w.bytes()?;
                id = true;
            }
            (6, 0) => r.ts = w.varint()?,
            (7, 2) => r.data = w.bytes()?,
            _ => return None,
        }
    }
    id.then_some(r)
}

/// Protobuf's varints and length-delimited fields over a byte slice.
struct WireReader<'a> {
    b: &'a [u8],
    at: usize,
}

impl WireReader<'_> {
    fn varint(&mut self) -> Option<u64> {
        let mut v = 0u64;
        for shift in (0..64).step_by(7) {
            let byte = *self.b.get(self.at)?;
            self.at += 1;
            if shift == 63 && byte > 1 {
                return None; // more than 64 bits
            }
            v |= u64::from(byte & 0x7f) << shift;
            if byte < 0x80 {
                return Some(v);
            }
        }
        None
    }

    /// A length-delimited field's bytes, as a range of the slice.
    fn bytes(&mut self) -> Option<std::ops::Range<usize>> {
        let len = usize::try_from(self.varint()?).ok()?;
        let end = self.at.checked_add(len).filter(|&e| e <= self.b.len())?;
        let r = self.at..end;
        self.at = end;
        Some(r)
    }
}

fn decode(frame: &[u8]) -> Result<pb::server_frame::Kind, ReadError> {
    let f = pb::ServerFrame::decode(frame).map_err(|e| err(format!("not a herald.v1.ServerFrame: {e}")))?;
    f.kind.ok_or_else(|| err("frame has no known type"))
}

/// The cursor after a record of `sub` at `next` with these other origins.
fn cursor_of(sub: &Sub, next: u64, others: &[pb::Origin]) -> Result<String, ReadError> {
    let mut origins = VersionVector::new();
    for o in others {
        let r = RegionName::new(&o.region).map_err(|e| err(format!("message origin: {e}")))?;
        if r == sub.region || origins.get(&r).is_some() {
            return Err(err("message names a region twice"));
        }
        origins.advance(&r, o.next);
    }
    Ok(Cursor { epoch: sub.epoch.clone(), issuer: sub.region.clone(), next, origins }.to_string())
}

fn request_id(id: Option<pb::RequestId>) -> Option<RequestId> {
    match id?.value? {
        pb::request_id::Value::Num(n) => Some(RequestId::Num(n)),
        pb::request_id::Value::Text(s) => Some(RequestId::Str(s)),
    }
}

fn required(id: Option<pb::RequestId>) -> Result<RequestId, ReadError> {
    request_id(id).ok_or_else(|| err("reply without a request id"))
}

fn code(s: &str) -> Result<ErrorCode, ReadError> {
    ErrorCode::from_wire(s).ok_or_else(|| err(format!("unknown error code {:?}", s.chars().take(32).collect::<String>())))
}

/// A member from its compact form; `info` is JSON text or empty.
fn member(m: pb::Member) -> Result<PresenceMember, ReadError> {
    let info = match m.info.is_empty() {
        true => None,
        false => {
            let text = std::str::from_utf8(&m.info).map_err(|_| err("member info is not UTF-8"))?;
            Some(UserInfo::parse(text).map_err(|e| err(format!("member info: {e}")))?)
        }
    };
    Ok(PresenceMember { connection_id: m.connection_id, user: m.user, info })
}

/// A message id from its compact form.
fn message_id(id: pb::message::Id) -> Result<MessageId, ReadError> {
    let chars = |v: u128, n: usize| -> String { (0..n).map(|i| CROCKFORD[((v >> (5 * (n - 1 - i))) & 31) as usize] as char).collect() };
    let bits = |b: &[u8]| -> Result<u128, ReadError> { Ok(u128::from_be_bytes(b.try_into().map_err(|_| err("a compact message id is 16 bytes"))?)) };
    let text = match id {
        pb::message::Id::Ulid(b) => chars(bits(&b)?, 26),
        pb::message::Id::Keyed(b) => {
            let v = bits(&b)?;
            if v >> 125 != 0 {
                return Err(err("a keyed message id has 125 bits"));
            }
            format!("K{}", chars(v, 25))
        }
        pb::message::Id::Text(s) => s,
    };
    MessageId::from_stored(&text).ok_or_else(|| err("message id is not of the documented form"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::server::{encode_record, encode_server_frame, record_prefix};

    fn region(s: &str) -> RegionName {
        RegionName::new(s).unwrap()
    }

    /// A record as the server sends it on a compact connection, to subscription `sub`.
    fn wire_record(sub: u32, offset: u64, id: &str, ts: u64, data: &[u8], origins: &VersionVector) -> Vec<u8> {
        let body = encode_record(offset, id, ts, data, origins);
        [record_prefix(sub, body.len()).as_bytes(), &body].concat()
    }

    #[test]
    fn rebuilt_message_frames_equal_the_json_frames_byte_for_byte() {
        let epoch = Epoch::new("8f2a").unwrap();
        let mut reader = ProtoReader::new();
        let id = RequestId::Num(1);
        let subscribed = ServerFrame::Subscribed { id: Some(&id), channel: "incidents", cursor: "c1.8f2a.eu-west.40", recovered: true };
        let json = reader.read(&encode_server_frame(&subscribed, 3));
        assert_eq!(json, vec![Ok(subscribed.encode())]);

        let ulid = herald_core::MessageId::generate(1_763_996_400_123);
        type Case = (u64, String, Vec<(RegionName, u64)>);
        let cases: Vec<Case> = vec![
            // A local record in a single-region stream.
            (40, ulid.to_string(), vec![]),
            // A keyed id (sources, idempotency keys) and an id of another shape.
            (41, "KABCDEFGHJKMNPQRSTVWXYZ012".into(), vec![]),
            (42, "F-17_x".into(), vec![]),
            // Several regions: a local record, then a replicated one moving us-east's position.
            (43, ulid.to_string(), vec![(region("ap-south"), 5), (region("us-east"), 17)]),
            (44, ulid.to_string(), vec![(region("ap-south"), 5), (region("us-east"), 18)]),
            // Offset 0 and an origin at 0 (fields at their default are left out of the bytes).
            (0, ulid.to_string(), vec![(region("us-east"), 0)]),
        ];
        for (offset, id, origins) in cases {
            let data = br#"{"ent":"incident","id":"PAM4FGS","type":"updated"}"#;
            let cursor = Cursor::with_origins(epoch.clone(), region("eu-west"), offset + 1, &origins.into_iter().collect());
            let expected = encode_message("incidents", &id, &cursor.to_string(), 1_763_996_400_123, data);
            let wire = wire_record(3, offset, &id, 1_763_996_400_123, data, cursor.origins());
            let got = reader.read(&wire);
            assert_eq!(got, vec![Ok(expected)], "offset {offset}");
            // The lean read: the same payload, time and cursor, without the JSON form.
            let Ok(Lean::Record(r)) = reader.frame_lean(&Bytes::copy_from_slice(split_batch(&wire).next().unwrap().unwrap())) else { panic!("offset {offset}: not a record") };
            assert_eq!((&r.data[..], r.ts, r.next, r.sub), (&data[..], 1_763_996_400_123, offset + 1, 3));
            assert_eq!(reader.cursor(&r).unwrap(), cursor.to_string(), "offset {offset}");
        }
    }

    #[test]
    fn every_server_frame_reads_back_as_its_json_form() {
        let id = RequestId::Str("r-1".into());
        let m = PresenceMember { connection_id: "k3j".into(), user: "user-42".into(), info: None };
        let with_info = PresenceMember { info: Some(UserInfo::parse(r#"{"name":"Ann Lee","team":["sre"],"n":7}"#).unwrap()), ..m.clone() };
        let two = [m.clone(), with_info.clone()];
        let frames = [
            ServerFrame::Welcome { connection_id: "k3j", node: "edge-1", region: "local", heartbeat_ms: 25000, protocol: 1, expires_at: Some(1_764_000_000) },
            ServerFrame::Welcome { connection_id: "k3j", node: "edge-1", region: "local", heartbeat_ms: 25000, protocol: 1, expires_at: None },
            ServerFrame::Subscribed { id: None, channel: "incidents", cursor: "c2.e.a.4.b.1", recovered: false },
            ServerFrame::Unsubscribed { id: Some(&id), channel: "incidents", code: None },
            ServerFrame::Unsubscribed { id: None, channel: "telemetry:7", code: Some(ErrorCode::Lagged) },
            ServerFrame::Paused { id: &id, channel: "incidents", cursor: "c1.e.a.44" },
            ServerFrame::Published { id: &id, channel: "chat:1", cursor: "c1.e.a.43", message_id: "01JDX8", duplicate: true },
            ServerFrame::Presence { id: &id, channel: "incidents", occupancy: 1, members: std::slice::from_ref(&m) },
            ServerFrame::Join { channel: "incidents", member: &m },
            ServerFrame::Leave { channel: "incidents", member: &m },
            ServerFrame::Presence { id: &id, channel: "incidents", occupancy: 2, members: &two },
            ServerFrame::Join { channel: "incidents", member: &with_info },
            ServerFrame::Leave { channel: "incidents", member: &with_info },
            ServerFrame::TokenExpiring { expires_at: 1_764_000_000 },
            ServerFrame::Refreshed { id: &id, expires_at: 1_764_003_600 },
            ServerFrame::Pong { id: Some(&id) },
            ServerFrame::Pong { id: None },
            ServerFrame::Ping {},
            ServerFrame::Error { id: Some(&RequestId::Num(-3)), code: ErrorCode::Forbidden, message: "token may not \"subscribe\"" },
            ServerFrame::Reconnect { after_ms: 1830, reason: "drain" },
            ServerFrame::Device { id: &id, registered: true },
            ServerFrame::Device { id: &RequestId::Num(10), registered: false },
            ServerFrame::Disconnect { code: DisconnectCode::Disconnected, reason: "account suspended", reconnect: true },
            ServerFrame::Disconnect { code: DisconnectCode::Revoked, reason: "", reconnect: false },
        ];
        let mut reader = ProtoReader::new();
        let mut batch = Vec::new();
        for f in &frames {
            batch.extend_from_slice(&encode_server_frame(f, 1));
        }
        let got = reader.read(&batch);
        let want: Vec<_> = frames.iter().map(|f| Ok(f.encode())).collect();
        assert_eq!(got, want);
        let join = ServerFrame::Join { channel: "incidents", member: &with_info }.encode();
        assert_eq!(&join[..], &br#"{"type":"join","channel":"incidents","member":{"connection_id":"k3j","user":"user-42","info":{"n":7,"name":"Ann Lee","team":["sre"]}}}
"#[..]);
    }

    #[test]
    fn the_lean_read_of_a_plain_record_matches_the_generated_decoder_and_refuses_what_it_refuses() {
        let mut reader = ProtoReader::new();
        let id = RequestId::Num(1);
        reader.read(&encode_server_frame(&ServerFrame::Subscribed { id: Some(&id), channel: "a", cursor: "c1.e.r.0", recovered: false }, 1));
        let ulid = "01JDX8Q6WZ3V5N8K2M4P6R8T0A";
        let frame = |offset: u64| Bytes::copy_from_slice(split_batch(&wire_record(1, offset, ulid, 1_763_996_400_123, b"{\"n\":1}", &VersionVector::new())).next().unwrap().unwrap());
        let whole = frame(41);
        assert!(plain_record(&whole).is_some(), "a ULID record without origins takes the hand-written path");
        let Ok(Lean::Record(r)) = reader.frame_lean(&whole) else { panic!("not a record") };
        assert_eq!((&r.data[..], r.ts, r.next, r.sub), (&b"{\"n\":1}"[..], 1_763_996_400_123, 42, 1));
        // The payload is a view into the frame, not a copy.
        assert!(whole.as_ptr_range().contains(&r.data.as_ptr()));
        assert!(reader.frame_lean(&frame(u64::MAX)).is_err());
        // Every cut of the frame is refused (or, cut at a field boundary, read) without a panic,
        // and the two paths agree on which.
        for n in 0..whole.len() {
            let cut = whole.slice(..n);
            let generated = pb::ServerFrame::decode(cut.clone()).ok().and_then(|f| f.kind);
            match (reader.frame_lean(&cut), generated) {
                (Ok(Lean::Record(r)), Some(pb::server_frame::Kind::Message(m))) => assert_eq!((r.next, &r.data), (m.offset + 1, &m.data), "cut at {n}"),
                (Err(_), None) | (Err(_), Some(pb::server_frame::Kind::Message(_))) => {}
                (got, want) => panic!("cut at {n}: {got:?} against {want:?}"),
            }
        }
    }

    #[test]
    fn messages_of_subscriptions_the_client_left_are_dropped() {
        let mut reader = ProtoReader::new();
        let id = RequestId::Num(1);
        reader.read(&encode_server_frame(&ServerFrame::Subscribed { id: Some(&id), channel: "a", cursor: "c1.e.r.0", recovered: false }, 1));
        let rec = wire_record(1, 0, "F1", 1, b"1", &herald_core::VersionVector::new());
        assert_eq!(reader.read(&rec).len(), 1);
        reader.read(&encode_server_frame(&ServerFrame::Unsubscribed { id: Some(&id), channel: "a", code: None }, 0));
        assert!(reader.read(&rec).is_empty());
        assert!(reader.read(&wire_record(9, 0, "F1", 1, b"1", &herald_core::VersionVector::new())).is_empty());
        let lean = wire_record(9, 0, "F1", 1, b"1", &herald_core::VersionVector::new());
        assert_eq!(reader.frame_lean(&Bytes::copy_from_slice(split_batch(&lean).next().unwrap().unwrap())), Ok(Lean::Skipped));
    }

    #[test]
    fn hostile_frames_are_errors_not_panics() {
        let mut reader = ProtoReader::new();
        let id = RequestId::Num(1);
        reader.read(&encode_server_frame(&ServerFrame::Subscribed { id: Some(&id), channel: "a", cursor: "c1.e.r.0", recovered: false }, 1));
        let bad_msg = |m: pb::Message| super::super::delimited(&pb::ServerFrame { kind: Some(pb::server_frame::Kind::Message(m)) });
        let base = pb::Message { sub: 1, id: Some(pb::message::Id::Text("F1".into())), ..Default::default() };
        for m in [
            pb::Message { offset: u64::MAX, ..base.clone() },
            pb::Message { id: None, ..base.clone() },
            pb::Message { id: Some(pb::message::Id::Ulid(Bytes::from_static(&[1; 15]))), ..base.clone() },
            pb::Message { id: Some(pb::message::Id::Keyed(Bytes::from_static(&[0xff; 16]))), ..base.clone() },
            pb::Message { id: Some(pb::message::Id::Text("a\"b".into())), ..base.clone() },
            pb::Message { origins: vec![pb::Origin { region: "R\"".into(), next: 1 }], ..base.clone() },
            pb::Message { origins: vec![pb::Origin { region: "r".into(), next: 1 }], ..base.clone() },
        ] {
            let got = reader.read(&bad_msg(m.clone()));
            assert!(matches!(got.as_slice(), [Err(_)]), "{m:?} gave {got:?}");
            // The lean read refuses the same frame, at the latest when its cursor is built.
            let bytes = bad_msg(m.clone());
            let lean = reader.frame_lean(&Bytes::copy_from_slice(split_batch(&bytes).next().unwrap().unwrap()));
            let bad_id = matches!(m.id, Some(pb::message::Id::Ulid(_) | pb::message::Id::Keyed(_))) || m.id.as_ref().is_some_and(|i| matches!(i, pb::message::Id::Text(s) if s.contains('"')));
            match lean {
                Err(_) => {}
                // The lean read does not rebuild the id (a load generator ignores it).
                Ok(Lean::Record(_)) if bad_id => {}
                Ok(Lean::Record(r)) => assert!(reader.cursor(&r).is_err(), "{m:?}"),
                other => panic!("{m:?} gave {other:?}"),
            }
        }
        let bad_sub = pb::Subscribed { channel: "a b".into(), cursor_epoch: "e".into(), cursor_region: "r".into(), ..Default::default() };
        let f = super::super::delimited(&pb::ServerFrame { kind: Some(pb::server_frame::Kind::Subscribed(bad_sub)) });
        assert!(matches!(reader.read(&f).as_slice(), [Err(_)]));
        for info in [&b"[1]"[..], b"{\"a\":", &[0xff, 0xfe]] {
            let m = pb::Member { connection_id: "c".into(), user: "u".into(), info: Bytes::copy_from_slice(info) };
            let f = super::super::delimited(&pb::ServerFrame { kind: Some(pb::server_frame::Kind::Join(pb::PresenceEvent { channel: "a".into(), member: Some(m) })) });
            assert!(matches!(reader.read(&f).as_slice(), [Err(_)]), "member info {info:?}");
        }
        let bad_code = pb::Disconnect { code: "kicked".into(), reason: String::new(), reconnect: false };
        let f = super::super::delimited(&pb::ServerFrame { kind: Some(pb::server_frame::Kind::Disconnect(bad_code)) });
        assert!(matches!(reader.read(&f).as_slice(), [Err(_)]));
    }
}
