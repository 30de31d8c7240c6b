//! Idempotent-producer state through the log: deduplication of retries, sequence and
//! epoch checks, persistence in snapshots and by rescanning, truncation, followers, expiry.

use std::path::Path;

use sluice_protocol::records::RecordBatchBuilder;
use sluice_protocol::records::RecordBatchHeader;

use super::{open, read_all, small_config};
use crate::producer_state::list_snapshots;
use crate::{AppendInfo, LogConfig, PartitionLog, ProducerSnapshotEntry, StorageError};

/// An idempotent batch of `records` records stamped `ts`.
fn pbatch(pid: i64, epoch: i16, seq: i32, records: usize, ts: i64) -> Vec<u8> {
    let mut b = RecordBatchBuilder::new().producer(pid, epoch, seq);
    for i in 0..records {
        b.push(ts, None, Some(format!("value-{seq}-{i}").as_bytes()), &[])
            .unwrap();
    }
    b.build().unwrap().to_vec()
}

fn produce(
    log: &PartitionLog,
    pid: i64,
    epoch: i16,
    seq: i32,
    records: usize,
) -> Result<AppendInfo, StorageError> {
    produce_at(log, pid, epoch, seq, records, 1_000)
}

fn produce_at(
    log: &PartitionLog,
    pid: i64,
    epoch: i16,
    seq: i32,
    records: usize,
    ts: i64,
) -> Result<AppendInfo, StorageError> {
    let mut b = pbatch(pid, epoch, seq, records, ts);
    log.append_as_leader(&mut b, 0, ts)
}

fn snapshot_files(dir: &Path) -> Vec<i64> {
    list_snapshots(dir).unwrap()
}

fn delete_snapshot_files(dir: &Path) {
    for offset in snapshot_files(dir) {
        std::fs::remove_file(dir.join(format!("{offset:020}.snapshot"))).unwrap();
    }
}

/// Several producers, enough batches to roll tiny segments a few times.
fn populate(log: &PartitionLog) {
    for i in 0..8 {
        produce(log, 1, 0, i * 2, 2).unwrap();
        produce(log, 2, 3, i, 1).unwrap();
    }
    // A plain batch and a producer that bumped its epoch.
    let mut plain = crate::testutil::batch(2, 1_000, 10);
    log.append_as_leader(&mut plain, 0, 1_000).unwrap();
    produce(log, 3, 0, 0, 1).unwrap();
    produce(log, 3, 1, 0, 3).unwrap();
}

#[test]
fn in_sequence_appends_and_retries_of_the_last_five() {
    let dir = tempfile::tempdir().unwrap();
    let log = open(dir.path(), LogConfig::default());
    let mut originals = Vec::new();
    for i in 0..6 {
        let info = produce(&log, 7, 0, i * 2, 2).unwrap();
        assert!(!info.duplicate);
        assert_eq!(
            (info.first_offset, info.last_offset),
            (i64::from(i) * 2, i64::from(i) * 2 + 1)
        );
        originals.push(info);
    }
    let stored = read_all(&log, 0);
    assert_eq!(log.log_end_offset(), 12);

    // Each of the five cached batches is a duplicate: original offsets, nothing written.
    for i in 1..6 {
        let info = produce(&log, 7, 0, i * 2, 2).unwrap();
        let original = &originals[i as usize];
        assert!(info.duplicate, "batch {i}");
        assert_eq!(
            (info.first_offset, info.last_offset),
            (original.first_offset, original.last_offset)
        );
        assert_eq!((info.log_end_offset, info.log_start_offset), (12, 0));
        assert_eq!((info.batch_count, info.size_bytes), (0, 0));
        assert_eq!(info.max_timestamp, 1_000);
    }
    // The sixth-newest is no longer remembered: a sequence that goes backwards.
    match produce(&log, 7, 0, 0, 2) {
        Err(StorageError::OutOfOrderSequence {
            producer_id: 7,
            first_sequence: 0,
            last_sequence: 11,
            ..
        }) => {}
        other => panic!("{other:?}"),
    }
    // A retry with a different sequence range is not a duplicate either.
    assert!(matches!(
        produce(&log, 7, 0, 10, 1),
        Err(StorageError::OutOfOrderSequence { .. })
    ));
    assert_eq!(log.log_end_offset(), 12);
    assert_eq!(read_all(&log, 0), stored);
    assert_eq!(
        log.producer_states(),
        vec![ProducerSnapshotEntry {
            producer_id: 7,
            producer_epoch: 0,
            last_sequence: 11,
            last_timestamp: 1_000,
            last_batch_first_offset: 10,
            coordinator_epoch: -1,
            current_txn_start_offset: -1,
        }]
    );
    // And the next in sequence goes on.
    assert_eq!(produce(&log, 7, 0, 12, 1).unwrap().first_offset, 12);
}

