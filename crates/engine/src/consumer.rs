//! Partition consumers: routing by account.
//!
//! A node reads only the partitions that hold accounts it currently serves: the first
//! subscription on a partition starts its consumer at the partition's end, and the consumer stops
//! a linger period after the last subscription is gone. A new subscriber replays anything older
//! from the hub's history cache or the bus, so starting at the end loses nothing.

use parking_lot::Mutex;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;
use tokio_util::sync::CancellationToken;

use herald_core::{BusError, PartitionReader};

use crate::Engine;

/// Records one consumer read asks for at most.
const READ_BATCH: usize = 1024;

#[derive(Default)]
struct Slot {
    /// Cancels the running consumer.
    running: Option<CancellationToken>,
    /// Subscriptions on this partition.
    users: usize,
    /// Bumped on every release to zero, so only the latest linger timer may stop the consumer.
    generation: u64,
}

/// The consumers of one node, one slot per bus partition.
pub struct PartitionConsumers {
    slots: Vec<tokio::sync::Mutex<Slot>>,
    stop: CancellationToken,
    linger: Duration,
    active: AtomicU64,
    external: Mutex<Vec<u32>>,
}

impl PartitionConsumers {
    /// Consumers for `partitions` partitions, each stopping `linger` after its last user left.
    pub fn new(partitions: u32, linger: Duration) -> Self {
        Self {
            slots: (0..partitions).map(|_| tokio::sync::Mutex::new(Slot::default())).collect(),
            stop: CancellationToken::new(),
            linger,
            active: AtomicU64::new(0),
            external: Mutex::new(Vec::new()),
        }
    }

    /// Partitions being consumed now.
    pub fn active(&self) -> u64 {
        self.active.load(Ordering::Relaxed)
    }

    /// Counts a user of `partition`, starting its consumer if none runs.
    pub async fn acquire(&self, engine: &Arc<Engine>, partition: u32) -> Result<(), BusError> {
        let mut slot = self.slots[partition as usize].lock().await;
        slot.users += 1;
        if slot.running.is_none() && !self.external.lock().contains(&partition) {
            match start(engine, partition, self.stop.child_token()).await {
                Ok(token) => {
                    slot.running = Some(token);
                    let n = self.active.fetch_add(1, Ordering::Relaxed) + 1;
                    engine.metrics.partitions_consumed.set(n as f64);
                }
                Err(e) => {
                    slot.users -= 1;
                    return Err(e);
                }
            }
        }
        Ok(())
    }

    /// Drops a user of `partition`; the consumer stops after the linger if none came back.
    pub fn release(&self, engine: &Arc<Engine>, partition: u32) {
        let engine = engine.clone();
        tokio::spawn(async move {
            let consumers = &engine.consumers;
            let generation = {
                let mut slot = consumers.slots[partition as usize].lock().await;
                slot.users = slot.users.saturating_sub(1);
                if slot.users > 0 {
                    return;
                }
                slot.generation += 1;
                slot.generation
            };
            tokio::select! {
                _ = tokio::time::sleep(consumers.linger) => {}
                _ = consumers.stop.cancelled() => return,
            }
            let mut slot = consumers.slots[partition as usize].lock().await;
            if slot.users == 0 && slot.generation == generation
                && let Some(t) = slot.running.take() {
                    t.cancel();
                    let n = consumers.active.fetch_sub(1, Ordering::Relaxed) - 1;
                    engine.metrics.partitions_consumed.set(n as f64);
                    tracing::debug!(partition, "stopped consuming an idle partition");
                }
        });
    }

    /// Marks `partition` as fed by the caller, who dispatches into the hub itself (tests, tools):
    /// no consumer is started for it.
    pub fn attach_external(&self, partition: u32) {
        self.external.lock().push(partition);
    }

    /// Stops every consumer.
    pub fn stop_all(&self) {
        self.stop.cancel();
    }
}

