//! The history API, `GET /v1/history?channel=C[&limit=N][&since=CURSOR | &since_ms=T |
//! &before=CURSOR][&account=A]`, a page of a channel's records read from the bus (see
//! `herald_engine::history`). Backends call it with their account's API key (the admin key names
//! the account); an SDK with a client token that may subscribe to the channel.
//!
//! The answer: `{"messages":[<message frames>],"cursor":"…","before":"…"|null,"more":bool,
//! "complete":bool}`. `messages` are oldest first and have the same form and cursors as live
//! `message` frames; `cursor` continues after the page (subscribe from it to go live without a
//! gap), `before` asks for the page before it.
//!
//! Also `GET /v1/channels/info`: a channel's occupancy, its users and its last message ([`info`]).

use bytes::{BufMut, BytesMut};
use http::{Request, Response, StatusCode};
use hyper::body::Incoming;
use std::sync::Arc;

use herald_core::{AccountId, ChannelKey, ChannelName, Cursor};
use herald_engine::history::{self, From, HistoryError};
use herald_protocol::{ErrorCode, encode_message};

use crate::caller::{self, Caller};
use crate::http::{Body, code_response, json_response, query_param};
use crate::state::Edge;

/// Answers `GET /v1/history`.
pub async fn handle(edge: Arc<Edge>, req: Request<Incoming>) -> Response<Body> {
    let fail = |code: ErrorCode, msg: &str| {
        edge.metrics.protocol_error(code);
        code_response(code, msg)
    };
    let (account, channel) = match reader(&edge, &req) {
        Ok(x) => x,
        Err((code, msg)) => return fail(code, &msg),
    };
    let limit = match query_param(&req, "limit").map(|l| l.parse::<usize>()) {
        None => 100,
        Some(Ok(l)) if (1..=history::MAX_LIMIT).contains(&l) => l,
        Some(_) => return fail(ErrorCode::BadRequest, "limit must be 1 to 1000"),
    };
    let cursor = |name: &str| query_param(&req, name).map(|c| Cursor::parse(&c));
    let from = match (cursor("since"), query_param(&req, "since_ms"), cursor("before")) {
        (None, None, None) => From::Latest,
        (Some(Ok(c)), None, None) => From::Since(c),
        (None, Some(ms), None) => match ms.parse() {
            Ok(ms) => From::SinceTime(ms),
            Err(_) => return fail(ErrorCode::BadRequest, "since_ms must be milliseconds since the Unix epoch"),
        },
        (None, None, Some(Ok(c))) => From::Before(c),
        (Some(Err(e)), _, _) | (_, _, Some(Err(e))) => return fail(ErrorCode::InvalidCursor, &e.to_string()),
        _ => return fail(ErrorCode::BadRequest, "give at most one of since, since_ms and before"),
    };
    let page = match history::read(&edge.engine, &ChannelKey::new(account, channel), from, limit).await {
        Ok(p) => p,
        Err(HistoryError::ForeignCursor) => return fail(ErrorCode::InvalidCursor, &HistoryError::ForeignCursor.to_string()),
        Err(HistoryError::Bus(e)) => {
            tracing::warn!(error = %e, "history: the bus cannot be read");
            return fail(ErrorCode::Unavailable, "the bus is unavailable; retry");
        }
    };
    let hub = &edge.engine.hub;
    let mut body = BytesMut::with_capacity(256 + page.records.len() * 256);
    body.put_slice(b"{\"messages\":[");
    for (i, r) in page.records.iter().enumerate() {
        if i > 0 {
            body.put_u8(b',');
        }
        let frame = encode_message(r.channel.as_str(), r.id.as_str(), &hub.cursor_at(r.offset + 1), r.published_at_ms, &r.data);
        body.put_slice(frame.strip_suffix(b"\n").unwrap_or(&frame));
    }
    let tail = serde_json::json!({ "cursor": page.cursor, "before": page.before, "more": page.more, "complete": page.complete });
    body.put_slice(b"],");
    let tail = tail.to_string();
    body.put_slice(&tail.as_bytes()[1..]);
    json_response(StatusCode::OK, body.freeze())
}

/// Answers `GET /v1/channels/info?channel=C[&account=A]`: who is on the channel now and where
/// it ends. `{"channel":C,"occupancy":N,"users":[distinct users, at most 100],"last_message":
/// {"id","cursor","ts"}|null,"cursor":"…"}` — `cursor` is the position to subscribe from to get
/// everything published after this answer. Same authorization as history.
pub async fn info(edge: Arc<Edge>, req: Request<Incoming>) -> Response<Body> {
    let fail = |code: ErrorCode, msg: &str| {
        edge.metrics.protocol_error(code);
        code_response(code, msg)
    };
    let (account, channel) = match reader(&edge, &req) {
        Ok(x) => x,
        Err((code, msg)) => return fail(code, &msg),
    };
    let key = ChannelKey::new(account, channel.clone());
    let snapshot = match edge.presence.snapshot(&key, 1000).await {
        Ok(s) => s,
        Err(e) => {
            edge.metrics.presence_errors.increment(1);
            tracing::warn!(error = %e, "channel info: presence unavailable");
            return fail(ErrorCode::Unavailable, "presence is unavailable; retry");
        }
    };
    let mut users: Vec<&str> = snapshot.members.iter().map(|m| m.user.as_str()).collect();
    users.sort_unstable();
    users.dedup();
    users.truncate(100);
    let page = match history::read(&edge.engine, &key, From::Latest, 1).await {
        Ok(p) => p,
        Err(e) => {
            tracing::warn!(error = %e, "channel info: the bus cannot be read");
            return fail(ErrorCode::Unavailable, "the bus is unavailable; retry");
        }
    };
    let hub = &edge.engine.hub;
    let last = page.records.last().map(|r| serde_json::json!({ "id": r.id.as_str(), "cursor": hub.cursor_at(r.offset + 1), "ts": r.published_at_ms }));
    let body = serde_json::json!({ "channel": channel.as_str(), "occupancy": snapshot.occupancy, "users": users, "last_message": last, "cursor": page.cursor });
    json_response(StatusCode::OK, body.to_string())
}

/// The account and channel a history or info request may read, or why not.
fn reader(edge: &Edge, req: &Request<Incoming>) -> Result<(AccountId, ChannelName), (ErrorCode, String)> {
    let channel = query_param(req, "channel").ok_or((ErrorCode::BadRequest, "channel=NAME is required".to_string()))?;
    let channel = ChannelName::new(&channel).map_err(|e| (ErrorCode::InvalidChannel, e.to_string()))?;
    let account = match caller::identify(edge, req)? {
        Caller::Backend(a) => a,
        Caller::Client(g) if !g.may_subscribe(&channel) => return Err((ErrorCode::Forbidden, "token may not read this channel".into())),
        Caller::Client(g) => g.account,
    };
    Ok((account, channel))
}
