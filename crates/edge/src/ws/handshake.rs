//! The WebSocket handshake and authentication: `GET /v1/ws` checked and answered `101`, the
//! connection admitted against its address's and account's limits, and, when the token did not
//! come with the handshake, the first frame read as `auth`.

use bytes::Bytes;
use futures_util::StreamExt;
use http::{HeaderValue, Request, Response, StatusCode, header};
use hyper::body::Incoming;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Error as WsError;
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;
use tokio_tungstenite::tungstenite::protocol::Message;
use tracing::Instrument;

use herald_engine::outbox::Outbox;
use herald_protocol::deflate::{self, Agreement, DeflateConfig};
use herald_protocol::{ClientFrame, Encoding, ErrorCode, decode_client_frame, split_batch};

use crate::auth::Grant;
use crate::http::{Body, error_response, token_from_request};
use crate::lifecycle;
use crate::limits::{AccountSlot, IpSlot};
use crate::state::Edge;

/// What the handshake established about a connection: its places in the limit counts, the
/// browser origin it came from, its encoding and its compression.
pub(super) struct Admission {
    _ip: IpSlot,
    account: Option<AccountSlot>,
    origin: Option<String>,
    /// The subprotocol's encoding (JSON when the client named none).
    pub encoding: Encoding,
    /// `permessage-deflate`, when the client asked for it and the node granted it.
    pub deflate: Option<Agreement>,
}

impl Admission {
    /// The client's address (as the load balancer reported it, when trusted).
    pub fn client_ip(&self) -> std::net::IpAddr {
        self._ip.ip()
    }
}

/// Whether the node grants compression now: configured on, and (the load-based refusal) not
/// above the configured number of open sessions, since compression costs CPU per message.
fn compression_granted(edge: &Edge) -> bool {
    let c = &edge.config.compression;
    c.enabled && (c.refuse_above_sessions == 0 || edge.session_count() < c.refuse_above_sessions)
}

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
    let subprotocol = Encoding::negotiate(h.get_all(header::SEC_WEBSOCKET_PROTOCOL).iter().filter_map(|v| v.to_str().ok()));
    let deflate = if compression_granted(&edge) {
        let c = &edge.config.compression;
        let config = DeflateConfig { level: c.level, server_max_window_bits: c.max_window_bits, client_max_window_bits: c.max_window_bits };
        deflate::negotiate(h.get_all(header::SEC_WEBSOCKET_EXTENSIONS).iter().filter_map(|v| v.to_str().ok()), &config)
    } else {
        None
    };
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
    let admission = Admission { _ip: ip_slot, account: account_slot, origin, encoding: subprotocol.unwrap_or(Encoding::Json), deflate };
    let span = tracing::info_span!("ws", client = %peer, conn = tracing::field::Empty, account = tracing::field::Empty);
    // Taken before spawning so that the task does not keep room for the whole request.
    let on_upgrade = hyper::upgrade::on(req);
    tokio::spawn(
        async move {
            match on_upgrade.await {
                Ok(upgraded) => super::connection::run(edge, upgraded, grant, admission).await,
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
    if let Some(e) = subprotocol {
        rh.insert(header::SEC_WEBSOCKET_PROTOCOL, HeaderValue::from_static(e.subprotocol()));
    }
    if let Some(d) = deflate {
        rh.insert(header::SEC_WEBSOCKET_EXTENSIONS, HeaderValue::from_str(&d.response()).expect("the response is ASCII"));
    }
    resp
}

/// The connection's grant: the handshake's, or else the one its first frame (`auth`) carries,
/// checked against the origin and account limits like a handshake token. `None`: refused (the
/// error is queued and the outbox closing) or gone.
pub(super) async fn authenticate<S>(edge: &Edge, ws: &mut WebSocketStream<S>, outbox: &Outbox, grant: Option<Grant>, admission: &mut Admission) -> Option<Grant>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    if grant.is_some() {
        return grant;
    }
    let grant = Box::pin(first_frame_auth(edge, ws, outbox, admission.encoding)).await?;
    if !edge.origin_allowed(&grant.account, admission.origin.as_deref()) {
        lifecycle::fail(edge, outbox, ErrorCode::Forbidden, "this origin may not connect to this account");
        return None;
    }
    match edge.limits.admit_account(&grant.account) {
        Ok(slot) => {
            admission.account = Some(slot);
            Some(grant)
        }
        Err(l) => {
            lifecycle::fail(edge, outbox, ErrorCode::RateLimited, l.message());
            None
        }
    }
}

/// Waits for the `auth` frame when no token came with the handshake.
async fn first_frame_auth<S>(edge: &Edge, ws: &mut WebSocketStream<S>, outbox: &Outbox, encoding: Encoding) -> Option<Grant>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let fail = |code: ErrorCode, message: &str| {
        lifecycle::fail(edge, outbox, code, message);
        None
    };
    let deadline = Duration::from_millis(edge.config.auth_timeout_ms);
    let msg = tokio::select! {
        m = tokio::time::timeout(deadline, ws.next()) => m,
        _ = edge.drain.cancelled() => return fail(ErrorCode::ShuttingDown, "this node is draining"),
    };
    let first = match msg {
        Err(_) => return fail(ErrorCode::Unauthorized, "no auth frame within the auth timeout"),
        Ok(Some(Ok(Message::Text(t)))) => decode_client_frame(split_batch(t.as_str()).next().unwrap_or("")),
        Ok(Some(Ok(Message::Binary(b)))) if encoding == Encoding::Proto => {
            herald_protocol::proto::decode_client_message(&b).next().unwrap_or_else(|| decode_client_frame(""))
        }
        Ok(Some(Ok(_))) => return fail(ErrorCode::Unauthorized, "the first frame must be an auth frame"),
        Ok(Some(Err(WsError::Capacity(_)))) => return fail(ErrorCode::FrameTooLarge, "frame is larger than max_frame_bytes"),
        Ok(_) => return None,
    };
    match first {
        Ok(ClientFrame::Auth { token }) => match edge.verify_for_session(&token) {
            Ok(g) => Some(g),
            Err(e) => fail(e.code, &e.message),
        },
        _ => fail(ErrorCode::Unauthorized, "the first frame must be an auth frame"),
    }
}
