//! `herald replicate`: copies records from other regions' Kafka topics into this region's topic.
//!
//! # How a link works (source region S → target region T)
//! Partition `p` of S's topic is copied into partition `p` of T's topic (both topics have the
//! same partition count and Herald's partitioner, so an account's records stay in one partition
//! everywhere). Only records whose origin is S are copied: records S itself got from other
//! regions are skipped, so links form no loops with 2 or 3 regions (full mesh: every region
//! gets every other region's records directly from it).
//!
//! Each copy keeps the record's id, publish time and channel and adds its origin region and
//! origin offset (headers `herald-or`, `herald-oo`). Progress is not stored anywhere else: on
//! start and after any error, the link reads back the greatest origin offset from S already in
//! T's partition and continues after it. A copy acknowledged by T is therefore never copied
//! again and an unacknowledged one is retried: exactly once, across crashes, restarts, and
//! either side being down, as long as one process runs a given link.
//!
//! # Metrics
//! `herald_replication_lag_records{link}`: records in S not yet in T;
//! `herald_replication_lag_seconds{link}`: age of the oldest record not yet copied (0 when none);
//! `herald_replicated_total{link}`; `herald_replication_errors_total{link}`.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod presence;

use futures_util::future::join_all;
use metrics::{Counter, Gauge, Key, Label, Recorder};
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle, PrometheusRecorder};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;
use tokio_util::sync::CancellationToken;

use herald_bus_kafka::{KafkaBus, KafkaBusConfig};
use herald_core::bus::Bus;
use herald_core::{BusError, RegionName, now_ms};

/// The account edges publish probes to: region-local, never copied.
const PROBE_ACCOUNT: &str = "herald-probe";

/// One link: where records come from and where they go.
#[derive(Clone, Debug)]
pub struct Link {
    /// The source region's topic (its `region` is the origin copied).
    pub source: KafkaBusConfig,
    /// This region's topic.
    pub target: KafkaBusConfig,
}

impl Link {
    /// `s->t`, the `link` label.
    pub fn name(&self) -> String {
        format!("{}->{}", self.source.region, self.target.region)
    }
}

/// The replicator's metrics, rendered for `/metrics`.
pub struct Metrics {
    recorder: PrometheusRecorder,
    handle: PrometheusHandle,
}

impl Default for Metrics {
    fn default() -> Self {
        let recorder = PrometheusBuilder::new().build_recorder();
        let handle = recorder.handle();
        recorder.describe_gauge("herald_replication_lag_records".into(), None, "Records in the source region not yet copied here".into());
        recorder.describe_gauge("herald_replication_lag_seconds".into(), None, "Age of the oldest record not yet copied (0 when caught up)".into());
        recorder.describe_counter("herald_replicated_total".into(), None, "Records copied".into());
        recorder.describe_counter("herald_replication_errors_total".into(), None, "Link restarts after an error".into());
        Self { recorder, handle }
    }
}

static META: metrics::Metadata<'static> = metrics::Metadata::new(module_path!(), metrics::Level::INFO, Some(module_path!()));

impl Metrics {
    /// Prometheus text.
    pub fn render(&self) -> String {
        self.handle.render()
    }

    fn key(name: &'static str, link: &str) -> Key {
        Key::from_parts(name, vec![Label::new("link", link.to_owned())])
    }

    fn gauge(&self, name: &'static str, link: &str) -> Gauge {
        self.recorder.register_gauge(&Self::key(name, link), &META)
    }

    fn counter(&self, name: &'static str, link: &str) -> Counter {
        self.recorder.register_counter(&Self::key(name, link), &META)
    }
}

/// Per-partition lag, summed into the link's gauges.
struct Lag {
    records: Vec<AtomicU64>,
    oldest_ms: Vec<AtomicU64>,
    records_gauge: Gauge,
    seconds_gauge: Gauge,
}

impl Lag {
    fn set(&self, p: usize, records: u64, oldest_ms: u64) {
        self.records[p].store(records, Ordering::Relaxed);
        self.oldest_ms[p].store(oldest_ms, Ordering::Relaxed);
        self.records_gauge.set(self.records.iter().map(|a| a.load(Ordering::Relaxed)).sum::<u64>() as f64);
        let oldest = self.oldest_ms.iter().map(|a| a.load(Ordering::Relaxed)).filter(|ms| *ms > 0).min();
        self.seconds_gauge.set(oldest.map(|ms| now_ms().saturating_sub(ms) as f64 / 1000.0).unwrap_or(0.0));
    }
}

