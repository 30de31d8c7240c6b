//! FindCoordinator (key 10), v0-6 (batched keys from v4): which node coordinates a
//! consumer group or transactional id: the leader of the key's partition of
//! `__consumer_offsets` or `__transaction_state`. The first lookup of each kind creates
//! its topic, as in Kafka.

use std::sync::Arc;

use sluice_protocol::error::ErrorCode;
use sluice_protocol::messages::find_coordinator_response::Coordinator;
use sluice_protocol::messages::{FindCoordinatorRequest, FindCoordinatorResponse};

use super::metadata::brokers_on_listener;
use crate::broker::Broker;

pub const VERSIONS: (i16, i16) = (0, 6);

const KEY_GROUP: i8 = 0;
const KEY_TRANSACTION: i8 = 1;

fn locate(broker: &Broker, key: String, key_type: i8, listener: usize) -> Coordinator {
    let unavailable = |key: String, code: ErrorCode, why: String| Coordinator {
        key,
        node_id: -1,
        host: String::new(),
        port: -1,
        error_code: code.code(),
        error_message: Some(why),
    };
    // The coordinator is the leader of the key's partition of the coordinator's
    // internal topic, once the partition exists and has one.
    let (topic, created) = match key_type {
        KEY_GROUP => (
            sluice_group::OFFSETS_TOPIC,
            broker
                .groups
                .ensure_offsets_topic(broker)
                .map(|()| broker.groups.partition_for(&key)),
        ),
        KEY_TRANSACTION => (
            sluice_txn::TXN_STATE_TOPIC,
            broker
                .txns
                .ensure_topic(broker)
                .map(|()| broker.txns.partition_for(&key)),
        ),
        other => {
            let why = format!("Unsupported coordinator key type {other}");
            return unavailable(key, ErrorCode::InvalidRequest, why);
        }
    };
    let leader = created.and_then(|p| {
        broker
            .topics
            .get(topic)
            .and_then(|t| t.state(p).map(|s| s.leader))
            .filter(|leader| *leader >= 0)
            .ok_or(ErrorCode::CoordinatorNotAvailable)
    });
    let node = match leader {
        Ok(leader) => leader,
        Err(code) => return unavailable(key, code, format!("{topic} is not available")),
    };
    let image = broker.cluster.image();
    match brokers_on_listener(broker, &image, listener)
        .into_iter()
        .find(|b| b.node_id == node)
    {
        Some(b) => Coordinator {
            key,
            node_id: b.node_id,
            host: b.host,
            port: b.port,
            error_code: ErrorCode::None.code(),
            error_message: None,
        },
        None => unavailable(
            key,
            ErrorCode::CoordinatorNotAvailable,
            format!("the coordinator (broker {node}) is not reachable on this listener"),
        ),
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
