//! Kafka topic configs: names, types, defaults, validation, and the effective values
//! a partition log runs with.
//!
//! A topic stores only its overrides (`DYNAMIC_TOPIC_CONFIG`); every other value comes
//! from the broker's default for it (Kafka's `log.*` / `message.max.bytes` keys, settable
//! by flag) or, failing that, Kafka's own default. Keeping overrides separate is what lets
//! DescribeConfigs report each value's source and AlterConfigs delete an override.

use std::collections::BTreeMap;

use sluice_protocol::compression::Compression;

/// The value type of a config, used to validate what clients send.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConfigType {
    Boolean,
    Int,
    Long,
    Double,
    String,
    List,
}

impl ConfigType {
    /// Kafka's DescribeConfigs `ConfigType` code (KIP-569).
    pub fn describe_code(self) -> i8 {
        match self {
            ConfigType::Boolean => 1,
            ConfigType::String => 2,
            ConfigType::Int => 3,
            ConfigType::Long => 5,
            ConfigType::Double => 6,
            ConfigType::List => 7,
        }
    }
}

/// One topic config Kafka defines.
#[derive(Debug)]
pub struct ConfigDef {
    pub name: &'static str,
    pub kind: ConfigType,
    /// The broker property that supplies the default for every topic.
    pub broker_key: Option<&'static str>,
    pub default: &'static str,
    /// Allowed values for enumerations (lower-case comparison); empty means any.
    pub allowed: &'static [&'static str],
    /// Smallest allowed numeric value.
    pub min: Option<i64>,
    pub doc: &'static str,
}

const LONG_MAX: &str = "9223372036854775807";

