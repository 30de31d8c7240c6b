//! The node's membership in the cluster: it runs a controller node of the metadata quorum
//! (a voter, or a learner when it is not in `--voters`), registers and heartbeats as a
//! broker with the active controller, forwards metadata writes to it, and keeps its own
//! topic table following the committed metadata (`sync.rs`).
//!
//! Every node applies the committed metadata log itself and answers Metadata from what it
//! applied; an admin write is answered once it is committed *and* this node's table shows
//! it, so a client that creates a topic and then asks the same node sees it.

pub mod bootstrap;
mod sync;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use parking_lot::{Mutex, RwLock};
use sluice_controller::broker_client::{BrokerClient, BrokerClientConfig, BrokerStatus};
use sluice_controller::rpc_tls::RpcTls;
use sluice_controller::{
    BrokerEndpoint, Controller, ControllerConfig, ForwardError, HeartbeatConfig, LifecycleConfig,
    MetadataClient, MetadataImage, MetadataReader, MetadataRecord, MetadataResponse, NodeId,
    RebalanceConfig,
};
use sluice_protocol::error::ErrorCode;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tracing::{info, warn};

use crate::config::ClusterConfig;
use crate::error::BrokerError;
use crate::tls::TlsSettings;
use crate::topics::AdminError;

pub use sync::SyncTarget;

/// This node's part of the cluster. Built by [`Cluster::start`]; the broker's topic table
/// follows it once [`Cluster::spawn_sync`] runs.
pub struct Cluster {
    node_id: i32,
    config: ClusterConfig,
    /// Voter id -> RPC address, as configured (or this node alone).
    voters: BTreeMap<u64, String>,
    rpc_addr: String,
    /// Mutual TLS of the controller RPC port (`rpc_tls`), for the lifecycle client too.
    rpc_tls: Option<RpcTls>,
    controller: Mutex<Option<Controller>>,
    raft: openraft::Raft<sluice_controller::TypeConfig>,
    reader: MetadataReader,
    writer: MetadataClient,
    broker_client: Mutex<Option<BrokerClient>>,
    /// The lifecycle client's view of this broker, once registering.
    status: Mutex<Option<watch::Receiver<BrokerStatus>>>,
    /// The image the topic table was last brought to, and its log index.
    image: RwLock<Arc<MetadataImage>>,
    synced: watch::Sender<u64>,
}

impl std::fmt::Debug for Cluster {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cluster")
            .field("node_id", &self.node_id)
            .field("rpc_addr", &self.rpc_addr)
            .finish_non_exhaustive()
    }
}

impl Cluster {
    /// Starts this node's controller on `rpc_listener` (sled store under `dir`) and joins
    /// or forms the quorum. Registration waits for [`Cluster::register`]. Knows no
    /// listener TLS settings, so a config with `rpc_tls` set fails: see
    /// [`Cluster::start_with_tls`].
    pub async fn start(
        node_id: i32,
        config: &ClusterConfig,
        dir: &std::path::Path,
        rpc_listener: TcpListener,
    ) -> Result<Self, BrokerError> {
        Self::start_with_tls(node_id, config, None, dir, rpc_listener).await
    }

