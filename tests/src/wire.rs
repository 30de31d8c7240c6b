//! Short builders for the raw requests the protocol tests send at exact versions, and
//! decoders for what comes back (record batches to offsets and values), so each test
//! reads as "send this at version N, expect that".

use bytes::Bytes;
use sluice_protocol::api::ApiKey;
use sluice_protocol::codec::Uuid;
use sluice_protocol::compression::Compression;
use sluice_protocol::error::ErrorCode;
use sluice_protocol::messages::create_topics_request::{
    CreatableReplicaAssignment, CreatableTopic, CreatableTopicConfig,
};
use sluice_protocol::messages::create_topics_response::CreatableTopicResult;
use sluice_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
use sluice_protocol::messages::fetch_response::PartitionData;
use sluice_protocol::messages::join_group_request::JoinGroupRequestProtocol;
use sluice_protocol::messages::list_offsets_request::{ListOffsetsPartition, ListOffsetsTopic};
use sluice_protocol::messages::list_offsets_response::ListOffsetsPartitionResponse;
use sluice_protocol::messages::metadata_request::MetadataRequestTopic;
use sluice_protocol::messages::offset_commit_request::{
    OffsetCommitRequestPartition, OffsetCommitRequestTopic,
};
use sluice_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use sluice_protocol::messages::produce_response::PartitionProduceResponse;
use sluice_protocol::messages::sync_group_request::SyncGroupRequestAssignment;
use sluice_protocol::messages::{
    ApiVersionsRequest, ApiVersionsResponse, CreateTopicsRequest, CreateTopicsResponse,
    DeleteTopicsRequest, DeleteTopicsResponse, FetchRequest, FetchResponse, FindCoordinatorRequest,
    FindCoordinatorResponse, HeartbeatRequest, HeartbeatResponse, InitProducerIdRequest,
    InitProducerIdResponse, JoinGroupRequest, JoinGroupResponse, ListOffsetsRequest,
    ListOffsetsResponse, MetadataRequest, MetadataResponse, OffsetCommitRequest,
    OffsetCommitResponse, ProduceRequest, ProduceResponse, SyncGroupRequest, SyncGroupResponse,
};
use sluice_protocol::records::{decode_records, BatchIter, RecordBatchBuilder};

use crate::raw::RawClient;

pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

/// One uncompressed batch of `values`, all stamped now.
pub fn batch(values: &[&[u8]]) -> Bytes {
    let now = now_ms();
    let recs: Vec<(i64, &[u8])> = values.iter().map(|v| (now, *v)).collect();
    batch_at(Compression::None, &recs)
}

/// One batch with `(timestamp, value)` records in `compression`.
pub fn batch_at(compression: Compression, records: &[(i64, &[u8])]) -> Bytes {
    let mut b = RecordBatchBuilder::new().compression(compression);
    for (ts, v) in records {
        b.push(*ts, None, Some(v), &[]).unwrap();
    }
    b.build().unwrap()
}

/// A record as a consumer sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rec {
    pub offset: i64,
    pub timestamp: i64,
    pub value: Vec<u8>,
}

/// Every record of every batch in a fetched record set, in order.
pub fn records(set: &Bytes) -> Vec<Rec> {
    let mut out = Vec::new();
    for item in BatchIter::new(set) {
        let (header, pos) = item.expect("well-formed batch in fetch response");
        let batch = set.slice(pos..pos + header.total_size());
        for r in decode_records(&batch, 64 << 20).expect("decode records") {
            out.push(Rec {
                offset: r.offset(header.base_offset),
                timestamp: r.timestamp(&header),
                value: r.value.map(|v| v.to_vec()).unwrap_or_default(),
            });
        }
    }
    out
}

/// The values of `records(set)`, as strings, for compact assertions.
pub fn values(set: &Bytes) -> Vec<String> {
    records(set)
        .into_iter()
        .map(|r| String::from_utf8_lossy(&r.value).into_owned())
        .collect()
}

