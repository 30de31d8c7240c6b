//! Every advertised version of the data-path APIs (Produce, Fetch, ListOffsets,
//! OffsetForLeaderEpoch, DeleteRecords), sent raw at that exact version with the field
//! that version added set or read back, asserting offsets, values and error codes.

use bytes::{Bytes, BytesMut};
use sluice_protocol::api::ApiKey;
use sluice_protocol::codec::Uuid;
use sluice_protocol::compression::Compression;
use sluice_protocol::error::ErrorCode;
use sluice_protocol::messages::delete_records_request::{
    DeleteRecordsPartition, DeleteRecordsTopic,
};
use sluice_protocol::messages::fetch_request::ReplicaState;
use sluice_protocol::messages::list_offsets_request::{ListOffsetsPartition, ListOffsetsTopic};
use sluice_protocol::messages::offset_for_leader_epoch_request::{
    OffsetForLeaderPartition, OffsetForLeaderTopic,
};
use sluice_protocol::messages::offset_for_leader_epoch_response::EpochEndOffset;
use sluice_protocol::messages::{
    DeleteRecordsRequest, DeleteRecordsResponse, FetchRequest, FetchResponse, ListOffsetsRequest,
    ListOffsetsResponse, OffsetForLeaderEpochRequest, OffsetForLeaderEpochResponse,
    ProduceResponse,
};
use sluice_protocol::records::BatchIter;
use sluice_system_tests::raw::RawClient;
use sluice_system_tests::wire::{
    batch, batch_at, create_topic, delete_topic, fetch_at, fetch_one, fetch_request, list_offset,
    must_create, now_ms, produce_ok, produce_request, produce_v, records, values,
};
use sluice_system_tests::Sluice;

fn delete_records(
    c: &mut RawClient,
    version: i16,
    topic: &str,
    partition: i32,
    offset: i64,
) -> (i16, i64) {
    let req = DeleteRecordsRequest {
        topics: vec![DeleteRecordsTopic {
            name: topic.into(),
            partitions: vec![DeleteRecordsPartition {
                partition_index: partition,
                offset,
            }],
        }],
        timeout_ms: 10_000,
    };
    let resp: DeleteRecordsResponse = c.call(ApiKey::DeleteRecords, version, &req);
    let p = &resp.topics[0].partitions[0];
    assert_eq!(p.partition_index, partition);
    (p.error_code, p.low_watermark)
}

// ---------------------------------------------------------------------------------
// Produce v3-11
// ---------------------------------------------------------------------------------

#[test]
fn produce_every_version_appends_at_increasing_offsets() {
    let node = Sluice::start(&[]);
    let mut c = RawClient::connect(&node.addr);
    must_create(&mut c, "p", 1);
    let mut want = Vec::new();
    for v in 3..=11i16 {
        let value = format!("v{v}");
        let mut req = produce_request("p", 0, -1, batch(&[value.as_bytes()]));
        // v3 added the transactional id; a non-transactional batch with one is still
        // appended (the id only matters to authorization and transactional batches).
        if v == 3 {
            req.transactional_id = Some("tx-v3".into());
        }
        let resp: ProduceResponse = c.call(ApiKey::Produce, v, &req);
        assert_eq!(resp.throttle_time_ms, 0);
        let p = &resp.responses[0].partition_responses[0];
        assert_eq!((resp.responses[0].name.as_str(), p.index), ("p", 0), "v{v}");
        assert_eq!(p.error_code, 0, "v{v}: {:?}", p.error_message);
        assert_eq!(p.base_offset, i64::from(v - 3), "v{v}");
        assert_eq!(p.log_append_time_ms, -1, "v{v}: CreateTime topic");
        // v5 added the log start offset.
        assert_eq!(p.log_start_offset, if v >= 5 { 0 } else { -1 }, "v{v}");
        // v8 added record errors and the error message: empty on success.
        assert!(
            p.record_errors.is_empty() && p.error_message.is_none(),
            "v{v}"
        );
        // v10 added the current leader (tagged; only sent with NOT_LEADER) and node endpoints.
        assert_eq!(
            (p.current_leader.leader_id, p.current_leader.leader_epoch),
            (-1, -1),
            "v{v}"
        );
        assert!(resp.node_endpoints.is_empty(), "v{v}");
        want.push(value);
    }
    assert_eq!(values(&fetch_at(&mut c, "p", 0, 0).records.unwrap()), want);
}

