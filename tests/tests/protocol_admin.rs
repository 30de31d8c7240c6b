//! Every advertised version of the admin APIs (CreateTopics, DeleteTopics,
//! CreatePartitions, DescribeConfigs, AlterConfigs, IncrementalAlterConfigs,
//! DescribeLogDirs), sent raw at that exact version with the field that version added
//! set or read back, asserting what changed on the node and the error codes.

use sluice_protocol::api::ApiKey;
use sluice_protocol::codec::Uuid;
use sluice_protocol::error::ErrorCode;
use sluice_protocol::messages::create_partitions_request::CreatePartitionsTopic;
use sluice_protocol::messages::delete_topics_request::DeleteTopicState;
use sluice_protocol::messages::describe_configs_request::DescribeConfigsResource;
use sluice_protocol::messages::describe_configs_response::DescribeConfigsResourceResult;
use sluice_protocol::messages::describe_log_dirs_request::DescribableLogDirTopic;
use sluice_protocol::messages::{
    alter_configs_request, incremental_alter_configs_request, AlterConfigsRequest,
    AlterConfigsResponse, CreatePartitionsRequest, CreatePartitionsResponse, CreateTopicsRequest,
    CreateTopicsResponse, DeleteTopicsRequest, DeleteTopicsResponse, DescribeConfigsRequest,
    DescribeConfigsResponse, DescribeLogDirsRequest, DescribeLogDirsResponse,
    IncrementalAlterConfigsRequest, IncrementalAlterConfigsResponse,
};
use sluice_system_tests::raw::RawClient;
use sluice_system_tests::wire::{
    creatable, metadata, must_create, partition_count, produce_ok, topic_names,
};
use sluice_system_tests::Sluice;

/// Kafka's ConfigSource values (DescribeConfigs v1+, CreateTopics v5+).
const DYNAMIC_TOPIC_CONFIG: i8 = 1;
const STATIC_BROKER_CONFIG: i8 = 4;
const DEFAULT_CONFIG: i8 = 5;
const TOPIC: i8 = 2;
const BROKER: i8 = 4;

fn create_v(
    c: &mut RawClient,
    v: i16,
    topics: Vec<sluice_protocol::messages::create_topics_request::CreatableTopic>,
    validate_only: bool,
) -> CreateTopicsResponse {
    c.call(
        ApiKey::CreateTopics,
        v,
        &CreateTopicsRequest {
            topics,
            timeout_ms: 10_000,
            validate_only,
        },
    )
}

fn topic_id_of(c: &mut RawClient, name: &str) -> Uuid {
    let m = metadata(c, 12, Some(&[name]), false);
    assert_eq!(m.topics[0].error_code, 0, "{name} exists");
    m.topics[0].topic_id
}

// ---------------------------------------------------------------------------------
// CreateTopics v0-7
// ---------------------------------------------------------------------------------

#[test]
fn create_topics_every_version_creates_and_reports() {
    let node = Sluice::start(&[]);
    let mut c = RawClient::connect(&node.addr);
    for v in 0..=7i16 {
        let name = format!("ct-v{v}");
        let r = create_v(
            &mut c,
            v,
            vec![creatable(&name, 2, 1, &[("retention.ms", "3600000")])],
            false,
        );
        let t = &r.topics[0];
        assert_eq!(
            (t.name.as_str(), t.error_code),
            (name.as_str(), 0),
            "v{v}: {:?}",
            t.error_message
        );
        if v >= 1 {
            assert_eq!(
                t.error_message, None,
                "v{v}: v1 added the message, null on success"
            );
        }
        if v >= 5 {
            // v5 (KIP-525) returns the partition count, replication factor and configs.
            assert_eq!((t.num_partitions, t.replication_factor), (2, 1), "v{v}");
            let configs = t.configs.as_ref().expect("v5 configs");
            let get = |k: &str| {
                configs
                    .iter()
                    .find(|e| e.name == k)
                    .unwrap_or_else(|| panic!("v{v}: {k} missing"))
            };
            assert_eq!(
                (
                    get("retention.ms").value.as_deref(),
                    get("retention.ms").config_source
                ),
                (Some("3600000"), DYNAMIC_TOPIC_CONFIG),
                "v{v}"
            );
            assert_eq!(
                (
                    get("cleanup.policy").value.as_deref(),
                    get("cleanup.policy").config_source
                ),
                (Some("delete"), DEFAULT_CONFIG),
                "v{v}"
            );
        } else {
            assert_eq!(
                (t.num_partitions, t.replication_factor),
                (-1, -1),
                "v{v}: not in this version"
            );
        }
        // v7 returns the new topic's id.
        if v >= 7 {
            assert_ne!(t.topic_id, Uuid::ZERO);
            assert_eq!(t.topic_id, topic_id_of(&mut c, &name), "v{v}");
        } else {
            assert_eq!(t.topic_id, Uuid::ZERO, "v{v}");
        }
        assert_eq!(partition_count(&mut c, &name), Some(2), "v{v}");
        // Creating it again: TOPIC_ALREADY_EXISTS.
        let r = create_v(&mut c, v, vec![creatable(&name, 2, 1, &[])], false);
        assert_eq!(
            r.topics[0].error_code,
            ErrorCode::TopicAlreadyExists.code(),
            "v{v}"
        );
    }
}

