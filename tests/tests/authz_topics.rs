//! Topic and cluster ACLs enforced by the data and admin APIs, against a node with
//! `--authorizer standard` (`SecuredNode`): who may produce, fetch, describe, create,
//! delete and configure what, with Kafka's error codes (TOPIC_AUTHORIZATION_FAILED
//! whether or not a topic exists, CLUSTER_AUTHORIZATION_FAILED for the cluster). Plus
//! the default: a node without an authorizer serves its ANONYMOUS clients everything.

use bytes::Bytes;
use sluice_protocol::api::ApiKey;
use sluice_protocol::codec::Uuid;
use sluice_protocol::error::ErrorCode;
use sluice_protocol::messages::create_partitions_request::CreatePartitionsTopic;
use sluice_protocol::messages::delete_records_request::{
    DeleteRecordsPartition, DeleteRecordsTopic,
};
use sluice_protocol::messages::describe_configs_request::DescribeConfigsResource;
use sluice_protocol::messages::describe_producers_request::TopicRequest as ProducersTopic;
use sluice_protocol::messages::describe_quorum_request::{
    PartitionData as QuorumPartition, TopicData as QuorumTopic,
};
use sluice_protocol::messages::describe_topic_partitions_request::TopicRequest;
use sluice_protocol::messages::elect_leaders_request::TopicPartitions;
use sluice_protocol::messages::metadata_request::MetadataRequestTopic;
use sluice_protocol::messages::offset_for_leader_epoch_request::{
    OffsetForLeaderPartition, OffsetForLeaderTopic,
};
use sluice_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use sluice_protocol::messages::{
    alter_configs_request, incremental_alter_configs_request, AlterConfigsRequest,
    AlterConfigsResponse, CreatePartitionsRequest, CreatePartitionsResponse, CreateTopicsRequest,
    CreateTopicsResponse, DeleteRecordsRequest, DeleteRecordsResponse, DescribeClusterRequest,
    DescribeClusterResponse, DescribeConfigsRequest, DescribeConfigsResponse,
    DescribeLogDirsRequest, DescribeLogDirsResponse, DescribeProducersRequest,
    DescribeProducersResponse, DescribeQuorumRequest, DescribeQuorumResponse,
    DescribeTopicPartitionsRequest, DescribeTopicPartitionsResponse, ElectLeadersRequest,
    ElectLeadersResponse, FetchResponse, IncrementalAlterConfigsRequest,
    IncrementalAlterConfigsResponse, MetadataRequest, MetadataResponse,
    OffsetForLeaderEpochRequest, OffsetForLeaderEpochResponse, ProduceRequest, ProduceResponse,
};
use sluice_system_tests::raw::RawClient;
use sluice_system_tests::secure::{acl, create_acls, SecuredNode};
use sluice_system_tests::wire::{
    batch, creatable, create_topic, delete_topic, fetch_at, fetch_request, list_offset, metadata,
    must_create, produce_ok, produce_v, values,
};
use sluice_system_tests::Sluice;

// Kafka's ACL codes (as `sluice_system_tests::secure::acl` takes them).
const TOPIC: i8 = 2;
const CLUSTER: i8 = 4;
const LITERAL: i8 = 3;
const PREFIXED: i8 = 4;
const ALL: i8 = 2;
const READ: i8 = 3;
const WRITE: i8 = 4;
const CREATE: i8 = 5;
const DELETE: i8 = 6;
const ALTER: i8 = 7;
const DESCRIBE: i8 = 8;
const DESCRIBE_CONFIGS: i8 = 10;
const ALTER_CONFIGS: i8 = 11;
const DENY: i8 = 2;
const ALLOW: i8 = 3;

/// Kafka's ConfigResource types.
const RESOURCE_TOPIC: i8 = 2;
const RESOURCE_BROKER: i8 = 4;

const ALICE: &str = "User:alice";
const BOB: &str = "User:bob";

fn topic_denied() -> i16 {
    ErrorCode::TopicAuthorizationFailed.code()
}

fn cluster_denied() -> i16 {
    ErrorCode::ClusterAuthorizationFailed.code()
}

/// Produce v9, acks=-1, of one batch; the partition's error code.
fn produce_code(c: &mut RawClient, topic: &str, value: &[u8]) -> i16 {
    produce_v(c, 9, topic, 0, batch(&[value])).error_code
}

/// Fetch v12 by name from offset 0: the partition's error code and values.
fn fetch_values(c: &mut RawClient, topic: &str) -> (i16, Vec<String>) {
    let p = fetch_at(c, topic, 0, 0);
    let vals = p.records.as_ref().map(values).unwrap_or_default();
    (p.error_code, vals)
}

