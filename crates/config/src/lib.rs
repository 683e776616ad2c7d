//! Herald's typed configuration.
//!
//! # Layout
//! [`Config`] is the whole file (`herald.toml`): `[edge]`, `[bus]`, `[kafka]` (module `kafka`),
//! `[auth]` (with `[[auth.proxy]]`, module `proxy`), `[limits]`, `[presence]`, `[control]`, `[log]`, `[[sources]]`, `[push]` (module
//! `push`, mobile push; checked as it is read), `[console]` (module `console`), `[tracing]`
//! (module `traces`), `[webhooks]` (module `webhooks`, read by `herald webhooks`). Every
//! field has a default (`#[serde(default)]`) and unknown fields are refused
//! (`deny_unknown_fields`), so a typo fails at start instead of being ignored. The order is
//! fixed: [`Config::from_file`] (or `Default`), then [`Config::apply_env`], then the binary's
//! flags, then [`Config::validate`], which names the offending field.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod console;
mod control;
mod kafka;
mod presence;
mod proxy;
mod push;
mod traces;
mod webhooks;

pub use console::ConsoleConfig;
pub use control::ControlTlsConfig;
pub use traces::{OtlpProtocol, TracingConfig};
pub use kafka::KafkaConfig;
pub use presence::{PresenceConfig, PresenceTlsConfig, RedisLogin, RemotePresenceConfig, check_redis_url};
pub use proxy::{PROXY_EVENTS, ProxyConfig, ProxyFailure};
pub use push::{ApnsConfig, FcmConfig, JsonPointer, MAX_TTL_SECS, OneOrMany, PushChannelConfig, PushConfig, PushPriority, Template, TemplatePart};
pub use webhooks::{WEBHOOK_EVENT_TYPES, WebhookEndpointConfig, WebhooksConfig};

use serde::Deserialize;
use std::collections::BTreeMap;

use herald_core::{AccountId, ChannelPattern, RegionName};
use std::net::SocketAddr;
use std::path::Path;

/// A configuration problem, naming the field.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read {path}: {source}")]
    Read {
        /// The path.
        path: String,
        /// The IO error.
        source: std::io::Error,
    },
    /// The file is not valid TOML for this schema.
    #[error("{path}: {message}")]
    Parse {
        /// The path.
        path: String,
        /// The parser's message (it names the line and the field).
        message: String,
    },
    /// A value is out of range.
    #[error("invalid config: {field}: {message}")]
    Invalid {
        /// Dotted field name, e.g. `edge.heartbeat_ms`.
        field: &'static str,
        /// What is wrong.
        message: String,
    },
}

/// The whole configuration.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// The edge server.
    pub edge: EdgeConfig,
    /// The bus.
    pub bus: BusConfig,
    /// Tokens and API keys.
    pub auth: AuthConfig,
    /// Logging.
    pub log: LogConfig,
    /// Existing Kafka topics turned into Herald records (`[[sources]]`).
    pub sources: Vec<SourceConfig>,
    /// Connection and rate limits.
    pub limits: LimitsConfig,
    /// Where presence lives.
    pub presence: PresenceConfig,
    /// The control plane this edge registers with.
    pub control: ControlPlaneConfig,
    /// How Kafka clients connect: TLS, SASL, other properties (`[kafka]`, docs/kafka.md).
    pub kafka: KafkaConfig,
    /// Mobile push through APNs and FCM (`[push]`, docs/push.md).
    #[serde(deserialize_with = "push::checked")]
    pub push: PushConfig,
    /// The operator's web console (`[console]`, docs/console.md).
    pub console: ConsoleConfig,
    /// OpenTelemetry traces over OTLP (`[tracing]`, docs/operations.md).
    pub tracing: TracingConfig,
    /// Where `herald webhooks` sends the region's events (`[webhooks]`, docs/backends.md).
    pub webhooks: WebhooksConfig,
}

/// `[control]`: the control plane (docs/control-plane.md). Without endpoints the edge runs on
/// its config file alone.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ControlPlaneConfig {
    /// Control-plane members, `host:port` (env `HERALD_CONTROL`, comma-separated).
    pub endpoints: Vec<String>,
    /// Where clients reach this edge, as registered (default: `http://` + the listen address).
    pub advertise: String,
    /// The control plane's edge token (env `HERALD_CONTROL_EDGE_TOKEN`).
    pub token: Option<String>,
    /// TLS to the control plane (`[control.tls]`, module `control`).
    pub tls: ControlTlsConfig,
}

/// One source: an existing Kafka topic, and the rules that turn its records into Herald records.
/// See docs/kafka.md for the rule language.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SourceConfig {
    /// A short name (metrics, logs, the consumer group).
    pub name: String,
    /// The topic to consume.
    pub topic: String,
    /// `kafka://HOST:PORT[,…]`; defaults to the bus's brokers.
    #[serde(default)]
    pub brokers: Option<BusUrl>,
    /// Consumer group; defaults to `herald-source-<name>`.
    #[serde(default)]
    pub group: Option<String>,
    /// Where the account is: a JSON pointer into the value (`/account_id`) or `header:NAME`.
    pub account: String,
    /// The channel: a template of literal text and `{/json/pointer}` placeholders.
    pub channel: String,
    /// Records matching any of these are dropped.
    #[serde(default)]
    pub drop: Vec<DropRule>,
    /// Output fields: `name = "/json/pointer"`. Empty keeps the whole value.
    #[serde(default)]
    pub keep: BTreeMap<String, String>,
    /// Where malformed records go (with the reason in headers); none = counted and logged only.
    #[serde(default)]
    pub dead_letter_topic: Option<String>,
}

