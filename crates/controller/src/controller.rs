//! One controller node put together: the sled stores, the `openraft::Raft` instance, the
//! broker lifecycle task, and the tonic server for its Raft and lifecycle RPCs (over
//! mutual TLS when [`ControllerConfig::tls`] is set), started and stopped as a unit.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use openraft::Raft;
use tokio::net::TcpListener;
use tokio::sync::{oneshot, watch};
use tokio::task::JoinHandle;
use tonic::transport::server::TcpIncoming;
use tonic::transport::Server;

use crate::error::ControllerError;
use crate::forward::MetadataWriterService;
use crate::lifecycle::{Lifecycle, LifecycleConfig};
use crate::network::{LinkFilter, NetworkFactory};
use crate::rpc_tls::{error_chain, RpcTls};
use crate::server::{LifecycleService, RaftService};
use crate::store::{self, MetadataReader};
use crate::types::{ControllerNode, MetadataRecord, MetadataResponse, NodeId, TypeConfig};

/// How long shutdown waits for the RPC server to drain before dropping its connections.
const SERVER_DRAIN: Duration = Duration::from_secs(2);

/// What a controller node needs to start.
#[derive(Debug, Clone)]
pub struct ControllerConfig {
    pub node_id: NodeId,
    /// The node's sled database directory.
    pub data_dir: PathBuf,
    /// Raft timing and snapshot policy.
    pub raft: openraft::Config,
    pub connect_timeout: Duration,
    /// Upper bound of one Raft RPC.
    pub rpc_timeout: Duration,
    /// Broker session timing.
    pub lifecycle: LifecycleConfig,
    /// Fault injection for tests: Raft RPCs over links this filter cuts fail at once.
    /// `None` (the default) in production.
    pub link_filter: Option<LinkFilter>,
    /// Mutual TLS on the RPC port: the server requires a client certificate from the CA
    /// and every Raft call to a peer goes over `https://` with this node's certificate.
    /// `None` (the default): plain `http://`.
    pub tls: Option<RpcTls>,
}

impl ControllerConfig {
    pub fn new(node_id: NodeId, data_dir: impl Into<PathBuf>) -> Self {
        let raft = openraft::Config {
            cluster_name: "sluice".into(),
            // A chunk is sent as JSON (up to 4 bytes a byte), so keep it well inside
            // tonic's 4 MiB message limit.
            snapshot_max_chunk_size: 256 * 1024,
            ..openraft::Config::default()
        };
        Self {
            node_id,
            data_dir: data_dir.into(),
            raft,
            connect_timeout: Duration::from_secs(1),
            rpc_timeout: Duration::from_secs(2),
            lifecycle: LifecycleConfig::default(),
            link_filter: None,
            tls: None,
        }
    }
}

/// A running controller node.
pub struct Controller {
    node_id: NodeId,
    raft: Raft<TypeConfig>,
    metadata: MetadataReader,
    lifecycle: Lifecycle,
    stop_lifecycle: watch::Sender<bool>,
    lifecycle_task: JoinHandle<()>,
    rpc_addr: SocketAddr,
    stop_server: Option<oneshot::Sender<()>>,
    server: JoinHandle<Result<(), tonic::transport::Error>>,
}