/// Metadata v12 with authorized operations, for `topics` (`None`: all).
fn metadata_ops(c: &mut RawClient, topics: Option<&[&str]>) -> MetadataResponse {
    c.call(
        ApiKey::Metadata,
        12,
        &MetadataRequest {
            topics: topics.map(|ts| {
                ts.iter()
                    .map(|t| MetadataRequestTopic {
                        topic_id: Uuid::ZERO,
                        name: Some(t.to_string()),
                    })
                    .collect()
            }),
            allow_auto_topic_creation: false,
            include_cluster_authorized_operations: false,
            include_topic_authorized_operations: true,
        },
    )
}

fn bits(ops: &[i8]) -> i32 {
    ops.iter().fold(0, |b, op| b | 1 << op)
}

#[test]
fn write_and_read_acls_let_alice_use_orders_and_nobody_else() {
    let node = SecuredNode::start(&[]);
    let mut admin = node.admin();
    must_create(&mut admin, "orders", 1);
    create_acls(
        &mut admin,
        vec![
            acl(TOPIC, "orders", LITERAL, ALICE, WRITE, ALLOW),
            acl(TOPIC, "orders", LITERAL, ALICE, READ, ALLOW),
        ],
    );

    let mut alice = node.login("alice");
    assert_eq!(produce_ok(&mut alice, "orders", 0, &[b"o1", b"o2"]), 0);
    assert_eq!(
        fetch_values(&mut alice, "orders"),
        (0, vec!["o1".into(), "o2".into()])
    );

    let mut bob = node.login("bob");
    assert_eq!(produce_code(&mut bob, "orders", b"nope"), topic_denied());
    let (code, vals) = fetch_values(&mut bob, "orders");
    assert_eq!(code, topic_denied());
    assert!(vals.is_empty(), "bob read {vals:?}");
    // A topic that does not exist is refused the same way: bob may not learn whether
    // it does.
    assert_eq!(
        produce_code(&mut bob, "no-such-topic", b"x"),
        topic_denied()
    );
    assert_eq!(fetch_values(&mut bob, "no-such-topic").0, topic_denied());
    // ListOffsets needs Describe, which bob lacks and alice has through Read.
    assert_eq!(
        list_offset(&mut bob, 7, "orders", 0, -1).error_code,
        topic_denied()
    );
    let latest = list_offset(&mut alice, 7, "orders", 0, -1);
    assert_eq!((latest.error_code, latest.offset), (0, 2));

    // bob's refused produce appended nothing: alice still reads exactly her two.
    assert_eq!(
        fetch_values(&mut alice, "orders"),
        (0, vec!["o1".into(), "o2".into()])
    );
}

#[test]
fn one_produce_appends_the_authorized_partitions_and_refuses_the_rest() {
    let node = SecuredNode::start(&[]);
    let mut admin = node.admin();
    must_create(&mut admin, "mine", 1);
    must_create(&mut admin, "theirs", 1);
    create_acls(
        &mut admin,
        vec![acl(TOPIC, "mine", LITERAL, ALICE, WRITE, ALLOW)],
    );
    let mut alice = node.login("alice");
    let data = |name: &str| TopicProduceData {
        name: name.into(),
        partition_data: vec![PartitionProduceData {
            index: 0,
            records: Some(batch(&[b"v"])),
        }],
    };
    let resp: ProduceResponse = alice.call(
        ApiKey::Produce,
        9,
        &ProduceRequest {
            transactional_id: None,
            acks: -1,
            timeout_ms: 10_000,
            topic_data: vec![data("mine"), data("theirs")],
        },
    );
    let codes: Vec<(String, i16)> = resp
        .responses
        .iter()
        .map(|t| (t.name.clone(), t.partition_responses[0].error_code))
        .collect();
    assert_eq!(
        codes,
        [("mine".into(), 0), ("theirs".into(), topic_denied())]
    );
    let (code, vals) = fetch_values(&mut admin, "theirs");
    assert_eq!((code, vals.len()), (0, 0), "nothing appended to theirs");
    assert_eq!(fetch_values(&mut admin, "mine"), (0, vec!["v".into()]));

    // A transactional id alice may not Write: nothing at all is appended, even to the
    // topic she may write.
    let resp: ProduceResponse = alice.call(
        ApiKey::Produce,
        9,
        &ProduceRequest {
            transactional_id: Some("alice-txn".into()),
            acks: -1,
            timeout_ms: 10_000,
            topic_data: vec![data("mine")],
        },
    );
    assert_eq!(
        resp.responses[0].partition_responses[0].error_code,
        ErrorCode::TransactionalIdAuthorizationFailed.code()
    );
    assert_eq!(
        fetch_values(&mut admin, "mine").1.len(),
        1,
        "still one record"
    );

    // acks=0 gets no answer: the refused produce closes the connection (the only
    // signal such a producer gets) and appends nothing.
    alice.send(
        ApiKey::Produce,
        9,
        &sluice_system_tests::wire::produce_request("theirs", 0, 0, batch(&[b"zero"])),
    );
    assert!(
        alice.is_closed_by_peer(),
        "acks=0 refusal closes the connection"
    );
    assert_eq!(fetch_values(&mut admin, "theirs").1.len(), 0);
}

