//! Broker lifecycle on the active controller (KRaft, KIP-631): registration, heartbeats,
//! and fencing, written as records through Raft. The timing decisions are the sans-io
//! [`BrokerHeartbeatManager`]'s; this module owns its clock, turns its decisions into
//! records, and runs the task that ticks it while this node is the Raft leader.
//!
//! Only the active controller answers: it is the node that is the Raft leader of the
//! current term *and* has rebuilt its broker sessions for that term from a linearizable
//! image. Any other node (or the leader before that) answers [`LifecycleError::NotController`]
//! naming the leader it knows of.

use std::sync::Arc;
use std::time::Duration;

use openraft::error::{ClientWriteError, RaftError};
use openraft::Raft;
use tokio::sync::watch;
use tokio::time::{Instant, MissedTickBehavior};

use crate::heartbeat::{
    BrokerHeartbeatManager, Heartbeat, HeartbeatAction, HeartbeatConfig, SessionError,
};
use crate::image::{BrokerEndpoint, MetadataImage, RejectReason};
use crate::probe;
use crate::store::MetadataReader;
use crate::types::{ControllerNode, MetadataRecord, MetadataResponse, NodeId, TypeConfig};

/// Broker lifecycle settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LifecycleConfig {
    pub heartbeat: HeartbeatConfig,
    /// How often the active controller looks for lapsed sessions: the fencing delay is
    /// the session timeout (or loss grace) plus up to this.
    pub tick_interval: Duration,
    /// Automatic preferred-leader elections.
    pub rebalance: RebalanceConfig,
}

impl Default for LifecycleConfig {
    fn default() -> Self {
        Self {
            heartbeat: HeartbeatConfig::default(),
            tick_interval: Duration::from_millis(25),
            rebalance: RebalanceConfig::default(),
        }
    }
}

/// Kafka's `auto.leader.rebalance.enable` and its settings: the active controller
/// periodically gives leadership back to preferred replicas for every broker whose
/// share of preferred partitions it does not lead exceeds a percentage.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RebalanceConfig {
    /// `auto.leader.rebalance.enable` (default true).
    pub enabled: bool,
    /// `leader.imbalance.check.interval.seconds` (default 300 s).
    pub check_interval: Duration,
    /// `leader.imbalance.per.broker.percentage` (default 10).
    pub imbalance_percentage: u32,
}

impl Default for RebalanceConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            check_interval: Duration::from_secs(300),
            imbalance_percentage: 10,
        }
    }
}

/// A broker's registration request, validated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RegisterBroker {
    pub broker: i32,
    /// The broker process's UUID.
    pub incarnation: [u8; 16],
    pub endpoints: Vec<BrokerEndpoint>,
    pub rack: Option<String>,
}

/// The answer to an accepted heartbeat.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HeartbeatReply {
    pub caught_up: bool,
    pub fenced: bool,
    /// Controlled shutdown is done: the broker leads nothing and may exit.
    pub should_shut_down: bool,
}

/// The active controller as a node knows it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LeaderHint {
    pub id: Option<NodeId>,
    pub rpc_addr: Option<String>,
}

/// Why a lifecycle request was not served.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LifecycleError {
    #[error("not the active controller (leader {:?} at {:?})", .0.id, .0.rpc_addr)]
    NotController(LeaderHint),
    #[error(transparent)]
    Session(#[from] SessionError),
    /// The record was committed but refused, e.g. a registration racing another.
    #[error("the metadata refused the record: {0}")]
    Rejected(RejectReason),
    /// The quorum could not commit (no majority, or this node is shutting down).
    #[error("metadata quorum unavailable: {0}")]
    Unavailable(String),
}

type Result<T> = std::result::Result<T, LifecycleError>;

struct State {
    /// The Raft term in which this node became the active controller, if it is.
    active_term: Option<u64>,
    manager: BrokerHeartbeatManager,
}

struct Inner {
    node_id: NodeId,
    raft: Raft<TypeConfig>,
    metadata: MetadataReader,
    config: LifecycleConfig,
    /// The manager's time base: milliseconds since the node started.
    clock: Instant,
    state: parking_lot::Mutex<State>,
    /// Serializes the lifecycle's writes, so each election is computed from an image that
    /// already holds the previous one (one broker at a time).
    writes: tokio::sync::Mutex<()>,
}

/// The broker lifecycle of one controller node. Cheap to clone.
#[derive(Clone)]
pub struct Lifecycle {
    inner: Arc<Inner>,
}