#[test]
fn gaps_and_epochs_are_refused_without_writing() {
    let dir = tempfile::tempdir().unwrap();
    let log = open(dir.path(), LogConfig::default());
    produce(&log, 5, 2, 0, 3).unwrap();
    let stored = read_all(&log, 0);
    let size = log.size_bytes();

    assert!(matches!(
        produce(&log, 5, 2, 4, 1),
        Err(StorageError::OutOfOrderSequence {
            producer_id: 5,
            producer_epoch: 2,
            first_sequence: 4,
            last_sequence: 2
        })
    ));
    assert!(matches!(
        produce(&log, 5, 1, 3, 1),
        Err(StorageError::InvalidProducerEpoch {
            producer_id: 5,
            producer_epoch: 1,
            current_epoch: 2
        })
    ));
    // Even a lower epoch's "retry" of the stored range is fenced, not a duplicate.
    assert!(matches!(
        produce(&log, 5, 1, 0, 3),
        Err(StorageError::InvalidProducerEpoch { .. })
    ));
    // A new epoch must start at sequence 0.
    assert!(matches!(
        produce(&log, 5, 3, 5, 1),
        Err(StorageError::OutOfOrderSequence { .. })
    ));
    assert_eq!(log.log_end_offset(), 3);
    assert_eq!(log.size_bytes(), size);
    assert_eq!(read_all(&log, 0), stored);

    let info = produce(&log, 5, 3, 0, 1).unwrap();
    assert_eq!((info.first_offset, info.duplicate), (3, false));
    assert_eq!(log.producer_states()[0].producer_epoch, 3);
    // The old epoch is now fenced.
    assert!(matches!(
        produce(&log, 5, 2, 3, 1),
        Err(StorageError::InvalidProducerEpoch {
            current_epoch: 3,
            ..
        })
    ));
}

#[test]
fn unknown_producers_start_at_any_sequence_and_plain_batches_are_ignored() {
    let dir = tempfile::tempdir().unwrap();
    let log = open(dir.path(), LogConfig::default());
    assert_eq!(produce(&log, 9, 4, 1_000, 2).unwrap().first_offset, 0);
    assert_eq!(produce(&log, 10, 0, 77, 1).unwrap().first_offset, 2);
    let mut plain = crate::testutil::batch(2, 1_000, 10);
    log.append_as_leader(&mut plain, 0, 1_000).unwrap();
    // A batch with a producer id but no sequence is not idempotent.
    let mut no_seq = pbatch(11, 0, -1, 1, 1_000);
    log.append_as_leader(&mut no_seq, 0, 1_000).unwrap();
    let pids: Vec<_> = log
        .producer_states()
        .iter()
        .map(|p| p.producer_id)
        .collect();
    assert_eq!(pids, vec![9, 10]);
    assert_eq!(produce(&log, 9, 4, 1_002, 1).unwrap().first_offset, 6);
}

#[test]
fn sequences_wrap_at_i32_max() {
    let dir = tempfile::tempdir().unwrap();
    let log = open(dir.path(), LogConfig::default());
    produce(&log, 1, 0, i32::MAX - 1, 2).unwrap();
    assert_eq!(log.producer_states()[0].last_sequence, i32::MAX);
    assert!(matches!(
        produce(&log, 1, 0, 1, 1),
        Err(StorageError::OutOfOrderSequence { .. })
    ));
    produce(&log, 1, 0, 0, 1).unwrap();
    // A batch spanning the wrap: sequences MAX, 0, 1 for producer 2.
    produce(&log, 2, 0, i32::MAX - 3, 3).unwrap();
    produce(&log, 2, 0, i32::MAX, 3).unwrap();
    assert_eq!(log.producer_states()[1].last_sequence, 1);
    let dup = produce(&log, 2, 0, i32::MAX, 3).unwrap();
    assert!(dup.duplicate);
    assert_eq!((dup.first_offset, dup.last_offset), (6, 8));
    produce(&log, 2, 0, 2, 1).unwrap();
}

