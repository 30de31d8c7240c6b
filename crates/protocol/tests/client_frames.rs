//! Request frames that real clients sent (librdkafka through the `rdkafka` crate, kcat's
//! older librdkafka, kafka-python), recorded by a proxy in front of a running broker;
//! see tests/data/client_frames/README.md. Each must decode completely with the values
//! the capturing scenario used, and re-encode to the very same bytes.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};

use bytes::{Bytes, BytesMut};
use sluice_protocol::api::{decode_request, RequestBody};
use sluice_protocol::codec::Uuid;
use sluice_protocol::frame::{decode_request_header, encode_request, take_frame};
use sluice_protocol::records::{decode_records, BatchIter};

const TOPIC: &str = "capture";
const ADMIN_TOPIC: &str = "capture-admin";

fn data_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/client_frames")
}

fn from_hex(text: &str) -> Vec<u8> {
    let digits: Vec<u8> = text.bytes().filter(|b| !b.is_ascii_whitespace()).collect();
    assert!(digits.len().is_multiple_of(2), "odd number of hex digits");
    digits
        .chunks(2)
        .map(|p| u8::from_str_radix(std::str::from_utf8(p).unwrap(), 16).expect("hex digit"))
        .collect()
}

/// What a file name says: `<client>-<api>-v<version>[-<codec>].hex`.
struct Name {
    client: &'static str,
    api: String,
    version: i16,
    codec: Option<String>,
}

fn parse_name(file: &str) -> Name {
    let stem = file.strip_suffix(".hex").unwrap();
    let client = ["librdkafka", "kafka-python", "kcat"]
        .into_iter()
        .find(|c| stem.starts_with(&format!("{c}-")))
        .unwrap_or_else(|| panic!("{file}: unknown client"));
    let parts: Vec<&str> = stem[client.len() + 1..].split('-').collect();
    let at = parts
        .iter()
        .position(|p| {
            p.len() > 1 && p.starts_with('v') && p[1..].bytes().all(|b| b.is_ascii_digit())
        })
        .unwrap_or_else(|| panic!("{file}: no version"));
    let codec = (at + 1 < parts.len()).then(|| parts[at + 1..].join("-"));
    Name {
        client,
        api: parts[..at].join("-"),
        version: parts[at][1..].parse().unwrap(),
        codec,
    }
}

fn kebab(name: &str) -> String {
    let mut s = String::new();
    for (i, ch) in name.chars().enumerate() {
        if ch.is_ascii_uppercase() && i > 0 {
            s.push('-');
        }
        s.push(ch.to_ascii_lowercase());
    }
    s
}

/// The scenario's record value (tests/tests/capture_client_frames.rs, kafka_python_scenario.py).
fn value(client: &str, codec: &str, i: usize) -> String {
    format!("{client}-{codec}-{i} {}", "sluice ".repeat(20))
}

