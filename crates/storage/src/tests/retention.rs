//! Retention by time and by size, rolling by age, and DeleteRecords.

use super::{open, read_all, small_config};
use crate::testutil::{batch, offsets_of};
use crate::{LogConfig, PartitionLog, StorageError};

const DAY: i64 = 24 * 3600 * 1000;

/// Appends `n` batches (2 records, ~155 bytes) with timestamp `ts`.
fn fill(log: &PartitionLog, n: usize, ts: i64) {
    for _ in 0..n {
        let mut b = batch(2, ts, 40);
        log.append_as_leader(&mut b, 0, ts).unwrap();
    }
    log.set_high_watermark(log.log_end_offset());
}

#[test]
fn retention_by_time_deletes_old_segments() {
    let dir = tempfile::tempdir().unwrap();
    let config = LogConfig {
        retention_ms: DAY,
        ..small_config(500)
    };
    let log = PartitionLog::open(dir.path(), config, 0).unwrap();
    // 3 batches per segment: segments [0,6) [6,12) at t=1000; [12,18) [18,20) later.
    fill(&log, 6, 1_000);
    fill(&log, 4, 5 * DAY);
    assert_eq!(log.segment_base_offsets(), vec![0, 6, 12, 18]);
    let size_before = log.size_bytes();
    let out = log.apply_retention(5 * DAY + 10).unwrap();
    assert_eq!(out.deleted_segments, 2);
    assert_eq!(out.deleted_by_time, 2);
    assert_eq!(out.log_start_offset, 12);
    assert!(!out.rolled);
    assert_eq!(out.deleted_bytes, size_before - log.size_bytes());
    assert_eq!(log.segment_base_offsets(), vec![12, 18]);
    assert_eq!(log.log_start_offset(), 12);
    assert!(!dir.path().join(format!("{:020}.log", 0)).exists());
    assert!(matches!(
        log.read(11, 100, i64::MAX, true),
        Err(StorageError::OffsetOutOfRange {
            requested: 11,
            start: 12,
            end: 20
        })
    ));
    assert_eq!(offsets_of(&read_all(&log, 12))[0], (12, 13));
    // Nothing more to do now; later everything (active segment included) expires: it is
    // rolled and the log restarts empty at its end.
    assert_eq!(
        log.apply_retention(5 * DAY + 20).unwrap().deleted_segments,
        0
    );
    let out = log.apply_retention(7 * DAY).unwrap();
    assert_eq!(
        (out.deleted_segments, out.rolled, out.log_start_offset),
        (2, true, 20)
    );
    assert_eq!(log.segment_base_offsets(), vec![20]);
    assert_eq!(
        (
            log.log_start_offset(),
            log.log_end_offset(),
            log.size_bytes()
        ),
        (20, 20, 0)
    );
    // The checkpointed start offset survives a restart.
    drop(log);
    let log = PartitionLog::open(dir.path(), LogConfig::default(), 0).unwrap();
    assert_eq!((log.log_start_offset(), log.log_end_offset()), (20, 20));
}

#[test]
fn retention_by_size_deletes_oldest_first() {
    let dir = tempfile::tempdir().unwrap();
    let log = open(dir.path(), small_config(500));
    fill(&log, 11, 1_000); // segments of 465 bytes: [0,6) [6,12) [12,18) [18,22)
    let sizes = log.size_bytes();
    assert_eq!(log.segment_base_offsets(), vec![0, 6, 12, 18]);
    // Limit leaves room for the last two segments only.
    let limit = sizes as i64 - 2 * 465;
    log.set_config(LogConfig {
        retention_bytes: limit,
        ..small_config(500)
    })
    .unwrap();
    let out = log.apply_retention(2_000).unwrap();
    assert_eq!(
        (out.deleted_segments, out.deleted_by_size, out.deleted_bytes),
        (2, 2, 930)
    );
    assert_eq!(log.segment_base_offsets(), vec![12, 18]);
    assert_eq!(log.log_start_offset(), 12);
    assert!(log.size_bytes() as i64 <= limit);
}

#[test]
fn retention_respects_the_high_watermark() {
    let dir = tempfile::tempdir().unwrap();
    let config = LogConfig {
        retention_ms: DAY,
        ..small_config(500)
    };
    let log = PartitionLog::open(dir.path(), config, 0).unwrap();
    fill(&log, 9, 1_000);
    log.set_high_watermark(7);
    let out = log.apply_retention(10 * DAY).unwrap();
    assert_eq!(
        out.deleted_segments, 1,
        "only [0,6) is wholly below the high watermark"
    );
    assert_eq!(log.log_start_offset(), 6);
}

#[test]
fn apply_retention_rolls_an_old_active_segment() {
    let dir = tempfile::tempdir().unwrap();
    let config = LogConfig {
        segment_ms: 1_000,
        retention_ms: -1,
        ..LogConfig::default()
    };
    let log = PartitionLog::open(dir.path(), config, 0).unwrap();
    fill(&log, 2, 10_000);
    assert!(!log.apply_retention(10_500).unwrap().rolled);
    let out = log.apply_retention(11_001).unwrap();
    assert!(out.rolled);
    assert_eq!(out.deleted_segments, 0);
    assert_eq!(log.segment_base_offsets(), vec![0, 4]);
    // An empty active segment is never rolled.
    assert!(!log.apply_retention(100_000).unwrap().rolled);
}

#[test]
fn append_rolls_by_segment_ms() {
    let dir = tempfile::tempdir().unwrap();
    let config = LogConfig {
        segment_ms: 1_000,
        ..LogConfig::default()
    };
    let log = PartitionLog::open(dir.path(), config, 0).unwrap();
    fill(&log, 1, 10_000);
    fill(&log, 1, 10_900); // within segment.ms of the first batch
    assert_eq!(log.segment_count(), 1);
    fill(&log, 1, 11_001);
    assert_eq!(log.segment_base_offsets(), vec![0, 4]);
}

#[test]
fn delete_records_before_table() {
    let dir = tempfile::tempdir().unwrap();
    let log = open(dir.path(), small_config(500));
    fill(&log, 11, 1_000); // [0,6) [6,12) [12,18) [18,22)
    log.set_high_watermark(20);
    // (delete before, expected log start, expected segments)
    let cases: Vec<(i64, i64, Vec<i64>)> = vec![
        (3, 3, vec![0, 6, 12, 18]),
        (1, 3, vec![0, 6, 12, 18]), // never backwards
        (6, 6, vec![6, 12, 18]),
        (13, 13, vec![12, 18]),
        (20, 20, vec![18]), // the active segment stays
    ];
    for (offset, start, segments) in cases {
        assert_eq!(
            log.delete_records_before(offset).unwrap(),
            start,
            "delete before {offset}"
        );
        assert_eq!(log.log_start_offset(), start);
        assert_eq!(
            log.segment_base_offsets(),
            segments,
            "delete before {offset}"
        );
    }
    assert!(matches!(
        log.delete_records_before(21),
        Err(StorageError::OffsetOutOfRange { requested: 21, .. })
    ));
    assert!(matches!(
        log.read(19, 1, i64::MAX, true),
        Err(StorageError::OffsetOutOfRange { .. })
    ));
    // Reading at the start offset inside a batch returns that batch (clients skip the
    // records below the start offset).
    assert_eq!(
        offsets_of(&log.read(20, 1, i64::MAX, true).unwrap().records),
        vec![(20, 21)]
    );
    drop(log);
    let log = open(dir.path(), small_config(500));
    assert_eq!(log.log_start_offset(), 20, "checkpointed");
}
