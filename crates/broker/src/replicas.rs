//! The broker's side of replication: turns the metadata image into fetch targets for
//! the replica fetchers (every hosted partition led elsewhere, fetched from the leader's
//! inter-broker listener), carries the ISR changes leaders ask for to the controller as
//! `PartitionChange` records (Kafka's AlterPartition, with the partition epoch and each
//! member's broker epoch), and runs the periodic ISR shrink check.

use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use sluice_controller::{
    IsrMember, MetadataImage, MetadataRecord, MetadataResponse, PartitionChange,
};
use sluice_protocol::codec::Uuid;
use sluice_replication::client::{ClientSecurity, ClientTls};
use sluice_replication::fetcher::{FetchTarget, FetcherConfig, FetcherManager};
use sluice_replication::IsrProposal;
use tokio::sync::{broadcast, mpsc};
use tracing::{debug, info, warn};

use crate::broker::{now_ms, Broker};
use crate::config::BrokerConfig;
use crate::error::BrokerError;
use crate::partition::Partition;
use crate::security::protocol_of;
use crate::tls;
use crate::topics::Topics;

/// An ISR change a leader asks for, with what names the partition.
#[derive(Debug)]
pub struct Proposal {
    pub topic: String,
    pub topic_id: Uuid,
    pub replica: Arc<Partition>,
    pub proposal: IsrProposal,
}

#[derive(Debug)]
pub struct ReplicaService {
    node: i32,
    inter_broker_listener: String,
    fetchers: FetcherManager,
    /// How this broker connects to other brokers' inter-broker listener (TLS, SASL).
    pub inter_broker_security: ClientSecurity,
    /// This broker's registration epoch (sent in its fetches).
    broker_epoch: Arc<AtomicI64>,
    lag_time_max_ms: i64,
    proposals: mpsc::UnboundedSender<Proposal>,
    pending: Mutex<Option<mpsc::UnboundedReceiver<Proposal>>>,
}

/// What connecting to the inter-broker listener takes, as that listener speaks: TLS
/// (presenting this broker's certificate, whose subject is then the broker's principal
/// on a listener that asks for client certificates) and/or a SASL login with the
/// broker's own user (`--inter-broker-sasl-*`). Either way the principal needs
/// ClusterAction (typically a super user) once an authorizer is on.
fn inter_broker_security(config: &BrokerConfig) -> Result<ClientSecurity, BrokerError> {
    let listener = &config.inter_broker_listener;
    let protocol = protocol_of(listener, &config.security.protocol_map)?;
    let sasl = if protocol.uses_sasl() {
        let login = config.security.inter_broker_sasl.clone();
        // A node alone never connects to another broker.
        if login.is_none() && config.cluster.voters.len() > 1 {
            warn!(
                listener = %listener,
                "the inter-broker listener speaks SASL but no --inter-broker-sasl-username is set: this broker cannot fetch from other brokers"
            );
        }
        login
    } else {
        None
    };
    let tls = if protocol.uses_tls() {
        let settings = config.security.tls.as_ref().ok_or_else(|| {
            BrokerError::Config(format!(
                "the inter-broker listener {listener} speaks {protocol}: --ssl-certificate-location and --ssl-key-location are needed"
            ))
        })?;
        Some(ClientTls {
            config: tls::client_config(settings)?,
        })
    } else {
        None
    };
    Ok(ClientSecurity { tls, sasl })
}

impl ReplicaService {
    /// Must be called within the tokio runtime (the fetchers are spawned on it).
    pub fn new(config: &BrokerConfig) -> Result<Self, BrokerError> {
        let broker_epoch = Arc::new(AtomicI64::new(-1));
        let r = &config.replication;
        let mut fc = FetcherConfig::new(config.node_id, broker_epoch.clone());
        fc.max_wait_ms = i32::try_from(r.fetch_wait_max_ms).unwrap_or(i32::MAX);
        fc.backoff = Duration::from_millis(r.fetch_backoff_ms);
        fc.partition_max_bytes = r.fetch_max_bytes;
        fc.max_bytes = r.fetch_response_max_bytes;
        let inter_broker_security = inter_broker_security(config)?;
        fc.security = inter_broker_security.clone();
        let fetchers = FetcherManager::new(fc).map_err(|e| BrokerError::Metadata(e.to_string()))?;
        let (tx, rx) = mpsc::unbounded_channel();
        Ok(Self {
            node: config.node_id,
            inter_broker_listener: config.inter_broker_listener.clone(),
            fetchers,
            inter_broker_security,
            broker_epoch,
            lag_time_max_ms: i64::try_from(r.lag_time_max_ms).unwrap_or(i64::MAX),
            proposals: tx,
            pending: Mutex::new(Some(rx)),
        })
    }

    /// Points the fetchers at the leaders of every hosted partition this node follows
    /// (called after the topic table followed `image`).
    pub fn follow(&self, topics: &Topics, image: &MetadataImage) {
        if let Some(me) = image.broker(self.node) {
            self.broker_epoch.store(me.epoch, Ordering::Release);
        }
        let mut targets = Vec::new();
        for topic in topics.all() {
            for p in &topic.partitions {
                let Some(replica) = &p.replica else { continue };
                if p.led_here || p.leader < 0 || p.leader == self.node {
                    continue;
                }
                let Some(addr) = self.inter_broker_addr(image, p.leader) else {
                    debug!(topic = %topic.name, partition = p.index, leader = p.leader, "leader has no inter-broker endpoint");
                    continue;
                };
                targets.push(FetchTarget {
                    topic: topic.name.clone(),
                    topic_id: topic.id,
                    partition: p.index,
                    leader: p.leader,
                    leader_addr: addr,
                    leader_epoch: p.leader_epoch,
                    replica: replica.clone(),
                });
            }
        }
        self.fetchers.set_targets(targets);
    }

