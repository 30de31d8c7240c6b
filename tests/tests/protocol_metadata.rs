//! Every advertised version of ApiVersions, Metadata and DescribeCluster, sent raw at
//! that exact version with the field it added set (or read back), against a real node.
//!
//! The first test pins the advertised table itself: a version added to the broker
//! without a test here (or in protocol_produce_fetch.rs / protocol_admin.rs) fails it.

use sluice_protocol::api::ApiKey;
use sluice_protocol::codec::Uuid;
use sluice_protocol::error::ErrorCode;
use sluice_protocol::frame::encode_request;
use sluice_protocol::messages::metadata_request::MetadataRequestTopic;
use sluice_protocol::messages::{
    describe_quorum_request, ApiVersionsRequest, ApiVersionsResponse, DescribeClusterRequest,
    DescribeClusterResponse, DescribeQuorumRequest, DescribeQuorumResponse, FindCoordinatorRequest,
    FindCoordinatorResponse, MetadataRequest, MetadataResponse,
};
use sluice_system_tests::raw::RawClient;
use sluice_system_tests::wire::{metadata, must_create, partition_count, topic_names};
use sluice_system_tests::Sluice;

/// What the broker must advertise: (api, min, max). Each pair is exercised by a test in
/// one of the protocol_*.rs files.
const MATRIX: &[(ApiKey, i16, i16)] = &[
    // Advertised from v0 for old librdkafka's compression check (KAFKA-18659); v0-2
    // are refused (bad_input.rs: unknown_api_key_and_unsupported_versions).
    (ApiKey::Produce, 0, 11),
    (ApiKey::Fetch, 4, 17),
    (ApiKey::ListOffsets, 0, 10),
    (ApiKey::Metadata, 0, 12),
    (ApiKey::ApiVersions, 0, 4),
    (ApiKey::CreateTopics, 0, 7),
    (ApiKey::DeleteTopics, 0, 6),
    (ApiKey::DeleteRecords, 0, 2),
    (ApiKey::OffsetForLeaderEpoch, 0, 4),
    (ApiKey::DescribeConfigs, 0, 4),
    (ApiKey::AlterConfigs, 0, 2),
    (ApiKey::DescribeLogDirs, 0, 4),
    (ApiKey::CreatePartitions, 0, 3),
    (ApiKey::IncrementalAlterConfigs, 0, 1),
    (ApiKey::DescribeCluster, 0, 1),
    (ApiKey::DescribeQuorum, 0, 2),
    (ApiKey::FindCoordinator, 0, 6),
    (ApiKey::OffsetCommit, 0, 9),
    (ApiKey::OffsetFetch, 0, 9),
    (ApiKey::JoinGroup, 0, 9),
    (ApiKey::Heartbeat, 0, 4),
    (ApiKey::LeaveGroup, 0, 5),
    (ApiKey::SyncGroup, 0, 5),
    (ApiKey::DescribeGroups, 0, 5),
    (ApiKey::ListGroups, 0, 5),
    (ApiKey::DeleteGroups, 0, 2),
    (ApiKey::OffsetDelete, 0, 0),
    // Idempotent producers; exercised in replication.rs.
    (ApiKey::InitProducerId, 0, 5),
    // Exercised across a cluster in leadership.rs (they need several brokers).
    (ApiKey::ElectLeaders, 0, 2),
    (ApiKey::DescribeTopicPartitions, 0, 0),
    // Transactions; exercised in transactions.rs.
    (ApiKey::AddPartitionsToTxn, 0, 5),
    (ApiKey::AddOffsetsToTxn, 0, 4),
    (ApiKey::EndTxn, 0, 4),
    (ApiKey::TxnOffsetCommit, 0, 4),
    (ApiKey::WriteTxnMarkers, 0, 1),
    (ApiKey::DescribeProducers, 0, 0),
    (ApiKey::DescribeTransactions, 0, 0),
    (ApiKey::ListTransactions, 0, 1),
    // Security; exercised in security.rs, authz_topics.rs and authz_groups.rs.
    (ApiKey::SaslHandshake, 0, 1),
    (ApiKey::SaslAuthenticate, 0, 2),
    (ApiKey::DescribeAcls, 0, 3),
    (ApiKey::CreateAcls, 0, 3),
    (ApiKey::DeleteAcls, 0, 3),
    (ApiKey::DescribeUserScramCredentials, 0, 0),
    (ApiKey::AlterUserScramCredentials, 0, 0),
    // ConsumerGroupHeartbeat and ConsumerGroupDescribe (KIP-848) are not advertised
    // until implemented: the match below is exact.
];

