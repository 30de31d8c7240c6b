//! CreateTopics (key 19), v0-7, including `validate_only` (checks everything, creates
//! nothing) and, from v5, the created topic's configs in the response.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use sluice_protocol::error::ErrorCode;
use sluice_protocol::messages::create_topics_request::CreatableTopic;
use sluice_protocol::messages::create_topics_response::{
    CreatableTopicConfigs, CreatableTopicResult,
};
use sluice_protocol::messages::{CreateTopicsRequest, CreateTopicsResponse};

use super::describe_configs::topic_entries;
use crate::broker::{now_ms, Broker};
use crate::topics::AdminError;

pub const VERSIONS: (i16, i16) = (0, 7);

pub fn handle(
    broker: &Arc<Broker>,
    req: CreateTopicsRequest,
    version: i16,
) -> CreateTopicsResponse {
    // Kafka refuses every copy of a name that appears twice in one request.
    let mut seen: HashMap<String, usize> = HashMap::new();
    for t in &req.topics {
        *seen.entry(t.name.clone()).or_default() += 1;
    }
    let topics = req
        .topics
        .into_iter()
        .map(|t| {
            let name = t.name.clone();
            let result = if seen.get(&name).copied().unwrap_or(0) > 1 {
                Err(AdminError::new(
                    ErrorCode::InvalidRequest,
                    format!("Create topics request from client contains a duplicate topic with name {name}"),
                ))
            } else {
                create_one(broker, t, req.validate_only)
            };
            match result {
                Ok(created) => CreatableTopicResult {
                    name,
                    topic_id: created.id,
                    error_code: ErrorCode::None.code(),
                    error_message: None,
                    num_partitions: created.partitions,
                    replication_factor: created.replication_factor,
                    configs: (version >= 5).then_some(created.configs),
                    ..Default::default()
                },
                Err(e) => CreatableTopicResult {
                    name,
                    error_code: e.code.code(),
                    error_message: Some(e.message),
                    ..Default::default()
                },
            }
        })
        .collect();
    CreateTopicsResponse {
        topics,
        ..Default::default()
    }
}

struct Created {
    id: sluice_protocol::codec::Uuid,
    partitions: i32,
    replication_factor: i16,
    configs: Vec<CreatableTopicConfigs>,
}

fn create_one(
    broker: &Arc<Broker>,
    t: CreatableTopic,
    validate_only: bool,
) -> Result<Created, AdminError> {
    // As Kafka: an existing topic is reported before the request's other fields.
    if broker.topics.get(&t.name).is_some() {
        return Err(AdminError::new(
            ErrorCode::TopicAlreadyExists,
            format!("Topic '{}' already exists.", t.name),
        ));
    }
    let brokers = 1i16; // a single node until the controller quorum exists
    let node = broker.config.node_id;
    if !t.assignments.is_empty() {
        if t.num_partitions != -1 || t.replication_factor != -1 {
            return Err(AdminError::new(
                ErrorCode::InvalidRequest,
                "Both numPartitions or replicationFactor and replicasAssignments were set. Both cannot be used at the same time.",
            ));
        }
        for a in &t.assignments {
            if a.broker_ids.is_empty() || a.broker_ids.iter().any(|b| *b != node) {
                return Err(AdminError::new(
                    ErrorCode::InvalidReplicaAssignment,
                    format!(
                        "Replica assignment for partition {} names unknown brokers: {:?}",
                        a.partition_index, a.broker_ids
                    ),
                ));
            }
            if a.broker_ids.len() > 1 {
                return Err(AdminError::new(
                    ErrorCode::InvalidReplicaAssignment,
                    "Duplicate brokers in replica assignment",
                ));
            }
        }
        let mut idx: Vec<i32> = t.assignments.iter().map(|a| a.partition_index).collect();
        idx.sort_unstable();
        if idx.iter().enumerate().any(|(i, p)| *p != i as i32) {
            return Err(AdminError::new(
                ErrorCode::InvalidReplicaAssignment,
                "Partitions should be a consecutive 0-based integer sequence",
            ));
        }
    }
    let partitions = if !t.assignments.is_empty() {
        t.assignments.len() as i32
    } else if t.num_partitions == -1 {
        broker.config.num_partitions
    } else {
        t.num_partitions
    };
    let replication_factor = if !t.assignments.is_empty() {
        1
    } else if t.replication_factor == -1 {
        // Kafka's rule: the default applies as set, and fails like an explicit value if
        // the cluster is smaller (only internal topics are capped, DESIGN 4a).
        broker.config.default_replication_factor
    } else {
        t.replication_factor
    };
    if replication_factor <= 0 {
        return Err(AdminError::new(
            ErrorCode::InvalidReplicationFactor,
            "Replication factor must be larger than 0, or -1 to use the default value.",
        ));
    }
    if replication_factor > brokers {
        return Err(AdminError::new(
            ErrorCode::InvalidReplicationFactor,
            format!("Unable to replicate the partition {replication_factor} time(s): The target replication factor of {replication_factor} cannot be reached because only {brokers} broker(s) are registered."),
        ));
    }
    if partitions <= 0 {
        return Err(AdminError::new(
            ErrorCode::InvalidPartitions,
            "Number of partitions was set to an invalid non-positive value.",
        ));
    }
    let mut overrides = BTreeMap::new();
    for c in t.configs {
        let value = c.value.ok_or_else(|| {
            AdminError::new(
                ErrorCode::InvalidConfig,
                format!("Null value not supported for topic configs: {}", c.name),
            )
        })?;
        overrides.insert(c.name, value);
    }
    let topic = broker
        .topics
        .create(&t.name, partitions, overrides, validate_only, now_ms())?;
    let configs = topic_entries(broker, &topic.overrides)
        .into_iter()
        .map(|e| CreatableTopicConfigs {
            name: e.name.to_string(),
            value: Some(e.value),
            read_only: false,
            config_source: e.source as i8,
            is_sensitive: false,
        })
        .collect();
    Ok(Created {
        id: topic.id,
        partitions,
        replication_factor,
        configs,
    })
}
