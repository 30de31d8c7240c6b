//! Transactions through the log (KIP-98): the last stable offset, the aborted-transaction
//! list a read_committed fetch reports, the checks on transactional writes and markers,
//! and all of it surviving reopening (with and without snapshots), truncation,
//! replication to a follower, retention and expiry.

use std::path::Path;

use sluice_protocol::records::{EndTxnMarker, RecordBatchBuilder};

use super::{open, read_all, small_config};
use crate::producer_state::list_snapshots;
use crate::{AbortedTxn, AppendInfo, LogConfig, PartitionLog, StorageError};

/// A batch of `records` records from producer `pid`, transactional or not.
fn data(pid: i64, epoch: i16, seq: i32, records: usize, transactional: bool) -> Vec<u8> {
    let mut b = RecordBatchBuilder::new()
        .producer(pid, epoch, seq)
        .transactional(transactional);
    for i in 0..records {
        b.push(
            1_000,
            None,
            Some(format!("v-{pid}-{seq}-{i}").as_bytes()),
            &[],
        )
        .unwrap();
    }
    b.build().unwrap().to_vec()
}

fn write(
    log: &PartitionLog,
    pid: i64,
    seq: i32,
    records: usize,
    transactional: bool,
) -> Result<AppendInfo, StorageError> {
    log.append_as_leader(&mut data(pid, 0, seq, records, transactional), 0, 1_000)
}

fn end(
    log: &PartitionLog,
    pid: i64,
    epoch: i16,
    coordinator_epoch: i32,
    commit: bool,
) -> Result<AppendInfo, StorageError> {
    let marker = EndTxnMarker {
        commit,
        coordinator_epoch,
    };
    log.append_txn_marker(pid, epoch, marker, 0, 1_000)
}

fn caught_up(log: &PartitionLog) -> i64 {
    log.set_high_watermark(log.log_end_offset());
    log.last_stable_offset()
}

fn aborted(pid: i64, first: i64, last: i64, lso: i64) -> AbortedTxn {
    AbortedTxn {
        producer_id: pid,
        first_offset: first,
        last_offset: last,
        last_stable_offset: lso,
    }
}

/// Offsets 0-1 plain; producer 1: 2-3 (txn, committed at 6); producer 2: 4-5 (txn,
/// aborted at 7); producer 3: 8 (txn, open).
fn populate(log: &PartitionLog) {
    log.append_as_leader(&mut crate::testutil::batch(2, 1_000, 5), 0, 1_000)
        .unwrap();
    write(log, 1, 0, 2, true).unwrap();
    write(log, 2, 0, 2, true).unwrap();
    end(log, 1, 0, 0, true).unwrap();
    end(log, 2, 0, 0, false).unwrap();
    write(log, 3, 0, 1, true).unwrap();
}

fn check_populated(log: &PartitionLog) {
    assert_eq!(log.log_end_offset(), 9);
    assert_eq!(caught_up(log), 8, "producer 3's transaction holds the LSO");
    assert_eq!(
        log.aborted_transactions(0, 9),
        vec![aborted(2, 4, 7, 8)],
        "no other transaction was open at the abort: its stable offset is the marker's next"
    );
    let states = log.producer_states();
    let open: Vec<(i64, i64)> = states
        .iter()
        .map(|p| (p.producer_id, p.current_txn_start_offset))
        .collect();
    assert_eq!(open, vec![(1, -1), (2, -1), (3, 8)]);
}

