//! Requests parked until a partition's offset (the high watermark for acks=all, the
//! log end for replica fetches) reaches what they need. A move wakes exactly the
//! waiters it satisfies, in offset order; nothing polls.

use std::collections::BTreeMap;

use tokio::sync::oneshot;

/// How a wait ended, for the waiter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WaitOutcome {
    /// The offset reached the one waited for.
    Reached,
    /// The wait can never succeed here (this replica stopped leading, or was closed).
    Abandoned,
}

/// Waiters keyed by the offset they need; not thread-safe by itself (the replica keeps
/// it under the same lock that publishes the offset, so no wake-up is lost between a
/// check and a registration).
#[derive(Debug, Default)]
pub struct OffsetWaiters {
    by_offset: BTreeMap<i64, Vec<oneshot::Sender<WaitOutcome>>>,
}

impl OffsetWaiters {
    /// Parks a waiter until the offset is at least `offset`.
    pub fn park(&mut self, offset: i64) -> oneshot::Receiver<WaitOutcome> {
        let (tx, rx) = oneshot::channel();
        self.by_offset.entry(offset).or_default().push(tx);
        rx
    }

    /// The offset is now `reached`: wakes every waiter for an offset at or below it.
    /// Returns how many were woken.
    pub fn release_up_to(&mut self, reached: i64) -> usize {
        let rest = self.by_offset.split_off(&reached.saturating_add(1));
        let done = std::mem::replace(&mut self.by_offset, rest);
        let mut n = 0;
        for tx in done.into_values().flatten() {
            // A waiter that gave up (timed out) dropped its receiver; nothing to do.
            let _ = tx.send(WaitOutcome::Reached);
            n += 1;
        }
        n
    }

    /// Ends every wait as [`WaitOutcome::Abandoned`].
    pub fn abandon_all(&mut self) -> usize {
        let mut n = 0;
        for tx in std::mem::take(&mut self.by_offset).into_values().flatten() {
            let _ = tx.send(WaitOutcome::Abandoned);
            n += 1;
        }
        n
    }

    /// Drops waiters whose requester already gave up, so a partition with no progress
    /// does not accumulate them.
    pub fn prune(&mut self) {
        self.by_offset.retain(|_, v| {
            v.retain(|tx| !tx.is_closed());
            !v.is_empty()
        });
    }

    pub fn len(&self) -> usize {
        self.by_offset.values().map(Vec::len).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.by_offset.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wakes_exactly_the_satisfied_waiters_in_order() {
        let mut w = OffsetWaiters::default();
        let mut a = w.park(5);
        let mut b = w.park(10);
        let mut c = w.park(10);
        assert_eq!(w.release_up_to(4), 0);
        assert!(a.try_recv().is_err());
        assert_eq!(w.release_up_to(9), 1);
        assert_eq!(a.try_recv(), Ok(WaitOutcome::Reached));
        assert!(b.try_recv().is_err());
        assert_eq!(w.release_up_to(10), 2);
        assert_eq!(b.try_recv(), Ok(WaitOutcome::Reached));
        assert_eq!(c.try_recv(), Ok(WaitOutcome::Reached));
        assert!(w.is_empty());
    }

    #[test]
    fn abandon_fails_every_wait_and_prune_drops_gone_waiters() {
        let mut w = OffsetWaiters::default();
        let mut a = w.park(1);
        let gone = w.park(2);
        drop(gone);
        w.prune();
        assert_eq!(w.len(), 1);
        assert_eq!(w.abandon_all(), 1);
        assert_eq!(a.try_recv(), Ok(WaitOutcome::Abandoned));
    }
}
