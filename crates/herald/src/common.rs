//! What every subcommand shares: the exit code for a bad configuration, `--check`'s answer,
//! logging, and the presence login the edge, the replicator and the control plane all build.

use std::process::ExitCode;

/// `println!` that ignores a closed stdout (`herald ctl nodes | head -1` must not panic).
macro_rules! out {
    ($($t:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stdout(), $($t)*);
    }};
}
pub(crate) use out;

use herald_config::{Config, LogFormat};

/// The exit code of a configuration or usage error (sysexits' EX_CONFIG).
pub const EX_CONFIG: u8 = 64;

/// Prints `herald: MSG` on stderr; the exit code for a bad configuration.
pub fn usage_error(msg: impl std::fmt::Display) -> ExitCode {
    eprintln!("herald: {msg}");
    ExitCode::from(EX_CONFIG)
}

/// A random secret with a readable prefix (`herald dev`'s keys).
/// A `--region` argument, checked like `edge.region` in the config file.
pub fn region_arg(s: &str) -> Result<herald_core::RegionName, String> {
    herald_core::RegionName::new(s).map_err(|e| e.to_string())
}

pub fn random_key(prefix: &str) -> String {
    format!("{prefix}{:016x}{:016x}", rand::random::<u64>(), rand::random::<u64>())
}

/// `--check`: the configuration was read and validated; say so and stop.
pub fn config_ok(role: &str) -> ExitCode {
    println!("herald {role}: configuration ok");
    ExitCode::SUCCESS
}

/// Logs to stderr, as `[log]` says (RUST_LOG overrides the level).
pub fn init_tracing(config: &Config) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(&config.log.level));
    let b = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr);
    match config.log.format {
        LogFormat::Json => b.json().flatten_event(true).with_current_span(true).init(),
        LogFormat::Text => b.init(),
    }
}

/// The presence adapter's login for a config's `RedisLogin` (secrets already read).
pub fn redis_login(l: herald_config::RedisLogin) -> herald_presence_redis::RedisLogin {
    herald_presence_redis::RedisLogin {
        username: l.username,
        password: l.password,
        ca_file: l.tls.ca_file.map(Into::into),
        client_cert: l.tls.cert_file.zip(l.tls.key_file).map(|(c, k)| (c.into(), k.into())),
    }
}

/// A tokio runtime, or the exit code saying why there is none.
pub fn runtime(multi_thread: bool) -> Result<tokio::runtime::Runtime, ExitCode> {
    let b = if multi_thread { tokio::runtime::Builder::new_multi_thread().enable_all().build() } else { tokio::runtime::Builder::new_current_thread().enable_all().build() };
    b.map_err(|e| usage_error(format!("cannot start the runtime: {e}")))
}

/// `/metrics` (what `render` returns) and `/healthz` on hyper, like the edge's admin listener:
/// the replicator's and the webhook sender's own endpoints.
pub async fn serve_metrics(listener: tokio::net::TcpListener, render: impl Fn() -> String + Clone + Send + Sync + 'static) {
    use hyper::{Method, Response, StatusCode};
    loop {
        let Ok((tcp, _)) = listener.accept().await else {
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            continue;
        };
        let render = render.clone();
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |req: hyper::Request<hyper::body::Incoming>| {
                let resp = match (req.method(), req.uri().path()) {
                    (&Method::GET, "/metrics") => herald_edge::http::metrics_response(render()),
                    (&Method::GET, "/healthz") => Response::new(herald_edge::http::full("ok\n")),
                    _ => {
                        let mut r = Response::new(herald_edge::http::full("not found: /metrics and /healthz only\n"));
                        *r.status_mut() = StatusCode::NOT_FOUND;
                        r
                    }
                };
                async move { Ok::<_, std::convert::Infallible>(resp) }
            });
            let _ = hyper::server::conn::http1::Builder::new()
                .timer(hyper_util::rt::TokioTimer::new())
                .header_read_timeout(std::time::Duration::from_secs(5))
                .serve_connection(hyper_util::rt::TokioIo::new(tcp), service)
                .await;
        });
    }
}
