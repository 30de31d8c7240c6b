//! Committing, fetching, deleting and expiring offsets.

use bytes::Bytes;
use sluice_protocol::error::ErrorCode;
use sluice_protocol::messages::offset_commit_request::{
    OffsetCommitRequestPartition, OffsetCommitRequestTopic,
};
use sluice_protocol::messages::offset_delete_request::{
    OffsetDeleteRequestPartition, OffsetDeleteRequestTopic,
};
use sluice_protocol::messages::offset_fetch_request::{
    OffsetFetchRequestGroup, OffsetFetchRequestTopic,
};
use sluice_protocol::messages::{
    OffsetCommitRequest, OffsetCommitResponse, OffsetDeleteRequest, OffsetDeleteResponse,
    OffsetFetchRequest,
};

use super::{config, Harness};
use crate::{GroupConfig, Reply};

fn commit_req(
    group: &str,
    generation: i32,
    member: &str,
    parts: &[(&str, i32, i64)],
) -> OffsetCommitRequest {
    OffsetCommitRequest {
        group_id: group.into(),
        generation_id_or_member_epoch: generation,
        member_id: member.into(),
        group_instance_id: None,
        retention_time_ms: -1,
        topics: parts
            .iter()
            .map(|(t, p, o)| OffsetCommitRequestTopic {
                name: t.to_string(),
                partitions: vec![OffsetCommitRequestPartition {
                    partition_index: *p,
                    committed_offset: *o,
                    committed_leader_epoch: 4,
                    commit_timestamp: -1,
                    committed_metadata: Some("meta".into()),
                }],
            })
            .collect(),
    }
}

/// Topics t (3 partitions) and u (1) exist.
fn exists(topic: &str, p: i32) -> bool {
    matches!((topic, p), ("t", 0..=2) | ("u", 0))
}

impl Harness {
    fn commit(&mut self, req: OffsetCommitRequest, version: i16) -> Option<OffsetCommitResponse> {
        let id = self.reply_id();
        let e = self.c.offset_commit(self.now, req, version, &exists, id);
        self.run(e);
        match self.replies.remove(&id) {
            Some(Reply::Commit(r)) => Some(r),
            None => None,
            other => panic!("unexpected {other:?}"),
        }
    }

    fn codes(r: &OffsetCommitResponse) -> Vec<i16> {
        r.topics
            .iter()
            .flat_map(|t| t.partitions.iter().map(|p| p.error_code))
            .collect()
    }

    /// (offset, leader epoch) of one committed partition via OffsetFetch v7.
    fn fetched(&self, group: &str, topic: &str, p: i32) -> (i64, i32) {
        let r = self.c.offset_fetch(
            OffsetFetchRequest {
                group_id: group.into(),
                topics: Some(vec![OffsetFetchRequestTopic {
                    name: topic.into(),
                    partition_indexes: vec![p],
                }]),
                groups: vec![],
                require_stable: false,
            },
            7,
        );
        assert_eq!(r.error_code, 0);
        let part = &r.topics[0].partitions[0];
        (part.committed_offset, part.committed_leader_epoch)
    }

    fn offset_delete(&mut self, group: &str, topic: &str) -> OffsetDeleteResponse {
        let id = self.reply_id();
        let e = self.c.offset_delete(
            OffsetDeleteRequest {
                group_id: group.into(),
                topics: vec![OffsetDeleteRequestTopic {
                    name: topic.into(),
                    partitions: vec![OffsetDeleteRequestPartition { partition_index: 0 }],
                }],
            },
            id,
        );
        self.run(e);
        match self.replies.remove(&id) {
            Some(Reply::OffsetDelete(r)) => r,
            other => panic!("unexpected {other:?}"),
        }
    }
}

