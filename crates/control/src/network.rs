//! The Raft network over tonic: openraft's RPCs as JSON payloads in the internal `Raft` service;
//! and the one way every client (members, edges, `herald ctl`) opens a channel to a member,
//! in plaintext or TLS ([`channel`]).

use openraft::error::{InstallSnapshotError, NetworkError, RPCError, RaftError, RemoteError, Unreachable};
use openraft::network::{RPCOption, RaftNetwork, RaftNetworkFactory};
use openraft::raft::{AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse, VoteRequest, VoteResponse};
use openraft::BasicNode;
use serde::Serialize;
use serde::de::DeserializeOwned;
use std::sync::Arc;
use std::time::Duration;
use tonic::transport::{Channel, Endpoint};

use crate::pb::RaftPayload;
use crate::pb::raft_client::RaftClient;
use crate::state::{NodeId, TypeConfig};
use crate::tls::{ClientTls, Connector};

/// Why a channel cannot be made to an address.
#[derive(Debug, thiserror::Error)]
#[error("control-plane address {addr:?}: {message}")]
pub struct ChannelError {
    /// The address as given.
    pub addr: String,
    /// What is wrong with it.
    pub message: String,
}

/// A lazily connecting gRPC channel to a member at `addr`: `host:port`, `http://host:port` or
/// `https://host:port`.
///
/// With `tls`, every connection is TLS, checked against its CA (and presenting its client
/// certificate when the member asks for one); the files are looked at again at each new
/// connection. Without it, `https://` checks the member against the public web PKI and the
/// rest is plaintext. `http://` with `tls` is refused: the two say different things.
pub fn channel(addr: &str, tls: Option<&Arc<ClientTls>>) -> Result<Channel, ChannelError> {
    let bad = |message: String| ChannelError { addr: addr.to_owned(), message };
    let (scheme, host_port) = addr.split_once("://").map_or((None, addr), |(s, rest)| (Some(s), rest));
    let tls = match (scheme, tls) {
        (Some("http"), Some(_)) => return Err(bad("http:// but TLS is configured (a CA file is set): write HOST:PORT or https://HOST:PORT".into())),
        (None | Some("http"), None) => None,
        (None | Some("https"), Some(t)) => Some(t.clone()),
        (Some("https"), None) => Some(ClientTls::public()),
        (Some(other), _) => return Err(bad(format!("unknown scheme {other}://; use HOST:PORT or https://HOST:PORT"))),
    };
    // The connector makes the connection itself, so the endpoint's own URI stays http:// (tonic
    // must not try TLS of its own); the origin says https to the server when it is.
    let endpoint = Endpoint::from_shared(format!("http://{host_port}"))
        .map_err(|e| bad(e.to_string()))?
        .connect_timeout(Duration::from_secs(2))
        .timeout(Duration::from_secs(10))
        .tcp_nodelay(true);
    match tls {
        None => Ok(endpoint.connect_lazy()),
        Some(tls) => {
            let origin = format!("https://{host_port}").parse().map_err(|e: tonic::codegen::http::uri::InvalidUri| bad(e.to_string()))?;
            let connector = Connector::new(tls, host_port).map_err(bad)?;
            Ok(endpoint.origin(origin).connect_with_connector_lazy(connector))
        }
    }
}

/// Adds `authorization: Bearer <token>` to a request when a token is set.
pub fn authorize<T>(req: &mut tonic::Request<T>, token: Option<&str>) {
    if let Some(t) = token
        && let Ok(v) = format!("Bearer {t}").parse() {
            req.metadata_mut().insert("authorization", v);
        }
}

/// A client-side interceptor adding the bearer token to every call.
#[derive(Clone, Default)]
pub struct Bearer(pub Option<std::sync::Arc<str>>);

impl tonic::service::Interceptor for Bearer {
    fn call(&mut self, mut req: tonic::Request<()>) -> Result<tonic::Request<()>, tonic::Status> {
        authorize(&mut req, self.0.as_deref());
        Ok(req)
    }
}

