//! Log compaction (`cleanup.policy=compact`) run by the broker's cleaner
//! (`log.cleaner.backoff.ms`), seen as a client sees it: librdkafka produces keyed values
//! and tombstones, and reads back only the latest value of each live key at its original
//! offset; records without a key are refused with INVALID_RECORD.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use bytes::Bytes;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::producer::FutureRecord;
use rdkafka::Offset;
use sluice_protocol::error::ErrorCode;
use sluice_protocol::records::{decode_records, BatchIter, RecordBatchBuilder};
use sluice_system_tests::kafka::{consume, consumer, create_topic, producer};
use sluice_system_tests::raw::RawClient;
use sluice_system_tests::wire::{self, fetch_at, now_ms};
use sluice_system_tests::Sluice;

/// Settings that make the cleaner act within a second: segments roll after 100 ms
/// (by the retention task), any dirty byte is worth a pass, tombstones live 100 ms.
const COMPACTED: &[(&str, &str)] = &[
    ("cleanup.policy", "compact"),
    ("segment.ms", "100"),
    ("min.cleanable.dirty.ratio", "0.01"),
    ("delete.retention.ms", "100"),
];

fn start() -> Sluice {
    Sluice::start(&[
        "--log-cleaner-backoff-ms",
        "200",
        "--log-retention-check-interval-ms",
        "100",
    ])
}

