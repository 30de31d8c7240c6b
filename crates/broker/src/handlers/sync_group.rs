//! SyncGroup (key 14), v0-5: members collect their assignment; followers wait for the
//! leader's.

use std::sync::Arc;

use sluice_group::Reply;
use sluice_protocol::error::ErrorCode;
use sluice_protocol::messages::{SyncGroupRequest, SyncGroupResponse};

use crate::broker::{now_ms, Broker};

pub const VERSIONS: (i16, i16) = (0, 5);

pub async fn handle(
    broker: &Arc<Broker>,
    req: SyncGroupRequest,
    _version: i16,
) -> SyncGroupResponse {
    let now = now_ms();
    match broker
        .groups
        .call(&broker.topics, |c, id| c.sync_group(now, req, id))
        .await
    {
        Some(Reply::Sync(r)) => r,
        _ => SyncGroupResponse {
            error_code: ErrorCode::CoordinatorNotAvailable.code(),
            ..Default::default()
        },
    }
}
