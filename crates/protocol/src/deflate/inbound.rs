//! A client's byte stream with its compressed messages inflated.
//!
//! The edge reads client frames with tungstenite, which fails a connection on any RSV bit. With
//! `permessage-deflate` agreed, the bytes read from the socket go through an [`InboundInflater`]
//! first: frames pass through untouched, except a compressed message (RSV1 on its first frame,
//! maybe continued by fragments), which is collected, inflated and handed on as one frame with
//! RSV1 clear and a zero mask key, so tungstenite reads it as if it had been sent uncompressed.
//! Control frames between fragments pass through at once. An idle connection holds no buffer.

use super::{DeflateError, RSV1, inflate_message};

/// Why the client's stream cannot be read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum InboundError {
    /// A compressed message does not inflate, or inflates past the limit.
    Deflate(DeflateError),
    /// Frames that break RFC 7692 (RSV1 on a continuation, a new message inside a compressed one).
    Protocol(&'static str),
}

impl std::fmt::Display for InboundError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Deflate(e) => e.fmt(f),
            Self::Protocol(m) => f.write_str(m),
        }
    }
}

enum State {
    /// Reading a frame header into `header`.
    Header,
    /// Forwarding this many more payload bytes unchanged.
    Pass(u64),
    /// Unmasking this many more payload bytes into `message`; `at` bytes of the frame are done.
    Collect { remaining: u64, mask: [u8; 4], at: usize, fin: bool },
}

/// Rewrites one connection's client-to-server byte stream (see the module documentation), or,
/// made with [`InboundInflater::server_frames`], a server-to-client one for a client.
pub struct InboundInflater {
    max_len: usize,
    /// Inflated messages are handed on masked with a zero key (what a server reading client
    /// frames expects); a client reading server frames expects them unmasked.
    mask_out: bool,
    state: State,
    header: Vec<u8>,
    /// The compressed message being collected, and its opcode (`None` when there is none).
    message: Vec<u8>,
    opcode: Option<u8>,
}

/// A frame header's length, from its second byte.
fn header_len(b1: u8) -> usize {
    let ext = match b1 & 0x7f {
        126 => 2,
        127 => 8,
        _ => 0,
    };
    2 + ext + if b1 & 0x80 != 0 { 4 } else { 0 }
}

impl InboundInflater {
    /// A rewriter whose messages may inflate to at most `max_len` bytes.
    pub fn new(max_len: usize) -> Self {
        Self { max_len, mask_out: true, state: State::Header, header: Vec::new(), message: Vec::new(), opcode: None }
    }

    /// A rewriter of a server's frames, for a client (a load generator) whose WebSocket library
    /// cannot read compressed messages: they are handed on unmasked, as a server sends frames.
    pub fn server_frames(max_len: usize) -> Self {
        Self { mask_out: false, ..Self::new(max_len) }
    }

    /// Feeds bytes read from the socket; appends the rewritten stream to `out`. After an error
    /// the connection must close.
    pub fn feed(&mut self, mut input: &[u8], out: &mut Vec<u8>) -> Result<(), InboundError> {
        loop {
            match self.state {
                State::Pass(remaining) => {
                    let n = remaining.min(input.len() as u64) as usize;
                    out.extend_from_slice(&input[..n]);
                    input = &input[n..];
                    if n as u64 == remaining {
                        self.state = State::Header;
                    } else {
                        self.state = State::Pass(remaining - n as u64);
                        return Ok(());
                    }
                }
                State::Collect { remaining, mask, at, fin } => {
                    let n = remaining.min(input.len() as u64) as usize;
                    self.message.extend(input[..n].iter().enumerate().map(|(i, b)| b ^ mask[(at + i) % 4]));
                    input = &input[n..];
                    if (n as u64) < remaining {
                        self.state = State::Collect { remaining: remaining - n as u64, mask, at: at + n, fin };
                        return Ok(());
                    }
                    self.state = State::Header;
                    if fin {
                        self.finish(out)?;
                    }
                }
                State::Header => {
                    if input.is_empty() {
                        return Ok(());
                    }
                    let need = if self.header.len() < 2 { 2 } else { header_len(self.header[1]) };
                    let take = (need - self.header.len()).min(input.len());
                    self.header.extend_from_slice(&input[..take]);
                    input = &input[take..];
                    if self.header.len() == 2 && header_len(self.header[1]) > 2 {
                        continue;
                    }
                    if self.header.len() == need {
                        self.frame(out)?;
                    }
                }
            }
        }
    }

    /// Acts on the complete header in `self.header`.
    fn frame(&mut self, out: &mut Vec<u8>) -> Result<(), InboundError> {
        let h = std::mem::take(&mut self.header);
        let (b0, b1) = (h[0], h[1]);
        let len = match b1 & 0x7f {
            126 => u16::from_be_bytes([h[2], h[3]]) as u64,
            127 => u64::from_be_bytes(h[2..10].try_into().expect("8 bytes")),
            n => n as u64,
        };
        let mask: [u8; 4] = if b1 & 0x80 != 0 { h[h.len() - 4..].try_into().expect("4 bytes") } else { [0; 4] };
        let (fin, opcode, rsv1) = (b0 & 0x80 != 0, b0 & 0x0f, b0 & RSV1 != 0);
        let collecting = opcode == 0 && self.opcode.is_some();
        if opcode < 8 && rsv1 && opcode != 0 {
            if self.opcode.is_some() {
                return Err(InboundError::Protocol("a new message inside a fragmented compressed one"));
            }
            self.opcode = Some(opcode);
        } else if collecting && rsv1 {
            return Err(InboundError::Protocol("RSV1 on a continuation frame"));
        } else if !collecting || opcode >= 8 {
            // Not part of a compressed message: forwarded as it came.
            out.extend_from_slice(&h);
            self.state = State::Pass(len);
            return Ok(());
        }
        // Stored blocks make incompressible data a little larger than itself.
        if self.message.len() as u64 + len > (self.max_len + self.max_len / 64 + 64) as u64 {
            return Err(InboundError::Deflate(DeflateError::TooLarge));
        }
        self.state = State::Collect { remaining: len, mask, at: 0, fin };
        if len == 0 && fin {
            self.state = State::Header;
            self.finish(out)?;
        }
        Ok(())
    }