#[test]
fn create_topics_v1_validate_only_creates_nothing() {
    let node = Sluice::start(&[]);
    let mut c = RawClient::connect(&node.addr);
    for v in 1..=7i16 {
        let name = format!("dry-v{v}");
        let r = create_v(&mut c, v, vec![creatable(&name, 4, 1, &[])], true);
        assert_eq!(r.topics[0].error_code, 0, "v{v}");
        if v >= 5 {
            assert_eq!(r.topics[0].num_partitions, 4, "v{v}: what would be created");
        }
        // Invalid requests still fail validation.
        let r = create_v(&mut c, v, vec![creatable(&name, 0, 1, &[])], true);
        assert_eq!(
            r.topics[0].error_code,
            ErrorCode::InvalidPartitions.code(),
            "v{v}"
        );
        let r = create_v(
            &mut c,
            v,
            vec![creatable(&name, 1, 1, &[("retention.ms", "soon")])],
            true,
        );
        assert_eq!(
            r.topics[0].error_code,
            ErrorCode::InvalidConfig.code(),
            "v{v}"
        );
    }
    assert!(
        topic_names(&mut c).is_empty(),
        "validate_only created nothing"
    );
}

#[test]
fn create_topics_v4_minus_one_takes_the_broker_defaults() {
    let node = Sluice::start(&["--num-partitions", "3"]);
    let mut c = RawClient::connect(&node.addr);
    for v in 4..=7i16 {
        let name = format!("defaults-v{v}");
        let r = create_v(&mut c, v, vec![creatable(&name, -1, -1, &[])], false);
        let t = &r.topics[0];
        assert_eq!(t.error_code, 0, "v{v}: {:?}", t.error_message);
        if v >= 5 {
            assert_eq!((t.num_partitions, t.replication_factor), (3, 1), "v{v}");
        }
        assert_eq!(
            partition_count(&mut c, &name),
            Some(3),
            "v{v}: --num-partitions"
        );
    }
}

#[test]
fn create_topics_refuses_bad_requests_with_kafka_error_codes() {
    let node = Sluice::start(&[]);
    let mut c = RawClient::connect(&node.addr);
    let cases = [
        (
            creatable("rf2", 1, 2, &[]),
            ErrorCode::InvalidReplicationFactor,
        ),
        (
            creatable("rf0", 1, 0, &[]),
            ErrorCode::InvalidReplicationFactor,
        ),
        (creatable("p0", 0, 1, &[]), ErrorCode::InvalidPartitions),
        (
            creatable("bad name", 1, 1, &[]),
            ErrorCode::InvalidTopicException,
        ),
        (
            creatable("cfg", 1, 1, &[("no.such.config", "1")]),
            ErrorCode::InvalidConfig,
        ),
        (
            creatable("cfg2", 1, 1, &[("cleanup.policy", "shred")]),
            ErrorCode::InvalidConfig,
        ),
    ];
    for v in [0, 4, 7] {
        for (topic, code) in &cases {
            let r = create_v(&mut c, v, vec![topic.clone()], false);
            assert_eq!(r.topics[0].error_code, code.code(), "v{v} {}", topic.name);
            if v >= 1 {
                assert!(r.topics[0].error_message.is_some(), "v{v} {}", topic.name);
            }
        }
    }
    // The same name twice in one request: both refused.
    let r = create_v(
        &mut c,
        7,
        vec![creatable("twice", 1, 1, &[]), creatable("twice", 1, 1, &[])],
        false,
    );
    assert!(r
        .topics
        .iter()
        .all(|t| t.error_code == ErrorCode::InvalidRequest.code()));
    assert!(topic_names(&mut c).is_empty());
}

// ---------------------------------------------------------------------------------
// DeleteTopics v0-6
// ---------------------------------------------------------------------------------

