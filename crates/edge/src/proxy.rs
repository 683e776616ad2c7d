//! The authorization proxy (`[[auth.proxy]]`, docs/backends.md): before a connection is
//! welcomed, a subscription starts or a client's record is written, the edge asks a backend over
//! HTTP (JSON) or gRPC (`proto/herald/proxy/v1/proxy.proto`, module [`pb`]) and applies its
//! answer: allow or deny with a code; on connect, the rights the connection gets instead of its
//! token's (extra or narrower) and user info shown with its presence; on publish, a rewritten
//! payload.
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
use herald_core::{AccountId, ChannelName, ChannelPattern, UserInfo};
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

/// The generated gRPC code of `herald.proxy.v1` (a Rust backend implements
/// `auth_proxy_server::AuthProxy`).
#[allow(missing_docs, clippy::all)]
pub mod pb {
    tonic::include_proto!("herald.proxy.v1");
}

/// One question, whatever the transport.
struct Question<'a> {
    event: Event,
    account: &'a AccountId,
    user: &'a str,
    connection_id: Option<&'a str>,
    transport: Option<&'a str>,
    client_ip: Option<std::net::IpAddr>,
    channel: Option<&'a ChannelName>,
    data: Option<&'a RawValue>,
}

impl Question<'_> {
    /// The HTTP/JSON body.
    fn json(&self) -> serde_json::Value {
        let mut v = serde_json::json!({ "event": self.event.as_str(), "account": self.account.as_str(), "user": self.user, "connection_id": self.connection_id });
        if self.event == Event::Connect {
            v["transport"] = self.transport.into();
            v["client_ip"] = self.client_ip.map(|ip| ip.to_string()).into();
        }
        if let Some(c) = self.channel {
            v["channel"] = c.as_str().into();
        }
        if let Some(d) = self.data {
            v["data"] = serde_json::from_str(d.get()).unwrap_or(serde_json::Value::Null);
        }
        v
    }
}

/// How a proxy is reached.
enum Transport {
    /// POST JSON; free kept-alive connections (at most `concurrency` exist, the semaphore's
    /// permits).
    Http { target: Arc<Target>, idle: Mutex<Vec<Connection>> },
    /// gRPC (`grpc://host:port`), one multiplexed HTTP/2 channel.
    Grpc(pb::auth_proxy_client::AuthProxyClient<tonic::transport::Channel>),
}

/// What a proxy answered (HTTP 200, JSON; or a gRPC `Decision`, turned into this).
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
    /// Connect: user info shown with the connection's presence (a JSON object of at most 1 KiB;
    /// anything else makes the answer not a decision).
    #[serde(default)]
    info: Option<UserInfo>,
}

