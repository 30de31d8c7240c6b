//! JoinGroup (key 11), v0-9: a member enters a group's join phase; the response waits
//! until the phase completes (or comes at once with MEMBER_ID_REQUIRED, v4+).

use std::sync::Arc;

use sluice_group::{ClientInfo, Reply};
use sluice_protocol::error::ErrorCode;
use sluice_protocol::messages::{JoinGroupRequest, JoinGroupResponse};

use crate::broker::{now_ms, Broker};

pub const VERSIONS: (i16, i16) = (0, 9);

pub async fn handle(
    broker: &Arc<Broker>,
    mut req: JoinGroupRequest,
    version: i16,
    client: ClientInfo,
) -> JoinGroupResponse {
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
    let mut resp = match reply {
        Some(Reply::Join(r)) => r,
        _ => JoinGroupResponse {
            error_code: ErrorCode::CoordinatorNotAvailable.code(),
            generation_id: -1,
            ..Default::default()
        },
    };
    // Before v7 the protocol name is not nullable.
    if version < 7 && resp.protocol_name.is_none() {
        resp.protocol_name = Some(String::new());
    }
    resp
}