/// Positions the hub at the partition's end and starts its consumer there.
async fn start(engine: &Arc<Engine>, partition: u32, token: CancellationToken) -> Result<CancellationToken, BusError> {
    let bounds = engine.bus.bounds(partition).await?;
    let next = bounds.next;
    let (foreign, tail) = scan_tail(engine, partition, bounds.low, next).await;
    let reader = engine.open_reader(partition, next).await?;
    let generation = engine.hub.start_partition_after(partition, next, foreign, &tail);
    tokio::spawn(consume(engine.clone(), partition, generation, reader, token.clone()));
    tracing::debug!(partition, next, "consuming partition");
    Ok(token)
}

/// How far back a starting consumer looks for records of other origins and keyed ids.
const ORIGIN_SCAN: u64 = 2000;

/// The partition's last [`ORIGIN_SCAN`] records before `next`, and for each other origin region
/// the origin offset after its last record among them: where cursors of this partition start,
/// and below which a replicated record after `next` is a second copy (docs/multi-region.md). An
/// origin with no record that recent is left out. Best effort: on a read error or after 2 s it
/// returns what it found.
async fn scan_tail(engine: &Arc<Engine>, partition: u32, low: u64, next: u64) -> (herald_core::VersionVector, Vec<Arc<herald_core::Record>>) {
    let from = next.saturating_sub(ORIGIN_SCAN).max(low);
    let mut out = herald_core::VersionVector::new();
    let mut tail = Vec::new();
    if from >= next {
        return (out, tail);
    }
    let local = engine.bus.region();
    let scan = async {
        let mut reader = engine.open_reader(partition, from).await?;
        while let Some(batch) = reader.next_batch_before(next, 1000).await? {
            for r in batch {
                crate::copies::note_origin(&mut out, &r, &local);
                tail.push(r);
            }
        }
        Ok::<_, BusError>(())
    };
    match tokio::time::timeout(Duration::from_secs(2), scan).await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => tracing::warn!(partition, error = %e, "could not read recent records for other origins' positions"),
        Err(_) => tracing::warn!(partition, "reading recent records for other origins' positions timed out"),
    }
    (out, tail)
}

async fn consume(engine: Arc<Engine>, partition: u32, generation: u64, mut reader: Box<dyn PartitionReader>, stop: CancellationToken) {
    let mut backoff = Duration::from_millis(50);
    loop {
        let batch = tokio::select! {
            _ = stop.cancelled() => return,
            b = reader.next_batch(READ_BATCH) => b,
        };
        match batch {
            Ok(records) => {
                backoff = Duration::from_millis(50);
                engine.hub.dispatch(partition, generation, &records);
            }
            Err(BusError::Gap { from, to }) => {
                // Offsets stayed missing while later records were there (the reader waited for
                // them): never silent. Resumes across the hole are no longer `recovered`.
                tracing::error!(partition, from, to, "records missing from the bus: a hole in the partition");
                engine.metrics.bus_gaps.increment(1);
                engine.metrics.records_skipped.increment(to - from);
                engine.hub.note_gap(partition, Some(generation), from, to);
                engine.note_bus_gap();
            }
            Err(BusError::Truncated { requested, low }) => {
                // Records expired before this node saw them; subscribers resuming across the gap
                // learn it from `recovered:false`.
                tracing::error!(partition, requested, low, "consumer fell behind retention");
                engine.metrics.records_skipped.increment(low - requested);
                engine.hub.note_gap(partition, Some(generation), requested, low);
                reader.seek(low);
            }
            Err(e) => {
                engine.metrics.bus_errors.increment(1);
                tracing::warn!(partition, error = %e, "bus read failed; retrying");
                tokio::select! {
                    _ = stop.cancelled() => return,
                    _ = tokio::time::sleep(backoff) => {}
                }
                backoff = (backoff * 2).min(Duration::from_secs(5));
            }
        }
    }
}
