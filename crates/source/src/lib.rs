//! Sources: existing Kafka topics that backends already write, turned into Herald records by
//! declarative rules (the incident-management case: drop the entity types phones do not want,
//! shorten each record to a thin event, route it to its account's channel).
//!
//! # Layout
//! - [`rules`]: compiling a `[[sources]]` entry and applying it to one record.
//! - [`Source`]: the consumer loop. It reads the topic in a consumer group (several nodes share
//!   the work), appends each result to the [`Bus`], and only then marks the record done, so a
//!   restart neither loses records nor repeats them: offsets are committed after the append, and
//!   a record appended twice after a crash carries the same idempotency key (one message id).
//!   A malformed record is counted, logged without its payload, and copied to the dead-letter
//!   topic with the reason in headers; it never stops the source.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod rules;

use rdkafka::config::ClientConfig;
use rdkafka::consumer::{CommitMode, Consumer, StreamConsumer};
use rdkafka::message::{BorrowedMessage, Header, Headers, Message, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::util::Timeout;
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

use herald_config::SourceConfig;
use herald_core::{Bus, BusError, NewRecord, now_ms};

pub use rules::{Malformed, Outcome, RuleError, Rules};

/// Counters a source reports (registered by the caller on its metrics registry).
#[derive(Clone)]
pub struct SourceCounters {
    /// Records turned into Herald records.
    pub published: metrics::Counter,
    /// Records a drop rule removed.
    pub dropped: metrics::Counter,
    /// Malformed records (sent to the dead-letter topic when one is configured).
    pub dead_lettered: metrics::Counter,
}

impl SourceCounters {
    /// Counters that count nothing (tests).
    pub fn noop() -> Self {
        Self { published: metrics::Counter::noop(), dropped: metrics::Counter::noop(), dead_lettered: metrics::Counter::noop() }
    }
}

/// Why a source could not start.
#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    /// The rules do not compile.
    #[error(transparent)]
    Rules(#[from] RuleError),
    /// Kafka refused the client configuration.
    #[error("source {0}: kafka: {1}")]
    Kafka(String, String),
}

/// One running source.
pub struct Source {
    name: String,
    topic: String,
    rules: Rules,
    consumer: StreamConsumer,
    dead_letter: Option<(String, FutureProducer)>,
    bus: Arc<dyn Bus>,
    counters: SourceCounters,
}

impl Source {
    /// Compiles the rules and subscribes to the topic. `brokers` is `host:port[,…]`;
    /// `properties` are the cluster's client properties (TLS, SASL) from `[kafka]`.
    pub fn new(config: &SourceConfig, brokers: &str, properties: &[(String, String)], bus: Arc<dyn Bus>, counters: SourceCounters) -> Result<Self, SourceError> {
        let rules = Rules::compile(config)?;
        let kafka = |e: rdkafka::error::KafkaError| SourceError::Kafka(config.name.clone(), e.to_string());
        let group = config.group.clone().unwrap_or_else(|| format!("herald-source-{}", config.name));
        let with = |mut c: ClientConfig| {
            for (k, v) in properties {
                c.set(k, v);
            }
            c
        };
        let consumer: StreamConsumer = with(ClientConfig::new())
            .set("bootstrap.servers", brokers)
            .set("group.id", &group)
            .set("enable.auto.commit", "true")
            .set("auto.commit.interval.ms", "500")
            // Offsets are stored only once a record is fully handled.
            .set("enable.auto.offset.store", "false")
            .set("auto.offset.reset", "earliest")
            // A restarted node rejoins within seconds even if its old member never said goodbye.
            .set("session.timeout.ms", "10000")
            .set("heartbeat.interval.ms", "1000")
            .set("log_level", "3")
            .create()
            .map_err(kafka)?;
        consumer.subscribe(&[&config.topic]).map_err(kafka)?;
        let dead_letter = match &config.dead_letter_topic {
            Some(t) => {
                let p: FutureProducer = with(ClientConfig::new()).set("bootstrap.servers", brokers).set("acks", "all").set("log_level", "3").create().map_err(kafka)?;
                Some((t.clone(), p))
            }
            None => None,
        };
        Ok(Self { name: config.name.clone(), topic: config.topic.clone(), rules, consumer, dead_letter, bus, counters })
    }

    /// Runs until `stop`, then commits what was handled.
    pub async fn run(self, stop: CancellationToken) {
        tracing::info!(source = %self.name, topic = %self.topic, "source running");
        loop {
            let msg = tokio::select! {
                _ = stop.cancelled() => break,
                m = self.consumer.recv() => m,
            };
            match msg {
                Ok(m) => {
                    if !self.handle(&m, &stop).await {
                        break;
                    }
                    if let Err(e) = self.consumer.store_offset_from_message(&m) {
                        tracing::warn!(source = %self.name, error = %e, "could not store the offset");
                    }
                }
                Err(e) => {
                    tracing::warn!(source = %self.name, error = %e, "source read failed; retrying");
                    tokio::select! {
                        _ = stop.cancelled() => break,
                        _ = tokio::time::sleep(Duration::from_millis(500)) => {}
                    }
                }
            }
        }
        if let Err(e) = self.consumer.commit_consumer_state(CommitMode::Sync) {
            // Nothing stored yet is not an error worth more than a note.
            tracing::debug!(source = %self.name, error = %e, "final commit");
        }
        tracing::info!(source = %self.name, "source stopped");
    }

    /// Handles one record; false when stopped before it was handled (its offset is not stored).
    async fn handle(&self, m: &BorrowedMessage<'_>, stop: &CancellationToken) -> bool {
        let headers = m.headers();
        let header = |name: &str| -> Option<&str> {
            headers.and_then(|hs| hs.iter().find(|h| h.key == name)).and_then(|h| h.value).and_then(|v| std::str::from_utf8(v).ok())
        };
        let outcome = self.rules.apply(m.payload().unwrap_or(b""), header);
        match outcome {
            Ok(Outcome::Dropped) => {
                self.counters.dropped.increment(1);
                true
            }
            Ok(Outcome::Publish(account, channel, data)) => {
                let record = NewRecord {
                    account,
                    channel,
                    data,
                    // The same source record always has the same key: a repeat after a crash is
                    // the same message.
                    idempotency_key: Some(format!("src:{}:{}:{}:{}", self.name, m.topic(), m.partition(), m.offset())),
                    published_at_ms: now_ms(),
                    trace: None,
                };
                let mut backoff = Duration::from_millis(100);
                loop {
                    match self.bus.append(vec![record.clone()]).await {
                        Ok(_) => {
                            self.counters.published.increment(1);
                            return true;
                        }
                        Err(BusError::Unavailable(e)) => {
                            tracing::warn!(source = %self.name, error = %e, "bus unavailable; holding the source");
                            tokio::select! {
                                _ = stop.cancelled() => return false,
                                _ = tokio::time::sleep(backoff) => {}
                            }
                            backoff = (backoff * 2).min(Duration::from_secs(5));
                        }
                        Err(e) => {
                            tracing::error!(source = %self.name, error = %e, "bus refused a record");
                            self.dead_letter(m, &e.to_string()).await;
                            return true;
                        }
                    }
                }
            }
            Err(reason) => {
                self.dead_letter(m, &reason.to_string()).await;
                true
            }
        }
    }

    async fn dead_letter(&self, m: &BorrowedMessage<'_>, reason: &str) {
        self.counters.dead_lettered.increment(1);
        // Never the payload in logs: it may hold personal data.
        tracing::warn!(source = %self.name, topic = m.topic(), partition = m.partition(), offset = m.offset(), %reason, "malformed record");
        let Some((topic, producer)) = &self.dead_letter else { return };
        let partition = m.partition().to_string();
        let offset = m.offset().to_string();
        let mut headers = OwnedHeaders::new()
            .insert(Header { key: "herald-dlq-reason", value: Some(reason) })
            .insert(Header { key: "herald-dlq-source", value: Some(self.name.as_str()) })
            .insert(Header { key: "herald-dlq-topic", value: Some(m.topic()) })
            .insert(Header { key: "herald-dlq-partition", value: Some(partition.as_str()) })
            .insert(Header { key: "herald-dlq-offset", value: Some(offset.as_str()) });
        if let Some(hs) = m.headers() {
            for h in hs.iter() {
                headers = headers.insert(h);
            }
        }
        let mut rec = FutureRecord::to(topic).headers(headers);
        if let Some(p) = m.payload() {
            rec = rec.payload(p);
        }
        if let Some(k) = m.key() {
            rec = rec.key(k);
        }
        if let Err((e, _)) = producer.send(rec, Timeout::After(Duration::from_secs(10))).await {
            tracing::error!(source = %self.name, error = %e, "could not write to the dead-letter topic");
        }
    }
}
