//! Heartbeat (key 12), v0-4: keeps a member's session alive; REBALANCE_IN_PROGRESS
//! tells it to rejoin. Needs Read on the group (else GROUP_AUTHORIZATION_FAILED).

use std::sync::Arc;

use sluice_auth::acl::Operation;
use sluice_protocol::error::ErrorCode;
use sluice_protocol::messages::{HeartbeatRequest, HeartbeatResponse};

use crate::broker::{now_ms, Broker};
use crate::router::ConnectionInfo;

pub const VERSIONS: (i16, i16) = (0, 4);

pub fn handle(
    broker: &Arc<Broker>,
    conn: &ConnectionInfo,
    req: HeartbeatRequest,
    _version: i16,
) -> HeartbeatResponse {
    if !broker
        .access
        .authz(conn)
        .allows_group(Operation::Read, &req.group_id)
    {
        return HeartbeatResponse {
            error_code: ErrorCode::GroupAuthorizationFailed.code(),
            ..Default::default()
        };
    }
    let now = now_ms();
    broker
        .groups
        .with(&broker.topics, |c| (c.heartbeat(now, req), Vec::new()))
}