/// A decision as applied.
#[derive(Clone, Debug)]
enum Decision {
    Allow { rights: Option<Rights>, data: Option<Bytes>, info: Option<UserInfo> },
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

/// Cached decisions by event, account, user and channel (empty for a connect).
type DecisionCache = HashMap<(Event, AccountId, String, String), (Instant, Decision)>;

/// One configured proxy.
struct Proxy {
    accounts: Vec<AccountId>,
    channels: Vec<ChannelPattern>,
    events: Vec<Event>,
    transport: Transport,
    timeout: Duration,
    cache_ttl: Duration,
    on_error: ProxyFailure,
    slots: tokio::sync::Semaphore,
    cache: Mutex<DecisionCache>,
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
    /// The proxies `configs` describe (URLs and CA files checked now; gRPC channels connect at
    /// the first question, so this needs a Tokio runtime).
    pub fn new(configs: &[ProxyConfig], metrics: Arc<EdgeMetrics>) -> Result<Self, TargetError> {
        let mut list = Vec::new();
        for c in configs {
            let events = [Event::Connect, Event::Subscribe, Event::Publish].into_iter().filter(|e| c.asks(e.as_str())).collect();
            let transport = match c.url.strip_prefix("grpc://") {
                Some(authority) => {
                    // Connects lazily (and again after failures): a proxy down at start is an
                    // error at the first question, as over HTTP.
                    let endpoint = tonic::transport::Endpoint::from_shared(format!("http://{authority}"))
                        .map_err(|e| TargetError(format!("auth.proxy.url {:?}: {e}", c.url)))?
                        .connect_timeout(Duration::from_millis(c.timeout_ms));
                    Transport::Grpc(pb::auth_proxy_client::AuthProxyClient::new(endpoint.connect_lazy()))
                }
                None => Transport::Http {
                    target: Arc::new(Target::new(&c.url, c.ca_file.as_deref()).map_err(|e| TargetError(format!("auth.proxy.url: {}", e.0)))?),
                    idle: Mutex::new(Vec::new()),
                },
            };
            list.push(Proxy {
                accounts: c.accounts.clone(),
                channels: c.channel_patterns(),
                events,
                transport,
                timeout: Duration::from_millis(c.timeout_ms),
                cache_ttl: Duration::from_millis(c.cache_ttl_ms),
                on_error: c.on_error,
                slots: tokio::sync::Semaphore::new(c.concurrency),
                cache: Mutex::new(HashMap::new()),
            });
        }
        Ok(Self { list, metrics })
    }
}

/// Checks a proxy's URL and CA file without connecting (what `herald edge --check` runs).
pub fn check(c: &ProxyConfig) -> Result<(), TargetError> {
    match c.url.strip_prefix("grpc://") {
        Some(authority) => tonic::transport::Endpoint::from_shared(format!("http://{authority}")).map(|_| ()).map_err(|e| TargetError(format!("auth.proxy.url {:?}: {e}", c.url))),
        None => Target::new(&c.url, c.ca_file.as_deref()).map(|_| ()).map_err(|e| TargetError(format!("auth.proxy.url: {}", e.0))),
    }
}

impl Proxies {
    /// The first proxy asked about `event` for `account` (and `channel`).
    fn pick(&self, event: Event, account: &AccountId, channel: Option<&ChannelName>) -> Option<&Proxy> {
        self.list.iter().find(|p| {
            p.events.contains(&event)
                && (p.accounts.is_empty() || p.accounts.contains(account))
                && (p.channels.is_empty() || channel.is_none_or(|c| p.channels.iter().any(|pat| pat.matches(c))))
        })
    }

    /// Asks about a new connection; on allow, `grant` gets the rights and the info the answer
    /// gives.
    pub async fn connect(&self, grant: &mut Grant, connection_id: Option<&str>, transport: &str, client_ip: Option<std::net::IpAddr>) -> Result<(), Refusal> {
        let Some(p) = self.pick(Event::Connect, &grant.account, None) else { return Ok(()) };
        let q = Question { event: Event::Connect, account: &grant.account, user: &grant.user, connection_id, transport: Some(transport), client_ip, channel: None, data: None };
        match self.decide(p, q).await {
            Decision::Allow { rights, info, .. } => {
                if let Some(r) = rights {
                    grant.apply_rights(r);
                }
                grant.info = info;
                Ok(())
            }
            Decision::Deny(r) => Err(r),
        }
    }

    /// Asks about a subscription.
    pub async fn subscribe(&self, grant: &Grant, connection_id: Option<&str>, channel: &ChannelName) -> Result<(), Refusal> {
        let Some(p) = self.pick(Event::Subscribe, &grant.account, Some(channel)) else { return Ok(()) };
        let q = Question { event: Event::Subscribe, account: &grant.account, user: &grant.user, connection_id, transport: None, client_ip: None, channel: Some(channel), data: None };
        match self.decide(p, q).await {
            Decision::Allow { .. } => Ok(()),
            Decision::Deny(r) => Err(r),
        }
    }

