//! `permessage-deflate` (RFC 7692) for a client whose WebSocket library cannot read compressed
//! messages (tungstenite fails a connection on any RSV bit): with compression offered, the bytes
//! read pass through herald-protocol's inflater, after the HTTP response (which passes as it
//! is), and tungstenite reads plain frames. Messages the client sends go uncompressed, which the
//! extension allows. Counts the raw bytes read, so a load generator can report what crossed the
//! wire, compressed.

use std::pin::Pin;
use std::task::{Context, Poll};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use herald_protocol::deflate::inbound::InboundInflater;

/// The extension offer: each message compressed on its own, both ways (what Herald grants).
pub const OFFER: &str = "permessage-deflate; client_no_context_takeover; server_no_context_takeover";

/// Whether a handshake response's `Sec-WebSocket-Extensions` value grants the offer.
pub fn granted(extensions: Option<&str>) -> bool {
    extensions.is_some_and(|v| v.split(',').any(|e| e.trim().split(';').next().is_some_and(|name| name.trim() == "permessage-deflate")))
}

/// A socket whose reads are inflated (when made with [`DeflateIo::inflating`]) and counted.
pub struct DeflateIo<S> {
    io: S,
    inflate: Option<Box<Inflating>>,
    raw: u64,
}

struct Inflating {
    stream: InboundInflater,
    /// How much of `\r\n\r\n` (the end of the HTTP response) has been seen; 4 once past it.
    head: u8,
    out: Vec<u8>,
    at: usize,
    /// Compression was not granted: once `out` is handed on, read the socket as it is.
    stop: bool,
}

impl<S> DeflateIo<S> {
    /// A socket read as it is.
    pub fn plain(io: S) -> Self {
        DeflateIo { io, inflate: None, raw: 0 }
    }

    /// A socket whose compressed messages (after the HTTP response) are inflated; a message may
    /// inflate to at most `max_message` bytes.
    pub fn inflating(io: S, max_message: usize) -> Self {
        let inflate = Inflating { stream: InboundInflater::server_frames(max_message), head: 0, out: Vec::new(), at: 0, stop: false };
        DeflateIo { io, inflate: Some(Box::new(inflate)), raw: 0 }
    }

    /// The server did not grant compression: the rest is read as it is. (What was read so far
    /// passed unchanged: a server that did not agree sends no compressed frame.)
    pub fn stop_inflating(&mut self) {
        if let Some(inf) = &mut self.inflate {
            inf.stop = true;
        }
    }

    /// Whether compressed messages are being inflated.
    pub fn is_inflating(&self) -> bool {
        self.inflate.as_ref().is_some_and(|i| !i.stop)
    }

    /// Bytes read from the socket so far (the HTTP response included).
    pub fn raw_bytes(&self) -> u64 {
        self.raw
    }
}

impl Inflating {
    /// Takes bytes read from the socket: the HTTP response's as they are, frames through the
    /// inflater.
    fn feed(&mut self, mut data: &[u8]) -> std::io::Result<()> {
        while self.head < 4 && !data.is_empty() {
            let b = data[0];
            self.out.push(b);
            data = &data[1..];
            let want = b"\r\n\r\n"[self.head as usize];
            self.head = if b == want { self.head + 1 } else if b == b'\r' { 1 } else { 0 };
        }
        self.stream.feed(data, &mut self.out).map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e.to_string()))
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for DeflateIo<S> {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<std::io::Result<()>> {
        let this = &mut *self;
        if this.inflate.as_ref().is_some_and(|i| i.stop && i.at == i.out.len()) {
            this.inflate = None;
        }
        let Some(inf) = this.inflate.as_mut() else {
            let before = buf.filled().len();
            let r = Pin::new(&mut this.io).poll_read(cx, buf);
            this.raw += (buf.filled().len() - before) as u64;
            return r;
        };
        loop {
            if inf.at < inf.out.len() {
                let n = (inf.out.len() - inf.at).min(buf.remaining());
                buf.put_slice(&inf.out[inf.at..inf.at + n]);
                inf.at += n;
                if inf.at == inf.out.len() {
                    inf.out.clear();
                    inf.at = 0;
                }
                return Poll::Ready(Ok(()));
            }
            let mut raw = [0u8; 16 << 10];
            let mut rb = ReadBuf::new(&mut raw);
            match Pin::new(&mut this.io).poll_read(cx, &mut rb) {
                Poll::Ready(Ok(())) if rb.filled().is_empty() => return Poll::Ready(Ok(())),
                Poll::Ready(Ok(())) => {
                    this.raw += rb.filled().len() as u64;
                    inf.feed(rb.filled())?;
                }
                other => return other,
            }
        }
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for DeflateIo<S> {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.io).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.io).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_http_response_passes_and_the_frames_after_it_are_inflated() {
        let hello = [0xf2, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00];
        let response = b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n\r\n";
        let stream = [&response[..], &[0xc1, hello.len() as u8], &hello, &[0x81, 2], b"ok"].concat();
        for chunk in [1, 2, 5, 1000] {
            let mut inf = Inflating { stream: InboundInflater::server_frames(1 << 16), head: 0, out: Vec::new(), at: 0, stop: false };
            for c in stream.chunks(chunk) {
                inf.feed(c).unwrap();
            }
            assert_eq!(inf.out, [&response[..], &[0x81, 5], b"Hello", &[0x81, 2], b"ok"].concat(), "chunks of {chunk}");
        }
    }

    #[test]
    fn a_grant_is_recognised_among_extensions() {
        assert!(granted(Some("permessage-deflate; server_no_context_takeover; client_no_context_takeover")));
        assert!(granted(Some("x-other, permessage-deflate")));
        assert!(!granted(Some("permessage-deflate-ish")));
        assert!(!granted(None));
    }
}