impl Controller {
    /// Opens the node's store, starts Raft, and serves Raft RPCs on `listener`.
    pub async fn start(
        config: ControllerConfig,
        listener: TcpListener,
    ) -> Result<Self, ControllerError> {
        let raft_config = config
            .raft
            .clone()
            .validate()
            .map_err(|e| ControllerError::Config(e.to_string()))?;
        // Before anything starts: TLS material that does not load must not leave a Raft
        // node running that no peer can reach.
        let mut server_builder = Server::builder();
        if let Some(tls) = &config.tls {
            server_builder = server_builder
                .tls_config(tls.server_config())
                .map_err(|e| {
                    ControllerError::Config(format!("controller RPC TLS: {}", error_chain(&e)))
                })?;
        }
        let db = store::open_db(&config.data_dir)?;
        let (log_store, state_machine) = store::open_stores(&db)?;
        let metadata = state_machine.reader();
        let network =
            NetworkFactory::new(config.node_id, config.connect_timeout, config.rpc_timeout)
                .with_link_filter(config.link_filter.clone())
                .with_tls(config.tls.clone())
                .with_retry_interval(Duration::from_millis(raft_config.heartbeat_interval));
        let raft = Raft::new(
            config.node_id,
            Arc::new(raft_config),
            network,
            log_store,
            state_machine,
        )
        .await?;

        let lifecycle = Lifecycle::new(
            config.node_id,
            raft.clone(),
            metadata.clone(),
            config.lifecycle,
        );
        let (stop_lifecycle, lifecycle_stopped) = watch::channel(false);
        let lifecycle_task = tokio::spawn(lifecycle.clone().run(lifecycle_stopped));

        let rpc_addr = listener.local_addr()?;
        let (stop_server, stopped) = oneshot::channel::<()>();
        let service = RaftService::new(raft.clone()).into_server();
        let lifecycle_service = LifecycleService::new(lifecycle.clone()).into_server();
        let writer_service = MetadataWriterService::new(raft.clone()).into_server();
        let server = tokio::spawn(
            server_builder
                .add_service(service)
                .add_service(lifecycle_service)
                .add_service(writer_service)
                .serve_with_incoming_shutdown(TcpIncoming::from(listener), async {
                    let _ = stopped.await;
                }),
        );
        tracing::info!(
            node_id = config.node_id,
            %rpc_addr,
            tls = config.tls.is_some(),
            "controller started"
        );
        Ok(Self {
            node_id: config.node_id,
            raft,
            metadata,
            lifecycle,
            stop_lifecycle,
            lifecycle_task,
            rpc_addr,
            stop_server: Some(stop_server),
            server,
        })
    }

    pub fn node_id(&self) -> NodeId {
        self.node_id
    }

    /// The address the Raft RPC server listens on.
    pub fn rpc_addr(&self) -> SocketAddr {
        self.rpc_addr
    }

    pub fn raft(&self) -> &Raft<TypeConfig> {
        &self.raft
    }

    /// The metadata as applied on this node.
    pub fn metadata(&self) -> &MetadataReader {
        &self.metadata
    }

    /// The broker lifecycle (for a transport that sees heartbeat connections break).
    pub fn lifecycle(&self) -> &Lifecycle {
        &self.lifecycle
    }

    /// Forms a new quorum with these voters. Call it once, on one node of a new cluster.
    /// Returns false, changing nothing, if this node already belongs to a quorum.
    pub async fn initialize(
        &self,
        voters: BTreeMap<NodeId, ControllerNode>,
    ) -> Result<bool, ControllerError> {
        match self.raft.initialize(voters).await {
            Ok(()) => Ok(true),
            Err(openraft::error::RaftError::APIError(
                openraft::error::InitializeError::NotAllowed(_),
            )) => Ok(false),
            Err(e) => Err(e.into()),
        }
    }

    /// Appends a record through this node, which must be the leader, and waits until it
    /// is committed and applied here.
    pub async fn write(&self, record: MetadataRecord) -> Result<MetadataResponse, ControllerError> {
        Ok(self.raft.client_write(record).await?.data)
    }

    /// Stops Raft and the RPC server and releases the store.
    pub async fn shutdown(mut self) {
        if let Some(stop) = self.stop_server.take() {
            let _ = stop.send(());
        }
        // Stop the lifecycle first, so it does not see Raft stop as a leadership change.
        let _ = self.stop_lifecycle.send(true);
        if tokio::time::timeout(SERVER_DRAIN, &mut self.lifecycle_task)
            .await
            .is_err()
        {
            // Stuck in a write that cannot commit: the Raft shutdown below ends it anyway.
            self.lifecycle_task.abort();
        }
        if let Err(e) = self.raft.shutdown().await {
            tracing::warn!(node_id = self.node_id, error = %e, "raft task ended abnormally");
        }
        match tokio::time::timeout(SERVER_DRAIN, &mut self.server).await {
            Ok(Ok(Ok(()))) => {}
            Ok(Ok(Err(e))) => {
                tracing::warn!(node_id = self.node_id, error = %e, "RPC server failed")
            }
            Ok(Err(e)) => {
                tracing::warn!(node_id = self.node_id, error = %e, "RPC server task failed")
            }
            Err(_) => {
                // Peers keep HTTP/2 connections open; drop them rather than wait.
                self.server.abort();
                let _ = (&mut self.server).await;
            }
        }
        tracing::info!(node_id = self.node_id, "controller stopped");
    }
}