#[test]
fn produce_reports_log_append_time_when_the_topic_uses_it() {
    let node = Sluice::start(&[]);
    let mut c = RawClient::connect(&node.addr);
    assert_eq!(
        create_topic(
            &mut c,
            "lat",
            1,
            &[("message.timestamp.type", "LogAppendTime")]
        )
        .error_code,
        0
    );
    for v in 3..=11i16 {
        let before = now_ms();
        // A CreateTime an hour old: the broker's clock replaces it.
        let p = produce_v(
            &mut c,
            v,
            "lat",
            0,
            batch_at(Compression::None, &[(before - 3_600_000, b"x")]),
        );
        let after = now_ms();
        assert_eq!(p.error_code, 0, "v{v}");
        assert!(
            (before..=after).contains(&p.log_append_time_ms),
            "v{v}: {} not in [{before}, {after}]",
            p.log_append_time_ms
        );
        let got = records(&fetch_at(&mut c, "lat", 0, p.base_offset).records.unwrap());
        assert_eq!(
            got[0].timestamp, p.log_append_time_ms,
            "v{v}: consumers see the append time"
        );
    }
}

#[test]
fn produce_v5_reports_the_log_start_offset_after_delete_records() {
    let node = Sluice::start(&[]);
    let mut c = RawClient::connect(&node.addr);
    must_create(&mut c, "ls", 1);
    for i in 0..4 {
        produce_ok(&mut c, "ls", 0, &[format!("{i}").as_bytes()]);
    }
    assert_eq!(delete_records(&mut c, 2, "ls", 0, 3), (0, 3));
    for v in 3..=11i16 {
        let p = produce_v(&mut c, v, "ls", 0, batch(&[b"after"]));
        assert_eq!(p.error_code, 0);
        assert_eq!(p.log_start_offset, if v >= 5 { 3 } else { -1 }, "v{v}");
    }
}

/// A valid one-record batch with one CRC-covered byte flipped.
fn corrupt_batch() -> Bytes {
    let mut b = BytesMut::from(&batch(&[b"will be corrupted"])[..]);
    let last = b.len() - 1;
    b[last] ^= 0xff;
    b.freeze()
}

#[test]
fn produce_v8_error_message_for_a_bad_batch() {
    let node = Sluice::start(&[]);
    let mut c = RawClient::connect(&node.addr);
    must_create(&mut c, "bad", 1);
    let two_batches: Bytes = [batch(&[b"a"]), batch(&[b"b"])].concat().into();
    let cases: &[(&str, Bytes, ErrorCode)] = &[
        ("crc mismatch", corrupt_batch(), ErrorCode::CorruptMessage),
        ("two batches", two_batches, ErrorCode::InvalidRecord),
        ("empty record set", Bytes::new(), ErrorCode::InvalidRecord),
    ];
    for v in 3..=11i16 {
        for (what, records, code) in cases {
            let p = produce_v(&mut c, v, "bad", 0, records.clone());
            assert_eq!(p.error_code, code.code(), "v{v} {what}");
            assert_eq!(p.base_offset, -1, "v{v} {what}");
            // v8 added ErrorMessage: the reason travels to the client.
            assert_eq!(
                p.error_message.is_some(),
                v >= 8,
                "v{v} {what}: {:?}",
                p.error_message
            );
        }
    }
    // Nothing was appended.
    assert_eq!(list_offset(&mut c, 1, "bad", 0, -1).offset, 0);
}

#[test]
fn produce_v7_accepts_zstd_and_older_versions_refuse_it() {
    let node = Sluice::start(&[]);
    let mut c = RawClient::connect(&node.addr);
    must_create(&mut c, "z", 1);
    let zstd = batch_at(
        Compression::Zstd,
        &[(now_ms(), b"squeezed"), (now_ms(), b"twice")],
    );
    let mut next = 0;
    for v in 3..=11i16 {
        let p = produce_v(&mut c, v, "z", 0, zstd.clone());
        if v < 7 {
            assert_eq!(
                p.error_code,
                ErrorCode::UnsupportedCompressionType.code(),
                "v{v}"
            );
        } else {
            assert_eq!((p.error_code, p.base_offset), (0, next), "v{v}");
            next += 2;
        }
        // Other codecs are fine at every version.
        for codec in [
            Compression::None,
            Compression::Gzip,
            Compression::Snappy,
            Compression::Lz4,
        ] {
            let p = produce_v(&mut c, v, "z", 0, batch_at(codec, &[(now_ms(), b"plain")]));
            assert_eq!((p.error_code, p.base_offset), (0, next), "v{v} {codec:?}");
            next += 1;
        }
    }
    let got = values(&fetch_at(&mut c, "z", 0, 0).records.unwrap());
    assert_eq!(got.len() as i64, next);
    assert_eq!(
        got.iter().filter(|v| *v == "squeezed").count(),
        5,
        "v7-11 zstd batches stored"
    );
}

