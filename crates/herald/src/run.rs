//! Start-up, in one fixed order: config (exit 64 if invalid), telemetry, runtime, build, serve,
//! wait for a signal, drain. SIGTERM drains gracefully; SIGINT (or a second signal) exits fast.

use anyhow::Context;
use std::io::Write;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

use herald_bus_kafka::{KafkaBus, KafkaBusConfig, KafkaPresenceFeed};
use herald_bus_memory::{MemoryBus, MemoryBusConfig};
use herald_config::{Config, LogFormat};
use herald_core::{AccountId, Bus, ChannelPattern, Presence, RegionName};
use herald_edge::{DevMode, Edge, EdgeDeps, EdgeMetrics, TokenClaims, TokenIssuer};
use herald_presence_memory::MemoryPresence;
use herald_presence_redis::{RedisPresence, RedisPresenceOptions};

use crate::{ServerArgs, TokenArgs};

const EX_CONFIG: u8 = 64;

fn usage_error(msg: impl std::fmt::Display) -> ExitCode {
    eprintln!("herald: {msg}");
    ExitCode::from(EX_CONFIG)
}

fn random_key(prefix: &str) -> String {
    format!("{prefix}{:016x}{:016x}", rand::random::<u64>(), rand::random::<u64>())
}

/// Parses `90s`, `30m`, `1h`, `2d`.
fn parse_ttl(s: &str) -> Option<u64> {
    let (n, unit) = s.split_at(s.find(|c: char| !c.is_ascii_digit())?);
    let n: u64 = n.parse().ok()?;
    Some(n * match unit {
        "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86400,
        _ => return None,
    })
}

fn patterns(list: &str) -> Result<Vec<String>, String> {
    list.split(',').map(str::trim).filter(|s| !s.is_empty()).map(|p| ChannelPattern::parse(p).map(|_| p.to_owned()).map_err(|e| format!("pattern {p:?}: {e}"))).collect()
}

/// `herald probe`: a synthetic client.
pub fn probe(a: crate::ProbeArgs) -> ExitCode {
    let rt = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => return usage_error(format!("cannot start the runtime: {e}")),
    };
    rt.block_on(async move {
        let client = herald_client::Client::connect(herald_client::ClientConfig::new(a.url.clone(), a.token.clone()));
        let timeout = Duration::from_millis(a.timeout_ms);
        if let Err(e) = client.wait_connected(timeout).await {
            println!("{}", serde_json::json!({ "ok": false, "error": format!("connect: {e}") }));
            return ExitCode::FAILURE;
        }
        let mut sub = match client.subscribe(&a.channel).await {
            Ok(s) => s,
            Err(e) => {
                println!("{}", serde_json::json!({ "ok": false, "error": format!("subscribe: {e}") }));
                return ExitCode::FAILURE;
            }
        };
        let mut failures = 0u64;
        let mut n = 0u64;
        loop {
            n += 1;
            let started = std::time::Instant::now();
            let tag = format!("{:016x}", rand::random::<u64>());
            let round_trip = async {
                client.publish(&a.channel, &serde_json::json!({ "probe": tag }), None).await.map_err(|e| format!("publish: {e}"))?;
                loop {
                    let m = sub.next_message().await.ok_or("connection closed")?;
                    if m.data.get().contains(&tag) {
                        return Ok::<_, String>(());
                    }
                }
            };
            let result = tokio::time::timeout(timeout, round_trip).await.unwrap_or_else(|_| Err("timed out".into()));
            match result {
                Ok(()) => println!("{}", serde_json::json!({ "ok": true, "n": n, "round_trip_ms": started.elapsed().as_secs_f64() * 1000.0 })),
                Err(e) => {
                    failures += 1;
                    println!("{}", serde_json::json!({ "ok": false, "n": n, "error": e }));
                }
            }
            if a.count > 0 && n >= a.count {
                return if failures == 0 { ExitCode::SUCCESS } else { ExitCode::FAILURE };
            }
            tokio::time::sleep(Duration::from_millis(a.interval_ms)).await;
        }
    })
}

