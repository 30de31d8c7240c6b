//! The transaction coordinator: transactional ids sharded by `__transaction_state`
//! partition, the effects it asks the broker to carry out, and what happens when those
//! complete or time passes. Kafka's `TransactionCoordinator` and
//! `TransactionStateManager`, for clients without KIP-890's transaction version 2.
//!
//! Sans-io, like the group coordinator: every entry point takes the time in milliseconds
//! and returns [`Effect`]s. A request is identified by a [`ReplyId`] the caller chose and
//! is answered exactly once, through an `Effect::Reply` (possibly returned at once).
//!
//! A state change is written to the log first (`Effect::Write`, reported back with
//! [`TxnCoordinator::write_done`]) and takes effect only once written, so a failed write
//! is never visible and a new coordinator's replay sees exactly what clients were told.
//! While a write of an id is in flight, other requests for it get
//! CONCURRENT_TRANSACTIONS (the client retries), except AddPartitionsToTxn /
//! AddOffsetsToTxn: a producer starts its next transaction right after EndTxn returns,
//! while the previous one's markers are still being written, and a client told to retry
//! waits out its whole retry backoff (librdkafka: 100 ms) for what takes a few
//! milliseconds. So those requests are parked on the id (a few at most, for at most
//! [`PARK_MAX_MS`]) and run again as soon as its write completes. Once PrepareCommit or PrepareAbort is
//! written the outcome is decided: the client is answered, `Effect::Markers` asks the
//! broker to write the markers to every partition of the transaction (reported back with
//! [`TxnCoordinator::markers_done`]), and CompleteCommit or CompleteAbort is written
//! after. Failures there are retried from [`TxnCoordinator::tick`] until they succeed or
//! the shard moves to another coordinator, which resumes from its replay.

use std::collections::{BTreeSet, HashMap};

use bytes::Bytes;
use sluice_protocol::coordinator_key;
use sluice_protocol::error::ErrorCode;
use tracing::{debug, warn};

use crate::config::TxnConfig;
use crate::error::TxnError;
use crate::records::{self, KeyValue};
use crate::state::{TopicPartition, TxnMeta, TxnState};

/// Chosen by the caller to identify a request whose answer may come later.
pub type ReplyId = u64;
/// Identifies a write the coordinator asked for.
pub type WriteId = u64;
/// Identifies a marker job the coordinator asked for.
pub type MarkerJobId = u64;

/// Longest an AddPartitionsToTxn waits parked for the previous transaction to complete
/// before it is told CONCURRENT_TRANSACTIONS after all.
pub const PARK_MAX_MS: i64 = 5_000;
/// Most requests parked on one transactional id.
const MAX_PARKED: usize = 8;

/// An answer to a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reply {
    /// InitProducerId's answer (id and epoch are -1 with an error).
    ProducerId {
        error: ErrorCode,
        producer_id: i64,
        producer_epoch: i16,
    },
    /// Every other request's answer.
    Done(ErrorCode),
}

impl Reply {
    fn producer_error(error: ErrorCode) -> Self {
        Reply::ProducerId {
            error,
            producer_id: -1,
            producer_epoch: -1,
        }
    }
}

/// Markers ending one transaction, to be written to the leader of each partition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MarkerJob {
    pub id: MarkerJobId,
    pub transactional_id: String,
    pub producer_id: i64,
    pub producer_epoch: i16,
    pub commit: bool,
    /// The leader epoch of the coordinator's `__transaction_state` partition: partition
    /// leaders refuse markers from an older coordinator (TRANSACTION_COORDINATOR_FENCED).
    pub coordinator_epoch: i32,
    pub partitions: Vec<TopicPartition>,
}

/// What the caller must do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Effect {
    /// Send this answer to the request registered as `ReplyId`.
    Reply(ReplyId, Reply),
    /// Append `record` to partition `partition` of `__transaction_state` (acks=all), then
    /// call [`TxnCoordinator::write_done`] with `id`.
    Write {
        id: WriteId,
        partition: i32,
        record: KeyValue,
    },
    /// Write these markers (retrying what is retriable), then call
    /// [`TxnCoordinator::markers_done`] with the job's id.
    Markers(MarkerJob),
}

/// InitProducerId's outcome: effects, or a request for a fresh producer id (which only
/// the caller can allocate, from the controller) before the call is made again.
#[derive(Debug, PartialEq, Eq)]
pub enum Init {
    Effects(Vec<Effect>),
    NeedProducerId,
}

