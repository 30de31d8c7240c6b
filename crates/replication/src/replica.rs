//! [`Replica`]: one partition replica this broker hosts: its log, its role (leader with
//! the followers' progress, follower of a broker, or offline), the high watermark and the
//! log end offset published to parked requests, and the acks=all waiters.
//!
//! Locking: `state` serialises role changes, leader appends, follower-fetch bookkeeping
//! and high-watermark moves, so an append can never slip in after leadership was lost,
//! and a waiter is parked or released under the same lock that moves the watermark (no
//! lost wake-up). Reads never take it.

use std::path::Path;
use std::sync::atomic::{AtomicI32, Ordering};

use parking_lot::Mutex;
use sluice_protocol::records::EndTxnMarker;
use sluice_storage::{AppendInfo, LogConfig, PartitionLog, StorageError};
use tokio::sync::{oneshot, watch};
use tracing::debug;

use crate::leader::{IsrProposal, LeaderState};
use crate::waiters::{OffsetWaiters, WaitOutcome};

/// What this replica is, as the metadata image says.
#[derive(Debug)]
pub enum Role {
    /// Not leading and not following anyone (no leader, or not told yet).
    Offline,
    Follower {
        leader: i32,
    },
    Leader(Box<LeaderState>),
}

/// The leadership the metadata assigns to this node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeaderInfo {
    pub node: i32,
    pub leader_epoch: i32,
    pub partition_epoch: i32,
    pub replicas: Vec<i32>,
    pub isr: Vec<i32>,
    pub min_isr: usize,
}

/// Why a leader operation was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AckError {
    #[error("this broker is not the leader")]
    NotLeader,
    #[error("the ISR has {isr} members, fewer than min.insync.replicas {min_isr}")]
    NotEnoughReplicas { isr: usize, min_isr: usize },
    #[error("broker {0} is not a replica of this partition")]
    NotAReplica(i32),
}

/// Why a leader append was refused.
#[derive(Debug, thiserror::Error)]
pub enum AppendError {
    #[error("this broker is not the leader")]
    NotLeader,
    #[error(transparent)]
    Storage(#[from] StorageError),
}

#[derive(Debug)]
struct State {
    role: Role,
    acks: OffsetWaiters,
}

/// A partition replica hosted by this broker.
#[derive(Debug)]
pub struct Replica {
    pub index: i32,
    pub log: PartitionLog,
    /// The leader epoch from the metadata image, stamped into batches appended as leader
    /// and checked against clients' and followers' `current_leader_epoch`.
    leader_epoch: AtomicI32,
    /// The high watermark, for parked consumer fetches.
    hw: watch::Sender<i64>,
    /// The log end offset, for parked follower fetches.
    leo: watch::Sender<i64>,
    state: Mutex<State>,
}

/// What a follower's fetch changed on the leader.
#[derive(Debug, Default)]
pub struct FollowerFetchOutcome {
    /// The high watermark to send back.
    pub high_watermark: i64,
    /// An ISR expansion to carry to the controller.
    pub proposal: Option<IsrProposal>,
}

impl Replica {
    /// Opens the replica's log. It starts offline with the checkpointed high watermark:
    /// what was committed is known only once a leader says so (or it leads).
    pub fn open(
        dir: &Path,
        index: i32,
        config: LogConfig,
        now_ms: i64,
    ) -> Result<Self, StorageError> {
        let log = PartitionLog::open(dir, config, now_ms)?;
        let (hw, _) = watch::channel(log.high_watermark());
        let (leo, _) = watch::channel(log.log_end_offset());
        Ok(Self {
            index,
            log,
            leader_epoch: AtomicI32::new(-1),
            hw,
            leo,
            state: Mutex::new(State {
                role: Role::Offline,
                acks: OffsetWaiters::default(),
            }),
        })
    }

    pub fn leader_epoch(&self) -> i32 {
        self.leader_epoch.load(Ordering::Acquire)
    }

    pub fn high_watermark(&self) -> i64 {
        *self.hw.borrow()
    }

    pub fn log_end_offset(&self) -> i64 {
        self.log.log_end_offset()
    }

