//! The replicator between in-memory buses, in one process: every record of region a reaches
//! region b exactly once, whatever moment the link is stopped or killed at, and nothing that is
//! not a's own record (probes, copies a got from a third region) is copied.

use async_trait::async_trait;
use bytes::Bytes;
use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;

use herald_bus_memory::{MemoryBus, MemoryBusConfig};
use herald_core::bus::{Bus, BusError, PartitionBounds, PartitionReader};
use herald_core::{AccountId, Appended, ChannelName, Epoch, MessageId, NewRecord, PROBE_ACCOUNT, Record, RegionName, ReplicaLog, now_ms};
use herald_replicator::{Link, Metrics};

const PATIENCE: Duration = Duration::from_secs(20);

fn region_bus(region: &str, partitions: u32) -> Arc<MemoryBus> {
    let mut c = MemoryBusConfig::new(RegionName::new(region).unwrap());
    c.partitions = partitions;
    Arc::new(MemoryBus::new(c))
}

fn record(account: &str, n: usize) -> NewRecord {
    NewRecord {
        account: AccountId::new(account).unwrap(),
        channel: ChannelName::new("incidents").unwrap(),
        data: Bytes::from(format!("{{\"n\":{n}}}")),
        idempotency_key: None,
        published_at_ms: now_ms(),
        trace: None,
    }
}

/// Publishes `n` records spread over 10 accounts; returns their ids.
async fn publish(bus: &MemoryBus, first: usize, n: usize) -> Vec<MessageId> {
    let batch = (first..first + n).map(|i| record(&format!("acct-{}", i % 10), i)).collect();
    bus.append(batch).await.expect("publish").into_iter().map(|a| a.id).collect()
}

/// Every record the bus holds, partition by partition.
async fn all_records<B: Bus + ?Sized>(bus: &B) -> Vec<Arc<Record>> {
    let mut out = Vec::new();
    for p in 0..bus.partitions() {
        let PartitionBounds { low, next } = bus.bounds(p).await.unwrap();
        if low == next {
            continue;
        }
        let mut reader = bus.open(p, low).await.unwrap();
        while reader.position() < next {
            out.extend(reader.next_batch(1000).await.unwrap());
        }
    }
    out
}

async fn held<B: Bus + ?Sized>(bus: &B) -> u64 {
    let mut n = 0;
    for p in 0..bus.partitions() {
        let b = bus.bounds(p).await.unwrap();
        n += b.next - b.low;
    }
    n
}

