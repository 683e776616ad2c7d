//! The worker: holds the region's lease, reads every partition of the region's bus, and turns
//! each record on a pushable channel into notifications for the devices of users who may read
//! the channel and are not looking at it.

use futures_util::StreamExt;
use futures_util::stream::FuturesOrdered;
use std::collections::{HashSet, VecDeque};
use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};
use tokio::sync::mpsc;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use herald_core::{Bus, BusError, ChannelKey, DeviceRegistry, Presence, Record, Registration, now_ms};

use crate::metrics::Metrics;
use crate::rules::{Notification, Rules};
use crate::send::{Outcome, Sender};
use crate::store::{DeadLetter, RedisStore, StoreError};

/// How the worker runs, from `[push]`.
#[derive(Clone, Debug)]
pub struct WorkerSettings {
    /// This worker's id in the lease (unique per process).
    pub holder: String,
    /// How long the lease lasts without renewal.
    pub lease_ttl: Duration,
    /// How long "sent" markers are kept.
    pub sent_ttl: Duration,
    /// Presence members read per channel.
    pub presence_limit: usize,
    /// Records in flight per partition.
    pub window: usize,
    /// On shutdown, how long in-flight records may take to finish.
    pub drain: Duration,
}

impl WorkerSettings {
    /// The settings `[push]` gives, for a worker named `holder`.
    pub fn from_config(c: &herald_config::PushConfig, holder: String) -> Self {
        Self {
            holder,
            lease_ttl: Duration::from_secs(c.lease_ttl_secs),
            sent_ttl: Duration::from_secs(c.sent_marker_ttl_secs),
            presence_limit: c.presence_limit,
            window: c.window,
            drain: Duration::from_secs(10),
        }
    }
}

/// What the worker needs.
pub struct PushDeps {
    /// This region's bus.
    pub bus: Arc<dyn Bus>,
    /// This region's presence.
    pub presence: Arc<dyn Presence>,
    /// Device registrations.
    pub registry: Arc<dyn DeviceRegistry>,
    /// The lease, positions, sent markers and dead letters.
    pub store: RedisStore,
    /// APNs and FCM within the limits.
    pub sender: Arc<Sender>,
    /// `[[push.channels]]`.
    pub rules: Rules,
    /// Where counts go.
    pub metrics: Arc<Metrics>,
    /// Timings and sizes.
    pub settings: WorkerSettings,
}

struct Inner {
    deps: PushDeps,
    /// Per partition: the stored position.
    committed: Vec<AtomicU64>,
    /// Per partition: publish time of the oldest record in flight (0: none).
    oldest_ms: Vec<AtomicU64>,
}

/// Runs until `stop`: waits for the region's lease, then pushes while it holds it. Aborting the
/// task that runs this stops everything it started (as a crash would).
pub async fn run(deps: PushDeps, stop: CancellationToken) {
    let partitions = deps.bus.partitions() as usize;
    let d = Arc::new(Inner { committed: (0..partitions).map(|_| AtomicU64::new(0)).collect(), oldest_ms: (0..partitions).map(|_| AtomicU64::new(0)).collect(), deps });
    let s = &d.deps.settings;
    let mut standing_by = false;
    d.deps.metrics.set_active(false);
    while !stop.is_cancelled() {
        match d.deps.store.hold_lease(&s.holder, s.lease_ttl).await {
            Ok(true) => {
                standing_by = false;
                lead(&d, &stop).await;
            }
            Ok(false) if !standing_by => {
                standing_by = true;
                tracing::info!(holder = %s.holder, "push: another worker holds the region's lease; standing by");
            }
            Ok(false) => {}
            Err(e) => tracing::warn!(error = %e, "push: cannot reach the lease"),
        }
        tokio::select! {
            _ = stop.cancelled() => break,
            _ = tokio::time::sleep(s.lease_ttl / 3) => {}
        }
    }
    if let Err(e) = d.deps.store.release_lease(&s.holder).await {
        tracing::warn!(error = %e, "push: could not release the lease; a standby takes over when it expires");
    }
}

