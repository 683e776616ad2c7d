//! The WebSocket transport.
//!
//! Reading uses tokio-tungstenite (frame parsing, unmasking, control frames, size limits) over the
//! socket's read half. Writing bypasses it (see `writer`): frames are already encoded and shared,
//! and go out in batched, vectored writes.
//!
//! # Layout
//! - `handshake`: [`upgrade`] (`GET /v1/ws` checked and answered `101`, the subprotocol and
//!   `permessage-deflate` negotiated), admission against the limits, and the first-frame `auth`.
//! - `connection`: one connection from upgrade to close, and the loop serving its session (the
//!   protocol state itself is [`crate::session`]).
//! - `writer`: the socket writer task (JSON or compact frames, compressed or not).

mod connection;
mod handshake;
mod writer;

pub use handshake::upgrade;

