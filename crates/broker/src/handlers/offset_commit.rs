//! OffsetCommit (key 8), v0-9: stores committed offsets (with the KIP-320 leader epoch)
//! in `__consumer_offsets`; answered once written.
//!
//! Authorization, as Kafka: Read on the group, else every partition answers
//! GROUP_AUTHORIZATION_FAILED and nothing is committed; then Read on each topic, else
//! that topic's partitions answer TOPIC_AUTHORIZATION_FAILED while the authorized
//! topics are committed. Refused topics never reach the coordinator, so an unknown
//! topic the principal may not read is not revealed as unknown.

use std::sync::Arc;

use sluice_auth::acl::Operation;
use sluice_group::Reply;
use sluice_protocol::error::ErrorCode;
use sluice_protocol::messages::offset_commit_request::OffsetCommitRequestTopic;
use sluice_protocol::messages::offset_commit_response::{
    OffsetCommitResponsePartition, OffsetCommitResponseTopic,
};
use sluice_protocol::messages::{OffsetCommitRequest, OffsetCommitResponse};

use crate::broker::{now_ms, Broker};
use crate::groups::interleave;
use crate::router::ConnectionInfo;

pub const VERSIONS: (i16, i16) = (0, 9);

/// Every partition of `topic` answering `code`.
fn topic_with(topic: &OffsetCommitRequestTopic, code: ErrorCode) -> OffsetCommitResponseTopic {
    OffsetCommitResponseTopic {
        name: topic.name.clone(),
        partitions: topic
            .partitions
            .iter()
            .map(|p| OffsetCommitResponsePartition {
                partition_index: p.partition_index,
                error_code: code.code(),
            })
            .collect(),
    }
}

pub async fn handle(
    broker: &Arc<Broker>,
    conn: &ConnectionInfo,
    mut req: OffsetCommitRequest,
    version: i16,
) -> OffsetCommitResponse {
    // Decided before the coordinator is involved (and before any await).
    let allowed: Vec<bool> = {
        let authz = broker.access.authz(conn);
        if !authz.allows_group(Operation::Read, &req.group_id) {
            return OffsetCommitResponse {
                topics: req
                    .topics
                    .iter()
                    .map(|t| topic_with(t, ErrorCode::GroupAuthorizationFailed))
                    .collect(),
                ..Default::default()
            };
        }
        req.topics
            .iter()
            .map(|t| authz.allows_topic(Operation::Read, &t.name))
            .collect()
    };
    // The refused topics, in request order, answered without the coordinator.
    let mut refused = Vec::new();
    if allowed.contains(&false) {
        let all = std::mem::take(&mut req.topics);
        for (t, ok) in all.into_iter().zip(&allowed) {
            if *ok {
                req.topics.push(t);
            } else {
                refused.push(topic_with(&t, ErrorCode::TopicAuthorizationFailed));
            }
        }
        if req.topics.is_empty() {
            return OffsetCommitResponse {
                topics: refused,
                ..Default::default()
            };
        }
    }
    let now = now_ms();
    // Kept for the error response below, should the coordinator drop the request.
    let dropped: Vec<OffsetCommitResponseTopic> = req
        .topics
        .iter()
        .map(|t| topic_with(t, ErrorCode::CoordinatorNotAvailable))
        .collect();
    let topics = &broker.topics;
    let exists = |topic: &str, partition: i32| {
        topics
            .get(topic)
            .is_some_and(|t| t.state(partition).is_some())
    };
    let mut resp = match broker
        .groups
        .call(topics, |c, id| {
            c.offset_commit(now, req, version, &exists, id)
        })
        .await
    {
        Some(Reply::Commit(r)) => r,
        _ => OffsetCommitResponse {
            topics: dropped,
            ..Default::default()
        },
    };
    if !refused.is_empty() {
        resp.topics = interleave(&allowed, std::mem::take(&mut resp.topics), refused);
    }
    resp
}