/// One transaction as ListTransactions reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Listed {
    pub transactional_id: String,
    pub producer_id: i64,
    pub state: TxnState,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ShardState {
    Loading,
    Active,
}

#[derive(Debug)]
struct Entry {
    meta: TxnMeta,
    /// The write of this id in flight.
    pending: Option<WriteId>,
    /// The marker job in flight.
    markers: Option<MarkerJobId>,
    /// Every marker of the prepared transaction is written; only the completion record
    /// remains.
    markers_written: bool,
    /// Not before this time is a failed marker job or completion tried again.
    retry_at: i64,
    /// AddPartitionsToTxn requests waiting for the write in flight (or the previous
    /// transaction's completion).
    parked: Vec<Parked>,
}

/// An AddPartitionsToTxn / AddOffsetsToTxn request waiting on its id.
#[derive(Debug)]
struct Parked {
    reply: ReplyId,
    producer_id: i64,
    producer_epoch: i16,
    partitions: Vec<TopicPartition>,
    since: i64,
}

impl Entry {
    fn new(meta: TxnMeta) -> Self {
        Self {
            meta,
            pending: None,
            markers: None,
            markers_written: false,
            retry_at: 0,
            parked: Vec::new(),
        }
    }

    fn busy(&self) -> bool {
        self.pending.is_some()
    }
}

#[derive(Debug)]
struct Shard {
    state: ShardState,
    coordinator_epoch: i32,
    txns: HashMap<String, Entry>,
}

/// What to do once a write is done.
#[derive(Debug)]
enum After {
    /// Answer InitProducerId with the written id and epoch.
    Init(ReplyId),
    /// Answer with success.
    Ack(ReplyId),
    /// PrepareCommit/PrepareAbort: answer the client (if one asked), send the markers.
    Prepared(Option<ReplyId>),
    /// CompleteCommit/CompleteAbort: the transaction is over.
    Completed,
    /// The id's tombstone: forget it.
    Removed,
}

#[derive(Debug)]
struct PendingWrite {
    partition: i32,
    transactional_id: String,
    /// The state the write establishes (`None` for a tombstone).
    target: Option<TxnMeta>,
    after: After,
}

/// The transaction coordinator of one broker: the shards it leads.
#[derive(Debug)]
pub struct TxnCoordinator {
    config: TxnConfig,
    shards: HashMap<i32, Shard>,
    writes: HashMap<WriteId, PendingWrite>,
    jobs: HashMap<MarkerJobId, (i32, String)>,
    next_id: u64,
    next_timeout_check: i64,
    next_expiry_check: i64,
}

/// What an appended-record failure tells the client (Kafka's mapping in
/// `TransactionStateManager.appendTransactionToLog`).
fn client_error(code: ErrorCode) -> ErrorCode {
    match code {
        ErrorCode::UnknownTopicOrPartition
        | ErrorCode::NotEnoughReplicas
        | ErrorCode::NotEnoughReplicasAfterAppend
        | ErrorCode::RequestTimedOut => ErrorCode::CoordinatorNotAvailable,
        ErrorCode::NotLeaderOrFollower | ErrorCode::KafkaStorageError => ErrorCode::NotCoordinator,
        ErrorCode::MessageTooLarge | ErrorCode::RecordListTooLarge => ErrorCode::UnknownServerError,
        other => other,
    }
}

/// The producer id and epoch a client named must be the current ones.
fn check_producer(meta: &TxnMeta, producer_id: i64, epoch: i16) -> Result<(), ErrorCode> {
    if producer_id != meta.producer_id {
        return Err(ErrorCode::InvalidProducerIdMapping);
    }
    if epoch != meta.producer_epoch {
        return Err(ErrorCode::ProducerFenced);
    }
    Ok(())
}

impl TxnCoordinator {
    pub fn new(config: TxnConfig) -> Self {
        Self {
            config,
            shards: HashMap::new(),
            writes: HashMap::new(),
            jobs: HashMap::new(),
            next_id: 1,
            next_timeout_check: 0,
            next_expiry_check: 0,
        }
    }

    pub fn config(&self) -> &TxnConfig {
        &self.config
    }

    /// Follows the partition count the topic really has (it may predate the config).
    pub fn set_state_partitions(&mut self, partitions: i32) {
        self.config.state_partitions = partitions;
    }

    /// The `__transaction_state` partition of a transactional id.
    pub fn partition_for(&self, transactional_id: &str) -> i32 {
        coordinator_key::partition_for(transactional_id, self.config.state_partitions)
    }

