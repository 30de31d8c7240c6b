//! The Raft RPC client side: openraft's `RaftNetworkFactory` and `RaftNetwork` over tonic,
//! one lazily connected channel per target node (over mutual TLS when the node has
//! [`RpcTls`]), every call bounded by a timeout.
//!
//! A [`LinkFilter`] injects network faults: it is consulted before every RPC, and a call
//! over a link it has cut fails at once as `Unreachable`, as if the peer were down. It is
//! meant for tests (partitions, an isolated leader) and a future chaos mode; a node
//! without one (the default) pays nothing for it.

use std::collections::HashSet;
use std::error::Error;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use openraft::error::{
    InstallSnapshotError, NetworkError, RPCError, RaftError, RemoteError, Timeout, Unreachable,
};
use openraft::network::{Backoff, RPCOption, RaftNetwork, RaftNetworkFactory};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse,
    VoteRequest, VoteResponse,
};
use openraft::RPCTypes;
use serde::de::DeserializeOwned;
use serde::Serialize;
use tonic::transport::Channel;
use tonic::Code;

use crate::proto::{self, pb};
use crate::rpc_tls::{self, RpcTls};
use crate::types::{ControllerNode, NodeId, TypeConfig};

/// Fault injection for tests (and a future chaos mode): a set of cut directed links
/// between nodes, shared by clones. Every node given the same filter (through
/// [`crate::ControllerConfig::link_filter`]) checks it before each Raft RPC it sends, and
/// a call over a cut link fails at once as `Unreachable`. Cutting both directions of
/// every link of a node isolates it; [`LinkFilter::heal`] restores them all.
#[derive(Clone, Default)]
pub struct LinkFilter(Arc<parking_lot::RwLock<HashSet<(NodeId, NodeId)>>>);

impl LinkFilter {
    /// A filter with every link up.
    pub fn new() -> Self {
        Self::default()
    }

    /// Cuts the link between `a` and `b`, in both directions.
    pub fn cut(&self, a: NodeId, b: NodeId) {
        let mut cut = self.0.write();
        cut.insert((a, b));
        cut.insert((b, a));
    }

    /// Cuts the links between `node` and every other node of `all_nodes`, both ways.
    pub fn isolate(&self, node: NodeId, all_nodes: impl IntoIterator<Item = NodeId>) {
        let mut cut = self.0.write();
        for other in all_nodes.into_iter().filter(|&other| other != node) {
            cut.insert((node, other));
            cut.insert((other, node));
        }
    }

    /// Restores every link.
    pub fn heal(&self) {
        self.0.write().clear();
    }

    /// Whether an RPC from `from` to `to` fails.
    pub fn is_cut(&self, from: NodeId, to: NodeId) -> bool {
        self.0.read().contains(&(from, to))
    }
}

impl fmt::Debug for LinkFilter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut cut: Vec<_> = self.0.read().iter().copied().collect();
        cut.sort_unstable();
        f.debug_tuple("LinkFilter").field(&cut).finish()
    }
}

/// A call refused by a [`LinkFilter`].
#[derive(Debug, thiserror::Error)]
#[error("link {from} -> {to} is cut by the link filter")]
pub struct LinkCut {
    from: NodeId,
    to: NodeId,
}

/// Retry interval of a [`NetworkFactory`] not given one: openraft's default heartbeat.
const DEFAULT_RETRY_INTERVAL: Duration = Duration::from_millis(50);

/// Makes a [`PeerClient`] per target node.
#[derive(Clone)]
pub struct NetworkFactory {
    node_id: NodeId,
    connect_timeout: Duration,
    rpc_timeout: Duration,
    retry_interval: Duration,
    link_filter: Option<LinkFilter>,
    tls: Option<Arc<RpcTls>>,
}

impl NetworkFactory {
    /// `node_id` is this node's own id (for error reports); every call gives up after
    /// `rpc_timeout` (or openraft's own deadline, if shorter).
    pub fn new(node_id: NodeId, connect_timeout: Duration, rpc_timeout: Duration) -> Self {
        Self {
            node_id,
            connect_timeout,
            rpc_timeout,
            retry_interval: DEFAULT_RETRY_INTERVAL,
            link_filter: None,
            tls: None,
        }
    }

    /// How long the leader waits before retrying a peer it could not reach. Use the Raft
    /// heartbeat interval: a retry then costs no more than a heartbeat, and a restarted
    /// peer hears from the leader well before its election timeout fires. openraft's
    /// default (a constant 500 ms) is longer than the election timeout, so a restarted
    /// voter would time out, raise the term and depose a healthy leader.
    pub fn with_retry_interval(mut self, interval: Duration) -> Self {
        self.retry_interval = interval.max(Duration::from_millis(1));
        self
    }

    /// Fails every RPC over a link that `filter` has cut (fault injection for tests).
    pub fn with_link_filter(mut self, filter: Option<LinkFilter>) -> Self {
        self.link_filter = filter;
        self
    }

    /// Calls peers over `https://` with this node's certificate, checking theirs against
    /// the CA and the host of their RPC address; `None` keeps plain `http://`.
    pub fn with_tls(mut self, tls: Option<RpcTls>) -> Self {
        self.tls = tls.map(Arc::new);
        self
    }
}

impl RaftNetworkFactory<TypeConfig> for NetworkFactory {
    type Network = PeerClient;

    async fn new_client(&mut self, target: NodeId, node: &ControllerNode) -> PeerClient {
        // The channel connects on first use and reconnects by itself after a failure.
        let channel = rpc_tls::endpoint(&node.rpc_addr, self.tls.as_deref())
            .map(|endpoint| {
                endpoint
                    .connect_timeout(self.connect_timeout)
                    .timeout(self.rpc_timeout)
                    .connect_lazy()
            })
            .map_err(|e| BadAddress(format!("{}: {}", node.rpc_addr, rpc_tls::error_chain(&e))));
        PeerClient {
            node_id: self.node_id,
            target,
            node: node.clone(),
            rpc_timeout: self.rpc_timeout,
            retry_interval: self.retry_interval,
            channel,
            link_filter: self.link_filter.clone(),
        }
    }
}

/// A target's address that does not parse as a URI authority (with TLS: or whose host is
/// not a valid server name to check its certificate against).
#[derive(Debug, thiserror::Error)]
#[error("bad controller RPC address {0}")]
pub struct BadAddress(String);

/// The client for one target node.
pub struct PeerClient {
    node_id: NodeId,
    target: NodeId,
    node: ControllerNode,
    rpc_timeout: Duration,
    retry_interval: Duration,
    channel: Result<Channel, BadAddress>,
    link_filter: Option<LinkFilter>,
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
        if let Some(filter) = &self.link_filter {
            if filter.is_cut(self.node_id, self.target) {
                return Err(RPCError::Unreachable(Unreachable::new(&LinkCut {
                    from: self.node_id,
                    to: self.target,
                })));
            }
        }
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

    fn backoff(&self) -> Backoff {
        Backoff::new(std::iter::repeat(self.retry_interval))
    }
}