#[test]
fn delete_topics_every_version_and_v6_by_topic_id() {
    let node = Sluice::start(&[]);
    let mut c = RawClient::connect(&node.addr);
    for v in 0..=6i16 {
        let name = format!("del-v{v}");
        let id = must_create(&mut c, &name, 1);
        produce_ok(&mut c, &name, 0, &[b"gone"]);
        let req = if v >= 6 {
            DeleteTopicsRequest {
                topics: vec![DeleteTopicState {
                    name: Some(name.clone()),
                    topic_id: Uuid::ZERO,
                }],
                topic_names: Vec::new(),
                timeout_ms: 10_000,
            }
        } else {
            DeleteTopicsRequest {
                topics: Vec::new(),
                topic_names: vec![name.clone()],
                timeout_ms: 10_000,
            }
        };
        let r: DeleteTopicsResponse = c.call(ApiKey::DeleteTopics, v, &req);
        let t = &r.responses[0];
        assert_eq!(
            (t.name.as_deref(), t.error_code),
            (Some(name.as_str()), 0),
            "v{v}"
        );
        assert_eq!(t.error_message, None, "v{v}");
        // v6 answers with the topic id too.
        assert_eq!(t.topic_id, if v >= 6 { id } else { Uuid::ZERO }, "v{v}");
        assert_eq!(partition_count(&mut c, &name), None, "v{v}: deleted");
        // Deleting it again: UNKNOWN_TOPIC_OR_PARTITION (v5 adds a message).
        let r: DeleteTopicsResponse = c.call(ApiKey::DeleteTopics, v, &req);
        assert_eq!(
            r.responses[0].error_code,
            ErrorCode::UnknownTopicOrPartition.code(),
            "v{v}"
        );
        if v >= 5 {
            assert!(r.responses[0].error_message.is_some(), "v{v}");
        }
    }
    // v6: by topic id alone, with a null name.
    let id = must_create(&mut c, "by-id", 2);
    let by_id = |id: Uuid| DeleteTopicsRequest {
        topics: vec![DeleteTopicState {
            name: None,
            topic_id: id,
        }],
        topic_names: Vec::new(),
        timeout_ms: 10_000,
    };
    let r: DeleteTopicsResponse = c.call(ApiKey::DeleteTopics, 6, &by_id(id));
    let t = &r.responses[0];
    assert_eq!(
        (t.error_code, t.name.as_deref(), t.topic_id),
        (0, Some("by-id"), id)
    );
    assert!(topic_names(&mut c).is_empty());
    let r: DeleteTopicsResponse = c.call(ApiKey::DeleteTopics, 6, &by_id(id));
    assert_eq!(
        r.responses[0].error_code,
        ErrorCode::UnknownTopicId.code(),
        "a deleted id is unknown"
    );
    // Both a name and an id: INVALID_REQUEST.
    must_create(&mut c, "both", 1);
    let both = DeleteTopicsRequest {
        topics: vec![DeleteTopicState {
            name: Some("both".into()),
            topic_id: Uuid([3; 16]),
        }],
        topic_names: Vec::new(),
        timeout_ms: 10_000,
    };
    let r: DeleteTopicsResponse = c.call(ApiKey::DeleteTopics, 6, &both);
    assert_eq!(r.responses[0].error_code, ErrorCode::InvalidRequest.code());
    assert_eq!(topic_names(&mut c), vec!["both"]);
}

// ---------------------------------------------------------------------------------
// CreatePartitions v0-3
// ---------------------------------------------------------------------------------

fn create_partitions(
    c: &mut RawClient,
    v: i16,
    topic: &str,
    count: i32,
    validate_only: bool,
) -> (i16, Option<String>) {
    let req = CreatePartitionsRequest {
        topics: vec![CreatePartitionsTopic {
            name: topic.into(),
            count,
            assignments: None,
        }],
        timeout_ms: 10_000,
        validate_only,
    };
    let r: CreatePartitionsResponse = c.call(ApiKey::CreatePartitions, v, &req);
    assert_eq!(r.results[0].name, topic);
    (r.results[0].error_code, r.results[0].error_message.clone())
}

