//! The Raft RPC client side: openraft's `RaftNetworkFactory` and `RaftNetwork` over tonic,
//! one lazily connected channel per target node, every call bounded by a timeout.

use std::error::Error;
use std::time::Duration;

use openraft::error::{
    InstallSnapshotError, NetworkError, RPCError, RaftError, RemoteError, Timeout, Unreachable,
};
use openraft::network::{RPCOption, RaftNetwork, RaftNetworkFactory};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse,
    VoteRequest, VoteResponse,
};
use openraft::RPCTypes;
use serde::de::DeserializeOwned;
use serde::Serialize;
use tonic::transport::{Channel, Endpoint};
use tonic::Code;

use crate::proto::{self, pb};
use crate::types::{ControllerNode, NodeId, TypeConfig};

/// Makes a [`PeerClient`] per target node.
#[derive(Clone)]
pub struct NetworkFactory {
    node_id: NodeId,
    connect_timeout: Duration,
    rpc_timeout: Duration,
}

impl NetworkFactory {
    /// `node_id` is this node's own id (for error reports); every call gives up after
    /// `rpc_timeout` (or openraft's own deadline, if shorter).
    pub fn new(node_id: NodeId, connect_timeout: Duration, rpc_timeout: Duration) -> Self {
        Self {
            node_id,
            connect_timeout,
            rpc_timeout,
        }
    }
}

impl RaftNetworkFactory<TypeConfig> for NetworkFactory {
    type Network = PeerClient;

    async fn new_client(&mut self, target: NodeId, node: &ControllerNode) -> PeerClient {
        // The channel connects on first use and reconnects by itself after a failure.
        let channel = Endpoint::from_shared(format!("http://{}", node.rpc_addr))
            .map(|endpoint| {
                endpoint
                    .connect_timeout(self.connect_timeout)
                    .timeout(self.rpc_timeout)
                    .connect_lazy()
            })
            .map_err(|e| BadAddress(format!("{}: {e}", node.rpc_addr)));
        PeerClient {
            node_id: self.node_id,
            target,
            node: node.clone(),
            rpc_timeout: self.rpc_timeout,
            channel,
        }
    }
}

/// A target's address that does not parse as a URI authority.
#[derive(Debug, thiserror::Error)]
#[error("bad controller RPC address {0}")]
pub struct BadAddress(String);

/// The client for one target node.
pub struct PeerClient {
    node_id: NodeId,
    target: NodeId,
    node: ControllerNode,
    rpc_timeout: Duration,
    channel: Result<Channel, BadAddress>,
}

#[derive(Clone, Copy)]
enum Rpc {
    AppendEntries,
    Vote,
    InstallSnapshot,
}

impl PeerClient {
    async fn call<Req, Resp, E>(
        &mut self,
        rpc: Rpc,
        request: &Req,
        option: &RPCOption,
    ) -> Result<Resp, RPCError<NodeId, ControllerNode, E>>
    where
        Req: Serialize,
        Resp: DeserializeOwned,
        E: Error + DeserializeOwned,
    {
        let channel = match &self.channel {
            Ok(channel) => channel.clone(),
            Err(e) => return Err(RPCError::Unreachable(Unreachable::new(e))),
        };
        let request =
            proto::encode_request(request).map_err(|e| RPCError::Network(NetworkError::new(&e)))?;
        let mut client = pb::raft_client::RaftClient::new(channel);
        let deadline = self.rpc_timeout.min(option.hard_ttl());
        let call = async {
            match rpc {
                Rpc::AppendEntries => client.append_entries(request).await,
                Rpc::Vote => client.vote(request).await,
                Rpc::InstallSnapshot => client.install_snapshot(request).await,
            }
        };
        let reply = match tokio::time::timeout(deadline, call).await {
            Ok(Ok(reply)) => reply.into_inner(),
            Ok(Err(status)) => {
                tracing::debug!(target_node = self.target, %status, "Raft RPC failed");
                return Err(match status.code() {
                    Code::Unavailable => RPCError::Unreachable(Unreachable::new(&status)),
                    Code::DeadlineExceeded | Code::Cancelled => {
                        RPCError::Timeout(self.timeout(rpc, deadline))
                    }
                    _ => RPCError::Network(NetworkError::new(&status)),
                });
            }
            Err(_) => {
                tracing::debug!(target_node = self.target, ?deadline, "Raft RPC timed out");
                return Err(RPCError::Timeout(self.timeout(rpc, deadline)));
            }
        };
        let result: Result<Resp, E> =
            proto::decode_reply(&reply).map_err(|e| RPCError::Network(NetworkError::new(&e)))?;
        result.map_err(|e| {
            RPCError::RemoteError(RemoteError::new_with_node(
                self.target,
                self.node.clone(),
                e,
            ))
        })
    }

    fn timeout(&self, rpc: Rpc, timeout: Duration) -> Timeout<NodeId> {
        Timeout {
            action: match rpc {
                Rpc::AppendEntries => RPCTypes::AppendEntries,
                Rpc::Vote => RPCTypes::Vote,
                Rpc::InstallSnapshot => RPCTypes::InstallSnapshot,
            },
            id: self.node_id,
            target: self.target,
            timeout,
        }
    }
}

impl RaftNetwork<TypeConfig> for PeerClient {
    async fn append_entries(
        &mut self,
        rpc: AppendEntriesRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<AppendEntriesResponse<NodeId>, RPCError<NodeId, ControllerNode, RaftError<NodeId>>>
    {
        self.call(Rpc::AppendEntries, &rpc, &option).await
    }

    async fn install_snapshot(
        &mut self,
        rpc: InstallSnapshotRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<
        InstallSnapshotResponse<NodeId>,
        RPCError<NodeId, ControllerNode, RaftError<NodeId, InstallSnapshotError>>,
    > {
        self.call(Rpc::InstallSnapshot, &rpc, &option).await
    }

    async fn vote(
        &mut self,
        rpc: VoteRequest<NodeId>,
        option: RPCOption,
    ) -> Result<VoteResponse<NodeId>, RPCError<NodeId, ControllerNode, RaftError<NodeId>>> {
        self.call(Rpc::Vote, &rpc, &option).await
    }
}
