//! Record batches through the public API: a known-answer batch assembled from the spec,
//! builder -> decoder round trips for every codec, the CRC and the in-place rewrites,
//! and hostile input (prefixes, random bytes, bad lengths, bombs) that must never panic.

// A test binary: helpers outside #[test] functions may panic on bad fixtures.
#![allow(clippy::unwrap_used)]

use bytes::Bytes;
use proptest::prelude::*;
use sluice_protocol::compression::Compression;
use sluice_protocol::records::{
    build_control_batch, decode_records, set_base_offset, set_log_append_time,
    set_partition_leader_epoch, verify_crc, BatchIter, ControlRecordType, EndTxnMarker, Record,
    RecordBatchBuilder, RecordBatchHeader, RecordHeader, RecordsError, TimestampType, HEADER_SIZE,
};

const LIMIT: usize = 1 << 20;

fn hex(s: &str) -> Vec<u8> {
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
        .collect()
}

/// One record (key "k", value "vv", header h=x) at offset 42, timestamp 1000, leader
/// epoch 5, no producer id. Assembled byte by byte from the v2 format description; the
/// CRC-32C was computed, and the whole batch read back, with kafka-python's own code.
const KNOWN_ANSWER: &str = concat!(
    "000000000000002a", // baseOffset 42
    "0000003f",         // batchLength 63 = 49 header bytes after this field + 14
    "00000005",         // partitionLeaderEpoch 5
    "02",               // magic 2
    "15b98719",         // crc (CRC-32C of everything from attributes on)
    "0000",             // attributes: no codec, CreateTime, plain
    "00000000",         // lastOffsetDelta 0
    "00000000000003e8", // baseTimestamp 1000
    "00000000000003e8", // maxTimestamp 1000
    "ffffffffffffffff", // producerId -1
    "ffff",             // producerEpoch -1
    "ffffffff",         // baseSequence -1
    "00000001",         // recordsCount 1
    "1a",               // record length varint 13
    "00",               // attributes
    "00",               // timestampDelta varlong 0
    "00",               // offsetDelta varint 0
    "02",
    "6b", // key length 1, "k"
    "04",
    "7676", // value length 2, "vv"
    "02",   // header count 1
    "02",
    "68", // header key length 1, "h"
    "02",
    "78", // header value length 1, "x"
);

#[test]
fn known_answer_batch_decodes_field_by_field() {
    let bytes = Bytes::from(hex(KNOWN_ANSWER));
    assert_eq!(bytes.len(), 75);
    let h = RecordBatchHeader::parse(&bytes).unwrap();
    assert_eq!(h.base_offset, 42);
    assert_eq!(h.batch_length, 63);
    assert_eq!(h.total_size(), 75);
    assert_eq!(h.partition_leader_epoch, 5);
    assert_eq!(h.magic, 2);
    assert_eq!(h.crc, 0x15b9_8719);
    assert_eq!(h.attributes, 0);
    assert_eq!(h.compression(), Ok(Compression::None));
    assert_eq!(h.timestamp_type(), TimestampType::CreateTime);
    assert!(!h.is_transactional() && !h.is_control());
    assert_eq!(h.last_offset_delta, 0);
    assert_eq!((h.last_offset(), h.next_offset()), (42, 43));
    assert_eq!(h.base_timestamp, 1000);
    assert_eq!(h.max_timestamp, 1000);
    assert_eq!(h.producer_id, -1);
    assert_eq!(h.producer_epoch, -1);
    assert_eq!(h.base_sequence, -1);
    assert_eq!(h.records_count, 1);
    verify_crc(&bytes).unwrap();

    let records = decode_records(&bytes, LIMIT).unwrap();
    assert_eq!(records.len(), 1);
    let r = &records[0];
    assert_eq!(r.offset_delta, 0);
    assert_eq!(r.timestamp_delta, 0);
    assert_eq!(r.offset(h.base_offset), 42);
    assert_eq!(r.timestamp(&h), 1000);
    assert_eq!(r.key.as_deref(), Some(&b"k"[..]));
    assert_eq!(r.value.as_deref(), Some(&b"vv"[..]));
    assert_eq!(r.headers, vec![RecordHeader::new("h", Some("x"))]);
}

