//! One control-plane node: Raft, its storage, and the three gRPC services on one listener
//! (plaintext, or TLS with [`MemberTls`]).

use futures_util::StreamExt;
use openraft::error::{ClientWriteError, RaftError};
use openraft::{BasicNode, ChangeMembers, Raft, SnapshotPolicy};
use parking_lot::Mutex;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tonic::{Request, Response, Status};

use crate::error::ControlError;
use crate::network::{Bearer, Network, channel, require};
use crate::pb;
use crate::state::{AccountRecord, Command, EdgeInfo, KeyRecord, Limits, NodeId, Reply, TypeConfig};
use crate::store::{LogStore, StateMachine};
use crate::tls::{ClientTls, ServerTls};

/// Settings for one control-plane node.
#[derive(Clone)]
pub struct ControlConfig {
    /// This node's Raft id (unique in the cluster, never reused).
    pub id: NodeId,
    /// The address other nodes, edges and `herald ctl` use to reach it (`host:port`).
    pub advertise: String,
    /// Where the log, vote and snapshots live.
    pub data_dir: PathBuf,
    /// How often edges heartbeat.
    pub edge_heartbeat: Duration,
    /// A snapshot is built after this many applied entries, and older log entries are purged.
    pub snapshot_every: u64,
    /// Raft heartbeat; elections time out after 4 to 8 of these.
    pub raft_heartbeat: Duration,
    /// The region's presence store, for `Admin.Presence` and `Admin.ListConnections` (none: the
    /// calls are refused).
    pub presence: Option<Arc<dyn herald_core::Presence>>,
    /// The region's device registry, for `Admin.ListDevices`/`RemoveDevice` (none: refused).
    pub devices: Option<Arc<dyn herald_core::DeviceRegistry>>,
    /// The region's orders, for `Admin.Disconnect` and `Admin.Revoke` (none: refused).
    pub orders: Option<Arc<dyn herald_core::Orders>>,
    /// Bearer tokens each service requires (none: open; docs/control-plane.md).
    pub tokens: Tokens,
    /// TLS on the listener and to the other members (none: plaintext).
    pub tls: Option<MemberTls>,
}

/// A member's TLS: both ways at once, because members are each other's clients.
#[derive(Clone)]
pub struct MemberTls {
    /// The listener: this member's certificate, and the client CA when TLS is mutual.
    pub server: Arc<ServerTls>,
    /// Raft and forwarded calls to the other members: the CA their certificates are checked
    /// against, and this member's certificate, presented when they ask for one.
    pub peers: Arc<ClientTls>,
}

/// The bearer tokens of the three services. Separate, so that an edge's token cannot change
/// the cluster and an operator's cannot impersonate a member.
#[derive(Clone, Default)]
pub struct Tokens {
    /// Between members (`Raft`).
    pub cluster: Option<String>,
    /// Edges (`Membership`).
    pub edge: Option<String>,
    /// Operators (`Admin`).
    pub admin: Option<String>,
}

impl std::fmt::Debug for ControlConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ControlConfig").field("id", &self.id).field("advertise", &self.advertise).field("data_dir", &self.data_dir).finish_non_exhaustive()
    }
}

impl ControlConfig {
    /// Defaults for production: 250 ms Raft heartbeats, snapshots every 1000 entries, edges
    /// heartbeat every 2 s.
    pub fn new(id: NodeId, advertise: impl Into<String>, data_dir: impl Into<PathBuf>) -> Self {
        Self {
            id,
            advertise: advertise.into(),
            data_dir: data_dir.into(),
            edge_heartbeat: Duration::from_secs(2),
            snapshot_every: 1000,
            raft_heartbeat: Duration::from_millis(250),
            presence: None,
            devices: None,
            orders: None,
            tokens: Tokens::default(),
            tls: None,
        }
    }
}

/// What the leader remembers about an edge between heartbeats (not replicated: a new leader
/// knows it again within one heartbeat interval).
#[derive(Clone)]
struct Soft {
    last_seen: Instant,
    connections: u64,
    load: Option<Load>,
}

/// [`pb::EdgeLoad`] as the members pass it to each other.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
struct Load {
    version: String,
    deliveries_per_second: f64,
    fanout_lag_ms: u64,
}

impl From<pb::EdgeLoad> for Load {
    fn from(l: pb::EdgeLoad) -> Self {
        Self { version: l.version, deliveries_per_second: l.deliveries_per_second, fanout_lag_ms: l.fanout_lag_ms }
    }
}