#[test]
fn produce_refuses_bad_acks_and_unknown_partitions() {
    let node = Sluice::start(&[]);
    let mut c = RawClient::connect(&node.addr);
    must_create(&mut c, "acks", 2);
    for v in [3, 8, 11] {
        let r: ProduceResponse = c.call(
            ApiKey::Produce,
            v,
            &produce_request("acks", 0, 2, batch(&[b"x"])),
        );
        assert_eq!(
            r.responses[0].partition_responses[0].error_code,
            ErrorCode::InvalidRequiredAcks.code(),
            "v{v}"
        );
        let p = produce_v(&mut c, v, "acks", 2, batch(&[b"x"]));
        assert_eq!(
            p.error_code,
            ErrorCode::UnknownTopicOrPartition.code(),
            "v{v} partition 2 of 2"
        );
        let p = produce_v(&mut c, v, "missing", 0, batch(&[b"x"]));
        assert_eq!(
            p.error_code,
            ErrorCode::UnknownTopicOrPartition.code(),
            "v{v} missing topic"
        );
    }
    // acks=1 and acks=0 are valid too.
    let r: ProduceResponse = c.call(
        ApiKey::Produce,
        9,
        &produce_request("acks", 1, 1, batch(&[b"one"])),
    );
    assert_eq!(r.responses[0].partition_responses[0].error_code, 0);
}

// ---------------------------------------------------------------------------------
// Fetch v4-17
// ---------------------------------------------------------------------------------

/// A fetch of `topic` partition 0 from `offset` as version `v` names topics: by name
/// before v13, by ID from v13.
fn fetch_req_v(v: i16, topic: &str, id: Uuid, offset: i64) -> FetchRequest {
    if v >= 13 {
        fetch_request("", id, 0, offset)
    } else {
        fetch_request(topic, Uuid::ZERO, 0, offset)
    }
}

#[test]
fn fetch_every_version_returns_records_watermarks_and_version_fields() {
    let node = Sluice::start(&[]);
    let mut c = RawClient::connect(&node.addr);
    let id = must_create(&mut c, "f", 1);
    produce_ok(&mut c, "f", 0, &[b"a", b"b"]);
    produce_ok(&mut c, "f", 0, &[b"c"]);
    for v in 4..=17i16 {
        let mut req = fetch_req_v(v, "f", id, 1);
        if v >= 11 {
            req.rack_id = "rack-a".into(); // v11 added the consumer's rack
        }
        if v >= 15 {
            req.replica_state = ReplicaState {
                replica_id: -1,
                replica_epoch: -1,
            }; // v15: a consumer
        }
        let resp: FetchResponse = c.call(ApiKey::Fetch, v, &req);
        assert_eq!((resp.throttle_time_ms, resp.error_code), (0, 0), "v{v}");
        // v7 added sessions: a sessionless fetch gets session id 0.
        assert_eq!(resp.session_id, 0, "v{v}");
        assert!(
            resp.node_endpoints.is_empty(),
            "v{v}: v16 endpoints only come with NOT_LEADER"
        );
        let t = &resp.responses[0];
        if v >= 13 {
            assert_eq!(
                (t.topic.as_str(), t.topic_id),
                ("", id),
                "v{v}: v13 answers by topic id"
            );
        } else {
            assert_eq!((t.topic.as_str(), t.topic_id), ("f", Uuid::ZERO), "v{v}");
        }
        let p = &t.partitions[0];
        assert_eq!((p.partition_index, p.error_code), (0, 0), "v{v}");
        assert_eq!(p.high_watermark, 3, "v{v}");
        // v4: last stable offset (no transactions: the HW); aborted transactions are
        // null for read_uncommitted.
        assert_eq!(p.last_stable_offset, 3, "v{v}");
        assert_eq!(p.aborted_transactions, None, "v{v}");
        // v5: log start offset.
        assert_eq!(p.log_start_offset, if v >= 5 { 0 } else { -1 }, "v{v}");
        // v11: the leader is the preferred replica, whatever the rack.
        assert_eq!(p.preferred_read_replica, -1, "v{v}");
        // v12 tagged fields hold their defaults: no divergence, no leader change.
        assert_eq!(
            (p.diverging_epoch.epoch, p.diverging_epoch.end_offset),
            (-1, -1),
            "v{v}"
        );
        assert_eq!(
            (p.current_leader.leader_id, p.current_leader.leader_epoch),
            (-1, -1),
            "v{v}"
        );
        // Offset 1 lies inside the first batch: whole batches come back from its start.
        let recs = records(p.records.as_ref().unwrap());
        let got: Vec<(i64, &[u8])> = recs
            .iter()
            .map(|r| (r.offset, r.value.as_slice()))
            .collect();
        assert_eq!(got, vec![(0, &b"a"[..]), (1, b"b"), (2, b"c")], "v{v}");
    }
}