/// `herald api-key`: 256 random bits, and the form to put in the config.
pub fn api_key() -> ExitCode {
    let key = format!("hk_{:016x}{:016x}{:016x}{:016x}", rand::random::<u64>(), rand::random::<u64>(), rand::random::<u64>(), rand::random::<u64>());
    println!("key:    {key}");
    println!("stored: {}", herald_edge::auth::hash_api_key(&key));
    ExitCode::SUCCESS
}

/// `herald token`.
pub fn token(a: TokenArgs) -> ExitCode {
    if AccountId::new(&a.account).is_err() {
        return usage_error("--account must be 1-64 characters of a-z 0-9 _ -");
    }
    let Some(ttl) = parse_ttl(&a.ttl) else { return usage_error("--ttl must look like 90s, 30m, 1h or 2d") };
    let (subscribe, publish) = match (patterns(&a.channels), patterns(&a.publish)) {
        (Ok(s), Ok(p)) => (s, p),
        (Err(e), _) | (_, Err(e)) => return usage_error(e),
    };
    let now = herald_core::now_ms() / 1000;
    let claims = TokenClaims { sub: a.sub, account: a.account, exp: now + ttl, iat: Some(now), nbf: None, jti: None, subscribe, publish, presence: None };
    println!("{}", TokenIssuer::hs256(a.secret.as_bytes()).issue(&claims));
    ExitCode::SUCCESS
}

fn load_config(args: &ServerArgs) -> Result<Config, String> {
    let mut config = match &args.config {
        Some(p) => Config::from_file(p).map_err(|e| e.to_string())?,
        None => Config::default(),
    };
    config.apply_env(|k| std::env::var(k).ok()).map_err(|e| e.to_string())?;
    if let Some(l) = args.listen {
        config.edge.listen = l;
    }
    if let Some(b) = &args.bus {
        config.bus.url = b.clone();
    }
    if let Some(r) = &args.region {
        config.edge.region = r.clone();
    }
    if let Some(n) = &args.node {
        config.edge.node = n.clone();
    }
    if let Some(f) = &args.log_format {
        config.log.format = if f == "json" { LogFormat::Json } else { LogFormat::Text };
    }
    config.validate().map_err(|e| e.to_string())?;
    for src in &config.sources {
        herald_source::Rules::compile(src).map_err(|e| e.to_string())?;
    }
    // Secrets are read now, so a missing password file fails here and not at the first connect.
    config.kafka.client_properties(|k| std::env::var(k).ok()).map_err(|e| e.to_string())?;
    if config.presence.url != "memory" {
        // The password file and the TLS files too; nothing connects.
        let login = redis_login(config.presence.login(|k| std::env::var(k).ok()).map_err(|e| e.to_string())?);
        herald_presence_redis::client(&config.presence.url, &login).map_err(|e| format!("presence: {e}"))?;
    }
    // So are the control plane's CA and client certificate.
    crate::control::agent_tls(&config)?;
    Ok(config)
}

/// `--check`: the configuration was read and validated; say so and stop.
fn config_ok(role: &str) -> ExitCode {
    println!("herald {role}: configuration ok");
    ExitCode::SUCCESS
}

fn init_tracing(config: &Config) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(&config.log.level));
    let b = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr);
    match config.log.format {
        LogFormat::Json => b.json().flatten_event(true).with_current_span(true).init(),
        LogFormat::Text => b.init(),
    }
}

