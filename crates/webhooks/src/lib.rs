//! `herald webhooks`: the region's connection, presence and refused-publish events, POSTed to
//! backends' HTTP endpoints: batched, HMAC-signed, retried with backoff, each with a stable id.
//!
//! Backends want to hear when a user connects, leaves an incident's channel or loses their
//! connection, without reading Kafka. The source of truth is the region's presence feed topic
//! (`<records topic>.presence`, written by every edge through `herald_core::PresenceFeed`, and by
//! whichever edge removes a dead one), so every event is emitted once per region, survives the
//! edge it happened on, and has a position a delivery can resume from. One instance per region
//! delivers (a lease in Redis; others stand by and take over); each endpoint has its own stored
//! position, moved only after the endpoint answered 2xx, so a receiver that was down gets every
//! event after it returns, in order. The contract for receivers is docs/backends.md.
//!
//! # Layout
//! - [`event`]: feed records → [`Event`]s with stable ids; the event types.
//! - [`signature`]: the `Herald-Signature` header, signing and verifying (for Rust receivers too).
//! - [`client`]: HTTP/1.1 (and HTTPS) POSTs to one endpoint.
//! - `feed` (private): the feed topic read in order, without holes, from given positions.
//! - `store` (private): the lease and the positions in Redis.
//! - `endpoint` (private): one endpoint's loop: batch, sign, post, retry, dead-letter, store.
//! - [`metrics`]: the Prometheus registry.
//! - this file: [`Settings`] (from `[webhooks]` and the region's bus and presence settings) and
//!   [`run`], the lease loop.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod client;
mod endpoint;
pub mod event;
mod feed;
pub mod metrics;
pub mod signature;
mod store;

pub use endpoint::Endpoint;
pub use event::{Event, EventType};
pub use metrics::Metrics;
pub use store::StoreError;

use rdkafka::consumer::BaseConsumer;
use rdkafka::producer::FutureProducer;
use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

use herald_config::WebhookEndpointConfig;
use herald_core::RegionName;

