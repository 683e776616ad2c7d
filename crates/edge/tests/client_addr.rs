//! Behind a load balancer: the client's address comes from the PROXY header or from a trusted
//! proxy's forwarding header, and the per-IP connection cap applies to it; an untrusted peer's
//! header changes nothing, and a connection without the required PROXY header is closed.

mod common;

use common::*;
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;
use std::net::SocketAddr;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

use herald_config::{ForwardedHeader, ProxyProtocol};

fn v1(client: &str) -> Vec<u8> {
    let family = if client.contains(':') { "TCP6 ::1" } else { "TCP4 10.0.0.1" };
    let (proto, dst) = family.split_once(' ').unwrap();
    format!("PROXY {proto} {client} {dst} 40000 8080\r\n").into_bytes()
}

/// A v2 PROXY header (command 1) for an IPv4 or IPv6 client, with one TLV to skip; or `LOCAL`.
fn v2(client: Option<&str>) -> Vec<u8> {
    let mut h = b"\r\n\r\n\0\r\nQUIT\n".to_vec();
    let Some(client) = client else {
        h.extend([0x20, 0x00, 0, 0]);
        return h;
    };
    let (fam, mut addrs) = match client.parse::<std::net::IpAddr>().unwrap() {
        std::net::IpAddr::V4(a) => (0x11, [a.octets().as_slice(), &[10, 0, 0, 1]].concat()),
        std::net::IpAddr::V6(a) => (0x21, [a.octets().as_slice(), &[0; 16]].concat()),
    };
    addrs.extend([0x9c, 0x40, 0x1f, 0x90]);
    let tlv = [0x04, 0x00, 0x03, b'a', b'w', b's'];
    h.extend([0x21, fam]);
    h.extend(((addrs.len() + tlv.len()) as u16).to_be_bytes());
    h.extend(addrs);
    h.extend(tlv);
    h
}

