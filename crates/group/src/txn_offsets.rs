//! Offsets committed inside a transaction (KIP-98, KIP-447): TxnOffsetCommit writes them
//! to `__consumer_offsets` as part of the producer's transaction, and they become the
//! group's committed offsets only when the transaction's COMMIT marker is written there
//! (an ABORT drops them). Until then OffsetFetch with `require_stable` answers
//! UNSTABLE_OFFSET_COMMIT for those partitions, so a consumer taking over does not start
//! from offsets that may still move.

use sluice_protocol::error::ErrorCode;
use sluice_protocol::messages::txn_offset_commit_response::{
    TxnOffsetCommitResponsePartition, TxnOffsetCommitResponseTopic,
};
use sluice_protocol::messages::{TxnOffsetCommitRequest, TxnOffsetCommitResponse};

use bytes::Bytes;

use crate::coordinator::{Coordinator, Effect, Lookup, Out, PendingWrite, Reply, TxnProducer};
use crate::group::{Group, GroupState};
use crate::offsets::Staged;
use crate::records::{self, CommittedOffset, Record};
use crate::ReplyId;

fn response_with(req: &TxnOffsetCommitRequest, code: ErrorCode) -> TxnOffsetCommitResponse {
    TxnOffsetCommitResponse {
        topics: req
            .topics
            .iter()
            .map(|t| TxnOffsetCommitResponseTopic {
                name: t.name.clone(),
                partitions: t
                    .partitions
                    .iter()
                    .map(|p| TxnOffsetCommitResponsePartition {
                        partition_index: p.partition_index,
                        error_code: code.code(),
                    })
                    .collect(),
            })
            .collect(),
        ..Default::default()
    }
}

impl Coordinator {
    /// TxnOffsetCommit: answered once the offsets are written as part of the producer's
    /// transaction (`Reply::TxnCommit`). `partitions` says whether a topic partition
    /// exists.
    pub fn txn_offset_commit(
        &mut self,
        now: i64,
        req: TxnOffsetCommitRequest,
        partitions: &dyn Fn(&str, i32) -> bool,
        reply: ReplyId,
    ) -> Vec<Effect> {
        let mut out = Out::new();
        let fail = |out: &mut Out, code: ErrorCode| {
            out.push(Effect::Reply(
                reply,
                Reply::TxnCommit(response_with(&req, code)),
            ));
        };
        if req.group_id.is_empty() {
            fail(&mut out, ErrorCode::InvalidGroupId);
            return out;
        }
        if let Lookup::Error(code) = self.lookup(&req.group_id) {
            fail(&mut out, code);
            return out;
        }
        if let Err(code) = self.validate_txn_commit(&req, now) {
            fail(&mut out, code);
            return out;
        }
        let mut response = response_with(&req, ErrorCode::None);
        let mut staged = Staged::default();
        for (t, rt) in req.topics.iter().zip(response.topics.iter_mut()) {
            for (p, rp) in t.partitions.iter().zip(rt.partitions.iter_mut()) {
                let value = CommittedOffset {
                    offset: p.committed_offset,
                    leader_epoch: p.committed_leader_epoch,
                    metadata: p.committed_metadata.clone().unwrap_or_default(),
                    commit_timestamp: now,
                    expire_timestamp: None,
                };
                let code = self.stage(
                    &req.group_id,
                    &t.name,
                    p.partition_index,
                    value,
                    partitions,
                    &mut staged,
                );
                rp.error_code = code.code();
            }
        }
        if staged.records.is_empty() {
            out.push(Effect::Reply(reply, Reply::TxnCommit(response)));
            return out;
        }
        let partition = self.partition_for(&req.group_id);
        let producer = TxnProducer {
            producer_id: req.producer_id,
            producer_epoch: req.producer_epoch,
        };
        self.write_as(
            partition,
            staged.records,
            Some(producer),
            PendingWrite::TxnCommit {
                reply,
                group: req.group_id.clone(),
                producer_id: req.producer_id,
                offsets: staged.offsets,
                response,
            },
            &mut out,
        );
        out
    }

    /// Kafka's checks: a member id (v3+) must be a member, a generation (v3+, >= 0) the
    /// group's current one; without them (v0-2, or a producer outside the group) the
    /// commit is accepted, creating the group if needed.
    fn validate_txn_commit(
        &mut self,
        req: &TxnOffsetCommitRequest,
        now: i64,
    ) -> Result<(), ErrorCode> {
        let Some(g) = self.group_mut(&req.group_id) else {
            if req.generation_id < 0 && req.member_id.is_empty() {
                self.group_entry(&req.group_id, now);
                return Ok(());
            }
            return Err(ErrorCode::IllegalGeneration);
        };
        if g.state == GroupState::Dead {
            return Err(ErrorCode::CoordinatorNotAvailable);
        }
        if let Some(instance) = &req.group_instance_id {
            if g.static_members
                .get(instance)
                .is_some_and(|m| *m != req.member_id)
            {
                return Err(ErrorCode::FencedInstanceId);
            }
        }
        if !req.member_id.is_empty() && !g.members.contains_key(&req.member_id) {
            return Err(ErrorCode::UnknownMemberId);
        }
        if req.generation_id >= 0 && req.generation_id != g.generation {
            return Err(ErrorCode::IllegalGeneration);
        }
        Ok(())
    }

    /// A transaction marker of `producer_id` is committed in offsets partition
    /// `partition`: its pending offsets there become committed (COMMIT) or are dropped
    /// (ABORT). Also used while loading, in log order.
    pub fn complete_txn(&mut self, partition: i32, producer_id: i64, commit: bool) {
        let Some(shard) = self.shards.get_mut(&partition) else {
            return;
        };
        for g in shard.groups.values_mut() {
            let Some(pending) = g.pending_txn.remove(&producer_id) else {
                continue;
            };
            if commit {
                for ((topic, p), v) in pending {
                    g.offsets.entry(topic).or_default().insert(p, v);
                }
            }
        }
    }

    /// Replays an offset commit written by a transaction (loading).
    pub fn load_txn_record(
        &mut self,
        partition: i32,
        key: &Bytes,
        value: Option<&Bytes>,
        producer_id: i64,
        now: i64,
    ) -> Result<(), crate::GroupError> {
        let record = records::decode(key, value)?;
        let Some(shard) = self.shards.get_mut(&partition) else {
            return Ok(());
        };
        if let Record::Offset {
            group,
            topic,
            partition: p,
            value: Some(v),
        } = record
        {
            shard
                .groups
                .entry(group.clone())
                .or_insert_with(|| Group::new(group, now))
                .pending_txn
                .entry(producer_id)
                .or_default()
                .insert((topic, p), v);
        }
        Ok(())
    }
}

impl Group {
    /// Whether an undecided transaction holds an offset for `topic`-`partition`.
    pub(crate) fn has_pending_txn_offset(&self, topic: &str, partition: i32) -> bool {
        self.pending_txn
            .values()
            .any(|offsets| offsets.contains_key(&(topic.to_string(), partition)))
    }
}