#[test]
fn multi_batch_appends_check_each_batch_in_order() {
    let dir = tempfile::tempdir().unwrap();
    let log = open(dir.path(), LogConfig::default());
    let mut two = pbatch(1, 0, 0, 2, 1_000);
    two.extend(pbatch(1, 0, 2, 1, 1_000));
    let info = log.append_as_leader(&mut two.clone(), 0, 1_000).unwrap();
    assert_eq!(
        (info.first_offset, info.last_offset, info.batch_count),
        (0, 2, 2)
    );
    // The same two again: retries mixed into a multi-batch call are refused.
    assert!(matches!(
        log.append_as_leader(&mut two, 0, 1_000),
        Err(StorageError::DuplicateSequence { .. })
    ));
    // A gap between the two batches of one call: nothing written.
    let mut gap = pbatch(1, 0, 3, 1, 1_000);
    gap.extend(pbatch(1, 0, 5, 1, 1_000));
    assert!(matches!(
        log.append_as_leader(&mut gap, 0, 1_000),
        Err(StorageError::OutOfOrderSequence {
            first_sequence: 5,
            last_sequence: 3,
            ..
        })
    ));
    assert_eq!(log.log_end_offset(), 3);
}

#[test]
fn state_survives_clean_close_and_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let log = open(dir.path(), small_config(400));
    populate(&log);
    let states = log.producer_states();
    let leo = log.log_end_offset();
    assert!(log.segment_count() > 2, "segments rolled");
    log.close().unwrap();
    drop(log);
    // Two snapshots kept, the newest at the log end.
    let snaps = snapshot_files(dir.path());
    assert_eq!(snaps.len(), 2);
    assert_eq!(snaps.last(), Some(&leo));

    let log = open(dir.path(), small_config(400));
    assert_eq!(log.producer_states(), states);
    let dup = produce(&log, 1, 0, 14, 2).unwrap();
    assert!(dup.duplicate);
    assert_eq!(log.log_end_offset(), leo);
    assert_eq!(produce(&log, 1, 0, 16, 1).unwrap().first_offset, leo);
}

#[test]
fn state_is_rebuilt_by_scanning_after_an_unclean_stop() {
    for keep_roll_snapshots in [true, false] {
        let dir = tempfile::tempdir().unwrap();
        let log = open(dir.path(), small_config(400));
        populate(&log);
        let states = log.producer_states();
        let leo = log.log_end_offset();
        log.flush().unwrap();
        // No close: no snapshot at the log end, no clean-shutdown marker.
        drop(log);
        if keep_roll_snapshots {
            assert!(
                !snapshot_files(dir.path()).is_empty(),
                "rolls wrote snapshots"
            );
        } else {
            delete_snapshot_files(dir.path());
        }
        assert!(snapshot_files(dir.path()).iter().all(|&o| o < leo));

        let log = open(dir.path(), small_config(400));
        assert_eq!(log.log_end_offset(), leo);
        assert_eq!(
            log.producer_states(),
            states,
            "roll snapshots kept: {keep_roll_snapshots}"
        );
        assert!(produce(&log, 2, 3, 7, 1).unwrap().duplicate);
        assert!(matches!(
            produce(&log, 3, 0, 1, 1),
            Err(StorageError::InvalidProducerEpoch { .. })
        ));
    }
}

#[test]
fn a_corrupt_snapshot_falls_back_to_an_older_one_or_a_scan() {
    let dir = tempfile::tempdir().unwrap();
    let log = open(dir.path(), small_config(400));
    populate(&log);
    let states = log.producer_states();
    log.close().unwrap();
    drop(log);
    let snaps = snapshot_files(dir.path());
    let newest = dir.path().join(format!("{:020}.snapshot", snaps[1]));
    std::fs::write(&newest, b"not a snapshot").unwrap();
    let log = open(dir.path(), small_config(400));
    assert_eq!(log.producer_states(), states);
    log.close().unwrap();
    drop(log);
    // Every snapshot corrupt: a scan from the log start.
    for offset in snapshot_files(dir.path()) {
        std::fs::write(dir.path().join(format!("{offset:020}.snapshot")), [0u8; 40]).unwrap();
    }
    let log = open(dir.path(), small_config(400));
    assert_eq!(log.producer_states(), states);
}

