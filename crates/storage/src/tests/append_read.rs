//! Appends and reads: offset assignment, whole-batch reads from any offset, limits,
//! rolling by size and reads across segments, follower appends, truncation.

use proptest::prelude::*;

use super::{append, open, read_all, small_config};
use crate::testutil::{batch, batch_with_timestamps, offsets_of, BatchSpec};
use crate::{LogConfig, PartitionLog, StorageError};

#[test]
fn leader_append_assigns_offsets_and_epoch() {
    let dir = tempfile::tempdir().unwrap();
    let log = open(dir.path(), LogConfig::default());
    let mut two = batch(3, 100, 5);
    two.extend(batch(2, 200, 5));
    let info = log.append_as_leader(&mut two, 7, 1_000).unwrap();
    assert_eq!(
        (info.first_offset, info.last_offset, info.log_end_offset),
        (0, 4, 5)
    );
    assert_eq!((info.batch_count, info.size_bytes), (2, two.len()));
    assert_eq!((info.max_timestamp, info.offset_of_max_timestamp), (200, 4));
    assert_eq!(offsets_of(&two), vec![(0, 2), (3, 4)]);
    let (_, info) = append(&log, 4, 300, 5);
    assert_eq!((info.first_offset, info.last_offset), (5, 8));
    assert_eq!(log.log_end_offset(), 9);
    let all = read_all(&log, 0);
    assert_eq!(offsets_of(&all), vec![(0, 2), (3, 4), (5, 8)]);
    // Epoch stamped, CRC still valid (both fields lie outside it).
    let h = sluice_protocol::records::RecordBatchHeader::parse(&all).unwrap();
    assert_eq!(h.partition_leader_epoch, 7);
    sluice_protocol::records::verify_crc(&all).unwrap();
    assert_eq!(&all[..two.len()], &two[..]);
}

#[test]
fn bad_input_is_an_error_not_a_panic() {
    let dir = tempfile::tempdir().unwrap();
    let log = open(dir.path(), LogConfig::default());
    let good = batch(2, 100, 5);
    let cases: Vec<(Vec<u8>, &str)> = vec![
        (vec![], "empty"),
        (good[..30].to_vec(), "short header"),
        (good[..good.len() - 1].to_vec(), "torn batch"),
        (
            [good.clone(), good[..70].to_vec()].concat(),
            "trailing partial batch",
        ),
        (
            {
                let mut b = good.clone();
                b[16] = 1;
                b
            },
            "magic 1",
        ),
    ];
    for (mut input, what) in cases {
        assert!(
            log.append_as_leader(&mut input, 0, 1_000).is_err(),
            "{what}"
        );
    }
    assert_eq!(log.log_end_offset(), 0, "nothing was stored");
    assert_eq!(log.size_bytes(), 0);
}

