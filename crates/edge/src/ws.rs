//! The WebSocket transport.
//!
//! Reading uses tokio-tungstenite (frame parsing, unmasking, control frames, size limits) over the
//! socket's read half. Writing bypasses it: the connection's writer takes every queued frame and
//! writes them as one text message with one vectored write straight from the shared, already
//! encoded buffers, so a record fanned out to 10k connections is never copied per connection, and
//! an idle connection holds no write buffer at all. Frames tungstenite itself writes (pong, the
//! close reply) arrive through [`LoopbackIo`] as already-framed bytes and go through the same queue.

use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use http::{HeaderValue, Request, Response, StatusCode, header};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use std::io::IoSlice;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::TcpStream;
use tokio::time::Instant;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;
use tokio_tungstenite::tungstenite::protocol::{Message, Role, WebSocketConfig};
use tokio_tungstenite::tungstenite::Error as WsError;
use tracing::Instrument;

use herald_protocol::{ClientFrame, ErrorCode, PROTOCOL_VERSION, ServerFrame, decode_client_frame, split_batch};

use crate::auth::Grant;
use crate::http::{Body, error_response, token_from_request};
use herald_engine::outbox::{CloseReason, OutItem, Outbox, OutboxEvent};
use crate::session::Session;
use crate::state::Edge;

/// The JSON subprotocol name.
pub const SUBPROTOCOL_JSON: &str = "herald.v1.json";

/// Answers `GET /v1/ws`: checks the handshake and the token (when sent as a header or query),
/// replies `101`, and runs the connection on its own task.
pub fn upgrade(edge: Arc<Edge>, req: Request<Incoming>, peer: std::net::SocketAddr) -> Response<Body> {
    let h = req.headers();
    let has = |name: header::HeaderName, want: &str| {
        h.get_all(name).iter().any(|v| v.to_str().is_ok_and(|s| s.split(',').any(|t| t.trim().eq_ignore_ascii_case(want))))
    };
    if !has(header::UPGRADE, "websocket") || !has(header::CONNECTION, "upgrade") {
        return error_response(StatusCode::UPGRADE_REQUIRED, ErrorCode::BadRequest, "this endpoint speaks WebSocket");
    }
    if h.get(header::SEC_WEBSOCKET_VERSION).map(|v| v.as_bytes()) != Some(b"13") {
        return error_response(StatusCode::BAD_REQUEST, ErrorCode::BadRequest, "Sec-WebSocket-Version must be 13");
    }
    let Some(key) = h.get(header::SEC_WEBSOCKET_KEY) else {
        return error_response(StatusCode::BAD_REQUEST, ErrorCode::BadRequest, "missing Sec-WebSocket-Key");
    };
    if edge.drain.is_cancelled() {
        return error_response(StatusCode::SERVICE_UNAVAILABLE, ErrorCode::ShuttingDown, "this node is draining");
    }
    let ip_slot = match edge.limits.admit_ip(peer.ip()) {
        Ok(s) => s,
        Err(l) => return error_response(StatusCode::TOO_MANY_REQUESTS, ErrorCode::RateLimited, l.message()),
    };
    let origin = crate::http::origin(&req);
    let accept = derive_accept_key(key.as_bytes());
    let wants_json = has(header::SEC_WEBSOCKET_PROTOCOL, SUBPROTOCOL_JSON);
    let grant = match token_from_request(&req) {
        Some(t) => match edge.verify_for_session(&t) {
            Ok(g) => Some(g),
            Err(e) => {
                edge.metrics.protocol_error(e.code);
                return error_response(StatusCode::UNAUTHORIZED, e.code, &e.message);
            }
        },
        None => None,
    };
    // With the token in the handshake, refuse before upgrading: the client sees a plain status.
    let mut account_slot = None;
    if let Some(g) = &grant {
        if !edge.origin_allowed(&g.account, origin.as_deref()) {
            return error_response(StatusCode::FORBIDDEN, ErrorCode::Forbidden, "this origin may not connect to this account");
        }
        match edge.limits.admit_account(&g.account) {
            Ok(s) => account_slot = Some(s),
            Err(l) => return error_response(StatusCode::TOO_MANY_REQUESTS, ErrorCode::RateLimited, l.message()),
        }
    }
    let admission = Admission { _ip: ip_slot, account: account_slot, origin };
    let span = tracing::info_span!("ws", client = %peer, conn = tracing::field::Empty, account = tracing::field::Empty);
    // Taken before spawning so that the task does not keep room for the whole request.
    let on_upgrade = hyper::upgrade::on(req);
    tokio::spawn(
        async move {
            match on_upgrade.await {
                Ok(upgraded) => run(edge, upgraded, grant, admission).await,
                Err(e) => tracing::debug!(error = %e, "upgrade failed"),
            }
        }
        .instrument(span),
    );
    let mut resp = Response::new(crate::http::full(Bytes::new()));
    *resp.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
    let rh = resp.headers_mut();
    rh.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
    rh.insert(header::CONNECTION, HeaderValue::from_static("Upgrade"));
    rh.insert(header::SEC_WEBSOCKET_ACCEPT, HeaderValue::from_str(&accept).expect("base64 is a valid header"));
    if wants_json {
        rh.insert(header::SEC_WEBSOCKET_PROTOCOL, HeaderValue::from_static(SUBPROTOCOL_JSON));
    }
    resp
}

