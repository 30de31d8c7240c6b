//! ElectLeaders (key 43), v0-2: preferred-leader elections on demand (Kafka's
//! `kafka-leader-election.sh --election-type preferred`). Each election is a
//! `PartitionChange` computed from this node's image (first brought up to what the quorum
//! committed), written through the active controller like any admin change, and answered
//! once this node applied it. Per partition: NONE (elected), ELECTION_NOT_NEEDED (the
//! preferred replica leads already), PREFERRED_LEADER_NOT_AVAILABLE (it is not in the ISR,
//! or is fenced), UNKNOWN_TOPIC_OR_PARTITION. With `topic_partitions` null every partition
//! is tried and, as in Kafka, those needing no election are left out of the answer.
//!
//! Unclean leader election (`election_type` 1) is off in Sluice (no replica outside the
//! ISR ever leads): a led partition is ELECTION_NOT_NEEDED, a leaderless one
//! ELIGIBLE_LEADERS_NOT_AVAILABLE, and nothing is written.
//!
//! Needs Alter on the cluster; without it, as in Kafka, CLUSTER_AUTHORIZATION_FAILED at
//! the top (v1+) and for every partition named, and nothing is elected.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use sluice_auth::acl::Operation;
use sluice_controller::{
    MetadataRecord, MetadataResponse, PreferredElection, RejectReason, NO_LEADER,
};
use sluice_protocol::error::ErrorCode;
use sluice_protocol::messages::elect_leaders_response::{PartitionResult, ReplicaElectionResult};
use sluice_protocol::messages::{ElectLeadersRequest, ElectLeadersResponse};
use tokio::task::JoinSet;

use crate::broker::Broker;
use crate::cluster::Cluster;
use crate::router::ConnectionInfo;

pub const VERSIONS: (i16, i16) = (0, 2);

/// Kafka's `ElectionType.PREFERRED`.
const PREFERRED: i8 = 0;
/// Kafka's `ElectionType.UNCLEAN`.
const UNCLEAN: i8 = 1;
/// Elections of one partition tried when a concurrent change (an ISR update, a fencing)
/// made the computed one stale.
const ATTEMPTS: usize = 3;

/// One partition's outcome: error code and message.
type Outcome = (ErrorCode, Option<String>);

pub async fn handle(
    broker: &Arc<Broker>,
    conn: &ConnectionInfo,
    req: ElectLeadersRequest,
    version: i16,
) -> ElectLeadersResponse {
    let allowed = broker.access.authz(conn).allows_cluster(Operation::Alter);
    // Duplicates collapse, as Kafka turns the request into a set of partitions.
    let requested: Option<BTreeMap<String, BTreeSet<i32>>> = req.topic_partitions.map(|list| {
        let mut map: BTreeMap<String, BTreeSet<i32>> = BTreeMap::new();
        for t in list {
            map.entry(t.topic).or_default().extend(t.partitions);
        }
        map
    });
    if !allowed {
        return failed(
            requested.as_ref(),
            ErrorCode::ClusterAuthorizationFailed,
            "Cluster authorization failed.".into(),
            version,
        );
    }
    if req.election_type != PREFERRED && req.election_type != UNCLEAN {
        let message = format!("Unknown election type {}", req.election_type);
        return failed(
            requested.as_ref(),
            ErrorCode::InvalidRequest,
            message,
            version,
        );
    }
    // Decide from everything committed so far, not from a lagging view.
    if let Err(e) = broker.cluster.write(MetadataRecord::Noop).await {
        return failed(requested.as_ref(), e.code, e.message, version);
    }
    let all = requested.is_none();
    let targets = requested.unwrap_or_else(|| {
        broker
            .cluster
            .image()
            .topics()
            .map(|t| {
                let count = i32::try_from(t.partitions.len()).unwrap_or(i32::MAX);
                (t.name.clone(), (0..count).collect())
            })
            .collect()
    });

    let mut outcomes: BTreeMap<(String, i32), Outcome> = BTreeMap::new();
    let mut elections = JoinSet::new();
    for (topic, partitions) in &targets {
        for &partition in partitions {
            let key = (topic.clone(), partition);
            if req.election_type == UNCLEAN {
                outcomes.insert(key, unclean(&broker.cluster, topic, partition));
                continue;
            }
            let cluster = broker.cluster.clone();
            elections.spawn(async move {
                let outcome = elect_preferred(&cluster, &key.0, key.1).await;
                (key, outcome)
            });
        }
    }
    while let Some(joined) = elections.join_next().await {
        match joined {
            Ok((key, outcome)) => {
                outcomes.insert(key, outcome);
            }
            Err(e) => tracing::warn!(error = %e, "preferred leader election task failed"),
        }
    }

    let mut results = Vec::with_capacity(targets.len());
    for (topic, partitions) in targets {
        let partition_result: Vec<PartitionResult> = partitions
            .into_iter()
            .filter_map(|partition| {
                let (code, message) =
                    outcomes
                        .remove(&(topic.clone(), partition))
                        .unwrap_or_else(|| {
                            (
                                ErrorCode::UnknownServerError,
                                Some("The election did not complete.".into()),
                            )
                        });
                if all && code == ErrorCode::ElectionNotNeeded {
                    return None;
                }
                Some(PartitionResult {
                    partition_id: partition,
                    error_code: code.code(),
                    error_message: message,
                })
            })
            .collect();
        if !partition_result.is_empty() || !all {
            results.push(ReplicaElectionResult {
                topic,
                partition_result,
            });
        }
    }
    ElectLeadersResponse {
        error_code: ErrorCode::None.code(),
        replica_election_results: results,
        ..Default::default()
    }
}

