//! The server API for backends (docs/backends.md), with the account's API key or the admin key
//! naming the account, never a client token: `POST /v1/disconnect` ends a user's connections (or
//! one connection) on every edge of the region, `POST /v1/revoke` refuses tokens by `jti` or by
//! user until a time and ends their sessions, `GET /v1/connections?user=U` lists a user's open
//! connections in the region. Orders go through [`herald_core::Orders`]; every edge (this one
//! too) applies them when they arrive.

use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Limited};
use hyper::body::Incoming;
use serde::Deserialize;
use std::sync::Arc;

use herald_core::{AccountId, Disconnect, DisconnectTarget, Order, OrdersError, RevokeTarget, Revocation};
use herald_protocol::ErrorCode;

use crate::caller::{self, Caller};
use crate::http::{Body, code_response, json_response, query_param};
use crate::state::Edge;

/// Largest request body: an order is a few hundred bytes.
const MAX_BODY: usize = 8 << 10;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct DisconnectBody {
    user: Option<String>,
    connection_id: Option<String>,
    #[serde(default)]
    reason: String,
    /// Absent: the client may reconnect.
    #[serde(default = "yes")]
    reconnect: bool,
}

fn yes() -> bool {
    true
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RevokeBody {
    jti: Option<String>,
    user: Option<String>,
    /// Seconds since the Unix epoch.
    until: u64,
    #[serde(default)]
    reason: String,
}

/// A refusal: counted like the other HTTP APIs' and answered with the code's status.
fn fail(edge: &Edge, code: ErrorCode, message: &str) -> Response<Body> {
    edge.metrics.protocol_error(code);
    code_response(code, message)
}

/// Why a request is refused: the code and the message.
type Refusal = (ErrorCode, String);

/// The account of a backend caller.
fn backend(edge: &Edge, req: &Request<Incoming>) -> Result<AccountId, Refusal> {
    match caller::identify(edge, req)? {
        Caller::Backend(a) => Ok(a),
        Caller::Client(_) => Err((ErrorCode::Forbidden, "the server API needs the account's API key (or the admin key with account=NAME), not a client token".into())),
    }
}

/// The JSON body, at most [`MAX_BODY`] bytes.
async fn body<T: for<'de> Deserialize<'de>>(req: Request<Incoming>, what: &str) -> Result<T, Refusal> {
    let bytes = match Limited::new(req.into_body(), MAX_BODY).collect().await {
        Ok(b) => b.to_bytes(),
        Err(_) => return Err((ErrorCode::MessageTooLarge, "request body is too large".into())),
    };
    serde_json::from_slice(&bytes).map_err(|e| (ErrorCode::BadRequest, format!("body is not {what}: {e}")))
}

async fn issue(edge: &Edge, order: Order) -> Response<Body> {
    match edge.orders.issue(order).await {
        Ok(id) => json_response(StatusCode::ACCEPTED, serde_json::json!({ "order": id }).to_string()),
        Err(OrdersError::Invalid(m)) => fail(edge, ErrorCode::BadRequest, &m),
        Err(OrdersError::Unavailable(m)) => {
            tracing::warn!(error = %m, "orders storage unavailable");
            fail(edge, ErrorCode::Unavailable, "orders storage is unavailable; retry")
        }
    }
}

/// Answers `POST /v1/disconnect`.
pub async fn disconnect(edge: Arc<Edge>, req: Request<Incoming>) -> Response<Body> {
    let account = match backend(&edge, &req) {
        Ok(a) => a,
        Err((code, m)) => return fail(&edge, code, &m),
    };
    let b: DisconnectBody = match body(req, "a disconnect").await {
        Ok(b) => b,
        Err((code, m)) => return fail(&edge, code, &m),
    };
    let target = match (b.user, b.connection_id) {
        (Some(u), None) => DisconnectTarget::User(u),
        (None, Some(c)) => DisconnectTarget::Connection(c),
        _ => return fail(&edge, ErrorCode::BadRequest, "exactly one of user and connection_id is required"),
    };
    issue(&edge, Order::Disconnect(Disconnect { account, target, reason: b.reason, reconnect: b.reconnect })).await
}

/// Answers `POST /v1/revoke`.
pub async fn revoke(edge: Arc<Edge>, req: Request<Incoming>) -> Response<Body> {
    let account = match backend(&edge, &req) {
        Ok(a) => a,
        Err((code, m)) => return fail(&edge, code, &m),
    };
    let b: RevokeBody = match body(req, "a revocation").await {
        Ok(b) => b,
        Err((code, m)) => return fail(&edge, code, &m),
    };
    let target = match (b.jti, b.user) {
        (Some(j), None) => RevokeTarget::Jti(j),
        (None, Some(u)) => RevokeTarget::User(u),
        _ => return fail(&edge, ErrorCode::BadRequest, "exactly one of jti and user is required"),
    };
    let until_ms = b.until.saturating_mul(1000);
    issue(&edge, Order::Revoke(Revocation { account, target, at_ms: herald_core::now_ms(), until_ms, reason: b.reason })).await
}

/// Answers `GET /v1/connections?user=U`.
pub async fn connections(edge: Arc<Edge>, req: Request<Incoming>) -> Response<Body> {
    let account = match backend(&edge, &req) {
        Ok(a) => a,
        Err((code, m)) => return fail(&edge, code, &m),
    };
    let Some(user) = query_param(&req, "user").filter(|u| !u.is_empty()) else { return fail(&edge, ErrorCode::BadRequest, "user=SUB is required") };
    match edge.presence.user_connections(&account, &user).await {
        Ok(list) => {
            let items: Vec<_> = list
                .iter()
                .map(|c| {
                    serde_json::json!({
                        "connection_id": c.connection.connection_id,
                        "node": c.node,
                        "transport": c.connection.transport,
                        "opened_at_ms": c.connection.opened_at_ms,
                    })
                })
                .collect();
            json_response(StatusCode::OK, serde_json::json!({ "user": user, "connections": items }).to_string())
        }
        Err(e) => {
            edge.metrics.presence_errors.increment(1);
            tracing::warn!(error = %e, "presence: listing a user's connections failed");
            fail(&edge, ErrorCode::Unavailable, "presence storage is unavailable; retry")
        }
    }
}
