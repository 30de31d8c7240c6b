//! The broker's side of the group coordinator (crate `sluice-group`): it owns the
//! `__consumer_offsets` topic, carries out the coordinator's effects (appending its
//! records, answering parked requests), replays the topic when the coordinator takes a
//! partition over, and drives its timers.
//!
//! One mutex guards the coordinator and the table of parked requests. Effects are
//! carried out under it, so the records of one offsets partition reach the log in the
//! order the coordinator decided them; an append only touches the page cache.
//!
//! Writes are acknowledged to the coordinator only once committed: appended with
//! acks=all semantics (refused while the ISR is below `min.insync.replicas`) and
//! reported done when the partition's high watermark passes them, by the ticker task,
//! which owns the waits. A partition this node starts leading is loaded only once its
//! high watermark has reached the start of the new leadership (everything the former
//! leader may have acknowledged), and then only up to the high watermark; until then
//! its groups answer COORDINATOR_LOAD_IN_PROGRESS.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use sluice_group::{
    Coordinator, Effect, GroupConfig, KeyValue, Reply, ReplyId, WriteId, OFFSETS_TOPIC,
};
use sluice_protocol::error::ErrorCode;
use sluice_protocol::records::{decode_records, BatchIter, RecordBatchBuilder};
use sluice_replication::waiters::WaitOutcome;
use tokio::sync::{broadcast, mpsc, oneshot};
use tracing::{debug, info, warn};

use crate::admin::NewTopic;
use crate::broker::{now_ms, Broker};
use crate::commit::append_committed;
use crate::partition::Partition;
use crate::topics::{LeadershipChange, Topics};

/// How often the coordinator's timers (session, rebalance and join deadlines, offset
/// expiry) are evaluated; the resolution of every group timeout.
const TICK: Duration = Duration::from_millis(50);
/// Largest decompressed batch accepted while replaying the offsets topic.
const LOAD_DECOMPRESS_LIMIT: usize = 256 * 1024 * 1024;
/// Bytes read per step while replaying.
const LOAD_READ_BYTES: usize = 4 * 1024 * 1024;

/// How long a coordinator write may wait to be committed (`offsets.commit.timeout.ms`).
const COMMIT_TIMEOUT: Duration = Duration::from_millis(5_000);

struct Inner {
    coordinator: Coordinator,
    waiting: HashMap<ReplyId, oneshot::Sender<Reply>>,
    next_reply: ReplyId,
    /// Work handed to the ticker task: commit waits and deferred loads.
    deferred: mpsc::UnboundedSender<Deferred>,
    /// The leadership generation each loading partition was scheduled under; a load
    /// runs only if its partition was not given up (or taken again) meanwhile.
    loads: HashMap<i32, u64>,
    next_load: u64,
}

enum Deferred {
    /// A coordinator write waiting for the high watermark.
    Commit(WriteId, oneshot::Receiver<WaitOutcome>),
    /// A partition to load once its high watermark reaches its epoch start.
    Load(Arc<Partition>, u64),
}

pub struct GroupService {
    inner: Mutex<Inner>,
    deferred: Mutex<Option<mpsc::UnboundedReceiver<Deferred>>>,
}

impl std::fmt::Debug for GroupService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GroupService").finish_non_exhaustive()
    }
}

impl GroupService {
    pub fn new(config: GroupConfig) -> Self {
        let (tx, rx) = mpsc::unbounded_channel();
        Self {
            inner: Mutex::new(Inner {
                coordinator: Coordinator::new(config),
                waiting: HashMap::new(),
                next_reply: 1,
                deferred: tx,
                loads: HashMap::new(),
                next_load: 1,
            }),
            deferred: Mutex::new(Some(rx)),
        }
    }

