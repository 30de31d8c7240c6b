//! The coordinator: groups sharded by `__consumer_offsets` partition, the effects it
//! asks the broker to carry out, and what happens when those complete or time passes.
//!
//! Sans-io: every entry point takes the current time in milliseconds and returns
//! [`Effect`]s. A request that cannot be answered at once (JoinGroup waiting for the
//! other members, SyncGroup waiting for the leader, anything that must first be
//! written) is identified by a [`ReplyId`] the caller chose and answered later through
//! an `Effect::Reply`. Every accepted `ReplyId` is answered exactly once, so the
//! caller's table of waiting requests never leaks.
//!
//! Writes to `__consumer_offsets` go out as `Effect::Write`; the caller appends them to
//! that partition and reports back with [`Coordinator::write_done`]. State a write
//! establishes (committed offsets, a stored assignment) takes effect only then, so a
//! failed write is never visible. In the cluster the same calls are made when the
//! write is replicated, and shards move with partition leadership through
//! [`Coordinator::begin_load`] / [`Coordinator::finish_load`] / [`Coordinator::unload`].

use std::collections::HashMap;

use bytes::Bytes;
use sluice_protocol::error::ErrorCode;
use sluice_protocol::messages::{
    DeleteGroupsResponse, JoinGroupResponse, OffsetCommitResponse, OffsetDeleteResponse,
    SyncGroupResponse, TxnOffsetCommitResponse,
};
use tracing::{debug, warn};

use crate::config::GroupConfig;
use crate::group::{Group, GroupState};
use crate::records::{self, CommittedOffset, KeyValue, Record};

/// Chosen by the caller to identify a request whose response may come later.
pub type ReplyId = u64;
/// Identifies a write the coordinator asked for.
pub type WriteId = u64;

/// A response to a request that was (or could have been) held back.
#[derive(Debug, Clone, PartialEq)]
pub enum Reply {
    Join(JoinGroupResponse),
    Sync(SyncGroupResponse),
    Commit(OffsetCommitResponse),
    DeleteGroups(DeleteGroupsResponse),
    OffsetDelete(OffsetDeleteResponse),
    TxnCommit(TxnOffsetCommitResponse),
}

/// The producer a transactional write belongs to (TxnOffsetCommit): its records are
/// appended as a transactional batch of this producer id and epoch, without sequence
/// numbers, so the transaction's marker decides them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TxnProducer {
    pub producer_id: i64,
    pub producer_epoch: i16,
}

/// What the caller must do.
#[derive(Debug, Clone, PartialEq)]
pub enum Effect {
    /// Send this response to the request registered as `ReplyId`.
    Reply(ReplyId, Reply),
    /// Append these records to partition `partition` of `__consumer_offsets` (as part of
    /// `transaction` if set), then call [`Coordinator::write_done`] with `id`.
    Write {
        id: WriteId,
        partition: i32,
        records: Vec<KeyValue>,
        transaction: Option<TxnProducer>,
    },
}

