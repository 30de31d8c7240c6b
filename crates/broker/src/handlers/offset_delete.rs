//! OffsetDelete (key 47), v0: removes a group's committed offsets for topics it no
//! longer consumes.

use std::sync::Arc;

use sluice_group::Reply;
use sluice_protocol::error::ErrorCode;
use sluice_protocol::messages::{OffsetDeleteRequest, OffsetDeleteResponse};

use crate::broker::Broker;

pub const VERSIONS: (i16, i16) = (0, 0);

pub async fn handle(
    broker: &Arc<Broker>,
    req: OffsetDeleteRequest,
    _version: i16,
) -> OffsetDeleteResponse {
    match broker
        .groups
        .call(&broker.topics, |c, id| c.offset_delete(req, id))
        .await
    {
        Some(Reply::OffsetDelete(r)) => r,
        _ => OffsetDeleteResponse {
            error_code: ErrorCode::CoordinatorNotAvailable.code(),
            ..Default::default()
        },
    }
}
