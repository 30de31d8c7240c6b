//! The join/sync/heartbeat state machine.

use sluice_protocol::error::ErrorCode;
use sluice_protocol::messages::leave_group_request::MemberIdentity;
use sluice_protocol::messages::LeaveGroupRequest;

use super::{config, Harness};
use crate::{GroupConfig, GroupState};

#[test]
fn three_members_one_generation_leader_alone_sees_metadata() {
    let mut h = Harness::new(config());
    let members: Vec<String> = (0..3)
        .map(|_| {
            let id = h.join(Harness::join_req("g", "", &["range"]), 5);
            h.join_reply(id).unwrap().member_id
        })
        .collect();
    assert_eq!(h.c.pending_members(), 3);
    let mut ids: Vec<_> = members[..2]
        .iter()
        .map(|m| h.join(Harness::join_req("g", m, &["range"]), 5))
        .collect();
    // Nobody is answered until the last pending member has joined.
    assert!(ids.iter().all(|i| !h.replies.contains_key(i)));
    ids.push(h.join(Harness::join_req("g", &members[2], &["range"]), 5));
    let resps: Vec<_> = ids.iter().map(|i| h.join_reply(*i).unwrap()).collect();
    assert_eq!(h.c.pending_members(), 0);
    assert!(resps
        .iter()
        .all(|r| r.error_code == 0 && r.generation_id == 1));
    assert!(resps
        .iter()
        .all(|r| r.protocol_name.as_deref() == Some("range")));
    let leader = &resps[0].leader;
    for (m, r) in members.iter().zip(&resps) {
        assert_eq!(&r.member_id, m);
        assert_eq!(&r.leader, leader);
        let expected = if m == leader { 3 } else { 0 };
        assert_eq!(
            r.members.len(),
            expected,
            "member metadata only to the leader"
        );
    }
    assert_eq!(h.state("g"), Some(GroupState::CompletingRebalance));
}

#[test]
fn member_id_required_only_from_v4() {
    let mut h = Harness::new(config());
    let id = h.join(Harness::join_req("old", "", &["range"]), 1);
    let r = h.join_reply(id).unwrap();
    assert_eq!(r.error_code, 0, "v1 joins directly (Sarama)");
    assert!(r.member_id.starts_with("client-"));
    assert_eq!(r.generation_id, 1);
    let id = h.join(Harness::join_req("new", "", &["range"]), 4);
    assert_eq!(
        h.join_reply(id).unwrap().error_code,
        ErrorCode::MemberIdRequired.code()
    );
}

#[test]
fn common_protocol_is_chosen_and_incompatible_members_refused() {
    let mut h = Harness::new(config());
    let a = h.join(Harness::join_req("g", "", &["range", "roundrobin"]), 1);
    let a = h.join_reply(a).unwrap();
    assert_eq!(a.protocol_name.as_deref(), Some("range"));
    // A second member supporting only roundrobin: the group moves to it.
    let b = h.join(
        Harness::join_req("g", "", &["cooperative-sticky", "roundrobin"]),
        1,
    );
    let a2 = h.join(
        Harness::join_req("g", &a.member_id, &["range", "roundrobin"]),
        1,
    );
    let b = h.join_reply(b).unwrap();
    let a2 = h.join_reply(a2).unwrap();
    assert_eq!(b.protocol_name.as_deref(), Some("roundrobin"));
    assert_eq!(a2.protocol_name.as_deref(), Some("roundrobin"));
    assert_eq!(b.generation_id, 2);
    // Nothing in common with the members: refused, group untouched.
    let c = h.join(Harness::join_req("g", "", &["sticky"]), 1);
    assert_eq!(
        h.join_reply(c).unwrap().error_code,
        ErrorCode::InconsistentGroupProtocol.code()
    );
    let mut other_type = Harness::join_req("g", "", &["roundrobin"]);
    other_type.protocol_type = "connect".into();
    let d = h.join(other_type, 1);
    assert_eq!(
        h.join_reply(d).unwrap().error_code,
        ErrorCode::InconsistentGroupProtocol.code()
    );
    assert_eq!(h.state("g"), Some(GroupState::CompletingRebalance));
}

