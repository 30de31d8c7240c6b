//! FindCoordinator (key 10), v0-6 (batched keys from v4): which node coordinates a
//! consumer group or transactional id: the leader of the key's partition of
//! `__consumer_offsets` or `__transaction_state`. The first lookup of each kind creates
//! its topic, as in Kafka.
//!
//! Authorization (Kafka's rules): a group key needs Describe on the group, a
//! transactional id Describe on the id, checked per key and before anything is created,
//! so a principal who may not look a key up does not make the internal topic appear.

use std::sync::Arc;

use sluice_auth::acl::Operation;
use sluice_protocol::error::ErrorCode;
use sluice_protocol::messages::find_coordinator_response::Coordinator;
use sluice_protocol::messages::{FindCoordinatorRequest, FindCoordinatorResponse};

use super::metadata::brokers_on_listener;
use crate::access::Authz;
use crate::broker::Broker;
use crate::router::ConnectionInfo;

pub const VERSIONS: (i16, i16) = (0, 6);

const KEY_GROUP: i8 = 0;
const KEY_TRANSACTION: i8 = 1;

fn unavailable(key: String, code: ErrorCode, why: String) -> Coordinator {
    Coordinator {
        key,
        node_id: -1,
        host: String::new(),
        port: -1,
        error_code: code.code(),
        error_message: Some(why),
    }
}

/// The refusal for a key the principal may not Describe, if it may not.
fn refused(authz: &Authz<'_>, key: &str, key_type: i8) -> Option<(ErrorCode, &'static str)> {
    match key_type {
        KEY_GROUP if !authz.allows_group(Operation::Describe, key) => Some((
            ErrorCode::GroupAuthorizationFailed,
            "Not authorized to access group",
        )),
        KEY_TRANSACTION if !authz.allows_txn(Operation::Describe, key) => Some((
            ErrorCode::TransactionalIdAuthorizationFailed,
            "Not authorized to access transactional id",
        )),
        _ => None,
    }
}

fn locate(
    broker: &Broker,
    authz: &Authz<'_>,
    key: String,
    key_type: i8,
    listener: usize,
) -> Coordinator {
    if let Some((code, why)) = refused(authz, &key, key_type) {
        return unavailable(key, code, why.to_string());
    }
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
    conn: &ConnectionInfo,
    req: FindCoordinatorRequest,
    version: i16,
) -> FindCoordinatorResponse {
    let authz = broker.access.authz(conn);
    let listener = conn.listener;
    if version >= 4 {
        return FindCoordinatorResponse {
            coordinators: req
                .coordinator_keys
                .into_iter()
                .map(|k| locate(broker, &authz, k, req.key_type, listener))
                .collect(),
            ..Default::default()
        };
    }
    let c = locate(broker, &authz, req.key, req.key_type, listener);
    FindCoordinatorResponse {
        error_code: c.error_code,
        error_message: if version >= 1 { c.error_message } else { None },
        node_id: c.node_id,
        host: c.host,
        port: c.port,
        ..Default::default()
    }
}