#[test]
fn create_partitions_every_version_grows_the_topic() {
    let node = Sluice::start(&[]);
    let mut c = RawClient::connect(&node.addr);
    must_create(&mut c, "grow", 1);
    for v in 0..=3i16 {
        let want = i32::from(v) + 2;
        // validate_only changes nothing.
        assert_eq!(
            create_partitions(&mut c, v, "grow", want, true),
            (0, None),
            "v{v}"
        );
        assert_eq!(
            partition_count(&mut c, "grow"),
            Some(want as usize - 1),
            "v{v} validate only"
        );
        assert_eq!(
            create_partitions(&mut c, v, "grow", want, false),
            (0, None),
            "v{v}"
        );
        assert_eq!(partition_count(&mut c, "grow"), Some(want as usize), "v{v}");
        // The new partition takes records.
        assert_eq!(
            produce_ok(&mut c, "grow", want - 1, &[b"new partition"]),
            0,
            "v{v}"
        );
        // Shrinking or staying put: INVALID_PARTITIONS; unknown topic: UNKNOWN_TOPIC_OR_PARTITION.
        assert_eq!(
            create_partitions(&mut c, v, "grow", want - 1, false).0,
            ErrorCode::InvalidPartitions.code(),
            "v{v}"
        );
        assert_eq!(
            create_partitions(&mut c, v, "grow", want, false).0,
            ErrorCode::InvalidPartitions.code(),
            "v{v}"
        );
        assert_eq!(
            create_partitions(&mut c, v, "nope", 3, false).0,
            ErrorCode::UnknownTopicOrPartition.code(),
            "v{v}"
        );
    }
    assert_eq!(partition_count(&mut c, "grow"), Some(5));
}

// ---------------------------------------------------------------------------------
// DescribeConfigs v0-4
// ---------------------------------------------------------------------------------

fn describe_configs(
    c: &mut RawClient,
    v: i16,
    resource_type: i8,
    name: &str,
    keys: Option<&[&str]>,
    synonyms: bool,
    docs: bool,
) -> DescribeConfigsResponse {
    let req = DescribeConfigsRequest {
        resources: vec![DescribeConfigsResource {
            resource_type,
            resource_name: name.into(),
            configuration_keys: keys.map(|k| k.iter().map(|s| s.to_string()).collect()),
        }],
        include_synonyms: synonyms,
        include_documentation: docs,
    };
    c.call(ApiKey::DescribeConfigs, v, &req)
}

fn topic_configs(c: &mut RawClient, v: i16, topic: &str) -> Vec<DescribeConfigsResourceResult> {
    let r = describe_configs(c, v, TOPIC, topic, None, v >= 1, v >= 3);
    assert_eq!(r.results[0].error_code, 0);
    r.results[0].configs.clone()
}

fn entry<'a>(
    configs: &'a [DescribeConfigsResourceResult],
    name: &str,
) -> &'a DescribeConfigsResourceResult {
    configs
        .iter()
        .find(|e| e.name == name)
        .unwrap_or_else(|| panic!("{name} not described"))
}