/// Drop a record when the string at `field` (a JSON pointer) equals `equals`.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DropRule {
    /// JSON pointer.
    pub field: String,
    /// The value that drops the record.
    pub equals: String,
}

/// The edge server: listener, identity, limits and timings.
#[derive(Clone, Debug, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct EdgeConfig {
    /// Address to listen on.
    pub listen: SocketAddr,
    /// A second listener for `/healthz`, `/readyz` and `/metrics` only, plain HTTP with no PROXY
    /// header (env `HERALD_ADMIN_LISTEN`): for kubelet probes and Prometheus when `listen` expects
    /// PROXY headers or TLS. Default: none (those endpoints are on `listen` too, always).
    pub admin_listen: Option<SocketAddr>,
    /// This node's name (env `HERALD_NODE`); defaults to `edge-<random>`.
    pub node: String,
    /// The region this node serves (env `HERALD_REGION`).
    pub region: RegionName,
    /// Server heartbeat interval; a connection silent for two intervals is closed.
    pub heartbeat_ms: u64,
    /// Bytes queued for one connection before it is cut as `lagged`.
    pub max_queued_bytes: usize,
    /// Largest frame (WebSocket message) a client may send.
    pub max_frame_bytes: usize,
    /// Largest `data` payload a record may carry.
    pub max_message_bytes: usize,
    /// Subscriptions per connection.
    pub max_subscriptions: usize,
    /// SIGTERM drain: clients are told to reconnect with delays spread over half of this, and
    /// the process exits when they are gone or this has passed.
    pub drain_grace_ms: u64,
    /// Time a WebSocket client has to send its `auth` frame when no header token was given.
    pub auth_timeout_ms: u64,
    /// Default long-poll wait.
    pub poll_timeout_ms: u64,
    /// After a connection is marked `lagged`, how long the server tries to write the error
    /// before dropping the socket.
    pub lag_close_grace_ms: u64,
    /// Largest batched WebSocket message the server builds from queued frames.
    pub max_batch_bytes: usize,
    /// Most bytes a connection keeps written to its socket but not yet sent by the kernel
    /// (`TCP_NOTSENT_LOWAT`; 0: the kernel's default, which lets megabytes pile up there on a
    /// slow link). Kept small, the backlog stays in Herald's queue, where priorities, latest-value
    /// conflation and `lagged` can act on it; bytes in flight on the network are not limited.
    pub unsent_limit_bytes: usize,
    /// On latest-value channels, a record replaces a queued one with its key once a connection
    /// has this many bytes queued (the client is behind); below it, every record is sent.
    pub conflate_above_bytes: usize,
    /// Recent records kept per consumed partition, so most resumes need no bus read.
    pub history_cache_records: usize,
    /// How long a partition's consumer keeps running after its last subscription left.
    pub consumer_linger_ms: u64,
    /// TLS on the listener (`[edge.tls]`); without it the edge speaks plain HTTP, for running
    /// behind a TLS-terminating load balancer.
    pub tls: Option<TlsConfig>,
    /// How often the node sends a probe record through its own bus and fan-out path.
    pub probe_interval_ms: u64,
    /// A probe not seen back within this long makes the node unready (`/readyz` 503).
    pub probe_stall_ms: u64,
    /// Latest-value (conflated) channels (`[[edge.latest_value]]`).
    pub latest_value: Vec<LatestValueConfig>,
    /// Channel priorities (`[[edge.priority]]`); channels no entry names are `normal`.
    pub priority: Vec<PriorityConfig>,
    /// `permessage-deflate` on WebSocket connections (`[edge.compression]`).
    pub compression: CompressionConfig,
    /// PROXY protocol on the listener: when on, every connection must start with a PROXY header
    /// (a load balancer's), whose source address becomes the connection's address.
    pub proxy_protocol: ProxyProtocol,
    /// Networks (CIDR, e.g. `10.0.0.0/8`) whose forwarding headers are believed; from any other
    /// address, `X-Forwarded-For` and `Forwarded` are ignored.
    pub trusted_proxies: Vec<Cidr>,
    /// The header a trusted proxy writes the client's address to: `x-forwarded-for` or
    /// `forwarded` (RFC 7239). Only one: the other passes through proxies untouched, so a client
    /// could write it.
    pub forwarded_header: ForwardedHeader,
}

/// Which PROXY protocol versions the listener expects (`edge.proxy_protocol`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ProxyProtocol {
    /// No PROXY header; the socket's peer is the connection's address.
    #[default]
    Off,
    /// The text header (`PROXY TCP4 …\r\n`) only.
    V1,
    /// The binary header only.
    V2,
    /// Either.
    Any,
}

/// The forwarding header trusted proxies write (`edge.forwarded_header`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ForwardedHeader {
    /// `X-Forwarded-For: client, proxy1, …`.
    #[default]
    XForwardedFor,
    /// `Forwarded: for=client, for=proxy1, …` (RFC 7239).
    Forwarded,
}

/// A network, `ADDRESS/PREFIX` (`10.0.0.0/8`, `2001:db8::/32`); a bare address is a /32 or /128.
/// An IPv4-mapped IPv6 address (`::ffff:10.1.2.3`) matches as the IPv4 address it carries.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Cidr {
    net: std::net::IpAddr,
    prefix: u8,
}

