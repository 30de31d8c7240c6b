//! The broker side of the KRaft broker lifecycle (KIP-631): what a broker process runs
//! against the controller quorum. [`BrokerClient`] registers the broker with the active
//! controller, keeps one `BrokerHeartbeatStream` open to it, heartbeats every
//! `heartbeat_interval` (and at once when its applied metadata offset moves while it is
//! fenced or not caught up, so unfencing is quick), follows the active controller
//! (NOT_CONTROLLER's leader, or in combined mode the leader its own controller node
//! learns of, else the voters in turn with a short backoff), registers again
//! when its registration is gone or stale, and runs controlled shutdown. Its view is
//! published as a [`BrokerStatus`] watch. With [`BrokerClientConfig::tls`] it talks to the
//! controllers over mutual TLS.
//!
//! Since the stream ending tells the active controller the broker's connection is lost
//! (fenced after the loss grace unless it heartbeats again), the client reconnects at once
//! after a working stream ends, and a controller that stops leading pushes NOT_CONTROLLER
//! naming the new leader on the stream: the previous controller's own broker must reach the
//! new one within the grace.

use std::collections::{BTreeMap, VecDeque};
use std::time::Duration;

use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use tokio::time::{Instant, MissedTickBehavior};
use tonic::codegen::tokio_stream::wrappers::ReceiverStream;
use tonic::transport::Channel;

use crate::image::BrokerEndpoint;
use crate::proto::pb;
use crate::rpc_tls::{self, RpcTls};
use crate::types::{ControllerNode, NodeId};
use openraft::RaftMetrics;

/// Pause between attempts that made no progress (no leader known, a node down).
const RETRY_BACKOFF: Duration = Duration::from_millis(100);
/// Pause before registering again after DUPLICATE_BROKER_REGISTRATION: the previous
/// incarnation's session must lapse first.
const DUPLICATE_BACKOFF: Duration = Duration::from_millis(250);
/// Heartbeats queued for the stream.
const STREAM_BUFFER: usize = 4;
/// Heartbeats sent but not yet answered.
const MAX_IN_FLIGHT: usize = 2;
/// Attempts in a row that may follow a leader hint without a pause, so two nodes naming
/// each other (stale hints during an election) cannot make a busy loop.
const MAX_QUICK_RETRIES: u32 = 2;

/// What a broker needs to talk to the controller quorum.
#[derive(Debug, Clone)]
pub struct BrokerClientConfig {
    pub broker_id: i32,
    pub endpoints: Vec<BrokerEndpoint>,
    pub rack: Option<String>,
    /// RPC addresses ("host:port") of the controller voters, tried in turn when no leader
    /// is known.
    pub voters: BTreeMap<NodeId, String>,
    /// Kafka's `broker.heartbeat.interval.ms`.
    pub heartbeat_interval: Duration,
    pub connect_timeout: Duration,
    /// Upper bound of a registration, of opening the stream, and of waiting for the
    /// answer to a heartbeat.
    pub rpc_timeout: Duration,
    /// In combined mode, the Raft metrics of this broker's own controller node: when it
    /// learns of a new quorum leader the client moves its stream there at once. A
    /// controller cut off by the network cannot push NOT_CONTROLLER, and waiting for
    /// `rpc_timeout` on its silent stream would let the new controller's session
    /// timeout fence every broker.
    pub local_raft: Option<watch::Receiver<RaftMetrics<NodeId, ControllerNode>>>,
    /// Mutual TLS towards the controllers (their RPC port requires a certificate from the
    /// CA when it runs TLS); `None`: plain `http://`.
    pub tls: Option<RpcTls>,
}

impl BrokerClientConfig {
    /// Kafka's default `broker.heartbeat.interval.ms`.
    pub const DEFAULT_HEARTBEAT_INTERVAL: Duration = Duration::from_millis(500);