    fn next(&mut self) -> u64 {
        let id = self.next_id;
        self.next_id += 1;
        id
    }

    /// The shard of `transactional_id`, if this coordinator serves it now.
    fn shard_of(&mut self, transactional_id: &str) -> Result<(i32, &mut Shard), ErrorCode> {
        let partition = self.serving(transactional_id)?;
        let shard = self
            .shards
            .get_mut(&partition)
            .ok_or(ErrorCode::NotCoordinator)?;
        Ok((partition, shard))
    }

    /// The partition of `transactional_id`, if this coordinator serves it now.
    fn serving(&self, transactional_id: &str) -> Result<i32, ErrorCode> {
        let partition = self.partition_for(transactional_id);
        match self.shards.get(&partition) {
            None => Err(ErrorCode::NotCoordinator),
            Some(s) if s.state == ShardState::Loading => Err(ErrorCode::CoordinatorLoadInProgress),
            Some(_) => Ok(partition),
        }
    }

    /// The entry of `transactional_id`, if this coordinator serves it now.
    fn entry(&self, transactional_id: &str) -> Result<(i32, Option<&Entry>), ErrorCode> {
        let partition = self.serving(transactional_id)?;
        let entry = self
            .shards
            .get(&partition)
            .and_then(|s| s.txns.get(transactional_id));
        Ok((partition, entry))
    }

    // ---------------------------------------------------------------------------------
    // Shards
    // ---------------------------------------------------------------------------------

    /// This broker starts leading `partition` at `coordinator_epoch` (its leader epoch):
    /// replay its records with [`Self::load_record`], then [`Self::finish_load`].
    pub fn begin_load(&mut self, partition: i32, coordinator_epoch: i32) -> Vec<Effect> {
        let effects = self.unload(partition);
        self.shards.insert(
            partition,
            Shard {
                state: ShardState::Loading,
                coordinator_epoch,
                txns: HashMap::new(),
            },
        );
        effects
    }

    /// Replays one record of a loading shard (later records of an id replace earlier).
    pub fn load_record(
        &mut self,
        partition: i32,
        key: &Bytes,
        value: Option<&Bytes>,
    ) -> Result<(), TxnError> {
        let (id, meta) = records::decode(key, value)?;
        let Some(shard) = self.shards.get_mut(&partition) else {
            return Ok(());
        };
        match meta {
            Some(meta) => {
                shard.txns.insert(id, Entry::new(meta));
            }
            None => {
                shard.txns.remove(&id);
            }
        }
        Ok(())
    }

    /// The shard is loaded and serves requests; decided transactions get their markers
    /// (again: writing a marker twice is harmless, missing one is not).
    pub fn finish_load(&mut self, partition: i32, now: i64) -> Vec<Effect> {
        let Some(shard) = self.shards.get_mut(&partition) else {
            return Vec::new();
        };
        shard.state = ShardState::Active;
        let prepared: Vec<String> = shard
            .txns
            .iter()
            .filter(|(_, e)| e.meta.state.is_prepared())
            .map(|(id, _)| id.clone())
            .collect();
        debug!(
            partition,
            transactions = shard.txns.len(),
            prepared = prepared.len(),
            "transaction state loaded"
        );
        let mut effects = Vec::new();
        for id in prepared {
            effects.extend(self.send_markers(partition, &id, now));
        }
        effects
    }

    /// This broker no longer leads `partition`: requests waiting on its writes are told
    /// NOT_COORDINATOR and its marker jobs are dropped (the next coordinator resends).
    pub fn unload(&mut self, partition: i32) -> Vec<Effect> {
        let Some(shard) = self.shards.remove(&partition) else {
            return Vec::new();
        };
        let doomed: Vec<WriteId> = self
            .writes
            .iter()
            .filter(|(_, w)| w.partition == partition)
            .map(|(&id, _)| id)
            .collect();
        let mut effects = Vec::new();
        for id in doomed {
            if let Some(w) = self.writes.remove(&id) {
                effects.extend(answer_failed(&w.after, ErrorCode::NotCoordinator));
            }
        }
        self.jobs.retain(|_, (p, _)| *p != partition);
        for entry in shard.txns.into_values() {
            for p in entry.parked {
                effects.push(Effect::Reply(
                    p.reply,
                    Reply::Done(ErrorCode::NotCoordinator),
                ));
            }
        }
        effects
    }

