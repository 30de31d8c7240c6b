//! Retention run by the broker's background task (`log.retention.check.interval.ms`),
//! by size and by time, observed through ListOffsets and Fetch as a client sees it.

use std::time::{Duration, Instant};

use sluice_protocol::compression::Compression;
use sluice_protocol::error::ErrorCode;
use sluice_protocol::records::RecordBatchBuilder;
use sluice_system_tests::raw::RawClient;
use sluice_system_tests::wire::{self, batch_at, fetch_at, list_offset, now_ms};
use sluice_system_tests::Sluice;

const EARLIEST: i64 = -2;
const LATEST: i64 = -1;

/// Produces `n` batches of one ~10 KiB record each, stamped `ts`.
fn fill(c: &mut RawClient, topic: &str, n: usize, ts: i64) {
    let value = vec![b'r'; 10 * 1024];
    for _ in 0..n {
        let p = wire::produce_v(c, 9, topic, 0, batch_at(Compression::None, &[(ts, &value)]));
        assert_eq!(p.error_code, 0, "{:?}", p.error_message);
    }
}

/// Polls ListOffsets earliest until it passes `at_least` or `limit` passes.
fn wait_for_log_start(c: &mut RawClient, topic: &str, at_least: i64, limit: Duration) -> i64 {
    let deadline = Instant::now() + limit;
    loop {
        let start = list_offset(c, 7, topic, 0, EARLIEST).offset;
        if start >= at_least || Instant::now() > deadline {
            return start;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn retention_bytes_deletes_oldest_segments_in_the_background() {
    let node = Sluice::start(&["--log-retention-check-interval-ms", "100"]);
    let mut c = RawClient::connect(&node.addr);
    let created = wire::create_topic(
        &mut c,
        "by-size",
        1,
        &[("segment.bytes", "1048576"), ("retention.bytes", "1048576")],
    );
    assert_eq!(created.error_code, 0);
    // ~4 MiB in 1 MiB segments: retention keeps at most 1 MiB plus the active segment.
    fill(&mut c, "by-size", 400, now_ms());
    // A pass may run while the fill is still going, so wait for the state the last pass
    // leaves rather than for the first deletion.
    let allowed_records = (2 * 1048576 + 20 * 1024) / (10 * 1024 + 80);
    let start = wait_for_log_start(
        &mut c,
        "by-size",
        400 - allowed_records,
        Duration::from_secs(10),
    );
    assert!(
        start > 0,
        "retention.bytes never advanced the log start offset"
    );
    // Whole segments only: the log start is a segment boundary, and what remains is
    // within retention.bytes plus one segment.
    let end = list_offset(&mut c, 7, "by-size", 0, LATEST).offset;
    assert_eq!(end, 400);
    let kept_bytes = (end - start) * (10 * 1024 + 80);
    assert!(
        kept_bytes <= 2 * 1048576 + 20 * 1024,
        "kept {kept_bytes} bytes"
    );
    // Below the log start: out of range; at it: data.
    assert_eq!(
        fetch_at(&mut c, "by-size", 0, 0).error_code,
        ErrorCode::OffsetOutOfRange.code()
    );
    let at_start = fetch_at(&mut c, "by-size", 0, start);
    assert_eq!(at_start.error_code, 0);
    assert_eq!(at_start.log_start_offset, start);
    assert!(!at_start.records.unwrap_or_default().is_empty());
}

#[test]
fn retention_ms_expires_old_records_even_in_the_active_segment() {
    let node = Sluice::start(&["--log-retention-check-interval-ms", "100"]);
    let mut c = RawClient::connect(&node.addr);
    let created = wire::create_topic(&mut c, "by-time", 1, &[("retention.ms", "60000")]);
    assert_eq!(created.error_code, 0);
    // Records stamped ten minutes ago are past retention.ms at once.
    fill(&mut c, "by-time", 20, now_ms() - 600_000);
    let start = wait_for_log_start(&mut c, "by-time", 20, Duration::from_secs(10));
    assert_eq!(
        start, 20,
        "every expired record is gone, the offsets are not reused"
    );
    assert_eq!(list_offset(&mut c, 7, "by-time", 0, LATEST).offset, 20);
    // New records are kept and continue the offsets.
    fill(&mut c, "by-time", 1, now_ms());
    let fresh = fetch_at(&mut c, "by-time", 0, 20);
    assert_eq!(fresh.error_code, 0);
    assert_eq!(
        wire::records(&fresh.records.unwrap_or_default())[0].offset,
        20
    );
}

/// `--producer-id-expiration-ms` reaches storage: the background pass forgets an idle
/// producer, so the same batch sent again is a new append rather than a duplicate
/// answered with its first offset.
#[test]
fn an_idle_producer_expires_after_producer_id_expiration_ms() {
    let node = Sluice::start(&[
        "--log-retention-check-interval-ms",
        "100",
        "--producer-id-expiration-ms",
        "500",
    ]);
    let mut c = RawClient::connect(&node.addr);
    assert_eq!(wire::create_topic(&mut c, "expiring", 1, &[]).error_code, 0);
    let batch = || {
        let mut b = RecordBatchBuilder::new()
            .compression(Compression::None)
            .producer(4242, 0, 0);
        b.push(now_ms(), None, Some(b"once"), &[]).unwrap();
        b.build().unwrap()
    };
    let first = wire::produce_v(&mut c, 9, "expiring", 0, batch());
    assert_eq!((first.error_code, first.base_offset), (0, 0));
    let retry = wire::produce_v(&mut c, 9, "expiring", 0, batch());
    assert_eq!(
        (retry.error_code, retry.base_offset),
        (0, 0),
        "a retry within the expiration is the original append"
    );
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        std::thread::sleep(Duration::from_millis(200));
        let again = wire::produce_v(&mut c, 9, "expiring", 0, batch());
        assert_eq!(again.error_code, 0, "{:?}", again.error_message);
        if again.base_offset == 1 {
            break; // forgotten: appended as new, right after the first
        }
        assert_eq!(again.base_offset, 0, "still a duplicate until it expires");
        assert!(
            Instant::now() < deadline,
            "the producer never expired (500 ms expiration, 100 ms checks)"
        );
    }
    assert_eq!(list_offset(&mut c, 7, "expiring", 0, LATEST).offset, 2);
}
