//! LeaveGroup (key 13), v0-5: members leave (v3+ in batches, by member or instance id).
//! Needs Read on the group; a refusal is the top-level GROUP_AUTHORIZATION_FAILED in
//! every version (v3+ too: no member leaves), as Kafka answers.

use std::sync::Arc;

use sluice_auth::acl::Operation;
use sluice_protocol::error::ErrorCode;
use sluice_protocol::messages::{LeaveGroupRequest, LeaveGroupResponse};

use crate::broker::{now_ms, Broker};
use crate::router::ConnectionInfo;

pub const VERSIONS: (i16, i16) = (0, 5);

pub fn handle(
    broker: &Arc<Broker>,
    conn: &ConnectionInfo,
    req: LeaveGroupRequest,
    version: i16,
) -> LeaveGroupResponse {
    if !broker
        .access
        .authz(conn)
        .allows_group(Operation::Read, &req.group_id)
    {
        return LeaveGroupResponse {
            error_code: ErrorCode::GroupAuthorizationFailed.code(),
            ..Default::default()
        };
    }
    let now = now_ms();
    broker
        .groups
        .with(&broker.topics, |c| c.leave_group(now, req, version))
}