#[test]
fn the_last_stable_offset_waits_for_open_and_unreplicated_transactions() {
    let dir = tempfile::tempdir().unwrap();
    let log = open(dir.path(), LogConfig::default());
    log.append_as_leader(&mut crate::testutil::batch(2, 1_000, 5), 0, 1_000)
        .unwrap();
    assert_eq!(caught_up(&log), 2);
    write(&log, 1, 0, 2, true).unwrap();
    assert_eq!(caught_up(&log), 2, "the open transaction starts at 2");
    write(&log, 1, 2, 1, true).unwrap();
    let marker = end(&log, 1, 0, 5, true).unwrap();
    assert_eq!(marker.first_offset, 5);
    // The marker is written but not below the high watermark: still undecided.
    log.set_high_watermark(5);
    assert_eq!(log.last_stable_offset(), 2);
    assert_eq!(caught_up(&log), 6);
    // A plain write is stable as soon as it is below the high watermark.
    log.append_as_leader(&mut crate::testutil::batch(1, 1_000, 5), 0, 1_000)
        .unwrap();
    assert_eq!(log.last_stable_offset(), 6);
    assert_eq!(caught_up(&log), 7);
    assert!(log.aborted_transactions(0, 7).is_empty());
}

#[test]
fn aborted_transactions_are_reported_for_the_fetched_range() {
    let dir = tempfile::tempdir().unwrap();
    let log = open(dir.path(), LogConfig::default());
    populate(&log);
    check_populated(&log);
    assert!(log.aborted_transactions(0, 4).is_empty());
    assert_eq!(log.aborted_transactions(5, 6).len(), 1);
    assert!(log.aborted_transactions(8, 9).is_empty());
    // A second abort of the same producer, spanning a plain write of another.
    write(&log, 2, 2, 1, true).unwrap();
    log.append_as_leader(&mut crate::testutil::batch(1, 1_000, 5), 0, 1_000)
        .unwrap();
    end(&log, 2, 0, 0, false).unwrap();
    assert_eq!(
        log.aborted_transactions(0, 12),
        vec![aborted(2, 4, 7, 8), aborted(2, 9, 11, 8)]
    );
}

#[test]
fn transactional_writes_and_markers_are_checked() {
    let dir = tempfile::tempdir().unwrap();
    let log = open(dir.path(), LogConfig::default());
    write(&log, 1, 0, 1, true).unwrap();
    // A non-transactional write while the transaction is open.
    let err = write(&log, 1, 1, 1, false).unwrap_err();
    assert!(
        matches!(
            err,
            StorageError::InvalidTxnState {
                producer_id: 1,
                txn_first_offset: 0
            }
        ),
        "{err}"
    );
    end(&log, 1, 0, 3, false).unwrap();
    // Now it may write outside a transaction.
    write(&log, 1, 1, 1, false).unwrap();
    // A marker from an older coordinator epoch, then from an older producer epoch.
    let err = end(&log, 1, 0, 2, true).unwrap_err();
    assert!(
        matches!(
            err,
            StorageError::CoordinatorFenced {
                coordinator_epoch: 2,
                current: 3,
                ..
            }
        ),
        "{err}"
    );
    end(&log, 1, 4, 3, false).unwrap();
    let err = end(&log, 1, 3, 3, false).unwrap_err();
    assert!(
        matches!(
            err,
            StorageError::InvalidProducerEpoch {
                current_epoch: 4,
                ..
            }
        ),
        "{err}"
    );
    // The marker moved the epoch: the old epoch's data is fenced, the new one starts at 0.
    let err = write(&log, 1, 2, 1, true).unwrap_err();
    assert!(
        matches!(err, StorageError::InvalidProducerEpoch { .. }),
        "{err}"
    );
    log.append_as_leader(&mut data(1, 4, 0, 1, true), 0, 1_000)
        .unwrap();
    // A marker for a producer the partition never saw is a transaction of its own.
    end(&log, 9, 0, 0, false).unwrap();
    let leo = log.log_end_offset();
    assert_eq!(
        log.aborted_transactions(0, leo).last(),
        Some(&aborted(9, leo - 1, leo - 1, 4))
    );
    let states = log.producer_states();
    let nine = states.iter().find(|p| p.producer_id == 9).unwrap();
    assert_eq!((nine.last_sequence, nine.coordinator_epoch), (-1, 0));
}

fn reopen(log: PartitionLog, dir: &Path, config: LogConfig) -> PartitionLog {
    log.close().unwrap();
    drop(log);
    open(dir, config)
}