/// The answer when the whole request fails: the error at the top (v1+) and for every
/// partition named.
fn failed(
    requested: Option<&BTreeMap<String, BTreeSet<i32>>>,
    code: ErrorCode,
    message: String,
    version: i16,
) -> ElectLeadersResponse {
    let results = requested
        .into_iter()
        .flatten()
        .map(|(topic, partitions)| ReplicaElectionResult {
            topic: topic.clone(),
            partition_result: partitions
                .iter()
                .map(|p| PartitionResult {
                    partition_id: *p,
                    error_code: code.code(),
                    error_message: Some(message.clone()),
                })
                .collect(),
        })
        .collect();
    ElectLeadersResponse {
        // v0 has no top-level error code.
        error_code: if version >= 1 {
            code.code()
        } else {
            ErrorCode::None.code()
        },
        replica_election_results: results,
        ..Default::default()
    }
}

fn unknown(topic: &str, partition: i32) -> Outcome {
    (
        ErrorCode::UnknownTopicOrPartition,
        Some(format!("No such topic partition {topic}-{partition}.")),
    )
}

/// An unclean election, which Sluice does not do: only reports whether one was needed.
fn unclean(cluster: &Cluster, topic: &str, partition: i32) -> Outcome {
    let image = cluster.image();
    let Some(p) = u32::try_from(partition)
        .ok()
        .and_then(|index| image.partition(topic, index))
    else {
        return unknown(topic, partition);
    };
    if p.leader != NO_LEADER {
        return (
            ErrorCode::ElectionNotNeeded,
            Some("Leader election not needed for topic partition.".into()),
        );
    }
    (
        ErrorCode::EligibleLeadersNotAvailable,
        Some("Unclean leader election is disabled: no in-sync replica can lead.".into()),
    )
}

/// Elects the preferred replica of one partition, recomputing the change if a concurrent
/// change to the partition made it stale.
async fn elect_preferred(cluster: &Cluster, topic: &str, partition: i32) -> Outcome {
    let Ok(index) = u32::try_from(partition) else {
        return unknown(topic, partition);
    };
    for _ in 0..ATTEMPTS {
        let record = match cluster.image().preferred_election(topic, index) {
            PreferredElection::Elect(record) => record,
            PreferredElection::NotNeeded => {
                return (
                    ErrorCode::ElectionNotNeeded,
                    Some("Leader election not needed for topic partition.".into()),
                )
            }
            PreferredElection::NotAvailable => return not_available(),
            PreferredElection::UnknownPartition => return unknown(topic, partition),
        };
        match cluster.write(record).await {
            Ok(MetadataResponse::Applied) => return (ErrorCode::None, None),
            Ok(MetadataResponse::Rejected(
                RejectReason::UnknownTopic(_)
                | RejectReason::UnknownPartition { .. }
                | RejectReason::TopicIdMismatch(_),
            )) => return unknown(topic, partition),
            // The partition or a broker changed since the image was read: the local
            // image now holds that change, so compute again.
            Ok(MetadataResponse::Rejected(reason)) => {
                tracing::debug!(topic, partition, %reason, "preferred election stale; retrying");
            }
            Ok(other) => {
                return (
                    ErrorCode::UnknownServerError,
                    Some(format!("unexpected metadata answer {other:?}")),
                )
            }
            Err(e) => return (e.code, Some(e.message)),
        }
    }
    (
        ErrorCode::PreferredLeaderNotAvailable,
        Some("The partition kept changing during the election; retry.".into()),
    )
}

fn not_available() -> Outcome {
    (
        ErrorCode::PreferredLeaderNotAvailable,
        Some("The preferred leader is not in the ISR or is not available.".into()),
    )
}
