//! Mutual TLS on one member, in process: the files on both sides are read again for the next
//! connection, so a client's certificate and the member's client CA rotate without a restart.

use herald_control::network::channel;
use herald_control::pb::StatusRequest;
use herald_control::pb::admin_client::AdminClient;
use herald_control::tls::{ClientTls, ClientTlsFiles, PemFile, ServerTls, ServerTlsFiles};
use herald_control::{ControlConfig, ControlNode, MemberTls};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

type Ca = (rcgen::Certificate, rcgen::KeyPair);

fn ca(name: &str) -> Ca {
    let key = rcgen::KeyPair::generate().unwrap();
    let mut p = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    p.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    p.distinguished_name.push(rcgen::DnType::CommonName, name);
    (p.self_signed(&key).unwrap(), key)
}

/// Writes a certificate for 127.0.0.1 signed by `ca` to `<name>.pem` and `<name>.key` in `dir`,
/// each as a new file renamed over the old one.
fn leaf(dir: &Path, ca: &Ca, name: &str) {
    let key = rcgen::KeyPair::generate().unwrap();
    let cert = rcgen::CertificateParams::new(vec!["127.0.0.1".to_owned()]).unwrap().signed_by(&key, &ca.0, &ca.1).unwrap();
    write(dir, &format!("{name}.key"), &key.serialize_pem());
    write(dir, &format!("{name}.pem"), &cert.pem());
}

fn write(dir: &Path, file: &str, text: &str) {
    let tmp = dir.join(format!(".{file}.tmp"));
    std::fs::write(&tmp, text).unwrap();
    std::fs::rename(tmp, dir.join(file)).unwrap();
}

fn pem(dir: &Path, name: &str, file: &str) -> PemFile {
    PemFile::new(name, dir.join(file))
}

/// `Status` through a new channel with `tls`: Ok, or the error's text with its causes.
async fn status(addr: &str, tls: &Arc<ClientTls>) -> Result<(), String> {
    let mut admin = AdminClient::new(channel(addr, Some(tls)).unwrap());
    match tokio::time::timeout(Duration::from_secs(10), admin.status(StatusRequest {})).await.expect("an answer, not a hang") {
        Ok(_) => Ok(()),
        Err(s) => {
            let mut text = s.to_string();
            let mut source = std::error::Error::source(&s);
            while let Some(e) = source {
                text = format!("{text}: {e}");
                source = e.source();
            }
            Err(text)
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_certificates_and_the_client_ca_rotate_for_the_next_connection() {
    let dir: PathBuf = std::env::temp_dir().join(format!("herald-control-mtls-{:08x}", rand::random::<u32>()));
    std::fs::create_dir_all(&dir).unwrap();
    let (server_ca, old_clients, new_clients) = (ca("server ca"), ca("old client ca"), ca("new client ca"));
    write(&dir, "server-ca.pem", &server_ca.0.pem());
    write(&dir, "clients.pem", &old_clients.0.pem());
    leaf(&dir, &server_ca, "member");
    leaf(&dir, &old_clients, "client");

    let server = ServerTls::new(ServerTlsFiles { cert: pem(&dir, "cert", "member.pem"), key: pem(&dir, "key", "member.key"), client_ca: Some(pem(&dir, "client ca", "clients.pem")) }).unwrap();
    assert!(server.mutual());
    let peers = ClientTls::new(ClientTlsFiles { ca: Some(pem(&dir, "ca", "server-ca.pem")), cert: Some(pem(&dir, "cert", "member.pem")), key: Some(pem(&dir, "key", "member.key")) }).unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let mut cfg = ControlConfig::new(1, addr.clone(), dir.join("data"));
    cfg.tls = Some(MemberTls { server: Arc::new(server), peers: Arc::new(peers) });
    let node = ControlNode::start(cfg, listener).await.unwrap();
    node.initialize(BTreeMap::from([(1, addr.clone())])).await.unwrap();

    // One client, built once; its files change under it.
    let client = Arc::new(ClientTls::new(ClientTlsFiles { ca: Some(pem(&dir, "ca", "server-ca.pem")), cert: Some(pem(&dir, "cert", "client.pem")), key: Some(pem(&dir, "key", "client.key")) }).unwrap());
    status(&addr, &client).await.expect("a certificate from the client CA is let in");
    let anonymous = Arc::new(ClientTls::new(ClientTlsFiles { ca: Some(pem(&dir, "ca", "server-ca.pem")), cert: None, key: None }).unwrap());
    let err = status(&addr, &anonymous).await.expect_err("no client certificate");
    assert!(err.contains("CertificateRequired"), "{err}");

    // The client's certificate is replaced by one from a CA the member does not trust yet: the
    // next connection presents it and is refused.
    leaf(&dir, &new_clients, "client");
    let err = status(&addr, &client).await.expect_err("the new client certificate is not trusted yet");
    assert!(err.contains("UnknownCA"), "{err}");

    // The member's client CA is replaced too: the next connection is let in.
    write(&dir, "clients.pem", &new_clients.0.pem());
    status(&addr, &client).await.expect("the member now trusts the new client CA");
    node.shutdown().await;
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn bad_files_are_named_by_their_flag_or_field() {
    let dir: PathBuf = std::env::temp_dir().join(format!("herald-control-tls-files-{:08x}", rand::random::<u32>()));
    std::fs::create_dir_all(&dir).unwrap();
    let c = ca("ca");
    write(&dir, "ca.pem", &c.0.pem());
    leaf(&dir, &c, "a");
    leaf(&dir, &c, "b");
    let server = |cert: &str, key: &str| ServerTls::new(ServerTlsFiles { cert: pem(&dir, "--tls-cert", cert), key: pem(&dir, "--tls-key", key), client_ca: None }).map(|_| ()).unwrap_err().to_string();
    assert!(server("missing.pem", "a.key").starts_with("--tls-cert"), "{}", server("missing.pem", "a.key"));
    assert!(server("a.key", "a.key").contains("no certificate"), "{}", server("a.key", "a.key"));
    assert!(server("a.pem", "a.pem").contains("--tls-key") && server("a.pem", "a.pem").contains("no private key"));
    assert!(server("a.pem", "b.key").contains("do not go together"), "{}", server("a.pem", "b.key"));
    let client = |files: ClientTlsFiles| ClientTls::new(files).map(|_| ()).unwrap_err().to_string();
    let err = client(ClientTlsFiles { ca: Some(pem(&dir, "control.tls.ca_file", "a.key")), cert: None, key: None });
    assert!(err.starts_with("control.tls.ca_file") && err.contains("no certificate"), "{err}");
    let err = client(ClientTlsFiles { ca: Some(pem(&dir, "--ca", "ca.pem")), cert: Some(pem(&dir, "--cert", "a.pem")), key: None });
    assert!(err.contains("--cert needs a key file"), "{err}");
    // A URL that says http:// cannot be used with a CA: the two disagree.
    let tls = Arc::new(ClientTls::new(ClientTlsFiles { ca: Some(pem(&dir, "--ca", "ca.pem")), cert: None, key: None }).unwrap());
    let err = channel("http://127.0.0.1:1", Some(&tls)).unwrap_err().to_string();
    assert!(err.contains("http://"), "{err}");
    let _ = std::fs::remove_dir_all(&dir);
}