/// What the handshake established about a connection: its places in the limit counts and the
/// browser origin it came from.
struct Admission {
    _ip: crate::limits::IpSlot,
    account: Option<crate::limits::AccountSlot>,
    origin: Option<String>,
}

async fn run(edge: Arc<Edge>, upgraded: hyper::upgrade::Upgraded, grant: Option<Grant>, admission: Admission) {
    // The common case is a plain TCP socket: take it back from hyper and split it without locks.
    match upgraded.downcast::<TokioIo<TcpStream>>() {
        Ok(parts) => {
            let (r, w) = parts.io.into_inner().into_split();
            // `read_buf` is a view into hyper's whole (8 KiB) read buffer: copy out its bytes and
            // drop it now, or every idle connection would pin that buffer for its whole life.
            let prefix = if parts.read_buf.is_empty() { Bytes::new() } else { Bytes::copy_from_slice(&parts.read_buf) };
            drop(parts.read_buf);
            run_halves(edge, r, w, prefix, grant, admission).await
        }
        Err(upgraded) => {
            // Not a plain TCP socket (e.g. TLS): split with a lock. Boxed, so that this rarer
            // variant does not double the size of every connection's task.
            let (r, w) = tokio::io::split(TokioIo::new(upgraded));
            Box::pin(run_halves(edge, r, w, Bytes::new(), grant, admission)).await
        }
    }
}

fn ws_config(edge: &Edge) -> WebSocketConfig {
    WebSocketConfig::default()
        // The initial read buffer, held by every idle connection: client frames are small, and
        // tungstenite reserves a whole frame's length once its header is read, so 256 bytes
        // costs no extra reads for them (1 KiB before: 0.75 KiB more per idle connection).
        .read_buffer_size(256)
        .write_buffer_size(0)
        .max_write_buffer_size(64 << 10)
        .max_message_size(Some(edge.config.max_frame_bytes))
        .max_frame_size(Some(edge.config.max_frame_bytes))
}

fn connection_id() -> String {
    format!("{:016x}", rand::random::<u64>())
}

async fn run_halves<R, W>(edge: Arc<Edge>, r: R, w: W, prefix: Bytes, grant: Option<Grant>, mut admission: Admission)
where
    R: AsyncRead + Unpin + Send + 'static,
    W: AsyncWrite + Unpin + Send + 'static,
{
    let _guard = edge.session_guard();
    let outbox = Outbox::prioritized(edge.config.max_queued_bytes, edge.config.conflate_above_bytes);
    let io = LoopbackIo { read: r, prefix, outbox: outbox.clone() };
    let mut ws = WebSocketStream::from_raw_socket(io, Role::Server, Some(ws_config(&edge))).await;
    let writer = tokio::spawn(write_loop(w, outbox.clone(), edge.config.max_batch_bytes, Duration::from_millis(edge.config.lag_close_grace_ms)));

    let grant = match grant {
        Some(g) => Some(g),
        None => Box::pin(authenticate(&edge, &mut ws, &outbox)).await.and_then(|g| admit(&edge, &outbox, g, &mut admission)),
    };
    if let Some(grant) = grant {
        let conn_id = connection_id();
        let span = tracing::Span::current();
        span.record("conn", conn_id.as_str());
        span.record("account", grant.account.as_str());
        let session = Session::new(edge.clone(), conn_id, grant, outbox.clone());
        serve(&edge, &mut ws, &outbox, session).await;
    }
    // Let the writer finish what is queued (bounded by its own grace), then stop it.
    let grace = Duration::from_millis(edge.config.lag_close_grace_ms + 1000);
    let mut writer = writer;
    if tokio::time::timeout(grace, &mut writer).await.is_err() {
        writer.abort();
    }
}

