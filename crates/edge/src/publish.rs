//! The publish API: `POST /v1/publish`, single or batch, with an API key (backends) or a client
//! token with publish rights (SDKs on SSE or long-poll, which have no socket to publish over).
//! A `traceparent` header makes the publish (and the records' deliveries) part of the caller's
//! trace.

use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Limited};
use hyper::body::Incoming;
use serde::Deserialize;
use serde_json::value::RawValue;
use std::sync::Arc;

use herald_core::{AccountId, ChannelName, TraceParent};
use herald_protocol::ErrorCode;
use tracing::Instrument;

use crate::auth::{Grant, KeyOwner};
use crate::http::{Body, bearer, code_response, json_response, origin};
use crate::state::{Edge, PublishError, PublishItem};

/// Most records in one batch.
pub const MAX_BATCH: usize = 1000;

#[derive(Deserialize)]
struct Item {
    #[serde(default)]
    account: Option<String>,
    channel: Option<String>,
    /// Instead of `channel`: the user whose personal channel the record goes to.
    #[serde(default)]
    user: Option<String>,
    data: Option<Box<RawValue>>,
    #[serde(default)]
    idempotency_key: Option<String>,
}

/// Only looks for `records`: `RawValue` cannot go through `#[serde(flatten)]`.
#[derive(Deserialize)]
struct Probe<'a> {
    #[serde(default, borrow)]
    records: Option<&'a RawValue>,
}

/// Who is publishing.
enum Publisher {
    /// The admin key: any account, named in each record.
    Admin,
    /// An account's API key.
    Key(AccountId),
    /// A client token with publish rights: its account, its `publish` patterns.
    Token(Grant),
}

/// Answers `POST /v1/publish`.
pub async fn handle(edge: Arc<Edge>, req: Request<Incoming>) -> Response<Body> {
    let fail = |code: ErrorCode, msg: &str| {
        edge.metrics.publish_error(code);
        code_response(code, msg)
    };
    let traceparent = req.headers().get("traceparent").and_then(|v| v.to_str().ok()).map(str::to_owned);
    let Some(key) = bearer(&req) else { return fail(ErrorCode::Unauthorized, "an API key or a client token is required (Authorization: Bearer)") };
    let owner = match edge.api_keys.owner(&key) {
        Some(KeyOwner::Admin) => Publisher::Admin,
        Some(KeyOwner::Account(a)) => Publisher::Key(a),
        // Not an API key: a client token with publish rights (how an SDK on SSE or long-poll
        // publishes). A single-session token (`jti`) publishes over its WebSocket only.
        None if key.matches('.').count() == 2 => match edge.verify(&key) {
            Ok(grant) if grant.jti.is_some() => return fail(ErrorCode::Forbidden, "a single-session token (jti) publishes over its WebSocket session only"),
            Ok(grant) if !edge.origin_allowed(&grant.account, origin(&req).as_deref()) => return fail(ErrorCode::Forbidden, "this origin may not publish to this account"),
            Ok(grant) => Publisher::Token(grant),
            Err(e) => return fail(e.code, &e.message),
        },
        None => return fail(ErrorCode::Unauthorized, "unknown API key"),
    };
    let max_body = edge.config.max_message_bytes.saturating_mul(4).max(64 << 10) * 16;
    let bytes = match Limited::new(req.into_body(), max_body).collect().await {
        Ok(b) => b.to_bytes(),
        Err(_) => return fail(ErrorCode::MessageTooLarge, "request body is too large"),
    };
    let parsed = serde_json::from_slice::<Probe<'_>>(&bytes).and_then(|probe| match probe.records {
        Some(r) => serde_json::from_str::<Vec<Item>>(r.get()).map(|v| (true, v)),
        None => serde_json::from_slice::<Item>(&bytes).map(|i| (false, vec![i])),
    });
    let (batch, raw_items) = match parsed {
        Ok(x) => x,
        Err(e) => return fail(ErrorCode::BadRequest, &format!("body is not a publish request: {e}")),
    };
    if raw_items.is_empty() || raw_items.len() > MAX_BATCH {
        return fail(ErrorCode::BadRequest, "a batch holds 1 to 1000 records");
    }
    let mut items = Vec::with_capacity(raw_items.len());
    for it in raw_items {
        let account = match (&owner, it.account) {
            (Publisher::Key(a), None) => a.clone(),
            (Publisher::Token(g), None) => g.account.clone(),
            (Publisher::Key(a), Some(named)) if named == a.as_str() => a.clone(),
            (Publisher::Token(g), Some(named)) if named == g.account.as_str() => g.account.clone(),
            (Publisher::Key(_) | Publisher::Token(_), Some(_)) => return fail(ErrorCode::Forbidden, "this key may only publish to its own account"),
            (Publisher::Admin, Some(named)) => match AccountId::new(&named) {
                Ok(a) => a,
                Err(e) => return fail(ErrorCode::BadRequest, &format!("account: {e}")),
            },
            (Publisher::Admin, None) => return fail(ErrorCode::BadRequest, "the admin key must name the account"),
        };
        let channel = match (it.channel, it.user) {
            (Some(c), None) => ChannelName::new(&c),
            // Deliver to a user: every connection of that `sub` that subscribed to its personal
            // channel, on every device and edge (docs/protocol.md, "Personal channels").
            (None, Some(u)) => ChannelName::personal(&u),
            (Some(_), Some(_)) => return fail(ErrorCode::BadRequest, "give channel or user, not both"),
            (None, None) => return fail(ErrorCode::BadRequest, "channel (or user) is required"),
        };
        let channel = match channel {
            Ok(c) => c,
            Err(e) => return fail(ErrorCode::InvalidChannel, &e.to_string()),
        };
        if let Publisher::Token(g) = &owner
            && !g.may_publish(&channel) {
                return fail(ErrorCode::Forbidden, &format!("token may not publish to {channel}"));
            }
        let Some(data) = it.data else { return fail(ErrorCode::BadRequest, "data is required") };
        items.push(PublishItem { account, channel, data: bytes::Bytes::copy_from_slice(data.get().as_bytes()), idempotency_key: it.idempotency_key });
    }
    // A client's records go past the authorization proxy (when configured): refused, or
    // rewritten. One refusal refuses the batch, as for any other check.
    if let (Publisher::Token(g), Some(p)) = (&owner, &edge.proxies) {
        for it in &mut items {
            match p.publish(g, None, &it.channel, &it.data).await {
                Ok(Some(data)) => it.data = data,
                Ok(None) => {}
                Err((code, message)) => {
                    edge.publish_refused_by_proxy(&it.account, &it.channel, code);
                    return code_response(code, &message);
                }
            }
        }
    }
    // The publisher's trace context: the publish span (and the records) continue its trace. A
    // malformed header starts a new trace, as W3C asks.
    let incoming = traceparent.as_deref().and_then(TraceParent::parse);
    let span = herald_engine::trace::PublishSpan::start(incoming, items.len());
    // With tracing off here, the publisher's context still travels with the records.
    let trace = span.as_ref().map_or(incoming, |s| s.context);
    let first = span.as_ref().map(|_| (items[0].account.clone(), items[0].channel.clone()));
    let log_span = match trace {
        Some(t) => tracing::info_span!("publish", trace_id = %t.trace_id_hex()),
        None => tracing::Span::none(),
    };
    let out = publish_items(&edge, items, trace).instrument(log_span).await;
    if let (Some(s), Some(first)) = (span, first) {
        s.finish(match &out {
            Ok(a) => Ok((first.0.as_str(), first.1.as_str(), a[0].partition, a[0].offset)),
            Err(e) => Err(e.code().as_str()),
        });
    }
    match out {
        Ok(appended) => json_response(StatusCode::OK, answer(&edge, &appended, batch)),
        Err(e) => refused(e),
    }
}