impl From<Load> for pb::EdgeLoad {
    fn from(l: Load) -> Self {
        Self { version: l.version, deliveries_per_second: l.deliveries_per_second, fanout_lag_ms: l.fanout_lag_ms }
    }
}

/// A running control-plane node.
pub struct ControlNode {
    inner: Arc<Inner>,
    stop: CancellationToken,
    server: tokio::task::JoinHandle<()>,
}

struct Inner {
    cfg: ControlConfig,
    raft: Raft<TypeConfig>,
    sm: StateMachine,
    soft: Mutex<HashMap<String, Soft>>,
    /// The channel to the leader for forwarded calls, kept while the leader's address is the same.
    to_leader: Mutex<Option<(String, tonic::transport::Channel)>>,
}

/// Requests a follower hands to the leader.
#[derive(Serialize, Deserialize)]
enum Forwarded {
    Write(Command),
    Heartbeat {
        node_id: String,
        connections: u64,
        #[serde(default)]
        load: Option<Load>,
    },
    Nodes,
    Accounts,
    AddMember { id: NodeId, address: String },
    RemoveMember { id: NodeId },
}

#[derive(Serialize, Deserialize)]
enum ForwardReply {
    Write { reply: Reply, account: Option<(String, AccountRecord)> },
    Heartbeat { known: bool, drain: bool },
    Nodes(Vec<NodeRow>),
    Accounts(Vec<(String, AccountRecord)>),
    Done,
    Failed { code: i32, message: String },
}

#[derive(Serialize, Deserialize)]
struct NodeRow {
    info: EdgeInfo,
    draining: bool,
    last_seen_ms_ago: Option<u64>,
    connections: u64,
    #[serde(default)]
    load: Option<Load>,
}

impl ControlNode {
    /// Opens storage, starts Raft and serves gRPC on `listener`.
    pub async fn start(cfg: ControlConfig, listener: TcpListener) -> anyhow::Result<Self> {
        let log = LogStore::open(&cfg.data_dir)?;
        let sm = StateMachine::open(&cfg.data_dir)?;
        let hb = cfg.raft_heartbeat.as_millis() as u64;
        let raft_config = openraft::Config {
            cluster_name: "herald-control".into(),
            heartbeat_interval: hb,
            election_timeout_min: hb * 4,
            election_timeout_max: hb * 8,
            snapshot_policy: SnapshotPolicy::LogsSinceLast(cfg.snapshot_every),
            max_in_snapshot_log_to_keep: 0,
            ..Default::default()
        }
        .validate()?;
        let network = Network { token: cfg.tokens.cluster.as_deref().map(Arc::from), tls: cfg.tls.as_ref().map(|t| t.peers.clone()) };
        let raft = Raft::new(cfg.id, Arc::new(raft_config), network, log, sm.clone()).await?;
        let inner = Arc::new(Inner { cfg, raft, sm, soft: Mutex::new(HashMap::new()), to_leader: Mutex::new(None) });
        let stop = CancellationToken::new();
        use tonic::service::interceptor::InterceptedService;
        let t = inner.cfg.tokens.clone();
        let router = tonic::transport::Server::builder()
            .add_service(InterceptedService::new(
                pb::raft_server::RaftServer::new(RaftSvc(inner.clone())).max_decoding_message_size(64 << 20),
                require(t.cluster),
            ))
            .add_service(InterceptedService::new(pb::membership_server::MembershipServer::new(Svc(inner.clone())), require(t.edge)))
            .add_service(InterceptedService::new(pb::admin_server::AdminServer::new(Svc(inner.clone())), require(t.admin)));
        let s = stop.clone();
        let tls = inner.cfg.tls.as_ref().map(|t| t.server.clone());
        let server = tokio::spawn(async move {
            let served = match tls {
                Some(tls) => router.serve_with_incoming_shutdown(tls.incoming(listener, s.clone()), s.cancelled()).await,
                None => router.serve_with_incoming_shutdown(tokio_stream::wrappers::TcpListenerStream::new(listener), s.cancelled()).await,
            };
            if let Err(e) = served {
                tracing::error!(error = %e, "control-plane gRPC server failed");
            }
        });
        Ok(Self { inner, stop, server })
    }

    /// Makes a new cluster of `members` (id → address). Only on a node with an empty log;
    /// calling it on an initialized node changes nothing.
    pub async fn initialize(&self, members: BTreeMap<NodeId, String>) -> anyhow::Result<()> {
        let nodes: BTreeMap<NodeId, BasicNode> = members.into_iter().map(|(id, addr)| (id, BasicNode { addr })).collect();
        match self.inner.raft.initialize(nodes).await {
            Ok(()) => Ok(()),
            Err(RaftError::APIError(openraft::error::InitializeError::NotAllowed(_))) => Ok(()),
            Err(e) => Err(e.into()),
        }
    }