/// Who sent a request, as DescribeGroups reports members.
#[derive(Debug, Clone, Default)]
pub struct ClientInfo {
    pub client_id: String,
    pub client_host: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ShardState {
    Loading,
    Active,
}

#[derive(Debug)]
pub(crate) struct Shard {
    pub state: ShardState,
    pub groups: HashMap<String, Group>,
}

/// What to do when a write completes.
#[derive(Debug)]
pub(crate) enum PendingWrite {
    /// OffsetCommit: apply the offsets, answer with `response` (errors filled in on
    /// failure).
    Commit {
        reply: ReplyId,
        group: String,
        offsets: Vec<(String, i32, CommittedOffset)>,
        response: OffsetCommitResponse,
    },
    /// The leader's SyncGroup: install the assignment if the generation still stands.
    Assignment {
        group: String,
        generation: i32,
        assignments: HashMap<String, Bytes>,
    },
    /// A static member rejoined in place: answer it once its new id is stored.
    StaticRejoin {
        reply: ReplyId,
        response: JoinGroupResponse,
        group: String,
        old_id: String,
    },
    /// Part of a DeleteGroups request.
    DeleteGroups { batch: u64, groups: Vec<String> },
    OffsetDelete {
        reply: ReplyId,
        response: OffsetDeleteResponse,
    },
    /// TxnOffsetCommit: the offsets wait for the transaction's marker.
    TxnCommit {
        reply: ReplyId,
        group: String,
        producer_id: i64,
        offsets: Vec<(String, i32, CommittedOffset)>,
        response: TxnOffsetCommitResponse,
    },
    /// State changes with nobody waiting (empty group stored, expiry tombstones).
    Background,
}

#[derive(Debug)]
pub(crate) struct DeleteBatch {
    pub reply: ReplyId,
    pub remaining: usize,
    pub response: DeleteGroupsResponse,
}

/// Effects collected during one call.
pub(crate) type Out = Vec<Effect>;

/// The group coordinator of one node: all groups of the `__consumer_offsets`
/// partitions this node leads.
#[derive(Debug)]
pub struct Coordinator {
    pub(crate) config: GroupConfig,
    pub(crate) shards: HashMap<i32, Shard>,
    pub(crate) writes: HashMap<WriteId, (i32, PendingWrite)>,
    pub(crate) delete_batches: HashMap<u64, DeleteBatch>,
    next_write: WriteId,
    next_batch: u64,
    pub(crate) pending_total: usize,
    last_expiry_check: i64,
}

/// Where a group's requests must go, or why they cannot be served here.
pub(crate) enum Lookup {
    Here,
    Error(ErrorCode),
}

impl Coordinator {
    pub fn new(config: GroupConfig) -> Self {
        Self {
            config,
            shards: HashMap::new(),
            writes: HashMap::new(),
            delete_batches: HashMap::new(),
            next_write: 1,
            next_batch: 1,
            pending_total: 0,
            last_expiry_check: 0,
        }
    }

    pub fn config(&self) -> &GroupConfig {
        &self.config
    }

    /// Adopts the partition count of an existing offsets topic: groups were placed by
    /// it, so it wins over `offsets.topic.num.partitions` (as in Kafka, where the
    /// setting only applies when the topic is created). Call before loading.
    pub fn set_offsets_partitions(&mut self, partitions: i32) {
        self.config.offsets_partitions = partitions.max(1);
    }

    /// The `__consumer_offsets` partition of a group.
    pub fn partition_for(&self, group: &str) -> i32 {
        records::partition_for(group, self.config.offsets_partitions)
    }

    pub(crate) fn lookup(&self, group: &str) -> Lookup {
        let p = self.partition_for(group);
        match self.shards.get(&p).map(|s| s.state) {
            None => Lookup::Error(ErrorCode::NotCoordinator),
            Some(ShardState::Loading) => Lookup::Error(ErrorCode::CoordinatorLoadInProgress),
            Some(ShardState::Active) => Lookup::Here,
        }
    }

    pub(crate) fn group(&self, id: &str) -> Option<&Group> {
        let p = self.partition_for(id);
        self.shards.get(&p)?.groups.get(id)
    }

    pub(crate) fn group_mut(&mut self, id: &str) -> Option<&mut Group> {
        let p = self.partition_for(id);
        self.shards.get_mut(&p)?.groups.get_mut(id)
    }

    pub(crate) fn write(
        &mut self,
        partition: i32,
        records: Vec<KeyValue>,
        pending: PendingWrite,
        out: &mut Out,
    ) {
        self.write_as(partition, records, None, pending, out);
    }

    /// A write, as part of `transaction` if set.
    pub(crate) fn write_as(
        &mut self,
        partition: i32,
        records: Vec<KeyValue>,
        transaction: Option<TxnProducer>,
        pending: PendingWrite,
        out: &mut Out,
    ) {
        let id = self.next_write;
        self.next_write += 1;
        self.writes.insert(id, (partition, pending));
        out.push(Effect::Write {
            id,
            partition,
            records,
            transaction,
        });
    }

    pub(crate) fn new_delete_batch(&mut self, batch: DeleteBatch) -> u64 {
        let id = self.next_batch;
        self.next_batch += 1;
        self.delete_batches.insert(id, batch);
        id
    }

