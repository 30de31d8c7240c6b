//! Metadata writes from any node (Kafka's KIP-590 forwarding): a node appends a record
//! through its own Raft if it leads, and otherwise sends it to the leader's
//! `MetadataWriter` service, following leader changes until the write commits or the
//! caller's deadline passes. Also how a node outside `--voters` asks to join as a learner.
//! With [`MetadataClient::with_tls`] the calls to the leader go over mutual TLS.
//!
//! A retry after an ambiguous failure (a timeout after the record was sent) may append
//! the record twice; every record the broker forwards is safe to apply twice or is
//! refused the second time in a way the caller recognises (a topic created with the
//! caller's own topic ID, a partition count already reached), so retries are safe.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use openraft::error::{ClientWriteError, RaftError};
use openraft::Raft;
use serde::{Deserialize, Serialize};
use tokio::time::Instant;
use tonic::transport::Channel;
use tonic::{Request, Response, Status};

use crate::proto::{self, pb};
use crate::rpc_tls::{self, RpcTls};
use crate::types::{ControllerNode, MetadataRecord, MetadataResponse, NodeId, TypeConfig};

/// Pause before retrying when no leader is known or the leader could not be reached.
const RETRY_BACKOFF: Duration = Duration::from_millis(50);

/// A committed write: the state machine's answer and the entry's log index.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WriteOutcome {
    pub response: MetadataResponse,
    pub index: u64,
}

/// Why a write did not (yet) commit.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
pub enum ForwardError {
    /// The answering node is not the leader; it names the leader it knows of.
    #[error("not the active controller (leader {leader:?})")]
    NotController {
        leader: Option<NodeId>,
        rpc_addr: Option<String>,
    },
    /// The leader could not commit (it lost leadership, or Raft is shutting down).
    #[error("metadata quorum unavailable: {0}")]
    Unavailable(String),
    /// No leader committed the write before the caller's deadline.
    #[error("timed out waiting for the metadata quorum")]
    Timeout,
}

#[derive(Debug, Serialize, Deserialize)]
struct LearnerRequest {
    node_id: NodeId,
    rpc_addr: String,
}

/// Appends `record` through this node's Raft, which must lead.
async fn local_write(
    raft: &Raft<TypeConfig>,
    record: MetadataRecord,
) -> Result<WriteOutcome, ForwardError> {
    match raft.client_write(record).await {
        Ok(reply) => Ok(WriteOutcome {
            response: reply.data,
            index: reply.log_id.index,
        }),
        Err(RaftError::APIError(ClientWriteError::ForwardToLeader(f))) => {
            Err(ForwardError::NotController {
                leader: f.leader_id,
                rpc_addr: f.leader_node.map(|n| n.rpc_addr),
            })
        }
        Err(e) => Err(ForwardError::Unavailable(e.to_string())),
    }
}

async fn local_add_learner(
    raft: &Raft<TypeConfig>,
    request: LearnerRequest,
) -> Result<(), ForwardError> {
    let known = raft
        .metrics()
        .borrow()
        .membership_config
        .nodes()
        .any(|(id, node)| *id == request.node_id && node.rpc_addr == request.rpc_addr);
    if known {
        return Ok(());
    }
    // Not blocking: the learner catches up on its own; the caller only needs it listed.
    match raft
        .add_learner(
            request.node_id,
            ControllerNode::new(request.rpc_addr),
            false,
        )
        .await
    {
        Ok(_) => Ok(()),
        Err(RaftError::APIError(ClientWriteError::ForwardToLeader(f))) => {
            Err(ForwardError::NotController {
                leader: f.leader_id,
                rpc_addr: f.leader_node.map(|n| n.rpc_addr),
            })
        }
        Err(e) => Err(ForwardError::Unavailable(e.to_string())),
    }
}

/// The `MetadataWriter` gRPC service of one controller node.
#[derive(Clone)]
pub struct MetadataWriterService {
    raft: Raft<TypeConfig>,
}

impl MetadataWriterService {
    pub fn new(raft: Raft<TypeConfig>) -> Self {
        Self { raft }
    }