#[test]
fn prefixed_write_acl_covers_only_matching_topics() {
    let node = SecuredNode::start(&[]);
    let mut admin = node.admin();
    must_create(&mut admin, "logs-a", 1);
    must_create(&mut admin, "metrics", 1);
    create_acls(
        &mut admin,
        vec![acl(TOPIC, "logs-", PREFIXED, ALICE, WRITE, ALLOW)],
    );
    let mut alice = node.login("alice");
    assert_eq!(produce_code(&mut alice, "logs-a", b"l"), 0);
    assert_eq!(produce_code(&mut alice, "metrics", b"m"), topic_denied());
    // Write does not grant Read.
    assert_eq!(fetch_values(&mut alice, "logs-a").0, topic_denied());
}

#[test]
fn deny_beats_allow() {
    let node = SecuredNode::start(&[]);
    let mut admin = node.admin();
    must_create(&mut admin, "shared", 1);
    create_acls(
        &mut admin,
        vec![
            acl(TOPIC, "shared", LITERAL, "User:*", ALL, ALLOW),
            acl(TOPIC, "shared", LITERAL, BOB, WRITE, DENY),
        ],
    );
    let mut alice = node.login("alice");
    let mut bob = node.login("bob");
    assert_eq!(produce_code(&mut bob, "shared", b"b"), topic_denied());
    assert_eq!(produce_code(&mut alice, "shared", b"a"), 0);
    // Only Write is denied to bob: the All grant still lets him read.
    assert_eq!(fetch_values(&mut bob, "shared"), (0, vec!["a".into()]));
}

#[test]
fn super_user_needs_no_acls() {
    let node = SecuredNode::start(&[]);
    let mut admin = node.admin();
    must_create(&mut admin, "admin-only", 2);
    assert_eq!(produce_ok(&mut admin, "admin-only", 1, &[b"x"]), 0);
    let p = fetch_at(&mut admin, "admin-only", 1, 0);
    assert_eq!(p.error_code, 0);
    assert_eq!(values(p.records.as_ref().expect("records")), ["x"]);
    assert_eq!(delete_topic(&mut admin, "admin-only"), 0);
    let m = metadata(&mut admin, 12, Some(&["admin-only"]), false);
    assert_eq!(
        m.topics[0].error_code,
        ErrorCode::UnknownTopicOrPartition.code()
    );
}

#[test]
fn a_topic_without_acls_is_closed_unless_allow_everyone_if_no_acl_found() {
    let node = SecuredNode::start(&[]);
    let mut admin = node.admin();
    must_create(&mut admin, "quiet", 1);
    produce_ok(&mut admin, "quiet", 0, &[b"q"]);
    let mut alice = node.login("alice");
    assert_eq!(fetch_values(&mut alice, "quiet").0, topic_denied());
    drop(node);

    let open = SecuredNode::start(&["--allow-everyone-if-no-acl-found", "true"]);
    let mut admin = open.admin();
    must_create(&mut admin, "quiet", 1);
    produce_ok(&mut admin, "quiet", 0, &[b"q"]);
    let mut alice = open.login("alice");
    assert_eq!(fetch_values(&mut alice, "quiet"), (0, vec!["q".into()]));
    // Once the topic has any ACL, only the ACLs decide: one for bob closes it to alice.
    create_acls(
        &mut admin,
        vec![acl(TOPIC, "quiet", LITERAL, BOB, READ, ALLOW)],
    );
    assert_eq!(fetch_values(&mut alice, "quiet").0, topic_denied());
}

