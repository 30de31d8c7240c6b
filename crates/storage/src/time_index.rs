//! The time index: `(largest timestamp so far, relative offset of that record)` entries,
//! appended alongside offset-index entries whenever the largest timestamp grew.

use crate::index::{Entry, EntryFile};

pub(crate) const TIME_ENTRY_SIZE: usize = 12;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct TimeEntry {
    pub timestamp: i64,
    pub relative_offset: u32,
}

impl Entry for TimeEntry {
    const SIZE: usize = TIME_ENTRY_SIZE;
    fn encode(&self, out: &mut [u8]) {
        out[..8].copy_from_slice(&self.timestamp.to_be_bytes());
        out[8..12].copy_from_slice(&self.relative_offset.to_be_bytes());
    }
    fn decode(b: &[u8]) -> Self {
        let mut ts = [0u8; 8];
        ts.copy_from_slice(&b[..8]);
        Self {
            timestamp: i64::from_be_bytes(ts),
            relative_offset: u32::from_be_bytes([b[8], b[9], b[10], b[11]]),
        }
    }
}

pub(crate) type TimeIndex = EntryFile<TimeEntry>;

impl TimeIndex {
    /// The last entry with `timestamp <= target`. Every batch before that entry's offset
    /// has a smaller largest timestamp, so a search for `target` may start there.
    pub(crate) fn floor(&self, target: i64) -> Option<TimeEntry> {
        self.with_entries(|e| {
            let n = e.partition_point(|x| x.timestamp <= target);
            n.checked_sub(1).map(|i| e[i])
        })
    }

    /// Index of the first entry pointing at `relative_offset` or later.
    pub(crate) fn first_at_or_after(&self, relative_offset: u32) -> usize {
        self.with_entries(|e| e.partition_point(|x| x.relative_offset < relative_offset))
    }
}

/// Whether loaded entries are plausible: timestamps strictly and offsets weakly increasing.
pub(crate) fn time_entries_valid(entries: &[TimeEntry]) -> bool {
    entries
        .windows(2)
        .all(|w| w[0].timestamp < w[1].timestamp && w[0].relative_offset <= w[1].relative_offset)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(timestamp: i64, relative_offset: u32) -> TimeEntry {
        TimeEntry {
            timestamp,
            relative_offset,
        }
    }

    #[test]
    fn floor_and_validity() {
        let dir = tempfile::tempdir().unwrap();
        let idx = TimeIndex::create(&dir.path().join("0.timeindex")).unwrap();
        idx.replace_all(vec![t(100, 0), t(200, 5), t(300, 9)])
            .unwrap();
        let cases = [
            (99, None),
            (100, Some(t(100, 0))),
            (250, Some(t(200, 5))),
            (1000, Some(t(300, 9))),
        ];
        for (target, want) in cases {
            assert_eq!(idx.floor(target), want, "floor({target})");
        }
        assert_eq!(idx.first_at_or_after(5), 1);
        assert_eq!(idx.first_at_or_after(6), 2);
        assert!(time_entries_valid(&[t(1, 0), t(2, 0), t(3, 7)]));
        assert!(!time_entries_valid(&[t(1, 0), t(1, 2)]));
        assert!(!time_entries_valid(&[t(1, 5), t(2, 2)]));
    }
}
