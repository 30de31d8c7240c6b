//! ListTransactions (key 66), v0-1: the transactional ids this node coordinates,
//! filtered by state, producer id and (v1) how long the transaction has been open.
//! State names Kafka does not know come back in `unknown_state_filters`. Only ids the
//! principal may Describe are listed.

use std::collections::BTreeSet;
use std::sync::Arc;

use sluice_auth::acl::Operation;
use sluice_protocol::error::ErrorCode;
use sluice_protocol::messages::list_transactions_response::TransactionState;
use sluice_protocol::messages::{ListTransactionsRequest, ListTransactionsResponse};
use sluice_txn::TxnState;

use crate::broker::{now_ms, Broker};
use crate::router::ConnectionInfo;

pub const VERSIONS: (i16, i16) = (0, 1);

const STATES: [TxnState; 8] = [
    TxnState::Empty,
    TxnState::Ongoing,
    TxnState::PrepareCommit,
    TxnState::PrepareAbort,
    TxnState::CompleteCommit,
    TxnState::CompleteAbort,
    TxnState::Dead,
    TxnState::PrepareEpochFence,
];

pub fn handle(
    broker: &Arc<Broker>,
    conn: &ConnectionInfo,
    req: ListTransactionsRequest,
    version: i16,
) -> ListTransactionsResponse {
    let (known, unknown): (Vec<String>, Vec<String>) = req
        .state_filters
        .into_iter()
        .partition(|s| STATES.iter().any(|k| k.name() == s));
    let states: BTreeSet<String> = known.into_iter().collect();
    let producer_ids: BTreeSet<i64> = req.producer_id_filters.into_iter().collect();
    let min_duration = if version >= 1 {
        req.duration_filter
    } else {
        -1
    };
    // Only unknown states asked for: nothing can match.
    let nothing = states.is_empty() && !unknown.is_empty();
    let (listed, loading) = broker
        .txns
        .read(|c| c.list(&states, &producer_ids, min_duration, now_ms()));
    ListTransactionsResponse {
        error_code: if loading {
            ErrorCode::CoordinatorLoadInProgress.code()
        } else {
            ErrorCode::None.code()
        },
        unknown_state_filters: unknown,
        transaction_states: if nothing {
            Vec::new()
        } else {
            let authz = broker.access.authz(conn);
            listed
                .into_iter()
                .filter(|l| authz.allows_txn(Operation::Describe, &l.transactional_id))
                .map(|l| TransactionState {
                    transactional_id: l.transactional_id,
                    producer_id: l.producer_id,
                    transaction_state: l.state.name().to_string(),
                })
                .collect()
        },
        ..Default::default()
    }
}