/// Base offsets of the batches in a record set.
pub fn batch_bases(set: &Bytes) -> Vec<i64> {
    BatchIter::new(set)
        .map(|b| b.expect("batch").0.base_offset)
        .collect()
}

/// CreateTopics v7 with `partitions` partitions, replication factor 1.
pub fn create_topic(
    c: &mut RawClient,
    name: &str,
    partitions: i32,
    configs: &[(&str, &str)],
) -> CreatableTopicResult {
    let req = CreateTopicsRequest {
        topics: vec![creatable(name, partitions, 1, configs)],
        timeout_ms: 10_000,
        validate_only: false,
    };
    let resp: CreateTopicsResponse = c.call(ApiKey::CreateTopics, 7, &req);
    resp.topics.into_iter().next().expect("one topic result")
}

/// Creates a topic and panics unless that worked; returns its topic ID.
pub fn must_create(c: &mut RawClient, name: &str, partitions: i32) -> Uuid {
    let r = create_topic(c, name, partitions, &[]);
    assert_eq!(r.error_code, 0, "create {name}: {:?}", r.error_message);
    r.topic_id
}

/// Creates `name` with an explicit replica assignment (partition i on `replicas[i]`,
/// preferred leader first) and `configs`; panics unless that worked.
pub fn must_create_assigned(
    c: &mut RawClient,
    name: &str,
    replicas: &[&[i32]],
    configs: &[(&str, &str)],
) {
    let mut topic = creatable(name, -1, -1, configs);
    topic.assignments = replicas
        .iter()
        .enumerate()
        .map(|(i, r)| CreatableReplicaAssignment {
            partition_index: i as i32,
            broker_ids: r.to_vec(),
        })
        .collect();
    let req = CreateTopicsRequest {
        topics: vec![topic],
        timeout_ms: 10_000,
        validate_only: false,
    };
    let resp: CreateTopicsResponse = c.call(ApiKey::CreateTopics, 7, &req);
    let r = &resp.topics[0];
    assert_eq!(r.error_code, 0, "create {name}: {:?}", r.error_message);
}

pub fn creatable(
    name: &str,
    partitions: i32,
    replication_factor: i16,
    configs: &[(&str, &str)],
) -> CreatableTopic {
    CreatableTopic {
        name: name.into(),
        num_partitions: partitions,
        replication_factor,
        assignments: Vec::new(),
        configs: configs
            .iter()
            .map(|(k, v)| CreatableTopicConfig {
                name: k.to_string(),
                value: Some(v.to_string()),
            })
            .collect(),
    }
}

/// DeleteTopics v6 by name; returns the error code.
pub fn delete_topic(c: &mut RawClient, name: &str) -> i16 {
    let req = DeleteTopicsRequest {
        topics: vec![
            sluice_protocol::messages::delete_topics_request::DeleteTopicState {
                name: Some(name.into()),
                topic_id: Uuid::ZERO,
            },
        ],
        topic_names: Vec::new(),
        timeout_ms: 10_000,
    };
    let resp: DeleteTopicsResponse = c.call(ApiKey::DeleteTopics, 6, &req);
    resp.responses[0].error_code
}

pub fn produce_request(topic: &str, partition: i32, acks: i16, records: Bytes) -> ProduceRequest {
    ProduceRequest {
        transactional_id: None,
        acks,
        timeout_ms: 10_000,
        topic_data: vec![TopicProduceData {
            name: topic.into(),
            partition_data: vec![PartitionProduceData {
                index: partition,
                records: Some(records),
            }],
        }],
    }
}

/// Produce at `version` with acks=-1; returns the one partition's response.
pub fn produce_v(
    c: &mut RawClient,
    version: i16,
    topic: &str,
    partition: i32,
    records: Bytes,
) -> PartitionProduceResponse {
    let resp: ProduceResponse = c.call(
        ApiKey::Produce,
        version,
        &produce_request(topic, partition, -1, records),
    );
    assert_eq!(resp.responses.len(), 1);
    assert_eq!(resp.responses[0].name, topic);
    resp.responses
        .into_iter()
        .next()
        .unwrap()
        .partition_responses
        .into_iter()
        .next()
        .expect("partition response")
}

