//! Removing data: DeleteRecords, retention, and truncation (from the end or fully).

use std::sync::atomic::Ordering;
use std::sync::Arc;

use super::append::time_waited;
use super::{Inner, PartitionLog, RetentionOutcome};
use crate::epoch_cache::LeaderEpochCache;
use crate::error::StorageError;
use crate::producer_state::{self, ProducerState};
use crate::retention::{self, Bounds, SegmentStat};
use crate::segment::Segment;

impl PartitionLog {
    /// DeleteRecords: moves the log start offset up to `offset` (no-op if already past
    /// it), checkpoints it, and deletes the segments wholly below it (never the active
    /// one). `offset` may not exceed the high watermark (OffsetOutOfRange, as Kafka; the
    /// error's `end` is then the high watermark). Returns the new log start offset.
    pub fn delete_records_before(&self, offset: i64) -> Result<i64, StorageError> {
        let mut inner = self.lock_open()?;
        let start = self.log_start_offset();
        let hw = self.high_watermark();
        if offset > hw || offset < 0 {
            return Err(StorageError::OffsetOutOfRange {
                requested: offset,
                start,
                end: hw,
            });
        }
        if offset <= start {
            return Ok(start);
        }
        self.log_start_offset.store(offset, Ordering::Release);
        let n = inner
            .segments
            .windows(2)
            .take_while(|w| w[1].base_offset() <= offset)
            .count();
        self.remove_oldest(&mut inner, n)?;
        self.delete_snapshots_below(offset)?;
        inner.producers.drop_aborted_below(offset);
        self.refresh_stable(&mut inner);
        if inner.epochs.truncate_from_start(offset) {
            inner.epochs_dirty = true;
            self.write_epoch_checkpoint(&mut inner)?;
        }
        self.write_offsets_checkpoint()?;
        tracing::debug!(dir = %self.dir.display(), log_start_offset = offset, deleted_segments = n, "records deleted");
        Ok(offset)
    }

    /// Removes the `n` oldest segments (the log start offset must already be past them).
    pub(super) fn remove_oldest(&self, inner: &mut Inner, n: usize) -> Result<u64, StorageError> {
        if n == 0 {
            return Ok(0);
        }
        let removed: Vec<_> = inner.segments.drain(..n).collect();
        self.publish(inner);
        let mut bytes = 0;
        for seg in removed {
            bytes += seg.size();
            seg.delete_files()?;
        }
        Ok(bytes)
    }

    /// Retention: rolls the active segment if older than `segment.ms`, then deletes the
    /// oldest whole segments beyond `retention.ms` (by their largest timestamp) and
    /// `retention.bytes`, and those wholly below the log start offset; never data above
    /// the high watermark. Advances and checkpoints the log start offset.
    pub fn apply_retention(&self, now_ms: i64) -> Result<RetentionOutcome, StorageError> {
        let mut inner = self.lock_open()?;
        inner.last_now_ms = now_ms;
        let mut outcome = RetentionOutcome::default();
        let leo = self.log_end_offset();
        let active = Arc::clone(Self::active(&inner)?);
        if active.size() > 0 && time_waited(&active.meta(), now_ms, now_ms) > inner.config.roll_ms()
        {
            outcome.rolled = self.roll(&mut inner, leo, now_ms)?;
        }
        let stats: Vec<SegmentStat> = inner
            .segments
            .iter()
            .map(|s| SegmentStat {
                base_offset: s.base_offset(),
                size: s.size(),
                largest_timestamp: s.meta().largest_timestamp(),
            })
            .collect();
        let bounds = Bounds {
            log_start_offset: self.log_start_offset(),
            log_end_offset: leo,
            high_watermark: self.high_watermark(),
        };
        let plan = retention::plan(&stats, &bounds, &inner.config, now_ms);
        let n = plan.total();
        if n > 0 {
            if n == inner.segments.len() {
                // Deleting the active segment too: roll so the log keeps a segment at its end.
                outcome.rolled |= self.roll(&mut inner, leo, now_ms)?;
            }
            let new_start = inner
                .segments
                .get(n)
                .map_or(leo, |s| s.base_offset())
                .max(self.log_start_offset());
            self.log_start_offset.store(new_start, Ordering::Release);
            if self.high_watermark() < new_start {
                self.high_watermark.store(new_start, Ordering::Release);
            }
            outcome.deleted_bytes = self.remove_oldest(&mut inner, n)?;
            self.delete_snapshots_below(new_start)?;
            inner.producers.drop_aborted_below(new_start);
            self.refresh_stable(&mut inner);
            if inner.epochs.truncate_from_start(new_start) {
                inner.epochs_dirty = true;
                self.write_epoch_checkpoint(&mut inner)?;
            }
            self.write_offsets_checkpoint()?;
            tracing::debug!(dir = %self.dir.display(), deleted_segments = n, log_start_offset = new_start, "retention deleted segments");
        }
        // Producers whose batches retention removed stay until they expire (as in Kafka),
        // so a producer that pauses longer than retention.ms keeps its sequence.
        let expiration_ms = inner.config.producer_id_expiration_ms;
        let expired = inner.producers.remove_expired(now_ms, expiration_ms);
        if expired > 0 {
            tracing::debug!(dir = %self.dir.display(), expired, "expired idempotent producers");
        }
        outcome.deleted_segments = n;
        outcome.deleted_by_time = plan.by_time;
        outcome.deleted_by_size = plan.by_size;
        outcome.deleted_by_start_offset = plan.by_start_offset;
        outcome.log_start_offset = self.log_start_offset();
        Ok(outcome)
    }