#[test]
fn builder_reproduces_known_answer_bytes() {
    let mut b = RecordBatchBuilder::new()
        .base_offset(42)
        .partition_leader_epoch(5);
    b.push(
        1000,
        Some(b"k"),
        Some(b"vv"),
        &[RecordHeader::new("h", Some("x"))],
    )
    .unwrap();
    assert_eq!(b.build().unwrap(), Bytes::from(hex(KNOWN_ANSWER)));
}

/// Input for one record: timestamp, key, value, headers.
type Input = (i64, Option<Vec<u8>>, Option<Vec<u8>>, Vec<RecordHeader>);

fn varied_records() -> Vec<Input> {
    vec![
        (
            5_000,
            Some(b"key".to_vec()),
            Some(b"value".to_vec()),
            vec![],
        ),
        (4_990, None, Some(b"no key".to_vec()), vec![]), // earlier than the first
        (5_010, Some(b"tombstone".to_vec()), None, vec![]),
        (5_010, None, None, vec![]),
        (5_020, Some(vec![]), Some(vec![]), vec![]), // empty, not null
        (
            5_030,
            Some(b"h".to_vec()),
            Some(b"headers".to_vec()),
            vec![
                RecordHeader::new("trace-id", Some("abc")),
                RecordHeader::new("null", None::<Bytes>),
                RecordHeader::new("", Some("")),
                RecordHeader::new("ключ", Some(vec![0u8, 255, 7])),
            ],
        ),
        (
            6_000,
            Some(vec![7u8; 300]),
            Some((0..100_000u32).map(|i| (i % 251) as u8).collect()),
            vec![],
        ),
    ]
}

fn build(inputs: &[Input], builder: RecordBatchBuilder) -> Bytes {
    let mut b = builder;
    for (ts, k, v, h) in inputs {
        b.push(*ts, k.as_deref(), v.as_deref(), h).unwrap();
    }
    b.build().unwrap()
}

fn assert_decodes_to(batch: &Bytes, inputs: &[Input]) {
    let h = RecordBatchHeader::parse(batch).unwrap();
    let records = decode_records(batch, LIMIT).unwrap();
    assert_eq!(records.len(), inputs.len());
    for (i, (r, (ts, k, v, hs))) in records.iter().zip(inputs).enumerate() {
        assert_eq!(r.offset_delta, i as i32);
        assert_eq!(r.timestamp(&h), *ts);
        assert_eq!(r.key.as_deref(), k.as_deref());
        assert_eq!(r.value.as_deref(), v.as_deref());
        assert_eq!(&r.headers, hs);
    }
}

#[test]
fn round_trip_every_codec() {
    let inputs = varied_records();
    for codec in Compression::ALL {
        let batch = build(
            &inputs,
            RecordBatchBuilder::new()
                .base_offset(1_000)
                .partition_leader_epoch(3)
                .compression(codec)
                .producer(77, 2, 10),
        );
        verify_crc(&batch).unwrap();
        let h = RecordBatchHeader::parse(&batch).unwrap();
        assert_eq!(h.total_size(), batch.len(), "{codec:?}");
        assert_eq!(h.compression(), Ok(codec));
        assert_eq!(h.compression_bits(), codec.attribute_bits());
        assert_eq!(h.records_count, inputs.len() as i32);
        assert_eq!(h.last_offset_delta, inputs.len() as i32 - 1);
        assert_eq!(h.base_timestamp, 5_000, "first record's timestamp");
        assert_eq!(h.max_timestamp, 6_000);
        assert_eq!(
            (h.producer_id, h.producer_epoch, h.base_sequence),
            (77, 2, 10)
        );
        assert_eq!(h.partition_leader_epoch, 3);
        if codec != Compression::None {
            assert!(
                batch.len() < 60_000,
                "{codec:?} compressed to {}",
                batch.len()
            );
        }
        assert_decodes_to(&batch, &inputs);
    }
}