    /// Whether a marker job still matters (its shard was not given up meanwhile).
    pub fn job_active(&self, job: MarkerJobId) -> bool {
        self.jobs.contains_key(&job)
    }

    // ---------------------------------------------------------------------------------
    // Requests
    // ---------------------------------------------------------------------------------

    /// InitProducerId with a transactional id. `expected` is the producer id and epoch
    /// the client already has (KIP-360, v3+), `fresh` a new producer id when the call
    /// asked for one ([`Init::NeedProducerId`]).
    pub fn init_producer_id(
        &mut self,
        transactional_id: &str,
        timeout_ms: i32,
        expected: Option<(i64, i16)>,
        fresh: Option<i64>,
        now: i64,
        reply: ReplyId,
    ) -> Init {
        let answer = |r: Reply| Init::Effects(vec![Effect::Reply(reply, r)]);
        if timeout_ms <= 0 || timeout_ms > self.config.max_timeout_ms {
            return answer(Reply::producer_error(ErrorCode::InvalidTransactionTimeout));
        }
        let (partition, shard) = match self.shard_of(transactional_id) {
            Ok(s) => s,
            Err(code) => return answer(Reply::producer_error(code)),
        };
        let Some(entry) = shard.txns.get(transactional_id) else {
            let Some(pid) = fresh else {
                return Init::NeedProducerId;
            };
            let meta = TxnMeta::new(pid, timeout_ms, now);
            let mut target = meta.clone();
            target.producer_epoch = 0;
            shard
                .txns
                .insert(transactional_id.to_string(), Entry::new(meta));
            return Init::Effects(self.write(
                partition,
                transactional_id,
                Some(target),
                After::Init(reply),
            ));
        };
        if entry.busy() {
            return answer(Reply::producer_error(ErrorCode::ConcurrentTransactions));
        }
        let meta = &entry.meta;
        if let Some((pid, epoch)) = expected {
            // KIP-360: the epoch before the last bump names either a retry of an init
            // whose answer was lost, or a producer whose transaction the coordinator
            // aborted (timeout) under a bumped epoch: as in Kafka, it gets the current
            // epoch and goes on.
            let retried = pid == meta.producer_id
                && meta.last_producer_epoch >= 0
                && epoch == meta.last_producer_epoch
                && meta.state.is_resting();
            if retried {
                return answer(Reply::ProducerId {
                    error: ErrorCode::None,
                    producer_id: meta.producer_id,
                    producer_epoch: meta.producer_epoch,
                });
            }
            let current = pid == meta.producer_id && epoch == meta.producer_epoch;
            if !current {
                return answer(Reply::producer_error(ErrorCode::ProducerFenced));
            }
        }
        match meta.state {
            TxnState::Ongoing => {
                // Kafka: fence the old producer by aborting its transaction under a
                // bumped epoch, and have this one retry once that is done.
                let mut effects = self.fence_and_abort(partition, transactional_id, now);
                effects.push(Effect::Reply(
                    reply,
                    Reply::producer_error(ErrorCode::ConcurrentTransactions),
                ));
                Init::Effects(effects)
            }
            state if state.is_resting() => {
                let mut target = meta.clone();
                if meta.epoch_exhausted() {
                    let Some(pid) = fresh else {
                        return Init::NeedProducerId;
                    };
                    target.previous_producer_id = meta.producer_id;
                    target.producer_id = pid;
                    target.producer_epoch = 0;
                    target.last_producer_epoch = -1;
                } else {
                    target.producer_epoch = meta.producer_epoch + 1;
                    target.last_producer_epoch = meta.producer_epoch;
                }
                target.state = TxnState::Empty;
                target.partitions.clear();
                target.timeout_ms = timeout_ms;
                target.start_ms = -1;
                target.last_update_ms = now;
                Init::Effects(self.write(
                    partition,
                    transactional_id,
                    Some(target),
                    After::Init(reply),
                ))
            }
            _ => answer(Reply::producer_error(ErrorCode::ConcurrentTransactions)),
        }
    }

