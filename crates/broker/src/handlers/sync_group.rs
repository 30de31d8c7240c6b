//! SyncGroup (key 14), v0-5: members collect their assignment; followers wait for the
//! leader's. Needs Read on the group (else GROUP_AUTHORIZATION_FAILED).

use std::sync::Arc;

use sluice_auth::acl::Operation;
use sluice_group::Reply;
use sluice_protocol::error::ErrorCode;
use sluice_protocol::messages::{SyncGroupRequest, SyncGroupResponse};

use crate::broker::{now_ms, Broker};
use crate::router::ConnectionInfo;

pub const VERSIONS: (i16, i16) = (0, 5);

pub async fn handle(
    broker: &Arc<Broker>,
    conn: &ConnectionInfo,
    req: SyncGroupRequest,
    _version: i16,
) -> SyncGroupResponse {
    let failed = |code: ErrorCode| SyncGroupResponse {
        error_code: code.code(),
        ..Default::default()
    };
    if !broker
        .access
        .authz(conn)
        .allows_group(Operation::Read, &req.group_id)
    {
        return failed(ErrorCode::GroupAuthorizationFailed);
    }
    let now = now_ms();
    match broker
        .groups
        .call(&broker.topics, |c, id| c.sync_group(now, req, id))
        .await
    {
        Some(Reply::Sync(r)) => r,
        _ => failed(ErrorCode::CoordinatorNotAvailable),
    }
}
