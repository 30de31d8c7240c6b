//! The RPC servers of a controller node: the tonic `Raft` service, handing each request
//! to the local `openraft::Raft`, and the `BrokerLifecycle` service, handing each to the
//! node's [`Lifecycle`]. A request that does not decode gets `INVALID_ARGUMENT`; Raft-level
//! and lifecycle refusals travel back inside the reply.

use openraft::raft::{AppendEntriesRequest, InstallSnapshotRequest, VoteRequest};
use openraft::Raft;
use tonic::{Request, Response, Status};

use crate::lifecycle::Lifecycle;
use crate::proto::{self, pb};
use crate::types::{NodeId, TypeConfig};

/// The `Raft` gRPC service of one controller node.
#[derive(Clone)]
pub struct RaftService {
    raft: Raft<TypeConfig>,
}

impl RaftService {
    pub fn new(raft: Raft<TypeConfig>) -> Self {
        Self { raft }
    }

    /// The service, ready to add to a tonic server.
    pub fn into_server(self) -> pb::raft_server::RaftServer<Self> {
        pb::raft_server::RaftServer::new(self)
    }
}

#[tonic::async_trait]
impl pb::raft_server::Raft for RaftService {
    async fn append_entries(
        &self,
        request: Request<pb::RaftRequest>,
    ) -> Result<Response<pb::RaftReply>, Status> {
        let rpc: AppendEntriesRequest<TypeConfig> = proto::decode_request(request.get_ref())?;
        let result = self.raft.append_entries(rpc).await;
        proto::encode_reply(&result).map(Response::new)
    }

    async fn vote(
        &self,
        request: Request<pb::RaftRequest>,
    ) -> Result<Response<pb::RaftReply>, Status> {
        let rpc: VoteRequest<NodeId> = proto::decode_request(request.get_ref())?;
        let result = self.raft.vote(rpc).await;
        proto::encode_reply(&result).map(Response::new)
    }

    async fn install_snapshot(
        &self,
        request: Request<pb::RaftRequest>,
    ) -> Result<Response<pb::RaftReply>, Status> {
        let rpc: InstallSnapshotRequest<TypeConfig> = proto::decode_request(request.get_ref())?;
        let result = self.raft.install_snapshot(rpc).await;
        proto::encode_reply(&result).map(Response::new)
    }
}

/// The `BrokerLifecycle` gRPC service of one controller node.
#[derive(Clone)]
pub struct LifecycleService {
    lifecycle: Lifecycle,
}

impl LifecycleService {
    pub fn new(lifecycle: Lifecycle) -> Self {
        Self { lifecycle }
    }

    /// The service, ready to add to a tonic server.
    pub fn into_server(self) -> pb::broker_lifecycle_server::BrokerLifecycleServer<Self> {
        pb::broker_lifecycle_server::BrokerLifecycleServer::new(self)
    }
}

#[tonic::async_trait]
impl pb::broker_lifecycle_server::BrokerLifecycle for LifecycleService {
    async fn register_broker(
        &self,
        request: Request<pb::RegisterBrokerRequest>,
    ) -> Result<Response<pb::RegisterBrokerResponse>, Status> {
        let request = proto::register_from_pb(request.into_inner())?;
        let result = self.lifecycle.register(request).await;
        proto::register_to_pb(result).map(Response::new)
    }

    async fn broker_heartbeat(
        &self,
        request: Request<pb::BrokerHeartbeatRequest>,
    ) -> Result<Response<pb::BrokerHeartbeatResponse>, Status> {
        let heartbeat = proto::heartbeat_from_pb(request.get_ref())?;
        let result = self.lifecycle.heartbeat(heartbeat).await;
        proto::heartbeat_to_pb(result).map(Response::new)
    }
}
