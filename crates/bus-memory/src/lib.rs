//! The in-memory [`Bus`]: a partitioned, append-only log held in one process. It is Herald's
//! embedded default (`herald dev`) and what most tests run on.
//!
//! # Layout
//! One [`MemoryBus`] holds `partitions` logs. Each log is a ring of `Arc<Record>` behind a
//! `parking_lot::RwLock`, a `tokio::sync::watch` that announces the next offset (so readers never
//! miss a wake-up), and an idempotency window (`herald_core::IdempotencyWindow`) of
//! `(account, key) → first record` that forgets keys older than the window. Retention drops the
//! oldest records past `retention_records` or `retention`, checked on every append. The epoch is
//! random per instance: a restarted process is a new log, and its cursors say so.
//!
//! [`MemoryBus`] is also a [`ReplicaLog`]: it takes copies of other regions' records, so the
//! replicator runs between two in-process buses in tests.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

use async_trait::async_trait;
use parking_lot::RwLock;
use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;

use herald_core::bus::{Bus, BusError, PartitionBounds, PartitionReader};
use herald_core::replica::scan_last_origin_offset;
use herald_core::{AccountId, Appended, Epoch, IdempotencyWindow, MessageId, NewRecord, Record, RegionName, ReplicaLog, now_ms};

/// Settings of an in-memory bus.
#[derive(Clone, Debug)]
pub struct MemoryBusConfig {
    /// The region name stamped on records.
    pub region: RegionName,
    /// Number of partitions.
    pub partitions: u32,
    /// Records kept per partition at most.
    pub retention_records: u64,
    /// Records older than this are dropped.
    pub retention: Duration,
    /// How long an idempotency key is remembered.
    pub idempotency_window: Duration,
}

impl MemoryBusConfig {
    /// Defaults for `region`: 16 partitions, 100k records or 1 hour each, 5 minutes of keys.
    pub fn new(region: RegionName) -> Self {
        Self {
            region,
            partitions: 16,
            retention_records: 100_000,
            retention: Duration::from_secs(3600),
            idempotency_window: Duration::from_secs(300),
        }
    }
}

struct Log {
    /// Offset of `records[0]`.
    base: u64,
    records: VecDeque<Arc<Record>>,
    /// Idempotency keys appended to this partition recently.
    idem: IdempotencyWindow<(AccountId, String)>,
}

impl Log {
    fn next(&self) -> u64 {
        self.base + self.records.len() as u64
    }
}

struct Partition {
    log: RwLock<Log>,
    next_tx: watch::Sender<u64>,
}

/// The in-memory bus. Cheap to share: wrap it in an `Arc`.
pub struct MemoryBus {
    config: MemoryBusConfig,
    epoch: Epoch,
    parts: Vec<Arc<Partition>>,
}

impl MemoryBus {
    /// An empty bus with a fresh random epoch.
    pub fn new(config: MemoryBusConfig) -> Self {
        let parts = (0..config.partitions.max(1))
            .map(|_| {
                Arc::new(Partition {
                    log: RwLock::new(Log {
                        base: 0,
                        records: VecDeque::new(),
                        idem: IdempotencyWindow::new(config.idempotency_window),
                    }),
                    next_tx: watch::channel(0).0,
                })
            })
            .collect();
        Self { config, epoch: Epoch::random(), parts }
    }

    fn part(&self, p: u32) -> Result<&Arc<Partition>, BusError> {
        self.parts.get(p as usize).ok_or(BusError::NoPartition(p))
    }