#[test]
fn fetch_v4_isolation_level_read_committed_lists_aborted_transactions() {
    let node = Sluice::start(&[]);
    let mut c = RawClient::connect(&node.addr);
    let id = must_create(&mut c, "iso", 1);
    produce_ok(&mut c, "iso", 0, &[b"x"]);
    for v in 4..=17i16 {
        let mut req = fetch_req_v(v, "iso", id, 0);
        req.isolation_level = 1;
        let p = fetch_one(&mut c, v, &req);
        assert_eq!(p.error_code, 0, "v{v}");
        assert_eq!((p.high_watermark, p.last_stable_offset), (1, 1), "v{v}");
        assert_eq!(
            p.aborted_transactions,
            Some(Vec::new()),
            "v{v}: listed (none) for read_committed"
        );
        assert_eq!(values(p.records.as_ref().unwrap()), vec!["x"], "v{v}");
    }
}

#[test]
fn fetch_v5_log_start_offset_follows_delete_records() {
    let node = Sluice::start(&[]);
    let mut c = RawClient::connect(&node.addr);
    let id = must_create(&mut c, "lso", 1);
    for i in 0..5 {
        produce_ok(&mut c, "lso", 0, &[format!("r{i}").as_bytes()]);
    }
    assert_eq!(delete_records(&mut c, 1, "lso", 0, 2), (0, 2));
    for v in 4..=17i16 {
        let p = fetch_one(&mut c, v, &fetch_req_v(v, "lso", id, 2));
        assert_eq!(p.error_code, 0, "v{v}");
        assert_eq!(p.log_start_offset, if v >= 5 { 2 } else { -1 }, "v{v}");
        assert_eq!(
            values(p.records.as_ref().unwrap()),
            vec!["r2", "r3", "r4"],
            "v{v}"
        );
        // Below the log start offset: OFFSET_OUT_OF_RANGE.
        let p = fetch_one(&mut c, v, &fetch_req_v(v, "lso", id, 1));
        assert_eq!(p.error_code, ErrorCode::OffsetOutOfRange.code(), "v{v}");
    }
}

#[test]
fn fetch_v7_sessions_are_declined_and_unknown_sessions_rejected() {
    let node = Sluice::start(&[]);
    let mut c = RawClient::connect(&node.addr);
    let id = must_create(&mut c, "sess", 1);
    produce_ok(&mut c, "sess", 0, &[b"s"]);
    for v in 7..=17i16 {
        // (session id, epoch): epoch 0 asks for a new session, -1 for none; both are
        // full fetches, answered with data and session id 0 (no session created).
        for (session_id, epoch) in [(0, 0), (0, -1), (4242, -1), (4242, 0)] {
            let mut req = fetch_req_v(v, "sess", id, 0);
            req.session_id = session_id;
            req.session_epoch = epoch;
            let resp: FetchResponse = c.call(ApiKey::Fetch, v, &req);
            assert_eq!(
                (resp.error_code, resp.session_id),
                (0, 0),
                "v{v} session {session_id} epoch {epoch}"
            );
            assert_eq!(
                values(resp.responses[0].partitions[0].records.as_ref().unwrap()),
                vec!["s"],
                "v{v}"
            );
        }
        // An incremental fetch (epoch > 0) in a session this broker never created.
        for (session_id, epoch) in [(4242, 1), (4242, 7), (0, 1)] {
            let mut req = fetch_req_v(v, "sess", id, 0);
            req.session_id = session_id;
            req.session_epoch = epoch;
            let resp: FetchResponse = c.call(ApiKey::Fetch, v, &req);
            assert_eq!(
                resp.error_code,
                ErrorCode::FetchSessionIdNotFound.code(),
                "v{v} session {session_id} epoch {epoch}"
            );
            assert!(resp.responses.is_empty(), "v{v}");
        }
    }
}