#[test]
fn transactions_survive_reopening_from_snapshots_and_from_a_scan() {
    let dir = tempfile::tempdir().unwrap();
    let config = small_config(200);
    let log = open(dir.path(), config.clone());
    populate(&log);
    assert!(
        log.segment_count() > 2,
        "the test wants snapshots from rolls"
    );
    check_populated(&log);
    let log = reopen(log, dir.path(), config.clone());
    check_populated(&log);
    // Without any snapshot the state comes from a scan of the whole log.
    log.close().unwrap();
    drop(log);
    for offset in list_snapshots(dir.path()).unwrap() {
        std::fs::remove_file(dir.path().join(format!("{offset:020}.snapshot"))).unwrap();
    }
    let log = open(dir.path(), config);
    check_populated(&log);
}

#[test]
fn truncating_a_marker_reopens_its_transaction() {
    let dir = tempfile::tempdir().unwrap();
    let log = open(dir.path(), small_config(200));
    populate(&log);
    log.truncate_to(7).unwrap();
    // Producer 2's abort is gone: its transaction from 4 is open again.
    assert_eq!(caught_up(&log), 4);
    assert!(log.aborted_transactions(0, 7).is_empty());
    // The coordinator writes the marker again.
    end(&log, 2, 0, 0, false).unwrap();
    assert_eq!(caught_up(&log), 8);
    assert_eq!(log.aborted_transactions(0, 8), vec![aborted(2, 4, 7, 8)]);
}

#[test]
fn a_follower_ends_up_with_the_same_transactions() {
    let dir = tempfile::tempdir().unwrap();
    let leader = open(&dir.path().join("leader"), LogConfig::default());
    let follower = open(&dir.path().join("follower"), small_config(200));
    populate(&leader);
    follower
        .append_as_follower(&read_all(&leader, 0), 1_000)
        .unwrap();
    check_populated(&follower);
    assert_eq!(follower.producer_states(), leader.producer_states());
}

#[test]
fn retention_forgets_aborts_below_the_log_start_and_open_transactions_do_not_expire() {
    let dir = tempfile::tempdir().unwrap();
    let config = LogConfig {
        producer_id_expiration_ms: 10,
        ..small_config(200)
    };
    let log = open(dir.path(), config);
    populate(&log);
    caught_up(&log);
    log.delete_records_before(8).unwrap();
    assert!(log.aborted_transactions(0, 9).is_empty());
    log.apply_retention(1_000_000).unwrap();
    let left: Vec<i64> = log
        .producer_states()
        .iter()
        .map(|p| p.producer_id)
        .collect();
    assert_eq!(
        left,
        vec![3],
        "only the producer with an open transaction stays"
    );
    assert_eq!(log.last_stable_offset(), 8);
}

#[test]
fn coordinator_writes_without_sequences_take_part_in_transactions() {
    let dir = tempfile::tempdir().unwrap();
    let log = open(dir.path(), LogConfig::default());
    // What the group coordinator writes for TxnOffsetCommit: producer id and epoch,
    // no sequence.
    let mut b = data(5, 2, -1, 1, true);
    log.append_as_leader(&mut b, 0, 1_000).unwrap();
    assert_eq!(
        caught_up(&log),
        0,
        "the write opened producer 5's transaction"
    );
    let mut stale = data(5, 1, -1, 1, true);
    let err = log.append_as_leader(&mut stale, 0, 1_000).unwrap_err();
    assert!(
        matches!(
            err,
            StorageError::InvalidProducerEpoch {
                current_epoch: 2,
                ..
            }
        ),
        "{err}"
    );
    end(&log, 5, 2, 0, true).unwrap();
    assert_eq!(caught_up(&log), 2);
    let p = &log.producer_states()[0];
    assert_eq!(
        (
            p.producer_epoch,
            p.last_sequence,
            p.current_txn_start_offset
        ),
        (2, -1, -1)
    );
}