#[test]
fn bad_joins_are_refused_with_kafka_codes() {
    let mut h = Harness::new(config());
    let cases = [
        (
            {
                let mut r = Harness::join_req("", "", &["range"]);
                r.group_id.clear();
                r
            },
            ErrorCode::InvalidGroupId,
        ),
        (
            {
                let mut r = Harness::join_req("g", "", &["range"]);
                r.session_timeout_ms = 10;
                r
            },
            ErrorCode::InvalidSessionTimeout,
        ),
        (
            {
                let mut r = Harness::join_req("g", "", &["range"]);
                r.protocol_type.clear();
                r
            },
            ErrorCode::InconsistentGroupProtocol,
        ),
        (
            Harness::join_req("g", "", &[]),
            ErrorCode::InconsistentGroupProtocol,
        ),
        (
            Harness::join_req("g", "nobody", &["range"]),
            ErrorCode::UnknownMemberId,
        ),
    ];
    for (req, code) in cases {
        let id = h.join(req, 5);
        assert_eq!(h.join_reply(id).unwrap().error_code, code.code());
    }
    assert_eq!(h.c.group_count(), 0, "refused joins leave nothing behind");
}

#[test]
fn sync_hands_out_the_leaders_assignment_after_it_is_stored() {
    let mut h = Harness::new(config());
    let (members, generation) = h.stable_group("g", 3);
    assert_eq!(generation, 1);
    // Stable: a late SyncGroup gets the stored assignment at once.
    let id = h.sync("g", &members[1], 1, &[]);
    assert_eq!(
        h.sync_reply(id).unwrap().assignment,
        format!("asg-{}", members[1]).as_bytes()
    );
    // Stale generation and unknown member.
    let id = h.sync("g", &members[1], 0, &[]);
    assert_eq!(
        h.sync_reply(id).unwrap().error_code,
        ErrorCode::IllegalGeneration.code()
    );
    let id = h.sync("g", "ghost", 1, &[]);
    assert_eq!(
        h.sync_reply(id).unwrap().error_code,
        ErrorCode::UnknownMemberId.code()
    );
    // The stored record carries every member's assignment.
    let last = h.log.last().unwrap();
    match crate::records::decode(&last.1.key, last.1.value.as_ref()).unwrap() {
        crate::records::Record::Group { value: Some(g), .. } => {
            assert_eq!(g.generation, 1);
            assert_eq!(g.members.len(), 3);
            assert!(g
                .members
                .iter()
                .all(|m| m.assignment == format!("asg-{}", m.member_id).as_bytes()));
        }
        other => panic!("unexpected record {other:?}"),
    }
}

#[test]
fn followers_wait_for_the_leader_and_writes_gate_the_answer() {
    let mut h = Harness::new(config());
    let a = h.join(Harness::join_req("g", "", &["range"]), 1);
    let a = h.join_reply(a).unwrap();
    let b = h.join(Harness::join_req("g", "", &["range"]), 1);
    let a2 = h.join(Harness::join_req("g", &a.member_id, &["range"]), 1);
    let b = h.join_reply(b).unwrap();
    let a2 = h.join_reply(a2).unwrap();
    let (leader, follower) = if a2.leader == a2.member_id {
        (a2, b)
    } else {
        (b, a2)
    };
    let fs = h.sync("g", &follower.member_id, 2, &[]);
    assert!(h.sync_reply(fs).is_none(), "follower waits for the leader");
    h.hold_writes = true;
    let ls = h.sync(
        "g",
        &leader.member_id,
        2,
        &[(&follower.member_id, "F"), (&leader.member_id, "L")],
    );
    assert!(
        h.sync_reply(ls).is_none() && h.sync_reply(fs).is_none(),
        "nothing before the write completes"
    );
    assert_eq!(h.held.len(), 1);
    let (wid, _, _) = h.held.pop().unwrap();
    let e = h.c.write_done(wid, Ok(()), h.now);
    h.run(e);
    assert_eq!(h.sync_reply(ls).unwrap().assignment, &b"L"[..]);
    assert_eq!(h.sync_reply(fs).unwrap().assignment, &b"F"[..]);
    assert_eq!(h.state("g"), Some(GroupState::Stable));
}

