//! `herald`: the one binary. `dev` runs everything in one process; `edge` runs an edge node from a
//! config file; `token` mints a client token for scripts. This file parses the command line and
//! hands over to one module per subcommand; nothing here knows how the edge works.
//!
//! # Layout
//! - [`edge`]: `herald edge` and `herald dev` (start-up, signals, drain); [`agent`]: the edge's
//!   side of the control plane; [`console`]: the console's view of the control plane;
//!   [`traces`]: the OTLP exporter of `[tracing]`.
//! - [`control`]: `herald control`; [`ctl`]: `herald ctl`.
//! - [`replicate`]: `herald replicate`; [`push`]: `herald push`, the mobile-push worker;
//!   [`webhooks`]: `herald webhooks`.
//! - [`token`]: `herald token` and `herald api-key`; [`probe`]: `herald probe`.
//! - [`common`]: exit codes, `--check`'s answer, logging, the presence login.
#![forbid(unsafe_code)]

mod agent;
mod common;
mod console;
mod control;
mod ctl;
mod edge;
mod probe;
mod push;
mod replicate;
mod token;
mod traces;
mod webhooks;

use clap::{Args, Parser, Subcommand};
use herald_core::RegionName;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

/// Herald: real-time delivery with exact resume.
#[derive(Parser)]
#[command(name = "herald", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run everything in one process, with no outside services (in-memory bus and presence).
    Dev(DevArgs),
    /// Run an edge node from a config file (plus environment and flags).
    Edge(EdgeArgs),
    /// Print a signed client token (HS256) on stdout.
    Token(TokenArgs),
    /// Make a new publish API key: prints the key (give it to the backend) and its stored form
    /// (`sha256:…`, for `auth.account_keys` or `auth.admin_api_key`).
    ApiKey,
    /// A synthetic client: connects from outside like a real one, publishes and times the round
    /// trip, one JSON line per probe. With `--count`, exits 0 only if every probe came back.
    Probe(ProbeArgs),
    /// Run a control-plane node (one member of the Raft group; docs/control-plane.md).
    Control(ControlArgs),
    /// Operate the control plane: status, nodes, drain, accounts, keys, members.
    Ctl(CtlArgs),
    /// Copy other regions' records into this region's topic (docs/multi-region.md).
    Replicate(ReplicateArgs),
    /// Post the region's connection, presence and refused-publish events to backends' endpoints
    /// (docs/backends.md).
    Webhooks(webhooks::WebhooksArgs),
    /// Push records to backgrounded phones through APNs and FCM (docs/push.md).
    Push(PushArgs),
}

/// `herald push`.
#[derive(Args)]
pub struct PushArgs {
    /// The region's herald.toml: `[bus]` (Kafka), `[kafka]`, `[presence]` (Redis), `[push]`, and
    /// `edge.region` (or HERALD_REGION).
    #[arg(long)]
    pub config: PathBuf,
    /// Where to serve `/metrics` and `/healthz`.
    #[arg(long, default_value = "0.0.0.0:9500")]
    pub metrics_listen: SocketAddr,
    /// This worker's name in the lease (default: random); unique per replica.
    #[arg(long, env = "HERALD_NODE")]
    pub name: Option<String>,
    /// Check the config file, environment and credentials (the .p8 key, the service account)
    /// and exit: 0 when valid, 64 naming the problem. Connects to nothing.
    #[arg(long)]
    pub check: bool,
}

/// `herald replicate`.
#[derive(Args)]
pub struct ReplicateArgs {
    /// This region (the target).
    #[arg(long, env = "HERALD_REGION")]
    pub region: String,
    /// This region's bus, `kafka://HOST:PORT[,…]`.
    #[arg(long, env = "HERALD_BUS")]
    pub to: String,
    /// This region's records topic (default `herald.<region>`).
    #[arg(long, env = "HERALD_KAFKA_TOPIC")]
    pub to_topic: Option<String>,
    /// A source region: `REGION=kafka://HOST:PORT[,…][/TOPIC]` (topic default `herald.<REGION>`).
    /// Repeat for each other region.
    #[arg(long = "from", required = true)]
    pub from: Vec<String>,
    /// Where to serve `/metrics` and `/healthz`.
    #[arg(long, default_value = "0.0.0.0:9400")]
    pub metrics_listen: SocketAddr,
    /// This region's presence store, `redis://…`: other regions' members are mirrored into it.
    #[arg(long, env = "HERALD_PRESENCE")]
    pub presence: Option<String>,
    /// Another region's presence store to mirror: `REGION=redis://HOST:PORT[/DB]`. Repeat per region.
    #[arg(long = "from-presence")]
    pub from_presence: Vec<String>,
    /// This region's presence TTL (the edges' `presence.ttl_secs`): how long mirrored members
    /// outlive a lost link.
    #[arg(long, default_value_t = 15, env = "HERALD_PRESENCE_TTL_SECS")]
    pub presence_ttl_secs: u64,
    /// A config file: its `[kafka]` section (TLS, SASL, and `[kafka.regions.<name>]` for other
    /// regions' clusters) and `[log]` are used; other sections are checked and ignored.
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// Check the flags, environment and config file and exit: 0 when valid, 64 naming the problem.
    #[arg(long)]
    pub check: bool,
}

