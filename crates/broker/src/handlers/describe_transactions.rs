//! DescribeTransactions (key 65), v0: the state of transactional ids this node
//! coordinates (others answer NOT_COORDINATOR; admin clients ask each id's coordinator).
//!
//! Each id needs Describe (else TRANSACTIONAL_ID_AUTHORIZATION_FAILED and nothing about
//! it); a described transaction lists only the topics the principal may Describe.

use std::sync::Arc;

use sluice_auth::acl::Operation;
use sluice_protocol::error::ErrorCode;
use sluice_protocol::messages::describe_transactions_response::{TopicData, TransactionState};
use sluice_protocol::messages::{DescribeTransactionsRequest, DescribeTransactionsResponse};
use sluice_txn::by_topic;

use crate::broker::Broker;
use crate::router::ConnectionInfo;

pub const VERSIONS: (i16, i16) = (0, 0);

pub fn handle(
    broker: &Arc<Broker>,
    conn: &ConnectionInfo,
    req: DescribeTransactionsRequest,
    _version: i16,
) -> DescribeTransactionsResponse {
    let authz = broker.access.authz(conn);
    let transaction_states = req
        .transactional_ids
        .into_iter()
        .map(|id| {
            let described = if authz.allows_txn(Operation::Describe, &id) {
                broker.txns.read(|c| c.describe(&id))
            } else {
                Err(ErrorCode::TransactionalIdAuthorizationFailed)
            };
            match described {
                Ok(meta) => {
                    let topics = by_topic(&meta.partitions)
                        .into_iter()
                        .filter(|(topic, _)| authz.allows_topic(Operation::Describe, topic))
                        .map(|(topic, partitions)| TopicData { topic, partitions })
                        .collect();
                    TransactionState {
                        error_code: ErrorCode::None.code(),
                        transactional_id: id,
                        transaction_state: meta.state.name().to_string(),
                        transaction_timeout_ms: meta.timeout_ms,
                        transaction_start_time_ms: meta.start_ms,
                        producer_id: meta.producer_id,
                        producer_epoch: meta.producer_epoch,
                        topics,
                    }
                }
                Err(code) => TransactionState {
                    error_code: code.code(),
                    transactional_id: id,
                    transaction_start_time_ms: -1,
                    producer_id: -1,
                    producer_epoch: -1,
                    ..Default::default()
                },
            }
        })
        .collect();
    DescribeTransactionsResponse {
        transaction_states,
        ..Default::default()
    }
}