/// `herald control`.
pub fn control(a: crate::ControlArgs) -> ExitCode {
    let mut config = Config::default();
    if let Err(e) = config.apply_env(|k| std::env::var(k).ok()) {
        return usage_error(e);
    }
    if let Err(e) = crate::control::check(&a) {
        return usage_error(e);
    }
    if a.check {
        return config_ok("control");
    }
    init_tracing(&config);
    let rt = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => return usage_error(format!("cannot start the runtime: {e}")),
    };
    match rt.block_on(crate::control::control(a)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("herald control: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// `herald replicate`.
pub fn replicate(a: crate::ReplicateArgs) -> ExitCode {
    let mut config = match &a.config {
        Some(p) => match Config::from_file(p) {
            Ok(c) => c,
            Err(e) => return usage_error(e),
        },
        None => Config::default(),
    };
    if let Err(e) = config.apply_env(|k| std::env::var(k).ok()) {
        return usage_error(e);
    }
    if let Some(url) = &a.presence {
        // The flag is this region's store; [presence] gives its login.
        config.presence.url = url.clone();
    }
    if let Err(e) = config.kafka.validate().and_then(|_| config.presence.validate()) {
        return usage_error(e);
    }
    if let Err(e) = check_presence_flags(&a, &config.presence) {
        return usage_error(e);
    }
    let links = match replication_links(&a, &config.kafka) {
        Ok(l) => l,
        Err(e) => return usage_error(e),
    };
    if !(3..=600).contains(&a.presence_ttl_secs) {
        return usage_error("--presence-ttl-secs must be between 3 and 600");
    }
    if a.check {
        return config_ok("replicate");
    }
    init_tracing(&config);
    let rt = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => return usage_error(format!("cannot start the runtime: {e}")),
    };
    rt.block_on(async move {
        let listener = match tokio::net::TcpListener::bind(a.metrics_listen).await {
            Ok(l) => l,
            Err(e) => return usage_error(format!("cannot listen on {}: {e}", a.metrics_listen)),
        };
        let metrics = Arc::new(herald_replicator::Metrics::default());
        let stop = CancellationToken::new();
        let mut tasks: Vec<_> = links.into_iter().map(|l| tokio::spawn(herald_replicator::run(l, metrics.clone(), stop.clone()))).collect();
        match presence_links(&a, &config.presence).await {
            Ok(links) => tasks.extend(links.into_iter().map(|l| tokio::spawn(herald_replicator::presence::run(l, stop.clone())))),
            Err(e) => return usage_error(e),
        }
        println!("herald replicate listening on http://{}", listener.local_addr().map(|x| x.to_string()).unwrap_or_default());
        let server = tokio::spawn(serve_metrics(listener, metrics));
        let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(t) => t,
            Err(e) => return usage_error(format!("cannot install signal handlers: {e}")),
        };
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = term.recv() => {}
        }
        stop.cancel();
        for t in tasks {
            let _ = t.await;
        }
        server.abort();
        ExitCode::SUCCESS
    })
}

/// The presence adapter's login for a config's `RedisLogin` (secrets already read).
pub(crate) fn redis_login(l: herald_config::RedisLogin) -> herald_presence_redis::RedisLogin {
    herald_presence_redis::RedisLogin {
        username: l.username,
        password: l.password,
        ca_file: l.tls.ca_file.map(Into::into),
        client_cert: l.tls.cert_file.zip(l.tls.key_file).map(|(c, k)| (c.into(), k.into())),
    }
}

/// Checks `--presence` and `--from-presence` with `[presence]`'s logins: the URLs, the password
/// files and the TLS files are read; nothing connects (also for `--check`).
fn check_presence_flags(a: &crate::ReplicateArgs, p: &herald_config::PresenceConfig) -> Result<(), String> {
    let env = |k: &str| std::env::var(k).ok();
    if let Some(url) = &a.presence {
        herald_config::check_redis_url(url, "--presence", p.tls != Default::default()).map_err(|e| e.to_string())?;
        let login = redis_login(p.login(env).map_err(|e| e.to_string())?);
        herald_presence_redis::client(url, &login).map_err(|e| format!("--presence: {e}"))?;
    } else if !a.from_presence.is_empty() {
        return Err("--from-presence needs --presence (this region's store)".into());
    }
    for f in &a.from_presence {
        let (name, url) = f.split_once('=').ok_or_else(|| format!("--from-presence: expected REGION=redis://…, got {f}"))?;
        let tls = p.regions.get(name).map_or(p.tls != Default::default(), |r| r.tls != Default::default());
        herald_config::check_redis_url(url, "--from-presence", tls).map_err(|e| format!("{name}: {e}"))?;
        let login = redis_login(p.login_for_region(name, env).map_err(|e| format!("--from-presence {name}: {e}"))?);
        herald_presence_redis::client(url, &login).map_err(|e| format!("--from-presence {name}: {e}"))?;
    }
    Ok(())
}