/// Every topic config Kafka 4.0 accepts, with its default. The ones that only matter to
/// features not built yet (preallocation, jitter, delayed file deletion) are accepted
/// and stored so that tools which set them keep working.
pub const TOPIC_CONFIGS: &[ConfigDef] = &[
    ConfigDef { name: "cleanup.policy", kind: ConfigType::List, broker_key: Some("log.cleanup.policy"), default: "delete", allowed: &["delete", "compact"], min: None, doc: "Retention policy for old segments: delete and/or compact." },
    ConfigDef { name: "compression.type", kind: ConfigType::String, broker_key: Some("compression.type"), default: "producer", allowed: &["uncompressed", "zstd", "lz4", "snappy", "gzip", "producer"], min: None, doc: "Final compression type; producer keeps the producer's codec." },
    ConfigDef { name: "delete.retention.ms", kind: ConfigType::Long, broker_key: Some("log.cleaner.delete.retention.ms"), default: "86400000", allowed: &[], min: Some(0), doc: "How long tombstones are retained for compacted topics." },
    ConfigDef { name: "file.delete.delay.ms", kind: ConfigType::Long, broker_key: Some("log.segment.delete.delay.ms"), default: "60000", allowed: &[], min: Some(0), doc: "Delay before a deleted segment file is removed." },
    ConfigDef { name: "flush.messages", kind: ConfigType::Long, broker_key: Some("log.flush.interval.messages"), default: LONG_MAX, allowed: &[], min: Some(1), doc: "Force an fsync after this many messages." },
    ConfigDef { name: "flush.ms", kind: ConfigType::Long, broker_key: Some("log.flush.interval.ms"), default: LONG_MAX, allowed: &[], min: Some(0), doc: "Force an fsync when data is older than this." },
    ConfigDef { name: "index.interval.bytes", kind: ConfigType::Int, broker_key: Some("log.index.interval.bytes"), default: "4096", allowed: &[], min: Some(0), doc: "Bytes between offset index entries." },
    ConfigDef { name: "max.compaction.lag.ms", kind: ConfigType::Long, broker_key: Some("log.cleaner.max.compaction.lag.ms"), default: LONG_MAX, allowed: &[], min: Some(1), doc: "Maximum time a message stays ineligible for compaction." },
    ConfigDef { name: "max.message.bytes", kind: ConfigType::Int, broker_key: Some("message.max.bytes"), default: "1048588", allowed: &[], min: Some(0), doc: "Largest record batch size allowed." },
    ConfigDef { name: "message.timestamp.after.max.ms", kind: ConfigType::Long, broker_key: Some("log.message.timestamp.after.max.ms"), default: "3600000", allowed: &[], min: Some(0), doc: "How far a CreateTime timestamp may be ahead of the broker clock (KIP-1030 default: 1 hour)." },
    ConfigDef { name: "message.timestamp.before.max.ms", kind: ConfigType::Long, broker_key: Some("log.message.timestamp.before.max.ms"), default: LONG_MAX, allowed: &[], min: Some(0), doc: "How far a CreateTime timestamp may be behind the broker clock." },
    ConfigDef { name: "message.timestamp.type", kind: ConfigType::String, broker_key: Some("log.message.timestamp.type"), default: "CreateTime", allowed: &["createtime", "logappendtime"], min: None, doc: "CreateTime or LogAppendTime." },
    ConfigDef { name: "min.cleanable.dirty.ratio", kind: ConfigType::Double, broker_key: Some("log.cleaner.min.cleanable.ratio"), default: "0.5", allowed: &[], min: Some(0), doc: "Dirty ratio that triggers compaction." },
    ConfigDef { name: "min.compaction.lag.ms", kind: ConfigType::Long, broker_key: Some("log.cleaner.min.compaction.lag.ms"), default: "0", allowed: &[], min: Some(0), doc: "Minimum time a message stays uncompacted." },
    ConfigDef { name: "min.insync.replicas", kind: ConfigType::Int, broker_key: Some("min.insync.replicas"), default: "1", allowed: &[], min: Some(1), doc: "Replicas that must acknowledge an acks=all write." },
    ConfigDef { name: "preallocate", kind: ConfigType::Boolean, broker_key: Some("log.preallocate"), default: "false", allowed: &[], min: None, doc: "Preallocate segment files." },
    ConfigDef { name: "retention.bytes", kind: ConfigType::Long, broker_key: Some("log.retention.bytes"), default: "-1", allowed: &[], min: Some(-1), doc: "Maximum partition size before old segments are deleted; -1 for no limit." },
    ConfigDef { name: "retention.ms", kind: ConfigType::Long, broker_key: Some("log.retention.ms"), default: "604800000", allowed: &[], min: Some(-1), doc: "Maximum age of a segment before deletion; -1 for no limit." },
    ConfigDef { name: "segment.bytes", kind: ConfigType::Int, broker_key: Some("log.segment.bytes"), default: "1073741824", allowed: &[], min: Some(1_048_576), doc: "Segment file size (Kafka 4.0 minimum: 1 MiB)." },
    ConfigDef { name: "segment.index.bytes", kind: ConfigType::Int, broker_key: Some("log.index.size.max.bytes"), default: "10485760", allowed: &[], min: Some(4), doc: "Maximum size of a segment's offset index." },
    ConfigDef { name: "segment.jitter.ms", kind: ConfigType::Long, broker_key: Some("log.roll.jitter.ms"), default: "0", allowed: &[], min: Some(0), doc: "Random jitter subtracted from segment.ms." },
    ConfigDef { name: "segment.ms", kind: ConfigType::Long, broker_key: Some("log.roll.ms"), default: "604800000", allowed: &[], min: Some(1), doc: "Roll a segment after this long even if not full." },
    ConfigDef { name: "unclean.leader.election.enable", kind: ConfigType::Boolean, broker_key: Some("unclean.leader.election.enable"), default: "false", allowed: &[], min: None, doc: "Allow out-of-sync replicas to become leader (Sluice never does)." },
];

/// Looks up a topic config definition by its Kafka name.
pub fn topic_config_def(name: &str) -> Option<&'static ConfigDef> {
    TOPIC_CONFIGS.iter().find(|d| d.name == name)
}

/// Why a config value was refused; becomes INVALID_CONFIG with this message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    #[error("Unknown topic config name: {0}")]
    UnknownName(String),
    #[error("Invalid value {value} for configuration {name}: {reason}")]
    InvalidValue {
        name: String,
        value: String,
        reason: String,
    },
}