/// Runs `link` until `stop`: connects to both sides (retrying while either is down), then copies
/// every partition; any error restarts the link from what the target holds.
pub async fn run(link: Link, metrics: Arc<Metrics>, stop: CancellationToken) {
    let name = link.name();
    let errors = metrics.counter("herald_replication_errors_total", &name);
    let copied = metrics.counter("herald_replicated_total", &name);
    let mut delay = Duration::from_millis(200);
    while !stop.is_cancelled() {
        let started = std::time::Instant::now();
        match run_once(&link, &metrics, &copied, &stop).await {
            Ok(()) => return,
            Err(e) => {
                errors.increment(1);
                tracing::warn!(link = %name, error = %e, "replication link interrupted; resuming from what the target holds");
            }
        }
        if started.elapsed() > Duration::from_secs(30) {
            delay = Duration::from_millis(200);
        }
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep(delay) => {}
        }
        delay = (delay * 2).min(Duration::from_secs(10));
    }
}

async fn run_once(link: &Link, metrics: &Metrics, copied: &Counter, stop: &CancellationToken) -> Result<(), BusError> {
    let source = Arc::new(KafkaBus::connect(link.source.clone()).await?);
    let target = Arc::new(KafkaBus::connect(link.target.clone()).await?);
    if source.partitions() != target.partitions() {
        // Not retryable by waiting, but retried anyway so that fixing the topic heals the link.
        return Err(BusError::Unavailable(format!(
            "{} has {} partitions and {} has {}: a link needs the same count on both sides",
            link.source.topic,
            source.partitions(),
            link.target.topic,
            target.partitions()
        )));
    }
    let name = link.name();
    let n = source.partitions() as usize;
    let lag = Arc::new(Lag {
        records: (0..n).map(|_| AtomicU64::new(0)).collect(),
        oldest_ms: (0..n).map(|_| AtomicU64::new(0)).collect(),
        records_gauge: metrics.gauge("herald_replication_lag_records", &name),
        seconds_gauge: metrics.gauge("herald_replication_lag_seconds", &name),
    });
    tracing::info!(link = %name, partitions = n, "replication link connected");
    // The first partition to fail stops the others; the link then restarts as a whole.
    let failed = stop.child_token();
    let tasks = (0..n as u32).map(|p| {
        let (source, target, lag, copied, failed) = (source.clone(), target.clone(), lag.clone(), copied.clone(), failed.clone());
        async move {
            let r = copy_partition(&source, &target, p, &lag, &copied, &failed).await;
            if r.is_err() {
                failed.cancel();
            }
            r
        }
    });
    let results = join_all(tasks).await;
    results.into_iter().find(|r| r.is_err()).unwrap_or(Ok(()))
}

async fn copy_partition(source: &KafkaBus, target: &KafkaBus, p: u32, lag: &Lag, copied: &Counter, stop: &CancellationToken) -> Result<(), BusError> {
    let origin: RegionName = source.region();
    let bounds = source.bounds(p).await?;
    let mut from = match target.last_origin_offset(p, &origin).await? {
        Some(o) => o + 1,
        None => bounds.low,
    };
    if from < bounds.low {
        tracing::error!(partition = p, from, low = bounds.low, "source retention dropped records before they were copied; continuing from the oldest retained");
        from = bounds.low;
    }
    let mut reader = source.open(p, from).await?;
    let mut last_bounds_check = std::time::Instant::now() - Duration::from_secs(10);
    loop {
        // Lag: what the source holds past our position, refreshed at most once a second.
        let batch = tokio::select! {
            _ = stop.cancelled() => return Ok(()),
            b = tokio::time::timeout(Duration::from_secs(1), reader.next_batch(500)) => b,
        };
        let batch = match batch {
            Ok(b) => b?,
            Err(_) => Vec::new(),
        };
        let mine: Vec<_> = batch.into_iter().filter(|r| r.origin_region == origin && r.account.as_str() != PROBE_ACCOUNT).collect();
        if !mine.is_empty() {
            target.append_replicated(p, &mine, &source.epoch()).await?;
            copied.increment(mine.len() as u64);
        }
        if last_bounds_check.elapsed() >= Duration::from_secs(1) {
            let next = source.bounds(p).await?.next;
            let behind = next.saturating_sub(reader.position());
            let oldest = if behind == 0 { 0 } else { mine.last().map(|r| r.published_at_ms).unwrap_or_else(now_ms) };
            lag.set(p as usize, behind, oldest);
            last_bounds_check = std::time::Instant::now();
        }
    }
}