/// Field checks per API against what the capturing scenario did.
fn spot_check(file: &str, name: &Name, body: &RequestBody) {
    let ctx = file;
    match body {
        RequestBody::ApiVersions(r) => {
            if name.version >= 3 {
                let want = if name.client == "kafka-python" {
                    "kafka-python"
                } else {
                    "librdkafka"
                };
                assert_eq!(r.client_software_name, want, "{ctx}");
                assert!(!r.client_software_version.is_empty(), "{ctx}");
            }
        }
        RequestBody::Metadata(r) => {
            for t in r.topics.iter().flatten() {
                let ok = t
                    .name
                    .as_deref()
                    .is_some_and(|n| n == TOPIC || n == ADMIN_TOPIC)
                    || t.topic_id != Uuid::ZERO;
                assert!(ok, "{ctx}: unexpected topic {t:?}");
            }
        }
        RequestBody::Produce(r) => {
            assert_eq!(
                (r.acks, r.transactional_id.as_deref()),
                (-1, None),
                "{ctx}: acks=all"
            );
            assert!(r.timeout_ms > 0, "{ctx}");
            assert_eq!(r.topic_data.len(), 1, "{ctx}");
            assert_eq!(r.topic_data[0].name, TOPIC, "{ctx}");
            let p = &r.topic_data[0].partition_data[0];
            assert_eq!(p.index, 0, "{ctx}");
            let records = p.records.clone().expect("records");
            let batches: Vec<_> = BatchIter::new(&records)
                .collect::<Result<_, _>>()
                .expect("well-formed batches");
            assert_eq!(batches.len(), 1, "{ctx}: one batch per partition");
            let (h, _) = batches[0];
            let codec = name.codec.as_deref().expect("produce file names its codec");
            assert_eq!(h.compression().unwrap().name(), codec, "{ctx}");
            sluice_protocol::records::verify_crc(&records).expect("client CRC is valid");
            let values: Vec<String> = decode_records(&records, 1 << 20)
                .expect("records decode")
                .into_iter()
                .map(|r| String::from_utf8(r.value.unwrap().to_vec()).unwrap())
                .collect();
            let want: Vec<String> = (0..3).map(|i| value(name.client, codec, i)).collect();
            assert_eq!(values, want, "{ctx}");
        }
        RequestBody::Fetch(r) => {
            assert_eq!(r.topics.len(), 1, "{ctx}");
            let t = &r.topics[0];
            if name.version >= 13 {
                assert_ne!(t.topic_id, Uuid::ZERO, "{ctx}: v13+ names topics by id");
            } else {
                assert_eq!(t.topic, TOPIC, "{ctx}");
            }
            assert_eq!(t.partitions[0].partition, 0, "{ctx}");
            assert!(
                t.partitions[0].fetch_offset >= 0 && t.partitions[0].partition_max_bytes > 0,
                "{ctx}"
            );
            assert!(r.max_bytes > 0 && r.max_wait_ms >= 0, "{ctx}");
        }
        RequestBody::ListOffsets(r) => {
            assert_eq!(r.replica_id, -1, "{ctx}: a consumer");
            assert_eq!(r.topics[0].name, TOPIC, "{ctx}");
            assert_eq!(r.topics[0].partitions[0].partition_index, 0, "{ctx}");
        }
        RequestBody::CreateTopics(r) => {
            let t = r
                .topics
                .iter()
                .find(|t| t.name == ADMIN_TOPIC)
                .expect("creates capture-admin");
            assert_eq!((t.num_partitions, t.replication_factor), (3, 1), "{ctx}");
            let cfg: Vec<(&str, Option<&str>)> = t
                .configs
                .iter()
                .map(|c| (c.name.as_str(), c.value.as_deref()))
                .collect();
            assert_eq!(cfg, vec![("retention.ms", Some("3600000"))], "{ctx}");
            assert!(!r.validate_only, "{ctx}");
        }
        RequestBody::CreatePartitions(r) => {
            assert_eq!(
                (r.topics[0].name.as_str(), r.topics[0].count),
                (ADMIN_TOPIC, 4),
                "{ctx}"
            );
        }
        RequestBody::DeleteTopics(r) => {
            let names: Vec<&str> = if name.version >= 6 {
                r.topics.iter().filter_map(|t| t.name.as_deref()).collect()
            } else {
                r.topic_names.iter().map(String::as_str).collect()
            };
            assert_eq!(names, vec![ADMIN_TOPIC], "{ctx}");
        }
        RequestBody::DescribeConfigs(r) => {
            assert_eq!(
                (
                    r.resources[0].resource_type,
                    r.resources[0].resource_name.as_str()
                ),
                (2, TOPIC),
                "{ctx}"
            );
        }
        RequestBody::AlterConfigs(r) => {
            let res = &r.resources[0];
            assert_eq!(
                (res.resource_type, res.resource_name.as_str()),
                (2, TOPIC),
                "{ctx}"
            );
            let cfg: Vec<(&str, Option<&str>)> = res
                .configs
                .iter()
                .map(|c| (c.name.as_str(), c.value.as_deref()))
                .collect();
            assert_eq!(cfg, vec![("retention.ms", Some("7200000"))], "{ctx}");
        }
        RequestBody::IncrementalAlterConfigs(r) => {
            let res = &r.resources[0];
            assert_eq!(
                (res.resource_type, res.resource_name.as_str()),
                (2, TOPIC),
                "{ctx}"
            );
            let c = res
                .configs
                .iter()
                .find(|c| c.name == "retention.ms")
                .expect("retention.ms");
            assert_eq!(
                (c.config_operation, c.value.as_deref()),
                (0, Some("7200000")),
                "{ctx}: SET"
            );
        }
        RequestBody::DeleteRecords(r) => {
            assert_eq!(r.topics[0].name, TOPIC, "{ctx}");
            let p = &r.topics[0].partitions[0];
            assert_eq!(p.partition_index, 0, "{ctx}");
            assert!(p.offset == 0 || p.offset == 1, "{ctx}: {}", p.offset);
        }
        RequestBody::DescribeCluster(_) | RequestBody::DescribeLogDirs(_) => {}
        other => panic!("{ctx}: no spot checks for {:?}", other.api_key()),
    }
}

