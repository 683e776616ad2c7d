//! The router of the client listener: one match from method and path to the transport or
//! endpoint that answers, with CORS headers on every answer but an upgrade.

use bytes::Bytes;
use http::{HeaderValue, Method, Request, Response, StatusCode, header};
use hyper::body::Incoming;
use std::convert::Infallible;
use std::sync::Arc;

use herald_protocol::ErrorCode;

use crate::http::{Body, error_response, full, json_response, metrics_response};
use crate::state::Edge;
use crate::{dev, devices, history, poll, publish, server_api, sse, ws};

/// `/readyz`: 200 `ready`, or 503 with why not (`draining`, `bus_gap`, `probe_stalled`,
/// `starting`).
pub fn readyz(edge: &Edge) -> Response<Body> {
    let why = if edge.is_ready() {
        return json_response(StatusCode::OK, r#"{"status":"ready"}"#);
    } else if edge.drain.is_cancelled() {
        "draining"
    } else if edge.bus_gap_recent() {
        "bus_gap"
    } else if !edge.probe.is_ok() && edge.metrics.render_probe_ever_ok() {
        "probe_stalled"
    } else {
        "starting"
    };
    json_response(StatusCode::SERVICE_UNAVAILABLE, format!(r#"{{"status":"{why}"}}"#))
}

/// Routes one request.
pub async fn route(edge: Arc<Edge>, req: Request<Incoming>, peer: std::net::SocketAddr) -> Result<Response<Body>, Infallible> {
    let path = req.uri().path().to_owned();
    let resp = match (req.method().clone(), path.as_str()) {
        (Method::GET, "/v1/ws") => ws::upgrade(edge, req, peer),
        (Method::GET, "/v1/sse") => sse::handle(edge, req, peer).await,
        (Method::GET, "/v1/poll") => poll::handle(edge, req, peer).await,
        (Method::POST, "/v1/publish") => publish::handle(edge, req).await,
        (Method::GET, "/v1/history") => history::handle(edge, req).await,
        (Method::GET, "/v1/channels/info") => history::info(edge, req).await,
        (Method::POST | Method::DELETE | Method::GET, "/v1/devices") => devices::handle(edge, req).await,
        (Method::POST, "/v1/disconnect") => server_api::disconnect(edge, req).await,
        (Method::POST, "/v1/revoke") => server_api::revoke(edge, req).await,
        (Method::GET, "/v1/connections") => server_api::connections(edge, req).await,
        (Method::OPTIONS, "/v1/publish" | "/v1/sse" | "/v1/poll" | "/v1/history" | "/v1/devices") => cors_preflight(),
        (Method::GET, "/healthz") => json_response(StatusCode::OK, r#"{"status":"ok"}"#),
        (Method::GET, "/readyz") => readyz(&edge),
        (Method::GET, "/metrics") => metrics_response(edge.metrics.render()),
        (Method::GET, p) if edge.dev.is_some() && dev::serves(p) => dev::handle(&edge, &req),
        (_, p) if crate::console::serves(p) && let Some(console) = edge.dev.as_ref().and_then(|d| d.console.clone()) => {
            // The console's answers carry no CORS headers: it is used from its own pages only.
            return Ok(crate::console::handle(&console, &edge, req, edge.tls.is_some()).await);
        }
        (_, "/v1/ws" | "/v1/sse" | "/v1/poll" | "/v1/publish" | "/v1/history" | "/v1/channels/info" | "/v1/devices" | "/v1/disconnect" | "/v1/revoke" | "/v1/connections")
        | (_, "/healthz" | "/readyz" | "/metrics") => {
            error_response(StatusCode::METHOD_NOT_ALLOWED, ErrorCode::BadRequest, "method not allowed")
        }
        _ => error_response(StatusCode::NOT_FOUND, ErrorCode::BadRequest, "no such endpoint"),
    };
    Ok(with_cors(resp))
}

fn cors_preflight() -> Response<Body> {
    let mut r = Response::new(full(Bytes::new()));
    *r.status_mut() = StatusCode::NO_CONTENT;
    let h = r.headers_mut();
    h.insert(header::ACCESS_CONTROL_ALLOW_METHODS, HeaderValue::from_static("GET, POST, DELETE, OPTIONS"));
    h.insert(header::ACCESS_CONTROL_ALLOW_HEADERS, HeaderValue::from_static("authorization, content-type, last-event-id"));
    h.insert(header::ACCESS_CONTROL_MAX_AGE, HeaderValue::from_static("600"));
    r
}

fn with_cors(mut r: Response<Body>) -> Response<Body> {
    if r.status() != StatusCode::SWITCHING_PROTOCOLS {
        r.headers_mut().insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, HeaderValue::from_static("*"));
    }
    r
}