/// Produce v9 of one batch holding `values`; panics unless it succeeded; returns the base offset.
pub fn produce_ok(c: &mut RawClient, topic: &str, partition: i32, values: &[&[u8]]) -> i64 {
    let p = produce_v(c, 9, topic, partition, batch(values));
    assert_eq!(
        p.error_code, 0,
        "produce to {topic}-{partition}: {:?}",
        p.error_message
    );
    p.base_offset
}

/// A fetch of one partition from `offset`: no waiting, 1 MiB limits.
pub fn fetch_request(topic: &str, topic_id: Uuid, partition: i32, offset: i64) -> FetchRequest {
    FetchRequest {
        max_wait_ms: 0,
        min_bytes: 0,
        max_bytes: 1 << 20,
        session_epoch: -1,
        topics: vec![FetchTopic {
            topic: topic.into(),
            topic_id,
            partitions: vec![FetchPartition {
                partition,
                fetch_offset: offset,
                partition_max_bytes: 1 << 20,
                ..Default::default()
            }],
        }],
        ..Default::default()
    }
}

/// Sends `req` at `version` and returns the only partition of the answer.
pub fn fetch_one(c: &mut RawClient, version: i16, req: &FetchRequest) -> PartitionData {
    let resp: FetchResponse = c.call(ApiKey::Fetch, version, req);
    assert_eq!(resp.error_code, 0, "top-level fetch error");
    assert_eq!(resp.responses.len(), 1, "one topic in fetch response");
    let t = resp.responses.into_iter().next().unwrap();
    assert_eq!(t.partitions.len(), 1, "one partition in fetch response");
    t.partitions.into_iter().next().unwrap()
}

/// Fetch v12 (by name) from `offset`.
pub fn fetch_at(c: &mut RawClient, topic: &str, partition: i32, offset: i64) -> PartitionData {
    fetch_one(c, 12, &fetch_request(topic, Uuid::ZERO, partition, offset))
}

/// ListOffsets at `version` for one partition and target timestamp.
pub fn list_offset(
    c: &mut RawClient,
    version: i16,
    topic: &str,
    partition: i32,
    timestamp: i64,
) -> ListOffsetsPartitionResponse {
    let req = ListOffsetsRequest {
        replica_id: -1,
        isolation_level: 0,
        topics: vec![ListOffsetsTopic {
            name: topic.into(),
            partitions: vec![ListOffsetsPartition {
                partition_index: partition,
                current_leader_epoch: -1,
                timestamp,
                max_num_offsets: 1,
            }],
        }],
        timeout_ms: 0,
    };
    let resp: ListOffsetsResponse = c.call(ApiKey::ListOffsets, version, &req);
    resp.topics
        .into_iter()
        .next()
        .unwrap()
        .partitions
        .into_iter()
        .next()
        .unwrap()
}

/// Metadata at `version` for the named topics (`None`: all topics). Versions before 4
/// cannot say "do not create" (the field is v4+), so `allow_auto_create` must be true there.
pub fn metadata(
    c: &mut RawClient,
    version: i16,
    topics: Option<&[&str]>,
    allow_auto_create: bool,
) -> MetadataResponse {
    assert!(
        version >= 4 || allow_auto_create,
        "Metadata v{version} always allows auto-creation"
    );
    let req = MetadataRequest {
        topics: topics.map(|ts| {
            ts.iter()
                .map(|t| MetadataRequestTopic {
                    topic_id: Uuid::ZERO,
                    name: Some(t.to_string()),
                })
                .collect()
        }),
        allow_auto_topic_creation: allow_auto_create,
        include_cluster_authorized_operations: false,
        include_topic_authorized_operations: false,
    };
    c.call(ApiKey::Metadata, version, &req)
}

