//! The edge's shared state, and the operations every transport shares (publish, auth).

use bytes::Bytes;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use herald_config::{Config, EdgeConfig};
use herald_core::{AccountId, Appended, Bus, BusError, ChannelName, FeedEvent, NewRecord, Orders, Presence, RegionName, now_ms};
use herald_protocol::ErrorCode;

use herald_engine::{Engine, EngineSettings};

use crate::auth::{ApiKeys, AuthError, Grant, TokenIssuer, TokenVerifier};
use crate::limits::Limits;
use crate::metrics::EdgeMetrics;

/// What an edge is built from: its adapters and its metrics registry.
pub struct EdgeDeps {
    /// The bus.
    pub bus: Arc<dyn Bus>,
    /// Presence storage.
    pub presence: Arc<dyn Presence>,
    /// The metrics registry this edge reports into.
    pub metrics: Arc<EdgeMetrics>,
    /// Set in `herald dev`: serves the demo page and `/dev/token`.
    pub dev: Option<DevMode>,
    /// Where mobile devices register for push (`/v1/devices`); none: registration is refused.
    pub devices: Option<Arc<dyn herald_core::DeviceRegistry>>,
    /// The region's orders (disconnects, token revocations), beside presence.
    pub orders: Arc<dyn Orders>,
}

/// Development conveniences, never enabled in production roles.
pub struct DevMode {
    /// Mints tokens for `/dev/token` (the demo page).
    pub issuer: TokenIssuer,
    /// The operator's console, served on the main listener in `herald dev`.
    pub console: Option<Arc<crate::console::Console>>,
}

