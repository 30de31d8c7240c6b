//! Kafka's validation rules the broker applies before storing anything, and the limits
//! that keep one client from holding resources: each asserted through the wire.

use std::time::{Duration, Instant};

use bytes::BytesMut;
use sluice_protocol::api::ApiKey;
use sluice_protocol::error::ErrorCode;
use sluice_protocol::messages::incremental_alter_configs_request::{
    AlterConfigsResource, AlterableConfig,
};
use sluice_protocol::messages::{
    CreateTopicsRequest, CreateTopicsResponse, IncrementalAlterConfigsRequest,
    IncrementalAlterConfigsResponse, ProduceResponse,
};
use sluice_system_tests::raw::RawClient;
use sluice_system_tests::wire::{self, batch, creatable, fetch_request, produce_request};
use sluice_system_tests::Sluice;

fn produce_code(c: &mut RawClient, topic: &str, acks: i16, records: bytes::Bytes) -> i16 {
    let resp: ProduceResponse = c.call(
        ApiKey::Produce,
        9,
        &produce_request(topic, 0, acks, records),
    );
    resp.responses[0].partition_responses[0].error_code
}

#[test]
fn acks_all_below_min_insync_replicas_is_refused() {
    let node = Sluice::start(&[]);
    let mut c = RawClient::connect(&node.addr);
    assert_eq!(
        wire::create_topic(&mut c, "misr", 1, &[("min.insync.replicas", "2")]).error_code,
        0
    );
    // A single node's ISR is one replica: acks=all cannot be satisfied; acks=1 is
    // appended, but the high watermark does not advance while the ISR is below
    // min.insync.replicas (KIP-966), so consumers do not see it.
    assert_eq!(
        produce_code(&mut c, "misr", -1, batch(&[b"a"])),
        ErrorCode::NotEnoughReplicas.code()
    );
    assert_eq!(produce_code(&mut c, "misr", 1, batch(&[b"b"])), 0);
    let got = wire::fetch_at(&mut c, "misr", 0, 0);
    assert_eq!(
        got.high_watermark, 0,
        "nothing committed below min.insync.replicas"
    );
    assert!(wire::values(&got.records.unwrap_or_default()).is_empty());
    // Lowering min.insync.replicas to the ISR's size commits what was appended: only
    // "b" (the refused batch was never stored).
    let alter = sluice_protocol::messages::IncrementalAlterConfigsRequest {
        resources: vec![
            sluice_protocol::messages::incremental_alter_configs_request::AlterConfigsResource {
                resource_type: 2,
                resource_name: "misr".into(),
                configs: vec![
                    sluice_protocol::messages::incremental_alter_configs_request::AlterableConfig {
                        name: "min.insync.replicas".into(),
                        config_operation: 0,
                        value: Some("1".into()),
                    },
                ],
            },
        ],
        validate_only: false,
    };
    let resp: sluice_protocol::messages::IncrementalAlterConfigsResponse =
        c.call(ApiKey::IncrementalAlterConfigs, 1, &alter);
    assert_eq!(resp.responses[0].error_code, 0);
    sluice_system_tests::wait_for(std::time::Duration::from_secs(10), "b committed", || {
        wire::fetch_at(&mut c, "misr", 0, 0).high_watermark == 1
    });
    let got = wire::fetch_at(&mut c, "misr", 0, 0);
    assert_eq!(wire::values(&got.records.unwrap_or_default()), vec!["b"]);
}

#[test]
fn batches_with_a_base_offset_or_an_unknown_codec_are_refused() {
    let node = Sluice::start(&[]);
    let mut c = RawClient::connect(&node.addr);
    wire::must_create(&mut c, "strict", 1);
    // baseOffset lies outside the CRC, so only the broker's rule catches it.
    let mut b = BytesMut::from(&batch(&[b"x"])[..]);
    b[..8].copy_from_slice(&7i64.to_be_bytes());
    assert_eq!(
        produce_code(&mut c, "strict", 1, b.freeze()),
        ErrorCode::InvalidRecord.code()
    );
    // Compression bits 5-7 name no codec: refused, never stored for consumers to choke on.
    let mut builder = sluice_protocol::records::RecordBatchBuilder::new();
    builder.push(wire::now_ms(), None, Some(b"y"), &[]).unwrap();
    let mut b = BytesMut::from(&builder.build().unwrap()[..]);
    b[22] |= 0x07; // attributes low byte (offset 21-22), inside the CRC: recompute it
    let crc = crc32c::crc32c(&b[21..]);
    b[17..21].copy_from_slice(&crc.to_be_bytes());
    assert_eq!(
        produce_code(&mut c, "strict", 1, b.freeze()),
        ErrorCode::CorruptMessage.code()
    );
    assert_eq!(wire::fetch_at(&mut c, "strict", 0, 0).high_watermark, 0);
}

