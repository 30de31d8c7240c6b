//! Compaction (`cleanup.policy=compact`) through the public API: what survives a pass,
//! tombstones and the lag settings, every codec, control batches, reopening, crashes in
//! the middle of a swap, and readers running concurrently.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use bytes::Bytes;
use proptest::prelude::*;
use sluice_protocol::compression::Compression;
use sluice_protocol::records::{
    build_control_batch, decode_records, verify_crc, BatchIter, EndTxnMarker, RecordBatchBuilder,
    RecordBatchHeader, RecordHeader, TimestampType,
};

use super::read_all;
use crate::{CleanReason, LogConfig, PartitionLog};

/// One record as the tests see it: (key, value), `None` value = tombstone.
type Kv<'a> = (Option<&'a str>, Option<&'a str>);
/// (offset, key, value) of a stored record.
type Stored = (i64, Option<Vec<u8>>, Option<Vec<u8>>);

const T0: i64 = 1_000_000;
const HOUR: i64 = 3_600_000;

/// A compacted log that rolls at 300 bytes and cleans any dirty bytes.
fn compact_config() -> LogConfig {
    LogConfig {
        segment_bytes: 300,
        index_interval_bytes: 64,
        compact: true,
        delete: false,
        min_cleanable_dirty_ratio: 0.0,
        delete_retention_ms: HOUR,
        ..Default::default()
    }
}

fn open_at(dir: &Path, config: LogConfig) -> PartitionLog {
    PartitionLog::open(dir, config, T0).unwrap()
}

