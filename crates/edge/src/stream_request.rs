//! What SSE and long-poll requests have in common: a token, a channel list and a resume cursor.

use http::Request;
use hyper::body::Incoming;

use herald_core::{ChannelKey, ChannelName, Cursor};
use herald_protocol::ErrorCode;

use crate::auth::Grant;
use crate::http::{Body, code_response, origin, query_param, token_from_request};
use http::Response;
use crate::limits::{AccountSlot, IpSlot, Limit};
use std::net::SocketAddr;
use crate::state::Edge;

/// A validated SSE or long-poll request.
pub struct StreamRequest {
    /// The connection's places in its address's and account's counts.
    pub slots: (IpSlot, AccountSlot),
    /// What the token grants.
    pub grant: Grant,
    /// The channels, deduplicated, in the order given.
    pub channels: Vec<ChannelKey>,
    /// Where to resume (`Last-Event-ID`, else `?since=`, the oldest when it lists several).
    pub since: Option<Cursor>,
}

/// Validates token, channels and cursor, and asks the authorization proxy (when one is
/// configured) about the connection (`transport`: `sse` or `poll`) and each channel; a refusal
/// is counted and comes back as the response to send.
pub async fn parse(edge: &Edge, req: &Request<Incoming>, peer: SocketAddr, transport: &str) -> Result<StreamRequest, Response<Body>> {
    let refuse = |(code, msg): (ErrorCode, String)| {
        edge.metrics.protocol_error(code);
        code_response(code, &msg)
    };
    let mut grant = token_grant(edge, req).map_err(refuse)?;
    if let Some(p) = &edge.proxies {
        p.connect(&mut grant, None, transport, Some(peer.ip())).await.map_err(refuse)?;
    }
    let sr = check(edge, req, peer, grant).map_err(refuse)?;
    if let Some(p) = &edge.proxies {
        for key in &sr.channels {
            p.subscribe(&sr.grant, None, &key.channel).await.map_err(refuse)?;
        }
    }
    Ok(sr)
}

fn token_grant(edge: &Edge, req: &Request<Incoming>) -> Result<Grant, (ErrorCode, String)> {
    if edge.drain.is_cancelled() {
        return Err((ErrorCode::ShuttingDown, "this node is draining".into()));
    }
    let token = token_from_request(req).ok_or((ErrorCode::Unauthorized, "a token is required (Authorization: Bearer or ?token=)".to_string()))?;
    edge.verify(&token).map_err(|e| (e.code, e.message))
}

fn check(edge: &Edge, req: &Request<Incoming>, peer: SocketAddr, grant: Grant) -> Result<StreamRequest, (ErrorCode, String)> {
    if !edge.origin_allowed(&grant.account, origin(req).as_deref()) {
        return Err((ErrorCode::Forbidden, "this origin may not connect to this account".into()));
    }
    let limited = |l: Limit| (ErrorCode::RateLimited, l.message().to_owned());
    let slots = (edge.limits.admit_ip(peer.ip()).map_err(limited)?, edge.limits.admit_account(&grant.account).map_err(limited)?);
    let list = query_param(req, "channels").unwrap_or_default();
    let mut channels: Vec<ChannelKey> = Vec::new();
    for name in list.split(',').filter(|s| !s.is_empty()) {
        let ch = ChannelName::new(name).map_err(|e| (ErrorCode::InvalidChannel, e.to_string()))?;
        if !grant.may_subscribe(&ch) {
            return Err((ErrorCode::Forbidden, format!("token may not subscribe to {ch}")));
        }
        let key = ChannelKey::new(grant.account.clone(), ch);
        if !channels.contains(&key) {
            channels.push(key);
        }
    }
    if channels.is_empty() {
        return Err((ErrorCode::BadRequest, "channels=a,b is required".into()));
    }
    if channels.len() > edge.config.max_subscriptions {
        return Err((ErrorCode::TooManySubscriptions, "too many channels".into()));
    }
    let since_text = req
        .headers()
        .get("last-event-id")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
        .filter(|s| !s.is_empty())
        .or_else(|| query_param(req, "since").filter(|s| !s.is_empty()));
    // `since` may list several cursors (one per channel, say): the stream starts at the oldest.
    let since = match since_text {
        None => None,
        Some(text) => {
            let list = text.split(',').filter(|s| !s.is_empty()).map(Cursor::parse).collect::<Result<Vec<_>, _>>().map_err(|e| (ErrorCode::InvalidCursor, e.to_string()))?;
            if list.len() > edge.config.max_subscriptions {
                return Err((ErrorCode::InvalidCursor, "more cursors than channels allowed".into()));
            }
            Cursor::earliest(&list)
        }
    };
    Ok(StreamRequest { slots, grant, channels, since })
}