#[test]
fn metadata_hides_what_alice_may_not_describe() {
    let node = SecuredNode::start(&[]);
    let mut admin = node.admin();
    let visible_id = must_create(&mut admin, "visible", 2);
    must_create(&mut admin, "hidden", 1);
    create_acls(
        &mut admin,
        vec![
            acl(TOPIC, "visible", LITERAL, ALICE, DESCRIBE, ALLOW),
            acl(TOPIC, "auto-", PREFIXED, ALICE, DESCRIBE, ALLOW),
        ],
    );
    let mut alice = node.login("alice");

    let all = metadata(&mut alice, 12, None, false);
    let names: Vec<String> = all.topics.iter().filter_map(|t| t.name.clone()).collect();
    assert_eq!(
        names,
        ["visible"],
        "all-topics metadata lists only describable topics"
    );
    assert_eq!(all.topics[0].topic_id, visible_id);
    assert_eq!(all.topics[0].partitions.len(), 2);

    // Named: refused with no partitions and no topic id, existing or not.
    let named = metadata(&mut alice, 12, Some(&["hidden", "ghost", "visible"]), false);
    let got: Vec<(String, i16, usize, Uuid)> = named
        .topics
        .iter()
        .map(|t| {
            (
                t.name.clone().unwrap_or_default(),
                t.error_code,
                t.partitions.len(),
                t.topic_id,
            )
        })
        .collect();
    assert_eq!(
        got,
        [
            ("hidden".into(), topic_denied(), 0, Uuid::ZERO),
            ("ghost".into(), topic_denied(), 0, Uuid::ZERO),
            ("visible".into(), 0, 2, visible_id),
        ]
    );

    // Auto-creation of a topic alice may describe still needs Create.
    let auto = metadata(&mut alice, 12, Some(&["auto-x"]), true);
    assert_eq!(auto.topics[0].error_code, topic_denied());
    assert_eq!(
        metadata(&mut admin, 12, Some(&["auto-x"]), false).topics[0].error_code,
        ErrorCode::UnknownTopicOrPartition.code(),
        "the refused auto-creation created nothing"
    );
    create_acls(
        &mut admin,
        vec![acl(TOPIC, "auto-x", LITERAL, ALICE, CREATE, ALLOW)],
    );
    let auto = metadata(&mut alice, 12, Some(&["auto-x"]), true);
    assert_eq!(
        auto.topics[0].error_code, 0,
        "created with Create on the topic"
    );
    assert!(!auto.topics[0].partitions.is_empty());

    // DescribeTopicPartitions applies the same rule.
    let describe = |c: &mut RawClient, topics: &[&str]| -> DescribeTopicPartitionsResponse {
        c.call(
            ApiKey::DescribeTopicPartitions,
            0,
            &DescribeTopicPartitionsRequest {
                topics: topics
                    .iter()
                    .map(|t| TopicRequest {
                        name: t.to_string(),
                    })
                    .collect(),
                response_partition_limit: 2000,
                cursor: None,
            },
        )
    };
    let all = describe(&mut alice, &[]);
    let names: Vec<String> = all.topics.iter().filter_map(|t| t.name.clone()).collect();
    assert_eq!(names, ["auto-x", "visible"]);
    let named = describe(&mut alice, &["hidden", "visible"]);
    let got: Vec<(String, i16)> = named
        .topics
        .iter()
        .map(|t| (t.name.clone().unwrap_or_default(), t.error_code))
        .collect();
    assert_eq!(
        got,
        [("visible".into(), 0), ("hidden".into(), topic_denied())]
    );
    assert_eq!(named.topics[1].topic_id, Uuid::ZERO);
}

#[test]
fn authorized_operations_come_from_the_acls() {
    let node = SecuredNode::start(&[]);
    let mut admin = node.admin();
    must_create(&mut admin, "orders", 1);
    create_acls(
        &mut admin,
        vec![acl(TOPIC, "orders", LITERAL, ALICE, READ, ALLOW)],
    );
    let mut alice = node.login("alice");
    // Read implies Describe (Kafka's implied operations): exactly those two bits.
    let read_describe = bits(&[READ, DESCRIBE]);
    let m = metadata_ops(&mut alice, Some(&["orders"]));
    assert_eq!(m.topics[0].error_code, 0);
    assert_eq!(m.topics[0].topic_authorized_operations, read_describe);
    let d: DescribeTopicPartitionsResponse = alice.call(
        ApiKey::DescribeTopicPartitions,
        0,
        &DescribeTopicPartitionsRequest {
            topics: vec![TopicRequest {
                name: "orders".into(),
            }],
            response_partition_limit: 2000,
            cursor: None,
        },
    );
    assert_eq!(d.topics[0].topic_authorized_operations, read_describe);
    // The super user has every topic operation.
    let m = metadata_ops(&mut admin, Some(&["orders"]));
    assert_eq!(
        m.topics[0].topic_authorized_operations,
        bits(&[3, 4, 5, 6, 7, 8, 10, 11])
    );

    // Cluster operations: 0 without Describe on the cluster (Metadata v10 and
    // DescribeCluster), which anyone may still call, as in Kafka.
    let cluster_ops = |c: &mut RawClient| -> (i32, i16, i32) {
        let m: MetadataResponse = c.call(
            ApiKey::Metadata,
            10,
            &MetadataRequest {
                topics: Some(Vec::new()),
                allow_auto_topic_creation: false,
                include_cluster_authorized_operations: true,
                include_topic_authorized_operations: false,
            },
        );
        let d: DescribeClusterResponse = c.call(
            ApiKey::DescribeCluster,
            1,
            &DescribeClusterRequest {
                include_cluster_authorized_operations: true,
                endpoint_type: 1,
            },
        );
        assert_eq!(d.brokers.len(), 1);
        (
            m.cluster_authorized_operations,
            d.error_code,
            d.cluster_authorized_operations,
        )
    };
    assert_eq!(cluster_ops(&mut alice), (0, 0, 0));
    let everything = bits(&[5, 7, 8, 9, 10, 11, 12]);
    assert_eq!(cluster_ops(&mut admin), (everything, 0, everything));
    create_acls(
        &mut admin,
        vec![acl(
            CLUSTER,
            "kafka-cluster",
            LITERAL,
            ALICE,
            DESCRIBE,
            ALLOW,
        )],
    );
    let describe = bits(&[DESCRIBE]);
    assert_eq!(cluster_ops(&mut alice), (describe, 0, describe));
}

