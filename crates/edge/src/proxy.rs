//! The authorization proxy (`[[auth.proxy]]`, docs/backends.md): before a connection is
//! welcomed, a subscription starts or a client's record is written, the edge asks a backend over
//! HTTP (JSON) and applies its answer: allow or deny with a code; on connect, the rights the
//! connection gets instead of its token's (extra or narrower); on publish, a rewritten payload.
//!
//! Per proxy: a bounded number of requests in flight on this node (kept-alive connections
//! reused), a timeout, decisions on connects and subscribes cached for `cache_ttl_ms`, and
//! `on_error` saying what a proxy that cannot answer means (fail closed: `unavailable`; fail
//! open: the token's own rights). Backend keys never go through it: the backend is the authority.

use bytes::Bytes;
use http::{HeaderValue, Method, StatusCode};
use parking_lot::Mutex;
use serde::Deserialize;
use serde_json::value::RawValue;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use herald_config::{ProxyConfig, ProxyFailure};
use herald_core::{AccountId, ChannelName, ChannelPattern};
use herald_http_client::{Connection, Target, TargetError};
use herald_protocol::ErrorCode;

use crate::auth::Grant;
use crate::metrics::EdgeMetrics;

/// Why a proxy refused (or could not answer, failing closed): the code and message the client
/// gets.
pub type Refusal = (ErrorCode, String);

/// Largest answer read from a proxy (a rewritten payload included).
const MAX_ANSWER: usize = 1 << 20;
/// Most cached decisions per proxy; beyond it expired ones are dropped, then all.
const MAX_CACHED: usize = 100_000;

/// The three events a proxy can be asked about.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
enum Event {
    Connect,
    Subscribe,
    Publish,
}

impl Event {
    fn as_str(self) -> &'static str {
        match self {
            Self::Connect => "connect",
            Self::Subscribe => "subscribe",
            Self::Publish => "publish",
        }
    }
}

/// What a proxy answered (HTTP 200, JSON).
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Answer {
    allow: bool,
    #[serde(default)]
    code: Option<String>,
    #[serde(default)]
    message: Option<String>,
    /// Connect: the connection's subscribe patterns instead of the token's.
    #[serde(default)]
    subscribe: Option<Vec<String>>,
    /// Connect: its publish patterns instead of the token's.
    #[serde(default)]
    publish: Option<Vec<String>>,
    /// Connect: its presence patterns instead of the token's.
    #[serde(default)]
    presence: Option<Vec<String>>,
    /// Publish: the payload to write instead of the client's.
    #[serde(default)]
    data: Option<Box<RawValue>>,
}

/// A decision as applied.
#[derive(Clone, Debug)]
enum Decision {
    Allow { rights: Option<Rights>, data: Option<Bytes> },
    Deny(Refusal),
}

/// Rights a connect answer gives the connection.
#[derive(Clone, Debug)]
pub struct Rights {
    /// Subscribe patterns.
    pub subscribe: Option<Vec<ChannelPattern>>,
    /// Publish patterns.
    pub publish: Option<Vec<ChannelPattern>>,
    /// Presence patterns.
    pub presence: Option<Vec<ChannelPattern>>,
}

/// One configured proxy.
struct Proxy {
    accounts: Vec<AccountId>,
    channels: Vec<ChannelPattern>,
    events: Vec<Event>,
    target: Arc<Target>,
    timeout: Duration,
    cache_ttl: Duration,
    on_error: ProxyFailure,
    /// Free kept-alive connections; at most `concurrency` exist, the semaphore's permits.
    idle: Mutex<Vec<Connection>>,
    slots: tokio::sync::Semaphore,
    cache: Mutex<HashMap<(Event, AccountId, String, String), (Instant, Decision)>>,
}

/// Every configured proxy, in order.
pub struct Proxies {
    list: Vec<Proxy>,
    metrics: Arc<EdgeMetrics>,
}