/// `--from-presence REGION=redis://…` links into `--presence`, each store with its login from
/// `[presence]` (`[presence.regions.<name>]` for another region's).
async fn presence_links(a: &crate::ReplicateArgs, p: &herald_config::PresenceConfig) -> Result<Vec<herald_replicator::presence::PresenceLink>, String> {
    if a.from_presence.is_empty() {
        return Ok(Vec::new());
    }
    let url = a.presence.clone().ok_or("--from-presence needs --presence (this region's store)")?;
    if !(3..=600).contains(&a.presence_ttl_secs) {
        return Err("--presence-ttl-secs must be between 3 and 600".into());
    }
    let env = |k: &str| std::env::var(k).ok();
    let login = redis_login(p.login(env).map_err(|e| e.to_string())?);
    let opts = RedisPresenceOptions { ttl: Duration::from_secs(a.presence_ttl_secs), login, ..RedisPresenceOptions::new(url) };
    let target = Arc::new(RedisPresence::start(opts, &format!("replicator-{}", a.region)).await.map_err(|e| format!("--presence: {e}"))?);
    let mut links = Vec::new();
    for f in &a.from_presence {
        let (name, url) = f.split_once('=').ok_or_else(|| format!("--from-presence: expected REGION=redis://…, got {f}"))?;
        let source = RegionName::new(name).map_err(|e| format!("--from-presence {name}: {e}"))?;
        if source.as_str() == a.region {
            return Err(format!("--from-presence {name}: a region does not mirror itself"));
        }
        let login = redis_login(p.login_for_region(name, env).map_err(|e| format!("--from-presence {name}: {e}"))?);
        let store = herald_presence_redis::RemoteStore::new(url, &login, "herald:presence:").map_err(|e| format!("--from-presence {name}: {e}"))?;
        links.push(herald_replicator::presence::PresenceLink { source, store, target: target.clone() });
    }
    Ok(links)
}

/// Parses `--from REGION=kafka://HOST:PORT[,…][/TOPIC]` into links towards `--region`, each side
/// with its cluster's `[kafka]` settings (`[kafka.regions.<name>]` for another region's).
fn replication_links(a: &crate::ReplicateArgs, kafka: &herald_config::KafkaConfig) -> Result<Vec<herald_replicator::Link>, String> {
    let env = |k: &str| std::env::var(k).ok();
    let region = RegionName::new(&a.region).map_err(|e| format!("--region: {e}"))?;
    let brokers = |url: &str, what: &str| -> Result<(String, Option<String>), String> {
        let rest = url.strip_prefix("kafka://").ok_or_else(|| format!("{what}: expected kafka://HOST:PORT[,…][/TOPIC], got {url}"))?;
        let (hosts, topic) = match rest.split_once('/') {
            Some((h, t)) if !t.is_empty() => (h, Some(t.to_owned())),
            Some((h, _)) => (h, None),
            None => (rest, None),
        };
        if hosts.is_empty() || !hosts.split(',').all(|hp| hp.rsplit_once(':').is_some_and(|(h, p)| !h.is_empty() && p.parse::<u16>().is_ok())) {
            return Err(format!("{what}: bad broker list {hosts:?}"));
        }
        Ok((hosts.to_owned(), topic))
    };
    let (to_brokers, _) = brokers(&a.to, "--to")?;
    let mut target = KafkaBusConfig::new(to_brokers, region.clone());
    target.properties = kafka.client_properties(env).map_err(|e| e.to_string())?;
    if let Some(t) = &a.to_topic {
        target.topic = t.clone();
    }
    let mut links = Vec::new();
    for f in &a.from {
        let (name, url) = f.split_once('=').ok_or_else(|| format!("--from: expected REGION=kafka://…, got {f}"))?;
        let source_region = RegionName::new(name).map_err(|e| format!("--from {name}: {e}"))?;
        if source_region == region {
            return Err(format!("--from {name}: a region does not replicate from itself"));
        }
        let (hosts, topic) = brokers(url, "--from")?;
        let mut source = KafkaBusConfig::new(hosts, source_region.clone());
        source.properties = kafka.for_region(source_region.as_str()).client_properties(env).map_err(|e| format!("kafka.regions.{source_region}: {e}"))?;
        if let Some(t) = topic {
            source.topic = t;
        }
        links.push(herald_replicator::Link { source, target: target.clone() });
    }
    Ok(links)
}

