//! DescribeQuorum (key 55), v0-2: the metadata quorum as this node's Raft sees it —
//! leader, term (Kafka's leader epoch), committed index (high watermark), and each
//! voter's and learner's log end. On the leader every member's replication progress is
//! known; elsewhere only this node's own (Kafka forwards the request to the controller,
//! whose Raft state a Sluice broker shares, so the answer comes from here). The topic is
//! Kafka's `__cluster_metadata`, partition 0. `cargo xtask cluster status` reads it.
//! Needs Describe on the cluster, else a top-level CLUSTER_AUTHORIZATION_FAILED.

use std::sync::Arc;

use sluice_auth::acl::Operation;
use sluice_protocol::error::ErrorCode;
use sluice_protocol::messages::describe_quorum_response::{
    Listener, Node, PartitionData, ReplicaState, TopicData,
};
use sluice_protocol::messages::{DescribeQuorumRequest, DescribeQuorumResponse};

use crate::broker::{now_ms, Broker};
use crate::router::ConnectionInfo;

pub const VERSIONS: (i16, i16) = (0, 2);

/// Kafka's name for the metadata log's topic.
pub const METADATA_TOPIC: &str = "__cluster_metadata";

pub fn handle(
    broker: &Arc<Broker>,
    conn: &ConnectionInfo,
    req: DescribeQuorumRequest,
    version: i16,
) -> DescribeQuorumResponse {
    if !broker
        .access
        .authz(conn)
        .allows_cluster(Operation::Describe)
    {
        return DescribeQuorumResponse {
            error_code: ErrorCode::ClusterAuthorizationFailed.code(),
            // v0-1 have no message (the encoder leaves it out).
            error_message: Some("Cluster authorization failed.".into()),
            ..Default::default()
        };
    }
    let m = broker.cluster.raft_metrics();
    let me = broker.config.node_id;
    let as_i32 = |id: u64| i32::try_from(id).unwrap_or(-1);
    let leader = m.current_leader.map_or(-1, as_i32);
    // Kafka's offsets are "next offset"; a Raft index is the last entry's.
    let end_of = |index: Option<u64>| index.map_or(0, |i| i64::try_from(i + 1).unwrap_or(i64::MAX));
    let log_end = |id: u64| -> i64 {
        if as_i32(id) == me {
            return end_of(m.last_log_index);
        }
        match &m.replication {
            Some(progress) => progress
                .get(&id)
                .map_or(-1, |matched| end_of(matched.as_ref().map(|l| l.index))),
            None => -1,
        }
    };
    let now = now_ms();
    let state = |id: u64| ReplicaState {
        replica_id: as_i32(id),
        log_end_offset: log_end(id),
        // A v0 response has no timestamps (the encoder refuses a field a version lacks).
        last_fetch_timestamp: if leader == me && version >= 1 {
            now
        } else {
            -1
        },
        last_caught_up_timestamp: -1,
        ..Default::default()
    };
    let membership = m.membership_config.membership();
    let voters: Vec<u64> = membership.voter_ids().collect();
    let learners: Vec<u64> = membership.learner_ids().collect();
    let topics = req
        .topics
        .into_iter()
        .map(|t| {
            let known = t.topic_name == METADATA_TOPIC;
            TopicData {
                partitions: t
                    .partitions
                    .iter()
                    .map(|p| {
                        if !known || p.partition_index != 0 {
                            return PartitionData {
                                partition_index: p.partition_index,
                                error_code: ErrorCode::UnknownTopicOrPartition.code(),
                                ..Default::default()
                            };
                        }
                        PartitionData {
                            partition_index: 0,
                            error_code: ErrorCode::None.code(),
                            leader_id: leader,
                            leader_epoch: i32::try_from(m.current_term).unwrap_or(i32::MAX),
                            high_watermark: end_of(m.last_applied.map(|l| l.index)),
                            current_voters: voters.iter().map(|id| state(*id)).collect(),
                            observers: learners.iter().map(|id| state(*id)).collect(),
                            ..Default::default()
                        }
                    })
                    .collect(),
                topic_name: t.topic_name,
            }
        })
        .collect();
    let nodes = membership
        .nodes()
        .filter(|_| version >= 2)
        .filter_map(|(id, node)| {
            let (host, port) = node.rpc_addr.rsplit_once(':')?;
            Some(Node {
                node_id: as_i32(*id),
                listeners: vec![Listener {
                    name: "CONTROLLER".into(),
                    host: host.to_string(),
                    port: port.parse().ok()?,
                }],
            })
        })
        .collect();
    DescribeQuorumResponse {
        error_code: ErrorCode::None.code(),
        topics,
        nodes,
        ..Default::default()
    }
}
