//! DescribeConfigs (key 32), v0-4: topic configs with their sources (override, broker
//! default or Kafka default), synonyms and documentation; and the broker's settings.
//!
//! Authorization, as Kafka's: a topic needs DescribeConfigs on it (else
//! TOPIC_AUTHORIZATION_FAILED, whether or not it exists), the broker and its loggers
//! DescribeConfigs on the cluster (else CLUSTER_AUTHORIZATION_FAILED).

use std::collections::BTreeMap;
use std::sync::Arc;

use sluice_auth::acl::Operation;
use sluice_protocol::error::ErrorCode;
use sluice_protocol::messages::describe_configs_response::{
    DescribeConfigsResourceResult, DescribeConfigsResult, DescribeConfigsSynonym,
};
use sluice_protocol::messages::{DescribeConfigsRequest, DescribeConfigsResponse};

use crate::broker::Broker;
use crate::router::ConnectionInfo;
use crate::topic_config::{ConfigSource, ConfigType, TOPIC_CONFIGS};

pub const VERSIONS: (i16, i16) = (0, 4);

/// Kafka's ConfigResource types.
pub const RESOURCE_TOPIC: i8 = 2;
pub const RESOURCE_BROKER: i8 = 4;
pub const RESOURCE_BROKER_LOGGER: i8 = 8;

/// One described config value.
#[derive(Debug, Clone)]
pub struct ConfigEntry {
    pub name: &'static str,
    pub value: String,
    pub source: ConfigSource,
    pub kind: ConfigType,
    pub doc: &'static str,
    /// Lower-precedence values, most specific first (DescribeConfigs v1+ synonyms).
    pub synonyms: Vec<(String, String, ConfigSource)>,
}

/// Every topic config's effective value for a topic with these overrides.
pub fn topic_entries(broker: &Broker, overrides: &BTreeMap<String, String>) -> Vec<ConfigEntry> {
    let defaults = broker.topics.defaults();
    TOPIC_CONFIGS
        .iter()
        .map(|def| {
            let (value, source) = defaults.resolve(def, overrides);
            let mut synonyms = Vec::new();
            if let Some(v) = overrides.get(def.name) {
                synonyms.push((def.name.to_string(), v.clone(), ConfigSource::DynamicTopic));
            }
            if let Some(key) = def.broker_key {
                if let Some(v) = defaults.values.get(key) {
                    synonyms.push((key.to_string(), v.clone(), ConfigSource::StaticBroker));
                }
                synonyms.push((
                    key.to_string(),
                    def.default.to_string(),
                    ConfigSource::Default,
                ));
            }
            ConfigEntry {
                name: def.name,
                value: value.to_string(),
                source,
                kind: def.kind,
                doc: def.doc,
                synonyms,
            }
        })
        .collect()
}

fn broker_entries(broker: &Broker) -> Vec<ConfigEntry> {
    let c = &broker.config;
    let listener = c
        .listeners
        .iter()
        .map(|l| format!("{}://{}", l.name, l.bind))
        .collect::<Vec<_>>()
        .join(",");
    let advertised = broker
        .listeners
        .iter()
        .map(|l| format!("{}://{}:{}", l.name, l.host, l.port))
        .collect::<Vec<_>>()
        .join(",");
    let mut fixed: Vec<(&'static str, String, ConfigType, &'static str)> = vec![
        (
            "node.id",
            c.node_id.to_string(),
            ConfigType::Int,
            "This node's id.",
        ),
        (
            "broker.id",
            c.node_id.to_string(),
            ConfigType::Int,
            "Same as node.id.",
        ),
        ("listeners", listener, ConfigType::List, "Listener URIs."),
        (
            "inter.broker.listener.name",
            c.inter_broker_listener.clone(),
            ConfigType::String,
            "Listener used between brokers.",
        ),
        (
            "advertised.listeners",
            advertised,
            ConfigType::List,
            "Listener URIs given to clients.",
        ),
        (
            "log.dirs",
            c.data_dir.display().to_string(),
            ConfigType::List,
            "Data directory.",
        ),
        (
            "num.partitions",
            c.num_partitions.to_string(),
            ConfigType::Int,
            "Default partitions of new topics.",
        ),
        (
            "default.replication.factor",
            c.default_replication_factor.to_string(),
            ConfigType::Int,
            "Default replication factor of new topics.",
        ),
        (
            "auto.create.topics.enable",
            c.auto_create_topics_enable.to_string(),
            ConfigType::Boolean,
            "Create topics on Metadata requests that allow it.",
        ),
        (
            "socket.request.max.bytes",
            c.socket_request_max_bytes.to_string(),
            ConfigType::Int,
            "Largest request frame accepted.",
        ),
        (
            "max.connections",
            c.max_connections.to_string(),
            ConfigType::Int,
            "Maximum concurrent connections.",
        ),
        (
            "log.retention.check.interval.ms",
            c.retention_check_interval_ms.to_string(),
            ConfigType::Long,
            "How often retention runs.",
        ),
    ];
    if let Some(rack) = &c.rack {
        fixed.push((
            "broker.rack",
            rack.clone(),
            ConfigType::String,
            "Rack of this broker.",
        ));
    }
    let mut out: Vec<ConfigEntry> = fixed
        .into_iter()
        .map(|(name, value, kind, doc)| ConfigEntry {
            name,
            value,
            source: ConfigSource::StaticBroker,
            kind,
            doc,
            synonyms: Vec::new(),
        })
        .collect();
    let defaults = broker.topics.defaults();
    for def in TOPIC_CONFIGS {
        let Some(key) = def.broker_key else { continue };
        if out.iter().any(|e| e.name == key) {
            continue;
        }
        let (value, source) = match defaults.values.get(key) {
            Some(v) => (v.clone(), ConfigSource::StaticBroker),
            None => (def.default.to_string(), ConfigSource::Default),
        };
        out.push(ConfigEntry {
            name: key,
            value,
            source,
            kind: def.kind,
            doc: def.doc,
            synonyms: Vec::new(),
        });
    }
    out
}