/// Pushes while the lease is held; returns when it is lost or on `stop` (after a drain).
async fn lead(d: &Arc<Inner>, stop: &CancellationToken) {
    let s = &d.deps.settings;
    tracing::info!(holder = %s.holder, partitions = d.committed.len(), "push: holding the region's lease; pushing");
    d.deps.metrics.set_active(true);
    let lost = CancellationToken::new();
    let mut tasks = JoinSet::new();
    for p in 0..d.committed.len() as u32 {
        tasks.spawn(partition(d.clone(), p, lost.clone(), stop.clone()));
    }
    tasks.spawn(report_lag(d.clone(), lost.clone()));
    let mut renewed = Instant::now();
    loop {
        tokio::select! {
            _ = lost.cancelled() => break,
            _ = stop.cancelled() => {
                // Finish what is in flight (partition tasks stop reading and drain), then go.
                let drained = tokio::time::timeout(s.drain, async { while tasks.len() > 1 { tasks.join_next().await; } }).await;
                if drained.is_err() {
                    tracing::warn!("push: in-flight notifications did not finish within the drain time; they are sent again after a restart");
                }
                break;
            }
            _ = tokio::time::sleep(s.lease_ttl / 3) => match d.deps.store.hold_lease(&s.holder, s.lease_ttl).await {
                Ok(true) => renewed = Instant::now(),
                Ok(false) => {
                    tracing::warn!("push: the lease was taken by another worker; stopping at once");
                    lost.cancel();
                }
                Err(e) if renewed.elapsed() > s.lease_ttl * 2 / 3 => {
                    tracing::warn!(error = %e, "push: cannot renew the lease before it expires; stopping");
                    lost.cancel();
                }
                Err(e) => tracing::warn!(error = %e, "push: lease renewal failed; retrying"),
            },
        }
    }
    lost.cancel();
    tasks.shutdown().await;
    d.deps.metrics.set_active(false);
}

/// Retries `f` with backoff until it succeeds (Redis or the registry being down stops progress,
/// never skips a record). The caller's cancellation drops it.
async fn patiently<T, E: std::fmt::Display, F: Future<Output = Result<T, E>>>(what: &'static str, mut f: impl FnMut() -> F) -> T {
    let mut delay = Duration::from_millis(100);
    loop {
        match f().await {
            Ok(v) => return v,
            Err(e) => tracing::warn!(error = %e, what, retry_in_ms = delay.as_millis() as u64, "push: retrying"),
        }
        tokio::time::sleep(delay).await;
        delay = (delay * 2).min(Duration::from_secs(5));
    }
}

