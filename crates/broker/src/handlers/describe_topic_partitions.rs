//! DescribeTopicPartitions (key 75), v0 (KIP-966): topics and their partitions from this
//! node's applied metadata image, paginated as Kafka does: topics in name order from the
//! cursor's topic (its partitions from the cursor's index), at most
//! `response_partition_limit` partitions (capped at 2000, Kafka's
//! `max.request.partition.size.limit`), and a `next_cursor` naming where to go on.
//! Each partition carries leader, leader epoch, replicas, ISR and offline replicas (fenced
//! or unregistered brokers), so under-replicated partitions show; Sluice has no ELR, so
//! `eligible_leader_replicas` and `last_known_elr` are empty.
//!
//! Authorization, as Kafka's: a topic needs Describe. Named, a topic without it answers
//! TOPIC_AUTHORIZATION_FAILED (no partitions, no topic ID, whether or not it exists);
//! when the request lists all topics (an empty list, paged by the cursor) it is left
//! out. Every described topic carries its authorized operations.

use std::collections::BTreeSet;
use std::sync::Arc;

use sluice_auth::acl::{Operation, ResourceType};
use sluice_controller::{MetadataImage, NO_LEADER};
use sluice_protocol::codec::Uuid;
use sluice_protocol::error::ErrorCode;
use sluice_protocol::messages::describe_topic_partitions_response::{
    Cursor, DescribeTopicPartitionsResponsePartition, DescribeTopicPartitionsResponseTopic,
};
use sluice_protocol::messages::{DescribeTopicPartitionsRequest, DescribeTopicPartitionsResponse};

use super::authorized_ops;
use super::metadata::offline_replicas;
use crate::broker::Broker;
use crate::router::ConnectionInfo;
use crate::topics::{is_internal_topic, validate_topic_name};

pub const VERSIONS: (i16, i16) = (0, 0);

/// Kafka's `max.request.partition.size.limit` default: the most partitions one response
/// carries, whatever the request asks.
pub const MAX_PARTITIONS_PER_RESPONSE: i32 = 2000;

pub fn handle(
    broker: &Arc<Broker>,
    conn: &ConnectionInfo,
    req: DescribeTopicPartitionsRequest,
    _version: i16,
) -> DescribeTopicPartitionsResponse {
    let authz = broker.access.authz(conn);
    let access = TopicAccess {
        may_describe: &|name| authz.allows_topic(Operation::Describe, name),
        operations: &|name| authz.operations(ResourceType::Topic, name),
    };
    describe(&broker.cluster.image(), req, &access)
}

/// What the requester may see of a topic (kept apart from the authorizer so the paging
/// can be tested on an image alone).
pub struct TopicAccess<'a> {
    /// Whether it may Describe the topic.
    pub may_describe: &'a dyn Fn(&str) -> bool,
    /// Its authorized operations on the topic.
    pub operations: &'a dyn Fn(&str) -> i32,
}

