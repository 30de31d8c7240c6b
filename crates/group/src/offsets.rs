//! OffsetCommit, OffsetFetch and OffsetDelete: committed offsets, for group members
//! and for standalone consumers that use a group id without joining (generation -1,
//! empty member id, as kcat, Flink and Spark do).

use sluice_protocol::error::ErrorCode;
use sluice_protocol::messages::offset_commit_response::{
    OffsetCommitResponsePartition, OffsetCommitResponseTopic,
};
use sluice_protocol::messages::offset_delete_response::{
    OffsetDeleteResponsePartition, OffsetDeleteResponseTopic,
};
use sluice_protocol::messages::offset_fetch_response::{
    OffsetFetchResponseGroup, OffsetFetchResponsePartition, OffsetFetchResponsePartitions,
    OffsetFetchResponseTopic, OffsetFetchResponseTopics,
};
use sluice_protocol::messages::{
    OffsetCommitRequest, OffsetCommitResponse, OffsetDeleteRequest, OffsetDeleteResponse,
    OffsetFetchRequest, OffsetFetchResponse,
};

use crate::coordinator::{Coordinator, Effect, Lookup, Out, PendingWrite, Reply};
use crate::group::{Group, GroupState};
use crate::records::{self, CommittedOffset, KeyValue};
use crate::ReplyId;

/// One requested partition's committed offset, before it takes the shape of the
/// response version (one group, v0-7, or several, v8+).
struct FetchedPartition {
    partition: i32,
    offset: i64,
    leader_epoch: i32,
    metadata: Option<String>,
    error: ErrorCode,
}

impl FetchedPartition {
    fn none(partition: i32, error: ErrorCode) -> Self {
        Self {
            partition,
            offset: -1,
            leader_epoch: -1,
            metadata: Some(String::new()),
            error,
        }
    }
}

impl From<FetchedPartition> for OffsetFetchResponsePartition {
    fn from(f: FetchedPartition) -> Self {
        Self {
            partition_index: f.partition,
            committed_offset: f.offset,
            committed_leader_epoch: f.leader_epoch,
            metadata: f.metadata,
            error_code: f.error.code(),
        }
    }
}

impl From<FetchedPartition> for OffsetFetchResponsePartitions {
    fn from(f: FetchedPartition) -> Self {
        Self {
            partition_index: f.partition,
            committed_offset: f.offset,
            committed_leader_epoch: f.leader_epoch,
            metadata: f.metadata,
            error_code: f.error.code(),
        }
    }
}

fn commit_response_with(req: &OffsetCommitRequest, code: ErrorCode) -> OffsetCommitResponse {
    OffsetCommitResponse {
        topics: req
            .topics
            .iter()
            .map(|t| OffsetCommitResponseTopic {
                name: t.name.clone(),
                partitions: t
                    .partitions
                    .iter()
                    .map(|p| OffsetCommitResponsePartition {
                        partition_index: p.partition_index,
                        error_code: code.code(),
                    })
                    .collect(),
            })
            .collect(),
        ..Default::default()
    }
}

/// Offsets of one commit request that passed their checks: their records, and the
/// offsets to apply once written.
#[derive(Default)]
pub(crate) struct Staged {
    pub records: Vec<KeyValue>,
    pub offsets: Vec<(String, i32, CommittedOffset)>,
}

impl Coordinator {
    /// Checks one partition's commit (the partition exists, the metadata is not too
    /// long) and stages its record; returns the partition's code (NONE when staged).
    pub(crate) fn stage(
        &self,
        group: &str,
        topic: &str,
        partition: i32,
        value: CommittedOffset,
        partitions: &dyn Fn(&str, i32) -> bool,
        staged: &mut Staged,
    ) -> ErrorCode {
        if !partitions(topic, partition) {
            return ErrorCode::UnknownTopicOrPartition;
        }
        if value.metadata.len() > self.config.offset_metadata_max_bytes {
            return ErrorCode::OffsetMetadataTooLarge;
        }
        match records::offset_record(group, topic, partition, &value) {
            Ok(rec) => {
                staged.records.push(rec);
                staged.offsets.push((topic.to_string(), partition, value));
                ErrorCode::None
            }
            Err(_) => ErrorCode::OffsetMetadataTooLarge,
        }
    }

