//! The shell the sans-io coordinators (groups: `sluice-group`, transactions:
//! `sluice-txn`) run in: it follows the leadership of their internal topic's
//! partitions (loading a partition once its high watermark reaches the start of this
//! node's leadership, unloading it when leadership goes), parks requests until the
//! coordinator answers them, carries out its effects (appends with acks=all, reported
//! done when committed; other jobs, such as transaction markers, handed to the
//! coordinator's own code) and drives its timers.
//!
//! One mutex guards the coordinator and the parked requests. Effects are carried out
//! under it, so the records of one partition reach the log in the order the coordinator
//! decided them; an append only touches the page cache.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures_util::future::BoxFuture;
use parking_lot::Mutex;
use sluice_protocol::error::ErrorCode;
use tokio::sync::{broadcast, mpsc, oneshot};
use tokio::time::Instant;
use tracing::{debug, info, warn};

use crate::broker::{now_ms, Broker};
use crate::commit::{committed, CommitWait};
use crate::internal_topic::{self, Replayed};
use crate::partition::Partition;
use crate::topics::{LeadershipChange, Topics};

/// Identifies a parked request (the coordinators' `ReplyId`).
pub type ReplyId = u64;

/// What the host does with one effect.
pub enum Action<C: Hosted> {
    /// Answer the request parked as `ReplyId`.
    Reply(ReplyId, C::Reply),
    /// Append these records (key, value; `None` a tombstone) to `partition` of the
    /// coordinator's topic as one batch (transactional for `producer`: id and epoch),
    /// then report with [`Hosted::write_done`].
    Write {
        id: u64,
        partition: i32,
        records: Vec<(Bytes, Option<Bytes>)>,
        producer: Option<(i64, i16)>,
    },
    /// Coordinator-specific work, run by [`Hosted::run_job`].
    Job(C::Job),
}

/// A sans-io coordinator sharded by the partitions of one internal topic.
pub trait Hosted: Send + Sized + 'static {
    type Effect: Send;
    type Reply: Send + 'static;
    type Job: Send + 'static;
    /// The internal topic whose partitions are the shards.
    const TOPIC: &'static str;
    /// For logs: "group", "transaction".
    const KIND: &'static str;
    /// How often [`Hosted::tick`] runs: the resolution of the coordinator's timeouts.
    const TICK: Duration;
    /// How long a write may wait to be committed.
    const COMMIT_TIMEOUT: Duration;

    /// The host inside the broker.
    fn host(broker: &Broker) -> &Host<Self>;
    fn partitions(&self) -> i32;
    /// Follows the partition count the topic really has (it may predate the config).
    fn set_partitions(&mut self, partitions: i32);
    /// This node starts leading `partition` at `leader_epoch`; a replay follows.
    fn begin_load(&mut self, partition: i32, leader_epoch: i32) -> Vec<Self::Effect>;
    /// One replayed item; `false` if it was not understood (skipped).
    fn load_item(&mut self, partition: i32, item: Replayed<'_>, now: i64) -> bool;
    fn finish_load(&mut self, partition: i32, now: i64) -> Vec<Self::Effect>;
    fn unload(&mut self, partition: i32) -> Vec<Self::Effect>;
    fn tick(&mut self, now: i64) -> Vec<Self::Effect>;
    fn write_done(&mut self, id: u64, result: Result<(), ErrorCode>, now: i64)
        -> Vec<Self::Effect>;
    fn action(effect: Self::Effect) -> Action<Self>;
    /// Runs a job (off the lock), reporting back through the host.
    fn run_job(broker: Arc<Broker>, job: Self::Job) -> BoxFuture<'static, ()>;
    /// A job that could not be handed to the ticker task (shutting down).
    fn job_dropped(&mut self, job: Self::Job, now: i64) -> Vec<Self::Effect>;
}

struct Inner<C: Hosted> {
    coordinator: C,
    waiting: HashMap<ReplyId, oneshot::Sender<C::Reply>>,
    next_reply: ReplyId,
    /// Work handed to the ticker task.
    deferred: mpsc::UnboundedSender<Deferred<C::Job>>,
    /// The leadership generation each loading partition was scheduled under; a load
    /// runs only if its partition was not given up (or taken again) meanwhile.
    loads: HashMap<i32, u64>,
    next_load: u64,
}

enum Deferred<J> {
    /// A write waiting for the high watermark.
    Commit(u64, CommitWait),
    /// A partition to load once its high watermark reaches its leadership's start.
    Load(Arc<Partition>, u64),
    Job(J),
}

/// A coordinator in its shell.
pub struct Host<C: Hosted> {
    inner: Mutex<Inner<C>>,
    deferred: Mutex<Option<mpsc::UnboundedReceiver<Deferred<C::Job>>>>,
}