    /// Sees every later high-watermark change (consumer long polls).
    pub fn subscribe(&self) -> watch::Receiver<i64> {
        self.hw.subscribe()
    }

    /// Sees every later log-end change (follower long polls).
    pub fn subscribe_leo(&self) -> watch::Receiver<i64> {
        self.leo.subscribe()
    }

    /// Wakes parked fetches to re-check (after DeleteRecords, retention, truncation, a
    /// role change or deletion).
    pub fn notify(&self) {
        self.hw.send_modify(|_| {});
        self.leo.send_modify(|_| {});
    }

    pub fn is_leader(&self) -> bool {
        matches!(self.state.lock().role, Role::Leader(_))
    }

    /// The committed ISR size and `min.insync.replicas`, if leading.
    pub fn isr_status(&self) -> Option<(usize, usize)> {
        match &self.state.lock().role {
            Role::Leader(l) => Some((l.isr().len(), l.min_isr())),
            _ => None,
        }
    }

    /// The log end offset when this replica's current leadership began (KIP-207:
    /// ListOffsets `latest` is withheld until the high watermark reaches it).
    pub fn epoch_start_offset(&self) -> Option<i64> {
        match &self.state.lock().role {
            Role::Leader(l) => Some(l.epoch_start_offset()),
            _ => None,
        }
    }

    /// The broker this replica follows, if following.
    pub fn following(&self) -> Option<i32> {
        match self.state.lock().role {
            Role::Follower { leader } => Some(leader),
            _ => None,
        }
    }

    /// Takes (or keeps) the leadership `info` describes. A new leader epoch starts a
    /// new leadership: the epoch is recorded at the log end, followers' progress starts
    /// unknown. The same epoch only updates the ISR, replicas and `min.insync.replicas`.
    pub fn become_leader(&self, info: &LeaderInfo, now_ms: i64) -> Result<(), StorageError> {
        let mut state = self.state.lock();
        match &mut state.role {
            Role::Leader(l) if l.leader_epoch() == info.leader_epoch => {
                l.update_assignment(
                    info.partition_epoch,
                    info.replicas.clone(),
                    info.isr.clone(),
                    now_ms,
                );
                l.set_min_isr(info.min_isr);
            }
            _ => {
                let start = self.log.assign_leader_epoch(info.leader_epoch)?;
                debug!(
                    partition = self.index,
                    epoch = info.leader_epoch,
                    start,
                    "became leader"
                );
                self.leader_epoch
                    .store(info.leader_epoch, Ordering::Release);
                state.role = Role::Leader(Box::new(LeaderState::new(
                    info.node,
                    info.leader_epoch,
                    start,
                    info.partition_epoch,
                    info.replicas.clone(),
                    info.isr.clone(),
                    info.min_isr,
                    now_ms,
                )));
            }
        }
        self.maybe_advance_hw(&mut state);
        Ok(())
    }

    /// Follows `leader` (or nobody: `None`) at `leader_epoch`. A leader that steps down
    /// stops accepting writes at once and its parked acks=all requests fail. Returns
    /// whether the leader or epoch changed (the fetcher must truncate again).
    pub fn become_follower(&self, leader: Option<i32>, leader_epoch: i32) -> bool {
        let mut state = self.state.lock();
        let before = match state.role {
            Role::Follower { leader } => Some(leader),
            _ => None,
        };
        let was_leader = matches!(state.role, Role::Leader(_));
        let changed = was_leader || before != leader || self.leader_epoch() != leader_epoch;
        if was_leader {
            let n = state.acks.abandon_all();
            debug!(partition = self.index, failed_acks = n, "stepped down");
        }
        state.role = match leader {
            Some(leader) => Role::Follower { leader },
            None => Role::Offline,
        };
        self.leader_epoch.store(leader_epoch, Ordering::Release);
        drop(state);
        if changed {
            // Parked fetches re-check: consumers fail over, followers' long polls end.
            self.notify();
        }
        changed
    }

    /// Appends a producer's batches as leader at the current epoch.
    pub fn append_as_leader(
        &self,
        batches: &mut [u8],
        now_ms: i64,
    ) -> Result<AppendInfo, AppendError> {
        self.leader_append(|log, epoch| log.append_as_leader(batches, epoch, now_ms))
    }

