//! Interoperability: batches and compressed frames written by other Kafka client
//! stacks (kafka-python, the reference LZ4F library behind python-lz4 and librdkafka,
//! raw snappy as librdkafka writes it, streaming zstd), committed as hex by
//! `data/gen_vectors.py`, must decode to exactly what their writers were given.

// A test binary: helpers outside #[test] functions may panic on bad fixtures.
#![allow(clippy::unwrap_used)]

use bytes::Bytes;
use sluice_protocol::compression::Compression;
use sluice_protocol::records::{
    decode_records, verify_crc, RecordBatchHeader, RecordHeader, TimestampType,
};

const VECTORS: &str = include_str!("data/interop_vectors.txt");
const LIMIT: usize = 1 << 20;

fn vector(name: &str) -> Vec<u8> {
    let line = VECTORS
        .lines()
        .find(|l| l.split_once(' ').map(|(n, _)| n) == Some(name))
        .unwrap_or_else(|| panic!("no vector {name}"));
    let hex = line.split_once(' ').unwrap().1.trim();
    (0..hex.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).unwrap())
        .collect()
}

/// Same text as `sample()` in gen_vectors.py.
fn sample(len: usize) -> Vec<u8> {
    let mut v = Vec::with_capacity(len);
    let mut i = 0u32;
    while v.len() < len {
        v.extend_from_slice(format!("record {i} of the sluice test stream; ").as_bytes());
        i += 1;
    }
    v.truncate(len);
    v
}

const BASE_TS: i64 = 1_700_000_000_000;

/// The records gen_vectors.py appended to every batch: (timestamp, key, value, headers).
/// (timestamp, key, value, headers) of one record.
type Expected = (i64, Option<Vec<u8>>, Option<Vec<u8>>, Vec<RecordHeader>);

fn expected_records() -> Vec<Expected> {
    vec![
        (
            BASE_TS,
            Some(b"k0".to_vec()),
            Some(b"v0".to_vec()),
            vec![RecordHeader::new("h", Some("x"))],
        ),
        (BASE_TS + 7, None, Some(b"hello".to_vec()), vec![]),
        (
            BASE_TS - 3,
            Some(b"k2".to_vec()),
            None,
            vec![
                RecordHeader::new("a", None::<Bytes>),
                RecordHeader::new("b", Some("")),
            ],
        ),
        (
            BASE_TS + 1000,
            Some(b"big".to_vec()),
            Some(b"sluice ".repeat(300)),
            vec![RecordHeader::new("content-type", Some("text/plain"))],
        ),
    ]
}

#[test]
fn kafka_python_batches_decode_for_every_codec() {
    for (name, codec) in [
        ("batch_none", Compression::None),
        ("batch_gzip", Compression::Gzip),
        ("batch_snappy", Compression::Snappy),
        ("batch_lz4", Compression::Lz4),
        ("batch_zstd", Compression::Zstd),
    ] {
        let batch = Bytes::from(vector(name));
        verify_crc(&batch).unwrap_or_else(|e| panic!("{name}: {e}"));
        let h = RecordBatchHeader::parse(&batch).unwrap();
        assert_eq!(h.total_size(), batch.len(), "{name}");
        assert_eq!(h.compression(), Ok(codec), "{name}");
        assert_eq!(h.timestamp_type(), TimestampType::CreateTime);
        assert_eq!(h.records_count, 4);
        assert_eq!(h.last_offset_delta, 3);
        assert_eq!(h.base_timestamp, BASE_TS);
        assert_eq!(h.max_timestamp, BASE_TS + 1000);
        assert_eq!(
            (h.producer_id, h.producer_epoch, h.base_sequence),
            (-1, -1, -1)
        );

        let records = decode_records(&batch, LIMIT).unwrap_or_else(|e| panic!("{name}: {e}"));
        let expected = expected_records();
        assert_eq!(records.len(), expected.len());
        for (i, (r, (ts, k, v, hs))) in records.iter().zip(&expected).enumerate() {
            assert_eq!(r.offset_delta, i as i32, "{name}");
            assert_eq!(r.timestamp(&h), *ts, "{name}");
            assert_eq!(r.key.as_deref(), k.as_deref(), "{name}");
            assert_eq!(r.value.as_deref(), v.as_deref(), "{name}");
            assert_eq!(&r.headers, hs, "{name}");
        }
    }
}

#[test]
fn kafka_python_snappy_batch_is_xerial_framed() {
    let batch = vector("batch_snappy");
    assert_eq!(&batch[61..69], b"\x82SNAPPY\x00");
}

#[test]
fn kafka_python_idempotent_batch_header() {
    let batch = Bytes::from(vector("batch_idempotent_txn"));
    verify_crc(&batch).unwrap();
    let h = RecordBatchHeader::parse(&batch).unwrap();
    assert_eq!(
        (h.producer_id, h.producer_epoch, h.base_sequence),
        (4242, 7, 100)
    );
    assert!(h.is_transactional());
    assert!(!h.is_control());
    assert_eq!(decode_records(&batch, LIMIT).unwrap().len(), 4);
}

#[test]
fn reference_lz4_frames_decode_with_every_flag() {
    let payload = sample(140_000);
    let names: Vec<&str> = VECTORS
        .lines()
        .filter_map(|l| l.split_once(' ').map(|(n, _)| n))
        .filter(|n| n.starts_with("lz4_"))
        .collect();
    assert_eq!(names.len(), 8);
    for name in names {
        let frame = vector(name);
        let out = Compression::Lz4
            .decompress(&frame, LIMIT)
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(out, payload, "{name}");
        // The same frames with one byte short must fail, whatever the flags.
        assert!(Compression::Lz4
            .decompress(&frame[..frame.len() - 1], LIMIT)
            .is_err());
        assert_eq!(
            Compression::Lz4.decompress(&frame, 100_000),
            Err(sluice_protocol::records::RecordsError::DecompressedTooLarge(100_000)),
            "{name}"
        );
    }
}

#[test]
fn raw_snappy_zstd_without_size_and_gzip_decode() {
    let payload = sample(140_000);
    for (name, codec) in [
        ("snappy_raw", Compression::Snappy),
        ("zstd_no_content_size", Compression::Zstd),
        ("gzip_stdlib", Compression::Gzip),
    ] {
        let out = codec
            .decompress(&vector(name), LIMIT)
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(out, payload, "{name}");
    }
}

#[test]
fn our_frames_match_what_kafka_readers_expect() {
    // Our lz4 header is byte-identical to librdkafka's default frame header (independent
    // blocks, 64 KiB, no optional fields), which Kafka's Java reader accepts.
    let ours = Compression::Lz4.compress(&sample(140_000)).unwrap();
    assert_eq!(&ours[..7], &vector("lz4_bc0_cc0_size0_linked0")[..7]);
    // Our snappy stream starts with the same xerial header kafka-python (and snappy-java)
    // write.
    let ours = Compression::Snappy.compress(b"x").unwrap();
    assert_eq!(&ours[..16], &vector("batch_snappy")[61..77]);
}