impl<C: Hosted> std::fmt::Debug for Host<C> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Host")
            .field("topic", &C::TOPIC)
            .finish_non_exhaustive()
    }
}

impl<C: Hosted> Host<C> {
    pub fn new(coordinator: C) -> Self {
        let (tx, rx) = mpsc::unbounded_channel();
        Self {
            inner: Mutex::new(Inner {
                coordinator,
                waiting: HashMap::new(),
                next_reply: 1,
                deferred: tx,
                loads: HashMap::new(),
                next_load: 1,
            }),
            deferred: Mutex::new(Some(rx)),
        }
    }

    /// Follows leadership of the topic's partitions: loads each partition this node
    /// starts leading and gives up those it stops leading (their clients are told
    /// NOT_COORDINATOR and look the coordinator up again).
    pub fn follow(&self, topics: &Topics, changes: &[LeadershipChange]) {
        let mut ours = changes.iter().filter(|c| c.topic == C::TOPIC).peekable();
        if ours.peek().is_none() {
            return;
        }
        if let Some(topic) = topics.get(C::TOPIC) {
            let existing = topic.partition_count();
            let mut inner = self.inner.lock();
            let configured = inner.coordinator.partitions();
            if existing != configured {
                warn!(
                    existing,
                    configured,
                    "{} exists with another partition count; keys stay where they are",
                    C::TOPIC
                );
                inner.coordinator.set_partitions(existing);
            }
        }
        for change in ours {
            match &change.now_leading {
                Some(p) => {
                    let generation = {
                        let mut inner = self.inner.lock();
                        let effects = inner.coordinator.begin_load(p.index, p.leader_epoch());
                        execute(&mut inner, topics, effects);
                        let generation = inner.next_load;
                        inner.next_load += 1;
                        inner.loads.insert(p.index, generation);
                        generation
                    };
                    if internal_topic::leadership_start_reached(p) {
                        // Already committed (a new partition, or one whose ISR is this
                        // node alone): load now, so the first request after a
                        // FindCoordinator never sees COORDINATOR_LOAD_IN_PROGRESS, which
                        // some clients (Sarama before 1.27) do not retry.
                        self.load_partition(topics, p, generation);
                    } else {
                        let inner = self.inner.lock();
                        let _ = inner.deferred.send(Deferred::Load(p.clone(), generation));
                    }
                }
                None => {
                    let mut inner = self.inner.lock();
                    inner.loads.remove(&change.partition);
                    let effects = inner.coordinator.unload(change.partition);
                    execute(&mut inner, topics, effects);
                    info!(
                        partition = change.partition,
                        "gave up {} coordination",
                        C::KIND
                    );
                }
            }
        }
    }

    /// Replays one partition into the coordinator, up to its high watermark, unless
    /// leadership moved since the load was scheduled.
    fn load_partition(&self, topics: &Topics, p: &Partition, generation: u64) {
        let now = now_ms();
        let mut inner = self.inner.lock();
        if inner.loads.get(&p.index) != Some(&generation) {
            return;
        }
        inner.loads.remove(&p.index);
        let mut rejected = 0u64;
        let stats = internal_topic::replay(p, C::TOPIC, |item| {
            if !inner.coordinator.load_item(p.index, item, now) {
                rejected += 1;
            }
        });
        let effects = inner.coordinator.finish_load(p.index, now);
        execute(&mut inner, topics, effects);
        if stats.records > 0 || stats.skipped > 0 || rejected > 0 {
            info!(
                partition = p.index,
                records = stats.records,
                skipped = stats.skipped + rejected,
                "loaded {} coordinator state",
                C::KIND
            );
        }
    }

    /// Runs a coordinator call that may answer later: `None` only if the coordinator
    /// dropped the request, which it never does.
    pub async fn call(
        &self,
        topics: &Topics,
        f: impl FnOnce(&mut C, ReplyId) -> Vec<C::Effect>,
    ) -> Option<C::Reply> {
        self.try_call(topics, |c, id| Some(f(c, id)))?.await.ok()
    }

    /// As [`Self::call`], for a call that may decline (`None`): then nothing is parked
    /// and `None` is returned, else the answer to wait for.
    pub fn try_call(
        &self,
        topics: &Topics,
        f: impl FnOnce(&mut C, ReplyId) -> Option<Vec<C::Effect>>,
    ) -> Option<oneshot::Receiver<C::Reply>> {
        let (tx, rx) = oneshot::channel();
        let mut inner = self.inner.lock();
        let id = inner.next_reply;
        inner.next_reply += 1;
        inner.waiting.insert(id, tx);
        match f(&mut inner.coordinator, id) {
            Some(effects) => {
                execute(&mut inner, topics, effects);
                Some(rx)
            }
            None => {
                inner.waiting.remove(&id);
                None
            }
        }
    }

