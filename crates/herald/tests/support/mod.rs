//! Running the `herald` binary in tests: start it, find its address, talk raw HTTP to it.
#![allow(dead_code)]

use std::io::{BufRead, BufReader, Write};
use std::process::{Child, Command, Stdio};

pub const BIN: &str = env!("CARGO_BIN_EXE_herald");

static LOGS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

/// A running `herald` process, killed on drop.
pub struct Herald {
    pub child: Child,
    /// `http://127.0.0.1:PORT`
    pub url: String,
}

impl Drop for Herald {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Herald {
    /// `127.0.0.1:PORT`
    pub fn addr(&self) -> &str {
        self.url.strip_prefix("http://").unwrap()
    }
}

/// Starts `herald ARGS` with `env` and waits for its `herald listening on URL` line.
pub fn spawn(args: &[&str], env: &[(&str, &str)]) -> Herald {
    let mut cmd = Command::new(BIN);
    cmd.args(args).env("RUST_LOG", "error").stdout(Stdio::piped()).stderr(Stdio::null());
    // HERALD_TEST_LOGS=DIR keeps each process's warnings and errors in DIR (for debugging).
    if let Ok(dir) = std::env::var("HERALD_TEST_LOGS") {
        std::fs::create_dir_all(&dir).unwrap();
        let n = std::sync::atomic::AtomicUsize::new(0);
        let file = std::fs::File::create(format!("{dir}/herald-{}-{}.log", std::process::id(), LOGS.fetch_add(1, std::sync::atomic::Ordering::Relaxed) + n.into_inner())).unwrap();
        cmd.env("RUST_LOG", "warn").stderr(file);
    }
    for (k, v) in env {
        cmd.env(k, v);
    }
    let mut child = cmd.spawn().unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap()).read_line(&mut line).unwrap();
    let url = line.trim().strip_prefix("herald listening on ").unwrap_or_else(|| panic!("herald did not start: {line:?}")).to_owned();
    Herald { child, url }
}

/// `herald token …` with the given secret and patterns.
pub fn token(secret: &str, account: &str, subscribe: &str, publish: &str) -> String {
    token_for_user(secret, account, "u", subscribe, publish)
}

/// `herald token …` for a named user.
pub fn token_for_user(secret: &str, account: &str, user: &str, subscribe: &str, publish: &str) -> String {
    let out = Command::new(BIN)
        .args(["token", "--secret", secret, "--account", account, "--sub", user, "--channels", subscribe, "--publish", publish, "--ttl", "10m"])
        .output()
        .unwrap();
    assert!(out.status.success());
    String::from_utf8(out.stdout).unwrap().trim().to_owned()
}

/// One raw HTTP/1.1 request; the whole response as text.
pub fn http(addr: &str, method: &str, path: &str, bearer: Option<&str>, body: &str) -> String {
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    let auth = bearer.map(|b| format!("authorization: Bearer {b}\r\n")).unwrap_or_default();
    write!(s, "{method} {path} HTTP/1.1\r\nhost: x\r\n{auth}content-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}", body.len()).unwrap();
    let mut out = String::new();
    std::io::Read::read_to_string(&mut s, &mut out).unwrap();
    out
}

/// The status code of `GET path`, or None if nothing answers.
pub fn status(addr: &str, path: &str) -> Option<u16> {
    let mut s = std::net::TcpStream::connect(addr).ok()?;
    write!(s, "GET {path} HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n").ok()?;
    let mut out = String::new();
    std::io::Read::read_to_string(&mut s, &mut out).ok()?;
    out.split_whitespace().nth(1)?.parse().ok()
}

/// The value of a metric in `GET /metrics`.
pub fn metric(addr: &str, name: &str) -> f64 {
    let out = http(addr, "GET", "/metrics", None, "");
    out.lines().find(|l| l.starts_with(name) && l[name.len()..].starts_with(' ')).and_then(|l| l.rsplit(' ').next()).and_then(|v| v.parse().ok()).unwrap_or(0.0)
}

/// A `herald control` process, killed on drop.
pub struct Member {
    child: Child,
}

impl Drop for Member {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn member(id: u64, port: u16, data: &std::path::Path, init: Option<&str>, extra: &[&str]) -> Member {
    let mut cmd = Command::new(BIN);
    cmd.args(["control", "--id", &id.to_string(), "--listen", &format!("127.0.0.1:{port}"), "--data", data.join(format!("m{id}")).to_str().unwrap()]);
    cmd.args(["--edge-heartbeat-ms", "300"]).args(extra);
    if let Some(init) = init {
        cmd.args(["--init", init]);
    }
    cmd.env("HERALD_CONTROL_CLUSTER_TOKEN", CLUSTER_TOKEN).env("HERALD_CONTROL_EDGE_TOKEN", EDGE_TOKEN).env("HERALD_CONTROL_ADMIN_TOKEN", ADMIN_TOKEN);
    let mut child = cmd.env("RUST_LOG", "error").stdout(Stdio::piped()).stderr(Stdio::null()).spawn().unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap()).read_line(&mut line).unwrap();
    assert!(line.contains("listening on"), "herald control did not start: {line:?}");
    Member { child }
}

/// `herald ctl --json ARGS`, retried while the control plane elects a leader.
/// Tokens test control planes require (each service its own).
pub const CLUSTER_TOKEN: &str = "test-cluster-token-0123456789";
pub const EDGE_TOKEN: &str = "test-edge-token-0123456789";
pub const ADMIN_TOKEN: &str = "test-admin-token-0123456789";

/// `herald ctl --json ARGS` with a given admin token (or none): its exit status and stderr.
pub fn ctl_as(control: &str, token: Option<&str>, args: &[&str]) -> (bool, String) {
    let mut cmd = Command::new(BIN);
    cmd.args(["ctl", "--control", control, "--json"]).args(args).env_remove("HERALD_CONTROL_ADMIN_TOKEN");
    if let Some(t) = token {
        cmd.env("HERALD_CONTROL_ADMIN_TOKEN", t);
    }
    let out = cmd.output().unwrap();
    (out.status.success(), String::from_utf8_lossy(&out.stderr).into_owned())
}

pub fn ctl(control: &str, args: &[&str]) -> serde_json::Value {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        let out = Command::new(BIN).args(["ctl", "--control", control, "--json"]).args(args).env("HERALD_CONTROL_ADMIN_TOKEN", ADMIN_TOKEN).output().unwrap();
        if out.status.success() {
            return serde_json::from_slice(&out.stdout).unwrap_or_else(|_| panic!("ctl {args:?} printed {:?}", String::from_utf8_lossy(&out.stdout)));
        }
        let err = String::from_utf8_lossy(&out.stderr).to_string();
        assert!(err.contains("unavailable") && std::time::Instant::now() < deadline, "ctl {args:?} failed: {err}");
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
}


/// The next join or leave on `sub`, as (is_join, user).
pub async fn next_presence(sub: &mut herald_client::Subscription) -> (bool, String) {
    tokio::time::timeout(std::time::Duration::from_secs(60), async {
        loop {
            match sub.next().await.expect("subscription open") {
                herald_client::Event::Join { user, .. } => return (true, user),
                herald_client::Event::Leave { user, .. } => return (false, user),
                _ => continue,
            }
        }
    })
    .await
    .expect("a presence event arrives")
}