#[test]
fn attribute_flags_are_written() {
    let inputs = &varied_records()[..1];
    let plain = RecordBatchHeader::parse(&build(inputs, RecordBatchBuilder::new())).unwrap();
    assert_eq!(
        (plain.producer_id, plain.producer_epoch, plain.base_sequence),
        (-1, -1, -1)
    );
    assert_eq!(plain.partition_leader_epoch, -1);
    let flagged = build(
        inputs,
        RecordBatchBuilder::new()
            .transactional(true)
            .control(true)
            .timestamp_type(TimestampType::LogAppendTime)
            .compression(Compression::Lz4),
    );
    let h = RecordBatchHeader::parse(&flagged).unwrap();
    assert!(h.is_transactional() && h.is_control());
    assert_eq!(h.timestamp_type(), TimestampType::LogAppendTime);
    assert_eq!(h.attributes, 0x10 | 0x20 | 0x08 | 3);
}

#[test]
fn offset_gaps_survive_round_trip() {
    // As after compaction: surviving records keep their original offsets.
    let mut b = RecordBatchBuilder::new().base_offset(100);
    for delta in [0, 3, 4, 9] {
        b.push_at(delta, 1, Some(b"k"), Some(b"v"), &[]).unwrap();
    }
    let batch = b.build().unwrap();
    let h = RecordBatchHeader::parse(&batch).unwrap();
    assert_eq!(h.last_offset_delta, 9);
    assert_eq!(h.next_offset(), 110);
    let offsets: Vec<i64> = decode_records(&batch, LIMIT)
        .unwrap()
        .iter()
        .map(|r| r.offset(h.base_offset))
        .collect();
    assert_eq!(offsets, [100, 103, 104, 109]);
}

#[test]
fn flipped_byte_fails_crc() {
    let batch = build(
        &varied_records()[..3],
        RecordBatchBuilder::new().compression(Compression::Snappy),
    );
    for pos in 0..batch.len() {
        let mut bad = batch.to_vec();
        bad[pos] ^= 0x01;
        let result = verify_crc(&bad);
        match pos {
            // baseOffset and partitionLeaderEpoch lie outside the CRC on purpose.
            0..=7 | 12..=15 => assert_eq!(result, Ok(()), "byte {pos}"),
            // batchLength: the batch no longer fits or has the wrong extent.
            8..=11 => assert!(result.is_err(), "byte {pos}"),
            16 => assert_eq!(result, Err(RecordsError::UnsupportedMagic(3))),
            _ => assert!(
                matches!(result, Err(RecordsError::CrcMismatch { .. })),
                "byte {pos}: {result:?}"
            ),
        }
    }
}

#[test]
fn in_place_rewrites_keep_the_crc_valid() {
    let inputs = varied_records();
    for codec in Compression::ALL {
        let mut batch = build(&inputs, RecordBatchBuilder::new().compression(codec)).to_vec();
        set_base_offset(&mut batch, 123_456);
        set_partition_leader_epoch(&mut batch, 9);
        verify_crc(&batch).unwrap();
        set_log_append_time(&mut batch, 1_234_567).unwrap();
        verify_crc(&batch).unwrap();

        let batch = Bytes::from(batch);
        let h = RecordBatchHeader::parse(&batch).unwrap();
        assert_eq!(h.base_offset, 123_456);
        assert_eq!(h.partition_leader_epoch, 9);
        assert_eq!(h.timestamp_type(), TimestampType::LogAppendTime);
        assert_eq!(h.max_timestamp, 1_234_567);
        assert_eq!(h.compression(), Ok(codec), "codec bits untouched");
        let records = decode_records(&batch, LIMIT).unwrap();
        assert!(records.iter().all(|r| r.timestamp(&h) == 1_234_567));
        assert_eq!(records[0].offset(h.base_offset), 123_456);
    }
}