    /// The Raft handle (metrics, tests).
    pub fn raft(&self) -> &Raft<TypeConfig> {
        &self.inner.raft
    }

    /// The applied state (version, data).
    pub fn applied(&self) -> crate::store::Published {
        self.inner.sm.current()
    }

    /// Stops serving and stops Raft. Storage stays on disk.
    pub async fn shutdown(self) {
        self.stop.cancel();
        let _ = self.server.await;
        let _ = self.inner.raft.shutdown().await;
    }
}

impl Inner {
    /// Handles `req` on the leader: here if this node leads, else forwarded to the leader.
    async fn on_leader(&self, req: Forwarded) -> Result<ForwardReply, ControlError> {
        let metrics = self.raft.metrics().borrow().clone();
        let Some(leader) = metrics.current_leader else { return Err(ControlError::NoLeader) };
        let reply = if leader == self.cfg.id {
            self.lead(req).await?
        } else {
            let addr = metrics
                .membership_config
                .membership()
                .get_node(&leader)
                .map(|n| n.addr.clone())
                .ok_or(ControlError::LeaderUnknown)?;
            let ch = {
                let mut cached = self.to_leader.lock();
                match &*cached {
                    Some((a, ch)) if *a == addr => ch.clone(),
                    _ => {
                        let ch = channel(&addr, self.cfg.tls.as_ref().map(|t| &t.peers)).map_err(|e| ControlError::Unavailable(e.to_string()))?;
                        *cached = Some((addr.clone(), ch.clone()));
                        ch
                    }
                }
            };
            let mut client = pb::raft_client::RaftClient::with_interceptor(ch, Bearer(self.cfg.tokens.cluster.as_deref().map(Arc::from)));
            let json = serde_json::to_vec(&req).map_err(|e| ControlError::Internal(e.to_string()))?;
            let out = client.forward(pb::RaftPayload { json }).await?;
            serde_json::from_slice(&out.into_inner().json).map_err(|e| ControlError::Internal(e.to_string()))?
        };
        match reply {
            ForwardReply::Failed { code, message } => Err(ControlError::Remote(Status::new(tonic::Code::from(code), message))),
            r => Ok(r),
        }
    }

    /// Executes a forwarded request as the leader.
    async fn lead(&self, req: Forwarded) -> Result<ForwardReply, ControlError> {
        let not_leader = |e: &dyn std::fmt::Display| Err(ControlError::LeadershipChanged(e.to_string()));
        Ok(match req {
            Forwarded::Write(cmd) => {
                let account = match &cmd {
                    Command::PutAccount { name, .. } => Some(name.clone()),
                    Command::AddKey { account, .. }
                    | Command::RevokeKey { account, .. }
                    | Command::AddTokenKey { account, .. }
                    | Command::RevokeTokenKey { account, .. } => Some(account.clone()),
                    _ => None,
                };
                match self.raft.client_write(cmd).await {
                    Ok(r) => {
                        let account = account.and_then(|a| self.sm.current().1.data.accounts.get(&a).cloned().map(|r| (a, r)));
                        ForwardReply::Write { reply: r.data, account }
                    }
                    Err(e) => return not_leader(&e),
                }
            }
            Forwarded::Heartbeat { node_id, connections, load } => {
                let data = self.sm.current().1;
                match data.data.edges.get(&node_id) {
                    None => ForwardReply::Heartbeat { known: false, drain: false },
                    Some(e) => {
                        self.soft.lock().insert(node_id, Soft { last_seen: Instant::now(), connections, load });
                        ForwardReply::Heartbeat { known: true, drain: e.draining }
                    }
                }
            }
            Forwarded::Nodes => {
                let data = self.sm.current().1;
                let soft = self.soft.lock();
                ForwardReply::Nodes(
                    data.data
                        .edges
                        .values()
                        .map(|e| {
                            let s = soft.get(&e.info.node_id);
                            NodeRow {
                                info: e.info.clone(),
                                draining: e.draining,
                                last_seen_ms_ago: s.map(|s| s.last_seen.elapsed().as_millis() as u64),
                                connections: s.map(|s| s.connections).unwrap_or(0),
                                load: s.and_then(|s| s.load.clone()),
                            }
                        })
                        .collect(),
                )
            }
            Forwarded::Accounts => match self.raft.ensure_linearizable().await {
                Ok(_) => ForwardReply::Accounts(self.sm.current().1.data.accounts.iter().map(|(k, v)| (k.clone(), v.clone())).collect()),
                Err(e) => return not_leader(&e),
            },
            Forwarded::AddMember { id, address } => {
                if let Err(e) = self.raft.add_learner(id, BasicNode { addr: address }, true).await {
                    return Err(ControlError::Refused(e.to_string()));
                }
                match self.raft.change_membership(ChangeMembers::AddVoterIds(BTreeSet::from([id])), false).await {
                    Ok(_) => ForwardReply::Done,
                    Err(e) => return Err(ControlError::Refused(e.to_string())),
                }
            }
            Forwarded::RemoveMember { id } => match self.raft.change_membership(ChangeMembers::RemoveVoters(BTreeSet::from([id])), false).await {
                Ok(_) => ForwardReply::Done,
                Err(RaftError::APIError(ClientWriteError::ForwardToLeader(e))) => return not_leader(&e),
                Err(e) => return Err(ControlError::Refused(e.to_string())),
            },
        })
    }