    /// Writes a transaction marker as leader at the current epoch (WriteTxnMarkers).
    pub fn append_txn_marker(
        &self,
        producer_id: i64,
        producer_epoch: i16,
        marker: EndTxnMarker,
        now_ms: i64,
    ) -> Result<AppendInfo, AppendError> {
        self.leader_append(|log, epoch| {
            log.append_txn_marker(producer_id, producer_epoch, marker, epoch, now_ms)
        })
    }

    /// Runs one append on the log under the role lock, if leading, and publishes it.
    fn leader_append(
        &self,
        append: impl FnOnce(&PartitionLog, i32) -> Result<AppendInfo, StorageError>,
    ) -> Result<AppendInfo, AppendError> {
        let mut state = self.state.lock();
        if !matches!(state.role, Role::Leader(_)) {
            return Err(AppendError::NotLeader);
        }
        let info = append(&self.log, self.leader_epoch())?;
        self.publish_leo(info.log_end_offset);
        self.maybe_advance_hw(&mut state);
        Ok(info)
    }

    /// Refuses an acks=all write while the ISR is below `min.insync.replicas`.
    pub fn check_min_isr(&self) -> Result<(), AckError> {
        match &self.state.lock().role {
            Role::Leader(l) if l.isr().len() < l.min_isr() => Err(AckError::NotEnoughReplicas {
                isr: l.isr().len(),
                min_isr: l.min_isr(),
            }),
            Role::Leader(_) => Ok(()),
            _ => Err(AckError::NotLeader),
        }
    }

    /// Parks until the high watermark reaches `offset`: `None` if it already has (a
    /// single in-sync replica commits on append), else a receiver that yields
    /// [`WaitOutcome::Abandoned`] if this replica stops leading first.
    pub fn wait_for_high_watermark(
        &self,
        offset: i64,
    ) -> Result<Option<oneshot::Receiver<WaitOutcome>>, AckError> {
        let mut state = self.state.lock();
        if !matches!(state.role, Role::Leader(_)) {
            return Err(AckError::NotLeader);
        }
        if self.log.high_watermark() >= offset {
            return Ok(None);
        }
        state.acks.prune();
        Ok(Some(state.acks.park(offset)))
    }

    /// A follower fetched from `fetch_offset`: records its progress, moves the high
    /// watermark if it can, and proposes adding the follower to the ISR if it caught up.
    pub fn follower_fetch(
        &self,
        follower: i32,
        broker_epoch: i64,
        fetch_offset: i64,
        now_ms: i64,
    ) -> Result<FollowerFetchOutcome, AckError> {
        let mut state = self.state.lock();
        let leo = self.log.log_end_offset();
        let Role::Leader(l) = &mut state.role else {
            return Err(AckError::NotLeader);
        };
        l.follower_fetch(follower, broker_epoch, fetch_offset, leo, now_ms)
            .map_err(|_| AckError::NotAReplica(follower))?;
        self.maybe_advance_hw(&mut state);
        let hw = self.log.high_watermark();
        let proposal = match &mut state.role {
            Role::Leader(l) => l.expansion(follower, hw, now_ms),
            _ => None,
        };
        Ok(FollowerFetchOutcome {
            high_watermark: hw,
            proposal,
        })
    }

    /// An ISR shrink, if a follower has lagged more than `lag_max_ms`.
    pub fn maybe_shrink_isr(&self, now_ms: i64, lag_max_ms: i64) -> Option<IsrProposal> {
        match &mut self.state.lock().role {
            Role::Leader(l) => l.shrink(now_ms, lag_max_ms),
            _ => None,
        }
    }

    /// The controller refused (or never answered) an ISR proposal of `leader_epoch`.
    pub fn isr_proposal_failed(&self, leader_epoch: i32) {
        if let Role::Leader(l) = &mut self.state.lock().role {
            if l.leader_epoch() == leader_epoch {
                l.proposal_failed();
            }
        }
    }

