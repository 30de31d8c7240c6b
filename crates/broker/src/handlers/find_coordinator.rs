//! FindCoordinator (key 10), v0-6 (batched keys from v4): which node coordinates a
//! consumer group or transactional id: the leader of the group's `__consumer_offsets`
//! partition, which this node is for every partition while it runs alone. The first
//! group lookup creates that topic, as in Kafka.

use std::sync::Arc;

use sluice_protocol::error::ErrorCode;
use sluice_protocol::messages::find_coordinator_response::Coordinator;
use sluice_protocol::messages::{FindCoordinatorRequest, FindCoordinatorResponse};

use crate::broker::Broker;

pub const VERSIONS: (i16, i16) = (0, 6);

const KEY_GROUP: i8 = 0;
const KEY_TRANSACTION: i8 = 1;

fn locate(broker: &Broker, key: String, key_type: i8, listener: usize) -> Coordinator {
    if key_type == KEY_GROUP {
        // The coordinator is the leader of the group's offsets partition: this node,
        // once the partition exists.
        let ready = broker.groups.ensure_offsets_topic(broker).and_then(|()| {
            let p = broker.groups.partition_for(&key);
            broker
                .topics
                .get(sluice_group::OFFSETS_TOPIC)
                .and_then(|t| t.partition(p).map(|_| ()))
                .ok_or(ErrorCode::CoordinatorNotAvailable)
        });
        if let Err(code) = ready {
            return Coordinator {
                key,
                node_id: -1,
                host: String::new(),
                port: -1,
                error_code: code.code(),
                error_message: Some(format!("{} is not available", sluice_group::OFFSETS_TOPIC)),
            };
        }
    }
    match key_type {
        KEY_GROUP | KEY_TRANSACTION => Coordinator {
            key,
            node_id: broker.config.node_id,
            host: broker.endpoint(listener).0.to_string(),
            port: broker.endpoint(listener).1,
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
    listener: usize,
) -> FindCoordinatorResponse {
    if version >= 4 {
        return FindCoordinatorResponse {
            coordinators: req
                .coordinator_keys
                .into_iter()
                .map(|k| locate(broker, k, req.key_type, listener))
                .collect(),
            ..Default::default()
        };
    }
    let c = locate(broker, req.key, req.key_type, listener);
    FindCoordinatorResponse {
        error_code: c.error_code,
        error_message: if version >= 1 { c.error_message } else { None },
        node_id: c.node_id,
        host: c.host,
        port: c.port,
        ..Default::default()
    }
}
