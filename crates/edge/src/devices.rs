//! Device registration for mobile push (docs/push.md): `POST /v1/devices` registers the caller's
//! device with its client token, `DELETE /v1/devices` removes one, `GET /v1/devices?user=U` lists
//! a user's devices for a backend (the account's API key, or the admin key with `account=A`).
//!
//! A registration remembers the channel patterns the token may read at that moment: the push
//! worker never notifies a device of a channel its user could not subscribe to. Apps register on
//! every start (tokens change, and so may the user's rights).

use http::{Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Limited};
use hyper::body::Incoming;
use serde::Deserialize;
use std::sync::Arc;

use herald_core::{DeviceError, Platform, Registration, devices::pattern_text};
use herald_protocol::ErrorCode;

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

/// Answers `/v1/devices` (POST, DELETE, GET).
pub async fn handle(edge: Arc<Edge>, req: Request<Incoming>) -> Response<Body> {
    let fail = |code: ErrorCode, msg: &str| {
        edge.metrics.protocol_error(code);
        code_response(code, msg)
    };
    let Some(registry) = edge.devices.clone() else { return fail(ErrorCode::Unavailable, "this node has no device registry (push is not configured)") };
    let caller = match caller::identify(&edge, &req) {
        Ok(c) => c,
        Err((code, msg)) => return fail(code, &msg),
    };
    let method = req.method().clone();
    let refused = |e: DeviceError| match e {
        DeviceError::Invalid(m) => fail(ErrorCode::BadRequest, &m),
        DeviceError::Unavailable(m) => {
            tracing::warn!(error = %m, "device registry unavailable");
            fail(ErrorCode::Unavailable, "the device registry is unavailable; retry")
        }
    };
    if method == Method::GET {
        let Caller::Backend(account) = caller else { return fail(ErrorCode::Forbidden, "listing devices needs the account's API key") };
        let Some(user) = query_param(&req, "user") else { return fail(ErrorCode::BadRequest, "user=SUB is required") };
        return match registry.list_user(&account, &user).await {
            Ok(list) => json_response(StatusCode::OK, serde_json::json!({ "devices": list.iter().map(describe).collect::<Vec<_>>() }).to_string()),
            Err(e) => refused(e),
        };
    }
    let body = match Limited::new(req.into_body(), MAX_BODY).collect().await {
        Ok(b) => b.to_bytes(),
        Err(_) => return fail(ErrorCode::MessageTooLarge, "request body is too large"),
    };
    let d: DeviceBody = match serde_json::from_slice(&body) {
        Ok(d) => d,
        Err(e) => return fail(ErrorCode::BadRequest, &format!("body is not a device: {e}")),
    };
    let platform = match Platform::parse(&d.platform) {
        Ok(p) => p,
        Err(e) => return refused(e),
    };
    match (method, caller) {
        (Method::POST, Caller::Client(g)) => {
            let Some(app) = d.app else { return fail(ErrorCode::BadRequest, "app (the bundle id or the Firebase project) is required") };
            let registration = Registration {
                account: g.account.clone(),
                user: g.user.clone(),
                platform,
                device_token: d.token,
                app,
                readable: g.subscribe_patterns().to_vec(),
                registered_at_ms: herald_core::now_ms(),
            };
            if let Err(e) = registration.validate() {
                return refused(e);
            }
            match registry.register(registration.clone()).await {
                Ok(()) => json_response(StatusCode::CREATED, serde_json::json!({ "device": describe(&registration) }).to_string()),
                Err(e) => refused(e),
            }
        }
        (Method::POST, Caller::Backend(_)) => fail(ErrorCode::Forbidden, "a device registers with its user's client token"),
        (Method::DELETE, caller) => {
            let existing = match registry.get(platform, &d.token).await {
                Ok(r) => r,
                Err(e) => return refused(e),
            };
            let mine = existing.as_ref().is_some_and(|r| match &caller {
                Caller::Client(g) => r.account == g.account && r.user == g.user,
                Caller::Backend(a) => r.account == *a,
            });
            if !mine {
                // Someone else's device and no device look the same: nothing to remove.
                return json_response(StatusCode::OK, r#"{"removed":false}"#);
            }
            match registry.remove(platform, &d.token).await {
                Ok(removed) => json_response(StatusCode::OK, format!(r#"{{"removed":{removed}}}"#)),
                Err(e) => refused(e),
            }
        }
        _ => fail(ErrorCode::BadRequest, "method not allowed"),
    }
}

/// A registration as the API shows it: the device token's last characters only.
fn describe(r: &Registration) -> serde_json::Value {
    let tail: String = r.device_token.chars().rev().take(6).collect::<Vec<_>>().into_iter().rev().collect();
    serde_json::json!({
        "user": r.user,
        "platform": r.platform.as_str(),
        "token_tail": tail,
        "app": r.app,
        "readable": r.readable.iter().map(pattern_text).collect::<Vec<_>>(),
        "registered_at_ms": r.registered_at_ms,
    })
}