/// Why an edge could not be built.
#[derive(Debug, thiserror::Error)]
pub enum EdgeError {
    /// A token verification key cannot be used.
    #[error("edge config: {0}")]
    Keys(#[from] crate::keys::KeyError),
    /// The TLS certificate or key cannot be used.
    #[error("edge config: {0}")]
    Tls(#[from] crate::tls::TlsError),
    /// An authorization proxy's URL or CA file cannot be used.
    #[error("edge config: {0}")]
    Proxy(#[from] herald_http_client::TargetError),
    /// The bus failed at start.
    #[error("bus: {0}")]
    Bus(#[from] BusError),
    /// Binding or serving failed.
    #[error("io: {0}")]
    Io(#[from] std::io::Error),
}

/// Why a publish was refused. Nothing was written. `publish` turns it into an HTTP
/// response and `session` into an error frame, each in one place.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum PublishError {
    /// A payload is larger than `max_message_bytes` (the account's, else the edge's).
    #[error("data is larger than max_message_bytes")]
    TooLarge,
    /// An idempotency key is empty or longer than 128 characters.
    #[error("idempotency_key must be 1-128 characters")]
    BadIdempotencyKey,
    /// A publish rate limit (the connection's or the account's).
    #[error("{}", .0.message())]
    RateLimited(crate::limits::Limit),
    /// The bus did not take the records; retry.
    #[error("the bus is unavailable; retry later")]
    Unavailable,
}

impl PublishError {
    /// The protocol's code for it.
    pub fn code(self) -> ErrorCode {
        match self {
            Self::TooLarge => ErrorCode::MessageTooLarge,
            Self::BadIdempotencyKey => ErrorCode::BadRequest,
            Self::RateLimited(_) => ErrorCode::RateLimited,
            Self::Unavailable => ErrorCode::Unavailable,
        }
    }
}

/// One item of a publish.
pub struct PublishItem {
    /// The account.
    pub account: AccountId,
    /// The channel.
    pub channel: ChannelName,
    /// The JSON payload.
    pub data: Bytes,
    /// Optional idempotency key.
    pub idempotency_key: Option<String>,
}

/// The shared state of one edge node.
pub struct Edge {
    /// Edge settings.
    pub(crate) config: EdgeConfig,
    /// This node's name.
    pub node: String,
    /// This node's region.
    pub region: RegionName,
    /// The bus.
    pub bus: Arc<dyn Bus>,
    /// Presence storage.
    pub(crate) presence: Arc<dyn Presence>,
    /// The fan-out engine: hub, partition consumers, subscriptions.
    pub(crate) engine: Arc<Engine>,
    /// Token verification.
    pub verifier: TokenVerifier,
    /// Publish API keys.
    pub api_keys: ApiKeys,
    /// Connection and rate limits.
    pub limits: Arc<Limits>,
    /// The JWKS URL, when configured, and how often it is fetched again.
    pub(crate) jwks_url: Option<String>,
    /// Seconds between JWKS fetches.
    pub(crate) jwks_refresh_secs: u64,
    /// TLS on the listener, when configured.
    pub tls: Option<Arc<crate::tls::TlsReloader>>,
    /// Per-account allowed browser origins (absent: any).
    allowed_origins: std::collections::HashMap<AccountId, Vec<String>>,
    /// Metrics.
    pub metrics: Arc<EdgeMetrics>,
    /// Cancelled when the node starts draining (SIGTERM).
    pub drain: CancellationToken,
    /// Development mode.
    pub(crate) dev: Option<DevMode>,
    /// Device registrations for push, when configured.
    pub(crate) devices: Option<Arc<dyn herald_core::DeviceRegistry>>,
    /// The authorization proxies (`[[auth.proxy]]`), when any is configured.
    pub(crate) proxies: Option<crate::proxy::Proxies>,
    /// The region's orders.
    pub(crate) orders: Arc<dyn Orders>,
    /// The revocations standing in the region, as this node last heard.
    pub(crate) standing: crate::orders::Standing,
    /// This node's open sessions, for orders to reach.
    pub(crate) live: crate::lifecycle::LiveSessions,
    /// `jti`s of publish-capable tokens already used for a session, until they expire.
    used_jtis: parking_lot::Mutex<std::collections::HashMap<(AccountId, String), u64>>,
    ready: AtomicBool,
    /// The end-to-end probe's verdict.
    pub(crate) probe: crate::probe::ProbeState,
    sessions: AtomicUsize,
    sessions_gone: Notify,
}

pub use herald_engine::BUS_GAP_UNREADY_MS;

impl Edge {
    /// The `[edge]` settings it runs with.
    pub fn config(&self) -> &EdgeConfig {
        &self.config
    }

    /// Builds the edge state from validated config and its dependencies.
    pub fn new(config: &Config, deps: EdgeDeps) -> Result<Arc<Self>, EdgeError> {
        let a = &config.auth;
        let no_local_keys = a.jwt_secret.is_none() && a.keys.is_empty() && a.jwks_file.is_none() && a.jwks_url.is_none();
        let keys = if no_local_keys && !config.control.endpoints.is_empty() {
            // Every token key comes from the control plane.
            Vec::new()
        } else {
            crate::keys::load(&config.auth)?
        };
        let region = config.edge.region.clone();
        let node = if config.edge.node.is_empty() { format!("edge-{:06x}", rand::random::<u32>() & 0xff_ffff) } else { config.edge.node.clone() };
        let latest = config.edge.latest_value.iter().map(|l| (l.channels.clone(), l.key.clone())).collect();
        let priorities = config.edge.priority.iter().map(|p| (p.channels.clone(), p.priority)).collect();
        let settings = EngineSettings {
            max_queued_bytes: config.edge.max_queued_bytes,
            history_cache_records: config.edge.history_cache_records,
            consumer_linger: std::time::Duration::from_millis(config.edge.consumer_linger_ms),
            gap_confirm: std::time::Duration::from_millis(config.bus.gap_confirm_ms),
            latest_value: latest,
            priorities,
        };
        let engine = Engine::new(deps.bus.clone(), settings, deps.metrics.engine());
        let proxies = if a.proxy.is_empty() { None } else { Some(crate::proxy::Proxies::new(&a.proxy, deps.metrics.clone())?) };
        Ok(Arc::new(Self {
            config: config.edge.clone(),
            node,
            region,
            engine,
            verifier: TokenVerifier::new(keys, config.auth.leeway_secs),
            api_keys: ApiKeys::new(config.auth.admin_api_key.clone(), &config.auth.account_keys),
            limits: Arc::new(Limits::new(config.limits.clone(), deps.metrics.clone())),
            jwks_url: config.auth.jwks_url.clone(),
            jwks_refresh_secs: if config.auth.jwks_refresh_secs == 0 { 300 } else { config.auth.jwks_refresh_secs },
            tls: config.edge.tls.as_ref().map(|t| crate::tls::TlsReloader::new(t).map(Arc::new)).transpose()?,
            allowed_origins: config.auth.allowed_origins.iter().map(|(a, o)| (a.clone(), o.clone())).collect(),
            bus: deps.bus,
            presence: deps.presence,
            metrics: deps.metrics,
            drain: CancellationToken::new(),
            dev: deps.dev,
            devices: deps.devices,
            proxies,
            orders: deps.orders,
            standing: Default::default(),
            live: Default::default(),
            used_jtis: parking_lot::Mutex::new(std::collections::HashMap::new()),
            ready: AtomicBool::new(false),
            probe: Default::default(),
            sessions: AtomicUsize::new(0),
            sessions_gone: Notify::new(),
        }))
    }

    /// Whether `/readyz` says ready: serving, not draining, and its probe records come back
    /// through the bus.
    pub fn is_ready(&self) -> bool {
        self.ready.load(Ordering::Acquire) && !self.drain.is_cancelled() && self.probe.is_ok() && !self.engine.bus_gap_recent()
    }

    /// Whether a hole in the bus was confirmed within the last [`BUS_GAP_UNREADY_MS`]: the node
    /// is unready meanwhile, so new clients go to nodes that have not seen one.
    pub fn bus_gap_recent(&self) -> bool {
        self.engine.bus_gap_recent()
    }

    /// Sets readiness.
    pub fn set_ready(&self, ready: bool) {
        self.ready.store(ready, Ordering::Release);
        self.metrics.ready.set(if ready { 1.0 } else { 0.0 });
    }

    /// Whether a browser page from `origin` may connect to `account` (no `Origin` header: not a
    /// browser, allowed).
    pub fn origin_allowed(&self, account: &AccountId, origin: Option<&str>) -> bool {
        match (self.allowed_origins.get(account), origin) {
            (Some(list), Some(o)) => list.iter().any(|a| a == o),
            _ => true,
        }
    }

    /// Verifies a client token, and refuses one a standing revocation names.
    pub fn verify(&self, token: &str) -> Result<Grant, AuthError> {
        let grant = self.verifier.verify(token)?;
        if self.standing.refuses(grant.facts()) {
            return Err(AuthError { code: ErrorCode::Unauthorized, message: "token revoked".into() });
        }
        Ok(grant)
    }

    /// Verifies a token that opens a WebSocket session (or refreshes one): a publish-capable token
    /// carrying a `jti` is accepted once within its lifetime, so a stolen one cannot be replayed
    /// to publish.
    pub fn verify_for_session(&self, token: &str) -> Result<Grant, AuthError> {
        let grant = self.verify(token)?;
        if let (Some(jti), true) = (&grant.jti, grant.may_publish_anything()) {
            let now = herald_core::now_ms() / 1000;
            let mut used = self.used_jtis.lock();
            if used.len() > 10_000 {
                used.retain(|_, exp| *exp >= now);
            }
            let key = (grant.account.clone(), jti.clone());
            if used.get(&key).is_some_and(|exp| *exp >= now) {
                return Err(AuthError { code: ErrorCode::Unauthorized, message: "this token (jti) was already used".into() });
            }
            used.insert(key, grant.expires_at);
        }
        Ok(grant)
    }

    /// Counts a client session for the life of the returned guard.
    pub fn session_guard(self: &Arc<Self>) -> SessionGuard {
        self.sessions.fetch_add(1, Ordering::AcqRel);
        self.metrics.connections.increment(1.0);
        SessionGuard { edge: self.clone() }
    }

    /// Open client sessions.
    pub fn session_count(&self) -> usize {
        self.sessions.load(Ordering::Acquire)
    }

    /// Waits until no client session is open.
    pub async fn sessions_closed(&self) {
        loop {
            let n = self.sessions_gone.notified();
            tokio::pin!(n);
            n.as_mut().enable();
            if self.session_count() == 0 {
                return;
            }
            n.await;
        }
    }

    /// Counts a refused publish, reports it to the presence feed (`publish_rejected` for
    /// backends; `channel` is `None` for an account's rate limit on a batch) and hands the error
    /// back. Every refusal goes through here.
    pub fn publish_refused(&self, e: PublishError, account: &AccountId, channel: Option<&ChannelName>) -> PublishError {
        self.count_refused_publish(e.code(), account, channel);
        e
    }

    /// A client's record the authorization proxy refused (with its code), counted and reported
    /// like every other refusal.
    pub fn publish_refused_by_proxy(&self, account: &AccountId, channel: &ChannelName, code: ErrorCode) {
        self.count_refused_publish(code, account, Some(channel));
    }

    fn count_refused_publish(&self, code: ErrorCode, account: &AccountId, channel: Option<&ChannelName>) {
        self.metrics.publish_error(code);
        if account.as_str() != crate::probe::PROBE_ACCOUNT {
            let event = FeedEvent::PublishRejected { account: account.clone(), channel: channel.cloned(), code: code.as_str().to_owned() };
            self.presence.report(&self.node, event);
        }
    }

    /// Takes `n` publishes from `account`'s rate limit.
    pub fn take_account_publish(&self, account: &AccountId, n: u32) -> Result<(), PublishError> {
        self.limits.account_publish(account, n).map_err(|l| self.publish_refused(PublishError::RateLimited(l), account, None))
    }

    /// Publishes records, validating each payload's size first. Returns where each landed.
    /// Nothing is written when any item is refused.
    pub async fn publish(&self, items: Vec<PublishItem>) -> Result<Vec<Appended>, PublishError> {
        self.publish_traced(items, None).await
    }

    /// [`Edge::publish`], the records carrying the publish's trace context.
    pub async fn publish_traced(&self, items: Vec<PublishItem>, trace: Option<herald_core::TraceParent>) -> Result<Vec<Appended>, PublishError> {
        // Publishing stays open while draining: the bus outlives this node.
        if items.is_empty() {
            return Ok(Vec::new());
        }
        for it in &items {
            if it.data.len() > self.limits.max_message_bytes(&it.account, self.config.max_message_bytes) {
                return Err(self.publish_refused(PublishError::TooLarge, &it.account, Some(&it.channel)));
            }
            if it.idempotency_key.as_ref().is_some_and(|k| k.is_empty() || k.len() > 128) {
                return Err(self.publish_refused(PublishError::BadIdempotencyKey, &it.account, Some(&it.channel)));
            }
        }
        let now = now_ms();
        let n = items.iter().filter(|i| i.account.as_str() != crate::probe::PROBE_ACCOUNT).count() as u64;
        // Who is told when the bus refuses: the batch's first item (a batch fails as a whole).
        let first = (items[0].account.clone(), items[0].channel.clone());
        let records = items
            .into_iter()
            .map(|it| NewRecord { account: it.account, channel: it.channel, data: it.data, idempotency_key: it.idempotency_key, published_at_ms: now, trace })
            .collect();
        match self.bus.append(records).await {
            Ok(a) => {
                self.metrics.records_published.increment(n);
                Ok(a)
            }
            Err(e) => {
                tracing::warn!(error = %e, "publish failed");
                Err(self.publish_refused(PublishError::Unavailable, &first.0, Some(&first.1)))
            }
        }
    }
}

/// Keeps a session counted while alive.
pub struct SessionGuard {
    edge: Arc<Edge>,
}

impl Drop for SessionGuard {
    fn drop(&mut self) {
        self.edge.metrics.connections.decrement(1.0);
        if self.edge.sessions.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.edge.sessions_gone.notify_waiters();
        }
    }
}

/// Checks that `data` is one JSON value and returns its text.
pub fn validate_json(data: &str) -> Result<Bytes, ErrorCode> {
    serde_json::from_str::<serde::de::IgnoredAny>(data).map_err(|_| ErrorCode::BadRequest)?;
    Ok(Bytes::copy_from_slice(data.as_bytes()))
}