#[test]
fn batch_iter_stops_at_a_torn_tail() {
    let mut log = Vec::new();
    let mut starts = Vec::new();
    for (i, codec) in [Compression::None, Compression::Gzip, Compression::Zstd]
        .into_iter()
        .enumerate()
    {
        starts.push(log.len());
        let batch = build(
            &varied_records()[..2],
            RecordBatchBuilder::new()
                .base_offset(i as i64 * 2)
                .compression(codec),
        );
        log.extend_from_slice(&batch);
    }
    let valid = log.len();
    let torn = build(&varied_records()[..1], RecordBatchBuilder::new());
    log.extend_from_slice(&torn[..torn.len() - 5]);

    let mut it = BatchIter::new(&log);
    for (i, start) in starts.iter().enumerate() {
        let (h, at) = it.next().unwrap().unwrap();
        assert_eq!(at, *start);
        assert_eq!(h.base_offset, i as i64 * 2);
    }
    assert_eq!(it.position(), valid);
    assert!(matches!(
        it.next(),
        Some(Err(RecordsError::Truncated { .. }))
    ));
    assert_eq!(it.position(), valid, "position marks the valid prefix");
    assert!(it.next().is_none());

    // A corrupt header in the middle also stops the walk at its start.
    let mut bad = log[..valid].to_vec();
    bad[starts[1] + 16] = 1; // magic 1
    let mut it = BatchIter::new(&bad);
    assert!(it.next().unwrap().is_ok());
    assert_eq!(it.next(), Some(Err(RecordsError::UnsupportedMagic(1))));
    assert_eq!(it.position(), starts[1]);
    assert!(it.next().is_none());
    assert!(BatchIter::new(&[]).next().is_none());
}

/// Wraps a hand-made records section into a batch whose header claims `count` records.
fn batch_with_body(count: i32, body: &[u8]) -> Bytes {
    let mut b = Vec::new();
    b.extend_from_slice(&0i64.to_be_bytes());
    b.extend_from_slice(&((HEADER_SIZE - 12 + body.len()) as i32).to_be_bytes());
    b.extend_from_slice(&0i32.to_be_bytes());
    b.push(2);
    b.extend_from_slice(&0u32.to_be_bytes()); // CRC: decode_records does not check it
    b.extend_from_slice(&0i16.to_be_bytes());
    b.extend_from_slice(&count.wrapping_sub(1).to_be_bytes());
    b.extend_from_slice(&0i64.to_be_bytes());
    b.extend_from_slice(&0i64.to_be_bytes());
    b.extend_from_slice(&(-1i64).to_be_bytes());
    b.extend_from_slice(&(-1i16).to_be_bytes());
    b.extend_from_slice(&(-1i32).to_be_bytes());
    b.extend_from_slice(&count.to_be_bytes());
    b.extend_from_slice(body);
    Bytes::from(b)
}