    /// Asks about a client's record; `Some(data)` when the proxy rewrote the payload.
    pub async fn publish(&self, grant: &Grant, connection_id: Option<&str>, channel: &ChannelName, data: &[u8]) -> Result<Option<Bytes>, Refusal> {
        let Some(p) = self.pick(Event::Publish, &grant.account, Some(channel)) else { return Ok(None) };
        // The payload was validated as one JSON value before it got here.
        let data: &RawValue = serde_json::from_slice(data).map_err(|_| (ErrorCode::BadRequest, "data is not JSON".to_owned()))?;
        let q = Question { event: Event::Publish, account: &grant.account, user: &grant.user, connection_id, transport: None, client_ip: None, channel: Some(channel), data: Some(data) };
        match self.decide(p, q).await {
            Decision::Allow { data, .. } => Ok(data),
            Decision::Deny(r) => Err(r),
        }
    }

    /// The decision for one event: cached (connect, subscribe), else asked.
    async fn decide(&self, p: &Proxy, q: Question<'_>) -> Decision {
        let event = q.event;
        let key = (event, q.account.clone(), q.user.to_owned(), q.channel.map_or_else(String::new, |c| c.as_str().to_owned()));
        let cacheable = event != Event::Publish && !p.cache_ttl.is_zero();
        if cacheable
            && let Some((at, d)) = p.cache.lock().get(&key)
            && at.elapsed() < p.cache_ttl {
                self.count(event, "cached");
                return d.clone();
            }
        let started = Instant::now();
        let asked = self.ask(p, &q).await;
        self.metrics.histogram("herald_proxy_seconds", "Time the authorization proxy took to answer", &[("event", event.as_str().into())]).record(started.elapsed().as_secs_f64());
        match asked {
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
                    ProxyFailure::Allow => Decision::Allow { rights: None, data: None, info: None },
                    ProxyFailure::Deny => Decision::Deny((ErrorCode::Unavailable, "the authorization service did not answer; retry".into())),
                }
            }
        }
    }

    fn count(&self, event: Event, outcome: &'static str) {
        self.metrics.counter("herald_proxy_requests_total", "Authorization proxy decisions, by event and outcome (allow, deny, cached, error)", &[("event", event.as_str().into()), ("outcome", outcome.into())]).increment(1);
    }

    /// One question, within the proxy's timeout (waiting for a free slot included); the error is
    /// the metric's `kind`: `busy`, `timeout`, `connect`, `tls`, `io`, `status`, `answer`.
    async fn ask(&self, p: &Proxy, q: &Question<'_>) -> Result<Decision, &'static str> {
        let event = q.event;
        let deadline = Instant::now() + p.timeout;
        let _permit = tokio::time::timeout(p.timeout, p.slots.acquire()).await.map_err(|_| "busy")?.map_err(|_| "busy")?;
        let left = deadline.saturating_duration_since(Instant::now());
        let answer = match &p.transport {
            Transport::Http { target, idle } => {
                let mut conn = idle.lock().pop().unwrap_or_else(|| Connection::new(target.clone(), p.timeout));
                let headers = [
                    (http::header::CONTENT_TYPE, HeaderValue::from_static("application/json")),
                    (http::header::USER_AGENT, HeaderValue::from_static(concat!("herald-edge/", env!("CARGO_PKG_VERSION")))),
                ];
                let sent = tokio::time::timeout(left, conn.send(Method::POST, None, &headers, Bytes::from(q.json().to_string()), MAX_ANSWER)).await;
                let resp = match sent {
                    Ok(Ok(r)) => {
                        idle.lock().push(conn);
                        r
                    }
                    Ok(Err(e)) => {
                        tracing::warn!(event = event.as_str(), error = %e, "authorization proxy: no answer");
                        return Err(e.kind);
                    }
                    Err(_) => return Err("timeout"),
                };
                if resp.status != StatusCode::OK {
                    tracing::warn!(event = event.as_str(), status = %resp.status, "authorization proxy: answered neither 200 nor a decision");
                    return Err("status");
                }
                serde_json::from_slice::<Answer>(&resp.body).map_err(|e| {
                    tracing::warn!(event = event.as_str(), error = %e, "authorization proxy: the answer is not a decision");
                    "answer"
                })?
            }
            Transport::Grpc(client) => {
                let mut client = client.clone();
                let (account, user, connection_id) = (q.account.as_str().to_owned(), q.user.to_owned(), q.connection_id.unwrap_or_default().to_owned());
                let channel = q.channel.map_or_else(String::new, |c| c.as_str().to_owned());
                let call = async {
                    match event {
                        Event::Connect => {
                            let transport = q.transport.unwrap_or_default().to_owned();
                            let client_ip = q.client_ip.map_or_else(String::new, |ip| ip.to_string());
                            client.authorize_connect(pb::ConnectRequest { account, user, connection_id, transport, client_ip }).await
                        }
                        Event::Subscribe => client.authorize_subscribe(pb::SubscribeRequest { account, user, connection_id, channel }).await,
                        Event::Publish => {
                            let data = q.data.map_or_else(Vec::new, |d| d.get().as_bytes().to_vec());
                            client.authorize_publish(pb::PublishRequest { account, user, connection_id, channel, data }).await
                        }
                    }
                };
                match tokio::time::timeout(left, call).await {
                    Ok(Ok(d)) => Answer::from_grpc(d.into_inner()).map_err(|e| {
                        tracing::warn!(event = event.as_str(), error = %e, "authorization proxy: the answer is not a decision");
                        "answer"
                    })?,
                    Ok(Err(status)) => {
                        tracing::warn!(event = event.as_str(), code = ?status.code(), message = status.message(), "authorization proxy: no answer");
                        return Err(if status.code() == tonic::Code::Unavailable { "connect" } else { "status" });
                    }
                    Err(_) => return Err("timeout"),
                }
            }
        };
        decision(event, answer).map_err(|e| {
            tracing::warn!(event = event.as_str(), error = %e, "authorization proxy: the answer is not a decision");
            "answer"
        })
    }
}

