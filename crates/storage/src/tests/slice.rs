//! Slice reads (`read_slice`): the region they name holds exactly the whole batches a
//! copying read returns from the same segment, under the same limits.

use super::{append, open, small_config};
use crate::testutil::offsets_of;
use crate::{LogConfig, PartitionLog};

/// A log of batches of 1 to 4 records (~100-byte values) over several 4 KiB segments.
fn log_with_segments(dir: &std::path::Path) -> PartitionLog {
    let log = open(dir, small_config(4096));
    for i in 0..60 {
        append(&log, 1 + i % 4, 1_000 + i as i64, 100);
    }
    assert!(log.segment_base_offsets().len() > 3, "the log rolled");
    log
}

#[test]
fn a_slice_holds_what_a_read_of_its_segment_returns() {
    let dir = tempfile::tempdir().unwrap();
    let log = log_with_segments(dir.path());
    let end = log.log_end_offset();
    let bases = log.segment_base_offsets();
    let mut slices = 0;
    for offset in 0..end {
        for budget in [200, 700, 1500, 3000, usize::MAX] {
            for upper in [offset + 1, offset + 5, end - 3, end, i64::MAX] {
                let read = log.read(offset, budget, upper, false).unwrap().records;
                let slice = log.read_slice(offset, budget, upper, 0).unwrap();
                let what = format!("offset {offset}, budget {budget}, upper {upper}");
                let Some(slice) = slice else {
                    // Only when a copying read finds nothing either.
                    assert!(read.is_empty(), "no slice but a read got bytes: {what}");
                    continue;
                };
                slices += 1;
                let bytes = slice.read().unwrap();
                assert_eq!(bytes.len(), slice.len());
                // Whole batches, a prefix of the read (which may go on in later segments).
                assert!(read.starts_with(&bytes), "{what}");
                let batches = offsets_of(&bytes);
                assert!(!batches.is_empty(), "{what}");
                assert!(batches[0].0 <= offset && offset <= batches[0].1, "{what}");
                let last = batches.last().unwrap().1;
                assert_eq!(slice.next_offset(), last + 1, "{what}");
                assert!(last < upper, "{what}");
                // It stops short of the read only at the end of its segment.
                if bytes.len() < read.len() {
                    assert!(bases.contains(&(last + 1)), "cut inside a segment: {what}");
                }
            }
        }
    }
    assert!(slices > 500, "only {slices} slices");
}

#[test]
fn small_regions_and_oversized_first_batches_are_left_to_read() {
    let dir = tempfile::tempdir().unwrap();
    let log = open(dir.path(), LogConfig::default());
    append(&log, 3, 1_000, 2_000);
    append(&log, 3, 1_001, 2_000);
    let whole = log.read_slice(0, usize::MAX, i64::MAX, 0).unwrap().unwrap();
    assert_eq!(offsets_of(&whole.read().unwrap()), vec![(0, 2), (3, 5)]);
    // Below min_len: None.
    assert!(log
        .read_slice(0, usize::MAX, i64::MAX, whole.len() + 1)
        .unwrap()
        .is_none());
    // A first batch larger than the budget (KIP-74 is `read`'s job).
    assert!(log.read_slice(0, 100, i64::MAX, 0).unwrap().is_none());
    // Out of range, at the end, or at the upper bound: None (read gives the answer).
    assert!(log
        .read_slice(6, usize::MAX, i64::MAX, 0)
        .unwrap()
        .is_none());
    assert!(log
        .read_slice(7, usize::MAX, i64::MAX, 0)
        .unwrap()
        .is_none());
    assert!(log.read_slice(3, usize::MAX, 3, 0).unwrap().is_none());
    // Upper in the second batch: only the first.
    let first = log.read_slice(0, usize::MAX, 4, 0).unwrap().unwrap();
    assert_eq!(first.next_offset(), 3);
}

#[test]
fn a_slice_cut_by_truncation_fails_to_read_rather_than_return_other_bytes() {
    let dir = tempfile::tempdir().unwrap();
    let log = open(dir.path(), LogConfig::default());
    append(&log, 3, 1_000, 500);
    append(&log, 3, 1_001, 500);
    let slice = log.read_slice(3, usize::MAX, i64::MAX, 0).unwrap().unwrap();
    assert!(slice.read().is_ok());
    log.truncate_to(3).unwrap();
    assert!(slice.read().is_err());
}

#[test]
fn many_small_batches_are_left_to_read() {
    let dir = tempfile::tempdir().unwrap();
    let log = open(dir.path(), LogConfig::default());
    for i in 0..200 {
        append(&log, 1, 1_000 + i, 10);
    }
    assert!(log
        .read_slice(0, usize::MAX, i64::MAX, 0)
        .unwrap()
        .is_none());
    // A budget that a few of them fill is sliced.
    let few = log.read_slice(0, 400, i64::MAX, 0).unwrap().unwrap();
    assert!(few.len() <= 400 && few.next_offset() > 1);
}
