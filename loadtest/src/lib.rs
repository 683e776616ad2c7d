//! `herald-loadtest`: the pieces of a load run, each its own process so that big connection
//! counts spread over several processes (a process here may hold at most 20,000 files) and
//! several 127.0.0.x source addresses.
//!
//! - [`subscribe`]: N connections (WebSocket, SSE, long-poll, or a NATS server's WebSocket
//!   listener), each checking the publisher's sequence numbers exactly once and in order
//!   ([`seq::SeqCheck`]), recording publish→delivery latency in one HDR histogram per process
//!   (plus one per second), reconnecting and resuming from its cursor whenever a connection ends,
//!   and, for the reconnect-storm and mobile scenarios, cutting connections on purpose.
//! - [`publish`]: numbered, timestamped records at a fixed or stepped rate over C channels
//!   (Herald's HTTP publish API, or core NATS over TCP).
//! - [`chat`]: many small rooms where every member publishes over its WebSocket and checks every
//!   other member's messages.
//! - [`report`]: merges the processes' outputs (histograms exactly, from their base64 V2
//!   serialization), decides pass or fail, and writes report.json, summary.txt and latency.svg.
//!
//! Processes are steered by lines on stdin ([`subscribe::Control`]): when to cut every
//! connection (the storm) and how many records were published (so a subscriber knows when it
//! has everything, and what it lost).
#![forbid(unsafe_code)]

pub mod chat;
pub mod hist;
pub mod publish;
pub mod report;
pub mod seq;
pub mod subscribe;

use std::net::SocketAddr;
use tokio::net::{TcpSocket, TcpStream};

/// Microseconds since the Unix epoch.
pub fn now_us() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_micros() as u64).unwrap_or(0)
}

/// This process's CPU time (user + system), in seconds, from /proc.
pub fn cpu_seconds() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let after = stat.rsplit(')').next().unwrap_or("");
    let f: Vec<&str> = after.split_whitespace().collect();
    let ticks: f64 = f.get(11).and_then(|u| u.parse::<f64>().ok()).unwrap_or(0.0) + f.get(12).and_then(|s| s.parse::<f64>().ok()).unwrap_or(0.0);
    ticks / 100.0
}

/// Finds `key` (e.g. `"seq":`) and parses the unsigned number right after it.
pub fn num_field(frame: &[u8], key: &[u8]) -> Option<u64> {
    let at = find(frame, key)? + key.len();
    let mut n: u64 = 0;
    let mut digits = 0;
    for &b in &frame[at..] {
        if !b.is_ascii_digit() {
            break;
        }
        n = n.checked_mul(10)?.checked_add(u64::from(b - b'0'))?;
        digits += 1;
    }
    (digits > 0).then_some(n)
}

/// Finds `key` (ending in an opening quote, e.g. `"cursor":"`) and returns the text up to the
/// closing quote.
pub fn str_field<'a>(frame: &'a [u8], key: &[u8]) -> Option<&'a [u8]> {
    let at = find(frame, key)? + key.len();
    let rest = &frame[at..];
    Some(&rest[..rest.iter().position(|&b| b == b'"')?])
}

/// The first position of `needle` in `hay`.
pub fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    if needle.is_empty() {
        return None;
    }
    memchr::memmem::find(hay, needle)
}

/// A TCP connection to `addr` from `source_ip` (any port), with Nagle off: load processes each
/// use their own 127.0.0.x so that many thousands of connections do not run out of ports.
pub async fn connect(addr: &str, source_ip: Option<&str>) -> anyhow::Result<TcpStream> {
    connect_with(addr, source_ip, 0).await
}

/// [`connect`] with a receive buffer of `recv_buffer` bytes (0: the kernel's default), set
/// before connecting so the window the server sees is small from the start.
pub async fn connect_with(addr: &str, source_ip: Option<&str>, recv_buffer: u32) -> anyhow::Result<TcpStream> {
    let to: SocketAddr = addr.parse().map_err(|e| anyhow::anyhow!("bad address {addr}: {e}"))?;
    let sock = if to.is_ipv4() { TcpSocket::new_v4()? } else { TcpSocket::new_v6()? };
    if let Some(ip) = source_ip {
        sock.bind(format!("{ip}:0").parse()?)?;
    }
    if recv_buffer > 0 {
        sock.set_recv_buffer_size(recv_buffer)?;
    }
    let tcp = sock.connect(to).await?;
    tcp.set_nodelay(true)?;
    Ok(tcp)
}

/// A cheap pseudo-random generator (xorshift64*), one per connection: schedules, jitter.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Rng((seed ^ now_us()).wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }

    pub fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// Uniform in [0, 1).
    pub fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    /// Uniform in [0, n).
    pub fn below(&mut self, n: u64) -> u64 {
        if n == 0 { 0 } else { self.next_u64() % n }
    }

    /// Exponentially distributed with this mean.
    pub fn exp(&mut self, mean: f64) -> f64 {
        -(1.0 - self.unit()).ln() * mean
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_parse_without_allocating() {
        let f = br#"{"type":"message","channel":"fanout","cursor":"c1.ab.local.42","data":{"seq":17,"t":1763996400123456,"pad":"xx"}}"#;
        assert_eq!(num_field(f, br#""seq":"#), Some(17));
        assert_eq!(num_field(f, br#""t":"#), Some(1_763_996_400_123_456));
        assert_eq!(str_field(f, br#""cursor":""#), Some(&b"c1.ab.local.42"[..]));
        assert_eq!(num_field(f, br#""nope":"#), None);
        assert_eq!(num_field(br#"{"seq":x}"#, br#""seq":"#), None);
        assert_eq!(find(b"abcabd", b"abd"), Some(3));
        assert_eq!(find(b"ab", b"abc"), None);
    }

    #[test]
    fn rng_spreads() {
        let mut r = Rng::new(7);
        let mean = (0..10_000).map(|_| r.exp(2.0)).sum::<f64>() / 10_000.0;
        assert!((1.8..2.2).contains(&mean), "{mean}");
        assert!((0..1000).all(|_| r.below(10) < 10));
    }
}
