//! Presence changes as Kafka records, so that backends can react to connects and disconnects.
//!
//! One record per change on `<records topic>.presence` (by default `herald.<region>.presence`),
//! keyed by account (one account's changes stay in order), value:
//! `{"type":"join"|"leave","account":…,"channel":…,"connection_id":…,"user":…,"node":…,"region":…,"at_ms":…}`.
//! Delivery is at least once while the broker is reachable; while it is not, librdkafka buffers
//! up to `message.timeout.ms` (30 s) and then the change is dropped with a warning and counted:
//! presence is a live signal, not a record of truth (the Redis store is).

use rdkafka::admin::AdminClient;
use rdkafka::client::DefaultClientContext;
use rdkafka::producer::{FutureProducer, FutureRecord};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use herald_core::{BusError, PresenceChange, PresenceEvent, PresenceFeed, RegionName};

use crate::{client_config, create_topic, unavailable};

/// Produces presence changes to a topic.
pub struct KafkaPresenceFeed {
    producer: FutureProducer,
    topic: String,
    region: RegionName,
    dropped: Arc<AtomicU64>,
}

impl KafkaPresenceFeed {
    /// Connects and creates `topic` when missing.
    pub async fn connect(brokers: &str, properties: &[(String, String)], topic: &str, region: RegionName, partitions: u32, replication: i32) -> Result<Self, BusError> {
        let timeout = Duration::from_secs(10);
        let producer: FutureProducer = client_config(brokers, properties).set("linger.ms", "5").set("message.timeout.ms", "30000").create().map_err(unavailable)?;
        let admin: AdminClient<DefaultClientContext> = client_config(brokers, properties).create().map_err(unavailable)?;
        create_topic(&admin, topic, partitions as i32, replication, &[], timeout).await?;
        Ok(Self { producer, topic: topic.to_owned(), region, dropped: Arc::new(AtomicU64::new(0)) })
    }

    /// Changes that could not be delivered.
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }
}

impl PresenceFeed for KafkaPresenceFeed {
    fn publish(&self, node: &str, event: &PresenceEvent) {
        let account = event.channel.account.as_str().to_owned();
        let value = serde_json::json!({
            "type": match event.change { PresenceChange::Join => "join", PresenceChange::Leave => "leave" },
            "account": account,
            "channel": event.channel.channel.as_str(),
            "connection_id": event.member.connection_id,
            "user": event.member.user,
            "node": node,
            "region": self.region.as_str(),
            "at_ms": herald_core::now_ms(),
        })
        .to_string();
        let record = FutureRecord::to(&self.topic).key(&account).payload(&value);
        // Enqueued now (never blocks the caller); delivery is awaited in the background.
        match self.producer.send_result(record) {
            Ok(delivery) => {
                let dropped = self.dropped.clone();
                tokio::spawn(async move {
                    if let Ok(Err((e, _))) = delivery.await {
                        dropped.fetch_add(1, Ordering::Relaxed);
                        tracing::warn!(error = %e, "presence feed: a change could not be delivered to Kafka; dropped");
                    }
                });
            }
            Err((e, _)) => {
                self.dropped.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(error = %e, "presence feed: the Kafka producer queue is full; change dropped");
            }
        }
    }
}