#[test]
fn standalone_commits_need_no_membership() {
    let mut h = Harness::new(config());
    assert_eq!(h.fetched("solo", "t", 0), (-1, -1), "nothing committed yet");
    let r = h
        .commit(commit_req("solo", -1, "", &[("t", 0, 42), ("t", 1, 7)]), 8)
        .unwrap();
    assert_eq!(Harness::codes(&r), vec![0, 0]);
    assert_eq!(
        h.fetched("solo", "t", 0),
        (42, 4),
        "offset and KIP-320 leader epoch"
    );
    assert_eq!(h.fetched("solo", "t", 1), (7, 4));
    // v8 fetch of several groups at once, all partitions of one.
    let r = h.c.offset_fetch(
        OffsetFetchRequest {
            groups: vec![
                OffsetFetchRequestGroup {
                    group_id: "solo".into(),
                    member_id: None,
                    member_epoch: -1,
                    topics: None,
                },
                OffsetFetchRequestGroup {
                    group_id: "none".into(),
                    member_id: None,
                    member_epoch: -1,
                    topics: None,
                },
            ],
            ..Default::default()
        },
        8,
    );
    assert_eq!(r.groups.len(), 2);
    let parts: Vec<(i32, i64)> = r.groups[0].topics[0]
        .partitions
        .iter()
        .map(|p| (p.partition_index, p.committed_offset))
        .collect();
    assert_eq!(parts, vec![(0, 42), (1, 7)]);
    assert!(r.groups[1].topics.is_empty());
}

#[test]
fn commit_errors_per_partition_and_per_request() {
    let mut h = Harness::new(config());
    let mut req = commit_req(
        "solo",
        -1,
        "",
        &[("t", 0, 1), ("t", 9, 1), ("nope", 0, 1), ("u", 0, 5)],
    );
    req.topics[3].partitions[0].committed_metadata = Some("x".repeat(5000));
    let r = h.commit(req, 8).unwrap();
    use ErrorCode::*;
    assert_eq!(
        Harness::codes(&r),
        vec![
            0,
            UnknownTopicOrPartition.code(),
            UnknownTopicOrPartition.code(),
            OffsetMetadataTooLarge.code()
        ]
    );
    assert_eq!(h.fetched("solo", "u", 0), (-1, -1));
    // A group nobody created, with a generation: Kafka's answers by version.
    let r = h
        .commit(commit_req("ghost", 3, "m", &[("t", 0, 1)]), 8)
        .unwrap();
    assert_eq!(Harness::codes(&r), vec![IllegalGeneration.code()]);
    let r = h
        .commit(commit_req("ghost", 3, "m", &[("t", 0, 1)]), 9)
        .unwrap();
    assert_eq!(Harness::codes(&r), vec![GroupIdNotFound.code()]);
    let r = h.commit(commit_req("", -1, "", &[("t", 0, 1)]), 8).unwrap();
    assert_eq!(Harness::codes(&r), vec![InvalidGroupId.code()]);
}

#[test]
fn members_commit_with_their_generation_only() {
    let mut h = Harness::new(config());
    let (members, generation) = h.stable_group("g", 2);
    let ok = h
        .commit(commit_req("g", generation, &members[0], &[("t", 0, 10)]), 8)
        .unwrap();
    assert_eq!(Harness::codes(&ok), vec![0]);
    use ErrorCode::*;
    for (gen, member, code) in [
        (generation - 1, members[0].as_str(), IllegalGeneration),
        (generation, "ghost", UnknownMemberId),
        (-1, "", UnknownMemberId),
    ] {
        let r = h
            .commit(commit_req("g", gen, member, &[("t", 0, 99)]), 8)
            .unwrap();
        assert_eq!(Harness::codes(&r), vec![code.code()], "{gen} {member}");
    }
    assert_eq!(
        h.fetched("g", "t", 0).0,
        10,
        "refused commits change nothing"
    );
    // During the sync phase commits are refused with REBALANCE_IN_PROGRESS.
    let j0 = h.join(Harness::join_req("g", &members[0], &["range"]), 5);
    let j1 = h.join(Harness::join_req("g", &members[1], &["range"]), 5);
    let g2 = h.join_reply(j0).unwrap().generation_id;
    h.join_reply(j1).unwrap();
    let r = h
        .commit(commit_req("g", g2, &members[0], &[("t", 0, 11)]), 8)
        .unwrap();
    assert_eq!(Harness::codes(&r), vec![RebalanceInProgress.code()]);
}