    /// Runs a coordinator call that answers at once (and may have effects for others).
    pub fn with<R>(&self, topics: &Topics, f: impl FnOnce(&mut C) -> (R, Vec<C::Effect>)) -> R {
        let mut inner = self.inner.lock();
        let (r, effects) = f(&mut inner.coordinator);
        execute(&mut inner, topics, effects);
        r
    }

    /// Reads coordinator state without effects.
    pub fn read<R>(&self, f: impl FnOnce(&C) -> R) -> R {
        f(&self.inner.lock().coordinator)
    }

    /// Reports something back to the coordinator (a write or job finished).
    pub fn report(&self, topics: &Topics, f: impl FnOnce(&mut C, i64) -> Vec<C::Effect>) {
        let mut inner = self.inner.lock();
        let effects = f(&mut inner.coordinator, now_ms());
        execute(&mut inner, topics, effects);
    }

    /// Drives the coordinator's timers, its commit waits, deferred loads and jobs
    /// until shutdown.
    pub fn spawn_ticker(
        broker: Arc<Broker>,
        mut shutdown: broadcast::Receiver<()>,
    ) -> tokio::task::JoinHandle<()> {
        let deferred = C::host(&broker).deferred.lock().take();
        tokio::spawn(async move {
            let Some(mut deferred) = deferred else { return };
            let mut interval = tokio::time::interval(C::TICK);
            interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tokio::select! {
                    _ = interval.tick() => {
                        C::host(&broker).report(&broker.topics, |c, now| c.tick(now));
                    }
                    Some(d) = deferred.recv() => {
                        let b = broker.clone();
                        tokio::spawn(async move { run_deferred::<C>(b, d).await });
                    }
                    _ = shutdown.recv() => break,
                }
            }
        })
    }
}

async fn run_deferred<C: Hosted>(broker: Arc<Broker>, d: Deferred<C::Job>) {
    match d {
        Deferred::Commit(id, wait) => {
            let result = committed(wait, Instant::now() + C::COMMIT_TIMEOUT)
                .await
                .map_err(|code| match code {
                    // The leader stepped down before the write was committed.
                    ErrorCode::NotLeaderOrFollower => ErrorCode::NotCoordinator,
                    other => other,
                });
            let b = broker.clone();
            let _ = tokio::task::spawn_blocking(move || {
                C::host(&b).report(&b.topics, |c, now| c.write_done(id, result, now))
            })
            .await;
        }
        Deferred::Load(p, generation) => {
            // Everything the former leader may have acknowledged lies below the start of
            // this leadership; the high watermark gets there once the followers fetch.
            if !internal_topic::wait_for_leadership_start(&p).await {
                return; // no longer leading; the unload already happened
            }
            let b = broker.clone();
            let _ = tokio::task::spawn_blocking(move || {
                C::host(&b).load_partition(&b.topics, &p, generation)
            })
            .await;
        }
        Deferred::Job(job) => C::run_job(broker, job).await,
    }
}

/// Carries out effects, including those that completing a write produces.
fn execute<C: Hosted>(inner: &mut Inner<C>, topics: &Topics, effects: Vec<C::Effect>) {
    let mut queue = effects;
    while !queue.is_empty() {
        let mut next = Vec::new();
        for effect in queue {
            match C::action(effect) {
                Action::Reply(id, reply) => {
                    if let Some(tx) = inner.waiting.remove(&id) {
                        // The client may have gone; nothing to do then.
                        let _ = tx.send(reply);
                    }
                }
                Action::Write {
                    id,
                    partition,
                    records,
                    producer,
                } => {
                    let pairs: Vec<(&Bytes, Option<&Bytes>)> =
                        records.iter().map(|(k, v)| (k, v.as_ref())).collect();
                    let now = now_ms();
                    let appended =
                        internal_topic::append(topics, C::TOPIC, partition, &pairs, producer, now);
                    match appended {
                        Err(code) => next.extend(inner.coordinator.write_done(id, Err(code), now)),
                        // Committed at once (a single replica in sync).
                        Ok(None) => next.extend(inner.coordinator.write_done(id, Ok(()), now)),
                        Ok(Some(wait)) => {
                            if inner
                                .deferred
                                .send(Deferred::Commit(id, Some(wait)))
                                .is_err()
                            {
                                next.extend(inner.coordinator.write_done(
                                    id,
                                    Err(ErrorCode::CoordinatorNotAvailable),
                                    now,
                                ));
                            }
                        }
                    }
                }
                Action::Job(job) => {
                    if let Err(mpsc::error::SendError(Deferred::Job(job))) =
                        inner.deferred.send(Deferred::Job(job))
                    {
                        debug!("{} job dropped at shutdown", C::KIND);
                        next.extend(inner.coordinator.job_dropped(job, now_ms()));
                    }
                }
            }
        }
        queue = next;
    }
}
