//! DescribeTransactions (key 65), v0: the state of transactional ids this node
//! coordinates (others answer NOT_COORDINATOR; admin clients ask each id's coordinator).

use std::sync::Arc;

use sluice_protocol::error::ErrorCode;
use sluice_protocol::messages::describe_transactions_response::{TopicData, TransactionState};
use sluice_protocol::messages::{DescribeTransactionsRequest, DescribeTransactionsResponse};
use sluice_txn::by_topic;

use crate::broker::Broker;

pub const VERSIONS: (i16, i16) = (0, 0);

pub fn handle(
    broker: &Arc<Broker>,
    req: DescribeTransactionsRequest,
    _version: i16,
) -> DescribeTransactionsResponse {
    let transaction_states = req
        .transactional_ids
        .into_iter()
        .map(|id| match broker.txns.read(|c| c.describe(&id)) {
            Ok(meta) => {
                let topics = by_topic(&meta.partitions)
                    .into_iter()
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
        })
        .collect();
    DescribeTransactionsResponse {
        transaction_states,
        ..Default::default()
    }
}