/// Read from config files as a string; a bad network is a parse error naming it.
impl<'de> Deserialize<'de> for Cidr {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        String::deserialize(d)?.parse().map_err(|e| serde::de::Error::custom(format!("{e} (e.g. 10.0.0.0/8 or fd00::/8)")))
    }
}

/// A value in the config that does not parse as its type.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct ValueError(String);

impl std::str::FromStr for Cidr {
    type Err = ValueError;

    fn from_str(s: &str) -> Result<Self, ValueError> {
        let (addr, prefix) = s.split_once('/').map_or((s, None), |(a, p)| (a, Some(p)));
        let net: std::net::IpAddr = addr.parse().map_err(|_| ValueError(format!("{s:?} is not ADDRESS/PREFIX")))?;
        let net = net.to_canonical();
        let max = if net.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            None => max,
            Some(p) => p.parse::<u8>().ok().filter(|p| *p <= max).ok_or_else(|| ValueError(format!("{s:?}: the prefix must be 0 to {max}")))?,
        };
        Ok(Self { net, prefix })
    }
}

impl Cidr {
    /// Whether `ip` is inside this network.
    pub fn contains(&self, ip: std::net::IpAddr) -> bool {
        let bits = |ip: std::net::IpAddr| match ip {
            std::net::IpAddr::V4(a) => (u32::from(a) as u128) << 96,
            std::net::IpAddr::V6(a) => u128::from(a),
        };
        let ip = ip.to_canonical();
        // IPv4 sits in the top 32 bits, so one mask serves both families.
        let mask = u128::MAX.checked_shl(128 - self.prefix as u32).unwrap_or(0);
        ip.is_ipv4() == self.net.is_ipv4() && (bits(ip) & mask) == (bits(self.net) & mask)
    }
}

/// A priority for the channels matching a pattern. On a WebSocket connection, `high` records are
/// sent before queued `normal` and `low` ones, and `low` ones after everything else; when the
/// queue overflows, low-priority subscriptions are shed (ended with `lagged`, so the client
/// resubscribes from its cursor) before the connection itself is. The first matching entry wins.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PriorityConfig {
    /// A channel pattern, e.g. `incidents` or `telemetry:*`.
    pub channels: ChannelPattern,
    /// `high`, `normal` or `low`.
    pub priority: Priority,
}

pub use herald_core::Priority;

/// WebSocket compression (`permessage-deflate`, RFC 7692), granted to clients that ask for it
/// (browsers always do). Each message is compressed on its own, so a connection holds no
/// compression state; the cost is CPU per message written.
#[derive(Clone, Debug, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct CompressionConfig {
    /// Grant it at all (off by default).
    pub enabled: bool,
    /// DEFLATE level, 0 to 9 (1: fastest; most of the gain on JSON at a fraction of 6's CPU).
    pub level: u32,
    /// The largest LZ77 window, in bits (9 to 15), the server compresses with and asks clients
    /// to use.
    pub max_window_bits: u8,
    /// Under load: new connections are refused compression (and go uncompressed) while the node
    /// has more than this many sessions open. 0: no limit.
    pub refuse_above_sessions: usize,
}

impl Default for CompressionConfig {
    fn default() -> Self {
        Self { enabled: false, level: 1, max_window_bits: 15, refuse_above_sessions: 0 }
    }
}

/// Channels whose subscribers need only the newest record per key: a record still queued for
/// a connection is replaced by a newer one with the same key, and a resume sends the newest per
/// key after the cursor. Other channels never conflate.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LatestValueConfig {
    /// A channel pattern, e.g. `bus-location:*`.
    pub channels: ChannelPattern,
    /// A JSON pointer into the record's data naming its key (`/vehicle_id`); empty: the whole
    /// channel is one key. A record without that field is never replaced.
    #[serde(default)]
    pub key: String,
}

/// Certificate and key files (PEM). Both are re-read when either changes on disk, without a
/// restart; new connections get the new certificate.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsConfig {
    /// The certificate chain, PEM.
    pub cert_file: std::path::PathBuf,
    /// The private key, PEM (PKCS#8, PKCS#1 or SEC1).
    pub key_file: std::path::PathBuf,
}

impl Default for EdgeConfig {
    fn default() -> Self {
        Self {
            listen: "127.0.0.1:8080".parse().expect("valid default"),
            admin_listen: None,
            node: String::new(),
            region: RegionName::new("local").expect("a valid literal"),
            heartbeat_ms: 25_000,
            max_queued_bytes: 1 << 20,
            max_frame_bytes: 64 << 10,
            max_message_bytes: 16 << 10,
            max_subscriptions: 256,
            drain_grace_ms: 30_000,
            auth_timeout_ms: 10_000,
            poll_timeout_ms: 25_000,
            lag_close_grace_ms: 5_000,
            max_batch_bytes: 256 << 10,
            unsent_limit_bytes: 64 << 10,
            conflate_above_bytes: 64 << 10,
            history_cache_records: 2000,
            consumer_linger_ms: 30_000,
            tls: None,
            probe_interval_ms: 5_000,
            probe_stall_ms: 15_000,
            latest_value: Vec::new(),
            priority: Vec::new(),
            compression: CompressionConfig::default(),
            proxy_protocol: ProxyProtocol::Off,
            trusted_proxies: Vec::new(),
            forwarded_header: ForwardedHeader::XForwardedFor,
        }
    }
}

