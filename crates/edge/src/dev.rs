//! Development endpoints, served only by `herald dev`: the demo page at `/`, the TypeScript SDK it
//! imports (`/sdk/herald.js`) and the token it uses.

use http::{Request, Response, StatusCode};
use hyper::body::Incoming;

use herald_core::AccountId;
use herald_protocol::ErrorCode;

use crate::auth::TokenClaims;
use crate::http::{Body, error_response, json_response, query_param};
use crate::state::Edge;

/// The demo page: a live incident list for one account (`?account=`, default `demo`).
const DEMO_PAGE: &str = include_str!("../assets/demo.html");

/// The TypeScript SDK (`sdk/js`), one ES module built into `sdk/js/dist/herald.js` and committed,
/// served at `/sdk/herald.js` so the demo page (and anyone trying Herald) can `import` it without
/// a bundler.
const SDK: &str = include_str!("../../../sdk/js/dist/herald.js");

/// Whether `path` is a dev endpoint.
pub fn serves(path: &str) -> bool {
    path == "/dev/token" || path == "/" || path == "/sdk/herald.js"
}

/// Answers a dev endpoint. `/dev/token?account=&sub=&ttl=` issues a token for every channel of the
/// account (ttl 5 to 86400 seconds, default an hour).
pub fn handle(edge: &Edge, req: &Request<Incoming>) -> Response<Body> {
    let Some(dev) = &edge.dev else { return error_response(StatusCode::NOT_FOUND, ErrorCode::BadRequest, "no such endpoint") };
    if req.uri().path() == "/sdk/herald.js" {
        let mut r = Response::new(crate::http::full(SDK));
        r.headers_mut().insert(http::header::CONTENT_TYPE, http::HeaderValue::from_static("text/javascript; charset=utf-8"));
        return r;
    }
    if req.uri().path() == "/" {
        let mut r = Response::new(crate::http::full(DEMO_PAGE));
        r.headers_mut().insert(http::header::CONTENT_TYPE, http::HeaderValue::from_static("text/html; charset=utf-8"));
        return r;
    }
    let account = query_param(req, "account").unwrap_or_else(|| "demo".into());
    if AccountId::new(&account).is_err() {
        return error_response(StatusCode::BAD_REQUEST, ErrorCode::BadRequest, "account must be 1-64 characters of a-z 0-9 _ -");
    }
    let sub = query_param(req, "sub").unwrap_or_else(|| "dev-user".into());
    let ttl = match query_param(req, "ttl").map(|t| t.parse::<u64>()) {
        None => 3600,
        Some(Ok(t)) if (5..=86_400).contains(&t) => t,
        Some(_) => return error_response(StatusCode::BAD_REQUEST, ErrorCode::BadRequest, "ttl must be 5 to 86400 seconds"),
    };
    let now = herald_core::now_ms() / 1000;
    let claims = TokenClaims { sub, account: account.clone(), exp: now + ttl, iat: Some(now), nbf: None, jti: None, subscribe: vec!["*".into()], publish: vec!["*".into()], presence: None };
    let token = dev.issuer.issue(&claims);
    json_response(StatusCode::OK, serde_json::json!({ "token": token, "account": account }).to_string())
}
