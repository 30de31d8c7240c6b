//! Loading a shard from the offsets topic, and moving shards away.

use sluice_protocol::error::ErrorCode;
use sluice_protocol::messages::OffsetFetchRequest;

use super::{config, Harness};
use crate::{Coordinator, GroupState, Reply};

/// A coordinator rebuilt from `h.log`, as a restarted broker would be.
fn replay(h: &Harness, now: i64) -> Coordinator {
    let mut c = Coordinator::new(h.c.config().clone());
    for p in 0..c.config().offsets_partitions {
        c.begin_load(p);
        for (_, kv) in h.log.iter().filter(|(part, _)| *part == p) {
            c.load_record(p, &kv.key, kv.value.as_ref(), now).unwrap();
        }
        c.finish_load(p, now);
    }
    c
}

#[test]
fn a_restarted_coordinator_resumes_groups_and_offsets() {
    let mut h = Harness::new(config());
    let (members, generation) = h.stable_group("g", 2);
    let id = h.reply_id();
    let e = h.c.offset_commit(
        h.now,
        sluice_protocol::messages::OffsetCommitRequest {
            group_id: "g".into(),
            generation_id_or_member_epoch: generation,
            member_id: members[0].clone(),
            topics: vec![sluice_protocol::messages::offset_commit_request::OffsetCommitRequestTopic {
                name: "t".into(),
                partitions: vec![sluice_protocol::messages::offset_commit_request::OffsetCommitRequestPartition {
                    partition_index: 0,
                    committed_offset: 77,
                    committed_leader_epoch: 2,
                    commit_timestamp: -1,
                    committed_metadata: None,
                }],
            }],
            ..Default::default()
        },
        8,
        &|_: &str, _: i32| true,
        id,
    );
    h.run(e);
    let mut restored = Harness::new(config());
    restored.c = replay(&h, h.now);
    restored.now = h.now;
    assert_eq!(restored.state("g"), Some(GroupState::Stable));
    // Members carry on with their generation: no rebalance after a restart.
    assert_eq!(restored.heartbeat("g", &members[1], generation), 0);
    let s = restored.sync("g", &members[1], generation, &[]);
    assert_eq!(
        restored.sync_reply(s).unwrap().assignment,
        format!("asg-{}", members[1]).as_bytes()
    );
    let r = restored.c.offset_fetch(
        OffsetFetchRequest {
            group_id: "g".into(),
            topics: None,
            ..Default::default()
        },
        6,
    );
    let p = &r.topics[0].partitions[0];
    assert_eq!((p.committed_offset, p.committed_leader_epoch), (77, 2));
}

#[test]
fn tombstones_replay_as_deletions() {
    let mut h = Harness::new(config());
    let (members, _) = h.stable_group("g", 1);
    let (_, e) = h.c.leave_group(
        h.now,
        sluice_protocol::messages::LeaveGroupRequest {
            group_id: "g".into(),
            member_id: members[0].clone(),
            members: vec![],
        },
        1,
    );
    h.run(e);
    let id = h.reply_id();
    let e = h.c.delete_groups(
        sluice_protocol::messages::DeleteGroupsRequest {
            groups_names: vec!["g".into()],
        },
        id,
    );
    h.run(e);
    match h.replies.remove(&id) {
        Some(Reply::DeleteGroups(r)) => assert_eq!(r.results[0].error_code, 0),
        other => panic!("{other:?}"),
    }
    let c = replay(&h, h.now);
    assert_eq!(c.group_count(), 0);
}

#[test]
fn loading_and_unloading_shards() {
    let mut h = Harness::new(config());
    let p = h.c.partition_for("g");
    let (m, j) = {
        let id = h.join(Harness::join_req("g", "", &["range"]), 1);
        let r = h.join_reply(id).unwrap();
        // A second member joins and waits for the first to rejoin.
        let j = h.join(Harness::join_req("g", "", &["range"]), 1);
        (r.member_id, j)
    };
    let e = h.c.unload(p);
    h.run(e);
    assert_eq!(
        h.join_reply(j).unwrap().error_code,
        ErrorCode::NotCoordinator.code()
    );
    assert_eq!(h.heartbeat("g", &m, 1), ErrorCode::NotCoordinator.code());
    h.c.begin_load(p);
    let id = h.join(Harness::join_req("g", "", &["range"]), 5);
    assert_eq!(
        h.join_reply(id).unwrap().error_code,
        ErrorCode::CoordinatorLoadInProgress.code()
    );
    assert_eq!(
        h.heartbeat("g", &m, 1),
        0,
        "heartbeats pass while loading, as in Kafka"
    );
    let r = h.c.offset_fetch(
        OffsetFetchRequest {
            group_id: "g".into(),
            ..Default::default()
        },
        7,
    );
    assert_eq!(r.error_code, ErrorCode::CoordinatorLoadInProgress.code());
    h.c.finish_load(p, h.now);
    let r = h.c.offset_fetch(
        OffsetFetchRequest {
            group_id: "g".into(),
            ..Default::default()
        },
        7,
    );
    assert_eq!(r.error_code, 0);
}