impl Answer {
    /// A gRPC `Decision` as the JSON answer it stands for.
    fn from_grpc(d: pb::Decision) -> Result<Self, String> {
        let data = d
            .data
            .map(|bytes| String::from_utf8(bytes).map_err(|e| e.to_string()).and_then(|s| RawValue::from_string(s).map_err(|e| format!("data is not one JSON value: {e}"))))
            .transpose()?;
        let info = d
            .info
            .map(|bytes| String::from_utf8(bytes).map_err(|e| e.to_string()).and_then(|s| UserInfo::parse(&s).map_err(|e| e.to_string())))
            .transpose()?;
        let some = |s: String| (!s.is_empty()).then_some(s);
        Ok(Self {
            allow: d.allow,
            code: some(d.code),
            message: some(d.message),
            subscribe: d.subscribe.map(|p| p.patterns),
            publish: d.publish.map(|p| p.patterns),
            presence: d.presence.map(|p| p.patterns),
            data,
            info,
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
    let info = if event == Event::Connect { a.info } else { None };
    Ok(Decision::Allow { rights, data, info })
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
        match decision(Event::Connect, answer(r#"{"allow":true,"info":{"name":"Ann", "role":"responder"}}"#)).unwrap() {
            Decision::Allow { rights: None, info: Some(i), .. } => assert_eq!(i.as_str(), r#"{"name":"Ann","role":"responder"}"#),
            d => panic!("{d:?}"),
        }
        let too_large = format!(r#"{{"allow":true,"info":{{"bio":"{}"}}}}"#, "x".repeat(1024));
        for bad in [r#"{"allow":true,"info":"Ann"}"#, r#"{"allow":true,"info":[1]}"#, too_large.as_str()] {
            assert!(serde_json::from_str::<Answer>(bad).is_err(), "info that is not an object of at most 1 KiB: {bad}");
        }
        let grpc = |info: &[u8]| Answer::from_grpc(pb::Decision { allow: true, info: Some(info.to_vec()), ..Default::default() });
        assert_eq!(grpc(br#"{"name":"Ann"}"#).unwrap().info.unwrap().as_str(), r#"{"name":"Ann"}"#);
        assert!(grpc(b"[1]").is_err() && grpc(&[0xff]).is_err() && grpc(too_large.as_bytes()).is_err());
        assert!(serde_json::from_str::<Answer>(r#"{"allowed":true}"#).is_err(), "an answer that is not a decision");
    }
}