fn build(records: &[Kv<'_>], ts: i64, codec: Compression) -> Vec<u8> {
    let mut b = RecordBatchBuilder::new().compression(codec);
    for (k, v) in records {
        b.push(
            ts,
            k.map(str::as_bytes),
            v.map(str::as_bytes),
            &[RecordHeader::new("h", Some(Bytes::from_static(b"x")))],
        )
        .unwrap();
    }
    b.build().unwrap().to_vec()
}

/// Appends one uncompressed batch at time `now` and moves the HW to the end.
fn put(log: &PartitionLog, records: &[Kv<'_>], now: i64) -> i64 {
    put_with(log, records, now, Compression::None)
}

fn put_with(log: &PartitionLog, records: &[Kv<'_>], now: i64, codec: Compression) -> i64 {
    let mut b = build(records, now, codec);
    let info = log.append_as_leader(&mut b, 0, now).unwrap();
    log.set_high_watermark(log.log_end_offset());
    info.first_offset
}

/// Closes the active segment so that everything written so far can be cleaned.
fn roll(log: &PartitionLog, now: i64) {
    let cfg = log.config();
    log.set_config(LogConfig {
        segment_ms: 1,
        ..cfg.clone()
    })
    .unwrap();
    log.apply_retention(now + 10).unwrap();
    log.set_config(cfg).unwrap();
}

fn records_of(buf: &[u8]) -> Vec<Stored> {
    let mut out = Vec::new();
    for item in BatchIter::new(buf) {
        let (h, pos) = item.unwrap();
        let batch = Bytes::copy_from_slice(&buf[pos..pos + h.total_size()]);
        verify_crc(&batch).unwrap();
        if h.is_control() {
            continue;
        }
        for r in decode_records(&batch, usize::MAX).unwrap() {
            out.push((
                r.offset(h.base_offset),
                r.key.map(|k| k.to_vec()),
                r.value.map(|v| v.to_vec()),
            ));
        }
    }
    out
}

fn stored(log: &PartitionLog) -> Vec<Stored> {
    records_of(&read_all(log, log.log_start_offset()))
}

/// The latest record of each key, in offset order (what a compacted log converges to).
fn latest_per_key(records: &[Stored]) -> Vec<Stored> {
    let mut last: BTreeMap<Vec<u8>, Stored> = BTreeMap::new();
    for r in records {
        if let Some(k) = &r.1 {
            last.insert(k.clone(), r.clone());
        }
    }
    let mut v: Vec<Stored> = last.into_values().collect();
    v.sort_by_key(|r| r.0);
    v
}

fn rec(offset: i64, k: &str, v: Option<&str>) -> Stored {
    (
        offset,
        Some(k.as_bytes().to_vec()),
        v.map(|v| v.as_bytes().to_vec()),
    )
}

#[test]
fn keeps_the_latest_value_per_key_at_its_original_offset() {
    let dir = tempfile::tempdir().unwrap();
    let log = open_at(dir.path(), compact_config());
    // Offsets 0..9 in several segments; the active segment overwrites "a" at 9.
    put(
        &log,
        &[(Some("a"), Some("a1")), (Some("b"), Some("b1"))],
        T0,
    );
    put(
        &log,
        &[(Some("c"), Some("c1")), (Some("a"), Some("a2"))],
        T0,
    );
    put(
        &log,
        &[(Some("b"), Some("b2")), (Some("d"), Some("d1"))],
        T0,
    );
    put(
        &log,
        &[(Some("c"), Some("c2")), (Some("e"), Some("e1"))],
        T0,
    );
    roll(&log, T0);
    put(&log, &[(Some("a"), Some("a3"))], T0 + 20);
    let segments = log.segment_base_offsets();
    assert!(segments.len() >= 3, "{segments:?}");
    let active_base = *segments.last().unwrap();
    let active_before = read_all(&log, active_base);
    let before = stored(&log);
    let (lso, leo, hw) = (
        log.log_start_offset(),
        log.log_end_offset(),
        log.high_watermark(),
    );
    let epochs = log.epoch_entries();

    let out = log.compact(T0 + 100).unwrap();
    assert_eq!(out.reason, Some(CleanReason::DirtyRatio));
    assert_eq!(out.records_removed, 4, "a1 b1 c1 a2 go: {out:?}");
    assert_eq!(out.first_dirty_offset, active_base);
    assert!(out.bytes_after < out.bytes_before);
    assert_eq!(
        stored(&log),
        vec![
            rec(4, "b", Some("b2")),
            rec(5, "d", Some("d1")),
            rec(6, "c", Some("c2")),
            rec(7, "e", Some("e1")),
            rec(8, "a", Some("a3")),
        ]
    );
    assert_eq!(stored(&log), latest_per_key(&before));
    // Offsets, epochs and the active segment are untouched.
    assert_eq!(
        (
            log.log_start_offset(),
            log.log_end_offset(),
            log.high_watermark()
        ),
        (lso, leo, hw)
    );
    assert_eq!(log.epoch_entries(), epochs);
    assert_eq!(read_all(&log, active_base), active_before);
    // Reads from any offset, including inside a gap, find the next survivor.
    for from in 0..5 {
        assert_eq!(records_of(&read_all(&log, from))[0].0, 4, "from {from}");
    }
    // Nothing dirty: a second pass does nothing.
    assert_eq!(log.compact(T0 + 200).unwrap().reason, None);
    // New data makes it dirty again; its keys are cleaned from the older segments.
    put(&log, &[(Some("b"), Some("b3"))], T0 + 300);
    roll(&log, T0 + 300);
    let out = log.compact(T0 + 400).unwrap();
    assert_eq!(out.records_removed, 1);
    assert_eq!(
        stored(&log).iter().map(|r| r.0).collect::<Vec<_>>(),
        vec![5, 6, 7, 8, 9]
    );
}

#[test]
fn not_compacted_or_nothing_closed_means_no_pass() {
    let dir = tempfile::tempdir().unwrap();
    let log = open_at(
        dir.path(),
        LogConfig {
            compact: false,
            delete: true,
            ..compact_config()
        },
    );
    for _ in 0..5 {
        put(&log, &[(Some("k"), Some("v"))], T0);
    }
    roll(&log, T0);
    assert_eq!(log.compact(T0 + 100).unwrap(), Default::default());
    assert_eq!(stored(&log).len(), 5);
    // Compacted, but all in the active segment: nothing to clean.
    let dir = tempfile::tempdir().unwrap();
    let log = open_at(
        dir.path(),
        LogConfig {
            segment_bytes: 1 << 20,
            ..compact_config()
        },
    );
    for _ in 0..5 {
        put(&log, &[(Some("k"), Some("v"))], T0);
    }
    assert_eq!(log.compact(T0 + 100).unwrap().reason, None);
    assert_eq!(stored(&log).len(), 5);
}

#[test]
fn high_watermark_bounds_what_is_cleaned_and_mapped() {
    let dir = tempfile::tempdir().unwrap();
    let log = open_at(dir.path(), compact_config());
    put(
        &log,
        &[(Some("a"), Some("a1")), (Some("b"), Some("b1"))],
        T0,
    );
    put(
        &log,
        &[(Some("a"), Some("a2")), (Some("b"), Some("b2"))],
        T0,
    );
    roll(&log, T0);
    put(&log, &[(Some("a"), Some("a3"))], T0);
    roll(&log, T0);
    // The HW sits before the last segment: "a3" above it must not remove "a2".
    let hw = log.segment_base_offsets()[log.segment_count() - 2];
    log.set_high_watermark(hw);
    log.compact(T0 + 100).unwrap();
    let got = stored(&log);
    assert!(got.contains(&rec(2, "a", Some("a2"))), "{got:?}");
    assert!(got.contains(&rec(4, "a", Some("a3"))));
    assert!(!got.contains(&rec(0, "a", Some("a1"))));
}

#[test]
fn tombstones_stay_for_delete_retention_then_go() {
    let dir = tempfile::tempdir().unwrap();
    let log = open_at(
        dir.path(),
        LogConfig {
            delete_retention_ms: 10_000,
            ..compact_config()
        },
    );
    put(
        &log,
        &[(Some("gone"), Some("v1")), (Some("kept"), Some("k1"))],
        T0,
    );
    put(
        &log,
        &[(Some("gone"), None), (Some("kept"), Some("k2"))],
        T0,
    );
    roll(&log, T0);
    // Within delete.retention.ms of the segment's last append: the tombstone stays.
    let out = log.compact(T0 + 5_000).unwrap();
    assert_eq!((out.records_removed, out.tombstones_removed), (2, 0));
    assert_eq!(
        stored(&log),
        vec![rec(2, "gone", None), rec(3, "kept", Some("k2"))]
    );
    // No new data, yet the kept tombstone makes the log due once it expires.
    assert_eq!(log.compact(T0 + 10_000).unwrap().reason, None);
    let out = log.compact(T0 + 10_001).unwrap();
    assert_eq!(out.reason, Some(CleanReason::TombstonesDue));
    assert_eq!((out.records_removed, out.tombstones_removed), (1, 1));
    assert_eq!(stored(&log), vec![rec(3, "kept", Some("k2"))]);
    assert_eq!(log.compact(T0 + 20_000).unwrap().reason, None);
    // The first segment stays (empty) so the log start offset keeps its segment.
    assert_eq!(log.log_start_offset(), 0);
    assert_eq!(log.segment_base_offsets()[0], 0);
    // The expiry survives a restart through the checkpoint file.
    put(&log, &[(Some("late"), None)], T0 + 30_000);
    roll(&log, T0 + 30_000);
    log.compact(T0 + 30_100).unwrap();
    assert!(stored(&log).contains(&rec(4, "late", None)));
    let config = log.config();
    log.close().unwrap();
    drop(log);
    // Reopened segments take their last-modified time from the file: give it the test
    // clock's time of the last append.
    let seg = std::fs::File::options()
        .write(true)
        .open(dir.path().join(format!("{:020}.log", 4)))
        .unwrap();
    seg.set_modified(
        std::time::UNIX_EPOCH + std::time::Duration::from_millis((T0 + 30_000) as u64),
    )
    .unwrap();
    let log = open_at(dir.path(), config);
    assert_eq!(log.compact(T0 + 40_000).unwrap().reason, None);
    assert_eq!(
        log.compact(T0 + 40_001).unwrap().reason,
        Some(CleanReason::TombstonesDue)
    );
    assert_eq!(stored(&log), vec![rec(3, "kept", Some("k2"))]);
}

#[test]
fn min_compaction_lag_holds_young_segments_back() {
    let dir = tempfile::tempdir().unwrap();
    let log = open_at(
        dir.path(),
        LogConfig {
            min_compaction_lag_ms: 60_000,
            ..compact_config()
        },
    );
    put(&log, &[(Some("k"), Some("old"))], T0);
    put(&log, &[(Some("k"), Some("mid"))], T0);
    roll(&log, T0);
    put(&log, &[(Some("k"), Some("new"))], T0 + 50_000);
    roll(&log, T0 + 50_000);
    // At T0 + 59s every closed segment is younger than the lag.
    assert_eq!(log.compact(T0 + 59_000).unwrap().reason, None);
    assert_eq!(stored(&log).len(), 3);
    // At T0 + 61s the first segment is old enough; the one with "new" (T0 + 50s) is not,
    // but its key still counts: the older values go.
    let out = log.compact(T0 + 61_000).unwrap();
    assert_eq!(out.reason, Some(CleanReason::DirtyRatio));
    assert_eq!(stored(&log), vec![rec(2, "k", Some("new"))]);
    assert_eq!(out.first_dirty_offset, 2);
}

#[test]
fn max_compaction_lag_forces_a_pass_below_the_dirty_ratio() {
    let dir = tempfile::tempdir().unwrap();
    let log = open_at(
        dir.path(),
        LogConfig {
            min_cleanable_dirty_ratio: 0.99,
            max_compaction_lag_ms: 5_000,
            segment_ms: HOUR,
            ..compact_config()
        },
    );
    for i in 0..6 {
        put(&log, &[(Some("k"), Some(&format!("v{i}")))], T0);
    }
    roll(&log, T0);
    log.compact(T0 + 1).unwrap();
    put(&log, &[(Some("k"), Some("last"))], T0 + 10);
    roll(&log, T0 + 10);
    // Clean section large, dirty one tiny: below 0.99, until the lag passes.
    assert_eq!(log.compact(T0 + 20).unwrap().reason, None);
    let out = log.compact(T0 + 6_000).unwrap();
    assert_eq!(out.reason, Some(CleanReason::MaxCompactionLag));
    assert_eq!(stored(&log), vec![rec(6, "k", Some("last"))]);
    // max.compaction.lag.ms also rolls the active segment of a compacted log.
    put(&log, &[(Some("k"), Some("x"))], T0 + 7_000);
    let before = log.segment_count();
    log.apply_retention(T0 + 12_001).unwrap();
    assert_eq!(log.segment_count(), before + 1);
}

#[test]
fn every_codec_is_filtered_and_recompressed() {
    for codec in Compression::ALL {
        let dir = tempfile::tempdir().unwrap();
        let log = open_at(
            dir.path(),
            LogConfig {
                segment_bytes: 4096,
                ..compact_config()
            },
        );
        let records: Vec<(String, String)> = (0..6)
            .map(|i| (format!("key-{i}"), format!("value-{i}-{}", "x".repeat(40))))
            .collect();
        let first: Vec<Kv<'_>> = records
            .iter()
            .map(|(k, v)| (Some(k.as_str()), Some(v.as_str())))
            .collect();
        // An idempotent producer's batch: its producer fields must survive.
        let mut b = RecordBatchBuilder::new()
            .compression(codec)
            .producer(77, 3, 500);
        for (k, v) in &first {
            b.push(T0, k.map(str::as_bytes), v.map(str::as_bytes), &[])
                .unwrap();
        }
        let mut batch = b.build().unwrap().to_vec();
        log.append_as_leader(&mut batch, 4, T0).unwrap();
        // Overwrite keys 0 and 5 (first and last record of the batch) and 2.
        put_with(
            &log,
            &[
                (Some("key-0"), Some("n0")),
                (Some("key-2"), Some("n2")),
                (Some("key-5"), None),
            ],
            T0,
            codec,
        );
        roll(&log, T0);
        let out = log.compact(T0 + 100).unwrap();
        assert_eq!(out.records_removed, 3, "{codec:?}");
        let buf = read_all(&log, 0);
        let headers: Vec<RecordBatchHeader> = BatchIter::new(&buf).map(|r| r.unwrap().0).collect();
        let h = headers[0];
        assert_eq!(h.compression().unwrap(), codec);
        // Kafka keeps the batch's offset span and producer state.
        assert_eq!(
            (h.base_offset, h.last_offset_delta, h.records_count),
            (0, 5, 3)
        );
        assert_eq!(
            (h.producer_id, h.producer_epoch, h.base_sequence),
            (77, 3, 500)
        );
        assert_eq!(h.partition_leader_epoch, 4);
        assert_eq!(
            headers[1],
            RecordBatchHeader::parse(&buf[h.total_size()..]).unwrap()
        );
        assert_eq!(headers[1].compression().unwrap(), codec, "untouched batch");
        let got = stored(&log);
        let want: Vec<Stored> = [1, 3, 4]
            .iter()
            .map(|&i| rec(i, &records[i as usize].0, Some(&records[i as usize].1)))
            .chain([
                rec(6, "key-0", Some("n0")),
                rec(7, "key-2", Some("n2")),
                rec(8, "key-5", None),
            ])
            .collect();
        assert_eq!(got, want, "{codec:?}");
        // Headers and timestamps come through too.
        let first_batch = Bytes::copy_from_slice(&buf[..h.total_size()]);
        for r in decode_records(&first_batch, usize::MAX).unwrap() {
            assert_eq!(r.timestamp(&h), T0);
        }
        let again = open_reopened(&log, dir.path());
        assert_eq!(stored(&again), want);
    }
}

/// Closes `log` cleanly and opens its directory again.
fn open_reopened(log: &PartitionLog, dir: &Path) -> PartitionLog {
    let config = log.config();
    log.close().unwrap();
    PartitionLog::open(dir, config, T0).unwrap()
}

#[test]
fn log_append_time_batches_keep_their_timestamp() {
    let dir = tempfile::tempdir().unwrap();
    let log = open_at(dir.path(), compact_config());
    let mut b = RecordBatchBuilder::new().timestamp_type(TimestampType::LogAppendTime);
    for k in ["a", "b", "c"] {
        b.push(T0 + 5, Some(k.as_bytes()), Some(b"v"), &[]).unwrap();
    }
    let mut batch = b.build().unwrap().to_vec();
    log.append_as_leader(&mut batch, 0, T0).unwrap();
    put(&log, &[(Some("b"), Some("b2"))], T0);
    roll(&log, T0);
    log.compact(T0 + 100).unwrap();
    let buf = read_all(&log, 0);
    let h = RecordBatchHeader::parse(&buf).unwrap();
    assert_eq!(h.timestamp_type(), TimestampType::LogAppendTime);
    assert_eq!((h.max_timestamp, h.records_count), (T0 + 5, 2));
}

#[test]
fn control_batches_are_kept_as_they_are() {
    let dir = tempfile::tempdir().unwrap();
    let log = open_at(dir.path(), compact_config());
    put(&log, &[(Some("k"), Some("v1"))], T0);
    let marker = EndTxnMarker {
        coordinator_epoch: 7,
        commit: true,
    };
    let control = build_control_batch(0, 0, 9, 1, T0, marker)
        .unwrap()
        .to_vec();
    let mut c = control.clone();
    log.append_as_leader(&mut c, 0, T0).unwrap();
    put(&log, &[(Some("k"), Some("v2"))], T0);
    roll(&log, T0);
    log.compact(T0 + 100).unwrap();
    let buf = read_all(&log, 0);
    let kept: Vec<(RecordBatchHeader, usize)> = BatchIter::new(&buf).map(Result::unwrap).collect();
    assert_eq!(kept.len(), 2, "the overwritten v1 batch is gone");
    assert!(kept[0].0.is_control());
    assert_eq!(kept[0].0.base_offset, 1);
    assert_eq!(&buf[..kept[0].0.total_size()], &c[..], "byte for byte");
    assert_eq!(stored(&log), vec![rec(2, "k", Some("v2"))]);
}

#[test]
fn keyless_records_are_dropped_by_the_cleaner() {
    let dir = tempfile::tempdir().unwrap();
    let log = open_at(dir.path(), compact_config());
    put(&log, &[(None, Some("no key")), (Some("k"), Some("v"))], T0);
    roll(&log, T0);
    log.compact(T0 + 100).unwrap();
    assert_eq!(stored(&log), vec![rec(1, "k", Some("v"))]);
}

#[test]
fn emptied_segments_are_deleted_except_the_first() {
    let dir = tempfile::tempdir().unwrap();
    let log = open_at(dir.path(), compact_config());
    for i in 0..8 {
        put(
            &log,
            &[(Some("k"), Some(&format!("v{i}"))), (Some("j"), Some("j"))],
            T0,
        );
    }
    roll(&log, T0);
    let before = log.segment_base_offsets();
    assert!(before.len() > 3);
    let out = log.compact(T0 + 100).unwrap();
    assert_eq!(
        out.segments_deleted + out.segments_rewritten,
        before.len() - 1
    );
    let after = log.segment_base_offsets();
    assert_eq!(after[0], 0, "the first segment stays");
    assert!(after.len() < before.len());
    assert_eq!(
        stored(&log),
        vec![rec(14, "k", Some("v7")), rec(15, "j", Some("j"))]
    );
    assert_eq!(records_of(&read_all(&log, 0))[0].0, 14);
    for (i, base) in before.iter().enumerate().skip(1) {
        let exists = dir.path().join(format!("{base:020}.log")).exists();
        assert_eq!(exists, after.contains(base), "segment {i}");
    }
    // Reopen (clean and unclean) reads the same.
    let want = stored(&log);
    let log = open_reopened(&log, dir.path());
    assert_eq!(stored(&log), want);
    assert_eq!(log.segment_base_offsets(), after);
    drop(log);
    let log = open_at(dir.path(), compact_config());
    assert_eq!(stored(&log), want);
    assert_eq!(log.log_end_offset(), 16);
    assert_eq!(put(&log, &[(Some("k"), Some("next"))], T0), 16);
}

#[test]
fn reopen_after_an_unclean_stop_reads_the_same_data() {
    let dir = tempfile::tempdir().unwrap();
    let log = open_at(dir.path(), compact_config());
    for i in 0..10 {
        put(
            &log,
            &[(Some(["a", "b", "c"][i % 3]), Some(&format!("v{i}")))],
            T0,
        );
    }
    roll(&log, T0);
    log.compact(T0 + 100).unwrap();
    let want = stored(&log);
    let segments = log.segment_base_offsets();
    drop(log); // no close: recovery scans from the recovery point
    let log = open_at(dir.path(), compact_config());
    assert_eq!(stored(&log), want);
    assert_eq!(log.segment_base_offsets(), segments);
    // The cleaner checkpoint survived: nothing is dirty.
    assert_eq!(log.compact(T0 + 200).unwrap().reason, None);
}

fn copy_dir(from: &Path, to: &Path) {
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        std::fs::copy(e.path(), to.join(e.file_name())).unwrap();
    }
}

#[test]
fn a_crash_at_any_step_of_the_swap_recovers_old_or_new_data() {
    // Build the same log twice: `orig` stays uncompacted, `done` is compacted.
    let orig = tempfile::tempdir().unwrap();
    let fill = |dir: &Path| {
        let log = open_at(dir, compact_config());
        for i in 0..6 {
            put(
                &log,
                &[
                    (Some(["a", "b"][i % 2]), Some(&format!("v{i}"))),
                    (Some("c"), Some("c")),
                ],
                T0,
            );
        }
        roll(&log, T0);
        log
    };
    let log = fill(orig.path());
    let old_records = stored(&log);
    let new_records = latest_per_key(&old_records);
    let seg0 = log.segment_base_offsets()[0];
    log.close().unwrap();
    drop(log);
    let done = tempfile::tempdir().unwrap();
    copy_dir(orig.path(), done.path());
    let log = open_at(done.path(), compact_config());
    log.compact(T0 + 100).unwrap();
    log.close().unwrap();
    drop(log);
    let name = |ext: &str| format!("{seg0:020}.{ext}");
    // What the cleaner would have left in the directory at each step, for the first
    // segment: (files to copy from `done` under a `.cleaned` name, files to delete from
    // `orig`, files to copy from `done` under their own name), and which data to expect.
    type Step = (
        &'static [&'static str],
        &'static [&'static str],
        &'static [&'static str],
        bool,
    );
    let steps: [Step; 4] = [
        // 1. rewrite written, nothing swapped
        (&["log", "index", "timeindex"], &[], &[], false),
        // 2. old indexes deleted
        (
            &["log", "index", "timeindex"],
            &["index", "timeindex"],
            &[],
            false,
        ),
        // 3. log renamed (the commit point), indexes still `.cleaned`
        (
            &["index", "timeindex"],
            &["index", "timeindex"],
            &["log"],
            true,
        ),
        // 4. one index renamed, the other not yet
        (
            &["timeindex"],
            &["index", "timeindex"],
            &["log", "index"],
            true,
        ),
    ];
    for (i, (cleaned, deleted, renamed, is_new)) in steps.iter().enumerate() {
        let crash = tempfile::tempdir().unwrap();
        copy_dir(orig.path(), crash.path());
        std::fs::remove_file(crash.path().join(".clean-shutdown")).unwrap();
        for ext in *cleaned {
            std::fs::copy(
                done.path().join(name(ext)),
                crash.path().join(format!("{}.cleaned", name(ext))),
            )
            .unwrap();
        }
        for ext in *deleted {
            std::fs::remove_file(crash.path().join(name(ext))).unwrap();
        }
        for ext in *renamed {
            std::fs::copy(done.path().join(name(ext)), crash.path().join(name(ext))).unwrap();
        }
        let log = open_at(crash.path(), compact_config());
        let got = stored(&log);
        let leftovers: Vec<_> = std::fs::read_dir(crash.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| n.ends_with(".cleaned"))
            .collect();
        assert!(leftovers.is_empty(), "step {}: {leftovers:?}", i + 1);
        // The first segment is old or new; the others are untouched (old), so the latest
        // value of every key is the same either way.
        assert_eq!(latest_per_key(&got), new_records, "step {}", i + 1);
        let first_seg: Vec<Stored> = got
            .iter()
            .filter(|r| r.0 < log.segment_base_offsets()[1])
            .cloned()
            .collect();
        let old_first: Vec<Stored> = old_records
            .iter()
            .filter(|r| r.0 < log.segment_base_offsets()[1])
            .cloned()
            .collect();
        assert_eq!(
            first_seg != old_first,
            *is_new,
            "step {}: {first_seg:?}",
            i + 1
        );
        // And a pass afterwards finishes the job.
        log.compact(T0 + 100).unwrap();
        assert_eq!(stored(&log), new_records, "step {}", i + 1);
    }
}

