//! InitProducerId (key 22), v0-5. Without a transactional id (idempotent producers,
//! KIP-98): a new producer id at epoch 0 from the controller-allocated block; as in
//! Kafka, every call gets a fresh id (the old one's state expires). With one: the
//! transaction coordinator's answer (epoch bumped, an open transaction of a previous
//! instance aborted, KIP-360's expected id and epoch checked from v3).
//!
//! Authorization, as Kafka: with a transactional id, Write on it (else
//! TRANSACTIONAL_ID_AUTHORIZATION_FAILED); without one, IdempotentWrite on the cluster
//! or Write on some topic (else CLUSTER_AUTHORIZATION_FAILED).

use std::sync::Arc;

use sluice_auth::acl::{Operation, ResourceType};
use sluice_protocol::error::ErrorCode;
use sluice_protocol::messages::{InitProducerIdRequest, InitProducerIdResponse};
use sluice_txn::Reply;

use crate::broker::Broker;
use crate::router::ConnectionInfo;
use crate::txns::for_version;

pub const VERSIONS: (i16, i16) = (0, 5);

/// PRODUCER_FENCED is known to clients from v4.
const FENCED_SINCE: i16 = 4;

pub async fn handle(
    broker: &Arc<Broker>,
    conn: &ConnectionInfo,
    req: InitProducerIdRequest,
    version: i16,
) -> InitProducerIdResponse {
    let fail = |code: ErrorCode| InitProducerIdResponse {
        error_code: for_version(code, version, FENCED_SINCE).code(),
        producer_id: -1,
        producer_epoch: -1,
        ..Default::default()
    };
    let refused = {
        let authz = broker.access.authz(conn);
        match &req.transactional_id {
            Some(id) if !authz.allows_txn(Operation::Write, id) => {
                Some(ErrorCode::TransactionalIdAuthorizationFailed)
            }
            Some(_) => None,
            None if !authz.allows_cluster(Operation::IdempotentWrite)
                && !authz.allows_any(Operation::Write, ResourceType::Topic) =>
            {
                Some(ErrorCode::ClusterAuthorizationFailed)
            }
            None => None,
        }
    };
    if let Some(code) = refused {
        return fail(code);
    }
    if let Some(id) = req.transactional_id {
        if id.is_empty() {
            return fail(ErrorCode::InvalidRequest);
        }
        let expected =
            (version >= 3 && req.producer_id >= 0).then_some((req.producer_id, req.producer_epoch));
        let reply = broker
            .txns
            .init_producer_id(broker, &id, req.transaction_timeout_ms, expected)
            .await;
        return match reply {
            Reply::ProducerId {
                error: ErrorCode::None,
                producer_id,
                producer_epoch,
            } => InitProducerIdResponse {
                error_code: ErrorCode::None.code(),
                producer_id,
                producer_epoch,
                ..Default::default()
            },
            Reply::ProducerId { error, .. } | Reply::Done(error) => fail(error),
        };
    }
    match broker.producer_ids.next(&broker.cluster).await {
        Ok(id) => InitProducerIdResponse {
            error_code: ErrorCode::None.code(),
            producer_id: id,
            producer_epoch: 0,
            ..Default::default()
        },
        Err(code) => fail(code),
    }
}