    /// Appends batches fetched from the leader (offsets and epochs as the leader wrote
    /// them), takes the leader's high watermark capped at the local log end, and follows
    /// the leader's log start offset (DeleteRecords and retention there), so a follower
    /// that later leads never exposes records its leader had deleted.
    pub fn append_as_follower(
        &self,
        batches: &[u8],
        leader_hw: i64,
        leader_log_start: i64,
        now_ms: i64,
    ) -> Result<Option<AppendInfo>, StorageError> {
        let info = if batches.is_empty() {
            None
        } else {
            let info = self.log.append_as_follower(batches, now_ms)?;
            self.publish_leo(info.log_end_offset);
            Some(info)
        };
        let hw = self.log.advance_high_watermark(leader_hw);
        self.publish_hw(hw);
        let start = leader_log_start.min(hw);
        if start > self.log.log_start_offset() {
            self.log.delete_records_before(start)?;
            self.notify();
        }
        Ok(info)
    }

    /// Truncates the log to `offset` (a follower diverged from its new leader).
    pub fn truncate_to(&self, offset: i64) -> Result<(), StorageError> {
        self.log.truncate_to(offset)?;
        self.after_truncation();
        Ok(())
    }

    /// Empties the log and restarts it at `offset` (the leader no longer has what this
    /// follower would fetch next).
    pub fn truncate_fully_and_start_at(&self, offset: i64) -> Result<(), StorageError> {
        self.log.truncate_fully_and_start_at(offset)?;
        self.after_truncation();
        Ok(())
    }

    fn after_truncation(&self) {
        let leo = self.log.log_end_offset();
        let hw = self.log.high_watermark();
        self.leo.send_replace(leo);
        self.hw.send_replace(hw);
    }

    /// Moves the high watermark to what the followers allow (leader only); wakes the
    /// acks=all waiters it satisfies.
    fn maybe_advance_hw(&self, state: &mut State) {
        let Role::Leader(l) = &state.role else {
            return;
        };
        let Some(candidate) = l.high_watermark(self.log.log_end_offset()) else {
            return;
        };
        let hw = self.log.advance_high_watermark(candidate);
        if self.publish_hw(hw) {
            state.acks.release_up_to(hw);
        }
    }

    fn publish_hw(&self, hw: i64) -> bool {
        self.hw.send_if_modified(|current| {
            let moved = hw != *current;
            *current = hw;
            moved
        })
    }

    fn publish_leo(&self, leo: i64) {
        self.leo.send_if_modified(|current| {
            let advanced = leo > *current;
            if advanced {
                *current = leo;
            }
            advanced
        });
    }