    /// [`Cluster::start`] given the listeners' TLS settings (`security.tls`): with
    /// `config.rpc_tls` the controller RPC port, and every client of it here, use mutual
    /// TLS with their certificate, key and CA, read now.
    pub async fn start_with_tls(
        node_id: i32,
        config: &ClusterConfig,
        listener_tls: Option<&TlsSettings>,
        dir: &std::path::Path,
        rpc_listener: TcpListener,
    ) -> Result<Self, BrokerError> {
        let rpc_tls = controller_rpc_tls(config, listener_tls)?;
        let raft_node_id = u64::try_from(node_id).map_err(|_| {
            BrokerError::Metadata(format!("node id {node_id} must not be negative"))
        })?;
        let bound = rpc_listener.local_addr()?;
        // A voter is known by its `--voters` address; a learner tells the leader its
        // bound address, by host name when bound to all interfaces.
        let rpc_addr = match config.voters.get(&raft_node_id) {
            Some(addr) => addr.clone(),
            None if bound.ip().is_unspecified() => match crate::broker::local_hostname() {
                Some(host) => format!("{host}:{}", bound.port()),
                None => bound.to_string(),
            },
            None => bound.to_string(),
        };
        let voters = bootstrap::voters_or_self(config, node_id, &rpc_addr);
        let mut ccfg = ControllerConfig::new(raft_node_id, dir);
        ccfg.raft.election_timeout_min = config.election_timeout_min_ms;
        ccfg.raft.election_timeout_max = config.election_timeout_max_ms;
        ccfg.raft.heartbeat_interval = config.raft_heartbeat_interval_ms;
        ccfg.raft.snapshot_policy =
            openraft::SnapshotPolicy::LogsSinceLast(config.snapshot_max_log_entries.max(1));
        ccfg.raft.max_in_snapshot_log_to_keep = config.snapshot_max_log_entries.min(1000);
        ccfg.lifecycle = LifecycleConfig {
            heartbeat: HeartbeatConfig {
                session_timeout_ms: config.session_timeout_ms,
                loss_grace_ms: config.heartbeat_loss_grace_ms,
            },
            rebalance: RebalanceConfig {
                enabled: config.auto_leader_rebalance_enable,
                check_interval: Duration::from_millis(config.leader_imbalance_check_interval_ms),
                imbalance_percentage: config.leader_imbalance_per_broker_percentage,
            },
            ..LifecycleConfig::default()
        };
        ccfg.tls = rpc_tls.clone();
        let controller = Controller::start(ccfg, rpc_listener)
            .await
            .map_err(|e| BrokerError::Metadata(format!("starting the controller: {e}")))?;
        let wait_for_existing = Duration::from_millis(config.election_timeout_max_ms * 3);
        if let Err(e) = bootstrap::join(&controller, &voters, wait_for_existing).await {
            controller.shutdown().await;
            return Err(e);
        }
        let raft = controller.raft().clone();
        let reader = controller.metadata().clone();
        let writer = MetadataClient::new(
            raft_node_id,
            raft.clone(),
            voters.values().cloned().collect(),
            Duration::from_secs(1),
            Duration::from_secs(5),
        )
        .with_tls(rpc_tls.clone());
        if !voters.contains_key(&raft_node_id) {
            // Not a voter: ask the leader to add us as a learner, in the background, so
            // the metadata log reaches this node.
            let writer = writer.clone();
            let addr = rpc_addr.clone();
            tokio::spawn(async move {
                loop {
                    match writer.add_learner(&addr, Duration::from_secs(30)).await {
                        Ok(()) => {
                            info!(rpc_addr = %addr, "joined the metadata quorum as a learner");
                            return;
                        }
                        Err(e) => warn!(error = %e, "cannot join the metadata quorum yet"),
                    }
                }
            });
        }
        info!(
            node_id,
            %rpc_addr,
            %bound,
            voters = ?voters,
            tls = rpc_tls.is_some(),
            "controller node started"
        );
        Ok(Self {
            node_id,
            config: config.clone(),
            voters,
            rpc_addr,
            rpc_tls,
            controller: Mutex::new(Some(controller)),
            raft,
            reader,
            writer,
            broker_client: Mutex::new(None),
            status: Mutex::new(None),
            image: RwLock::new(Arc::default()),
            synced: watch::channel(0).0,
        })
    }

    pub fn node_id(&self) -> i32 {
        self.node_id
    }

    /// The image the topic table currently reflects.
    pub fn image(&self) -> Arc<MetadataImage> {
        self.image.read().clone()
    }

    /// The Raft leader (the active controller) this node knows of.
    pub fn leader(&self) -> Option<NodeId> {
        self.raft.metrics().borrow().current_leader
    }

    pub fn raft_metrics(&self) -> openraft::RaftMetrics<NodeId, sluice_controller::ControllerNode> {
        self.raft.metrics().borrow().clone()
    }

    /// Registers this broker with the active controller and keeps heartbeating it.
    /// `endpoints` are the advertised listeners.
    pub fn register(&self, endpoints: Vec<BrokerEndpoint>, rack: Option<String>) {
        let client = BrokerClient::start(
            BrokerClientConfig {
                broker_id: self.node_id,
                endpoints,
                rack,
                voters: self.voters.clone(),
                heartbeat_interval: Duration::from_millis(self.config.heartbeat_interval_ms),
                connect_timeout: Duration::from_secs(1),
                rpc_timeout: Duration::from_secs(5),
                local_raft: Some(self.raft.metrics()),
                tls: self.rpc_tls.clone(),
            },
            self.synced.subscribe(),
        );
        *self.status.lock() = Some(client.status());
        *self.broker_client.lock() = Some(client);
    }

    /// This broker's registration as the lifecycle client last heard it.
    pub fn broker_status(&self) -> Option<BrokerStatus> {
        self.status.lock().as_ref().map(|s| s.borrow().clone())
    }

