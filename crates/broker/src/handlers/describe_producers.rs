//! DescribeProducers (key 61), v0: the producers a partition leader tracks (idempotent
//! and transactional: epoch, last sequence and timestamp, coordinator epoch, the start of
//! an open transaction), as `kafka-transactions.sh describe-producers` shows them.
//! Each topic needs Read, else its partitions answer TOPIC_AUTHORIZATION_FAILED whether
//! or not it exists (Kafka's rule).

use std::sync::Arc;

use sluice_auth::acl::Operation;
use sluice_protocol::error::ErrorCode;
use sluice_protocol::messages::describe_producers_response::{
    PartitionResponse, ProducerState, TopicResponse,
};
use sluice_protocol::messages::{DescribeProducersRequest, DescribeProducersResponse};

use crate::broker::Broker;
use crate::router::ConnectionInfo;

pub const VERSIONS: (i16, i16) = (0, 0);

pub fn handle(
    broker: &Arc<Broker>,
    conn: &ConnectionInfo,
    req: DescribeProducersRequest,
    _version: i16,
) -> DescribeProducersResponse {
    let authz = broker.access.authz(conn);
    let topics = req
        .topics
        .into_iter()
        .map(|t| {
            let allowed = authz.allows_topic(Operation::Read, &t.name);
            // Not even looked up when denied: existence stays hidden.
            let topic = if allowed {
                broker.topics.get(&t.name)
            } else {
                None
            };
            let partitions = t
                .partition_indexes
                .into_iter()
                .map(|index| {
                    let found = topic
                        .as_ref()
                        .ok_or(if allowed {
                            ErrorCode::UnknownTopicOrPartition
                        } else {
                            ErrorCode::TopicAuthorizationFailed
                        })
                        .and_then(|tp| tp.lookup(index));
                    match found {
                        Ok(p) => PartitionResponse {
                            partition_index: index,
                            error_code: ErrorCode::None.code(),
                            error_message: None,
                            active_producers: p
                                .log
                                .producer_states()
                                .into_iter()
                                .map(|s| ProducerState {
                                    producer_id: s.producer_id,
                                    producer_epoch: i32::from(s.producer_epoch),
                                    last_sequence: s.last_sequence,
                                    last_timestamp: s.last_timestamp,
                                    coordinator_epoch: s.coordinator_epoch,
                                    current_txn_start_offset: s.current_txn_start_offset,
                                })
                                .collect(),
                        },
                        Err(code) => PartitionResponse {
                            partition_index: index,
                            error_code: code.code(),
                            error_message: None,
                            active_producers: Vec::new(),
                        },
                    }
                })
                .collect();
            TopicResponse {
                name: t.name,
                partitions,
            }
        })
        .collect();
    DescribeProducersResponse {
        topics,
        ..Default::default()
    }
}
