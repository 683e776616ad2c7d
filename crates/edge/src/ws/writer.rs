//! The socket writer: takes every queued frame and writes them as one text message with one
//! vectored write straight from the shared, already encoded buffers, so a record fanned out to
//! 10k connections is never copied per connection and an idle connection holds no write buffer.
//! Frames tungstenite itself writes (pong, the close reply) come through the same queue already
//! framed. When the queue closes, the writer sends the close frame that fits the reason, within
//! a bounded grace.
//!
//! On a compact (`herald.v1.proto`) connection the message is binary: each record is its shared
//! compact body behind a few bytes of this connection's own (its subscription number), or for
//! subscription number 1 (a connection's first) the record's shared whole frame, and the
//! control frames the session queued as JSON are re-encoded here, in the order they go out
//! ([`ProtoWriter`]). With `permessage-deflate` agreed, each message is compressed (RSV1 set),
//! which copies it once.

use bytes::Bytes;
use std::io::IoSlice;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncWrite, AsyncWriteExt};
use tokio::time::Instant;

use herald_engine::outbox::{CloseReason, OutItem, Outbox};
use herald_protocol::deflate::{Agreement, RSV1};
use herald_protocol::{ErrorCode, ProtoWriter, ServerFrame};

/// Frames per WebSocket message at most (each is one iovec; Linux allows 1024 per write).
const MAX_FRAMES_PER_MESSAGE: usize = 1000;

/// How a connection's messages are written: its encoding (the compact one with its
/// subscription numbers) and the compression agreed at the handshake.
pub(super) struct WireFormat {
    /// Set on a compact connection.
    pub proto: Option<ProtoWriter>,
    /// Set when `permessage-deflate` was agreed.
    pub deflate: Option<Agreement>,
}

impl WireFormat {
    /// JSON v1, uncompressed: the shared buffers go out as they are.
    fn is_plain_json(&self) -> bool {
        self.proto.is_none() && self.deflate.is_none()
    }

    /// The first header byte of a data message: FIN, RSV1 when compressed, text or binary.
    fn first_byte(&self, compressed: bool) -> u8 {
        0x80 | if compressed { RSV1 } else { 0 } | if self.proto.is_some() { 0x2 } else { 0x1 }
    }
}

fn text_header(len: usize) -> ([u8; 10], usize) {
    message_header(0x81, len) // FIN + text
}

fn message_header(first: u8, len: usize) -> ([u8; 10], usize) {
    let mut h = [0u8; 10];
    h[0] = first;
    if len < 126 {
        h[1] = len as u8;
        (h, 2)
    } else if len <= u16::MAX as usize {
        h[1] = 126;
        h[2..4].copy_from_slice(&(len as u16).to_be_bytes());
        (h, 4)
    } else {
        h[1] = 127;
        h[2..10].copy_from_slice(&(len as u64).to_be_bytes());
        (h, 10)
    }
}

fn close_frame(code: u16, reason: &str) -> Bytes {
    let reason = &reason.as_bytes()[..reason.len().min(120)];
    let mut v = Vec::with_capacity(4 + reason.len());
    v.push(0x88);
    v.push((2 + reason.len()) as u8);
    v.extend_from_slice(&code.to_be_bytes());
    v.extend_from_slice(reason);
    Bytes::from(v)
}

fn item_bytes(item: &OutItem) -> &[u8] {
    match item {
        OutItem::Frame(b) | OutItem::Raw(b) => b,
        OutItem::Record(r) => &r.frame,
    }
}