    /// Waits until this node's own applied metadata shows this broker registered and
    /// unfenced (it has caught up), logging while it waits: Kafka's brokers serve clients
    /// only then, and Metadata answered from an image without this broker would send
    /// clients away.
    pub async fn wait_unfenced(&self) {
        let mut synced = self.synced.subscribe();
        let mut waited = 0u64;
        loop {
            let unfenced = self.image().broker(self.node_id).is_some_and(|b| !b.fenced);
            if unfenced {
                return;
            }
            match tokio::time::timeout(Duration::from_secs(5), synced.changed()).await {
                Ok(Ok(())) => {}
                Ok(Err(_)) => return,
                Err(_) => {
                    waited += 5;
                    info!(
                        waited_s = waited,
                        status = ?self.broker_status(),
                        "waiting for the metadata quorum to unfence this broker"
                    );
                }
            }
        }
    }

    /// Writes `record` through the active controller and waits until this node's topic
    /// table reflects it. The state machine's answer is returned as is; the quorum not
    /// committing in time is REQUEST_TIMED_OUT.
    pub async fn write(&self, record: MetadataRecord) -> Result<MetadataResponse, AdminError> {
        let timeout = Duration::from_millis(self.config.admin_timeout_ms);
        let deadline = tokio::time::Instant::now() + timeout;
        let outcome = self
            .writer
            .write(record, timeout)
            .await
            .map_err(|e| match e {
                ForwardError::Timeout => AdminError::new(
                    ErrorCode::RequestTimedOut,
                    "The metadata quorum did not commit the change in time.",
                ),
                other => AdminError::new(ErrorCode::RequestTimedOut, other.to_string()),
            })?;
        let mut synced = self.synced.subscribe();
        let index = outcome.index;
        let reached = tokio::time::timeout_at(deadline, async move {
            synced.wait_for(|i| *i >= index).await.is_ok()
        });
        match reached.await {
            Ok(true) => Ok(outcome.response),
            _ => Err(AdminError::new(
                ErrorCode::RequestTimedOut,
                "The change was committed but this node has not applied it yet.",
            )),
        }
    }

    /// Carries the topics of a single-node data dir from before the metadata quorum
    /// (`topics.json`) into the metadata log, with their topic IDs, so their partition
    /// directories are found again rather than removed as strays. Runs once this broker
    /// is unfenced (a topic's first leader must be a live broker); a multi-node cluster
    /// never had such a file.
    pub async fn migrate_legacy_topics(
        &self,
        data_dir: &std::path::Path,
    ) -> Result<(), BrokerError> {
        let store = crate::topic_store::TopicStore::new(data_dir);
        let legacy = store.load()?;
        if legacy.is_empty() {
            return Ok(());
        }
        for t in legacy {
            let count = usize::try_from(t.partitions).unwrap_or(0);
            let record = MetadataRecord::CreateTopic {
                name: t.name.clone(),
                id: t.id.0,
                partitions: vec![
                    sluice_controller::PartitionAssignment {
                        replicas: vec![self.node_id],
                    };
                    count
                ],
                configs: t.configs,
            };
            match self.write(record).await {
                Ok(MetadataResponse::Applied) => {
                    info!(topic = %t.name, "migrated topic into the metadata log")
                }
                Ok(MetadataResponse::Rejected(reason)) => {
                    info!(topic = %t.name, %reason, "topic already in the metadata log")
                }
                Ok(_) => {}
                Err(e) => {
                    return Err(BrokerError::Metadata(format!(
                        "migrating topic {} into the metadata log: {}",
                        t.name, e.message
                    )))
                }
            }
        }
        store.retire()
    }

    /// Brings this node's view up to everything the quorum committed before now, by
    /// writing a no-op record through the leader and waiting until this node applied it
    /// (a linearizable read, as Kafka gets by checking admin requests on the controller).
    /// Admin requests are checked against this node's view; without this, a request
    /// sent to a node lagging a few milliseconds behind another could be refused (a
    /// topic just created elsewhere "does not exist", a broker just unfenced is not
    /// counted for placement).
    pub fn catch_up_blocking(&self) -> Result<(), AdminError> {
        self.write_blocking(MetadataRecord::Noop).map(|_| ())
    }

    /// [`Cluster::write`] from a blocking-pool thread (the admin handlers run there).
    pub fn write_blocking(&self, record: MetadataRecord) -> Result<MetadataResponse, AdminError> {
        match tokio::runtime::Handle::try_current() {
            Ok(handle) => handle.block_on(self.write(record)),
            Err(_) => Err(AdminError::new(
                ErrorCode::UnknownServerError,
                "no runtime to reach the metadata quorum",
            )),
        }
    }

    /// Starts the task that brings `target`'s topics to each newly applied image.
    pub fn spawn_sync(
        self: &Arc<Self>,
        target: Arc<dyn SyncTarget>,
    ) -> tokio::task::JoinHandle<()> {
        sync::spawn(self.clone(), target)
    }

