//! Test support: a real `redis-server` on a free loopback port, stopped on drop.
//! Tests fail, never skip, when `redis-server` is missing: `scripts/install-test-tools.sh`
//! installs Debian's package.

use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A running `redis-server` (no persistence: a restart loses everything, as a crash would).
pub struct RedisServer {
    child: Child,
    /// Its port on 127.0.0.1.
    pub port: u16,
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        // redis-server reopens its log file for each line, so it may have written it again.
        let _ = std::fs::remove_file(log_path(self.port));
    }
}

/// Where the server on `port` started by this process logs.
fn log_path(port: u16) -> PathBuf {
    std::env::temp_dir().join(format!("herald-redis-{port}-{}.log", std::process::id()))
}

fn redis_binary() -> PathBuf {
    if let Ok(p) = std::env::var("REDIS_SERVER_BIN") {
        return p.into();
    }
    let path = std::env::var("PATH").unwrap_or_default();
    let mut candidates: Vec<PathBuf> = path.split(':').map(|d| PathBuf::from(d).join("redis-server")).collect();
    candidates.push("/usr/bin/redis-server".into());
    candidates.into_iter().find(|p| p.is_file()).unwrap_or_else(|| {
        panic!("redis-server is not installed: run scripts/install-test-tools.sh (or set REDIS_SERVER_BIN)")
    })
}

impl RedisServer {
    /// Starts a server on a free port and waits until it listens.
    pub fn start() -> Self {
        Self::start_on(free_port())
    }

    /// Starts a server on `port` (a restart after [`RedisServer::stop`] reuses the port).
    pub fn start_on(port: u16) -> Self {
        Self::start_with(port, &["--port", &port.to_string()])
    }

    /// Starts a server with these listener/TLS/ACL arguments (`--port …`, or `--port 0
    /// --tls-port P --tls-cert-file …`, `--user …`) and waits until `port` listens.
    pub fn start_with(port: u16, args: &[&str]) -> Self {
        // Its log goes to a file, shown when it does not come up.
        let log = log_path(port);
        let mut child = Command::new(redis_binary())
            .args(args)
            .args(["--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--logfile", log.to_str().expect("UTF-8 temp dir")])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server starts");
        let addr = format!("127.0.0.1:{port}");
        let deadline = Instant::now() + Duration::from_secs(20);
        while TcpStream::connect(&addr).is_err() {
            let exited = child.try_wait().ok().flatten();
            if exited.is_some() || Instant::now() >= deadline {
                let text = std::fs::read_to_string(&log).unwrap_or_default();
                let _ = child.kill();
                panic!("redis-server did not start listening on {addr} ({exited:?}); its log:\n{text}");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = std::fs::remove_file(&log);
        Self { child, port }
    }

    /// A server on `port` that speaks TLS only (certificate `cert`/`key`, clients need a
    /// certificate from `ca`), with the default user off and one ACL user `herald` with
    /// `password`, allowed the `herald:presence:` keys and channels.
    pub fn start_tls(port: u16, cert: &str, key: &str, ca: &str, password: &str) -> Self {
        let password = format!(">{password}");
        Self::start_with(
            port,
            &[
                "--port", "0",
                "--tls-port", &port.to_string(),
                "--tls-cert-file", cert,
                "--tls-key-file", key,
                "--tls-ca-cert-file", ca,
                "--tls-auth-clients", "yes",
                // Redis joins the words after an option into one config line.
                "--user", "default", "off",
                "--user", "herald", "on", &password, "~herald:presence:*", "&herald:presence:*", "+@all",
            ],
        )
    }

    /// `redis://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// Kills the server (SIGKILL: no goodbye to clients, all data gone).
    pub fn stop(mut self) -> u16 {
        let _ = self.child.kill();
        let _ = self.child.wait();
        self.port
    }
}

/// A loopback port nobody listens on right now.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}
