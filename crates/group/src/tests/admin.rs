//! DescribeGroups, ListGroups, DeleteGroups.

use sluice_protocol::error::ErrorCode;
use sluice_protocol::messages::{DeleteGroupsRequest, DescribeGroupsRequest, ListGroupsRequest};

use super::{config, Harness};
use crate::Reply;

#[test]
fn describe_shows_members_with_metadata_when_stable() {
    let mut h = Harness::new(config());
    let (members, _) = h.stable_group("g", 2);
    let r = h.c.describe_groups(
        DescribeGroupsRequest {
            groups: vec!["g".into(), "nope".into()],
            include_authorized_operations: false,
        },
        i32::MIN,
    );
    let g = &r.groups[0];
    assert_eq!(
        (
            g.error_code,
            g.group_state.as_str(),
            g.protocol_type.as_str(),
            g.protocol_data.as_str()
        ),
        (0, "Stable", "consumer", "range")
    );
    assert_eq!(g.authorized_operations, i32::MIN);
    assert_eq!(g.members.len(), 2);
    for m in &g.members {
        assert!(members.contains(&m.member_id));
        assert_eq!(m.member_metadata, &b"meta-range"[..]);
        assert_eq!(
            m.member_assignment,
            format!("asg-{}", m.member_id).as_bytes()
        );
        assert_eq!(
            (m.client_id.as_str(), m.client_host.as_str()),
            ("client", "/127.0.0.1")
        );
    }
    assert_eq!(
        (r.groups[1].error_code, r.groups[1].group_state.as_str()),
        (0, "Dead")
    );
    // During a rebalance the metadata is withheld.
    let _ = h.join(Harness::join_req("g", &members[0], &["range"]), 5);
    let r = h.c.describe_groups(
        DescribeGroupsRequest {
            groups: vec!["g".into()],
            include_authorized_operations: true,
        },
        0b100101000,
    );
    let g = &r.groups[0];
    assert_eq!(g.group_state, "PreparingRebalance");
    assert!(g
        .members
        .iter()
        .all(|m| m.member_metadata.is_empty() && m.member_assignment.is_empty()));
    assert_eq!(g.authorized_operations, 0b100101000);
}

#[test]
fn list_filters_by_state_and_type() {
    let mut h = Harness::new(config());
    h.stable_group("stable", 1);
    let j = h.join(Harness::join_req("completing", "", &["range"]), 1);
    h.join_reply(j).unwrap();
    let list = |h: &Harness, states: &[&str], types: &[&str]| -> Vec<String> {
        let r = h.c.list_groups(ListGroupsRequest {
            states_filter: states.iter().map(|s| s.to_string()).collect(),
            types_filter: types.iter().map(|s| s.to_string()).collect(),
        });
        r.groups.into_iter().map(|g| g.group_id).collect()
    };
    assert_eq!(list(&h, &[], &[]), vec!["completing", "stable"]);
    assert_eq!(list(&h, &["stable"], &[]), vec!["stable"]);
    assert_eq!(
        list(&h, &["Empty", "CompletingRebalance"], &["Classic"]),
        vec!["completing"]
    );
    assert!(list(&h, &[], &["consumer"]).is_empty());
}

#[test]
fn delete_only_empty_groups() {
    let mut h = Harness::new(config());
    h.stable_group("busy", 1);
    let j = h.join(Harness::join_req("idle", "", &["range"]), 1);
    let m = h.join_reply(j).unwrap().member_id;
    let (_, e) = h.c.leave_group(
        h.now,
        sluice_protocol::messages::LeaveGroupRequest {
            group_id: "idle".into(),
            member_id: m,
            members: vec![],
        },
        1,
    );
    h.run(e);
    let id = h.reply_id();
    let e = h.c.delete_groups(
        DeleteGroupsRequest {
            groups_names: vec!["busy".into(), "idle".into(), "ghost".into()],
        },
        id,
    );
    h.run(e);
    let Some(Reply::DeleteGroups(r)) = h.replies.remove(&id) else {
        panic!("no reply")
    };
    let codes: Vec<i16> = r.results.iter().map(|g| g.error_code).collect();
    assert_eq!(
        codes,
        vec![
            ErrorCode::NonEmptyGroup.code(),
            0,
            ErrorCode::GroupIdNotFound.code()
        ]
    );
    assert!(h.c.group("idle").is_none() && h.c.group("busy").is_some());
}