#[test]
fn describe_configs_every_version_sources_synonyms_types_and_docs() {
    let node = Sluice::start(&["--log-retention-ms", "7200000"]);
    let mut c = RawClient::connect(&node.addr);
    assert_eq!(
        sluice_system_tests::wire::create_topic(
            &mut c,
            "dc",
            1,
            &[("max.message.bytes", "2000000")]
        )
        .error_code,
        0
    );
    for v in 0..=4i16 {
        for (synonyms, docs) in [(false, false), (true, false), (false, true), (true, true)] {
            // v1 added IncludeSynonyms, v3 IncludeDocumentation: older versions cannot ask.
            if (synonyms && v < 1) || (docs && v < 3) {
                continue;
            }
            let r = describe_configs(&mut c, v, TOPIC, "dc", None, synonyms, docs);
            let res = &r.results[0];
            assert_eq!(
                (
                    res.error_code,
                    res.resource_type,
                    res.resource_name.as_str()
                ),
                (0, TOPIC, "dc"),
                "v{v}"
            );
            let configs = &res.configs;
            assert!(configs.len() >= 20, "v{v}: every topic config is described");
            let overridden = entry(configs, "max.message.bytes");
            let from_broker = entry(configs, "retention.ms");
            let default = entry(configs, "cleanup.policy");
            assert_eq!(overridden.value.as_deref(), Some("2000000"), "v{v}");
            assert_eq!(
                from_broker.value.as_deref(),
                Some("7200000"),
                "v{v}: --log-retention-ms"
            );
            assert_eq!(default.value.as_deref(), Some("delete"), "v{v}");
            assert!(
                configs.iter().all(|e| !e.read_only && !e.is_sensitive),
                "v{v}"
            );
            if v == 0 {
                // v0 has IsDefault instead of a source.
                assert!(
                    !overridden.is_default && !from_broker.is_default && default.is_default,
                    "v0 is_default"
                );
                assert_eq!(overridden.config_source, -1, "v0 has no source");
            } else {
                assert_eq!(
                    (
                        overridden.config_source,
                        from_broker.config_source,
                        default.config_source
                    ),
                    (DYNAMIC_TOPIC_CONFIG, STATIC_BROKER_CONFIG, DEFAULT_CONFIG),
                    "v{v} sources"
                );
                assert!(!default.is_default, "v{v}: IsDefault is v0 only");
            }
            // v1 synonyms, most specific first, only when asked.
            if synonyms {
                let syn = |e: &DescribeConfigsResourceResult| {
                    e.synonyms
                        .iter()
                        .map(|s| {
                            (
                                s.name.clone(),
                                s.value.clone().unwrap_or_default(),
                                s.source,
                            )
                        })
                        .collect::<Vec<_>>()
                };
                assert_eq!(
                    syn(overridden),
                    vec![
                        (
                            "max.message.bytes".to_string(),
                            "2000000".to_string(),
                            DYNAMIC_TOPIC_CONFIG
                        ),
                        (
                            "message.max.bytes".to_string(),
                            "1048588".to_string(),
                            DEFAULT_CONFIG
                        ),
                    ],
                    "v{v}"
                );
                let s = syn(from_broker);
                assert_eq!(
                    s.first(),
                    Some(&(
                        "log.retention.ms".to_string(),
                        "7200000".to_string(),
                        STATIC_BROKER_CONFIG
                    )),
                    "v{v}"
                );
                assert_eq!(s.last().map(|x| x.2), Some(DEFAULT_CONFIG), "v{v}");
            } else {
                assert!(
                    configs.iter().all(|e| e.synonyms.is_empty()),
                    "v{v}: synonyms only when asked"
                );
            }
            // v3 added config types (always) and documentation (when asked).
            let types: Vec<(&str, i8)> = [
                "preallocate",
                "compression.type",
                "max.message.bytes",
                "retention.ms",
                "min.cleanable.dirty.ratio",
                "cleanup.policy",
            ]
            .iter()
            .map(|n| (*n, entry(configs, n).config_type))
            .collect();
            let want_types: Vec<(&str, i8)> = if v >= 3 {
                // BOOLEAN 1, STRING 2, INT 3, LONG 5, DOUBLE 6, LIST 7 (KIP-569).
                vec![
                    ("preallocate", 1),
                    ("compression.type", 2),
                    ("max.message.bytes", 3),
                    ("retention.ms", 5),
                    ("min.cleanable.dirty.ratio", 6),
                    ("cleanup.policy", 7),
                ]
            } else {
                types.iter().map(|(n, _)| (*n, 0)).collect()
            };
            assert_eq!(types, want_types, "v{v} config types");
            if docs {
                assert!(
                    configs
                        .iter()
                        .all(|e| e.documentation.as_ref().is_some_and(|d| !d.is_empty())),
                    "v{v} docs"
                );
            } else if v >= 3 {
                assert!(
                    configs.iter().all(|e| e.documentation.is_none()),
                    "v{v}: no docs unless asked"
                );
            }
        }
        // ConfigurationKeys narrows the answer.
        let r = describe_configs(
            &mut c,
            v,
            TOPIC,
            "dc",
            Some(&["retention.ms", "segment.bytes"]),
            false,
            false,
        );
        let mut names: Vec<&str> = r.results[0]
            .configs
            .iter()
            .map(|e| e.name.as_str())
            .collect();
        names.sort_unstable();
        assert_eq!(names, vec!["retention.ms", "segment.bytes"], "v{v}");
        // A missing topic: UNKNOWN_TOPIC_OR_PARTITION for that resource.
        let r = describe_configs(&mut c, v, TOPIC, "nope", None, false, false);
        assert_eq!(
            r.results[0].error_code,
            ErrorCode::UnknownTopicOrPartition.code(),
            "v{v}"
        );
        // The broker resource by id ("1") and by empty name.
        for name in ["1", ""] {
            let r = describe_configs(
                &mut c,
                v,
                BROKER,
                name,
                Some(&["num.partitions", "log.retention.ms"]),
                false,
                false,
            );
            let res = &r.results[0];
            assert_eq!(res.error_code, 0, "v{v} broker {name:?}");
            assert_eq!(
                entry(&res.configs, "num.partitions").value.as_deref(),
                Some("1"),
                "v{v}"
            );
            assert_eq!(
                entry(&res.configs, "log.retention.ms").value.as_deref(),
                Some("7200000"),
                "v{v}"
            );
        }
    }
}

// ---------------------------------------------------------------------------------
// AlterConfigs v0-2 and IncrementalAlterConfigs v0-1
// ---------------------------------------------------------------------------------

