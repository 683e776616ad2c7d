//! One WebSocket connection from upgrade to close: the socket taken back from hyper and split,
//! tungstenite reading client frames over the read half (compressed messages inflated first,
//! when `permessage-deflate` was agreed), the writer task on the write half, and the loop that
//! serves the session (client frames, heartbeat, token expiry, drain, a closing send queue).

use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use hyper_util::rt::TokioIo;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Error as WsError;
use tokio_tungstenite::tungstenite::protocol::{Message, Role, WebSocketConfig};
use tracing::Instrument;

use herald_engine::outbox::{CloseReason, OutItem, Outbox, OutboxEvent};
use herald_protocol::deflate::inbound::InboundInflater;
use herald_protocol::{Encoding, ErrorCode, ProtoWriter, ServerFrame};

use crate::auth::Grant;
use crate::lifecycle;
use crate::session::Session;
use crate::state::{Edge, SessionGuard};

use super::handshake::{Admission, authenticate};
use super::writer::{WireFormat, write_loop};

/// Runs an upgraded connection to its end.
pub(super) async fn run(edge: Arc<Edge>, upgraded: hyper::upgrade::Upgraded, grant: Option<Grant>, admission: Admission) {
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

async fn run_halves<R, W>(edge: Arc<Edge>, r: R, w: W, prefix: Bytes, grant: Option<Grant>, mut admission: Admission)
where
    R: AsyncRead + Unpin + Send + 'static,
    W: AsyncWrite + Unpin + Send + 'static,
{
    let guard = edge.session_guard();
    let outbox = Outbox::prioritized(edge.config.max_queued_bytes, edge.config.conflate_above_bytes);
    let inflater = admission.deflate.map(|_| Box::new(Inflating { stream: InboundInflater::new(edge.config.max_frame_bytes), out: Vec::new(), at: 0 }));
    let io = LoopbackIo { read: r, prefix, outbox: outbox.clone(), inflater };
    let mut ws = WebSocketStream::from_raw_socket(io, Role::Server, Some(ws_config(&edge))).await;
    let wire = WireFormat { proto: (admission.encoding == Encoding::Proto).then(ProtoWriter::new), deflate: admission.deflate };
    let grace = Duration::from_millis(edge.config.lag_close_grace_ms);
    let writer = tokio::spawn(write_loop(w, outbox.clone(), edge.config.max_batch_bytes, grace, wire));

    let started = match authenticate(&edge, &mut ws, &outbox, grant, &mut admission).await {
        Some(grant) => start(&edge, &outbox, grant, &admission).await,
        None => None,
    };
    let held = Held { writer, admission, _guard: guard };
    match started {
        // Served on a task of its own that holds only what serving needs: this task, with its
        // room for the upgrade, the authentication and the proxy call, ends here. Kept in one
        // task, that room (~2 KiB) stayed with every idle connection for its whole life.
        Some((session, live)) => {
            tokio::spawn(serve(Serving { edge, ws, outbox, session, live, held }).instrument(tracing::Span::current()));
        }
        None => held.finish(&edge).await,
    }
}

/// What a connection holds until it ends: its writer task, its places in the limit counts and
/// in the node's session count.
struct Held {
    writer: JoinHandle<()>,
    admission: Admission,
    _guard: SessionGuard,
}

impl Held {
    /// Lets the writer finish what is queued (bounded by its own grace), then stops it.
    async fn finish(self, edge: &Edge) {
        let grace = Duration::from_millis(edge.config.lag_close_grace_ms + 1000);
        let mut writer = self.writer;
        if tokio::time::timeout(grace, &mut writer).await.is_err() {
            writer.abort();
        }
    }
}

/// Asks the authorization proxy (when one is configured) about the connection and records it
/// as open. `None`: refused (the error is queued and the outbox closing).
async fn start(edge: &Arc<Edge>, outbox: &Arc<Outbox>, mut grant: Grant, admission: &Admission) -> Option<(Session, lifecycle::Live)> {
    let conn_id = lifecycle::connection_id();
    if let Some(p) = &edge.proxies
        // Boxed: the HTTP call is a large future, and inline it would grow the connection's task.
        && let Err((code, message)) = Box::pin(p.connect(&mut grant, Some(conn_id.as_str()), "websocket", Some(admission.client_ip()))).await {
            lifecycle::fail(edge, outbox, code, &message);
            return None;
        }
    let span = tracing::Span::current();
    span.record("conn", conn_id.as_str());
    span.record("account", grant.account.as_str());
    let live = lifecycle::opened(edge, &conn_id, &grant, lifecycle::Transport::WebSocket, outbox).await;
    Some((Session::new(edge.clone(), conn_id, grant, outbox.clone()), live))
}

/// A served connection: all its task keeps while the connection is open.
struct Serving<S> {
    edge: Arc<Edge>,
    ws: WebSocketStream<S>,
    outbox: Arc<Outbox>,
    session: Session,
    live: lifecycle::Live,
    held: Held,
}

/// Serves a session until its connection ends, then ends the session, lets the writer finish,
/// and releases the rest.
#[allow(clippy::manual_async_fn)] // on purpose: see the comment inside
fn serve<S>(mut conn: Serving<S>) -> impl Future<Output = ()> + Send
where
    S: AsyncRead + AsyncWrite + Unpin + Send,
{
    // An async block using `conn` in place, not an async fn: an async fn moves its arguments
    // into locals, and the task would keep room for both copies (rust-lang/rust#62958). The end
    // is boxed for the same reason: its locals would get room beside the serving loop's.
    async move {
        conn.serve_loop().await;
        Box::pin(conn.end()).await;
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> Serving<S> {
    /// Ends the session, lets the writer finish, then releases the rest.
    async fn end(self) {
        let Serving { edge, ws, session, live, held, .. } = self;
        session.end().await;
        drop(live);
        held.finish(&edge).await;
        drop(ws);
    }

    /// Client frames, heartbeat, token expiry, drain and a closing send queue, until the end.
    async fn serve_loop(&mut self) {
        let Serving { edge, ws, outbox, session, held, .. } = self;
        let encoding = held.admission.encoding;
        let hb = Duration::from_millis(edge.config.heartbeat_ms);
        session.send(lifecycle::welcome(edge, &session.connection_id, session.grant.expires_at));
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
                        Some(Ok(Message::Binary(b))) if encoding == Encoding::Proto => {
                            if Box::pin(session.handle_decoded(herald_protocol::proto::decode_client_message(&b))).await.is_err() {
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
                        lifecycle::token_expired(edge, outbox);
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
                    lifecycle::drain(edge, outbox);
                    break;
                }
                event = outbox.event() => match event {
                    OutboxEvent::Shed(channels) => Box::pin(session.shed(channels)).await,
                    OutboxEvent::Closed(reason) => {
                        lifecycle::ended(edge, reason);
                        break;
                    }
                },
            }
        }
    }
}

/// The read half of the socket as tungstenite sees it: reads come from the socket (after any
/// bytes hyper had already read, and through the inflater when compression was agreed), writes
/// (pong, close replies) are queued on the outbox.
struct LoopbackIo<R> {
    read: R,
    prefix: Bytes,
    outbox: Arc<Outbox>,
    inflater: Option<Box<Inflating>>,
}

/// A compressed connection's read side: the rewriter, and what it produced that tungstenite has
/// not read yet (from `at`).
struct Inflating {
    stream: InboundInflater,
    out: Vec<u8>,
    at: usize,
}

impl<R: AsyncRead + Unpin> LoopbackIo<R> {
    /// Reads from the socket, after any bytes hyper had already read.
    fn poll_raw(&mut self, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<std::io::Result<()>> {
        if !self.prefix.is_empty() {
            let n = self.prefix.len().min(buf.remaining());
            let chunk = self.prefix.split_to(n);
            buf.put_slice(&chunk);
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut self.read).poll_read(cx, buf)
    }
}

impl<R: AsyncRead + Unpin> AsyncRead for LoopbackIo<R> {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<std::io::Result<()>> {
        let this = &mut *self;
        let Some(mut inf) = this.inflater.take() else { return this.poll_raw(cx, buf) };
        let result = loop {
            if inf.at < inf.out.len() {
                let n = (inf.out.len() - inf.at).min(buf.remaining());
                buf.put_slice(&inf.out[inf.at..inf.at + n]);
                inf.at += n;
                if inf.at == inf.out.len() {
                    // Nothing kept between messages: an idle connection holds no buffer.
                    inf.out = Vec::new();
                    inf.at = 0;
                }
                break Poll::Ready(Ok(()));
            }
            let mut raw = [0u8; 4096];
            let mut rb = ReadBuf::new(&mut raw);
            match this.poll_raw(cx, &mut rb) {
                Poll::Ready(Ok(())) if rb.filled().is_empty() => break Poll::Ready(Ok(())),
                Poll::Ready(Ok(())) => {
                    if let Err(e) = inf.stream.feed(rb.filled(), &mut inf.out) {
                        break Poll::Ready(Err(std::io::Error::new(std::io::ErrorKind::InvalidData, e.to_string())));
                    }
                }
                other => break other,
            }
        };
        this.inflater = Some(inf);
        result
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