/// Which bus, and the in-memory bus's sizing.
#[derive(Clone, Debug, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct BusConfig {
    /// `memory`, or `kafka://HOST:PORT[,HOST:PORT…]`.
    pub url: BusUrl,
    /// Kafka: the records topic of this region (default `herald.<region>`).
    pub topic: String,
    /// Kafka: replication factor for topics Herald creates.
    pub replication: i32,
    /// Partitions (in-memory bus; Kafka topics Herald creates).
    pub partitions: u32,
    /// Records retained per partition (in-memory bus).
    pub retention_records: u64,
    /// Seconds a record is retained (in-memory bus).
    pub retention_secs: u64,
    /// Seconds an idempotency key is remembered.
    pub idempotency_window_secs: u64,
    /// Kafka: how long a reader waits for a missing offset to become visible (a broker may show
    /// a later write first) before it reports a hole in the partition.
    pub gap_confirm_ms: u64,
}

impl Default for BusConfig {
    fn default() -> Self {
        Self { url: BusUrl::Memory, topic: String::new(), replication: 1, partitions: 16, retention_records: 100_000, retention_secs: 3600, idempotency_window_secs: 300, gap_confirm_ms: 5000 }
    }
}

impl BusConfig {
    /// The bootstrap servers (`host:port,host:port`) when the bus is Kafka.
    pub fn kafka_brokers(&self) -> Option<String> {
        self.url.kafka_brokers()
    }
}

/// Which bus: `memory`, or `kafka://HOST:PORT[,HOST:PORT…]`, parsed once when read.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum BusUrl {
    /// The in-process bus (`herald dev`, tests).
    Memory,
    /// A Kafka cluster.
    Kafka {
        /// Its bootstrap servers, `host:port,host:port`.
        brokers: String,
    },
}

impl BusUrl {
    /// The bootstrap servers (`host:port,host:port`) of a Kafka URL.
    pub fn kafka_brokers(&self) -> Option<String> {
        match self {
            BusUrl::Kafka { brokers } => Some(brokers.clone()),
            BusUrl::Memory => None,
        }
    }
}

impl std::str::FromStr for BusUrl {
    type Err = ValueError;

    fn from_str(s: &str) -> Result<Self, ValueError> {
        if s == "memory" {
            return Ok(BusUrl::Memory);
        }
        let bad = || ValueError(format!("must be 'memory' or 'kafka://HOST:PORT[,HOST:PORT…]', not {s:?}"));
        let rest = s.strip_prefix("kafka://").ok_or_else(bad)?;
        let ok = !rest.is_empty() && rest.split(',').all(|hp| hp.rsplit_once(':').is_some_and(|(h, p)| !h.is_empty() && p.parse::<u16>().is_ok()));
        if ok { Ok(BusUrl::Kafka { brokers: rest.to_owned() }) } else { Err(bad()) }
    }
}

impl<'de> Deserialize<'de> for BusUrl {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        String::deserialize(d)?.parse().map_err(serde::de::Error::custom)
    }
}

impl std::fmt::Display for BusUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            BusUrl::Memory => f.write_str("memory"),
            BusUrl::Kafka { brokers } => write!(f, "kafka://{brokers}"),
        }
    }
}

/// Token verification and publish API keys.
#[derive(Clone, Debug, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AuthConfig {
    /// HS256 secret for client tokens (env `HERALD_JWT_SECRET`).
    pub jwt_secret: Option<String>,
    /// The admin API key, which may publish to any account (env `HERALD_ADMIN_API_KEY`).
    pub admin_api_key: Option<String>,
    /// Per-account publish API keys: `account → [keys]` (several, for rotation).
    pub account_keys: BTreeMap<AccountId, Vec<String>>,
    /// Clock-skew leeway for `exp`, in seconds.
    pub leeway_secs: u64,
    /// More verification keys for client tokens (several at once, for rotation; `kid` picks one).
    pub keys: Vec<JwtKeyConfig>,
    /// A JWKS document (file) whose keys verify client tokens too.
    pub jwks_file: Option<std::path::PathBuf>,
    /// A JWKS document at an `http(s)://` URL, fetched at start, refreshed every
    /// `jwks_refresh_secs`, and early when a token names a `kid` it does not have (at most every
    /// 30 s).
    pub jwks_url: Option<String>,
    /// How often the JWKS URL is fetched again.
    pub jwks_refresh_secs: u64,
    /// Per-account browser origins allowed to open WebSocket and SSE connections
    /// (`account → ["https://app.example.com"]`). An account without an entry accepts any origin.
    pub allowed_origins: BTreeMap<AccountId, Vec<String>>,
    /// Authorization proxies (`[[auth.proxy]]`), asked in order; the first that matches an
    /// event decides it.
    pub proxy: Vec<ProxyConfig>,
}

impl Default for AuthConfig {
    fn default() -> Self {
        Self {
            jwt_secret: None,
            admin_api_key: None,
            account_keys: BTreeMap::new(),
            leeway_secs: 30,
            keys: Vec::new(),
            jwks_file: None,
            jwks_url: None,
            jwks_refresh_secs: 300,
            allowed_origins: BTreeMap::new(),
            proxy: Vec::new(),
        }
    }
}

