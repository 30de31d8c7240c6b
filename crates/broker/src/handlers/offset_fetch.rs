//! OffsetFetch (key 9), v0-9: committed offsets and leader epochs of one group (v0-7)
//! or several (v8+).
//!
//! Authorization, as Kafka: Describe on the group, else GROUP_AUTHORIZATION_FAILED (the
//! top-level code for v2-7, each requested partition's for v0-1, the group's own for
//! v8+); a named topic needs Describe, else its partitions answer
//! TOPIC_AUTHORIZATION_FAILED; when all of a group's offsets are asked for, topics the
//! principal may not Describe are left out.

use std::sync::Arc;

use sluice_auth::acl::Operation;
use sluice_protocol::error::ErrorCode;
use sluice_protocol::messages::offset_fetch_request::{
    OffsetFetchRequestGroup, OffsetFetchRequestTopic, OffsetFetchRequestTopics,
};
use sluice_protocol::messages::offset_fetch_response::{
    OffsetFetchResponseGroup, OffsetFetchResponsePartition, OffsetFetchResponsePartitions,
    OffsetFetchResponseTopic, OffsetFetchResponseTopics,
};
use sluice_protocol::messages::{OffsetFetchRequest, OffsetFetchResponse};

use crate::access::Authz;
use crate::broker::Broker;
use crate::groups::interleave;
use crate::router::ConnectionInfo;

pub const VERSIONS: (i16, i16) = (0, 9);

/// The answer for a partition the principal may not see (Kafka's
/// `UNAUTHORIZED_PARTITION`), or for every partition of a refused group before v2.
fn partition_v7(partition_index: i32, code: ErrorCode) -> OffsetFetchResponsePartition {
    OffsetFetchResponsePartition {
        partition_index,
        committed_offset: -1,
        committed_leader_epoch: -1,
        metadata: Some(String::new()),
        error_code: code.code(),
    }
}

fn topic_v7(t: &OffsetFetchRequestTopic, code: ErrorCode) -> OffsetFetchResponseTopic {
    OffsetFetchResponseTopic {
        name: t.name.clone(),
        partitions: t
            .partition_indexes
            .iter()
            .map(|&p| partition_v7(p, code))
            .collect(),
    }
}

fn topic_v8(t: &OffsetFetchRequestTopics, code: ErrorCode) -> OffsetFetchResponseTopics {
    OffsetFetchResponseTopics {
        name: t.name.clone(),
        partitions: t
            .partition_indexes
            .iter()
            .map(|&p| OffsetFetchResponsePartitions {
                partition_index: p,
                committed_offset: -1,
                committed_leader_epoch: -1,
                metadata: Some(String::new()),
                error_code: code.code(),
            })
            .collect(),
    }
}

/// Named topics split into those the principal may Describe (left in `topics`) and
/// the others' answers; `None` when every topic is allowed (nothing to put back).
fn split_topics<T, R>(
    authz: &Authz<'_>,
    topics: &mut Vec<T>,
    name: impl Fn(&T) -> &str,
    refuse: impl Fn(&T) -> R,
) -> Option<(Vec<bool>, Vec<R>)> {
    let allowed: Vec<bool> = topics
        .iter()
        .map(|t| authz.allows_topic(Operation::Describe, name(t)))
        .collect();
    if !allowed.contains(&false) {
        return None;
    }
    let mut refused = Vec::new();
    let all = std::mem::take(topics);
    for (t, ok) in all.into_iter().zip(&allowed) {
        if *ok {
            topics.push(t);
        } else {
            refused.push(refuse(&t));
        }
    }
    Some((allowed, refused))
}

pub fn handle(
    broker: &Arc<Broker>,
    conn: &ConnectionInfo,
    req: OffsetFetchRequest,
    version: i16,
) -> OffsetFetchResponse {
    let authz = broker.access.authz(conn);
    if version >= 8 {
        batched(broker, &authz, req, version)
    } else {
        single(broker, &authz, req, version)
    }
}

