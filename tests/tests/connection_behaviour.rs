//! How the broker treats a connection as a whole, with raw clients: acks=0 produces get
//! no answer, pipelined requests are answered in order, fetches long-poll until data
//! arrives or max_wait passes, KIP-74 lets an oversized first batch through, the
//! connection limit holds, and topics are auto-created only where Kafka would.

use std::time::{Duration, Instant};

use bytes::Bytes;
use sluice_protocol::api::ApiKey;
use sluice_protocol::codec::{Decode, Uuid};
use sluice_protocol::compression::Compression;
use sluice_protocol::error::ErrorCode;
use sluice_protocol::messages::{
    ApiVersionsRequest, ApiVersionsResponse, MetadataRequest, MetadataResponse, ProduceResponse,
};
use sluice_system_tests::cluster::free_ports;
use sluice_system_tests::raw::RawClient;
use sluice_system_tests::wire::{
    batch, batch_at, batch_bases, fetch_at, fetch_one, fetch_request, metadata, must_create,
    now_ms, partition_count, produce_ok, produce_request, produce_v, records, topic_names, values,
};
use sluice_system_tests::{wait_for, Sluice};

fn api_versions_req() -> ApiVersionsRequest {
    ApiVersionsRequest {
        client_software_name: "sluice-tests".into(),
        client_software_version: "1".into(),
    }
}

/// Splits a response frame into its correlation id and the body after a header of
/// `header_version` (v1 ends with an empty tagged-field byte).
fn split_response(mut frame: Bytes, header_version: i16) -> (i32, Bytes) {
    let corr = i32::from_be_bytes(frame[..4].try_into().unwrap());
    let body = frame.split_off(if header_version >= 1 { 5 } else { 4 });
    (corr, body)
}

// ---------------------------------------------------------------------------------
// (a) acks=0
// ---------------------------------------------------------------------------------

#[test]
fn acks_zero_produce_gets_no_response() {
    let node = Sluice::start(&[]);
    let mut c = RawClient::connect(&node.addr);
    must_create(&mut c, "fire", 1);
    for v in [3, 8, 9, 11] {
        let produce_corr = c.send(
            ApiKey::Produce,
            v,
            &produce_request("fire", 0, 0, batch(&[format!("v{v}").as_bytes()])),
        );
        let versions_corr = c.send(ApiKey::ApiVersions, 3, &api_versions_req());
        // The first frame back answers the ApiVersions: the produce got none.
        let (corr, mut body) = split_response(c.read_frame().expect("a response"), 0);
        assert_ne!(corr, produce_corr, "v{v}: acks=0 must not be answered");
        assert_eq!(corr, versions_corr, "v{v}");
        let r = ApiVersionsResponse::decode(&mut body, 3).unwrap();
        assert_eq!(r.error_code, 0);
    }
    // Every acks=0 record was stored, in order.
    assert_eq!(
        values(&fetch_at(&mut c, "fire", 0, 0).records.unwrap()),
        vec!["v3", "v8", "v9", "v11"]
    );
}

#[test]
fn acks_zero_produce_that_fails_closes_the_connection() {
    let node = Sluice::start(&[]);
    let mut other = RawClient::connect(&node.addr);
    must_create(&mut other, "exists", 1);
    for (topic, records) in [
        ("missing", batch(&[b"x"])),
        ("exists", Bytes::from_static(b"not a record batch at all")),
    ] {
        let mut c = RawClient::connect(&node.addr);
        c.send(ApiKey::Produce, 9, &produce_request(topic, 0, 0, records));
        c.send(ApiKey::ApiVersions, 3, &api_versions_req());
        // The producer learns of the failure the only way it can: the broker hangs up
        // (as Kafka does) instead of answering anything on this connection.
        let start = Instant::now();
        assert!(c.is_closed_by_peer(), "{topic}: connection closed");
        assert!(start.elapsed() < Duration::from_secs(5));
    }
    // Other connections are unaffected and nothing was created or appended.
    assert_eq!(topic_names(&mut other), vec!["exists"]);
    assert_eq!(fetch_at(&mut other, "exists", 0, 0).high_watermark, 0);
}