#[test]
fn create_topics_needs_create_and_its_configs_need_describe_configs() {
    let node = SecuredNode::start(&[]);
    let mut admin = node.admin();
    let mut alice = node.login("alice");
    let r = create_topic(&mut alice, "alice-new", 1, &[]);
    assert_eq!(r.error_code, topic_denied());
    assert_eq!(
        metadata(&mut admin, 12, Some(&["alice-new"]), false).topics[0].error_code,
        ErrorCode::UnknownTopicOrPartition.code(),
        "nothing created"
    );

    create_acls(
        &mut admin,
        vec![acl(CLUSTER, "kafka-cluster", LITERAL, ALICE, CREATE, ALLOW)],
    );
    let r = create_topic(&mut alice, "alice-new", 1, &[("retention.ms", "1234")]);
    assert_eq!(r.error_code, 0, "{:?}", r.error_message);
    // Without DescribeConfigs on the topic, the configs are withheld.
    assert_eq!(r.configs, Some(Vec::new()));
    assert_eq!(r.topic_config_error_code, topic_denied());

    create_acls(
        &mut admin,
        vec![acl(
            TOPIC,
            "alice-",
            PREFIXED,
            ALICE,
            DESCRIBE_CONFIGS,
            ALLOW,
        )],
    );
    let r = create_topic(&mut alice, "alice-other", 1, &[("retention.ms", "1234")]);
    assert_eq!((r.error_code, r.topic_config_error_code), (0, 0));
    let configs = r.configs.expect("v7 returns configs");
    let retention = configs
        .iter()
        .find(|c| c.name == "retention.ms")
        .expect("retention.ms");
    assert_eq!(retention.value.as_deref(), Some("1234"));

    // The same name twice is INVALID_REQUEST before anything else.
    let resp: CreateTopicsResponse = alice.call(
        ApiKey::CreateTopics,
        7,
        &CreateTopicsRequest {
            topics: vec![creatable("dup", 1, 1, &[]), creatable("dup", 1, 1, &[])],
            timeout_ms: 10_000,
            validate_only: false,
        },
    );
    assert!(resp
        .topics
        .iter()
        .all(|t| t.error_code == ErrorCode::InvalidRequest.code()));
}