/// Why `herald webhooks` cannot go on (its loops log and retry everything else).
#[derive(Debug, thiserror::Error)]
pub enum WebhookError {
    /// Kafka refused or cannot be reached.
    #[error("kafka: {0}")]
    Kafka(#[from] rdkafka::error::KafkaError),
    /// The feed or dead-letter topic could not be created.
    #[error("{0}")]
    Bus(#[from] herald_core::BusError),
    /// Redis refused or cannot be reached.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// Another instance holds the lease now.
    #[error("the lease is held by another instance")]
    LeaseLost,
}

/// An endpoint's settings that cannot be used: a secret or a CA file that cannot be read, a URL
/// that does not parse.
#[derive(Debug, thiserror::Error)]
pub enum EndpointError {
    /// The URL or the CA file.
    #[error(transparent)]
    Target(#[from] client::TargetError),
    /// A secret.
    #[error(transparent)]
    Secret(#[from] herald_config::ConfigError),
}

impl Endpoint {
    /// The endpoint `c` describes, its secrets read now (through `env` for `env:NAME`).
    pub fn from_config(c: &WebhookEndpointConfig, env: impl Fn(&str) -> Option<String>) -> Result<Self, EndpointError> {
        let secrets = c.read_secrets(env)?;
        let target = client::target(&c.name, &c.url, c.ca_file.as_deref())?;
        let events: HashSet<EventType> = c.events.iter().filter_map(|t| EventType::parse(t)).collect();
        Ok(Self {
            name: c.name.clone(),
            target: Arc::new(target),
            events: (!events.is_empty()).then_some(events),
            accounts: (!c.accounts.is_empty()).then(|| c.accounts.iter().map(|a| a.as_str().to_owned()).collect()),
            batch_size: c.batch_size,
            linger: Duration::from_millis(c.linger_ms),
            retry_for: Duration::from_secs(c.retry_for_secs),
            max_backoff: Duration::from_millis(c.max_backoff_ms),
            timeout: Duration::from_millis(c.timeout_ms),
            secrets: Arc::new(secrets),
        })
    }
}

/// Everything `herald webhooks` runs with.
pub struct Settings {
    /// The region (the first part of every event id).
    pub region: RegionName,
    /// Kafka bootstrap servers.
    pub brokers: String,
    /// librdkafka properties (TLS, SASL), secrets read.
    pub kafka_properties: Vec<(String, String)>,
    /// The feed topic, `<records topic>.presence`.
    pub topic: String,
    /// Where events that outlived `retry_for` go.
    pub dead_letter_topic: String,
    /// Partitions and replication to create missing topics with (the bus's).
    pub partitions: u32,
    /// Replication factor of created topics.
    pub replication: i32,
    /// How long a hole in the feed topic may stay before it is skipped (`bus.gap_confirm_ms`).
    pub gap_confirm: Duration,
    /// The region's Redis (the presence store), for the lease and the positions.
    pub redis: redis::Client,
    /// Key prefix in Redis (the presence prefix).
    pub prefix: String,
    /// The lease's time to live.
    pub lease_ttl: Duration,
    /// The endpoints.
    pub endpoints: Vec<Endpoint>,
}

/// What every endpoint's loop shares.
struct Shared {
    region: RegionName,
    brokers: String,
    kafka_properties: Vec<(String, String)>,
    topic: String,
    dead_letter_topic: String,
    gap_confirm: Duration,
    store: store::Store,
    meta: Arc<BaseConsumer>,
    producer: FutureProducer,
    metrics: Arc<Metrics>,
}

/// Runs until `stop`: waits for the lease, delivers to every endpoint while holding it, stands by
/// again if it is lost; on `stop`, gives the lease up so that a standby takes over at once.
pub async fn run(settings: Settings, metrics: Arc<Metrics>, stop: CancellationToken) -> Result<(), WebhookError> {
    let conn = herald_presence_redis::lazy_manager(settings.redis.clone(), Duration::from_secs(2)).map_err(StoreError::from)?;
    let holder = format!("{:016x}", rand::random::<u64>());
    let store = store::Store::new(conn, &settings.prefix, holder.clone());
    let (brokers, props) = (&settings.brokers, &settings.kafka_properties);
    // The edges create the feed topic too; whoever is first. Retried until Kafka answers.
    let mut pause = Duration::from_millis(200);
    loop {
        let created = async {
            herald_bus_kafka::create_topic_if_missing(brokers, props, &settings.topic, settings.partitions, settings.replication).await?;
            herald_bus_kafka::create_topic_if_missing(brokers, props, &settings.dead_letter_topic, settings.partitions, settings.replication).await
        };
        match created.await {
            Ok(()) => break,
            Err(e) => tracing::warn!(error = %e, retry_in_ms = pause.as_millis() as u64, "webhooks: kafka unavailable; retrying"),
        }
        tokio::select! {
            _ = stop.cancelled() => return Ok(()),
            _ = tokio::time::sleep(pause) => {}
        }
        pause = (pause * 2).min(Duration::from_secs(10));
    }
    let shared = Arc::new(Shared {
        region: settings.region,
        meta: Arc::new(herald_bus_kafka::client_config(brokers, props).set("group.id", "herald-webhooks").create()?),
        producer: herald_bus_kafka::client_config(brokers, props).set("linger.ms", "5").create()?,
        brokers: settings.brokers.clone(),
        kafka_properties: settings.kafka_properties.clone(),
        topic: settings.topic,
        dead_letter_topic: settings.dead_letter_topic,
        gap_confirm: settings.gap_confirm,
        store,
        metrics,
    });
    let ttl = settings.lease_ttl;
    loop {
        // Standing by: ask for the lease every third of its TTL.
        loop {
            match shared.store.try_acquire(ttl).await {
                Ok(true) => break,
                Ok(false) => {}
                Err(e) => tracing::warn!(error = %e, "webhooks: cannot reach Redis for the lease"),
            }
            tokio::select! {
                _ = stop.cancelled() => return Ok(()),
                _ = tokio::time::sleep(ttl / 3) => {}
            }
        }
        tracing::info!(instance = %holder, "webhooks: holding the lease; delivering");
        shared.metrics.leader.set(1.0);
        let active = stop.child_token();
        let tasks: Vec<_> = settings.endpoints.iter().map(|ep| tokio::spawn(endpoint::run(ep.clone(), shared.clone(), active.clone()))).collect();
        let lease = tokio::spawn(keep_lease(shared.store.clone(), ttl, active.clone()));
        active.cancelled().await;
        for t in tasks {
            let _ = t.await;
        }
        let _ = lease.await;
        shared.metrics.leader.set(0.0);
        if stop.is_cancelled() {
            if let Err(e) = shared.store.release().await {
                tracing::warn!(error = %e, "webhooks: could not give the lease up; a standby takes over when it expires");
            }
            return Ok(());
        }
        tracing::warn!("webhooks: lost the lease; standing by");
    }
}

/// Renews the lease every third of its TTL; cancels `active` when it is lost, or when no renewal
/// succeeded for a whole TTL (another instance may hold it by then).
async fn keep_lease(store: store::Store, ttl: Duration, active: CancellationToken) {
    let mut last_ok = tokio::time::Instant::now();
    loop {
        tokio::select! {
            _ = active.cancelled() => return,
            _ = tokio::time::sleep(ttl / 3) => {}
        }
        match store.renew(ttl).await {
            Ok(true) => last_ok = tokio::time::Instant::now(),
            Ok(false) => {
                tracing::warn!("webhooks: another instance holds the lease");
                active.cancel();
                return;
            }
            Err(e) if last_ok.elapsed() >= ttl => {
                tracing::warn!(error = %e, "webhooks: the lease could not be renewed for its whole TTL; stopping delivery");
                active.cancel();
                return;
            }
            Err(e) => tracing::warn!(error = %e, "webhooks: renewing the lease failed; retrying"),
        }
    }
}