/// A server-side check of `authorization: Bearer <token>` (constant time); `None` lets every
/// caller through.
pub fn require(token: Option<String>) -> impl FnMut(tonic::Request<()>) -> Result<tonic::Request<()>, tonic::Status> + Clone {
    move |req: tonic::Request<()>| {
        let Some(want) = &token else { return Ok(req) };
        let got = req.metadata().get("authorization").and_then(|v| v.to_str().ok()).and_then(|v| v.strip_prefix("Bearer ")).unwrap_or("");
        let (a, b) = (got.as_bytes(), want.as_bytes());
        let same = a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0;
        if same { Ok(req) } else { Err(tonic::Status::unauthenticated("missing or wrong token for this service")) }
    }
}

/// Makes one client per peer.
#[derive(Clone, Default)]
pub struct Network {
    /// The cluster token members present to each other.
    pub token: Option<std::sync::Arc<str>>,
    /// TLS to the other members (none: plaintext).
    pub tls: Option<Arc<ClientTls>>,
}

impl RaftNetworkFactory<TypeConfig> for Network {
    type Network = Peer;

    async fn new_client(&mut self, target: NodeId, node: &BasicNode) -> Self::Network {
        let client = match channel(&node.addr, self.tls.as_ref()) {
            Ok(ch) => Some(RaftClient::new(ch)),
            Err(e) => {
                tracing::error!(target_node = target, error = %e, "control plane: cannot reach this member");
                None
            }
        };
        Peer { target, node: node.clone(), client, token: self.token.clone() }
    }
}

/// One peer.
pub struct Peer {
    target: NodeId,
    node: BasicNode,
    client: Option<RaftClient<Channel>>,
    token: Option<std::sync::Arc<str>>,
}

type RpcResult<T, E = openraft::error::Infallible> = Result<T, RPCError<NodeId, BasicNode, RaftError<NodeId, E>>>;

impl Peer {
    async fn call<Req: Serialize, Resp: DeserializeOwned, E: std::error::Error + DeserializeOwned>(
        &mut self,
        which: &'static str,
        req: &Req,
        option: &RPCOption,
    ) -> RpcResult<Resp, E> {
        let Some(client) = self.client.as_mut() else {
            return Err(RPCError::Unreachable(Unreachable::new(&std::io::Error::other(format!("bad address {}", self.node.addr)))));
        };
        let json = serde_json::to_vec(req).map_err(|e| RPCError::Network(NetworkError::new(&e)))?;
        let mut request = tonic::Request::new(RaftPayload { json });
        request.set_timeout(option.hard_ttl());
        authorize(&mut request, self.token.as_deref());
        let reply = match which {
            "append" => client.append_entries(request).await,
            "vote" => client.vote(request).await,
            _ => client.install_snapshot(request).await,
        };
        let payload = reply.map_err(|status| match status.code() {
            tonic::Code::Unavailable | tonic::Code::DeadlineExceeded | tonic::Code::Cancelled => RPCError::Unreachable(Unreachable::new(&status)),
            _ => RPCError::Network(NetworkError::new(&status)),
        })?;
        let result: Result<Resp, RaftError<NodeId, E>> = serde_json::from_slice(&payload.into_inner().json).map_err(|e| RPCError::Network(NetworkError::new(&e)))?;
        result.map_err(|e| RPCError::RemoteError(RemoteError::new_with_node(self.target, self.node.clone(), e)))
    }
}

impl RaftNetwork<TypeConfig> for Peer {
    async fn append_entries(&mut self, rpc: AppendEntriesRequest<TypeConfig>, option: RPCOption) -> RpcResult<AppendEntriesResponse<NodeId>> {
        self.call("append", &rpc, &option).await
    }

    async fn install_snapshot(
        &mut self,
        rpc: InstallSnapshotRequest<TypeConfig>,
        option: RPCOption,
    ) -> RpcResult<InstallSnapshotResponse<NodeId>, InstallSnapshotError> {
        self.call("snapshot", &rpc, &option).await
    }

    async fn vote(&mut self, rpc: VoteRequest<NodeId>, option: RPCOption) -> RpcResult<VoteResponse<NodeId>> {
        self.call("vote", &rpc, &option).await
    }
}
