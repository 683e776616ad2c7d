//! Herald's fan-out engine: from bus partitions to per-connection send queues, with exact
//! resume. It knows nothing of HTTP, tokens or the edge node around it: the edge gives it a bus,
//! its settings and metric handles ([`Engine::new`]), and its transports open subscriptions
//! ([`subscribe::open`], [`subscribe::replay`]) and drain [`outbox::Outbox`]es.
//!
//! # Layout
//! - [`hub`]: the fan-out hub, the replay/live seam per partition, the history cache, rate gates
//!   and latest-value keys.
//! - [`outbox`]: a connection's bounded send queue (priority lanes, conflation, lagged cuts).
//! - [`subscribe`]: opening a subscription at a cursor and replaying up to the seam.
//! - [`consumer`]: partition consumers, started on a partition's first subscription.
//! - [`history`]: a channel's history read from the bus, in pages (the history API).
//! - [`copies`]: telling a second copy of a record (replicator or source restart) from a new
//!   one, so none reaches a client twice.
//! - [`trace`]: the delivery spans of sampled records (OpenTelemetry), joined to the publisher's
//!   trace.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod consumer;
pub mod copies;
pub mod history;
pub mod hub;
pub mod outbox;
pub mod subscribe;
pub mod trace;

use metrics::{Counter, Gauge, Histogram};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use herald_core::{Bus, BusError, ChannelPattern, GaplessReader, PartitionReader, Priority};

use consumer::PartitionConsumers;
use hub::Hub;

/// How long a node stays unready after one of its partition readers confirmed a hole in the bus.
pub const BUS_GAP_UNREADY_MS: u64 = 60_000;

/// What the engine is tuned with (the edge's `[edge]` and `[bus]` settings, already parsed).
#[derive(Clone, Debug)]
pub struct EngineSettings {
    /// A connection's send queue limit, bytes; over it the connection is cut as lagged.
    pub max_queued_bytes: usize,
    /// Records per partition kept for resumes without a bus read.
    pub history_cache_records: usize,
    /// How long a partition's consumer keeps running after its last subscription left.
    pub consumer_linger: Duration,
    /// How long a reader waits for a missing offset before it reports a hole.
    pub gap_confirm: Duration,
    /// Latest-value channels: patterns and the JSON pointer of their key (empty: the channel).
    pub latest_value: Vec<(ChannelPattern, String)>,
    /// Channel priorities; the first matching pattern wins, others are normal.
    pub priorities: Vec<(ChannelPattern, Priority)>,
}

impl Default for EngineSettings {
    fn default() -> Self {
        Self {
            max_queued_bytes: 1 << 20,
            history_cache_records: 2000,
            consumer_linger: Duration::from_secs(30),
            gap_confirm: Duration::from_secs(5),
            latest_value: Vec::new(),
            priorities: Vec::new(),
        }
    }
}

/// The metric handles the engine updates; the edge registers them on its recorder.
#[derive(Clone)]
pub struct EngineMetrics {
    /// Active subscriptions.
    pub subscriptions: Gauge,
    /// Records read from the bus and fanned out by this node.
    pub records_in: Counter,
    /// Frames queued to subscribers (one per subscriber per record).
    pub deliveries: Counter,
    /// Publish time to fan-out, per record, seconds.
    pub publish_to_fanout: Histogram,
    /// Bus read errors in the partition consumers.
    pub bus_errors: Counter,
    /// Records dropped from retention (or lost to a hole) before this node dispatched them.
    pub records_skipped: Counter,
    /// Holes in a partition.
    pub bus_gaps: Counter,
    /// Second copies of records dropped before fan-out.
    pub copies_dropped: Counter,
    /// Bus partitions this node consumes now.
    pub partitions_consumed: Gauge,
    /// Resumes served entirely from the history cache.
    pub resumes_from_cache: Counter,
}

impl EngineMetrics {
    /// Handles that record nothing (tests and tools).
    pub fn noop() -> Self {
        Self {
            subscriptions: Gauge::noop(),
            records_in: Counter::noop(),
            deliveries: Counter::noop(),
            publish_to_fanout: Histogram::noop(),
            bus_errors: Counter::noop(),
            records_skipped: Counter::noop(),
            bus_gaps: Counter::noop(),
            copies_dropped: Counter::noop(),
            partitions_consumed: Gauge::noop(),
            resumes_from_cache: Counter::noop(),
        }
    }
}

/// One node's fan-out: its bus, hub and partition consumers.
pub struct Engine {
    /// The bus records are read from.
    pub bus: Arc<dyn Bus>,
    /// The fan-out hub.
    pub hub: Hub,
    /// The partition consumers feeding it.
    pub consumers: PartitionConsumers,
    /// Metric handles.
    pub metrics: EngineMetrics,
    /// Settings.
    pub settings: EngineSettings,
    /// When a partition reader last confirmed a hole in the bus (ms since the epoch; 0: never).
    bus_gap_at_ms: AtomicU64,
}

impl Engine {
    /// An engine on `bus`.
    pub fn new(bus: Arc<dyn Bus>, settings: EngineSettings, metrics: EngineMetrics) -> Arc<Self> {
        let hub = Hub::new(bus.partitions(), bus.epoch(), bus.region(), metrics.clone(), settings.history_cache_records)
            .with_latest_value(settings.latest_value.clone())
            .with_priorities(settings.priorities.clone());
        let consumers = PartitionConsumers::new(bus.partitions(), settings.consumer_linger);
        Arc::new(Self { bus, hub, consumers, metrics, settings, bus_gap_at_ms: AtomicU64::new(0) })
    }

    /// Opens a reader on `partition` at `from` that never moves past an offset it has not
    /// returned, whatever the adapter's reader does ([`GaplessReader`]). Every read of the bus
    /// by the engine goes through it.
    pub async fn open_reader(&self, partition: u32, from: u64) -> Result<Box<dyn PartitionReader>, BusError> {
        let raw = self.bus.open(partition, from).await?;
        Ok(Box::new(GaplessReader::new(raw, self.settings.gap_confirm)))
    }

    /// Records that a partition reader confirmed a hole in the bus: [`Engine::bus_gap_recent`]
    /// says so for [`BUS_GAP_UNREADY_MS`].
    pub fn note_bus_gap(&self) {
        self.bus_gap_at_ms.store(herald_core::now_ms().max(1), Ordering::Release);
    }

    /// Whether a hole in the bus was confirmed within the last [`BUS_GAP_UNREADY_MS`].
    pub fn bus_gap_recent(&self) -> bool {
        let at = self.bus_gap_at_ms.load(Ordering::Acquire);
        at > 0 && herald_core::now_ms().saturating_sub(at) < BUS_GAP_UNREADY_MS
    }
}
