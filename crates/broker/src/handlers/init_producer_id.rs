//! InitProducerId (key 22), v0-5, for idempotent producers (KIP-98): a new producer id,
//! epoch 0, from the controller-allocated block. As in Kafka, a producer without a
//! transactional id gets a fresh id on every call (its old state expires). Transactional
//! ids need the transaction coordinator, which does not exist yet: they are answered
//! COORDINATOR_NOT_AVAILABLE.

use std::sync::Arc;

use sluice_protocol::error::ErrorCode;
use sluice_protocol::messages::{InitProducerIdRequest, InitProducerIdResponse};

use crate::broker::Broker;

pub const VERSIONS: (i16, i16) = (0, 5);

pub async fn handle(
    broker: &Arc<Broker>,
    req: InitProducerIdRequest,
    _version: i16,
) -> InitProducerIdResponse {
    let fail = |code: ErrorCode| InitProducerIdResponse {
        error_code: code.code(),
        producer_id: -1,
        producer_epoch: -1,
        ..Default::default()
    };
    if req.transactional_id.is_some() {
        return fail(ErrorCode::CoordinatorNotAvailable);
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