    /// A configuration with the default timing: heartbeats every 500 ms, 1 s to connect,
    /// 2 s per RPC.
    pub fn new(
        broker_id: i32,
        endpoints: Vec<BrokerEndpoint>,
        voters: BTreeMap<NodeId, String>,
    ) -> Self {
        Self {
            broker_id,
            endpoints,
            rack: None,
            voters,
            heartbeat_interval: Self::DEFAULT_HEARTBEAT_INTERVAL,
            connect_timeout: Duration::from_secs(1),
            rpc_timeout: Duration::from_secs(2),
            local_raft: None,
            tls: None,
        }
    }
}

/// The broker's lifecycle as the controller last told it.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct BrokerStatus {
    /// The current registration epoch; `None` until registered (and while registering
    /// again).
    pub epoch: Option<i64>,
    /// True until the controller says unfenced.
    pub fenced: bool,
    /// The broker has applied the metadata up to its own registration.
    pub caught_up: bool,
    /// The active controller it talks to (`None` while it looks for one).
    pub controller: Option<NodeId>,
    /// Controlled shutdown completed: the broker leads nothing and may exit.
    pub shutdown_complete: bool,
}

/// Why one attempt to talk to a controller failed (logged, then retried).
#[derive(Debug, thiserror::Error)]
pub enum BrokerClientError {
    #[error("bad controller address {addr}: {source}")]
    BadAddress {
        addr: String,
        #[source]
        source: tonic::transport::Error,
    },
    #[error("connecting to controller {addr}: {source}")]
    Connect {
        addr: String,
        #[source]
        source: tonic::transport::Error,
    },
    #[error("{0}: timed out")]
    Timeout(&'static str),
    #[error("controller answered {0}")]
    Status(#[from] tonic::Status),
    #[error("controller refused: {0}")]
    Refused(String),
    #[error("no controller voters configured")]
    NoVoters,
}

/// What the handle asks of the task.
#[derive(Debug, Clone, Copy, Default)]
struct Control {
    want_shutdown: bool,
    paused: bool,
    stop: bool,
}

/// Registers and heartbeats one broker in a background task.
pub struct BrokerClient {
    status: watch::Receiver<BrokerStatus>,
    control: watch::Sender<Control>,
    task: JoinHandle<()>,
}

impl BrokerClient {
    /// Starts registering and heartbeating in a background task (on the current tokio
    /// runtime). `applied_offset` is the metadata log index this node has applied (sent as
    /// current_metadata_offset); read it when sending.
    pub fn start(config: BrokerClientConfig, applied_offset: watch::Receiver<u64>) -> Self {
        let (status_tx, status) = watch::channel(BrokerStatus {
            fenced: true,
            ..BrokerStatus::default()
        });
        let (control, control_rx) = watch::channel(Control::default());
        let local_raft = config.local_raft.clone();
        let task = Task {
            incarnation: *uuid::Uuid::new_v4().as_bytes(),
            config,
            local_raft,
            applied: applied_offset,
            applied_open: true,
            status: status_tx,
            control: control_rx,
            epoch: None,
            hint: None,
            next_voter: 0,
            quick_retries: 0,
        };
        Self {
            status,
            control,
            task: tokio::spawn(task.run()),
        }
    }

    pub fn status(&self) -> watch::Receiver<BrokerStatus> {
        self.status.clone()
    }

    /// Controlled shutdown (KIP-631): heartbeats with want_shutdown until the controller
    /// answers should_shut_down (the broker then leads nothing) or `timeout` passes;
    /// returns whether it completed. The broker keeps asking until it is stopped.
    pub async fn controlled_shutdown(&self, timeout: Duration) -> bool {
        self.control.send_modify(|c| c.want_shutdown = true);
        let mut status = self.status.clone();
        let done = tokio::time::timeout(timeout, async {
            status.wait_for(|s| s.shutdown_complete).await.is_ok()
        })
        .await;
        done.unwrap_or(false)
    }

    /// Test-only knob: while paused, the client sends no heartbeats but keeps its stream
    /// open (a broker stalled, e.g. in a long GC pause, rather than crashed), so its session
    /// lapses only after the session timeout. Not for production use.
    pub fn pause_heartbeats_for_test(&self, paused: bool) {
        self.control.send_modify(|c| c.paused = paused);
    }

    /// Stops the task (closing the stream cleanly).
    pub async fn stop(self) {
        self.control.send_modify(|c| c.stop = true);
        if let Err(e) = self.task.await {
            tracing::warn!(error = %e, "broker lifecycle task failed");
        }
    }
}

/// A controller node to talk to.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Target {
    id: Option<NodeId>,
    addr: String,
}

/// What to do after an attempt.
enum Next {
    /// Try the next target at once.
    Now,
    /// Try the next target after a pause.
    Backoff(Duration),
    Stop,
}

struct Task {
    config: BrokerClientConfig,
    /// `config.local_raft` while its sender lives.
    local_raft: Option<watch::Receiver<RaftMetrics<NodeId, ControllerNode>>>,
    incarnation: [u8; 16],
    applied: watch::Receiver<u64>,
    /// The applied offset's sender is still there (else it is read, never awaited).
    applied_open: bool,
    status: watch::Sender<BrokerStatus>,
    control: watch::Receiver<Control>,
    epoch: Option<i64>,
    /// Where to go next, when known.
    hint: Option<Target>,
    next_voter: usize,
    quick_retries: u32,
}

type HeartbeatRequests = mpsc::Sender<pb::BrokerHeartbeatRequest>;

impl Task {
    async fn run(mut self) {
        let broker = self.config.broker_id;
        loop {
            if self.control.borrow().stop {
                break;
            }
            let next = match self.next_target() {
                Some(target) => self.session(&target).await,
                None => {
                    tracing::error!(broker, "{}", BrokerClientError::NoVoters);
                    Next::Backoff(RETRY_BACKOFF)
                }
            };
            self.status.send_if_modified(|s| {
                let changed = s.controller.is_some();
                s.controller = None;
                changed
            });
            let pause = match next {
                Next::Stop => break,
                Next::Now if self.quick_retries < MAX_QUICK_RETRIES => {
                    self.quick_retries += 1;
                    continue;
                }
                Next::Now => RETRY_BACKOFF,
                Next::Backoff(pause) => pause,
            };
            if self.sleep(pause).await {
                break;
            }
        }
        tracing::debug!(broker, "broker lifecycle task stopped");
    }