/// One token verification key.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JwtKeyConfig {
    /// The `kid` tokens signed with this key carry (none: tried for tokens without a `kid`).
    #[serde(default)]
    pub kid: Option<String>,
    /// `HS256`, `RS256`, `ES256` or `EdDSA`. A key verifies only tokens of its own algorithm.
    pub algorithm: String,
    /// HS256: the shared secret…
    #[serde(default)]
    pub secret: Option<String>,
    /// …or a file holding it (a trailing newline is dropped), so that it need not sit in this
    /// file (a Kubernetes Secret mounted as a file).
    #[serde(default)]
    pub secret_file: Option<std::path::PathBuf>,
    /// RS256/ES256/EdDSA: the public key, PEM, in a file…
    #[serde(default)]
    pub public_key_file: Option<std::path::PathBuf>,
    /// …or inline.
    #[serde(default)]
    pub public_key_pem: Option<String>,
    /// When set, the key may only sign tokens of this account.
    #[serde(default)]
    pub account: Option<AccountId>,
}

/// Limits that keep one client, address or account from starving the rest. Each refusal answers
/// `rate_limited` and is counted in `herald_limited_total{limit}`.
#[derive(Clone, Debug, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LimitsConfig {
    /// Open connections (all transports) per account on one node.
    pub connections_per_account: usize,
    /// Open connections per client IP address on one node.
    pub connections_per_ip: usize,
    /// Publishes per second one WebSocket connection may make (token bucket; burst = 2 s worth).
    pub publish_per_second_per_connection: u32,
    /// Records per second one account may publish through one node, over every path.
    pub publish_per_second_per_account: u32,
    /// Per-account overrides of the two account limits.
    pub accounts: BTreeMap<AccountId, AccountLimits>,
}

/// One account's own limits.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AccountLimits {
    /// Overrides `connections_per_account`.
    pub connections: Option<usize>,
    /// Overrides `publish_per_second_per_account`.
    pub publish_per_second: Option<u32>,
    /// Overrides `edge.max_subscriptions` for this account's connections.
    pub max_subscriptions: Option<usize>,
    /// Overrides `edge.max_message_bytes` for this account's records (up to `edge.max_frame_bytes`).
    pub max_message_bytes: Option<usize>,
}

impl Default for LimitsConfig {
    fn default() -> Self {
        Self {
            connections_per_account: 100_000,
            connections_per_ip: 5_000,
            publish_per_second_per_connection: 50,
            publish_per_second_per_account: 50_000,
            accounts: BTreeMap::new(),
        }
    }
}

/// Log output.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LogFormat {
    /// Human-readable lines.
    #[default]
    Text,
    /// One JSON object per line.
    Json,
}

/// Logging.
#[derive(Clone, Debug, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LogConfig {
    /// `text` or `json`.
    pub format: LogFormat,
    /// A `tracing` filter, e.g. `info` or `herald_edge=debug,info` (env `RUST_LOG` wins).
    pub level: String,
}

impl Default for LogConfig {
    fn default() -> Self {
        Self { format: LogFormat::Text, level: "info".into() }
    }
}

impl Config {
    /// Reads a TOML file.
    pub fn from_file(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read { path: path.display().to_string(), source })?;
        toml::from_str(&text).map_err(|e| ConfigError::Parse { path: path.display().to_string(), message: e.to_string() })
    }

    /// Overlays `HERALD_*` environment variables, through `get` (so tests need not touch the
    /// process environment). A variable whose value does not parse is an error that names it.
    pub fn apply_env(&mut self, get: impl Fn(&str) -> Option<String>) -> Result<(), ConfigError> {
        let bad = |field: &'static str, message: String| ConfigError::Invalid { field, message };
        if let Some(v) = get("HERALD_ADMIN_LISTEN") {
            self.edge.admin_listen = Some(v.trim().parse().map_err(|_| bad("HERALD_ADMIN_LISTEN", format!("must be HOST:PORT, e.g. 0.0.0.0:9091, not {v:?}")))?);
        }
        if let Some(v) = get("HERALD_NODE") {
            self.edge.node = v;
        }
        if let Some(v) = get("HERALD_REGION") {
            self.edge.region = RegionName::new(v.trim()).map_err(|e| bad("HERALD_REGION", format!("{e}, not {v:?}")))?;
        }
        if let Some(v) = get("HERALD_JWT_SECRET") {
            self.auth.jwt_secret = Some(v);
        }
        if let Some(v) = get("HERALD_ADMIN_API_KEY") {
            self.auth.admin_api_key = Some(v);
        }
        if let Some(v) = get("HERALD_CONTROL") {
            self.control.endpoints = v.split(',').map(str::trim).filter(|s| !s.is_empty()).map(str::to_owned).collect();
        }
        match get("HERALD_LOG_FORMAT").as_deref() {
            Some("json") => self.log.format = LogFormat::Json,
            Some("text") => self.log.format = LogFormat::Text,
            Some(other) => return Err(bad("HERALD_LOG_FORMAT", format!("must be text or json, not {other:?}"))),
            None => {}
        }
        if let Some(v) = get("HERALD_CONTROL_EDGE_TOKEN") {
            self.control.token = Some(v);
        }
        if let Some(v) = get("HERALD_CONTROL_ADMIN_TOKEN") {
            self.console.control_admin_token = Some(v);
        }
        if let Some(v) = get("HERALD_OTLP_ENDPOINT").filter(|v| !v.is_empty()) {
            self.tracing.endpoint = Some(v);
        }
        self.control.tls.apply_env(&get);
        if let Some(v) = get("HERALD_PRESENCE") {
            self.presence.url = v;
        }
        if let Some(v) = get("HERALD_PRESENCE_TTL_SECS") {
            self.presence.ttl_secs = v.trim().parse().map_err(|_| bad("HERALD_PRESENCE_TTL_SECS", format!("must be a whole number of seconds, not {v:?}")))?;
        }
        if let Some(v) = get("HERALD_BUS") {
            self.bus.url = v.trim().parse().map_err(|e: ValueError| bad("HERALD_BUS", e.to_string()))?;
        }
        if let Some(v) = get("HERALD_KAFKA_TOPIC") {
            self.bus.topic = v;
        }
        Ok(())
    }

    /// Checks every value; the error names the field. Each section checks itself; this adds the
    /// checks that span sections.
    pub fn validate(&self) -> Result<(), ConfigError> {
        self.kafka.validate()?;
        self.edge.validate()?;
        self.control.validate()?;
        self.presence.validate()?;
        self.bus.validate()?;
        self.auth.validate()?;
        self.limits.validate(self.edge.max_frame_bytes)?;
        self.push.validate()?;
        self.console.validate()?;
        self.tracing.validate()?;
        self.webhooks.validate()?;
        let bad = |field: &'static str, message: &str| Err(ConfigError::Invalid { field, message: message.into() });
        let mut names = std::collections::BTreeSet::new();
        for src in &self.sources {
            let topic_ok = |t: &str| !t.is_empty() && t.bytes().all(|c| c.is_ascii_alphanumeric() || matches!(c, b'.' | b'_' | b'-'));
            if !names.insert(src.name.as_str()) || src.name.is_empty() || !topic_ok(&src.name) {
                return bad("sources.name", "source names must be unique and made of A-Z a-z 0-9 . _ -");
            }
            if !topic_ok(&src.topic) || src.dead_letter_topic.as_deref().is_some_and(|t| !topic_ok(t)) {
                return bad("sources.topic", "topic names are made of A-Z a-z 0-9 . _ -");
            }
            if src.brokers.as_ref().map_or(self.bus.kafka_brokers().is_none(), |b| *b == BusUrl::Memory) {
                return bad("sources.brokers", "a source needs brokers (or a kafka:// bus)");
            }
        }
        Ok(())
    }
}

