//! `herald edge` and `herald dev`: start-up in one fixed order: config (exit 64 if invalid),
//! telemetry, runtime, build, serve, wait for a signal, drain. SIGTERM drains gracefully; SIGINT
//! (or a second signal) exits fast.

use anyhow::Context;
use std::io::Write;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

use herald_bus_kafka::{KafkaBus, KafkaBusConfig, KafkaPresenceFeed};
use herald_bus_memory::{MemoryBus, MemoryBusConfig};
use herald_config::{Config, LogFormat};
use herald_core::{Bus, Presence, RegionName};
use herald_edge::{DevMode, Edge, EdgeDeps, EdgeMetrics, TokenClaims, TokenIssuer};
use herald_presence_memory::MemoryPresence;
use herald_presence_redis::{RedisPresence, RedisPresenceOptions};

use crate::ServerArgs;
use crate::common::{config_ok, init_tracing, random_key, redis_login, usage_error};

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
    crate::agent::agent_tls(&config)?;
    Ok(config)
}

/// `herald dev` (with dev secrets) and `herald edge`.
pub fn run(args: ServerArgs, dev: Option<(Option<String>, Option<String>)>) -> ExitCode {
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
        // The authorization proxies' URLs and CA files.
        for p in &config.auth.proxy {
            if let Err(e) = herald_edge::proxy::check(p) {
                return usage_error(e.to_string());
            }
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
    let traces = crate::traces::install(&config.tracing)?;
    let region = config.edge.region.clone();
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
    let mut admin_addr = None;
    if let Some(a) = config.edge.admin_listen {
        let l = tokio::net::TcpListener::bind(a).await.with_context(|| format!("cannot listen on {a} (edge.admin_listen)"))?;
        admin_addr = Some(l.local_addr()?);
        tracing::info!(addr = %l.local_addr()?, "admin listener: /healthz, /readyz, /metrics, /console/");
        tokio::spawn(herald_edge::admin::serve(l, admin.clone(), admin_stop));
    }
    let console = config.console.enabled.then(|| {
        let control = (!config.control.endpoints.is_empty()).then(|| {
            let tls = crate::agent::agent_tls(&config).unwrap_or(None);
            Arc::new(crate::console::AdminView::new(config.control.endpoints.clone(), config.console.control_admin_token.clone(), tls)) as Arc<dyn herald_edge::console::ControlView>
        });
        herald_edge::console::Console::new(&config, control)
    });
    let Some(bus) = herald_edge::serve_starting(&listener, &starting, build_bus(&config, region.clone(), &starting, &mut signals)).await? else { return Ok(()) };
    let redis = match config.presence.url.as_str() {
        "memory" => None,
        url => Some(RedisPresenceOptions {
            url: url.to_owned(),
            prefix: config.presence.prefix.clone(),
            ttl: Duration::from_secs(config.presence.ttl_secs),
            login: redis_login(config.presence.login(|k| std::env::var(k).ok())?),
        }),
    };
    let presence: Arc<dyn Presence> = match &redis {
        None => Arc::new(MemoryPresence::new()),
        Some(opts) => Arc::new(RedisPresence::start(opts.clone(), &config.edge.node).await.context("presence.url")?),
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
    // Device registrations for push live beside presence: in memory for one process, in the
    // region's Redis otherwise (where `herald push` reads them).
    let devices: Arc<dyn herald_core::DeviceRegistry> = if config.presence.url == "memory" {
        Arc::new(herald_push::MemoryRegistry::new())
    } else {
        let login = redis_login(config.presence.login(|k| std::env::var(k).ok())?);
        let conn = herald_push::store::connect(&config.presence.url, &login).map_err(|e| anyhow::anyhow!("presence.url (device registry): {e}"))?;
        Arc::new(herald_push::RedisRegistry::new(conn, &config.push.prefix))
    };
    // Orders too: in memory for one process, in the presence Redis for a region.
    let orders: Arc<dyn herald_core::Orders> = match &redis {
        None => Arc::new(herald_presence_memory::MemoryOrders::new()),
        Some(opts) => Arc::new(herald_presence_redis::RedisOrders::start(opts).await.context("presence.url (orders)")?),
    };
    let deps = EdgeDeps {
        devices: Some(devices),
        orders,
        bus,
        presence,
        metrics,
        dev: dev_keys.as_ref().map(|(secret, _)| DevMode { issuer: TokenIssuer::hs256(secret.as_bytes()), console: console.clone() }),
    };
    let edge = Edge::new(&config, deps)?;
    admin.serving(edge.clone());
    let console_stop = CancellationToken::new();
    let _console_stop = console_stop.clone().drop_guard();
    if let Some(c) = &console {
        admin.with_console(c.clone());
        tokio::spawn(c.clone().run_sampler(edge.clone(), console_stop));
    }
    if let Some((secret, api_key)) = &dev_keys {
        print_dev_banner(addr, secret, api_key, console.is_some());
    } else {
        // Errors ignored: whoever started us may stop reading after the first line.
        let mut out = std::io::stdout().lock();
        let _ = writeln!(out, "herald listening on http://{addr}");
        if let (Some(a), Some(_)) = (admin_addr, &console) {
            let _ = writeln!(out, "operator console on http://{a}/console/ (log in with auth.admin_api_key)");
        }
        let _ = out.flush();
    }
    let stop = CancellationToken::new();
    tokio::spawn(watch_signals(edge.clone(), stop.clone(), signals));
    let sources_stop = CancellationToken::new();
    let sources = start_sources(&config, &edge, &sources_stop)?;
    let agent = crate::agent::start_agent(&config, &edge, console.clone(), addr, sources_stop.clone())?;
    herald_edge::serve(listener, edge, stop).await?;
    sources_stop.cancel();
    if let Some(agent) = agent {
        let _ = agent.await;
    }
    for s in sources {
        let _ = s.await;
    }
    if let Some(t) = traces {
        // Flushing blocks on the exporter's thread.
        let _ = tokio::task::spawn_blocking(move || t.shutdown()).await;
    }
    Ok(())
}

/// Starts every `[[sources]]` entry; each commits its progress when stopped.
fn start_sources(config: &Config, edge: &Arc<Edge>, stop: &CancellationToken) -> anyhow::Result<Vec<tokio::task::JoinHandle<()>>> {
    let mut tasks = Vec::new();
    for src in &config.sources {
        let brokers = match &src.brokers {
            Some(url) => url.kafka_brokers(),
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

fn print_dev_banner(addr: std::net::SocketAddr, secret: &str, api_key: &str, console: bool) {
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
    if console {
        let _ = writeln!(out, "  operator console: http://{addr}/console/   (log in with the publish API key below)");
    }
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

