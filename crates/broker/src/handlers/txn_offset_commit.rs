//! TxnOffsetCommit (key 28), v0-4: offsets committed as part of a transaction
//! (consume-transform-produce). The group coordinator writes them as the producer's
//! transactional records to `__consumer_offsets`; they take effect when the
//! transaction's COMMIT marker reaches that partition (`write_txn_markers`). The
//! producer must have added the group's partition with AddOffsetsToTxn first; the
//! partition leader's producer state refuses a fenced epoch.

use std::sync::Arc;

use sluice_group::Reply;
use sluice_protocol::error::ErrorCode;
use sluice_protocol::messages::txn_offset_commit_response::{
    TxnOffsetCommitResponsePartition, TxnOffsetCommitResponseTopic,
};
use sluice_protocol::messages::{TxnOffsetCommitRequest, TxnOffsetCommitResponse};

use crate::broker::{now_ms, Broker};

pub const VERSIONS: (i16, i16) = (0, 4);

pub async fn handle(
    broker: &Arc<Broker>,
    req: TxnOffsetCommitRequest,
    _version: i16,
) -> TxnOffsetCommitResponse {
    let now = now_ms();
    // Kept for the error response below, should the coordinator drop the request.
    let shape: Vec<(String, Vec<i32>)> = req
        .topics
        .iter()
        .map(|t| {
            (
                t.name.clone(),
                t.partitions.iter().map(|p| p.partition_index).collect(),
            )
        })
        .collect();
    let topics = &broker.topics;
    let exists = |topic: &str, partition: i32| {
        topics
            .get(topic)
            .is_some_and(|t| t.state(partition).is_some())
    };
    match broker
        .groups
        .call(topics, |c, id| c.txn_offset_commit(now, req, &exists, id))
        .await
    {
        Some(Reply::TxnCommit(r)) => r,
        _ => TxnOffsetCommitResponse {
            topics: shape
                .into_iter()
                .map(|(name, parts)| TxnOffsetCommitResponseTopic {
                    name,
                    partitions: parts
                        .into_iter()
                        .map(|partition_index| TxnOffsetCommitResponsePartition {
                            partition_index,
                            error_code: ErrorCode::CoordinatorNotAvailable.code(),
                        })
                        .collect(),
                })
                .collect(),
            ..Default::default()
        },
    }
}
