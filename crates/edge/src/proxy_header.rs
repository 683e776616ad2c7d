//! The PROXY protocol (HAProxy's; v1 text, v2 binary): the header a load balancer sends first
//! on each connection, naming the client it relays. Read once per connection, before TLS, with a
//! timeout and a bounded buffer; only the header's own bytes are taken from the socket.

use herald_config::ProxyProtocol;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::Duration;
use tokio::io::AsyncReadExt;
use tokio::net::TcpStream;

/// The longest v1 header, `\r\n` included.
pub const V1_MAX: usize = 107;
/// The v2 signature.
pub const V2_SIGNATURE: &[u8; 12] = b"\r\n\r\n\0\r\nQUIT\n";
/// The buffer that holds a v2 header and its addresses (TLVs after them are read and dropped).
const BUF: usize = 536;
/// How long a connection has to send its whole header.
pub const TIMEOUT: Duration = Duration::from_secs(5);

/// Why a connection was closed before HTTP.
#[derive(Debug, thiserror::Error)]
pub enum ProxyHeaderError {
    /// The first bytes are not a PROXY header.
    #[error("the connection did not start with a PROXY header")]
    Missing,
    /// A header of a version this listener does not accept.
    #[error("a PROXY {0} header, which this listener does not accept")]
    WrongVersion(&'static str),
    /// A header that breaks the specification.
    #[error("malformed PROXY header: {0}")]
    Malformed(&'static str),
    /// No complete header in time.
    #[error("no complete PROXY header within {TIMEOUT:?}")]
    Timeout,
    /// The socket failed or closed.
    #[error("reading the PROXY header: {0}")]
    Io(#[from] std::io::Error),
}

/// A complete header: the client it names (none for v2 `LOCAL`, v1 `UNKNOWN` and non-IP
/// families: the socket's peer stands) and its length in bytes.
#[derive(Debug, PartialEq, Eq)]
pub struct Header {
    /// The client's address.
    pub source: Option<SocketAddr>,
    /// Bytes to take from the socket, TLVs included.
    pub len: usize,
}

/// Parses the start of a connection: `Ok(None)` while more bytes are needed.
pub fn parse(buf: &[u8], mode: ProxyProtocol) -> Result<Option<Header>, ProxyHeaderError> {
    let starts = |sig: &[u8]| buf[..buf.len().min(sig.len())] == sig[..buf.len().min(sig.len())];
    if buf.is_empty() {
        Ok(None)
    } else if starts(b"PROXY ") {
        if mode == ProxyProtocol::V2 {
            return Err(ProxyHeaderError::WrongVersion("v1"));
        }
        match buf[..buf.len().min(V1_MAX)].iter().position(|&b| b == b'\n') {
            Some(end) => parse_v1(&buf[..=end]).map(Some),
            None if buf.len() >= V1_MAX => Err(ProxyHeaderError::Malformed("v1 line longer than 107 bytes")),
            None => Ok(None),
        }
    } else if starts(V2_SIGNATURE) {
        if mode == ProxyProtocol::V1 {
            return Err(ProxyHeaderError::WrongVersion("v2"));
        }
        parse_v2(buf)
    } else {
        Err(ProxyHeaderError::Missing)
    }
}

/// `PROXY TCP4|TCP6 SRC DST SPORT DPORT\r\n` or `PROXY UNKNOWN …\r\n`.
fn parse_v1(line: &[u8]) -> Result<Header, ProxyHeaderError> {
    let bad = ProxyHeaderError::Malformed;
    let text = line.strip_suffix(b"\r\n").ok_or(bad("v1 line does not end with CRLF"))?;
    let text = std::str::from_utf8(text).map_err(|_| bad("v1 line is not ASCII"))?;
    let mut f = text.split(' ').skip(1);
    let v4 = match f.next() {
        Some("TCP4") => true,
        Some("TCP6") => false,
        Some("UNKNOWN") => return Ok(Header { source: None, len: line.len() }),
        _ => return Err(bad("v1 protocol is not TCP4, TCP6 or UNKNOWN")),
    };
    let ip = |s: Option<&str>| match (s.map(str::parse::<IpAddr>), v4) {
        (Some(Ok(ip @ IpAddr::V4(_))), true) | (Some(Ok(ip @ IpAddr::V6(_))), false) => Ok(ip),
        _ => Err(bad("v1 address does not match its protocol")),
    };
    let port = |s: Option<&str>| s.filter(|p| p.bytes().all(|b| b.is_ascii_digit()) && (!p.starts_with('0') || *p == "0")).and_then(|p| p.parse::<u16>().ok()).ok_or(bad("v1 port"));
    let (src, _dst) = (ip(f.next())?, ip(f.next())?);
    let (sport, _dport) = (port(f.next())?, port(f.next())?);
    if f.next().is_some() {
        return Err(bad("v1 line has extra fields"));
    }
    Ok(Header { source: Some(SocketAddr::new(src.to_canonical(), sport)), len: line.len() })
}

/// The 16-byte v2 preamble, then addresses by family, then TLVs (skipped).
fn parse_v2(buf: &[u8]) -> Result<Option<Header>, ProxyHeaderError> {
    let bad = ProxyHeaderError::Malformed;
    if buf.len() < 16 {
        return Ok(None);
    }
    let len = 16 + u16::from_be_bytes([buf[14], buf[15]]) as usize;
    if buf[12] >> 4 != 2 {
        return Err(bad("v2 version is not 2"));
    }
    let local = match buf[12] & 0x0f {
        0 => true,
        1 => false,
        _ => return Err(bad("v2 command is not LOCAL or PROXY")),
    };
    let (family, transport) = (buf[13] >> 4, buf[13] & 0x0f);
    let need = match family {
        0 => 0,
        1 => 12,
        2 => 36,
        3 => 216,
        _ => return Err(bad("v2 address family")),
    };
    if transport > 2 {
        return Err(bad("v2 transport"));
    }
    if len < 16 + need {
        return Err(bad("v2 length shorter than its addresses"));
    }
    if local || transport != 1 || !(family == 1 || family == 2) {
        // LOCAL (health checks), UNSPEC, UNIX, UDP: the socket's own peer stands.
        return Ok(Some(Header { source: None, len }));
    }
    if buf.len() < 16 + need {
        return Ok(None);
    }
    let a = &buf[16..16 + need];
    let source = if family == 1 {
        SocketAddr::new(IpAddr::V4(Ipv4Addr::from(<[u8; 4]>::try_from(&a[..4]).expect("4 bytes"))), u16::from_be_bytes([a[8], a[9]]))
    } else {
        let ip = Ipv6Addr::from(<[u8; 16]>::try_from(&a[..16]).expect("16 bytes"));
        SocketAddr::new(IpAddr::V6(ip).to_canonical(), u16::from_be_bytes([a[32], a[33]]))
    };
    Ok(Some(Header { source: Some(source), len }))
}

/// Reads the header at the start of `tcp` and returns the client it names, if any. Nothing
/// after the header is consumed, so TLS or HTTP reads on from there.
pub async fn read(tcp: &mut TcpStream, mode: ProxyProtocol) -> Result<Option<SocketAddr>, ProxyHeaderError> {
    let mut buf = [0u8; BUF];
    let read = async {
        let mut seen = 0;
        let header = loop {
            let n = tcp.peek(&mut buf).await?;
            if n == 0 {
                return Err(ProxyHeaderError::Io(std::io::ErrorKind::UnexpectedEof.into()));
            }
            if let Some(h) = parse(&buf[..n], mode)? {
                break h;
            }
            if n == seen {
                // Part of the header is in; `peek` would return the same bytes at once.
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            seen = n;
        };
        let mut left = header.len;
        while left > 0 {
            match tcp.read(&mut buf[..left.min(BUF)]).await? {
                0 => return Err(ProxyHeaderError::Io(std::io::ErrorKind::UnexpectedEof.into())),
                n => left -= n,
            }
        }
        Ok(header.source)
    };
    tokio::time::timeout(TIMEOUT, read).await.map_err(|_| ProxyHeaderError::Timeout)?
}

#[cfg(test)]
mod tests {
    use super::*;
    use ProxyProtocol::{Any, V1, V2};

    fn src(s: &str) -> Option<SocketAddr> {
        Some(s.parse().unwrap())
    }

    fn v2(cmd: u8, fam: u8, addrs: &[u8], tlvs: &[u8]) -> Vec<u8> {
        let mut b = V2_SIGNATURE.to_vec();
        b.extend([0x20 | cmd, fam]);
        b.extend(((addrs.len() + tlvs.len()) as u16).to_be_bytes());
        b.extend(addrs);
        b.extend(tlvs);
        b
    }

    #[test]
    fn v1_names_the_source_and_its_length_and_leaves_the_rest() {
        let h = b"PROXY TCP4 203.0.113.7 10.0.0.1 56324 443\r\nGET / HTTP/1.1\r\n";
        assert_eq!(parse(h, V1).unwrap(), Some(Header { source: src("203.0.113.7:56324"), len: 43 }));
        let h = b"PROXY TCP6 2001:db8::1 2001:db8::2 4711 80\r\n";
        assert_eq!(parse(h, Any).unwrap().unwrap().source, src("[2001:db8::1]:4711"));
        let h = b"PROXY UNKNOWN ffff:f...f:ffff 1 2\r\n";
        assert_eq!(parse(h, V1).unwrap(), Some(Header { source: None, len: h.len() }), "UNKNOWN keeps the socket's peer");
        assert_eq!(parse(b"PROXY UNKNOWN\r\n", V1).unwrap().unwrap().len, 15);
    }

    #[test]
    fn v1_waits_for_the_whole_line_and_refuses_bad_ones() {
        assert_eq!(parse(b"PRO", V1).unwrap(), None);
        assert_eq!(parse(b"PROXY TCP4 1.2.3.4 5.6", V1).unwrap(), None);
        let bad = |h: &[u8]| matches!(parse(h, Any), Err(ProxyHeaderError::Malformed(_)));
        assert!(bad(b"PROXY TCP4 1.2.3.4 5.6.7.8 1 2\n"), "LF without CR");
        assert!(bad(b"PROXY TCP4 2001:db8::1 5.6.7.8 1 2\r\n"), "an IPv6 address in TCP4");
        assert!(bad(b"PROXY TCP4 999.2.3.4 5.6.7.8 1 2\r\n"));
        assert!(bad(b"PROXY TCP4 1.2.3.4 5.6.7.8 65536 2\r\n"));
        assert!(bad(b"PROXY TCP4 1.2.3.4 5.6.7.8 01 2\r\n"), "leading zero in a port");
        assert!(bad(b"PROXY TCP4 1.2.3.4 5.6.7.8 1\r\n"));
        assert!(bad(b"PROXY TCP4 1.2.3.4 5.6.7.8 1 2 3\r\n"));
        assert!(bad(b"PROXY UDP4 1.2.3.4 5.6.7.8 1 2\r\n"));
        assert!(bad(&[b"PROXY UNKNOWN ".as_slice(), &[b'x'; 100]].concat()), "longer than 107 bytes");
        assert!(matches!(parse(b"GET / HTTP/1.1\r\n", Any), Err(ProxyHeaderError::Missing)));
        assert!(matches!(parse(b"PROXY TCP4 1.2.3.4 5.6.7.8 1 2\r\n", V2), Err(ProxyHeaderError::WrongVersion("v1"))));
    }

    #[test]
    fn v2_names_the_source_skips_tlvs_and_keeps_the_peer_for_local() {
        let addrs = [203, 0, 113, 9, 10, 0, 0, 1, 0x1f, 0x90, 0x01, 0xbb];
        let h = v2(1, 0x11, &addrs, &[0x04, 0x00, 0x02, b'h', b'i']);
        assert_eq!(parse(&h, V2).unwrap(), Some(Header { source: src("203.0.113.9:8080"), len: 16 + 12 + 5 }));
        let mut a6 = Vec::new();
        a6.extend("2001:db8::7".parse::<Ipv6Addr>().unwrap().octets());
        a6.extend([0; 16]);
        a6.extend([0x12, 0x67, 0, 80]);
        assert_eq!(parse(&v2(1, 0x21, &a6, &[]), Any).unwrap().unwrap().source, src("[2001:db8::7]:4711"));
        let local = v2(0, 0x00, &[], &[]);
        assert_eq!(parse(&local, V2).unwrap(), Some(Header { source: None, len: 16 }), "LOCAL: a health check");
        assert_eq!(parse(&v2(1, 0x31, &[0; 216], &[]), V2).unwrap().unwrap().source, None, "UNIX keeps the peer");
        // TLVs beyond the buffer: the length still counts them.
        let big = v2(1, 0x11, &addrs, &[0; 2000]);
        assert_eq!(parse(&big[..BUF], V2).unwrap().unwrap().len, 16 + 12 + 2000);
    }

    #[test]
    fn v2_waits_for_its_addresses_and_refuses_bad_ones() {
        let h = v2(1, 0x11, &[1, 2, 3, 4, 5, 6, 7, 8, 0, 1, 0, 2], &[]);
        for cut in [1, 12, 15, 20] {
            assert_eq!(parse(&h[..cut], V2).unwrap(), None, "{cut} bytes");
        }
        let bad = |h: &[u8]| matches!(parse(h, Any), Err(ProxyHeaderError::Malformed(_)));
        let mut wrong_version = h.clone();
        wrong_version[12] = 0x11;
        assert!(bad(&wrong_version));
        assert!(bad(&v2(2, 0x11, &[0; 12], &[])), "unknown command");
        assert!(bad(&v2(1, 0x41, &[0; 12], &[])), "unknown family");
        assert!(bad(&v2(1, 0x13, &[0; 12], &[])), "unknown transport");
        assert!(bad(&v2(1, 0x21, &[0; 12], &[])), "too short for IPv6 addresses");
        assert!(matches!(parse(&h, V1), Err(ProxyHeaderError::WrongVersion("v2"))));
        assert!(matches!(parse(b"\r\n\r\n\0\r\nQUIZ\n", Any), Err(ProxyHeaderError::Missing)));
    }
}
