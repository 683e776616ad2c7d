//! TLS on the edge listener with a certificate made at test time, and reloading it from disk.

mod common;

use common::*;
use futures_util::{SinkExt, StreamExt};
use serde_json::json;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tokio_rustls::rustls::pki_types::{CertificateDer, ServerName};
use tokio_rustls::rustls::{ClientConfig, RootCertStore};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

struct Cert {
    pem: String,
    der: CertificateDer<'static>,
    key_pem: String,
}

fn make_cert() -> Cert {
    let c = rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).unwrap();
    Cert { pem: c.cert.pem(), der: c.cert.der().clone(), key_pem: c.key_pair.serialize_pem() }
}

fn connector(trust: &[&Cert]) -> TlsConnector {
    let mut roots = RootCertStore::empty();
    for c in trust {
        roots.add(c.der.clone()).unwrap();
    }
    let provider = Arc::new(tokio_rustls::rustls::crypto::ring::default_provider());
    let config = ClientConfig::builder_with_provider(provider).with_safe_default_protocol_versions().unwrap().with_root_certificates(roots).with_no_client_auth();
    TlsConnector::from(Arc::new(config))
}

/// A new certificate and its key in files of a new directory, and the edge's TLS settings
/// naming them.
fn cert_on_disk() -> (std::path::PathBuf, Cert, herald_config::TlsConfig) {
    let dir = std::env::temp_dir().join(format!("herald-tls-{}-{}", std::process::id(), rand::random::<u32>()));
    std::fs::create_dir_all(&dir).unwrap();
    let (cert_file, key_file) = (dir.join("cert.pem"), dir.join("key.pem"));
    let cert = make_cert();
    std::fs::write(&cert_file, &cert.pem).unwrap();
    std::fs::write(&key_file, &cert.key_pem).unwrap();
    (dir, cert, herald_config::TlsConfig { cert_file, key_file })
}

/// The certificate the server presents to a new connection.
async fn presented(addr: std::net::SocketAddr, trust: &[&Cert]) -> Option<CertificateDer<'static>> {
    let tcp = TcpStream::connect(addr).await.ok()?;
    let tls = connector(trust).connect(ServerName::try_from("localhost").unwrap(), tcp).await.ok()?;
    tls.get_ref().1.peer_certificates().map(|c| c[0].clone())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clients_connect_over_tls_and_a_new_certificate_is_picked_up_without_a_restart() {
    let (dir, first, tls) = cert_on_disk();
    let (cert_file, key_file) = (tls.cert_file.clone(), tls.key_file.clone());
    let e = TestEdge::start_with(move |c| c.edge.tls = Some(tls)).await;

    // A WebSocket over TLS: subscribe, publish, receive.
    let tcp = TcpStream::connect(e.addr).await.unwrap();
    let stream = connector(&[&first]).connect(ServerName::try_from("localhost").unwrap(), tcp).await.unwrap();
    let mut req = "wss://localhost/v1/ws".into_client_request().unwrap();
    req.headers_mut().insert("authorization", format!("Bearer {}", e.token("acme", "u")).parse().unwrap());
    let (mut ws, _) = tokio_tungstenite::client_async(req, stream).await.unwrap();
    ws.send(Message::Text(json!({"type":"subscribe","id":1,"channel":"c"}).to_string().into())).await.unwrap();
    ws.send(Message::Text(json!({"type":"publish","id":2,"channel":"c","data":{"over":"tls"}}).to_string().into())).await.unwrap();
    let mut got = false;
    while !got {
        let m = tokio::time::timeout(PATIENCE, ws.next()).await.unwrap().unwrap().unwrap();
        if let Message::Text(t) = m {
            got = t.as_str().lines().any(|l| l.contains(r#""type":"message""#) && l.contains(r#""over":"tls""#));
        }
    }

    // Plain HTTP to the TLS port gets no HTTP answer; the node keeps serving TLS clients.
    let mut tcp = TcpStream::connect(e.addr).await.unwrap();
    tokio::io::AsyncWriteExt::write_all(&mut tcp, b"GET /healthz HTTP/1.1\r\nhost: x\r\n\r\n").await.unwrap();
    let mut answer = Vec::new();
    let _ = tokio::time::timeout(PATIENCE, tokio::io::AsyncReadExt::read_to_end(&mut tcp, &mut answer)).await;
    assert!(!answer.starts_with(b"HTTP/1.1"), "plain HTTP was served on the TLS listener");
    assert_eq!(presented(e.addr, &[&first]).await, Some(first.der.clone()));

    // Rotate the certificate on disk: new connections get it, the live one stays up.
    let second = make_cert();
    std::fs::write(&key_file, &second.key_pem).unwrap();
    std::fs::write(&cert_file, &second.pem).unwrap();
    let deadline = tokio::time::Instant::now() + PATIENCE;
    while presented(e.addr, &[&second]).await != Some(second.der.clone()) {
        assert!(tokio::time::Instant::now() < deadline, "the new certificate was never served");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    ws.send(Message::Text(json!({"type":"ping","id":3}).to_string().into())).await.unwrap();
    let mut pong = false;
    while !pong {
        if let Message::Text(t) = tokio::time::timeout(PATIENCE, ws.next()).await.unwrap().unwrap().unwrap() {
            pong = t.contains(r#""type":"pong""#);
        }
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_rust_sdk_connects_over_https_with_its_ca_file_and_refuses_a_server_it_does_not_trust() {
    let (dir, _cert, tls) = cert_on_disk();
    let cert_file = tls.cert_file.clone();
    let e = TestEdge::start_with(move |c| {
        c.edge.tls = Some(tls);
        c.edge.compression.enabled = true;
    })
    .await;
    let url = format!("https://localhost:{}", e.addr.port());

    // Trusting the cluster's CA: connect (compressed, too), subscribe, publish, receive, history.
    let mut config = herald_client::ClientConfig::new(url.clone(), e.token("acme", "u"));
    config.ca_file = Some(cert_file.to_string_lossy().into_owned());
    config.compression = true;
    let c = herald_client::Client::connect(config);
    c.wait_connected(PATIENCE).await.unwrap();
    assert!(matches!(&*c.state().borrow(), herald_client::ConnState::Connected { compressed: true, .. }));
    let mut sub = c.subscribe("c").await.unwrap();
    c.publish("c", &json!({"over": "tls"}), None).await.unwrap();
    let m = tokio::time::timeout(PATIENCE, sub.next_message()).await.expect("record arrives").unwrap();
    assert_eq!(m.data.get(), r#"{"over":"tls"}"#);
    let page = c.history("c", &herald_client::HistoryOptions::default()).await.unwrap();
    assert_eq!(page.messages.len(), 1);

    // Trusting only the public web's CAs: the certificate is refused, and the client says so.
    let stranger = herald_client::Client::connect(herald_client::ClientConfig::new(url, e.token("acme", "v")));
    let deadline = tokio::time::Instant::now() + PATIENCE;
    loop {
        let state = stranger.state().borrow().clone();
        match state {
            herald_client::ConnState::Disconnected(reason) => {
                assert!(reason.contains("certificate") || reason.contains("tls"), "{reason}");
                break;
            }
            herald_client::ConnState::Connected { .. } => panic!("connected to an untrusted server"),
            _ => {}
        }
        assert!(tokio::time::Instant::now() < deadline, "never tried");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    std::fs::remove_dir_all(&dir).unwrap();
}
