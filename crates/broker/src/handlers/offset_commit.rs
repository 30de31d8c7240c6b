//! OffsetCommit (key 8), v0-9: stores committed offsets (with the KIP-320 leader epoch)
//! in `__consumer_offsets`; answered once written.

use std::sync::Arc;

use sluice_group::Reply;
use sluice_protocol::error::ErrorCode;
use sluice_protocol::messages::offset_commit_response::{
    OffsetCommitResponsePartition, OffsetCommitResponseTopic,
};
use sluice_protocol::messages::{OffsetCommitRequest, OffsetCommitResponse};

use crate::broker::{now_ms, Broker};

pub const VERSIONS: (i16, i16) = (0, 9);

pub async fn handle(
    broker: &Arc<Broker>,
    req: OffsetCommitRequest,
    version: i16,
) -> OffsetCommitResponse {
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
        .call(topics, |c, id| {
            c.offset_commit(now, req, version, &exists, id)
        })
        .await
    {
        Some(Reply::Commit(r)) => r,
        _ => OffsetCommitResponse {
            topics: shape
                .into_iter()
                .map(|(name, parts)| OffsetCommitResponseTopic {
                    name,
                    partitions: parts
                        .into_iter()
                        .map(|partition_index| OffsetCommitResponsePartition {
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