    /// Sleeps; true if asked to stop meanwhile.
    async fn sleep(&mut self, pause: Duration) -> bool {
        let until = Instant::now() + pause;
        loop {
            tokio::select! {
                () = tokio::time::sleep_until(until) => return false,
                changed = self.control.changed() => {
                    if changed.is_err() || self.control.borrow().stop {
                        return true;
                    }
                }
            }
        }
    }

    /// The leader hint, else the leader this node's own controller knows, else the next
    /// voter in turn.
    fn next_target(&mut self) -> Option<Target> {
        if let Some(hint) = self.hint.take() {
            return Some(hint);
        }
        if let Some(local) = self.local_leader().and_then(|id| self.voter(id)) {
            return Some(local);
        }
        let count = self.config.voters.len();
        if count == 0 {
            return None;
        }
        let (id, addr) = self.config.voters.iter().nth(self.next_voter % count)?;
        self.next_voter = self.next_voter.wrapping_add(1);
        Some(Target {
            id: Some(*id),
            addr: addr.clone(),
        })
    }

    /// The quorum leader this node's own controller knows of.
    fn local_leader(&self) -> Option<NodeId> {
        self.local_raft.as_ref()?.borrow().current_leader
    }

    fn voter(&self, id: NodeId) -> Option<Target> {
        let addr = self.config.voters.get(&id)?.clone();
        Some(Target { id: Some(id), addr })
    }

