//! The replicator's metrics: a Prometheus registry of its own (passed down, never global), and
//! the per-partition lag summed into each link's gauges.

use metrics::{Counter, Gauge, Key, Label, Recorder};
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle, PrometheusRecorder};
use std::sync::atomic::{AtomicU64, Ordering};

use herald_core::now_ms;

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

    pub(crate) fn gauge(&self, name: &'static str, link: &str) -> Gauge {
        self.recorder.register_gauge(&Self::key(name, link), &META)
    }

    pub(crate) fn counter(&self, name: &'static str, link: &str) -> Counter {
        self.recorder.register_counter(&Self::key(name, link), &META)
    }
}

/// Per-partition lag, summed into the link's gauges.
pub(crate) struct Lag {
    records: Vec<AtomicU64>,
    oldest_ms: Vec<AtomicU64>,
    records_gauge: Gauge,
    seconds_gauge: Gauge,
}

impl Lag {
    /// Lag gauges of link `name` over `partitions` partitions.
    pub(crate) fn new(metrics: &Metrics, name: &str, partitions: usize) -> Self {
        Self {
            records: (0..partitions).map(|_| AtomicU64::new(0)).collect(),
            oldest_ms: (0..partitions).map(|_| AtomicU64::new(0)).collect(),
            records_gauge: metrics.gauge("herald_replication_lag_records", name),
            seconds_gauge: metrics.gauge("herald_replication_lag_seconds", name),
        }
    }

    /// Partition `p` is `records` behind; the oldest of them was published at `oldest_ms` (0:
    /// none).
    pub(crate) fn set(&self, p: usize, records: u64, oldest_ms: u64) {
        self.records[p].store(records, Ordering::Relaxed);
        self.oldest_ms[p].store(oldest_ms, Ordering::Relaxed);
        self.records_gauge.set(self.records.iter().map(|a| a.load(Ordering::Relaxed)).sum::<u64>() as f64);
        let oldest = self.oldest_ms.iter().map(|a| a.load(Ordering::Relaxed)).filter(|ms| *ms > 0).min();
        self.seconds_gauge.set(oldest.map(|ms| now_ms().saturating_sub(ms) as f64 / 1000.0).unwrap_or(0.0));
    }
}
