//! The Raft network over tonic: openraft's RPCs as JSON payloads in the internal `Raft` service.

use openraft::error::{InstallSnapshotError, NetworkError, RPCError, RaftError, RemoteError, Unreachable};
use openraft::network::{RPCOption, RaftNetwork, RaftNetworkFactory};
use openraft::raft::{AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse, VoteRequest, VoteResponse};
use openraft::BasicNode;
use serde::Serialize;
use serde::de::DeserializeOwned;
use std::time::Duration;
use tonic::transport::{Channel, Endpoint};

use crate::pb::RaftPayload;
use crate::pb::raft_client::RaftClient;
use crate::state::{NodeId, TypeConfig};

/// A lazily connecting gRPC channel to `addr` (`host:port`).
pub fn channel(addr: &str) -> Result<Channel, tonic::transport::Error> {
    let uri = if addr.starts_with("http://") || addr.starts_with("https://") { addr.to_owned() } else { format!("http://{addr}") };
    Ok(Endpoint::from_shared(uri)?.connect_timeout(Duration::from_secs(2)).timeout(Duration::from_secs(10)).tcp_nodelay(true).connect_lazy())
}

/// Makes one client per peer.
#[derive(Clone, Default)]
pub struct Network;

impl RaftNetworkFactory<TypeConfig> for Network {
    type Network = Peer;

    async fn new_client(&mut self, target: NodeId, node: &BasicNode) -> Self::Network {
        Peer { target, node: node.clone(), client: channel(&node.addr).ok().map(RaftClient::new) }
    }
}

/// One peer.
pub struct Peer {
    target: NodeId,
    node: BasicNode,
    client: Option<RaftClient<Channel>>,
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