#[test]
fn record_structure_is_checked() {
    // A valid minimal record: length 6, attributes, ts 0, offset 0, null key, null
    // value, no headers.
    let ok: &[u8] = &[0x0c, 0, 0, 0, 0x01, 0x01, 0];
    assert_eq!(
        decode_records(&batch_with_body(1, ok), LIMIT)
            .unwrap()
            .len(),
        1
    );

    let cases: &[(&str, i32, &[u8])] = &[
        ("count too large", 2, ok),
        ("count too small", 0, ok),
        ("negative count", -1, ok),
        ("count far too large", i32::MAX, ok),
        ("negative record length", 1, &[0x03, 0, 0, 0, 0x01, 0x01, 0]),
        (
            "record length past the end",
            1,
            &[0x0e, 0, 0, 0, 0x01, 0x01, 0],
        ),
        (
            "record length short of its fields",
            1,
            &[0x0a, 0, 0, 0, 0x01, 0x01, 0],
        ),
        (
            "record length past its fields",
            1,
            &[0x0e, 0, 0, 0, 0x01, 0x01, 0, 0],
        ),
        ("key length -2", 1, &[0x0c, 0, 0, 0, 0x03, 0x01, 0]),
        ("key past the record", 1, &[0x0c, 0, 0, 0, 0x10, 0x01, 0]),
        (
            "negative header count",
            1,
            &[0x0c, 0, 0, 0, 0x01, 0x01, 0x01],
        ),
        (
            "header count past the record",
            1,
            &[0x0c, 0, 0, 0, 0x01, 0x01, 0x7e],
        ),
        (
            "null header key",
            1,
            &[0x10, 0, 0, 0, 0x01, 0x01, 0x02, 0x01, 0x01],
        ),
        (
            "header key not UTF-8",
            1,
            &[0x12, 0, 0, 0, 0x01, 0x01, 0x02, 0x02, 0xff, 0x01],
        ),
        (
            "over-long varint",
            1,
            &[0x80, 0x80, 0x80, 0x80, 0x80, 0x01, 0, 0, 0, 0x01, 0x01, 0],
        ),
        ("truncated record", 1, &[0x0c, 0, 0]),
    ];
    for (what, count, body) in cases {
        let result = decode_records(&batch_with_body(*count, body), LIMIT);
        assert!(result.is_err(), "{what}: {result:?}");
    }
}

#[test]
fn decoding_a_bomb_batch_fails_at_the_limit() {
    let zeros = vec![0u8; 8 << 20];
    for codec in [
        Compression::Gzip,
        Compression::Snappy,
        Compression::Lz4,
        Compression::Zstd,
    ] {
        let mut b = RecordBatchBuilder::new().compression(codec);
        b.push(0, None, Some(&zeros), &[]).unwrap();
        let batch = b.build().unwrap();
        assert!(batch.len() < 1 << 20, "{codec:?}");
        assert_eq!(
            decode_records(&batch, LIMIT),
            Err(RecordsError::DecompressedTooLarge(LIMIT)),
            "{codec:?}"
        );
    }
}

#[test]
fn control_batch_round_trip() {
    let marker = EndTxnMarker {
        commit: true,
        coordinator_epoch: 17,
    };
    let batch = build_control_batch(500, 4, 9001, 3, 1_700_000_000_000, marker).unwrap();
    verify_crc(&batch).unwrap();
    let h = RecordBatchHeader::parse(&batch).unwrap();
    assert!(h.is_control() && h.is_transactional());
    assert_eq!(
        (
            h.base_offset,
            h.partition_leader_epoch,
            h.producer_id,
            h.producer_epoch
        ),
        (500, 4, 9001, 3)
    );
    assert_eq!(h.base_sequence, -1);
    assert_eq!(h.records_count, 1);
    let records = decode_records(&batch, LIMIT).unwrap();
    assert_eq!(records[0].key.as_deref(), Some(&[0u8, 0, 0, 1][..]));
    assert_eq!(
        records[0].value.as_deref(),
        Some(&[0u8, 0, 0, 0, 0, 17][..])
    );
    assert_eq!(EndTxnMarker::from_record(&records[0]), Ok(Some(marker)));

    let abort = EndTxnMarker {
        commit: false,
        coordinator_epoch: 0,
    };
    let batch = build_control_batch(0, 0, 1, 0, 0, abort).unwrap();
    let records = decode_records(&batch, LIMIT).unwrap();
    assert_eq!(EndTxnMarker::from_record(&records[0]), Ok(Some(abort)));

    let other = Record {
        offset_delta: 0,
        timestamp_delta: 0,
        key: Some(Bytes::from_static(&[0, 0, 0, 2])),
        value: None,
        headers: vec![],
    };
    assert_eq!(EndTxnMarker::from_record(&other), Ok(None));
    assert_eq!(
        ControlRecordType::parse_key(&[0, 0, 0, 2]),
        Ok(ControlRecordType::LeaderChange)
    );
}