/// Kafka's topic operations with no authorizer: READ, WRITE, CREATE, DELETE, ALTER,
/// DESCRIBE, DESCRIBE_CONFIGS, ALTER_CONFIGS (AclOperation codes 3-8, 10, 11).
const TOPIC_OPS: i32 =
    (1 << 3) | (1 << 4) | (1 << 5) | (1 << 6) | (1 << 7) | (1 << 8) | (1 << 10) | (1 << 11);
/// Cluster: CREATE, ALTER, DESCRIBE, CLUSTER_ACTION, DESCRIBE_CONFIGS, ALTER_CONFIGS,
/// IDEMPOTENT_WRITE (5, 7-12).
const CLUSTER_OPS: i32 =
    (1 << 5) | (1 << 7) | (1 << 8) | (1 << 9) | (1 << 10) | (1 << 11) | (1 << 12);
/// "Not requested" in Kafka's authorized-operations fields.
const OPS_OMITTED: i32 = i32::MIN;

fn api_versions(
    c: &mut RawClient,
    version: i16,
    name: &str,
    software_version: &str,
) -> ApiVersionsResponse {
    c.call(
        ApiKey::ApiVersions,
        version,
        &ApiVersionsRequest {
            client_software_name: name.into(),
            client_software_version: software_version.into(),
        },
    )
}

#[test]
fn api_versions_every_version_advertises_exactly_the_tested_matrix() {
    let node = Sluice::start(&[]);
    let mut c = RawClient::connect(&node.addr);
    let mut want: Vec<(i16, i16, i16)> = MATRIX
        .iter()
        .map(|(k, min, max)| (*k as i16, *min, *max))
        .collect();
    want.sort_unstable();
    for v in 0..=4 {
        // v0-2 carry no client software fields; v3+ must.
        let (name, ver) = if v >= 3 {
            ("sluice-tests", "1.0")
        } else {
            ("", "")
        };
        let resp = api_versions(&mut c, v, name, ver);
        assert_eq!(resp.error_code, 0, "v{v}");
        let mut got: Vec<(i16, i16, i16)> = resp
            .api_keys
            .iter()
            .map(|a| (a.api_key, a.min_version, a.max_version))
            .collect();
        got.sort_unstable();
        assert_eq!(got, want, "v{v} advertised versions");
        assert_eq!(resp.throttle_time_ms, 0, "v{v}");
        // v3+ tagged feature fields: none finalized on a single node.
        assert!(resp.finalized_features.is_empty(), "v{v}");
    }
}

#[test]
fn api_versions_unknown_version_answers_v0_with_unsupported_version() {
    let node = Sluice::start(&[]);
    let mut c = RawClient::connect(&node.addr);
    // A v4 request relabelled v5 (same header and body layout): a newer client probing.
    let body = ApiVersionsRequest {
        client_software_name: "future".into(),
        client_software_version: "9".into(),
    };
    let mut frame = encode_request(ApiKey::ApiVersions, 4, 77, Some("probe"), &body)
        .unwrap()
        .to_vec();
    frame[6..8].copy_from_slice(&5i16.to_be_bytes());
    c.write_raw(&frame).unwrap();
    let mut resp = c.read_frame().expect("an answer, not a closed connection");
    // KIP-511: response header v0 (no tagged fields), body in v0.
    assert_eq!(i32::from_be_bytes(resp[..4].try_into().unwrap()), 77);
    let mut body = resp.split_off(4);
    let r = <ApiVersionsResponse as sluice_protocol::codec::Decode>::decode(&mut body, 0).unwrap();
    assert!(body.is_empty());
    assert_eq!(r.error_code, ErrorCode::UnsupportedVersion.code());
    assert!(
        r.api_keys
            .iter()
            .any(|a| a.api_key == ApiKey::ApiVersions as i16
                && a.min_version == 0
                && a.max_version == 4),
        "the client learns which ApiVersions versions to retry with"
    );
    // The connection stays usable for the retry.
    assert_eq!(api_versions(&mut c, 4, "future", "9").error_code, 0);
}

