//! The leader-epoch cache as the log maintains it: assigned on append, persisted,
//! truncated with the log, rebuilt by recovery.

use super::{open, small_config};
use crate::testutil::batch;
use crate::{EpochEntry, LogConfig, PartitionLog};

fn append_with_epoch(log: &PartitionLog, records: usize, epoch: i32) {
    let mut b = batch(records, 1_000, 10);
    log.append_as_leader(&mut b, epoch, 1_000).unwrap();
}

fn entries(log: &PartitionLog) -> Vec<(i32, i64)> {
    log.epoch_entries()
        .iter()
        .map(|e: &EpochEntry| (e.epoch, e.start_offset))
        .collect()
}

#[test]
fn end_offset_for_epoch_through_the_log() {
    let dir = tempfile::tempdir().unwrap();
    let log = open(dir.path(), LogConfig::default());
    assert_eq!(log.end_offset_for_epoch(0), None, "empty cache");
    // Epoch 1: offsets 0..5, epoch 3: 5..8, epoch 4: 8..10.
    append_with_epoch(&log, 3, 1);
    append_with_epoch(&log, 2, 1);
    append_with_epoch(&log, 3, 3);
    append_with_epoch(&log, 2, 4);
    assert_eq!(entries(&log), vec![(1, 0), (3, 5), (4, 8)]);
    let cases = [
        (-1, None),
        (0, Some((0, 0))),
        (1, Some((1, 5))),
        (2, Some((1, 5))),
        (3, Some((3, 8))),
        (4, Some((4, 10))),
        (5, None),
    ];
    for (epoch, want) in cases {
        assert_eq!(log.end_offset_for_epoch(epoch), want, "epoch {epoch}");
    }
    assert_eq!(log.latest_epoch(), Some(4));

    // Persisted (Kafka's file format) and reloaded.
    let text = std::fs::read_to_string(dir.path().join("leader-epoch-checkpoint")).unwrap();
    assert_eq!(text, "0\n3\n1 0\n3 5\n4 8\n");
    drop(log);
    let log = open(dir.path(), LogConfig::default());
    assert_eq!(entries(&log), vec![(1, 0), (3, 5), (4, 8)]);

    // Truncation removes epochs that start at or after the new end: cutting inside the
    // epoch-3 batch [5, 7] removes it whole, so epoch 3 has no data left.
    log.truncate_to(9).unwrap();
    assert_eq!(log.log_end_offset(), 8);
    assert_eq!(entries(&log), vec![(1, 0), (3, 5)]);
    assert_eq!(log.end_offset_for_epoch(3), Some((3, 8)));
    log.truncate_to(6).unwrap();
    assert_eq!(log.log_end_offset(), 5);
    assert_eq!(entries(&log), vec![(1, 0)]);
    assert_eq!(log.end_offset_for_epoch(1), Some((1, 5)));
    assert_eq!(log.end_offset_for_epoch(3), None);
}

#[test]
fn recovery_rebuilds_a_lost_epoch_checkpoint() {
    let dir = tempfile::tempdir().unwrap();
    let log = open(dir.path(), small_config(400));
    append_with_epoch(&log, 3, 2);
    append_with_epoch(&log, 3, 2);
    append_with_epoch(&log, 3, 5);
    drop(log);
    std::fs::remove_file(dir.path().join("leader-epoch-checkpoint")).unwrap();
    std::fs::remove_file(dir.path().join("partition-offsets-checkpoint")).unwrap();
    let log = open(dir.path(), small_config(400));
    assert_eq!(entries(&log), vec![(2, 0), (5, 6)]);
}

#[test]
fn log_start_offset_moves_the_first_epoch() {
    let dir = tempfile::tempdir().unwrap();
    let log = open(dir.path(), LogConfig::default());
    append_with_epoch(&log, 4, 1);
    append_with_epoch(&log, 4, 2);
    log.set_high_watermark(8);
    log.delete_records_before(2).unwrap();
    assert_eq!(entries(&log), vec![(1, 2), (2, 4)]);
    log.delete_records_before(6).unwrap();
    assert_eq!(entries(&log), vec![(2, 6)]);
}
