//! DeleteRecords (key 21), v0-2: advances a partition's log start offset; -1 means
//! "up to the high watermark". Needs Delete on the topic, else its partitions answer
//! TOPIC_AUTHORIZATION_FAILED whether or not it exists (Kafka's rule).

use std::sync::Arc;

use sluice_auth::acl::Operation;
use sluice_protocol::error::ErrorCode;
use sluice_protocol::messages::delete_records_response::{
    DeleteRecordsPartitionResult, DeleteRecordsTopicResult,
};
use sluice_protocol::messages::{DeleteRecordsRequest, DeleteRecordsResponse};

use crate::broker::Broker;
use crate::router::ConnectionInfo;

pub const VERSIONS: (i16, i16) = (0, 2);

pub fn handle(
    broker: &Arc<Broker>,
    conn: &ConnectionInfo,
    req: DeleteRecordsRequest,
    _version: i16,
) -> DeleteRecordsResponse {
    let authz = broker.access.authz(conn);
    let topics = req
        .topics
        .into_iter()
        .map(|t| {
            let allowed = authz.allows_topic(Operation::Delete, &t.name);
            // Not even looked up when denied: existence stays hidden.
            let topic = if allowed {
                broker.topics.get(&t.name)
            } else {
                None
            };
            let partitions = t
                .partitions
                .into_iter()
                .map(|dp| {
                    let outcome = match topic
                        .as_ref()
                        .ok_or(if allowed {
                            ErrorCode::UnknownTopicOrPartition
                        } else {
                            ErrorCode::TopicAuthorizationFailed
                        })
                        .and_then(|tp| tp.lookup(dp.partition_index))
                    {
                        Err(code) => Err(code),
                        Ok(p) => {
                            let hw = p.high_watermark();
                            let target = if dp.offset == -1 { hw } else { dp.offset };
                            if target < 0 || target > hw {
                                Err(ErrorCode::OffsetOutOfRange)
                            } else {
                                match p.log.delete_records_before(target) {
                                    Ok(low) => {
                                        p.notify();
                                        Ok(low)
                                    }
                                    Err(e) => {
                                        tracing::warn!(error = %e, "delete records failed");
                                        Err(ErrorCode::KafkaStorageError)
                                    }
                                }
                            }
                        }
                    };
                    match outcome {
                        Ok(low) => DeleteRecordsPartitionResult {
                            partition_index: dp.partition_index,
                            low_watermark: low,
                            error_code: ErrorCode::None.code(),
                        },
                        Err(code) => DeleteRecordsPartitionResult {
                            partition_index: dp.partition_index,
                            low_watermark: -1,
                            error_code: code.code(),
                        },
                    }
                })
                .collect();
            DeleteRecordsTopicResult {
                name: t.name,
                partitions,
            }
        })
        .collect();
    DeleteRecordsResponse {
        topics,
        ..Default::default()
    }
}