#[test]
fn fetch_v9_current_leader_epoch_is_checked() {
    let node = Sluice::start(&[]);
    let mut c = RawClient::connect(&node.addr);
    let id = must_create(&mut c, "ep", 1);
    produce_ok(&mut c, "ep", 0, &[b"e"]);
    // The partition's leader epoch on this node is 0. A client that knows a newer epoch
    // is ahead of this broker (UNKNOWN_LEADER_EPOCH, retriable); -1 means "not known".
    // FENCED_LEADER_EPOCH needs an epoch older than the leader's, i.e. a leader epoch
    // above 0, which a single node never reaches; see the report.
    for v in 9..=17i16 {
        for (epoch, want) in [
            (-1, ErrorCode::None),
            (0, ErrorCode::None),
            (1, ErrorCode::UnknownLeaderEpoch),
            (7, ErrorCode::UnknownLeaderEpoch),
        ] {
            let mut req = fetch_req_v(v, "ep", id, 0);
            req.topics[0].partitions[0].current_leader_epoch = epoch;
            let p = fetch_one(&mut c, v, &req);
            assert_eq!(
                p.error_code,
                want.code(),
                "v{v} current_leader_epoch {epoch}"
            );
            if want == ErrorCode::None {
                assert_eq!(values(p.records.as_ref().unwrap()), vec!["e"]);
            } else {
                // As Kafka: watermarks unknown and no records alongside an error.
                assert_eq!(
                    (p.high_watermark, p.records.as_ref().map_or(0, Bytes::len)),
                    (-1, 0),
                    "v{v}"
                );
            }
        }
    }
}

#[test]
fn fetch_v10_returns_zstd_batches_byte_for_byte() {
    let node = Sluice::start(&[]);
    let mut c = RawClient::connect(&node.addr);
    let id = must_create(&mut c, "zf", 1);
    let zstd = batch_at(Compression::Zstd, &[(now_ms(), b"one"), (now_ms(), b"two")]);
    let p = produce_v(&mut c, 7, "zf", 0, zstd.clone());
    assert_eq!(p.error_code, 0);
    for v in 10..=17i16 {
        let p = fetch_one(&mut c, v, &fetch_req_v(v, "zf", id, 0));
        let set = p.records.unwrap();
        let (h, _) = BatchIter::new(&set).next().unwrap().unwrap();
        assert_eq!(h.compression().unwrap(), Compression::Zstd, "v{v}");
        // Only baseOffset (0 already) and partitionLeaderEpoch (-1 -> 0, bytes 12-15)
        // were rewritten; both lie outside the CRC.
        assert_eq!(set.len(), zstd.len(), "v{v}");
        assert_eq!(&set[..12], &zstd[..12], "v{v}: offset and length");
        assert_eq!(
            &set[12..16],
            &0i32.to_be_bytes(),
            "v{v}: stamped with leader epoch 0"
        );
        assert_eq!(&set[16..], &zstd[16..], "v{v}: stored as produced");
        assert_eq!(values(&set), vec!["one", "two"], "v{v}");
    }
}

#[test]
fn fetch_v11_preferred_read_replica_is_the_leader() {
    let node = Sluice::start(&[]);
    let mut c = RawClient::connect(&node.addr);
    let id = must_create(&mut c, "rack", 1);
    produce_ok(&mut c, "rack", 0, &[b"r"]);
    for v in 11..=17i16 {
        for rack in ["", "rack-a", "elsewhere"] {
            let mut req = fetch_req_v(v, "rack", id, 0);
            req.rack_id = rack.into();
            let p = fetch_one(&mut c, v, &req);
            assert_eq!(
                (p.error_code, p.preferred_read_replica),
                (0, -1),
                "v{v} rack {rack:?}"
            );
            assert_eq!(values(p.records.as_ref().unwrap()), vec!["r"]);
        }
    }
}

#[test]
fn fetch_v13_topic_ids_and_unknown_topic_id_for_a_recreated_topic() {
    let node = Sluice::start(&[]);
    let mut c = RawClient::connect(&node.addr);
    let old = must_create(&mut c, "re", 1);
    produce_ok(&mut c, "re", 0, &[b"old data"]);
    assert_eq!(delete_topic(&mut c, "re"), 0);
    let new = must_create(&mut c, "re", 1);
    assert_ne!(old, new, "a recreated topic gets a new id");
    produce_ok(&mut c, "re", 0, &[b"new data"]);
    for v in 13..=17i16 {
        let p = fetch_one(&mut c, v, &fetch_req_v(v, "re", old, 0));
        assert_eq!(
            p.error_code,
            ErrorCode::UnknownTopicId.code(),
            "v{v}: the stale id"
        );
        assert!(p.records.as_ref().is_none_or(Bytes::is_empty), "v{v}");
        let p = fetch_one(&mut c, v, &fetch_req_v(v, "re", new, 0));
        assert_eq!(p.error_code, 0, "v{v}");
        assert_eq!(
            values(p.records.as_ref().unwrap()),
            vec!["new data"],
            "v{v}"
        );
        let p = fetch_one(&mut c, v, &fetch_req_v(v, "re", Uuid([9; 16]), 0));
        assert_eq!(
            p.error_code,
            ErrorCode::UnknownTopicId.code(),
            "v{v}: an id never seen"
        );
    }
    // By name (v12) the recreated topic holds only the new data.
    assert_eq!(
        values(&fetch_at(&mut c, "re", 0, 0).records.unwrap()),
        vec!["new data"]
    );
}