#[test]
fn api_versions_v3_validates_client_software_name_and_version() {
    let node = Sluice::start(&[]);
    let cases: &[(i16, &str, &str, ErrorCode)] = &[
        (3, "librdkafka", "2.12.1", ErrorCode::None),
        (4, "apache-kafka-java", "4.0.0", ErrorCode::None),
        (3, "kafka_python", "2.0", ErrorCode::InvalidRequest), // '_' is not allowed
        (4, "-leading-dash", "1", ErrorCode::InvalidRequest),
        (3, "trailing.", "1", ErrorCode::InvalidRequest),
        (3, "ok", "", ErrorCode::InvalidRequest),
        (4, "ok", "1 2", ErrorCode::InvalidRequest),
        // v2 has no such fields: nothing to validate.
        (2, "", "", ErrorCode::None),
    ];
    for (v, name, ver, want) in cases {
        let mut c = RawClient::connect(&node.addr);
        let resp = api_versions(&mut c, *v, name, ver);
        assert_eq!(
            resp.error_code,
            want.code(),
            "v{v} name={name:?} version={ver:?}"
        );
        // As Kafka: a refused request carries no API list.
        assert_eq!(
            resp.api_keys.is_empty(),
            *want != ErrorCode::None,
            "v{v} {name:?}"
        );
    }
}

/// Field-by-field expectations for one Metadata version describing a known topic.
fn check_metadata(v: i16, m: &MetadataResponse, node: &Sluice, topic: &str, id: Uuid) {
    let port: i32 = node.addr.rsplit_once(':').unwrap().1.parse().unwrap();
    assert_eq!(m.brokers.len(), 1, "v{v}");
    let b = &m.brokers[0];
    assert_eq!(
        (b.node_id, b.host.as_str(), b.port),
        (1, "127.0.0.1", port),
        "v{v} broker"
    );
    assert_eq!(b.rack, None, "v{v} rack (v1+ nullable, absent before)");
    // v1 adds the controller, v2 the cluster id.
    assert_eq!(
        m.controller_id,
        if v >= 1 { 1 } else { -1 },
        "v{v} controller"
    );
    assert_eq!(
        m.cluster_id.as_ref().is_some_and(|c| !c.is_empty()),
        v >= 2,
        "v{v} cluster id"
    );
    assert_eq!(m.topics.len(), 1, "v{v}");
    let t = &m.topics[0];
    assert_eq!(t.error_code, 0, "v{v}");
    assert_eq!(t.name.as_deref(), Some(topic), "v{v}");
    assert!(!t.is_internal, "v{v}");
    // v10 adds topic IDs to the response.
    assert_eq!(
        t.topic_id,
        if v >= 10 { id } else { Uuid::ZERO },
        "v{v} topic id"
    );
    let parts: Vec<i32> = t.partitions.iter().map(|p| p.partition_index).collect();
    assert_eq!(parts, vec![0, 1], "v{v}");
    for p in &t.partitions {
        assert_eq!((p.error_code, p.leader_id), (0, 1), "v{v}");
        assert_eq!(
            (p.replica_nodes.as_slice(), p.isr_nodes.as_slice()),
            (&[1][..], &[1][..]),
            "v{v}"
        );
        // v5 adds offline replicas (none), v7 the leader epoch (0 on this node).
        assert!(p.offline_replicas.is_empty(), "v{v}");
        assert_eq!(
            p.leader_epoch,
            if v >= 7 { 0 } else { -1 },
            "v{v} leader epoch"
        );
    }
    // Authorized operations were not asked for.
    assert_eq!(t.topic_authorized_operations, OPS_OMITTED, "v{v}");
    assert_eq!(m.cluster_authorized_operations, OPS_OMITTED, "v{v}");
}

