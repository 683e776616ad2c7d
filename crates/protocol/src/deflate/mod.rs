//! `permessage-deflate` (RFC 7692): negotiation, and per-message compression with raw DEFLATE.
//!
//! tungstenite 0.30 does not implement it (it fails a connection on any RSV bit), so Herald does
//! it here. The server always answers with `server_no_context_takeover` and
//! `client_no_context_takeover`: every message is compressed on its own, so a connection holds
//! no compressor or decompressor state between messages (a DEFLATE context is ~300 KiB; an idle
//! Herald connection is ~7 KiB), at the price of a lower ratio on runs of small messages, which
//! batching makes up for.
//!
//! A compressed message has RSV1 set on its first frame ([`RSV1`]); its payload is the DEFLATE
//! output with the `00 00 ff ff` tail of the final sync flush removed ([`Deflater`]), which the
//! receiver appends again before inflating ([`Inflater`]).
//!
//! - [`inbound`]: the client's byte stream with its compressed messages inflated, for a frame
//!   reader (tungstenite) that knows no extension.

pub mod inbound;

use flate2::{Compress, Compression, Decompress, FlushCompress, FlushDecompress, Status};
use std::cell::RefCell;

/// The extension's name in `Sec-WebSocket-Extensions`.
pub const EXTENSION: &str = "permessage-deflate";
/// The RSV1 bit of a frame's first byte: set on the first frame of a compressed message.
pub const RSV1: u8 = 0x40;
/// What a sync flush ends with; removed from every compressed message (RFC 7692, 7.2.1).
const TAIL: [u8; 4] = [0x00, 0x00, 0xff, 0xff];

/// What a server is willing to do (from its configuration).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DeflateConfig {
    /// DEFLATE level, 0 (store) to 9.
    pub level: u32,
    /// The largest LZ77 window the server compresses with, 9 to 15.
    pub server_max_window_bits: u8,
    /// The largest window the server asks clients to compress with, 9 to 15 (sent only when the
    /// client's offer allows it).
    pub client_max_window_bits: u8,
}

impl Default for DeflateConfig {
    fn default() -> Self {
        Self { level: 6, server_max_window_bits: 15, client_max_window_bits: 15 }
    }
}

/// One `permessage-deflate` offer from a client.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Offer {
    /// `server_no_context_takeover`.
    pub server_no_context_takeover: bool,
    /// `client_no_context_takeover`.
    pub client_no_context_takeover: bool,
    /// `server_max_window_bits=N`.
    pub server_max_window_bits: Option<u8>,
    /// `client_max_window_bits` (`Some(None)` without a value: the client can take a limit).
    pub client_max_window_bits: Option<Option<u8>>,
}

/// The parameters both sides agreed on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Agreement {
    /// The window the server compresses with.
    pub server_window_bits: u8,
    /// The limit the response puts on the client's window, when the offer allowed one.
    pub client_window_bits: Option<u8>,
    /// The compression level.
    pub level: u32,
}

impl Agreement {
    /// The `Sec-WebSocket-Extensions` response value.
    pub fn response(&self) -> String {
        let mut r = format!("{EXTENSION}; server_no_context_takeover; client_no_context_takeover");
        if self.server_window_bits < 15 {
            r.push_str(&format!("; server_max_window_bits={}", self.server_window_bits));
        }
        if let Some(c) = self.client_window_bits {
            r.push_str(&format!("; client_max_window_bits={c}"));
        }
        r
    }

    /// Compresses one server message (appended to `out`). Every message is compressed on its
    /// own, so a compressor of the calling thread serves every connection: none is held per
    /// connection.
    pub fn compress(&self, message: &[u8], out: &mut Vec<u8>) {
        thread_local! {
            static DEFLATERS: RefCell<Vec<((u32, u8), Deflater)>> = const { RefCell::new(Vec::new()) };
        }
        let key = (self.level, self.server_window_bits);
        DEFLATERS.with_borrow_mut(|pool| {
            let i = match pool.iter().position(|(k, _)| *k == key) {
                Some(i) => i,
                None => {
                    pool.push((key, Deflater::new(self.level, self.server_window_bits, true)));
                    pool.len() - 1
                }
            };
            pool[i].1.compress(message, out);
        });
    }
}

/// Inflates one client message (appended to `out`, at most `max_len` bytes) with a decompressor
/// of the calling thread: the server asks for `client_no_context_takeover`, so messages are
/// independent and no connection holds one.
pub fn inflate_message(payload: &[u8], max_len: usize, out: &mut Vec<u8>) -> Result<(), DeflateError> {
    thread_local! {
        static INFLATER: RefCell<Option<Inflater>> = const { RefCell::new(None) };
    }
    INFLATER.with_borrow_mut(|slot| {
        let inf = slot.get_or_insert_with(|| Inflater::new(true, max_len));
        inf.max_len = max_len;
        inf.decompress(payload, out)
    })
}