#[test]
fn topic_admin_apis_need_their_topic_acls() {
    let node = SecuredNode::start(&[]);
    let mut admin = node.admin();
    must_create(&mut admin, "guarded", 1);
    produce_ok(&mut admin, "guarded", 0, &[b"a", b"b"]);
    // Describe and Read, none of Delete/Alter: the admin APIs still refuse.
    create_acls(
        &mut admin,
        vec![
            acl(TOPIC, "guarded", LITERAL, ALICE, READ, ALLOW),
            acl(TOPIC, "guarded", LITERAL, ALICE, DESCRIBE, ALLOW),
        ],
    );
    let mut alice = node.login("alice");
    assert_eq!(delete_topic(&mut alice, "guarded"), topic_denied());
    assert_eq!(delete_topic(&mut alice, "never-existed"), topic_denied());

    let cp: CreatePartitionsResponse = alice.call(
        ApiKey::CreatePartitions,
        3,
        &CreatePartitionsRequest {
            topics: vec![CreatePartitionsTopic {
                name: "guarded".into(),
                count: 3,
                assignments: None,
            }],
            timeout_ms: 10_000,
            validate_only: false,
        },
    );
    assert_eq!(cp.results[0].error_code, topic_denied());

    let dr: DeleteRecordsResponse = alice.call(
        ApiKey::DeleteRecords,
        2,
        &DeleteRecordsRequest {
            topics: vec![DeleteRecordsTopic {
                name: "guarded".into(),
                partitions: vec![DeleteRecordsPartition {
                    partition_index: 0,
                    offset: -1,
                }],
            }],
            timeout_ms: 10_000,
        },
    );
    assert_eq!(dr.topics[0].partitions[0].error_code, topic_denied());
    assert_eq!(
        fetch_values(&mut alice, "guarded").1,
        ["a", "b"],
        "no records deleted"
    );

    // DescribeProducers needs Read (alice has it); bob has nothing.
    let producers = |c: &mut RawClient| -> i16 {
        let r: DescribeProducersResponse = c.call(
            ApiKey::DescribeProducers,
            0,
            &DescribeProducersRequest {
                topics: vec![ProducersTopic {
                    name: "guarded".into(),
                    partition_indexes: vec![0],
                }],
            },
        );
        r.topics[0].partitions[0].error_code
    };
    let mut bob = node.login("bob");
    assert_eq!(producers(&mut alice), 0);
    assert_eq!(producers(&mut bob), topic_denied());

    // OffsetForLeaderEpoch from a consumer needs Describe.
    let epoch = |c: &mut RawClient| -> i16 {
        let r: OffsetForLeaderEpochResponse = c.call(
            ApiKey::OffsetForLeaderEpoch,
            4,
            &OffsetForLeaderEpochRequest {
                replica_id: -1,
                topics: vec![OffsetForLeaderTopic {
                    topic: "guarded".into(),
                    partitions: vec![OffsetForLeaderPartition {
                        partition: 0,
                        current_leader_epoch: -1,
                        leader_epoch: 0,
                    }],
                }],
            },
        );
        r.topics[0].partitions[0].error_code
    };
    assert_eq!(epoch(&mut alice), 0);
    assert_eq!(epoch(&mut bob), topic_denied());

    // With Delete and Alter granted, the same requests go through.
    create_acls(
        &mut admin,
        vec![
            acl(TOPIC, "guarded", LITERAL, ALICE, DELETE, ALLOW),
            acl(TOPIC, "guarded", LITERAL, ALICE, ALTER, ALLOW),
        ],
    );
    let cp: CreatePartitionsResponse = alice.call(
        ApiKey::CreatePartitions,
        3,
        &CreatePartitionsRequest {
            topics: vec![CreatePartitionsTopic {
                name: "guarded".into(),
                count: 3,
                assignments: None,
            }],
            timeout_ms: 10_000,
            validate_only: false,
        },
    );
    assert_eq!(cp.results[0].error_code, 0);
    assert_eq!(delete_topic(&mut alice, "guarded"), 0);
    assert_eq!(
        delete_topic(&mut alice, "never-existed"),
        topic_denied(),
        "Delete on guarded says nothing of other topics"
    );
}

fn describe_configs(c: &mut RawClient, resource_type: i8, name: &str) -> (i16, usize) {
    let r: DescribeConfigsResponse = c.call(
        ApiKey::DescribeConfigs,
        4,
        &DescribeConfigsRequest {
            resources: vec![DescribeConfigsResource {
                resource_type,
                resource_name: name.into(),
                configuration_keys: None,
            }],
            include_synonyms: false,
            include_documentation: false,
        },
    );
    (r.results[0].error_code, r.results[0].configs.len())
}

fn alter_configs(c: &mut RawClient, resource_type: i8, name: &str, key: &str, value: &str) -> i16 {
    let r: AlterConfigsResponse = c.call(
        ApiKey::AlterConfigs,
        2,
        &AlterConfigsRequest {
            resources: vec![alter_configs_request::AlterConfigsResource {
                resource_type,
                resource_name: name.into(),
                configs: vec![alter_configs_request::AlterableConfig {
                    name: key.into(),
                    value: Some(value.into()),
                }],
            }],
            validate_only: false,
        },
    );
    r.responses[0].error_code
}

fn incremental_alter(
    c: &mut RawClient,
    resource_type: i8,
    name: &str,
    key: &str,
    value: &str,
) -> i16 {
    let r: IncrementalAlterConfigsResponse = c.call(
        ApiKey::IncrementalAlterConfigs,
        1,
        &IncrementalAlterConfigsRequest {
            resources: vec![incremental_alter_configs_request::AlterConfigsResource {
                resource_type,
                resource_name: name.into(),
                configs: vec![incremental_alter_configs_request::AlterableConfig {
                    name: key.into(),
                    config_operation: 0,
                    value: Some(value.into()),
                }],
            }],
            validate_only: false,
        },
    );
    r.responses[0].error_code
}

