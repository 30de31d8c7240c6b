//! AddOffsetsToTxn (key 25), v0-4: the group's `__consumer_offsets` partition joins the
//! transaction, so the offsets the producer then commits with TxnOffsetCommit get the
//! transaction's markers.
//!
//! Needs Write on the transactional id (else TRANSACTIONAL_ID_AUTHORIZATION_FAILED) and
//! Read on the group (else GROUP_AUTHORIZATION_FAILED), checked before the offsets
//! topic is created.

use std::sync::Arc;

use sluice_auth::acl::Operation;
use sluice_group::OFFSETS_TOPIC;
use sluice_protocol::error::ErrorCode;
use sluice_protocol::messages::{AddOffsetsToTxnRequest, AddOffsetsToTxnResponse};

use crate::broker::{now_ms, Broker};
use crate::router::ConnectionInfo;
use crate::txns::{for_version, reply_code};

pub const VERSIONS: (i16, i16) = (0, 4);

/// PRODUCER_FENCED is known to clients from v2.
const FENCED_SINCE: i16 = 2;

pub async fn handle(
    broker: &Arc<Broker>,
    conn: &ConnectionInfo,
    req: AddOffsetsToTxnRequest,
    version: i16,
) -> AddOffsetsToTxnResponse {
    let answer = |code: ErrorCode| AddOffsetsToTxnResponse {
        error_code: for_version(code, version, FENCED_SINCE).code(),
        ..Default::default()
    };
    let refused = {
        let authz = broker.access.authz(conn);
        if !authz.allows_txn(Operation::Write, &req.transactional_id) {
            Some(ErrorCode::TransactionalIdAuthorizationFailed)
        } else if !authz.allows_group(Operation::Read, &req.group_id) {
            Some(ErrorCode::GroupAuthorizationFailed)
        } else {
            None
        }
    };
    if let Some(code) = refused {
        return answer(code);
    }
    // Creating the offsets topic waits for the metadata quorum: off the async threads.
    let b = broker.clone();
    let created = tokio::task::spawn_blocking(move || b.groups.ensure_offsets_topic(&b))
        .await
        .unwrap_or(Err(ErrorCode::CoordinatorNotAvailable));
    let code = match created {
        Err(code) => code,
        Ok(()) => {
            let partition = broker.groups.partition_for(&req.group_id);
            let reply = broker
                .txns
                .call(&broker.topics, |c, reply| {
                    c.add_partitions(
                        &req.transactional_id,
                        req.producer_id,
                        req.producer_epoch,
                        &[(OFFSETS_TOPIC.to_string(), partition)],
                        now_ms(),
                        reply,
                    )
                })
                .await;
            reply_code(reply)
        }
    };
    answer(code)
}