#[test]
fn heartbeats_report_rebalances_and_stale_members() {
    let mut h = Harness::new(config());
    let (members, generation) = h.stable_group("g", 2);
    assert_eq!(h.heartbeat("g", &members[0], generation), 0);
    assert_eq!(
        h.heartbeat("g", &members[0], generation - 1),
        ErrorCode::IllegalGeneration.code()
    );
    assert_eq!(
        h.heartbeat("g", "ghost", generation),
        ErrorCode::UnknownMemberId.code()
    );
    assert_eq!(
        h.heartbeat("nogroup", "ghost", 1),
        ErrorCode::UnknownMemberId.code()
    );
    // A third member arrives: the others learn of it through their heartbeats.
    let (_m3, j3) = h.join_new("g", &["range"]);
    assert!(h.join_reply(j3).is_none());
    assert_eq!(h.state("g"), Some(GroupState::PreparingRebalance));
    assert_eq!(
        h.heartbeat("g", &members[0], generation),
        ErrorCode::RebalanceInProgress.code()
    );
    let r0 = h.join(Harness::join_req("g", &members[0], &["range"]), 5);
    let r1 = h.join(Harness::join_req("g", &members[1], &["range"]), 5);
    for id in [r0, r1, j3] {
        assert_eq!(h.join_reply(id).unwrap().generation_id, generation + 1);
    }
}

#[test]
fn a_silent_member_is_removed_after_its_session_timeout() {
    let mut h = Harness::new(config());
    let (members, generation) = h.stable_group("g", 2);
    for _ in 0..3 {
        h.advance(3_000);
        assert_eq!(h.heartbeat("g", &members[0], generation), 0);
    }
    assert_eq!(h.state("g"), Some(GroupState::Stable));
    // members[1] never heartbeat: 12 s > its 10 s session.
    h.advance(3_000);
    assert_eq!(h.state("g"), Some(GroupState::PreparingRebalance));
    assert_eq!(
        h.heartbeat("g", &members[1], generation),
        ErrorCode::UnknownMemberId.code()
    );
    assert_eq!(
        h.heartbeat("g", &members[0], generation),
        ErrorCode::RebalanceInProgress.code()
    );
    let j = h.join(Harness::join_req("g", &members[0], &["range"]), 5);
    let r = h.join_reply(j).unwrap();
    assert_eq!(r.generation_id, generation + 1);
    assert_eq!(r.members.len(), 1);
}

#[test]
fn members_that_do_not_rejoin_are_dropped_at_the_rebalance_timeout() {
    let mut h = Harness::new(config());
    let (members, _) = h.stable_group("g", 2);
    let j = h.join(Harness::join_req("g", &members[0], &["range"]), 5);
    // members[0] is the leader (first joined), so its join starts a rebalance.
    assert_eq!(h.state("g"), Some(GroupState::PreparingRebalance));
    // members[1] stays alive (its heartbeats say REBALANCE_IN_PROGRESS) but never
    // rejoins.
    for _ in 0..5 {
        h.advance(5_000);
        assert_eq!(
            h.heartbeat("g", &members[1], 1),
            ErrorCode::RebalanceInProgress.code()
        );
    }
    h.advance(4_000);
    assert!(h.join_reply(j).is_none());
    h.advance(1_001);
    let r = h.join_reply(j).unwrap();
    assert_eq!(r.members.len(), 1, "the member that never rejoined is gone");
    assert!(!h.c.group("g").unwrap().members.contains_key(&members[1]));
}

