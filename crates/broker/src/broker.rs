//! The node: configuration, identity, its place in the cluster, topics, and the
//! background work (retention, compaction, flushing) that runs beside request handling.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tokio::sync::{broadcast, Semaphore};
use tracing::{debug, warn};

use sluice_controller::{BrokerEndpoint, MetadataImage};

use crate::access::Access;
use crate::cluster::{Cluster, SyncTarget};
use crate::config::BrokerConfig;
use crate::error::BrokerError;
use crate::groups::GroupService;
use crate::listeners::{self, Listener};
use crate::metrics::Metrics;
use crate::producer_ids::ProducerIds;
use crate::replicas::ReplicaService;
use crate::security::protocol_of;
use crate::session::Credentials;
use crate::topics::Topics;
use crate::txns::TxnService;

/// Milliseconds since the Unix epoch, the unit of every Kafka timestamp.
pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// Shared state of one running node, handed to every connection.
#[derive(Debug)]
pub struct Broker {
    pub config: BrokerConfig,
    pub cluster_id: String,
    pub topics: Topics,
    /// The bound listeners with the endpoints they advertise, in configuration order;
    /// a connection knows its listener by index.
    pub listeners: Vec<Listener>,
    /// `queued.max.request.bytes` in KiB permits: memory that frames being read may hold
    /// across all connections, so many large produce requests cannot exhaust memory.
    pub request_memory: Arc<Semaphore>,
    pub request_memory_kib: u32,
    /// The group coordinator for the `__consumer_offsets` partitions this node leads.
    pub groups: GroupService,
    /// The metadata quorum as this node takes part in it.
    pub cluster: Arc<Cluster>,
    /// Replica fetchers and ISR upkeep.
    pub replicas: ReplicaService,
    /// Producer ids for InitProducerId.
    pub producer_ids: ProducerIds,
    /// The transaction coordinator for the `__transaction_state` partitions this node leads.
    pub txns: TxnService,
    /// Counters for `/metrics` (created before the broker, with the HTTP endpoint).
    pub metrics: Arc<Metrics>,
    /// Credentials and the authorizer.
    pub access: Access,
}

impl Broker {
    /// Sets the node up over its data dir (already checked by [`crate::server::start`]):
    /// the topic table starts empty and fills from the metadata once the sync task runs.
    /// `bound` holds the address each configured listener is bound to, in order.
    pub fn open(
        config: BrokerConfig,
        cluster_id: String,
        bound: &[SocketAddr],
        cluster: Arc<Cluster>,
        metrics: Arc<Metrics>,
    ) -> Result<Self, BrokerError> {
        let topics = Topics::new(&config.data_dir, config.log_defaults.clone());
        let groups = GroupService::new(sluice_group::Coordinator::new(config.groups.clone()));
        let txns = TxnService::new(sluice_txn::TxnCoordinator::new(config.txns.clone()));
        let replicas = ReplicaService::new(&config)?;
        let hostname = local_hostname();
        let listeners = config
            .listeners
            .iter()
            .zip(bound)
            .map(|(l, addr)| {
                let security = protocol_of(&l.name, &config.security.protocol_map)?;
                listeners::resolve(l, *addr, hostname.clone(), security)
            })
            .collect::<Result<Vec<_>, _>>()?;
        let access = Access::new(&config.security, cluster.clone(), metrics.clone())?;
        let request_memory_kib = u32::try_from(config.queued_max_request_bytes.div_ceil(1024))
            .unwrap_or(u32::MAX)
            .max(1);
        Ok(Self {
            config,
            cluster_id,
            topics,
            listeners,
            request_memory: Arc::new(Semaphore::new(request_memory_kib as usize)),
            request_memory_kib,
            groups,
            cluster,
            replicas,
            producer_ids: ProducerIds::default(),
            txns,
            metrics,
            access,
        })
    }

    /// What SASL sessions check credentials against.
    pub fn credentials(&self) -> &dyn Credentials {
        &self.access
    }

    /// The advertised endpoints this broker registers with, one per listener.
    pub fn advertised_endpoints(&self) -> Vec<BrokerEndpoint> {
        self.listeners
            .iter()
            .map(|l| BrokerEndpoint {
                listener: l.name.clone(),
                host: l.host.clone(),
                port: u16::try_from(l.port).unwrap_or(0),
            })
            .collect()
    }