/// `/metrics` and `/healthz` for the replicator: one request per connection, HTTP/1.0 style.
async fn serve_metrics(listener: tokio::net::TcpListener, metrics: Arc<herald_replicator::Metrics>) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    loop {
        let Ok((mut sock, _)) = listener.accept().await else { continue };
        let metrics = metrics.clone();
        tokio::spawn(async move {
            // Read the whole request head (a client may write it in pieces), at most 8 KiB.
            let mut buf = Vec::with_capacity(1024);
            let head = async {
                let mut chunk = [0u8; 1024];
                while !buf.windows(4).any(|w| w == b"\r\n\r\n") && buf.len() < 8192 {
                    match sock.read(&mut chunk).await {
                        Ok(0) | Err(_) => break,
                        Ok(n) => buf.extend_from_slice(&chunk[..n]),
                    }
                }
            };
            let _ = tokio::time::timeout(Duration::from_secs(5), head).await;
            let req = String::from_utf8_lossy(&buf);
            let (status, body) = if req.starts_with("GET /metrics") {
                ("200 OK", metrics.render())
            } else if req.starts_with("GET /healthz") {
                ("200 OK", "ok\n".to_owned())
            } else {
                ("404 Not Found", "not found\n".to_owned())
            };
            let head = format!("HTTP/1.1 {status}\r\ncontent-type: text/plain; version=0.0.4\r\ncontent-length: {}\r\nconnection: close\r\n\r\n", body.len());
            let _ = sock.write_all(head.as_bytes()).await;
            let _ = sock.write_all(body.as_bytes()).await;
        });
    }
}

/// `herald ctl`.
pub fn ctl(a: crate::CtlArgs) -> ExitCode {
    match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(rt) => rt.block_on(crate::control::ctl(a)),
        Err(e) => usage_error(format!("cannot start the runtime: {e}")),
    }
}