    fn append_one(&self, log: &mut Log, partition: u32, r: NewRecord, now: u64) -> Appended {
        log.idem.expire(now);
        if let Some(key) = &r.idempotency_key
            && let Some(first) = log.idem.get(&(r.account.clone(), key.clone())) {
                return Appended { duplicate: true, ..first.clone() };
            }
        let offset = log.next();
        let id = MessageId::generate(r.published_at_ms);
        if let Some(key) = r.idempotency_key {
            log.idem.insert((r.account.clone(), key), Appended { partition, offset, id: id.clone(), duplicate: false }, now);
        }
        log.records.push_back(Arc::new(Record {
            partition,
            offset,
            account: r.account,
            channel: r.channel,
            id: id.clone(),
            published_at_ms: r.published_at_ms,
            data: r.data,
            origin_region: self.config.region.clone(),
            origin_offset: offset,
            origin_epoch: None,
            trace: r.trace,
        }));
        Appended { partition, offset, id, duplicate: false }
    }

    fn enforce_retention(&self, log: &mut Log, now: u64) {
        let max_age = self.config.retention.as_millis() as u64;
        while let Some(front) = log.records.front() {
            let too_many = log.records.len() as u64 > self.config.retention_records;
            let too_old = now.saturating_sub(front.published_at_ms) > max_age;
            if !(too_many || too_old) {
                break;
            }
            log.records.pop_front();
            log.base += 1;
        }
    }
}

/// How long the read-back of [`ReplicaLog::last_origin_offset`] may wait for one read: records
/// in memory are there at once, so only a bug could make it wait.
const READ_BACK_TIMEOUT: Duration = Duration::from_secs(10);

#[async_trait]
impl ReplicaLog for MemoryBus {
    async fn append_replicated(&self, partition: u32, records: &[Arc<Record>], origin_epoch: &Epoch) -> Result<Vec<u64>, BusError> {
        let part = self.part(partition)?;
        if records.is_empty() {
            return Ok(Vec::new());
        }
        let now = now_ms();
        let (offsets, next) = {
            let mut log = part.log.write();
            let offsets: Vec<u64> = records
                .iter()
                .map(|r| {
                    let offset = log.next();
                    log.records.push_back(Arc::new(Record {
                        partition,
                        offset,
                        account: r.account.clone(),
                        channel: r.channel.clone(),
                        id: r.id.clone(),
                        published_at_ms: r.published_at_ms,
                        data: r.data.clone(),
                        origin_region: r.origin_region.clone(),
                        origin_offset: r.origin_offset,
                        origin_epoch: Some(origin_epoch.clone()),
                        trace: r.trace,
                    }));
                    offset
                })
                .collect();
            self.enforce_retention(&mut log, now);
            (offsets, log.next())
        };
        part.next_tx.send_replace(next);
        Ok(offsets)
    }

    async fn last_origin_offset(&self, partition: u32, origin: &RegionName) -> Result<Option<u64>, BusError> {
        // The end of an in-memory partition is exact: nothing to look for past it.
        scan_last_origin_offset(self, partition, origin, READ_BACK_TIMEOUT, Duration::ZERO).await
    }
}

#[async_trait]
impl Bus for MemoryBus {
    fn epoch(&self) -> Epoch {
        self.epoch.clone()
    }

    fn region(&self) -> RegionName {
        self.config.region.clone()
    }

    fn partitions(&self) -> u32 {
        self.parts.len() as u32
    }

    async fn append(&self, records: Vec<NewRecord>) -> Result<Vec<Appended>, BusError> {
        let now = now_ms();
        let mut out = Vec::with_capacity(records.len());
        // Group by partition while keeping the caller's order in the result.
        let mut touched: Vec<u32> = Vec::new();
        for r in records {
            let p = self.partition_of(&r.account);
            let part = self.part(p)?;
            let mut log = part.log.write();
            out.push(self.append_one(&mut log, p, r, now));
            if !touched.contains(&p) {
                touched.push(p);
            }
        }
        for p in touched {
            let part = self.part(p)?;
            let next = {
                let mut log = part.log.write();
                self.enforce_retention(&mut log, now);
                log.next()
            };
            part.next_tx.send_replace(next);
        }
        Ok(out)
    }