    /// Retention, the log cleaner and the `flush.ms` / recovery-point flusher, until
    /// shutdown.
    pub fn spawn_background(
        self: &Arc<Self>,
        mut shutdown: broadcast::Receiver<()>,
    ) -> tokio::task::JoinHandle<()> {
        let broker = self.clone();
        tokio::spawn(async move {
            let mut retention = tokio::time::interval(Duration::from_millis(
                broker.config.retention_check_interval_ms.max(1),
            ));
            let mut flush = tokio::time::interval(Duration::from_millis(
                broker.config.flush_check_interval_ms.max(1),
            ));
            let mut cleaner = tokio::time::interval(Duration::from_millis(
                broker.config.log_cleaner_backoff_ms.max(1),
            ));
            loop {
                tokio::select! {
                    _ = retention.tick() => {
                        let b = broker.clone();
                        let _ = tokio::task::spawn_blocking(move || b.run_retention()).await;
                    }
                    _ = flush.tick() => {
                        let b = broker.clone();
                        let _ = tokio::task::spawn_blocking(move || b.run_time_flush()).await;
                    }
                    _ = cleaner.tick() => {
                        let b = broker.clone();
                        let _ = tokio::task::spawn_blocking(move || b.run_cleaner()).await;
                    }
                    _ = shutdown.recv() => break,
                }
            }
        })
    }

    fn run_retention(&self) {
        let now = now_ms();
        self.topics.for_each_partition(|topic, p| match p.log.apply_retention(now) {
            Ok(outcome) => {
                if outcome.deleted_segments > 0 {
                    debug!(topic = %topic.name, partition = p.index, ?outcome, "retention deleted segments");
                    p.notify();
                }
            }
            Err(e) => warn!(topic = %topic.name, partition = p.index, error = %e, "retention failed"),
        });
    }

    /// One compaction pass over each compacted partition that is due (the storage engine
    /// decides: dirty ratio, `max.compaction.lag.ms`, expiring tombstones). Partitions
    /// are cleaned one at a time, as by Kafka's single default cleaner thread.
    fn run_cleaner(&self) {
        self.topics.for_each_partition(|topic, p| {
            if !topic.config.compact() {
                return;
            }
            match p.log.compact(now_ms()) {
                Ok(outcome) => {
                    if outcome.segments_rewritten + outcome.segments_deleted > 0 {
                        debug!(topic = %topic.name, partition = p.index, ?outcome, "log compacted");
                        p.notify();
                    }
                }
                // The log was closed or deleted while the cleaner ran (shutdown, DeleteTopics).
                Err(sluice_storage::StorageError::Closed(_)) => {}
                Err(e) => {
                    warn!(topic = %topic.name, partition = p.index, error = %e, "compaction failed")
                }
            }
        });
    }

    fn run_time_flush(&self) {
        let now = now_ms();
        self.topics.for_each_partition(|topic, p| {
            if let Err(e) = p.log.maybe_flush(now) {
                warn!(topic = %topic.name, partition = p.index, error = %e, "flush failed");
            }
        });
    }

    /// Host and port advertised by listener `index` (the one a request came in on).
    pub fn endpoint(&self, index: usize) -> (&str, i32) {
        match self.listeners.get(index).or_else(|| self.listeners.first()) {
            Some(l) => (&l.host, l.port),
            None => ("", -1),
        }
    }

    /// Flushes and closes every log, writing checkpoints and the clean-shutdown marker.
    pub fn close(&self) {
        self.topics.for_each_partition(|topic, p| {
            if let Err(e) = p.log.close() {
                warn!(topic = %topic.name, partition = p.index, error = %e, "close failed");
            }
        });
    }
}

impl SyncTarget for Broker {
    fn follow_image(&self, image: &MetadataImage) {
        let changes = self
            .topics
            .apply_image(image, self.config.node_id, now_ms());
        self.replicas.follow(&self.topics, image);
        self.groups.follow(&self.topics, &changes);
        self.txns.follow(&self.topics, &changes);
    }
}

/// This machine's host name (a container's is its name on the container network).
pub(crate) fn local_hostname() -> Option<String> {
    let name = std::fs::read_to_string("/proc/sys/kernel/hostname").ok()?;
    let name = name.trim();
    (!name.is_empty()).then(|| name.to_string())
}
