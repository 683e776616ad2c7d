//! Herald's client wire protocol v1 (the contract in `docs/protocol.md`): one set of frames, in
//! two encodings (JSON, the default, and a compact protobuf one), and the WebSocket compression
//! extension.
//!
//! # Layout
//! - [`codes`]: the closed set of error codes, with their close codes and HTTP statuses.
//! - [`client`]: frames a client sends, and [`decode_client_frame`], which turns any text into
//!   either a frame or a precise protocol error (never a panic).
//! - [`server`]: frames the server sends, encoded to `Bytes` once and shared by every recipient;
//!   [`encode_message`] builds the hot-path `message` frame without an intermediate value.
//! - [`encoding`]: [`Encoding`] (negotiated by WebSocket subprotocol) and [`ProtoWriter`], a
//!   compact connection's state (its subscription numbers).
//! - [`proto`]: the compact encoding (`proto/herald/v1/wire.proto`, compiled by `build.rs`):
//!   server frames and the shared record body, client frames, and the client's reader that
//!   rebuilds exact JSON v1 frames and cursors.
//! - [`deflate`]: `permessage-deflate` (RFC 7692): negotiation and per-message compression.
//!
//! Every encoded frame ends in `\n` (JSON) or starts with its length (proto), so frames
//! concatenate into a batched WebSocket message without copying. [`split_batch`] and
//! [`proto::split_batch`] are the readers' side.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod client;
pub mod codes;
pub mod deflate;
pub mod encoding;
pub mod proto;
pub mod server;

pub use client::{ClientFrame, FrameError, RequestId, decode_client_frame};
pub use codes::ErrorCode;
pub use encoding::{Encoding, ProtoWriter, SUBPROTOCOL_JSON, SUBPROTOCOL_PROTO};
pub use server::{DisconnectCode, ServerFrame, encode_message};

/// The protocol version this crate speaks.
pub const PROTOCOL_VERSION: u32 = 1;

/// Splits a (possibly batched) text message into its frames, skipping empty lines.
pub fn split_batch(message: &str) -> impl Iterator<Item = &str> {
    message.split('\n').map(|l| l.trim_end_matches('\r')).filter(|l| !l.trim().is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batches_split_on_newlines_and_skip_empty_lines() {
        let v: Vec<_> = split_batch("{\"a\":1}\n\n{\"b\":2}\n").collect();
        assert_eq!(v, vec!["{\"a\":1}", "{\"b\":2}"]);
        assert_eq!(split_batch("{}").count(), 1);
    }
}