/// Opens a WebSocket after writing `prelude` (a PROXY header, or nothing), with extra headers;
/// returns the status and, on 101, the open socket (hold it to keep the connection counted).
async fn ws_via(e: &TestEdge, prelude: &[u8], headers: &[(&'static str, &str)]) -> (u16, Option<WebSocketStream<TcpStream>>) {
    let mut tcp = TcpStream::connect(e.addr).await.unwrap();
    tcp.write_all(prelude).await.unwrap();
    let mut req = format!("ws://{}/v1/ws", e.addr).into_client_request().unwrap();
    req.headers_mut().insert("authorization", format!("Bearer {}", e.token("acme", "u")).parse().unwrap());
    for (k, v) in headers {
        req.headers_mut().append(*k, v.parse().unwrap());
    }
    match tokio_tungstenite::client_async(req, tcp).await {
        Ok((ws, _)) => (101, Some(ws)),
        Err(tokio_tungstenite::tungstenite::Error::Http(r)) => (r.status().as_u16(), None),
        Err(err) => panic!("{err}"),
    }
}

/// One HTTP request after `prelude`; its status.
async fn http_via(addr: SocketAddr, prelude: &[u8], path: &str, headers: &[(&'static str, &str)]) -> u16 {
    let mut tcp = TcpStream::connect(addr).await.unwrap();
    tcp.write_all(prelude).await.unwrap();
    let (mut send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tcp)).await.unwrap();
    tokio::spawn(conn);
    let mut req = hyper::Request::builder().uri(path).header("host", "test");
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let resp = send.send_request(req.body(Full::new(bytes::Bytes::new())).unwrap()).await.unwrap();
    let status = resp.status().as_u16();
    let _ = resp.into_body().collect().await;
    status
}

/// Whether the edge closed the connection without a byte of answer after `bytes`.
async fn closed_unanswered(addr: SocketAddr, bytes: &[u8]) -> bool {
    let mut tcp = TcpStream::connect(addr).await.unwrap();
    tcp.write_all(bytes).await.unwrap();
    let mut buf = Vec::new();
    match tokio::time::timeout(PATIENCE, tcp.read_to_end(&mut buf)).await.expect("the edge closes the connection") {
        Ok(_) => buf.is_empty(),
        Err(_) => true, // reset: the edge closed with our request unread
    }
}

fn poll_path(e: &TestEdge) -> String {
    format!("/v1/poll?channels=c&timeout_ms=10&token={}", e.token("acme", "p"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn proxy_v1_clients_each_get_their_own_per_ip_cap() {
    let e = TestEdge::start_with(|c| {
        c.edge.proxy_protocol = ProxyProtocol::V1;
        c.limits.connections_per_ip = 1;
    })
    .await;
    let (s, _first) = ws_via(&e, &v1("203.0.113.1"), &[]).await;
    assert_eq!(s, 101);
    assert_eq!(ws_via(&e, &v1("203.0.113.1"), &[]).await.0, 429, "the same client over another balancer connection");
    assert_eq!(http_via(e.addr, &v1("203.0.113.1"), &poll_path(&e), &[]).await, 429, "long-poll counts the same address");
    let (s, _second) = ws_via(&e, &v1("203.0.113.2"), &[]).await;
    assert_eq!(s, 101, "another client, though every socket comes from 127.0.0.1");
    let (s, _third) = ws_via(&e, &v1("2001:db8::7"), &[]).await;
    assert_eq!(s, 101, "TCP6");
    assert_eq!(ws_via(&e, &v1("2001:db8::7"), &[]).await.0, 429);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn proxy_v2_clients_each_get_their_own_per_ip_cap_and_local_keeps_the_socket_address() {
    let e = TestEdge::start_with(|c| {
        c.edge.proxy_protocol = ProxyProtocol::V2;
        c.limits.connections_per_ip = 1;
    })
    .await;
    let (s, _a) = ws_via(&e, &v2(Some("198.51.100.1")), &[]).await;
    assert_eq!(s, 101);
    assert_eq!(ws_via(&e, &v2(Some("198.51.100.1")), &[]).await.0, 429);
    let (s, _b) = ws_via(&e, &v2(Some("2001:db8::1")), &[]).await;
    assert_eq!(s, 101);
    assert_eq!(ws_via(&e, &v2(Some("2001:db8::1")), &[]).await.0, 429);
    // LOCAL (a balancer's health check) is counted as the socket's own address.
    assert_eq!(http_via(e.addr, &v2(None), "/healthz", &[]).await, 200);
    let (s, _local) = ws_via(&e, &v2(None), &[]).await;
    assert_eq!(s, 101);
    assert_eq!(ws_via(&e, &v2(None), &[]).await.0, 429, "both LOCAL connections are 127.0.0.1");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_without_a_valid_proxy_header_is_closed_unanswered() {
    let e = TestEdge::start_with(|c| c.edge.proxy_protocol = ProxyProtocol::Any).await;
    let get = b"GET /healthz HTTP/1.1\r\nhost: t\r\n\r\n";
    assert!(closed_unanswered(e.addr, get).await, "no header");
    assert!(closed_unanswered(e.addr, &[b"PROXY TCP4 999.0.0.1 10.0.0.1 1 2\r\n".as_slice(), get].concat()).await, "a bad v1 address");
    assert!(closed_unanswered(e.addr, &[b"PROXY TCP4 1.2.3.4 10.0.0.1 1 2\n".as_slice(), get].concat()).await, "v1 without CR");
    let mut bad_v2 = v2(Some("198.51.100.1"));
    bad_v2[12] = 0x31;
    assert!(closed_unanswered(e.addr, &[bad_v2.as_slice(), get].concat()).await, "v2 version 3");
    assert!(closed_unanswered(e.addr, &[b'x'; 200]).await, "garbage");
    let metrics = e.edge.metrics.render();
    assert!(metrics.contains("herald_proxy_header_refused_total 5"), "{metrics}");
    // Either version is accepted on an `any` listener.
    assert_eq!(http_via(e.addr, &v1("203.0.113.1"), "/healthz", &[]).await, 200);
    assert_eq!(http_via(e.addr, &v2(Some("203.0.113.1")), "/healthz", &[]).await, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_trusted_proxys_x_forwarded_for_separates_clients() {
    let e = TestEdge::start_with(|c| {
        c.edge.trusted_proxies = vec!["127.0.0.1/32".parse().unwrap()];
        c.limits.connections_per_ip = 1;
    })
    .await;
    let (s, _a) = ws_via(&e, b"", &[("x-forwarded-for", "198.51.100.7")]).await;
    assert_eq!(s, 101);
    assert_eq!(ws_via(&e, b"", &[("x-forwarded-for", "6.6.6.6, 198.51.100.7")]).await.0, 429, "a client's own left-hand entry is not believed");
    assert_eq!(http_via(e.addr, b"", &poll_path(&e), &[("x-forwarded-for", "198.51.100.7")]).await, 429);
    let (s, _b) = ws_via(&e, b"", &[("x-forwarded-for", "198.51.100.8")]).await;
    assert_eq!(s, 101);
    assert_eq!(http_via(e.addr, b"", &poll_path(&e), &[("x-forwarded-for", "198.51.100.9")]).await, 200);
    let (s, _proxy_itself) = ws_via(&e, b"", &[("x-forwarded-for", "not an address")]).await;
    assert_eq!(s, 101, "a malformed header leaves the proxy's own address, which has its own slot");
    assert_eq!(ws_via(&e, b"", &[]).await.0, 429);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_untrusted_peers_forwarding_headers_change_nothing() {
    let e = TestEdge::start_with(|c| c.limits.connections_per_ip = 1).await;
    let (s, _a) = ws_via(&e, b"", &[("x-forwarded-for", "198.51.100.7")]).await;
    assert_eq!(s, 101);
    assert_eq!(ws_via(&e, b"", &[("x-forwarded-for", "198.51.100.8")]).await.0, 429, "every client shares 127.0.0.1's cap");
    assert_eq!(ws_via(&e, b"", &[("forwarded", "for=198.51.100.9")]).await.0, 429);
    assert_eq!(http_via(e.addr, b"", &poll_path(&e), &[("x-forwarded-for", "198.51.100.10")]).await, 429);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_trusted_proxys_forwarded_for_works_like_x_forwarded_for() {
    let e = TestEdge::start_with(|c| {
        c.edge.trusted_proxies = vec!["127.0.0.1/32".parse().unwrap()];
        c.edge.forwarded_header = ForwardedHeader::Forwarded;
        c.limits.connections_per_ip = 1;
    })
    .await;
    let (s, _a) = ws_via(&e, b"", &[("forwarded", r#"for="[2001:db8::7]:4711";proto=https"#)]).await;
    assert_eq!(s, 101);
    assert_eq!(ws_via(&e, b"", &[("forwarded", r#"for=192.0.2.1, for="[2001:db8::7]:9""#)]).await.0, 429, "the cap is per address, whatever the port");
    let (s, _b) = ws_via(&e, b"", &[("forwarded", "for=192.0.2.60;proto=http;by=203.0.113.43")]).await;
    assert_eq!(s, 101);
    // With `forwarded` chosen, X-Forwarded-For is a client's header like any other.
    let (s, _c) = ws_via(&e, b"", &[("x-forwarded-for", "198.51.100.1")]).await;
    assert_eq!(s, 101);
    assert_eq!(ws_via(&e, b"", &[("x-forwarded-for", "198.51.100.2")]).await.0, 429, "both are the proxy's own 127.0.0.1");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forwarding_headers_count_only_when_the_proxy_header_names_a_trusted_proxy() {
    let e = TestEdge::start_with(|c| {
        c.edge.proxy_protocol = ProxyProtocol::V2;
        c.edge.trusted_proxies = vec!["10.0.0.0/8".parse().unwrap()];
        c.limits.connections_per_ip = 1;
    })
    .await;
    let xff = |a| [("x-forwarded-for", a)];
    let (s, _a) = ws_via(&e, &v2(Some("10.1.1.1")), &xff("198.51.100.7")).await;
    assert_eq!(s, 101);
    assert_eq!(ws_via(&e, &v2(Some("10.2.2.2")), &xff("198.51.100.7")).await.0, 429, "the same client through another trusted proxy");
    let (s, _b) = ws_via(&e, &v2(Some("203.0.113.5")), &xff("198.51.100.7")).await;
    assert_eq!(s, 101, "an untrusted source's header is ignored: it counts as 203.0.113.5");
    assert_eq!(ws_via(&e, &v2(Some("203.0.113.5")), &xff("198.51.100.99")).await.0, 429);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_proxy_header_comes_before_the_tls_handshake() {
    use tokio_rustls::rustls::pki_types::ServerName;
    use tokio_rustls::rustls::{ClientConfig, RootCertStore};
    let cert = rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).unwrap();
    let dir = std::env::temp_dir().join(format!("herald-proxy-tls-{}-{}", std::process::id(), rand::random::<u32>()));
    std::fs::create_dir_all(&dir).unwrap();
    let (cert_file, key_file) = (dir.join("cert.pem"), dir.join("key.pem"));
    std::fs::write(&cert_file, cert.cert.pem()).unwrap();
    std::fs::write(&key_file, cert.key_pair.serialize_pem()).unwrap();
    let e = TestEdge::start_with(move |c| {
        c.edge.tls = Some(herald_config::TlsConfig { cert_file, key_file });
        c.edge.proxy_protocol = ProxyProtocol::V1;
        c.limits.connections_per_ip = 1;
    })
    .await;
    let mut roots = RootCertStore::empty();
    roots.add(cert.cert.der().clone()).unwrap();
    let provider = std::sync::Arc::new(tokio_rustls::rustls::crypto::ring::default_provider());
    let client = ClientConfig::builder_with_provider(provider).with_safe_default_protocol_versions().unwrap().with_root_certificates(roots).with_no_client_auth();
    let connector = tokio_rustls::TlsConnector::from(std::sync::Arc::new(client));
    let wss = |client: &'static str| {
        let (connector, addr, token) = (connector.clone(), e.addr, e.token("acme", "u"));
        async move {
            let mut tcp = TcpStream::connect(addr).await.unwrap();
            tcp.write_all(&v1(client)).await.unwrap();
            let tls = connector.connect(ServerName::try_from("localhost").unwrap(), tcp).await.unwrap();
            let mut req = "wss://localhost/v1/ws".into_client_request().unwrap();
            req.headers_mut().insert("authorization", format!("Bearer {token}").parse().unwrap());
            match tokio_tungstenite::client_async(req, tls).await {
                Ok((ws, _)) => (101, Some(ws)),
                Err(tokio_tungstenite::tungstenite::Error::Http(r)) => (r.status().as_u16(), None),
                Err(err) => panic!("{err}"),
            }
        }
    };
    let (s, _a) = wss("203.0.113.1").await;
    assert_eq!(s, 101);
    assert_eq!(wss("203.0.113.1").await.0, 429);
    let (s, _b) = wss("203.0.113.2").await;
    assert_eq!(s, 101);
    let _ = std::fs::remove_dir_all(&dir);
}