#[test]
fn read_limits_table() {
    let dir = tempfile::tempdir().unwrap();
    let log = open(dir.path(), small_config(1 << 20));
    // Batches of 3 records each: [0,2] [3,5] [6,8] [9,11]; all the same size.
    let sizes: Vec<usize> = (0..4).map(|_| append(&log, 3, 1_000, 20).0.len()).collect();
    let s = sizes[0];
    // (offset, max_bytes, max_offset, min_one_batch, expected batches (base, last))
    type Case = (i64, usize, i64, bool, Vec<(i64, i64)>);
    let cases: Vec<Case> = vec![
        (
            0,
            usize::MAX,
            i64::MAX,
            false,
            vec![(0, 2), (3, 5), (6, 8), (9, 11)],
        ),
        (
            4,
            usize::MAX,
            i64::MAX,
            false,
            vec![(3, 5), (6, 8), (9, 11)],
        ),
        (
            5,
            usize::MAX,
            i64::MAX,
            false,
            vec![(3, 5), (6, 8), (9, 11)],
        ),
        (6, usize::MAX, i64::MAX, false, vec![(6, 8), (9, 11)]),
        // Upper bound (high watermark): batches reaching it are left out.
        (0, usize::MAX, 9, false, vec![(0, 2), (3, 5), (6, 8)]),
        (0, usize::MAX, 8, false, vec![(0, 2), (3, 5)]),
        (6, usize::MAX, 8, true, vec![]),
        (9, usize::MAX, 9, true, vec![]),
        // Byte budget: whole batches only.
        (0, 2 * s, i64::MAX, false, vec![(0, 2), (3, 5)]),
        (0, 2 * s + s / 2, i64::MAX, false, vec![(0, 2), (3, 5)]),
        (0, s - 1, i64::MAX, false, vec![]),
        (0, s - 1, i64::MAX, true, vec![(0, 2)]),
        (0, 0, i64::MAX, true, vec![(0, 2)]),
        (0, 0, i64::MAX, false, vec![]),
        // At the log end: empty, not an error.
        (12, usize::MAX, i64::MAX, true, vec![]),
    ];
    for (offset, max_bytes, max_offset, min_one, want) in cases {
        let r = log.read(offset, max_bytes, max_offset, min_one).unwrap();
        assert_eq!(
            offsets_of(&r.records),
            want,
            "read({offset}, {max_bytes}, {max_offset}, {min_one})"
        );
        assert_eq!((r.log_start_offset, r.log_end_offset), (0, 12));
    }
    for bad in [-1, 13, 100] {
        let err = log.read(bad, 100, i64::MAX, true).unwrap_err();
        assert!(
            matches!(err, StorageError::OffsetOutOfRange { requested, start: 0, end: 12 } if requested == bad),
            "{err:?}"
        );
    }
}

#[test]
fn roll_by_size_and_read_across_segments() {
    let dir = tempfile::tempdir().unwrap();
    let log = open(dir.path(), small_config(1_000));
    let mut stored = Vec::new();
    for _ in 0..20 {
        stored.extend(append(&log, 2, 1_000, 100).0); // ~300 bytes each
    }
    let bases = log.segment_base_offsets();
    assert!(bases.len() >= 6, "{bases:?}");
    assert_eq!(bases[0], 0);
    for w in bases.windows(2) {
        assert!(w[0] < w[1]);
    }
    for &b in &bases {
        assert!(dir.path().join(format!("{b:020}.log")).exists());
        assert!(dir.path().join(format!("{b:020}.index")).exists());
        assert!(dir.path().join(format!("{b:020}.timeindex")).exists());
    }
    // No segment beyond segment.bytes.
    for entry in std::fs::read_dir(dir.path()).unwrap() {
        let e = entry.unwrap();
        if e.file_name().to_string_lossy().ends_with(".log") {
            assert!(e.metadata().unwrap().len() <= 1_000);
        }
    }
    assert_eq!(log.size_bytes(), stored.len() as u64);
    assert_eq!(read_all(&log, 0), stored);
    // A read starting in one segment continues into the next.
    let r = log.read(bases[1] - 1, 700, i64::MAX, false).unwrap();
    let got = offsets_of(&r.records);
    assert_eq!(got.len(), 2);
    assert_eq!(got[0].1, bases[1] - 1);
    assert_eq!(got[1].0, bases[1]);
}

#[test]
fn oversized_batch_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let log = open(dir.path(), small_config(200));
    let mut big = batch(1, 1_000, 300);
    assert!(matches!(
        log.append_as_leader(&mut big, 0, 1_000),
        Err(StorageError::BatchTooLarge { .. })
    ));
    assert_eq!(log.log_end_offset(), 0);
}