    /// AddPartitionsToTxn and AddOffsetsToTxn (whose partition is the group's offsets
    /// partition): the partitions join the transaction, which starts if none was open.
    /// The caller checked that the partitions exist.
    pub fn add_partitions(
        &mut self,
        transactional_id: &str,
        producer_id: i64,
        producer_epoch: i16,
        partitions: &[TopicPartition],
        now: i64,
        reply: ReplyId,
    ) -> Vec<Effect> {
        if self.park(
            transactional_id,
            producer_id,
            producer_epoch,
            partitions,
            now,
            reply,
        ) {
            return Vec::new();
        }
        let (partition, meta) = match self.current(transactional_id, producer_id, producer_epoch) {
            Err(code) => return vec![Effect::Reply(reply, Reply::Done(code))],
            Ok(found) => found,
        };
        let ongoing = meta.state == TxnState::Ongoing;
        if !ongoing && !meta.state.is_resting() {
            // Decided and still completing (and too many parked already).
            return vec![Effect::Reply(
                reply,
                Reply::Done(ErrorCode::ConcurrentTransactions),
            )];
        }
        if ongoing && partitions.iter().all(|p| meta.partitions.contains(p)) {
            return vec![Effect::Reply(reply, Reply::Done(ErrorCode::None))];
        }
        let mut target = meta;
        target.partitions.extend(partitions.iter().cloned());
        if !ongoing {
            target.state = TxnState::Ongoing;
            target.start_ms = now;
        }
        target.last_update_ms = now;
        self.write(partition, transactional_id, Some(target), After::Ack(reply))
    }

    /// Parks an AddPartitionsToTxn of the id's current producer while a write of the id
    /// is in flight or its decided transaction completes; `false` if it was not parked.
    fn park(
        &mut self,
        transactional_id: &str,
        producer_id: i64,
        producer_epoch: i16,
        partitions: &[TopicPartition],
        now: i64,
        reply: ReplyId,
    ) -> bool {
        let Ok((partition, _)) = self.entry(transactional_id) else {
            return false;
        };
        let Some(entry) = self
            .shards
            .get_mut(&partition)
            .and_then(|s| s.txns.get_mut(transactional_id))
        else {
            return false;
        };
        let current =
            entry.meta.producer_id == producer_id && entry.meta.producer_epoch == producer_epoch;
        let waiting = entry.busy() || entry.meta.state.is_prepared();
        if !current || !waiting || entry.parked.len() >= MAX_PARKED {
            return false;
        }
        entry.parked.push(Parked {
            reply,
            producer_id,
            producer_epoch,
            partitions: partitions.to_vec(),
            since: now,
        });
        true
    }

    /// Runs again the requests parked on an id whose write just completed.
    fn release_parked(&mut self, partition: i32, id: &str, now: i64) -> Vec<Effect> {
        let parked = match self
            .shards
            .get_mut(&partition)
            .and_then(|s| s.txns.get_mut(id))
        {
            Some(e) if !e.busy() && !e.meta.state.is_prepared() => std::mem::take(&mut e.parked),
            _ => return Vec::new(),
        };
        let mut effects = Vec::new();
        for p in parked {
            effects.extend(self.add_partitions(
                id,
                p.producer_id,
                p.producer_epoch,
                &p.partitions,
                now,
                p.reply,
            ));
        }
        effects
    }

    /// AddPartitionsToTxn v4+ with `VerifyOnly` (KIP-890): which of `partitions` are in
    /// the open transaction of this producer. Answered at once.
    pub fn verify_partitions(
        &self,
        transactional_id: &str,
        producer_id: i64,
        producer_epoch: i16,
        partitions: &[TopicPartition],
    ) -> Result<Vec<(TopicPartition, ErrorCode)>, ErrorCode> {
        let (_, meta) = self.current(transactional_id, producer_id, producer_epoch)?;
        Ok(partitions
            .iter()
            .map(|p| {
                let ok = meta.state == TxnState::Ongoing && meta.partitions.contains(p);
                let code = if ok {
                    ErrorCode::None
                } else {
                    ErrorCode::InvalidTxnState
                };
                (p.clone(), code)
            })
            .collect())
    }

    /// EndTxn: decide the open transaction. The client is answered once the decision is
    /// written; markers and completion follow.
    pub fn end_txn(
        &mut self,
        transactional_id: &str,
        producer_id: i64,
        producer_epoch: i16,
        commit: bool,
        now: i64,
        reply: ReplyId,
    ) -> Vec<Effect> {
        let done = |code: ErrorCode| vec![Effect::Reply(reply, Reply::Done(code))];
        let (partition, meta) = match self.current(transactional_id, producer_id, producer_epoch) {
            Err(code) => return done(code),
            Ok(found) => found,
        };
        let code = match (meta.state, commit) {
            (TxnState::Ongoing, _) => {
                let mut target = meta.clone();
                target.state = if commit {
                    TxnState::PrepareCommit
                } else {
                    TxnState::PrepareAbort
                };
                target.last_update_ms = now;
                return self.write(
                    partition,
                    transactional_id,
                    Some(target),
                    After::Prepared(Some(reply)),
                );
            }
            // A retry after the outcome it asked for: done, or about to be.
            (TxnState::CompleteCommit, true) | (TxnState::CompleteAbort, false) => ErrorCode::None,
            (TxnState::PrepareCommit, true) | (TxnState::PrepareAbort, false) => {
                ErrorCode::ConcurrentTransactions
            }
            _ => ErrorCode::InvalidTxnState,
        };
        done(code)
    }

