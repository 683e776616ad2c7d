//! The live tail of one channel: `GET /console/api/tail?account=&channel=`, as Server-Sent
//! Events. It subscribes through the engine like a client (same consumer, same hub), but is no
//! client session: it joins no presence and counts as no connection. At most
//! `console.tail_max_per_second` records a second are shown (the rest are counted in a
//! `skipped` event, never queued), each with its cursor, with the configured JSON pointers
//! redacted.

use bytes::Bytes;
use http::{HeaderValue, Response, StatusCode, header};
use http_body_util::{BodyExt, StreamBody};
use hyper::body::Frame;
use std::convert::Infallible;
use std::sync::Arc;
use std::time::{Duration, Instant};

use herald_core::ChannelKey;
use herald_engine::outbox::{CloseReason, OutItem, Outbox};
use herald_engine::subscribe;

use crate::http::{Body, code_response};
use crate::state::Edge;

/// The value redacted fields show.
pub const REDACTED: &str = "[redacted]";

/// Replaces the value at each JSON pointer in `data` that exists with [`REDACTED`].
pub fn redact(data: &mut serde_json::Value, pointers: &[String]) {
    for p in pointers {
        if let Some(v) = data.pointer_mut(p) {
            *v = serde_json::Value::String(REDACTED.into());
        }
    }
}

/// Admits at most `per_second` records in each one-second window.
struct Window {
    per_second: u32,
    started: Instant,
    shown: u32,
    skipped: u64,
}

impl Window {
    fn admit(&mut self) -> bool {
        if self.started.elapsed() >= Duration::from_secs(1) {
            self.started = Instant::now();
            self.shown = 0;
        }
        if self.shown < self.per_second {
            self.shown += 1;
            true
        } else {
            self.skipped += 1;
            false
        }
    }
}

struct TailState {
    outbox: Arc<Outbox>,
    items: Vec<OutItem>,
    window: Window,
    redact: Arc<Vec<String>>,
    done: bool,
    engine: Arc<herald_engine::Engine>,
    sub: Option<Arc<herald_engine::hub::Subscription>>,
}

impl Drop for TailState {
    fn drop(&mut self) {
        // The browser went away: end the subscription.
        if let Some(sub) = self.sub.take() {
            subscribe::close(&self.engine, &sub);
        }
        self.outbox.close(CloseReason::PeerGone);
    }
}

/// One SSE event: `data: {json}`.
fn event(out: &mut Vec<u8>, v: &serde_json::Value) {
    out.extend_from_slice(b"data: ");
    out.extend_from_slice(v.to_string().as_bytes());
    out.extend_from_slice(b"\n\n");
}

/// Turns a queued `message` frame into the tail's event: channel, id, cursor, publish time and
/// the (redacted) data.
fn record_event(frame: &[u8], cursor: &str, redact_paths: &[String]) -> Option<serde_json::Value> {
    let mut m: serde_json::Value = serde_json::from_slice(frame.strip_suffix(b"\n").unwrap_or(frame)).ok()?;
    let mut data = m.get_mut("data").map(serde_json::Value::take).unwrap_or_default();
    redact(&mut data, redact_paths);
    Some(serde_json::json!({
        "type": "record",
        "channel": m.get("channel"),
        "id": m.get("id"),
        "cursor": cursor,
        "published_at": m.get("ts"),
        "data": data,
    }))
}