    /// Writes `cmd` through the leader; the account it touched, as applied.
    async fn write(&self, cmd: Command) -> Result<Option<(String, AccountRecord)>, ControlError> {
        match self.on_leader(Forwarded::Write(cmd)).await? {
            ForwardReply::Write { reply: Reply::Ok, account } => Ok(account),
            ForwardReply::Write { reply: Reply::Rejected(why), .. } => Err(ControlError::Refused(why)),
            _ => Err(ControlError::unexpected()),
        }
    }

    /// Writes `cmd`, which changes an account, and returns that account.
    async fn write_account(&self, cmd: Command) -> Result<(String, AccountRecord), ControlError> {
        self.write(cmd).await?.ok_or_else(|| ControlError::Internal("account missing after write".into()))
    }

    /// Waits (at most 10 s) until this node's membership satisfies `done(voters, all members)`.
    async fn wait_membership(&self, done: impl Fn(&BTreeSet<NodeId>, &BTreeSet<NodeId>) -> bool + Send + Sync) {
        let _ = self
            .raft
            .wait(Some(Duration::from_secs(10)))
            .metrics(
                |m| {
                    let ms = m.membership_config.membership();
                    done(&ms.voter_ids().collect(), &ms.nodes().map(|(id, _)| *id).collect())
                },
                "membership change applied",
            )
            .await;
    }

    fn status(&self) -> pb::ClusterStatus {
        let m = self.raft.metrics().borrow().clone();
        let membership = m.membership_config.membership();
        let voters: BTreeSet<NodeId> = membership.voter_ids().collect();
        pb::ClusterStatus {
            this_node: self.cfg.id,
            leader: m.current_leader.unwrap_or(0),
            term: m.current_term,
            last_log_index: m.last_log_index.unwrap_or(0),
            last_applied: m.last_applied.map(|l| l.index).unwrap_or(0),
            members: membership.nodes().map(|(id, n)| pb::Member { id: *id, address: n.addr.clone(), voter: voters.contains(id) }).collect(),
        }
    }
}

fn account_pb(name: &str, a: &AccountRecord) -> pb::Account {
    pb::Account {
        name: name.to_owned(),
        keys: a.keys.iter().map(|k| pb::ApiKey { id: k.id.clone(), sha256: k.sha256.clone() }).collect(),
        limits: Some(pb::AccountLimits {
            connections: a.limits.connections,
            publish_per_second: a.limits.publish_per_second,
            max_subscriptions: a.limits.max_subscriptions,
            max_message_bytes: a.limits.max_message_bytes,
        }),
        token_keys: a
            .token_keys
            .iter()
            .map(|k| pb::TokenKey { kid: k.kid.clone(), algorithm: k.algorithm.clone(), public_key_pem: k.public_key_pem.clone() })
            .collect(),
    }
}

/// Names of edges and accounts: 1-64 characters of `a-z A-Z 0-9 - _ .`.
fn check_name(what: &str, s: &str) -> Result<(), ControlError> {
    if s.is_empty() || s.len() > 64 || !s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.') {
        return Err(ControlError::Invalid(format!("{what} must be 1-64 characters of A-Z a-z 0-9 - _ .")));
    }
    Ok(())
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// A new publish API key and its stored form.
pub fn new_api_key() -> (String, KeyRecord) {
    use sha2::{Digest, Sha256};
    let key = format!("hk_{}", hex(&rand::random::<[u8; 24]>()));
    let sha256 = hex(&Sha256::digest(key.as_bytes()));
    (key, KeyRecord { id: sha256[..12].to_owned(), sha256 })
}