// ---------------------------------------------------------------------------------
// (b) pipelining
// ---------------------------------------------------------------------------------

#[test]
fn fifty_pipelined_requests_are_answered_in_order() {
    let node = Sluice::start(&[]);
    let mut c = RawClient::connect(&node.addr);
    must_create(&mut c, "pipe", 1);
    // Written back to back before reading anything: even i are Produce acks=1 (v9,
    // flexible header), odd i are Metadata v1 (classic header).
    let mut sent = Vec::new();
    for i in 0..50 {
        let corr = if i % 2 == 0 {
            c.send(
                ApiKey::Produce,
                9,
                &produce_request("pipe", 0, 1, batch(&[format!("m{i}").as_bytes()])),
            )
        } else {
            c.send(
                ApiKey::Metadata,
                1,
                &MetadataRequest {
                    topics: None,
                    ..Default::default()
                },
            )
        };
        sent.push(corr);
    }
    let mut offsets = Vec::new();
    for (i, want) in sent.iter().enumerate() {
        let frame = c.read_frame().expect("response");
        if i % 2 == 0 {
            let (corr, mut body) = split_response(frame, 1);
            assert_eq!(corr, *want, "response {i} in request order");
            let r = ProduceResponse::decode(&mut body, 9).unwrap();
            let p = &r.responses[0].partition_responses[0];
            assert_eq!(p.error_code, 0);
            offsets.push(p.base_offset);
        } else {
            let (corr, mut body) = split_response(frame, 0);
            assert_eq!(corr, *want, "response {i} in request order");
            let r = MetadataResponse::decode(&mut body, 1).unwrap();
            assert!(body.is_empty());
            assert_eq!(r.topics.len(), 1);
        }
    }
    assert_eq!(
        offsets,
        (0..25).collect::<Vec<i64>>(),
        "produce offsets increase in request order"
    );
    let want: Vec<String> = (0..50).step_by(2).map(|i| format!("m{i}")).collect();
    assert_eq!(
        values(&fetch_at(&mut c, "pipe", 0, 0).records.unwrap()),
        want
    );
}

// ---------------------------------------------------------------------------------
// (c) long polling
// ---------------------------------------------------------------------------------

#[test]
fn parked_fetch_returns_as_soon_as_another_connection_produces() {
    let node = Sluice::start(&[]);
    let mut c = RawClient::connect(&node.addr);
    let id = must_create(&mut c, "poll", 1);
    let addr = node.addr.clone();
    let producer = std::thread::spawn(move || {
        // Give the fetch time to park; the assertions below do not depend on this
        // delay, only on the fetch returning early with the record.
        std::thread::sleep(Duration::from_millis(300));
        let mut p = RawClient::connect(&addr);
        produce_ok(&mut p, "poll", 0, &[b"wake up"])
    });
    let mut req = fetch_request("poll", Uuid::ZERO, 0, 0);
    req.max_wait_ms = 10_000;
    req.min_bytes = 1;
    let start = Instant::now();
    let p = fetch_one(&mut c, 12, &req);
    let elapsed = start.elapsed();
    assert_eq!(p.error_code, 0);
    assert_eq!(
        values(p.records.as_ref().unwrap()),
        vec!["wake up"],
        "the record is in the answer"
    );
    assert!(
        elapsed < Duration::from_secs(3),
        "returned after {elapsed:?}, not after max_wait"
    );
    assert!(
        elapsed >= Duration::from_millis(250),
        "waited for the produce ({elapsed:?})"
    );
    assert_eq!(producer.join().unwrap(), 0);
    // By topic id (v13+) the same.
    let addr = node.addr.clone();
    let producer = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(300));
        let mut p = RawClient::connect(&addr);
        produce_ok(&mut p, "poll", 0, &[b"again"])
    });
    let mut req = fetch_request("", id, 0, 1);
    req.max_wait_ms = 10_000;
    req.min_bytes = 1;
    let start = Instant::now();
    let p = fetch_one(&mut c, 17, &req);
    assert_eq!(values(p.records.as_ref().unwrap()), vec!["again"]);
    assert!(start.elapsed() < Duration::from_secs(3));
    assert_eq!(producer.join().unwrap(), 1);
}