/// `herald control`.
#[derive(Args)]
pub struct ControlArgs {
    /// This member's Raft id: a positive number, unique in the cluster, never reused.
    #[arg(long)]
    pub id: u64,
    /// Address to listen on (gRPC for edges, operators and the other members).
    #[arg(long, default_value = "0.0.0.0:7100")]
    pub listen: SocketAddr,
    /// The address the others use to reach this member (default: the listen address).
    #[arg(long)]
    pub advertise: Option<String>,
    /// Directory for the Raft log, vote and snapshots (keep it on a persistent volume).
    #[arg(long, env = "HERALD_CONTROL_DATA")]
    pub data: PathBuf,
    /// Bootstrap a new cluster of these members, `1=HOST:PORT,2=HOST:PORT,3=HOST:PORT`. Safe to
    /// repeat: an initialized member ignores it.
    #[arg(long)]
    pub init: Option<String>,
    /// How often edges heartbeat.
    #[arg(long, default_value_t = 2000)]
    pub edge_heartbeat_ms: u64,
    /// The region's presence store (`redis://HOST:PORT`), for `herald ctl presence`.
    #[arg(long, env = "HERALD_PRESENCE")]
    pub presence: Option<String>,
    /// Token members present to each other (same on every member; ≥ 16 characters).
    #[arg(long, env = "HERALD_CONTROL_CLUSTER_TOKEN", hide_env_values = true)]
    pub cluster_token: Option<String>,
    /// Token edges present (their HERALD_CONTROL_EDGE_TOKEN).
    #[arg(long, env = "HERALD_CONTROL_EDGE_TOKEN", hide_env_values = true)]
    pub edge_token: Option<String>,
    /// Token operators present (`herald ctl`'s HERALD_CONTROL_ADMIN_TOKEN).
    #[arg(long, env = "HERALD_CONTROL_ADMIN_TOKEN", hide_env_values = true)]
    pub admin_token: Option<String>,
    /// TLS on the gRPC port: this member's certificate chain (PEM). Re-read when it changes.
    #[arg(long, env = "HERALD_CONTROL_TLS_CERT")]
    pub tls_cert: Option<PathBuf>,
    /// The private key of --tls-cert (PEM).
    #[arg(long, env = "HERALD_CONTROL_TLS_KEY")]
    pub tls_key: Option<PathBuf>,
    /// The CA that signs the other members' certificates (PEM), checked when this member calls
    /// them. Required with --tls-cert.
    #[arg(long, env = "HERALD_CONTROL_TLS_CA")]
    pub tls_ca: Option<PathBuf>,
    /// Mutual TLS: only clients (edges, `herald ctl`, members) with a certificate signed by
    /// this CA (PEM) may connect.
    #[arg(long, env = "HERALD_CONTROL_TLS_CLIENT_CA")]
    pub tls_client_ca: Option<PathBuf>,
    /// A herald.toml whose `[presence]` gives the login to `--presence` (ACL user, password file,
    /// TLS files); the edges' file works as is. Without it: `HERALD_PRESENCE_PASSWORD` and the URL.
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// Check the flags and environment and exit: 0 when valid, 64 naming the problem.
    #[arg(long)]
    pub check: bool,
}

/// `herald ctl`.
#[derive(Args)]
pub struct CtlArgs {
    /// Control-plane members, `HOST:PORT[,HOST:PORT…]` (or `https://HOST:PORT`); the first that
    /// answers is used.
    #[arg(long, env = "HERALD_CONTROL", default_value = "127.0.0.1:7100")]
    pub control: String,
    /// Print JSON instead of tables.
    #[arg(long, global = true)]
    pub json: bool,
    /// The control plane's admin token.
    #[arg(long, env = "HERALD_CONTROL_ADMIN_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
    /// The CA that signs the members' certificates (PEM): turns TLS on (an `https://` member
    /// without it is checked against the public web PKI).
    #[arg(long, env = "HERALD_CONTROL_CA")]
    pub ca: Option<PathBuf>,
    /// This operator's certificate (PEM), for a control plane that requires one (mutual TLS).
    #[arg(long, env = "HERALD_CONTROL_CERT")]
    pub cert: Option<PathBuf>,
    /// The private key of --cert (PEM).
    #[arg(long, env = "HERALD_CONTROL_KEY")]
    pub key: Option<PathBuf>,
    #[command(subcommand)]
    pub command: CtlCommand,
}

