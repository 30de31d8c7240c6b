//! Metadata (key 3), v0-12: brokers, cluster id, controller and topic/partition
//! leadership, as this node last applied the cluster metadata. Creates a missing topic
//! only where Kafka does: when the request allows auto-creation (always before v4) and
//! `auto.create.topics.enable` is on. Runs on the blocking pool: auto-creation waits for
//! the metadata quorum.
//!
//! A partition whose leader this node's replica fetcher has just found gone (its
//! connection reset, closed or refused) is answered LEADER_NOT_AVAILABLE with no
//! leader, as Kafka answers for a leader that is not among the live brokers, until the
//! controller moves it (or [`GONE_LEADER_HIDDEN_FOR`] passes). Naming the dead leader
//! in the few tens of milliseconds before the controller fences it would make clients
//! (librdkafka) stop their fast leader queries and wait for their next periodic scan,
//! about a second, before finding the new leader.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use sluice_controller::MetadataImage;
use sluice_protocol::codec::Uuid;
use sluice_protocol::error::ErrorCode;
use sluice_protocol::messages::metadata_response::{
    MetadataResponseBroker, MetadataResponsePartition, MetadataResponseTopic,
};
use sluice_protocol::messages::{MetadataRequest, MetadataResponse};

use super::authorized_ops;
use crate::admin::NewTopic;
use crate::broker::Broker;
use crate::topics::{validate_topic_name, Topic};

pub const VERSIONS: (i16, i16) = (0, 12);

/// How long the fetcher's evidence that a leader is gone hides it, at most: longer
/// than the controller needs to fence a dead broker, even across a controller
/// failover, and short enough that a leader only this node cannot reach (a network
/// partition the controller does not see) is named again soon.
pub const GONE_LEADER_HIDDEN_FOR: Duration = Duration::from_secs(3);

/// `listener`: the index of the listener the request came in on, whose endpoints the
/// brokers are described with.
pub fn handle(
    broker: &Arc<Broker>,
    req: MetadataRequest,
    version: i16,
    listener: usize,
) -> MetadataResponse {
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
    let image = broker.cluster.image();
    let brokers = brokers_on_listener(broker, &image, listener);
    // Clients cannot reach the controllers themselves (as in KRaft), and any broker
    // forwards admin writes; name the Raft leader if it is a live broker, else this node.
    let controller_id = broker
        .cluster
        .leader()
        .and_then(|id| i32::try_from(id).ok())
        .filter(|id| brokers.iter().any(|b| b.node_id == *id))
        .unwrap_or(broker.config.node_id);
    MetadataResponse {
        brokers,
        cluster_id: Some(broker.cluster_id.clone()),
        controller_id,
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
    let spec = NewTopic {
        name: name.clone(),
        partitions: broker.config.num_partitions,
        replication_factor: broker.config.default_replication_factor,
        assignment: None,
        overrides: BTreeMap::new(),
    };
    match broker.create_topic(spec, false) {
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
    let image = broker.cluster.image();
    MetadataResponseTopic {
        error_code: ErrorCode::None.code(),
        name: Some(t.name.clone()),
        topic_id: t.id,
        is_internal: t.is_internal(),
        partitions: t
            .partitions
            .iter()
            .map(|p| {
                let leader = if p.leader >= 0
                    && p.leader != broker.config.node_id
                    && broker
                        .replicas
                        .leader_seen_gone(p.leader, GONE_LEADER_HIDDEN_FOR)
                {
                    -1
                } else {
                    p.leader
                };
                MetadataResponsePartition {
                    error_code: if leader < 0 {
                        ErrorCode::LeaderNotAvailable.code()
                    } else {
                        ErrorCode::None.code()
                    },
                    partition_index: p.index,
                    leader_id: leader,
                    leader_epoch: p.leader_epoch,
                    replica_nodes: p.replicas.clone(),
                    isr_nodes: p.isr.clone(),
                    offline_replicas: offline_replicas(&image, &p.replicas),
                }
            })
            .collect(),
        topic_authorized_operations: if include_ops {
            authorized_ops::TOPIC
        } else {
            authorized_ops::NOT_REQUESTED
        },
    }
}

/// The replicas that are offline: their broker is fenced or not registered (Kafka's
/// `offline_replicas`). Shared with DescribeTopicPartitions.
pub fn offline_replicas(image: &MetadataImage, replicas: &[i32]) -> Vec<i32> {
    replicas
        .iter()
        .copied()
        .filter(|id| !image.is_eligible(*id))
        .collect()
}

/// The live (unfenced) brokers, each with its endpoint on the listener the request came
/// in on (Kafka matches listeners by name); a broker without that listener is left out.
pub fn brokers_on_listener(
    broker: &Broker,
    image: &MetadataImage,
    listener: usize,
) -> Vec<MetadataResponseBroker> {
    let Some(name) = broker.listeners.get(listener).map(|l| l.name.as_str()) else {
        return Vec::new();
    };
    image
        .brokers()
        .filter(|b| !b.fenced)
        .filter_map(|b| {
            let e = b.endpoints.iter().find(|e| e.listener == name)?;
            Some(MetadataResponseBroker {
                node_id: b.id,
                host: e.host.clone(),
                port: i32::from(e.port),
                rack: b.rack.clone(),
            })
        })
        .collect()
}