#[test]
fn follower_append_keeps_offsets_and_rejects_going_back() {
    let dir = tempfile::tempdir().unwrap();
    let log = open(dir.path(), LogConfig::default());
    let spec = |base, epoch| BatchSpec {
        base_offset: base,
        leader_epoch: epoch,
        ..Default::default()
    };
    let mut input = batch_with_timestamps(&spec(0, 1), &[10, 11]);
    input.extend(batch_with_timestamps(&spec(2, 2), &[12]));
    let info = log.append_as_follower(&input, 1_000).unwrap();
    assert_eq!((info.first_offset, info.last_offset), (0, 2));
    assert_eq!(read_all(&log, 0), input);
    assert_eq!(log.end_offset_for_epoch(1), Some((1, 2)));
    // Below the log end, or overlapping inside one append: refused, nothing stored.
    for bad in [
        batch_with_timestamps(&spec(2, 2), &[13]),
        [
            batch_with_timestamps(&spec(3, 2), &[13, 14]),
            batch_with_timestamps(&spec(4, 2), &[15]),
        ]
        .concat(),
    ] {
        assert!(matches!(
            log.append_as_follower(&bad, 1_000),
            Err(StorageError::NonMonotonicOffset { .. })
        ));
    }
    // A corrupt CRC is refused too.
    let mut corrupt = batch_with_timestamps(&spec(3, 2), &[13]);
    let n = corrupt.len();
    corrupt[n - 1] ^= 0xff;
    assert!(matches!(
        log.append_as_follower(&corrupt, 1_000),
        Err(StorageError::InvalidBatch(_))
    ));
    assert_eq!(log.log_end_offset(), 3);
    // Gaps (compacted leader) are fine; a fetch inside the gap gets the next batch.
    let gap = batch_with_timestamps(&spec(10, 2), &[20]);
    log.append_as_follower(&gap, 1_000).unwrap();
    assert_eq!(log.log_end_offset(), 11);
    assert_eq!(offsets_of(&read_all(&log, 5)), vec![(10, 10)]);
}

#[test]
fn truncate_to_drops_the_tail_and_later_segments() {
    let dir = tempfile::tempdir().unwrap();
    let log = open(dir.path(), small_config(700));
    let mut stored = Vec::new();
    for _ in 0..10 {
        stored.push(append(&log, 3, 1_000, 50).0); // 3 offsets, 232 bytes each
    }
    log.set_high_watermark(30);
    let segments_before = log.segment_count();
    assert!(segments_before > 3);
    // Truncating inside batch [12, 14] removes it whole.
    log.truncate_to(13).unwrap();
    assert_eq!(log.log_end_offset(), 12);
    assert_eq!(log.high_watermark(), 12);
    assert!(log.segment_count() < segments_before);
    assert_eq!(read_all(&log, 0), stored[..4].concat());
    // The log goes on from there, and survives a reopen.
    let (b, info) = append(&log, 1, 2_000, 5);
    assert_eq!(info.first_offset, 12);
    log.close().unwrap();
    drop(log);
    let log = open(dir.path(), small_config(700));
    assert_eq!(log.log_end_offset(), 13);
    assert_eq!(read_all(&log, 0), [stored[..4].concat(), b].concat());
    // Truncating at a segment's base offset and past the end.
    let base = log.segment_base_offsets()[1];
    log.truncate_to(base).unwrap();
    assert_eq!(log.log_end_offset(), base);
    log.truncate_to(1_000).unwrap();
    assert_eq!(log.log_end_offset(), base);
}

#[test]
fn truncate_fully_restarts_at_offset() {
    let dir = tempfile::tempdir().unwrap();
    let log = open(dir.path(), LogConfig::default());
    append(&log, 5, 1_000, 5);
    log.truncate_fully_and_start_at(100).unwrap();
    assert_eq!(
        (
            log.log_start_offset(),
            log.log_end_offset(),
            log.segment_count()
        ),
        (100, 100, 1)
    );
    assert_eq!(append(&log, 1, 1_000, 5).1.first_offset, 100);
    assert!(matches!(
        log.read(0, 10, i64::MAX, true),
        Err(StorageError::OffsetOutOfRange { .. })
    ));
    drop(log);
    let log = open(dir.path(), LogConfig::default());
    assert_eq!((log.log_start_offset(), log.log_end_offset()), (100, 101));
}

