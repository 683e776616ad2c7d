//! The operator's web console: `/console/` on the admin listener (and on the main listener in
//! `herald dev`), behind the admin API key. Pages: Cluster, Regions, Accounts, Channels (with a
//! live tail) and Health; docs/console.md shows them.
//!
//! - [`session`]: login cookie, CSRF token, Origin check.
//! - [`api`]: the JSON API the pages call; [`tail`]: the live tail (SSE).
//! - [`control`]: what the console asks of a control plane (a trait the binary implements).
//! - [`samples`]: the last minutes of metrics; [`alerts`]: the PrometheusRule's rules over them.
//! - [`fetch`]: plain-HTTP GETs of other processes' `/readyz` and `/metrics`.
//! - The pages themselves are static files in `crates/edge/console/`, compiled in.

pub mod alerts;
pub mod api;
pub mod control;
pub mod fetch;
pub mod samples;
pub mod session;
pub mod tail;

use bytes::Bytes;
use http::{HeaderValue, Method, Request, Response, StatusCode, header};
use hyper::body::Incoming;
use parking_lot::Mutex;
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

use herald_config::Config;
use herald_protocol::ErrorCode;

use crate::http::{Body, error_response, full};
use crate::state::Edge;

pub use control::{ControlCallError, ControlView};

/// How often the console samples metrics, and how long it keeps them.
const SAMPLE_EVERY: Duration = Duration::from_secs(5);
const KEEP: Duration = Duration::from_secs(600);

/// One console: its sessions, settings, control plane and metric history.
pub struct Console {
    sessions: session::Sessions,
    tail_max_per_second: u32,
    redact: Arc<Vec<String>>,
    replicators: Vec<String>,
    control: Option<Arc<dyn ControlView>>,
    /// Accounts from the config file (shown when there is no control plane).
    local_accounts: Vec<control::AccountView>,
    history: Mutex<samples::History>,
    alerts: Mutex<alerts::AlertTracker>,
    /// The last error reading each replicator's metrics.
    replicator_errors: Mutex<Vec<(String, String)>>,
}

impl Console {
    /// A console from `[console]`, reaching the control plane through `control` when there is
    /// one; without one, the Accounts page shows `[auth.account_keys]` and `[limits.accounts]`.
    pub fn new(full: &Config, control: Option<Arc<dyn ControlView>>) -> Arc<Self> {
        let config = &full.console;
        let mut names: Vec<&herald_core::AccountId> = full.auth.account_keys.keys().chain(full.limits.accounts.keys()).collect();
        names.sort();
        names.dedup();
        let local_accounts = names
            .into_iter()
            .map(|a| {
                let l = full.limits.accounts.get(a).cloned().unwrap_or_default();
                control::AccountView {
                    name: a.as_str().to_owned(),
                    keys: full.auth.account_keys.get(a).into_iter().flatten().map(|k| api::key_digest(k)).collect(),
                    token_keys: Vec::new(),
                    limits: control::Limits {
                        connections: l.connections.unwrap_or(0) as u64,
                        publish_per_second: l.publish_per_second.unwrap_or(0).into(),
                        max_subscriptions: l.max_subscriptions.unwrap_or(0).min(u32::MAX as usize) as u32,
                        max_message_bytes: l.max_message_bytes.unwrap_or(0).min(u32::MAX as usize) as u32,
                    },
                }
            })
            .collect();
        Arc::new(Self {
            local_accounts,
            sessions: session::Sessions::new(config.session_ttl_secs),
            tail_max_per_second: config.tail_max_per_second,
            redact: Arc::new(config.redact.clone()),
            replicators: config.replicators.clone(),
            control,
            history: Mutex::new(samples::History::new(KEEP.as_millis() as u64)),
            alerts: Mutex::new(alerts::AlertTracker::default()),
            replicator_errors: Mutex::new(Vec::new()),
        })
    }