    /// Stores the group's current metadata with nobody waiting on the outcome.
    pub(crate) fn store_group(&mut self, group_id: &str, out: &mut Out) {
        let Some(g) = self.group(group_id) else {
            return;
        };
        match records::group_record(group_id, &g.stored()) {
            Ok(rec) => {
                let p = self.partition_for(group_id);
                self.write(p, vec![rec], PendingWrite::Background, out);
            }
            Err(e) => warn!(group = group_id, error = %e, "cannot encode group metadata"),
        }
    }

    /// Starts taking over a partition: its groups answer COORDINATOR_LOAD_IN_PROGRESS
    /// until [`Coordinator::finish_load`].
    pub fn begin_load(&mut self, partition: i32) {
        self.shards.insert(
            partition,
            Shard {
                state: ShardState::Loading,
                groups: HashMap::new(),
            },
        );
    }

    /// Replays one record of the partition being loaded, in log order. Records we cannot
    /// read are skipped (and counted by the caller), as Kafka's loader does.
    pub fn load_record(
        &mut self,
        partition: i32,
        key: &Bytes,
        value: Option<&Bytes>,
        now: i64,
    ) -> Result<(), crate::GroupError> {
        let record = records::decode(key, value)?;
        let Some(shard) = self.shards.get_mut(&partition) else {
            return Ok(());
        };
        match record {
            Record::Offset {
                group,
                topic,
                partition: p,
                value,
            } => match value {
                Some(v) => {
                    let g = shard
                        .groups
                        .entry(group.clone())
                        .or_insert_with(|| Group::new(group, now));
                    g.offsets.entry(topic).or_default().insert(p, v);
                }
                None => {
                    if let Some(g) = shard.groups.get_mut(&group) {
                        if let Some(parts) = g.offsets.get_mut(&topic) {
                            parts.remove(&p);
                            if parts.is_empty() {
                                g.offsets.remove(&topic);
                            }
                        }
                    }
                }
            },
            Record::Group { group, value } => match value {
                Some(stored) => {
                    let g = shard
                        .groups
                        .entry(group.clone())
                        .or_insert_with(|| Group::new(group, now));
                    g.restore(stored, now);
                }
                None => {
                    shard.groups.remove(&group);
                }
            },
        }
        Ok(())
    }

    /// Ends a load: the partition's groups are served from now on.
    pub fn finish_load(&mut self, partition: i32, now: i64) {
        if let Some(shard) = self.shards.get_mut(&partition) {
            shard.state = ShardState::Active;
            shard.groups.retain(|_, g| {
                !(g.members.is_empty()
                    && g.offsets.is_empty()
                    && g.pending_txn.is_empty()
                    && g.generation == 0)
            });
            for g in shard.groups.values_mut() {
                for m in g.members.values_mut() {
                    m.last_heartbeat = now;
                }
            }
            debug!(
                partition,
                groups = shard.groups.len(),
                "group coordinator loaded partition"
            );
        }
    }

    /// Gives up a partition (leadership moved): its waiting requests are answered
    /// NOT_COORDINATOR so clients look the coordinator up again.
    pub fn unload(&mut self, partition: i32) -> Vec<Effect> {
        let mut out = Out::new();
        if let Some(shard) = self.shards.remove(&partition) {
            for g in shard.groups.into_values() {
                self.pending_total = self.pending_total.saturating_sub(g.pending.len());
                for m in g.members.into_values() {
                    if let Some(r) = m.awaiting_join {
                        out.push(crate::join::join_error(r, &m.id, ErrorCode::NotCoordinator));
                    }
                    if let Some(r) = m.awaiting_sync {
                        out.push(crate::membership::sync_error(r, ErrorCode::NotCoordinator));
                    }
                }
            }
        }
        out
    }

