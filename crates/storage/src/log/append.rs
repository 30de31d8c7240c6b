//! Appends as leader and as follower, and rolling to a new segment.

use std::sync::atomic::Ordering;
use std::sync::{Arc, MutexGuard};

use sluice_protocol::records::{
    build_control_batch, set_base_offset, set_partition_leader_epoch, EndTxnMarker,
};

use super::{AppendInfo, Inner, PartitionLog};
use crate::batches::{parse_batches, BatchInfo};
use crate::error::StorageError;
use crate::producer_state::{self, Validated};
use crate::segment::{relative, Segment, SegmentMeta};

/// `segment.ms` age of the active segment, Kafka's `timeWaitedForRoll`: measured from
/// the first batch's timestamp against `reference_ts` when the segment has one, else
/// from when the segment was created against `now_ms`.
pub(super) fn time_waited(meta: &SegmentMeta, reference_ts: i64, now_ms: i64) -> i64 {
    match meta.first_batch_timestamp {
        Some(t) if t >= 0 => reference_ts.saturating_sub(t),
        _ => now_ms.saturating_sub(meta.created_ms),
    }
}

impl PartitionLog {
    /// Appends batches written by this broker as leader: assigns consecutive offsets from
    /// the log end offset by rewriting each batch's `baseOffset` in place, stamps
    /// `partitionLeaderEpoch`, and stores the bytes as they then are. The broker has
    /// already validated them; a header that does not parse is still an error.
    ///
    /// Idempotent batches are first checked against the producer state (before anything
    /// is written or rewritten): a retry of one of the producer's last 5 batches in a
    /// one-batch call is answered with the original offsets and `duplicate` set, a stale
    /// producer epoch fails with [`StorageError::InvalidProducerEpoch`], a sequence gap
    /// with [`StorageError::OutOfOrderSequence`], and a retried batch among others with
    /// [`StorageError::DuplicateSequence`].
    pub fn append_as_leader(
        &self,
        batches: &mut [u8],
        leader_epoch: i32,
        now_ms: i64,
    ) -> Result<AppendInfo, StorageError> {
        let mut infos = parse_batches(batches, false)?;
        let mut inner = self.lock_open()?;
        if let Validated::Duplicate(original) = inner.producers.validate(&infos)? {
            drop(inner);
            tracing::debug!(
                dir = %self.dir.display(), first_offset = original.first_offset,
                last_offset = original.last_offset, "duplicate batch not appended"
            );
            return Ok(AppendInfo {
                first_offset: original.first_offset,
                last_offset: original.last_offset,
                max_timestamp: original.max_timestamp,
                offset_of_max_timestamp: original.last_offset,
                log_start_offset: self.log_start_offset(),
                log_end_offset: self.log_end_offset(),
                batch_count: 0,
                size_bytes: 0,
                duplicate: true,
            });
        }
        let first_offset = self.log_end_offset();
        let mut next = first_offset;
        for b in &mut infos {
            let at = b.position as usize;
            let Some(batch) = batches.get_mut(at..) else {
                return Err(StorageError::EmptyAppend);
            };
            set_base_offset(batch, next);
            set_partition_leader_epoch(batch, leader_epoch);
            b.base_offset = next;
            b.leader_epoch = leader_epoch;
            next = b.next_offset();
        }
        let rolled = self.append_locked(&mut inner, batches, &infos, first_offset, now_ms)?;
        inner.producers.update(&infos);
        self.refresh_stable(&mut inner);
        if inner.epochs.assign(leader_epoch, first_offset) {
            inner.epochs_dirty = true;
            self.try_write_epoch_checkpoint(&mut inner);
        }
        self.finish_append(inner, &infos, rolled, now_ms)
    }