/// Checks one value against its definition.
pub fn validate_topic_config(name: &str, value: &str) -> Result<(), ConfigError> {
    let def = topic_config_def(name).ok_or_else(|| ConfigError::UnknownName(name.to_string()))?;
    validate_value(def, value)
}

fn validate_value(def: &ConfigDef, value: &str) -> Result<(), ConfigError> {
    let invalid = |reason: &str| ConfigError::InvalidValue {
        name: def.name.to_string(),
        value: value.to_string(),
        reason: reason.to_string(),
    };
    let trimmed = value.trim();
    match def.kind {
        ConfigType::Boolean => {
            if !trimmed.eq_ignore_ascii_case("true") && !trimmed.eq_ignore_ascii_case("false") {
                return Err(invalid("Expected value to be either true or false"));
            }
        }
        ConfigType::Int | ConfigType::Long => {
            let n: i64 = trimmed.parse().map_err(|_| invalid("Not a number"))?;
            if def.kind == ConfigType::Int && i32::try_from(n).is_err() {
                return Err(invalid("Not a 32-bit integer"));
            }
            if let Some(min) = def.min {
                if n < min {
                    return Err(invalid(&format!("Value must be at least {min}")));
                }
            }
        }
        ConfigType::Double => {
            let n: f64 = trimmed.parse().map_err(|_| invalid("Not a number"))?;
            if let Some(min) = def.min {
                if n < min as f64 {
                    return Err(invalid(&format!("Value must be at least {min}")));
                }
            }
            // Kafka's `between(0, 1)`, the one bounded-above config.
            if def.name == "min.cleanable.dirty.ratio" && n > 1.0 {
                return Err(invalid("Value must be no more than 1"));
            }
        }
        ConfigType::String => {
            if !def.allowed.is_empty()
                && !def.allowed.iter().any(|a| a.eq_ignore_ascii_case(trimmed))
            {
                return Err(invalid(&format!(
                    "String must be one of: {}",
                    def.allowed.join(", ")
                )));
            }
        }
        ConfigType::List => {
            for item in trimmed.split(',').map(str::trim) {
                if !def.allowed.is_empty()
                    && !def.allowed.iter().any(|a| a.eq_ignore_ascii_case(item))
                {
                    return Err(invalid(&format!(
                        "Each item must be one of: {}",
                        def.allowed.join(", ")
                    )));
                }
            }
        }
    }
    Ok(())
}

/// Where a described value comes from (DescribeConfigs `ConfigSource`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConfigSource {
    DynamicTopic = 1,
    StaticBroker = 4,
    Default = 5,
}

/// Broker-wide defaults for topic configs, keyed by the broker property name
/// (`log.retention.ms`, ...). Only properties set explicitly by flag are present.
#[derive(Debug, Clone, Default)]
pub struct BrokerLogDefaults {
    pub values: BTreeMap<String, String>,
    /// `producer.id.expiration.ms`, a broker setting with no topic-level counterpart;
    /// `None` is Kafka's default (one day).
    pub producer_id_expiration_ms: Option<i64>,
}

