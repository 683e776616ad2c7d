//! The compact encoding, subprotocol `herald.v1.proto`: protobuf frames (`proto/herald/v1/wire.proto`).
//!
//! The frames are those of JSON v1 (the crate's [`ServerFrame`](crate::ServerFrame) and
//! [`ClientFrame`](crate::ClientFrame)); only their bytes differ. A WebSocket message of this
//! subprotocol is binary and holds one or more frames, each preceded by its length as a varint
//! ([`split_batch`], [`put_delimited`]), the proto counterpart of JSON's newline-joined batches.
//!
//! - [`server`]: server frames to bytes, and the hot-path record body shared by every recipient,
//!   which each connection completes with its own subscription number ([`record_prefix`]).
//! - [`client`]: client frames from bytes (never a panic; errors carry protocol codes), and to
//!   bytes (for clients).
//! - [`json`]: JSON v1 control frames read back, for a compact connection's writer, which
//!   re-encodes what the (encoding-blind) session queued.
//! - [`reader`]: the client's side: server frames back to their exact JSON v1 form, cursors
//!   rebuilt from the subscription's fixed part and each record's offset and origins.

pub mod client;
pub mod json;
pub mod reader;
pub mod server;

use bytes::{BufMut, Bytes, BytesMut};

pub use client::{decode_client_message, encode_client_frame};
pub use reader::{Lean, LeanRecord, ProtoReader, ReadError};
pub use server::{RecordPrefix, encode_record, encode_server_frame, record_prefix};

/// The prost types generated from `proto/herald/v1/wire.proto`.
#[allow(missing_docs, clippy::all)]
pub mod pb {
    include!(concat!(env!("OUT_DIR"), "/herald.v1.rs"));
}

use crate::client::RequestId;

/// Appends `frame`, preceded by its length, to a batch.
pub fn put_delimited(out: &mut BytesMut, frame: &impl prost::Message) {
    let len = frame.encoded_len();
    out.reserve(len + prost::length_delimiter_len(len));
    frame.encode_length_delimited(out).expect("reserved above");
}

/// One frame as a single-frame batch (length-prefixed).
pub fn delimited(frame: &impl prost::Message) -> Bytes {
    let mut b = BytesMut::new();
    put_delimited(&mut b, frame);
    b.freeze()
}

/// Why a binary message is not a well-formed batch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BatchError(pub &'static str);

impl std::fmt::Display for BatchError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.0)
    }
}

/// Splits a binary message into its frames (each length-prefixed). A truncated or overlong
/// length ends the iteration with an error; what came before it is still yielded.
pub fn split_batch(message: &[u8]) -> impl Iterator<Item = Result<&[u8], BatchError>> {
    let mut rest = message;
    let mut failed = false;
    std::iter::from_fn(move || {
        if rest.is_empty() || failed {
            return None;
        }
        let mut cur = rest;
        let Ok(len) = prost::encoding::decode_varint(&mut cur) else {
            failed = true;
            return Some(Err(BatchError("bad frame length")));
        };
        if len > cur.len() as u64 {
            failed = true;
            return Some(Err(BatchError("frame length runs past the end of the message")));
        }
        let (frame, tail) = cur.split_at(len as usize);
        rest = tail;
        Some(Ok(frame))
    })
}

impl From<&RequestId> for pb::RequestId {
    fn from(id: &RequestId) -> Self {
        let value = match id {
            RequestId::Num(n) => pb::request_id::Value::Num(*n),
            RequestId::Str(s) => pb::request_id::Value::Text(s.clone()),
        };
        Self { value: Some(value) }
    }
}

/// A varint's bytes, for the per-connection prefix of a record.
fn put_varint(out: &mut impl BufMut, v: u64) {
    prost::encoding::encode_varint(v, out);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batches_split_into_their_length_prefixed_frames() {
        let a = pb::ServerFrame { kind: Some(pb::server_frame::Kind::Ping(pb::Ping {})) };
        let b = pb::ServerFrame { kind: Some(pb::server_frame::Kind::TokenExpiring(pb::TokenExpiring { expires_at: 300 })) };
        let mut m = BytesMut::new();
        put_delimited(&mut m, &a);
        put_delimited(&mut m, &b);
        let frames: Vec<_> = split_batch(&m).map(Result::unwrap).collect();
        assert_eq!(frames.len(), 2);
        assert_eq!(<pb::ServerFrame as prost::Message>::decode(frames[1]).unwrap(), b);
        // An empty frame (a ping has no fields) is still a frame.
        assert_eq!(frames[0], &[0x6a, 0x00][..]);
    }

    #[test]
    fn a_truncated_batch_yields_what_came_before_and_one_error() {
        let mut m = BytesMut::new();
        put_delimited(&mut m, &pb::ServerFrame { kind: Some(pb::server_frame::Kind::Ping(pb::Ping {})) });
        m.put_slice(&[5, 1, 2]);
        let v: Vec<_> = split_batch(&m).collect();
        assert_eq!(v.len(), 2);
        assert!(v[0].is_ok());
        assert!(v[1].is_err());
        assert!(split_batch(&[0xff; 11]).next().unwrap().is_err());
        assert_eq!(split_batch(&[]).count(), 0);
    }
}