impl Lifecycle {
    pub fn new(
        node_id: NodeId,
        raft: Raft<TypeConfig>,
        metadata: MetadataReader,
        config: LifecycleConfig,
    ) -> Self {
        Self {
            inner: Arc::new(Inner {
                node_id,
                raft,
                metadata,
                config,
                clock: Instant::now(),
                state: parking_lot::Mutex::new(State {
                    active_term: None,
                    manager: BrokerHeartbeatManager::new(config.heartbeat),
                }),
                writes: tokio::sync::Mutex::new(()),
            }),
        }
    }

    fn now(&self) -> u64 {
        u64::try_from(self.inner.clock.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    /// The leader this node knows of, from openraft's metrics.
    pub fn leader_hint(&self) -> LeaderHint {
        let metrics = self.inner.raft.metrics();
        let m = metrics.borrow();
        let rpc_addr = m.current_leader.and_then(|leader| {
            m.membership_config
                .nodes()
                .find(|(id, _)| **id == leader)
                .map(|(_, node)| node.rpc_addr.clone())
        });
        LeaderHint {
            id: m.current_leader,
            rpc_addr,
        }
    }

    /// Ok if this node is the active controller of the current term.
    fn check_active(&self) -> Result<()> {
        let (term, leader) = {
            let metrics = self.inner.raft.metrics();
            let m = metrics.borrow();
            (m.current_term, m.current_leader)
        };
        let active = self.inner.state.lock().active_term;
        if leader == Some(self.inner.node_id) && active == Some(term) {
            Ok(())
        } else {
            Err(LifecycleError::NotController(self.leader_hint()))
        }
    }

    /// Registers a broker: a new epoch, written through Raft, fenced until it heartbeats
    /// caught up. A retry by the same incarnation gets the same epoch.
    pub async fn register(&self, request: RegisterBroker) -> Result<i64> {
        let _writes = self.inner.writes.lock().await;
        self.check_active()?;
        let now = self.now();
        let known = self.inner.state.lock().manager.check_registration(
            request.broker,
            request.incarnation,
            now,
        )?;
        if let Some(epoch) = known {
            return Ok(epoch);
        }
        // Epochs only grow for an id; the image refuses a record with a stale one should
        // another registration win the race.
        let epoch = self
            .inner
            .metadata
            .image()
            .broker(request.broker)
            .map_or(1, |b| b.epoch.saturating_add(1));
        let record = MetadataRecord::RegisterBroker {
            id: request.broker,
            epoch,
            endpoints: request.endpoints,
            rack: request.rack,
        };
        let offset = self.write_applied(record).await?;
        if epoch > 1 {
            // A new incarnation (a restart, perhaps faster than its session could lapse):
            // the previous one's leaderships and ISR memberships end here, as Kafka's
            // controller fences a re-registered broker's old registration (KIP-841/903).
            // It knows neither its high watermark nor whether it kept its log, so it
            // must catch up and be added back by its leaders, and lead again only under
            // a new leader epoch.
            // Where it is the only ISR member nobody else can take over: it keeps the
            // partition (leaving it leaderless would only delay its own restart).
            let changes: Vec<MetadataRecord> = self
                .inner
                .metadata
                .image()
                .changes_for_fenced_broker(request.broker)
                .into_iter()
                .filter(|r| {
                    !matches!(r, MetadataRecord::PartitionChange(c)
                        if c.leader == crate::image::NO_LEADER
                            && c.isr.iter().all(|m| m.id == request.broker))
                })
                .collect();
            if !changes.is_empty() {
                tracing::info!(
                    broker = request.broker,
                    epoch,
                    partitions = changes.len(),
                    "re-registered broker leaves its ISRs and leaderships"
                );
            }
            self.write_all(changes).await?;
        }
        self.inner.state.lock().manager.registered(
            request.broker,
            epoch,
            request.incarnation,
            offset,
            self.now(),
        );
        tracing::info!(broker = request.broker, epoch, offset, "broker registered");
        Ok(epoch)
    }

    /// Renews a broker's session and carries out what the heartbeat asks for (unfence
    /// once caught up, fence for a controlled shutdown) before answering.
    pub async fn heartbeat(&self, heartbeat: Heartbeat) -> Result<HeartbeatReply> {
        self.check_active()?;
        let now = self.now();
        let decision = self.inner.state.lock().manager.heartbeat(&heartbeat, now)?;
        let (id, epoch) = (heartbeat.broker, heartbeat.epoch);
        match decision.action {
            HeartbeatAction::None => {}
            HeartbeatAction::Unfence => {
                let _writes = self.inner.writes.lock().await;
                self.check_active()?;
                self.unfence(id, epoch).await?;
            }
            HeartbeatAction::Fence => {
                let _writes = self.inner.writes.lock().await;
                self.check_active()?;
                self.fence(id, epoch).await?;
            }
        }
        let image = self.inner.metadata.image();
        let fenced = image.broker(id).is_none_or(|b| b.fenced);
        Ok(HeartbeatReply {
            caught_up: decision.caught_up,
            fenced,
            should_shut_down: heartbeat.want_shutdown && fenced && !leads_any(&image, id),
        })
    }

    /// The transport saw `broker`'s heartbeat connection break: it is fenced after the
    /// loss grace unless it heartbeats again first, or at the next tick if a probe finds
    /// every one of its endpoints refusing connections.
    /// Ignored unless this node is the active controller: the sessions of an inactive node
    /// are rebuilt when it becomes active, and a broker that moved to the new controller
    /// must not be reported lost by the old one.
    pub fn connection_lost(&self, broker: i32) {
        if self.check_active().is_err() {
            tracing::debug!(broker, "connection lost on an inactive controller: ignored");
            return;
        }
        let now = self.now();
        self.inner.state.lock().manager.connection_lost(broker, now);
        tracing::debug!(broker, "broker heartbeat connection lost");
        self.probe_lost(broker, now);
    }

    /// Probes the endpoints of `broker`, whose connection was lost at `lost_at`, for the
    /// length of the grace: a crashed process is fenced at the next tick rather than
    /// after the grace, which is there for live brokers whose stream dropped.
    fn probe_lost(&self, broker: i32, lost_at: u64) {
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let endpoints = self
            .inner
            .metadata
            .image()
            .broker(broker)
            .map(|b| b.endpoints.clone())
            .unwrap_or_default();
        let grace = Duration::from_millis(self.inner.config.heartbeat.loss_grace_ms);
        let this = self.clone();
        runtime.spawn(async move {
            let still_lost = || this.inner.state.lock().manager.lost_at(broker) == Some(lost_at);
            if probe::gone(&endpoints, grace, still_lost).await {
                this.inner
                    .state
                    .lock()
                    .manager
                    .confirmed_down(broker, lost_at);
                tracing::info!(
                    broker,
                    "every endpoint of the lost broker refuses connections"
                );
            }
        });
    }

    /// Waits until openraft reports a leader other than this node and returns it; `None`
    /// once this node's Raft has stopped. A heartbeat stream uses it to send its broker
    /// to a new controller at once rather than at its next heartbeat.
    pub async fn other_leader(&self) -> Option<LeaderHint> {
        let mut metrics = self.inner.raft.metrics();
        let me = self.inner.node_id;
        metrics
            .wait_for(|m| m.current_leader.is_some_and(|leader| leader != me))
            .await
            .ok()?;
        Some(self.leader_hint())
    }

    /// Fences `broker` at `epoch`, then moves its leaderships and ISR memberships. The
    /// caller holds `writes`.
    async fn fence(&self, id: i32, epoch: i64) -> Result<()> {
        match self
            .write(MetadataRecord::FenceBroker { id, epoch })
            .await?
        {
            (MetadataResponse::Rejected(reason), _) => {
                // The image holds another registration than the session here: follow it.
                tracing::info!(broker = id, epoch, %reason, "fence refused");
                self.resync(id);
                return Ok(());
            }
            _ => self.inner.state.lock().manager.set_fenced(id, epoch, true),
        }
        tracing::info!(broker = id, epoch, "broker fenced");
        let changes = self.inner.metadata.image().changes_for_fenced_broker(id);
        self.write_all(changes).await
    }

    /// Unfences `broker` at `epoch`, then lets it lead the partitions waiting for it.
    async fn unfence(&self, id: i32, epoch: i64) -> Result<()> {
        match self
            .write(MetadataRecord::UnfenceBroker { id, epoch })
            .await?
        {
            (MetadataResponse::Rejected(reason), _) => {
                tracing::info!(broker = id, epoch, %reason, "unfence refused");
                self.resync(id);
                return Ok(());
            }
            _ => self.inner.state.lock().manager.set_fenced(id, epoch, false),
        }
        tracing::info!(broker = id, epoch, "broker unfenced");
        let changes = self.inner.metadata.image().changes_for_unfenced_broker(id);
        self.write_all(changes).await
    }

    /// Makes `broker`'s session follow its registration in the applied image.
    fn resync(&self, broker: i32) {
        let image = self.inner.metadata.image();
        let registered = image.broker(broker).map(|b| (b.epoch, b.fenced));
        let applied = self.inner.metadata.last_applied().map_or(0, |id| id.index);
        let now = self.now();
        self.inner
            .state
            .lock()
            .manager
            .resync(broker, registered, applied, now);
    }

    /// Writes the partition changes of one election all at once: they touch distinct
    /// partitions and were computed from one image, so their order does not matter, and
    /// proposing them together lets Raft commit them in a few batches instead of one
    /// round trip each (a broker leading thousands of partitions moves them all in
    /// about the time of one write).
    async fn write_all(&self, records: Vec<MetadataRecord>) -> Result<()> {
        let mut writes = tokio::task::JoinSet::new();
        for record in records {
            let this = self.clone();
            writes.spawn(async move { this.write(record).await });
        }
        let mut first_error = None;
        while let Some(joined) = writes.join_next().await {
            match joined {
                Ok(Ok((MetadataResponse::Rejected(reason), _))) => {
                    // Computed under `writes` from the applied image, so only a concurrent
                    // admin change can make it stale; the next fence or unfence recomputes.
                    tracing::warn!(%reason, "partition change refused");
                }
                Ok(Ok(_)) => {}
                Ok(Err(e)) => {
                    first_error.get_or_insert(e);
                }
                Err(e) => {
                    first_error.get_or_insert(LifecycleError::Unavailable(e.to_string()));
                }
            }
        }
        first_error.map_or(Ok(()), Err)
    }

    /// Writes a record that must be applied, returning its log index.
    async fn write_applied(&self, record: MetadataRecord) -> Result<u64> {
        match self.write(record).await? {
            (MetadataResponse::Rejected(reason), _) => Err(LifecycleError::Rejected(reason)),
            (_, index) => Ok(index),
        }
    }

    /// Writes a record through Raft; returns once it is applied here.
    async fn write(&self, record: MetadataRecord) -> Result<(MetadataResponse, u64)> {
        match self.inner.raft.client_write(record).await {
            Ok(response) => Ok((response.data, response.log_id.index)),
            Err(RaftError::APIError(ClientWriteError::ForwardToLeader(forward))) => {
                Err(LifecycleError::NotController(LeaderHint {
                    id: forward.leader_id,
                    rpc_addr: forward
                        .leader_node
                        .map(|node: ControllerNode| node.rpc_addr),
                }))
            }
            Err(e) => Err(LifecycleError::Unavailable(e.to_string())),
        }
    }

    /// Follows leadership through openraft's metrics and, while this node leads, fences
    /// lapsed sessions every tick, until `stop` changes.
    pub async fn run(self, mut stop: watch::Receiver<bool>) {
        let mut metrics = self.inner.raft.metrics();
        let mut ticks = tokio::time::interval(self.inner.config.tick_interval);
        ticks.set_missed_tick_behavior(MissedTickBehavior::Delay);
        let rebalance = self.inner.config.rebalance;
        // The first check comes one interval after start, as in Kafka.
        let period = rebalance.check_interval.max(Duration::from_millis(1));
        let mut rebalance_ticks = tokio::time::interval_at(Instant::now() + period, period);
        rebalance_ticks.set_missed_tick_behavior(MissedTickBehavior::Delay);
        // The last other node seen leading: if this node takes over from it, that node's
        // heartbeats went to itself and never reach us.
        let mut previous_leader: Option<NodeId> = None;
        let work = async {
            loop {
                tokio::select! {
                    changed = metrics.changed() => {
                        if changed.is_err() {
                            break;
                        }
                        self.follow_leadership(&mut previous_leader).await;
                    }
                    _ = ticks.tick() => {
                        self.follow_leadership(&mut previous_leader).await;
                        self.fence_lapsed().await;
                    }
                    _ = rebalance_ticks.tick(), if rebalance.enabled => {
                        self.rebalance_leaders(rebalance.imbalance_percentage).await;
                    }
                }
            }
        };
        // Stopping also interrupts a write waiting for a quorum that may never come.
        tokio::select! {
            _ = stop.changed() => {}
            () = work => {}
        }
        // A stopping node answers NOT_CONTROLLER from now on, so its brokers move away.
        self.inner.state.lock().active_term = None;
        tracing::debug!(node_id = self.inner.node_id, "lifecycle task stopped");
    }

    async fn follow_leadership(&self, previous_leader: &mut Option<NodeId>) {
        let (term, leader) = {
            let metrics = self.inner.raft.metrics();
            let m = metrics.borrow();
            (m.current_term, m.current_leader)
        };
        if leader != Some(self.inner.node_id) {
            if let Some(leader) = leader {
                *previous_leader = Some(leader);
            }
            let mut state = self.inner.state.lock();
            if let Some(active) = state.active_term.take() {
                tracing::info!(
                    node_id = self.inner.node_id,
                    term = active,
                    "no longer the active controller"
                );
            }
            return;
        }
        if self.inner.state.lock().active_term == Some(term) {
            return;
        }
        self.become_active(term, previous_leader.take()).await;
    }

    /// Starts every broker session at now (a leader change fences nobody, except the
    /// previous controller's own broker after the grace), then finishes elections an
    /// earlier controller may have left undone.
    async fn become_active(&self, term: u64, previous_leader: Option<NodeId>) {
        // Wait until this node has applied everything committed before its term, so the
        // sessions are built from the current brokers.
        if let Err(e) = self.inner.raft.ensure_linearizable().await {
            tracing::debug!(error = %e, "not activating: leadership not confirmed");
            return;
        }
        let _writes = self.inner.writes.lock().await;
        let image = self.inner.metadata.image();
        let applied = self.inner.metadata.last_applied().map_or(0, |id| id.index);
        let previous_broker = previous_leader
            .and_then(|id| i32::try_from(id).ok())
            .filter(|id| image.broker(*id).is_some());
        {
            let mut state = self.inner.state.lock();
            let now = self.now();
            state.manager.became_active(
                now,
                image.brokers().map(|b| (b.id, b.epoch, b.fenced)),
                applied,
                previous_broker,
                i32::try_from(self.inner.node_id).ok(),
            );
            state.active_term = Some(term);
            // The previous controller's broker counts as lost now (see the manager).
            if let Some(id) = previous_broker {
                self.probe_lost(id, now);
            }
        }
        tracing::info!(
            node_id = self.inner.node_id,
            term,
            ?previous_broker,
            "became the active controller"
        );
        let mut pending = Vec::new();
        for broker in image.brokers() {
            if broker.fenced {
                pending.extend(image.changes_for_fenced_broker(broker.id));
            }
        }
        if let Err(e) = self.write_all(pending).await {
            tracing::warn!(error = %e, "finishing elections after a leader change");
        }
    }

    /// Fences every broker whose session lapsed, one at a time.
    async fn fence_lapsed(&self) {
        if self.check_active().is_err() {
            return;
        }
        let _writes = self.inner.writes.lock().await;
        // Decided under `writes`, so a heartbeat answered meanwhile counts.
        let due = self.inner.state.lock().manager.tick(self.now());
        for (id, epoch) in due {
            tracing::info!(broker = id, epoch, "broker session lapsed");
            if let Err(e) = self.fence(id, epoch).await {
                tracing::warn!(broker = id, error = %e, "fencing a lapsed broker");
                return;
            }
        }
    }
}

impl Lifecycle {
    /// One `auto.leader.rebalance.enable` check: the preferred-leader elections for the
    /// brokers whose leader imbalance exceeds `percentage`, written like an election
    /// (under `writes`, so computed from an image holding every earlier lifecycle write).
    async fn rebalance_leaders(&self, percentage: u32) {
        if self.check_active().is_err() {
            return;
        }
        let _writes = self.inner.writes.lock().await;
        if self.check_active().is_err() {
            return;
        }
        let changes = self
            .inner
            .metadata
            .image()
            .changes_for_leader_rebalance(percentage);
        if changes.is_empty() {
            return;
        }
        tracing::info!(
            partitions = changes.len(),
            percentage,
            "leader imbalance: electing preferred leaders"
        );
        if let Err(e) = self.write_all(changes).await {
            tracing::warn!(error = %e, "electing preferred leaders");
        }
    }
}

/// Whether `broker` leads any partition.
fn leads_any(image: &MetadataImage, broker: i32) -> bool {
    image
        .topics()
        .any(|t| t.partitions.iter().any(|p| p.leader == broker))
}
