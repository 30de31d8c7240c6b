//! Bad input over the wire: each case gets a clear Kafka error code or a closed
//! connection, and afterwards the broker still serves other clients and still holds
//! everything acknowledged before.

use std::time::{Duration, Instant};

use bytes::{BufMut, Bytes, BytesMut};
use sluice_protocol::api::ApiKey;
use sluice_protocol::compression::Compression;
use sluice_protocol::error::ErrorCode;
use sluice_protocol::messages::metadata_request::MetadataRequestTopic;
use sluice_protocol::messages::{
    ApiVersionsResponse, MetadataRequest, MetadataResponse, ProduceRequest,
};
use sluice_system_tests::raw::RawClient;
use sluice_system_tests::wire::{self, batch, now_ms};
use sluice_system_tests::Sluice;

fn batch_at(ts: i64, value: &[u8]) -> Bytes {
    wire::batch_at(Compression::None, &[(ts, value)])
}

fn create(c: &mut RawClient, name: &str, configs: &[(&str, &str)]) -> i16 {
    wire::create_topic(c, name, 1, configs).error_code
}

fn produce(c: &mut RawClient, topic: &str, records: Bytes) -> (i16, i64) {
    let p = wire::produce_v(c, 9, topic, 0, records);
    (p.error_code, p.base_offset)
}

fn fetch(c: &mut RawClient, topic: &str, offset: i64) -> (i16, Bytes) {
    let p = wire::fetch_at(c, topic, 0, offset);
    (p.error_code, p.records.unwrap_or_default())
}

/// The broker answers a fresh client and still returns the acknowledged record.
fn assert_healthy(addr: &str) {
    let mut c = RawClient::connect(addr);
    assert_eq!(wire::api_versions(&mut c).error_code, 0);
    let (code, records) = fetch(&mut c, "kept", 0);
    assert_eq!(code, 0);
    assert!(
        records.windows(8).any(|w| w == b"survivor"),
        "acknowledged record still there"
    );
}

fn setup() -> Sluice {
    let node = Sluice::start(&[]);
    let mut c = RawClient::connect(&node.addr);
    assert_eq!(create(&mut c, "kept", &[]), 0);
    assert_eq!(produce(&mut c, "kept", batch(&[b"survivor"])), (0, 0));
    node
}

fn assert_closed(c: &mut RawClient, what: &str) {
    let start = Instant::now();
    assert!(c.is_closed_by_peer(), "{what}: connection should be closed");
    assert!(
        start.elapsed() < Duration::from_secs(10),
        "{what}: closed promptly"
    );
}

#[test]
fn oversized_frame_is_refused_before_allocation() {
    let node = setup();
    let mut c = RawClient::connect(&node.addr);
    // 1 GiB claimed, far over socket.request.max.bytes (100 MiB); only the prefix is sent.
    c.write_raw(&(1i32 << 30).to_be_bytes()).unwrap();
    assert_closed(&mut c, "oversized frame");
    let mut c = RawClient::connect(&node.addr);
    c.write_raw(&(-5i32).to_be_bytes()).unwrap();
    assert_closed(&mut c, "negative frame length");
    assert_healthy(&node.addr);
}

