//! Reopening after clean and unclean stops, recovery from torn and corrupt data,
//! corrupt index files, checkpoints and flushing.

use proptest::prelude::*;

use super::{append, open, read_all, small_config};
use crate::testutil::{batch, offsets_of};
use crate::{LogConfig, PartitionLog};

fn last_log_file(dir: &std::path::Path) -> std::path::PathBuf {
    let mut logs: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "log"))
        .collect();
    logs.sort();
    logs.pop().unwrap()
}

#[test]
fn clean_close_then_reopen_keeps_everything() {
    let dir = tempfile::tempdir().unwrap();
    let log = open(dir.path(), small_config(1_000));
    let mut stored = Vec::new();
    for i in 0..12 {
        let mut b = batch(2, 1_000 + i, 40);
        log.append_as_leader(&mut b, (i / 4) as i32, 2_000).unwrap();
        stored.extend(b);
    }
    log.set_high_watermark(20);
    let segments = log.segment_base_offsets();
    log.close().unwrap();
    assert!(dir.path().join(".clean-shutdown").exists());
    // Closed logs refuse writes.
    assert!(log.append_as_leader(&mut batch(1, 1, 1), 0, 1).is_err());
    drop(log);

    let log = open(dir.path(), small_config(1_000));
    assert!(
        !dir.path().join(".clean-shutdown").exists(),
        "marker consumed by open"
    );
    assert_eq!(log.log_end_offset(), 24);
    assert_eq!(log.high_watermark(), 20);
    assert_eq!(log.recovery_point(), 24);
    assert_eq!(log.segment_base_offsets(), segments);
    assert_eq!(read_all(&log, 0), stored);
    assert_eq!(log.end_offset_for_epoch(1), Some((1, 16)));
    assert_eq!(log.end_offset_for_epoch(2), Some((2, 24)));
    // All records of the last batch carry the max timestamp: the first of them.
    assert_eq!(log.max_timestamp_offset().unwrap(), Some((22, 1_011)));
    // And appends continue where they left off.
    assert_eq!(append(&log, 1, 5_000, 4).1.first_offset, 24);
}

#[test]
fn unclean_stop_keeps_written_data() {
    let dir = tempfile::tempdir().unwrap();
    let log = open(dir.path(), small_config(1_000));
    let mut stored = Vec::new();
    for i in 0..10 {
        stored.extend(append(&log, 3, 1_000 + i, 30).0);
        if i == 4 {
            log.flush().unwrap();
        }
    }
    let flushed_at = 15;
    assert_eq!(log.recovery_point(), flushed_at);
    drop(log); // no close: unclean
    assert!(!dir.path().join(".clean-shutdown").exists());
    let log = open(dir.path(), small_config(1_000));
    assert_eq!(log.log_end_offset(), 30);
    assert_eq!(read_all(&log, 0), stored);
    // The recovered data may only be in the page cache, so the recovery point stays.
    assert_eq!(log.recovery_point(), flushed_at);
    assert_eq!(log.max_timestamp_offset().unwrap(), Some((27, 1_009)));
}

#[test]
fn corruption_in_a_middle_segment_truncates_there_and_drops_later_segments() {
    let dir = tempfile::tempdir().unwrap();
    let log = open(dir.path(), small_config(600));
    let mut batches = Vec::new();
    for _ in 0..12 {
        batches.push(append(&log, 2, 1_000, 40).0);
    }
    let bases = log.segment_base_offsets();
    assert!(bases.len() >= 4, "{bases:?}");
    drop(log);
    // Rolling flushed the early segments; forget that (a crash before any checkpoint) so
    // recovery scans them all.
    std::fs::remove_file(dir.path().join("partition-offsets-checkpoint")).unwrap();
    // Flip a byte in the records of the second batch of segment 1.
    let path = dir.path().join(format!("{:020}.log", bases[1]));
    let mut bytes = std::fs::read(&path).unwrap();
    let second = batches[0].len() + 70;
    bytes[second] ^= 0x55;
    std::fs::write(&path, bytes).unwrap();

    let log = open(dir.path(), small_config(600));
    let per_segment = (bases[1] / 2) as usize; // batches of 2 offsets
    assert_eq!(log.log_end_offset(), bases[1] + 2);
    assert_eq!(log.segment_base_offsets(), bases[..2].to_vec());
    assert_eq!(read_all(&log, 0), batches[..per_segment + 1].concat());
    assert!(!dir.path().join(format!("{:020}.log", bases[2])).exists());
    assert!(!dir.path().join(format!("{:020}.index", bases[2])).exists());
}

