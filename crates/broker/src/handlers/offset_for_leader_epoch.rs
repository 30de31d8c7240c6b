//! OffsetForLeaderEpoch (key 23), v0-4 (KIP-101/279/320): the end offset of a leader
//! epoch, from the partition's leader-epoch cache. Consumers use it to detect log
//! truncation after a leader change; followers use it before fetching.
//!
//! Authorization, as Kafka's since KIP-320: ClusterAction on the cluster (what brokers
//! hold) covers every topic; otherwise each topic needs Describe, else its partitions
//! answer TOPIC_AUTHORIZATION_FAILED (whether or not it exists). A request naming a
//! replica id gets no more than that: the answer is the same epoch data a consumer may
//! read.

use std::sync::Arc;

use sluice_auth::acl::Operation;
use sluice_protocol::error::ErrorCode;
use sluice_protocol::messages::offset_for_leader_epoch_response::{
    EpochEndOffset, OffsetForLeaderTopicResult,
};
use sluice_protocol::messages::{OffsetForLeaderEpochRequest, OffsetForLeaderEpochResponse};

use super::fetch::check_leader_epoch;
use crate::broker::Broker;
use crate::router::ConnectionInfo;

pub const VERSIONS: (i16, i16) = (0, 4);

pub fn handle(
    broker: &Arc<Broker>,
    conn: &ConnectionInfo,
    req: OffsetForLeaderEpochRequest,
    _version: i16,
) -> OffsetForLeaderEpochResponse {
    let authz = broker.access.authz(conn);
    let cluster_action = authz.allows_cluster(Operation::ClusterAction);
    let topics = req
        .topics
        .into_iter()
        .map(|t| {
            let allowed = cluster_action || authz.allows_topic(Operation::Describe, &t.topic);
            let topic = if allowed {
                broker.topics.get(&t.topic)
            } else {
                None
            };
            let partitions = t
                .partitions
                .into_iter()
                .map(|op| {
                    let fail = |code: ErrorCode| EpochEndOffset {
                        error_code: code.code(),
                        partition: op.partition,
                        leader_epoch: -1,
                        end_offset: -1,
                    };
                    let found = topic
                        .as_ref()
                        .ok_or(if allowed {
                            ErrorCode::UnknownTopicOrPartition
                        } else {
                            ErrorCode::TopicAuthorizationFailed
                        })
                        .and_then(|tp| tp.lookup(op.partition));
                    let p = match found {
                        Ok(p) => p,
                        Err(code) => return fail(code),
                    };
                    if let Some(code) = check_leader_epoch(p, op.current_leader_epoch) {
                        return fail(code);
                    }
                    match p.log.end_offset_for_epoch(op.leader_epoch) {
                        Some((epoch, end)) => EpochEndOffset {
                            error_code: ErrorCode::None.code(),
                            partition: op.partition,
                            leader_epoch: epoch,
                            end_offset: end,
                        },
                        // Unknown epoch (older than anything cached): Kafka's UNDEFINED.
                        None => EpochEndOffset {
                            error_code: ErrorCode::None.code(),
                            partition: op.partition,
                            leader_epoch: -1,
                            end_offset: -1,
                        },
                    }
                })
                .collect();
            OffsetForLeaderTopicResult {
                topic: t.topic,
                partitions,
            }
        })
        .collect();
    OffsetForLeaderEpochResponse {
        topics,
        ..Default::default()
    }
}