/// What one ask came to, for the metric's `outcome` label.
fn outcome(d: &Decision) -> &'static str {
    match d {
        Decision::Allow { .. } => "allow",
        Decision::Deny(_) => "deny",
    }
}

impl Proxies {
    /// The proxies `configs` describe (URLs and CA files checked now).
    pub fn new(configs: &[ProxyConfig], metrics: Arc<EdgeMetrics>) -> Result<Self, TargetError> {
        let mut list = Vec::new();
        for c in configs {
            let events = [Event::Connect, Event::Subscribe, Event::Publish].into_iter().filter(|e| c.asks(e.as_str())).collect();
            list.push(Proxy {
                accounts: c.accounts.clone(),
                channels: c.channel_patterns(),
                events,
                target: Arc::new(Target::new(&c.url, c.ca_file.as_deref()).map_err(|e| TargetError(format!("auth.proxy.url: {}", e.0)))?),
                timeout: Duration::from_millis(c.timeout_ms),
                cache_ttl: Duration::from_millis(c.cache_ttl_ms),
                on_error: c.on_error,
                idle: Mutex::new(Vec::new()),
                slots: tokio::sync::Semaphore::new(c.concurrency),
                cache: Mutex::new(HashMap::new()),
            });
        }
        Ok(Self { list, metrics })
    }

    /// The first proxy asked about `event` for `account` (and `channel`).
    fn pick(&self, event: Event, account: &AccountId, channel: Option<&ChannelName>) -> Option<&Proxy> {
        self.list.iter().find(|p| {
            p.events.contains(&event)
                && (p.accounts.is_empty() || p.accounts.contains(account))
                && (p.channels.is_empty() || channel.is_none_or(|c| p.channels.iter().any(|pat| pat.matches(c))))
        })
    }

    /// Asks about a new connection; on allow, `grant` gets the rights the answer gives.
    pub async fn connect(&self, grant: &mut Grant, connection_id: Option<&str>, transport: &str, client_ip: Option<std::net::IpAddr>) -> Result<(), Refusal> {
        let Some(p) = self.pick(Event::Connect, &grant.account, None) else { return Ok(()) };
        let body = serde_json::json!({
            "event": "connect", "account": grant.account.as_str(), "user": grant.user, "connection_id": connection_id,
            "transport": transport, "client_ip": client_ip.map(|ip| ip.to_string()),
        });
        match self.decide(p, Event::Connect, &grant.account, &grant.user, "", body).await {
            Decision::Allow { rights: Some(r), .. } => {
                grant.apply_rights(r);
                Ok(())
            }
            Decision::Allow { .. } => Ok(()),
            Decision::Deny(r) => Err(r),
        }
    }

    /// Asks about a subscription.
    pub async fn subscribe(&self, grant: &Grant, connection_id: Option<&str>, channel: &ChannelName) -> Result<(), Refusal> {
        let Some(p) = self.pick(Event::Subscribe, &grant.account, Some(channel)) else { return Ok(()) };
        let body = serde_json::json!({
            "event": "subscribe", "account": grant.account.as_str(), "user": grant.user, "connection_id": connection_id, "channel": channel.as_str(),
        });
        match self.decide(p, Event::Subscribe, &grant.account, &grant.user, channel.as_str(), body).await {
            Decision::Allow { .. } => Ok(()),
            Decision::Deny(r) => Err(r),
        }
    }

    /// Asks about a client's record; `Some(data)` when the proxy rewrote the payload.
    pub async fn publish(&self, grant: &Grant, connection_id: Option<&str>, channel: &ChannelName, data: &[u8]) -> Result<Option<Bytes>, Refusal> {
        let Some(p) = self.pick(Event::Publish, &grant.account, Some(channel)) else { return Ok(None) };
        // The payload was validated as one JSON value before it got here.
        let data: &RawValue = serde_json::from_slice(data).map_err(|_| (ErrorCode::BadRequest, "data is not JSON".to_owned()))?;
        let body = serde_json::json!({
            "event": "publish", "account": grant.account.as_str(), "user": grant.user, "connection_id": connection_id, "channel": channel.as_str(), "data": data,
        });
        match self.decide(p, Event::Publish, &grant.account, &grant.user, channel.as_str(), body).await {
            Decision::Allow { data, .. } => Ok(data),
            Decision::Deny(r) => Err(r),
        }
    }