#[test]
fn metadata_every_version_describes_brokers_controller_cluster_and_topic() {
    let node = Sluice::start(&[]);
    let mut c = RawClient::connect(&node.addr);
    let id = must_create(&mut c, "meta", 2);
    assert_ne!(id, Uuid::ZERO);
    for v in 0..=12 {
        let m = metadata(&mut c, v, Some(&["meta"]), true);
        check_metadata(v, &m, &node, "meta", id);
    }
}

#[test]
fn metadata_all_topics_v0_empty_list_and_v1_null() {
    let node = Sluice::start(&[]);
    let mut c = RawClient::connect(&node.addr);
    must_create(&mut c, "a1", 1);
    must_create(&mut c, "b2", 1);
    let names = |m: &MetadataResponse| {
        m.topics
            .iter()
            .filter_map(|t| t.name.clone())
            .collect::<Vec<_>>()
    };
    // v0: an empty array means "all topics".
    assert_eq!(
        names(&metadata(&mut c, 0, Some(&[]), true)),
        vec!["a1", "b2"]
    );
    for v in 1..=12 {
        // v1+: null means all, an empty array means none.
        assert_eq!(
            names(&metadata(&mut c, v, None, true)),
            vec!["a1", "b2"],
            "v{v} null"
        );
        assert!(
            metadata(&mut c, v, Some(&[]), true).topics.is_empty(),
            "v{v} empty list"
        );
    }
}

#[test]
fn metadata_v4_allow_auto_topic_creation_false_leaves_topic_uncreated() {
    let node = Sluice::start(&["--num-partitions", "2"]);
    let mut c = RawClient::connect(&node.addr);
    for v in 0..=12i16 {
        let topic = format!("auto-v{v}");
        if v >= 4 {
            // The field v4 added: false must not create.
            let m = metadata(&mut c, v, Some(&[&topic]), false);
            assert_eq!(
                m.topics[0].error_code,
                ErrorCode::UnknownTopicOrPartition.code(),
                "v{v}"
            );
            assert_eq!(m.topics[0].name.as_deref(), Some(topic.as_str()));
            assert!(m.topics[0].partitions.is_empty());
            assert_eq!(partition_count(&mut c, &topic), None, "v{v}: not created");
        }
        // v0-3 always allow; v4+ allows when asked. Created with --num-partitions.
        let m = metadata(&mut c, v, Some(&[&topic]), true);
        assert_eq!(m.topics[0].error_code, 0, "v{v} auto-created");
        assert_eq!(m.topics[0].partitions.len(), 2, "v{v}");
        assert_eq!(
            partition_count(&mut c, &topic),
            Some(2),
            "v{v}: exists afterwards"
        );
    }
    assert_eq!(topic_names(&mut c).len(), 13);
    // A name Kafka would refuse is never auto-created.
    let m = metadata(&mut c, 12, Some(&["bad/name"]), true);
    assert_eq!(
        m.topics[0].error_code,
        ErrorCode::InvalidTopicException.code()
    );
    assert_eq!(topic_names(&mut c).len(), 13);
}

#[test]
fn metadata_v8_authorized_operations_only_when_asked() {
    let node = Sluice::start(&[]);
    let mut c = RawClient::connect(&node.addr);
    must_create(&mut c, "ops", 1);
    for v in 8..=12i16 {
        for (cluster, topic) in [(false, false), (true, false), (false, true), (true, true)] {
            // v11 removed the cluster flag (DescribeCluster reports it instead).
            if cluster && v >= 11 {
                continue;
            }
            let req = MetadataRequest {
                topics: Some(vec![MetadataRequestTopic {
                    topic_id: Uuid::ZERO,
                    name: Some("ops".into()),
                }]),
                allow_auto_topic_creation: false,
                include_cluster_authorized_operations: cluster,
                include_topic_authorized_operations: topic,
            };
            let m: MetadataResponse = c.call(ApiKey::Metadata, v, &req);
            let want_topic = if topic { TOPIC_OPS } else { OPS_OMITTED };
            let want_cluster = if cluster { CLUSTER_OPS } else { OPS_OMITTED };
            assert_eq!(
                m.topics[0].topic_authorized_operations, want_topic,
                "v{v} topic ops (asked: {topic})"
            );
            assert_eq!(
                m.cluster_authorized_operations, want_cluster,
                "v{v} cluster ops (asked: {cluster})"
            );
        }
    }
}

