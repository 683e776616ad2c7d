//! `herald push`: the region's mobile-push worker (docs/push.md). Reads the same herald.toml as
//! the edges (`[bus]`, `[kafka]`, `[presence]`, `[push]`, `edge.region`), serves `/metrics` and
//! `/healthz`, and pushes while it holds the region's lease (run two for a standby).

use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

use herald_bus_kafka::{KafkaBus, KafkaBusConfig};
use herald_config::Config;
use herald_core::{Bus, RegionName};
use herald_presence_redis::{RedisPresence, RedisPresenceOptions};
use herald_push::{Metrics, PushDeps, RedisRegistry, RedisStore, Rules, SendLimits, Sender, WorkerSettings};

use crate::common::{config_ok, init_tracing, redis_login, usage_error};

/// Everything `herald push` starts from, read and checked (credentials included), nothing
/// connected.
struct Checked {
    config: Config,
    region: RegionName,
    brokers: String,
    login: herald_presence_redis::RedisLogin,
    providers: herald_push::Providers,
    kafka: Vec<(String, String)>,
}

fn check(a: &crate::PushArgs) -> Result<Checked, String> {
    let env = |k: &str| std::env::var(k).ok();
    let mut config = Config::from_file(&a.config).map_err(|e| e.to_string())?;
    config.apply_env(env).map_err(|e| e.to_string())?;
    config.validate().map_err(|e| e.to_string())?;
    if !config.push.is_enabled() {
        return Err("push.channels: no pushable channel is configured; there is nothing to push (docs/push.md)".into());
    }
    let brokers = config.bus.kafka_brokers().ok_or("bus.url: herald push reads the region's Kafka topic; set kafka://HOST:PORT")?;
    if config.presence.url == "memory" {
        return Err("presence.url: herald push needs the region's Redis (registrations, the lease, positions, and who is looking)".into());
    }
    let region = config.edge.region.clone();
    let login = redis_login(config.presence.login(env).map_err(|e| e.to_string())?);
    herald_presence_redis::client(&config.presence.url, &login).map_err(|e| format!("presence: {e}"))?;
    let kafka = config.kafka.client_properties(env).map_err(|e| e.to_string())?;
    let providers = herald_push::providers(&config.push)?;
    Ok(Checked { config, region, brokers, login, providers, kafka })
}

/// `herald push`.
pub fn run(a: crate::PushArgs) -> ExitCode {
    let c = match check(&a) {
        Ok(c) => c,
        Err(e) => return usage_error(e),
    };
    if a.check {
        return config_ok("push");
    }
    init_tracing(&c.config);
    let rt = match crate::common::runtime(true) {
        Ok(rt) => rt,
        Err(code) => return code,
    };
    rt.block_on(serve(a, c))
}

async fn serve(a: crate::PushArgs, c: Checked) -> ExitCode {
    let listener = match tokio::net::TcpListener::bind(a.metrics_listen).await {
        Ok(l) => l,
        Err(e) => return usage_error(format!("cannot listen on {}: {e}", a.metrics_listen)),
    };
    let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
        Ok(t) => t,
        Err(e) => return usage_error(format!("cannot install signal handlers: {e}")),
    };
    let stop = CancellationToken::new();
    let signal_stop = stop.clone();
    tokio::spawn(async move {
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = term.recv() => {}
        }
        signal_stop.cancel();
    });
    let metrics = Arc::new(Metrics::default());
    // The bound address (`--metrics-listen 127.0.0.1:0` picks a port).
    let bound = listener.local_addr().map_or_else(|_| a.metrics_listen.to_string(), |x| x.to_string());
    let server = tokio::spawn(herald_push::metrics::serve(listener, metrics.clone(), stop.clone()));
    println!("herald push listening on http://{bound}");
    let holder = a.name.clone().unwrap_or_else(|| format!("push-{:06x}", rand::random::<u32>() & 0xff_ffff));
    let Some(bus) = connect_bus(&c, &stop).await else { return ExitCode::SUCCESS };
    let p = &c.config.presence;
    let opts = RedisPresenceOptions { url: p.url.clone(), prefix: p.prefix.clone(), ttl: Duration::from_secs(p.ttl_secs), login: c.login.clone() };
    let presence = match RedisPresence::start(opts, &holder).await {
        Ok(p) => Arc::new(p),
        Err(e) => return usage_error(format!("presence.url: {e}")),
    };
    let conn = match herald_push::store::connect(&p.url, &c.login) {
        Ok(conn) => conn,
        Err(e) => return usage_error(format!("presence.url: {e}")),
    };
    let push = &c.config.push;
    let deps = PushDeps {
        store: RedisStore::new(conn.clone(), &push.prefix, &c.region, &bus.epoch(), push.dead_letter_max),
        registry: Arc::new(RedisRegistry::new(conn, &push.prefix)),
        bus,
        presence,
        sender: Arc::new(Sender::new(c.providers, SendLimits::from_config(push))),
        rules: Rules::new(push.channels.clone()),
        metrics,
        settings: WorkerSettings::from_config(push, holder),
    };
    herald_push::run(deps, stop.clone()).await;
    server.abort();
    ExitCode::SUCCESS
}

/// The region's Kafka bus, retried until it answers or a signal arrives (`None`).
async fn connect_bus(c: &Checked, stop: &CancellationToken) -> Option<Arc<dyn Bus>> {
    let mut k = KafkaBusConfig::new(c.brokers.clone(), c.region.clone());
    if !c.config.bus.topic.is_empty() {
        k.topic = c.config.bus.topic.clone();
    }
    k.partitions = c.config.bus.partitions;
    k.replication = c.config.bus.replication;
    k.gap_confirm = Duration::from_millis(c.config.bus.gap_confirm_ms);
    k.properties = c.kafka.clone();
    let mut backoff = Duration::from_millis(200);
    loop {
        match KafkaBus::connect(k.clone()).await {
            Ok(bus) => return Some(Arc::new(bus)),
            Err(e) => tracing::error!(error = %e, retry_in_ms = backoff.as_millis() as u64, "push: kafka unavailable; retrying"),
        }
        tokio::select! {
            _ = stop.cancelled() => return None,
            _ = tokio::time::sleep(backoff) => {}
        }
        backoff = (backoff * 2).min(Duration::from_secs(10));
    }
}
