//! The client's address behind load balancers: the connection's address (the socket's peer, or
//! the PROXY header's source, see [`crate::proxy_header`]), unless that address is a trusted
//! proxy; then the right-most address of `X-Forwarded-For` (or `Forwarded: for=`) that is not
//! itself trusted. Every per-address limit and log uses the result.
//!
//! Headers from an untrusted address are ignored: anyone can write them. A malformed header is
//! ignored too (the connection's address stands); a request never fails for one.

use http::HeaderMap;
use std::net::{IpAddr, SocketAddr};

use herald_config::{Cidr, EdgeConfig, ForwardedHeader};

/// The proxies whose forwarding header is believed, and which header that is.
#[derive(Clone, Debug)]
pub struct TrustedProxies {
    networks: Vec<Cidr>,
    header: ForwardedHeader,
}

/// One hop of a forwarding header.
enum Hop {
    /// An address (port 0 when the header gave none).
    At(SocketAddr),
    /// `unknown` or an obfuscated name: whoever it was, it cannot be told apart.
    Hidden,
}

impl TrustedProxies {
    /// From `edge.trusted_proxies` and `edge.forwarded_header`.
    pub fn new(c: &EdgeConfig) -> Self {
        Self { networks: c.trusted_proxies.clone(), header: c.forwarded_header }
    }

    /// Whether `ip` is a trusted proxy.
    pub fn contains(&self, ip: IpAddr) -> bool {
        self.networks.iter().any(|n| n.contains(ip))
    }

    /// The client's address for a request that arrived on a connection from `conn`.
    pub fn client(&self, headers: &HeaderMap, conn: SocketAddr) -> SocketAddr {
        let conn = SocketAddr::new(conn.ip().to_canonical(), conn.port());
        if !self.contains(conn.ip()) {
            return conn;
        }
        let found = match self.header {
            ForwardedHeader::XForwardedFor => self.walk(headers, "x-forwarded-for", xff_hop),
            ForwardedHeader::Forwarded => self.walk(headers, "forwarded", forwarded_hop),
        };
        found.unwrap_or(conn)
    }

    /// Walks the header's hops from the right (every line, in order, is one list): the first
    /// untrusted address is the client; if every hop is trusted, the left-most one. None if the
    /// header is absent, malformed or ends in a hidden hop.
    fn walk(&self, headers: &HeaderMap, name: &str, hop: fn(&str) -> Option<Hop>) -> Option<SocketAddr> {
        let mut leftmost = None;
        for line in headers.get_all(name).iter().rev() {
            let line = line.to_str().ok()?;
            for item in split_unquoted(line, b',').rev().map(str::trim).filter(|s| !s.is_empty()) {
                match hop(item)? {
                    Hop::Hidden => return None,
                    Hop::At(a) if self.contains(a.ip()) => leftmost = Some(a),
                    Hop::At(a) => return Some(a),
                }
            }
        }
        leftmost
    }
}

/// `203.0.113.7`, `203.0.113.7:4711`, `2001:db8::1`, `[2001:db8::1]:4711` or `unknown`.
fn xff_hop(s: &str) -> Option<Hop> {
    node(s)
}

/// One `Forwarded` element (`for=…;proto=…;by=…`): its `for` node.
fn forwarded_hop(element: &str) -> Option<Hop> {
    let mut found = None;
    for pair in split_unquoted(element, b';').map(str::trim).filter(|s| !s.is_empty()) {
        let (k, v) = pair.split_once('=')?;
        if k.trim().eq_ignore_ascii_case("for") {
            let v = v.trim();
            let v = match v.strip_prefix('"') {
                Some(q) => q.strip_suffix('"').filter(|q| !q.contains(['"', '\\']))?,
                None => v,
            };
            found = Some(node(v)?);
        }
    }
    found
}

/// A node: an address with an optional port, or a hidden one.
fn node(s: &str) -> Option<Hop> {
    let canonical = |a: SocketAddr| Hop::At(SocketAddr::new(a.ip().to_canonical(), a.port()));
    if s.eq_ignore_ascii_case("unknown") || s.starts_with('_') {
        return Some(Hop::Hidden);
    }
    if let Ok(a) = s.parse::<SocketAddr>() {
        return Some(canonical(a));
    }
    let bare = s.strip_prefix('[').and_then(|b| b.strip_suffix(']')).unwrap_or(s);
    bare.parse::<IpAddr>().ok().map(|ip| canonical(SocketAddr::new(ip, 0)))
}

