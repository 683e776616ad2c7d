//! The HTTP router and helpers shared by the HTTP transports.

use bytes::Bytes;
use http::{HeaderValue, Method, Request, Response, StatusCode, header};
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use std::convert::Infallible;
use std::sync::Arc;

use herald_protocol::ErrorCode;

use crate::state::Edge;
use crate::{dev, poll, publish, sse, ws};

/// The response body type of every handler.
pub type Body = BoxBody<Bytes, Infallible>;

/// A body from bytes.
pub fn full(b: impl Into<Bytes>) -> Body {
    Full::new(b.into()).boxed()
}

/// A JSON response.
pub fn json_response(status: StatusCode, body: impl Into<Bytes>) -> Response<Body> {
    let mut r = Response::new(full(body));
    *r.status_mut() = status;
    r.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    r
}

/// `{"error":{"code":…,"message":…}}` with the given status.
pub fn error_response(status: StatusCode, code: ErrorCode, message: &str) -> Response<Body> {
    let body = serde_json::json!({ "error": { "code": code.as_str(), "message": message } });
    json_response(status, body.to_string())
}

/// The same, with the code's own HTTP status.
pub fn code_response(code: ErrorCode, message: &str) -> Response<Body> {
    error_response(StatusCode::from_u16(code.http_status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR), code, message)
}

/// The value of query parameter `name`, percent-decoded.
pub fn query_param(req: &Request<Incoming>, name: &str) -> Option<String> {
    let q = req.uri().query()?;
    form_urlencoded_parse(q).find(|(k, _)| k == name).map(|(_, v)| v)
}

fn form_urlencoded_parse(q: &str) -> impl Iterator<Item = (String, String)> + '_ {
    q.split('&').filter(|p| !p.is_empty()).map(|pair| {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        (percent_decode(k), percent_decode(v))
    })
}

fn percent_decode(s: &str) -> String {
    let hex = |c: u8| (c as char).to_digit(16).map(|d| d as u8);
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < b.len() => match (hex(b[i + 1]), hex(b[i + 2])) {
                (Some(h), Some(l)) => {
                    out.push(h * 16 + l);
                    i += 2;
                }
                _ => out.push(b'%'),
            },
            c => out.push(c),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The bearer token from `Authorization`, or else `?token=`.
pub fn token_from_request(req: &Request<Incoming>) -> Option<String> {
    bearer(req).or_else(|| query_param(req, "token"))
}

/// The `Origin` header, if any.
pub fn origin(req: &Request<Incoming>) -> Option<String> {
    req.headers().get(header::ORIGIN).and_then(|v| v.to_str().ok()).map(str::to_owned)
}

/// The bearer token from `Authorization` only.
pub fn bearer(req: &Request<Incoming>) -> Option<String> {
    let v = req.headers().get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = v.split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| token.trim().to_owned())
}

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

/// `/metrics`: the rendered registry, in Prometheus's text format.
pub fn metrics_response(text: String) -> Response<Body> {
    let mut r = Response::new(full(text));
    r.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain; version=0.0.4"));
    r
}

/// Routes one request.
pub async fn route(edge: Arc<Edge>, req: Request<Incoming>, peer: std::net::SocketAddr) -> Result<Response<Body>, Infallible> {
    let path = req.uri().path().to_owned();
    let resp = match (req.method().clone(), path.as_str()) {
        (Method::GET, "/v1/ws") => ws::upgrade(edge, req, peer),
        (Method::GET, "/v1/sse") => sse::handle(edge, req, peer).await,
        (Method::GET, "/v1/poll") => poll::handle(edge, req, peer).await,
        (Method::POST, "/v1/publish") => publish::handle(edge, req).await,
        (Method::OPTIONS, "/v1/publish" | "/v1/sse" | "/v1/poll") => cors_preflight(),
        (Method::GET, "/healthz") => json_response(StatusCode::OK, r#"{"status":"ok"}"#),
        (Method::GET, "/readyz") => readyz(&edge),
        (Method::GET, "/metrics") => metrics_response(edge.metrics.render()),
        (Method::GET, p) if edge.dev.is_some() && dev::serves(p) => dev::handle(&edge, &req),
        (_, "/v1/ws" | "/v1/sse" | "/v1/poll" | "/v1/publish" | "/healthz" | "/readyz" | "/metrics") => {
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
    h.insert(header::ACCESS_CONTROL_ALLOW_METHODS, HeaderValue::from_static("GET, POST, OPTIONS"));
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percent_decoding_handles_escapes_and_garbage() {
        assert_eq!(percent_decode("a%2Cb"), "a,b");
        assert_eq!(percent_decode("a+b"), "a b");
        assert_eq!(percent_decode("100%"), "100%");
        assert_eq!(percent_decode("%zz"), "%zz");
        assert_eq!(percent_decode("%4"), "%4");
    }
}