#[test]
fn create_reports_an_existing_topic_before_other_errors() {
    let node = Sluice::start(&[]);
    let mut c = RawClient::connect(&node.addr);
    wire::must_create(&mut c, "exists", 1);
    // "Create if missing with RF=3" against one node: the topic exists, so that is the answer.
    let req = CreateTopicsRequest {
        topics: vec![creatable("exists", 1, 3, &[])],
        timeout_ms: 5000,
        validate_only: false,
    };
    let r: CreateTopicsResponse = c.call(ApiKey::CreateTopics, 7, &req);
    assert_eq!(r.topics[0].error_code, ErrorCode::TopicAlreadyExists.code());
    let req = CreateTopicsRequest {
        topics: vec![creatable("absent", 1, 3, &[])],
        timeout_ms: 5000,
        validate_only: false,
    };
    let r: CreateTopicsResponse = c.call(ApiKey::CreateTopics, 7, &req);
    assert_eq!(
        r.topics[0].error_code,
        ErrorCode::InvalidReplicationFactor.code()
    );
}

#[test]
fn a_config_storage_cannot_run_is_refused_and_the_node_still_restarts() {
    let mut node = Sluice::start(&[]);
    let mut c = RawClient::connect(&node.addr);
    // Kafka's own minimum for segment.index.bytes is 4, too small for a time index entry.
    let r = wire::create_topic(&mut c, "tiny-index", 1, &[("segment.index.bytes", "8")]);
    assert_eq!(
        r.error_code,
        ErrorCode::InvalidConfig.code(),
        "{:?}",
        r.error_message
    );
    wire::must_create(&mut c, "alterme", 1);
    let alter = |c: &mut RawClient, value: &str| -> i16 {
        let req = IncrementalAlterConfigsRequest {
            resources: vec![AlterConfigsResource {
                resource_type: 2,
                resource_name: "alterme".into(),
                configs: vec![AlterableConfig {
                    name: "segment.index.bytes".into(),
                    config_operation: 0,
                    value: Some(value.into()),
                }],
            }],
            validate_only: false,
        };
        let r: IncrementalAlterConfigsResponse = c.call(ApiKey::IncrementalAlterConfigs, 1, &req);
        r.responses[0].error_code
    };
    assert_eq!(alter(&mut c, "8"), ErrorCode::InvalidConfig.code());
    assert_eq!(alter(&mut c, "65536"), 0);
    node.stop();
    node.restart();
    let mut c = RawClient::connect(&node.addr);
    let names = wire::topic_names(&mut c);
    assert!(
        names.contains(&"alterme".to_string()) && !names.contains(&"tiny-index".to_string()),
        "{names:?}"
    );
}

#[test]
fn idle_connections_are_closed() {
    let node = Sluice::start(&["--connections-max-idle-ms", "300"]);
    let mut c = RawClient::connect(&node.addr);
    let start = Instant::now();
    assert!(c.is_closed_by_peer(), "an idle connection is closed");
    let waited = start.elapsed();
    assert!(
        waited >= Duration::from_millis(250) && waited < Duration::from_secs(5),
        "{waited:?}"
    );
    // A connection in use stays open.
    let mut c = RawClient::connect(&node.addr);
    for _ in 0..5 {
        std::thread::sleep(Duration::from_millis(100));
        assert!(!wire::topic_names(&mut c).contains(&"x".to_string()));
    }
}

#[test]
fn a_fetch_cut_short_by_a_limit_answers_at_once_despite_min_bytes() {
    let node = Sluice::start(&[]);
    let mut c = RawClient::connect(&node.addr);
    wire::must_create(&mut c, "backlog", 1);
    for _ in 0..20 {
        wire::produce_ok(&mut c, "backlog", 0, &[&vec![b'b'; 10_000]]);
    }
    // 200 KB committed, partition limit 50 KB, min_bytes 1 MB: Kafka counts what is
    // available, so the fetch must not wait out max_wait.
    let mut req = fetch_request("backlog", sluice_protocol::codec::Uuid::ZERO, 0, 0);
    req.min_bytes = 1_000_000;
    req.max_wait_ms = 5_000;
    req.topics[0].partitions[0].partition_max_bytes = 50_000;
    let start = Instant::now();
    let p = wire::fetch_one(&mut c, 12, &req);
    assert!(
        start.elapsed() < Duration::from_secs(2),
        "waited {:?}",
        start.elapsed()
    );
    let n = wire::records(&p.records.unwrap_or_default()).len();
    assert!((1..20).contains(&n), "{n} records");
}