#[test]
fn fetch_unknown_partition_and_offset_out_of_range() {
    let node = Sluice::start(&[]);
    let mut c = RawClient::connect(&node.addr);
    let id = must_create(&mut c, "oor", 1);
    produce_ok(&mut c, "oor", 0, &[b"1", b"2"]);
    for v in 4..=17i16 {
        let p = fetch_one(&mut c, v, &fetch_req_v(v, "oor", id, 3));
        assert_eq!(
            p.error_code,
            ErrorCode::OffsetOutOfRange.code(),
            "v{v}: past the end"
        );
        let p = fetch_one(&mut c, v, &fetch_req_v(v, "oor", id, 2));
        assert_eq!(
            (p.error_code, p.high_watermark),
            (0, 2),
            "v{v}: at the end is fine"
        );
        assert!(p.records.as_ref().unwrap().is_empty(), "v{v}");
        if v < 13 {
            let p = fetch_one(&mut c, v, &fetch_req_v(v, "nope", Uuid::ZERO, 0));
            assert_eq!(
                p.error_code,
                ErrorCode::UnknownTopicOrPartition.code(),
                "v{v}"
            );
        }
    }
}

// ---------------------------------------------------------------------------------
// ListOffsets v0-10
// ---------------------------------------------------------------------------------

/// Topic "lo": offsets 0-2 in one batch at t0, t0+10, t0+20; offset 3 alone at t0+5.
fn list_offsets_fixture(c: &mut RawClient) -> i64 {
    must_create(c, "lo", 1);
    let t0 = now_ms() - 60_000;
    let p = produce_v(
        c,
        9,
        "lo",
        0,
        batch_at(
            Compression::Gzip,
            &[(t0, b"a"), (t0 + 10, b"b"), (t0 + 20, b"c")],
        ),
    );
    assert_eq!((p.error_code, p.base_offset), (0, 0));
    let p = produce_v(
        c,
        9,
        "lo",
        0,
        batch_at(Compression::None, &[(t0 + 5, b"d")]),
    );
    assert_eq!((p.error_code, p.base_offset), (0, 3));
    t0
}

#[test]
fn list_offsets_every_version_earliest_and_latest() {
    let node = Sluice::start(&[]);
    let mut c = RawClient::connect(&node.addr);
    list_offsets_fixture(&mut c);
    for v in 0..=10i16 {
        let latest = list_offset(&mut c, v, "lo", 0, -1);
        let earliest = list_offset(&mut c, v, "lo", 0, -2);
        assert_eq!((latest.error_code, earliest.error_code), (0, 0), "v{v}");
        if v == 0 {
            // v0 answers with a list of offsets (old_style_offsets).
            assert_eq!(latest.old_style_offsets, vec![4], "v0 latest");
            assert_eq!(earliest.old_style_offsets, vec![0], "v0 earliest");
            assert_eq!(
                (latest.offset, latest.timestamp),
                (-1, -1),
                "v0 has no single offset"
            );
        } else {
            assert!(latest.old_style_offsets.is_empty(), "v{v}");
            assert_eq!((latest.offset, latest.timestamp), (4, -1), "v{v} latest");
            assert_eq!(
                (earliest.offset, earliest.timestamp),
                (0, -1),
                "v{v} earliest"
            );
        }
        // v4 added the leader epoch of the answer.
        let want_epoch = if v >= 4 { 0 } else { -1 };
        assert_eq!(
            (latest.leader_epoch, earliest.leader_epoch),
            (want_epoch, want_epoch),
            "v{v}"
        );
        let missing = list_offset(&mut c, v, "nope", 0, -1);
        assert_eq!(
            missing.error_code,
            ErrorCode::UnknownTopicOrPartition.code(),
            "v{v}"
        );
    }
}

#[test]
fn list_offsets_v1_timestamp_lookup() {
    let node = Sluice::start(&[]);
    let mut c = RawClient::connect(&node.addr);
    let t0 = list_offsets_fixture(&mut c);
    // (target, offset, timestamp): the first record at or after the target.
    let cases = [
        (t0 - 1000, 0, t0),
        (t0, 0, t0),
        (t0 + 1, 1, t0 + 10), // inside the compressed batch
        (t0 + 15, 2, t0 + 20),
        (t0 + 20, 2, t0 + 20),
        (t0 + 21, -1, -1), // later than every record
    ];
    for v in 1..=10i16 {
        for (target, offset, ts) in cases {
            let r = list_offset(&mut c, v, "lo", 0, target);
            assert_eq!(
                (r.error_code, r.offset, r.timestamp),
                (0, offset, ts),
                "v{v} target t0{:+}",
                target - t0
            );
        }
    }
}