    /// OffsetCommit: answered once the offsets are written (`Reply::Commit`).
    /// `partitions` says whether a topic partition exists, as the broker's metadata has it.
    pub fn offset_commit(
        &mut self,
        now: i64,
        req: OffsetCommitRequest,
        version: i16,
        partitions: &dyn Fn(&str, i32) -> bool,
        reply: ReplyId,
    ) -> Vec<Effect> {
        let mut out = Out::new();
        let fail = |out: &mut Out, code: ErrorCode| {
            out.push(Effect::Reply(
                reply,
                Reply::Commit(commit_response_with(&req, code)),
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
        if let Err(code) = self.validate_commit(&req, version, now) {
            fail(&mut out, code);
            return out;
        }
        let mut response = commit_response_with(&req, ErrorCode::None);
        let mut staged = Staged::default();
        for (t, rt) in req.topics.iter().zip(response.topics.iter_mut()) {
            for (p, rp) in t.partitions.iter().zip(rt.partitions.iter_mut()) {
                // v1 carries a commit timestamp per partition (-1: now); v2-4 a
                // retention time for the whole request, which Kafka turns into an
                // explicit expire timestamp.
                let commit_timestamp = if version == 1 && p.commit_timestamp >= 0 {
                    p.commit_timestamp
                } else {
                    now
                };
                let expire_timestamp = match version {
                    1 if p.commit_timestamp >= 0 => {
                        Some(p.commit_timestamp + self.config.offsets_retention_ms)
                    }
                    2..=4 if req.retention_time_ms >= 0 => {
                        Some(commit_timestamp.saturating_add(req.retention_time_ms))
                    }
                    _ => None,
                };
                let value = CommittedOffset {
                    offset: p.committed_offset,
                    leader_epoch: p.committed_leader_epoch,
                    metadata: p.committed_metadata.clone().unwrap_or_default(),
                    commit_timestamp,
                    expire_timestamp,
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
            out.push(Effect::Reply(reply, Reply::Commit(response)));
            return out;
        }
        let partition = self.partition_for(&req.group_id);
        self.write(
            partition,
            staged.records,
            PendingWrite::Commit {
                reply,
                group: req.group_id.clone(),
                offsets: staged.offsets,
                response,
            },
            &mut out,
        );
        out
    }

    /// Who may commit: members of the current generation; anyone to a group nobody
    /// manages (generation -1, empty member id), creating it as a standalone group.
    fn validate_commit(
        &mut self,
        req: &OffsetCommitRequest,
        version: i16,
        now: i64,
    ) -> Result<(), ErrorCode> {
        let generation = req.generation_id_or_member_epoch;
        let Some(g) = self.group_mut(&req.group_id) else {
            if generation < 0 {
                self.group_entry(&req.group_id, now);
                return Ok(());
            }
            return Err(if version >= 9 {
                ErrorCode::GroupIdNotFound
            } else {
                ErrorCode::IllegalGeneration
            });
        };
        match g.state {
            GroupState::Dead => return Err(ErrorCode::CoordinatorNotAvailable),
            GroupState::Empty if generation < 0 => return Ok(()),
            _ => {}
        }
        if let Some(instance) = &req.group_instance_id {
            match g.static_members.get(instance) {
                Some(m) if *m != req.member_id => return Err(ErrorCode::FencedInstanceId),
                None => return Err(ErrorCode::UnknownMemberId),
                _ => {}
            }
        }
        if generation < 0 && req.member_id.is_empty() {
            // The group is managed by the coordinator: only members commit to it.
            return Err(ErrorCode::UnknownMemberId);
        }
        let Some(m) = g.members.get_mut(&req.member_id) else {
            return Err(ErrorCode::UnknownMemberId);
        };
        if generation != g.generation {
            return Err(ErrorCode::IllegalGeneration);
        }
        // A commit from a member is as good as a heartbeat.
        m.last_heartbeat = now;
        if g.state == GroupState::CompletingRebalance {
            return Err(ErrorCode::RebalanceInProgress);
        }
        Ok(())
    }

    /// OffsetFetch, both shapes: v0-7 one group, v8+ several.
    pub fn offset_fetch(&self, req: OffsetFetchRequest, version: i16) -> OffsetFetchResponse {
        let mut resp = OffsetFetchResponse::default();
        if version >= 8 {
            for group in req.groups {
                let topics = group.topics.map(|ts| {
                    ts.into_iter()
                        .map(|t| (t.name, t.partition_indexes))
                        .collect()
                });
                let (code, fetched) = self.fetch_group(&group.group_id, topics, req.require_stable);
                resp.groups.push(OffsetFetchResponseGroup {
                    group_id: group.group_id,
                    error_code: code.code(),
                    topics: fetched
                        .into_iter()
                        .map(|(name, parts)| OffsetFetchResponseTopics {
                            name,
                            partitions: parts.into_iter().map(Into::into).collect(),
                        })
                        .collect(),
                });
            }
            return resp;
        }
        let requested: Option<Vec<(String, Vec<i32>)>> = req.topics.map(|ts| {
            ts.into_iter()
                .map(|t| (t.name, t.partition_indexes))
                .collect()
        });
        // v0-1 have no group-level error: a group error is repeated per partition.
        let partitions_only = version < 2;
        let (code, fetched) =
            self.fetch_group(&req.group_id, requested.clone(), req.require_stable);
        let fetched = if code != ErrorCode::None && partitions_only {
            requested
                .unwrap_or_default()
                .into_iter()
                .map(|(name, parts)| {
                    (
                        name,
                        parts
                            .into_iter()
                            .map(|p| FetchedPartition::none(p, code))
                            .collect(),
                    )
                })
                .collect()
        } else {
            fetched
        };
        if !partitions_only {
            resp.error_code = code.code();
        }
        resp.topics = fetched
            .into_iter()
            .map(|(name, parts)| OffsetFetchResponseTopic {
                name,
                partitions: parts.into_iter().map(Into::into).collect(),
            })
            .collect();
        resp
    }

    /// One group's committed offsets for the requested partitions (`None`: all of them).
    /// Partitions without a commit answer offset -1, as Kafka does. With
    /// `require_stable` (v7+, KIP-447), a partition whose offset an undecided
    /// transaction may still change answers UNSTABLE_OFFSET_COMMIT.
    fn fetch_group(
        &self,
        group_id: &str,
        requested: Option<Vec<(String, Vec<i32>)>>,
        require_stable: bool,
    ) -> (ErrorCode, Vec<(String, Vec<FetchedPartition>)>) {
        if let Lookup::Error(code) = self.lookup(group_id) {
            return (code, Vec::new());
        }
        let group = self.group(group_id);
        let value = |g: Option<&Group>, topic: &str, p: i32| -> FetchedPartition {
            if require_stable && g.is_some_and(|g| g.has_pending_txn_offset(topic, p)) {
                return FetchedPartition::none(p, ErrorCode::UnstableOffsetCommit);
            }
            match g
                .and_then(|g| g.offsets.get(topic))
                .and_then(|ps| ps.get(&p))
            {
                Some(o) => FetchedPartition {
                    partition: p,
                    offset: o.offset,
                    leader_epoch: o.leader_epoch,
                    metadata: Some(o.metadata.clone()),
                    error: ErrorCode::None,
                },
                None => FetchedPartition::none(p, ErrorCode::None),
            }
        };
        let fetched = match requested {
            Some(topics) => topics
                .into_iter()
                .map(|(name, parts)| {
                    let v = parts.into_iter().map(|p| value(group, &name, p)).collect();
                    (name, v)
                })
                .collect(),
            None => group
                .map(|g| {
                    g.offsets
                        .iter()
                        .map(|(name, parts)| {
                            (
                                name.clone(),
                                parts.keys().map(|p| value(Some(g), name, *p)).collect(),
                            )
                        })
                        .collect()
                })
                .unwrap_or_default(),
        };
        (ErrorCode::None, fetched)
    }

    /// OffsetDelete: removes committed offsets of topics the group does not consume.
    pub fn offset_delete(&mut self, req: OffsetDeleteRequest, reply: ReplyId) -> Vec<Effect> {
        let mut out = Out::new();
        let mut response = OffsetDeleteResponse::default();
        let answer = |out: &mut Out, response: OffsetDeleteResponse| {
            out.push(Effect::Reply(reply, Reply::OffsetDelete(response)));
        };
        if let Lookup::Error(code) = self.lookup(&req.group_id) {
            response.error_code = code.code();
            answer(&mut out, response);
            return out;
        }
        let Some(g) = self.group_mut(&req.group_id) else {
            response.error_code = ErrorCode::GroupIdNotFound.code();
            answer(&mut out, response);
            return out;
        };
        if g.state == GroupState::Dead {
            response.error_code = ErrorCode::GroupIdNotFound.code();
            answer(&mut out, response);
            return out;
        }
        // A group with members keeps the offsets of topics it still reads; an active
        // group whose subscriptions cannot be read (not a consumer group) is refused
        // as a whole (NON_EMPTY_GROUP), as Kafka does.
        let subscribed = if g.state == GroupState::Empty {
            Default::default()
        } else {
            match g.subscribed_topics() {
                Some(s) => s,
                None => {
                    response.error_code = ErrorCode::NonEmptyGroup.code();
                    answer(&mut out, response);
                    return out;
                }
            }
        };
        let mut records = Vec::new();
        for t in &req.topics {
            let in_use = subscribed.contains(&t.name);
            let mut parts = Vec::new();
            for p in &t.partitions {
                let code = if in_use {
                    ErrorCode::GroupSubscribedToTopic
                } else {
                    if let Some(ps) = g.offsets.get_mut(&t.name) {
                        if ps.remove(&p.partition_index).is_some() {
                            if let Ok(r) =
                                records::offset_tombstone(&req.group_id, &t.name, p.partition_index)
                            {
                                records.push(r);
                            }
                        }
                        if ps.is_empty() {
                            g.offsets.remove(&t.name);
                        }
                    }
                    ErrorCode::None
                };
                parts.push(OffsetDeleteResponsePartition {
                    partition_index: p.partition_index,
                    error_code: code.code(),
                });
            }
            response.topics.push(OffsetDeleteResponseTopic {
                name: t.name.clone(),
                partitions: parts,
            });
        }
        if records.is_empty() {
            answer(&mut out, response);
            return out;
        }
        let partition = self.partition_for(&req.group_id);
        self.write(
            partition,
            records,
            PendingWrite::OffsetDelete { reply, response },
            &mut out,
        );
        out
    }
}