#[test]
fn truncation_forgets_truncated_batches() {
    let dir = tempfile::tempdir().unwrap();
    let log = open(dir.path(), small_config(300));
    let mut offsets = Vec::new();
    for seq in 0..8 {
        offsets.push(produce(&log, 4, 0, seq, 1).unwrap().first_offset);
    }
    let rolls: Vec<_> = snapshot_files(dir.path());
    assert!(!rolls.is_empty(), "rolled at least once");
    // Cut below the batches with sequences 3..8.
    log.truncate_to(offsets[3]).unwrap();
    assert_eq!(log.log_end_offset(), offsets[3]);
    assert!(snapshot_files(dir.path()).iter().all(|&o| o <= offsets[3]));
    assert_eq!(log.producer_states()[0].last_sequence, 2);
    // The retry of a truncated batch is appended again, at the new end.
    let info = produce(&log, 4, 0, 3, 1).unwrap();
    assert!(!info.duplicate);
    assert_eq!(info.first_offset, offsets[3]);
    // One that survived is still a duplicate.
    let dup = produce(&log, 4, 0, 2, 1).unwrap();
    assert!(dup.duplicate);
    assert_eq!(dup.first_offset, offsets[2]);

    // The same after an unclean reopen.
    drop(log);
    let log = open(dir.path(), small_config(300));
    assert_eq!(log.producer_states()[0].last_sequence, 3);

    // Truncating everything away forgets every producer and snapshot.
    log.truncate_fully_and_start_at(50).unwrap();
    assert!(log.producer_states().is_empty());
    assert!(snapshot_files(dir.path()).is_empty());
    assert_eq!(produce(&log, 4, 0, 9, 1).unwrap().first_offset, 50);
}

#[test]
fn followers_end_with_the_leaders_state() {
    let leader_dir = tempfile::tempdir().unwrap();
    let follower_dir = tempfile::tempdir().unwrap();
    let leader = open(leader_dir.path(), small_config(400));
    let follower = open(follower_dir.path(), small_config(400));
    populate(&leader);
    // Replicate batch by batch, as fetches would.
    let data = read_all(&leader, 0);
    let mut at = 0;
    while at < data.len() {
        let h = RecordBatchHeader::parse(&data[at..]).unwrap();
        let end = at + h.total_size();
        follower.append_as_follower(&data[at..end], 2_000).unwrap();
        at = end;
    }
    assert_eq!(follower.producer_states(), leader.producer_states());
    assert_eq!(follower.log_end_offset(), leader.log_end_offset());
    // The follower, promoted, deduplicates the producer's retry of its last batch.
    let dup = produce(&follower, 2, 3, 7, 1).unwrap();
    assert!(dup.duplicate);
    assert_eq!(
        dup.first_offset,
        follower.producer_states()[1].last_batch_first_offset
    );
}

#[test]
fn expiry_and_retention() {
    let dir = tempfile::tempdir().unwrap();
    let config = LogConfig {
        producer_id_expiration_ms: 10_000,
        retention_ms: 5_000,
        ..small_config(300)
    };
    let log = PartitionLog::open(dir.path(), config.clone(), 1_000).unwrap();
    for seq in 0..6 {
        produce_at(&log, 1, 0, seq, 1, 1_000).unwrap();
    }
    produce_at(&log, 2, 0, 0, 1, 8_000).unwrap();
    log.set_high_watermark(log.log_end_offset());

    // Retention removes producer 1's segments, but not producer 1.
    let out = log.apply_retention(9_000).unwrap();
    assert!(out.deleted_segments > 0);
    let start = log.log_start_offset();
    assert!(snapshot_files(dir.path()).iter().all(|&o| o >= start));
    let pids: Vec<_> = log
        .producer_states()
        .iter()
        .map(|p| p.producer_id)
        .collect();
    assert_eq!(pids, vec![1, 2]);
    assert!(matches!(
        produce_at(&log, 1, 0, 9, 1, 9_000),
        Err(StorageError::OutOfOrderSequence { .. })
    ));

    // 10 s after its last batch, producer 1 expires: any sequence is accepted again.
    log.apply_retention(11_000).unwrap();
    let pids: Vec<_> = log
        .producer_states()
        .iter()
        .map(|p| p.producer_id)
        .collect();
    assert_eq!(pids, vec![2]);
    assert!(!produce_at(&log, 1, 0, 9, 1, 11_000).unwrap().duplicate);

    // Expired producers are not resurrected from an older snapshot on open.
    log.close().unwrap();
    drop(log);
    let log = PartitionLog::open(dir.path(), config, 19_000).unwrap();
    let pids: Vec<_> = log
        .producer_states()
        .iter()
        .map(|p| p.producer_id)
        .collect();
    assert_eq!(pids, vec![1]);
}