/// The `permessage-deflate` offers among `Sec-WebSocket-Extensions` header values, in the
/// client's order of preference. A malformed offer (an unknown or repeated parameter, a window
/// outside 8-15) is left out, as RFC 7692 asks a server to decline it; other extensions are
/// ignored.
pub fn parse_offers<'a>(header_values: impl IntoIterator<Item = &'a str>) -> Vec<Offer> {
    header_values.into_iter().flat_map(|v| v.split(',')).filter_map(parse_offer).collect()
}

fn parse_offer(ext: &str) -> Option<Offer> {
    let mut parts = ext.split(';').map(str::trim);
    if !parts.next()?.eq_ignore_ascii_case(EXTENSION) {
        return None;
    }
    let mut o = Offer::default();
    let mut seen = Vec::new();
    for p in parts {
        let (name, value) = match p.split_once('=') {
            Some((n, v)) => (n.trim(), Some(v.trim().trim_matches('"'))),
            None => (p, None),
        };
        if seen.contains(&name) {
            return None;
        }
        seen.push(name);
        let bits = |v: Option<&str>| v.and_then(|v| v.parse::<u8>().ok()).filter(|b| (8..=15).contains(b));
        match (name, value) {
            ("server_no_context_takeover", None) => o.server_no_context_takeover = true,
            ("client_no_context_takeover", None) => o.client_no_context_takeover = true,
            ("server_max_window_bits", v) => o.server_max_window_bits = Some(bits(v)?),
            ("client_max_window_bits", None) => o.client_max_window_bits = Some(None),
            ("client_max_window_bits", v) => o.client_max_window_bits = Some(Some(bits(v)?)),
            _ => return None,
        }
    }
    Some(o)
}

/// Accepts the first offer the server can honour under `config`: `None` when there is none
/// (the connection then goes uncompressed). An offer limiting the server's window to 8 bits is
/// declined: zlib's raw DEFLATE cannot compress with a window that small.
pub fn negotiate<'a>(header_values: impl IntoIterator<Item = &'a str>, config: &DeflateConfig) -> Option<Agreement> {
    parse_offers(header_values).into_iter().find_map(|o| {
        let server_window_bits = o.server_max_window_bits.unwrap_or(15).min(config.server_max_window_bits.clamp(9, 15));
        if server_window_bits < 9 {
            return None;
        }
        let client_window_bits = match o.client_max_window_bits {
            None => None,
            Some(offered) => {
                let ours = config.client_max_window_bits.clamp(9, 15);
                let limit = offered.map_or(ours, |b| b.min(ours));
                (limit < 15 || offered.is_some()).then_some(limit)
            }
        };
        Some(Agreement { server_window_bits, client_window_bits, level: config.level.min(9) })
    })
}

/// Why a compressed message could not be inflated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DeflateError {
    /// Not valid DEFLATE data.
    Corrupt(String),
    /// It inflates to more than the limit.
    TooLarge,
}

impl std::fmt::Display for DeflateError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Corrupt(e) => write!(f, "compressed message is not valid DEFLATE data: {e}"),
            Self::TooLarge => f.write_str("compressed message inflates past the size limit"),
        }
    }
}

/// Compresses messages, one at a time.
pub struct Deflater {
    c: Compress,
    no_context_takeover: bool,
}

impl Deflater {
    /// A compressor at `level` (0-9) with a window of `window_bits` (9-15). With
    /// `no_context_takeover`, each message is compressed on its own.
    pub fn new(level: u32, window_bits: u8, no_context_takeover: bool) -> Self {
        Self { c: Compress::new_with_window_bits(Compression::new(level.min(9)), false, window_bits.clamp(9, 15)), no_context_takeover }
    }

    /// Appends the compressed payload of one message to `out` (without the `00 00 ff ff` tail).
    pub fn compress(&mut self, message: &[u8], out: &mut Vec<u8>) {
        let start = out.len();
        let mut input = message;
        loop {
            if out.capacity() - out.len() < 64 {
                out.reserve(64.max(input.len() / 2));
            }
            let before = self.c.total_in();
            // A sync flush ends the message on a byte boundary with an empty stored block.
            self.c.compress_vec(input, out, FlushCompress::Sync).expect("compressing from memory to memory cannot fail");
            input = &input[(self.c.total_in() - before) as usize..];
            // Done when all input is in and the flush fit (room was left over).
            if input.is_empty() && out.len() < out.capacity() && out[start..].ends_with(&TAIL) {
                break;
            }
        }
        out.truncate(out.len() - TAIL.len());
        if self.no_context_takeover {
            self.c.reset();
        }
    }
}

