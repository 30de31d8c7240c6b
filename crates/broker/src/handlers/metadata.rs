//! Metadata (key 3), v0-12: brokers, cluster id, controller and topic/partition
//! leadership. Creates a missing topic only where Kafka does: when the request allows
//! auto-creation (always before v4) and `auto.create.topics.enable` is on.

use std::collections::BTreeMap;
use std::sync::Arc;

use sluice_protocol::codec::Uuid;
use sluice_protocol::error::ErrorCode;
use sluice_protocol::messages::metadata_response::{
    MetadataResponseBroker, MetadataResponsePartition, MetadataResponseTopic,
};
use sluice_protocol::messages::{MetadataRequest, MetadataResponse};

use super::authorized_ops;
use crate::broker::{now_ms, Broker};
use crate::topics::{validate_topic_name, Topic};

pub const VERSIONS: (i16, i16) = (0, 12);

/// `listener`: the index of the listener the request came in on, whose endpoints the
/// brokers are described with.
pub fn handle(
    broker: &Arc<Broker>,
    req: MetadataRequest,
    version: i16,
    listener: usize,
) -> MetadataResponse {
    let (host, port) = broker.endpoint(listener);
    let include_ops = version >= 8 && req.include_topic_authorized_operations;
    // v0 has no null: an empty list there means "all topics".
    let requested = match req.topics {
        None => None,
        Some(t) if t.is_empty() && version == 0 => None,
        Some(t) => Some(t),
    };
    let allow_auto_create = version < 4 || req.allow_auto_topic_creation;
    let topics = match requested {
        None => broker
            .topics
            .all()
            .iter()
            .map(|t| describe_topic(broker, t, include_ops))
            .collect(),
        Some(list) => list
            .into_iter()
            .map(|t| match t.name {
                Some(name) => by_name(broker, name, allow_auto_create, include_ops),
                None => by_id(broker, t.topic_id, include_ops),
            })
            .collect(),
    };
    MetadataResponse {
        brokers: vec![MetadataResponseBroker {
            node_id: broker.config.node_id,
            host: host.to_string(),
            port,
            rack: broker.config.rack.clone(),
        }],
        cluster_id: Some(broker.cluster_id.clone()),
        controller_id: broker.config.node_id,
        topics,
        cluster_authorized_operations: if version >= 8 && req.include_cluster_authorized_operations
        {
            authorized_ops::CLUSTER
        } else {
            authorized_ops::NOT_REQUESTED
        },
        ..Default::default()
    }
}

fn error_topic(code: ErrorCode, name: Option<String>, id: Uuid) -> MetadataResponseTopic {
    MetadataResponseTopic {
        error_code: code.code(),
        name,
        topic_id: id,
        ..Default::default()
    }
}

fn by_name(
    broker: &Arc<Broker>,
    name: String,
    allow_auto_create: bool,
    include_ops: bool,
) -> MetadataResponseTopic {
    if let Some(t) = broker.topics.get(&name) {
        return describe_topic(broker, &t, include_ops);
    }
    if validate_topic_name(&name).is_err() {
        return error_topic(ErrorCode::InvalidTopicException, Some(name), Uuid::ZERO);
    }
    if !(allow_auto_create && broker.config.auto_create_topics_enable) {
        return error_topic(ErrorCode::UnknownTopicOrPartition, Some(name), Uuid::ZERO);
    }
    let partitions = broker.config.num_partitions;
    match broker
        .topics
        .create(&name, partitions, BTreeMap::new(), false, now_ms())
    {
        Ok(t) => describe_topic(broker, &t, include_ops),
        // Lost a race with another creator: describe what won.
        Err(e) if e.code == ErrorCode::TopicAlreadyExists => match broker.topics.get(&name) {
            Some(t) => describe_topic(broker, &t, include_ops),
            None => error_topic(ErrorCode::LeaderNotAvailable, Some(name), Uuid::ZERO),
        },
        Err(e) => error_topic(e.code, Some(name), Uuid::ZERO),
    }
}

fn by_id(broker: &Arc<Broker>, id: Uuid, include_ops: bool) -> MetadataResponseTopic {
    match broker.topics.get_by_id(&id) {
        Some(t) => describe_topic(broker, &t, include_ops),
        None => error_topic(ErrorCode::UnknownTopicId, None, id),
    }
}

fn describe_topic(broker: &Broker, t: &Topic, include_ops: bool) -> MetadataResponseTopic {
    let node = broker.config.node_id;
    MetadataResponseTopic {
        error_code: ErrorCode::None.code(),
        name: Some(t.name.clone()),
        topic_id: t.id,
        is_internal: t.is_internal(),
        partitions: t
            .partitions
            .iter()
            .map(|p| MetadataResponsePartition {
                error_code: ErrorCode::None.code(),
                partition_index: p.index,
                leader_id: node,
                leader_epoch: p.leader_epoch,
                replica_nodes: vec![node],
                isr_nodes: vec![node],
                offline_replicas: Vec::new(),
            })
            .collect(),
        topic_authorized_operations: if include_ops {
            authorized_ops::TOPIC
        } else {
            authorized_ops::NOT_REQUESTED
        },
    }
}
