//! The Server-Sent Events transport: `GET /v1/sse?channels=a,b`.
//!
//! All channels of a request share one subscription and so one ordered stream; every `message`
//! event carries its cursor as the SSE `id:`, so the browser's own `Last-Event-ID` resumes exactly.

use bytes::{BufMut, Bytes, BytesMut};
use http::{HeaderValue, Request, Response, StatusCode, header};
use http_body_util::{BodyExt, StreamBody};
use hyper::body::{Frame, Incoming};
use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use herald_core::PresenceMember;
use herald_protocol::{ErrorCode, ServerFrame};

use crate::http::{Body, code_response};
use herald_engine::outbox::{CloseReason, OutItem, Outbox};
use crate::state::Edge;
use crate::{lifecycle, stream_request, subscribe};

/// The transport's name (presence, webhooks, the authorization proxy).
const TRANSPORT: &str = "sse";

/// Answers `GET /v1/sse`.
pub async fn handle(edge: Arc<Edge>, req: Request<Incoming>, peer: std::net::SocketAddr) -> Response<Body> {
    let sr = match stream_request::parse(&edge, &req, peer, TRANSPORT).await {
        Ok(r) => r,
        Err(refusal) => return refusal,
    };
    let guard = edge.session_guard();
    let outbox = Outbox::stream(edge.config.max_queued_bytes, edge.config.conflate_above_bytes);
    let connection_id = lifecycle::connection_id();
    let opened = match subscribe::open(&edge.engine, outbox.clone(), sr.channels.clone(), sr.since.as_ref(), subscribe::Delivery::default()).await {
        Ok(o) => o,
        Err(code) => return code_response(code, "the bus is unavailable; retry"),
    };
    let push = |f: ServerFrame<'_>| outbox.push(OutItem::Frame(f.encode()));
    outbox.push(OutItem::Raw(Bytes::from_static(RETRY_PREAMBLE)));
    push(lifecycle::welcome(&edge, &connection_id, sr.grant.expires_at));
    for ch in &sr.channels {
        push(ServerFrame::Subscribed { id: None, channel: ch.channel.as_str(), cursor: &opened.cursor, recovered: opened.recovered });
    }
    let task_edge = edge.clone();
    let task_outbox = outbox.clone();
    tokio::spawn(async move {
        let edge = task_edge;
        let outbox = task_outbox;
        let _guard = guard;
        // The connection counts against its address and account until it ends.
        let _slots = sr.slots;
        let (sub, _) = subscribe::replay(&edge.engine, opened, None).await;
        let _live = lifecycle::opened(&edge, &connection_id, &sr.grant, lifecycle::Transport::Sse, &outbox).await;
        let member = PresenceMember { connection_id: connection_id.clone(), user: sr.grant.user.clone(), info: sr.grant.info.clone() };
        for ch in &sr.channels {
            lifecycle::join(&edge, ch, member.clone()).await;
        }
        let hb = Duration::from_millis(edge.config.heartbeat_ms);
        let mut heartbeat = tokio::time::interval_at(tokio::time::Instant::now() + hb, hb);
        let expires_in = Duration::from_secs(sr.grant.expires_at.saturating_sub(herald_core::now_ms() / 1000));
        let expiry = tokio::time::sleep(expires_in);
        tokio::pin!(expiry);
        loop {
            tokio::select! {
                _ = heartbeat.tick() => { outbox.push(OutItem::Frame(ServerFrame::Ping {}.encode())); }
                _ = &mut expiry => lifecycle::token_expired(&edge, &outbox),
                _ = edge.drain.cancelled() => lifecycle::drain(&edge, &outbox),
                reason = outbox.closed() => {
                    lifecycle::ended(&edge, reason);
                    break;
                }
            }
        }
        subscribe::close(&edge.engine, &sub);
        for ch in &sr.channels {
            lifecycle::leave(&edge, ch, &connection_id).await;
        }
        lifecycle::closed(&edge, &connection_id, outbox.close_reason()).await;
    });
    let body = StreamBody::new(futures_util::stream::unfold(SseState { outbox, done: false, items: Vec::new(), max_batch: edge.config.max_batch_bytes }, next_chunk));
    let mut resp = Response::new(BodyExt::boxed(body));
    let h = resp.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static("text/event-stream"));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    h.insert("x-accel-buffering", HeaderValue::from_static("no"));
    *resp.status_mut() = StatusCode::OK;
    resp
}

struct SseState {
    outbox: Arc<Outbox>,
    done: bool,
    items: Vec<OutItem>,
    max_batch: usize,
}

impl Drop for SseState {
    fn drop(&mut self) {
        // The client went away (or the stream ended): stop the session task.
        self.outbox.close(CloseReason::PeerGone);
    }
}

fn put_event(out: &mut BytesMut, id: Option<&str>, frame: &[u8]) {
    if let Some(id) = id {
        out.put_slice(b"id: ");
        out.put_slice(id.as_bytes());
        out.put_u8(b'\n');
    }
    out.put_slice(b"data: ");
    out.put_slice(frame.strip_suffix(b"\n").unwrap_or(frame));
    out.put_slice(b"\n\n");
}

async fn next_chunk(mut st: SseState) -> Option<(Result<Frame<Bytes>, Infallible>, SseState)> {
    if st.done {
        return None;
    }
    loop {
        st.items.clear();
        let close = st.outbox.take(st.max_batch, &mut st.items);
        if !st.items.is_empty() || close.is_some() {
            let mut out = BytesMut::new();
            for it in &st.items {
                match it {
                    OutItem::Record(r) => put_event(&mut out, Some(&r.cursor), &r.frame),
                    OutItem::Frame(f) => put_event(&mut out, None, f),
                    OutItem::Raw(b) => out.put_slice(b),
                }
            }
            if st.items.is_empty() {
                st.done = true;
                if close == Some(CloseReason::Lagged) {
                    let e = ServerFrame::Error { id: None, code: ErrorCode::Lagged, message: "send queue overflowed; reconnect and resume" }.encode();
                    put_event(&mut out, None, &e);
                } else {
                    return None;
                }
            }
            return Some((Ok(Frame::data(out.freeze())), st));
        }
        st.outbox.ready().await;
    }
}

/// The first bytes of a stream: how long `EventSource` should wait before reconnecting.
pub const RETRY_PREAMBLE: &[u8] = b"retry: 2000\n\n";