    /// Samples `edge`'s metrics (and the replicators') every few seconds until `stop`, and
    /// evaluates the alerts on each sample.
    pub async fn run_sampler(self: Arc<Self>, edge: Arc<Edge>, stop: CancellationToken) {
        let names = alerts::metric_names();
        let keep = move |n: &str| names.iter().any(|k| k == n) || api::PAGE_METRICS.contains(&n);
        // The first sample one interval after start: not a picture of the node still starting.
        let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + SAMPLE_EVERY, SAMPLE_EVERY);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = tick.tick() => {}
            }
            let mut values = samples::parse(&edge.metrics.render(), &keep);
            let mut errors = Vec::new();
            for url in &self.replicators {
                match fetch::get(&format!("{}/metrics", url.trim_end_matches('/')), Duration::from_secs(2)).await {
                    Ok((200, text)) => values.extend(samples::parse(&text, &keep).into_iter().map(|(mut s, v)| {
                        s.labels.push(("replicator".into(), url.clone()));
                        s.labels.sort();
                        (s, v)
                    })),
                    Ok((status, _)) => errors.push((url.clone(), format!("HTTP {status}"))),
                    Err(e) => errors.push((url.clone(), e)),
                }
            }
            *self.replicator_errors.lock() = errors;
            let mut h = self.history.lock();
            h.push(samples::Sample { at_ms: herald_core::now_ms(), values });
            self.alerts.lock().update(&h);
        }
    }

    /// Deliveries per second and mean publish-to-fan-out milliseconds over the last minute,
    /// from the samples (what heartbeats report to the control plane).
    pub fn load(&self) -> (f64, u64) {
        let h = self.history.lock();
        let w = h.window(60_000);
        let total = |name: &str| -> Option<(f64, u64)> {
            let s = w.last()?.values.iter().find(|(s, _)| s.name == name)?.0.clone();
            samples::increase(&w, &s)
        };
        let rate = total("herald_deliveries_total").map_or(0.0, |(n, ms)| n / (ms as f64 / 1000.0));
        let lag = match (total("herald_publish_to_fanout_seconds_sum"), total("herald_publish_to_fanout_seconds_count")) {
            (Some((sum, _)), Some((count, _))) if count > 0.0 => (sum / count * 1000.0).round() as u64,
            _ => 0,
        };
        (rate, lag)
    }
}

/// The pages, compiled in.
mod assets {
    pub const INDEX: &str = include_str!("../../console/index.html");
    pub const JS: &str = include_str!("../../console/console.js");
    pub const CSS: &str = include_str!("../../console/console.css");
}

/// Whether `path` is the console's.
pub fn serves(path: &str) -> bool {
    path == "/console" || path.starts_with("/console/")
}

fn asset(body: &'static str, content_type: &'static str) -> Response<Body> {
    let mut r = Response::new(full(Bytes::from_static(body.as_bytes())));
    r.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    r
}

/// Headers on every console answer: no caching, no framing, scripts and styles from here only.
fn hardened(mut r: Response<Body>) -> Response<Body> {
    let h = r.headers_mut();
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    h.insert(header::REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static("default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; frame-ancestors 'none'; form-action 'self'"),
    );
    r
}

/// Answers a console request. `tls`: the listener serves TLS (the cookie is then `Secure`).
pub async fn handle(console: &Arc<Console>, edge: &Arc<Edge>, req: Request<Incoming>, tls: bool) -> Response<Body> {
    let path = req.uri().path().to_owned();
    let resp = match (req.method().clone(), path.as_str()) {
        (Method::GET, "/console") => {
            let mut r = Response::new(full(Bytes::new()));
            *r.status_mut() = StatusCode::MOVED_PERMANENTLY;
            r.headers_mut().insert(header::LOCATION, HeaderValue::from_static("/console/"));
            r
        }
        (Method::GET, "/console/") => asset(assets::INDEX, "text/html; charset=utf-8"),
        (Method::GET, "/console/console.js") => asset(assets::JS, "text/javascript; charset=utf-8"),
        (Method::GET, "/console/console.css") => asset(assets::CSS, "text/css; charset=utf-8"),
        (_, p) if p == "/console/login" || p == "/console/logout" || p.starts_with("/console/api/") => api::handle(console, edge, req, tls).await,
        _ => error_response(StatusCode::NOT_FOUND, ErrorCode::BadRequest, "no such console page"),
    };
    hardened(resp)
}