    /// The address of broker `id` on the inter-broker listener, as `image` has it.
    pub fn inter_broker_addr(&self, image: &MetadataImage, id: i32) -> Option<String> {
        image.broker(id).and_then(|b| {
            b.endpoints
                .iter()
                .find(|e| e.listener == self.inter_broker_listener)
                .map(|e| format!("{}:{}", e.host, e.port))
        })
    }

    /// Queues an ISR change for the controller.
    pub fn propose(
        &self,
        topic: &str,
        topic_id: Uuid,
        replica: &Arc<Partition>,
        proposal: IsrProposal,
    ) {
        let sent = self.proposals.send(Proposal {
            topic: topic.to_string(),
            topic_id,
            replica: replica.clone(),
            proposal,
        });
        if let Err(e) = sent {
            // Shutting down: nobody carries it; let the leader propose again later.
            e.0.replica.isr_proposal_failed(e.0.proposal.leader_epoch);
        }
    }

    /// Whether this broker's replica fetcher found `leader`'s process gone (its
    /// connection reset, closed or refused, and not re-made) less than `within` ago.
    /// Evidence for Metadata, which answers as Kafka does for a leader that is not
    /// alive; `within` bounds how long the evidence outlives a controller that keeps
    /// the leader in place.
    pub fn leader_seen_gone(&self, leader: i32, within: Duration) -> bool {
        self.fetchers
            .leader_lost_since(leader)
            .is_some_and(|at| at.elapsed() < within)
    }

    pub fn followed_partitions(&self) -> usize {
        self.fetchers.partition_count()
    }

    pub fn shutdown(&self) {
        self.fetchers.shutdown();
    }

    /// Carries proposals to the controller and runs the ISR shrink check every half
    /// `replica.lag.time.max.ms` (as Kafka), until shutdown.
    pub fn spawn(
        broker: Arc<Broker>,
        mut shutdown: broadcast::Receiver<()>,
    ) -> tokio::task::JoinHandle<()> {
        let rx = broker.replicas.pending.lock().take();
        tokio::spawn(async move {
            let Some(mut rx) = rx else { return };
            let period = Duration::from_millis(
                u64::try_from(broker.replicas.lag_time_max_ms / 2)
                    .unwrap_or(0)
                    .max(100),
            );
            let mut shrink = tokio::time::interval(period);
            shrink.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tokio::select! {
                    Some(p) = rx.recv() => {
                        let b = broker.clone();
                        tokio::spawn(async move { write_proposal(&b, p).await });
                    }
                    _ = shrink.tick() => check_shrink(&broker),
                    _ = shutdown.recv() => break,
                }
            }
            broker.replicas.shutdown();
        })
    }
}

fn check_shrink(broker: &Broker) {
    let now = now_ms();
    let lag = broker.replicas.lag_time_max_ms;
    for topic in broker.topics.all() {
        for p in &topic.partitions {
            let (Some(replica), true) = (&p.replica, p.led_here) else {
                continue;
            };
            if let Some(proposal) = replica.maybe_shrink_isr(now, lag) {
                broker
                    .replicas
                    .propose(&topic.name, topic.id, replica, proposal);
            }
        }
    }
}

/// Writes one ISR change. Members keep the broker epoch the image has for them; a
/// joining member must still be registered, unfenced, with the epoch it fetched with
/// (KIP-903), or the change is not sent at all.
async fn write_proposal(broker: &Broker, p: Proposal) {
    let image = broker.cluster.image();
    let leader_epoch = p.proposal.leader_epoch;
    let mut isr = Vec::with_capacity(p.proposal.isr.len());
    for id in &p.proposal.isr {
        let reg = image.broker(*id);
        let joining = p.proposal.joining.iter().find(|(j, _)| j == id);
        let epoch = match (reg, joining) {
            (Some(r), Some((_, reported))) => {
                if r.fenced || (*reported >= 0 && r.epoch != *reported) {
                    debug!(topic = %p.topic, partition = p.replica.index, broker = id, "follower not eligible to join the ISR");
                    p.replica.isr_proposal_failed(leader_epoch);
                    return;
                }
                r.epoch
            }
            (Some(r), None) => r.epoch,
            (None, _) => {
                p.replica.isr_proposal_failed(leader_epoch);
                return;
            }
        };
        isr.push(IsrMember { id: *id, epoch });
    }
    let change = PartitionChange {
        topic: p.topic.clone(),
        topic_id: p.topic_id.0,
        partition: u32::try_from(p.replica.index).unwrap_or(u32::MAX),
        partition_epoch: p.proposal.partition_epoch,
        leader: broker.config.node_id,
        isr,
    };
    match broker
        .cluster
        .write(MetadataRecord::PartitionChange(change))
        .await
    {
        Ok(MetadataResponse::Applied) => {
            if p.proposal.joining.is_empty() {
                broker.metrics.isr_shrinks.inc();
            } else {
                broker.metrics.isr_expands.inc();
            }
            info!(
            topic = %p.topic,
            partition = p.replica.index,
            isr = ?p.proposal.isr,
            "ISR {}",
            if p.proposal.joining.is_empty() { "shrunk" } else { "expanded" }
            )
        }
        Ok(other) => {
            debug!(topic = %p.topic, partition = p.replica.index, response = ?other, "ISR change refused");
            p.replica.isr_proposal_failed(leader_epoch);
        }
        Err(e) => {
            debug!(topic = %p.topic, partition = p.replica.index, error = %e.message, "ISR change not written");
            p.replica.isr_proposal_failed(leader_epoch);
        }
    }
}