#[test]
fn every_strict_prefix_is_an_error_and_never_panics() {
    let inputs = varied_records();
    for codec in Compression::ALL {
        let batch = build(&inputs[..6], RecordBatchBuilder::new().compression(codec));
        for cut in 0..batch.len() {
            let prefix = batch.slice(..cut);
            assert!(RecordBatchHeader::parse(&prefix).is_err() || cut >= HEADER_SIZE);
            assert!(verify_crc(&prefix).is_err(), "{codec:?} cut {cut}");
            assert!(
                decode_records(&prefix, LIMIT).is_err(),
                "{codec:?} cut {cut}"
            );
            let walked: Vec<_> = BatchIter::new(&prefix).collect();
            assert!(cut == 0 || matches!(walked.as_slice(), [Err(_)]), "{cut}");
            let mut copy = prefix.to_vec();
            assert!(set_log_append_time(&mut copy, 1).is_err());
        }
    }
}

fn arb_header() -> impl Strategy<Value = RecordHeader> {
    (
        "[a-z\\-\\.]{0,12}",
        proptest::option::of(proptest::collection::vec(any::<u8>(), 0..16)),
    )
        .prop_map(|(k, v)| RecordHeader::new(k, v))
}

fn arb_input() -> impl Strategy<Value = Input> {
    (
        -1i64..4_000_000_000_000,
        proptest::option::of(proptest::collection::vec(any::<u8>(), 0..64)),
        proptest::option::of(proptest::collection::vec(any::<u8>(), 0..512)),
        proptest::collection::vec(arb_header(), 0..4),
    )
}

fn arb_codec() -> impl Strategy<Value = Compression> {
    proptest::sample::select(Compression::ALL.to_vec())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]

    #[test]
    fn builder_decoder_round_trip(
        inputs in proptest::collection::vec(arb_input(), 1..20),
        codec in arb_codec(),
        base_offset in 0i64..1 << 40,
    ) {
        let batch = build(&inputs, RecordBatchBuilder::new().base_offset(base_offset).compression(codec));
        prop_assert!(verify_crc(&batch).is_ok());
        let h = RecordBatchHeader::parse(&batch).unwrap();
        prop_assert_eq!(h.max_timestamp, inputs.iter().map(|i| i.0).max().unwrap());
        prop_assert_eq!(h.base_timestamp, inputs[0].0);
        assert_decodes_to(&batch, &inputs);
    }

    #[test]
    fn random_bytes_never_panic(data in proptest::collection::vec(any::<u8>(), 0..600)) {
        let bytes = Bytes::from(data.clone());
        let _ = RecordBatchHeader::parse(&bytes);
        let _ = verify_crc(&bytes);
        let _ = decode_records(&bytes, 64 * 1024);
        for (h, _) in BatchIter::new(&bytes).flatten() {
            let _ = (h.last_offset(), h.next_offset(), h.total_size());
        }
        let mut copy = data;
        let _ = set_log_append_time(&mut copy, 0);
        set_base_offset(&mut copy, i64::MAX);
        set_partition_leader_epoch(&mut copy, -1);
    }

    #[test]
    fn random_records_section_never_panics(
        count in any::<i32>(),
        bits in 0i16..8,
        body in proptest::collection::vec(any::<u8>(), 0..400),
    ) {
        // A well-formed header in front of random records reaches the record decoder
        // and, through the codec bits, every decompressor.
        let mut batch = batch_with_body(count, &body).to_vec();
        batch[21..23].copy_from_slice(&bits.to_be_bytes());
        let _ = decode_records(&Bytes::from(batch), 64 * 1024);
    }

    #[test]
    fn mutated_batches_never_panic(
        inputs in proptest::collection::vec(arb_input(), 1..6),
        codec in arb_codec(),
        flips in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..4),
    ) {
        let mut batch = build(&inputs, RecordBatchBuilder::new().compression(codec)).to_vec();
        for (at, byte) in flips {
            let i = at.index(batch.len());
            batch[i] = byte;
        }
        let bytes = Bytes::from(batch);
        let _ = verify_crc(&bytes);
        let _ = decode_records(&bytes, 64 * 1024);
    }
}