impl EdgeConfig {
    /// Checks the `[edge]` values; the error names the field.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let bad = |field: &'static str, message: &str| Err(ConfigError::Invalid { field, message: message.into() });
        let e = self;
        if !e.node.is_empty() && !e.node.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.') {
            return bad("edge.node", "must be characters of A-Z a-z 0-9 - _ .");
        }
        for l in &e.latest_value {
            if !(l.key.is_empty() || l.key.starts_with('/')) {
                return bad("edge.latest_value.key", "must be empty or a JSON pointer starting with /");
            }
        }
        if e.admin_listen.is_some_and(|a| a == e.listen || (a.port() == e.listen.port() && (a.ip().is_unspecified() || e.listen.ip().is_unspecified()))) {
            return bad("edge.admin_listen", "must be another port than edge.listen");
        }
        if !(1_000..=600_000).contains(&e.heartbeat_ms) {
            return bad("edge.heartbeat_ms", "must be between 1000 and 600000");
        }
        if e.max_frame_bytes < 1024 {
            return bad("edge.max_frame_bytes", "must be at least 1024");
        }
        if e.max_message_bytes == 0 || e.max_message_bytes > e.max_frame_bytes {
            return bad("edge.max_message_bytes", "must be positive and at most edge.max_frame_bytes");
        }
        if e.max_queued_bytes < 2 * e.max_frame_bytes {
            return bad("edge.max_queued_bytes", "must be at least twice edge.max_frame_bytes");
        }
        if e.max_batch_bytes < 1024 {
            return bad("edge.max_batch_bytes", "must be at least 1024");
        }
        if e.conflate_above_bytes > e.max_queued_bytes {
            return bad("edge.conflate_above_bytes", "must be at most edge.max_queued_bytes");
        }
        if e.unsent_limit_bytes != 0 && !(4096..=1 << 30).contains(&e.unsent_limit_bytes) {
            return bad("edge.unsent_limit_bytes", "must be 0 (the kernel's default) or 4096 to 1073741824");
        }
        if e.max_subscriptions == 0 {
            return bad("edge.max_subscriptions", "must be positive");
        }
        if e.probe_interval_ms < 100 || e.probe_stall_ms <= e.probe_interval_ms {
            return bad("edge.probe_stall_ms", "probe_interval_ms must be at least 100 and probe_stall_ms larger than it");
        }
        if e.compression.level > 9 {
            return bad("edge.compression.level", "must be 0 to 9");
        }
        if !(9..=15).contains(&e.compression.max_window_bits) {
            return bad("edge.compression.max_window_bits", "must be 9 to 15");
        }
        if e.poll_timeout_ms > 60_000 {
            return bad("edge.poll_timeout_ms", "must be at most 60000");
        }
        Ok(())
    }
}

impl ControlPlaneConfig {
    /// Checks the `[control]` values; the error names the field.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let bad = |field: &'static str, message: &str| Err(ConfigError::Invalid { field, message: message.into() });
        if self.endpoints.iter().any(|e| e.rsplit_once(':').is_none_or(|(h, p)| h.is_empty() || p.parse::<u16>().is_err())) {
            return bad("control.endpoints", "each must be HOST:PORT, or https://HOST:PORT for TLS against public CAs");
        }
        self.tls.validate(&self.endpoints)?;
        Ok(())
    }
}