#[test]
fn describe_and_alter_configs_need_config_acls() {
    let node = SecuredNode::start(&[]);
    let mut admin = node.admin();
    must_create(&mut admin, "cfg", 1);
    let mut alice = node.login("alice");

    assert_eq!(
        describe_configs(&mut alice, RESOURCE_TOPIC, "cfg"),
        (topic_denied(), 0)
    );
    assert_eq!(
        describe_configs(&mut alice, RESOURCE_TOPIC, "ghost"),
        (topic_denied(), 0)
    );
    assert_eq!(
        describe_configs(&mut alice, RESOURCE_BROKER, "1"),
        (cluster_denied(), 0)
    );
    assert_eq!(
        alter_configs(&mut alice, RESOURCE_TOPIC, "cfg", "retention.ms", "1000"),
        topic_denied()
    );
    assert_eq!(
        incremental_alter(&mut alice, RESOURCE_TOPIC, "cfg", "retention.ms", "1000"),
        topic_denied()
    );
    assert_eq!(
        alter_configs(&mut alice, RESOURCE_BROKER, "1", "log.retention.ms", "1000"),
        cluster_denied()
    );
    assert_eq!(
        incremental_alter(&mut alice, RESOURCE_BROKER, "1", "log.retention.ms", "1000"),
        cluster_denied()
    );

    create_acls(
        &mut admin,
        vec![
            acl(TOPIC, "cfg", LITERAL, ALICE, DESCRIBE_CONFIGS, ALLOW),
            acl(
                CLUSTER,
                "kafka-cluster",
                LITERAL,
                ALICE,
                DESCRIBE_CONFIGS,
                ALLOW,
            ),
        ],
    );
    let (code, n) = describe_configs(&mut alice, RESOURCE_TOPIC, "cfg");
    assert_eq!(code, 0);
    assert!(n > 10, "topic configs described: {n}");
    let (code, n) = describe_configs(&mut alice, RESOURCE_BROKER, "1");
    assert_eq!(code, 0);
    assert!(n > 5, "broker configs described: {n}");
    // DescribeConfigs does not grant AlterConfigs.
    assert_eq!(
        incremental_alter(&mut alice, RESOURCE_TOPIC, "cfg", "retention.ms", "1000"),
        topic_denied()
    );

    create_acls(
        &mut admin,
        vec![
            acl(TOPIC, "cfg", LITERAL, ALICE, ALTER_CONFIGS, ALLOW),
            acl(
                CLUSTER,
                "kafka-cluster",
                LITERAL,
                ALICE,
                ALTER_CONFIGS,
                ALLOW,
            ),
        ],
    );
    assert_eq!(
        incremental_alter(&mut alice, RESOURCE_TOPIC, "cfg", "retention.ms", "4321"),
        0
    );
    let r: DescribeConfigsResponse = alice.call(
        ApiKey::DescribeConfigs,
        4,
        &DescribeConfigsRequest {
            resources: vec![DescribeConfigsResource {
                resource_type: RESOURCE_TOPIC,
                resource_name: "cfg".into(),
                configuration_keys: Some(vec!["retention.ms".into()]),
            }],
            include_synonyms: false,
            include_documentation: false,
        },
    );
    assert_eq!(r.results[0].configs[0].value.as_deref(), Some("4321"));
    assert_eq!(
        alter_configs(&mut alice, RESOURCE_TOPIC, "cfg", "retention.ms", "5000"),
        0
    );
    // Authorized on the cluster, the broker resource gets past authorization to the
    // answer every client gets: dynamic broker configs are not supported.
    assert_eq!(
        incremental_alter(&mut alice, RESOURCE_BROKER, "1", "log.retention.ms", "1000"),
        ErrorCode::InvalidRequest.code()
    );
}

