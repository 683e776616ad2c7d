//! The long-poll transport: `GET /v1/poll?channels=a,b&since=CURSOR`.
//!
//! A request is a short-lived subscription: it replays what exists after `since` (up to `limit`)
//! and returns at once if there is anything, else waits for the first live record or the timeout.
//! The returned `cursor` is the last returned record's (or the position reached), so the next poll
//! continues exactly there.

use bytes::{BufMut, BytesMut};
use http::{Request, Response, StatusCode};
use hyper::body::Incoming;
use std::sync::Arc;
use std::time::Duration;

use herald_protocol::ErrorCode;

use crate::http::{Body, code_response, json_response, query_param};
use herald_engine::outbox::{OutItem, Outbox};
use crate::state::Edge;
use herald_engine::subscribe::{self, ReplayEnd};
use crate::stream_request;

/// The transport's name (presence, webhooks, the authorization proxy).
const TRANSPORT: &str = "poll";

/// Most messages one poll returns.
const MAX_LIMIT: usize = 1000;

/// Answers `GET /v1/poll`.
pub async fn handle(edge: Arc<Edge>, req: Request<Incoming>, peer: std::net::SocketAddr) -> Response<Body> {
    let sr = match stream_request::parse(&edge, &req, peer, TRANSPORT).await {
        Ok(r) => r,
        Err(refusal) => return refusal,
    };
    let num = |name: &str, default: usize| -> Result<usize, String> {
        match query_param(&req, name) {
            None => Ok(default),
            Some(v) => v.parse().map_err(|_| format!("{name} must be a number")),
        }
    };
    let timeout_ms = match num("timeout_ms", edge.config.poll_timeout_ms as usize) {
        Ok(t) => t.min(60_000) as u64,
        Err(m) => return code_response(ErrorCode::BadRequest, &m),
    };
    let limit = match num("limit", 500) {
        Ok(l) => l.clamp(1, MAX_LIMIT),
        Err(m) => return code_response(ErrorCode::BadRequest, &m),
    };
    let _guard = edge.session_guard();
    let _slots = sr.slots;
    // Big enough for `limit` records of the largest size: a poll never lags by its own replay.
    let outbox = Outbox::new((limit + 1) * (edge.config.max_message_bytes + 512));
    let opened = match subscribe::open(&edge.engine, outbox.clone(), sr.channels.clone(), sr.since.as_ref(), subscribe::Delivery::default()).await {
        Ok(o) => o,
        Err(code) => return code_response(code, "the bus is unavailable; retry"),
    };
    let recovered = opened.recovered;
    let mut cursor = opened.cursor.clone();
    let (sub, end) = subscribe::replay(&edge.engine, opened, Some(limit)).await;
    if end == ReplayEnd::Live && outbox.queued_bytes() == 0 {
        tokio::select! {
            _ = outbox.ready() => {}
            _ = tokio::time::sleep(Duration::from_millis(timeout_ms)) => {}
            _ = edge.drain.cancelled() => {}
        }
    }
    subscribe::close(&edge.engine, &sub);
    let mut items = Vec::new();
    outbox.take(usize::MAX, &mut items);
    let mut body = BytesMut::with_capacity(256);
    body.put_slice(b"{\"messages\":[");
    let mut n = 0;
    for it in &items {
        if let OutItem::Record(r) = it {
            if n == limit {
                break;
            }
            if n > 0 {
                body.put_u8(b',');
            }
            body.put_slice(r.frame.strip_suffix(b"\n").unwrap_or(&r.frame));
            cursor = r.cursor.to_string();
            n += 1;
        }
    }
    body.put_slice(b"],\"cursor\":\"");
    body.put_slice(cursor.as_bytes());
    body.put_slice(b"\",\"recovered\":");
    body.put_slice(if recovered { b"true" } else { b"false" });
    body.put_slice(b"}");
    json_response(StatusCode::OK, body.freeze())
}