#[test]
fn parked_fetch_with_no_produce_returns_empty_after_max_wait() {
    let node = Sluice::start(&[]);
    let mut c = RawClient::connect(&node.addr);
    must_create(&mut c, "quiet", 1);
    for v in [4, 12, 17] {
        let id = if v >= 13 {
            metadata(&mut c, 12, Some(&["quiet"]), false).topics[0].topic_id
        } else {
            Uuid::ZERO
        };
        let mut req = fetch_request(if v >= 13 { "" } else { "quiet" }, id, 0, 0);
        req.max_wait_ms = 500;
        req.min_bytes = 1;
        let start = Instant::now();
        let p = fetch_one(&mut c, v, &req);
        let elapsed = start.elapsed();
        assert_eq!((p.error_code, p.high_watermark), (0, 0), "v{v}");
        assert!(p.records.as_ref().unwrap().is_empty(), "v{v}");
        assert!(
            elapsed >= Duration::from_millis(450),
            "v{v}: waited max_wait ({elapsed:?})"
        );
        assert!(elapsed < Duration::from_secs(3), "v{v}: {elapsed:?}");
    }
    // min_bytes=0 never waits.
    let mut req = fetch_request("quiet", Uuid::ZERO, 0, 0);
    req.max_wait_ms = 5_000;
    req.min_bytes = 0;
    let start = Instant::now();
    fetch_one(&mut c, 12, &req);
    assert!(start.elapsed() < Duration::from_secs(1));
}

#[test]
fn min_bytes_counts_bytes_across_produces() {
    let node = Sluice::start(&[]);
    let mut c = RawClient::connect(&node.addr);
    must_create(&mut c, "accum", 1);
    let addr = node.addr.clone();
    // Three small produces; the fetch wants more bytes than the first two hold.
    let producer = std::thread::spawn(move || {
        let mut p = RawClient::connect(&addr);
        for i in 0..3 {
            std::thread::sleep(Duration::from_millis(150));
            produce_ok(&mut p, "accum", 0, &[&[i as u8; 100]]);
        }
    });
    let mut req = fetch_request("accum", Uuid::ZERO, 0, 0);
    req.max_wait_ms = 10_000;
    req.min_bytes = 400; // one ~170-byte batch each: met by the third
    let start = Instant::now();
    let p = fetch_one(&mut c, 12, &req);
    producer.join().unwrap();
    assert_eq!(records(p.records.as_ref().unwrap()).len(), 3);
    assert!(
        start.elapsed() < Duration::from_secs(3),
        "{:?}",
        start.elapsed()
    );
}

// ---------------------------------------------------------------------------------
// (d) KIP-74
// ---------------------------------------------------------------------------------

#[test]
fn kip74_first_batch_is_returned_whole_even_over_the_limits() {
    let node = Sluice::start(&[]);
    let mut c = RawClient::connect(&node.addr);
    must_create(&mut c, "big", 1);
    let big = vec![b'x'; 3000];
    let first = batch_at(
        Compression::None,
        &[(now_ms(), &big), (now_ms(), &big), (now_ms(), &big)],
    );
    assert_eq!(produce_v(&mut c, 9, "big", 0, first.clone()).base_offset, 0);
    assert_eq!(produce_ok(&mut c, "big", 0, &[b"small"]), 3);
    for (partition_max, request_max) in [(100, 1 << 20), (1 << 20, 100), (1, 1)] {
        let mut req = fetch_request("big", Uuid::ZERO, 0, 0);
        req.topics[0].partitions[0].partition_max_bytes = partition_max;
        req.max_bytes = request_max;
        let p = fetch_one(&mut c, 12, &req);
        let set = p.records.unwrap();
        // The whole first batch (and only it), so a consumer can always progress.
        assert_eq!(
            set.len(),
            first.len(),
            "limits {partition_max}/{request_max}"
        );
        assert_eq!(batch_bases(&set), vec![0]);
        assert_eq!(records(&set).len(), 3);
    }
    // With room for both, both come back.
    let p = fetch_at(&mut c, "big", 0, 0);
    assert_eq!(batch_bases(p.records.as_ref().unwrap()), vec![0, 3]);
}