/// v0-7: one group.
fn single(
    broker: &Broker,
    authz: &Authz<'_>,
    mut req: OffsetFetchRequest,
    version: i16,
) -> OffsetFetchResponse {
    if !authz.allows_group(Operation::Describe, &req.group_id) {
        let code = ErrorCode::GroupAuthorizationFailed;
        // v0-1 have no group-level error: it is repeated per requested partition.
        return if version < 2 {
            OffsetFetchResponse {
                topics: req
                    .topics
                    .iter()
                    .flatten()
                    .map(|t| topic_v7(t, code))
                    .collect(),
                ..Default::default()
            }
        } else {
            OffsetFetchResponse {
                error_code: code.code(),
                ..Default::default()
            }
        };
    }
    let all_topics = req.topics.is_none();
    let split = req.topics.as_mut().and_then(|topics| {
        split_topics(
            authz,
            topics,
            |t| &t.name,
            |t| topic_v7(t, ErrorCode::TopicAuthorizationFailed),
        )
    });
    // Asked even when every named topic was refused: the group's own error (not
    // coordinator, loading) still applies.
    let mut resp = broker.groups.read(|c| c.offset_fetch(req, version));
    if all_topics {
        resp.topics
            .retain(|t| authz.allows_topic(Operation::Describe, &t.name));
    } else if let Some((allowed, refused)) = split {
        // A group-level error (v2+) stands alone, as Kafka answers it.
        if resp.error_code == ErrorCode::None.code() {
            resp.topics = interleave(&allowed, std::mem::take(&mut resp.topics), refused);
        }
    }
    resp
}

/// What the broker answers for one group of a v8+ request, beside the coordinator.
enum GroupPlan {
    /// Refused: answered without the coordinator.
    Refused(OffsetFetchResponseGroup),
    /// Sent; `all_topics` says its topics are filtered afterwards, `split` holds the
    /// refused named topics to put back.
    Sent {
        all_topics: bool,
        split: Option<(Vec<bool>, Vec<OffsetFetchResponseTopics>)>,
    },
}

/// v8+: several groups, each answered on its own.
fn batched(
    broker: &Broker,
    authz: &Authz<'_>,
    mut req: OffsetFetchRequest,
    version: i16,
) -> OffsetFetchResponse {
    let mut plans = Vec::with_capacity(req.groups.len());
    let mut sent: Vec<OffsetFetchRequestGroup> = Vec::with_capacity(req.groups.len());
    for mut g in std::mem::take(&mut req.groups) {
        if !authz.allows_group(Operation::Describe, &g.group_id) {
            plans.push(GroupPlan::Refused(OffsetFetchResponseGroup {
                group_id: g.group_id,
                error_code: ErrorCode::GroupAuthorizationFailed.code(),
                topics: Vec::new(),
            }));
            continue;
        }
        let all_topics = g.topics.is_none();
        let split = g.topics.as_mut().and_then(|topics| {
            split_topics(
                authz,
                topics,
                |t| &t.name,
                |t| topic_v8(t, ErrorCode::TopicAuthorizationFailed),
            )
        });
        plans.push(GroupPlan::Sent { all_topics, split });
        sent.push(g);
    }
    let mut answered = if sent.is_empty() {
        Vec::new()
    } else {
        req.groups = sent;
        broker.groups.read(|c| c.offset_fetch(req, version)).groups
    }
    .into_iter();
    let mut resp = OffsetFetchResponse::default();
    for plan in plans {
        match plan {
            GroupPlan::Refused(g) => resp.groups.push(g),
            GroupPlan::Sent { all_topics, split } => {
                // The coordinator answers each group it was given, in order.
                let Some(mut g) = answered.next() else {
                    continue;
                };
                if all_topics {
                    g.topics
                        .retain(|t| authz.allows_topic(Operation::Describe, &t.name));
                } else if let Some((allowed, refused)) = split {
                    if g.error_code == ErrorCode::None.code() {
                        g.topics = interleave(&allowed, std::mem::take(&mut g.topics), refused);
                    }
                }
                resp.groups.push(g);
            }
        }
    }
    resp
}