#[test]
fn truncation_below_the_checkpoint_makes_new_data_dirty() {
    let dir = tempfile::tempdir().unwrap();
    let log = open_at(dir.path(), compact_config());
    for i in 0..6 {
        put(&log, &[(Some("k"), Some(&format!("v{i}")))], T0);
    }
    roll(&log, T0);
    assert_eq!(log.compact(T0 + 1).unwrap().first_dirty_offset, 6);
    log.truncate_to(3).unwrap();
    assert_eq!(log.log_end_offset(), 3);
    // Offsets 3.. are written anew and must be cleaned, not treated as clean.
    put(&log, &[(Some("k"), Some("w3"))], T0 + 10);
    put(&log, &[(Some("k"), Some("w4"))], T0 + 10);
    roll(&log, T0 + 10);
    let out = log.compact(T0 + 20).unwrap();
    assert_eq!(out.reason, Some(CleanReason::DirtyRatio));
    assert_eq!(stored(&log), vec![rec(4, "k", Some("w4"))]);
}

#[test]
fn compact_only_logs_are_not_deleted_by_retention() {
    let dir = tempfile::tempdir().unwrap();
    let log = open_at(
        dir.path(),
        LogConfig {
            retention_ms: 1,
            retention_bytes: 0,
            ..compact_config()
        },
    );
    for i in 0..6 {
        put(&log, &[(Some(&format!("k{i}")[..]), Some("v"))], T0);
    }
    roll(&log, T0);
    let out = log.apply_retention(T0 + HOUR).unwrap();
    assert_eq!(out.deleted_segments, 0);
    assert_eq!(log.log_start_offset(), 0);
    // compact,delete: retention applies as well.
    log.set_config(LogConfig {
        delete: true,
        ..log.config()
    })
    .unwrap();
    assert!(log.apply_retention(T0 + HOUR).unwrap().deleted_segments > 0);
}

