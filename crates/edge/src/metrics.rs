//! The edge's metrics, registered on a recorder that is passed in (never a global one), so two
//! edges in one process (tests) keep separate numbers.

use metrics::{Counter, Gauge, Histogram, Key, Label, Metadata, Recorder, Unit};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle, PrometheusRecorder};
use parking_lot::Mutex;
use std::collections::HashMap;
use std::sync::Arc;

use herald_protocol::ErrorCode;

/// Handles to every metric the edge updates, and the renderer for `/metrics`.
pub struct EdgeMetrics {
    recorder: Arc<PrometheusRecorder>,
    handle: PrometheusHandle,
    /// Open client connections (all transports).
    pub connections: Gauge,
    /// Active subscriptions.
    pub subscriptions: Gauge,
    /// Records read from the bus and fanned out by this node.
    pub records_in: Counter,
    /// Records published through this node (API and WebSocket).
    pub records_published: Counter,
    /// Frames queued to subscribers (one per subscriber per record).
    pub deliveries: Counter,
    /// Connections cut because their queue overflowed.
    pub lagged_disconnects: Counter,
    /// Low-priority subscriptions ended to keep a backed-up connection alive.
    pub shed_subscriptions: Counter,
    /// Connections closed for missing heartbeats.
    pub heartbeat_timeouts: Counter,
    /// Publish time to fan-out (enqueue to subscribers), per record.
    pub publish_to_fanout: Histogram,
    /// 1 while draining.
    pub draining: Gauge,
    /// 1 while ready.
    pub ready: Gauge,
    /// Bus read errors in the partition consumers.
    pub bus_errors: Counter,
    /// Records that were dropped from retention before this node dispatched them.
    pub records_skipped: Counter,
    /// Holes in a partition (offsets that stayed missing while later records were there).
    pub bus_gaps: Counter,
    /// Second copies of records (replicator or source restarts) dropped before fan-out.
    pub copies_dropped: Counter,
    /// Presence storage calls that failed (joins, leaves, queries).
    pub presence_errors: Counter,
    /// 1 while the node's probe records come back through the bus in time.
    pub probe_ok: Gauge,
    /// Publish-to-fan-out time of the last probe record, seconds.
    pub probe_lag: Gauge,
    probe_ever_ok: std::sync::atomic::AtomicBool,
    /// Bus partitions this node consumes now (it reads only those with subscribers).
    pub partitions_consumed: Gauge,
    /// Resumes served entirely from the recent-history cache (no bus read).
    pub resumes_from_cache: Counter,
    publish_errors: Mutex<HashMap<ErrorCode, Counter>>,
    limited: Mutex<HashMap<&'static str, Counter>>,
    protocol_errors: Mutex<HashMap<ErrorCode, Counter>>,
}

const META: Metadata<'static> = Metadata::new(module_path!(), metrics::Level::INFO, None);

impl EdgeMetrics {
    /// A fresh registry with every Herald edge metric described.
    pub fn new() -> Arc<Self> {
        let recorder = PrometheusBuilder::new()
            .set_buckets_for_metric(
                Matcher::Full("herald_publish_to_fanout_seconds".into()),
                &[0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5],
            )
            .expect("static buckets are valid")
            .set_buckets_for_metric(Matcher::Full("herald_proxy_seconds".into()), &[0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0])
            .expect("static buckets are valid")
            .build_recorder();
        let handle = recorder.handle();
        let r = &recorder;
        let gauge = |name: &'static str, help: &'static str| {
            r.describe_gauge(name.into(), None, help.into());
            r.register_gauge(&Key::from_static_name(name), &META)
        };
        let counter = |name: &'static str, help: &'static str| {
            r.describe_counter(name.into(), None, help.into());
            r.register_counter(&Key::from_static_name(name), &META)
        };
        r.describe_histogram("herald_publish_to_fanout_seconds".into(), Some(Unit::Seconds), "Publish time to fan-out, per record".into());
        let publish_to_fanout = r.register_histogram(&Key::from_static_name("herald_publish_to_fanout_seconds"), &META);
        r.describe_counter("herald_publish_errors_total".into(), None, "Refused publishes, by error code".into());
        r.describe_counter("herald_protocol_errors_total".into(), None, "Error frames sent to clients, by error code".into());
        r.describe_counter("herald_limited_total".into(), None, "Refusals by a connection or rate limit, by limit".into());
        Arc::new(Self {
            connections: gauge("herald_connections", "Open client connections"),
            subscriptions: gauge("herald_subscriptions", "Active subscriptions"),
            records_in: counter("herald_records_in_total", "Records read from the bus and fanned out"),
            records_published: counter("herald_records_published_total", "Records published through this node"),
            deliveries: counter("herald_deliveries_total", "Frames queued to subscribers"),
            lagged_disconnects: counter("herald_lagged_disconnects_total", "Connections cut for a full send queue"),
            shed_subscriptions: counter("herald_shed_subscriptions_total", "Low-priority subscriptions ended (lagged) so a backed-up connection survives"),
            heartbeat_timeouts: counter("herald_heartbeat_timeouts_total", "Connections closed for missed heartbeats"),
            draining: gauge("herald_draining", "1 while the node drains"),
            ready: gauge("herald_ready", "1 while the node is ready"),
            bus_errors: counter("herald_bus_errors_total", "Bus read errors in partition consumers"),
            records_skipped: counter("herald_records_skipped_total", "Records lost to retention or to a gap before dispatch"),
            bus_gaps: counter("herald_bus_gaps_total", "Offsets that stayed missing from a partition while later records were there"),
            copies_dropped: counter("herald_copies_dropped_total", "Second copies of records dropped before fan-out"),
            presence_errors: counter("herald_presence_errors_total", "Presence storage calls that failed"),
            partitions_consumed: gauge("herald_partitions_consumed", "Bus partitions this node consumes"),
            probe_ok: gauge("herald_probe_ok", "1 while probe records come back through the bus in time"),
            probe_lag: gauge("herald_probe_lag_seconds", "Publish-to-fan-out time of the last probe record"),
            probe_ever_ok: std::sync::atomic::AtomicBool::new(false),
            resumes_from_cache: counter("herald_resumes_from_cache_total", "Resumes served from the history cache"),
            publish_to_fanout,
            publish_errors: Mutex::new(HashMap::new()),
            limited: Mutex::new(HashMap::new()),
            protocol_errors: Mutex::new(HashMap::new()),
            handle,
            recorder: Arc::new(recorder),
        })
    }

