//! Heartbeat (key 12), v0-4: keeps a member's session alive; REBALANCE_IN_PROGRESS
//! tells it to rejoin.

use std::sync::Arc;

use sluice_protocol::messages::{HeartbeatRequest, HeartbeatResponse};

use crate::broker::{now_ms, Broker};

pub const VERSIONS: (i16, i16) = (0, 4);

pub fn handle(broker: &Arc<Broker>, req: HeartbeatRequest, _version: i16) -> HeartbeatResponse {
    let now = now_ms();
    broker
        .groups
        .with(&broker.topics, |c| (c.heartbeat(now, req), Vec::new()))
}