    pub fn into_server(self) -> pb::metadata_writer_server::MetadataWriterServer<Self> {
        pb::metadata_writer_server::MetadataWriterServer::new(self)
    }
}

#[tonic::async_trait]
impl pb::metadata_writer_server::MetadataWriter for MetadataWriterService {
    async fn write(
        &self,
        request: Request<pb::RaftRequest>,
    ) -> Result<Response<pb::RaftReply>, Status> {
        let record: MetadataRecord = proto::decode_request(request.get_ref())?;
        let result = local_write(&self.raft, record).await;
        proto::encode_reply(&result).map(Response::new)
    }

    async fn add_learner(
        &self,
        request: Request<pb::RaftRequest>,
    ) -> Result<Response<pb::RaftReply>, Status> {
        let learner: LearnerRequest = proto::decode_request(request.get_ref())?;
        let result = local_add_learner(&self.raft, learner).await;
        proto::encode_reply(&result).map(Response::new)
    }
}

/// Writes metadata records from this node, wherever the leader is. Cheap to clone.
#[derive(Clone)]
pub struct MetadataClient {
    node_id: NodeId,
    raft: Raft<TypeConfig>,
    connect_timeout: Duration,
    rpc_timeout: Duration,
    /// Where to look for the leader when this node knows none (a fresh learner, or a
    /// voter before the first election): the `--voters` addresses.
    voters: Vec<String>,
    /// Mutual TLS towards the leader; `None`: plain `http://`.
    tls: Option<Arc<RpcTls>>,
    routing: Arc<parking_lot::Mutex<Routing>>,
}

#[derive(Default)]
struct Routing {
    channels: HashMap<String, Channel>,
    /// The leader a node named in its last NOT_CONTROLLER answer.
    hint: Option<String>,
    /// The voter to try next when nothing better is known.
    next_voter: usize,
}

enum Target {
    Local,
    Remote(String),
    Unknown,
}

#[derive(Clone, Copy)]
enum Call {
    Write,
    AddLearner,
}

impl MetadataClient {
    pub fn new(
        node_id: NodeId,
        raft: Raft<TypeConfig>,
        voters: Vec<String>,
        connect_timeout: Duration,
        rpc_timeout: Duration,
    ) -> Self {
        Self {
            node_id,
            raft,
            connect_timeout,
            rpc_timeout,
            voters,
            tls: None,
            routing: Default::default(),
        }
    }

    /// Sends the writes to the leader over `https://` with this node's certificate (the
    /// controllers' RPC port requires one when it runs TLS); `None` keeps `http://`.
    pub fn with_tls(mut self, tls: Option<RpcTls>) -> Self {
        self.tls = tls.map(Arc::new);
        // Channels made before were for the other scheme.
        self.routing = Default::default();
        self
    }

    /// Appends `record` through the leader and returns once it is committed and applied
    /// there (not necessarily here yet: see the outcome's `index`).
    pub async fn write(
        &self,
        record: MetadataRecord,
        timeout: Duration,
    ) -> Result<WriteOutcome, ForwardError> {
        let deadline = Instant::now() + timeout;
        loop {
            let attempt = match self.target() {
                Target::Local => local_write(&self.raft, record.clone()).await,
                Target::Remote(addr) => self.remote(&addr, Call::Write, &record).await,
                Target::Unknown => Err(ForwardError::NotController {
                    leader: None,
                    rpc_addr: None,
                }),
            };
            match attempt {
                Ok(outcome) => return Ok(outcome),
                Err(e) => self.before_retry(e, deadline).await?,
            }
        }
    }

    /// Asks the leader to add this node as a learner with this RPC address.
    pub async fn add_learner(&self, rpc_addr: &str, timeout: Duration) -> Result<(), ForwardError> {
        let deadline = Instant::now() + timeout;
        let request = LearnerRequest {
            node_id: self.node_id,
            rpc_addr: rpc_addr.to_string(),
        };
        loop {
            let attempt = match self.target() {
                Target::Local => Ok(()),
                Target::Remote(addr) => self.remote(&addr, Call::AddLearner, &request).await,
                Target::Unknown => Err(ForwardError::NotController {
                    leader: None,
                    rpc_addr: None,
                }),
            };
            match attempt {
                Ok(()) => return Ok(()),
                Err(e) => self.before_retry(e, deadline).await?,
            }
        }
    }