#[derive(Debug, thiserror::Error)]
enum PartitionError {
    #[error(transparent)]
    Bus(#[from] BusError),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Keeps one partition going, restarting it after errors, until the lease is lost or `stop`.
async fn partition(d: Arc<Inner>, p: u32, lost: CancellationToken, stop: CancellationToken) {
    let mut delay = Duration::from_millis(200);
    loop {
        match partition_once(&d, p, &lost, &stop).await {
            Ok(()) => return,
            Err(PartitionError::Store(StoreError::LeaseLost)) => {
                tracing::warn!(partition = p, "push: the lease is gone; stopping");
                lost.cancel();
                return;
            }
            Err(e) => tracing::warn!(partition = p, error = %e, retry_in_ms = delay.as_millis() as u64, "push: partition interrupted; resuming from the stored position"),
        }
        tokio::select! {
            _ = lost.cancelled() => return,
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep(delay) => {}
        }
        delay = (delay * 2).min(Duration::from_secs(10));
    }
}

/// Reads partition `p` from its stored position; handles up to `window` records at once and
/// stores the position past each record once it and every record before it are done.
async fn partition_once(d: &Arc<Inner>, p: u32, lost: &CancellationToken, stop: &CancellationToken) -> Result<(), PartitionError> {
    let s = &d.deps.settings;
    let start = match d.deps.store.position(p).await? {
        Some(offset) => offset,
        None => {
            // A new region (or a recreated topic): push from now on, not the history.
            let next = d.deps.bus.bounds(p).await?.next;
            d.deps.store.save_position(&s.holder, p, next).await?;
            next
        }
    };
    d.committed[p as usize].store(start, Ordering::Relaxed);
    let mut reader = d.deps.bus.open(p, start).await?;
    // The reader runs on its own, so that a wait for records never holds up stored positions.
    let (tx, mut rx) = mpsc::channel::<Result<Arc<Record>, BusError>>(s.window);
    let mut reading_task = JoinSet::new();
    reading_task.spawn(async move {
        loop {
            match reader.next_batch(room(&tx)).await {
                Ok(batch) => {
                    for r in batch {
                        if tx.send(Ok(r)).await.is_err() {
                            return;
                        }
                    }
                }
                Err(BusError::Truncated { requested, low }) => {
                    tracing::error!(partition = p, requested, low, "push: records fell out of the bus's retention before they were pushed; continuing at the oldest retained");
                    reader.seek(low);
                }
                Err(BusError::Gap { from, to }) => tracing::error!(partition = p, from, to, "push: the partition has a hole; continuing after it"),
                Err(e) => {
                    let _ = tx.send(Err(e)).await;
                    return;
                }
            }
        }
    });
    let mut window = FuturesOrdered::new();
    let mut published = VecDeque::new();
    let mut reading = true;
    loop {
        if !reading && window.is_empty() {
            return Ok(());
        }
        tokio::select! {
            biased;
            _ = lost.cancelled() => return Ok(()),
            _ = stop.cancelled(), if reading => reading = false,
            Some(mut next) = window.next(), if !window.is_empty() => {
                published.pop_front();
                // Whatever else is done too, then one write.
                while let Some(Some(n)) = futures_util::FutureExt::now_or_never(window.next()) {
                    published.pop_front();
                    next = n;
                }
                d.deps.store.save_position(&s.holder, p, next).await?;
                d.committed[p as usize].store(next, Ordering::Relaxed);
                d.oldest_ms[p as usize].store(published.front().copied().unwrap_or(0), Ordering::Relaxed);
            }
            r = rx.recv(), if reading && window.len() < s.window => match r {
                Some(Ok(record)) => {
                    if published.is_empty() {
                        d.oldest_ms[p as usize].store(record.published_at_ms.max(1), Ordering::Relaxed);
                    }
                    published.push_back(record.published_at_ms.max(1));
                    window.push_back(handle(d.clone(), record));
                }
                Some(Err(e)) => return Err(e.into()),
                None => return Err(BusError::Closed.into()),
            },
        }
    }
}

/// The reader's batch size: what fits in the channel now (at least 1).
fn room<T>(tx: &mpsc::Sender<T>) -> usize {
    tx.capacity().max(1)
}

/// Handles one record; returns the position after it.
async fn handle(d: Arc<Inner>, record: Arc<Record>) -> u64 {
    let next = record.offset + 1;
    let deps = &d.deps;
    // Copies from other regions are pushed by their own region; probes never.
    if record.origin_region != deps.bus.region() || record.account.is_probe() {
        return next;
    }
    let Some(n) = deps.rules.notification(&record) else { return next };
    let readers = patiently("device registry", || deps.registry.readers(&record.account, &record.channel)).await;
    if readers.is_empty() {
        return next;
    }
    // Whoever has a live subscription sees the record on the socket: no notification.
    let key = ChannelKey::new(record.account.clone(), record.channel.clone());
    let snapshot = patiently("presence", || deps.presence.snapshot(&key, deps.settings.presence_limit)).await;
    let looking: HashSet<String> = snapshot.members.into_iter().map(|m| m.user).collect();
    let targets: Vec<Registration> = readers.into_iter().filter(|r| !looking.contains(&r.user)).collect();
    let devices: Vec<String> = targets.iter().map(Registration::device_key).collect();
    let sent = patiently("sent markers", || deps.store.sent(&record.id, &devices)).await;
    let sends = targets.into_iter().zip(sent).filter(|(_, already)| !already).map(|(device, _)| deliver(&d, &record, &n, device));
    futures_util::future::join_all(sends).await;
    next
}

/// Sends `n` to one device and records what came of it.
async fn deliver(d: &Inner, record: &Record, n: &Notification, device: Registration) {
    let deps = &d.deps;
    let key = device.device_key();
    if !deps.sender.allow(&key) {
        deps.metrics.failed(device.platform, "rate_limited");
        return;
    }
    let (outcome, attempts) = deps.sender.send(n, &device, &record.id, &deps.metrics).await;
    match outcome {
        Outcome::Sent => {
            // Counted once recorded: `herald_push_sent_total` is what a restart will not send again.
            patiently("sent markers", || deps.store.mark_sent(&record.id, &key, deps.settings.sent_ttl)).await;
            deps.metrics.sent(device.platform, Duration::from_millis(now_ms().saturating_sub(record.published_at_ms)));
        }
        Outcome::Gone { since_ms } => {
            if patiently("device registry", || deps.registry.remove_invalid(device.platform, &device.device_token, since_ms)).await {
                deps.metrics.removed(device.platform);
                tracing::info!(platform = %device.platform, account = %device.account, user = %device.user, "push: the service says the device token is gone; registration removed");
            }
        }
        Outcome::Failed { reason, detail } | Outcome::Retry { reason, detail, .. } => {
            deps.metrics.failed(device.platform, reason);
            tracing::warn!(platform = %device.platform, account = %record.account, channel = %record.channel, reason, detail, attempts, "push: notification failed; dead-lettered");
            let letter = DeadLetter {
                record: record.id.to_string(),
                channel: format!("{}/{}", record.account, record.channel),
                device: key.clone(),
                user: device.user.clone(),
                reason: reason.to_owned(),
                detail,
                attempts,
            };
            patiently("dead letters", || deps.store.dead_letter(&letter)).await;
        }
    }
}

/// Every few seconds: records not yet handled, and the age of the oldest in flight.
async fn report_lag(d: Arc<Inner>, lost: CancellationToken) {
    loop {
        let mut records = 0;
        for (p, committed) in d.committed.iter().enumerate() {
            if let Ok(b) = d.deps.bus.bounds(p as u32).await {
                records += b.next.saturating_sub(committed.load(Ordering::Relaxed));
            }
        }
        let oldest = d.oldest_ms.iter().map(|o| o.load(Ordering::Relaxed)).filter(|ms| *ms > 0).min();
        d.deps.metrics.lag(records, oldest.map_or(0.0, |ms| now_ms().saturating_sub(ms) as f64 / 1000.0));
        tokio::select! {
            _ = lost.cancelled() => return,
            _ = tokio::time::sleep(Duration::from_secs(5)) => {}
        }
    }
}