#[test]
fn concurrent_readers_only_ever_see_whole_valid_batches() {
    let dir = tempfile::tempdir().unwrap();
    let log = Arc::new(open_at(
        dir.path(),
        LogConfig {
            segment_bytes: 2048,
            ..compact_config()
        },
    ));
    let keys = ["a", "b", "c", "d", "e", "f", "g"];
    let mut expected = Vec::new();
    for round in 0..40 {
        let v = format!("v{round}");
        let recs: Vec<Kv<'_>> = keys.iter().map(|k| (Some(*k), Some(v.as_str()))).collect();
        put(&log, &recs, T0);
    }
    roll(&log, T0);
    expected.extend(latest_per_key(&stored(&log)));
    let stop = Arc::new(AtomicBool::new(false));
    let readers: Vec<_> = (0..2)
        .map(|_| {
            let (log, stop, expected) = (Arc::clone(&log), Arc::clone(&stop), expected.clone());
            std::thread::spawn(move || {
                let mut reads = 0;
                while !stop.load(Ordering::Acquire) || reads == 0 {
                    // Before, during and after the pass the latest value of each key is
                    // the same, and every batch is whole (records_of checks each CRC).
                    let got = records_of(&read_all(&log, 0));
                    assert_eq!(latest_per_key(&got), expected);
                    reads += 1;
                }
                reads
            })
        })
        .collect();
    let out = log.compact(T0 + 100).unwrap();
    assert!(out.records_removed > 0);
    stop.store(true, Ordering::Release);
    for r in readers {
        assert!(r.join().unwrap() > 0);
    }
    assert_eq!(stored(&log), expected);
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    /// Random keyed writes in random batches and codecs: after compaction the log reads
    /// exactly the last record of each key, in offset order, and after the tombstones
    /// expire, without the deleted keys.
    #[test]
    fn compaction_keeps_exactly_the_last_record_per_key(
        batches in prop::collection::vec(
            (prop::collection::vec((0u8..6, prop::option::weighted(0.8, 0u8..50)), 1..6), 0usize..5),
            1..25,
        ),
        segment_bytes in 400i32..1500,
    ) {
        let dir = tempfile::tempdir().unwrap();
        let log = open_at(dir.path(), LogConfig { segment_bytes, ..compact_config() });
        for (records, codec) in &batches {
            let owned: Vec<(String, Option<String>)> = records
                .iter()
                .map(|(k, v)| (format!("key{k}"), v.map(|v| format!("value{v}"))))
                .collect();
            let kv: Vec<Kv<'_>> = owned.iter().map(|(k, v)| (Some(k.as_str()), v.as_deref())).collect();
            put_with(&log, &kv, T0, Compression::ALL[*codec]);
        }
        roll(&log, T0);
        let before = stored(&log);
        let want = latest_per_key(&before);
        log.compact(T0 + 100).unwrap();
        prop_assert_eq!(stored(&log), want.clone());
        prop_assert_eq!(log.log_end_offset(), before.last().map_or(0, |r| r.0 + 1));
        // Tombstones past delete.retention.ms go, and nothing else does.
        log.compact(T0 + HOUR + 1).unwrap();
        let live: Vec<Stored> = want.into_iter().filter(|r| r.2.is_some()).collect();
        prop_assert_eq!(stored(&log), live);
    }
}