    /// Follows leadership of `__consumer_offsets` partitions: the coordinator loads the
    /// groups of each partition this node starts leading and gives up those it stops
    /// leading (their members are told NOT_COORDINATOR and look it up again).
    pub fn follow(&self, topics: &Topics, changes: &[LeadershipChange]) {
        let mut offsets = changes
            .iter()
            .filter(|c| c.topic == OFFSETS_TOPIC)
            .peekable();
        if offsets.peek().is_none() {
            return;
        }
        if let Some(topic) = topics.get(OFFSETS_TOPIC) {
            let existing = topic.partition_count();
            let mut inner = self.inner.lock();
            if existing != inner.coordinator.config().offsets_partitions {
                warn!(
                    existing,
                    configured = inner.coordinator.config().offsets_partitions,
                    "{OFFSETS_TOPIC} exists with another partition count; groups stay where they are"
                );
                inner.coordinator.set_offsets_partitions(existing);
            }
        }
        for change in offsets {
            match &change.now_leading {
                Some(p) => {
                    let generation = {
                        let mut inner = self.inner.lock();
                        inner.coordinator.begin_load(p.index);
                        let generation = inner.next_load;
                        inner.next_load += 1;
                        inner.loads.insert(p.index, generation);
                        generation
                    };
                    if p.epoch_start_offset()
                        .is_some_and(|start| p.high_watermark() >= start)
                    {
                        // Already committed (a new partition, or one whose ISR is this
                        // node alone): load now, so the first JoinGroup after a
                        // FindCoordinator never sees COORDINATOR_LOAD_IN_PROGRESS, which
                        // some clients (Sarama before 1.27) do not retry.
                        self.load_partition(p, generation);
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
                    info!(partition = change.partition, "gave up group coordination");
                }
            }
        }
    }

    /// Creates `__consumer_offsets` if it does not exist yet (on the first group
    /// lookup, as Kafka does). Blocking: it waits for the metadata quorum, and this
    /// node then opens the partitions it was given.
    pub fn ensure_offsets_topic(&self, broker: &Broker) -> Result<(), ErrorCode> {
        if broker.topics.get(OFFSETS_TOPIC).is_some() {
            return Ok(());
        }
        let mut overrides = BTreeMap::new();
        overrides.insert("cleanup.policy".to_string(), "compact".to_string());
        overrides.insert(
            "segment.bytes".to_string(),
            broker.config.offsets_topic_segment_bytes.to_string(),
        );
        overrides.insert("compression.type".to_string(), "producer".to_string());
        let partitions = broker.config.groups.offsets_partitions;
        // Kafka's offsets.topic.replication.factor (3), capped at the live brokers so a
        // smaller cluster (or the single-node default) can still run groups.
        let live = broker.cluster.image().live_brokers().len();
        let rf = i16::try_from(live.clamp(1, 3)).unwrap_or(1);
        let spec = NewTopic {
            name: OFFSETS_TOPIC.to_string(),
            partitions,
            replication_factor: rf,
            assignment: None,
            overrides,
        };
        match broker.create_topic(spec, false) {
            Ok(_) => {
                info!(partitions, rf, "created {OFFSETS_TOPIC}");
                Ok(())
            }
            // Another request created it meanwhile.
            Err(e) if e.code == ErrorCode::TopicAlreadyExists => Ok(()),
            Err(e) => {
                warn!(error = %e.message, "cannot create {OFFSETS_TOPIC}");
                Err(ErrorCode::CoordinatorNotAvailable)
            }
        }
    }

    /// The offsets partition of a group: its leader is the group's coordinator.
    pub fn partition_for(&self, group: &str) -> i32 {
        self.inner.lock().coordinator.partition_for(group)
    }

    /// Replays one offsets partition into the coordinator, up to its high watermark,
    /// unless leadership moved since the load was scheduled.
    fn load_partition(&self, p: &Partition, generation: u64) {
        let now = now_ms();
        let mut inner = self.inner.lock();
        if inner.loads.get(&p.index) != Some(&generation) {
            return;
        }
        inner.loads.remove(&p.index);
        inner.coordinator.begin_load(p.index);
        let (mut records, mut skipped) = (0u64, 0u64);
        let hw = p.high_watermark();
        let mut offset = p.log.log_start_offset();
        while offset < hw {
            let read = match p.log.read(offset, LOAD_READ_BYTES, hw, true) {
                Ok(r) => r,
                Err(e) => {
                    warn!(partition = p.index, offset, error = %e, "cannot read {OFFSETS_TOPIC}");
                    break;
                }
            };
            if read.records.is_empty() {
                break;
            }
            let mut next = offset;
            for item in BatchIter::new(&read.records) {
                let Ok((header, pos)) = item else {
                    break;
                };
                next = header.next_offset();
                if header.is_control() {
                    continue;
                }
                let batch = read.records.slice(pos..pos + header.total_size());
                let decoded = match decode_records(&batch, LOAD_DECOMPRESS_LIMIT) {
                    Ok(d) => d,
                    Err(e) => {
                        warn!(partition = p.index, error = %e, "skipping unreadable batch");
                        continue;
                    }
                };
                for r in decoded {
                    let Some(key) = &r.key else {
                        skipped += 1;
                        continue;
                    };
                    match inner
                        .coordinator
                        .load_record(p.index, key, r.value.as_ref(), now)
                    {
                        Ok(()) => records += 1,
                        Err(e) => {
                            skipped += 1;
                            debug!(partition = p.index, error = %e, "skipping record");
                        }
                    }
                }
            }
            if next <= offset {
                break;
            }
            offset = next;
        }
        inner.coordinator.finish_load(p.index, now);
        if records > 0 || skipped > 0 {
            info!(
                partition = p.index,
                records, skipped, "loaded group coordinator state"
            );
        }
    }

    /// Runs a coordinator call that may answer later (JoinGroup, SyncGroup, writes):
    /// `None` only if the coordinator dropped the request, which it never does.
    pub async fn call(
        &self,
        topics: &Topics,
        f: impl FnOnce(&mut Coordinator, ReplyId) -> Vec<Effect>,
    ) -> Option<Reply> {
        let (tx, rx) = oneshot::channel();
        {
            let mut inner = self.inner.lock();
            let id = inner.next_reply;
            inner.next_reply += 1;
            inner.waiting.insert(id, tx);
            let effects = f(&mut inner.coordinator, id);
            execute(&mut inner, topics, effects);
        }
        rx.await.ok()
    }

    /// Runs a coordinator call that answers at once (and may have effects for others).
    pub fn with<R>(
        &self,
        topics: &Topics,
        f: impl FnOnce(&mut Coordinator) -> (R, Vec<Effect>),
    ) -> R {
        let mut inner = self.inner.lock();
        let (r, effects) = f(&mut inner.coordinator);
        execute(&mut inner, topics, effects);
        r
    }

    /// Reads coordinator state without effects.
    pub fn read<R>(&self, f: impl FnOnce(&Coordinator) -> R) -> R {
        f(&self.inner.lock().coordinator)
    }

    fn tick(&self, topics: &Topics) {
        let mut inner = self.inner.lock();
        let effects = inner.coordinator.tick(now_ms());
        execute(&mut inner, topics, effects);
    }

    /// Reports a write's outcome to the coordinator and carries out what follows.
    fn complete_write(&self, topics: &Topics, id: WriteId, result: Result<(), ErrorCode>) {
        let mut inner = self.inner.lock();
        let effects = inner.coordinator.write_done(id, result, now_ms());
        execute(&mut inner, topics, effects);
    }

    /// Drives the coordinator's timers, its commit waits and deferred loads until
    /// shutdown.
    pub fn spawn_ticker(
        broker: Arc<Broker>,
        mut shutdown: broadcast::Receiver<()>,
    ) -> tokio::task::JoinHandle<()> {
        let deferred = broker.groups.deferred.lock().take();
        tokio::spawn(async move {
            let Some(mut deferred) = deferred else { return };
            let mut interval = tokio::time::interval(TICK);
            interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tokio::select! {
                    _ = interval.tick() => broker.groups.tick(&broker.topics),
                    Some(d) = deferred.recv() => {
                        let b = broker.clone();
                        tokio::spawn(async move { run_deferred(b, d).await });
                    }
                    _ = shutdown.recv() => break,
                }
            }
        })
    }
}