    /// The decision for one event: cached (connect, subscribe), else asked.
    async fn decide(&self, p: &Proxy, event: Event, account: &AccountId, user: &str, channel: &str, body: serde_json::Value) -> Decision {
        let key = (event, account.clone(), user.to_owned(), channel.to_owned());
        let cacheable = event != Event::Publish && !p.cache_ttl.is_zero();
        if cacheable
            && let Some((at, d)) = p.cache.lock().get(&key)
            && at.elapsed() < p.cache_ttl {
                self.count(event, "cached");
                return d.clone();
            }
        let started = Instant::now();
        let asked = self.ask(p, event, body).await;
        self.metrics.histogram("herald_proxy_seconds", "Time the authorization proxy took to answer", &[("event", event.as_str().into())]).record(started.elapsed().as_secs_f64());
        let decision = match asked {
            Ok(d) => {
                self.count(event, outcome(&d));
                if cacheable {
                    let mut cache = p.cache.lock();
                    if cache.len() >= MAX_CACHED {
                        cache.retain(|_, (at, _)| at.elapsed() < p.cache_ttl);
                        if cache.len() >= MAX_CACHED {
                            cache.clear();
                        }
                    }
                    cache.insert(key, (Instant::now(), d.clone()));
                }
                d
            }
            Err(kind) => {
                self.count(event, "error");
                self.metrics.counter("herald_proxy_errors_total", "Authorization proxy calls that got no decision, by kind", &[("event", event.as_str().into()), ("kind", kind.into())]).increment(1);
                match p.on_error {
                    ProxyFailure::Allow => Decision::Allow { rights: None, data: None },
                    ProxyFailure::Deny => Decision::Deny((ErrorCode::Unavailable, "the authorization service did not answer; retry".into())),
                }
            }
        };
        decision
    }

    fn count(&self, event: Event, outcome: &'static str) {
        self.metrics.counter("herald_proxy_requests_total", "Authorization proxy decisions, by event and outcome (allow, deny, cached, error)", &[("event", event.as_str().into()), ("outcome", outcome.into())]).increment(1);
    }

    /// One request, within the proxy's timeout (waiting for a free slot included); the error is
    /// the metric's `kind`: `busy`, `timeout`, `connect`, `tls`, `io`, `status`, `answer`.
    async fn ask(&self, p: &Proxy, event: Event, body: serde_json::Value) -> Result<Decision, &'static str> {
        let deadline = Instant::now() + p.timeout;
        let permit = tokio::time::timeout(p.timeout, p.slots.acquire()).await.map_err(|_| "busy")?.map_err(|_| "busy")?;
        let mut conn = p.idle.lock().pop().unwrap_or_else(|| Connection::new(p.target.clone(), p.timeout));
        let headers = [
            (http::header::CONTENT_TYPE, HeaderValue::from_static("application/json")),
            (http::header::USER_AGENT, HeaderValue::from_static(concat!("herald-edge/", env!("CARGO_PKG_VERSION")))),
        ];
        let left = deadline.saturating_duration_since(Instant::now());
        let sent = tokio::time::timeout(left, conn.send(Method::POST, None, &headers, Bytes::from(body.to_string()), MAX_ANSWER)).await;
        let resp = match sent {
            Ok(Ok(r)) => {
                p.idle.lock().push(conn);
                r
            }
            Ok(Err(e)) => {
                tracing::warn!(event = event.as_str(), error = %e, "authorization proxy: no answer");
                return Err(e.kind);
            }
            Err(_) => return Err("timeout"),
        };
        drop(permit);
        if resp.status != StatusCode::OK {
            tracing::warn!(event = event.as_str(), status = %resp.status, "authorization proxy: answered neither 200 nor a decision");
            return Err("status");
        }
        let answer: Answer = serde_json::from_slice(&resp.body).map_err(|e| {
            tracing::warn!(event = event.as_str(), error = %e, "authorization proxy: the answer is not a decision");
            "answer"
        })?;
        decision(event, answer).map_err(|e| {
            tracing::warn!(event = event.as_str(), error = %e, "authorization proxy: the answer is not a decision");
            "answer"
        })
    }
}

