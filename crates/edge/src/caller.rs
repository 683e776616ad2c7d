//! Who calls an endpoint that both backends and clients use (history, channel info, devices):
//! an account's API key, the admin key naming the account (`account=NAME`), or a client token
//! (checked against the account's browser origins). The publish API has its own rules (the admin
//! key names the account per record).

use http::Request;
use hyper::body::Incoming;

use herald_core::AccountId;
use herald_protocol::ErrorCode;

use crate::auth::{Grant, KeyOwner};
use crate::http::{bearer, origin, query_param};
use crate::state::Edge;

/// The caller of a backend-or-client endpoint.
pub enum Caller {
    /// A client token: its account, its rights.
    Client(Grant),
    /// An account's key, or the admin key naming the account.
    Backend(AccountId),
}

/// Identifies the caller, or says why it is refused (code and message).
pub fn identify(edge: &Edge, req: &Request<Incoming>) -> Result<Caller, (ErrorCode, String)> {
    let key = bearer(req).ok_or((ErrorCode::Unauthorized, "an API key or a client token is required (Authorization: Bearer)".to_string()))?;
    match (edge.api_keys.owner(&key), query_param(req, "account")) {
        (Some(KeyOwner::Admin), Some(named)) => AccountId::new(&named).map(Caller::Backend).map_err(|e| (ErrorCode::BadRequest, format!("account: {e}"))),
        (Some(KeyOwner::Admin), None) => Err((ErrorCode::BadRequest, "the admin key must name the account (account=NAME)".into())),
        (Some(KeyOwner::Account(a)), None) => Ok(Caller::Backend(a)),
        (Some(KeyOwner::Account(a)), Some(named)) if named == a.as_str() => Ok(Caller::Backend(a)),
        (Some(KeyOwner::Account(_)), Some(_)) => Err((ErrorCode::Forbidden, "this key may only use its own account".into())),
        (None, _) => match edge.verify(&key) {
            Ok(g) if !edge.origin_allowed(&g.account, origin(req).as_deref()) => Err((ErrorCode::Forbidden, "this origin may not use this account".into())),
            Ok(g) => Ok(Caller::Client(g)),
            Err(e) => Err((e.code, e.message)),
        },
    }
}