struct RaftSvc(Arc<Inner>);

fn decode<T: serde::de::DeserializeOwned>(req: Request<pb::RaftPayload>) -> Result<T, ControlError> {
    serde_json::from_slice(&req.into_inner().json).map_err(|e| ControlError::Invalid(e.to_string()))
}

fn encode<T: Serialize>(v: &T) -> Result<Response<pb::RaftPayload>, Status> {
    Ok(Response::new(pb::RaftPayload { json: serde_json::to_vec(v).map_err(|e| ControlError::Internal(e.to_string()))? }))
}

#[tonic::async_trait]
impl pb::raft_server::Raft for RaftSvc {
    async fn append_entries(&self, req: Request<pb::RaftPayload>) -> Result<Response<pb::RaftPayload>, Status> {
        encode(&self.0.raft.append_entries(decode(req)?).await)
    }

    async fn vote(&self, req: Request<pb::RaftPayload>) -> Result<Response<pb::RaftPayload>, Status> {
        encode(&self.0.raft.vote(decode(req)?).await)
    }

    async fn install_snapshot(&self, req: Request<pb::RaftPayload>) -> Result<Response<pb::RaftPayload>, Status> {
        encode(&self.0.raft.install_snapshot(decode(req)?).await)
    }

    async fn forward(&self, req: Request<pb::RaftPayload>) -> Result<Response<pb::RaftPayload>, Status> {
        let req: Forwarded = decode(req)?;
        // Only the leader executes; a stale forward to a former leader fails and is retried.
        let leader = self.0.raft.metrics().borrow().current_leader;
        if leader != Some(self.0.cfg.id) {
            return Err(ControlError::LeadershipChanged("not the leader".into()).into());
        }
        // A failure travels back as data; the forwarding member turns it into the same error.
        let reply = self.0.lead(req).await.unwrap_or_else(|e| ForwardReply::Failed { code: e.code() as i32, message: e.to_string() });
        encode(&reply)
    }
}

struct Svc(Arc<Inner>);

impl Svc {
    fn devices(&self) -> Result<&Arc<dyn herald_core::DeviceRegistry>, ControlError> {
        self.0.cfg.devices.as_ref().ok_or_else(|| ControlError::Refused("this member has no device registry (start it with --presence redis://…)".into()))
    }
}

fn device_error(e: herald_core::DeviceError) -> ControlError {
    match e {
        herald_core::DeviceError::Invalid(m) => ControlError::Invalid(m),
        herald_core::DeviceError::Unavailable(m) => ControlError::Unavailable(m),
    }
}

type ConfigStream = Pin<Box<dyn futures_util::Stream<Item = Result<pb::ConfigSnapshot, Status>> + Send>>;

#[tonic::async_trait]
impl pb::membership_server::Membership for Svc {
    async fn register(&self, req: Request<pb::RegisterRequest>) -> Result<Response<pb::RegisterResponse>, Status> {
        let n = req.into_inner().node.ok_or_else(|| ControlError::Invalid("node is required".into()))?;
        check_name("node_id", &n.node_id)?;
        if n.region.is_empty() {
            return Err(ControlError::Invalid("region is required".into()).into());
        }
        self.0.write(Command::RegisterEdge(EdgeInfo { node_id: n.node_id, region: n.region, address: n.address, capacity: n.capacity, instance: n.instance })).await?;
        Ok(Response::new(pb::RegisterResponse { heartbeat_interval_ms: self.0.cfg.edge_heartbeat.as_millis() as u64 }))
    }

    async fn heartbeat(&self, req: Request<pb::HeartbeatRequest>) -> Result<Response<pb::HeartbeatResponse>, Status> {
        let r = req.into_inner();
        match self.0.on_leader(Forwarded::Heartbeat { node_id: r.node_id, connections: r.connections, load: r.load.map(Load::from) }).await? {
            ForwardReply::Heartbeat { known, drain } => Ok(Response::new(pb::HeartbeatResponse { known, drain })),
            _ => Err(ControlError::unexpected().into()),
        }
    }

    async fn deregister(&self, req: Request<pb::DeregisterRequest>) -> Result<Response<pb::DeregisterResponse>, Status> {
        let node_id = req.into_inner().node_id;
        check_name("node_id", &node_id)?;
        self.0.write(Command::DeregisterEdge { node_id }).await?;
        Ok(Response::new(pb::DeregisterResponse {}))
    }