fn list_offsets_req(
    v: i16,
    isolation_level: i8,
    current_leader_epoch: i32,
    timestamp: i64,
) -> ListOffsetsRequest {
    ListOffsetsRequest {
        replica_id: -1,
        isolation_level,
        topics: vec![ListOffsetsTopic {
            name: "lo".into(),
            partitions: vec![ListOffsetsPartition {
                partition_index: 0,
                current_leader_epoch,
                timestamp,
                max_num_offsets: 1,
            }],
        }],
        timeout_ms: if v >= 10 { 5_000 } else { 0 },
    }
}

#[test]
fn list_offsets_v2_isolation_level_and_v4_current_leader_epoch() {
    let node = Sluice::start(&[]);
    let mut c = RawClient::connect(&node.addr);
    list_offsets_fixture(&mut c);
    for v in 2..=10i16 {
        for isolation in [0, 1] {
            // Without transactions the last stable offset is the high watermark.
            let r: ListOffsetsResponse = c.call(
                ApiKey::ListOffsets,
                v,
                &list_offsets_req(v, isolation, -1, -1),
            );
            let p = &r.topics[0].partitions[0];
            assert_eq!(
                (p.error_code, p.offset),
                (0, 4),
                "v{v} isolation {isolation}"
            );
        }
    }
    for v in 4..=10i16 {
        for (epoch, want) in [
            (-1, ErrorCode::None),
            (0, ErrorCode::None),
            (1, ErrorCode::UnknownLeaderEpoch),
        ] {
            let r: ListOffsetsResponse =
                c.call(ApiKey::ListOffsets, v, &list_offsets_req(v, 0, epoch, -2));
            let p = &r.topics[0].partitions[0];
            assert_eq!(
                p.error_code,
                want.code(),
                "v{v} current_leader_epoch {epoch}"
            );
            if want == ErrorCode::None {
                assert_eq!((p.offset, p.leader_epoch), (0, 0), "v{v}");
            }
        }
    }
}

#[test]
fn list_offsets_v7_max_timestamp_v8_earliest_local_v9_latest_tiered() {
    let node = Sluice::start(&[]);
    let mut c = RawClient::connect(&node.addr);
    let t0 = list_offsets_fixture(&mut c);
    assert_eq!(delete_records(&mut c, 2, "lo", 0, 1), (0, 1));
    for v in 7..=10i16 {
        // -3: the record with the largest timestamp (offset 2 at t0+20, inside a batch).
        let r = list_offset(&mut c, v, "lo", 0, -3);
        assert_eq!(
            (r.error_code, r.offset, r.timestamp),
            (0, 2, t0 + 20),
            "v{v} max timestamp"
        );
        assert_eq!(r.leader_epoch, 0, "v{v}");
    }
    for v in 8..=10i16 {
        // -4: the earliest offset held locally; without tiered storage, the log start.
        let r = list_offset(&mut c, v, "lo", 0, -4);
        assert_eq!((r.error_code, r.offset), (0, 1), "v{v} earliest local");
    }
    for v in 9..=10i16 {
        // -5: the latest tiered offset; nothing is tiered, so -1 as in Kafka.
        let r = list_offset(&mut c, v, "lo", 0, -5);
        assert_eq!((r.error_code, r.offset), (0, -1), "v{v} latest tiered");
    }
    // The earliest offset moved with DeleteRecords as well.
    assert_eq!(list_offset(&mut c, 10, "lo", 0, -2).offset, 1);
}

// ---------------------------------------------------------------------------------
// OffsetForLeaderEpoch v0-4
// ---------------------------------------------------------------------------------

fn epoch_end(
    c: &mut RawClient,
    v: i16,
    replica_id: i32,
    current: i32,
    epoch: i32,
) -> EpochEndOffset {
    let req = OffsetForLeaderEpochRequest {
        replica_id,
        topics: vec![OffsetForLeaderTopic {
            topic: "oe".into(),
            partitions: vec![OffsetForLeaderPartition {
                partition: 0,
                current_leader_epoch: current,
                leader_epoch: epoch,
            }],
        }],
    };
    let r: OffsetForLeaderEpochResponse = c.call(ApiKey::OffsetForLeaderEpoch, v, &req);
    assert_eq!(r.topics[0].topic, "oe");
    r.topics[0].partitions[0].clone()
}

