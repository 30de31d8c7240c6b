//! Flushing (fsync and the recovery point), checkpoints, and clean shutdown.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use super::{Inner, PartitionLog};
use crate::checkpoint::{self, OffsetsCheckpoint, CLEAN_SHUTDOWN_FILE, EPOCH_FILE, OFFSETS_FILE};
use crate::error::StorageError;
use crate::fileio::sync_dir;
use crate::locks;
use crate::producer_state;

impl PartitionLog {
    /// fsyncs all unflushed data and indexes, advances the recovery point to the log end
    /// offset, and writes the checkpoints.
    pub fn flush(&self) -> Result<(), StorageError> {
        self.flush_upto(None)
    }

    /// Flushes if `flush.ms` has passed since the last flush and there is unflushed data
    /// (for the broker's periodic flusher). Returns whether it flushed.
    pub fn maybe_flush(&self, now_ms: i64) -> Result<bool, StorageError> {
        let rolled = self.pending_roll_flush.swap(-1, Ordering::AcqRel);
        if rolled >= 0 {
            self.flush_upto(Some(rolled))?;
        }
        {
            let mut inner = locks::lock(&self.inner);
            inner.last_now_ms = inner.last_now_ms.max(now_ms);
            let due = now_ms.saturating_sub(inner.last_flush_ms) >= inner.config.flush_ms
                && self.log_end_offset() > self.recovery_point();
            if !due {
                return Ok(false);
            }
            inner.last_flush_ms = now_ms;
        }
        self.flush()?;
        Ok(true)
    }

    /// fsyncs the segments holding offsets in `[recovery point, limit)` (all of them for
    /// `None`) and moves the recovery point to `limit` (or the log end offset).
    pub(super) fn flush_upto(&self, limit: Option<i64>) -> Result<(), StorageError> {
        let _flushing = locks::lock(&self.flush_lock);
        if self.deleted.load(Ordering::Acquire) {
            return Ok(());
        }
        let (segments, target, generation, dir_dirty) = {
            let mut inner = locks::lock(&self.inner);
            let rp = self.recovery_point();
            let target = limit.unwrap_or_else(|| self.log_end_offset());
            let n = inner.segments.len();
            let segments: Vec<_> = inner
                .segments
                .iter()
                .enumerate()
                .filter(|(i, s)| {
                    let end = if i + 1 == n {
                        i64::MAX
                    } else {
                        s.meta().next_offset
                    };
                    end > rp && s.base_offset() < target.max(rp + 1)
                })
                .map(|(_, s)| Arc::clone(s))
                .collect();
            let dir_dirty = std::mem::take(&mut inner.dir_dirty);
            (segments, target, inner.generation, dir_dirty)
        };
        let synced = segments.iter().try_for_each(|s| s.flush()).and_then(|()| {
            if dir_dirty {
                sync_dir(&self.dir)
            } else {
                Ok(())
            }
        });
        {
            let mut inner = locks::lock(&self.inner);
            if let Err(e) = synced {
                inner.dir_dirty |= dir_dirty;
                return Err(e);
            }
            if inner.generation == generation && target > self.recovery_point() {
                self.recovery_point.store(target, Ordering::Release);
            }
            if limit.is_none() {
                inner.last_flush_ms = inner.last_flush_ms.max(inner.last_now_ms);
            }
            if inner.epochs_dirty {
                self.write_epoch_checkpoint(&mut inner)?;
            }
        }
        self.write_offsets_checkpoint()
    }

    /// Writes the offsets (and, if stale, leader-epoch) checkpoints without flushing data.
    pub fn write_checkpoints(&self) -> Result<(), StorageError> {
        {
            let mut inner = locks::lock(&self.inner);
            if inner.epochs_dirty {
                self.write_epoch_checkpoint(&mut inner)?;
            }
        }
        self.write_offsets_checkpoint()
    }

    pub(super) fn write_offsets_checkpoint(&self) -> Result<(), StorageError> {
        let _writing = locks::lock(&self.checkpoint_lock);
        if self.deleted.load(Ordering::Acquire) {
            return Ok(());
        }
        let c = OffsetsCheckpoint {
            log_start_offset: self.log_start_offset(),
            high_watermark: self.high_watermark(),
            recovery_point: self.recovery_point(),
        };
        checkpoint::write_atomic(&self.dir, OFFSETS_FILE, c.encode().as_bytes())
    }

    pub(super) fn write_epoch_checkpoint(&self, inner: &mut Inner) -> Result<(), StorageError> {
        if !inner.epochs_dirty || self.deleted.load(Ordering::Acquire) {
            return Ok(());
        }
        checkpoint::write_atomic(&self.dir, EPOCH_FILE, inner.epochs.encode().as_bytes())?;
        inner.epochs_dirty = false;
        Ok(())
    }

    /// On the append path the data is already stored: a failed checkpoint write must not
    /// fail the append (the producer would retry and duplicate). It is retried by the
    /// next flush.
    pub(super) fn try_write_epoch_checkpoint(&self, inner: &mut Inner) {
        if let Err(err) = self.write_epoch_checkpoint(inner) {
            tracing::warn!(dir = %self.dir.display(), %err, "leader-epoch checkpoint write failed");
        }
    }

    /// Clean shutdown: flushes everything, writes the checkpoints, a producer snapshot at
    /// the log end offset and the clean-shutdown marker (so the next open skips recovery). Later writes fail with `Closed`.
    pub fn close(&self) -> Result<(), StorageError> {
        {
            let _inner = locks::lock(&self.inner);
            if self.closed.swap(true, Ordering::AcqRel) {
                return Ok(());
            }
        }
        let mut inner = locks::lock(&self.inner);
        let active = Arc::clone(Self::active(&inner)?);
        active.on_inactive()?;
        drop(inner);
        self.flush()?;
        inner = locks::lock(&self.inner);
        self.write_epoch_checkpoint(&mut inner)?;
        // The state at the log end, so the next open scans nothing.
        producer_state::write_snapshot(&self.dir, self.log_end_offset(), &inner.producers, true)?;
        self.write_offsets_checkpoint()?;
        checkpoint::write_atomic(&self.dir, CLEAN_SHUTDOWN_FILE, b"")?;
        tracing::debug!(dir = %self.dir.display(), log_end_offset = self.log_end_offset(), "log closed");
        Ok(())
    }
}