    pub fn apply_config(&self, config: LogConfig) -> Result<(), StorageError> {
        self.log.set_config(config)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sluice_protocol::records::RecordBatchBuilder;

    fn batch(values: &[&[u8]]) -> Vec<u8> {
        let mut b = RecordBatchBuilder::new();
        for v in values {
            b.push(1_000, None, Some(v), &[]).unwrap();
        }
        b.build().unwrap().to_vec()
    }

    fn leader(isr: &[i32], min_isr: usize) -> LeaderInfo {
        LeaderInfo {
            node: 1,
            leader_epoch: 3,
            partition_epoch: 0,
            replicas: vec![1, 2],
            isr: isr.to_vec(),
            min_isr,
        }
    }

    #[test]
    fn acks_wait_for_the_follower_and_fail_when_leadership_is_lost() {
        let dir = tempfile::tempdir().unwrap();
        let r = Replica::open(dir.path(), 0, LogConfig::default(), 1_000).unwrap();
        assert_eq!(
            r.append_as_leader(&mut batch(&[b"x"]), 1_000)
                .unwrap_err()
                .to_string(),
            "this broker is not the leader"
        );
        r.become_leader(&leader(&[1, 2], 2), 1_000).unwrap();
        assert_eq!(r.epoch_start_offset(), Some(0));
        let info = r
            .append_as_leader(&mut batch(&[b"a", b"b"]), 1_000)
            .unwrap();
        assert_eq!((info.first_offset, info.log_end_offset), (0, 2));
        assert_eq!(r.high_watermark(), 0, "the follower has not fetched");
        let mut wait = r
            .wait_for_high_watermark(2)
            .unwrap()
            .expect("not yet committed");
        assert!(wait.try_recv().is_err());
        // The follower fetches from 0 (has nothing), then from 2 (has both).
        let out = r.follower_fetch(2, 7, 0, 1_001).unwrap();
        assert_eq!(out.high_watermark, 0);
        assert!(wait.try_recv().is_err());
        let out = r.follower_fetch(2, 7, 2, 1_002).unwrap();
        assert_eq!(out.high_watermark, 2);
        assert_eq!(wait.try_recv(), Ok(WaitOutcome::Reached));
        assert_eq!(
            r.follower_fetch(9, 1, 0, 1_003).unwrap_err(),
            AckError::NotAReplica(9)
        );

        r.append_as_leader(&mut batch(&[b"c"]), 1_004).unwrap();
        let mut lost = r
            .wait_for_high_watermark(3)
            .unwrap()
            .expect("not yet committed");
        assert!(r.become_follower(Some(2), 4));
        assert_eq!(lost.try_recv(), Ok(WaitOutcome::Abandoned));
        assert!(matches!(
            r.append_as_leader(&mut batch(&[b"d"]), 1_005),
            Err(AppendError::NotLeader)
        ));
        assert_eq!(
            r.wait_for_high_watermark(3).unwrap_err(),
            AckError::NotLeader
        );
        assert!(!r.become_follower(Some(2), 4), "no change");
    }

    #[test]
    fn min_isr_is_checked_and_holds_the_high_watermark() {
        let dir = tempfile::tempdir().unwrap();
        let r = Replica::open(dir.path(), 0, LogConfig::default(), 1_000).unwrap();
        r.become_leader(&leader(&[1], 2), 1_000).unwrap();
        assert_eq!(
            r.check_min_isr(),
            Err(AckError::NotEnoughReplicas { isr: 1, min_isr: 2 })
        );
        r.append_as_leader(&mut batch(&[b"a"]), 1_000).unwrap();
        assert_eq!(r.high_watermark(), 0, "ISR below min.insync.replicas");
        // Same epoch, ISR grows (the controller committed an expansion).
        let mut info = leader(&[1, 2], 2);
        info.partition_epoch = 1;
        r.become_leader(&info, 1_001).unwrap();
        assert!(r.check_min_isr().is_ok());
        r.follower_fetch(2, 7, 1, 1_002).unwrap();
        assert_eq!(r.high_watermark(), 1);
        // A single replica with min.insync.replicas 1 commits on append.
        let dir = tempfile::tempdir().unwrap();
        let single = Replica::open(dir.path(), 0, LogConfig::default(), 1_000).unwrap();
        let mut one = leader(&[1], 1);
        one.replicas = vec![1];
        single.become_leader(&one, 1_000).unwrap();
        single.append_as_leader(&mut batch(&[b"a"]), 1_000).unwrap();
        assert_eq!(single.high_watermark(), 1);
    }

    #[test]
    fn a_follower_copies_batches_and_follows_the_leaders_offsets() {
        let dir = tempfile::tempdir().unwrap();
        let leader_dir = tempfile::tempdir().unwrap();
        let l = Replica::open(leader_dir.path(), 0, LogConfig::default(), 1_000).unwrap();
        let mut one = leader(&[1], 1);
        one.replicas = vec![1];
        l.become_leader(&one, 1_000).unwrap();
        l.append_as_leader(&mut batch(&[b"a", b"b", b"c"]), 1_000)
            .unwrap();
        let read = l.log.read(0, 1 << 20, l.log_end_offset(), true).unwrap();

        let f = Replica::open(dir.path(), 0, LogConfig::default(), 1_000).unwrap();
        assert!(f.become_follower(Some(1), 3));
        let info = f
            .append_as_follower(&read.records, 2, 0, 1_001)
            .unwrap()
            .unwrap();
        assert_eq!(info.log_end_offset, 3);
        assert_eq!(f.high_watermark(), 2);
        assert_eq!(f.log.latest_epoch(), Some(3), "the leader's epoch kept");
        // The leader deleted records below 2: the follower follows (capped at its HW).
        f.append_as_follower(&[], 3, 2, 1_002).unwrap();
        assert_eq!((f.log.log_start_offset(), f.high_watermark()), (2, 3));
    }
}