    /// Writes the COMMIT or ABORT marker ending `producer_id`'s transaction as leader
    /// (WriteTxnMarkers). The marker is checked like a produced batch: a producer epoch
    /// older than the partition's fails with [`StorageError::InvalidProducerEpoch`], a
    /// coordinator epoch older than the producer's last marker's with
    /// [`StorageError::CoordinatorFenced`].
    pub fn append_txn_marker(
        &self,
        producer_id: i64,
        producer_epoch: i16,
        marker: EndTxnMarker,
        leader_epoch: i32,
        now_ms: i64,
    ) -> Result<AppendInfo, StorageError> {
        let batch =
            build_control_batch(0, leader_epoch, producer_id, producer_epoch, now_ms, marker)?;
        let mut bytes = batch.to_vec();
        self.append_as_leader(&mut bytes, leader_epoch, now_ms)
    }

    /// Appends batches fetched from the leader, keeping their offsets and epochs. Each
    /// batch's CRC is checked, and offsets must increase: the first batch may not start
    /// below the log end offset, nor any batch below the end of the one before (gaps, as
    /// left by compaction, are allowed). The producer state is updated from the batches
    /// without validation: the leader already did that, and the follower's state must
    /// end up identical to the leader's.
    pub fn append_as_follower(
        &self,
        batches: &[u8],
        now_ms: i64,
    ) -> Result<AppendInfo, StorageError> {
        let infos = parse_batches(batches, true)?;
        let mut inner = self.lock_open()?;
        let mut expected = self.log_end_offset();
        for b in &infos {
            if b.base_offset < expected {
                return Err(StorageError::NonMonotonicOffset {
                    expected,
                    base: b.base_offset,
                });
            }
            expected = b.next_offset();
        }
        let roll_base = infos.first().map_or(expected, |b| b.base_offset);
        let rolled = self.append_locked(&mut inner, batches, &infos, roll_base, now_ms)?;
        inner.producers.update(&infos);
        self.refresh_stable(&mut inner);
        let mut changed = false;
        for b in &infos {
            changed |= inner.epochs.assign(b.leader_epoch, b.base_offset);
        }
        if changed {
            inner.epochs_dirty = true;
            self.try_write_epoch_checkpoint(&mut inner);
        }
        self.finish_append(inner, &infos, rolled, now_ms)
    }

    /// Rolls if needed, writes, and publishes the new log end offset. Returns the base
    /// offset of the new segment if it rolled.
    pub(super) fn append_locked(
        &self,
        inner: &mut Inner,
        data: &[u8],
        infos: &[BatchInfo],
        roll_base: i64,
        now_ms: i64,
    ) -> Result<Option<i64>, StorageError> {
        let config = inner.config.clone();
        let segment_bytes = config.segment_bytes.max(0) as u64;
        if let Some(big) = infos.iter().find(|b| b.size > segment_bytes) {
            return Err(StorageError::BatchTooLarge {
                size: big.size as usize,
                max: segment_bytes as usize,
            });
        }
        let total = data.len() as u64;
        let last_offset = infos.last().map_or(roll_base, |b| b.last_offset());
        let max_ts = infos.iter().map(|b| b.max_timestamp).max().unwrap_or(-1);
        let active = Arc::clone(Self::active(inner)?);
        let size = active.size();
        let meta = active.meta();
        let (index_entries, time_entries) = active.index_entries();
        let reason = if size > 0 && size + total > segment_bytes {
            Some("segment.bytes")
        } else if size > 0 && time_waited(&meta, max_ts, now_ms) > config.roll_ms() {
            Some("segment.ms")
        } else if index_entries >= config.max_index_entries()
            || time_entries >= config.max_time_index_entries()
        {
            Some("segment.index.bytes")
        } else if relative(active.base_offset(), last_offset).is_none() {
            Some("relative offset overflow")
        } else if size + total > u64::from(u32::MAX) {
            Some("position overflow")
        } else {
            None
        };
        let mut rolled = None;
        if let Some(reason) = reason {
            tracing::debug!(dir = %self.dir.display(), reason, base = roll_base, "rolling segment");
            if self.roll(inner, roll_base, now_ms)? {
                rolled = Some(roll_base);
            }
        }
        let active = Arc::clone(Self::active(inner)?);
        if relative(active.base_offset(), last_offset).is_none() {
            return Err(StorageError::InvalidBatch(
                sluice_protocol::records::RecordsError::CorruptRecord(
                    "offset range does not fit one segment",
                ),
            ));
        }
        let interval = config.index_interval_bytes.max(0) as u64;
        active.append(data, infos, interval, now_ms)?;
        self.log_end_offset
            .store(last_offset + 1, Ordering::Release);
        inner.last_now_ms = now_ms;
        tracing::trace!(dir = %self.dir.display(), first = infos.first().map(|b| b.base_offset), last_offset, bytes = total, "appended");
        Ok(rolled)
    }

