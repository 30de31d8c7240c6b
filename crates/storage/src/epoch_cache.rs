//! The leader-epoch cache (`epoch -> first offset written in that epoch`) behind
//! OffsetForLeaderEpoch and follower truncation (KIP-101, KIP-279), and its checkpoint
//! text format (Kafka's: a version line, a count line, then `epoch offset` lines).

/// One cache entry: `start_offset` is the first offset written by the leader of `epoch`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EpochEntry {
    pub epoch: i32,
    pub start_offset: i64,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct LeaderEpochCache {
    /// Strictly increasing in both epoch and start offset.
    entries: Vec<EpochEntry>,
}

impl LeaderEpochCache {
    pub(crate) fn entries(&self) -> &[EpochEntry] {
        &self.entries
    }

    pub(crate) fn latest_epoch(&self) -> Option<i32> {
        self.entries.last().map(|e| e.epoch)
    }

    /// Records that `epoch` starts at `start_offset`, as Kafka's `LeaderEpochFileCache.assign`:
    /// a no-op for the latest epoch at the same or a later offset; otherwise entries that
    /// would break monotonicity (epoch or start offset not below the new one) are dropped.
    /// Returns whether the cache changed. Negative epochs (no epoch) are ignored.
    pub(crate) fn assign(&mut self, epoch: i32, start_offset: i64) -> bool {
        if epoch < 0 || start_offset < 0 {
            return false;
        }
        if let Some(last) = self.entries.last() {
            if last.epoch == epoch && start_offset >= last.start_offset {
                return false;
            }
        }
        self.entries
            .retain(|e| e.epoch < epoch && e.start_offset < start_offset);
        self.entries.push(EpochEntry {
            epoch,
            start_offset,
        });
        true
    }

    /// Recovery's rule (Kafka's `LogSegment.recover`): only an epoch above every known one
    /// is recorded, so re-reading old batches never rewrites history.
    pub(crate) fn assign_if_newer(&mut self, epoch: i32, start_offset: i64) -> bool {
        if self.latest_epoch().is_some_and(|l| epoch <= l) {
            return false;
        }
        self.assign(epoch, start_offset)
    }

    /// OffsetForLeaderEpoch: for the requested epoch, the largest known epoch `<=` it and
    /// the end offset of that epoch (the start of the next higher epoch, or `log_end_offset`
    /// for the latest). `None` means undefined (-1, -1 on the wire): the request is for a
    /// negative epoch, the cache is empty, or the epoch is above every known one.
    pub(crate) fn end_offset_for(&self, requested: i32, log_end_offset: i64) -> Option<(i32, i64)> {
        if requested < 0 {
            return None;
        }
        if self.latest_epoch() == Some(requested) {
            return Some((requested, log_end_offset));
        }
        let higher = self.entries.iter().position(|e| e.epoch > requested)?;
        let end = self.entries[higher].start_offset;
        match higher.checked_sub(1) {
            // Below every known epoch: Kafka answers with the requested epoch itself.
            None => Some((requested, end)),
            Some(floor) => Some((self.entries[floor].epoch, end)),
        }
    }

    /// Drops entries starting at or after `end_offset` (the log was truncated there).
    pub(crate) fn truncate_from_end(&mut self, end_offset: i64) -> bool {
        let before = self.entries.len();
        self.entries.retain(|e| e.start_offset < end_offset);
        before != self.entries.len()
    }

    /// The log now starts at `start_offset`: entries starting at or before it collapse
    /// into the latest of them, moved to `start_offset` (Kafka's `truncateFromStart`).
    pub(crate) fn truncate_from_start(&mut self, start_offset: i64) -> bool {
        let n = self
            .entries
            .partition_point(|e| e.start_offset <= start_offset);
        let Some(last_before) = n.checked_sub(1).map(|i| self.entries[i]) else {
            return false;
        };
        if n == 1 && last_before.start_offset == start_offset {
            return false;
        }
        self.entries.drain(..n);
        self.entries.insert(
            0,
            EpochEntry {
                epoch: last_before.epoch,
                start_offset,
            },
        );
        true
    }

    pub(crate) fn encode(&self) -> String {
        let mut s = format!("0\n{}\n", self.entries.len());
        for e in &self.entries {
            s.push_str(&format!("{} {}\n", e.epoch, e.start_offset));
        }
        s
    }

