//! Reading one partition by explicit assignment.

use futures_util::FutureExt;
use rdkafka::consumer::{BaseConsumer, Consumer, StreamConsumer};
use rdkafka::message::Message;
use rdkafka::util::Timeout;
use rdkafka::{Offset, TopicPartitionList};
use std::sync::Arc;
use std::time::Duration;

use herald_core::bus::{BusError, PartitionReader};
use herald_core::{Record, RegionName};

use crate::{KafkaBusConfig, client_config, envelope, unavailable};

/// `(low, high)` watermarks: the oldest retained offset and the next offset.
pub async fn watermarks(meta: &Arc<BaseConsumer>, topic: &str, partition: u32, timeout: Duration) -> Result<(u64, u64), BusError> {
    let (meta, topic) = (meta.clone(), topic.to_owned());
    tokio::task::spawn_blocking(move || meta.fetch_watermarks(&topic, partition as i32, Timeout::After(timeout)))
        .await
        .map_err(unavailable)?
        .map(|(l, h)| (l.max(0) as u64, h.max(0) as u64))
        .map_err(unavailable)
}

fn consumer(config: &KafkaBusConfig) -> Result<StreamConsumer, BusError> {
    client_config(&config.brokers, &config.properties)
        .set("group.id", "herald-edge")
        .set("enable.auto.commit", "false")
        .set("enable.auto.offset.store", "false")
        .set("auto.offset.reset", "error")
        .set("fetch.wait.max.ms", "10")
        .set("fetch.min.bytes", "1")
        .create()
        .map_err(unavailable)
}

/// The value of the first record of a one-partition topic, if it has any.
pub async fn first_record_value(config: &KafkaBusConfig, topic: &str) -> Result<Option<String>, BusError> {
    let timeout = config.timeout;
    let meta: BaseConsumer = client_config(&config.brokers, &config.properties).set("group.id", "herald-meta").create().map_err(unavailable)?;
    let meta = Arc::new(meta);
    let (low, high) = watermarks(&meta, topic, 0, timeout).await?;
    if high <= low {
        return Ok(None);
    }
    let c = consumer(config)?;
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition_offset(topic, 0, Offset::Offset(low as i64)).map_err(unavailable)?;
    c.assign(&tpl).map_err(unavailable)?;
    let m = tokio::time::timeout(timeout, c.recv()).await.map_err(|_| unavailable("reading the epoch timed out"))?.map_err(unavailable)?;
    Ok(m.payload().and_then(|p| std::str::from_utf8(p).ok()).map(str::to_owned))
}

/// A reader on one partition.
pub struct KafkaReader {
    consumer: StreamConsumer,
    meta: Arc<BaseConsumer>,
    topic: String,
    partition: u32,
    position: u64,
    region: RegionName,
    timeout: Duration,
}

impl KafkaReader {
    pub fn open(config: &KafkaBusConfig, meta: Arc<BaseConsumer>, partition: u32, from: u64) -> Result<Self, BusError> {
        let mut r = Self {
            consumer: consumer(config)?,
            meta,
            topic: config.topic.clone(),
            partition,
            position: from,
            region: config.region.clone(),
            timeout: config.timeout,
        };
        r.assign()?;
        Ok(r)
    }

    fn assign(&mut self) -> Result<(), BusError> {
        let mut tpl = TopicPartitionList::new();
        tpl.add_partition_offset(&self.topic, self.partition as i32, Offset::Offset(self.position as i64)).map_err(unavailable)?;
        self.consumer.assign(&tpl).map_err(unavailable)
    }

    async fn failure(&self, e: rdkafka::error::KafkaError) -> BusError {
        match watermarks(&self.meta, &self.topic, self.partition, self.timeout).await {
            Ok((low, _)) if self.position < low => BusError::Truncated { requested: self.position, low },
            Ok(_) => unavailable(e),
            Err(w) => w,
        }
    }
}

/// Decodes `m` into `out` and advances `position`.
fn take(position: &mut u64, region: &RegionName, topic: &str, partition: u32, m: &rdkafka::message::BorrowedMessage<'_>, out: &mut Vec<Arc<Record>>) {
    let offset = m.offset() as u64;
    if offset < *position {
        return; // a re-delivery from before a seek
    }
    *position = offset + 1;
    match envelope::decode(m, region) {
        Ok(r) => out.push(Arc::new(r)),
        // Something else wrote to Herald's topic: skip it, loudly.
        Err(e) => tracing::warn!(topic, partition, offset, error = %e, "skipping a foreign record"),
    }
}

#[async_trait::async_trait]
impl PartitionReader for KafkaReader {
    async fn next_batch(&mut self, max: usize) -> Result<Vec<Arc<Record>>, BusError> {
        let mut out = Vec::new();
        loop {
            let first = match self.consumer.recv().await {
                Ok(m) => {
                    take(&mut self.position, &self.region, &self.topic, self.partition, &m, &mut out);
                    None
                }
                Err(e) => Some(e),
            };
            if let Some(e) = first {
                return Err(self.failure(e).await);
            }
            // Take what librdkafka has already fetched, without waiting.
            while out.len() < max.max(1) {
                match self.consumer.recv().now_or_never() {
                    Some(Ok(m)) => take(&mut self.position, &self.region, &self.topic, self.partition, &m, &mut out),
                    _ => break,
                }
            }
            if !out.is_empty() {
                return Ok(out);
            }
            // Only re-deliveries or foreign records so far: wait for the next one.
        }
    }

    fn position(&self) -> u64 {
        self.position
    }

    fn seek(&mut self, offset: u64) {
        self.position = offset;
        if let Err(e) = self.assign() {
            tracing::warn!(error = %e, "re-assign after seek failed");
        }
    }
}