#[test]
fn offset_for_leader_epoch_every_version() {
    let node = Sluice::start(&[]);
    let mut c = RawClient::connect(&node.addr);
    must_create(&mut c, "oe", 1);
    produce_ok(&mut c, "oe", 0, &[b"1", b"2"]);
    produce_ok(&mut c, "oe", 0, &[b"3"]);
    for v in 0..=4i16 {
        // v3 added ReplicaId (-2 by default, -1 for a consumer); older versions cannot carry it.
        let replica = if v >= 3 { -1 } else { -2 };
        // v2 added CurrentLeaderEpoch; older versions cannot carry it.
        let current = if v >= 2 { 0 } else { -1 };
        let e = epoch_end(&mut c, v, replica, current, 0);
        assert_eq!(
            (e.error_code, e.partition, e.end_offset),
            (0, 0, 3),
            "v{v}: epoch 0 ends at the log end"
        );
        // v1 added the epoch to the answer.
        assert_eq!(e.leader_epoch, if v >= 1 { 0 } else { -1 }, "v{v}");
        // An epoch newer than any in the log: UNDEFINED, as Kafka's epoch cache answers.
        let e = epoch_end(&mut c, v, replica, current, 5);
        assert_eq!(
            (e.error_code, e.leader_epoch, e.end_offset),
            (0, -1, -1),
            "v{v} unknown epoch"
        );
    }
    for v in 2..=4i16 {
        // CurrentLeaderEpoch fencing (KIP-320).
        let e = epoch_end(&mut c, v, -2, 1, 0);
        assert_eq!(
            e.error_code,
            ErrorCode::UnknownLeaderEpoch.code(),
            "v{v} current epoch ahead of the broker"
        );
        assert_eq!(e.end_offset, -1);
    }
    for v in 3..=4i16 {
        // v3 ReplicaId: a consumer (-1) and the debug default (-2) are both served.
        for replica in [-1, -2] {
            let e = epoch_end(&mut c, v, replica, -1, 0);
            assert_eq!(
                (e.error_code, e.end_offset),
                (0, 3),
                "v{v} replica {replica}"
            );
        }
    }
    let req = OffsetForLeaderEpochRequest {
        replica_id: -1,
        topics: vec![OffsetForLeaderTopic {
            topic: "missing".into(),
            partitions: vec![OffsetForLeaderPartition {
                partition: 0,
                current_leader_epoch: -1,
                leader_epoch: 0,
            }],
        }],
    };
    let r: OffsetForLeaderEpochResponse = c.call(ApiKey::OffsetForLeaderEpoch, 4, &req);
    assert_eq!(
        r.topics[0].partitions[0].error_code,
        ErrorCode::UnknownTopicOrPartition.code()
    );
}

// ---------------------------------------------------------------------------------
// DeleteRecords v0-2
// ---------------------------------------------------------------------------------

#[test]
fn delete_records_every_version_moves_the_low_watermark_and_minus_one_means_hw() {
    let node = Sluice::start(&[]);
    let mut c = RawClient::connect(&node.addr);
    must_create(&mut c, "dr", 1);
    for i in 0..10 {
        produce_ok(&mut c, "dr", 0, &[format!("{i}").as_bytes()]);
    }
    assert_eq!(delete_records(&mut c, 0, "dr", 0, 3), (0, 3), "v0");
    assert_eq!(delete_records(&mut c, 1, "dr", 0, 5), (0, 5), "v1");
    // Deleting below the current low watermark changes nothing.
    assert_eq!(delete_records(&mut c, 1, "dr", 0, 2), (0, 5), "v1 below");
    assert_eq!(
        values(&fetch_at(&mut c, "dr", 0, 5).records.unwrap()),
        vec!["5", "6", "7", "8", "9"]
    );
    assert_eq!(
        fetch_at(&mut c, "dr", 0, 4).error_code,
        ErrorCode::OffsetOutOfRange.code()
    );
    // Past the high watermark: OFFSET_OUT_OF_RANGE, nothing changes.
    for v in 0..=2i16 {
        assert_eq!(
            delete_records(&mut c, v, "dr", 0, 11),
            (ErrorCode::OffsetOutOfRange.code(), -1),
            "v{v}"
        );
        assert_eq!(
            delete_records(&mut c, v, "nope", 0, 0).0,
            ErrorCode::UnknownTopicOrPartition.code(),
            "v{v}"
        );
    }
    assert_eq!(list_offset(&mut c, 1, "dr", 0, -2).offset, 5);
    // -1 means "up to the high watermark".
    assert_eq!(delete_records(&mut c, 2, "dr", 0, -1), (0, 10), "v2 -1");
    assert_eq!(list_offset(&mut c, 1, "dr", 0, -2).offset, 10);
    let p = fetch_at(&mut c, "dr", 0, 10);
    assert_eq!(
        (p.error_code, p.log_start_offset, p.high_watermark),
        (0, 10, 10)
    );
    // New records continue at the high watermark.
    assert_eq!(produce_ok(&mut c, "dr", 0, &[b"after"]), 10);
}