/// Writes queued items until the outbox closes, then the close frame.
pub(super) async fn write_loop<W: AsyncWrite + Unpin>(mut w: W, outbox: Arc<Outbox>, max_batch: usize, grace: Duration, mut wire: WireFormat) {
    let mut items: Vec<OutItem> = Vec::new();
    let mut deadline: Option<Instant> = None;
    loop {
        if items.len() < 16 {
            // Small batches (a ping, a record at a low rate) do not keep their allocation: an
            // idle connection then holds none. Big ones keep it for the next burst.
            items = Vec::new();
        } else {
            items.clear();
        }
        let close = outbox.take(max_batch, &mut items);
        if close.is_some() && deadline.is_none() {
            deadline = Some(Instant::now() + grace);
        }
        if items.is_empty() {
            match close {
                None => {
                    outbox.ready().await;
                    continue;
                }
                Some(reason) => {
                    let frame = match reason {
                        CloseReason::ClientClosed | CloseReason::PeerGone => None,
                        CloseReason::Timeout => Some(close_frame(1000, "heartbeat timeout")),
                        CloseReason::Drain => Some(close_frame(1001, "drain")),
                        CloseReason::Lagged => {
                            let lagged = ServerFrame::Error { id: None, code: ErrorCode::Lagged, message: "send queue overflowed; reconnect and resume" };
                            let e = match &mut wire.proto {
                                Some(p) => p.encode(&lagged),
                                None => lagged.encode(),
                            };
                            let mut v = Vec::new();
                            let (h, n) = message_header(wire.first_byte(false), e.len());
                            v.extend_from_slice(&h[..n]);
                            v.extend_from_slice(&e);
                            v.extend_from_slice(&close_frame(4008, "lagged"));
                            Some(Bytes::from(v))
                        }
                        CloseReason::Fatal(code) => Some(close_frame(code.close_code().unwrap_or(1008), code.as_str())),
                        CloseReason::Ordered(code) => Some(close_frame(code.close_code(), code.as_str())),
                    };
                    // Boxed, like the writes below: the task keeps room only for its idle wait.
                    Box::pin(async {
                        if let Some(f) = frame {
                            let _ = write_all_slices(&mut w, &mut [IoSlice::new(&f)], &outbox, deadline, grace).await;
                        }
                        if let Some(d) = deadline {
                            let _ = tokio::time::timeout_at(d, w.shutdown()).await;
                        }
                    })
                    .await;
                    return;
                }
            }
        }
        let _traced = herald_engine::trace::socket_write(&items);
        // Boxed (one allocation per batch written): inline, the writes' futures would make
        // every connection's writer task keep ~0.5 KiB more while it waits idle.
        let written = if wire.is_plain_json() {
            Box::pin(write_items(&mut w, &items, &outbox, &mut deadline, grace)).await
        } else {
            Box::pin(write_encoded(&mut w, &items, &outbox, &mut deadline, grace, &mut wire)).await
        };
        if written.is_err() {
            outbox.close(CloseReason::PeerGone);
            return;
        }
    }
}

/// Writes items, packing consecutive frames into one text message per group.
async fn write_items<W: AsyncWrite + Unpin>(
    w: &mut W,
    items: &[OutItem],
    outbox: &Outbox,
    deadline: &mut Option<Instant>,
    grace: Duration,
) -> std::io::Result<()> {
    let mut i = 0;
    while i < items.len() {
        let header;
        let mut slices: Vec<IoSlice<'_>>;
        if let OutItem::Raw(b) = &items[i] {
            slices = vec![IoSlice::new(b)];
            i += 1;
        } else {
            let start = i;
            let mut len = 0;
            while i < items.len() && i - start < MAX_FRAMES_PER_MESSAGE && !matches!(items[i], OutItem::Raw(_)) {
                len += item_bytes(&items[i]).len();
                i += 1;
            }
            header = text_header(len);
            slices = Vec::with_capacity(i - start + 1);
            slices.push(IoSlice::new(&header.0[..header.1]));
            slices.extend(items[start..i].iter().map(|it| IoSlice::new(item_bytes(it))));
        }
        if deadline.is_none() && outbox.close_reason().is_some() {
            *deadline = Some(Instant::now() + grace);
        }
        write_all_slices(w, &mut slices, outbox, *deadline, grace).await?;
    }
    Ok(())
}

/// What one queued item becomes on a compact or compressed connection.
enum Piece<'a> {
    /// Bytes as they are (a JSON frame).
    Shared(&'a [u8]),
    /// A record's compact body behind this connection's prefix.
    Record(herald_protocol::proto::RecordPrefix, &'a [u8]),
    /// A control frame re-encoded for this connection.
    Owned(Bytes),
}

impl Piece<'_> {
    fn len(&self) -> usize {
        match self {
            Piece::Shared(s) => s.len(),
            Piece::Record(p, body) => p.as_bytes().len() + body.len(),
            Piece::Owned(b) => b.len(),
        }
    }

    fn slices(&self) -> impl Iterator<Item = &[u8]> {
        let (a, b): (&[u8], &[u8]) = match self {
            Piece::Shared(s) => (s, &[]),
            Piece::Record(p, body) => (p.as_bytes(), body),
            Piece::Owned(b) => (b, &[]),
        };
        [a, b].into_iter().filter(|s| !s.is_empty())
    }
}

