//! The push worker's metrics: a Prometheus registry of its own (passed down, never global), and
//! `/metrics` + `/healthz` on a small hyper server.

use metrics::{Counter, Gauge, Histogram, Key, Label, Recorder};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle, PrometheusRecorder};
use std::time::Duration;
use tokio_util::sync::CancellationToken;

use herald_core::Platform;

/// Buckets of the publish-to-push latency, in seconds.
const LATENCY_BUCKETS: &[f64] = &[0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0];

/// The worker's metrics, rendered for `/metrics`.
pub struct Metrics {
    recorder: PrometheusRecorder,
    handle: PrometheusHandle,
    lag_records: Gauge,
    lag_seconds: Gauge,
    active: Gauge,
}

static META: metrics::Metadata<'static> = metrics::Metadata::new(module_path!(), metrics::Level::INFO, Some(module_path!()));

impl Default for Metrics {
    fn default() -> Self {
        let recorder = PrometheusBuilder::new()
            .set_buckets_for_metric(Matcher::Full("herald_push_latency_seconds".into()), LATENCY_BUCKETS)
            .expect("non-empty buckets")
            .build_recorder();
        let handle = recorder.handle();
        let d = |name: &'static str, help: &'static str| (name, help);
        for (name, help) in [
            d("herald_push_sent_total", "Notifications APNs or FCM accepted"),
            d("herald_push_failed_total", "Notifications given up on, by reason (dead-lettered unless rate_limited)"),
            d("herald_push_retries_total", "Requests retried, by reason (429, 5xx, connection, expired credentials)"),
            d("herald_push_invalid_tokens_removed_total", "Registrations removed because the service said the token is gone"),
        ] {
            recorder.describe_counter(name.into(), None, help.into());
        }
        recorder.describe_histogram("herald_push_latency_seconds".into(), Some(metrics::Unit::Seconds), "From a record's publish to its notification's acceptance by APNs or FCM".into());
        recorder.describe_gauge("herald_push_lag_records".into(), None, "Records in this region's bus not yet handled by the push worker".into());
        recorder.describe_gauge("herald_push_lag_seconds".into(), None, "Age of the oldest record the push worker is still handling (0 when idle)".into());
        recorder.describe_gauge("herald_push_active".into(), None, "1 on the worker that holds the region's lease, 0 on a standby".into());
        let gauge = |name: &'static str| recorder.register_gauge(&Key::from_name(name), &META);
        let (lag_records, lag_seconds, active) = (gauge("herald_push_lag_records"), gauge("herald_push_lag_seconds"), gauge("herald_push_active"));
        Self { recorder, handle, lag_records, lag_seconds, active }
    }
}

impl Metrics {
    /// Prometheus text.
    pub fn render(&self) -> String {
        self.handle.render()
    }

    fn counter(&self, name: &'static str, labels: Vec<Label>) -> Counter {
        self.recorder.register_counter(&Key::from_parts(name, labels), &META)
    }

    fn platform(p: Platform) -> Label {
        Label::new("platform", p.as_str())
    }

    /// A notification was accepted, `latency` after its record was published.
    pub fn sent(&self, p: Platform, latency: Duration) {
        self.counter("herald_push_sent_total", vec![Self::platform(p)]).increment(1);
        let h: Histogram = self.recorder.register_histogram(&Key::from_name("herald_push_latency_seconds"), &META);
        h.record(latency.as_secs_f64());
    }

    /// A notification was given up on.
    pub fn failed(&self, p: Platform, reason: &'static str) {
        self.counter("herald_push_failed_total", vec![Self::platform(p), Label::new("reason", reason)]).increment(1);
    }

    /// A request will be tried again.
    pub fn retry(&self, p: Platform, reason: &'static str) {
        self.counter("herald_push_retries_total", vec![Self::platform(p), Label::new("reason", reason)]).increment(1);
    }

    /// A registration was removed because its token is gone.
    pub fn removed(&self, p: Platform) {
        self.counter("herald_push_invalid_tokens_removed_total", vec![Self::platform(p)]).increment(1);
    }

    /// The current lag.
    pub fn lag(&self, records: u64, seconds: f64) {
        self.lag_records.set(records as f64);
        self.lag_seconds.set(seconds);
    }

    /// Whether this worker holds the lease.
    pub fn set_active(&self, active: bool) {
        self.active.set(if active { 1.0 } else { 0.0 });
    }
}

/// Serves `/metrics` and `/healthz` on `listener` until `stop`.
pub async fn serve(listener: tokio::net::TcpListener, metrics: std::sync::Arc<Metrics>, stop: CancellationToken) {
    use http_body_util::Full;
    use hyper::{Method, Response, StatusCode};
    loop {
        let tcp = tokio::select! {
            _ = stop.cancelled() => return,
            accepted = listener.accept() => match accepted {
                Ok((tcp, _)) => tcp,
                Err(_) => {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let metrics = metrics.clone();
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |req: hyper::Request<hyper::body::Incoming>| {
                let (status, content_type, body) = match (req.method(), req.uri().path()) {
                    (&Method::GET, "/metrics") => (StatusCode::OK, "text/plain; version=0.0.4", metrics.render()),
                    (&Method::GET, "/healthz") => (StatusCode::OK, "text/plain", "ok\n".to_owned()),
                    _ => (StatusCode::NOT_FOUND, "text/plain", "not found: /metrics and /healthz only\n".to_owned()),
                };
                let mut resp = Response::new(Full::new(bytes::Bytes::from(body)));
                *resp.status_mut() = status;
                resp.headers_mut().insert(http::header::CONTENT_TYPE, http::HeaderValue::from_static(content_type));
                async move { Ok::<_, std::convert::Infallible>(resp) }
            });
            let _ = hyper::server::conn::http1::Builder::new()
                .timer(hyper_util::rt::TokioTimer::new())
                .header_read_timeout(Duration::from_secs(5))
                .serve_connection(hyper_util::rt::TokioIo::new(tcp), service)
                .await;
        });
    }
}