/// Waits until `bus` holds at least `n` records.
async fn wait_for_count<B: Bus + ?Sized>(bus: &B, n: u64) {
    let deadline = Instant::now() + PATIENCE;
    while held(bus).await < n {
        assert!(Instant::now() < deadline, "the target holds {} records, not {n}", held(bus).await);
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}

/// How many times each id is in `records`.
fn count_by_id(records: &[Arc<Record>]) -> HashMap<MessageId, usize> {
    let mut counts = HashMap::new();
    for r in records {
        *counts.entry(r.id.clone()).or_insert(0) += 1;
    }
    counts
}

/// Asserts that `target` holds exactly one copy of each of `ids` and nothing else.
async fn assert_exactly_once<B: Bus + ?Sized>(target: &B, ids: &[MessageId]) {
    let counts = count_by_id(&all_records(target).await);
    let missing: Vec<_> = ids.iter().filter(|id| !counts.contains_key(*id)).collect();
    let twice: Vec<_> = counts.iter().filter(|(_, n)| **n > 1).collect();
    assert!(missing.is_empty(), "{} of {} records never reached the target, e.g. {:?}", missing.len(), ids.len(), missing.first());
    assert!(twice.is_empty(), "{} records were copied more than once, e.g. {:?}", twice.len(), twice.first());
    assert_eq!(counts.len(), ids.len(), "the target holds records that were not published");
}

/// A metric's value in the rendered registry.
fn metric(metrics: &Metrics, line_start: &str) -> Option<f64> {
    metrics.render().lines().find_map(|l| l.strip_prefix(line_start).and_then(|v| v.trim().parse().ok()))
}

/// A running link: stop it gracefully, or kill it like `kill -9` (abort).
struct Running {
    stop: CancellationToken,
    task: tokio::task::JoinHandle<()>,
}

fn start<S, T>(link: Link<S, T>, metrics: &Arc<Metrics>) -> Running
where
    S: herald_replicator::Endpoint,
    S::Bus: Bus,
    T: herald_replicator::Endpoint,
    T::Bus: ReplicaLog,
{
    let stop = CancellationToken::new();
    let task = tokio::spawn(herald_replicator::run(link, metrics.clone(), stop.clone()));
    Running { stop, task }
}

impl Running {
    async fn stop(self) {
        self.stop.cancel();
        tokio::time::timeout(PATIENCE, self.task).await.expect("the link stops").expect("no panic");
    }

    async fn kill(self) {
        self.task.abort();
        let _ = self.task.await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn records_published_in_a_reach_b_exactly_once_with_their_ids_and_origin() {
    let (a, b) = (region_bus("a", 4), region_bus("b", 4));
    let metrics = Arc::new(Metrics::default());
    let mut ids = publish(&a, 0, 200).await;
    let link = start(Link { source: a.clone(), target: b.clone() }, &metrics);
    ids.extend(publish(&a, 200, 100).await);
    wait_for_count(&*b, 300).await;
    link.stop().await;

    assert_exactly_once(&*b, &ids).await;
    let originals: HashMap<_, _> = all_records(&*a).await.into_iter().map(|r| (r.id.clone(), r)).collect();
    for copy in all_records(&*b).await {
        let original = &originals[&copy.id];
        assert_eq!((copy.partition, &copy.account, &copy.channel, &copy.data), (original.partition, &original.account, &original.channel, &original.data));
        assert_eq!(copy.published_at_ms, original.published_at_ms);
        assert_eq!((copy.origin_region.as_str(), copy.origin_offset), ("a", original.offset), "a copy names where it came from");
        assert_eq!(copy.origin_epoch, Some(a.epoch()));
    }
    assert_eq!(metric(&metrics, "herald_replicated_total{link=\"a->b\"}"), Some(300.0));
}

/// A target that acknowledges each copy a moment after writing it, so that a link stopped or
/// killed at any moment may leave copies written but not acknowledged: what a replicator killed
/// in the middle of a write leaves behind.
struct SlowAck {
    inner: Arc<MemoryBus>,
    delay: Duration,
}

#[async_trait]
impl Bus for SlowAck {
    fn epoch(&self) -> Epoch {
        self.inner.epoch()
    }
    fn region(&self) -> RegionName {
        self.inner.region()
    }
    fn partitions(&self) -> u32 {
        self.inner.partitions()
    }
    async fn append(&self, records: Vec<NewRecord>) -> Result<Vec<Appended>, BusError> {
        self.inner.append(records).await
    }
    async fn bounds(&self, partition: u32) -> Result<PartitionBounds, BusError> {
        self.inner.bounds(partition).await
    }
    async fn open(&self, partition: u32, from: u64) -> Result<Box<dyn PartitionReader>, BusError> {
        self.inner.open(partition, from).await
    }
}

#[async_trait]
impl ReplicaLog for SlowAck {
    async fn append_replicated(&self, partition: u32, records: &[Arc<Record>], origin_epoch: &Epoch) -> Result<Vec<u64>, BusError> {
        let offsets = self.inner.append_replicated(partition, records, origin_epoch).await;
        tokio::time::sleep(self.delay).await;
        offsets
    }
    async fn last_origin_offset(&self, partition: u32, origin: &RegionName) -> Result<Option<u64>, BusError> {
        self.inner.last_origin_offset(partition, origin).await
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_link_stopped_or_killed_mid_copy_while_a_keeps_publishing_copies_nothing_twice_and_loses_nothing() {
    let (a, b) = (region_bus("a", 4), region_bus("b", 4));
    let target = Arc::new(SlowAck { inner: b.clone(), delay: Duration::from_millis(3) });
    let metrics = Arc::new(Metrics::default());
    let link = || Link { source: a.clone(), target: target.clone() };

    // A backlog, and a publisher that keeps going through every stop and restart.
    let mut ids = publish(&a, 0, 5_000).await;
    let publishing = Arc::new(AtomicBool::new(true));
    let publisher = {
        let (a, publishing) = (a.clone(), publishing.clone());
        tokio::spawn(async move {
            let mut ids = Vec::new();
            let mut n = 5_000;
            while publishing.load(Ordering::Relaxed) {
                ids.extend(publish(&a, n, 20).await);
                n += 20;
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
            ids
        })
    };

    let mut stopped_mid_copy = 0;
    for cycle in 0..8 {
        let before = held(&*b).await;
        let running = start(link(), &metrics);
        wait_for_count(&*b, before + 300).await;
        if cycle % 2 == 0 {
            running.stop().await;
        } else {
            running.kill().await;
        }
        if held(&*b).await < held(&*a).await {
            stopped_mid_copy += 1;
        }
        // a publishes on while the link is down.
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert!(stopped_mid_copy >= 4, "the link was stopped mid-copy only {stopped_mid_copy} times out of 8");

    publishing.store(false, Ordering::Relaxed);
    ids.extend(publisher.await.unwrap());
    let running = start(link(), &metrics);
    wait_for_count(&*b, ids.len() as u64).await;
    running.stop().await;
    assert_exactly_once(&*b, &ids).await;

    // A restart once everything is there copies nothing more.
    let running = start(link(), &metrics);
    tokio::time::sleep(Duration::from_millis(300)).await;
    running.stop().await;
    assert_eq!(held(&*b).await, ids.len() as u64);
}

/// An account other than `avoid` whose records share `partition`.
fn account_in(bus: &MemoryBus, partition: u32, avoid: &str) -> String {
    (0..).map(|i| format!("acct-{i}")).find(|a| a != avoid && bus.partition_of(&AccountId::new(a).unwrap()) == partition).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_probe_account_is_never_copied() {
    let (a, b) = (region_bus("a", 4), region_bus("b", 4));
    let probe_partition = a.partition_of(&AccountId::new(PROBE_ACCOUNT).unwrap());
    let neighbour = account_in(&a, probe_partition, PROBE_ACCOUNT);
    a.append((0..5).map(|i| record(PROBE_ACCOUNT, i)).collect()).await.unwrap();
    // Records after the probes in the same partition: once they are copied, the link has read
    // past the probes.
    let ids: Vec<_> = a.append((0..5).map(|i| record(&neighbour, i)).collect()).await.unwrap().into_iter().map(|x| x.id).collect();
    let running = start(Link { source: a.clone(), target: b.clone() }, &Arc::new(Metrics::default()));
    wait_for_count(&*b, 5).await;
    running.stop().await;
    let copied = all_records(&*b).await;
    assert!(copied.iter().all(|r| r.account.as_str() != PROBE_ACCOUNT), "a probe record was copied");
    assert_exactly_once(&*b, &ids).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn records_a_got_from_a_third_region_are_not_copied_again() {
    let (a, b) = (region_bus("a", 4), region_bus("b", 4));
    let c = region_bus("c", 4);
    // c's records reach a through a's own c->a link; a's records follow them in the partition.
    let from_c = publish(&c, 0, 40).await;
    let c_link = start(Link { source: c.clone(), target: a.clone() }, &Arc::new(Metrics::default()));
    wait_for_count(&*a, 40).await;
    c_link.stop().await;
    let mut ids = publish(&a, 0, 40).await;
    let running = start(Link { source: a.clone(), target: b.clone() }, &Arc::new(Metrics::default()));
    ids.extend(publish(&a, 40, 40).await);
    wait_for_count(&*b, 80).await;
    running.stop().await;
    let copied = all_records(&*b).await;
    assert!(copied.iter().all(|r| r.origin_region.as_str() == "a"), "b got records of another origin through a");
    assert!(copied.iter().all(|r| !from_c.contains(&r.id)));
    assert_exactly_once(&*b, &ids).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_link_between_buses_with_different_partition_counts_copies_nothing_and_counts_the_error() {
    let (a, b) = (region_bus("a", 4), region_bus("b", 8));
    publish(&a, 0, 10).await;
    let metrics = Arc::new(Metrics::default());
    let running = start(Link { source: a.clone(), target: b.clone() }, &metrics);
    let deadline = Instant::now() + PATIENCE;
    while metric(&metrics, "herald_replication_errors_total{link=\"a->b\"}").unwrap_or(0.0) < 1.0 {
        assert!(Instant::now() < deadline, "the refused link was not counted as an error");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    running.stop().await;
    assert_eq!(held(&*b).await, 0);
}