/// Applies the origin and account checks to a connection authenticated by its first frame.
fn admit(edge: &Edge, outbox: &Outbox, grant: Grant, admission: &mut Admission) -> Option<Grant> {
    let refuse = |code: ErrorCode, message: &str| {
        edge.metrics.protocol_error(code);
        outbox.push(OutItem::Frame(ServerFrame::Error { id: None, code, message }.encode()));
        outbox.close(CloseReason::Fatal(code));
        None
    };
    if !edge.origin_allowed(&grant.account, admission.origin.as_deref()) {
        return refuse(ErrorCode::Forbidden, "this origin may not connect to this account");
    }
    match edge.limits.admit_account(&grant.account) {
        Ok(slot) => {
            admission.account = Some(slot);
            Some(grant)
        }
        Err(l) => refuse(ErrorCode::RateLimited, l.message()),
    }
}

/// Waits for the `auth` frame when no token came with the handshake.
async fn authenticate<S>(edge: &Edge, ws: &mut WebSocketStream<S>, outbox: &Outbox) -> Option<Grant>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let fail = |code: ErrorCode, message: &str| {
        edge.metrics.protocol_error(code);
        outbox.push(OutItem::Frame(ServerFrame::Error { id: None, code, message }.encode()));
        outbox.close(CloseReason::Fatal(code));
        None
    };
    let deadline = Duration::from_millis(edge.config.auth_timeout_ms);
    let msg = tokio::select! {
        m = tokio::time::timeout(deadline, ws.next()) => m,
        _ = edge.drain.cancelled() => return fail(ErrorCode::ShuttingDown, "this node is draining"),
    };
    let text = match msg {
        Err(_) => return fail(ErrorCode::Unauthorized, "no auth frame within the auth timeout"),
        Ok(Some(Ok(Message::Text(t)))) => t,
        Ok(Some(Ok(_))) => return fail(ErrorCode::Unauthorized, "the first frame must be an auth frame"),
        Ok(Some(Err(WsError::Capacity(_)))) => return fail(ErrorCode::FrameTooLarge, "frame is larger than max_frame_bytes"),
        Ok(_) => return None,
    };
    let first = split_batch(text.as_str()).next().unwrap_or("");
    match decode_client_frame(first) {
        Ok(ClientFrame::Auth { token }) => match edge.verify_for_session(&token) {
            Ok(g) => Some(g),
            Err(e) => fail(e.code, &e.message),
        },
        _ => fail(ErrorCode::Unauthorized, "the first frame must be an auth frame"),
    }
}

async fn serve<S>(edge: &Arc<Edge>, ws: &mut WebSocketStream<S>, outbox: &Arc<Outbox>, mut session: Session)
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let hb = Duration::from_millis(edge.config.heartbeat_ms);
    session.send(ServerFrame::Welcome {
        connection_id: &session.connection_id,
        node: &edge.node,
        region: edge.region.as_str(),
        heartbeat_ms: edge.config.heartbeat_ms,
        protocol: PROTOCOL_VERSION,
        expires_at: Some(session.grant.expires_at),
    });
    let mut last_heard = Instant::now();
    // The expiry we already warned about (`token_expiring`), so each token is warned once.
    let mut warned_for = 0u64;
    let mut next_beat = Instant::now() + hb;
    loop {
        let now = Instant::now();
        let expires_at = session.grant.expires_at;
        let expires_in = Duration::from_secs(expires_at.saturating_sub(herald_core::now_ms() / 1000));
        // Warn a minute ahead (or half the remaining life of a short token).
        let lead = expires_in.min(Duration::from_secs(120)) / 2;
        let warn_at = (warned_for != expires_at).then(|| now + expires_in.saturating_sub(lead));
        let expire_at = now + expires_in;
        // One timer for heartbeat, warning and expiry: every idle connection holds it.
        let wake = warn_at.map_or(next_beat, |w| w.min(next_beat)).min(expire_at);
        tokio::select! {
            msg = ws.next() => {
                last_heard = Instant::now();
                match msg {
                    Some(Ok(Message::Text(t))) => {
                        // Boxed: request handling (subscribe with replay, publish) is a large
                        // future, and keeping it inline would grow every idle connection's task.
                        if Box::pin(session.handle_text(t.as_str())).await.is_err() {
                            break;
                        }
                    }
                    Some(Ok(Message::Binary(_))) => session.send_error(None, ErrorCode::BadRequest, "binary frames need the herald.v1.proto subprotocol"),
                    Some(Ok(Message::Close(_))) => {
                        // Make tungstenite queue its close reply before the writer finishes.
                        let _ = ws.flush().await;
                        outbox.close(CloseReason::ClientClosed);
                        break;
                    }
                    Some(Ok(_)) => {}
                    Some(Err(WsError::Capacity(_))) => {
                        session.fail(ErrorCode::FrameTooLarge, "frame is larger than max_frame_bytes");
                        break;
                    }
                    Some(Err(_)) | None => {
                        outbox.close(CloseReason::PeerGone);
                        break;
                    }
                }
            }
            _ = tokio::time::sleep_until(wake) => {
                let now = Instant::now();
                if now >= expire_at {
                    session.fail(ErrorCode::TokenExpired, "token has expired; reconnect with a new one");
                    break;
                }
                if warn_at.is_some_and(|w| now >= w) {
                    warned_for = expires_at;
                    session.send(ServerFrame::TokenExpiring { expires_at });
                }
                if now >= next_beat {
                    if last_heard.elapsed() > 2 * hb {
                        edge.metrics.heartbeat_timeouts.increment(1);
                        outbox.close(CloseReason::Timeout);
                        break;
                    }
                    session.send(ServerFrame::Ping {});
                    next_beat = now + hb;
                }
            }
            _ = edge.drain.cancelled() => {
                session.send(ServerFrame::Reconnect { after_ms: drain_delay_ms(edge), reason: "drain" });
                outbox.close(CloseReason::Drain);
                break;
            }
            event = outbox.event() => match event {
                OutboxEvent::Shed(channels) => Box::pin(session.shed(channels)).await,
                OutboxEvent::Closed(reason) => {
                    if reason == CloseReason::Lagged {
                        edge.metrics.lagged_disconnects.increment(1);
                    }
                    break;
                }
            },
        }
    }
    Box::pin(session.end()).await;
}

