//! Presence changes as Kafka records, so that backends can react to connects and disconnects
//! (`herald webhooks` turns them into webhook events; docs/backends.md).
//!
//! One record per [`FeedEvent`] on `<records topic>.presence` (by default
//! `herald.<region>.presence`), keyed by account (one account's changes stay in order), value
//! one of (every record also has `"account"`, `"node"`, `"region"` and `"at_ms"`):
//! - `{"type":"join"|"leave","channel":…,"connection_id":…,"user":…,"occupancy":N}`, `occupancy`
//!   the channel's member count right after the change;
//! - `{"type":"connection_opened","connection_id":…,"user":…,"transport":"websocket"|"sse"}`;
//! - `{"type":"connection_closed","connection_id":…,"user":…,"transport":…,"reason":…}`;
//! - `{"type":"publish_rejected","channel":…|null,"code":…}`.
//!
//! Delivery is at least once while the broker is reachable; while it is not, librdkafka buffers
//! up to `message.timeout.ms` (30 s) and then the change is dropped with a warning and counted:
//! presence is a live signal, not a record of truth (the Redis store is).

use rdkafka::admin::AdminClient;
use rdkafka::client::DefaultClientContext;
use rdkafka::producer::{FutureProducer, FutureRecord};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use herald_core::{BusError, FeedEvent, PresenceChange, PresenceFeed, RegionName};

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
    fn publish(&self, node: &str, event: &FeedEvent) {
        let account = event.account().as_str().to_owned();
        let value = record_value(event, node, &self.region, herald_core::now_ms()).to_string();
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

/// Creates `topic` with `partitions` when it is missing (an existing one is left as it is): the
/// feed topic for a reader that may start before any edge, and `herald webhooks`' dead-letter
/// topic.
pub async fn create_topic_if_missing(brokers: &str, properties: &[(String, String)], topic: &str, partitions: u32, replication: i32) -> Result<(), BusError> {
    let admin: AdminClient<DefaultClientContext> = client_config(brokers, properties).create().map_err(unavailable)?;
    create_topic(&admin, topic, partitions as i32, replication, &[], Duration::from_secs(10)).await
}

/// The JSON value of one feed record.
pub fn record_value(event: &FeedEvent, node: &str, region: &RegionName, at_ms: u64) -> serde_json::Value {
    let mut v = match event {
        FeedEvent::Presence { event, occupancy } => {
            let mut v = serde_json::json!({
                "type": match event.change { PresenceChange::Join => "join", PresenceChange::Leave => "leave" },
                "channel": event.channel.channel.as_str(),
                "connection_id": event.member.connection_id,
                "user": event.member.user,
                "occupancy": occupancy,
            });
            if let Some(info) = &event.member.info {
                v["info"] = serde_json::to_value(info).expect("user info is a JSON object");
            }
            v
        }
        FeedEvent::ConnectionOpened(c) => serde_json::json!({
            "type": "connection_opened",
            "connection_id": c.connection_id,
            "user": c.user,
            "transport": c.transport,
        }),
        FeedEvent::ConnectionClosed { connection: c, reason } => serde_json::json!({
            "type": "connection_closed",
            "connection_id": c.connection_id,
            "user": c.user,
            "transport": c.transport,
            "reason": reason,
        }),
        FeedEvent::PublishRejected { channel, code, .. } => serde_json::json!({
            "type": "publish_rejected",
            "channel": channel.as_ref().map(|c| c.as_str()),
            "code": code,
        }),
    };
    let o = v.as_object_mut().expect("an object");
    o.insert("account".into(), event.account().as_str().into());
    o.insert("node".into(), node.into());
    o.insert("region".into(), region.as_str().into());
    o.insert("at_ms".into(), at_ms.into());
    v
}