    /// Follows a NOT_CONTROLLER answer from `from`.
    fn follow(&mut self, leader: Option<&pb::ControllerLeader>, from: &Target) -> Next {
        let leader = leader.and_then(|l| {
            let id = NodeId::try_from(l.leader_id).ok()?;
            let addr = if l.rpc_addr.is_empty() {
                self.config.voters.get(&id)?.clone()
            } else {
                l.rpc_addr.clone()
            };
            Some(Target { id: Some(id), addr })
        });
        match leader {
            // A node naming itself is stopping: it will not answer.
            Some(leader) if leader != *from && leader.id != from.id => {
                tracing::debug!(
                    broker = self.config.broker_id,
                    ?leader,
                    "following the controller"
                );
                self.hint = Some(leader);
                Next::Now
            }
            _ => Next::Backoff(RETRY_BACKOFF),
        }
    }

    /// One attempt with one controller node: connect, register if needed, heartbeat on a
    /// stream until it breaks or the node stops being the active controller.
    async fn session(&mut self, target: &Target) -> Next {
        let broker = self.config.broker_id;
        let channel = match self.connect(&target.addr).await {
            Ok(channel) => channel,
            Err(e) => {
                tracing::debug!(broker, controller = ?target.id, error = %e, "controller unreachable");
                return Next::Backoff(RETRY_BACKOFF);
            }
        };
        let mut client = pb::broker_lifecycle_client::BrokerLifecycleClient::new(channel);
        let epoch = match self.epoch {
            Some(epoch) => epoch,
            None => match self.register(&mut client, target).await {
                Ok(epoch) => epoch,
                Err(next) => return next,
            },
        };
        self.heartbeat_stream(&mut client, target, epoch).await
    }

    async fn connect(&self, addr: &str) -> Result<Channel, BrokerClientError> {
        let endpoint = rpc_tls::endpoint(addr, self.config.tls.as_ref())
            .map_err(|source| BrokerClientError::BadAddress {
                addr: addr.to_owned(),
                source,
            })?
            .connect_timeout(self.config.connect_timeout);
        match tokio::time::timeout(self.config.connect_timeout, endpoint.connect()).await {
            Ok(Ok(channel)) => Ok(channel),
            Ok(Err(source)) => Err(BrokerClientError::Connect {
                addr: addr.to_owned(),
                source,
            }),
            Err(_) => Err(BrokerClientError::Timeout("connecting")),
        }
    }

    /// Registers; on success the broker is fenced at its new epoch.
    async fn register(
        &mut self,
        client: &mut pb::broker_lifecycle_client::BrokerLifecycleClient<Channel>,
        target: &Target,
    ) -> Result<i64, Next> {
        let broker = self.config.broker_id;
        let request = pb::RegisterBrokerRequest {
            broker_id: broker,
            incarnation_id: self.incarnation.to_vec(),
            listeners: self
                .config
                .endpoints
                .iter()
                .map(|e| pb::BrokerListener {
                    name: e.listener.clone(),
                    host: e.host.clone(),
                    port: u32::from(e.port),
                })
                .collect(),
            rack: self.config.rack.clone(),
        };
        let response = match tokio::time::timeout(
            self.config.rpc_timeout,
            client.register_broker(request),
        )
        .await
        {
            Ok(Ok(response)) => response.into_inner(),
            Ok(Err(status)) => {
                let e = BrokerClientError::Status(status);
                tracing::debug!(broker, controller = ?target.id, error = %e, "registration failed");
                return Err(Next::Backoff(RETRY_BACKOFF));
            }
            Err(_) => {
                let e = BrokerClientError::Timeout("registering");
                tracing::debug!(broker, controller = ?target.id, error = %e, "registration failed");
                return Err(Next::Backoff(RETRY_BACKOFF));
            }
        };
        match pb::LifecycleError::try_from(response.error) {
            Ok(pb::LifecycleError::None) => {
                let epoch = response.broker_epoch;
                tracing::info!(broker, epoch, controller = ?target.id, "broker registered");
                self.epoch = Some(epoch);
                self.status.send_modify(|s| {
                    s.epoch = Some(epoch);
                    s.fenced = true;
                    s.caught_up = false;
                    s.controller = target.id;
                });
                Ok(epoch)
            }
            Ok(pb::LifecycleError::NotController) => {
                Err(self.follow(response.leader.as_ref(), target))
            }
            Ok(pb::LifecycleError::DuplicateBrokerRegistration) => {
                // As in Kafka: a restarted process waits for its old session to lapse.
                tracing::info!(
                    broker,
                    "another incarnation's session is still live; retrying"
                );
                self.hint = Some(target.clone());
                Err(Next::Backoff(DUPLICATE_BACKOFF))
            }
            _ => {
                let e = BrokerClientError::Refused(response.error_message);
                tracing::warn!(broker, error = %e, "registration refused");
                Err(Next::Backoff(RETRY_BACKOFF))
            }
        }
    }

