//! `herald replicate`: links from other regions' buses (and presence stores) into this region's,
//! with `/metrics` and `/healthz` on its own small HTTP server.

use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

use herald_bus_kafka::KafkaBusConfig;
use herald_config::Config;
use herald_core::RegionName;
use herald_presence_redis::{RedisPresence, RedisPresenceOptions};

use crate::common::{config_ok, init_tracing, redis_login, usage_error};

/// `herald replicate`.
pub fn run(a: crate::ReplicateArgs) -> ExitCode {
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
        let server = tokio::spawn(crate::common::serve_metrics(listener, move || metrics.render()));
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

