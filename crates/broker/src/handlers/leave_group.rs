//! LeaveGroup (key 13), v0-5: members leave (v3+ in batches, by member or instance id).

use std::sync::Arc;

use sluice_protocol::messages::{LeaveGroupRequest, LeaveGroupResponse};

use crate::broker::{now_ms, Broker};

pub const VERSIONS: (i16, i16) = (0, 5);

pub fn handle(broker: &Arc<Broker>, req: LeaveGroupRequest, version: i16) -> LeaveGroupResponse {
    let now = now_ms();
    broker
        .groups
        .with(&broker.topics, |c| c.leave_group(now, req, version))
}