    fn heartbeat(&self, epoch: i64) -> pb::BrokerHeartbeatRequest {
        pb::BrokerHeartbeatRequest {
            broker_id: self.config.broker_id,
            broker_epoch: epoch,
            current_metadata_offset: *self.applied.borrow(),
            want_fence: false,
            want_shutdown: self.control.borrow().want_shutdown,
        }
    }

    /// Sends a heartbeat unless paused or too many are unanswered; true if sent.
    fn send(
        &self,
        requests: &HeartbeatRequests,
        in_flight: &mut VecDeque<Instant>,
        epoch: i64,
    ) -> bool {
        if self.control.borrow().paused || in_flight.len() >= MAX_IN_FLIGHT {
            return false;
        }
        // A full queue means the stream is stuck: the answer deadline notices it.
        if requests.try_send(self.heartbeat(epoch)).is_ok() {
            in_flight.push_back(Instant::now());
        }
        true
    }

    async fn heartbeat_stream(
        &mut self,
        client: &mut pb::broker_lifecycle_client::BrokerLifecycleClient<Channel>,
        target: &Target,
        epoch: i64,
    ) -> Next {
        let broker = self.config.broker_id;
        let (requests, outbound) = mpsc::channel(STREAM_BUFFER);
        let mut in_flight = VecDeque::new();
        // The first heartbeat goes with the stream, so a reconnect renews the session at once.
        let mut pending = !self.send(&requests, &mut in_flight, epoch);
        let opened = tokio::time::timeout(
            self.config.rpc_timeout,
            client.broker_heartbeat_stream(ReceiverStream::new(outbound)),
        )
        .await;
        let mut responses = match opened {
            Ok(Ok(responses)) => responses.into_inner(),
            Ok(Err(status)) => {
                tracing::debug!(broker, controller = ?target.id, %status, "opening the heartbeat stream");
                return Next::Backoff(RETRY_BACKOFF);
            }
            Err(_) => {
                tracing::debug!(broker, controller = ?target.id, "opening the heartbeat stream timed out");
                return Next::Backoff(RETRY_BACKOFF);
            }
        };
        let interval = self.config.heartbeat_interval.max(Duration::from_millis(1));
        let mut ticks = tokio::time::interval_at(Instant::now() + interval, interval);
        ticks.set_missed_tick_behavior(MissedTickBehavior::Delay);
        let mut progress = false;
        let mut local_seen = self.local_leader();
        let next = loop {
            let deadline = in_flight
                .front()
                .map(|sent| *sent + self.config.rpc_timeout);
            let applied_open = self.applied_open;
            tokio::select! {
                changed = self.control.changed() => {
                    let control = *self.control.borrow();
                    if changed.is_err() || control.stop {
                        break Next::Stop;
                    }
                    // Shutdown asked, or heartbeats resumed: tell the controller now.
                    pending = true;
                }
                _ = ticks.tick() => pending = true,
                changed = self.applied.changed(), if applied_open => {
                    if changed.is_err() {
                        self.applied_open = false;
                    } else {
                        let status = self.status.borrow();
                        pending |= status.fenced || !status.caught_up;
                    }
                }
                () = sleep_until_opt(deadline) => {
                    tracing::info!(broker, controller = ?target.id, "heartbeat unanswered; reconnecting");
                    break Next::Now;
                }
                open = local_change(&mut self.local_raft) => {
                    // Only a change of the local view moves the stream: a local node
                    // that is merely behind the controller it names must not pull the
                    // stream back and forth.
                    let now = self.local_leader();
                    if !open {
                        self.local_raft = None;
                    } else if now != local_seen {
                        local_seen = now;
                        if let Some(next) = now.filter(|l| Some(*l) != target.id).and_then(|l| self.voter(l)) {
                            tracing::info!(broker, from = ?target.id, to = ?next.id, "this node's quorum has a new leader; moving the heartbeat stream");
                            self.hint = Some(next);
                            break Next::Now;
                        }
                    }
                }
                message = responses.message() => match message {
                    Ok(Some(response)) => {
                        in_flight.pop_front();
                        if let Some(next) = self.on_response(response, target) {
                            break next;
                        }
                        progress = true;
                        self.quick_retries = 0;
                    }
                    Ok(None) => {
                        tracing::debug!(broker, controller = ?target.id, "heartbeat stream ended");
                        break if progress { Next::Now } else { Next::Backoff(RETRY_BACKOFF) };
                    }
                    Err(status) => {
                        tracing::debug!(broker, controller = ?target.id, %status, "heartbeat stream failed");
                        break if progress { Next::Now } else { Next::Backoff(RETRY_BACKOFF) };
                    }
                },
            }
            if pending && self.send(&requests, &mut in_flight, epoch) {
                pending = false;
            }
        };
        if matches!(next, Next::Stop) {
            // Close the stream cleanly: end our side, then let the controller end its.
            drop(requests);
            let drain = async { while let Ok(Some(_)) = responses.message().await {} };
            let _ = tokio::time::timeout(self.config.rpc_timeout, drain).await;
        }
        next
    }