async fn run_deferred(broker: Arc<Broker>, d: Deferred) {
    match d {
        Deferred::Commit(id, rx) => {
            let result = match tokio::time::timeout(COMMIT_TIMEOUT, rx).await {
                Ok(Ok(WaitOutcome::Reached)) => Ok(()),
                Ok(Ok(WaitOutcome::Abandoned)) | Ok(Err(_)) => Err(ErrorCode::NotCoordinator),
                Err(_) => Err(ErrorCode::RequestTimedOut),
            };
            let b = broker.clone();
            let _ =
                tokio::task::spawn_blocking(move || b.groups.complete_write(&b.topics, id, result))
                    .await;
        }
        Deferred::Load(p, generation) => {
            // Everything the former leader may have acknowledged lies below the start of
            // this leadership; the high watermark gets there once the followers fetch.
            let mut hw = p.subscribe();
            loop {
                let Some(start) = p.epoch_start_offset() else {
                    return; // no longer leading; the unload already happened
                };
                if *hw.borrow_and_update() >= start {
                    break;
                }
                if hw.changed().await.is_err() {
                    return;
                }
            }
            let b = broker.clone();
            let _ =
                tokio::task::spawn_blocking(move || b.groups.load_partition(&p, generation)).await;
        }
    }
}

/// Carries out effects, including those that completing a write produces.
fn execute(inner: &mut Inner, topics: &Topics, effects: Vec<Effect>) {
    let mut queue = effects;
    while !queue.is_empty() {
        let mut next = Vec::new();
        for effect in queue {
            match effect {
                Effect::Reply(id, reply) => {
                    if let Some(tx) = inner.waiting.remove(&id) {
                        // The client may have gone; nothing to do then.
                        let _ = tx.send(reply);
                    }
                }
                Effect::Write {
                    id,
                    partition,
                    records,
                } => match append(topics, partition, &records) {
                    Err(code) => next.extend(inner.coordinator.write_done(id, Err(code), now_ms())),
                    // Committed at once (a single replica in sync).
                    Ok(None) => next.extend(inner.coordinator.write_done(id, Ok(()), now_ms())),
                    Ok(Some(wait)) => {
                        if let Err(e) = inner.deferred.send(Deferred::Commit(id, wait)) {
                            drop(e);
                            next.extend(inner.coordinator.write_done(
                                id,
                                Err(ErrorCode::CoordinatorNotAvailable),
                                now_ms(),
                            ));
                        }
                    }
                },
            }
        }
        queue = next;
    }
}