    /// Controlled shutdown: the controller moves this broker's leaderships away and
    /// fences it; then the lifecycle client stops.
    pub async fn leave(&self) {
        let client = self.broker_client.lock().take();
        if let Some(client) = client {
            let timeout = Duration::from_millis(self.config.controlled_shutdown_timeout_ms);
            if client.controlled_shutdown(timeout).await {
                info!("controlled shutdown complete");
            } else {
                warn!(
                    ?timeout,
                    "controlled shutdown did not complete in time; stopping anyway"
                );
            }
            client.stop().await;
        }
    }

    /// Stops the controller node (after [`Cluster::leave`]).
    pub async fn shutdown(&self) {
        let controller = self.controller.lock().take();
        if let Some(controller) = controller {
            controller.shutdown().await;
        }
    }
}

/// With `rpc_tls` set, the listeners' certificate, key and CA read for the controller RPC
/// port; `None` without it. The CA is required: it is what peers are checked against, and
/// a port that accepted any client would not keep strangers out of the quorum.
fn controller_rpc_tls(
    config: &ClusterConfig,
    listener_tls: Option<&TlsSettings>,
) -> Result<Option<RpcTls>, BrokerError> {
    if !config.rpc_tls {
        return Ok(None);
    }
    let tls = listener_tls.ok_or_else(|| {
        BrokerError::Tls(
            "--controller-tls needs the listeners' TLS settings \
             (--ssl-certificate-location and --ssl-key-location)"
                .into(),
        )
    })?;
    let ca = tls.ca.as_deref().ok_or_else(|| {
        BrokerError::Tls(
            "--controller-tls needs a CA to check the other nodes' certificates against \
             (--ssl-truststore-location)"
                .into(),
        )
    })?;
    RpcTls::load(&tls.certificate, &tls.key, ca)
        .map(Some)
        .map_err(|e| BrokerError::Tls(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tls::ClientAuth;
    use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair};

    /// Listener TLS settings over a fresh CA and a leaf it signed, written under `dir`.
    fn settings(dir: &std::path::Path) -> TlsSettings {
        let ca_key = KeyPair::generate().unwrap();
        let mut ca = CertificateParams::default();
        ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let ca_pem = ca.self_signed(&ca_key).unwrap().pem();
        let issuer = Issuer::new(ca, ca_key);
        let key = KeyPair::generate().unwrap();
        let leaf = CertificateParams::new(vec!["localhost".to_string()]).unwrap();
        let cert = leaf.signed_by(&key, &issuer).unwrap();
        let write = |name: &str, pem: &str| {
            let path = dir.join(name);
            std::fs::write(&path, pem).unwrap();
            path
        };
        TlsSettings {
            certificate: write("cert.pem", &cert.pem()),
            key: write("key.pem", &key.serialize_pem()),
            ca: Some(write("ca.pem", &ca_pem)),
            client_auth: ClientAuth::Required,
        }
    }

    #[test]
    fn controller_rpc_tls_reads_the_listener_files_only_when_asked() {
        let dir = tempfile::tempdir().unwrap();
        let tls = settings(dir.path());
        let off = ClusterConfig::default();
        assert!(!off.rpc_tls);
        assert!(controller_rpc_tls(&off, Some(&tls)).unwrap().is_none());

        let on = ClusterConfig {
            rpc_tls: true,
            ..ClusterConfig::default()
        };
        let loaded = controller_rpc_tls(&on, Some(&tls)).unwrap().unwrap();
        let ca = std::fs::read(tls.ca.as_ref().unwrap()).unwrap();
        assert_eq!(loaded.ca_pem, ca);
        assert_eq!(
            loaded.certificate_pem,
            std::fs::read(&tls.certificate).unwrap()
        );
    }

    #[test]
    fn controller_rpc_tls_needs_listener_tls_and_a_ca() {
        let dir = tempfile::tempdir().unwrap();
        let on = ClusterConfig {
            rpc_tls: true,
            ..ClusterConfig::default()
        };
        let missing = controller_rpc_tls(&on, None).unwrap_err().to_string();
        assert!(missing.contains("--ssl-certificate-location"), "{missing}");

        let no_ca = TlsSettings {
            ca: None,
            ..settings(dir.path())
        };
        let missing = controller_rpc_tls(&on, Some(&no_ca))
            .unwrap_err()
            .to_string();
        assert!(missing.contains("--ssl-truststore-location"), "{missing}");

        let bad_key = TlsSettings {
            key: dir.path().join("absent.pem"),
            ..settings(dir.path())
        };
        let unreadable = controller_rpc_tls(&on, Some(&bad_key))
            .unwrap_err()
            .to_string();
        assert!(unreadable.contains("absent.pem"), "{unreadable}");
    }
}