/// The answer from `image`.
pub fn describe(
    image: &MetadataImage,
    req: DescribeTopicPartitionsRequest,
    access: &TopicAccess<'_>,
) -> DescribeTopicPartitionsResponse {
    let all = req.topics.is_empty();
    let topics: BTreeSet<String> = if all {
        image.topics().map(|t| t.name.clone()).collect()
    } else {
        req.topics.iter().map(|t| t.name.clone()).collect()
    };
    if let Some(cursor) = &req.cursor {
        if !topics.contains(&cursor.topic_name) {
            // Kafka: the topic list must contain the cursor topic.
            return invalid(&req);
        }
        if cursor.partition_index < 0 {
            return invalid(&req);
        }
    }
    let limit = req
        .response_partition_limit
        .clamp(1, MAX_PARTITIONS_PER_RESPONSE);
    let mut remaining = usize::try_from(limit).unwrap_or(1);
    let (cursor_topic, cursor_partition) = req
        .cursor
        .as_ref()
        .map_or(("", 0), |c| (c.topic_name.as_str(), c.partition_index));
    let mut out = DescribeTopicPartitionsResponse::default();
    // Named topics the requester may not Describe, answered after the described ones
    // (as Kafka appends them).
    let mut refused = Vec::new();
    for name in topics.iter().filter(|n| n.as_str() >= cursor_topic) {
        // Checked before the lookup: existence stays hidden. Hidden topics take no
        // room in the page, nor can one be where the next page starts.
        if !(access.may_describe)(name) {
            if !all {
                refused.push(DescribeTopicPartitionsResponseTopic {
                    error_code: ErrorCode::TopicAuthorizationFailed.code(),
                    name: Some(name.clone()),
                    topic_id: Uuid::ZERO,
                    is_internal: is_internal_topic(name),
                    topic_authorized_operations: authorized_ops::NOT_REQUESTED,
                    ..Default::default()
                });
            }
            continue;
        }
        if remaining == 0 {
            // Every partition of the previous topic fit: go on at this one.
            out.next_cursor = Some(Cursor {
                topic_name: name.clone(),
                partition_index: 0,
            });
            break;
        }
        let Some(topic) = image.topic(name) else {
            if !all {
                let code = match validate_topic_name(name) {
                    Ok(()) => ErrorCode::UnknownTopicOrPartition,
                    Err(e) => e.code,
                };
                out.topics.push(DescribeTopicPartitionsResponseTopic {
                    error_code: code.code(),
                    name: Some(name.clone()),
                    topic_id: Uuid::ZERO,
                    is_internal: is_internal_topic(name),
                    topic_authorized_operations: authorized_ops::NOT_REQUESTED,
                    ..Default::default()
                });
            }
            continue;
        };
        let start = if name == cursor_topic {
            usize::try_from(cursor_partition).unwrap_or(0)
        } else {
            0
        };
        let end = topic.partitions.len().min(start.saturating_add(remaining));
        let partitions: Vec<DescribeTopicPartitionsResponsePartition> = topic
            .partitions
            .iter()
            .enumerate()
            .take(end)
            .skip(start)
            .map(|(index, p)| DescribeTopicPartitionsResponsePartition {
                error_code: if p.leader == NO_LEADER {
                    ErrorCode::LeaderNotAvailable.code()
                } else {
                    ErrorCode::None.code()
                },
                partition_index: i32::try_from(index).unwrap_or(i32::MAX),
                leader_id: p.leader,
                leader_epoch: p.leader_epoch,
                replica_nodes: p.replicas.clone(),
                isr_nodes: p.isr.clone(),
                eligible_leader_replicas: Some(Vec::new()),
                last_known_elr: Some(Vec::new()),
                offline_replicas: offline_replicas(image, &p.replicas),
            })
            .collect();
        remaining = remaining.saturating_sub(partitions.len());
        out.topics.push(DescribeTopicPartitionsResponseTopic {
            error_code: ErrorCode::None.code(),
            name: Some(topic.name.clone()),
            topic_id: Uuid(topic.id),
            is_internal: is_internal_topic(&topic.name),
            partitions,
            topic_authorized_operations: (access.operations)(&topic.name),
        });
        if end < topic.partitions.len() {
            out.next_cursor = Some(Cursor {
                topic_name: topic.name.clone(),
                partition_index: i32::try_from(end).unwrap_or(i32::MAX),
            });
            break;
        }
    }
    out.topics.append(&mut refused);
    out
}