#[test]
fn a_failed_write_is_never_visible() {
    let mut h = Harness::new(config());
    h.hold_writes = true;
    assert!(h
        .commit(commit_req("solo", -1, "", &[("t", 0, 5)]), 8)
        .is_none());
    let (wid, _, records) = h.held.pop().unwrap();
    assert_eq!(records.len(), 1);
    assert_eq!(
        h.fetched("solo", "t", 0).0,
        -1,
        "pending commits are not visible"
    );
    let e =
        h.c.write_done(wid, Err(ErrorCode::KafkaStorageError), h.now);
    h.run(e);
    let r = h.replies.drain().next().unwrap().1;
    match r {
        Reply::Commit(r) => assert_eq!(
            Harness::codes(&r),
            vec![ErrorCode::CoordinatorNotAvailable.code()]
        ),
        other => panic!("{other:?}"),
    }
    assert_eq!(h.fetched("solo", "t", 0).0, -1);
}

#[test]
fn offsets_expire_by_kafka_rules() {
    let day = 24 * 3600 * 1000;
    let mut h = Harness::new(GroupConfig {
        offsets_retention_ms: day,
        offsets_retention_check_interval_ms: 1000,
        ..config()
    });
    h.commit(commit_req("solo", -1, "", &[("t", 0, 5)]), 8)
        .unwrap();
    // A consumer group that goes empty keeps its offsets for the retention period.
    let (members, generation) = h.stable_group("g", 1);
    h.commit(commit_req("g", generation, &members[0], &[("t", 1, 6)]), 8)
        .unwrap();
    h.advance(day / 2);
    // Heartbeat never sent: the member expired long ago; the group has been empty since.
    assert_eq!(h.state("g"), Some(crate::GroupState::Empty));
    assert_eq!(h.fetched("g", "t", 1).0, 6);
    h.advance(day / 2 + 1000);
    assert_eq!(h.fetched("solo", "t", 0).0, -1, "standalone commit expired");
    assert!(h.c.group("solo").is_none());
    h.advance(day / 2);
    assert_eq!(
        h.fetched("g", "t", 1).0,
        -1,
        "empty group's offsets expired"
    );
    assert!(h.c.group("g").is_none(), "and the group is gone");
    // Tombstones were written for both.
    let tombstones = h.log.iter().filter(|(_, kv)| kv.value.is_none()).count();
    assert_eq!(tombstones, 3, "two offsets and the group");
}

/// ConsumerProtocolSubscription v0 for the given topics.
fn subscription(topics: &[&str]) -> Bytes {
    let mut b = vec![0u8, 0];
    b.extend_from_slice(&(topics.len() as i32).to_be_bytes());
    for t in topics {
        b.extend_from_slice(&(t.len() as i16).to_be_bytes());
        b.extend_from_slice(t.as_bytes());
    }
    b.extend_from_slice(&[0xff, 0xff, 0xff, 0xff]);
    Bytes::from(b)
}

#[test]
fn offset_delete_refuses_topics_the_group_reads() {
    let mut h = Harness::new(config());
    let mut req = Harness::join_req("g", "", &["range"]);
    req.protocols[0].metadata = subscription(&["t"]);
    let j = h.join(req, 1);
    let m = h.join_reply(j).unwrap();
    let s = h.sync("g", &m.member_id, 1, &[]);
    h.sync_reply(s).unwrap();
    h.commit(
        commit_req("g", 1, &m.member_id, &[("t", 0, 1), ("u", 0, 2)]),
        8,
    )
    .unwrap();
    let r = h.offset_delete("g", "t");
    assert_eq!(
        r.topics[0].partitions[0].error_code,
        ErrorCode::GroupSubscribedToTopic.code()
    );
    let r = h.offset_delete("g", "u");
    assert_eq!((r.error_code, r.topics[0].partitions[0].error_code), (0, 0));
    assert_eq!(h.fetched("g", "u", 0).0, -1);
    assert_eq!(h.fetched("g", "t", 0).0, 1);
    assert_eq!(
        h.offset_delete("nobody", "u").error_code,
        ErrorCode::GroupIdNotFound.code()
    );
}