/// How `herald ctl` reaches an edge's HTTP API (history and channel info read the bus, which the
/// control plane does not).
#[derive(clap::Args, Debug)]
pub struct EdgeApi {
    /// An edge's base URL.
    #[arg(long, env = "HERALD_EDGE", default_value = "http://127.0.0.1:8080")]
    pub edge: String,
    /// The admin API key (or the account's key).
    #[arg(long, env = "HERALD_ADMIN_API_KEY", hide_env_values = true)]
    pub api_key: Option<String>,
    /// A CA file for an `https://` edge whose certificate is not from the public web PKI.
    #[arg(long)]
    pub edge_ca: Option<PathBuf>,
}

/// `herald ctl` commands.
#[derive(Subcommand)]
pub enum CtlCommand {
    /// Leader, term, log index and members.
    Status,
    /// Edge nodes: region, health, connections, drain state.
    Nodes,
    /// Order an edge to drain: its clients get `reconnect` and resume elsewhere.
    Drain {
        /// The edge's node name.
        node: String,
    },
    /// List accounts with their key ids and limits (a linearizable read).
    Accounts,
    /// Create an account or set its limits (0: the edge's default).
    Account {
        /// The account.
        name: String,
        #[arg(long, default_value_t = 0)]
        connections: u64,
        #[arg(long, default_value_t = 0)]
        publish_per_second: u64,
        #[arg(long, default_value_t = 0)]
        max_subscriptions: u32,
        #[arg(long, default_value_t = 0)]
        max_message_bytes: u32,
    },
    /// Make a new publish API key for an account (printed once).
    AddKey {
        /// The account.
        account: String,
    },
    /// Revoke one of an account's keys by id (rotation: add-key, move backends, revoke-key).
    RevokeKey {
        /// The account.
        account: String,
        /// The key's id (from `accounts`).
        key_id: String,
    },
    /// Add a public key that verifies an account's client tokens (tokens name it by `kid`).
    AddTokenKey {
        /// The account.
        account: String,
        /// The kid tokens will carry.
        #[arg(long)]
        kid: String,
        /// RS256, ES256 or EdDSA.
        #[arg(long)]
        algorithm: String,
        /// The public key, PEM (BEGIN PUBLIC KEY).
        #[arg(long)]
        public_key_file: PathBuf,
    },
    /// Remove a token verification key: tokens signed with it stop connecting.
    RevokeTokenKey {
        /// The account.
        account: String,
        /// The key's kid.
        kid: String,
    },
    /// Who is in a channel: occupancy and up to --limit members.
    Presence {
        /// The account.
        account: String,
        /// The channel.
        channel: String,
        #[arg(long, default_value_t = 100)]
        limit: u32,
    },
    /// A channel's records, read from the bus by an edge (`GET /v1/history`): the newest
    /// --limit, or a page before or after a cursor. Talks to --edge with the admin API key.
    History {
        /// The account.
        account: String,
        /// The channel.
        channel: String,
        /// Records in the page (1-1000).
        #[arg(long, default_value_t = 20)]
        limit: u32,
        /// The page just before this cursor (a page's `before`).
        #[arg(long, conflicts_with = "since")]
        before: Option<String>,
        /// The page after this cursor.
        #[arg(long)]
        since: Option<String>,
        #[command(flatten)]
        edge: EdgeApi,
    },
    /// Who is on a channel and where it ends, from an edge (`GET /v1/channels/info`).
    Channel {
        /// The account.
        account: String,
        /// The channel.
        channel: String,
        #[command(flatten)]
        edge: EdgeApi,
    },
    /// A user's devices registered for mobile push.
    Devices {
        /// The account.
        account: String,
        /// The user (the token's `sub`).
        user: String,
    },
    /// Remove a device registration (of this account only).
    RemoveDevice {
        /// The account.
        account: String,
        /// `apns` or `fcm`.
        platform: String,
        /// The whole device token.
        token: String,
    },
    /// End a user's connections (or one connection) on every edge of the region.
    Disconnect {
        /// The account.
        account: String,
        /// The user (token `sub`) whose connections end.
        #[arg(long, conflicts_with = "connection", required_unless_present = "connection")]
        user: Option<String>,
        /// The one connection to end.
        #[arg(long)]
        connection: Option<String>,
        /// Told to the client.
        #[arg(long, default_value = "")]
        reason: String,
        /// The client stays disconnected until the app connects again.
        #[arg(long)]
        no_reconnect: bool,
    },
    /// Refuse tokens (one jti, or a user's issued before now) until a time, on every edge of the
    /// region, and end their sessions.
    Revoke {
        /// The account.
        account: String,
        /// The token id to refuse.
        #[arg(long, conflicts_with = "user", required_unless_present = "user")]
        jti: Option<String>,
        /// The user whose tokens issued before now are refused.
        #[arg(long)]
        user: Option<String>,
        /// How long the revocation stands, in seconds (at most 30 days).
        #[arg(long, default_value_t = 86_400)]
        for_secs: u64,
        /// Told to the client.
        #[arg(long, default_value = "")]
        reason: String,
    },
    /// A user's open connections in the region.
    Connections {
        /// The account.
        account: String,
        /// The user (token `sub`).
        user: String,
    },
    /// Add a control-plane member (it catches up as a learner, then votes).
    AddMember {
        /// Its Raft id.
        id: u64,
        /// Its address, HOST:PORT.
        address: String,
    },
    /// Remove a control-plane member.
    RemoveMember {
        /// Its Raft id.
        id: u64,
    },
}