    /// Waits a little before the next attempt, or gives up at the deadline.
    async fn before_retry(
        &self,
        error: ForwardError,
        deadline: Instant,
    ) -> Result<(), ForwardError> {
        tracing::debug!(%error, "metadata write not committed yet; retrying");
        {
            let mut routing = self.routing.lock();
            match &error {
                ForwardError::NotController {
                    rpc_addr: Some(addr),
                    ..
                } => routing.hint = Some(addr.clone()),
                _ => {
                    routing.hint = None;
                    routing.next_voter = routing.next_voter.wrapping_add(1);
                }
            }
        }
        let now = Instant::now();
        if now >= deadline {
            return Err(match error {
                ForwardError::NotController { .. } => ForwardError::Timeout,
                other => other,
            });
        }
        // A leader change shows in the metrics: retry as soon as one does. A new receiver
        // counts every change since Raft started as unseen, so mark the current value
        // seen first; otherwise `changed` returns at once and a peer that fails fast
        // (refused connection, failed TLS handshake) is retried in a busy loop.
        let mut metrics = self.raft.metrics();
        metrics.borrow_and_update();
        let wait = RETRY_BACKOFF.min(deadline - now);
        let _ = tokio::time::timeout(wait, metrics.changed()).await;
        Ok(())
    }

    /// Where the next attempt goes: this node if it leads, else the leader its Raft
    /// knows of, else the last hint, else the next voter.
    fn target(&self) -> Target {
        let known = {
            let metrics = self.raft.metrics();
            let m = metrics.borrow();
            m.current_leader.map(|leader| {
                let addr = m
                    .membership_config
                    .nodes()
                    .find(|(id, _)| **id == leader)
                    .map(|(_, node)| node.rpc_addr.clone());
                (leader, addr)
            })
        };
        let routing = self.routing.lock();
        match known {
            Some((leader, _)) if leader == self.node_id => Target::Local,
            Some((_, Some(addr))) => Target::Remote(addr),
            _ => match &routing.hint {
                Some(addr) => Target::Remote(addr.clone()),
                None if self.voters.is_empty() => Target::Unknown,
                None => Target::Remote(self.voters[routing.next_voter % self.voters.len()].clone()),
            },
        }
    }

    fn channel(&self, addr: &str) -> Result<Channel, ForwardError> {
        let channels = &mut self.routing.lock().channels;
        if let Some(channel) = channels.get(addr) {
            return Ok(channel.clone());
        }
        let channel = rpc_tls::endpoint(addr, self.tls.as_deref())
            .map_err(|e| {
                ForwardError::Unavailable(format!(
                    "bad controller address {addr}: {}",
                    rpc_tls::error_chain(&e)
                ))
            })?
            .connect_timeout(self.connect_timeout)
            .timeout(self.rpc_timeout)
            .connect_lazy();
        channels.insert(addr.to_string(), channel.clone());
        Ok(channel)
    }

    async fn remote<Req: Serialize, T: serde::de::DeserializeOwned>(
        &self,
        addr: &str,
        call: Call,
        request: &Req,
    ) -> Result<T, ForwardError> {
        let request = proto::encode_request(request)
            .map_err(|e| ForwardError::Unavailable(format!("encoding a metadata write: {e}")))?;
        let mut client = pb::metadata_writer_client::MetadataWriterClient::new(self.channel(addr)?);
        let reply = match call {
            Call::Write => client.write(request).await,
            Call::AddLearner => client.add_learner(request).await,
        }
        .map_err(|status| ForwardError::Unavailable(format!("{addr}: {status}")))?;
        let result: Result<T, ForwardError> = proto::decode_reply(reply.get_ref())
            .map_err(|e| ForwardError::Unavailable(format!("malformed reply from {addr}: {e}")))?;
        result
    }
}