/// Kafka's answer to a request it refuses as a whole: every requested topic with the
/// error and no partitions.
fn invalid(req: &DescribeTopicPartitionsRequest) -> DescribeTopicPartitionsResponse {
    DescribeTopicPartitionsResponse {
        topics: req
            .topics
            .iter()
            .map(|t| DescribeTopicPartitionsResponseTopic {
                error_code: ErrorCode::InvalidRequest.code(),
                name: Some(t.name.clone()),
                topic_id: Uuid::ZERO,
                is_internal: false,
                topic_authorized_operations: authorized_ops::NOT_REQUESTED,
                ..Default::default()
            })
            .collect(),
        ..Default::default()
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use sluice_controller::{BrokerEndpoint, MetadataRecord, PartitionAssignment};
    use sluice_protocol::messages::describe_topic_partitions_request::{
        Cursor as RequestCursor, TopicRequest,
    };

    use super::*;

    /// Everything allowed, as without an authorizer.
    const ALL: TopicAccess<'static> = TopicAccess {
        may_describe: &|_| true,
        operations: &|_| authorized_ops::TOPIC,
    };

    fn image() -> MetadataImage {
        let mut image = MetadataImage::default();
        let mut apply = |r: MetadataRecord| {
            let resp = image.apply(&r);
            assert_eq!(resp, sluice_controller::MetadataResponse::Applied, "{r:?}");
        };
        for id in 1..=3 {
            apply(MetadataRecord::RegisterBroker {
                id,
                epoch: 1,
                endpoints: vec![BrokerEndpoint {
                    listener: "PLAINTEXT".into(),
                    host: "h".into(),
                    port: 1,
                }],
                rack: None,
            });
            if id != 3 {
                apply(MetadataRecord::UnfenceBroker { id, epoch: 1 });
            }
        }
        for (name, id, n) in [("b", 2u8, 3usize), ("a", 1, 2)] {
            apply(MetadataRecord::CreateTopic {
                name: name.into(),
                id: [id; 16],
                partitions: vec![
                    PartitionAssignment {
                        replicas: vec![1, 2, 3]
                    };
                    n
                ],
                configs: BTreeMap::new(),
            });
        }
        image
    }

    fn request(
        topics: &[&str],
        limit: i32,
        cursor: Option<(&str, i32)>,
    ) -> DescribeTopicPartitionsRequest {
        DescribeTopicPartitionsRequest {
            topics: topics
                .iter()
                .map(|t| TopicRequest {
                    name: t.to_string(),
                })
                .collect(),
            response_partition_limit: limit,
            cursor: cursor.map(|(t, p)| RequestCursor {
                topic_name: t.into(),
                partition_index: p,
            }),
        }
    }

    fn describe_all(
        image: &MetadataImage,
        req: DescribeTopicPartitionsRequest,
    ) -> DescribeTopicPartitionsResponse {
        describe(image, req, &ALL)
    }

    /// Each topic's name, error code and partition indexes, and the next cursor.
    type Page = (Vec<(String, i16, Vec<i32>)>, Option<(String, i32)>);

    fn pages(r: &DescribeTopicPartitionsResponse) -> Page {
        (
            r.topics
                .iter()
                .map(|t| {
                    (
                        t.name.clone().unwrap_or_default(),
                        t.error_code,
                        t.partitions.iter().map(|p| p.partition_index).collect(),
                    )
                })
                .collect(),
            r.next_cursor
                .as_ref()
                .map(|c| (c.topic_name.clone(), c.partition_index)),
        )
    }

    #[test]
    fn pages_through_topics_in_name_order() {
        let image = image();
        let r = describe_all(&image, request(&[], 3, None));
        assert_eq!(
            pages(&r),
            (
                vec![("a".into(), 0, vec![0, 1]), ("b".into(), 0, vec![0])],
                Some(("b".into(), 1))
            )
        );
        let r = describe_all(&image, request(&[], 3, Some(("b", 1))));
        assert_eq!(pages(&r), (vec![("b".into(), 0, vec![1, 2])], None));
        // A full page ends exactly at a topic's end: the cursor names the next topic.
        let r = describe_all(&image, request(&[], 2, None));
        assert_eq!(
            pages(&r),
            (vec![("a".into(), 0, vec![0, 1])], Some(("b".into(), 0)))
        );
        // Unknown topics are reported when named; the cursor topic must be named.
        let r = describe_all(&image, request(&["zz", "b"], 2000, None));
        let unknown = ErrorCode::UnknownTopicOrPartition.code();
        assert_eq!(
            pages(&r),
            (
                vec![
                    ("b".into(), 0, vec![0, 1, 2]),
                    ("zz".into(), unknown, vec![])
                ],
                None
            )
        );
        let r = describe_all(&image, request(&["b"], 2000, Some(("a", 0))));
        let invalid = ErrorCode::InvalidRequest.code();
        assert_eq!(pages(&r), (vec![("b".into(), invalid, vec![])], None));
    }

    #[test]
    fn partitions_show_isr_and_offline_replicas() {
        let image = image();
        let r = describe_all(&image, request(&["a"], 1, None));
        let p = &r.topics[0].partitions[0];
        assert_eq!(p.leader_id, 1);
        assert_eq!(p.replica_nodes, [1, 2, 3]);
        // Broker 3 was fenced when the topic was created: not in the ISR, offline.
        assert_eq!(p.isr_nodes, [1, 2]);
        assert_eq!(p.offline_replicas, [3]);
        assert_eq!(p.eligible_leader_replicas, Some(Vec::new()));
        assert_eq!(r.topics[0].topic_id, Uuid([1; 16]));
    }

    #[test]
    fn topics_without_describe_are_hidden_or_refused() {
        let image = image();
        let only_b = TopicAccess {
            may_describe: &|name| name == "b",
            operations: &|_| 1 << 3,
        };
        // All topics: "a" is left out, and takes no room in the page.
        let r = describe(&image, request(&[], 3, None), &only_b);
        assert_eq!(pages(&r), (vec![("b".into(), 0, vec![0, 1, 2])], None));
        assert_eq!(r.topics[0].topic_authorized_operations, 1 << 3);
        // Named: "a" answers TOPIC_AUTHORIZATION_FAILED without its ID, as does a
        // topic that does not exist.
        let r = describe(&image, request(&["a", "b", "zz"], 2000, None), &only_b);
        let denied = ErrorCode::TopicAuthorizationFailed.code();
        assert_eq!(
            pages(&r),
            (
                vec![
                    ("b".into(), 0, vec![0, 1, 2]),
                    ("a".into(), denied, vec![]),
                    ("zz".into(), denied, vec![])
                ],
                None
            )
        );
        assert_eq!(r.topics[1].topic_id, Uuid::ZERO);
    }
}