    /// Parses the checkpoint; `None` if malformed (the caller rebuilds from the log).
    pub(crate) fn decode(text: &str) -> Option<Self> {
        let mut lines = text.lines();
        if lines.next()?.trim() != "0" {
            return None;
        }
        let count: usize = lines.next()?.trim().parse().ok()?;
        let mut cache = Self::default();
        for _ in 0..count {
            let mut parts = lines.next()?.split_whitespace();
            let epoch: i32 = parts.next()?.parse().ok()?;
            let start_offset: i64 = parts.next()?.parse().ok()?;
            if parts.next().is_some() {
                return None;
            }
            let ordered = cache
                .entries
                .last()
                .is_none_or(|l| l.epoch < epoch && l.start_offset < start_offset);
            if !ordered || epoch < 0 || start_offset < 0 {
                return None;
            }
            cache.entries.push(EpochEntry {
                epoch,
                start_offset,
            });
        }
        Some(cache)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cache(entries: &[(i32, i64)]) -> LeaderEpochCache {
        let mut c = LeaderEpochCache::default();
        for &(epoch, start) in entries {
            assert!(c.assign(epoch, start));
        }
        c
    }

    fn pairs(c: &LeaderEpochCache) -> Vec<(i32, i64)> {
        c.entries()
            .iter()
            .map(|e| (e.epoch, e.start_offset))
            .collect()
    }

    #[test]
    fn end_offset_for_epoch_table() {
        // Epochs 1 (from 0), 3 (from 100), 5 (from 250); log end offset 400.
        let c = cache(&[(1, 0), (3, 100), (5, 250)]);
        let cases = [
            (-1, None),
            (0, Some((0, 0))),
            (1, Some((1, 100))),
            (2, Some((1, 100))),
            (3, Some((3, 250))),
            (4, Some((3, 250))),
            (5, Some((5, 400))),
            (6, None),
        ];
        for (requested, want) in cases {
            assert_eq!(c.end_offset_for(requested, 400), want, "epoch {requested}");
        }
        assert_eq!(LeaderEpochCache::default().end_offset_for(0, 10), None);
    }

    #[test]
    fn assign_table() {
        type Case<'a> = (&'a [(i32, i64)], (i32, i64), bool, Vec<(i32, i64)>);
        let cases: Vec<Case> = vec![
            (&[], (0, 0), true, vec![(0, 0)]),
            (&[(0, 0)], (0, 5), false, vec![(0, 0)]),
            (&[(0, 0)], (1, 5), true, vec![(0, 0), (1, 5)]),
            (&[(0, 0)], (-1, 5), false, vec![(0, 0)]),
            // A lower start offset for the latest epoch replaces it.
            (&[(0, 0), (1, 5)], (1, 3), true, vec![(0, 0), (1, 3)]),
            // A new epoch starting below existing entries drops them.
            (
                &[(0, 0), (1, 5), (2, 9)],
                (3, 5),
                true,
                vec![(0, 0), (3, 5)],
            ),
            // A lower epoch drops the higher ones.
            (&[(0, 0), (4, 5)], (2, 7), true, vec![(0, 0), (2, 7)]),
        ];
        for (initial, (e, o), changed, want) in cases {
            let mut c = cache(initial);
            assert_eq!(c.assign(e, o), changed, "{initial:?} + ({e}, {o})");
            assert_eq!(pairs(&c), want, "{initial:?} + ({e}, {o})");
        }
    }

    #[test]
    fn truncation_table() {
        let base = [(1, 0), (3, 100), (5, 250)];
        let from_end = [
            (300, vec![(1, 0), (3, 100), (5, 250)]),
            (250, vec![(1, 0), (3, 100)]),
            (0, vec![]),
        ];
        for (at, want) in from_end {
            let mut c = cache(&base);
            c.truncate_from_end(at);
            assert_eq!(pairs(&c), want, "truncate_from_end({at})");
        }
        let from_start = [
            (0, vec![(1, 0), (3, 100), (5, 250)]),
            (50, vec![(1, 50), (3, 100), (5, 250)]),
            (100, vec![(3, 100), (5, 250)]),
            (260, vec![(5, 260)]),
        ];
        for (at, want) in from_start {
            let mut c = cache(&base);
            c.truncate_from_start(at);
            assert_eq!(pairs(&c), want, "truncate_from_start({at})");
        }
    }

    #[test]
    fn checkpoint_round_trip_and_garbage() {
        let c = cache(&[(1, 0), (3, 100)]);
        assert_eq!(c.encode(), "0\n2\n1 0\n3 100\n");
        assert_eq!(LeaderEpochCache::decode(&c.encode()), Some(c));
        for bad in [
            "",
            "1\n0\n",
            "0\n2\n1 0\n",
            "0\n1\nx 0\n",
            "0\n2\n3 0\n1 5\n",
            "0\n1\n1 2 3\n",
        ] {
            assert_eq!(LeaderEpochCache::decode(bad), None, "{bad:?}");
        }
    }
}