#[test]
fn cluster_admin_apis_need_cluster_acls() {
    let node = SecuredNode::start(&[]);
    let mut admin = node.admin();
    must_create(&mut admin, "t", 1);
    let mut alice = node.login("alice");

    let log_dirs = |c: &mut RawClient, v: i16| -> (i16, usize) {
        let r: DescribeLogDirsResponse = c.call(
            ApiKey::DescribeLogDirs,
            v,
            &DescribeLogDirsRequest { topics: None },
        );
        (r.error_code, r.results.len())
    };
    assert_eq!(log_dirs(&mut alice, 4), (cluster_denied(), 0));
    assert_eq!(
        log_dirs(&mut alice, 1),
        (0, 0),
        "v0-2 have no top-level error"
    );
    assert_eq!(log_dirs(&mut admin, 4), (0, 1));

    let quorum = |c: &mut RawClient| -> i16 {
        let r: DescribeQuorumResponse = c.call(
            ApiKey::DescribeQuorum,
            2,
            &DescribeQuorumRequest {
                topics: vec![QuorumTopic {
                    topic_name: "__cluster_metadata".into(),
                    partitions: vec![QuorumPartition { partition_index: 0 }],
                }],
            },
        );
        r.error_code
    };
    assert_eq!(quorum(&mut alice), cluster_denied());
    assert_eq!(quorum(&mut admin), 0);

    let elect = |c: &mut RawClient| -> (i16, Vec<i16>) {
        let r: ElectLeadersResponse = c.call(
            ApiKey::ElectLeaders,
            2,
            &ElectLeadersRequest {
                election_type: 0,
                topic_partitions: Some(vec![TopicPartitions {
                    topic: "t".into(),
                    partitions: vec![0],
                }]),
                timeout_ms: 10_000,
            },
        );
        let codes = r
            .replica_election_results
            .iter()
            .flat_map(|t| t.partition_result.iter().map(|p| p.error_code))
            .collect();
        (r.error_code, codes)
    };
    assert_eq!(
        elect(&mut alice),
        (cluster_denied(), vec![cluster_denied()])
    );
    assert_eq!(
        elect(&mut admin),
        (0, vec![ErrorCode::ElectionNotNeeded.code()])
    );

    create_acls(
        &mut admin,
        vec![
            acl(CLUSTER, "kafka-cluster", LITERAL, ALICE, DESCRIBE, ALLOW),
            acl(CLUSTER, "kafka-cluster", LITERAL, ALICE, ALTER, ALLOW),
        ],
    );
    assert_eq!(log_dirs(&mut alice, 4).0, 0);
    assert_eq!(quorum(&mut alice), 0);
    assert_eq!(
        elect(&mut alice),
        (0, vec![ErrorCode::ElectionNotNeeded.code()])
    );
}

#[test]
fn follower_fetch_needs_cluster_action() {
    let node = SecuredNode::start(&[]);
    let mut admin = node.admin();
    let id = must_create(&mut admin, "orders", 1);
    produce_ok(&mut admin, "orders", 0, &[b"r"]);
    create_acls(
        &mut admin,
        vec![acl(TOPIC, "orders", LITERAL, ALICE, READ, ALLOW)],
    );
    let mut alice = node.login("alice");
    // As a consumer alice reads.
    assert_eq!(fetch_values(&mut alice, "orders"), (0, vec!["r".into()]));
    // Claiming to be replica 1 (before v15 in the request, from v15 in ReplicaState)
    // needs ClusterAction, which Read on the topic is not.
    let mut req = fetch_request("orders", Uuid::ZERO, 0, 0);
    req.replica_id = 1;
    let resp: FetchResponse = alice.call(ApiKey::Fetch, 12, &req);
    let p = &resp.responses[0].partitions[0];
    assert_eq!(p.error_code, topic_denied());
    assert_eq!(p.records.as_ref().map_or(0, Bytes::len), 0);

    let mut req = fetch_request("", id, 0, 0);
    req.replica_state.replica_id = 1;
    req.replica_state.replica_epoch = -1;
    let resp: FetchResponse = alice.call(ApiKey::Fetch, 15, &req);
    assert_eq!(resp.responses[0].topic_id, id);
    assert_eq!(resp.responses[0].partitions[0].error_code, topic_denied());

    // By topic id as a consumer: allowed with Read; bob, without, is refused.
    let resp: FetchResponse = alice.call(ApiKey::Fetch, 13, &fetch_request("", id, 0, 0));
    assert_eq!(resp.responses[0].partitions[0].error_code, 0);
    let mut bob = node.login("bob");
    let resp: FetchResponse = bob.call(ApiKey::Fetch, 13, &fetch_request("", id, 0, 0));
    assert_eq!(resp.responses[0].partitions[0].error_code, topic_denied());
    // An id that names no topic is UNKNOWN_TOPIC_ID, whoever asks (nothing to hide).
    let ghost = Uuid([7; 16]);
    let resp: FetchResponse = bob.call(ApiKey::Fetch, 13, &fetch_request("", ghost, 0, 0));
    assert_eq!(
        resp.responses[0].partitions[0].error_code,
        ErrorCode::UnknownTopicId.code()
    );
}

#[test]
fn a_node_without_an_authorizer_serves_anonymous_clients_everything() {
    let node = Sluice::start(&[]);
    let mut c = RawClient::connect(&node.addr);
    must_create(&mut c, "open", 1);
    assert_eq!(produce_ok(&mut c, "open", 0, &[b"free"]), 0);
    let p = fetch_at(&mut c, "open", 0, 0);
    assert_eq!(p.error_code, 0);
    assert_eq!(values(p.records.as_ref().expect("records")), ["free"]);
    // Every operation is reported authorized, as before there were ACLs.
    let m = metadata_ops(&mut c, Some(&["open"]));
    assert_eq!(
        m.topics[0].topic_authorized_operations,
        bits(&[3, 4, 5, 6, 7, 8, 10, 11])
    );
    assert_eq!(describe_configs(&mut c, RESOURCE_BROKER, "").0, 0);
}