#[test]
fn truncated_frame_and_random_bytes_close_only_that_connection() {
    let node = setup();
    let mut other = RawClient::connect(&node.addr);
    // A frame whose header stops in the middle of the correlation id.
    let mut c = RawClient::connect(&node.addr);
    c.write_raw(&[0, 0, 0, 6, 0, 3, 0, 1, 0, 0]).unwrap();
    assert_closed(&mut c, "truncated header");
    // A Metadata v1 frame cut short inside the topic array.
    let mut c = RawClient::connect(&node.addr);
    let mut f = BytesMut::new();
    f.put_i16(3);
    f.put_i16(1);
    f.put_i32(7);
    f.put_i16(-1);
    f.put_i32(2); // two topics promised
    f.put_i16(5); // a 5-byte name with only 2 bytes present
    f.put_slice(b"ab");
    let mut frame = BytesMut::new();
    frame.put_i32(f.len() as i32);
    frame.put_slice(&f);
    c.write_raw(&frame).unwrap();
    assert_closed(&mut c, "truncated body");
    // Random bytes, from a fixed seed.
    let mut seed = 0x2545_f491_4f6c_dd1du64;
    let junk: Vec<u8> = (0..4096)
        .map(|_| {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed as u8
        })
        .collect();
    let mut c = RawClient::connect(&node.addr);
    let _ = c.write_raw(&junk);
    assert_closed(&mut c, "random bytes");
    // The connection opened before all this still works.
    let m: MetadataResponse = other.call(
        ApiKey::Metadata,
        12,
        &MetadataRequest {
            topics: None,
            ..Default::default()
        },
    );
    assert!(m.topics.iter().any(|t| t.name.as_deref() == Some("kept")));
    assert_healthy(&node.addr);
}

#[test]
fn array_claiming_two_billion_elements_is_refused_quickly() {
    let node = setup();
    let mut c = RawClient::connect(&node.addr);
    let mut f = BytesMut::new();
    f.put_i16(3); // Metadata
    f.put_i16(1);
    f.put_i32(9);
    f.put_i16(-1);
    f.put_i32(i32::MAX); // topics array length
    f.put_i16(1);
    f.put_slice(b"x");
    let mut frame = BytesMut::new();
    frame.put_i32(f.len() as i32);
    frame.put_slice(&f);
    c.write_raw(&frame).unwrap();
    assert_closed(&mut c, "2^31-element array");
    assert_healthy(&node.addr);
}

#[test]
fn unknown_api_key_and_unsupported_versions() {
    let node = setup();
    // Unknown api key: closed, as Kafka does for requests it cannot parse.
    let mut c = RawClient::connect(&node.addr);
    let mut f = BytesMut::new();
    f.put_i16(999);
    f.put_i16(0);
    f.put_i32(1);
    f.put_i16(-1);
    let mut frame = BytesMut::new();
    frame.put_i32(f.len() as i32);
    frame.put_slice(&f);
    c.write_raw(&frame).unwrap();
    assert_closed(&mut c, "unknown api key");
    // Produce v2 (before the v2 record format) is not served: closed.
    let mut c = RawClient::connect(&node.addr);
    c.send(
        ApiKey::Produce,
        2,
        &ProduceRequest {
            acks: 1,
            timeout_ms: 1000,
            ..Default::default()
        },
    );
    assert_closed(&mut c, "produce v2");
    // A version the schemas mark unstable (EndTxn v5, KIP-890) is not served: closed too.
    let mut c = RawClient::connect(&node.addr);
    c.send(
        ApiKey::EndTxn,
        5,
        &sluice_protocol::messages::EndTxnRequest::default(),
    );
    assert_closed(&mut c, "unserved api version");
    // ApiVersions with a version from the future: a v0 answer with UNSUPPORTED_VERSION
    // and our ranges, so the client can retry.
    let mut c = RawClient::connect(&node.addr);
    let mut f = BytesMut::new();
    f.put_i16(18);
    f.put_i16(99);
    f.put_i32(42);
    f.put_i16(-1);
    f.put_u8(0); // header v2 tagged fields, as a future client would send
    let mut frame = BytesMut::new();
    frame.put_i32(f.len() as i32);
    frame.put_slice(&f);
    c.write_raw(&frame).unwrap();
    let mut body = c
        .read_frame()
        .expect("ApiVersions answers an unknown version");
    assert_eq!(&body[..4], &42i32.to_be_bytes());
    bytes::Buf::advance(&mut body, 4);
    let v = <ApiVersionsResponse as sluice_protocol::codec::Decode>::decode(&mut body, 0).unwrap();
    assert_eq!(v.error_code, ErrorCode::UnsupportedVersion.code());
    assert!(v
        .api_keys
        .iter()
        .any(|k| k.api_key == 18 && k.max_version == 4));
    assert_healthy(&node.addr);
}