    type WatchConfigStream = ConfigStream;

    async fn watch_config(&self, req: Request<pb::WatchConfigRequest>) -> Result<Response<Self::WatchConfigStream>, Status> {
        let node_id = req.into_inner().node_id;
        // Served from this node's replica: config may trail the leader by a heartbeat, which is
        // fine for keys and limits, and it keeps edges working on any reachable member.
        let stream = tokio_stream::wrappers::WatchStream::new(self.0.sm.watch()).map(move |(version, st)| {
            Ok(pb::ConfigSnapshot {
                version,
                accounts: st.data.accounts.iter().map(|(n, a)| account_pb(n, a)).collect(),
                drain: st.data.edges.get(&node_id).is_some_and(|e| e.draining),
            })
        });
        Ok(Response::new(Box::pin(stream)))
    }
}

impl Svc {
    /// Issues a backend's order through the region's orders store.
    async fn issue(&self, order: herald_core::Order) -> Result<Response<pb::OrderResponse>, Status> {
        let Some(orders) = &self.0.cfg.orders else {
            return Err(ControlError::Refused("this member has no presence store for orders (start it with --presence redis://…)".into()).into());
        };
        match orders.issue(order).await {
            Ok(order) => Ok(Response::new(pb::OrderResponse { order })),
            Err(herald_core::OrdersError::Invalid(m)) => Err(ControlError::Invalid(m).into()),
            Err(herald_core::OrdersError::Unavailable(m)) => Err(ControlError::Unavailable(m).into()),
        }
    }
}

#[tonic::async_trait]
impl pb::admin_server::Admin for Svc {
    async fn status(&self, _req: Request<pb::StatusRequest>) -> Result<Response<pb::ClusterStatus>, Status> {
        Ok(Response::new(self.0.status()))
    }

    async fn list_nodes(&self, _req: Request<pb::ListNodesRequest>) -> Result<Response<pb::ListNodesResponse>, Status> {
        let ForwardReply::Nodes(rows) = self.0.on_leader(Forwarded::Nodes).await? else { return Err(ControlError::unexpected().into()) };
        let healthy_within = self.0.cfg.edge_heartbeat.as_millis() as u64 * 3;
        let nodes = rows
            .into_iter()
            .map(|r| pb::NodeStatus {
                node: Some(pb::NodeInfo { node_id: r.info.node_id, region: r.info.region, address: r.info.address, capacity: r.info.capacity, instance: r.info.instance }),
                draining: r.draining,
                healthy: r.last_seen_ms_ago.is_some_and(|ms| ms <= healthy_within),
                connections: r.connections,
                last_heartbeat_ms_ago: r.last_seen_ms_ago.map(|m| m as i64).unwrap_or(-1),
                load: r.load.map(Into::into),
            })
            .collect();
        Ok(Response::new(pb::ListNodesResponse { nodes }))
    }

    async fn drain(&self, req: Request<pb::DrainRequest>) -> Result<Response<pb::DrainResponse>, Status> {
        let node_id = req.into_inner().node_id;
        check_name("node_id", &node_id)?;
        self.0.write(Command::Drain { node_id }).await?;
        Ok(Response::new(pb::DrainResponse {}))
    }

    async fn put_account(&self, req: Request<pb::PutAccountRequest>) -> Result<Response<pb::Account>, Status> {
        let r = req.into_inner();
        // Accounts follow the edge's naming rule, so that every account made here is usable.
        herald_core::AccountId::new(&r.name).map_err(|e| ControlError::Invalid(format!("account: {e}")))?;
        let l = r.limits.unwrap_or_default();
        let limits = Limits { connections: l.connections, publish_per_second: l.publish_per_second, max_subscriptions: l.max_subscriptions, max_message_bytes: l.max_message_bytes };
        let (name, a) = self.0.write_account(Command::PutAccount { name: r.name, limits }).await?;
        Ok(Response::new(account_pb(&name, &a)))
    }

    async fn list_accounts(&self, _req: Request<pb::ListAccountsRequest>) -> Result<Response<pb::ListAccountsResponse>, Status> {
        let ForwardReply::Accounts(list) = self.0.on_leader(Forwarded::Accounts).await? else { return Err(ControlError::unexpected().into()) };
        Ok(Response::new(pb::ListAccountsResponse { accounts: list.iter().map(|(n, a)| account_pb(n, a)).collect() }))
    }