/// The codes a proxy may deny with (others become `forbidden`): the protocol's codes a refusal
/// can mean.
const DENY_CODES: [ErrorCode; 5] = [ErrorCode::Forbidden, ErrorCode::Unauthorized, ErrorCode::RateLimited, ErrorCode::BadRequest, ErrorCode::MessageTooLarge];

/// An answer checked and turned into a decision.
fn decision(event: Event, a: Answer) -> Result<Decision, String> {
    if !a.allow {
        let code = a.code.as_deref().and_then(|c| DENY_CODES.iter().find(|k| k.as_str() == c).copied()).unwrap_or(ErrorCode::Forbidden);
        let message = a.message.unwrap_or_else(|| format!("{} refused by the authorization service", event.as_str()));
        return Ok(Decision::Deny((code, message.chars().take(256).collect())));
    }
    let patterns = |v: Option<Vec<String>>, what: &str| -> Result<Option<Vec<ChannelPattern>>, String> {
        v.map(|ps| ps.iter().map(|p| ChannelPattern::parse(p).map_err(|e| format!("{what} {p:?}: {e}"))).collect()).transpose()
    };
    let rights = match event {
        Event::Connect if a.subscribe.is_some() || a.publish.is_some() || a.presence.is_some() => {
            Some(Rights { subscribe: patterns(a.subscribe, "subscribe")?, publish: patterns(a.publish, "publish")?, presence: patterns(a.presence, "presence")? })
        }
        _ => None,
    };
    let data = match (event, a.data) {
        (Event::Publish, Some(d)) => Some(Bytes::copy_from_slice(d.get().as_bytes())),
        _ => None,
    };
    Ok(Decision::Allow { rights, data })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn answer(json: &str) -> Answer {
        serde_json::from_str(json).unwrap()
    }

    #[test]
    fn answers_become_decisions_and_bad_ones_are_errors() {
        match decision(Event::Subscribe, answer(r#"{"allow":false,"code":"rate_limited","message":"slow down"}"#)).unwrap() {
            Decision::Deny((code, m)) => assert_eq!((code, m.as_str()), (ErrorCode::RateLimited, "slow down")),
            d => panic!("{d:?}"),
        }
        match decision(Event::Subscribe, answer(r#"{"allow":false,"code":"shutting_down"}"#)).unwrap() {
            Decision::Deny((code, _)) => assert_eq!(code, ErrorCode::Forbidden, "a code a refusal cannot mean becomes forbidden"),
            d => panic!("{d:?}"),
        }
        match decision(Event::Connect, answer(r#"{"allow":true,"subscribe":["incident-7"],"publish":[]}"#)).unwrap() {
            Decision::Allow { rights: Some(r), .. } => {
                assert_eq!(r.subscribe.unwrap().len(), 1);
                assert_eq!(r.publish.unwrap().len(), 0);
                assert!(r.presence.is_none(), "presence stays the token's");
            }
            d => panic!("{d:?}"),
        }
        match decision(Event::Publish, answer(r#"{"allow":true,"data":{"text":"[redacted]"}}"#)).unwrap() {
            Decision::Allow { data: Some(d), .. } => assert_eq!(&d[..], br#"{"text":"[redacted]"}"#),
            d => panic!("{d:?}"),
        }
        assert!(decision(Event::Connect, answer(r#"{"allow":true,"subscribe":["a*b*"]}"#)).is_err());
        assert!(serde_json::from_str::<Answer>(r#"{"allowed":true}"#).is_err(), "an answer that is not a decision");
    }
}
