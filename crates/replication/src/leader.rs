//! What a partition leader knows of its followers: each one's log end offset and when it
//! was last caught up, the ISR as committed by the controller plus an ISR change in
//! flight, and from those the high watermark and the ISR changes to ask for. Pure logic:
//! the caller supplies clocks and offsets, and carries proposals to the controller.
//!
//! Rules (Kafka's `Partition` / KIP-497 / KIP-966):
//! - the high watermark is the minimum log end offset over the *maximal* ISR (the
//!   committed ISR plus any member an in-flight change adds), so a member being added
//!   counts before its addition commits, and one being removed counts until its removal
//!   commits;
//! - it never advances while the committed ISR is smaller than `min.insync.replicas`
//!   (KIP-966's strict rule), so nothing becomes visible that fewer replicas hold;
//! - a follower is caught up when a fetch asked for the leader's log end offset at the
//!   time, or for an offset at least the log end at its previous fetch; one not caught
//!   up for `replica.lag.time.max.ms` leaves the ISR;
//! - a follower joins the ISR once its log end reaches the high watermark and the start
//!   of the leader's epoch (so it holds everything this leader could have acknowledged);
//! - one change at a time: while a proposal is in flight no other is made.

use std::collections::BTreeMap;

/// An ISR change for the controller: the new ISR computed from `partition_epoch`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IsrProposal {
    pub leader_epoch: i32,
    pub partition_epoch: i32,
    /// In replica order; always holds the leader.
    pub isr: Vec<i32>,
    /// Members being added, with the broker epoch each reported in its fetches, so the
    /// controller refuses a broker that restarted since (KIP-903).
    pub joining: Vec<(i32, i64)>,
}

#[derive(Debug, Clone)]
struct Follower {
    /// Log end offset as of its last fetch; -1 until it fetches under this leadership.
    leo: i64,
    /// The broker epoch it fetched with (-1: unknown).
    broker_epoch: i64,
    last_caught_up_ms: i64,
    last_fetch_ms: i64,
    /// The leader's log end offset when that fetch arrived.
    last_fetch_leader_leo: i64,
}

impl Follower {
    fn new(last_caught_up_ms: i64) -> Self {
        Self {
            leo: -1,
            broker_epoch: -1,
            last_caught_up_ms,
            last_fetch_ms: 0,
            last_fetch_leader_leo: -1,
        }
    }
}

#[derive(Debug, Clone)]
struct Pending {
    isr: Vec<i32>,
    from_partition_epoch: i32,
    sent_ms: i64,
}

/// An in-flight proposal older than this is assumed lost and may be made again (a
/// repeat is harmless: the controller refuses one computed from a stale partition epoch).
const PENDING_EXPIRY_MS: i64 = 10_000;

#[derive(Debug, Clone)]
pub struct LeaderState {
    node: i32,
    leader_epoch: i32,
    /// The log end offset when this leadership began (KIP-207, ISR joins).
    epoch_start_offset: i64,
    partition_epoch: i32,
    replicas: Vec<i32>,
    isr: Vec<i32>,
    min_isr: usize,
    pending: Option<Pending>,
    followers: BTreeMap<i32, Follower>,
}

/// A fetch from a broker that is not a follower of this partition.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NotAReplica;

