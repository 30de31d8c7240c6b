//! FindCoordinator (key 10), v0-6: which node coordinates a consumer group or
//! transactional id. A single node coordinates every key itself.
//!
//! Served ahead of the group protocol because librdkafka infers broker support for
//! LZ4 from this API (it falls back to uncompressed batches without it), and because
//! the answer is already right: this node is where the coordinators run.

use std::sync::Arc;

use sluice_protocol::error::ErrorCode;
use sluice_protocol::messages::find_coordinator_response::Coordinator;
use sluice_protocol::messages::{FindCoordinatorRequest, FindCoordinatorResponse};

use crate::broker::Broker;

pub const VERSIONS: (i16, i16) = (0, 6);

const KEY_GROUP: i8 = 0;
const KEY_TRANSACTION: i8 = 1;

fn locate(broker: &Broker, key: String, key_type: i8) -> Coordinator {
    match key_type {
        KEY_GROUP | KEY_TRANSACTION => Coordinator {
            key,
            node_id: broker.config.node_id,
            host: broker.advertised_host.clone(),
            port: broker.advertised_port,
            error_code: ErrorCode::None.code(),
            error_message: None,
        },
        other => Coordinator {
            key,
            node_id: -1,
            host: String::new(),
            port: -1,
            error_code: ErrorCode::InvalidRequest.code(),
            error_message: Some(format!("Unsupported coordinator key type {other}")),
        },
    }
}

pub fn handle(
    broker: &Arc<Broker>,
    req: FindCoordinatorRequest,
    version: i16,
) -> FindCoordinatorResponse {
    if version >= 4 {
        return FindCoordinatorResponse {
            coordinators: req
                .coordinator_keys
                .into_iter()
                .map(|k| locate(broker, k, req.key_type))
                .collect(),
            ..Default::default()
        };
    }
    let c = locate(broker, req.key, req.key_type);
    FindCoordinatorResponse {
        error_code: c.error_code,
        error_message: if version >= 1 { c.error_message } else { None },
        node_id: c.node_id,
        host: c.host,
        port: c.port,
        ..Default::default()
    }
}