    /// Reports the outcome of an `Effect::Write`.
    pub fn write_done(
        &mut self,
        id: WriteId,
        result: Result<(), ErrorCode>,
        now: i64,
    ) -> Vec<Effect> {
        let mut out = Out::new();
        let Some((partition, pending)) = self.writes.remove(&id) else {
            return out;
        };
        // A write that completes after its shard moved away is not ours to apply.
        let owned = self.shards.contains_key(&partition);
        let result = if owned {
            result
        } else {
            Err(ErrorCode::NotCoordinator)
        };
        match pending {
            PendingWrite::Commit {
                reply,
                group,
                offsets,
                mut response,
            } => {
                match result {
                    Ok(()) => {
                        let g = self.group_entry(&group, now);
                        if let Some(g) = g {
                            for (topic, p, v) in offsets {
                                g.offsets.entry(topic).or_default().insert(p, v);
                            }
                        }
                    }
                    Err(code) => {
                        let code = commit_write_error(code);
                        for t in &mut response.topics {
                            for p in &mut t.partitions {
                                if p.error_code == ErrorCode::None.code() {
                                    p.error_code = code.code();
                                }
                            }
                        }
                    }
                }
                out.push(Effect::Reply(reply, Reply::Commit(response)));
            }
            PendingWrite::Assignment {
                group,
                generation,
                assignments,
            } => self.assignment_stored(&group, generation, assignments, result, now, &mut out),
            PendingWrite::StaticRejoin {
                reply,
                mut response,
                group,
                old_id,
            } => {
                if let Err(code) = result {
                    // Not stored: the old member id stands, as a restart would find it.
                    if let Some(g) = self.group_mut(&group) {
                        g.rename_member(&response.member_id, &old_id);
                    }
                    response = JoinGroupResponse {
                        error_code: commit_write_error(code).code(),
                        generation_id: -1,
                        member_id: response.member_id,
                        ..Default::default()
                    };
                }
                out.push(Effect::Reply(reply, Reply::Join(response)));
            }
            PendingWrite::DeleteGroups { batch, groups } => {
                if let Some(b) = self.delete_batches.get_mut(&batch) {
                    if let Err(code) = result {
                        for r in &mut b.response.results {
                            if groups.contains(&r.group_id) {
                                r.error_code = commit_write_error(code).code();
                            }
                        }
                    }
                    b.remaining = b.remaining.saturating_sub(1);
                    if b.remaining == 0 {
                        if let Some(b) = self.delete_batches.remove(&batch) {
                            out.push(Effect::Reply(b.reply, Reply::DeleteGroups(b.response)));
                        }
                    }
                }
            }
            PendingWrite::OffsetDelete {
                reply,
                mut response,
            } => {
                if let Err(code) = result {
                    response.error_code = commit_write_error(code).code();
                }
                out.push(Effect::Reply(reply, Reply::OffsetDelete(response)));
            }
            PendingWrite::TxnCommit {
                reply,
                group,
                producer_id,
                offsets,
                mut response,
            } => {
                match result {
                    Ok(()) => {
                        if let Some(g) = self.group_entry(&group, now) {
                            let pending = g.pending_txn.entry(producer_id).or_default();
                            for (topic, p, v) in offsets {
                                pending.insert((topic, p), v);
                            }
                        }
                    }
                    Err(code) => {
                        let code = match code {
                            // The producer was fenced: its epoch is stale in the log.
                            ErrorCode::InvalidProducerEpoch => ErrorCode::InvalidProducerEpoch,
                            other => commit_write_error(other),
                        };
                        for t in &mut response.topics {
                            for p in &mut t.partitions {
                                if p.error_code == ErrorCode::None.code() {
                                    p.error_code = code.code();
                                }
                            }
                        }
                    }
                }
                out.push(Effect::Reply(reply, Reply::TxnCommit(response)));
            }
            PendingWrite::Background => {
                if let Err(code) = result {
                    warn!(partition, error = ?code, "group metadata write failed");
                }
            }
        }
        out
    }

    /// The group, created (as a standalone-commit group) if it vanished meanwhile.
    pub(crate) fn group_entry(&mut self, id: &str, now: i64) -> Option<&mut Group> {
        let p = self.partition_for(id);
        let shard = self.shards.get_mut(&p)?;
        Some(
            shard
                .groups
                .entry(id.to_string())
                .or_insert_with(|| Group::new(id.to_string(), now)),
        )
    }