/// Splits on `sep` outside double quotes.
fn split_unquoted(s: &str, sep: u8) -> impl DoubleEndedIterator<Item = &str> {
    let mut quoted = false;
    let mut cuts = vec![0];
    for (i, b) in s.bytes().enumerate() {
        match b {
            b'"' => quoted = !quoted,
            b if b == sep && !quoted => cuts.extend([i, i + 1]),
            _ => {}
        }
    }
    cuts.push(s.len());
    (0..cuts.len() / 2).map(move |i| &s[cuts[2 * i]..cuts[2 * i + 1]]).collect::<Vec<_>>().into_iter()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn trusted(nets: &[&str], header: ForwardedHeader) -> TrustedProxies {
        let c = EdgeConfig { trusted_proxies: nets.iter().map(|s| s.parse().unwrap()).collect(), forwarded_header: header, ..Default::default() };
        TrustedProxies::new(&c)
    }

    fn client(t: &TrustedProxies, conn: &str, headers: &[(&'static str, &str)]) -> String {
        let mut h = HeaderMap::new();
        for (k, v) in headers {
            h.append(*k, v.parse().unwrap());
        }
        t.client(&h, conn.parse().unwrap()).to_string()
    }

    #[test]
    fn xff_gives_the_right_most_untrusted_address_from_a_trusted_peer_only() {
        let t = trusted(&["10.0.0.0/8", "::1/128"], ForwardedHeader::XForwardedFor);
        let xff = |v| [("x-forwarded-for", v)];
        assert_eq!(client(&t, "10.0.0.1:5000", &xff("198.51.100.7")), "198.51.100.7:0");
        assert_eq!(client(&t, "10.0.0.1:5000", &xff("6.6.6.6, 198.51.100.7, 10.9.9.9")), "198.51.100.7:0", "the spoofed left part is not read");
        assert_eq!(client(&t, "[::1]:5000", &xff("10.1.1.1, 10.2.2.2")), "10.1.1.1:0", "every hop trusted: the left-most");
        assert_eq!(client(&t, "203.0.113.1:5000", &xff("198.51.100.7")), "203.0.113.1:5000", "an untrusted peer's header is ignored");
        assert_eq!(client(&t, "10.0.0.1:5000", &[]), "10.0.0.1:5000");
        assert_eq!(client(&t, "[::ffff:10.0.0.1]:5000", &xff("198.51.100.7")), "198.51.100.7:0", "IPv4-mapped peers are IPv4");
        let lines = [("x-forwarded-for", "6.6.6.6"), ("x-forwarded-for", "198.51.100.8, 10.3.3.3")];
        assert_eq!(client(&t, "10.0.0.1:5000", &lines), "198.51.100.8:0", "several lines are one list");
        assert_eq!(client(&t, "10.0.0.1:5000", &xff("[2001:db8::5]:4711")), "[2001:db8::5]:4711");
        assert_eq!(client(&t, "10.0.0.1:5000", &xff("2001:db8::5")), "[2001:db8::5]:0");
        assert_eq!(client(&t, "10.0.0.1:5000", &xff("198.51.100.7:4711")), "198.51.100.7:4711");
    }

    #[test]
    fn a_malformed_or_hidden_forwarding_header_leaves_the_connection_address() {
        let t = trusted(&["10.0.0.0/8"], ForwardedHeader::XForwardedFor);
        for bad in ["not-an-ip", "198.51.100.7, garbage", "unknown", "1.2.3.4.5", "198.51.100.7 10.0.0.2"] {
            assert_eq!(client(&t, "10.0.0.1:5000", &[("x-forwarded-for", bad)]), "10.0.0.1:5000", "{bad}");
        }
        assert_eq!(client(&t, "10.0.0.1:5000", &[("x-forwarded-for", "garbage, 198.51.100.7")]), "198.51.100.7:0", "the walk stops before the garbage");
        assert_eq!(client(&t, "10.0.0.1:5000", &[("x-forwarded-for", "198.51.100.7,")]), "198.51.100.7:0", "empty items are skipped");
    }

    #[test]
    fn forwarded_for_works_like_xff_with_quotes_ports_and_ipv6() {
        let t = trusted(&["10.0.0.0/8"], ForwardedHeader::Forwarded);
        let fwd = |v| [("forwarded", v)];
        assert_eq!(client(&t, "10.0.0.1:1", &fwd("for=192.0.2.60;proto=http;by=203.0.113.43")), "192.0.2.60:0");
        assert_eq!(client(&t, "10.0.0.1:1", &fwd(r#"for="[2001:db8:cafe::17]:4711""#)), "[2001:db8:cafe::17]:4711");
        assert_eq!(client(&t, "10.0.0.1:1", &fwd(r#"For="_gazonk", for=198.51.100.17;by="a,b", for=10.0.0.9"#)), "198.51.100.17:0");
        assert_eq!(client(&t, "10.0.0.1:1", &fwd("for=198.51.100.17, for=unknown")), "10.0.0.1:1", "a hidden hop hides the client");
        assert_eq!(client(&t, "10.0.0.1:1", &fwd("proto=https")), "10.0.0.1:1");
        assert_eq!(client(&t, "10.0.0.1:1", &fwd(r#"for="[2001:db8::1"#)), "10.0.0.1:1");
        assert_eq!(client(&t, "10.0.0.1:1", &[("x-forwarded-for", "198.51.100.7")]), "10.0.0.1:1", "only the configured header counts");
        assert_eq!(client(&t, "203.0.113.1:1", &fwd("for=198.51.100.7")), "203.0.113.1:1");
    }
}
