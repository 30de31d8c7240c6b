//! EndTxn (key 26), v0-4 (v5, KIP-890's epoch bump per transaction, is unstable in the
//! schemas): commit or abort the open transaction. Answered once the decision is in the
//! transaction log; the markers follow. Needs Write on the transactional id (else
//! TRANSACTIONAL_ID_AUTHORIZATION_FAILED).

use std::sync::Arc;

use sluice_auth::acl::Operation;
use sluice_protocol::error::ErrorCode;
use sluice_protocol::messages::{EndTxnRequest, EndTxnResponse};

use crate::broker::{now_ms, Broker};
use crate::router::ConnectionInfo;
use crate::txns::{for_version, reply_code};

pub const VERSIONS: (i16, i16) = (0, 4);

/// PRODUCER_FENCED is known to clients from v2.
const FENCED_SINCE: i16 = 2;

pub async fn handle(
    broker: &Arc<Broker>,
    conn: &ConnectionInfo,
    req: EndTxnRequest,
    version: i16,
) -> EndTxnResponse {
    let answer = |code: ErrorCode| EndTxnResponse {
        error_code: for_version(code, version, FENCED_SINCE).code(),
        producer_id: -1,
        producer_epoch: -1,
        ..Default::default()
    };
    if !broker
        .access
        .authz(conn)
        .allows_txn(Operation::Write, &req.transactional_id)
    {
        return answer(ErrorCode::TransactionalIdAuthorizationFailed);
    }
    let reply = broker
        .txns
        .call(&broker.topics, |c, reply| {
            c.end_txn(
                &req.transactional_id,
                req.producer_id,
                req.producer_epoch,
                req.committed,
                now_ms(),
                reply,
            )
        })
        .await;
    answer(reply_code(reply))
}