#[test]
fn readers_run_alongside_appends() {
    let dir = tempfile::tempdir().unwrap();
    let log = std::sync::Arc::new(open(dir.path(), small_config(4_000)));
    let writer = {
        let log = log.clone();
        std::thread::spawn(move || {
            for _ in 0..300 {
                append(&log, 2, 1_000, 30);
            }
        })
    };
    let mut reads = 0;
    while !writer.is_finished() || reads < 10 {
        let end = log.log_end_offset();
        let r = log.read(0, usize::MAX, i64::MAX, true).unwrap();
        // Always whole batches, contiguous from 0, never past the end seen before.
        let got = offsets_of(&r.records);
        for (i, (base, last)) in got.iter().enumerate() {
            assert_eq!(*base, i as i64 * 2);
            assert_eq!(*last, *base + 1);
        }
        assert!(got.len() as i64 * 2 >= end);
        reads += 1;
    }
    writer.join().unwrap();
    assert_eq!(log.log_end_offset(), 600);
}

/// Expected read result from the list of stored batches `(base, last, bytes)`.
fn model_read(
    stored: &[(i64, i64, Vec<u8>)],
    offset: i64,
    max_bytes: usize,
    upper: i64,
    min_one: bool,
) -> Vec<u8> {
    let mut out = Vec::new();
    if offset >= upper {
        return out;
    }
    for (_, last, bytes) in stored.iter().skip_while(|(_, last, _)| *last < offset) {
        if *last >= upper || (out.len() + bytes.len() > max_bytes && !(min_one && out.is_empty())) {
            break;
        }
        out.extend_from_slice(bytes);
    }
    out
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    /// Property (1): reads from any offset, including inside batches, return the stored
    /// batches byte for byte, starting with the one containing the offset.
    #[test]
    fn reads_match_the_model(
        batches in proptest::collection::vec((1usize..6, 0usize..300), 1..40),
        segment_bytes in 1_700i32..6_000,
        interval in 0i32..1_000,
        reads in proptest::collection::vec((0.0f64..1.0, 0usize..3_000, 0.0f64..1.2, any::<bool>()), 1..30),
    ) {
        let dir = tempfile::tempdir().unwrap();
        let config = LogConfig { segment_bytes, index_interval_bytes: interval, ..LogConfig::default() };
        let log = PartitionLog::open(dir.path(), config, 0).unwrap();
        let mut stored = Vec::new();
        for (i, (records, value_len)) in batches.iter().enumerate() {
            let mut b = batch(*records, i as i64, *value_len);
            let info = log.append_as_leader(&mut b, 0, 0).unwrap();
            stored.push((info.first_offset, info.last_offset, b));
        }
        let leo = log.log_end_offset();
        for (at, max_bytes, upper_frac, min_one) in reads {
            let offset = (at * (leo + 1) as f64) as i64;
            let max_offset = (upper_frac * (leo + 1) as f64) as i64;
            let got = log.read(offset, max_bytes, max_offset, min_one).unwrap();
            let want = model_read(&stored, offset, max_bytes, max_offset.min(leo), min_one);
            prop_assert_eq!(got.records.to_vec(), want, "read({}, {}, {}, {})", offset, max_bytes, max_offset, min_one);
        }
    }
}

#[test]
fn advance_high_watermark_never_moves_back_nor_past_the_log_end() {
    let dir = tempfile::tempdir().unwrap();
    let log = open(dir.path(), small_config(700));
    for _ in 0..4 {
        append(&log, 3, 1_000, 50); // offsets 0..12
    }
    // Two appenders reporting out of order: 12 first, then a stale 6.
    assert_eq!(log.advance_high_watermark(12), 12);
    assert_eq!(log.advance_high_watermark(6), 12);
    assert_eq!(log.high_watermark(), 12);
    // Never beyond what the log holds.
    assert_eq!(log.advance_high_watermark(100), 12);
}