    async fn add_key(&self, req: Request<pb::AddKeyRequest>) -> Result<Response<pb::AddKeyResponse>, Status> {
        let account = req.into_inner().account;
        check_name("account", &account)?;
        let (key, record) = new_api_key();
        let key_id = record.id.clone();
        let (name, a) = self.0.write_account(Command::AddKey { account, key: record }).await?;
        Ok(Response::new(pb::AddKeyResponse { account: Some(account_pb(&name, &a)), key, key_id }))
    }

    async fn revoke_key(&self, req: Request<pb::RevokeKeyRequest>) -> Result<Response<pb::Account>, Status> {
        let r = req.into_inner();
        check_name("account", &r.account)?;
        let (name, a) = self.0.write_account(Command::RevokeKey { account: r.account, key_id: r.key_id }).await?;
        Ok(Response::new(account_pb(&name, &a)))
    }

    async fn add_token_key(&self, req: Request<pb::AddTokenKeyRequest>) -> Result<Response<pb::Account>, Status> {
        let r = req.into_inner();
        check_name("account", &r.account)?;
        let k = r.key.ok_or_else(|| ControlError::Invalid("key is required".into()))?;
        // The edges parse the PEM (and skip a bad one with a warning); `herald ctl` checks it
        // before sending. Here: the shape.
        if !matches!(k.algorithm.as_str(), "RS256" | "ES256" | "EdDSA") {
            return Err(ControlError::Invalid("algorithm must be RS256, ES256 or EdDSA".into()).into());
        }
        if k.kid.is_empty() || k.kid.len() > 128 || !k.public_key_pem.contains("-----BEGIN PUBLIC KEY-----") || k.public_key_pem.len() > 16 << 10 {
            return Err(ControlError::Invalid("kid (1-128 characters) and a PEM public key (BEGIN PUBLIC KEY, at most 16 KiB) are required".into()).into());
        }
        let key = crate::state::TokenKeyRecord { kid: k.kid, algorithm: k.algorithm, public_key_pem: k.public_key_pem };
        let (name, a) = self.0.write_account(Command::AddTokenKey { account: r.account, key }).await?;
        Ok(Response::new(account_pb(&name, &a)))
    }

    async fn revoke_token_key(&self, req: Request<pb::RevokeTokenKeyRequest>) -> Result<Response<pb::Account>, Status> {
        let r = req.into_inner();
        check_name("account", &r.account)?;
        let (name, a) = self.0.write_account(Command::RevokeTokenKey { account: r.account, kid: r.kid }).await?;
        Ok(Response::new(account_pb(&name, &a)))
    }

    async fn add_member(&self, req: Request<pb::AddMemberRequest>) -> Result<Response<pb::ClusterStatus>, Status> {
        let r = req.into_inner();
        if r.id == 0 || r.address.is_empty() {
            return Err(ControlError::Invalid("id (> 0) and address are required".into()).into());
        }
        self.0.on_leader(Forwarded::AddMember { id: r.id, address: r.address }).await?;
        // Answer with this node's view once it has applied the change.
        self.0.wait_membership(|voters, _| voters.contains(&r.id)).await;
        Ok(Response::new(self.0.status()))
    }

    async fn presence(&self, req: Request<pb::PresenceRequest>) -> Result<Response<pb::PresenceResponse>, Status> {
        let r = req.into_inner();
        let Some(presence) = &self.0.cfg.presence else {
            return Err(ControlError::Refused("this member has no presence store (start it with --presence redis://…)".into()).into());
        };
        let account = herald_core::AccountId::new(&r.account).map_err(|e| ControlError::Invalid(format!("account: {e}")))?;
        let channel = herald_core::ChannelName::new(&r.channel).map_err(|e| ControlError::Invalid(format!("channel: {e}")))?;
        let limit = if r.limit == 0 { 100 } else { r.limit.min(1000) } as usize;
        let snap = presence.snapshot(&herald_core::ChannelKey::new(account, channel), limit).await.map_err(|e| ControlError::Unavailable(e.to_string()))?;
        Ok(Response::new(pb::PresenceResponse {
            occupancy: snap.occupancy,
            members: snap.members.into_iter().map(|m| pb::PresenceMember { connection_id: m.connection_id, user: m.user }).collect(),
        }))
    }

