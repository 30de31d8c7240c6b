//! ListOffsets (key 2), v0-10: earliest (-2), latest (-1, the high watermark; the last
//! stable offset for read_committed), max timestamp (-3, v7+), earliest local (-4, v8+),
//! latest tiered (-5, v9+) and offset-for-timestamp. A leader whose high watermark has
//! not yet reached the start of its leadership answers clients OFFSET_NOT_AVAILABLE.
//! Each topic needs Describe, else its partitions answer TOPIC_AUTHORIZATION_FAILED
//! (whether or not it exists), as in Kafka.

use std::sync::Arc;

use sluice_auth::acl::Operation;
use sluice_protocol::error::ErrorCode;
use sluice_protocol::messages::list_offsets_response::{
    ListOffsetsPartitionResponse, ListOffsetsTopicResponse,
};
use sluice_protocol::messages::{ListOffsetsRequest, ListOffsetsResponse};

use super::fetch::check_leader_epoch;
use crate::broker::Broker;
use crate::partition::Partition;
use crate::router::ConnectionInfo;

pub const VERSIONS: (i16, i16) = (0, 10);

const LATEST: i64 = -1;
const EARLIEST: i64 = -2;
const MAX_TIMESTAMP: i64 = -3;
const EARLIEST_LOCAL: i64 = -4;
const LATEST_TIERED: i64 = -5;

/// An answer: (offset, timestamp) where -1/-1 means "no such offset".
type Found = (i64, i64);

pub fn handle(
    broker: &Arc<Broker>,
    conn: &ConnectionInfo,
    req: ListOffsetsRequest,
    version: i16,
) -> ListOffsetsResponse {
    let authz = broker.access.authz(conn);
    // KIP-207 applies to clients' requests (those with an isolation level, v2+), not to
    // followers'.
    let from_client = req.replica_id < 0 && version >= 2;
    let read_committed = req.isolation_level == 1;
    let topics = req
        .topics
        .into_iter()
        .map(|t| {
            let allowed = authz.allows_topic(Operation::Describe, &t.name);
            // Not even looked up when denied: existence stays hidden.
            let topic = if allowed {
                broker.topics.get(&t.name)
            } else {
                None
            };
            let partitions = t
                .partitions
                .into_iter()
                .map(|lp| {
                    let outcome = match topic
                        .as_ref()
                        .ok_or(if allowed {
                            ErrorCode::UnknownTopicOrPartition
                        } else {
                            ErrorCode::TopicAuthorizationFailed
                        })
                        .and_then(|tp| tp.lookup(lp.partition_index))
                    {
                        Err(code) => Err(code),
                        Ok(p) => match check_leader_epoch(p, lp.current_leader_epoch) {
                            Some(code) => Err(code),
                            None if from_client && behind_epoch_start(p) => {
                                Err(ErrorCode::OffsetNotAvailable)
                            }
                            None => {
                                // What the client may read: latest and timestamp
                                // lookups answer within it.
                                let readable = if read_committed {
                                    p.log.last_stable_offset()
                                } else {
                                    p.high_watermark()
                                };
                                lookup(p, lp.timestamp, version, readable)
                            }
                        },
                    };
                    partition_response(
                        lp.partition_index,
                        outcome,
                        version,
                        topic
                            .as_ref()
                            .and_then(|tp| tp.partition(lp.partition_index))
                            .map(|p| p.leader_epoch()),
                    )
                })
                .collect();
            ListOffsetsTopicResponse {
                name: t.name,
                partitions,
            }
        })
        .collect();
    ListOffsetsResponse {
        topics,
        ..Default::default()
    }
}

/// KIP-207: a new leader's high watermark may lag the offsets its predecessor already
/// exposed; until it reaches the start of this leadership, offsets it would answer
/// could go backwards, so clients are told to retry.
fn behind_epoch_start(p: &Partition) -> bool {
    p.epoch_start_offset()
        .is_some_and(|start| start > p.high_watermark())
}

fn lookup(p: &Partition, timestamp: i64, version: i16, readable: i64) -> Result<Found, ErrorCode> {
    let unsupported = |min: i16| {
        if version < min {
            Err(ErrorCode::UnsupportedVersion)
        } else {
            Ok(())
        }
    };
    match timestamp {
        LATEST => Ok((readable, -1)),
        EARLIEST => Ok((p.log.log_start_offset(), -1)),
        EARLIEST_LOCAL => unsupported(8).map(|()| (p.log.log_start_offset(), -1)),
        // Without tiered storage nothing is tiered: Kafka answers -1.
        LATEST_TIERED => unsupported(9).map(|()| (-1, -1)),
        MAX_TIMESTAMP => {
            unsupported(7)?;
            match p.log.max_timestamp_offset() {
                Ok(found) => Ok(found.unwrap_or((-1, -1))),
                Err(e) => {
                    tracing::warn!(error = %e, "max timestamp lookup failed");
                    Err(ErrorCode::KafkaStorageError)
                }
            }
        }
        ts if ts >= 0 => match p.log.offset_for_timestamp(ts) {
            // Only what the client may read is visible to ListOffsets.
            Ok(Some((offset, found_ts))) if offset < readable => Ok((offset, found_ts)),
            Ok(_) => Ok((-1, -1)),
            Err(e) => {
                tracing::warn!(error = %e, "offset for timestamp failed");
                Err(ErrorCode::KafkaStorageError)
            }
        },
        _ => Err(ErrorCode::InvalidRequest),
    }
}

fn partition_response(
    index: i32,
    outcome: Result<Found, ErrorCode>,
    version: i16,
    epoch: Option<i32>,
) -> ListOffsetsPartitionResponse {
    let mut r = ListOffsetsPartitionResponse {
        partition_index: index,
        ..Default::default()
    };
    match outcome {
        Err(code) => r.error_code = code.code(),
        Ok((offset, ts)) => {
            if version == 0 {
                // v0 answers with a list of offsets instead of offset + timestamp.
                r.old_style_offsets = if offset >= 0 {
                    vec![offset]
                } else {
                    Vec::new()
                };
            } else {
                r.offset = offset;
                r.timestamp = ts;
                if version >= 4 && offset >= 0 {
                    r.leader_epoch = epoch.unwrap_or(-1);
                }
            }
        }
    }
    r
}