    /// The id's state for a client call naming its producer id and epoch.
    fn current(
        &self,
        transactional_id: &str,
        producer_id: i64,
        producer_epoch: i16,
    ) -> Result<(i32, TxnMeta), ErrorCode> {
        let (partition, entry) = self.entry(transactional_id)?;
        let entry = entry.ok_or(ErrorCode::InvalidProducerIdMapping)?;
        check_producer(&entry.meta, producer_id, producer_epoch)?;
        if entry.busy() {
            return Err(ErrorCode::ConcurrentTransactions);
        }
        Ok((partition, entry.meta.clone()))
    }

    /// DescribeTransactions: the id's state.
    pub fn describe(&self, transactional_id: &str) -> Result<TxnMeta, ErrorCode> {
        let (_, entry) = self.entry(transactional_id)?;
        entry
            .map(|e| e.meta.clone())
            .ok_or(ErrorCode::TransactionalIdNotFound)
    }

    /// ListTransactions: every id of the loaded shards that passes the filters (empty
    /// filters pass all; `min_duration_ms` >= 0 keeps open transactions running at least
    /// that long). The flag says whether a shard was still loading.
    pub fn list(
        &self,
        states: &BTreeSet<String>,
        producer_ids: &BTreeSet<i64>,
        min_duration_ms: i64,
        now: i64,
    ) -> (Vec<Listed>, bool) {
        let mut out = Vec::new();
        let mut loading = false;
        for shard in self.shards.values() {
            if shard.state == ShardState::Loading {
                loading = true;
                continue;
            }
            for (id, e) in &shard.txns {
                let m = &e.meta;
                let state_ok = states.is_empty() || states.contains(m.state.name());
                let pid_ok = producer_ids.is_empty() || producer_ids.contains(&m.producer_id);
                let duration_ok = min_duration_ms < 0
                    || (m.state == TxnState::Ongoing
                        && now.saturating_sub(m.start_ms) >= min_duration_ms);
                if state_ok && pid_ok && duration_ok {
                    out.push(Listed {
                        transactional_id: id.clone(),
                        producer_id: m.producer_id,
                        state: m.state,
                    });
                }
            }
        }
        out.sort_by(|a, b| a.transactional_id.cmp(&b.transactional_id));
        (out, loading)
    }

    // ---------------------------------------------------------------------------------
    // Completions and time
    // ---------------------------------------------------------------------------------

    /// A write finished: on success its state takes effect and what follows happens;
    /// on failure the state stays and the waiting client gets the error.
    pub fn write_done(
        &mut self,
        id: WriteId,
        result: Result<(), ErrorCode>,
        now: i64,
    ) -> Vec<Effect> {
        let Some(w) = self.writes.remove(&id) else {
            return Vec::new();
        };
        let (partition, txn_id) = (w.partition, w.transactional_id.clone());
        let mut effects = self.write_finished(w, id, result, now);
        effects.extend(self.release_parked(partition, &txn_id, now));
        effects
    }