/// (offset, key, value) of every record from offset 0, by raw fetches.
fn read_log(c: &mut RawClient, topic: &str) -> Vec<(i64, Vec<u8>, Option<Vec<u8>>)> {
    let mut out = Vec::new();
    let mut offset = 0;
    loop {
        let got = fetch_at(c, topic, 0, offset);
        assert_eq!(got.error_code, 0, "fetch at {offset}");
        let set = got.records.unwrap_or_default();
        if set.is_empty() {
            return out;
        }
        for item in BatchIter::new(&set) {
            let (h, pos) = item.expect("whole batch");
            offset = h.next_offset();
            if h.is_control() {
                continue;
            }
            let batch = set.slice(pos..pos + h.total_size());
            for r in decode_records(&batch, 64 << 20).expect("records decode") {
                let offset = r.offset(h.base_offset);
                let key = r.key.expect("compacted topics hold keyed records").to_vec();
                out.push((offset, key, r.value.map(|v| v.to_vec())));
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn the_cleaner_keeps_the_latest_value_per_key_and_drops_tombstoned_keys() {
    let node = start();
    create_topic(&node.addr, "table", 1, COMPACTED).await;
    let p = producer(&node.addr, &[("linger.ms", "20")]);
    let keys: Vec<String> = (0..10).map(|k| format!("key-{k}")).collect();
    let tombstoned = ["key-3", "key-7"];
    // Several rounds of values per key, each round in its own segment (segment.ms).
    let mut latest: BTreeMap<String, (i64, Option<String>)> = BTreeMap::new();
    for round in 0..4 {
        for k in &keys {
            let value = format!("{k}-v{round}");
            let rec = FutureRecord::to("table")
                .key(k.as_str())
                .payload(value.as_str());
            let offset = p
                .send(rec, Duration::from_secs(10))
                .await
                .expect("keyed record accepted")
                .offset;
            latest.insert(k.clone(), (offset, Some(value)));
        }
        tokio::time::sleep(Duration::from_millis(150)).await;
    }
    for k in tombstoned {
        let rec: FutureRecord<'_, str, str> = FutureRecord::to("table").key(k);
        let offset = p
            .send(rec, Duration::from_secs(10))
            .await
            .expect("tombstone accepted")
            .offset;
        latest.insert(k.to_string(), (offset, None));
    }
    let end = latest.values().map(|(o, _)| *o).max().unwrap_or(0) + 1;
    assert_eq!(end, 42, "offsets are dense before compaction");
    let mut want: Vec<(i64, Vec<u8>, Option<Vec<u8>>)> = latest
        .iter()
        .filter(|(_, (_, v))| v.is_some())
        .map(|(k, (o, v))| {
            (
                *o,
                k.clone().into_bytes(),
                v.clone().map(String::into_bytes),
            )
        })
        .collect();
    want.sort();

    // The cleaner runs every 200 ms; tombstones go on a later pass, 100 ms after their
    // segment's last append. Poll until the log holds exactly the live latest values.
    let mut c = RawClient::connect(&node.addr);
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut got = read_log(&mut c, "table");
    while got != want && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(100)).await;
        got = read_log(&mut c, "table");
    }
    assert_eq!(
        got, want,
        "the log never converged to the latest live values"
    );

    // A consumer from the beginning sees the same: survivors at their original offsets,
    // tombstoned keys gone; the log's end and start did not move.
    let cons = consumer(&node.addr, &[]);
    let seen = consume(
        &cons,
        "table",
        &[(0, Offset::Beginning)],
        want.len() + 1,
        Duration::from_secs(3),
    );
    let seen: Vec<(i64, Vec<u8>, Option<Vec<u8>>)> = seen
        .into_iter()
        .map(|m| (m.offset, m.key.unwrap_or_default(), m.value))
        .collect();
    assert_eq!(seen, want);
    assert_eq!(wire::list_offset(&mut c, 7, "table", 0, -1).offset, end);
    assert_eq!(wire::list_offset(&mut c, 7, "table", 0, -2).offset, 0);
    // New writes continue the offsets and overwrite as before.
    let rec = FutureRecord::to("table").key("key-0").payload("fresh");
    let delivered = p
        .send(rec, Duration::from_secs(10))
        .await
        .expect("accepted");
    assert_eq!(delivered.offset, end);
}

#[tokio::test(flavor = "multi_thread")]
async fn librdkafka_gets_invalid_record_for_a_keyless_record() {
    let node = start();
    create_topic(&node.addr, "needs-keys", 1, COMPACTED).await;
    let p = producer(&node.addr, &[("message.timeout.ms", "10000")]);
    let rec: FutureRecord<'_, str, str> = FutureRecord::to("needs-keys").payload("no key");
    let err = p
        .send(rec, Duration::from_secs(10))
        .await
        .expect_err("a keyless record is refused");
    assert_eq!(
        err.0,
        KafkaError::MessageProduction(RDKafkaErrorCode::InvalidRecord)
    );
    // A keyed one is fine, and is the only record stored.
    let rec = FutureRecord::to("needs-keys").key("k").payload("v");
    let delivered = p.send(rec, Duration::from_secs(10)).await.expect("ok");
    assert_eq!(delivered.offset, 0);
}

/// A batch with the given keys (all with a value).
fn keyed_batch(keys: &[Option<&str>]) -> Bytes {
    let mut b = RecordBatchBuilder::new();
    for k in keys {
        b.push(now_ms(), k.map(str::as_bytes), Some(b"v"), &[])
            .expect("record");
    }
    b.build().expect("batch")
}

#[test]
fn keyless_records_are_named_in_record_errors() {
    let node = start();
    let mut c = RawClient::connect(&node.addr);
    assert_eq!(
        wire::create_topic(&mut c, "strict", 1, COMPACTED).error_code,
        0
    );
    assert_eq!(wire::create_topic(&mut c, "loose", 1, &[]).error_code, 0);
    let message = "Compacted topic cannot accept message without key in topic partition strict-0.";
    let batch = keyed_batch(&[Some("a"), None, Some("b"), None]);
    // v8+ names each record at fault by its index in the batch.
    let r = wire::produce_v(&mut c, 9, "strict", 0, batch.clone());
    assert_eq!(r.error_code, ErrorCode::InvalidRecord.code());
    assert_eq!(r.error_message.as_deref(), Some(message));
    let named: Vec<(i32, Option<&str>)> = r
        .record_errors
        .iter()
        .map(|e| (e.batch_index, e.batch_index_error_message.as_deref()))
        .collect();
    assert_eq!(named, vec![(1, Some(message)), (3, Some(message))]);
    // Older versions carry only the code and message.
    let r = wire::produce_v(&mut c, 7, "strict", 0, batch.clone());
    assert_eq!(r.error_code, ErrorCode::InvalidRecord.code());
    assert!(r.record_errors.is_empty());
    // Nothing was stored; keyed batches are fine; other topics do not care.
    assert_eq!(wire::list_offset(&mut c, 7, "strict", 0, -1).offset, 0);
    let ok = wire::produce_v(&mut c, 9, "strict", 0, keyed_batch(&[Some("a"), Some("b")]));
    assert_eq!((ok.error_code, ok.base_offset), (0, 0));
    assert_eq!(wire::produce_v(&mut c, 9, "loose", 0, batch).error_code, 0);
}
