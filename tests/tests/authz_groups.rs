//! Authorization of the group and transaction APIs against a node running the ACL
//! authorizer (`SecuredNode`): what alice may do with exactly the ACLs Kafka asks for,
//! what bob without any ACL is refused (and that a refusal changes nothing), prefixed
//! and DENY ACLs, the filtered admin views (ListGroups, OffsetFetch of all topics,
//! DescribeGroups' authorized operations, ListTransactions, DescribeTransactions), the
//! producer-id and transaction requests, and the super user needing no ACL at all.
//!
//! Each test starts its own node, so ACLs never leak between tests.

use bytes::Bytes;
use sluice_protocol::api::ApiKey;
use sluice_protocol::error::ErrorCode;
use sluice_protocol::messages::add_partitions_to_txn_request::{
    AddPartitionsToTxnTopic, AddPartitionsToTxnTransaction,
};
use sluice_protocol::messages::describe_groups_response::DescribedGroup;
use sluice_protocol::messages::leave_group_request::MemberIdentity;
use sluice_protocol::messages::offset_commit_request::{
    OffsetCommitRequestPartition, OffsetCommitRequestTopic,
};
use sluice_protocol::messages::offset_delete_request::{
    OffsetDeleteRequestPartition, OffsetDeleteRequestTopic,
};
use sluice_protocol::messages::offset_fetch_request::{
    OffsetFetchRequestGroup, OffsetFetchRequestTopic,
};
use sluice_protocol::messages::txn_offset_commit_request::{
    TxnOffsetCommitRequestPartition, TxnOffsetCommitRequestTopic,
};
use sluice_protocol::messages::write_txn_markers_request::{
    WritableTxnMarker, WritableTxnMarkerTopic,
};
use sluice_protocol::messages::{
    AddOffsetsToTxnRequest, AddOffsetsToTxnResponse, AddPartitionsToTxnRequest,
    AddPartitionsToTxnResponse, DeleteGroupsRequest, DeleteGroupsResponse, DescribeGroupsRequest,
    DescribeGroupsResponse, DescribeTransactionsRequest, DescribeTransactionsResponse,
    EndTxnRequest, EndTxnResponse, FindCoordinatorRequest, FindCoordinatorResponse,
    InitProducerIdRequest, InitProducerIdResponse, LeaveGroupRequest, LeaveGroupResponse,
    ListGroupsRequest, ListGroupsResponse, ListTransactionsRequest, ListTransactionsResponse,
    OffsetCommitRequest, OffsetCommitResponse, OffsetDeleteRequest, OffsetDeleteResponse,
    OffsetFetchRequest, OffsetFetchResponse, TxnOffsetCommitRequest, TxnOffsetCommitResponse,
    WriteTxnMarkersRequest, WriteTxnMarkersResponse,
};
use sluice_system_tests::raw::RawClient;
use sluice_system_tests::secure::{acl, create_acls, SecuredNode};
use sluice_system_tests::wire::{
    find_coordinator, heartbeat, init_producer_id, join_alone, join_group, join_request,
    list_offset, must_create, offset_commit, partition_count, sync_group,
};

// Kafka's ACL codes (resource type, pattern type, operation, permission).
const TOPIC: i8 = 2;
const GROUP: i8 = 3;
const CLUSTER: i8 = 4;
const TXN_ID: i8 = 5;
const LITERAL: i8 = 3;
const PREFIXED: i8 = 4;
const ALL: i8 = 2;
const READ: i8 = 3;
const WRITE: i8 = 4;
const DELETE: i8 = 6;
const DESCRIBE: i8 = 8;
const IDEMPOTENT_WRITE: i8 = 12;
const DENY: i8 = 2;
const ALLOW: i8 = 3;

const ALICE: &str = "User:alice";
const CLUSTER_NAME: &str = "kafka-cluster";

/// Kafka's authorized-operations bits for a group: READ (3), DELETE (6), DESCRIBE (8).
const GROUP_READ_BIT: i32 = 1 << 3;
const GROUP_DELETE_BIT: i32 = 1 << 6;
const GROUP_DESCRIBE_BIT: i32 = 1 << 8;