impl BrokerLogDefaults {
    /// Resolves a topic config's value and its source for a topic with `overrides`.
    pub fn resolve<'a>(
        &'a self,
        def: &'static ConfigDef,
        overrides: &'a BTreeMap<String, String>,
    ) -> (&'a str, ConfigSource) {
        if let Some(v) = overrides.get(def.name) {
            return (v.as_str(), ConfigSource::DynamicTopic);
        }
        if let Some(v) = def.broker_key.and_then(|k| self.values.get(k)) {
            return (v.as_str(), ConfigSource::StaticBroker);
        }
        (def.default, ConfigSource::Default)
    }

    fn long(&self, name: &str, overrides: &BTreeMap<String, String>) -> i64 {
        topic_config_def(name)
            .map(|def| {
                let (v, _) = self.resolve(def, overrides);
                // Values were validated when stored; fall back to Kafka's default
                // rather than fail if an old data dir holds something odd.
                v.trim()
                    .parse()
                    .unwrap_or_else(|_| def.default.parse().unwrap_or(0))
            })
            .unwrap_or(0)
    }

    fn double(&self, name: &str, overrides: &BTreeMap<String, String>) -> f64 {
        topic_config_def(name)
            .map(|def| {
                let (v, _) = self.resolve(def, overrides);
                v.trim()
                    .parse()
                    .unwrap_or_else(|_| def.default.parse().unwrap_or(0.0))
            })
            .unwrap_or(0.0)
    }

    fn string(&self, name: &str, overrides: &BTreeMap<String, String>) -> String {
        topic_config_def(name)
            .map(|def| self.resolve(def, overrides).0.trim().to_string())
            .unwrap_or_default()
    }

    /// The effective configuration of a topic with these overrides.
    pub fn effective(&self, overrides: &BTreeMap<String, String>) -> TopicConfig {
        TopicConfig {
            cleanup_policy: self.string("cleanup.policy", overrides),
            max_message_bytes: self.long("max.message.bytes", overrides),
            min_insync_replicas: self.long("min.insync.replicas", overrides),
            log_append_time: self
                .string("message.timestamp.type", overrides)
                .eq_ignore_ascii_case("LogAppendTime"),
            timestamp_before_max_ms: self.long("message.timestamp.before.max.ms", overrides),
            timestamp_after_max_ms: self.long("message.timestamp.after.max.ms", overrides),
            retention_ms: self.long("retention.ms", overrides),
            retention_bytes: self.long("retention.bytes", overrides),
            segment_bytes: self.long("segment.bytes", overrides),
            segment_ms: self.long("segment.ms", overrides),
            segment_index_bytes: self.long("segment.index.bytes", overrides),
            index_interval_bytes: self.long("index.interval.bytes", overrides),
            flush_messages: self.long("flush.messages", overrides),
            flush_ms: self.long("flush.ms", overrides),
            compression: target_compression(&self.string("compression.type", overrides)),
            delete_retention_ms: self.long("delete.retention.ms", overrides),
            min_compaction_lag_ms: self.long("min.compaction.lag.ms", overrides),
            max_compaction_lag_ms: self.long("max.compaction.lag.ms", overrides),
            min_cleanable_dirty_ratio: self.double("min.cleanable.dirty.ratio", overrides),
            producer_id_expiration_ms: self
                .producer_id_expiration_ms
                .unwrap_or(sluice_storage::LogConfig::default().producer_id_expiration_ms),
        }
    }
}

/// Effective, typed topic configuration used on the produce path and by storage.
#[derive(Debug, Clone, PartialEq)]
pub struct TopicConfig {
    pub cleanup_policy: String,
    pub max_message_bytes: i64,
    pub min_insync_replicas: i64,
    pub log_append_time: bool,
    pub timestamp_before_max_ms: i64,
    pub timestamp_after_max_ms: i64,
    pub retention_ms: i64,
    pub retention_bytes: i64,
    pub segment_bytes: i64,
    pub segment_ms: i64,
    pub segment_index_bytes: i64,
    pub index_interval_bytes: i64,
    pub flush_messages: i64,
    pub flush_ms: i64,
    /// `compression.type`: `None` keeps the producer's codec ("producer"); otherwise
    /// batches in another codec are recompressed on append, as Kafka does.
    pub compression: Option<Compression>,
    pub delete_retention_ms: i64,
    pub min_compaction_lag_ms: i64,
    pub max_compaction_lag_ms: i64,
    pub min_cleanable_dirty_ratio: f64,
    /// The broker's `producer.id.expiration.ms` (not a topic config; carried here so a
    /// partition's storage config comes from one place).
    pub producer_id_expiration_ms: i64,
}

impl TopicConfig {
    fn has_policy(&self, policy: &str) -> bool {
        self.cleanup_policy
            .split(',')
            .any(|p| p.trim().eq_ignore_ascii_case(policy))
    }

    /// `cleanup.policy` includes `compact`: the cleaner keeps the latest record per key,
    /// and produced records must have a key.
    pub fn compact(&self) -> bool {
        self.has_policy("compact")
    }