/// `herald probe`.
#[derive(Args)]
pub struct ProbeArgs {
    /// The edge's (or load balancer's) URL, `http(s)://host:port`.
    #[arg(long)]
    pub url: String,
    /// A token that may subscribe to and publish on the channel.
    #[arg(long, env = "HERALD_PROBE_TOKEN")]
    pub token: String,
    /// The channel to probe.
    #[arg(long, default_value = "probe")]
    pub channel: String,
    /// Time between probes.
    #[arg(long, default_value_t = 1000)]
    pub interval_ms: u64,
    /// A probe not back within this long fails.
    #[arg(long, default_value_t = 5000)]
    pub timeout_ms: u64,
    /// Stop after this many probes (0: run until interrupted).
    #[arg(long, default_value_t = 0)]
    pub count: u64,
    /// For an `https://` URL: a PEM file of the CAs to trust instead of the public web's.
    #[arg(long)]
    pub ca_file: Option<String>,
}

/// Flags shared by the server roles.
#[derive(Args, Clone)]
pub struct ServerArgs {
    /// Config file (TOML); flags and HERALD_* variables override it.
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// Address to listen on.
    #[arg(long)]
    pub listen: Option<SocketAddr>,
    /// The bus: `memory`, or `kafka://HOST:PORT[,HOST:PORT…]`.
    #[arg(long)]
    pub bus: Option<herald_config::BusUrl>,
    /// Region name.
    #[arg(long, value_parser = common::region_arg)]
    pub region: Option<RegionName>,
    /// Node name.
    #[arg(long)]
    pub node: Option<String>,
    /// Log format: text or json.
    #[arg(long, value_parser = ["text", "json"])]
    pub log_format: Option<String>,
    /// Check the configuration (file, environment, flags, secret files) and exit: 0 when valid,
    /// 64 with the offending field named. Starts nothing.
    #[arg(long)]
    pub check: bool,
}

/// `herald dev`.
#[derive(Args)]
pub struct DevArgs {
    #[command(flatten)]
    pub server: ServerArgs,
    /// HS256 secret for client tokens (random if not given; printed).
    #[arg(long, env = "HERALD_DEV_SECRET")]
    pub dev_secret: Option<String>,
    /// Admin API key for the publish API (random if not given; printed).
    #[arg(long, env = "HERALD_DEV_API_KEY")]
    pub dev_api_key: Option<String>,
}

/// `herald edge`.
#[derive(Args)]
pub struct EdgeArgs {
    #[command(flatten)]
    pub server: ServerArgs,
}

/// `herald token`.
#[derive(Args)]
pub struct TokenArgs {
    /// The HS256 secret.
    #[arg(long, env = "HERALD_JWT_SECRET")]
    pub secret: String,
    /// The account.
    #[arg(long)]
    pub account: String,
    /// The user (`sub`).
    #[arg(long)]
    pub sub: String,
    /// Channel patterns the token may subscribe to, comma-separated (`incidents,chat:*`).
    #[arg(long, default_value = "")]
    pub channels: String,
    /// Channel patterns the token may publish on, comma-separated.
    #[arg(long, default_value = "")]
    pub publish: String,
    /// Lifetime: `90s`, `30m`, `1h`, `2d`.
    #[arg(long, default_value = "1h")]
    pub ttl: String,
}

#[cfg(feature = "mimalloc")]
#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[cfg(feature = "jemalloc")]
#[global_allocator]
static ALLOC: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Token(a) => token::token(a),
        Command::ApiKey => token::api_key(),
        Command::Probe(a) => probe::run(a),
        Command::Dev(a) => edge::run(a.server, Some((a.dev_secret, a.dev_api_key))),
        Command::Edge(a) => edge::run(a.server, None),
        Command::Control(a) => control::run(a),
        Command::Ctl(a) => ctl::run(a),
        Command::Replicate(a) => replicate::run(a),
        Command::Push(a) => push::run(a),
        Command::Webhooks(a) => webhooks::run(a),
    }
}