pub fn handle(
    broker: &Arc<Broker>,
    conn: &ConnectionInfo,
    req: DescribeConfigsRequest,
    version: i16,
) -> DescribeConfigsResponse {
    let authz = broker.access.authz(conn);
    let results = req
        .resources
        .into_iter()
        .map(|r| {
            let denied = match r.resource_type {
                RESOURCE_TOPIC if !authz.allows_topic(Operation::DescribeConfigs, &r.resource_name) => {
                    Some(ErrorCode::TopicAuthorizationFailed)
                }
                RESOURCE_BROKER | RESOURCE_BROKER_LOGGER
                    if !authz.allows_cluster(Operation::DescribeConfigs) =>
                {
                    Some(ErrorCode::ClusterAuthorizationFailed)
                }
                _ => None,
            };
            let entries = match (denied, r.resource_type) {
                (Some(code), _) => Err((code, "Authorization failed.".to_string())),
                (None, resource_type) => match resource_type {
                RESOURCE_TOPIC => match broker.topics.get(&r.resource_name) {
                    Some(t) => Ok(topic_entries(broker, &t.overrides)),
                    None => Err((ErrorCode::UnknownTopicOrPartition, format!("Topic {} does not exist", r.resource_name))),
                },
                RESOURCE_BROKER => {
                    if r.resource_name.is_empty() || r.resource_name == broker.config.node_id.to_string() {
                        Ok(broker_entries(broker))
                    } else {
                        Err((ErrorCode::InvalidRequest, format!("Unexpected broker id, expected {} or empty string, but received {}", broker.config.node_id, r.resource_name)))
                    }
                }
                RESOURCE_BROKER_LOGGER => Ok(Vec::new()),
                other => Err((ErrorCode::InvalidRequest, format!("Unsupported resource type {other}"))),
                },
            };
            match entries {
                Ok(entries) => DescribeConfigsResult {
                    error_code: ErrorCode::None.code(),
                    error_message: None,
                    resource_type: r.resource_type,
                    resource_name: r.resource_name,
                    configs: entries
                        .into_iter()
                        .filter(|e| r.configuration_keys.as_ref().is_none_or(|keys| keys.iter().any(|k| k == e.name)))
                        .map(|e| describe_entry(e, version, req.include_synonyms, req.include_documentation))
                        .collect(),
                },
                Err((code, msg)) => DescribeConfigsResult {
                    error_code: code.code(),
                    error_message: Some(msg),
                    resource_type: r.resource_type,
                    resource_name: r.resource_name,
                    configs: Vec::new(),
                },
            }
        })
        .collect();
    DescribeConfigsResponse {
        results,
        ..Default::default()
    }
}

fn describe_entry(
    e: ConfigEntry,
    version: i16,
    synonyms: bool,
    docs: bool,
) -> DescribeConfigsResourceResult {
    DescribeConfigsResourceResult {
        name: e.name.to_string(),
        value: Some(e.value),
        read_only: false,
        is_default: version == 0 && e.source == ConfigSource::Default,
        config_source: e.source as i8,
        is_sensitive: false,
        synonyms: if version >= 1 && synonyms {
            e.synonyms
                .into_iter()
                .map(|(name, value, source)| DescribeConfigsSynonym {
                    name,
                    value: Some(value),
                    source: source as i8,
                })
                .collect()
        } else {
            Vec::new()
        },
        config_type: if version >= 3 {
            e.kind.describe_code()
        } else {
            0
        },
        documentation: (version >= 3 && docs).then(|| e.doc.to_string()),
    }
}