/// `herald dev` (with dev secrets) and `herald edge`.
pub fn server(args: ServerArgs, dev: Option<(Option<String>, Option<String>)>) -> ExitCode {
    let mut config = match load_config(&args) {
        Ok(c) => c,
        Err(e) => return usage_error(e),
    };
    let mut dev_keys = None;
    if let Some((secret, api_key)) = dev {
        let secret = secret.or(config.auth.jwt_secret.clone()).unwrap_or_else(|| random_key("dev-secret-"));
        let api_key = api_key.or(config.auth.admin_api_key.clone()).unwrap_or_else(|| random_key("dev-key-"));
        if secret.len() < 16 || api_key.len() < 16 {
            return usage_error("--dev-secret and --dev-api-key must be at least 16 characters");
        }
        config.auth.jwt_secret = Some(secret.clone());
        config.auth.admin_api_key = Some(api_key.clone());
        dev_keys = Some((secret, api_key));
    } else if config.auth.jwt_secret.is_none()
        && config.auth.keys.is_empty()
        && config.auth.jwks_file.is_none()
        && config.auth.jwks_url.is_none()
        && config.control.endpoints.is_empty()
    {
        return usage_error("a token key is required: auth.jwt_secret (HERALD_JWT_SECRET), auth.keys, auth.jwks_file, auth.jwks_url, or control.endpoints");
    }
    if args.check {
        // The key files too: the edge reads them at start.
        if let Err(e) = herald_edge::keys::load(&config.auth) {
            return usage_error(format!("auth: {e}"));
        }
        // And the listener's certificate and key, checked to match.
        if let Some(tls) = &config.edge.tls
            && let Err(e) = herald_edge::tls::load(&tls.cert_file, &tls.key_file)
        {
            return usage_error(e);
        }
        return config_ok(if dev_keys.is_some() { "dev" } else { "edge" });
    }
    init_tracing(&config);
    let rt = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => return usage_error(format!("cannot start the runtime: {e}")),
    };
    match rt.block_on(serve(config, dev_keys)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(error = %format!("{e:#}"), "herald failed");
            eprintln!("herald: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// Builds the configured bus. Kafka is retried until it answers (or a signal arrives): an edge
/// without its bus could only refuse every client.
async fn build_bus(config: &Config, region: RegionName, starting: &herald_edge::Starting, signals: &mut Signals) -> anyhow::Result<Option<Arc<dyn Bus>>> {
    let Some(brokers) = config.bus.kafka_brokers() else {
        let mut c = MemoryBusConfig::new(region);
        c.partitions = config.bus.partitions;
        c.retention_records = config.bus.retention_records;
        c.retention = Duration::from_secs(config.bus.retention_secs);
        c.idempotency_window = Duration::from_secs(config.bus.idempotency_window_secs);
        return Ok(Some(Arc::new(MemoryBus::new(c))));
    };
    let mut c = KafkaBusConfig::new(brokers, region);
    if !config.bus.topic.is_empty() {
        c.topic = config.bus.topic.clone();
    }
    c.partitions = config.bus.partitions;
    c.replication = config.bus.replication;
    c.idempotency_window = Duration::from_secs(config.bus.idempotency_window_secs);
    c.gap_confirm = Duration::from_millis(config.bus.gap_confirm_ms);
    c.properties = config.kafka.client_properties(|k| std::env::var(k).ok())?;
    let mut backoff = Duration::from_millis(200);
    loop {
        match KafkaBus::connect(c.clone()).await {
            Ok(bus) => return Ok(Some(Arc::new(bus))),
            Err(e) => {
                // Why, in the log, in /readyz and in herald_bus_connect_errors_total{cause}.
                let message = e.to_string();
                let cause = herald_bus_kafka::connect_error_cause(&message);
                tracing::error!(error = %message, cause, retry_in_ms = backoff.as_millis() as u64, "kafka unavailable; retrying");
                starting.metrics.counter("herald_bus_connect_errors_total", "Failed attempts to connect to the bus, by cause (auth, tls, unreachable)", &[("cause", cause.to_owned())]).increment(1);
                *starting.cause.lock() = Some(format!("{cause}: {message}"));
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(backoff) => {}
            _ = signals.any() => return Ok(None),
        }
        backoff = (backoff * 2).min(Duration::from_secs(10));
    }
}

async fn serve(mut config: Config, dev_keys: Option<(String, String)>) -> anyhow::Result<()> {
    if config.edge.node.is_empty() {
        // Named here, not in the edge, because presence needs the name before the edge exists.
        config.edge.node = format!("edge-{:06x}", rand::random::<u32>() & 0xff_ffff);
    }
    // Handlers first: a signal that arrives at any later point is ours to handle.
    let mut signals = Signals::install()?;
    let region = RegionName::new(&config.edge.region).context("edge.region")?;
    let listener = tokio::net::TcpListener::bind(config.edge.listen).await.with_context(|| format!("cannot listen on {}", config.edge.listen))?;
    let addr = listener.local_addr()?;
    // Until the bus answers, the node is alive but not ready.
    let metrics = EdgeMetrics::new();
    let starting = herald_edge::Starting::new(metrics.clone());
    // The admin listener answers from now until exit: probes and Prometheus need no PROXY
    // header or TLS there.
    let admin_stop = CancellationToken::new();
    let _admin_stop = admin_stop.clone().drop_guard();
    let admin = herald_edge::admin::AdminPhase::new(starting.clone());
    if let Some(a) = config.edge.admin_listen {
        let l = tokio::net::TcpListener::bind(a).await.with_context(|| format!("cannot listen on {a} (edge.admin_listen)"))?;
        tracing::info!(addr = %l.local_addr()?, "admin listener: /healthz, /readyz, /metrics");
        tokio::spawn(herald_edge::admin::serve(l, admin.clone(), admin_stop));
    }
    let Some(bus) = herald_edge::serve_starting(&listener, &starting, build_bus(&config, region.clone(), &starting, &mut signals)).await? else { return Ok(()) };
    let presence: Arc<dyn Presence> = if config.presence.url == "memory" {
        Arc::new(MemoryPresence::new())
    } else {
        let opts = RedisPresenceOptions {
            url: config.presence.url.clone(),
            prefix: config.presence.prefix.clone(),
            ttl: Duration::from_secs(config.presence.ttl_secs),
            login: redis_login(config.presence.login(|k| std::env::var(k).ok())?),
        };
        Arc::new(RedisPresence::start(opts, &config.edge.node).await.context("presence.url")?)
    };
    if let (Some(brokers), true) = (config.bus.kafka_brokers(), config.presence.kafka_feed) {
        let records = if config.bus.topic.is_empty() { KafkaBusConfig::new(brokers.clone(), region.clone()).topic } else { config.bus.topic.clone() };
        let topic = format!("{records}.presence");
        let props = config.kafka.client_properties(|k| std::env::var(k).ok())?;
        match KafkaPresenceFeed::connect(&brokers, &props, &topic, region.clone(), config.bus.partitions, config.bus.replication).await {
            Ok(feed) => presence.set_feed(Arc::new(feed)),
            Err(e) => tracing::warn!(error = %e, topic, "presence feed: cannot create the topic; joins and leaves will not reach Kafka"),
        }
    }
    let deps = EdgeDeps {
        bus,
        presence,
        metrics,
        dev: dev_keys.as_ref().map(|(secret, _)| DevMode { issuer: TokenIssuer::hs256(secret.as_bytes()) }),
    };
    let edge = Edge::new(&config, deps)?;
    admin.serving(edge.clone());
    if let Some((secret, api_key)) = &dev_keys {
        print_dev_banner(addr, secret, api_key);
    } else {
        println!("herald listening on http://{addr}");
    }
    let stop = CancellationToken::new();
    tokio::spawn(watch_signals(edge.clone(), stop.clone(), signals));
    let sources_stop = CancellationToken::new();
    let sources = start_sources(&config, &edge, &sources_stop)?;
    let agent = crate::control::start_agent(&config, &edge, addr, sources_stop.clone())?;
    herald_edge::serve(listener, edge, stop).await?;
    sources_stop.cancel();
    if let Some(agent) = agent {
        let _ = agent.await;
    }
    for s in sources {
        let _ = s.await;
    }
    Ok(())
}

/// Starts every `[[sources]]` entry; each commits its progress when stopped.
fn start_sources(config: &Config, edge: &Arc<Edge>, stop: &CancellationToken) -> anyhow::Result<Vec<tokio::task::JoinHandle<()>>> {
    let mut tasks = Vec::new();
    for src in &config.sources {
        let brokers = match &src.brokers {
            Some(url) => herald_config::BusConfig { url: url.clone(), ..Default::default() }.kafka_brokers(),
            None => config.bus.kafka_brokers(),
        }
        .with_context(|| format!("source {}: brokers must be kafka://HOST:PORT", src.name))?;
        let m = &edge.metrics;
        let label = || vec![("source", src.name.clone())];
        let counters = herald_source::SourceCounters {
            published: m.counter("herald_source_published_total", "Source records published", &label()),
            dropped: m.counter("herald_source_dropped_total", "Source records removed by drop rules", &label()),
            dead_lettered: m.counter("herald_source_dead_lettered_total", "Malformed source records", &label()),
        };
        let props = config.kafka.client_properties(|k| std::env::var(k).ok())?;
        let source = herald_source::Source::new(src, &brokers, &props, edge.bus.clone(), counters)?;
        tasks.push(tokio::spawn(source.run(stop.clone())));
    }
    Ok(tasks)
}

fn print_dev_banner(addr: std::net::SocketAddr, secret: &str, api_key: &str) {
    let now = herald_core::now_ms() / 1000;
    let claims = TokenClaims {
        sub: "dev-user".into(),
        account: "demo".into(),
        exp: now + 24 * 3600,
        iat: Some(now),
        nbf: None,
        jti: None,
        subscribe: vec!["*".into()],
        publish: vec!["*".into()],
        presence: None,
    };
    let token = TokenIssuer::hs256(secret.as_bytes()).issue(&claims);
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "herald listening on http://{addr}");
    let _ = writeln!(out, "  demo page:        http://{addr}/");
    let _ = writeln!(out, "  token secret:     {secret}");
    let _ = writeln!(out, "  publish API key:  {api_key}   (admin: may publish to any account)");
    let _ = writeln!(out, "  client token (account demo, user dev-user, 24h, every channel):");
    let _ = writeln!(out, "    {token}");
    let _ = writeln!(out, "  publish a record:");
    let _ = writeln!(
        out,
        "    curl -s -X POST http://{addr}/v1/publish -H 'Authorization: Bearer {api_key}' -H 'Content-Type: application/json' \\\n      -d '{{\"account\":\"demo\",\"channel\":\"incidents\",\"data\":{{\"ent\":\"incident\",\"id\":\"PAM4FGS\",\"type\":\"updated\"}}}}'"
    );
    let _ = writeln!(out, "  receive it (SSE):");
    let _ = writeln!(out, "    curl -N 'http://{addr}/v1/sse?channels=incidents&token={token}'");
    let _ = out.flush();
}

/// SIGTERM and SIGINT, installed once at start.
struct Signals {
    term: tokio::signal::unix::Signal,
    int: tokio::signal::unix::Signal,
}

impl Signals {
    fn install() -> anyhow::Result<Self> {
        use tokio::signal::unix::{SignalKind, signal};
        Ok(Self { term: signal(SignalKind::terminate()).context("SIGTERM handler")?, int: signal(SignalKind::interrupt()).context("SIGINT handler")? })
    }

    /// Waits for either signal.
    async fn any(&mut self) {
        tokio::select! {
            _ = self.term.recv() => {}
            _ = self.int.recv() => {}
        }
    }
}

async fn watch_signals(edge: Arc<Edge>, stop: CancellationToken, mut signals: Signals) {
    tokio::select! {
        _ = signals.term.recv() => {
            tracing::info!("SIGTERM: draining");
            edge.drain.cancel();
        }
        _ = signals.int.recv() => {
            tracing::info!("SIGINT: stopping");
            stop.cancel();
            return;
        }
    }
    // A second signal during the drain stops at once.
    signals.any().await;
    tracing::info!("second signal: stopping now");
    stop.cancel();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ttls_parse_with_units() {
        assert_eq!(parse_ttl("90s"), Some(90));
        assert_eq!(parse_ttl("1h"), Some(3600));
        assert_eq!(parse_ttl("2d"), Some(172800));
        assert_eq!(parse_ttl("5"), None);
        assert_eq!(parse_ttl("h"), None);
        assert_eq!(parse_ttl("5y"), None);
    }
}
