//! TxnOffsetCommit (key 28), v0-4: offsets committed as part of a transaction
//! (consume-transform-produce). The group coordinator writes them as the producer's
//! transactional records to `__consumer_offsets`; they take effect when the
//! transaction's COMMIT marker reaches that partition (`write_txn_markers`). The
//! producer must have added the group's partition with AddOffsetsToTxn first; the
//! partition leader's producer state refuses a fenced epoch.
//!
//! Authorization, as Kafka: Write on the transactional id (else every partition
//! answers TRANSACTIONAL_ID_AUTHORIZATION_FAILED), Read on the group (else
//! GROUP_AUTHORIZATION_FAILED), and Read on each topic (else that topic's partitions
//! answer TOPIC_AUTHORIZATION_FAILED while the others are committed).

use std::sync::Arc;

use sluice_auth::acl::Operation;
use sluice_group::Reply;
use sluice_protocol::error::ErrorCode;
use sluice_protocol::messages::txn_offset_commit_request::TxnOffsetCommitRequestTopic;
use sluice_protocol::messages::txn_offset_commit_response::{
    TxnOffsetCommitResponsePartition, TxnOffsetCommitResponseTopic,
};
use sluice_protocol::messages::{TxnOffsetCommitRequest, TxnOffsetCommitResponse};

use crate::broker::{now_ms, Broker};
use crate::groups::interleave;
use crate::router::ConnectionInfo;

pub const VERSIONS: (i16, i16) = (0, 4);

/// Every partition of `topic` answering `code`.
fn topic_with(
    topic: &TxnOffsetCommitRequestTopic,
    code: ErrorCode,
) -> TxnOffsetCommitResponseTopic {
    TxnOffsetCommitResponseTopic {
        name: topic.name.clone(),
        partitions: topic
            .partitions
            .iter()
            .map(|p| TxnOffsetCommitResponsePartition {
                partition_index: p.partition_index,
                error_code: code.code(),
            })
            .collect(),
    }
}

fn all_with(req: &TxnOffsetCommitRequest, code: ErrorCode) -> TxnOffsetCommitResponse {
    TxnOffsetCommitResponse {
        topics: req.topics.iter().map(|t| topic_with(t, code)).collect(),
        ..Default::default()
    }
}

pub async fn handle(
    broker: &Arc<Broker>,
    conn: &ConnectionInfo,
    mut req: TxnOffsetCommitRequest,
    _version: i16,
) -> TxnOffsetCommitResponse {
    // Decided before the coordinator is involved (and before any await).
    let allowed: Vec<bool> = {
        let authz = broker.access.authz(conn);
        if !authz.allows_txn(Operation::Write, &req.transactional_id) {
            return all_with(&req, ErrorCode::TransactionalIdAuthorizationFailed);
        }
        if !authz.allows_group(Operation::Read, &req.group_id) {
            return all_with(&req, ErrorCode::GroupAuthorizationFailed);
        }
        req.topics
            .iter()
            .map(|t| authz.allows_topic(Operation::Read, &t.name))
            .collect()
    };
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
            return TxnOffsetCommitResponse {
                topics: refused,
                ..Default::default()
            };
        }
    }
    let now = now_ms();
    // Kept for the error response below, should the coordinator drop the request.
    let dropped = all_with(&req, ErrorCode::CoordinatorNotAvailable);
    let topics = &broker.topics;
    let exists = |topic: &str, partition: i32| {
        topics
            .get(topic)
            .is_some_and(|t| t.state(partition).is_some())
    };
    let mut resp = match broker
        .groups
        .call(topics, |c, id| c.txn_offset_commit(now, req, &exists, id))
        .await
    {
        Some(Reply::TxnCommit(r)) => r,
        _ => dropped,
    };
    if !refused.is_empty() {
        resp.topics = interleave(&allowed, std::mem::take(&mut resp.topics), refused);
    }
    resp
}