impl BusConfig {
    /// Checks the `[bus]` values; the error names the field.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let bad = |field: &'static str, message: &str| Err(ConfigError::Invalid { field, message: message.into() });
        let b = self;
        if !b.topic.is_empty() && !b.topic.bytes().all(|c| c.is_ascii_alphanumeric() || matches!(c, b'.' | b'_' | b'-')) {
            return bad("bus.topic", "must be characters of A-Z a-z 0-9 . _ -");
        }
        if b.replication < 1 {
            return bad("bus.replication", "must be at least 1");
        }
        if b.partitions == 0 || b.partitions > 4096 {
            return bad("bus.partitions", "must be between 1 and 4096");
        }
        if b.retention_records == 0 {
            return bad("bus.retention_records", "must be positive");
        }
        Ok(())
    }
}

impl AuthConfig {
    /// Checks the `[auth]` values; the error names the field.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let bad = |field: &'static str, message: &str| Err(ConfigError::Invalid { field, message: message.into() });
        if let Some(s) = &self.jwt_secret
            && s.len() < 16 {
                return bad("auth.jwt_secret", "must be at least 16 bytes");
            }
        if self.jwks_url.as_deref().is_some_and(|u| !(u.starts_with("http://") || u.starts_with("https://"))) {
            return bad("auth.jwks_url", "must be an http:// or https:// URL");
        }
        for k in &self.keys {
            match k.algorithm.as_str() {
                "HS256" if k.secret.is_some() && k.secret_file.is_some() => return bad("auth.keys", "an HS256 key needs one of secret or secret_file, not both"),
                "HS256" if k.secret.as_ref().is_some_and(|s| s.len() >= 16) || k.secret_file.is_some() => {}
                "HS256" => return bad("auth.keys", "an HS256 key needs a secret (or secret_file) of at least 16 bytes"),
                "RS256" | "ES256" | "EdDSA" if k.public_key_file.is_some() != k.public_key_pem.is_some() => {}
                "RS256" | "ES256" | "EdDSA" => return bad("auth.keys", "an RS256/ES256/EdDSA key needs exactly one of public_key_file or public_key_pem"),
                _ => return bad("auth.keys", "algorithm must be HS256, RS256, ES256 or EdDSA"),
            }
        }
        for keys in self.account_keys.values() {
            if keys.iter().any(|k| k.len() < 16) {
                return bad("auth.account_keys", "keys must be at least 16 bytes");
            }
            let bad_hash = |k: &String| k.strip_prefix("sha256:").is_some_and(|h| h.len() != 64 || !h.bytes().all(|b| b.is_ascii_hexdigit()));
            if keys.iter().any(bad_hash) {
                return bad("auth.account_keys", "a stored key is sha256: followed by 64 hex digits (herald api-key prints one)");
            }
        }
        for p in &self.proxy {
            p.validate()?;
        }
        if self.leeway_secs > 300 {
            return bad("auth.leeway_secs", "must be at most 300");
        }
        if self.allowed_origins.values().flatten().any(|o| !(o.starts_with("https://") || o.starts_with("http://")) || o.ends_with('/')) {
            return bad("auth.allowed_origins", "origins look like https://app.example.com (scheme and host, no path)");
        }
        if let Some(k) = &self.admin_api_key
            && k.len() < 16 {
                return bad("auth.admin_api_key", "must be at least 16 bytes");
            }
        Ok(())
    }
}