/// Names of every topic the broker lists (Metadata v12, all topics).
pub fn topic_names(c: &mut RawClient) -> Vec<String> {
    metadata(c, 12, None, false)
        .topics
        .into_iter()
        .filter_map(|t| t.name)
        .collect()
}

/// Partition count of `topic`, `None` if it does not exist (never creates it).
pub fn partition_count(c: &mut RawClient, topic: &str) -> Option<usize> {
    let m = metadata(c, 12, Some(&[topic]), false);
    let t = &m.topics[0];
    (t.error_code == 0).then_some(t.partitions.len())
}

/// FindCoordinator v3 for a group; returns the error code. The first group lookup is
/// what creates `__consumer_offsets`, so raw group tests start with it.
pub fn find_coordinator(c: &mut RawClient, group: &str) -> i16 {
    let req = FindCoordinatorRequest {
        key: group.into(),
        key_type: 0,
        coordinator_keys: Vec::new(),
    };
    let resp: FindCoordinatorResponse = c.call(ApiKey::FindCoordinator, 3, &req);
    resp.error_code
}

/// A consumer-protocol subscription (ConsumerProtocolSubscription v0): the metadata a
/// consumer sends with each assignor name in JoinGroup.
pub fn subscription(topics: &[&str]) -> Bytes {
    let mut b = Vec::new();
    b.extend_from_slice(&0i16.to_be_bytes());
    b.extend_from_slice(&(topics.len() as i32).to_be_bytes());
    for t in topics {
        b.extend_from_slice(&(t.len() as i16).to_be_bytes());
        b.extend_from_slice(t.as_bytes());
    }
    b.extend_from_slice(&(-1i32).to_be_bytes()); // no user data
    Bytes::from(b)
}

/// A JoinGroup of protocol type "consumer" offering the `range` assignor for `topic`,
/// 30 s session and rebalance timeouts.
pub fn join_request(group: &str, member_id: &str, topic: &str) -> JoinGroupRequest {
    JoinGroupRequest {
        group_id: group.into(),
        session_timeout_ms: 30_000,
        rebalance_timeout_ms: 30_000,
        member_id: member_id.into(),
        group_instance_id: None,
        protocol_type: "consumer".into(),
        protocols: vec![JoinGroupRequestProtocol {
            name: "range".into(),
            metadata: subscription(&[topic]),
        }],
        reason: None,
    }
}

/// JoinGroup v5 (the first version with group instance ids, before flexible encoding).
pub fn join_group(c: &mut RawClient, req: &JoinGroupRequest) -> JoinGroupResponse {
    c.call(ApiKey::JoinGroup, 5, req)
}

/// A member that joined `group` alone (JoinGroup v5: MEMBER_ID_REQUIRED, then again with
/// that id) and synced an empty assignment: `(member id, generation)`. The broker must
/// run with `--group-initial-rebalance-delay-ms 0`, or the join waits for the delay.
pub fn join_alone(c: &mut RawClient, group: &str, topic: &str) -> (String, i32) {
    let first = join_group(c, &join_request(group, "", topic));
    assert_eq!(
        first.error_code,
        ErrorCode::MemberIdRequired.code(),
        "MEMBER_ID_REQUIRED first"
    );
    let joined = join_group(c, &join_request(group, &first.member_id, topic));
    assert_eq!(
        joined.error_code,
        ErrorCode::None.code(),
        "join with the assigned member id"
    );
    assert_eq!(joined.leader, first.member_id, "the only member leads");
    let synced = sync_group(
        c,
        group,
        joined.generation_id,
        &joined.member_id,
        &[(&joined.member_id, Bytes::new())],
    );
    assert_eq!(synced.error_code, 0, "leader's SyncGroup");
    (joined.member_id, joined.generation_id)
}

