//! The RPC servers of a controller node: the tonic `Raft` service, handing each request
//! to the local `openraft::Raft`, and the `BrokerLifecycle` service, handing each to the
//! node's [`Lifecycle`]. A request that does not decode gets `INVALID_ARGUMENT`; Raft-level
//! and lifecycle refusals travel back inside the reply.
//!
//! A broker's heartbeat stream (`BrokerHeartbeatStream`) is served by one task that reads a
//! request, answers it, then reads the next, through a small bounded channel, so a peer
//! cannot queue more than a few answers. A stream serves one broker id, and only the newest
//! stream of an id counts: when the current stream of a broker that had a heartbeat
//! accepted on it ends (EOF or a broken connection), the node reports the connection lost
//! to its [`Lifecycle`] (which ignores it unless it is the active controller), except after
//! a completed controlled shutdown.

use std::collections::HashMap;
use std::sync::Arc;

use openraft::raft::{AppendEntriesRequest, InstallSnapshotRequest, VoteRequest};
use openraft::Raft;
// tonic re-exports the `tokio-stream` it is built with; its channel wrapper is all we need.
use tokio::sync::{mpsc, oneshot};
use tonic::codegen::tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status, Streaming};

use crate::lifecycle::{LeaderHint, Lifecycle};
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

    /// Refuses a Raft RPC from a node outside the membership this node knows, so a
    /// stray or misconfigured process (say, a node of another cluster) cannot make a
    /// member step down with a higher term or take its vote. A node that belongs to no
    /// quorum yet (a new voter or learner) accepts its first leader.
    fn check_sender(&self, sender: Option<NodeId>) -> Result<(), Status> {
        let Some(sender) = sender else {
            return Err(Status::invalid_argument("a Raft RPC must name its sender"));
        };
        let metrics = self.raft.metrics();
        let m = metrics.borrow();
        let membership = m.membership_config.membership();
        let known = membership.nodes().any(|(id, _)| *id == sender);
        if known || membership.nodes().next().is_none() {
            Ok(())
        } else {
            Err(Status::permission_denied(format!(
                "node {sender} is not a member of this node's metadata quorum"
            )))
        }
    }
}

#[tonic::async_trait]
impl pb::raft_server::Raft for RaftService {
    async fn append_entries(
        &self,
        request: Request<pb::RaftRequest>,
    ) -> Result<Response<pb::RaftReply>, Status> {
        let rpc: AppendEntriesRequest<TypeConfig> = proto::decode_request(request.get_ref())?;
        self.check_sender(rpc.vote.leader_id().voted_for())?;
        let result = self.raft.append_entries(rpc).await;
        proto::encode_reply(&result).map(Response::new)
    }

    async fn vote(
        &self,
        request: Request<pb::RaftRequest>,
    ) -> Result<Response<pb::RaftReply>, Status> {
        let rpc: VoteRequest<NodeId> = proto::decode_request(request.get_ref())?;
        self.check_sender(rpc.vote.leader_id().voted_for())?;
        let result = self.raft.vote(rpc).await;
        proto::encode_reply(&result).map(Response::new)
    }

    async fn install_snapshot(
        &self,
        request: Request<pb::RaftRequest>,
    ) -> Result<Response<pb::RaftReply>, Status> {
        let rpc: InstallSnapshotRequest<TypeConfig> = proto::decode_request(request.get_ref())?;
        self.check_sender(rpc.vote.leader_id().voted_for())?;
        let result = self.raft.install_snapshot(rpc).await;
        proto::encode_reply(&result).map(Response::new)
    }
}

/// Answers a heartbeat stream may have queued for its peer before it stops reading requests.
const STREAM_BUFFER: usize = 4;
/// The largest lifecycle request a node decodes (a registration is a few hundred bytes).
const MAX_REQUEST_BYTES: usize = 64 * 1024;

/// The answer stream of `BrokerHeartbeatStream`.
pub type HeartbeatResponses = ReceiverStream<Result<pb::BrokerHeartbeatResponse, Status>>;

/// The `BrokerLifecycle` gRPC service of one controller node.
#[derive(Clone)]
pub struct LifecycleService {
    lifecycle: Lifecycle,
    streams: Arc<parking_lot::Mutex<Streams>>,
}

/// The current heartbeat stream of each broker id.
#[derive(Default)]
struct Streams {
    next_id: u64,
    /// Broker id -> (stream id, the signal that ends that stream when a newer one claims
    /// the id; dropping it is the signal).
    current: HashMap<i32, (u64, oneshot::Sender<()>)>,
}

/// A heartbeat stream's hold on its broker id.
struct Claim {
    broker: i32,
    id: u64,
    replaced: oneshot::Receiver<()>,
}

impl LifecycleService {
    pub fn new(lifecycle: Lifecycle) -> Self {
        Self {
            lifecycle,
            streams: Arc::default(),
        }
    }

    /// The service, ready to add to a tonic server.
    pub fn into_server(self) -> pb::broker_lifecycle_server::BrokerLifecycleServer<Self> {
        pb::broker_lifecycle_server::BrokerLifecycleServer::new(self)
            .max_decoding_message_size(MAX_REQUEST_BYTES)
    }

    /// Makes this stream the current one of `broker`, ending the previous one.
    fn claim(&self, broker: i32) -> Claim {
        let (replace, replaced) = oneshot::channel();
        let mut streams = self.streams.lock();
        streams.next_id = streams.next_id.wrapping_add(1);
        let id = streams.next_id;
        if let Some((_, older)) = streams.current.insert(broker, (id, replace)) {
            tracing::debug!(broker, "a newer heartbeat stream replaces the current one");
            let _ = older.send(());
        }
        Claim {
            broker,
            id,
            replaced,
        }
    }