#[test]
fn metadata_v10_returns_topic_ids_and_v12_looks_topics_up_by_id() {
    let node = Sluice::start(&[]);
    let mut c = RawClient::connect(&node.addr);
    let id = must_create(&mut c, "by-id", 3);
    for v in [10, 11] {
        let m = metadata(&mut c, v, Some(&["by-id"]), false);
        assert_eq!(m.topics[0].topic_id, id, "v{v}");
    }
    let by_id = |id: Uuid| MetadataRequest {
        topics: Some(vec![MetadataRequestTopic {
            topic_id: id,
            name: None,
        }]),
        allow_auto_topic_creation: false,
        include_cluster_authorized_operations: false,
        include_topic_authorized_operations: false,
    };
    let m: MetadataResponse = c.call(ApiKey::Metadata, 12, &by_id(id));
    let t = &m.topics[0];
    assert_eq!(
        (
            t.error_code,
            t.name.as_deref(),
            t.topic_id,
            t.partitions.len()
        ),
        (0, Some("by-id"), id, 3)
    );
    // An ID nobody has: UNKNOWN_TOPIC_ID with a null name.
    let unknown = Uuid([7; 16]);
    let m: MetadataResponse = c.call(ApiKey::Metadata, 12, &by_id(unknown));
    let t = &m.topics[0];
    assert_eq!(
        (t.error_code, t.name.as_deref(), t.topic_id),
        (ErrorCode::UnknownTopicId.code(), None, unknown)
    );
    assert_eq!(
        topic_names(&mut c),
        vec!["by-id"],
        "lookup by id creates nothing"
    );
}

#[test]
fn describe_cluster_v0_and_v1_endpoint_type() {
    let node = Sluice::start(&[]);
    let mut c = RawClient::connect(&node.addr);
    let port: i32 = node.addr.rsplit_once(':').unwrap().1.parse().unwrap();
    let cluster_id = metadata(&mut c, 12, None, false).cluster_id.unwrap();
    for v in 0..=1i16 {
        for ops in [false, true] {
            let req = DescribeClusterRequest {
                include_cluster_authorized_operations: ops,
                endpoint_type: 1,
            };
            let r: DescribeClusterResponse = c.call(ApiKey::DescribeCluster, v, &req);
            assert_eq!(
                (r.error_code, r.error_message.as_deref()),
                (0, None),
                "v{v}"
            );
            assert_eq!(
                r.cluster_id, cluster_id,
                "v{v}: same cluster id as Metadata"
            );
            assert_eq!(r.controller_id, 1, "v{v}");
            assert_eq!(r.brokers.len(), 1);
            let b = &r.brokers[0];
            assert_eq!(
                (b.broker_id, b.host.as_str(), b.port),
                (1, "127.0.0.1", port),
                "v{v}"
            );
            assert_eq!(
                r.endpoint_type, 1,
                "v{v}: brokers (v1 field; v0 reads the default)"
            );
            assert_eq!(
                r.cluster_authorized_operations,
                if ops { CLUSTER_OPS } else { OPS_OMITTED },
                "v{v}"
            );
        }
    }
    // v1: a broker listener does not describe controllers (KIP-919).
    let req = DescribeClusterRequest {
        include_cluster_authorized_operations: false,
        endpoint_type: 2,
    };
    let r: DescribeClusterResponse = c.call(ApiKey::DescribeCluster, 1, &req);
    assert_eq!(r.error_code, ErrorCode::UnsupportedEndpointType.code());
    assert!(r.error_message.is_some());
    assert!(r.brokers.is_empty());
}