    fn write_finished(
        &mut self,
        w: PendingWrite,
        id: WriteId,
        result: Result<(), ErrorCode>,
        now: i64,
    ) -> Vec<Effect> {
        let backoff = self.config.retry_backoff_ms;
        let Some(entry) = self
            .shards
            .get_mut(&w.partition)
            .filter(|s| s.state == ShardState::Active)
            .and_then(|s| s.txns.get_mut(&w.transactional_id))
            .filter(|e| e.pending == Some(id))
        else {
            return answer_failed(&w.after, ErrorCode::NotCoordinator);
        };
        entry.pending = None;
        if let Err(code) = result {
            debug!(transactional_id = %w.transactional_id, error = code.name(), "transaction log write failed");
            entry.retry_at = now.saturating_add(backoff);
            return answer_failed(&w.after, client_error(code));
        }
        match (w.after, w.target) {
            (After::Removed, _) | (_, None) => {
                if let Some(shard) = self.shards.get_mut(&w.partition) {
                    shard.txns.remove(&w.transactional_id);
                }
                Vec::new()
            }
            (after, Some(target)) => {
                entry.meta = target;
                match after {
                    After::Init(reply) => vec![Effect::Reply(
                        reply,
                        Reply::ProducerId {
                            error: ErrorCode::None,
                            producer_id: entry.meta.producer_id,
                            producer_epoch: entry.meta.producer_epoch,
                        },
                    )],
                    After::Ack(reply) => vec![Effect::Reply(reply, Reply::Done(ErrorCode::None))],
                    After::Prepared(reply) => {
                        entry.markers_written = false;
                        let mut effects: Vec<Effect> = reply
                            .map(|r| Effect::Reply(r, Reply::Done(ErrorCode::None)))
                            .into_iter()
                            .collect();
                        effects.extend(self.send_markers(w.partition, &w.transactional_id, now));
                        effects
                    }
                    After::Completed | After::Removed => Vec::new(),
                }
            }
        }
    }

    /// A marker job finished. `Ok`: every marker is committed, so the transaction is
    /// completed. `Err`: it is tried again after the backoff (a fenced marker means a
    /// newer coordinator exists; this shard is about to be unloaded).
    pub fn markers_done(
        &mut self,
        job: MarkerJobId,
        result: Result<(), ErrorCode>,
        now: i64,
    ) -> Vec<Effect> {
        let Some((partition, id)) = self.jobs.remove(&job) else {
            return Vec::new();
        };
        let backoff = self.config.retry_backoff_ms;
        let Some(entry) = self
            .shards
            .get_mut(&partition)
            .and_then(|s| s.txns.get_mut(&id))
            .filter(|e| e.markers == Some(job))
        else {
            return Vec::new();
        };
        entry.markers = None;
        match result {
            Ok(()) => {
                entry.markers_written = true;
                self.complete(partition, &id, now)
            }
            Err(code) => {
                warn!(transactional_id = %id, error = code.name(), "transaction markers failed; will retry");
                entry.retry_at = now.saturating_add(backoff);
                Vec::new()
            }
        }
    }

    /// Timers: retries of markers and completions, aborting transactions past their
    /// timeout, forgetting idle transactional ids.
    pub fn tick(&mut self, now: i64) -> Vec<Effect> {
        let check_timeouts = now >= self.next_timeout_check;
        if check_timeouts {
            self.next_timeout_check = now.saturating_add(self.config.abort_timed_out_interval_ms);
        }
        let check_expiry = now >= self.next_expiry_check;
        if check_expiry {
            self.next_expiry_check = now.saturating_add(self.config.remove_expired_interval_ms);
        }
        let expiration = self.config.id_expiration_ms;
        let mut effects = Vec::new();
        for shard in self.shards.values_mut() {
            for e in shard.txns.values_mut() {
                e.parked.retain(|p| {
                    let keep = now.saturating_sub(p.since) < PARK_MAX_MS;
                    if !keep {
                        effects.push(Effect::Reply(
                            p.reply,
                            Reply::Done(ErrorCode::ConcurrentTransactions),
                        ));
                    }
                    keep
                });
            }
        }
        let mut work: Vec<(i32, String, Work)> = Vec::new();
        for (&partition, shard) in &self.shards {
            if shard.state != ShardState::Active {
                continue;
            }
            for (id, e) in &shard.txns {
                if e.busy() || e.markers.is_some() || now < e.retry_at {
                    continue;
                }
                let m = &e.meta;
                let job = if m.state.is_prepared() {
                    Some(if e.markers_written {
                        Work::Complete
                    } else {
                        Work::Markers
                    })
                } else if check_timeouts
                    && m.state == TxnState::Ongoing
                    && m.start_ms.saturating_add(i64::from(m.timeout_ms)) < now
                {
                    Some(Work::Abort)
                } else if check_expiry
                    && m.state.is_resting()
                    && m.last_update_ms.saturating_add(expiration) < now
                {
                    Some(Work::Expire)
                } else {
                    None
                };
                if let Some(job) = job {
                    work.push((partition, id.clone(), job));
                }
            }
        }
        for (partition, id, job) in work {
            effects.extend(match job {
                Work::Markers => self.send_markers(partition, &id, now),
                Work::Complete => self.complete(partition, &id, now),
                Work::Abort => {
                    debug!(transactional_id = %id, "aborting a transaction past its timeout");
                    self.fence_and_abort(partition, &id, now)
                }
                Work::Expire => {
                    debug!(transactional_id = %id, "transactional id expired");
                    self.write(partition, &id, None, After::Removed)
                }
            });
        }
        effects
    }

