//! Transaction bookkeeping of one partition (KIP-98): which transactions are open (their
//! first offsets bound the last stable offset), which ended but whose marker is not yet
//! below the high watermark, and the aborted transactions a `read_committed` fetch must
//! report so clients drop their records.
//!
//! Kafka keeps the aborted transactions in a `.txnindex` file per segment. Here they are
//! part of the producer state instead, and so of its snapshots: the producer state is
//! already rebuilt from the newest snapshot plus a scan after every open and truncation,
//! and the aborted list is a function of the same log, so one mechanism restores both
//! and a truncation can never leave the two disagreeing. An entry is dropped once its
//! marker falls below the log start offset (retention, DeleteRecords): no fetch can
//! start before it any more.

use std::collections::BTreeMap;

/// An aborted transaction, as Kafka's transaction index stores it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AbortedTxn {
    pub producer_id: i64,
    /// Offset of the transaction's first record in this partition.
    pub first_offset: i64,
    /// Offset of its ABORT marker.
    pub last_offset: i64,
    /// The first offset of any other transaction still open when the marker was
    /// written, or the marker's offset plus one: no transaction ending later can start
    /// below it, which lets a search stop early (Kafka's `lastStableOffset` field).
    pub last_stable_offset: i64,
}

/// A transaction that ended (its marker was written) in this partition.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct CompletedTxn {
    pub producer_id: i64,
    pub first_offset: i64,
    /// The marker's offset.
    pub last_offset: i64,
    pub aborted: bool,
}

/// The partition's transactions, as of the log end offset (except `unreplicated`, which
/// also depends on the high watermark).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Transactions {
    /// Open transactions: first offset -> producer id.
    ongoing: BTreeMap<i64, i64>,
    /// Ended transactions whose marker is at or above the high watermark, by first
    /// offset. They still hold the last stable offset back: the marker could be
    /// truncated away on a leader change and the transaction be open again.
    unreplicated: BTreeMap<i64, CompletedTxn>,
    /// Aborted transactions in marker order (so sorted by `last_offset`).
    aborted: Vec<AbortedTxn>,
}

impl Transactions {
    pub(crate) fn begin(&mut self, producer_id: i64, first_offset: i64) {
        self.ongoing.insert(first_offset, producer_id);
    }

    /// Ends the transaction `txn` (whose marker was just applied): it leaves the open set,
    /// waits for the high watermark, and is indexed if aborted.
    pub(crate) fn complete(&mut self, txn: CompletedTxn) {
        if self.ongoing.get(&txn.first_offset) == Some(&txn.producer_id) {
            self.ongoing.remove(&txn.first_offset);
        }
        if txn.aborted {
            let last_stable_offset = self
                .ongoing
                .iter()
                .find(|&(_, &pid)| pid != txn.producer_id)
                .map_or(txn.last_offset.saturating_add(1), |(&first, _)| first);
            self.aborted.push(AbortedTxn {
                producer_id: txn.producer_id,
                first_offset: txn.first_offset,
                last_offset: txn.last_offset,
                last_stable_offset,
            });
        }
        self.unreplicated.insert(txn.first_offset, txn);
    }

    /// The high watermark moved to `hw`: transactions whose marker is below it are decided.
    pub(crate) fn on_high_watermark(&mut self, hw: i64) {
        self.unreplicated.retain(|_, t| t.last_offset >= hw);
    }

    /// The smallest offset whose transaction is not decided below the high watermark
    /// (`None`: every record is stable). The last stable offset is the smaller of this and
    /// the high watermark.
    pub(crate) fn first_unstable_offset(&self) -> Option<i64> {
        let ongoing = self.ongoing.keys().next().copied();
        let unreplicated = self.unreplicated.keys().next().copied();
        match (ongoing, unreplicated) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// The aborted transactions a fetch of `[from, upper)` must report: those with a
    /// record in the range (marker at or after `from`, first offset below `upper`).
    pub(crate) fn aborted_between(&self, from: i64, upper: i64) -> Vec<AbortedTxn> {
        let start = self.aborted.partition_point(|t| t.last_offset < from);
        let mut out = Vec::new();
        for t in self.aborted.iter().skip(start) {
            if t.first_offset < upper {
                out.push(*t);
            }
            // Every transaction aborted later was still open when this one ended, or
            // started after it: its first offset is at least this entry's stable offset.
            if t.last_stable_offset >= upper {
                break;
            }
        }
        out
    }

    /// Forgets aborted transactions whose marker is below `log_start_offset`.
    pub(crate) fn drop_aborted_below(&mut self, log_start_offset: i64) -> usize {
        let n = self
            .aborted
            .partition_point(|t| t.last_offset < log_start_offset);
        self.aborted.drain(..n);
        n
    }

    pub(crate) fn aborted(&self) -> &[AbortedTxn] {
        &self.aborted
    }

    /// Restores the aborted list from a snapshot (in marker order; the caller checked).
    pub(crate) fn set_aborted(&mut self, aborted: Vec<AbortedTxn>) {
        self.aborted = aborted;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn done(pid: i64, first: i64, last: i64, aborted: bool) -> CompletedTxn {
        CompletedTxn {
            producer_id: pid,
            first_offset: first,
            last_offset: last,
            aborted,
        }
    }

    #[test]
    fn the_first_unstable_offset_waits_for_open_and_unreplicated_transactions() {
        let mut t = Transactions::default();
        assert_eq!(t.first_unstable_offset(), None);
        t.begin(1, 10);
        t.begin(2, 12);
        assert_eq!(t.first_unstable_offset(), Some(10));
        t.complete(done(1, 10, 20, false));
        // Ended, but the marker is not below the high watermark yet.
        assert_eq!(t.first_unstable_offset(), Some(10));
        t.on_high_watermark(20);
        assert_eq!(t.first_unstable_offset(), Some(10));
        t.on_high_watermark(21);
        assert_eq!(t.first_unstable_offset(), Some(12));
        t.complete(done(2, 12, 22, true));
        t.on_high_watermark(23);
        assert_eq!(t.first_unstable_offset(), None);
    }

    #[test]
    fn aborted_transactions_are_found_by_range() {
        let mut t = Transactions::default();
        // 1: [0, 5] aborted while 2 (from 3) is open; 2: [3, 9] aborted; 3: [20, 21].
        t.begin(1, 0);
        t.begin(2, 3);
        t.complete(done(1, 0, 5, true));
        t.complete(done(2, 3, 9, true));
        t.begin(3, 20);
        t.complete(done(3, 20, 21, true));
        // A commit is not indexed.
        t.begin(4, 30);
        t.complete(done(4, 30, 31, false));
        let a = t.aborted();
        assert_eq!(a.len(), 3);
        assert_eq!(a[0].last_stable_offset, 3);
        assert_eq!(a[1].last_stable_offset, 10);
        let ids = |t: &Transactions, from, upper| {
            t.aborted_between(from, upper)
                .iter()
                .map(|a| a.producer_id)
                .collect::<Vec<_>>()
        };
        assert_eq!(ids(&t, 0, 1), vec![1]);
        assert_eq!(ids(&t, 0, 4), vec![1, 2]);
        assert_eq!(ids(&t, 6, 100), vec![2, 3]);
        assert_eq!(ids(&t, 10, 20), Vec::<i64>::new());
        assert_eq!(ids(&t, 10, 21), vec![3]);
        assert_eq!(ids(&t, 22, 100), Vec::<i64>::new());
        assert_eq!(t.drop_aborted_below(6), 1);
        assert_eq!(ids(&t, 0, 100), vec![2, 3]);
    }
}