    /// Builds the [`AppendInfo`], releases the lock, then flushes what is due.
    pub(super) fn finish_append(
        &self,
        mut inner: MutexGuard<'_, Inner>,
        infos: &[BatchInfo],
        rolled: Option<i64>,
        now_ms: i64,
    ) -> Result<AppendInfo, StorageError> {
        let mut max_timestamp = -1;
        let mut offset_of_max_timestamp = -1;
        for b in infos {
            if b.max_timestamp > max_timestamp {
                max_timestamp = b.max_timestamp;
                offset_of_max_timestamp = b.offset_of_max_timestamp();
            }
        }
        let leo = self.log_end_offset();
        let info = AppendInfo {
            first_offset: infos.first().map_or(leo, |b| b.base_offset),
            last_offset: leo - 1,
            max_timestamp,
            offset_of_max_timestamp,
            log_start_offset: self.log_start_offset(),
            log_end_offset: leo,
            batch_count: infos.len(),
            size_bytes: infos.iter().map(|b| b.size as usize).sum(),
            duplicate: false,
        };
        let unflushed = leo.saturating_sub(self.recovery_point());
        let due = unflushed >= inner.config.flush_messages
            || now_ms.saturating_sub(inner.last_flush_ms) >= inner.config.flush_ms;
        if due {
            // Claim the flush now so concurrent appends do not all queue up for one.
            inner.last_flush_ms = now_ms;
        }
        drop(inner);
        if due {
            self.flush()?;
        } else if let Some(base) = rolled {
            // As Kafka does on roll: the finished segments are made durable, advancing
            // the recovery point so a crash does not rescan them, but by the background
            // flusher (maybe_flush): fsyncing up to a whole segment here would stall
            // the appending thread.
            self.pending_roll_flush.fetch_max(base, Ordering::AcqRel);
        }
        Ok(info)
    }

    /// Starts a new active segment at `base`. Returns false if there was nothing to do
    /// (the active segment is empty and already starts there).
    pub(super) fn roll(
        &self,
        inner: &mut Inner,
        base: i64,
        now_ms: i64,
    ) -> Result<bool, StorageError> {
        let active = Arc::clone(Self::active(inner)?);
        if active.size() == 0 {
            if active.base_offset() == base {
                return Ok(false);
            }
            // An empty active segment at another base (a follower skipping a gap):
            // replace it rather than leave an empty segment behind.
            inner.segments.pop();
            active.delete_files()?;
        } else {
            active.on_inactive()?;
            active.sync_time_index()?;
        }
        let seg = Arc::new(Segment::create(&self.dir, base, now_ms)?);
        inner.segments.push(seg);
        // The state now describes exactly the log below `base`: snapshot it there (Kafka
        // does the same on roll), so recovery scans at most the new segment.
        if let Err(err) = producer_state::write_snapshot(&self.dir, base, &inner.producers, false) {
            // Only costs a longer scan on the next open; must not fail the append.
            tracing::warn!(dir = %self.dir.display(), base, %err, "producer snapshot write failed");
        }
        if inner.segments.len() == 1 {
            // The replaced segment was the whole log: the log now starts at `base`.
            self.log_start_offset.fetch_max(base, Ordering::AcqRel);
        }
        inner.dir_dirty = true;
        self.publish(inner);
        Ok(true)
    }
}
