//! The binary as an operator uses it: `herald dev`, `herald token`, signals, bad config.

mod support;

use futures_util::StreamExt;
use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};
use std::time::Duration;
use support::{BIN, Herald, http};
use tokio_tungstenite::tungstenite::Message;

const SECRET: &str = "cli-test-secret-0123456789";
const KEY: &str = "cli-test-key-0123456789";

fn start_dev(extra: &[&str]) -> Herald {
    let mut args = vec!["dev", "--listen", "127.0.0.1:0", "--dev-secret", SECRET, "--dev-api-key", KEY];
    args.extend_from_slice(extra);
    support::spawn(&args, &[])
}

fn token(account: &str) -> String {
    support::token(SECRET, account, "*", "*")
}

fn publish(url: &str, body: &str) -> String {
    http(url.strip_prefix("http://").unwrap(), "POST", "/v1/publish", Some(KEY), body)
}

fn get(url: &str, path: &str) -> String {
    http(url.strip_prefix("http://").unwrap(), "GET", path, None, "")
}

#[tokio::test]
async fn herald_dev_serves_a_token_from_herald_token_and_delivers_a_published_record() {
    let dev = start_dev(&[]);
    let client = herald_client::Client::connect(herald_client::ClientConfig::new(dev.url.clone(), token("demo")));
    let mut sub = client.subscribe("incidents").await.unwrap();
    let resp = publish(&dev.url, r#"{"account":"demo","channel":"incidents","data":{"ent":"incident","id":"PAM4FGS","type":"updated"}}"#);
    assert!(resp.starts_with("HTTP/1.1 200"), "{resp}");
    let m = tokio::time::timeout(Duration::from_secs(30), sub.next_message()).await.unwrap().unwrap();
    assert_eq!(m.data.get(), r#"{"ent":"incident","id":"PAM4FGS","type":"updated"}"#);
}


#[tokio::test]
async fn herald_dev_serves_the_demo_page_and_a_token_for_it() {
    let dev = start_dev(&[]);
    let page = get(&dev.url, "/");
    assert!(page.starts_with("HTTP/1.1 200"), "{page}");
    assert!(page.contains("text/html") && page.contains("Publish a test event"));
    let tok = get(&dev.url, "/dev/token?account=demo&sub=page");
    let body = &tok[tok.find("\r\n\r\n").unwrap() + 4..];
    let token = serde_json::from_str::<serde_json::Value>(body).unwrap()["token"].as_str().unwrap().to_owned();
    let client = herald_client::Client::connect(herald_client::ClientConfig::new(dev.url.clone(), token));
    client.wait_connected(Duration::from_secs(30)).await.unwrap();
    // Short-lived tokens for token-refresh tests; a ttl out of range is refused.
    let short = get(&dev.url, "/dev/token?account=demo&ttl=5");
    let body = &short[short.find("\r\n\r\n").unwrap() + 4..];
    let token = serde_json::from_str::<serde_json::Value>(body).unwrap()["token"].as_str().unwrap().to_owned();
    let claims: serde_json::Value = serde_json::from_slice(&base64_url(token.split('.').nth(1).unwrap())).unwrap();
    assert_eq!(claims["exp"].as_u64().unwrap() - claims["iat"].as_u64().unwrap(), 5);
    assert!(get(&dev.url, "/dev/token?ttl=1").starts_with("HTTP/1.1 400"));
}

/// Decodes unpadded base64url (a JWT segment).
fn base64_url(s: &str) -> Vec<u8> {
    let val = |c: u8| match c {
        b'A'..=b'Z' => c - b'A',
        b'a'..=b'z' => c - b'a' + 26,
        b'0'..=b'9' => c - b'0' + 52,
        b'-' => 62,
        _ => 63,
    } as u32;
    let mut out = Vec::new();
    for chunk in s.as_bytes().chunks(4) {
        let n = chunk.iter().enumerate().fold(0u32, |acc, (i, &c)| acc | val(c) << (18 - 6 * i));
        out.extend_from_slice(&n.to_be_bytes()[1..chunk.len()]);
    }
    out
}

#[tokio::test]
async fn sigterm_tells_every_client_to_reconnect_and_exits_cleanly() {
    let mut dev = start_dev(&[]);
    let ws_url = format!("{}/v1/ws", dev.url.replace("http://", "ws://"));
    let mut clients = Vec::new();
    for _ in 0..3 {
        let mut req = tokio_tungstenite::tungstenite::client::IntoClientRequest::into_client_request(ws_url.as_str()).unwrap();
        req.headers_mut().insert("authorization", format!("Bearer {}", token("demo")).parse().unwrap());
        let (ws, _) = tokio_tungstenite::connect_async(req).await.unwrap();
        clients.push(ws);
    }
    let status = Command::new("kill").args(["-TERM", &dev.child.id().to_string()]).status().unwrap();
    assert!(status.success());
    for ws in &mut clients {
        let mut saw_reconnect = false;
        while let Some(Ok(m)) = tokio::time::timeout(Duration::from_secs(30), ws.next()).await.unwrap() {
            if let Message::Text(t) = m {
                saw_reconnect |= t.contains(r#""type":"reconnect""#);
            }
        }
        assert!(saw_reconnect);
    }
    let mut exited = None;
    for _ in 0..300 {
        if let Some(s) = dev.child.try_wait().unwrap() {
            exited = Some(s);
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(exited.expect("herald exits once its clients are gone").code(), Some(0));
}

#[test]
fn sigint_exits_at_once() {
    let mut dev = start_dev(&[]);
    Command::new("kill").args(["-INT", &dev.child.id().to_string()]).status().unwrap();
    let mut code = None;
    for _ in 0..100 {
        if let Some(s) = dev.child.try_wait().unwrap() {
            code = s.code();
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(code, Some(0));
}

#[test]
fn bad_configuration_exits_64_naming_the_problem() {
    let dir = std::env::temp_dir().join(format!("herald-cli-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let cfg = dir.join("bad.toml");
    std::fs::write(&cfg, "[edge]\nheartbeat_msec = 5\n").unwrap();
    let out = Command::new(BIN).args(["edge", "--config", cfg.to_str().unwrap()]).output().unwrap();
    assert_eq!(out.status.code(), Some(64));
    assert!(String::from_utf8_lossy(&out.stderr).contains("heartbeat_msec"));
    let out = Command::new(BIN).args(["edge"]).output().unwrap();
    assert_eq!(out.status.code(), Some(64));
    assert!(String::from_utf8_lossy(&out.stderr).contains("jwt_secret"));
    let out = Command::new(BIN).args(["token", "--secret", "s", "--account", "Bad/Name", "--sub", "u"]).output().unwrap();
    assert_eq!(out.status.code(), Some(64));
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn herald_api_key_prints_a_key_and_the_hash_that_the_server_accepts_for_it() {
    let out = Command::new(BIN).arg("api-key").output().unwrap();
    let text = String::from_utf8(out.stdout).unwrap();
    let key = text.lines().find_map(|l| l.strip_prefix("key:    ")).unwrap().to_owned();
    let stored = text.lines().find_map(|l| l.strip_prefix("stored: ")).unwrap().to_owned();
    assert!(stored.starts_with("sha256:") && !stored.contains(&key));
    let dir = std::env::temp_dir().join(format!("herald-key-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let cfg = dir.join("herald.toml");
    std::fs::write(&cfg, format!("[auth]\njwt_secret = \"{SECRET}\"\n[auth.account_keys]\nacme = [\"{stored}\"]\n")).unwrap();
    let mut child = Command::new(BIN).args(["edge", "--listen", "127.0.0.1:0", "--config", cfg.to_str().unwrap()]).stdout(Stdio::piped()).stderr(Stdio::null()).spawn().unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap()).read_line(&mut line).unwrap();
    let url = line.trim().strip_prefix("herald listening on ").unwrap().to_owned();
    let addr = url.strip_prefix("http://").unwrap();
    let post = |bearer: &str| {
        let body = r#"{"channel":"c","data":1}"#;
        let mut s = std::net::TcpStream::connect(addr).unwrap();
        write!(s, "POST /v1/publish HTTP/1.1\r\nhost: x\r\nauthorization: Bearer {bearer}\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}", body.len()).unwrap();
        let mut out = String::new();
        std::io::Read::read_to_string(&mut s, &mut out).unwrap();
        out
    };
    assert!(post(&key).starts_with("HTTP/1.1 200"), "the key works");
    assert!(post(&stored).starts_with("HTTP/1.1 401"), "its stored form is not a key");
    let _ = child.kill();
    let _ = child.wait();
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn herald_probe_times_a_real_round_trip_and_fails_when_the_edge_is_gone() {
    let dev = start_dev(&[]);
    // A token that may subscribe to and publish on the probe channel.
    let out = Command::new(BIN).args(["token", "--secret", SECRET, "--account", "demo", "--sub", "probe", "--channels", "probe", "--publish", "probe", "--ttl", "10m"]).output().unwrap();
    let token = String::from_utf8(out.stdout).unwrap().trim().to_owned();
    let out = Command::new(BIN).args(["probe", "--url", &dev.url, "--token", &token, "--count", "3", "--interval-ms", "100"]).output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}");
    assert_eq!(text.lines().filter(|l| l.contains(r#""ok":true"#) && l.contains("round_trip_ms")).count(), 3, "{text}");
    let url = dev.url.clone();
    drop(dev);
    let out = Command::new(BIN).args(["probe", "--url", &url, "--token", &token, "--count", "1", "--timeout-ms", "1000"]).output().unwrap();
    assert!(!out.status.success(), "a probe against a dead edge must fail");
}

/// `edge.admin_listen`: health, readiness and metrics in plain HTTP with no PROXY header, from
/// the start (bus unreachable: `/readyz` 503 `starting`) and once serving (`/readyz` 200), while
/// the client listener, which expects PROXY headers, closes a probe that sends none.
#[test]
fn the_admin_listener_answers_probes_without_a_proxy_header_from_start_to_serving() {
    let free = || std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let dir = std::env::temp_dir().join(format!("herald-admin-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let cfg = dir.join("herald.toml");
    std::fs::write(&cfg, "[edge]\nproxy_protocol = \"v2\"\n").unwrap();
    let wait_for = |addr: &str, path: &str, want: u16| {
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        loop {
            let got = support::status(addr, path);
            if got == Some(want) {
                return;
            }
            assert!(std::time::Instant::now() < deadline, "{addr}{path}: {got:?}, never {want}");
            std::thread::sleep(Duration::from_millis(100));
        }
    };

    // Starting: the bus is a port nobody listens on.
    let (main, admin) = (free(), free());
    let mut starting = Command::new(BIN)
        .args(["edge", "--config", cfg.to_str().unwrap(), "--listen", &format!("127.0.0.1:{main}"), "--bus", &format!("kafka://127.0.0.1:{}", free())])
        .env("HERALD_JWT_SECRET", SECRET)
        .env("HERALD_ADMIN_LISTEN", format!("127.0.0.1:{admin}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let admin_addr = format!("127.0.0.1:{admin}");
    wait_for(&admin_addr, "/healthz", 200);
    wait_for(&admin_addr, "/readyz", 503);
    assert!(http(&admin_addr, "GET", "/readyz", None, "").contains("starting"));
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while !http(&admin_addr, "GET", "/metrics", None, "").contains("herald_bus_connect_errors_total{cause=\"unreachable\"}") {
        assert!(std::time::Instant::now() < deadline, "the starting node's metrics never counted the unreachable bus");
        std::thread::sleep(Duration::from_millis(200));
    }
    starting.kill().unwrap();
    starting.wait().unwrap();

    // Serving.
    let admin = free();
    let edge = support::spawn(
        &["edge", "--config", cfg.to_str().unwrap(), "--listen", "127.0.0.1:0", "--bus", "memory"],
        &[("HERALD_JWT_SECRET", SECRET), ("HERALD_ADMIN_LISTEN", &format!("127.0.0.1:{admin}"))],
    );
    let admin_addr = format!("127.0.0.1:{admin}");
    wait_for(&admin_addr, "/readyz", 200);
    assert!(http(&admin_addr, "GET", "/metrics", None, "").contains("herald_connections"));
    assert!(http(&admin_addr, "GET", "/v1/publish", None, "").starts_with("HTTP/1.1 404"), "only the three endpoints");
    assert!(http(&admin_addr, "POST", "/readyz", None, "").starts_with("HTTP/1.1 405"));
    assert_eq!(support::status(edge.addr(), "/readyz"), None, "the client listener closes a connection without a PROXY header");

    let bad = Command::new(BIN).args(["edge", "--check"]).env("HERALD_JWT_SECRET", SECRET).env("HERALD_ADMIN_LISTEN", "nine").output().unwrap();
    assert_eq!(bad.status.code(), Some(64));
    assert!(String::from_utf8_lossy(&bad.stderr).contains("HERALD_ADMIN_LISTEN"));
    std::fs::remove_dir_all(&dir).unwrap();
}

/// `--check` loads `[edge.tls]` as the edge would: a key that is not the certificate's, or a
/// missing file, is exit 64 naming the field.
#[test]
fn check_loads_the_listeners_certificate_and_key() {
    let pki = herald_core::testing::pki::Pki::new("edge-check");
    let cfg = pki.dir.join("herald.toml");
    let check = |cert: &str, key: &str| {
        std::fs::write(&cfg, format!("[edge.tls]\ncert_file = {cert:?}\nkey_file = {key:?}\n")).unwrap();
        Command::new(BIN).args(["edge", "--config", cfg.to_str().unwrap(), "--check"]).env("HERALD_JWT_SECRET", SECRET).output().unwrap()
    };
    assert!(check(&pki.path("server.pem"), &pki.path("server.key")).status.success());
    for (cert, key, needle) in [
        (pki.path("server.pem"), pki.path("client.key"), "do not match"),
        (pki.path("server.pem"), pki.path("missing.key"), "edge.tls.key_file"),
    ] {
        let out = check(&cert, &key);
        assert_eq!(out.status.code(), Some(64));
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(needle), "{err}");
    }
}

/// `herald ctl history` and `herald ctl channel` ask an edge (they read the bus, which the
/// control plane does not): the newest records in order, the next page back, channel info; a bad
/// key is an error naming the edge's code.
#[test]
fn ctl_reads_history_and_channel_info_through_an_edge() {
    let dev = start_dev(&[]);
    for n in 0..5 {
        let resp = publish(&dev.url, &format!(r#"{{"account":"demo","channel":"incident-7","data":{{"n":{n}}}}}"#));
        assert!(resp.starts_with("HTTP/1.1 200"), "{resp}");
    }
    let ctl = |args: &[&str], key: &str| Command::new(BIN).args(["ctl", "--json"]).args(args).args(["--edge", &dev.url, "--api-key", key]).output().unwrap();
    let out = ctl(&["history", "demo", "incident-7", "--limit", "3"], KEY);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let page: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let ns = |p: &serde_json::Value| p["messages"].as_array().unwrap().iter().map(|m| m["data"]["n"].as_u64().unwrap()).collect::<Vec<_>>();
    assert_eq!(ns(&page), [2, 3, 4], "the newest three, oldest first");
    let out = ctl(&["history", "demo", "incident-7", "--limit", "3", "--before", page["before"].as_str().unwrap()], KEY);
    assert_eq!(ns(&serde_json::from_slice(&out.stdout).unwrap()), [0, 1]);
    let out = ctl(&["channel", "demo", "incident-7"], KEY);
    let info: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(info["last_message"]["id"], page["messages"][2]["id"], "{info}");
    let out = ctl(&["history", "demo", "incident-7"], "not-the-key-0123456789");
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("unauthorized"), "{}", String::from_utf8_lossy(&out.stderr));
}