#[test]
fn a_leader_that_never_syncs_is_removed_after_the_rebalance_timeout() {
    let mut h = Harness::new(config());
    let a = h.join(Harness::join_req("g", "", &["range"]), 1);
    let a = h.join_reply(a).unwrap();
    assert_eq!(h.state("g"), Some(GroupState::CompletingRebalance));
    h.advance(30_001);
    assert!(h.c.group("g").unwrap().members.is_empty());
    assert_eq!(h.state("g"), Some(GroupState::Empty));
    assert_eq!(
        h.heartbeat("g", &a.member_id, 1),
        ErrorCode::UnknownMemberId.code()
    );
}

#[test]
fn leave_group_batches_and_single_member() {
    let mut h = Harness::new(config());
    let (members, _) = h.stable_group("g", 3);
    let (resp, e) = h.c.leave_group(
        h.now,
        LeaveGroupRequest {
            group_id: "g".into(),
            member_id: String::new(),
            members: vec![
                MemberIdentity {
                    member_id: members[0].clone(),
                    group_instance_id: None,
                    reason: None,
                },
                MemberIdentity {
                    member_id: "ghost".into(),
                    group_instance_id: None,
                    reason: None,
                },
            ],
        },
        5,
    );
    h.run(e);
    assert_eq!(resp.error_code, 0);
    let codes: Vec<i16> = resp.members.iter().map(|m| m.error_code).collect();
    assert_eq!(codes, vec![0, ErrorCode::UnknownMemberId.code()]);
    assert_eq!(h.state("g"), Some(GroupState::PreparingRebalance));
    for m in &members[1..] {
        let (resp, e) = h.c.leave_group(
            h.now,
            LeaveGroupRequest {
                group_id: "g".into(),
                member_id: m.clone(),
                members: vec![],
            },
            1,
        );
        h.run(e);
        assert_eq!(resp.error_code, 0);
    }
    assert_eq!(h.state("g"), Some(GroupState::Empty));
    // The empty generation is stored, so a restart knows the group is empty.
    let last = &h.log.last().unwrap().1;
    match crate::records::decode(&last.key, last.value.as_ref()).unwrap() {
        crate::records::Record::Group { value: Some(g), .. } => assert!(g.members.is_empty()),
        other => panic!("unexpected {other:?}"),
    }
}

#[test]
fn initial_delay_waits_for_more_members_and_extends() {
    let mut h = Harness::new(GroupConfig {
        initial_rebalance_delay_ms: 3_000,
        ..config()
    });
    let a = h.join(Harness::join_req("g", "", &["range"]), 1);
    h.advance(2_000);
    assert!(h.join_reply(a).is_none());
    let b = h.join(Harness::join_req("g", "", &["range"]), 1);
    h.advance(1_001);
    // b arrived during the delay: extended by another delay.
    assert!(h.join_reply(a).is_none());
    h.advance(3_000);
    let (a, b) = (h.join_reply(a).unwrap(), h.join_reply(b).unwrap());
    assert_eq!((a.generation_id, b.generation_id), (1, 1));
    assert_eq!(a.members.len() + b.members.len(), 2);
}

#[test]
fn a_flood_of_joins_is_bounded_and_does_not_disturb_other_groups() {
    let mut h = Harness::new(GroupConfig {
        max_pending_members_per_group: 100,
        ..config()
    });
    let mut refused = 0;
    for _ in 0..1000 {
        let id = h.join(Harness::join_req("flood", "", &["range"]), 5);
        let r = h.join_reply(id).unwrap();
        if r.error_code == ErrorCode::CoordinatorNotAvailable.code() {
            refused += 1;
        } else {
            assert_eq!(r.error_code, ErrorCode::MemberIdRequired.code());
        }
    }
    assert_eq!(h.c.pending_members(), 100);
    assert_eq!(refused, 900);
    let (members, _) = h.stable_group("calm", 2);
    assert_eq!(members.len(), 2);
    // Pending members lapse after their session timeout, and the group they made goes.
    h.advance(10_001);
    assert_eq!(h.c.pending_members(), 0);
    assert!(h.c.group("flood").is_none());
}