fn alter_configs(
    c: &mut RawClient,
    v: i16,
    topic: &str,
    configs: &[(&str, Option<&str>)],
    validate_only: bool,
) -> i16 {
    let req = AlterConfigsRequest {
        resources: vec![alter_configs_request::AlterConfigsResource {
            resource_type: TOPIC,
            resource_name: topic.into(),
            configs: configs
                .iter()
                .map(|(k, v)| alter_configs_request::AlterableConfig {
                    name: k.to_string(),
                    value: v.map(str::to_string),
                })
                .collect(),
        }],
        validate_only,
    };
    let r: AlterConfigsResponse = c.call(ApiKey::AlterConfigs, v, &req);
    let res = &r.responses[0];
    assert_eq!(
        (res.resource_type, res.resource_name.as_str()),
        (TOPIC, topic)
    );
    res.error_code
}

/// (value, source) of one topic config as DescribeConfigs v4 reports it.
fn config(c: &mut RawClient, topic: &str, name: &str) -> (String, i8) {
    let configs = topic_configs(c, 4, topic);
    let e = entry(&configs, name);
    (e.value.clone().unwrap_or_default(), e.config_source)
}

#[test]
fn alter_configs_every_version_replaces_the_whole_override_set() {
    let node = Sluice::start(&[]);
    let mut c = RawClient::connect(&node.addr);
    must_create(&mut c, "ac", 1);
    for v in 0..=2i16 {
        let retention = format!("{}", 1_000_000 + i64::from(v));
        assert_eq!(
            alter_configs(
                &mut c,
                v,
                "ac",
                &[
                    ("retention.ms", Some(&retention)),
                    ("cleanup.policy", Some("compact"))
                ],
                false
            ),
            0,
            "v{v}"
        );
        assert_eq!(
            config(&mut c, "ac", "retention.ms"),
            (retention.clone(), DYNAMIC_TOPIC_CONFIG),
            "v{v}"
        );
        assert_eq!(
            config(&mut c, "ac", "cleanup.policy"),
            ("compact".into(), DYNAMIC_TOPIC_CONFIG),
            "v{v}"
        );
        // Legacy semantics: what is not named reverts to its default.
        assert_eq!(
            alter_configs(&mut c, v, "ac", &[("retention.ms", Some("5000"))], false),
            0,
            "v{v}"
        );
        assert_eq!(
            config(&mut c, "ac", "cleanup.policy"),
            ("delete".into(), DEFAULT_CONFIG),
            "v{v}"
        );
        // validate_only changes nothing.
        assert_eq!(
            alter_configs(&mut c, v, "ac", &[("retention.ms", Some("6000"))], true),
            0,
            "v{v}"
        );
        assert_eq!(
            config(&mut c, "ac", "retention.ms"),
            ("5000".into(), DYNAMIC_TOPIC_CONFIG),
            "v{v}"
        );
        // Bad values and unknown topics are refused without a change.
        assert_eq!(
            alter_configs(&mut c, v, "ac", &[("retention.ms", Some("never"))], false),
            ErrorCode::InvalidConfig.code(),
            "v{v}"
        );
        assert_eq!(
            alter_configs(&mut c, v, "ac", &[("no.such.config", Some("1"))], false),
            ErrorCode::InvalidConfig.code(),
            "v{v}"
        );
        assert_eq!(
            alter_configs(&mut c, v, "nope", &[("retention.ms", Some("1"))], false),
            ErrorCode::UnknownTopicOrPartition.code(),
            "v{v}"
        );
        assert_eq!(
            config(&mut c, "ac", "retention.ms"),
            ("5000".into(), DYNAMIC_TOPIC_CONFIG),
            "v{v}"
        );
        // An empty set removes every override.
        assert_eq!(alter_configs(&mut c, v, "ac", &[], false), 0, "v{v}");
        assert_eq!(
            config(&mut c, "ac", "retention.ms"),
            ("604800000".into(), DEFAULT_CONFIG),
            "v{v}"
        );
    }
}

const SET: i8 = 0;
const DELETE: i8 = 1;
const APPEND: i8 = 2;
const SUBTRACT: i8 = 3;

fn incremental(
    c: &mut RawClient,
    v: i16,
    topic: &str,
    ops: &[(&str, i8, Option<&str>)],
    validate_only: bool,
) -> i16 {
    let req = IncrementalAlterConfigsRequest {
        resources: vec![incremental_alter_configs_request::AlterConfigsResource {
            resource_type: TOPIC,
            resource_name: topic.into(),
            configs: ops
                .iter()
                .map(
                    |(k, op, v)| incremental_alter_configs_request::AlterableConfig {
                        name: k.to_string(),
                        config_operation: *op,
                        value: v.map(str::to_string),
                    },
                )
                .collect(),
        }],
        validate_only,
    };
    let r: IncrementalAlterConfigsResponse = c.call(ApiKey::IncrementalAlterConfigs, v, &req);
    let res = &r.responses[0];
    assert_eq!(
        (res.resource_type, res.resource_name.as_str()),
        (TOPIC, topic)
    );
    res.error_code
}

