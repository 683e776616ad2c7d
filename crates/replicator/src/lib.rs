//! `herald replicate`: copies records from other regions' buses into this region's bus.
//!
//! # How a link works (source region S → target region T)
//! Partition `p` of S's bus is copied into partition `p` of T's (both have the same partition
//! count and Herald's partitioner, so an account's records stay in one partition everywhere).
//! Only records whose origin is S are copied: records S itself got from other regions are
//! skipped, so links form no loops with 2 or 3 regions (full mesh: every region gets every other
//! region's records directly from it). Records of the probe account (`herald_core::PROBE_ACCOUNT`)
//! are region-local and never copied.
//!
//! Each copy keeps the record's id, publish time and channel and adds its origin region, origin
//! offset and the origin log's epoch (`ReplicaLog::append_replicated`; on Kafka the headers
//! `herald-or`, `herald-oo`, `herald-oe`). Progress is not stored anywhere else: on start and
//! after any error, the link reads back the greatest origin offset from S already in T's
//! partition (`ReplicaLog::last_origin_offset`) and continues after it. A copy acknowledged by T
//! is therefore never copied again and an unacknowledged one is retried: exactly once, across
//! crashes, restarts, and either side being down, as long as one process runs a given link.
//!
//! The source is any `Bus` and the target any `ReplicaLog` (herald-core): `herald replicate`
//! links Kafka topics ([`Link`]'s default), and the tests link in-memory buses in one process.
//!
//! # Layout
//! - this file: [`Endpoint`] (one side of a link: how to reach its bus), [`Link`], [`LinkError`]
//!   and [`run`], which keeps a link going, restarting it after errors.
//! - `copy` (private): one connected link, a task per partition.
//! - `metrics` (private): [`Metrics`], the replicator's own Prometheus registry, and the lag.
//! - [`presence`]: the presence mirror between regions' Redis stores.
//!
//! # Metrics
//! `herald_replication_lag_records{link}`: records in S not yet in T;
//! `herald_replication_lag_seconds{link}`: age of the oldest record not yet copied (0 when none);
//! `herald_replicated_total{link}`; `herald_replication_errors_total{link}`.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod copy;
mod metrics;
pub mod presence;

pub use metrics::Metrics;

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

use herald_bus_kafka::{KafkaBus, KafkaBusConfig};
use herald_core::bus::Bus;
use herald_core::{BusError, RegionName, ReplicaLog};

/// One side of a link: how the replicator reaches a region's bus. Connecting may fail (a broker
/// that is down) and is retried with the link.
pub trait Endpoint: Send + Sync + 'static {
    /// The bus this side connects to.
    type Bus: ?Sized + Send + Sync + 'static;

    /// The region whose records the bus holds.
    fn region(&self) -> RegionName;

    /// How errors name this side (a topic).
    fn describe(&self) -> String;

    /// Connects to the bus.
    fn connect(&self) -> impl Future<Output = Result<Arc<Self::Bus>, BusError>> + Send;
}

/// A Kafka topic, connected anew each time the link (re)starts.
impl Endpoint for KafkaBusConfig {
    type Bus = KafkaBus;

    fn region(&self) -> RegionName {
        self.region.clone()
    }

    fn describe(&self) -> String {
        self.topic.clone()
    }

    async fn connect(&self) -> Result<Arc<KafkaBus>, BusError> {
        KafkaBus::connect(self.clone()).await.map(Arc::new)
    }
}

/// A bus already at hand (an in-process bus): connecting is sharing it.
impl<B: Bus + ?Sized> Endpoint for Arc<B> {
    type Bus = B;

    fn region(&self) -> RegionName {
        Bus::region(&**self)
    }

    fn describe(&self) -> String {
        format!("the bus of region {}", Bus::region(&**self))
    }

    async fn connect(&self) -> Result<Arc<B>, BusError> {
        Ok(self.clone())
    }
}

/// One link: where records come from and where they go. By default, Kafka topics.
#[derive(Clone, Debug)]
pub struct Link<S = KafkaBusConfig, T = KafkaBusConfig> {
    /// The source region's bus (its region is the origin copied).
    pub source: S,
    /// This region's bus.
    pub target: T,
}

impl<S: Endpoint, T: Endpoint> Link<S, T> {
    /// `s->t`, the `link` label.
    pub fn name(&self) -> String {
        format!("{}->{}", self.source.region(), self.target.region())
    }
}

/// Why a link stopped copying (it restarts after any of them).
#[derive(Debug, thiserror::Error)]
pub enum LinkError {
    /// A bus could not be reached, read or written.
    #[error(transparent)]
    Bus(#[from] BusError),
    /// The two sides have different partition counts, so partition `p` cannot be copied to `p`.
    #[error("{source_log} has {source_partitions} partitions and {target_log} has {target_partitions}: a link needs the same count on both sides")]
    PartitionsDiffer {
        /// The source side, as [`Endpoint::describe`] names it.
        source_log: String,
        /// Its partition count.
        source_partitions: u32,
        /// The target side.
        target_log: String,
        /// Its partition count.
        target_partitions: u32,
    },
}

/// Runs `link` until `stop`: connects to both sides (retrying while either is down), then copies
/// every partition; any error restarts the link from what the target holds.
pub async fn run<S, T>(link: Link<S, T>, metrics: Arc<Metrics>, stop: CancellationToken)
where
    S: Endpoint,
    S::Bus: Bus,
    T: Endpoint,
    T::Bus: ReplicaLog,
{
    let name = link.name();
    let errors = metrics.counter("herald_replication_errors_total", &name);
    let copied = metrics.counter("herald_replicated_total", &name);
    let mut delay = Duration::from_millis(200);
    while !stop.is_cancelled() {
        let started = std::time::Instant::now();
        match copy::run_once(&link, &metrics, &copied, &stop).await {
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