    /// The handles the fan-out engine updates, on this registry.
    pub fn engine(&self) -> herald_engine::EngineMetrics {
        herald_engine::EngineMetrics {
            subscriptions: self.subscriptions.clone(),
            records_in: self.records_in.clone(),
            deliveries: self.deliveries.clone(),
            publish_to_fanout: self.publish_to_fanout.clone(),
            bus_errors: self.bus_errors.clone(),
            records_skipped: self.records_skipped.clone(),
            bus_gaps: self.bus_gaps.clone(),
            copies_dropped: self.copies_dropped.clone(),
            partitions_consumed: self.partitions_consumed.clone(),
            resumes_from_cache: self.resumes_from_cache.clone(),
        }
    }

    fn labelled(&self, map: &Mutex<HashMap<ErrorCode, Counter>>, name: &'static str, code: ErrorCode) -> Counter {
        map.lock()
            .entry(code)
            .or_insert_with(|| {
                let key = Key::from_parts(name, vec![Label::new("code", code.as_str())]);
                self.recorder.register_counter(&key, &META)
            })
            .clone()
    }

    /// Registers an extra counter on this registry (for components outside the edge, such as
    /// sources), with labels.
    pub fn counter(&self, name: &'static str, help: &'static str, labels: &[(&'static str, String)]) -> Counter {
        self.recorder.describe_counter(name.into(), None, help.into());
        let labels = labels.iter().map(|(k, v)| Label::new(*k, v.clone())).collect::<Vec<_>>();
        self.recorder.register_counter(&Key::from_parts(name, labels), &META)
    }

    /// Registers an extra histogram (seconds) on this registry, with labels.
    pub fn histogram(&self, name: &'static str, help: &'static str, labels: &[(&'static str, String)]) -> Histogram {
        self.recorder.describe_histogram(name.into(), Some(Unit::Seconds), help.into());
        let labels = labels.iter().map(|(k, v)| Label::new(*k, v.clone())).collect::<Vec<_>>();
        self.recorder.register_histogram(&Key::from_parts(name, labels), &META)
    }

    /// Whether the probe has ever succeeded (distinguishes "starting" from "stalled").
    pub fn render_probe_ever_ok(&self) -> bool {
        self.probe_ever_ok.load(std::sync::atomic::Ordering::Acquire)
    }

    /// Records the probe's verdict.
    pub fn set_probe(&self, ok: bool) {
        if ok {
            self.probe_ever_ok.store(true, std::sync::atomic::Ordering::Release);
        }
        self.probe_ok.set(if ok { 1.0 } else { 0.0 });
    }

    /// Counts a refusal by a limit (`limit` label).
    pub fn limited(&self, limit: &'static str) {
        self.limited
            .lock()
            .entry(limit)
            .or_insert_with(|| {
                let key = Key::from_parts("herald_limited_total", vec![Label::new("limit", limit)]);
                self.recorder.register_counter(&key, &META)
            })
            .increment(1);
    }

    /// Counts a refused publish.
    pub fn publish_error(&self, code: ErrorCode) {
        self.labelled(&self.publish_errors, "herald_publish_errors_total", code).increment(1);
    }

    /// Counts sessions ended by a backend's order (`code`: `disconnected` or `revoked`).
    pub fn ordered_disconnects(&self, code: herald_protocol::DisconnectCode, n: usize) {
        if n > 0 {
            self.counter("herald_ordered_disconnects_total", "Sessions ended by a backend's disconnect or revocation", &[("code", code.as_str().into())]).increment(n as u64);
        }
    }

    /// Counts an error frame sent to a client.
    pub fn protocol_error(&self, code: ErrorCode) {
        self.labelled(&self.protocol_errors, "herald_protocol_errors_total", code).increment(1);
    }

    /// The Prometheus text exposition.
    pub fn render(&self) -> String {
        self.handle.render()
    }
}
