//! One connected link: every partition copied by its own task, until a stop or the first error.

use futures_util::future::join_all;
use metrics::Counter;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;

use herald_core::bus::Bus;
use herald_core::{BusError, RegionName, ReplicaLog, now_ms};

use crate::metrics::{Lag, Metrics};
use crate::{Endpoint, Link, LinkError};

/// Records read from the source per step.
const BATCH: usize = 500;

/// Connects both sides of `link` and copies every partition until `stop` (`Ok`) or the first
/// error (the other partitions stop too, and the caller restarts the link).
pub(crate) async fn run_once<S, T>(link: &Link<S, T>, metrics: &Metrics, copied: &Counter, stop: &CancellationToken) -> Result<(), LinkError>
where
    S: Endpoint,
    S::Bus: Bus,
    T: Endpoint,
    T::Bus: ReplicaLog,
{
    let source = link.source.connect().await?;
    let target = link.target.connect().await?;
    if source.partitions() != target.partitions() {
        // Not retryable by waiting, but retried anyway so that fixing the topic heals the link.
        return Err(LinkError::PartitionsDiffer {
            source_log: link.source.describe(),
            source_partitions: source.partitions(),
            target_log: link.target.describe(),
            target_partitions: target.partitions(),
        });
    }
    let name = link.name();
    let n = source.partitions() as usize;
    let lag = Arc::new(Lag::new(metrics, &name, n));
    tracing::info!(link = %name, partitions = n, "replication link connected");
    // The first partition to fail stops the others; the link then restarts as a whole.
    let failed = stop.child_token();
    let tasks = (0..n as u32).map(|p| {
        let (source, target, lag, copied, failed) = (source.clone(), target.clone(), lag.clone(), copied.clone(), failed.clone());
        async move {
            let r = copy_partition(&*source, &*target, p, &lag, &copied, &failed).await;
            if r.is_err() {
                failed.cancel();
            }
            r
        }
    });
    let results = join_all(tasks).await;
    results.into_iter().find(|r| r.is_err()).unwrap_or(Ok(())).map_err(LinkError::from)
}

/// Copies partition `p` from where the target's copies end, until `stop`.
async fn copy_partition<S, T>(source: &S, target: &T, p: u32, lag: &Lag, copied: &Counter, stop: &CancellationToken) -> Result<(), BusError>
where
    S: Bus + ?Sized,
    T: ReplicaLog + ?Sized,
{
    let origin: RegionName = source.region();
    let origin_epoch = source.epoch();
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
    let mut last_bounds_check = Instant::now() - Duration::from_secs(10);
    loop {
        let batch = tokio::select! {
            _ = stop.cancelled() => return Ok(()),
            b = tokio::time::timeout(Duration::from_secs(1), reader.next_batch(BATCH)) => b,
        };
        let batch = match batch {
            Ok(b) => b?,
            Err(_) => Vec::new(),
        };
        // Only the source's own records: what it got from other regions came from them directly
        // (no loops), and probes are region-local.
        let mine: Vec<_> = batch.into_iter().filter(|r| r.origin_region == origin && !r.account.is_probe()).collect();
        if !mine.is_empty() {
            target.append_replicated(p, &mine, &origin_epoch).await?;
            copied.increment(mine.len() as u64);
        }
        // Lag: what the source holds past our position, refreshed at most once a second.
        if last_bounds_check.elapsed() >= Duration::from_secs(1) {
            let next = source.bounds(p).await?.next;
            let behind = next.saturating_sub(reader.position());
            let oldest = if behind == 0 { 0 } else { mine.last().map(|r| r.published_at_ms).unwrap_or_else(now_ms) };
            lag.set(p as usize, behind, oldest);
            last_bounds_check = Instant::now();
        }
    }
}