#[test]
fn clean_shutdown_still_checks_the_tail() {
    let dir = tempfile::tempdir().unwrap();
    let log = open(dir.path(), LogConfig::default());
    let mut batches = Vec::new();
    for _ in 0..3 {
        batches.push(append(&log, 2, 1_000, 40).0);
    }
    log.close().unwrap();
    drop(log);
    let path = last_log_file(dir.path());
    let len = std::fs::metadata(&path).unwrap().len();
    std::fs::OpenOptions::new()
        .write(true)
        .open(&path)
        .unwrap()
        .set_len(len - 3)
        .unwrap();
    let log = open(dir.path(), LogConfig::default());
    assert_eq!(log.log_end_offset(), 4);
    assert_eq!(read_all(&log, 0), batches[..2].concat());
}

#[test]
fn corrupt_or_missing_index_files_are_rebuilt() {
    let dir = tempfile::tempdir().unwrap();
    let config = LogConfig {
        index_interval_bytes: 100,
        ..LogConfig::default()
    };
    let log = open(dir.path(), config.clone());
    let mut stored = Vec::new();
    for _ in 0..40 {
        stored.extend(append(&log, 2, 1_000, 40).0);
    }
    log.close().unwrap();
    drop(log);
    let index = dir.path().join(format!("{:020}.index", 0));
    let good_index = std::fs::read(&index).unwrap();
    assert!(
        good_index.len() >= 8 * 10,
        "sparse index has entries: {}",
        good_index.len()
    );
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("torn", good_index[..good_index.len() - 3].to_vec()),
        (
            "out of order",
            [good_index[8..16].to_vec(), good_index[..8].to_vec()].concat(),
        ),
        (
            "points past the log",
            [good_index.clone(), vec![0, 0, 0, 99, 0, 1, 0, 0]].concat(),
        ),
        ("missing", vec![]),
    ];
    for (what, bytes) in cases {
        if what == "missing" {
            std::fs::remove_file(&index).unwrap();
        } else {
            std::fs::write(&index, bytes).unwrap();
        }
        let log = open(dir.path(), config.clone());
        assert_eq!(log.log_end_offset(), 80, "{what}");
        for offset in [0, 17, 41, 79] {
            let r = log.read(offset, 1, i64::MAX, true).unwrap();
            let got = offsets_of(&r.records);
            assert_eq!(got.len(), 1, "{what}");
            assert!(
                got[0].0 <= offset && offset <= got[0].1,
                "{what}: {got:?} for {offset}"
            );
        }
        assert_eq!(read_all(&log, 0), stored, "{what}");
        log.close().unwrap();
        assert_eq!(
            std::fs::read(&index).unwrap(),
            good_index,
            "{what}: index rebuilt identically"
        );
    }
}

#[test]
fn flush_messages_advances_the_recovery_point() {
    let dir = tempfile::tempdir().unwrap();
    let config = LogConfig {
        flush_messages: 5,
        ..LogConfig::default()
    };
    let log = open(dir.path(), config);
    append(&log, 2, 1_000, 5);
    assert_eq!(log.recovery_point(), 0);
    append(&log, 2, 1_000, 5);
    assert_eq!(log.recovery_point(), 0);
    append(&log, 2, 1_000, 5);
    assert_eq!(log.recovery_point(), 6, "6 unflushed >= flush.messages");
    let text = std::fs::read_to_string(dir.path().join("partition-offsets-checkpoint")).unwrap();
    assert!(text.contains("recovery-point 6"), "{text}");
}

#[test]
fn flush_ms_and_maybe_flush() {
    let dir = tempfile::tempdir().unwrap();
    let config = LogConfig {
        flush_ms: 1_000,
        ..LogConfig::default()
    };
    let log = PartitionLog::open(dir.path(), config, 0).unwrap();
    let mut b = batch(1, 1, 1);
    log.append_as_leader(&mut b, 0, 500).unwrap();
    assert_eq!(log.recovery_point(), 0);
    assert!(!log.maybe_flush(900).unwrap());
    assert!(log.maybe_flush(1_000).unwrap());
    assert_eq!(log.recovery_point(), 1);
    assert!(!log.maybe_flush(5_000).unwrap(), "nothing unflushed");
    let mut b = batch(1, 1, 1);
    log.append_as_leader(&mut b, 0, 2_100).unwrap();
    assert_eq!(log.recovery_point(), 2, "append past flush.ms flushes");
}

#[test]
fn rolling_flushes_finished_segments() {
    let dir = tempfile::tempdir().unwrap();
    let log = open(dir.path(), small_config(500));
    for _ in 0..6 {
        append(&log, 2, 1_000, 40);
    }
    let bases = log.segment_base_offsets();
    assert!(bases.len() >= 2);
    // The append does not fsync on roll; the background flusher does.
    assert_eq!(log.recovery_point(), 0);
    log.maybe_flush(1_000).unwrap();
    assert_eq!(log.recovery_point(), *bases.last().unwrap());
}

