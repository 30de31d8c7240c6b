//! Writing a transaction's COMMIT or ABORT markers to the leaders of its partitions
//! (Kafka's `TransactionMarkerChannelManager`): WriteTxnMarkers to each leader, over the
//! inter-broker listener (or straight to the handler when this node leads), until every
//! marker is committed.
//!
//! Retriable failures (a leader moving, too few in-sync replicas, a timeout, an
//! unreachable broker) are retried with backoff, following leadership from the metadata
//! image, for as long as the coordinator still owns the job. A partition whose topic
//! was deleted is dropped, as in Kafka. A fenced marker (INVALID_PRODUCER_EPOCH,
//! TRANSACTION_COORDINATOR_FENCED) ends the job with that error: a newer coordinator has
//! the transaction.

use std::collections::btree_map::Entry;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use sluice_protocol::api::ApiKey;
use sluice_protocol::error::ErrorCode;
use sluice_protocol::messages::write_txn_markers_request::{
    WritableTxnMarker, WritableTxnMarkerTopic,
};
use sluice_protocol::messages::{WriteTxnMarkersRequest, WriteTxnMarkersResponse};
use sluice_replication::client::KafkaConnection;
use sluice_txn::{by_topic, MarkerJob, TopicPartition};
use tracing::debug;

use crate::broker::Broker;
use crate::handlers::write_txn_markers;

/// WriteTxnMarkers version sent (v1: flexible).
const VERSION: i16 = 1;
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// A leader answers once its markers are committed, within its own 30 s limit.
const CALL_TIMEOUT: Duration = Duration::from_secs(35);
const BACKOFF_MIN: Duration = Duration::from_millis(20);
const BACKOFF_MAX: Duration = Duration::from_millis(1_000);
/// Largest WriteTxnMarkers response accepted.
const MAX_RESPONSE: usize = 16 * 1024 * 1024;

/// Writes every marker of `job`; `Ok` once all are committed (or their topics are gone).
pub async fn write(broker: &Arc<Broker>, job: &MarkerJob) -> Result<(), ErrorCode> {
    let mut remaining: BTreeSet<TopicPartition> = job.partitions.iter().cloned().collect();
    let mut connections: BTreeMap<i32, KafkaConnection> = BTreeMap::new();
    let mut backoff = BACKOFF_MIN;
    loop {
        if !broker.txns.job_active(job.id) {
            return Err(ErrorCode::NotCoordinator);
        }
        // Partitions by their current leader; those of deleted topics are dropped.
        let mut by_leader: BTreeMap<i32, Vec<TopicPartition>> = BTreeMap::new();
        remaining.retain(|(topic, partition)| {
            let Some(t) = broker.topics.get(topic) else {
                debug!(topic, partition, "topic gone; its marker is dropped");
                return false;
            };
            if let Some(leader) = t.state(*partition).map(|s| s.leader).filter(|l| *l >= 0) {
                by_leader
                    .entry(leader)
                    .or_default()
                    .push((topic.clone(), *partition));
            }
            true
        });
        if remaining.is_empty() {
            return Ok(());
        }
        for (leader, partitions) in by_leader {
            let req = request(job, &partitions);
            let resp = if leader == broker.config.node_id {
                Ok(write_txn_markers::handle(broker, req, VERSION).await)
            } else {
                call(broker, &mut connections, leader, &req).await
            };
            let resp = match resp {
                Ok(r) => r,
                Err(()) => {
                    connections.remove(&leader);
                    continue;
                }
            };
            for marker in resp.markers {
                for topic in marker.topics {
                    for p in topic.partitions {
                        match ErrorCode::from_code(p.error_code) {
                            Some(ErrorCode::None) => {
                                remaining.remove(&(topic.name.clone(), p.partition_index));
                            }
                            Some(
                                code @ (ErrorCode::InvalidProducerEpoch
                                | ErrorCode::TransactionCoordinatorFenced),
                            ) => return Err(code),
                            other => {
                                debug!(
                                    topic = %topic.name, partition = p.partition_index, leader,
                                    error = ?other, "marker not written yet; retrying"
                                );
                            }
                        }
                    }
                }
            }
        }
        if remaining.is_empty() {
            return Ok(());
        }
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(BACKOFF_MAX);
    }
}

fn request(job: &MarkerJob, partitions: &[TopicPartition]) -> WriteTxnMarkersRequest {
    let topics = by_topic(partitions)
        .into_iter()
        .map(|(name, partition_indexes)| WritableTxnMarkerTopic {
            name,
            partition_indexes,
        })
        .collect();
    WriteTxnMarkersRequest {
        markers: vec![WritableTxnMarker {
            producer_id: job.producer_id,
            producer_epoch: job.producer_epoch,
            transaction_result: job.commit,
            topics,
            coordinator_epoch: job.coordinator_epoch,
        }],
    }
}

/// Sends `req` to broker `leader` over its inter-broker listener, reusing a connection.
async fn call(
    broker: &Broker,
    connections: &mut BTreeMap<i32, KafkaConnection>,
    leader: i32,
    req: &WriteTxnMarkersRequest,
) -> Result<WriteTxnMarkersResponse, ()> {
    let conn = match connections.entry(leader) {
        Entry::Occupied(e) => e.into_mut(),
        Entry::Vacant(slot) => {
            let image = broker.cluster.image();
            let Some(addr) = broker.replicas.inter_broker_addr(&image, leader) else {
                debug!(leader, "leader has no inter-broker endpoint");
                return Err(());
            };
            let client_id = format!("sluice-txn-markers-{}", broker.config.node_id);
            let security = &broker.replicas.inter_broker_security;
            match KafkaConnection::connect(
                &addr,
                client_id,
                MAX_RESPONSE,
                CONNECT_TIMEOUT,
                security,
            )
            .await
            {
                Ok(c) => slot.insert(c),
                Err(e) => {
                    debug!(leader, error = %e, "cannot reach the leader for markers");
                    return Err(());
                }
            }
        }
    };
    conn.call(ApiKey::WriteTxnMarkers, VERSION, req, CALL_TIMEOUT)
        .await
        .map_err(|e| debug!(leader, error = %e, "WriteTxnMarkers failed"))
}