    /// Deletes producer snapshots below the new log start offset (their segments are gone).
    fn delete_snapshots_below(&self, log_start_offset: i64) -> Result<(), StorageError> {
        producer_state::delete_snapshots(&self.dir, |o| o < log_start_offset)?;
        Ok(())
    }

    /// Makes the producer state what the log up to `end` implies: drops snapshots above
    /// `end`, reloads the newest remaining one and applies the batches after it.
    fn reload_producer_state(&self, inner: &mut Inner, end: i64) -> Result<(), StorageError> {
        let mut state =
            producer_state::rebuild(&self.dir, &inner.segments, self.log_start_offset(), end)?;
        // A snapshot may predate expirations already applied in memory.
        state.remove_expired(inner.last_now_ms, inner.config.producer_id_expiration_ms);
        inner.producers = state;
        self.refresh_stable(inner);
        Ok(())
    }

    /// Drops every batch with an offset `>= offset` (follower truncation). A batch that
    /// straddles `offset` goes entirely, so the log end offset may end up below `offset`;
    /// in a compacted gap it stays at `offset`. Below the log start offset this is [`Self::truncate_fully_and_start_at`].
    /// The producer state is rebuilt for the remaining log, so a producer's retry of a
    /// truncated batch is appended again rather than taken for a duplicate.
    pub fn truncate_to(&self, offset: i64) -> Result<(), StorageError> {
        let mut inner = self.lock_open()?;
        let leo = self.log_end_offset();
        if offset >= leo {
            return Ok(());
        }
        if offset < self.log_start_offset() {
            return self.truncate_fully_locked(&mut inner, offset);
        }
        inner.generation += 1;
        // Lower the visible bounds first so readers do not chase bytes being cut.
        self.log_end_offset.store(offset, Ordering::Release);
        self.lower_to(offset);
        let keep = inner
            .segments
            .iter()
            .take_while(|s| s.base_offset() <= offset)
            .count()
            .max(1);
        let removed: Vec<_> = inner.segments.drain(keep..).collect();
        self.publish(&inner);
        for seg in &removed {
            seg.delete_files()?;
        }
        let last = Arc::clone(Self::active(&inner)?);
        let (cut, first_cut) = last.truncate_to(offset)?;
        last.load_tail(false)?;
        // The end of the last surviving batch, or `offset` if the records between the two
        // were removed by compaction (their offsets were handed out and must not be
        // reused); a batch straddling `offset` still takes the end down to its base.
        let new_end = last
            .meta()
            .next_offset
            .max(first_cut.map_or(offset, |b| b.min(offset)));
        self.log_end_offset.store(new_end, Ordering::Release);
        self.lower_to(new_end);
        if inner.epochs.truncate_from_end(new_end) {
            inner.epochs_dirty = true;
            self.write_epoch_checkpoint(&mut inner)?;
        }
        self.lower_cleaner_checkpoint(&mut inner, new_end)?;
        self.reload_producer_state(&mut inner, new_end)?;
        self.write_offsets_checkpoint()?;
        tracing::debug!(dir = %self.dir.display(), offset, log_end_offset = new_end, removed_segments = removed.len(), cut_bytes = cut, "log truncated");
        Ok(())
    }

    /// Deletes everything and restarts the log empty at `offset` (a follower whose log is
    /// entirely behind the leader's start offset, or truncation below the start).
    pub fn truncate_fully_and_start_at(&self, offset: i64) -> Result<(), StorageError> {
        let mut inner = self.lock_open()?;
        self.truncate_fully_locked(&mut inner, offset)
    }

    pub(super) fn truncate_fully_locked(
        &self,
        inner: &mut Inner,
        offset: i64,
    ) -> Result<(), StorageError> {
        inner.generation += 1;
        let offset = offset.max(0);
        let old: Vec<_> = inner.segments.drain(..).collect();
        for seg in &old {
            seg.delete_files()?;
        }
        inner.segments.push(Arc::new(Segment::create(
            &self.dir,
            offset,
            inner.last_now_ms,
        )?));
        inner.dir_dirty = true;
        for a in [
            &self.log_start_offset,
            &self.log_end_offset,
            &self.high_watermark,
            &self.recovery_point,
        ] {
            a.store(offset, Ordering::Release);
        }
        self.publish(inner);
        inner.epochs = LeaderEpochCache::default();
        inner.epochs_dirty = true;
        self.write_epoch_checkpoint(inner)?;
        self.lower_cleaner_checkpoint(inner, offset)?;
        // Nothing of the old log remains, so no producer is known any more.
        producer_state::delete_snapshots(&self.dir, |_| true)?;
        inner.producers = ProducerState::default();
        self.refresh_stable(inner);
        self.write_offsets_checkpoint()?;
        tracing::debug!(dir = %self.dir.display(), offset, "log truncated fully");
        Ok(())
    }

    /// Caps the high watermark and recovery point at `end`.
    pub(super) fn lower_to(&self, end: i64) {
        self.high_watermark.fetch_min(end, Ordering::AcqRel);
        self.recovery_point.fetch_min(end, Ordering::AcqRel);
    }
}
