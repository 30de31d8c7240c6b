//! CreateTopics (key 19), v0-7, including `validate_only` (checks everything, creates
//! nothing) and, from v5, the created topic's configs in the response.
//!
//! Authorization, as Kafka's: Create on the cluster or on the topic, else the topic
//! answers TOPIC_AUTHORIZATION_FAILED (before any check that would reveal whether it
//! exists). The configs returned from v5 need DescribeConfigs on the topic; without it
//! they are left out and `topic_config_error_code` is TOPIC_AUTHORIZATION_FAILED.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use sluice_auth::acl::Operation;
use sluice_protocol::error::ErrorCode;
use sluice_protocol::messages::create_topics_request::CreatableTopic;
use sluice_protocol::messages::create_topics_response::{
    CreatableTopicConfigs, CreatableTopicResult,
};
use sluice_protocol::messages::{CreateTopicsRequest, CreateTopicsResponse};

use super::describe_configs::topic_entries;
use crate::admin::NewTopic;
use crate::broker::Broker;
use crate::router::ConnectionInfo;
use crate::topics::AdminError;

pub const VERSIONS: (i16, i16) = (0, 7);

pub fn handle(
    broker: &Arc<Broker>,
    conn: &ConnectionInfo,
    req: CreateTopicsRequest,
    version: i16,
) -> CreateTopicsResponse {
    let authz = broker.access.authz(conn);
    let cluster_create = authz.allows_cluster(Operation::Create);
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
            } else if !(cluster_create || authz.allows_topic(Operation::Create, &name)) {
                Err(AdminError::new(
                    ErrorCode::TopicAuthorizationFailed,
                    "Authorization failed.",
                ))
            } else {
                create_one(broker, t, req.validate_only)
            };
            // Checked for every topic, as Kafka does, whatever became of it.
            let configs_hidden =
                version >= 5 && !authz.allows_topic(Operation::DescribeConfigs, &name);
            let topic_config_error_code = if configs_hidden {
                ErrorCode::TopicAuthorizationFailed.code()
            } else {
                ErrorCode::None.code()
            };
            match result {
                Ok(created) => CreatableTopicResult {
                    name,
                    topic_id: created.id,
                    error_code: ErrorCode::None.code(),
                    error_message: None,
                    num_partitions: created.partitions,
                    replication_factor: created.replication_factor,
                    configs: (version >= 5)
                        .then(|| if configs_hidden { Vec::new() } else { created.configs }),
                    topic_config_error_code,
                },
                Err(e) => CreatableTopicResult {
                    name,
                    error_code: e.code.code(),
                    error_message: Some(e.message),
                    topic_config_error_code,
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
    if !t.assignments.is_empty() && (t.num_partitions != -1 || t.replication_factor != -1) {
        return Err(AdminError::new(
            ErrorCode::InvalidRequest,
            "Both numPartitions or replicationFactor and replicasAssignments were set. Both cannot be used at the same time.",
        ));
    }
    let assignment = if t.assignments.is_empty() {
        None
    } else {
        let mut sorted: Vec<_> = t.assignments.iter().collect();
        sorted.sort_by_key(|a| a.partition_index);
        if sorted
            .iter()
            .enumerate()
            .any(|(i, a)| i64::from(a.partition_index) != i as i64)
        {
            return Err(AdminError::new(
                ErrorCode::InvalidReplicaAssignment,
                "Partitions should be a consecutive 0-based integer sequence",
            ));
        }
        Some(
            sorted
                .iter()
                .map(|a| a.broker_ids.clone())
                .collect::<Vec<_>>(),
        )
    };
    let partitions = match &assignment {
        Some(a) => i32::try_from(a.len()).unwrap_or(i32::MAX),
        None if t.num_partitions == -1 => broker.config.num_partitions,
        None => t.num_partitions,
    };
    let replication_factor = match &assignment {
        Some(a) => a
            .first()
            .map_or(0, |r| i16::try_from(r.len()).unwrap_or(i16::MAX)),
        // Kafka's rule: the default applies as set, and fails like an explicit value if
        // the cluster is smaller (only internal topics are capped, DESIGN 4a).
        None if t.replication_factor == -1 => broker.config.default_replication_factor,
        None => t.replication_factor,
    };
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
    let topic = broker.create_topic(
        NewTopic {
            name: t.name.clone(),
            partitions,
            replication_factor,
            assignment,
            overrides,
        },
        validate_only,
    )?;
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