    /// Inflates the collected message and forwards it as one uncompressed frame.
    fn finish(&mut self, out: &mut Vec<u8>) -> Result<(), InboundError> {
        let compressed = std::mem::take(&mut self.message);
        let opcode = self.opcode.take().expect("collecting a message");
        let mut plain = Vec::new();
        inflate_message(&compressed, self.max_len, &mut plain).map_err(InboundError::Deflate)?;
        out.push(0x80 | opcode);
        let len = plain.len();
        // Masked (tungstenite expects client frames masked) with a zero key: the bytes stay as
        // they are. A server's frames are not masked.
        let masked = if self.mask_out { 0x80 } else { 0 };
        if len < 126 {
            out.push(masked | len as u8);
        } else if len <= u16::MAX as usize {
            out.push(masked | 126);
            out.extend_from_slice(&(len as u16).to_be_bytes());
        } else {
            out.push(masked | 127);
            out.extend_from_slice(&(len as u64).to_be_bytes());
        }
        if self.mask_out {
            out.extend_from_slice(&[0; 4]);
        }
        out.extend_from_slice(&plain);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A masked client frame.
    fn frame(b0: u8, payload: &[u8]) -> Vec<u8> {
        let mask = [0x37, 0xfa, 0x21, 0x3d];
        let mut f = vec![b0];
        if payload.len() < 126 {
            f.push(0x80 | payload.len() as u8);
        } else {
            f.push(0x80 | 126);
            f.extend_from_slice(&(payload.len() as u16).to_be_bytes());
        }
        f.extend_from_slice(&mask);
        f.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
        f
    }

    fn unmasked_text(payload: &[u8]) -> Vec<u8> {
        let mut f = vec![0x81, 0x80 | payload.len() as u8, 0, 0, 0, 0];
        f.extend_from_slice(payload);
        f
    }

    fn run(stream: &[u8], chunk: usize) -> Result<Vec<u8>, InboundError> {
        let mut r = InboundInflater::new(1 << 16);
        let mut out = Vec::new();
        for c in stream.chunks(chunk) {
            r.feed(c, &mut out)?;
        }
        Ok(out)
    }

    #[test]
    fn compressed_messages_become_plain_frames_and_others_pass_untouched() {
        let hello = [0xf2, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00];
        let plain = frame(0x81, b"not compressed");
        let ping = frame(0x89, b"p");
        let mut big = Vec::new();
        super::super::Deflater::new(6, 15, true).compress(&vec![b'z'; 5000], &mut big);
        let stream = [
            frame(0xc1, &hello),                        // "Hello", compressed, one frame
            plain.clone(),                              // an uncompressed message passes as it came
            frame(0x41, &hello[..3]),                   // "Hello" in two fragments (RFC 7692, 7.2.3.1) ...
            ping.clone(),                               // ... with a ping between them
            frame(0x80, &hello[3..]),
            frame(0xc2, &big),                          // a binary message inflating to 5000 bytes
        ]
        .concat();
        let want = [
            unmasked_text(b"Hello"),
            plain,
            ping,
            unmasked_text(b"Hello"),
            [&[0x82, 0x80 | 126, 0x13, 0x88, 0, 0, 0, 0][..], &[b'z'; 5000]].concat(),
        ]
        .concat();
        // However the socket cuts the stream, the result is the same.
        for chunk in [1, 2, 3, 7, 64, 100_000] {
            assert!(run(&stream, chunk).unwrap() == want, "chunks of {chunk}");
        }
    }

    #[test]
    fn a_servers_compressed_messages_become_unmasked_plain_frames_for_a_client() {
        let hello = [0xf2, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00];
        // Server frames: unmasked, the compressed one with RSV1.
        let server = |b0: u8, payload: &[u8]| [&[b0, payload.len() as u8][..], payload].concat();
        let stream = [server(0xc1, &hello), server(0x81, b"as it is")].concat();
        let want = [server(0x81, b"Hello"), server(0x81, b"as it is")].concat();
        for chunk in [1, 3, 100] {
            let mut r = InboundInflater::server_frames(1 << 16);
            let mut out = Vec::new();
            for c in stream.chunks(chunk) {
                r.feed(c, &mut out).unwrap();
            }
            assert_eq!(out, want, "chunks of {chunk}");
        }
    }

    #[test]
    fn broken_compressed_streams_are_errors() {
        let hello = [0xf2, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00];
        assert!(matches!(run(&frame(0xc1, &[0xff, 0xff, 0xff]), 64), Err(InboundError::Deflate(_))));
        assert!(matches!(run(&[frame(0x41, &hello[..3]), frame(0xc0, &hello[3..])].concat(), 64), Err(InboundError::Protocol(_))));
        assert!(matches!(run(&[frame(0x41, &hello[..3]), frame(0xc1, &hello)].concat(), 64), Err(InboundError::Protocol(_))));
        let mut bomb = Vec::new();
        super::super::Deflater::new(9, 15, true).compress(&vec![0u8; 1 << 17], &mut bomb);
        assert_eq!(run(&frame(0xc2, &bomb), 64), Err(InboundError::Deflate(DeflateError::TooLarge)));
    }
}