#[test]
fn pending_members_are_bounded_across_groups() {
    let mut h = Harness::new(GroupConfig {
        max_pending_members_per_group: 100,
        max_pending_members_total: 150,
        ..config()
    });
    for i in 0..400 {
        let id = h.join(Harness::join_req(&format!("g{}", i % 4), "", &["range"]), 5);
        h.join_reply(id).unwrap();
    }
    assert_eq!(h.c.pending_members(), 150);
}

#[test]
fn group_max_size_is_enforced() {
    let mut h = Harness::new(GroupConfig {
        max_size: 2,
        ..config()
    });
    h.stable_group("g", 2);
    let id = h.join(Harness::join_req("g", "", &["range"]), 5);
    assert_eq!(
        h.join_reply(id).unwrap().error_code,
        ErrorCode::GroupMaxSizeReached.code()
    );
}

#[test]
fn static_member_restart_causes_no_rebalance_and_fences_the_old_id() {
    let mut h = Harness::new(config());
    let mut req = Harness::join_req("g", "", &["range"]);
    req.group_instance_id = Some("instance-1".into());
    let a = h.join(req.clone(), 5);
    let a = h.join_reply(a).unwrap();
    assert_eq!(a.error_code, 0, "static members skip MEMBER_ID_REQUIRED");
    let s = h.sync("g", &a.member_id, 1, &[(&a.member_id, "A")]);
    assert_eq!(h.sync_reply(s).unwrap().assignment, &b"A"[..]);
    // The process restarts: same instance id, no member id.
    let again = h.join(req, 5);
    let again = h.join_reply(again).unwrap();
    assert_eq!(again.error_code, 0);
    assert_ne!(again.member_id, a.member_id);
    assert_eq!(again.generation_id, 1, "no new generation");
    assert_eq!(h.state("g"), Some(GroupState::Stable));
    let s = h.sync("g", &again.member_id, 1, &[]);
    assert_eq!(
        h.sync_reply(s).unwrap().assignment,
        &b"A"[..],
        "keeps its assignment"
    );
    let hb = h.c.heartbeat(
        h.now,
        sluice_protocol::messages::HeartbeatRequest {
            group_id: "g".into(),
            generation_id: 1,
            member_id: a.member_id.clone(),
            group_instance_id: Some("instance-1".into()),
        },
    );
    assert_eq!(hb.error_code, ErrorCode::FencedInstanceId.code());
}

#[test]
fn a_static_rejoin_that_cannot_be_stored_leaves_the_old_member_in_place() {
    let mut h = Harness::new(config());
    let mut req = Harness::join_req("g", "", &["range"]);
    req.group_instance_id = Some("i".into());
    let a = h.join(req.clone(), 5);
    let a = h.join_reply(a).unwrap();
    let s = h.sync("g", &a.member_id, 1, &[(&a.member_id, "A")]);
    h.sync_reply(s).unwrap();
    h.hold_writes = true;
    let again = h.join(req, 5);
    assert!(h.join_reply(again).is_none(), "answered only once stored");
    let (wid, _, _) = h.held.pop().unwrap();
    let e =
        h.c.write_done(wid, Err(ErrorCode::KafkaStorageError), h.now);
    h.run(e);
    let r = h.join_reply(again).unwrap();
    assert_eq!(r.error_code, ErrorCode::CoordinatorNotAvailable.code());
    let hb = h.c.heartbeat(
        h.now,
        sluice_protocol::messages::HeartbeatRequest {
            group_id: "g".into(),
            generation_id: 1,
            member_id: a.member_id.clone(),
            group_instance_id: Some("i".into()),
        },
    );
    assert_eq!(hb.error_code, 0, "the old id still stands");
    assert_eq!(
        h.heartbeat("g", &r.member_id, 1),
        ErrorCode::UnknownMemberId.code()
    );
}
