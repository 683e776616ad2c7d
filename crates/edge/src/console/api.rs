//! The console's JSON API. Every call but the login needs the session cookie; every call that
//! changes something also needs the session's CSRF token and a same-origin `Origin`. Refusals
//! are `{"error":{"code","message"}}` with a 4xx status, and change nothing.
//!
//! - `POST /console/login` `{"token"}` (the admin API key), `POST /console/logout`
//! - `GET /console/api/session`: who this node is, the CSRF token
//! - `GET /console/api/cluster`, `POST /console/api/drain` `{"node"}`
//! - `GET /console/api/regions`
//! - `GET /console/api/accounts`, `POST /console/api/limits` `{"account","limits":{…}}`
//! - `GET /console/api/channel?account=&channel=`, `GET /console/api/tail?account=&channel=`
//! - `GET /console/api/health`

use http::{HeaderValue, Method, Request, Response, StatusCode, header};
use http_body_util::{BodyExt, Limited};
use hyper::body::Incoming;
use serde::Deserialize;
use serde_json::json;
use std::sync::Arc;
use std::time::Duration;

use herald_core::{AccountId, ChannelKey, ChannelName};
use herald_protocol::ErrorCode;

use super::control::{ControlCallError, EdgeNode, Limits};
use super::session::{self, CSRF_HEADER};
use super::{Console, fetch, samples};
use crate::auth::KeyOwner;
use crate::http::{Body, error_response, json_response, query_param};
use crate::state::Edge;

/// Metrics the pages read besides the alerts' (the samples keep these too).
pub const PAGE_METRICS: &[&str] = &[
    "herald_deliveries_total",
    "herald_publish_to_fanout_seconds_sum",
    "herald_publish_to_fanout_seconds_count",
    "herald_probe_lag_seconds",
    "herald_connections",
    "herald_replication_lag_records",
    "herald_replication_lag_seconds",
];

fn refuse(status: StatusCode, code: ErrorCode, message: &str) -> Response<Body> {
    error_response(status, code, message)
}

fn control_error(e: ControlCallError) -> Response<Body> {
    let (status, code) = match &e {
        ControlCallError::Invalid(_) => (StatusCode::BAD_REQUEST, ErrorCode::BadRequest),
        ControlCallError::Refused(_) => (StatusCode::CONFLICT, ErrorCode::Forbidden),
        ControlCallError::Unauthenticated(_) => (StatusCode::BAD_GATEWAY, ErrorCode::Unauthorized),
        ControlCallError::Unavailable(_) => (StatusCode::SERVICE_UNAVAILABLE, ErrorCode::Unavailable),
    };
    refuse(status, code, &e.to_string())
}

const NO_CONTROL: &str = "this needs a control plane ([control] endpoints); this node runs on its config file alone";

async fn json_body<T: for<'de> Deserialize<'de>>(req: Request<Incoming>) -> Result<T, Response<Body>> {
    let bytes = Limited::new(req.into_body(), 64 << 10)
        .collect()
        .await
        .map_err(|_| refuse(StatusCode::PAYLOAD_TOO_LARGE, ErrorCode::BadRequest, "request body is too large"))?
        .to_bytes();
    serde_json::from_slice(&bytes).map_err(|e| refuse(StatusCode::BAD_REQUEST, ErrorCode::BadRequest, &format!("body: {e}")))
}

