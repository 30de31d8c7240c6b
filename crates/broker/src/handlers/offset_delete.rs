//! OffsetDelete (key 47), v0: removes a group's committed offsets for topics it no
//! longer consumes.
//!
//! Authorization, as Kafka: Delete on the group, else the top-level
//! GROUP_AUTHORIZATION_FAILED; Read on each topic, else that topic's partitions answer
//! TOPIC_AUTHORIZATION_FAILED and keep their offsets.

use std::sync::Arc;

use sluice_auth::acl::Operation;
use sluice_group::Reply;
use sluice_protocol::error::ErrorCode;
use sluice_protocol::messages::offset_delete_response::{
    OffsetDeleteResponsePartition, OffsetDeleteResponseTopic,
};
use sluice_protocol::messages::{OffsetDeleteRequest, OffsetDeleteResponse};

use crate::broker::Broker;
use crate::groups::interleave;
use crate::router::ConnectionInfo;

pub const VERSIONS: (i16, i16) = (0, 0);

pub async fn handle(
    broker: &Arc<Broker>,
    conn: &ConnectionInfo,
    mut req: OffsetDeleteRequest,
    _version: i16,
) -> OffsetDeleteResponse {
    let allowed: Vec<bool> = {
        let authz = broker.access.authz(conn);
        if !authz.allows_group(Operation::Delete, &req.group_id) {
            return OffsetDeleteResponse {
                error_code: ErrorCode::GroupAuthorizationFailed.code(),
                ..Default::default()
            };
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
                refused.push(OffsetDeleteResponseTopic {
                    name: t.name,
                    partitions: t
                        .partitions
                        .iter()
                        .map(|p| OffsetDeleteResponsePartition {
                            partition_index: p.partition_index,
                            error_code: ErrorCode::TopicAuthorizationFailed.code(),
                        })
                        .collect(),
                });
            }
        }
    }
    // Asked even when every topic was refused, as Kafka does: the group's own errors
    // (unknown group, not coordinator) still apply.
    let mut resp = match broker
        .groups
        .call(&broker.topics, |c, id| c.offset_delete(req, id))
        .await
    {
        Some(Reply::OffsetDelete(r)) => r,
        _ => OffsetDeleteResponse {
            error_code: ErrorCode::CoordinatorNotAvailable.code(),
            ..Default::default()
        },
    };
    // A group-level error replaces the per-topic answers, as in Kafka's response
    // builder.
    if !refused.is_empty() && resp.error_code == ErrorCode::None.code() {
        resp.topics = interleave(&allowed, std::mem::take(&mut resp.topics), refused);
    }
    resp
}