impl LeaderState {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        node: i32,
        leader_epoch: i32,
        epoch_start_offset: i64,
        partition_epoch: i32,
        replicas: Vec<i32>,
        isr: Vec<i32>,
        min_isr: usize,
        now_ms: i64,
    ) -> Self {
        // ISR members get a full lag period from now to show they keep up; others start
        // out of sync.
        let followers = replicas
            .iter()
            .filter(|&&r| r != node)
            .map(|&r| (r, Follower::new(if isr.contains(&r) { now_ms } else { 0 })))
            .collect();
        Self {
            node,
            leader_epoch,
            epoch_start_offset,
            partition_epoch,
            replicas,
            isr,
            min_isr,
            pending: None,
            followers,
        }
    }

    pub fn leader_epoch(&self) -> i32 {
        self.leader_epoch
    }

    pub fn epoch_start_offset(&self) -> i64 {
        self.epoch_start_offset
    }

    pub fn partition_epoch(&self) -> i32 {
        self.partition_epoch
    }

    pub fn isr(&self) -> &[i32] {
        &self.isr
    }

    pub fn replicas(&self) -> &[i32] {
        &self.replicas
    }

    pub fn min_isr(&self) -> usize {
        self.min_isr
    }

    pub fn set_min_isr(&mut self, min_isr: usize) {
        self.min_isr = min_isr;
    }

    /// Whether an ISR change is in flight.
    pub fn has_pending(&self) -> bool {
        self.pending.is_some()
    }

    /// The committed ISR and partition epoch changed (same leader epoch). An in-flight
    /// proposal computed from an older epoch is settled, applied or not.
    pub fn update_assignment(
        &mut self,
        partition_epoch: i32,
        replicas: Vec<i32>,
        isr: Vec<i32>,
        now_ms: i64,
    ) {
        if self
            .pending
            .as_ref()
            .is_some_and(|p| partition_epoch > p.from_partition_epoch)
        {
            self.pending = None;
        }
        for r in &replicas {
            if *r != self.node {
                self.followers
                    .entry(*r)
                    .or_insert_with(|| Follower::new(if isr.contains(r) { now_ms } else { 0 }));
            }
        }
        self.followers.retain(|id, _| replicas.contains(id));
        self.partition_epoch = partition_epoch;
        self.replicas = replicas;
        self.isr = isr;
    }

    /// The controller refused or lost the proposal: a new one may be made.
    pub fn proposal_failed(&mut self) {
        self.pending = None;
    }

    /// The committed ISR plus members an in-flight change adds.
    pub fn maximal_isr(&self) -> Vec<i32> {
        let mut m = self.isr.clone();
        if let Some(p) = &self.pending {
            for id in &p.isr {
                if !m.contains(id) {
                    m.push(*id);
                }
            }
        }
        m
    }

    /// Records a follower's fetch for `fetch_offset` while the leader's log ends at
    /// `leader_leo`. A new broker epoch means the broker restarted: what was known of
    /// it is forgotten.
    pub fn follower_fetch(
        &mut self,
        id: i32,
        broker_epoch: i64,
        fetch_offset: i64,
        leader_leo: i64,
        now_ms: i64,
    ) -> Result<(), NotAReplica> {
        let f = self.followers.get_mut(&id).ok_or(NotAReplica)?;
        if broker_epoch >= 0 && broker_epoch != f.broker_epoch {
            if f.broker_epoch >= 0 {
                *f = Follower::new(0);
            }
            f.broker_epoch = broker_epoch;
        }
        if fetch_offset >= leader_leo {
            f.last_caught_up_ms = f.last_caught_up_ms.max(now_ms);
        } else if f.last_fetch_leader_leo >= 0 && fetch_offset >= f.last_fetch_leader_leo {
            f.last_caught_up_ms = f.last_caught_up_ms.max(f.last_fetch_ms);
        }
        f.leo = fetch_offset.min(leader_leo);
        f.last_fetch_leader_leo = leader_leo;
        f.last_fetch_ms = now_ms;
        Ok(())
    }

    /// The high watermark the followers' progress allows, or `None` when it may not
    /// move (ISR below `min.insync.replicas`, or a member's position is unknown).
    pub fn high_watermark(&self, leader_leo: i64) -> Option<i64> {
        if self.isr.len() < self.min_isr {
            return None;
        }
        let mut hw = leader_leo;
        for id in self.maximal_isr() {
            if id == self.node {
                continue;
            }
            let leo = self.followers.get(&id).map_or(-1, |f| f.leo);
            if leo < 0 {
                return None;
            }
            hw = hw.min(leo);
        }
        Some(hw)
    }

    /// An ISR expansion for follower `id` if it has caught up to `hw`, else `None`.
    pub fn expansion(&mut self, id: i32, hw: i64, now_ms: i64) -> Option<IsrProposal> {
        self.expire_pending(now_ms);
        if self.pending.is_some() || self.maximal_isr().contains(&id) {
            return None;
        }
        let f = self.followers.get(&id)?;
        if f.leo < 0 || f.leo < hw || f.leo < self.epoch_start_offset {
            return None;
        }
        let joining = vec![(id, f.broker_epoch)];
        let isr: Vec<i32> = self
            .replicas
            .iter()
            .copied()
            .filter(|r| self.isr.contains(r) || *r == id)
            .collect();
        Some(self.propose(isr, joining, now_ms))
    }

    /// An ISR shrink removing followers not caught up within `lag_max_ms`, else `None`.
    pub fn shrink(&mut self, now_ms: i64, lag_max_ms: i64) -> Option<IsrProposal> {
        self.expire_pending(now_ms);
        if self.pending.is_some() {
            return None;
        }
        let lagging: Vec<i32> = self
            .isr
            .iter()
            .copied()
            .filter(|id| *id != self.node)
            .filter(|id| {
                self.followers
                    .get(id)
                    .is_none_or(|f| now_ms.saturating_sub(f.last_caught_up_ms) > lag_max_ms)
            })
            .collect();
        if lagging.is_empty() {
            return None;
        }
        let isr: Vec<i32> = self
            .isr
            .iter()
            .copied()
            .filter(|id| !lagging.contains(id))
            .collect();
        Some(self.propose(isr, Vec::new(), now_ms))
    }

    fn propose(&mut self, isr: Vec<i32>, joining: Vec<(i32, i64)>, now_ms: i64) -> IsrProposal {
        self.pending = Some(Pending {
            isr: isr.clone(),
            from_partition_epoch: self.partition_epoch,
            sent_ms: now_ms,
        });
        IsrProposal {
            leader_epoch: self.leader_epoch,
            partition_epoch: self.partition_epoch,
            isr,
            joining,
        }
    }

    fn expire_pending(&mut self, now_ms: i64) {
        if self
            .pending
            .as_ref()
            .is_some_and(|p| now_ms.saturating_sub(p.sent_ms) > PENDING_EXPIRY_MS)
        {
            self.pending = None;
        }
    }

    /// Followers' log end offsets as known here (-1: not fetched yet), for diagnostics.
    pub fn follower_offsets(&self) -> Vec<(i32, i64)> {
        self.followers.iter().map(|(id, f)| (*id, f.leo)).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn three(min_isr: usize) -> LeaderState {
        LeaderState::new(1, 5, 100, 7, vec![1, 2, 3], vec![1, 2, 3], min_isr, 1_000)
    }

    #[test]
    fn high_watermark_is_the_minimum_over_the_isr_once_all_have_fetched() {
        let mut s = three(2);
        assert_eq!(s.high_watermark(120), None, "followers' positions unknown");
        s.follower_fetch(2, 10, 110, 120, 1_001).unwrap();
        assert_eq!(s.high_watermark(120), None, "follower 3 unknown");
        s.follower_fetch(3, 11, 115, 120, 1_002).unwrap();
        assert_eq!(s.high_watermark(120), Some(110));
        s.follower_fetch(2, 10, 120, 120, 1_003).unwrap();
        assert_eq!(s.high_watermark(120), Some(115));
        assert_eq!(s.follower_fetch(9, 1, 0, 120, 1_003), Err(NotAReplica));
    }

    #[test]
    fn strict_min_isr_holds_the_high_watermark() {
        let mut s = LeaderState::new(1, 5, 0, 7, vec![1, 2, 3], vec![1], 2, 0);
        assert_eq!(s.high_watermark(50), None);
        s.update_assignment(8, vec![1, 2, 3], vec![1, 2], 0);
        s.follower_fetch(2, 1, 50, 50, 1).unwrap();
        assert_eq!(s.high_watermark(50), Some(50));
        let single = LeaderState::new(1, 0, 0, 0, vec![1], vec![1], 1, 0);
        assert_eq!(single.high_watermark(42), Some(42));
    }

    #[test]
    fn lagging_follower_is_shrunk_after_the_lag_time_and_rejoins_when_caught_up() {
        let mut s = three(2);
        s.follower_fetch(2, 10, 100, 100, 1_100).unwrap();
        s.follower_fetch(3, 11, 100, 100, 1_100).unwrap();
        // Follower 3 stops fetching; 2 keeps up.
        s.follower_fetch(2, 10, 100, 100, 11_000).unwrap();
        assert_eq!(s.shrink(11_000, 30_000), None);
        let p = s.shrink(32_000, 30_000).expect("3 lags");
        assert_eq!(p.isr, vec![1, 2]);
        assert_eq!(p.partition_epoch, 7);
        assert!(s.has_pending());
        assert_eq!(s.shrink(32_001, 30_000), None, "one change at a time");
        // While the shrink is in flight 3 still counts for the high watermark.
        assert_eq!(s.high_watermark(100), Some(100));
        s.update_assignment(8, vec![1, 2, 3], vec![1, 2], 32_002);
        assert!(!s.has_pending());
        // 3 comes back behind, then catches up to the high watermark.
        s.follower_fetch(3, 11, 90, 100, 33_000).unwrap();
        assert_eq!(s.expansion(3, 100, 33_000), None);
        s.follower_fetch(3, 11, 100, 100, 33_100).unwrap();
        let p = s.expansion(3, 100, 33_100).expect("caught up");
        assert_eq!(p.isr, vec![1, 2, 3]);
        assert_eq!(p.joining, vec![(3, 11)]);
    }

    #[test]
    fn a_follower_behind_the_epoch_start_does_not_join() {
        let mut s = LeaderState::new(1, 5, 100, 7, vec![1, 2], vec![1], 1, 0);
        s.follower_fetch(2, 3, 80, 100, 1).unwrap();
        // The high watermark may lag the epoch start (a new leader's), but a joiner
        // must hold everything this leader may have taken over.
        assert_eq!(s.expansion(2, 80, 1), None);
        s.follower_fetch(2, 3, 100, 100, 2).unwrap();
        assert!(s.expansion(2, 80, 2).is_some());
    }

    #[test]
    fn a_restarted_follower_is_forgotten() {
        let mut s = three(2);
        s.follower_fetch(2, 10, 100, 100, 1_001).unwrap();
        s.follower_fetch(3, 11, 100, 100, 1_001).unwrap();
        assert_eq!(s.high_watermark(100), Some(100));
        // New broker epoch: its old position no longer counts, the new one does.
        s.follower_fetch(3, 12, 40, 100, 1_002).unwrap();
        assert_eq!(s.high_watermark(100), Some(40));
    }

    #[test]
    fn caught_up_rule_uses_the_previous_fetch() {
        let mut s = three(1);
        // Behind at 10 s; at 12 s it asks for what the leader's end was at 10 s, so it
        // was caught up as of 10 s (not 12 s, when the leader had grown again).
        s.follower_fetch(2, 1, 50, 100, 10_000).unwrap();
        s.follower_fetch(2, 1, 100, 150, 12_000).unwrap();
        // Follower 3 never fetched: out after the lag time from the leadership start.
        let p = s.shrink(39_000, 30_000).expect("3 lags");
        assert_eq!(p.isr, vec![1, 2]);
        s.proposal_failed();
        assert!(s.shrink(40_001, 30_000).is_some_and(|p| p.isr == vec![1]));
    }
}