/// Answers `/console/login`, `/console/logout` and `/console/api/*`.
pub async fn handle(console: &Arc<Console>, edge: &Arc<Edge>, req: Request<Incoming>, tls: bool) -> Response<Body> {
    let method = req.method().clone();
    let path = req.uri().path().to_owned();
    if method != Method::GET && !session::same_origin(req.headers()) {
        return refuse(StatusCode::FORBIDDEN, ErrorCode::Forbidden, "cross-origin request refused");
    }
    if path == "/console/login" {
        if method != Method::POST {
            return refuse(StatusCode::METHOD_NOT_ALLOWED, ErrorCode::BadRequest, "POST the admin API key as {\"token\":\"…\"}");
        }
        return login(console, edge, req, tls).await;
    }
    let Some(session) = session::cookie(req.headers()).and_then(|c| console.sessions.verify(c)) else {
        return refuse(StatusCode::UNAUTHORIZED, ErrorCode::Unauthorized, "log in first (POST /console/login)");
    };
    if method != Method::GET {
        let token = req.headers().get(CSRF_HEADER).and_then(|v| v.to_str().ok()).unwrap_or("");
        if !console.sessions.csrf_ok(&session, token) {
            return refuse(StatusCode::FORBIDDEN, ErrorCode::Forbidden, "missing or wrong CSRF token (X-CSRF-Token)");
        }
    }
    match (method, path.as_str()) {
        (Method::POST, "/console/logout") => {
            console.sessions.revoke(&session);
            with_cookie(json_response(StatusCode::OK, r#"{"logged_out":true}"#), &console.sessions.set_cookie("", tls))
        }
        (Method::GET, "/console/api/session") => json_response(StatusCode::OK, session_info(console, edge, &console.sessions.csrf_token(&session.nonce)).to_string()),
        (Method::GET, "/console/api/cluster") => cluster(console, edge).await,
        (Method::POST, "/console/api/drain") => drain(console, req).await,
        (Method::GET, "/console/api/regions") => regions(console),
        (Method::GET, "/console/api/accounts") => accounts(console).await,
        (Method::POST, "/console/api/limits") => put_limits(console, req).await,
        (Method::GET, "/console/api/channel") => match channel_key(&req) {
            Ok(key) => channel(edge, key).await,
            Err((code, message)) => refuse(StatusCode::BAD_REQUEST, code, &message),
        },
        (Method::GET, "/console/api/tail") => match channel_key(&req) {
            Ok(key) => super::tail::open(edge, key, console.tail_max_per_second, console.redact.clone()).await,
            Err((code, message)) => refuse(StatusCode::BAD_REQUEST, code, &message),
        },
        (Method::GET, "/console/api/health") => health(console, edge).await,
        _ => refuse(StatusCode::NOT_FOUND, ErrorCode::BadRequest, "no such console call"),
    }
}

fn with_cookie(mut r: Response<Body>, cookie: &str) -> Response<Body> {
    if let Ok(v) = HeaderValue::from_str(cookie) {
        r.headers_mut().insert(header::SET_COOKIE, v);
    }
    r
}

fn session_info(console: &Console, edge: &Edge, csrf: &str) -> serde_json::Value {
    json!({
        "node": edge.node, "region": edge.region.as_str(), "version": env!("CARGO_PKG_VERSION"),
        "csrf": csrf, "control": console.control.is_some(), "dev": edge.dev.is_some(),
        "tail_max_per_second": console.tail_max_per_second, "redact": &*console.redact,
    })
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Login {
    token: String,
}

async fn login(console: &Arc<Console>, edge: &Arc<Edge>, req: Request<Incoming>, tls: bool) -> Response<Body> {
    if !console.sessions.login_allowed() {
        return refuse(StatusCode::TOO_MANY_REQUESTS, ErrorCode::RateLimited, "too many failed logins; wait a minute");
    }
    let login: Login = match json_body(req).await {
        Ok(l) => l,
        Err(r) => return r,
    };
    if edge.api_keys.owner(login.token.trim()) != Some(KeyOwner::Admin) {
        console.sessions.login_failed();
        return refuse(StatusCode::UNAUTHORIZED, ErrorCode::Unauthorized, "that is not this node's admin API key (auth.admin_api_key)");
    }
    let (cookie, csrf) = console.sessions.issue();
    tracing::info!("console: operator logged in");
    with_cookie(json_response(StatusCode::OK, session_info(console, edge, &csrf).to_string()), &console.sessions.set_cookie(&cookie, tls))
}

/// This node as the Cluster page shows it.
fn this_edge(console: &Console, edge: &Edge) -> EdgeNode {
    let (deliveries_per_second, fanout_lag_ms) = console.load();
    EdgeNode {
        node: edge.node.clone(),
        region: edge.region.as_str().to_owned(),
        address: format!("http://{}", edge.config.listen),
        healthy: edge.is_ready(),
        draining: edge.drain.is_cancelled(),
        connections: edge.session_count() as u64,
        last_heartbeat_ms_ago: 0,
        version: env!("CARGO_PKG_VERSION").into(),
        deliveries_per_second,
        fanout_lag_ms,
    }
}

async fn cluster(console: &Console, edge: &Edge) -> Response<Body> {
    let here = this_edge(console, edge);
    let Some(control) = &console.control else {
        return json_response(StatusCode::OK, json!({"this_node": here.node, "control": null, "edges": [here]}).to_string());
    };
    let (status, nodes) = tokio::join!(control.status(), control.nodes());
    let mut error = None;
    let status = status.map_err(|e| error = Some(e.to_string())).ok();
    let edges = match nodes {
        Ok(n) => n,
        Err(e) => {
            error = Some(e.to_string());
            vec![here.clone()]
        }
    };
    json_response(StatusCode::OK, json!({"this_node": here.node, "control": status, "control_error": error, "edges": edges}).to_string())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct DrainRequest {
    node: String,
}

async fn drain(console: &Console, req: Request<Incoming>) -> Response<Body> {
    let Some(control) = &console.control else { return refuse(StatusCode::CONFLICT, ErrorCode::Forbidden, &format!("{NO_CONTROL}: drain a node with SIGTERM")) };
    let d: DrainRequest = match json_body(req).await {
        Ok(d) => d,
        Err(r) => return r,
    };
    if d.node.is_empty() || !d.node.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.')) {
        return refuse(StatusCode::BAD_REQUEST, ErrorCode::BadRequest, "node must be a node name (A-Z a-z 0-9 - _ .)");
    }
    match control.drain(&d.node).await {
        Ok(()) => {
            tracing::info!(node = %d.node, "console: drain ordered");
            json_response(StatusCode::OK, json!({"drained": d.node}).to_string())
        }
        Err(e) => control_error(e),
    }
}

/// Replication links: lag now and over the kept minutes, from the replicators' metrics.
fn regions(console: &Console) -> Response<Body> {
    let h = console.history.lock();
    let window = h.window(u64::MAX);
    let mut links: std::collections::BTreeMap<String, Vec<(u64, f64, f64)>> = Default::default();
    for s in &window {
        let mut at: std::collections::BTreeMap<String, (f64, f64)> = Default::default();
        for (series, v) in &s.values {
            let Some(link) = series.label("link") else { continue };
            match series.name.as_str() {
                "herald_replication_lag_records" => at.entry(link.to_owned()).or_default().0 += v,
                "herald_replication_lag_seconds" => {
                    let e = at.entry(link.to_owned()).or_default();
                    e.1 = e.1.max(*v);
                }
                _ => {}
            }
        }
        for (link, (records, secs)) in at {
            links.entry(link).or_default().push((s.at_ms, records, secs));
        }
    }
    let links: Vec<_> = links
        .into_iter()
        .map(|(link, points)| {
            let last = points.last().copied().unwrap_or_default();
            json!({"link": link, "lag_records": last.1, "lag_seconds": last.2, "history": points})
        })
        .collect();
    let errors: Vec<_> = console.replicator_errors.lock().iter().map(|(u, e)| json!({"replicator": u, "error": e})).collect();
    json_response(StatusCode::OK, json!({"replicators": console.replicators, "links": links, "errors": errors}).to_string())
}

async fn accounts(console: &Console) -> Response<Body> {
    match &console.control {
        Some(c) => match c.accounts().await {
            Ok(a) => json_response(StatusCode::OK, json!({"source": "control", "editable": true, "accounts": a}).to_string()),
            Err(e) => control_error(e),
        },
        None => json_response(StatusCode::OK, json!({"source": "config", "editable": false, "accounts": console.local_accounts}).to_string()),
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PutLimits {
    account: String,
    limits: Limits,
}

async fn put_limits(console: &Console, req: Request<Incoming>) -> Response<Body> {
    let Some(control) = &console.control else { return refuse(StatusCode::CONFLICT, ErrorCode::Forbidden, &format!("{NO_CONTROL}: limits come from [limits.accounts]")) };
    let p: PutLimits = match json_body(req).await {
        Ok(p) => p,
        Err(r) => return r,
    };
    if let Err(e) = AccountId::new(&p.account) {
        return refuse(StatusCode::BAD_REQUEST, ErrorCode::BadRequest, &format!("account: {e}"));
    }
    match control.put_limits(&p.account, p.limits).await {
        Ok(a) => {
            tracing::info!(account = %p.account, "console: limits changed");
            json_response(StatusCode::OK, serde_json::to_string(&a).unwrap_or_default())
        }
        Err(e) => control_error(e),
    }
}

/// The channel named by `?account=&channel=`, or why not (a code and a message).
fn channel_key(req: &Request<Incoming>) -> Result<ChannelKey, (ErrorCode, String)> {
    let account = AccountId::new(&query_param(req, "account").unwrap_or_default()).map_err(|e| (ErrorCode::BadRequest, format!("account: {e}")))?;
    let channel = ChannelName::new(&query_param(req, "channel").unwrap_or_default()).map_err(|e| (ErrorCode::InvalidChannel, format!("channel: {e}")))?;
    Ok(ChannelKey::new(account, channel))
}

async fn channel(edge: &Edge, key: ChannelKey) -> Response<Body> {
    match edge.presence.snapshot(&key, 200).await {
        Ok(s) => {
            let members: Vec<_> = s.members.iter().map(|m| json!({"user": m.user, "connection_id": m.connection_id})).collect();
            let partition = herald_core::partition_for(&key.account, edge.engine.hub.partitions());
            json_response(StatusCode::OK, json!({"account": key.account.as_str(), "channel": key.channel.as_str(), "partition": partition, "occupancy": s.occupancy, "members": members}).to_string())
        }
        Err(e) => refuse(StatusCode::SERVICE_UNAVAILABLE, ErrorCode::Unavailable, &format!("presence: {e}")),
    }
}

/// `/readyz` of this node, in words.
fn readiness(edge: &Edge) -> (bool, &'static str) {
    if edge.is_ready() {
        (true, "ready")
    } else if edge.drain.is_cancelled() {
        (false, "draining")
    } else if edge.bus_gap_recent() {
        (false, "bus_gap")
    } else if !edge.probe.is_ok() && edge.metrics.render_probe_ever_ok() {
        (false, "probe_stalled")
    } else {
        (false, "starting")
    }
}

/// Another edge's `/readyz` and probe round trip, read from its client listener.
async fn remote_health(node: &EdgeNode) -> serde_json::Value {
    let base = node.address.trim_end_matches('/');
    let t = Duration::from_secs(1);
    let (readyz, metrics_url) = (format!("{base}/readyz"), format!("{base}/metrics"));
    let (ready, metrics) = tokio::join!(fetch::get(&readyz, t), fetch::get(&metrics_url, t));
    let probe = metrics.ok().and_then(|(_, text)| samples::parse(&text, |n| n == "herald_probe_lag_seconds").first().map(|(_, v)| (v * 1000.0).round()));
    match ready {
        Ok((status, body)) => {
            let why = serde_json::from_str::<serde_json::Value>(&body).ok().and_then(|v| v.get("status").and_then(|s| s.as_str()).map(str::to_owned)).unwrap_or_else(|| format!("HTTP {status}"));
            json!({"node": node.node, "region": node.region, "ready": status == 200, "status": why, "probe_rtt_ms": probe, "draining": node.draining})
        }
        Err(e) => json!({"node": node.node, "region": node.region, "ready": false, "status": "unreachable", "error": e, "probe_rtt_ms": probe, "draining": node.draining}),
    }
}

async fn health(console: &Console, edge: &Edge) -> Response<Body> {
    let (ready, why) = readiness(edge);
    let (probe, span_secs, probe_history, sample_count) = {
        let h = console.history.lock();
        let window = h.window(u64::MAX);
        let probe_at = |s: &samples::Sample| s.values.iter().find(|(k, _)| k.name == "herald_probe_lag_seconds").map(|(_, v)| (v * 1000.0).round());
        let history: Vec<_> = window.iter().filter_map(|s| probe_at(s).map(|v| (s.at_ms, v))).collect();
        let span = match (window.first(), window.last()) {
            (Some(a), Some(b)) => (b.at_ms - a.at_ms) / 1000,
            _ => 0,
        };
        (history.last().map(|(_, v)| *v), span, history, window.len())
    };
    let mut edges = vec![json!({"node": edge.node, "region": edge.region.as_str(), "ready": ready, "status": why, "probe_rtt_ms": probe, "draining": edge.drain.is_cancelled(), "probe_history": probe_history})];
    let mut control_error = None;
    if let Some(c) = &console.control {
        match c.nodes().await {
            Ok(nodes) => {
                let others: Vec<_> = nodes.iter().filter(|n| n.node != edge.node).collect();
                edges.extend(futures_util::future::join_all(others.into_iter().map(remote_health)).await);
            }
            Err(e) => control_error = Some(e.to_string()),
        }
    }
    let alerts = console.alerts.lock().states().to_vec();
    json_response(StatusCode::OK, json!({"edges": edges, "control_error": control_error, "alerts": alerts, "samples": sample_count, "samples_span_secs": span_secs}).to_string())
}

/// Keys as the Accounts page shows them: their id and digest, never the key.
pub fn key_digest(stored: &str) -> super::control::KeyDigest {
    let digest = if stored.starts_with("sha256:") { stored.to_owned() } else { crate::auth::hash_api_key(stored) };
    let id = digest.trim_start_matches("sha256:").chars().take(12).collect();
    super::control::KeyDigest { id, sha256: digest }
}