/// Appends coordinator records to their offsets partition as one batch, with acks=all
/// rules; returns the wait for the high watermark to pass it (`None`: already passed).
fn append(
    topics: &Topics,
    partition: i32,
    records: &[KeyValue],
) -> Result<Option<oneshot::Receiver<WaitOutcome>>, ErrorCode> {
    let p = topics
        .get(OFFSETS_TOPIC)
        .and_then(|t| t.partition(partition).cloned())
        .ok_or(ErrorCode::NotCoordinator)?;
    let now = now_ms();
    let mut builder = RecordBatchBuilder::new();
    for r in records {
        builder
            .push(now, Some(&r.key), r.value.as_deref(), &[])
            .map_err(|_| ErrorCode::RecordListTooLarge)?;
    }
    let batch = builder.build().map_err(|_| ErrorCode::RecordListTooLarge)?;
    let mut bytes = batch.to_vec();
    append_committed(&p, |p| p.append_as_leader(&mut bytes, now)).map_err(|code| match code {
        ErrorCode::NotLeaderOrFollower => ErrorCode::NotCoordinator,
        ErrorCode::NotEnoughReplicas => ErrorCode::NotEnoughReplicas,
        other => {
            warn!(partition, error = %other.name(), "cannot append to {OFFSETS_TOPIC}");
            ErrorCode::KafkaStorageError
        }
    })
}