/// [`write_items`] for a compact or compressed connection.
async fn write_encoded<W: AsyncWrite + Unpin>(
    w: &mut W,
    items: &[OutItem],
    outbox: &Outbox,
    deadline: &mut Option<Instant>,
    grace: Duration,
    wire: &mut WireFormat,
) -> std::io::Result<()> {
    let mut i = 0;
    while i < items.len() {
        if let OutItem::Raw(b) = &items[i] {
            write_all_slices(w, &mut [IoSlice::new(b)], outbox, *deadline, grace).await?;
            i += 1;
            continue;
        }
        // A record is two iovecs here.
        let mut pieces = Vec::with_capacity((items.len() - i).min(MAX_FRAMES_PER_MESSAGE / 2));
        // The last record's channel and its subscription number: a batch is mostly records of
        // one channel, whose names share one allocation, so most lookups are a pointer compare.
        let mut last_sub: Option<(usize, Option<u32>)> = None;
        while i < items.len() && pieces.len() < MAX_FRAMES_PER_MESSAGE / 2 && !matches!(items[i], OutItem::Raw(_)) {
            let piece = match (&items[i], &mut wire.proto) {
                (OutItem::Frame(b), None) => Some(Piece::Shared(b)),
                (OutItem::Record(r), None) => Some(Piece::Shared(&r.frame)),
                (OutItem::Frame(b), Some(p)) => {
                    // `subscribed` and `unsubscribed` change the numbering.
                    last_sub = None;
                    match p.transcode(b) {
                        Ok(f) => Some(Piece::Owned(f)),
                        Err(e) => {
                            tracing::warn!(error = %e, "a control frame could not be re-encoded; not sent");
                            None
                        }
                    }
                }
                (OutItem::Record(r), Some(p)) => {
                    let name = r.channel.as_str().as_ptr() as usize;
                    let sub = match last_sub {
                        Some((at, sub)) if at == name => sub,
                        _ => {
                            let sub = p.sub(r.channel.as_str());
                            last_sub = Some((name, sub));
                            sub
                        }
                    };
                    // No number: the channel was left; the client would drop the record.
                    sub.map(|sub| match r.compact_frame(sub) {
                        Some(frame) => Piece::Shared(frame),
                        None => Piece::Record(herald_protocol::proto::record_prefix(sub, r.compact_body().len()), r.compact_body()),
                    })
                }
                (OutItem::Raw(_), _) => unreachable!("raw items end a group"),
            };
            pieces.extend(piece);
            i += 1;
        }
        if pieces.is_empty() {
            continue;
        }
        let compressed;
        let header;
        let mut slices: Vec<IoSlice<'_>>;
        match &wire.deflate {
            Some(agreement) => {
                let plain: Vec<u8> = pieces.iter().flat_map(|p| p.slices()).flatten().copied().collect();
                let mut z = Vec::with_capacity(plain.len() / 2 + 16);
                agreement.compress(&plain, &mut z);
                compressed = z;
                header = message_header(wire.first_byte(true), compressed.len());
                slices = vec![IoSlice::new(&header.0[..header.1]), IoSlice::new(&compressed)];
            }
            None => {
                let len = pieces.iter().map(Piece::len).sum();
                header = message_header(wire.first_byte(false), len);
                slices = Vec::with_capacity(2 * pieces.len() + 1);
                slices.push(IoSlice::new(&header.0[..header.1]));
                for p in &pieces {
                    match p {
                        Piece::Shared(s) => slices.push(IoSlice::new(s)),
                        Piece::Record(prefix, body) => {
                            slices.push(IoSlice::new(prefix.as_bytes()));
                            slices.push(IoSlice::new(body));
                        }
                        Piece::Owned(b) => slices.push(IoSlice::new(b)),
                    }
                }
            }
        }
        if deadline.is_none() && outbox.close_reason().is_some() {
            *deadline = Some(Instant::now() + grace);
        }
        write_all_slices(w, &mut slices, outbox, *deadline, grace).await?;
    }
    Ok(())
}

/// Writes every slice. While the connection is healthy a write may take as long as it takes;
/// once it is closing (lagged, draining) the rest must go out before `deadline`.
async fn write_all_slices<W: AsyncWrite + Unpin>(
    w: &mut W,
    mut slices: &mut [IoSlice<'_>],
    outbox: &Outbox,
    mut deadline: Option<Instant>,
    grace: Duration,
) -> std::io::Result<()> {
    let timed_out = || std::io::Error::new(std::io::ErrorKind::TimedOut, "write did not finish within the close grace");
    while !slices.is_empty() {
        let n = match deadline {
            Some(d) => tokio::time::timeout_at(d, w.write_vectored(slices)).await.map_err(|_| timed_out())??,
            None => {
                tokio::select! {
                    r = w.write_vectored(slices) => r?,
                    _ = outbox.closed() => {
                        // Closing while a write is blocked: finish this message, but in bounded time.
                        deadline = Some(Instant::now() + grace);
                        continue;
                    }
                }
            }
        };
        if n == 0 {
            return Err(std::io::ErrorKind::WriteZero.into());
        }
        IoSlice::advance_slices(&mut slices, n);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_headers_use_the_shortest_length_form() {
        assert_eq!(&text_header(5).0[..2], &[0x81, 5]);
        assert_eq!(&text_header(300).0[..4], &[0x81, 126, 1, 44]);
        let (h, n) = text_header(70_000);
        assert_eq!(n, 10);
        assert_eq!(h[1], 127);
    }
}