/// A random delay in `[0, drain_grace/2]`, so drained clients do not all reconnect at once.
pub fn drain_delay_ms(edge: &Edge) -> u64 {
    let spread = edge.config.drain_grace_ms / 2;
    if spread == 0 { 0 } else { rand::random::<u64>() % spread }
}

/// The read half of the socket as tungstenite sees it: reads come from the socket (after any
/// bytes hyper had already read), writes (pong, close replies) are queued on the outbox.
struct LoopbackIo<R> {
    read: R,
    prefix: Bytes,
    outbox: Arc<Outbox>,
}

impl<R: AsyncRead + Unpin> AsyncRead for LoopbackIo<R> {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<std::io::Result<()>> {
        if !self.prefix.is_empty() {
            let n = self.prefix.len().min(buf.remaining());
            let chunk = self.prefix.split_to(n);
            buf.put_slice(&chunk);
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut self.read).poll_read(cx, buf)
    }
}

impl<R: Unpin> AsyncWrite for LoopbackIo<R> {
    fn poll_write(self: Pin<&mut Self>, _cx: &mut Context<'_>, buf: &[u8]) -> Poll<std::io::Result<usize>> {
        self.outbox.push(OutItem::Raw(Bytes::copy_from_slice(buf)));
        Poll::Ready(Ok(buf.len()))
    }

    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

/// Frames per WebSocket message at most (each is one iovec; Linux allows 1024 per write).
const MAX_FRAMES_PER_MESSAGE: usize = 1000;

fn text_header(len: usize) -> ([u8; 10], usize) {
    let mut h = [0u8; 10];
    h[0] = 0x81; // FIN + text
    if len < 126 {
        h[1] = len as u8;
        (h, 2)
    } else if len <= u16::MAX as usize {
        h[1] = 126;
        h[2..4].copy_from_slice(&(len as u16).to_be_bytes());
        (h, 4)
    } else {
        h[1] = 127;
        h[2..10].copy_from_slice(&(len as u64).to_be_bytes());
        (h, 10)
    }
}

fn close_frame(code: u16, reason: &str) -> Bytes {
    let reason = &reason.as_bytes()[..reason.len().min(120)];
    let mut v = Vec::with_capacity(4 + reason.len());
    v.push(0x88);
    v.push((2 + reason.len()) as u8);
    v.extend_from_slice(&code.to_be_bytes());
    v.extend_from_slice(reason);
    Bytes::from(v)
}

fn item_bytes(item: &OutItem) -> &[u8] {
    match item {
        OutItem::Frame(b) | OutItem::Raw(b) => b,
        OutItem::Record(r) => &r.frame,
    }
}

/// Writes queued items until the outbox closes, then the close frame.
async fn write_loop<W: AsyncWrite + Unpin>(mut w: W, outbox: Arc<Outbox>, max_batch: usize, grace: Duration) {
    let mut items: Vec<OutItem> = Vec::new();
    let mut deadline: Option<Instant> = None;
    loop {
        if items.len() < 16 {
            // Small batches (a ping, a record at a low rate) do not keep their allocation: an
            // idle connection then holds none. Big ones keep it for the next burst.
            items = Vec::new();
        } else {
            items.clear();
        }
        let close = outbox.take(max_batch, &mut items);
        if close.is_some() && deadline.is_none() {
            deadline = Some(Instant::now() + grace);
        }
        if items.is_empty() {
            match close {
                None => {
                    outbox.ready().await;
                    continue;
                }
                Some(reason) => {
                    let frame = match reason {
                        CloseReason::ClientClosed | CloseReason::PeerGone => None,
                        CloseReason::Timeout => Some(close_frame(1000, "heartbeat timeout")),
                        CloseReason::Drain => Some(close_frame(1001, "drain")),
                        CloseReason::Lagged => {
                            let e = ServerFrame::Error { id: None, code: ErrorCode::Lagged, message: "send queue overflowed; reconnect and resume" }.encode();
                            let mut v = Vec::new();
                            let (h, n) = text_header(e.len());
                            v.extend_from_slice(&h[..n]);
                            v.extend_from_slice(&e);
                            v.extend_from_slice(&close_frame(4008, "lagged"));
                            Some(Bytes::from(v))
                        }
                        CloseReason::Fatal(code) => Some(close_frame(code.close_code().unwrap_or(1008), code.as_str())),
                    };
                    if let Some(f) = frame {
                        let _ = write_all_slices(&mut w, &mut [IoSlice::new(&f)], &outbox, deadline, grace).await;
                    }
                    if let Some(d) = deadline {
                        let _ = tokio::time::timeout_at(d, w.shutdown()).await;
                    }
                    return;
                }
            }
        }
        let _traced = herald_engine::trace::socket_write(&items);
        if write_items(&mut w, &items, &outbox, &mut deadline, grace).await.is_err() {
            outbox.close(CloseReason::PeerGone);
            return;
        }
    }
}

/// Writes items, packing consecutive frames into one text message per group.
async fn write_items<W: AsyncWrite + Unpin>(
    w: &mut W,
    items: &[OutItem],
    outbox: &Outbox,
    deadline: &mut Option<Instant>,
    grace: Duration,
) -> std::io::Result<()> {
    let mut i = 0;
    while i < items.len() {
        let header;
        let mut slices: Vec<IoSlice<'_>>;
        if let OutItem::Raw(b) = &items[i] {
            slices = vec![IoSlice::new(b)];
            i += 1;
        } else {
            let start = i;
            let mut len = 0;
            while i < items.len() && i - start < MAX_FRAMES_PER_MESSAGE && !matches!(items[i], OutItem::Raw(_)) {
                len += item_bytes(&items[i]).len();
                i += 1;
            }
            header = text_header(len);
            slices = Vec::with_capacity(i - start + 1);
            slices.push(IoSlice::new(&header.0[..header.1]));
            slices.extend(items[start..i].iter().map(|it| IoSlice::new(item_bytes(it))));
        }
        if deadline.is_none() && outbox.close_reason().is_some() {
            *deadline = Some(Instant::now() + grace);
        }
        write_all_slices(w, &mut slices, outbox, *deadline, grace).await?;
    }
    Ok(())
}

/// Writes every slice. While the connection is healthy a write may take as long as it takes;
/// once it is closing (lagged, draining) the rest must go out before `deadline`.
async fn write_all_slices<W: AsyncWrite + Unpin>(
    w: &mut W,
    mut slices: &mut [IoSlice<'_>],
    outbox: &Outbox,
    mut deadline: Option<Instant>,
    grace: Duration,
) -> std::io::Result<()> {
    let timed_out = || std::io::Error::new(std::io::ErrorKind::TimedOut, "write did not finish within the close grace");
    while !slices.is_empty() {
        let n = match deadline {
            Some(d) => tokio::time::timeout_at(d, w.write_vectored(slices)).await.map_err(|_| timed_out())??,
            None => {
                tokio::select! {
                    r = w.write_vectored(slices) => r?,
                    _ = outbox.closed() => {
                        // Closing while a write is blocked: finish this message, but in bounded time.
                        deadline = Some(Instant::now() + grace);
                        continue;
                    }
                }
            }
        };
        if n == 0 {
            return Err(std::io::ErrorKind::WriteZero.into());
        }
        IoSlice::advance_slices(&mut slices, n);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_headers_use_the_shortest_length_form() {
        assert_eq!(&text_header(5).0[..2], &[0x81, 5]);
        assert_eq!(&text_header(300).0[..4], &[0x81, 126, 1, 44]);
        let (h, n) = text_header(70_000);
        assert_eq!(n, 10);
        assert_eq!(h[1], 127);
    }
}