    /// Ids of the groups of the shards being served (not those still loading).
    fn active_group_ids(&self) -> Vec<String> {
        self.shards
            .values()
            .filter(|s| s.state == ShardState::Active)
            .flat_map(|s| s.groups.keys().cloned())
            .collect()
    }

    /// Time-driven work: join and sync phases that ran out, lapsed sessions and
    /// pending members, initial-delay extensions, and offset expiry.
    pub fn tick(&mut self, now: i64) -> Vec<Effect> {
        let mut out = Out::new();
        let ids = self.active_group_ids();
        for id in &ids {
            self.tick_group(id, now, &mut out);
        }
        if self.last_expiry_check == 0 {
            // The first check comes one interval after start, not at once.
            self.last_expiry_check = now;
        }
        if now - self.last_expiry_check >= self.config.offsets_retention_check_interval_ms {
            self.last_expiry_check = now;
            self.expire_offsets(now, &mut out);
        }
        out
    }

    fn tick_group(&mut self, id: &str, now: i64, out: &mut Out) {
        let new_member_timeout = self.config.new_member_join_timeout_ms;
        let initial = i64::from(self.config.initial_rebalance_delay_ms);
        let Some(g) = self.group_mut(id) else {
            return;
        };
        // Pending members that never came back.
        let before = g.pending.len();
        g.pending.retain(|_, deadline| *deadline > now);
        let lapsed_pending = before - g.pending.len();
        let expired: Vec<String> = g
            .members
            .values()
            .filter(|m| m.expired(now, new_member_timeout))
            .map(|m| m.id.clone())
            .collect();
        let state = g.state;
        self.pending_total = self.pending_total.saturating_sub(lapsed_pending);
        for member in expired {
            debug!(group = id, member = %member, "member session expired");
            self.remove_member(id, &member, now, out);
        }
        if lapsed_pending > 0 && state == GroupState::PreparingRebalance {
            self.try_complete_join(id, now, out);
        }
        let Some(g) = self.group_mut(id) else {
            return;
        };
        match g.state {
            GroupState::PreparingRebalance => {
                if let Some(delay) = g.initial_delay {
                    if now >= delay.deadline {
                        if g.new_member_added && delay.remaining_ms > 0 {
                            let step = initial.min(delay.remaining_ms);
                            g.initial_delay = Some(crate::group::InitialDelay {
                                deadline: now + step,
                                remaining_ms: delay.remaining_ms - step,
                            });
                            g.new_member_added = false;
                        } else {
                            g.initial_delay = None;
                            g.new_member_added = false;
                            self.complete_join(id, now, out);
                        }
                    }
                } else if now >= g.join_deadline {
                    self.complete_join(id, now, out);
                }
            }
            GroupState::CompletingRebalance => {
                if now >= g.sync_deadline && !g.pending_sync.is_empty() {
                    let late: Vec<String> = g.pending_sync.iter().cloned().collect();
                    for member in late {
                        debug!(group = id, member = %member, "member did not sync in time");
                        self.remove_member(id, &member, now, out);
                    }
                }
            }
            GroupState::Empty => {
                // A group created only by members that never joined holds nothing.
                if g.members.is_empty()
                    && g.pending.is_empty()
                    && g.offsets.is_empty()
                    && g.pending_txn.is_empty()
                    && g.generation == 0
                {
                    let p = self.partition_for(id);
                    if let Some(s) = self.shards.get_mut(&p) {
                        s.groups.remove(id);
                    }
                }
            }
            GroupState::Stable | GroupState::Dead => {}
        }
    }

