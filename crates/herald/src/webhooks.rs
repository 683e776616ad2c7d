//! `herald webhooks`: reads the region's presence feed topic and posts its events to the
//! `[[webhooks.endpoints]]` (docs/backends.md), with `/metrics` and `/healthz` on its own small
//! HTTP server. Run two per region: one delivers, the other stands by.

use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

use herald_bus_kafka::KafkaBusConfig;
use herald_config::Config;
use herald_webhooks::{Endpoint, Metrics, Settings};

use crate::common::{config_ok, init_tracing, redis_login, usage_error};

/// `herald webhooks`.
#[derive(clap::Args)]
pub struct WebhooksArgs {
    /// Config file: `[webhooks]`, and the region's `[bus]`, `[kafka]`, `[presence]` and
    /// `edge.region` (the edges' file works as is). HERALD_* variables override it.
    #[arg(long)]
    pub config: Option<std::path::PathBuf>,
    /// The region (default: `edge.region`).
    #[arg(long, value_parser = crate::common::region_arg)]
    pub region: Option<herald_core::RegionName>,
    /// Where to serve `/metrics` and `/healthz`.
    #[arg(long, default_value = "0.0.0.0:9402")]
    pub metrics_listen: std::net::SocketAddr,
    /// Check the configuration (secrets and CA files read, nothing connects) and exit: 0 when
    /// valid, 64 naming the problem.
    #[arg(long)]
    pub check: bool,
}

/// Reads and checks everything `herald webhooks` needs, without connecting.
fn settings(a: &WebhooksArgs) -> Result<(Config, Settings), String> {
    let env = |k: &str| std::env::var(k).ok();
    let mut config = match &a.config {
        Some(p) => Config::from_file(p).map_err(|e| e.to_string())?,
        None => Config::default(),
    };
    config.apply_env(env).map_err(|e| e.to_string())?;
    if let Some(r) = &a.region {
        config.edge.region = r.clone();
    }
    config.validate().map_err(|e| e.to_string())?;
    let w = &config.webhooks;
    if w.endpoints.is_empty() {
        return Err("webhooks.endpoints: no endpoint is configured ([[webhooks.endpoints]])".into());
    }
    let brokers = config.bus.kafka_brokers().ok_or("bus.url: herald webhooks reads the presence feed topic, so it needs a kafka:// bus")?;
    if config.presence.url == "memory" {
        return Err("presence.url: herald webhooks keeps its lease and positions in the region's Redis; it needs a redis:// URL".into());
    }
    let login = redis_login(config.presence.login(env).map_err(|e| e.to_string())?);
    let redis = herald_presence_redis::client(&config.presence.url, &login).map_err(|e| format!("presence: {e}"))?;
    let endpoints = w.endpoints.iter().map(|e| Endpoint::from_config(e, env)).collect::<Result<Vec<_>, _>>().map_err(|e| e.to_string())?;
    let region = config.edge.region.clone();
    let records = if config.bus.topic.is_empty() { KafkaBusConfig::new(brokers.clone(), region.clone()).topic } else { config.bus.topic.clone() };
    let settings = Settings {
        region,
        kafka_properties: config.kafka.client_properties(env).map_err(|e| e.to_string())?,
        brokers,
        topic: format!("{records}.presence"),
        dead_letter_topic: w.dead_letter_topic.clone().unwrap_or_else(|| format!("{records}.presence.dead-letter")),
        partitions: config.bus.partitions,
        replication: config.bus.replication,
        gap_confirm: Duration::from_millis(config.bus.gap_confirm_ms),
        redis,
        prefix: config.presence.prefix.clone(),
        lease_ttl: Duration::from_millis(w.lease_ttl_ms),
        endpoints,
    };
    Ok((config, settings))
}

/// `herald webhooks`.
pub fn run(a: WebhooksArgs) -> ExitCode {
    let (config, settings) = match settings(&a) {
        Ok(s) => s,
        Err(e) => return usage_error(e),
    };
    if a.check {
        return config_ok("webhooks");
    }
    init_tracing(&config);
    let rt = match crate::common::runtime(true) {
        Ok(rt) => rt,
        Err(code) => return code,
    };
    rt.block_on(async move {
        let listener = match tokio::net::TcpListener::bind(a.metrics_listen).await {
            Ok(l) => l,
            Err(e) => return usage_error(format!("cannot listen on {}: {e}", a.metrics_listen)),
        };
        use tokio::signal::unix::{SignalKind, signal};
        let (mut term, mut int) = match (signal(SignalKind::terminate()), signal(SignalKind::interrupt())) {
            (Ok(t), Ok(i)) => (t, i),
            _ => return usage_error("cannot install signal handlers"),
        };
        let metrics = Arc::new(Metrics::default());
        let stop = CancellationToken::new();
        println!("herald webhooks listening on http://{}", listener.local_addr().map(|x| x.to_string()).unwrap_or_default());
        let server = tokio::spawn(crate::common::serve_metrics(listener, { let metrics = metrics.clone(); move || metrics.render() }));
        let delivery = tokio::spawn(herald_webhooks::run(settings, metrics, stop.clone()));
        tokio::select! {
            _ = term.recv() => {}
            _ = int.recv() => {}
        }
        // Both signals stop the same way: the batch in flight is abandoned (it is sent again by
        // whoever delivers next), and the lease is given up for the standby.
        stop.cancel();
        let result = delivery.await;
        server.abort();
        match result {
            Ok(Ok(())) => ExitCode::SUCCESS,
            Ok(Err(e)) => {
                eprintln!("herald: {e}");
                ExitCode::FAILURE
            }
            Err(e) => {
                eprintln!("herald: {e}");
                ExitCode::FAILURE
            }
        }
    })
}