/// One group of a v8 OffsetFetch answer: (group, error, [(topic, partition-0 offset)]).
type GroupOffsets<'a> = (&'a str, i16, Vec<(&'a str, i64)>);

fn code(e: ErrorCode) -> i16 {
    e.code()
}

/// A secured node with instant rebalances and one-partition internal topics (created
/// fast on the first lookup).
fn node() -> SecuredNode {
    SecuredNode::start(&[
        "--group-initial-rebalance-delay-ms",
        "0",
        "--offsets-topic-num-partitions",
        "1",
        "--transaction-state-log-num-partitions",
        "1",
    ])
}

/// An allow ACL of alice's, literal.
fn alice(
    resource_type: i8,
    name: &str,
    operation: i8,
) -> sluice_protocol::messages::create_acls_request::AclCreation {
    acl(resource_type, name, LITERAL, ALICE, operation, ALLOW)
}

/// A standalone commit (generation -1, no member) of partition 0 of each topic, OffsetCommit
/// v8; each topic's code in request order.
fn commit(c: &mut RawClient, group: &str, offsets: &[(&str, i64)]) -> Vec<(String, i16)> {
    let req = OffsetCommitRequest {
        group_id: group.into(),
        generation_id_or_member_epoch: -1,
        member_id: String::new(),
        group_instance_id: None,
        retention_time_ms: -1,
        topics: offsets
            .iter()
            .map(|(t, o)| OffsetCommitRequestTopic {
                name: t.to_string(),
                partitions: vec![OffsetCommitRequestPartition {
                    partition_index: 0,
                    committed_offset: *o,
                    committed_leader_epoch: -1,
                    commit_timestamp: -1,
                    committed_metadata: None,
                }],
            })
            .collect(),
    };
    let resp: OffsetCommitResponse = c.call(ApiKey::OffsetCommit, 8, &req);
    resp.topics
        .into_iter()
        .map(|t| {
            assert_eq!(t.partitions.len(), 1, "{}: one partition", t.name);
            (t.name, t.partitions[0].error_code)
        })
        .collect()
}

/// OffsetFetch v7 of one group: partition 0 of the named topics, or all (`None`).
fn fetch_v7(c: &mut RawClient, group: &str, topics: Option<&[&str]>) -> OffsetFetchResponse {
    fetch_at(c, 7, group, topics)
}

fn fetch_at(
    c: &mut RawClient,
    version: i16,
    group: &str,
    topics: Option<&[&str]>,
) -> OffsetFetchResponse {
    let req = OffsetFetchRequest {
        group_id: group.into(),
        topics: topics.map(|ts| {
            ts.iter()
                .map(|t| OffsetFetchRequestTopic {
                    name: t.to_string(),
                    partition_indexes: vec![0],
                })
                .collect()
        }),
        ..Default::default()
    };
    c.call(ApiKey::OffsetFetch, version, &req)
}

/// (topic, partition-0 offset, partition-0 error) of a v0-7 OffsetFetch answer.
fn fetched(resp: &OffsetFetchResponse) -> Vec<(String, i64, i16)> {
    resp.topics
        .iter()
        .map(|t| {
            assert_eq!(t.partitions.len(), 1, "{}: one partition", t.name);
            let p = &t.partitions[0];
            (t.name.clone(), p.committed_offset, p.error_code)
        })
        .collect()
}

fn find_v4(c: &mut RawClient, key_type: i8, keys: &[&str]) -> Vec<(String, i16)> {
    let req = FindCoordinatorRequest {
        key_type,
        coordinator_keys: keys.iter().map(|k| k.to_string()).collect(),
        ..Default::default()
    };
    let resp: FindCoordinatorResponse = c.call(ApiKey::FindCoordinator, 4, &req);
    resp.coordinators
        .into_iter()
        .map(|c| (c.key, c.error_code))
        .collect()
}

/// FindCoordinator v3 for a transactional id (creating `__transaction_state`).
fn find_txn(c: &mut RawClient, id: &str) -> i16 {
    let req = FindCoordinatorRequest {
        key: id.into(),
        key_type: 1,
        ..Default::default()
    };
    let resp: FindCoordinatorResponse = c.call(ApiKey::FindCoordinator, 3, &req);
    resp.error_code
}

/// InitProducerId v4; `(error, producer id, epoch)`.
fn init_pid(c: &mut RawClient, transactional_id: Option<&str>) -> (i16, i64, i16) {
    let req = InitProducerIdRequest {
        transactional_id: transactional_id.map(str::to_string),
        transaction_timeout_ms: 60_000,
        producer_id: -1,
        producer_epoch: -1,
    };
    let resp: InitProducerIdResponse = c.call(ApiKey::InitProducerId, 4, &req);
    (resp.error_code, resp.producer_id, resp.producer_epoch)
}

/// AddPartitionsToTxn v3 (a client's) of partition 0 of each topic; each code in order.
fn add_partitions(c: &mut RawClient, id: &str, pid: i64, epoch: i16, topics: &[&str]) -> Vec<i16> {
    let req = AddPartitionsToTxnRequest {
        v3_and_below_transactional_id: id.into(),
        v3_and_below_producer_id: pid,
        v3_and_below_producer_epoch: epoch,
        v3_and_below_topics: topics
            .iter()
            .map(|t| AddPartitionsToTxnTopic {
                name: t.to_string(),
                partitions: vec![0],
            })
            .collect(),
        ..Default::default()
    };
    let resp: AddPartitionsToTxnResponse = c.call(ApiKey::AddPartitionsToTxn, 3, &req);
    resp.results_by_topic_v3_and_below
        .iter()
        .map(|t| {
            assert_eq!(t.results_by_partition.len(), 1);
            t.results_by_partition[0].partition_error_code
        })
        .collect()
}

fn describe_groups(c: &mut RawClient, groups: &[&str], include_ops: bool) -> Vec<DescribedGroup> {
    let req = DescribeGroupsRequest {
        groups: groups.iter().map(|g| g.to_string()).collect(),
        include_authorized_operations: include_ops,
    };
    let resp: DescribeGroupsResponse = c.call(ApiKey::DescribeGroups, 5, &req);
    resp.groups
}

fn list_groups(c: &mut RawClient) -> Vec<String> {
    let resp: ListGroupsResponse = c.call(ApiKey::ListGroups, 4, &ListGroupsRequest::default());
    assert_eq!(resp.error_code, 0);
    let mut names: Vec<String> = resp.groups.into_iter().map(|g| g.group_id).collect();
    names.sort();
    names
}

fn leave_group(c: &mut RawClient, group: &str, member: &str) -> LeaveGroupResponse {
    let req = LeaveGroupRequest {
        group_id: group.into(),
        members: vec![MemberIdentity {
            member_id: member.into(),
            group_instance_id: None,
            reason: None,
        }],
        ..Default::default()
    };
    c.call(ApiKey::LeaveGroup, 3, &req)
}

#[test]
fn alice_with_group_and_topic_read_runs_the_whole_group_protocol() {
    let n = node();
    let mut admin = n.admin();
    must_create(&mut admin, "orders", 1);
    create_acls(
        &mut admin,
        vec![alice(GROUP, "g1", READ), alice(TOPIC, "orders", READ)],
    );
    let mut c = n.login("alice");
    assert_eq!(find_coordinator(&mut c, "g1"), 0, "Read implies Describe");
    // MEMBER_ID_REQUIRED, the join with that id, the leader's SyncGroup.
    let (member, generation) = join_alone(&mut c, "g1", "orders");
    assert_eq!(heartbeat(&mut c, "g1", generation, &member), 0);
    assert_eq!(
        offset_commit(
            &mut c,
            "g1",
            generation,
            &member,
            "orders",
            0,
            42,
            Some("m")
        ),
        0
    );
    let got = fetch_v7(&mut c, "g1", Some(&["orders"]));
    assert_eq!(got.error_code, 0);
    assert_eq!(fetched(&got), vec![("orders".to_string(), 42, 0)]);
    assert_eq!(got.topics[0].partitions[0].metadata.as_deref(), Some("m"));
    let left = leave_group(&mut c, "g1", &member);
    assert_eq!(left.error_code, 0);
    assert_eq!(left.members[0].error_code, 0);
}

#[test]
fn bob_without_acls_is_refused_and_changes_nothing() {
    let n = node();
    let mut admin = n.admin();
    must_create(&mut admin, "orders", 1);
    let mut bob = n.login("bob");
    let refused = code(ErrorCode::GroupAuthorizationFailed);

    // Refused lookups create no internal topic.
    assert_eq!(find_coordinator(&mut bob, "g1"), refused);
    assert_eq!(
        find_v4(&mut bob, 0, &["g1", "g2"]),
        vec![("g1".to_string(), refused), ("g2".to_string(), refused)]
    );
    assert_eq!(
        find_v4(&mut bob, 1, &["tx"]),
        vec![(
            "tx".to_string(),
            code(ErrorCode::TransactionalIdAuthorizationFailed)
        )]
    );
    assert_eq!(partition_count(&mut admin, "__consumer_offsets"), None);
    assert_eq!(partition_count(&mut admin, "__transaction_state"), None);

    assert_eq!(find_coordinator(&mut admin, "g1"), 0);
    let joined = join_group(&mut bob, &join_request("g1", "", "orders"));
    assert_eq!(joined.error_code, refused);
    assert_eq!((joined.generation_id, joined.member_id.as_str()), (-1, ""));
    assert_eq!(
        offset_commit(&mut bob, "g1", -1, "", "orders", 0, 5, None),
        refused
    );
    assert_eq!(heartbeat(&mut bob, "g1", 1, "m"), refused);
    assert_eq!(
        sync_group(&mut bob, "g1", 1, "m", &[("m", Bytes::new())]).error_code,
        refused
    );
    let left = leave_group(&mut bob, "g1", "m");
    assert_eq!((left.error_code, left.members.len()), (refused, 0));
    let fetch = fetch_v7(&mut bob, "g1", Some(&["orders"]));
    assert_eq!((fetch.error_code, fetch.topics.len()), (refused, 0));

    // Nothing of that reached the coordinator: no member, no group, no offset.
    let g = &describe_groups(&mut admin, &["g1"], false)[0];
    assert_eq!((g.error_code, g.group_state.as_str()), (0, "Dead"));
    assert!(g.members.is_empty());
    assert!(list_groups(&mut admin).is_empty());
    assert_eq!(
        fetched(&fetch_v7(&mut admin, "g1", Some(&["orders"]))),
        vec![("orders".to_string(), -1, 0)]
    );
}

#[test]
fn offset_commit_checks_read_on_each_topic() {
    let n = node();
    let mut admin = n.admin();
    must_create(&mut admin, "orders", 1);
    must_create(&mut admin, "secret", 1);
    create_acls(
        &mut admin,
        vec![
            alice(GROUP, "g1", READ),
            alice(TOPIC, "orders", READ),
            alice(TOPIC, "missing", READ),
        ],
    );
    let mut c = n.login("alice");
    assert_eq!(find_coordinator(&mut c, "g1"), 0);
    let got = commit(
        &mut c,
        "g1",
        &[("secret", 9), ("orders", 7), ("ghost", 1), ("missing", 2)],
    );
    assert_eq!(
        got,
        vec![
            (
                "secret".to_string(),
                code(ErrorCode::TopicAuthorizationFailed)
            ),
            ("orders".to_string(), 0),
            // Unknown and not readable: refused, its absence not revealed.
            (
                "ghost".to_string(),
                code(ErrorCode::TopicAuthorizationFailed)
            ),
            // Unknown but readable: as without an authorizer.
            (
                "missing".to_string(),
                code(ErrorCode::UnknownTopicOrPartition)
            ),
        ]
    );
    // Only the authorized topic was committed.
    assert_eq!(
        fetched(&fetch_v7(&mut admin, "g1", Some(&["orders", "secret"]))),
        vec![("orders".to_string(), 7, 0), ("secret".to_string(), -1, 0)]
    );
    // Every topic refused: nothing committed, every code given.
    assert_eq!(
        commit(&mut c, "g1", &[("secret", 3)]),
        vec![(
            "secret".to_string(),
            code(ErrorCode::TopicAuthorizationFailed)
        )]
    );
    assert_eq!(
        fetched(&fetch_v7(&mut admin, "g1", Some(&["secret"]))),
        vec![("secret".to_string(), -1, 0)]
    );
}

#[test]
fn a_prefixed_group_acl_covers_only_its_prefix() {
    let n = node();
    let mut admin = n.admin();
    must_create(&mut admin, "orders", 1);
    create_acls(
        &mut admin,
        vec![
            acl(GROUP, "app-", PREFIXED, ALICE, READ, ALLOW),
            alice(TOPIC, "orders", READ),
        ],
    );
    let mut c = n.login("alice");
    assert_eq!(find_coordinator(&mut c, "app-1"), 0);
    let (member, generation) = join_alone(&mut c, "app-1", "orders");
    assert_eq!(heartbeat(&mut c, "app-1", generation, &member), 0);

    let refused = code(ErrorCode::GroupAuthorizationFailed);
    assert_eq!(find_coordinator(&mut c, "other"), refused);
    assert_eq!(
        join_group(&mut c, &join_request("other", "", "orders")).error_code,
        refused
    );
    // The prefix is a prefix of the name, not of a word in it.
    assert_eq!(
        join_group(&mut c, &join_request("my-app-1", "", "orders")).error_code,
        refused
    );
}

#[test]
fn a_deny_beats_an_allow_on_a_group() {
    let n = node();
    let mut admin = n.admin();
    must_create(&mut admin, "orders", 1);
    assert_eq!(find_coordinator(&mut admin, "g1"), 0);
    create_acls(
        &mut admin,
        vec![
            alice(GROUP, "g1", ALL),
            acl(GROUP, "g1", LITERAL, ALICE, READ, DENY),
            alice(TOPIC, "orders", READ),
        ],
    );
    let mut c = n.login("alice");
    // Describe comes from the ALL allow and is not denied; Read is.
    assert_eq!(find_coordinator(&mut c, "g1"), 0);
    let refused = code(ErrorCode::GroupAuthorizationFailed);
    assert_eq!(
        join_group(&mut c, &join_request("g1", "", "orders")).error_code,
        refused
    );
    assert_eq!(
        offset_commit(&mut c, "g1", -1, "", "orders", 0, 1, None),
        refused
    );
    let g = &describe_groups(&mut c, &["g1"], true)[0];
    assert_eq!(g.error_code, 0);
    assert_eq!(
        g.authorized_operations,
        GROUP_DESCRIBE_BIT | GROUP_DELETE_BIT,
        "everything ALL gives but the denied Read"
    );
}

#[test]
fn list_groups_shows_only_describable_groups_unless_cluster_describe() {
    let n = node();
    let mut admin = n.admin();
    must_create(&mut admin, "orders", 1);
    assert_eq!(find_coordinator(&mut admin, "g1"), 0);
    for g in ["g1", "g2", "app-x"] {
        assert_eq!(commit(&mut admin, g, &[("orders", 1)])[0].1, 0, "{g}");
    }
    create_acls(
        &mut admin,
        vec![
            alice(GROUP, "g1", DESCRIBE),
            acl(GROUP, "app-", PREFIXED, ALICE, READ, ALLOW),
            acl(
                CLUSTER,
                CLUSTER_NAME,
                LITERAL,
                "User:carol",
                DESCRIBE,
                ALLOW,
            ),
        ],
    );
    assert_eq!(list_groups(&mut n.login("alice")), vec!["app-x", "g1"]);
    assert_eq!(list_groups(&mut admin), vec!["app-x", "g1", "g2"]);
    assert_eq!(
        list_groups(&mut n.login("carol")),
        vec!["app-x", "g1", "g2"],
        "Describe on the cluster lists every group"
    );
    assert!(list_groups(&mut n.login("bob")).is_empty());
}

#[test]
fn describe_groups_reports_each_groups_authorized_operations() {
    let n = node();
    let mut admin = n.admin();
    must_create(&mut admin, "orders", 1);
    assert_eq!(find_coordinator(&mut admin, "g1"), 0);
    assert_eq!(commit(&mut admin, "g1", &[("orders", 1)])[0].1, 0);
    create_acls(
        &mut admin,
        vec![
            alice(GROUP, "g1", READ),
            alice(GROUP, "g2", DESCRIBE),
            alice(GROUP, "g4", DELETE),
        ],
    );
    let mut c = n.login("alice");
    let got = describe_groups(&mut c, &["g1", "g2", "g3", "g4"], true);
    let summary: Vec<(&str, i16, &str, i32)> = got
        .iter()
        .map(|g| {
            (
                g.group_id.as_str(),
                g.error_code,
                g.group_state.as_str(),
                g.authorized_operations,
            )
        })
        .collect();
    let refused = code(ErrorCode::GroupAuthorizationFailed);
    assert_eq!(
        summary,
        vec![
            ("g1", 0, "Empty", GROUP_READ_BIT | GROUP_DESCRIBE_BIT),
            ("g2", 0, "Dead", GROUP_DESCRIBE_BIT),
            ("g3", refused, "", i32::MIN),
            // Delete implies Describe, as in Kafka.
            ("g4", 0, "Dead", GROUP_DELETE_BIT | GROUP_DESCRIBE_BIT),
        ]
    );
    // Not asked for: Kafka's "omitted".
    assert_eq!(
        describe_groups(&mut c, &["g1"], false)[0].authorized_operations,
        i32::MIN
    );
    assert_eq!(
        describe_groups(&mut admin, &["g1"], true)[0].authorized_operations,
        GROUP_READ_BIT | GROUP_DELETE_BIT | GROUP_DESCRIBE_BIT
    );
}

#[test]
fn offset_fetch_hides_topics_alice_may_not_describe() {
    let n = node();
    let mut admin = n.admin();
    must_create(&mut admin, "orders", 1);
    must_create(&mut admin, "secret", 1);
    assert_eq!(find_coordinator(&mut admin, "g1"), 0);
    for g in ["g1", "g2"] {
        assert_eq!(
            commit(&mut admin, g, &[("orders", 11), ("secret", 22)]),
            vec![("orders".to_string(), 0), ("secret".to_string(), 0)]
        );
    }
    create_acls(
        &mut admin,
        vec![
            alice(GROUP, "g1", DESCRIBE),
            alice(TOPIC, "orders", DESCRIBE),
        ],
    );
    let mut c = n.login("alice");

    // All of the group's offsets: the topic alice may not describe is left out.
    let all = fetch_v7(&mut c, "g1", None);
    assert_eq!(all.error_code, 0);
    assert_eq!(fetched(&all), vec![("orders".to_string(), 11, 0)]);
    // Named: refused per partition, in request order.
    let named = fetch_v7(&mut c, "g1", Some(&["secret", "orders"]));
    assert_eq!(
        fetched(&named),
        vec![
            (
                "secret".to_string(),
                -1,
                code(ErrorCode::TopicAuthorizationFailed)
            ),
            ("orders".to_string(), 11, 0)
        ]
    );
    // A group alice may not describe: the group-level code (v2-7) or each partition's
    // (v1, which has no group-level code).
    let g2 = fetch_v7(&mut c, "g2", None);
    assert_eq!(
        (g2.error_code, g2.topics.len()),
        (code(ErrorCode::GroupAuthorizationFailed), 0)
    );
    let v1 = fetch_at(&mut c, 1, "g2", Some(&["orders"]));
    assert_eq!(
        fetched(&v1),
        vec![(
            "orders".to_string(),
            -1,
            code(ErrorCode::GroupAuthorizationFailed)
        )]
    );

    // v8: per group, in one request.
    let req = OffsetFetchRequest {
        groups: ["g1", "g2"]
            .iter()
            .map(|g| OffsetFetchRequestGroup {
                group_id: g.to_string(),
                member_id: None,
                member_epoch: -1,
                topics: None,
            })
            .collect(),
        ..Default::default()
    };
    let batched: OffsetFetchResponse = c.call(ApiKey::OffsetFetch, 8, &req);
    let summary: Vec<GroupOffsets<'_>> = batched
        .groups
        .iter()
        .map(|g| {
            (
                g.group_id.as_str(),
                g.error_code,
                g.topics
                    .iter()
                    .map(|t| (t.name.as_str(), t.partitions[0].committed_offset))
                    .collect(),
            )
        })
        .collect();
    assert_eq!(
        summary,
        vec![
            ("g1", 0, vec![("orders", 11)]),
            ("g2", code(ErrorCode::GroupAuthorizationFailed), vec![]),
        ]
    );
    // The admin sees both topics.
    let mut everything = fetched(&fetch_v7(&mut admin, "g1", None));
    everything.sort();
    assert_eq!(
        everything,
        vec![("orders".to_string(), 11, 0), ("secret".to_string(), 22, 0)]
    );
}

#[test]
fn offset_delete_and_delete_groups_need_delete_on_the_group() {
    let n = node();
    let mut admin = n.admin();
    must_create(&mut admin, "orders", 1);
    must_create(&mut admin, "secret", 1);
    assert_eq!(find_coordinator(&mut admin, "g1"), 0);
    for g in ["g1", "g2"] {
        assert_eq!(
            commit(&mut admin, g, &[("orders", 3), ("secret", 4)]).len(),
            2
        );
    }
    create_acls(
        &mut admin,
        vec![alice(GROUP, "g1", DELETE), alice(TOPIC, "orders", READ)],
    );
    let mut c = n.login("alice");
    let delete_offsets = |c: &mut RawClient, group: &str| -> OffsetDeleteResponse {
        let req = OffsetDeleteRequest {
            group_id: group.into(),
            topics: ["orders", "secret"]
                .iter()
                .map(|t| OffsetDeleteRequestTopic {
                    name: t.to_string(),
                    partitions: vec![OffsetDeleteRequestPartition { partition_index: 0 }],
                })
                .collect(),
        };
        c.call(ApiKey::OffsetDelete, 0, &req)
    };
    let g1 = delete_offsets(&mut c, "g1");
    assert_eq!(g1.error_code, 0);
    let per_topic: Vec<(&str, i16)> = g1
        .topics
        .iter()
        .map(|t| (t.name.as_str(), t.partitions[0].error_code))
        .collect();
    assert_eq!(
        per_topic,
        vec![
            ("orders", 0),
            ("secret", code(ErrorCode::TopicAuthorizationFailed))
        ]
    );
    let g2 = delete_offsets(&mut c, "g2");
    assert_eq!(
        (g2.error_code, g2.topics.len()),
        (code(ErrorCode::GroupAuthorizationFailed), 0)
    );
    assert_eq!(
        fetched(&fetch_v7(&mut admin, "g1", Some(&["orders", "secret"]))),
        vec![("orders".to_string(), -1, 0), ("secret".to_string(), 4, 0)]
    );

    let req = DeleteGroupsRequest {
        groups_names: vec!["g2".into(), "g1".into()],
    };
    let deleted: DeleteGroupsResponse = c.call(ApiKey::DeleteGroups, 2, &req);
    let results: Vec<(&str, i16)> = deleted
        .results
        .iter()
        .map(|r| (r.group_id.as_str(), r.error_code))
        .collect();
    assert_eq!(
        results,
        vec![("g2", code(ErrorCode::GroupAuthorizationFailed)), ("g1", 0)]
    );
    assert_eq!(list_groups(&mut admin), vec!["g2"]);
    assert_eq!(
        fetched(&fetch_v7(&mut admin, "g2", Some(&["orders"]))),
        vec![("orders".to_string(), 3, 0)]
    );
}

#[test]
fn init_producer_id_needs_write_on_the_id_or_idempotent_rights() {
    let n = node();
    let mut admin = n.admin();
    let mut c = n.login("alice");
    assert_eq!(
        init_pid(&mut c, Some("tx-a")).0,
        code(ErrorCode::TransactionalIdAuthorizationFailed)
    );
    assert_eq!(
        init_pid(&mut c, None),
        (code(ErrorCode::ClusterAuthorizationFailed), -1, -1)
    );
    create_acls(
        &mut admin,
        vec![
            // Write on any topic, even one that does not exist, makes an idempotent
            // producer.
            alice(TOPIC, "orders", WRITE),
            alice(TXN_ID, "tx-a", WRITE),
            acl(
                CLUSTER,
                CLUSTER_NAME,
                LITERAL,
                "User:carol",
                IDEMPOTENT_WRITE,
                ALLOW,
            ),
        ],
    );
    let (err, pid, epoch) = init_pid(&mut c, None);
    assert_eq!((err, epoch), (0, 0));
    assert!(pid >= 0);
    let (err, pid, _) = init_pid(&mut n.login("carol"), None);
    assert_eq!(err, 0, "IdempotentWrite on the cluster");
    assert!(pid >= 0);
    assert_eq!(
        init_pid(&mut n.login("bob"), None).0,
        code(ErrorCode::ClusterAuthorizationFailed)
    );

    assert_eq!(find_txn(&mut c, "tx-a"), 0, "Write implies Describe");
    let (err, pid, epoch) = init_pid(&mut c, Some("tx-a"));
    assert_eq!((err, epoch), (0, 0));
    assert!(pid >= 0);
    assert_eq!(
        init_pid(&mut c, Some("tx-b")).0,
        code(ErrorCode::TransactionalIdAuthorizationFailed)
    );
}

#[test]
fn write_txn_markers_needs_cluster_action() {
    let n = node();
    let mut admin = n.admin();
    must_create(&mut admin, "orders", 1);
    let pid = init_producer_id(&mut admin);
    create_acls(&mut admin, vec![alice(TOPIC, "orders", ALL)]);
    let markers = |c: &mut RawClient| -> Vec<(String, i16)> {
        let req = WriteTxnMarkersRequest {
            markers: vec![WritableTxnMarker {
                producer_id: pid,
                producer_epoch: 0,
                transaction_result: false,
                topics: vec![WritableTxnMarkerTopic {
                    name: "orders".into(),
                    partition_indexes: vec![0],
                }],
                coordinator_epoch: 0,
            }],
        };
        let resp: WriteTxnMarkersResponse = c.call(ApiKey::WriteTxnMarkers, 1, &req);
        assert_eq!(resp.markers[0].producer_id, pid);
        resp.markers[0]
            .topics
            .iter()
            .flat_map(|t| t.partitions.iter().map(|p| (t.name.clone(), p.error_code)))
            .collect()
    };
    // Every right on the topic is not enough: markers are the brokers' business.
    assert_eq!(
        markers(&mut n.login("alice")),
        vec![(
            "orders".to_string(),
            code(ErrorCode::ClusterAuthorizationFailed)
        )]
    );
    assert_eq!(
        list_offset(&mut admin, 7, "orders", 0, -1).offset,
        0,
        "no marker written"
    );
    // The super user (as a broker would be) writes it.
    assert_eq!(markers(&mut admin), vec![("orders".to_string(), 0)]);
    assert_eq!(list_offset(&mut admin, 7, "orders", 0, -1).offset, 1);
}

#[test]
fn transactional_requests_check_the_id_the_topics_and_the_group() {
    let n = node();
    let mut admin = n.admin();
    must_create(&mut admin, "orders", 1);
    must_create(&mut admin, "secret", 1);
    create_acls(
        &mut admin,
        vec![
            alice(TXN_ID, "tx-a", WRITE),
            alice(TOPIC, "orders", WRITE),
            alice(TOPIC, "orders", READ),
            alice(GROUP, "g1", READ),
            acl(TXN_ID, "tx-a", LITERAL, "User:carol", WRITE, ALLOW),
        ],
    );
    let mut c = n.login("alice");
    let mut bob = n.login("bob");
    assert_eq!(find_txn(&mut c, "tx-a"), 0);
    assert_eq!(find_coordinator(&mut c, "g1"), 0);
    let (err, pid, epoch) = init_pid(&mut c, Some("tx-a"));
    assert_eq!(err, 0);

    let not_attempted = code(ErrorCode::OperationNotAttempted);
    let topic_refused = code(ErrorCode::TopicAuthorizationFailed);
    let id_refused = code(ErrorCode::TransactionalIdAuthorizationFailed);
    // One topic it may not write and nothing is added.
    assert_eq!(
        add_partitions(&mut c, "tx-a", pid, epoch, &["orders", "secret"]),
        vec![not_attempted, topic_refused]
    );
    // Unknown and not writable: refused, not unknown.
    assert_eq!(
        add_partitions(&mut c, "tx-a", pid, epoch, &["orders", "ghost"]),
        vec![not_attempted, topic_refused]
    );
    assert_eq!(
        add_partitions(&mut bob, "tx-a", pid, epoch, &["orders", "secret"]),
        vec![id_refused, id_refused]
    );
    let describe = |c: &mut RawClient| -> (String, Vec<String>) {
        let req = DescribeTransactionsRequest {
            transactional_ids: vec!["tx-a".into()],
        };
        let resp: DescribeTransactionsResponse = c.call(ApiKey::DescribeTransactions, 0, &req);
        let t = &resp.transaction_states[0];
        assert_eq!(t.error_code, 0);
        (
            t.transaction_state.clone(),
            t.topics.iter().map(|t| t.topic.clone()).collect(),
        )
    };
    assert_eq!(describe(&mut admin), ("Empty".to_string(), vec![]));
    assert_eq!(
        add_partitions(&mut c, "tx-a", pid, epoch, &["orders"]),
        vec![0]
    );

    // Brokers' verification (v4+) needs ClusterAction.
    let verify = AddPartitionsToTxnRequest {
        transactions: vec![AddPartitionsToTxnTransaction {
            transactional_id: "tx-a".into(),
            producer_id: pid,
            producer_epoch: epoch,
            verify_only: true,
            topics: vec![AddPartitionsToTxnTopic {
                name: "orders".into(),
                partitions: vec![0],
            }],
        }],
        ..Default::default()
    };
    let v4: AddPartitionsToTxnResponse = c.call(ApiKey::AddPartitionsToTxn, 4, &verify);
    assert_eq!(
        (v4.error_code, v4.results_by_transaction.len()),
        (code(ErrorCode::ClusterAuthorizationFailed), 0)
    );
    let v4: AddPartitionsToTxnResponse = admin.call(ApiKey::AddPartitionsToTxn, 4, &verify);
    assert_eq!(v4.error_code, 0);
    assert_eq!(
        v4.results_by_transaction[0].topic_results[0].results_by_partition[0].partition_error_code,
        0,
        "orders-0 is in the transaction"
    );

    let add_offsets = |c: &mut RawClient, group: &str| -> i16 {
        let req = AddOffsetsToTxnRequest {
            transactional_id: "tx-a".into(),
            producer_id: pid,
            producer_epoch: epoch,
            group_id: group.into(),
        };
        let resp: AddOffsetsToTxnResponse = c.call(ApiKey::AddOffsetsToTxn, 3, &req);
        resp.error_code
    };
    assert_eq!(add_offsets(&mut bob, "g1"), id_refused);
    assert_eq!(
        add_offsets(&mut c, "g2"),
        code(ErrorCode::GroupAuthorizationFailed)
    );
    assert_eq!(add_offsets(&mut c, "g1"), 0);

    let txn_commit = |c: &mut RawClient| -> Vec<(String, i16)> {
        let req = TxnOffsetCommitRequest {
            transactional_id: "tx-a".into(),
            group_id: "g1".into(),
            producer_id: pid,
            producer_epoch: epoch,
            generation_id: -1,
            member_id: String::new(),
            group_instance_id: None,
            topics: [("secret", 6), ("orders", 5)]
                .iter()
                .map(|(t, o)| TxnOffsetCommitRequestTopic {
                    name: t.to_string(),
                    partitions: vec![TxnOffsetCommitRequestPartition {
                        partition_index: 0,
                        committed_offset: *o,
                        committed_leader_epoch: -1,
                        committed_metadata: None,
                    }],
                })
                .collect(),
        };
        let resp: TxnOffsetCommitResponse = c.call(ApiKey::TxnOffsetCommit, 3, &req);
        resp.topics
            .iter()
            .map(|t| (t.name.clone(), t.partitions[0].error_code))
            .collect()
    };
    assert_eq!(
        txn_commit(&mut bob),
        vec![
            ("secret".to_string(), id_refused),
            ("orders".to_string(), id_refused)
        ]
    );
    let group_refused = code(ErrorCode::GroupAuthorizationFailed);
    assert_eq!(
        txn_commit(&mut n.login("carol")),
        vec![
            ("secret".to_string(), group_refused),
            ("orders".to_string(), group_refused)
        ],
        "Write on the id but no Read on the group"
    );
    assert_eq!(
        txn_commit(&mut c),
        vec![
            ("secret".to_string(), topic_refused),
            ("orders".to_string(), 0)
        ]
    );

    let end = |c: &mut RawClient| -> i16 {
        let req = EndTxnRequest {
            transactional_id: "tx-a".into(),
            producer_id: pid,
            producer_epoch: epoch,
            committed: true,
        };
        let resp: EndTxnResponse = c.call(ApiKey::EndTxn, 3, &req);
        resp.error_code
    };
    assert_eq!(end(&mut bob), id_refused);
    assert_eq!(describe(&mut admin).0, "Ongoing", "bob ended nothing");
    assert_eq!(end(&mut c), 0);
    sluice_system_tests::wait_for(
        std::time::Duration::from_secs(10),
        "the committed offset",
        || fetched(&fetch_v7(&mut admin, "g1", Some(&["orders"])))[0].1 == 5,
    );
}

#[test]
fn transaction_views_show_only_describable_ids_and_topics() {
    let n = node();
    let mut admin = n.admin();
    must_create(&mut admin, "orders", 1);
    must_create(&mut admin, "secret", 1);
    let mut ids = Vec::new();
    for id in ["tx-a", "tx-b"] {
        assert_eq!(find_txn(&mut admin, id), 0);
        let (err, pid, epoch) = init_pid(&mut admin, Some(id));
        assert_eq!(err, 0);
        ids.push((pid, epoch));
    }
    let (pid, epoch) = ids[0];
    assert_eq!(
        add_partitions(&mut admin, "tx-a", pid, epoch, &["orders", "secret"]),
        vec![0, 0]
    );
    create_acls(
        &mut admin,
        vec![
            alice(TXN_ID, "tx-a", DESCRIBE),
            alice(TOPIC, "orders", DESCRIBE),
        ],
    );
    let list = |c: &mut RawClient| -> Vec<String> {
        let req = ListTransactionsRequest {
            state_filters: vec![],
            producer_id_filters: vec![],
            duration_filter: -1,
        };
        let resp: ListTransactionsResponse = c.call(ApiKey::ListTransactions, 1, &req);
        assert_eq!(resp.error_code, 0);
        let mut ids: Vec<String> = resp
            .transaction_states
            .into_iter()
            .map(|t| t.transactional_id)
            .collect();
        ids.sort();
        ids
    };
    let describe = |c: &mut RawClient| -> Vec<(String, i16, Vec<String>)> {
        let req = DescribeTransactionsRequest {
            transactional_ids: vec!["tx-a".into(), "tx-b".into()],
        };
        let resp: DescribeTransactionsResponse = c.call(ApiKey::DescribeTransactions, 0, &req);
        resp.transaction_states
            .into_iter()
            .map(|t| {
                (
                    t.transactional_id,
                    t.error_code,
                    t.topics.into_iter().map(|t| t.topic).collect(),
                )
            })
            .collect()
    };
    let mut c = n.login("alice");
    assert_eq!(list(&mut c), vec!["tx-a"]);
    assert_eq!(list(&mut admin), vec!["tx-a", "tx-b"]);
    assert!(list(&mut n.login("bob")).is_empty());
    assert_eq!(
        describe(&mut c),
        vec![
            ("tx-a".to_string(), 0, vec!["orders".to_string()]),
            (
                "tx-b".to_string(),
                code(ErrorCode::TransactionalIdAuthorizationFailed),
                vec![]
            ),
        ]
    );
    assert_eq!(
        describe(&mut admin),
        vec![
            (
                "tx-a".to_string(),
                0,
                vec!["orders".to_string(), "secret".to_string()]
            ),
            ("tx-b".to_string(), 0, vec![]),
        ]
    );
}

#[test]
fn the_super_user_needs_no_acls() {
    let n = node();
    let mut admin = n.admin();
    must_create(&mut admin, "orders", 1);
    assert_eq!(find_coordinator(&mut admin, "g1"), 0);
    let (member, generation) = join_alone(&mut admin, "g1", "orders");
    assert_eq!(heartbeat(&mut admin, "g1", generation, &member), 0);
    assert_eq!(
        offset_commit(&mut admin, "g1", generation, &member, "orders", 0, 9, None),
        0
    );
    assert_eq!(
        fetched(&fetch_v7(&mut admin, "g1", None)),
        vec![("orders".to_string(), 9, 0)]
    );
    let g = &describe_groups(&mut admin, &["g1"], true)[0];
    assert_eq!((g.error_code, g.group_state.as_str()), (0, "Stable"));
    assert_eq!(g.members.len(), 1);
    assert_eq!(list_groups(&mut admin), vec!["g1"]);
    let (err, _, epoch) = init_pid(&mut admin, None);
    assert_eq!((err, epoch), (0, 0));
    assert_eq!(find_txn(&mut admin, "tx"), 0);
    let (err, pid, epoch) = init_pid(&mut admin, Some("tx"));
    assert_eq!(err, 0);
    assert_eq!(
        add_partitions(&mut admin, "tx", pid, epoch, &["orders"]),
        vec![0]
    );
    let left = leave_group(&mut admin, "g1", &member);
    assert_eq!(left.error_code, 0);
    let req = DeleteGroupsRequest {
        groups_names: vec!["g1".into()],
    };
    let deleted: DeleteGroupsResponse = admin.call(ApiKey::DeleteGroups, 2, &req);
    assert_eq!(deleted.results[0].error_code, 0);
}
