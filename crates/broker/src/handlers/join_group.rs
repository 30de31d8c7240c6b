//! JoinGroup (key 11), v0-9: a member enters a group's join phase; the response waits
//! until the phase completes (or comes at once with MEMBER_ID_REQUIRED, v4+).
//!
//! Needs Read on the group (else GROUP_AUTHORIZATION_FAILED), checked before the
//! coordinator sees the request, so a refused join adds no member.

use std::sync::Arc;

use sluice_auth::acl::Operation;
use sluice_group::{ClientInfo, Reply};
use sluice_protocol::error::ErrorCode;
use sluice_protocol::messages::{JoinGroupRequest, JoinGroupResponse};

use crate::broker::{now_ms, Broker};
use crate::router::ConnectionInfo;

pub const VERSIONS: (i16, i16) = (0, 9);

pub async fn handle(
    broker: &Arc<Broker>,
    conn: &ConnectionInfo,
    mut req: JoinGroupRequest,
    version: i16,
    client: ClientInfo,
) -> JoinGroupResponse {
    let allowed = broker
        .access
        .authz(conn)
        .allows_group(Operation::Read, &req.group_id);
    let mut resp = if !allowed {
        // Kafka echoes the member id the request carried.
        failed(ErrorCode::GroupAuthorizationFailed, req.member_id)
    } else {
        // v0 has no rebalance timeout: Kafka uses the session timeout.
        if version == 0 {
            req.rebalance_timeout_ms = req.session_timeout_ms;
        }
        let now = now_ms();
        let reply = broker
            .groups
            .call(&broker.topics, |c, id| {
                c.join_group(now, req, version, client, id)
            })
            .await;
        match reply {
            Some(Reply::Join(r)) => r,
            _ => failed(ErrorCode::CoordinatorNotAvailable, String::new()),
        }
    };
    // Before v7 the protocol name is not nullable.
    if version < 7 && resp.protocol_name.is_none() {
        resp.protocol_name = Some(String::new());
    }
    resp
}

fn failed(code: ErrorCode, member_id: String) -> JoinGroupResponse {
    JoinGroupResponse {
        error_code: code.code(),
        generation_id: -1,
        member_id,
        ..Default::default()
    }
}