    /// Kafka's offset expiry (KIP-211): a consumer group's offsets expire once the
    /// group has been empty for the retention period; a group used only for
    /// standalone commits loses each offset that long after it was committed (or at its
    /// explicit expire timestamp); a live consumer group loses the offsets of topics it
    /// no longer subscribes to. An empty group left with no offsets is deleted.
    fn expire_offsets(&mut self, now: i64, out: &mut Out) {
        let retention = self.config.offsets_retention_ms;
        let ids = self.active_group_ids();
        for id in ids {
            let Some(g) = self.group_mut(&id) else {
                continue;
            };
            let by_commit_time = |o: &CommittedOffset| match o.expire_timestamp {
                Some(t) => now >= t,
                None => now >= o.commit_timestamp + retention,
            };
            let mut expired: Vec<(String, i32)> = Vec::new();
            match (g.state, g.protocol_type.is_some()) {
                (GroupState::Empty, true) if now >= g.state_since + retention => {
                    for (t, parts) in &g.offsets {
                        expired.extend(parts.keys().map(|p| (t.clone(), *p)));
                    }
                }
                (GroupState::Empty, false) => {
                    for (t, parts) in &g.offsets {
                        expired.extend(
                            parts
                                .iter()
                                .filter(|(_, o)| by_commit_time(o))
                                .map(|(p, _)| (t.clone(), *p)),
                        );
                    }
                }
                (GroupState::Stable, true) => {
                    if let Some(subscribed) = g.subscribed_topics() {
                        for (t, parts) in &g.offsets {
                            if !subscribed.contains(t) {
                                expired.extend(
                                    parts
                                        .iter()
                                        .filter(|(_, o)| by_commit_time(o))
                                        .map(|(p, _)| (t.clone(), *p)),
                                );
                            }
                        }
                    }
                }
                _ => {}
            }
            let mut records = Vec::new();
            for (t, p) in &expired {
                if let Some(parts) = g.offsets.get_mut(t) {
                    parts.remove(p);
                    if parts.is_empty() {
                        g.offsets.remove(t);
                    }
                }
                match records::offset_tombstone(&id, t, *p) {
                    Ok(r) => records.push(r),
                    Err(e) => warn!(group = %id, error = %e, "cannot encode tombstone"),
                }
            }
            let delete_group = g.state == GroupState::Empty
                && g.offsets.is_empty()
                && g.pending.is_empty()
                && g.pending_txn.is_empty()
                && (g.generation > 0 || !expired.is_empty());
            if delete_group {
                if g.generation > 0 || g.protocol_type.is_some() {
                    if let Ok(r) = records::group_tombstone(&id) {
                        records.push(r);
                    }
                }
                let p = self.partition_for(&id);
                if let Some(s) = self.shards.get_mut(&p) {
                    s.groups.remove(&id);
                }
            }
            if !expired.is_empty() {
                debug!(group = %id, expired = expired.len(), deleted = delete_group, "offsets expired");
            }
            if !records.is_empty() {
                let p = self.partition_for(&id);
                self.write(p, records, PendingWrite::Background, out);
            }
        }
    }

    /// Number of groups served (for tests and metrics).
    pub fn group_count(&self) -> usize {
        self.shards.values().map(|s| s.groups.len()).sum()
    }

    /// Every committed offset of the groups in loaded shards, as (group, topic,
    /// partition, offset): what consumer-lag metrics are computed from.
    pub fn committed_offsets(&self) -> Vec<(String, String, i32, i64)> {
        let mut out = Vec::new();
        for shard in self.shards.values() {
            if !matches!(shard.state, ShardState::Active) {
                continue;
            }
            for group in shard.groups.values() {
                for (topic, partitions) in &group.offsets {
                    for (partition, committed) in partitions {
                        out.push((
                            group.id.clone(),
                            topic.clone(),
                            *partition,
                            committed.offset,
                        ));
                    }
                }
            }
        }
        out
    }

    /// Pending (MEMBER_ID_REQUIRED) members across all groups.
    pub fn pending_members(&self) -> usize {
        self.pending_total
    }
}

/// How a failed offsets-topic write is reported to the client (Kafka maps storage and
/// replication errors to retriable coordinator errors).
pub(crate) fn commit_write_error(code: ErrorCode) -> ErrorCode {
    match code {
        ErrorCode::NotCoordinator | ErrorCode::NotLeaderOrFollower => ErrorCode::NotCoordinator,
        ErrorCode::MessageTooLarge
        | ErrorCode::RecordListTooLarge
        | ErrorCode::InvalidFetchSize => ErrorCode::InvalidCommitOffsetSize,
        _ => ErrorCode::CoordinatorNotAvailable,
    }
}