#[test]
fn fetch_from_inside_a_batch_returns_the_batch_from_its_start() {
    let node = Sluice::start(&[]);
    let mut c = RawClient::connect(&node.addr);
    must_create(&mut c, "mid", 1);
    assert_eq!(produce_ok(&mut c, "mid", 0, &[b"a", b"b", b"c", b"d"]), 0);
    assert_eq!(produce_ok(&mut c, "mid", 0, &[b"e", b"f"]), 4);
    for (from, bases) in [
        (0, vec![0, 4]),
        (2, vec![0, 4]),
        (3, vec![0, 4]),
        (4, vec![4]),
        (5, vec![4]),
    ] {
        let set = fetch_at(&mut c, "mid", 0, from).records.unwrap();
        // Batches are never split: the consumer skips records before its offset.
        assert_eq!(batch_bases(&set), bases, "from {from}");
        let offsets: Vec<i64> = records(&set).iter().map(|r| r.offset).collect();
        assert_eq!(offsets.first(), Some(&bases[0]), "from {from}");
        assert_eq!(offsets.last(), Some(&5), "from {from}");
    }
}

// ---------------------------------------------------------------------------------
// (e) --max-connections
// ---------------------------------------------------------------------------------

fn healthy(c: &mut RawClient) -> bool {
    let r: ApiVersionsResponse = c.call(ApiKey::ApiVersions, 3, &api_versions_req());
    r.error_code == 0
}