#[test]
fn incremental_alter_configs_every_version_set_delete_append_subtract() {
    let node = Sluice::start(&[]);
    let mut c = RawClient::connect(&node.addr);
    must_create(&mut c, "iac", 1);
    for v in 0..=1i16 {
        // SET two keys; the rest of the overrides stay.
        assert_eq!(
            incremental(
                &mut c,
                v,
                "iac",
                &[("retention.ms", SET, Some("1234"))],
                false
            ),
            0,
            "v{v}"
        );
        assert_eq!(
            incremental(
                &mut c,
                v,
                "iac",
                &[("segment.ms", SET, Some("60000"))],
                false
            ),
            0,
            "v{v}"
        );
        assert_eq!(
            config(&mut c, "iac", "retention.ms"),
            ("1234".into(), DYNAMIC_TOPIC_CONFIG),
            "v{v}"
        );
        assert_eq!(
            config(&mut c, "iac", "segment.ms"),
            ("60000".into(), DYNAMIC_TOPIC_CONFIG),
            "v{v}"
        );
        // APPEND to a list starts from its current (default) value and skips duplicates.
        assert_eq!(
            incremental(
                &mut c,
                v,
                "iac",
                &[("cleanup.policy", APPEND, Some("compact"))],
                false
            ),
            0,
            "v{v}"
        );
        assert_eq!(
            config(&mut c, "iac", "cleanup.policy"),
            ("delete,compact".into(), DYNAMIC_TOPIC_CONFIG),
            "v{v}"
        );
        assert_eq!(
            incremental(
                &mut c,
                v,
                "iac",
                &[("cleanup.policy", APPEND, Some("delete"))],
                false
            ),
            0,
            "v{v}"
        );
        assert_eq!(
            config(&mut c, "iac", "cleanup.policy").0,
            "delete,compact",
            "v{v}"
        );
        // SUBTRACT removes list items.
        assert_eq!(
            incremental(
                &mut c,
                v,
                "iac",
                &[("cleanup.policy", SUBTRACT, Some("delete"))],
                false
            ),
            0,
            "v{v}"
        );
        assert_eq!(
            config(&mut c, "iac", "cleanup.policy"),
            ("compact".into(), DYNAMIC_TOPIC_CONFIG),
            "v{v}"
        );
        // APPEND/SUBTRACT on a non-list config: INVALID_CONFIG, nothing changes.
        assert_eq!(
            incremental(
                &mut c,
                v,
                "iac",
                &[("retention.ms", APPEND, Some("1"))],
                false
            ),
            ErrorCode::InvalidConfig.code(),
            "v{v}"
        );
        assert_eq!(
            incremental(
                &mut c,
                v,
                "iac",
                &[("retention.ms", SUBTRACT, Some("1"))],
                false
            ),
            ErrorCode::InvalidConfig.code(),
            "v{v}"
        );
        // validate_only checks but does not apply.
        assert_eq!(
            incremental(
                &mut c,
                v,
                "iac",
                &[("retention.ms", SET, Some("999"))],
                true
            ),
            0,
            "v{v}"
        );
        assert_eq!(config(&mut c, "iac", "retention.ms").0, "1234", "v{v}");
        // Errors: bad value, unknown key, unknown op, the same key twice, unknown topic.
        for (ops, code) in [
            (
                vec![("retention.ms", SET, Some("x"))],
                ErrorCode::InvalidConfig,
            ),
            (
                vec![("no.such.config", SET, Some("1"))],
                ErrorCode::InvalidConfig,
            ),
            (
                vec![("retention.ms", 9, Some("1"))],
                ErrorCode::InvalidRequest,
            ),
            (
                vec![
                    ("retention.ms", SET, Some("1")),
                    ("retention.ms", DELETE, None),
                ],
                ErrorCode::InvalidRequest,
            ),
        ] {
            assert_eq!(
                incremental(&mut c, v, "iac", &ops, false),
                code.code(),
                "v{v} {ops:?}"
            );
        }
        assert_eq!(
            incremental(
                &mut c,
                v,
                "nope",
                &[("retention.ms", SET, Some("1"))],
                false
            ),
            ErrorCode::UnknownTopicOrPartition.code(),
            "v{v}"
        );
        assert_eq!(
            config(&mut c, "iac", "retention.ms").0,
            "1234",
            "v{v}: unchanged by the failures"
        );
        // DELETE reverts to the default; segment.ms stays overridden.
        assert_eq!(
            incremental(
                &mut c,
                v,
                "iac",
                &[
                    ("retention.ms", DELETE, None),
                    ("cleanup.policy", DELETE, None)
                ],
                false
            ),
            0,
            "v{v}"
        );
        assert_eq!(
            config(&mut c, "iac", "retention.ms"),
            ("604800000".into(), DEFAULT_CONFIG),
            "v{v}"
        );
        assert_eq!(
            config(&mut c, "iac", "cleanup.policy"),
            ("delete".into(), DEFAULT_CONFIG),
            "v{v}"
        );
        assert_eq!(
            config(&mut c, "iac", "segment.ms"),
            ("60000".into(), DYNAMIC_TOPIC_CONFIG),
            "v{v}"
        );
        assert_eq!(
            incremental(&mut c, v, "iac", &[("segment.ms", DELETE, None)], false),
            0,
            "v{v}"
        );
    }
}