#[test]
fn client_frames_decode_completely_and_reencode_identically() {
    let mut files: Vec<String> = std::fs::read_dir(data_dir())
        .expect("client_frames dir")
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|n| n.ends_with(".hex"))
        .collect();
    files.sort();
    assert!(
        files.len() >= 30,
        "expected the committed captures, found {}",
        files.len()
    );
    let mut clients = std::collections::BTreeSet::new();
    for file in &files {
        let name = parse_name(file);
        clients.insert(name.client);
        let wire = from_hex(&std::fs::read_to_string(data_dir().join(file)).unwrap());
        // The size prefix covers exactly the rest of the file.
        let mut buf = BytesMut::from(&wire[..]);
        let mut frame = take_frame(&mut buf, 1 << 20)
            .expect("frame size")
            .expect("whole frame");
        assert!(buf.is_empty(), "{file}: bytes after the frame");
        let header =
            decode_request_header(&mut frame).unwrap_or_else(|e| panic!("{file}: header: {e}"));
        let api = header
            .api()
            .unwrap_or_else(|| panic!("{file}: api key {}", header.api_key));
        assert_eq!(
            (kebab(api.name()), header.api_version),
            (name.api.clone(), name.version),
            "{file}"
        );
        assert_eq!(
            header.client_id.as_deref(),
            Some(format!("capture-{}", name.client).as_str()),
            "{file}"
        );
        let body = decode_request(api, header.api_version, &mut frame)
            .unwrap_or_else(|e| panic!("{file}: body: {e}"));
        assert!(
            frame.is_empty(),
            "{file}: {} bytes left after the body",
            frame.len()
        );
        assert_eq!(body.api_key(), api);
        spot_check(file, &name, &body);
        // Encoding what was decoded gives back the client's bytes.
        let again: Bytes = encode_request(
            api,
            header.api_version,
            header.correlation_id,
            header.client_id.as_deref(),
            &body,
        )
        .unwrap_or_else(|e| panic!("{file}: encode: {e}"));
        assert_eq!(&again[..], &wire[..], "{file}: re-encoding differs");
    }
    assert_eq!(
        clients.len(),
        3,
        "frames from librdkafka, kcat and kafka-python"
    );
    // Produce with every codec a client sent (librdkafka only sends lz4 to brokers that
    // advertise FindCoordinator; kafka-python's lz4 frame covers it).
    for codec in ["none", "gzip", "snappy", "lz4", "zstd"] {
        assert!(
            files
                .iter()
                .any(|f| f.contains("-produce-") && f.ends_with(&format!("-{codec}.hex"))),
            "{codec}"
        );
    }
}