    /// Takes in one answer; `Some` when the stream must be left.
    fn on_response(
        &mut self,
        response: pb::BrokerHeartbeatResponse,
        target: &Target,
    ) -> Option<Next> {
        let broker = self.config.broker_id;
        match pb::LifecycleError::try_from(response.error) {
            Ok(pb::LifecycleError::None) => {
                let want_shutdown = self.control.borrow().want_shutdown;
                self.status.send_if_modified(|s| {
                    let new = BrokerStatus {
                        epoch: self.epoch,
                        fenced: response.is_fenced,
                        caught_up: response.is_caught_up,
                        controller: target.id,
                        shutdown_complete: s.shutdown_complete
                            || (want_shutdown && response.should_shut_down),
                    };
                    if new.fenced != s.fenced {
                        tracing::info!(broker, fenced = new.fenced, "broker fencing changed");
                    }
                    let changed = *s != new;
                    *s = new;
                    changed
                });
                None
            }
            Ok(pb::LifecycleError::NotController) => {
                Some(self.follow(response.leader.as_ref(), target))
            }
            Ok(
                pb::LifecycleError::BrokerIdNotRegistered | pb::LifecycleError::StaleBrokerEpoch,
            ) => {
                tracing::info!(broker, reason = %response.error_message, "registering again");
                self.epoch = None;
                self.status.send_modify(|s| {
                    s.epoch = None;
                    s.fenced = true;
                    s.caught_up = false;
                });
                self.hint = Some(target.clone());
                Some(Next::Now)
            }
            _ => {
                let e = BrokerClientError::Refused(response.error_message);
                tracing::warn!(broker, error = %e, "heartbeat refused");
                Some(Next::Backoff(RETRY_BACKOFF))
            }
        }
    }
}

/// Waits for the next change of this node's Raft metrics: `false` once their sender is
/// gone. Never ends without them.
async fn local_change(
    local: &mut Option<watch::Receiver<RaftMetrics<NodeId, ControllerNode>>>,
) -> bool {
    match local {
        Some(rx) => rx.changed().await.is_ok(),
        None => std::future::pending().await,
    }
}

async fn sleep_until_opt(deadline: Option<Instant>) {
    match deadline {
        Some(deadline) => tokio::time::sleep_until(deadline).await,
        None => std::future::pending().await,
    }
}