#[test]
fn max_connections_closes_the_fourth_and_keeps_the_first_three() {
    let node = Sluice::start(&["--max-connections", "3"]);
    let mut open: Vec<RawClient> = (0..3).map(|_| RawClient::connect(&node.addr)).collect();
    for c in &mut open {
        assert!(healthy(c));
    }
    let mut fourth = RawClient::connect(&node.addr);
    fourth
        .stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    // Accepted by TCP, then closed at once without reading a request.
    let _ = fourth.write_raw(&[0, 0, 0, 0]);
    assert!(
        fourth.is_closed_by_peer(),
        "the fourth connection is closed"
    );
    for c in &mut open {
        assert!(healthy(c), "the first three keep working");
    }
    // Closing one frees a slot (the release is asynchronous: bounded retry).
    drop(open.pop());
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut replacement = loop {
        let mut c = RawClient::connect(&node.addr);
        c.stream
            .set_read_timeout(Some(Duration::from_secs(5)))
            .unwrap();
        c.send(ApiKey::ApiVersions, 3, &api_versions_req());
        if c.read_frame().is_some() {
            break c;
        }
        assert!(
            Instant::now() < deadline,
            "a slot was freed by the closed connection"
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(healthy(&mut replacement));
    for c in &mut open {
        assert!(healthy(c));
    }
}

/// A connection the broker closed without reading from it (over a limit).
fn refused(mut c: RawClient) -> bool {
    c.stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    let _ = c.write_raw(&[0, 0, 0, 0]);
    c.is_closed_by_peer()
}

#[test]
fn max_connections_per_ip_counts_each_client_ip_with_its_override() {
    // 127.0.0.1 may hold 3 connections (its override), any other address 1.
    let node = Sluice::start(&[
        "--max-connections-per-ip",
        "1",
        "--max-connections-per-ip-overrides",
        "127.0.0.1:3",
    ]);
    let mut local: Vec<RawClient> = (0..3).map(|_| RawClient::connect(&node.addr)).collect();
    for c in &mut local {
        assert!(healthy(c));
    }
    assert!(
        refused(RawClient::connect(&node.addr)),
        "a fourth connection from 127.0.0.1 is closed"
    );
    // Another client host has its own count, at the default limit.
    let other: std::net::IpAddr = "127.0.0.2".parse().unwrap();
    let mut first = RawClient::connect_from(&node.addr, other).unwrap();
    assert!(
        healthy(&mut first),
        "127.0.0.2's first connection is served"
    );
    assert!(
        refused(RawClient::connect_from(&node.addr, other).unwrap()),
        "127.0.0.2's second connection is closed"
    );
    for c in &mut local {
        assert!(
            healthy(c),
            "the flood from one IP does not touch the others"
        );
    }
    // A closed connection gives its IP's slot back (released asynchronously).
    drop(first);
    wait_for(Duration::from_secs(5), "127.0.0.2's slot back", || {
        let mut c = RawClient::connect_from(&node.addr, other).unwrap();
        c.stream
            .set_read_timeout(Some(Duration::from_secs(5)))
            .unwrap();
        c.send(ApiKey::ApiVersions, 3, &api_versions_req());
        c.read_frame().is_some()
    });
}

#[test]
fn a_listener_limit_holds_for_that_listener_only() {
    let ports = free_ports(2);
    let (a, b) = (ports[0], ports[1]);
    let node = Sluice::start(&[
        "--listeners",
        &format!("ONE://127.0.0.1:{a},TWO://127.0.0.1:{b}"),
        "--listener-max-connections",
        "two=1",
    ]);
    let two = format!("127.0.0.1:{b}");
    let mut held = RawClient::connect(&two);
    assert!(healthy(&mut held));
    assert!(
        refused(RawClient::connect(&two)),
        "TWO takes one connection"
    );
    let mut ones: Vec<RawClient> = (0..3).map(|_| RawClient::connect(&node.addr)).collect();
    for c in &mut ones {
        assert!(healthy(c), "listener ONE is not limited");
    }
    assert!(healthy(&mut held));
}

// ---------------------------------------------------------------------------------
// (f) auto-creation
// ---------------------------------------------------------------------------------

#[test]
fn metadata_auto_creates_with_num_partitions_only_when_allowed() {
    let node = Sluice::start(&["--num-partitions", "3"]);
    let mut c = RawClient::connect(&node.addr);
    let m = metadata(&mut c, 12, Some(&["auto"]), true);
    assert_eq!(m.topics[0].error_code, 0);
    assert_eq!(m.topics[0].partitions.len(), 3, "--num-partitions 3");
    assert_ne!(m.topics[0].topic_id, Uuid::ZERO);
    assert_eq!(partition_count(&mut c, "auto"), Some(3));
    // The request may forbid it (v4+).
    let m = metadata(&mut c, 12, Some(&["not-allowed"]), false);
    assert_eq!(
        m.topics[0].error_code,
        ErrorCode::UnknownTopicOrPartition.code()
    );
    assert_eq!(topic_names(&mut c), vec!["auto"]);
    // The created topic takes records on every partition.
    for p in 0..3 {
        assert_eq!(produce_ok(&mut c, "auto", p, &[b"x"]), 0);
    }
}

#[test]
fn auto_create_topics_enable_false_never_creates() {
    let node = Sluice::start(&[
        "--auto-create-topics-enable",
        "false",
        "--num-partitions",
        "3",
    ]);
    let mut c = RawClient::connect(&node.addr);
    for v in [0, 3, 4, 12] {
        let m = metadata(&mut c, v, Some(&["wanted"]), true);
        assert_eq!(
            m.topics[0].error_code,
            ErrorCode::UnknownTopicOrPartition.code(),
            "v{v}"
        );
    }
    assert!(topic_names(&mut c).is_empty());
}

#[test]
fn produce_to_a_missing_topic_never_creates_it() {
    let node = Sluice::start(&["--num-partitions", "3"]);
    let mut c = RawClient::connect(&node.addr);
    for v in [3, 9, 11] {
        let p = produce_v(&mut c, v, "ghost", 0, batch(&[b"boo"]));
        assert_eq!(
            p.error_code,
            ErrorCode::UnknownTopicOrPartition.code(),
            "v{v}"
        );
        assert_eq!(p.base_offset, -1);
    }
    assert!(
        topic_names(&mut c).is_empty(),
        "auto-creation belongs to Metadata only"
    );
    assert_eq!(partition_count(&mut c, "ghost"), None);
}