/// The answer's body: `{"cursor","message_id","duplicate"}` for one record (in the order
/// docs/protocol.md shows), `{"results":[…]}`
/// for a batch. Written straight into one string (a `serde_json::Value` per record was a fifth of
/// the publish path's CPU at high ingest rates).
fn answer(edge: &Edge, appended: &[herald_core::Appended], batch: bool) -> String {
    let mut out = String::with_capacity(16 + appended.len() * 96);
    if batch {
        out.push_str("{\"results\":[");
    }
    for (i, a) in appended.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        out.push_str("{\"cursor\":");
        push_json_str(&mut out, &edge.engine.hub.cursor_at(a.offset + 1));
        out.push_str(",\"message_id\":");
        push_json_str(&mut out, a.id.as_str());
        out.push_str(if a.duplicate { ",\"duplicate\":true}" } else { ",\"duplicate\":false}" });
    }
    if batch {
        out.push_str("]}");
    }
    out
}

/// `s` as a JSON string.
fn push_json_str(out: &mut String, s: &str) {
    if s.bytes().all(|b| b >= 0x20 && b != b'"' && b != b'\\') {
        out.push('"');
        out.push_str(s);
        out.push('"');
    } else {
        out.push_str(&serde_json::Value::from(s).to_string());
    }
}

/// Takes the accounts' rate limits, then appends.
async fn publish_items(edge: &Edge, items: Vec<PublishItem>, trace: Option<TraceParent>) -> Result<Vec<herald_core::Appended>, PublishError> {
    let mut per_account: Vec<(AccountId, u32)> = Vec::new();
    for it in &items {
        match per_account.iter_mut().find(|(a, _)| *a == it.account) {
            Some((_, n)) => *n += 1,
            None => per_account.push((it.account.clone(), 1)),
        }
    }
    for (account, n) in &per_account {
        edge.take_account_publish(account, *n)?;
    }
    let n = items.len();
    let appended = edge.publish_traced(items, trace).await?;
    tracing::debug!(records = n, "published");
    Ok(appended)
}

/// A refused publish as an HTTP response: its code's status, and `Retry-After: 1` when waiting
/// helps (a rate limit, the bus away).
fn refused(e: PublishError) -> Response<Body> {
    let mut r = code_response(e.code(), &e.to_string());
    if matches!(e, PublishError::RateLimited(_) | PublishError::Unavailable) {
        r.headers_mut().insert(http::header::RETRY_AFTER, http::HeaderValue::from_static("1"));
    }
    r
}

#[cfg(test)]
mod tests {
    use super::push_json_str;

    #[test]
    fn strings_in_the_answer_are_json_strings() {
        for s in ["c1.8f2a.local.41", "01JDX8ABCDEFGHJKMNPQRSTVWX", "", "a\"b\\c\nd", "é"] {
            let mut out = String::new();
            push_json_str(&mut out, s);
            assert_eq!(serde_json::from_str::<String>(&out).unwrap(), s, "{out}");
        }
    }
}
