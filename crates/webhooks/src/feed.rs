//! Reading the region's feed topic from given positions, every partition by explicit assignment
//! (no consumer group), in offset order per partition and without holes.
//!
//! Every edge writes to the feed topic, and a broker may show a later write before an earlier
//! one (docs/kafka.md, issue 23): a reader that took offset `n + 1` while `n` was not visible
//! yet would never deliver `n`. So, like the bus's `GaplessReader`, an offset jump sends the
//! reader back to the first missing offset until the hole fills; a hole that stays
//! `confirm_after` is skipped, logged and counted.

use rdkafka::consumer::{BaseConsumer, Consumer, StreamConsumer};
use rdkafka::error::KafkaError;
use rdkafka::message::Message;
use rdkafka::util::Timeout;
use rdkafka::{Offset, TopicPartitionList};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// One record of the topic.
pub struct FeedRecord {
    /// Its partition.
    pub partition: i32,
    /// Its offset.
    pub offset: i64,
    /// Its value.
    pub payload: Vec<u8>,
}

/// What [`FeedReader::next`] found.
pub enum Next {
    /// The next record of a partition.
    Record(FeedRecord),
    /// A hole of partition `.0` stayed; the reader moved past it to offset `.1`.
    Gap(i32, i64),
    /// Nothing within the wait.
    Idle,
}

/// A reader of every partition of one topic.
pub struct FeedReader {
    consumer: StreamConsumer,
    topic: String,
    /// Partition → the next offset to return.
    next: HashMap<i32, i64>,
    /// Partition → when its current hole was first seen.
    holes: HashMap<i32, Instant>,
    confirm_after: Duration,
}

/// The topic's partition count and each partition's `(low, high)` watermarks.
pub async fn watermarks(meta: &Arc<BaseConsumer>, topic: &str) -> Result<Vec<(i64, i64)>, KafkaError> {
    let (meta, topic) = (meta.clone(), topic.to_owned());
    tokio::task::spawn_blocking(move || {
        let md = meta.fetch_metadata(Some(&topic), Timeout::After(Duration::from_secs(5)))?;
        let n = md.topics().iter().find(|t| t.name() == topic).map_or(0, |t| t.partitions().len());
        if n == 0 {
            return Err(KafkaError::MetadataFetch(rdkafka::types::RDKafkaErrorCode::UnknownTopicOrPartition));
        }
        (0..n as i32).map(|p| meta.fetch_watermarks(&topic, p, Timeout::After(Duration::from_secs(5)))).collect()
    })
    .await
    .unwrap_or(Err(KafkaError::Canceled))
}

impl FeedReader {
    /// A reader of `topic` from `positions` (partition → next offset; every partition).
    pub fn open(brokers: &str, properties: &[(String, String)], topic: &str, positions: HashMap<i32, i64>, confirm_after: Duration) -> Result<Self, KafkaError> {
        let consumer: StreamConsumer = herald_bus_kafka::client_config(brokers, properties)
            .set("group.id", "herald-webhooks")
            .set("enable.auto.commit", "false")
            .set("enable.auto.offset.store", "false")
            // A position older than the retention (the endpoint was away longer): start at the
            // oldest record; the jump is then a confirmed gap, logged and counted.
            .set("auto.offset.reset", "earliest")
            .set("fetch.wait.max.ms", "50")
            .set("queued.max.messages.kbytes", "4096")
            .create()?;
        let r = Self { consumer, topic: topic.to_owned(), next: positions, holes: HashMap::new(), confirm_after };
        r.assign()?;
        Ok(r)
    }

    fn assign(&self) -> Result<(), KafkaError> {
        let mut tpl = TopicPartitionList::new();
        for (p, o) in &self.next {
            tpl.add_partition_offset(&self.topic, *p, Offset::Offset(*o))?;
        }
        self.consumer.assign(&tpl)
    }

    /// Partition → the next offset to return.
    pub fn positions(&self) -> &HashMap<i32, i64> {
        &self.next
    }

    /// The next record of some partition, waiting at most `wait`.
    pub async fn next(&mut self, wait: Duration) -> Result<Next, KafkaError> {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            let m = match tokio::time::timeout_at(deadline, self.consumer.recv()).await {
                Err(_) => return Ok(Next::Idle),
                Ok(m) => m?,
            };
            let (p, offset) = (m.partition(), m.offset());
            let Some(&want) = self.next.get(&p) else { continue };
            if offset < want {
                continue; // a re-delivery from before a re-assignment
            }
            if offset > want {
                let since = *self.holes.entry(p).or_insert_with(Instant::now);
                if since.elapsed() < self.confirm_after {
                    // Not visible yet: read the partitions again from where they are.
                    drop(m);
                    tokio::time::sleep(Duration::from_millis(20)).await;
                    self.assign()?;
                    continue;
                }
                self.holes.remove(&p);
                self.next.insert(p, offset);
                // This record was taken: read it again, as the next one.
                drop(m);
                self.assign()?;
                return Ok(Next::Gap(p, offset));
            }
            self.holes.remove(&p);
            self.next.insert(p, offset + 1);
            return Ok(Next::Record(FeedRecord { partition: p, offset, payload: m.payload().unwrap_or_default().to_vec() }));
        }
    }
}
