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
//!
//! Authorization, as Kafka's: a topic needs Describe. Asked for all topics, those
//! without it are left out; named (or by ID), it answers TOPIC_AUTHORIZATION_FAILED with
//! no partitions and no topic ID, whether or not it exists. A missing topic that would
//! be auto-created also needs Create on the cluster or on the topic, else
//! TOPIC_AUTHORIZATION_FAILED. Authorized operations (v8+) come from the authorizer;
//! the cluster's are 0 to a principal that may not Describe the cluster.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use sluice_auth::acl::{Operation, ResourceType};
use sluice_controller::MetadataImage;
use sluice_protocol::codec::Uuid;
use sluice_protocol::error::ErrorCode;
use sluice_protocol::messages::metadata_response::{
    MetadataResponseBroker, MetadataResponsePartition, MetadataResponseTopic,
};
use sluice_protocol::messages::{MetadataRequest, MetadataResponse};

use super::authorized_ops;
use crate::access::{Authz, CLUSTER_NAME};
use crate::admin::NewTopic;
use crate::broker::Broker;
use crate::router::ConnectionInfo;
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
    conn: &ConnectionInfo,
    req: MetadataRequest,
    version: i16,
) -> MetadataResponse {
    let listener = conn.listener;
    let authz = broker.access.authz(conn);
    let include_ops = version >= 8 && req.include_topic_authorized_operations;
    let ctx = Ctx {
        broker,
        authz: &authz,
        include_ops,
    };
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
            .filter(|t| authz.allows_topic(Operation::Describe, &t.name))
            .map(|t| ctx.describe_topic(t))
            .collect(),
        Some(list) => list
            .into_iter()
            .map(|t| match t.name {
                Some(name) => ctx.by_name(name, allow_auto_create),
                None => ctx.by_id(t.topic_id),
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
            cluster_operations(&authz)
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

/// Kafka's cluster authorized operations: only to a principal that may Describe the
/// cluster (Metadata v8-10 and DescribeCluster); 0 to anyone else.
pub fn cluster_operations(authz: &Authz<'_>) -> i32 {
    if authz.allows_cluster(Operation::Describe) {
        authz.operations(ResourceType::Cluster, CLUSTER_NAME)
    } else {
        0
    }
}

/// What every topic of one request is answered with.
struct Ctx<'a> {
    broker: &'a Arc<Broker>,
    authz: &'a Authz<'a>,
    include_ops: bool,
}

impl Ctx<'_> {
    fn by_name(&self, name: String, allow_auto_create: bool) -> MetadataResponseTopic {
        let broker = self.broker;
        // Before the lookup: whoever may not Describe it does not learn it exists.
        if !self.authz.allows_topic(Operation::Describe, &name) {
            return error_topic(ErrorCode::TopicAuthorizationFailed, Some(name), Uuid::ZERO);
        }
        if let Some(t) = broker.topics.get(&name) {
            return self.describe_topic(&t);
        }
        if !(allow_auto_create && broker.config.auto_create_topics_enable) {
            let code = match validate_topic_name(&name) {
                Ok(()) => ErrorCode::UnknownTopicOrPartition,
                Err(_) => ErrorCode::InvalidTopicException,
            };
            return error_topic(code, Some(name), Uuid::ZERO);
        }
        if !(self.authz.allows_cluster(Operation::Create)
            || self.authz.allows_topic(Operation::Create, &name))
        {
            return error_topic(ErrorCode::TopicAuthorizationFailed, Some(name), Uuid::ZERO);
        }
        if validate_topic_name(&name).is_err() {
            return error_topic(ErrorCode::InvalidTopicException, Some(name), Uuid::ZERO);
        }
        let spec = NewTopic {
            name: name.clone(),
            partitions: broker.config.num_partitions,
            replication_factor: broker.config.default_replication_factor,
            assignment: None,
            overrides: BTreeMap::new(),
        };
        match broker.create_topic(spec, false) {
            Ok(t) => self.describe_topic(&t),
            // Lost a race with another creator: describe what won.
            Err(e) if e.code == ErrorCode::TopicAlreadyExists => match broker.topics.get(&name) {
                Some(t) => self.describe_topic(&t),
                None => error_topic(ErrorCode::LeaderNotAvailable, Some(name), Uuid::ZERO),
            },
            Err(e) => error_topic(e.code, Some(name), Uuid::ZERO),
        }
    }

    fn by_id(&self, id: Uuid) -> MetadataResponseTopic {
        match self.broker.topics.get_by_id(&id) {
            // The ID was the client's own; the name is what it may not learn.
            Some(t) if !self.authz.allows_topic(Operation::Describe, &t.name) => {
                error_topic(ErrorCode::TopicAuthorizationFailed, None, id)
            }
            Some(t) => self.describe_topic(&t),
            None => error_topic(ErrorCode::UnknownTopicId, None, id),
        }
    }

    fn describe_topic(&self, t: &Topic) -> MetadataResponseTopic {
        let mut topic = describe_topic(self.broker, t);
        if self.include_ops {
            topic.topic_authorized_operations = self.authz.operations(ResourceType::Topic, &t.name);
        }
        topic
    }
}

fn describe_topic(broker: &Broker, t: &Topic) -> MetadataResponseTopic {
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
        topic_authorized_operations: authorized_ops::NOT_REQUESTED,
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