    // ---------------------------------------------------------------------------------
    // Helpers
    // ---------------------------------------------------------------------------------

    /// Asks for `target` to be written for `id` (a tombstone if `None`).
    fn write(
        &mut self,
        partition: i32,
        id: &str,
        target: Option<TxnMeta>,
        after: After,
    ) -> Vec<Effect> {
        let record = match &target {
            Some(meta) => records::record(id, meta),
            None => records::tombstone(id),
        };
        let record = match record {
            Ok(r) => r,
            Err(e) => {
                warn!(transactional_id = %id, error = %e, "cannot encode transaction record");
                return answer_failed(&after, ErrorCode::UnknownServerError);
            }
        };
        let write = self.next();
        let Some(entry) = self
            .shards
            .get_mut(&partition)
            .and_then(|s| s.txns.get_mut(id))
        else {
            return answer_failed(&after, ErrorCode::NotCoordinator);
        };
        entry.pending = Some(write);
        self.writes.insert(
            write,
            PendingWrite {
                partition,
                transactional_id: id.to_string(),
                target,
                after,
            },
        );
        vec![Effect::Write {
            id: write,
            partition,
            record,
        }]
    }

    /// Kafka's `prepareFenceProducerEpoch` plus an abort: the open transaction is
    /// aborted under the next epoch, so the producer that opened it is fenced.
    fn fence_and_abort(&mut self, partition: i32, id: &str, now: i64) -> Vec<Effect> {
        let Some(entry) = self.shards.get(&partition).and_then(|s| s.txns.get(id)) else {
            return Vec::new();
        };
        let mut target = entry.meta.clone();
        if target.producer_epoch < i16::MAX {
            target.last_producer_epoch = target.producer_epoch;
            target.producer_epoch += 1;
        }
        target.state = TxnState::PrepareAbort;
        target.last_update_ms = now;
        self.write(partition, id, Some(target), After::Prepared(None))
    }

    /// Starts the marker job of a prepared transaction (or completes one that has no
    /// partitions).
    fn send_markers(&mut self, partition: i32, id: &str, now: i64) -> Vec<Effect> {
        let job = self.next();
        let Some(shard) = self.shards.get_mut(&partition) else {
            return Vec::new();
        };
        let coordinator_epoch = shard.coordinator_epoch;
        let Some(entry) = shard.txns.get_mut(id) else {
            return Vec::new();
        };
        let m = &entry.meta;
        if m.partitions.is_empty() {
            entry.markers_written = true;
            return self.complete(partition, id, now);
        }
        entry.markers = Some(job);
        let job = MarkerJob {
            id: job,
            transactional_id: id.to_string(),
            producer_id: m.producer_id,
            producer_epoch: m.producer_epoch,
            commit: m.state == TxnState::PrepareCommit,
            coordinator_epoch,
            partitions: m.partitions.iter().cloned().collect(),
        };
        self.jobs.insert(job.id, (partition, id.to_string()));
        vec![Effect::Markers(job)]
    }

    /// Writes CompleteCommit / CompleteAbort for a prepared transaction whose markers
    /// are all written.
    fn complete(&mut self, partition: i32, id: &str, now: i64) -> Vec<Effect> {
        let Some(entry) = self.shards.get(&partition).and_then(|s| s.txns.get(id)) else {
            return Vec::new();
        };
        let mut target = entry.meta.clone();
        target.state = match target.state {
            TxnState::PrepareCommit => TxnState::CompleteCommit,
            TxnState::PrepareAbort => TxnState::CompleteAbort,
            _ => return Vec::new(),
        };
        target.partitions.clear();
        target.last_update_ms = now;
        self.write(partition, id, Some(target), After::Completed)
    }
}

/// Timer work found by [`TxnCoordinator::tick`].
enum Work {
    Markers,
    Complete,
    Abort,
    Expire,
}

/// The answer a failed write owes its client, if one waits.
fn answer_failed(after: &After, code: ErrorCode) -> Vec<Effect> {
    match *after {
        After::Init(reply) => vec![Effect::Reply(reply, Reply::producer_error(code))],
        After::Ack(reply) | After::Prepared(Some(reply)) => {
            vec![Effect::Reply(reply, Reply::Done(code))]
        }
        After::Prepared(None) | After::Completed | After::Removed => Vec::new(),
    }
}