impl LimitsConfig {
    /// Checks the `[limits]` values against the frame size; the error names the field.
    pub fn validate(&self, max_frame_bytes: usize) -> Result<(), ConfigError> {
        let bad = |field: &'static str, message: &str| Err(ConfigError::Invalid { field, message: message.into() });
        let l = self;
        if l.connections_per_account == 0 || l.connections_per_ip == 0 || l.publish_per_second_per_connection == 0 || l.publish_per_second_per_account == 0 {
            return bad("limits", "every limit must be positive");
        }
        if l.accounts.values().any(|a| a.max_message_bytes.is_some_and(|m| m == 0 || m > max_frame_bytes) || a.max_subscriptions == Some(0)) {
            return bad("limits.accounts", "max_message_bytes must be 1..=edgmax_frame_bytes and max_subscriptions positive");
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid() {
        Config::default().validate().unwrap();
    }

    #[test]
    fn unknown_fields_are_refused_with_the_field_named() {
        let e = toml::from_str::<Config>("[edge]\nheartbeat_msec = 5\n").unwrap_err().to_string();
        assert!(e.contains("heartbeat_msec"), "{e}");
    }

    #[test]
    fn out_of_range_values_name_their_field() {
        let mut c = Config::default();
        c.edge.heartbeat_ms = 5;
        assert!(c.validate().unwrap_err().to_string().contains("edge.heartbeat_ms"));
        assert!("redis://x".parse::<BusUrl>().unwrap_err().to_string().contains("kafka://HOST:PORT"));
        assert!("kafka://".parse::<BusUrl>().is_err());
        assert!("kafka://a".parse::<BusUrl>().is_err());
        let mut c = Config::default();
        c.bus.url = "kafka://a:9092,b:9093".parse().unwrap();
        assert_eq!(c.bus.kafka_brokers().as_deref(), Some("a:9092,b:9093"));
        assert_eq!(c.bus.url.to_string(), "kafka://a:9092,b:9093");
        c.validate().unwrap();
    }

    #[test]
    fn trusted_proxies_are_networks_and_a_bad_one_names_the_field() {
        let c: Config = toml::from_str("[edge]\nproxy_protocol = \"v2\"\nforwarded_header = \"forwarded\"\ntrusted_proxies = [\"10.0.0.0/8\", \"192.168.1.7\", \"::1/128\"]\n").unwrap();
        c.validate().unwrap();
        assert_eq!((c.edge.proxy_protocol, c.edge.forwarded_header), (ProxyProtocol::V2, ForwardedHeader::Forwarded));
        for bad in ["10.0.0.0/33", "10.0.0/8", "fd00::/129", "", "10.0.0.0/"] {
            let err = toml::from_str::<Config>(&format!("[edge]\ntrusted_proxies = [\"{bad}\"]\n")).expect_err(bad).to_string();
            assert!(err.contains("trusted_proxies") && err.contains("ADDRESS/PREFIX") || err.contains("prefix must be"), "{bad}: {err}");
        }
        assert!(toml::from_str::<Config>("[edge]\nproxy_protocol = \"v3\"\n").is_err());
    }

    #[test]
    fn cidrs_match_their_networks_only_in_both_families() {
        let ip = |s: &str| s.parse::<std::net::IpAddr>().unwrap();
        let c = |s: &str| s.parse::<Cidr>().unwrap();
        assert!(c("10.0.0.0/8").contains(ip("10.255.1.2")));
        assert!(!c("10.0.0.0/8").contains(ip("11.0.0.1")));
        assert!(c("10.0.0.0/8").contains(ip("::ffff:10.1.2.3")), "IPv4-mapped IPv6 is its IPv4 address");
        assert!(c("192.168.1.7").contains(ip("192.168.1.7")) && !c("192.168.1.7/32").contains(ip("192.168.1.8")));
        assert!(c("0.0.0.0/0").contains(ip("8.8.8.8")) && !c("0.0.0.0/0").contains(ip("2001:db8::1")));
        assert!(c("2001:db8::/32").contains(ip("2001:db8:ffff::1")));
        assert!(!c("2001:db8::/32").contains(ip("2001:db9::1")));
        assert!(c("::1/128").contains(ip("::1")) && !c("::1/128").contains(ip("::2")));
        assert!(c("::/0").contains(ip("fe80::1")) && !c("::/0").contains(ip("127.0.0.1")));
        assert!(c("fd00::/7").contains(ip("fdff::1")) && !c("fd00::/8").contains(ip("fc00::1")));
        assert!(!c("10.0.0.0/8").contains(ip("::a00:1")), "an IPv6 address never matches an IPv4 network");
    }

    #[test]
    fn environment_overrides_the_file() {
        let mut c: Config = toml::from_str("[edge]\nregion = \"eu\"\n").unwrap();
        c.apply_env(|k| (k == "HERALD_REGION").then(|| "us".to_string())).unwrap();
        assert_eq!(c.edge.region.as_str(), "us");
    }

    #[test]
    fn account_names_in_keys_are_parsed_once_and_a_bad_one_is_refused_naming_it() {
        let c: Config = toml::from_str("[limits.accounts.acme]\nconnections = 5\n[auth.allowed_origins]\nacme = [\"https://a.example\"]\n").unwrap();
        let acme = herald_core::AccountId::new("acme").unwrap();
        assert_eq!(c.limits.accounts[&acme].connections, Some(5));
        assert!(c.auth.allowed_origins.contains_key(&acme));
        for toml in ["[limits.accounts.\"Not An Account\"]\n", "[auth.account_keys]\n\"a/b\" = [\"sha256:00\"]\n"] {
            let err = toml::from_str::<Config>(toml).expect_err(toml).to_string();
            assert!(err.contains("account"), "{toml}: {err}");
        }
    }

    #[test]
    fn regions_channel_patterns_and_the_bus_url_are_parsed_when_read_and_a_bad_one_is_refused() {
        let c: Config = toml::from_str("[edge]\nregion = \"eu-west\"\n[[edge.priority]]\nchannels = \"incidents:*\"\npriority = \"high\"\n[bus]\nurl = \"kafka://k:9092\"\n").unwrap();
        assert_eq!(c.edge.region.as_str(), "eu-west");
        assert_eq!(c.edge.priority[0].channels, ChannelPattern::Prefix("incidents:".into()));
        assert_eq!(c.bus.url, BusUrl::Kafka { brokers: "k:9092".into() });
        for (toml, says) in [
            ("[edge]\nregion = \"EU\"\n", "region \"EU\""),
            ("[[edge.latest_value]]\nchannels = \"a*b\"\n", "channel pattern \"a*b\""),
            ("[[edge.priority]]\nchannels = \"\"\npriority = \"low\"\n", "channel pattern"),
            ("[bus]\nurl = \"redis://x\"\n", "kafka://HOST:PORT"),
        ] {
            let err = toml::from_str::<Config>(toml).expect_err(toml).to_string();
            assert!(err.contains(says), "{toml}: {err}");
        }
    }

    #[test]
    fn the_presence_section_is_checked_by_the_whole_config() {
        let mut c = Config::default();
        c.presence.url = "redis+sentinel://h:26379/m".into();
        let err = c.validate().expect_err("sentinel").to_string();
        assert!(err.contains("presence.url") && err.contains("Sentinel and Cluster"), "{err}");
    }

    #[test]
    fn an_environment_variable_that_does_not_parse_is_an_error_naming_it() {
        for (var, value) in [("HERALD_PRESENCE_TTL_SECS", "15s"), ("HERALD_LOG_FORMAT", "yaml"), ("HERALD_REGION", "EU West"), ("HERALD_BUS", "redis://x")] {
            let mut c = Config::default();
            let err = c.apply_env(|k| (k == var).then(|| value.to_string())).expect_err(var).to_string();
            assert!(err.contains(var), "{err}");
        }
    }
}
