//! ListOffsets by timestamp and MAX_TIMESTAMP.

use super::{open, small_config};
use crate::testutil::{batch_with_timestamps, BatchSpec};
use crate::PartitionLog;
use sluice_protocol::compression::Compression;
use sluice_protocol::records::RecordBatchBuilder;

fn append_ts(log: &PartitionLog, spec: &BatchSpec, ts: &[i64]) -> i64 {
    let mut b = batch_with_timestamps(spec, ts);
    log.append_as_leader(&mut b, 0, 1_000).unwrap().first_offset
}

#[test]
fn offset_for_timestamp_table() {
    let dir = tempfile::tempdir().unwrap();
    let log = open(dir.path(), small_config(250));
    let plain = BatchSpec::default();
    // offsets 0..2: ts 100,150,120 | 3..4: 200,210 | 5..7 (gzip): 300,290,310 | 8: 250 |
    // 9..10: 400,390 flagged gzip but not compressed (undecodable)
    append_ts(&log, &plain, &[100, 150, 120]);
    append_ts(&log, &plain, &[200, 210]);
    let mut builder = RecordBatchBuilder::new().compression(Compression::Gzip);
    for ts in [300, 290, 310] {
        builder.push(ts, Some(b"k"), Some(b"value"), &[]).unwrap();
    }
    let mut gzip = builder.build().unwrap().to_vec();
    assert_eq!(
        log.append_as_leader(&mut gzip, 0, 1_000)
            .unwrap()
            .first_offset,
        5
    );
    append_ts(&log, &plain, &[250]);
    let bogus = BatchSpec {
        attributes: 1,
        ..Default::default()
    };
    assert_eq!(append_ts(&log, &bogus, &[400, 390]), 9);
    assert!(log.segment_count() > 1);
    let cases = [
        (0, Some((0, 100))),
        (100, Some((0, 100))),
        (101, Some((1, 150))),
        (150, Some((1, 150))),
        (151, Some((3, 200))),
        (205, Some((4, 210))),
        // Inside the compressed batch: exact records.
        (211, Some((5, 300))),
        (300, Some((5, 300))),
        (301, Some((7, 310))),
        (310, Some((7, 310))),
        // Undecodable batch: its first offset and max timestamp.
        (311, Some((9, 400))),
        (400, Some((9, 400))),
        (401, None),
    ];
    for (ts, want) in cases {
        assert_eq!(
            log.offset_for_timestamp(ts).unwrap(),
            want,
            "timestamp {ts}"
        );
    }
    // Undecodable max-timestamp batch: its last offset.
    assert_eq!(log.max_timestamp_offset().unwrap(), Some((10, 400)));
    // Never below the log start offset.
    log.set_high_watermark(11);
    log.delete_records_before(2).unwrap();
    assert_eq!(log.offset_for_timestamp(0).unwrap(), Some((2, 120)));
    assert_eq!(log.offset_for_timestamp(130).unwrap(), Some((3, 200)));
}

#[test]
fn max_timestamp_picks_the_first_record_with_the_max() {
    let dir = tempfile::tempdir().unwrap();
    let log = open(dir.path(), small_config(300));
    assert_eq!(log.max_timestamp_offset().unwrap(), None);
    let plain = BatchSpec::default();
    append_ts(&log, &plain, &[10, 50, 20]); // 0..2, max at 1
    assert_eq!(log.max_timestamp_offset().unwrap(), Some((1, 50)));
    append_ts(&log, &plain, &[40, 50]); // tie: the earlier batch wins
    assert_eq!(log.max_timestamp_offset().unwrap(), Some((1, 50)));
    append_ts(&log, &plain, &[60, 70, 70, 5]); // 5..8, max at 6
    assert_eq!(log.max_timestamp_offset().unwrap(), Some((6, 70)));
    // LogAppendTime: every record has the batch timestamp; the first one counts.
    let mut b = batch_with_timestamps(&plain, &[1, 2, 3]);
    sluice_protocol::records::set_log_append_time(&mut b, 80).unwrap();
    let first = log.append_as_leader(&mut b, 0, 1_000).unwrap().first_offset;
    assert_eq!(log.max_timestamp_offset().unwrap(), Some((first, 80)));
    assert_eq!(log.offset_for_timestamp(75).unwrap(), Some((first, 80)));
    // The answer survives a restart (segment maxima come back from the time indexes).
    log.close().unwrap();
    drop(log);
    let log = open(dir.path(), small_config(300));
    assert_eq!(log.max_timestamp_offset().unwrap(), Some((first, 80)));
    assert_eq!(log.offset_for_timestamp(65).unwrap(), Some((6, 70)));
}