    async fn bounds(&self, partition: u32) -> Result<PartitionBounds, BusError> {
        let log = self.part(partition)?.log.read();
        Ok(PartitionBounds { low: log.base, next: log.next() })
    }

    async fn open(&self, partition: u32, from: u64) -> Result<Box<dyn PartitionReader>, BusError> {
        let part = self.part(partition)?.clone();
        let low = part.log.read().base;
        if from < low {
            return Err(BusError::Truncated { requested: from, low });
        }
        let next_rx = part.next_tx.subscribe();
        Ok(Box::new(MemoryReader { part, next_rx, position: from }))
    }
}

/// A reader over one in-memory partition.
struct MemoryReader {
    part: Arc<Partition>,
    next_rx: watch::Receiver<u64>,
    position: u64,
}

#[async_trait]
impl PartitionReader for MemoryReader {
    async fn next_batch(&mut self, max: usize) -> Result<Vec<Arc<Record>>, BusError> {
        loop {
            {
                let log = self.part.log.read();
                if self.position < log.base {
                    return Err(BusError::Truncated { requested: self.position, low: log.base });
                }
                if self.position < log.next() {
                    let start = (self.position - log.base) as usize;
                    let n = (log.records.len() - start).min(max.max(1));
                    let batch: Vec<_> = log.records.range(start..start + n).cloned().collect();
                    self.position += n as u64;
                    return Ok(batch);
                }
            }
            // `changed` only misses nothing because we re-check the log after marking seen.
            self.next_rx.borrow_and_update();
            if *self.next_rx.borrow() > self.position {
                continue;
            }
            self.next_rx.changed().await.map_err(|_| BusError::Closed)?;
        }
    }

    fn position(&self) -> u64 {
        self.position
    }

    fn seek(&mut self, offset: u64) {
        self.position = offset;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use herald_core::testing::{bus_conformance, replica_log_conformance};
    use herald_core::{ChannelName, NewRecord};

    fn memory_bus(retention_records: u64) -> MemoryBus {
        let mut c = MemoryBusConfig::new(RegionName::new("test").unwrap());
        c.partitions = 4;
        c.retention_records = retention_records;
        MemoryBus::new(c)
    }

    fn bus(retention_records: u64) -> Arc<dyn Bus> {
        Arc::new(memory_bus(retention_records))
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn memory_bus_passes_the_bus_conformance_suite() {
        bus_conformance::run_all(bus(100_000)).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn memory_bus_passes_the_replica_log_conformance_suite() {
        replica_log_conformance::run_all(Arc::new(memory_bus(100_000))).await;
    }

    #[tokio::test]
    async fn an_idempotency_key_is_appended_again_once_the_window_has_passed() {
        let mut c = MemoryBusConfig::new(RegionName::new("test").unwrap());
        c.idempotency_window = Duration::from_millis(50);
        let bus = MemoryBus::new(c);
        let keyed = || NewRecord {
            account: AccountId::new("acme").unwrap(),
            channel: ChannelName::new("c").unwrap(),
            data: "1".into(),
            idempotency_key: Some("k".into()),
            published_at_ms: now_ms(),
            trace: None,
        };
        let first = bus.append(vec![keyed()]).await.unwrap().remove(0);
        assert!(bus.append(vec![keyed()]).await.unwrap()[0].duplicate);
        tokio::time::sleep(Duration::from_millis(120)).await;
        let later = bus.append(vec![keyed()]).await.unwrap().remove(0);
        assert!(!later.duplicate, "the key was forgotten after the window");
        assert_eq!(later.offset, first.offset + 1);
    }

    #[tokio::test]
    async fn memory_bus_refuses_reads_past_retention() {
        bus_conformance::reading_past_retention_is_refused(bus(10), 10).await;
    }

    #[tokio::test]
    async fn two_instances_have_different_epochs() {
        assert_ne!(bus(1).epoch(), bus(1).epoch());
    }
}