// ---------------------------------------------------------------------------------
// DescribeLogDirs v0-4
// ---------------------------------------------------------------------------------

fn describe_log_dirs(
    c: &mut RawClient,
    v: i16,
    topics: Option<Vec<DescribableLogDirTopic>>,
) -> DescribeLogDirsResponse {
    c.call(
        ApiKey::DescribeLogDirs,
        v,
        &DescribeLogDirsRequest { topics },
    )
}

#[test]
fn describe_log_dirs_every_version_reports_partition_sizes() {
    let node = Sluice::start(&[]);
    let mut c = RawClient::connect(&node.addr);
    must_create(&mut c, "ld", 2);
    must_create(&mut c, "other", 1);
    produce_ok(&mut c, "ld", 0, &[&[7u8; 1000]]);
    let data_dir = node.data_dir.display().to_string();
    for v in 0..=4i16 {
        let r = describe_log_dirs(&mut c, v, None);
        assert_eq!(r.error_code, 0, "v{v}: v3 added the top-level error code");
        assert_eq!(r.results.len(), 1, "v{v}: one data dir");
        let dir = &r.results[0];
        assert_eq!(
            (dir.error_code, dir.log_dir.as_str()),
            (0, data_dir.as_str()),
            "v{v}"
        );
        let names: Vec<&str> = dir.topics.iter().map(|t| t.name.as_str()).collect();
        assert_eq!(names, vec!["ld", "other"], "v{v}: all topics when null");
        let ld = &dir.topics[0];
        let sizes: Vec<(i32, bool)> = ld
            .partitions
            .iter()
            .map(|p| (p.partition_index, p.partition_size > 1000))
            .collect();
        assert_eq!(
            sizes,
            vec![(0, true), (1, false)],
            "v{v}: partition 0 holds the 1000-byte record"
        );
        assert!(
            ld.partitions
                .iter()
                .all(|p| p.offset_lag == 0 && !p.is_future_key),
            "v{v}"
        );
        assert_eq!(ld.partitions[1].partition_size, 0, "v{v}");
        if v < 4 {
            assert_eq!(
                (dir.total_bytes, dir.usable_bytes),
                (-1, -1),
                "v{v}: fields v4 added"
            );
        }
        // Filtered to one partition of one topic.
        let r = describe_log_dirs(
            &mut c,
            v,
            Some(vec![DescribableLogDirTopic {
                topic: "ld".into(),
                partitions: vec![1],
            }]),
        );
        let dir = &r.results[0];
        assert_eq!(dir.topics.len(), 1, "v{v}");
        let parts: Vec<i32> = dir.topics[0]
            .partitions
            .iter()
            .map(|p| p.partition_index)
            .collect();
        assert_eq!(parts, vec![1], "v{v}");
        // An empty filter describes the directory with no partitions.
        let r = describe_log_dirs(&mut c, v, Some(Vec::new()));
        assert!(r.results[0].topics.is_empty(), "v{v}");
    }
}

#[test]
fn describe_log_dirs_v4_reports_volume_total_and_usable_bytes() {
    let node = Sluice::start(&[]);
    let mut c = RawClient::connect(&node.addr);
    let r = describe_log_dirs(&mut c, 4, None);
    let dir = &r.results[0];
    // Kafka fills these from the file store of the log dir (KIP-827).
    assert!(dir.total_bytes > 0, "total_bytes {}", dir.total_bytes);
    assert!(
        dir.usable_bytes > 0 && dir.usable_bytes <= dir.total_bytes,
        "usable_bytes {}",
        dir.usable_bytes
    );
}
