//! Offsets committed inside transactions: pending until the marker, committed or
//! dropped by it, unstable for require_stable fetches meanwhile, checked against the
//! group's members and generation, and restored from the log.

use sluice_protocol::error::ErrorCode;
use sluice_protocol::messages::offset_fetch_request::OffsetFetchRequestTopic;
use sluice_protocol::messages::txn_offset_commit_request::{
    TxnOffsetCommitRequestPartition, TxnOffsetCommitRequestTopic,
};
use sluice_protocol::messages::{OffsetFetchRequest, TxnOffsetCommitRequest};

use super::{config, Harness};
use crate::{Coordinator, Reply, TxnProducer};

fn txn_req(
    group: &str,
    pid: i64,
    member: &str,
    generation: i32,
    offset: i64,
) -> TxnOffsetCommitRequest {
    TxnOffsetCommitRequest {
        transactional_id: "tx".into(),
        group_id: group.into(),
        producer_id: pid,
        producer_epoch: 3,
        generation_id: generation,
        member_id: member.into(),
        group_instance_id: None,
        topics: vec![TxnOffsetCommitRequestTopic {
            name: "t".into(),
            partitions: vec![TxnOffsetCommitRequestPartition {
                partition_index: 0,
                committed_offset: offset,
                committed_leader_epoch: 2,
                committed_metadata: Some("m".into()),
            }],
        }],
    }
}

fn exists(topic: &str, p: i32) -> bool {
    topic == "t" && p == 0
}

impl Harness {
    fn txn_commit(&mut self, req: TxnOffsetCommitRequest) -> i16 {
        let id = self.reply_id();
        let e = self.c.txn_offset_commit(self.now, req, &exists, id);
        self.run(e);
        match self.replies.remove(&id) {
            Some(Reply::TxnCommit(r)) => r.topics[0].partitions[0].error_code,
            other => panic!("unexpected {other:?}"),
        }
    }

    /// (offset, error) of `t`-0 via OffsetFetch v7.
    fn fetch_stable(c: &Coordinator, group: &str, require_stable: bool) -> (i64, i16) {
        let r = c.offset_fetch(
            OffsetFetchRequest {
                group_id: group.into(),
                topics: Some(vec![OffsetFetchRequestTopic {
                    name: "t".into(),
                    partition_indexes: vec![0],
                }]),
                groups: vec![],
                require_stable,
            },
            7,
        );
        let p = &r.topics[0].partitions[0];
        (p.committed_offset, p.error_code)
    }
}

/// UNSTABLE_OFFSET_COMMIT.
const UNSTABLE: i16 = 88;

#[test]
fn transactional_offsets_wait_for_the_marker() {
    let mut h = Harness::new(config());
    let part = h.c.partition_for("g");
    assert_eq!(h.txn_commit(txn_req("g", 9, "", -1, 10)), 0);
    // Written as producer 9's transactional records.
    assert_eq!(
        h.log_txn.last().copied().flatten(),
        Some(TxnProducer {
            producer_id: 9,
            producer_epoch: 3
        })
    );
    assert_eq!(Harness::fetch_stable(&h.c, "g", false), (-1, 0));
    assert_eq!(Harness::fetch_stable(&h.c, "g", true), (-1, UNSTABLE));
    // The group holds nothing else, yet its cleanup must not lose the pending offsets.
    h.advance(60_000);
    assert_eq!(Harness::fetch_stable(&h.c, "g", true), (-1, UNSTABLE));
    // Another producer's marker changes nothing.
    h.c.complete_txn(part, 8, true);
    assert_eq!(Harness::fetch_stable(&h.c, "g", true), (-1, UNSTABLE));
    h.c.complete_txn(part, 9, true);
    assert_eq!(Harness::fetch_stable(&h.c, "g", true), (10, 0));

    // An aborted one leaves the committed offset as it was.
    assert_eq!(h.txn_commit(txn_req("g", 9, "", -1, 20)), 0);
    h.c.complete_txn(part, 9, false);
    assert_eq!(Harness::fetch_stable(&h.c, "g", true), (10, 0));
}

#[test]
fn members_and_generations_are_checked() {
    let mut h = Harness::new(config());
    let (members, generation) = h.stable_group("g", 1);
    let m = &members[0];
    assert_eq!(
        h.txn_commit(txn_req("g", 9, "stranger", generation, 1)),
        ErrorCode::UnknownMemberId.code()
    );
    assert_eq!(
        h.txn_commit(txn_req("g", 9, m, generation + 1, 1)),
        ErrorCode::IllegalGeneration.code()
    );
    assert_eq!(h.txn_commit(txn_req("g", 9, m, generation, 1)), 0);
    // v0-2 carry neither: accepted.
    assert_eq!(h.txn_commit(txn_req("g", 9, "", -1, 2)), 0);
    let mut bad = txn_req("g", 9, "", -1, 2);
    bad.topics[0].name = "nope".into();
    assert_eq!(h.txn_commit(bad), ErrorCode::UnknownTopicOrPartition.code());
    assert_eq!(
        h.txn_commit(txn_req("", 9, "", -1, 2)),
        ErrorCode::InvalidGroupId.code()
    );
}

#[test]
fn pending_and_decided_transactional_offsets_are_restored_from_the_log() {
    let mut h = Harness::new(config());
    let part = h.c.partition_for("g");
    h.txn_commit(txn_req("g", 9, "", -1, 10));
    h.c.complete_txn(part, 9, true);
    h.txn_commit(txn_req("g", 7, "", -1, 30));
    // Replay: records in log order, the marker of producer 9 after its record.
    let mut other = Coordinator::new(config());
    other.begin_load(part);
    for ((p, kv), txn) in h.log.iter().zip(&h.log_txn) {
        assert_eq!(*p, part);
        match txn {
            Some(t) => {
                other
                    .load_txn_record(part, &kv.key, kv.value.as_ref(), t.producer_id, 0)
                    .unwrap();
                if t.producer_id == 9 {
                    other.complete_txn(part, 9, true);
                }
            }
            None => other
                .load_record(part, &kv.key, kv.value.as_ref(), 0)
                .unwrap(),
        }
    }
    other.finish_load(part, 0);
    assert_eq!(Harness::fetch_stable(&other, "g", false), (10, 0));
    assert_eq!(Harness::fetch_stable(&other, "g", true), (-1, UNSTABLE));
    other.complete_txn(part, 7, true);
    assert_eq!(Harness::fetch_stable(&other, "g", true), (30, 0));
}
