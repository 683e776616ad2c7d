//! Device registration for mobile push (docs/push.md): `POST /v1/devices` registers the caller's
//! device with its client token, `DELETE /v1/devices` removes one, `GET /v1/devices?user=U` lists
//! a user's devices for a backend (the account's API key, or the admin key with `account=A`).
//!
//! A registration remembers the channel patterns the token may read at that moment: the push
//! worker never notifies a device of a channel its user could not subscribe to. Apps register on
//! every start (tokens change, and so may the user's rights). A connected app may register with
//! the `register_device` frame instead, through the same [`register`].

use http::{Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Limited};
use hyper::body::Incoming;
use serde::Deserialize;
use std::sync::Arc;

use herald_core::{DeviceError, DeviceRegistry, Platform, Registration, devices::pattern_text};
use herald_protocol::ErrorCode;

use crate::auth::Grant;
use crate::caller::{self, Caller};
use crate::http::{Body, code_response, json_response, query_param};
use crate::state::Edge;

/// Largest request body: a registration is a few hundred bytes.
const MAX_BODY: usize = 8 << 10;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct DeviceBody {
    platform: String,
    token: String,
    #[serde(default)]
    app: Option<String>,
}

/// Why a registration or removal was refused: the protocol code and a message.
pub type Refusal = (ErrorCode, String);

fn refusal(e: DeviceError) -> Refusal {
    match e {
        DeviceError::Invalid(m) => (ErrorCode::BadRequest, m),
        DeviceError::Unavailable(m) => {
            tracing::warn!(error = %m, "device registry unavailable");
            (ErrorCode::Unavailable, "the device registry is unavailable; retry".into())
        }
    }
}

fn registry(edge: &Edge) -> Result<&Arc<dyn DeviceRegistry>, Refusal> {
    edge.devices.as_ref().ok_or_else(|| (ErrorCode::Unavailable, "this node has no device registry (push is not configured)".into()))
}

/// Registers the device of `grant`'s user, remembering what the token may read: what
/// `POST /v1/devices` and the `register_device` frame both do.
pub async fn register(edge: &Edge, grant: &Grant, platform: &str, token: String, app: Option<String>) -> Result<Registration, Refusal> {
    let registry = registry(edge)?;
    let platform = Platform::parse(platform).map_err(refusal)?;
    let Some(app) = app else { return Err((ErrorCode::BadRequest, "app (the bundle id or the Firebase project) is required".into())) };
    let registration = Registration {
        account: grant.account.clone(),
        user: grant.user.clone(),
        platform,
        device_token: token,
        app,
        readable: grant.subscribe_patterns().to_vec(),
        registered_at_ms: herald_core::now_ms(),
    };
    registration.validate().map_err(refusal)?;
    registry.register(registration.clone()).await.map_err(refusal)?;
    Ok(registration)
}

/// Removes a registration the caller owns (its user's, or for a backend its account's); whether
/// one was removed. Someone else's device and no device look the same: nothing to remove.
pub async fn unregister(edge: &Edge, caller: &Caller, platform: &str, token: &str) -> Result<bool, Refusal> {
    let registry = registry(edge)?;
    let platform = Platform::parse(platform).map_err(refusal)?;
    let existing = registry.get(platform, token).await.map_err(refusal)?;
    let mine = existing.as_ref().is_some_and(|r| match caller {
        Caller::Client(g) => r.account == g.account && r.user == g.user,
        Caller::Backend(a) => r.account == *a,
    });
    if !mine {
        return Ok(false);
    }
    registry.remove(platform, token).await.map_err(refusal)
}

/// Answers `/v1/devices` (POST, DELETE, GET).
pub async fn handle(edge: Arc<Edge>, req: Request<Incoming>) -> Response<Body> {
    let fail = |(code, msg): Refusal| {
        edge.metrics.protocol_error(code);
        code_response(code, &msg)
    };
    let registry = match registry(&edge) {
        Ok(r) => r.clone(),
        Err(r) => return fail(r),
    };
    let caller = match caller::identify(&edge, &req) {
        Ok(c) => c,
        Err(r) => return fail(r),
    };
    let method = req.method().clone();
    if method == Method::GET {
        let Caller::Backend(account) = caller else { return fail((ErrorCode::Forbidden, "listing devices needs the account's API key".into())) };
        let Some(user) = query_param(&req, "user") else { return fail((ErrorCode::BadRequest, "user=SUB is required".into())) };
        return match registry.list_user(&account, &user).await {
            Ok(list) => json_response(StatusCode::OK, serde_json::json!({ "devices": list.iter().map(describe).collect::<Vec<_>>() }).to_string()),
            Err(e) => fail(refusal(e)),
        };
    }
    let body = match Limited::new(req.into_body(), MAX_BODY).collect().await {
        Ok(b) => b.to_bytes(),
        Err(_) => return fail((ErrorCode::MessageTooLarge, "request body is too large".into())),
    };
    let d: DeviceBody = match serde_json::from_slice(&body) {
        Ok(d) => d,
        Err(e) => return fail((ErrorCode::BadRequest, format!("body is not a device: {e}"))),
    };
    match (method, caller) {
        (Method::POST, Caller::Client(g)) => match register(&edge, &g, &d.platform, d.token, d.app).await {
            Ok(r) => json_response(StatusCode::CREATED, serde_json::json!({ "device": describe(&r) }).to_string()),
            Err(r) => fail(r),
        },
        (Method::POST, Caller::Backend(_)) => fail((ErrorCode::Forbidden, "a device registers with its user's client token".into())),
        (Method::DELETE, caller) => match unregister(&edge, &caller, &d.platform, &d.token).await {
            Ok(removed) => json_response(StatusCode::OK, format!(r#"{{"removed":{removed}}}"#)),
            Err(r) => fail(r),
        },
        _ => fail((ErrorCode::BadRequest, "method not allowed".into())),
    }
}

/// A registration as the API shows it: the device token's last characters only.
fn describe(r: &Registration) -> serde_json::Value {
    serde_json::json!({
        "user": r.user,
        "platform": r.platform.as_str(),
        "token_tail": r.token_tail(),
        "app": r.app,
        "readable": r.readable.iter().map(pattern_text).collect::<Vec<_>>(),
        "registered_at_ms": r.registered_at_ms,
    })
}