/// SyncGroup v3 with the given `(member id, assignment)` pairs (empty for followers).
pub fn sync_group(
    c: &mut RawClient,
    group: &str,
    generation: i32,
    member_id: &str,
    assignments: &[(&str, Bytes)],
) -> SyncGroupResponse {
    let req = SyncGroupRequest {
        group_id: group.into(),
        generation_id: generation,
        member_id: member_id.into(),
        group_instance_id: None,
        protocol_type: None,
        protocol_name: None,
        assignments: assignments
            .iter()
            .map(|(m, a)| SyncGroupRequestAssignment {
                member_id: m.to_string(),
                assignment: a.clone(),
            })
            .collect(),
    };
    c.call(ApiKey::SyncGroup, 3, &req)
}

/// Heartbeat v3; returns the error code.
pub fn heartbeat(c: &mut RawClient, group: &str, generation: i32, member_id: &str) -> i16 {
    let req = HeartbeatRequest {
        group_id: group.into(),
        generation_id: generation,
        member_id: member_id.into(),
        group_instance_id: None,
    };
    let resp: HeartbeatResponse = c.call(ApiKey::Heartbeat, 3, &req);
    resp.error_code
}

/// OffsetCommit v8 of one partition; returns that partition's error code.
#[allow(clippy::too_many_arguments)]
pub fn offset_commit(
    c: &mut RawClient,
    group: &str,
    generation: i32,
    member_id: &str,
    topic: &str,
    partition: i32,
    offset: i64,
    metadata: Option<&str>,
) -> i16 {
    let req = OffsetCommitRequest {
        group_id: group.into(),
        generation_id_or_member_epoch: generation,
        member_id: member_id.into(),
        group_instance_id: None,
        retention_time_ms: -1,
        topics: vec![OffsetCommitRequestTopic {
            name: topic.into(),
            partitions: vec![OffsetCommitRequestPartition {
                partition_index: partition,
                committed_offset: offset,
                committed_leader_epoch: -1,
                commit_timestamp: -1,
                committed_metadata: metadata.map(str::to_string),
            }],
        }],
    };
    let resp: OffsetCommitResponse = c.call(ApiKey::OffsetCommit, 8, &req);
    assert_eq!(resp.topics.len(), 1, "one topic in the commit response");
    assert_eq!(resp.topics[0].partitions.len(), 1, "one partition");
    resp.topics[0].partitions[0].error_code
}

/// ApiVersions v3 from a client named "tests": the cheapest proof a broker still serves.
pub fn api_versions(c: &mut RawClient) -> ApiVersionsResponse {
    c.call(
        ApiKey::ApiVersions,
        3,
        &ApiVersionsRequest {
            client_software_name: "tests".into(),
            client_software_version: "1".into(),
        },
    )
}

/// InitProducerId v4 without a transactional id: a fresh producer id at epoch 0.
pub fn init_producer_id(c: &mut RawClient) -> i64 {
    let req = InitProducerIdRequest {
        transactional_id: None,
        transaction_timeout_ms: 60_000,
        producer_id: -1,
        producer_epoch: -1,
    };
    let resp: InitProducerIdResponse = c.call(ApiKey::InitProducerId, 4, &req);
    assert_eq!(resp.error_code, 0);
    assert_eq!(resp.producer_epoch, 0);
    resp.producer_id
}

/// One idempotent batch of `values` from producer `pid` (epoch 0) starting at `seq`.
pub fn idempotent_batch(pid: i64, seq: i32, values: &[&[u8]]) -> Bytes {
    producer_batch(pid, 0, seq, false, values)
}

/// One batch of `values` from producer `pid`/`epoch` starting at `seq`, transactional
/// or not.
pub fn producer_batch(
    pid: i64,
    epoch: i16,
    seq: i32,
    transactional: bool,
    values: &[&[u8]],
) -> Bytes {
    let mut b = RecordBatchBuilder::new()
        .producer(pid, epoch, seq)
        .transactional(transactional);
    for v in values {
        b.push(now_ms(), None, Some(v), &[]).unwrap();
    }
    b.build().unwrap()
}
