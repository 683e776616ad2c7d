//! `herald webhooks`' metrics: a Prometheus registry of its own (passed down, never global).

use metrics::{Counter, Gauge, Key, Label, Recorder};
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle, PrometheusRecorder};

static META: metrics::Metadata<'static> = metrics::Metadata::new(module_path!(), metrics::Level::INFO, Some(module_path!()));

/// The registry, rendered for `/metrics`.
pub struct Metrics {
    recorder: PrometheusRecorder,
    handle: PrometheusHandle,
    /// 1 while this instance holds the lease (and delivers), 0 while it stands by.
    pub leader: Gauge,
}

impl Default for Metrics {
    fn default() -> Self {
        let recorder = PrometheusBuilder::new().build_recorder();
        let handle = recorder.handle();
        for (name, help) in [
            ("herald_webhooks_delivered_total", "Events delivered (answered 2xx), by endpoint"),
            ("herald_webhooks_failed_total", "Failed delivery attempts, by endpoint and status (an HTTP status, connect, tls, timeout, io)"),
            ("herald_webhooks_dead_lettered_total", "Events that outlived retry_for_secs and went to the dead-letter topic, by endpoint"),
            ("herald_webhooks_feed_gaps_total", "Offsets of the feed topic that stayed missing and were skipped, by endpoint"),
        ] {
            recorder.describe_counter(name.into(), None, help.into());
        }
        recorder.describe_gauge("herald_webhooks_retrying".into(), None, "Events of the batch being retried, by endpoint (0: delivering normally)".into());
        recorder.describe_gauge("herald_webhooks_lag_records".into(), None, "Feed records not yet delivered (or filtered out), by endpoint".into());
        recorder.describe_gauge("herald_webhooks_leader".into(), None, "1 while this instance holds the lease and delivers".into());
        let leader = recorder.register_gauge(&Key::from_static_name("herald_webhooks_leader"), &META);
        Self { recorder, handle, leader }
    }
}

impl Metrics {
    /// Prometheus text.
    pub fn render(&self) -> String {
        self.handle.render()
    }

    fn labels(labels: &[(&'static str, &str)]) -> Vec<Label> {
        labels.iter().map(|(k, v)| Label::new(*k, v.to_string())).collect()
    }

    /// The handles of one endpoint.
    pub(crate) fn endpoint(&self, endpoint: &str) -> EndpointMetrics<'_> {
        let l = Self::labels(&[("endpoint", endpoint)]);
        EndpointMetrics {
            metrics: self,
            endpoint: endpoint.to_owned(),
            delivered: self.recorder.register_counter(&Key::from_parts("herald_webhooks_delivered_total", l.clone()), &META),
            dead_lettered: self.recorder.register_counter(&Key::from_parts("herald_webhooks_dead_lettered_total", l.clone()), &META),
            gaps: self.recorder.register_counter(&Key::from_parts("herald_webhooks_feed_gaps_total", l.clone()), &META),
            retrying: self.recorder.register_gauge(&Key::from_parts("herald_webhooks_retrying", l.clone()), &META),
            lag: self.recorder.register_gauge(&Key::from_parts("herald_webhooks_lag_records", l), &META),
        }
    }
}

/// One endpoint's metrics.
pub(crate) struct EndpointMetrics<'a> {
    metrics: &'a Metrics,
    endpoint: String,
    pub delivered: Counter,
    pub dead_lettered: Counter,
    pub gaps: Counter,
    pub retrying: Gauge,
    pub lag: Gauge,
}

impl EndpointMetrics<'_> {
    /// Counts a failed attempt with its status.
    pub fn failed(&self, status: &str) {
        let key = Key::from_parts("herald_webhooks_failed_total", Metrics::labels(&[("endpoint", &self.endpoint), ("status", status)]));
        self.metrics.recorder.register_counter(&key, &META).increment(1);
    }
}