#[test]
fn invalid_topic_names_get_invalid_topic_exception() {
    let node = setup();
    let mut c = RawClient::connect(&node.addr);
    for bad in ["bad name", "..", "x/y", &"n".repeat(250)] {
        assert_eq!(
            create(&mut c, bad, &[]),
            ErrorCode::InvalidTopicException.code(),
            "{bad}"
        );
    }
    let m: MetadataResponse = c.call(
        ApiKey::Metadata,
        12,
        &MetadataRequest {
            topics: Some(vec![MetadataRequestTopic {
                name: Some("no way".into()),
                ..Default::default()
            }]),
            allow_auto_topic_creation: true,
            ..Default::default()
        },
    );
    assert_eq!(
        m.topics[0].error_code,
        ErrorCode::InvalidTopicException.code()
    );
    assert_healthy(&node.addr);
}

#[test]
fn bad_batches_get_their_kafka_error_codes() {
    let node = setup();
    let mut c = RawClient::connect(&node.addr);
    assert_eq!(create(&mut c, "small", &[("max.message.bytes", "1000")]), 0);

    // Bad CRC.
    let mut bad = BytesMut::from(&batch(&[b"flip me"])[..]);
    let last = bad.len() - 1;
    bad[last] ^= 0x55;
    assert_eq!(
        produce(&mut c, "kept", bad.freeze()).0,
        ErrorCode::CorruptMessage.code()
    );

    // Over max.message.bytes.
    assert_eq!(
        produce(&mut c, "small", batch(&[&vec![b'z'; 2000]])).0,
        ErrorCode::MessageTooLarge.code()
    );
    assert_eq!(
        produce(&mut c, "small", batch(&[&vec![b'z'; 500]])),
        (0, 0),
        "a batch under the limit is fine"
    );

    // Timestamps two hours ahead (default after.max.ms is 1 h) and, with a topic
    // bound, too far behind.
    assert_eq!(
        produce(&mut c, "kept", batch_at(now_ms() + 7_200_000, b"future")).0,
        ErrorCode::InvalidTimestamp.code()
    );
    assert_eq!(
        create(
            &mut c,
            "recent",
            &[("message.timestamp.before.max.ms", "60000")]
        ),
        0
    );
    assert_eq!(
        produce(&mut c, "recent", batch_at(now_ms() - 3_600_000, b"old")).0,
        ErrorCode::InvalidTimestamp.code()
    );

    // Unknown topic: no auto-creation on produce.
    assert_eq!(
        produce(&mut c, "never-created", batch(&[b"x"])).0,
        ErrorCode::UnknownTopicOrPartition.code()
    );
    let m: MetadataResponse = c.call(
        ApiKey::Metadata,
        12,
        &MetadataRequest {
            topics: Some(vec![MetadataRequestTopic {
                name: Some("never-created".into()),
                ..Default::default()
            }]),
            allow_auto_topic_creation: false,
            ..Default::default()
        },
    );
    assert_eq!(
        m.topics[0].error_code,
        ErrorCode::UnknownTopicOrPartition.code()
    );

    // Fetch beyond the log end.
    assert_eq!(
        fetch(&mut c, "kept", 1000).0,
        ErrorCode::OffsetOutOfRange.code()
    );

    // Nothing above was appended to "kept": still exactly one record.
    let (code, records) = fetch(&mut c, "kept", 0);
    assert_eq!(code, 0);
    let header = sluice_protocol::records::RecordBatchHeader::parse(&records).unwrap();
    assert_eq!(
        (
            header.base_offset,
            header.records_count,
            header.total_size()
        ),
        (0, 1, records.len())
    );
    assert_healthy(&node.addr);
}