async fn next_chunk(mut st: TailState) -> Option<(Result<Frame<Bytes>, Infallible>, TailState)> {
    if st.done {
        return None;
    }
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    tick.tick().await;
    loop {
        st.items.clear();
        let close = st.outbox.take(usize::MAX, &mut st.items);
        let mut out = Vec::new();
        for it in &st.items {
            if let OutItem::Record(r) = it
                && st.window.admit()
                && let Some(v) = record_event(&r.frame, &r.cursor, &st.redact)
            {
                event(&mut out, &v);
            }
        }
        if let Some(reason) = close {
            st.done = true;
            let why = if reason == CloseReason::Lagged { "the tail fell behind; open it again" } else { "the tail ended" };
            event(&mut out, &serde_json::json!({"type": "end", "reason": why}));
        }
        if !out.is_empty() {
            return Some((Ok(Frame::data(Bytes::from(out))), st));
        }
        tokio::select! {
            _ = st.outbox.ready() => {}
            _ = tick.tick() => {
                // Once a second: how many were not shown, and a comment that keeps the stream open.
                let mut out = b": keep-alive\n\n".to_vec();
                if st.window.skipped > 0 {
                    event(&mut out, &serde_json::json!({"type": "skipped", "count": st.window.skipped}));
                    st.window.skipped = 0;
                }
                return Some((Ok(Frame::data(Bytes::from(out))), st));
            }
        }
    }
}

/// Opens a tail of `channel` (live records from now on).
pub async fn open(edge: &Arc<Edge>, channel: ChannelKey, per_second: u32, redact_paths: Arc<Vec<String>>) -> Response<Body> {
    let outbox = Outbox::stream(edge.config.max_queued_bytes, edge.config.conflate_above_bytes);
    let opened = match subscribe::open(&edge.engine, outbox.clone(), vec![channel.clone()], None, subscribe::Delivery::default()).await {
        Ok(o) => o,
        Err(code) => return code_response(code, "the bus is unavailable; retry"),
    };
    let cursor = opened.cursor.clone();
    let (sub, _) = subscribe::replay(&edge.engine, opened, None).await;
    let mut first = Vec::new();
    event(&mut first, &serde_json::json!({"type": "open", "account": channel.account.as_str(), "channel": channel.channel.as_str(), "cursor": cursor, "max_per_second": per_second, "redacted": &*redact_paths}));
    let st = TailState {
        outbox,
        items: Vec::new(),
        window: Window { per_second, started: Instant::now(), shown: 0, skipped: 0 },
        redact: redact_paths,
        done: false,
        engine: edge.engine.clone(),
        sub: Some(sub),
    };
    let head = futures_util::stream::once(async move { Ok::<_, Infallible>(Frame::data(Bytes::from(first))) });
    let body = StreamBody::new(futures_util::StreamExt::chain(head, futures_util::stream::unfold(st, next_chunk)));
    let mut resp = Response::new(BodyExt::boxed(body));
    *resp.status_mut() = StatusCode::OK;
    let h = resp.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static("text/event-stream"));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    resp
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn configured_pointers_are_redacted_and_missing_ones_ignored() {
        let mut v = serde_json::json!({"user": {"email": "a@b.c", "name": "A"}, "list": [{"token": "t"}]});
        redact(&mut v, &["/user/email".into(), "/list/0/token".into(), "/nope".into()]);
        assert_eq!(v, serde_json::json!({"user": {"email": REDACTED, "name": "A"}, "list": [{"token": REDACTED}]}));
    }

    #[test]
    fn the_window_admits_its_rate_and_counts_the_rest() {
        let mut w = Window { per_second: 3, started: Instant::now(), shown: 0, skipped: 0 };
        let admitted = (0..10).filter(|_| w.admit()).count();
        assert_eq!((admitted, w.skipped), (3, 7));
    }

    #[test]
    fn a_message_frame_becomes_a_record_event_with_its_cursor() {
        let frame = herald_protocol::encode_message("incidents", "01ID", "CUR", 5, br#"{"user":{"email":"x"},"id":"P1"}"#);
        let v = record_event(&frame, "CUR", &["/user/email".into()]).unwrap();
        assert_eq!(v["cursor"], "CUR");
        assert_eq!(v["channel"], "incidents");
        assert_eq!(v["data"], serde_json::json!({"user": {"email": REDACTED}, "id": "P1"}));
    }
}