    async fn list_devices(&self, req: Request<pb::ListDevicesRequest>) -> Result<Response<pb::ListDevicesResponse>, Status> {
        let r = req.into_inner();
        let devices = self.devices()?;
        let account = herald_core::AccountId::new(&r.account).map_err(|e| ControlError::Invalid(format!("account: {e}")))?;
        if r.user.is_empty() {
            return Err(ControlError::Invalid("user is required".into()).into());
        }
        let list = devices.list_user(&account, &r.user).await.map_err(device_error)?;
        Ok(Response::new(pb::ListDevicesResponse {
            devices: list
                .into_iter()
                .map(|d| pb::Device {
                    token_tail: d.token_tail().to_owned(),
                    user: d.user,
                    platform: d.platform.as_str().into(),
                    app: d.app,
                    readable: d.readable.iter().map(herald_core::devices::pattern_text).collect(),
                    registered_at_ms: d.registered_at_ms,
                })
                .collect(),
        }))
    }

    async fn remove_device(&self, req: Request<pb::RemoveDeviceRequest>) -> Result<Response<pb::RemoveDeviceResponse>, Status> {
        let r = req.into_inner();
        let devices = self.devices()?;
        let account = herald_core::AccountId::new(&r.account).map_err(|e| ControlError::Invalid(format!("account: {e}")))?;
        let platform = herald_core::Platform::parse(&r.platform).map_err(device_error)?;
        // Only a device of the named account: an operator's typo in the account removes nothing.
        let mine = devices.get(platform, &r.token).await.map_err(device_error)?.is_some_and(|d| d.account == account);
        let removed = mine && devices.remove(platform, &r.token).await.map_err(device_error)?;
        Ok(Response::new(pb::RemoveDeviceResponse { removed }))
    }

    async fn disconnect(&self, req: Request<pb::DisconnectRequest>) -> Result<Response<pb::OrderResponse>, Status> {
        use herald_core::{Disconnect, DisconnectTarget, Order};
        let r = req.into_inner();
        let account = herald_core::AccountId::new(&r.account).map_err(|e| ControlError::Invalid(format!("account: {e}")))?;
        let target = match (r.user.is_empty(), r.connection_id.is_empty()) {
            (false, true) => DisconnectTarget::User(r.user),
            (true, false) => DisconnectTarget::Connection(r.connection_id),
            _ => return Err(ControlError::Invalid("exactly one of user and connection_id is required".into()).into()),
        };
        self.issue(Order::Disconnect(Disconnect { account, target, reason: r.reason, reconnect: r.reconnect })).await
    }

    async fn revoke(&self, req: Request<pb::RevokeRequest>) -> Result<Response<pb::OrderResponse>, Status> {
        use herald_core::{Order, RevokeTarget, Revocation};
        let r = req.into_inner();
        let account = herald_core::AccountId::new(&r.account).map_err(|e| ControlError::Invalid(format!("account: {e}")))?;
        let target = match (r.jti.is_empty(), r.user.is_empty()) {
            (false, true) => RevokeTarget::Jti(r.jti),
            (true, false) => RevokeTarget::User(r.user),
            _ => return Err(ControlError::Invalid("exactly one of jti and user is required".into()).into()),
        };
        let revocation = Revocation { account, target, at_ms: herald_core::now_ms(), until_ms: r.until.saturating_mul(1000), reason: r.reason };
        self.issue(Order::Revoke(revocation)).await
    }

    async fn list_connections(&self, req: Request<pb::ListConnectionsRequest>) -> Result<Response<pb::ListConnectionsResponse>, Status> {
        let r = req.into_inner();
        let Some(presence) = &self.0.cfg.presence else {
            return Err(ControlError::Refused("this member has no presence store (start it with --presence redis://…)".into()).into());
        };
        let account = herald_core::AccountId::new(&r.account).map_err(|e| ControlError::Invalid(format!("account: {e}")))?;
        if r.user.is_empty() {
            return Err(ControlError::Invalid("user is required".into()).into());
        }
        let list = presence.user_connections(&account, &r.user).await.map_err(|e| ControlError::Unavailable(e.to_string()))?;
        let connections = list
            .into_iter()
            .map(|c| pb::UserConnection { connection_id: c.connection.connection_id, node: c.node, transport: c.connection.transport, opened_at_ms: c.connection.opened_at_ms })
            .collect();
        Ok(Response::new(pb::ListConnectionsResponse { connections }))
    }

    async fn remove_member(&self, req: Request<pb::RemoveMemberRequest>) -> Result<Response<pb::ClusterStatus>, Status> {
        let id = req.into_inner().id;
        self.0.on_leader(Forwarded::RemoveMember { id }).await?;
        self.0.wait_membership(|_, all| !all.contains(&id)).await;
        Ok(Response::new(self.0.status()))
    }
}