/// Inflates messages, one at a time, refusing any larger than a limit.
pub struct Inflater {
    d: Decompress,
    no_context_takeover: bool,
    max_len: usize,
}

impl Inflater {
    /// A decompressor (any window up to 15 bits) for messages of at most `max_len` bytes. With
    /// `no_context_takeover`, each message is inflated on its own.
    pub fn new(no_context_takeover: bool, max_len: usize) -> Self {
        Self { d: Decompress::new(false), no_context_takeover, max_len }
    }

    /// Inflates one message's payload (the tail is added here) and appends it to `out`.
    pub fn decompress(&mut self, payload: &[u8], out: &mut Vec<u8>) -> Result<(), DeflateError> {
        let start = out.len();
        let result = self.feed(payload, out, start).and_then(|ended| if ended { Ok(true) } else { self.feed(&TAIL, out, start) });
        // A final block ends the stream: the next message starts a new one. So does an error.
        if self.no_context_takeover || !matches!(result, Ok(false)) {
            self.d.reset(false);
        }
        if result.is_err() {
            out.truncate(start);
        }
        result.map(|_| ())
    }

    /// Inflates `input`; true when the DEFLATE stream ended (a block with BFINAL).
    fn feed(&mut self, mut input: &[u8], out: &mut Vec<u8>, start: usize) -> Result<bool, DeflateError> {
        loop {
            if out.len() == out.capacity() {
                let room = (self.max_len + 1).saturating_sub(out.len() - start);
                if room == 0 {
                    return Err(DeflateError::TooLarge);
                }
                out.reserve(room.min(input.len().max(256) * 4));
            }
            let (in0, out0) = (self.d.total_in(), out.len());
            let status = self.d.decompress_vec(input, out, FlushDecompress::Sync).map_err(|e| DeflateError::Corrupt(e.to_string()))?;
            input = &input[(self.d.total_in() - in0) as usize..];
            if out.len() - start > self.max_len {
                return Err(DeflateError::TooLarge);
            }
            match status {
                Status::StreamEnd => return Ok(true),
                _ if input.is_empty() && out.len() < out.capacity() => return Ok(false),
                // No progress with room to spare: the data is cut short where it cannot be.
                _ if out.len() == out0 && self.d.total_in() == in0 && out.len() < out.capacity() => {
                    return Err(DeflateError::Corrupt("no progress".into()));
                }
                _ => {}
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn inflate(payload: &[u8]) -> Result<Vec<u8>, DeflateError> {
        let mut out = Vec::new();
        Inflater::new(true, 1 << 20).decompress(payload, &mut out).map(|_| out)
    }

    // RFC 7692, section 7.2.3: the payloads of its example frames.
    #[test]
    fn the_rfc_examples_inflate_to_hello() {
        // 7.2.3.1: a message compressed in one frame.
        assert_eq!(inflate(&[0xf2, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00]).unwrap(), b"Hello");
        // 7.2.3.1: the same message in two fragments (RSV1 on the first only): the payloads join.
        assert_eq!(inflate(&[[0xf2, 0x48, 0xcd].as_slice(), &[0xc9, 0xc9, 0x07, 0x00]].concat()).unwrap(), b"Hello");
        // 7.2.3.3: a stored (uncompressed) DEFLATE block.
        assert_eq!(inflate(&[0x00, 0x05, 0x00, 0xfa, 0xff, 0x48, 0x65, 0x6c, 0x6c, 0x6f, 0x00]).unwrap(), b"Hello");
        // 7.2.3.4: a block with BFINAL set.
        assert_eq!(inflate(&[0xf3, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00, 0x00]).unwrap(), b"Hello");
        // 7.2.3.5: two DEFLATE blocks in one message.
        assert_eq!(inflate(&[0xf2, 0x48, 0x05, 0x00, 0x00, 0x00, 0xff, 0xff, 0xca, 0xc9, 0xc9, 0x07, 0x00]).unwrap(), b"Hello");
    }

    #[test]
    fn the_rfc_example_with_a_shared_window_inflates_with_context_takeover() {
        // 7.2.3.2: the second "Hello" refers back into the first message's window.
        let mut inf = Inflater::new(false, 1 << 20);
        let mut out = Vec::new();
        inf.decompress(&[0xf2, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00], &mut out).unwrap();
        inf.decompress(&[0xf2, 0x00, 0x11, 0x00, 0x00], &mut out).unwrap();
        assert_eq!(out, b"HelloHello");
        // Without context takeover the second message cannot be read on its own.
        assert!(inflate(&[0xf2, 0x00, 0x11, 0x00, 0x00]).is_err());
    }

    #[test]
    fn compressing_hello_gives_the_rfc_bytes_and_messages_round_trip() {
        let mut d = Deflater::new(6, 15, true);
        let mut out = Vec::new();
        d.compress(b"Hello", &mut out);
        assert_eq!(out, [0xf2, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00]);
        // Without context takeover every message compresses the same, independently.
        let mut again = Vec::new();
        d.compress(b"Hello", &mut again);
        assert_eq!(again, out);
        // An empty message is a single 0x00 (RFC 7692, 7.2.3.6).
        let mut empty = Vec::new();
        d.compress(b"", &mut empty);
        assert_eq!(empty, [0x00]);
        assert_eq!(inflate(&empty).unwrap(), b"");
        let big: Vec<u8> = (0..200_000u32).flat_map(|i| format!("{{\"ent\":\"incident\",\"id\":\"P{}\"}}\n", i % 977).into_bytes()).collect();
        let mut z = Vec::new();
        Deflater::new(1, 10, true).compress(&big, &mut z);
        assert!(z.len() < big.len() / 4, "{} of {}", z.len(), big.len());
        let mut back = Vec::new();
        Inflater::new(true, big.len()).decompress(&z, &mut back).unwrap();
        assert!(back == big);
    }

    #[test]
    fn inflating_past_the_limit_or_garbage_is_an_error_and_leaves_out_unchanged() {
        let mut z = Vec::new();
        Deflater::new(9, 15, true).compress(&vec![b'a'; 100_000], &mut z);
        let mut out = b"kept".to_vec();
        let mut inf = Inflater::new(true, 99_999);
        assert_eq!(inf.decompress(&z, &mut out), Err(DeflateError::TooLarge));
        assert_eq!(out, b"kept");
        assert!(matches!(inf.decompress(&[0xff, 0xff, 0xff], &mut out), Err(DeflateError::Corrupt(_))));
        assert_eq!(out, b"kept");
        // The inflater is usable again afterwards.
        inf.decompress(&[0xf2, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00], &mut out).unwrap();
        assert_eq!(out, b"keptHello");
    }

    #[test]
    fn offers_are_parsed_and_malformed_ones_declined() {
        let o = parse_offers(["permessage-deflate; client_max_window_bits, permessage-deflate; server_max_window_bits=10; server_no_context_takeover", "x-webkit-deflate-frame"]);
        assert_eq!(o, vec![
            Offer { client_max_window_bits: Some(None), ..Offer::default() },
            Offer { server_max_window_bits: Some(10), server_no_context_takeover: true, ..Offer::default() },
        ]);
        for bad in [
            "permessage-deflate; server_max_window_bits",
            "permessage-deflate; server_max_window_bits=16",
            "permessage-deflate; client_max_window_bits=7",
            "permessage-deflate; server_no_context_takeover; server_no_context_takeover",
            "permessage-deflate; server_no_context_takeover=1",
            "permessage-deflate; mystery",
        ] {
            assert!(parse_offers([bad]).is_empty(), "{bad}");
        }
        assert_eq!(parse_offers([r#"permessage-deflate; client_max_window_bits="12""#])[0].client_max_window_bits, Some(Some(12)));
    }

    #[test]
    fn negotiation_honours_the_clients_limits_and_the_servers() {
        let config = DeflateConfig::default();
        // What browsers send.
        let a = negotiate(["permessage-deflate; client_max_window_bits"], &config).unwrap();
        assert_eq!(a.response(), "permessage-deflate; server_no_context_takeover; client_no_context_takeover");
        // The client limits the server's window: the response says so, and the server uses it.
        let a = negotiate(["permessage-deflate; server_max_window_bits=10"], &config).unwrap();
        assert_eq!(a.server_window_bits, 10);
        assert!(a.response().ends_with("; server_max_window_bits=10"));
        // 8 bits cannot be honoured: that offer is declined and the next one taken.
        let a = negotiate(["permessage-deflate; server_max_window_bits=8, permessage-deflate"], &config).unwrap();
        assert_eq!(a.server_window_bits, 15);
        assert_eq!(negotiate(["permessage-deflate; server_max_window_bits=8"], &config), None);
        // The server's own limits: on its window always, on the client's only where offered.
        let small = DeflateConfig { level: 1, server_max_window_bits: 11, client_max_window_bits: 12 };
        let a = negotiate(["permessage-deflate; client_max_window_bits=14"], &small).unwrap();
        assert_eq!(a.response(), "permessage-deflate; server_no_context_takeover; client_no_context_takeover; server_max_window_bits=11; client_max_window_bits=12");
        let a = negotiate(["permessage-deflate"], &small).unwrap();
        assert_eq!(a.client_window_bits, None);
        assert_eq!(negotiate(["x-other"], &config), None);
    }
}