#[test]
fn lost_log_start_checkpoint_beyond_data_restarts_there() {
    let dir = tempfile::tempdir().unwrap();
    let log = open(dir.path(), LogConfig::default());
    append(&log, 5, 1_000, 5);
    log.set_high_watermark(5);
    log.delete_records_before(5).unwrap();
    drop(log);
    // Lose the data but keep the checkpoint.
    std::fs::OpenOptions::new()
        .write(true)
        .open(last_log_file(dir.path()))
        .unwrap()
        .set_len(0)
        .unwrap();
    let log = open(dir.path(), LogConfig::default());
    assert_eq!((log.log_start_offset(), log.log_end_offset()), (5, 5));
    assert_eq!(append(&log, 1, 1_000, 5).1.first_offset, 5);
}

#[derive(Debug, Clone)]
enum Damage {
    Truncate(f64),
    Flip(f64, u8),
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    /// Property (2): after random truncation or byte corruption of the last segment and
    /// an unclean stop, recovery keeps exactly the valid prefix of batches.
    #[test]
    fn recovery_keeps_exactly_the_valid_prefix(
        batches in proptest::collection::vec((1usize..5, 0usize..200), 1..25),
        damage in prop_oneof![
            (0.0f64..1.0).prop_map(Damage::Truncate),
            (0.0f64..1.0, 1u8..=255).prop_map(|(at, x)| Damage::Flip(at, x)),
        ],
        close_first in any::<bool>(),
    ) {
        let dir = tempfile::tempdir().unwrap();
        let config = LogConfig { segment_bytes: 2_000, index_interval_bytes: 200, ..LogConfig::default() };
        let log = PartitionLog::open(dir.path(), config.clone(), 0).unwrap();
        let mut stored = Vec::new();
        for (records, value_len) in &batches {
            let mut b = batch(*records, 5, *value_len);
            log.append_as_leader(&mut b, 0, 0).unwrap();
            stored.push(b);
        }
        let last_base = *log.segment_base_offsets().last().unwrap();
        if close_first { log.close().unwrap(); }
        drop(log);
        let path = last_log_file(dir.path());
        let mut bytes = std::fs::read(&path).unwrap();
        // Which stored batches live in the last segment, and where.
        let first_in_last = stored.iter().position(|b| {
            sluice_protocol::records::RecordBatchHeader::parse(b).unwrap().base_offset >= last_base
        }).unwrap_or(stored.len());
        let mut starts = Vec::new();
        let mut pos = 0;
        for b in &stored[first_in_last..] {
            starts.push(pos);
            pos += b.len();
        }
        prop_assert_eq!(pos, bytes.len());
        let keep_in_last = match damage {
            Damage::Truncate(frac) => {
                let cut = (frac * bytes.len() as f64) as usize;
                bytes.truncate(cut);
                starts.iter().zip(&stored[first_in_last..]).filter(|(s, b)| *s + b.len() <= cut).count()
            }
            Damage::Flip(frac, x) => {
                if bytes.is_empty() {
                    0
                } else {
                    let mut at = ((frac * bytes.len() as f64) as usize).min(bytes.len() - 1);
                    let k = starts.iter().rposition(|s| *s <= at).unwrap();
                    // baseOffset and partitionLeaderEpoch lie outside the CRC (by design);
                    // corrupt a byte the batch's integrity checks cover.
                    let within = at - starts[k];
                    if within < 8 || (12..16).contains(&within) { at = starts[k] + 20; }
                    bytes[at] ^= x;
                    k
                }
            }
        };
        std::fs::write(&path, &bytes).unwrap();
        if matches!(damage, Damage::Flip(..)) {
            // A clean shutdown skips the full scan (only the tail is checked), so silent
            // corruption inside the segment is a crash scenario: no marker.
            let _ = std::fs::remove_file(dir.path().join(".clean-shutdown"));
        }
        let keep = first_in_last + keep_in_last;
        let log = PartitionLog::open(dir.path(), config, 0).unwrap();
        let want = stored[..keep].concat();
        let want_end = offsets_of(&want).last().map_or(0, |(_, last)| last + 1);
        prop_assert_eq!(log.log_end_offset(), want_end);
        prop_assert_eq!(log.read(0, usize::MAX, i64::MAX, true).unwrap().records.to_vec(), want);
        // The log accepts appends at its new end.
        let mut b = batch(1, 5, 3);
        prop_assert_eq!(log.append_as_leader(&mut b, 0, 0).unwrap().first_offset, want_end);
    }
}