    /// `cleanup.policy` includes `delete`: retention by time and size applies.
    pub fn delete(&self) -> bool {
        self.has_policy("delete")
    }
}

/// Maps Kafka's `compression.type` value to the codec batches must be stored in.
fn target_compression(value: &str) -> Option<Compression> {
    if value.eq_ignore_ascii_case("uncompressed") {
        return Some(Compression::None);
    }
    if value.eq_ignore_ascii_case("producer") {
        return None;
    }
    Compression::from_name(value)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(name: &str, value: &str, ok: bool) {
        assert_eq!(
            validate_topic_config(name, value).is_ok(),
            ok,
            "{name}={value}"
        );
    }

    #[test]
    fn validation_table() {
        check("retention.ms", "1000", true);
        check("retention.ms", "-1", true);
        check("retention.ms", "-2", false);
        check("retention.ms", "abc", false);
        check("segment.bytes", "1000", false);
        check("segment.bytes", "1048576", true);
        check("segment.bytes", "4294967296", false);
        check("cleanup.policy", "compact,delete", true);
        check("cleanup.policy", "shred", false);
        check("min.cleanable.dirty.ratio", "0.01", true);
        check("min.cleanable.dirty.ratio", "1", true);
        check("min.cleanable.dirty.ratio", "1.5", false);
        check("min.cleanable.dirty.ratio", "-0.1", false);
        check("max.compaction.lag.ms", "0", false);
        check("message.timestamp.type", "LogAppendTime", true);
        check("message.timestamp.type", "WallTime", false);
        check("preallocate", "yes", false);
        check("no.such.config", "1", false);
        check("min.insync.replicas", "0", false);
    }

    #[test]
    fn resolution_prefers_override_then_broker_then_kafka_default() {
        let mut broker = BrokerLogDefaults::default();
        broker
            .values
            .insert("log.retention.ms".into(), "5000".into());
        let mut overrides = BTreeMap::new();
        let eff = broker.effective(&overrides);
        assert_eq!(eff.retention_ms, 5000);
        assert_eq!(eff.segment_bytes, 1_073_741_824);
        assert_eq!(eff.max_message_bytes, 1_048_588);
        assert_eq!(eff.timestamp_after_max_ms, 3_600_000);
        overrides.insert("retention.ms".into(), "7".into());
        assert_eq!(broker.effective(&overrides).retention_ms, 7);
        let def = topic_config_def("retention.ms").unwrap();
        assert_eq!(
            broker.resolve(def, &overrides).1,
            ConfigSource::DynamicTopic
        );
        let def = topic_config_def("segment.ms").unwrap();
        assert_eq!(broker.resolve(def, &overrides).1, ConfigSource::Default);
    }

    #[test]
    fn cleanup_policy_and_compaction_settings() {
        let broker = BrokerLogDefaults::default();
        let mut overrides = BTreeMap::new();
        let eff = broker.effective(&overrides);
        assert!(eff.delete() && !eff.compact());
        assert_eq!(eff.delete_retention_ms, 86_400_000);
        assert_eq!(eff.min_compaction_lag_ms, 0);
        assert_eq!(eff.max_compaction_lag_ms, i64::MAX);
        assert_eq!(eff.min_cleanable_dirty_ratio, 0.5);
        for (policy, compact, delete) in [
            ("compact", true, false),
            ("delete", false, true),
            ("compact, delete", true, true),
            ("Delete,Compact", true, true),
        ] {
            overrides.insert("cleanup.policy".into(), policy.into());
            let eff = broker.effective(&overrides);
            assert_eq!((eff.compact(), eff.delete()), (compact, delete), "{policy}");
        }
        overrides.insert("min.cleanable.dirty.ratio".into(), "0.01".into());
        overrides.insert("delete.retention.ms".into(), "100".into());
        let eff = broker.effective(&overrides);
        assert_eq!(eff.min_cleanable_dirty_ratio, 0.01);
        assert_eq!(eff.delete_retention_ms, 100);
    }
}