    /// Gives up a claim; reports the broker's connection lost if asked and the stream was
    /// still the broker's current one. Both happen under the registry lock, so a newer
    /// stream's first heartbeat is never overtaken by an older stream's loss report.
    fn release(&self, claim: &Claim, report_lost: bool) {
        let mut streams = self.streams.lock();
        let current = streams
            .current
            .get(&claim.broker)
            .is_some_and(|(id, _)| *id == claim.id);
        if current {
            streams.current.remove(&claim.broker);
            if report_lost {
                self.lifecycle.connection_lost(claim.broker);
            }
        }
    }

    /// Serves one heartbeat stream until it ends, then reports the loss if due.
    async fn serve_stream(
        self,
        mut inbound: Streaming<pb::BrokerHeartbeatRequest>,
        tx: mpsc::Sender<Result<pb::BrokerHeartbeatResponse, Status>>,
    ) {
        let mut claim: Option<Claim> = None;
        // A heartbeat was accepted on this stream (this node was the active controller).
        let mut accepted = false;
        // The last request asked for shutdown and was told it may shut down.
        let mut shut_down = false;
        let end = loop {
            let replaced = async {
                match claim.as_mut() {
                    Some(claim) => {
                        let _ = (&mut claim.replaced).await;
                    }
                    None => std::future::pending().await,
                }
            };
            let deposed = async {
                if accepted {
                    self.lifecycle.other_leader().await
                } else {
                    std::future::pending().await
                }
            };
            let message = tokio::select! {
                () = replaced => break StreamEnd::Replaced,
                () = tx.closed() => break StreamEnd::Lost,
                leader = deposed => break StreamEnd::Deposed(leader),
                message = inbound.message() => message,
            };
            let request = match message {
                Ok(Some(request)) => request,
                Ok(None) => break StreamEnd::Lost,
                Err(status) => {
                    tracing::debug!(%status, "heartbeat stream broken");
                    break StreamEnd::Lost;
                }
            };
            let heartbeat = match proto::heartbeat_from_pb(&request) {
                Ok(heartbeat) => heartbeat,
                Err(status) => break StreamEnd::Invalid(status),
            };
            match &claim {
                Some(claim) if claim.broker != heartbeat.broker => {
                    break StreamEnd::Invalid(Status::invalid_argument(format!(
                        "a heartbeat stream serves one broker: {} then {}",
                        claim.broker, heartbeat.broker
                    )));
                }
                Some(_) => {}
                None => claim = Some(self.claim(heartbeat.broker)),
            }
            let result = self.lifecycle.heartbeat(heartbeat).await;
            accepted |= result.is_ok();
            shut_down =
                heartbeat.want_shutdown && result.as_ref().is_ok_and(|r| r.should_shut_down);
            let response = proto::heartbeat_to_pb(result);
            // An error status ends the stream (the quorum could not commit: the broker
            // reconnects), without reporting the broker lost.
            let failed = response.is_err();
            if tx.send(response).await.is_err() {
                break StreamEnd::Lost;
            }
            if failed {
                break StreamEnd::Failed;
            }
        };
        let report_lost =
            accepted && !shut_down && matches!(end, StreamEnd::Lost | StreamEnd::Invalid(_));
        if let Some(claim) = &claim {
            self.release(claim, report_lost);
        }
        // The last word, if the peer still listens; never wait for a slow reader here.
        let last = match end {
            StreamEnd::Invalid(status) => Some(Err(status)),
            StreamEnd::Deposed(Some(leader)) => Some(Ok(not_controller(leader))),
            StreamEnd::Deposed(None) => {
                Some(Err(Status::unavailable("this controller node is stopping")))
            }
            StreamEnd::Replaced => Some(Err(Status::aborted(
                "replaced by a newer heartbeat stream of the same broker",
            ))),
            StreamEnd::Lost | StreamEnd::Failed => None,
        };
        if let Some(last) = last {
            let _ = tx.try_send(last);
        }
    }
}

/// Why a heartbeat stream ended.
enum StreamEnd {
    /// EOF, a broken connection, or the peer stopped reading answers.
    Lost,
    /// A malformed request: answered `INVALID_ARGUMENT`.
    Invalid(Status),
    /// A heartbeat could not be served (`UNAVAILABLE`, already sent).
    Failed,
    /// A newer stream of the same broker took over.
    Replaced,
    /// Another node leads now (`None`: this node's Raft stopped).
    Deposed(Option<LeaderHint>),
}

/// The unsolicited answer telling a broker where the active controller went.
fn not_controller(leader: LeaderHint) -> pb::BrokerHeartbeatResponse {
    let message = format!(
        "no longer the active controller (leader {:?} at {:?})",
        leader.id, leader.rpc_addr
    );
    pb::BrokerHeartbeatResponse {
        error: pb::LifecycleError::NotController as i32,
        error_message: message,
        leader: Some(proto::leader_to_pb(leader)),
        is_fenced: true,
        ..Default::default()
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

    type BrokerHeartbeatStreamStream = HeartbeatResponses;

    async fn broker_heartbeat_stream(
        &self,
        request: Request<Streaming<pb::BrokerHeartbeatRequest>>,
    ) -> Result<Response<HeartbeatResponses>, Status> {
        let (tx, rx) = mpsc::channel(STREAM_BUFFER);
        tokio::spawn(self.clone().serve_stream(request.into_inner(), tx));
        Ok(Response::new(ReceiverStream::new(rx)))
    }
}
