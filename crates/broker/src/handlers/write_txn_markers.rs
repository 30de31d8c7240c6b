//! WriteTxnMarkers (key 27), v0-1: the transaction coordinator's request to partition
//! leaders to end a transaction with a COMMIT or ABORT marker. As in Kafka, markers are
//! written with acks=all and each partition answers once its marker is committed (the
//! coordinator records the transaction complete only after every marker is), or with
//! the error that stopped it: NOT_LEADER_OR_FOLLOWER, NOT_ENOUGH_REPLICAS,
//! INVALID_PRODUCER_EPOCH, TRANSACTION_COORDINATOR_FENCED, UNKNOWN_TOPIC_OR_PARTITION.
//!
//! Only brokers send it: it needs ClusterAction on the cluster, else every partition
//! answers CLUSTER_AUTHORIZATION_FAILED and no marker is written.

use std::sync::Arc;
use std::time::Duration;

use futures_util::future::join_all;
use sluice_auth::acl::Operation;
use sluice_group::OFFSETS_TOPIC;
use sluice_protocol::error::ErrorCode;
use sluice_protocol::messages::write_txn_markers_response::{
    WritableTxnMarkerPartitionResult, WritableTxnMarkerResult, WritableTxnMarkerTopicResult,
};
use sluice_protocol::messages::{WriteTxnMarkersRequest, WriteTxnMarkersResponse};
use sluice_protocol::records::EndTxnMarker;
use tokio::time::Instant;

use crate::broker::{now_ms, Broker};
use crate::commit::{append_committed, committed, CommitWait};
use crate::router::ConnectionInfo;

pub const VERSIONS: (i16, i16) = (0, 1);

/// How long a marker may wait for its commit (Kafka's `request.timeout.ms`, with which
/// the coordinator's marker requests are sent).
const COMMIT_TIMEOUT: Duration = Duration::from_secs(30);

/// Every partition of every marker answering `code`.
fn all_with(req: &WriteTxnMarkersRequest, code: ErrorCode) -> WriteTxnMarkersResponse {
    WriteTxnMarkersResponse {
        markers: req
            .markers
            .iter()
            .map(|m| WritableTxnMarkerResult {
                producer_id: m.producer_id,
                topics: m
                    .topics
                    .iter()
                    .map(|t| WritableTxnMarkerTopicResult {
                        name: t.name.clone(),
                        partitions: t
                            .partition_indexes
                            .iter()
                            .map(|&partition_index| WritableTxnMarkerPartitionResult {
                                partition_index,
                                error_code: code.code(),
                            })
                            .collect(),
                    })
                    .collect(),
            })
            .collect(),
    }
}

/// The request as it arrives on a connection: only a principal with ClusterAction
/// (brokers) may have markers written.
pub async fn handle_request(
    broker: &Arc<Broker>,
    conn: &ConnectionInfo,
    req: WriteTxnMarkersRequest,
    version: i16,
) -> WriteTxnMarkersResponse {
    if !broker
        .access
        .authz(conn)
        .allows_cluster(Operation::ClusterAction)
    {
        return all_with(&req, ErrorCode::ClusterAuthorizationFailed);
    }
    handle(broker, req, version).await
}

/// Writes the markers. Called unchecked by this node's own transaction coordinator
/// when it leads the partitions (`crate::markers`): no connection, nothing to check.
pub async fn handle(
    broker: &Arc<Broker>,
    req: WriteTxnMarkersRequest,
    _version: i16,
) -> WriteTxnMarkersResponse {
    let deadline = Instant::now() + COMMIT_TIMEOUT;
    let now = now_ms();
    // Append everything first, then wait for all the commits at once.
    let mut pending: Vec<(usize, usize, usize, Result<CommitWait, ErrorCode>)> = Vec::new();
    let mut markers = Vec::with_capacity(req.markers.len());
    for (m, marker) in req.markers.iter().enumerate() {
        let end = EndTxnMarker {
            commit: marker.transaction_result,
            coordinator_epoch: marker.coordinator_epoch,
        };
        let mut topics = Vec::with_capacity(marker.topics.len());
        for (t, topic) in marker.topics.iter().enumerate() {
            let found = broker.topics.get(&topic.name);
            let mut partitions = Vec::with_capacity(topic.partition_indexes.len());
            for (i, &index) in topic.partition_indexes.iter().enumerate() {
                let outcome = found
                    .as_ref()
                    .ok_or(ErrorCode::UnknownTopicOrPartition)
                    .and_then(|tp| tp.lookup(index))
                    .and_then(|p| {
                        append_committed(p, |p| {
                            p.append_txn_marker(marker.producer_id, marker.producer_epoch, end, now)
                        })
                    });
                pending.push((m, t, i, outcome));
                partitions.push(WritableTxnMarkerPartitionResult {
                    partition_index: index,
                    ..Default::default()
                });
            }
            topics.push(WritableTxnMarkerTopicResult {
                name: topic.name.clone(),
                partitions,
            });
        }
        markers.push(WritableTxnMarkerResult {
            producer_id: marker.producer_id,
            topics,
        });
    }
    let outcomes = join_all(pending.into_iter().map(|(m, t, i, outcome)| async move {
        let result = match outcome {
            Ok(wait) => committed(wait, deadline).await,
            Err(code) => Err(code),
        };
        (m, t, i, result)
    }))
    .await;
    for (m, t, i, result) in outcomes {
        if result.is_ok() {
            // A committed marker in an offsets partition decides the offsets the
            // producer committed there in its transaction (Kafka's
            // `onTransactionCompleted` for the group coordinator).
            if let (Some(marker), Some(topic)) = (
                req.markers.get(m),
                req.markers.get(m).and_then(|x| x.topics.get(t)),
            ) {
                if topic.name == OFFSETS_TOPIC {
                    if let Some(&partition) = topic.partition_indexes.get(i) {
                        broker.groups.with(&broker.topics, |c| {
                            c.complete_txn(
                                partition,
                                marker.producer_id,
                                marker.transaction_result,
                            );
                            ((), Vec::new())
                        });
                    }
                }
            }
        }
        if let Err(code) = result {
            if let Some(p) = markers
                .get_mut(m)
                .and_then(|r| r.topics.get_mut(t))
                .and_then(|r| r.partitions.get_mut(i))
            {
                p.error_code = code.code();
            }
        }
    }
    WriteTxnMarkersResponse { markers }
}