#[test]
fn aborted_transactions_are_dropped_and_do_not_shadow_older_values() {
    let dir = tempfile::tempdir().unwrap();
    let log = open_at(dir.path(), compact_config());
    put(&log, &[(Some("k"), Some("committed"))], T0);
    let mut aborted = RecordBatchBuilder::new()
        .producer(5, 0, 0)
        .transactional(true);
    aborted.push(T0, Some(b"k"), Some(b"aborted"), &[]).unwrap();
    let mut b = aborted.build().unwrap().to_vec();
    log.append_as_leader(&mut b, 0, T0).unwrap();
    let abort = EndTxnMarker {
        coordinator_epoch: 0,
        commit: false,
    };
    log.append_txn_marker(5, 0, abort, 0, T0).unwrap();
    put(&log, &[(Some("other"), Some("x"))], T0);
    roll(&log, T0);
    let out = log.compact(T0 + 100).unwrap();
    assert_eq!(out.records_removed, 1, "{out:?}");
    assert_eq!(
        stored(&log),
        vec![rec(0, "k", Some("committed")), rec(3, "other", Some("x"))]
    );
    // The marker stays, so the abort is still known after a rescan.
    assert_eq!(log.aborted_transactions(0, 4).len(), 1);
}

#[test]
fn an_open_transaction_bounds_what_is_cleaned() {
    let dir = tempfile::tempdir().unwrap();
    let log = open_at(dir.path(), compact_config());
    put(&log, &[(Some("k"), Some("v1"))], T0);
    let mut open_txn = RecordBatchBuilder::new()
        .producer(5, 0, 0)
        .transactional(true);
    open_txn.push(T0, Some(b"k"), Some(b"v2"), &[]).unwrap();
    let mut b = open_txn.build().unwrap().to_vec();
    log.append_as_leader(&mut b, 0, T0).unwrap();
    put(&log, &[(Some("k"), Some("v3"))], T0);
    roll(&log, T0);
    assert_eq!(log.last_stable_offset(), 1);
    log.compact(T0 + 100).unwrap();
    // Nothing at or above the open transaction may decide what survives.
    assert_eq!(
        stored(&log),
        vec![
            rec(0, "k", Some("v1")),
            rec(1, "k", Some("v2")),
            rec(2, "k", Some("v3"))
        ]
    );
}