#[test]
fn describe_quorum_every_version_names_the_single_voter_as_leader() {
    let node = Sluice::start(&[]);
    let mut c = RawClient::connect(&node.addr);
    must_create(&mut c, "dq", 1);
    for v in 0..=2i16 {
        let req = DescribeQuorumRequest {
            topics: vec![
                describe_quorum_request::TopicData {
                    topic_name: "__cluster_metadata".into(),
                    partitions: vec![describe_quorum_request::PartitionData { partition_index: 0 }],
                },
                describe_quorum_request::TopicData {
                    topic_name: "nope".into(),
                    partitions: vec![describe_quorum_request::PartitionData { partition_index: 0 }],
                },
            ],
        };
        let r: DescribeQuorumResponse = c.call(ApiKey::DescribeQuorum, v, &req);
        assert_eq!(r.error_code, 0, "v{v}");
        let p = &r.topics[0].partitions[0];
        assert_eq!((p.error_code, p.leader_id), (0, 1), "v{v}");
        assert!(p.leader_epoch >= 1, "v{v}: a term was won");
        // Registration, unfencing and the topic at least, all committed and applied.
        assert!(p.high_watermark >= 3, "v{v}: {}", p.high_watermark);
        assert_eq!(p.current_voters.len(), 1, "v{v}");
        assert_eq!(p.current_voters[0].replica_id, 1, "v{v}");
        assert!(
            p.current_voters[0].log_end_offset >= p.high_watermark,
            "v{v}"
        );
        assert!(p.observers.is_empty(), "v{v}");
        assert_eq!(
            r.topics[1].partitions[0].error_code,
            ErrorCode::UnknownTopicOrPartition.code(),
            "v{v}"
        );
        if v >= 2 {
            assert_eq!(
                r.nodes.len(),
                1,
                "v{v}: the voter with its controller endpoint"
            );
            assert_eq!(r.nodes[0].node_id, 1);
        }
    }
}

#[test]
fn find_coordinator_every_version_names_this_node() {
    let node = Sluice::start(&[]);
    let port: i32 = node.addr.rsplit_once(':').unwrap().1.parse().unwrap();
    let mut c = RawClient::connect(&node.addr);
    for v in 0..=6i16 {
        // v1 adds the key type (1 = transactional id), v4 batches keys (KIP-699).
        let key_type = if v >= 1 { 1 } else { 0 };
        // Kafka's encoder refuses a field the version lacks, so each version gets
        // exactly its own shape.
        let req = if v >= 4 {
            FindCoordinatorRequest {
                key_type,
                coordinator_keys: vec!["g1".into(), "g2".into()],
                ..Default::default()
            }
        } else {
            FindCoordinatorRequest {
                key: "g1".into(),
                key_type,
                ..Default::default()
            }
        };
        let r: FindCoordinatorResponse = c.call(ApiKey::FindCoordinator, v, &req);
        if v >= 4 {
            let got: Vec<_> = r
                .coordinators
                .iter()
                .map(|k| {
                    (
                        k.key.as_str(),
                        k.node_id,
                        k.host.as_str(),
                        k.port,
                        k.error_code,
                    )
                })
                .collect();
            assert_eq!(
                got,
                vec![
                    ("g1", 1, "127.0.0.1", port, 0),
                    ("g2", 1, "127.0.0.1", port, 0)
                ],
                "v{v}"
            );
        } else {
            assert_eq!(
                (r.error_code, r.node_id, r.host.as_str(), r.port),
                (0, 1, "127.0.0.1", port),
                "v{v}"
            );
        }
    }
    // v6 knows share groups (key type 2), which this broker does not run.
    let r: FindCoordinatorResponse = c.call(
        ApiKey::FindCoordinator,
        6,
        &FindCoordinatorRequest {
            key_type: 2,
            coordinator_keys: vec!["s".into()],
            ..Default::default()
        },
    );
    assert_eq!(
        r.coordinators[0].error_code,
        ErrorCode::InvalidRequest.code()
    );
}
